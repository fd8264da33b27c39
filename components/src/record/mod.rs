//! The persisted player record: versioned JSON, one section per registered component.
//!
//! Layout (version 2): `{"version":2,"seq":7,"id":42,"sections":{"position":{..},..}}`.
//! `version` and `seq` always come first and in that order: the record prefix
//! `{"version":V,"seq":S,...}` is what `save.lua` (`assets/redis/save.lua`) reads the stored
//! sequence from, without decoding the whole record.
//!
//! Records are written from a [`PlayerSnapshot`] and read back as a [`PlayerRecord`]. Older
//! versions migrate forward through [`MIGRATIONS`], one step per version.

mod snapshot;

pub use snapshot::{PlayerSnapshot, SectionData, SectionValue, SnapshotEncodeError};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The record version this build writes.
pub const CURRENT_RECORD_VERSION: u32 = 2;

/// Highest save sequence a loaded record may carry (2^63 - 1). Every save takes the next
/// number, so a real player never comes near it (a save every millisecond for 292 million
/// years); a record above it is corrupt or forged, and accepting it would leave the player
/// one wrap-around away from saves the store refuses as stale. Refused at load instead.
pub const MAX_RECORD_SEQ: u64 = i64::MAX as u64;

/// A decoded player record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlayerRecord {
    /// Layout version; always [`CURRENT_RECORD_VERSION`] once decoded.
    pub version: u32,
    /// Save sequence of the snapshot this record was made from.
    pub seq: u64,
    /// The player's id.
    pub id: u64,
    /// One JSON value per persistent component, by registered name. Unknown names are kept.
    pub sections: BTreeMap<String, Value>,
}

/// Why a stored record could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record is not valid JSON: {0}")]
    Json(String),
    #[error("record does not fit the layout of its version: {0}")]
    Layout(String),
    #[error("record has no numeric \"version\" field")]
    MissingVersion,
    #[error(
        "record version {found} is newer than this build understands ({CURRENT_RECORD_VERSION}); refusing to load it so it is not overwritten"
    )]
    FromNewerBuild { found: u32 },
    #[error("record version {from} could not be migrated: {reason}")]
    Migration {
        from: u32,
        #[source]
        reason: MigrationError,
    },
    #[error("section \"{section}\" is malformed: {reason}")]
    Section { section: String, reason: String },
    #[error(
        "record sequence {seq} is above {MAX_RECORD_SEQ}: later saves could not be fenced against it; refusing to load it"
    )]
    SequenceExhausted { seq: u64 },
    #[error("record belongs to player {found}, not to player {expected} whose key holds it")]
    WrongPlayer { expected: u64, found: u64 },
}

/// Why one migration step could not carry a record forward.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MigrationError {
    /// The record is not a JSON object.
    #[error("a v{version} record must be a JSON object")]
    NotAnObject { version: u32 },
    /// The record has no player id (or not a number).
    #[error("v{version} record has no numeric \"id\"")]
    MissingId { version: u32 },
    /// A field the step knows holds a value of the wrong type.
    #[error("v{version} field \"{field}\" must be {expected}, got {found}")]
    WrongFieldType {
        version: u32,
        field: &'static str,
        expected: &'static str,
        /// The value found, as JSON text.
        found: String,
    },
    /// The step's output does not carry the next version.
    #[error("step produced version {produced}")]
    WrongVersion { produced: u32 },
}

/// One migration step: turns a record of version `n` (its index + 1) into version `n + 1`.
type Migration = fn(Value) -> Result<Value, MigrationError>;

/// The explicit chain of migrations, `MIGRATIONS[n - 1]` takes version `n` to `n + 1`.
pub const MIGRATIONS: &[Migration] = &[v1_to_v2];

impl PlayerRecord {
    /// An empty record for a player that has never been saved.
    pub fn new(id: u64) -> Self {
        Self {
            version: CURRENT_RECORD_VERSION,
            seq: 0,
            id,
            sections: BTreeMap::new(),
        }
    }

