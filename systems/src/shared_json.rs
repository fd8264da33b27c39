//! Parts of server messages that many recipients share, encoded to JSON once.
//!
//! A per-player push such as a snapshot lists, for each recipient, entries most other
//! recipients list too (everyone near a crowd sees the crowd). Encoding every recipient's
//! message separately formats the same numbers thousands of times. Instead, a system puts
//! this frame's entries in a [`SharedEntries`] table (on the tick: a copy of each value, no
//! JSON) and gives each recipient an [`EntryList`] of indexes into it. When a connection
//! task writes the message (off the tick), each entry is encoded on first use and its bytes
//! reused by every later message that lists it: per recipient, what remains is copying
//! bytes.

use std::sync::{Arc, OnceLock};

use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::value::RawValue;

/// An entry's JSON once encoded, or why it does not encode.
type Encoded = OnceLock<Result<Box<RawValue>, serde_json::Error>>;

/// One frame's shared entries: values copied in on the tick, each encoded once, when first
/// written. Build it, wrap it in an `Arc`, and hand out [`EntryList`]s.
pub struct SharedEntries<T> {
    entries: Vec<(T, Encoded)>,
}

impl<T> Default for SharedEntries<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T: Serialize> SharedEntries<T> {
    /// Adds an entry; returns its index for [`EntryList`]s.
    pub fn push(&mut self, entry: T) -> u32 {
        let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 entries");
        self.entries.push((entry, OnceLock::new()));
        index
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry at `index` as JSON, encoded now if no message needed it yet.
    fn encoded(&self, index: u32) -> Result<&RawValue, &serde_json::Error> {
        let (entry, encoded) = &self.entries[index as usize];
        match encoded.get_or_init(|| serde_json::value::to_raw_value(entry)) {
            Ok(raw) => Ok(raw),
            Err(reason) => Err(reason),
        }
    }
}

/// Some entries of a [`SharedEntries`] table, in order: serialises as a JSON array of them.
/// Cheap to build on the tick (one `Arc` and the indexes).
pub struct EntryList<T> {
    table: Arc<SharedEntries<T>>,
    picks: Vec<u32>,
}

impl<T: Serialize> EntryList<T> {
    /// The entries of `table` at `picks` (indexes [`SharedEntries::push`] returned).
    pub fn new(table: &Arc<SharedEntries<T>>, picks: Vec<u32>) -> Self {
        Self {
            table: Arc::clone(table),
            picks,
        }
    }

    /// Entries listed.
    pub fn len(&self) -> usize {
        self.picks.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.picks.is_empty()
    }
}

impl<T: Serialize> Serialize for EntryList<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.picks.len()))?;
        for &index in &self.picks {
            let raw = self
                .table
                .encoded(index)
                .map_err(serde::ser::Error::custom)?;
            seq.serialize_element(raw)?;
        }
        seq.end()
    }
}

impl<T: Serialize> std::fmt::Debug for EntryList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_string(self) {
            Ok(json) => write!(f, "EntryList({json})"),
            Err(reason) => write!(f, "EntryList(not encodable: {reason})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts how often it is serialised.
    struct Counted<'a>(u32, &'a AtomicUsize);

    impl Serialize for Counted<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.serialize(s)
        }
    }

    #[test]
    fn lists_encode_as_arrays_of_their_entries_each_encoded_once() {
        let encodings = AtomicUsize::new(0);
        let mut table = SharedEntries::default();
        let a = table.push(Counted(1, &encodings));
        let b = table.push(Counted(2, &encodings));
        let c = table.push(Counted(3, &encodings));
        let table = Arc::new(table);
        let first = EntryList::new(&table, vec![c, a]);
        let second = EntryList::new(&table, vec![a, b, c]);
        let empty = EntryList::new(&table, vec![]);
        assert_eq!(serde_json::to_string(&first).unwrap(), "[3,1]");
        assert_eq!(serde_json::to_string(&second).unwrap(), "[1,2,3]");
        assert_eq!(serde_json::to_string(&second).unwrap(), "[1,2,3]");
        assert_eq!(serde_json::to_string(&empty).unwrap(), "[]");
        assert_eq!(encodings.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn an_entry_that_cannot_be_encoded_fails_the_message_not_the_process() {
        // A map with non-string keys has no JSON form.
        let mut table = SharedEntries::default();
        let bad = table.push(std::collections::BTreeMap::from([((1u8, 2u8), 3u8)]));
        let list = EntryList::new(&Arc::new(table), vec![bad]);
        let error = serde_json::to_string(&list).unwrap_err();
        assert!(
            error.to_string().contains("key must be a string"),
            "{error}"
        );
    }
}
