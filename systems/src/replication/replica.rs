//! Entities whose replicated values were encoded elsewhere: a neighbouring zone's players near
//! the border, as its snapshots carry them (src/zones/border). They carry no game components
//! (no game system sees or moves them), only [`EncodedReplica`]: where they are, for interest,
//! and each replicated component's encoded forms. Each round copies them into the round like
//! any entity's values (`round::collect_encoded`), so clients get them as entered / changed /
//! left like any other.

use bevy_ecs::prelude::*;
use serde_json::value::RawValue;

use super::registry::ComponentValue;

/// One replicated component's encoded forms: the binary payload and the JSON value, as the
/// registry of the game that encoded them writes them.
#[derive(Clone, Debug)]
pub struct EncodedValue {
    pub binary: Box<[u8]>,
    pub json: Box<RawValue>,
}

impl PartialEq for EncodedValue {
    fn eq(&self, other: &Self) -> bool {
        self.binary == other.binary && self.json.get() == other.json.get()
    }
}

impl PartialEq<EncodedValue> for ComponentValue {
    fn eq(&self, other: &EncodedValue) -> bool {
        self.binary() == Some(&other.binary[..])
            && self.json().map(RawValue::get) == Some(other.json.get())
    }
}

/// An entity replicated from values encoded elsewhere: its position (for interest) and its
/// components' values by registry index (`None`: it lacks that component).
#[derive(Component, Clone, Debug, Default, PartialEq)]
pub struct EncodedReplica {
    pub at: (f32, f32),
    pub values: Vec<Option<EncodedValue>>,
}