    /// Encodes the record as stored (`version`, `seq` first).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record of JSON values always serialises")
    }

    /// Decodes a stored record of any known version, migrating it forward.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut value: Value =
            serde_json::from_slice(bytes).map_err(|e| RecordError::Json(e.to_string()))?;
        let mut version = read_version(&value)?;
        if version > CURRENT_RECORD_VERSION {
            return Err(RecordError::FromNewerBuild { found: version });
        }
        while version < CURRENT_RECORD_VERSION {
            let step = MIGRATIONS[(version - 1) as usize];
            value = step(value).map_err(|reason| RecordError::Migration {
                from: version,
                reason,
            })?;
            let next = read_version(&value)?;
            if next != version + 1 {
                return Err(RecordError::Migration {
                    from: version,
                    reason: MigrationError::WrongVersion { produced: next },
                });
            }
            version = next;
        }
        let record: Self =
            serde_json::from_value(value).map_err(|e| RecordError::Layout(e.to_string()))?;
        if record.seq > MAX_RECORD_SEQ {
            return Err(RecordError::SequenceExhausted { seq: record.seq });
        }
        Ok(record)
    }

    /// Decodes the record stored under `player`'s key: [`PlayerRecord::decode`], and the
    /// record must name that player (a record copied under another key is refused, never
    /// loaded into the wrong player).
    pub fn decode_for(bytes: &[u8], player: u64) -> Result<Self, RecordError> {
        let record = Self::decode(bytes)?;
        if record.id != player {
            return Err(RecordError::WrongPlayer {
                expected: player,
                found: record.id,
            });
        }
        Ok(record)
    }
}

fn read_version(value: &Value) -> Result<u32, RecordError> {
    value
        .get("version")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v >= 1)
        .ok_or(RecordError::MissingVersion)
}

