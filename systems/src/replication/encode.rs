//! A composed update in a connection's encoding: binary (a MessagePack `replication`
//! message the first time, then an update frame of hand-specified bytes) or JSON lines
//! (`replication`, then `update` objects keyed by component name). docs/protocol.md
//! specifies both.

use std::fmt::Write as _;

use hearth_components::wire::{
    FrameKind, MessageError, UpdateWriter, encode_frame_with, encode_message,
};
use serde::Serialize;

use super::registry::ReplicatedComponent;
use super::view::Composed;

/// The `replication` message: sent once, before a client's first update.
#[derive(Serialize, Debug)]
#[serde(tag = "type", rename = "replication")]
pub struct Introduction<'a> {
    /// The client's own entity id.
    pub you: u64,
    /// Rounds per second.
    pub rate_hz: f64,
    /// The components, by index (bit i of a binary update's mask is `components[i]`).
    pub components: &'a [ReplicatedComponent],
}

fn introduction(update: &Composed, you: u64) -> Introduction<'_> {
    Introduction {
        you,
        rate_hz: update.round().settings().rate_hz,
        components: update.round().components(),
    }
}

/// Appends `update` in the binary encoding (frames) to `out`.
pub fn write_binary(update: &Composed, out: &mut Vec<u8>) -> Result<(), MessageError> {
    if let Some(you) = update.introduces() {
        encode_message(&introduction(update, you), out)?;
    }
    let round = update.round();
    encode_frame_with(FrameKind::Update, out, |out| {
        let mut w = UpdateWriter::new(out, round.number());
        for section in [update.entered(), update.changed()] {
            w.section(section.len());
            for &(slot, mask) in section {
                w.entity(round.entities()[slot as usize].id, mask);
                for (i, value) in round.values(slot).iter().enumerate() {
                    if mask & (1 << i) != 0 {
                        let bytes = value.as_ref().and_then(|v| v.binary()).unwrap_or(&[]);
                        w.component(bytes);
                    }
                }
            }
        }
        w.section(update.left().len());
        for &id in update.left() {
            w.left(id);
        }
        Ok::<(), MessageError>(())
    })
}

/// Appends `update` as JSON lines to `out`.
pub fn write_json(update: &Composed, out: &mut String) -> Result<(), serde_json::Error> {
    if let Some(you) = update.introduces() {
        out.push_str(&serde_json::to_string(&introduction(update, you))?);
        out.push('\n');
    }
    let round = update.round();
    let names = round.components();
    write!(out, r#"{{"type":"update","round":{}"#, round.number()).ok();
    for (key, section) in [("entered", update.entered()), ("changed", update.changed())] {
        write!(out, r#","{key}":["#).ok();
        for (n, &(slot, mask)) in section.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            write!(out, r#"{{"id":{}"#, round.entities()[slot as usize].id).ok();
            for (i, value) in round.values(slot).iter().enumerate() {
                if mask & (1 << i) != 0
                    && let Some(json) = value.as_ref().and_then(|v| v.json())
                {
                    out.push(',');
                    out.push_str(&serde_json::to_string(&names[i].name)?);
                    out.push(':');
                    out.push_str(json.get());
                }
            }
            out.push('}');
        }
        out.push(']');
    }
    out.push_str(r#","left":["#);
    for (n, id) in update.left().iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        write!(out, "{id}").ok();
    }
    out.push_str("]}\n");
    Ok(())
}
