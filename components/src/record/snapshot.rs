//! Writing a record: a snapshot of one player's sections, encoded off the tick.
//!
//! The flush clones each persistent component into a [`SectionValue`] on the tick (cheap, no
//! serialisation); a store thread later encodes the [`PlayerSnapshot`] into the stored layout.
//! It lives next to [`PlayerRecord`](super::PlayerRecord) because both sides of the layout,
//! writing and reading, must change together.

use std::collections::BTreeMap;
use std::io::Write;

use super::CURRENT_RECORD_VERSION;
use crate::PlayerId;

/// A clone of one persistent component, serialised later, off the tick.
pub type SectionValue = Box<dyn SectionData>;

/// A section's value as the store sees it: something that writes itself as JSON.
///
/// Implemented for every `Serialize` type, so each component's serialiser is compiled for
/// its own type and writes straight into the record buffer. (Type-erased serde, which this
/// replaced, paid a dynamic call per field and was half of the store's CPU per save.)
pub trait SectionData: Send + Sync {
    /// Appends this value's JSON to `out`.
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
    /// This value as a JSON tree, its numbers as its JSON text writes them: an `f32` keeps
    /// its shortest form (`0.70710677`, as in every other message), not the `f64` it widens
    /// to (`0.7071067690849304`).
    fn to_json(&self) -> serde_json::Result<serde_json::Value>;
}

impl<T: serde::Serialize + Send + Sync> SectionData for T {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(out, self)
    }

    fn to_json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_slice(&serde_json::to_vec(self)?)
    }
}

/// Why a snapshot could not be encoded as a record.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotEncodeError {
    /// Writing the record's header (`version`, `seq`, `id`) failed.
    #[error("record header: {0}")]
    Header(#[source] std::io::Error),
    /// A section (its name or its value) does not serialise.
    #[error("section {section}: {source}")]
    Section {
        section: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Everything needed to write one player's record, taken on the tick without serialising.
pub struct PlayerSnapshot {
    /// Whose record.
    pub player: PlayerId,
    /// The save sequence this snapshot carries; the store refuses it unless newer than stored.
    pub seq: u64,
    /// Registered sections by name.
    pub sections: Vec<(&'static str, SectionValue)>,
    /// Sections this build does not know, written back unchanged.
    pub unknown: BTreeMap<String, serde_json::Value>,
}

impl PlayerSnapshot {
    /// Serialises the snapshot in the stored record layout (see [`super`]):
    /// `{"version":V,"seq":S,"id":I,"sections":{...}}`, registered sections first, then the
    /// unknown ones. The prefix `{"version":V,"seq":S,...}` is what `save.lua` reads to fence
    /// the write (and `stored_seq` in the memory store), so it must stay first and in this
    /// order, without whitespace.
    pub fn encode(&self) -> Result<Vec<u8>, SnapshotEncodeError> {
        let mut out = Vec::with_capacity(1024);
        write!(
            out,
            r#"{{"version":{},"seq":{},"id":{},"sections":{{"#,
            CURRENT_RECORD_VERSION, self.seq, self.player.0
        )
        .map_err(SnapshotEncodeError::Header)?;
        let registered = self
            .sections
            .iter()
            .map(|(name, value)| (*name, value.as_ref() as &dyn SectionData));
        let unknown = self
            .unknown
            .iter()
            .map(|(name, value)| (name.as_str(), value as &dyn SectionData));
        for (i, (name, value)) in registered.chain(unknown).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, name).map_err(|source| {
                SnapshotEncodeError::Section {
                    section: name.to_string(),
                    source,
                }
            })?;
            out.push(b':');
            value
                .write_json(&mut out)
                .map_err(|source| SnapshotEncodeError::Section {
                    section: name.to_string(),
                    source,
                })?;
        }
        out.extend_from_slice(b"}}");
        Ok(out)
    }

    /// The record's sections as JSON values (what a client is sent on login).
    pub fn sections_json(&self) -> BTreeMap<String, serde_json::Value> {
        let mut out = self.unknown.clone();
        for (name, value) in &self.sections {
            match value.to_json() {
                Ok(json) => {
                    out.insert((*name).to_string(), json);
                }
                Err(e) => tracing::error!(section = name, error = %e, "section does not serialise"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sections_f32_reads_in_json_as_its_shortest_form() {
        #[derive(serde::Serialize)]
        struct At {
            x: f32,
        }
        let json = At {
            x: std::f32::consts::FRAC_1_SQRT_2,
        }
        .to_json()
        .unwrap();
        assert_eq!(json.to_string(), r#"{"x":0.70710677}"#);
    }
    use crate::PlayerRecord;

    /// A game's section, as a game would define it.
    #[derive(serde::Serialize)]
    struct Progress {
        xp: u64,
        level: u32,
    }

    #[test]
    fn snapshot_encodes_as_a_decodable_record_keeping_unknown_sections() {
        let snap = PlayerSnapshot {
            player: PlayerId(9),
            seq: 3,
            sections: vec![("progress", Box::new(Progress { xp: 5, level: 1 }))],
            unknown: BTreeMap::from([("pet".to_string(), serde_json::json!({"name": "rex"}))]),
        };
        let bytes = snap.encode().unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"version":2,"seq":3,"id":9,"sections":{"progress":{"xp":5,"level":1},"pet":{"name":"rex"}}}"#
        );
        let record = PlayerRecord::decode(&bytes).unwrap();
        assert_eq!(
            record.sections["progress"],
            serde_json::json!({"xp": 5, "level": 1})
        );
        assert_eq!(record.sections["pet"], serde_json::json!({"name": "rex"}));
    }
}