/// v1 (the flat record of the system Hearth replaces) to v2 (sections, save sequence):
/// `{"version":1,"id":7,"x":1.0,"y":2.0,"hp":90,"max_hp":100,"xp":250,"level":3}`.
/// Fields v1 did not have get their defaults; any other field is kept as a section so
/// nothing is lost. A known field of the wrong type (`"xp":"650"`) fails the migration: the
/// record is refused and left as it is, never loaded with a default in its place (the next
/// save would overwrite the original).
fn v1_to_v2(value: Value) -> Result<Value, MigrationError> {
    let Value::Object(mut old) = value else {
        return Err(MigrationError::NotAnObject { version: 1 });
    };
    let id = old
        .remove("id")
        .and_then(|v| v.as_u64())
        .ok_or(MigrationError::MissingId { version: 1 })?;
    old.remove("version");
    let mut take = |key: &'static str,
                    default: Value,
                    kind: &'static str,
                    fits: fn(&Value) -> bool| match old.remove(key) {
        None => Ok(default),
        Some(v) if fits(&v) => Ok(v),
        Some(v) => Err(MigrationError::WrongFieldType {
            version: 1,
            field: key,
            expected: kind,
            found: v.to_string(),
        }),
    };
    let number = ("a number", Value::is_number as fn(&Value) -> bool);
    let unsigned = ("an unsigned integer", Value::is_u64 as fn(&Value) -> bool);
    let x = take("x", json!(0.0), number.0, number.1)?;
    let y = take("y", json!(0.0), number.0, number.1)?;
    let hp = take("hp", json!(100), unsigned.0, unsigned.1)?;
    let max_hp = take("max_hp", json!(100), unsigned.0, unsigned.1)?;
    let xp = take("xp", json!(0), unsigned.0, unsigned.1)?;
    let level = take("level", json!(1), unsigned.0, unsigned.1)?;
    let as_f64 = |v: Value| json!(v.as_f64().unwrap_or_default());
    let mut sections = Map::new();
    sections.insert("position".into(), json!({"x": as_f64(x), "y": as_f64(y)}));
    sections.insert("vitals".into(), json!({"hp": hp, "max_hp": max_hp}));
    sections.insert("progress".into(), json!({"xp": xp, "level": level}));
    for (k, v) in old {
        sections.insert(format!("v1_{k}"), v);
    }
    Ok(json!({"version": 2, "seq": 0, "id": id, "sections": sections}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_starts_with_version_and_seq() {
        let mut r = PlayerRecord::new(42);
        r.seq = 7;
        let text = String::from_utf8(r.encode()).unwrap();
        assert!(text.starts_with(r#"{"version":2,"seq":7,"#), "{text}");
    }

    #[test]
    fn v1_record_migrates_to_sections() {
        let v1 = br#"{"version":1,"id":7,"x":1.5,"y":-2.0,"hp":90,"max_hp":120,"xp":250,"level":3,"guild":"owls"}"#;
        let r = PlayerRecord::decode(v1).unwrap();
        assert_eq!(r.version, CURRENT_RECORD_VERSION);
        assert_eq!(r.id, 7);
        assert_eq!(r.seq, 0);
        assert_eq!(r.sections["position"], json!({"x": 1.5, "y": -2.0}));
        assert_eq!(r.sections["vitals"], json!({"hp": 90, "max_hp": 120}));
        assert_eq!(r.sections["progress"], json!({"xp": 250, "level": 3}));
        assert_eq!(
            r.sections["v1_guild"],
            json!("owls"),
            "unknown v1 fields are kept"
        );
    }

    #[test]
    fn newer_and_broken_records_are_refused() {
        assert_eq!(
            PlayerRecord::decode(br#"{"version":99,"seq":1,"id":1,"sections":{}}"#),
            Err(RecordError::FromNewerBuild { found: 99 })
        );
        assert_eq!(
            PlayerRecord::decode(br#"{"seq":1}"#),
            Err(RecordError::MissingVersion)
        );
        assert!(matches!(
            PlayerRecord::decode(b"not json"),
            Err(RecordError::Json(_))
        ));
        assert!(matches!(
            PlayerRecord::decode(br#"{"version":1,"x":1}"#),
            Err(RecordError::Migration { from: 1, .. })
        ));
    }

    #[test]
    fn a_v1_field_of_the_wrong_type_fails_the_migration_instead_of_defaulting() {
        for bad in [
            r#"{"version":1,"id":7,"xp":"650"}"#,
            r#"{"version":1,"id":7,"level":-2}"#,
            r#"{"version":1,"id":7,"x":"left"}"#,
            r#"{"version":1,"id":7,"hp":null}"#,
            r#"{"version":1,"id":7,"max_hp":1.5}"#,
        ] {
            let err = PlayerRecord::decode(bad.as_bytes()).unwrap_err();
            assert!(
                matches!(
                    &err,
                    RecordError::Migration {
                        from: 1,
                        reason: MigrationError::WrongFieldType { .. }
                    }
                ),
                "{bad}: {err}"
            );
        }
        let ok = PlayerRecord::decode(br#"{"version":1,"id":7,"x":3,"xp":650}"#).unwrap();
        assert_eq!(ok.sections["position"], json!({"x": 3.0, "y": 0.0}));
        assert_eq!(ok.sections["progress"], json!({"xp": 650, "level": 1}));
    }

    #[test]
    fn a_sequence_beyond_the_fencing_range_is_refused() {
        let at = |seq: u64| format!(r#"{{"version":2,"seq":{seq},"id":1,"sections":{{}}}}"#);
        assert!(PlayerRecord::decode(at(MAX_RECORD_SEQ).as_bytes()).is_ok());
        for seq in [MAX_RECORD_SEQ + 1, u64::MAX - 1, u64::MAX] {
            assert_eq!(
                PlayerRecord::decode(at(seq).as_bytes()),
                Err(RecordError::SequenceExhausted { seq })
            );
        }
    }

    #[test]
    fn a_record_under_another_players_key_is_refused() {
        let bytes = br#"{"version":2,"seq":1,"id":8,"sections":{}}"#;
        assert!(PlayerRecord::decode_for(bytes, 8).is_ok());
        assert_eq!(
            PlayerRecord::decode_for(bytes, 9),
            Err(RecordError::WrongPlayer {
                expected: 9,
                found: 8
            })
        );
    }
}
