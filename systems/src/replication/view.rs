//! One client's view, kept by its connection task (off the tick): the baseline (what the
//! client was actually sent: per entity, the version of each component) and the priority
//! accumulators. [`ClientView::compose`] picks this round's update within a byte budget;
//! [`ClientView::confirm`] advances the baseline once the update was written. An update that
//! was composed and never confirmed (skipped, failed) leaves the view as it was, so the next
//! update still brings the client from what it really has.

use std::sync::Arc;

use hearth_components::PlayerId;
use hearth_components::wire::MAX_FRAME_BYTES;
use hearth_components::wire::varint::len_u64;

use super::priority::gain;
use super::round::ReplicationRound;

/// Room kept in every update for its round number, section counts and frame header.
const UPDATE_OVERHEAD: usize = 24;

/// What [`ClientView::compose`] chose for one round: entities to enter (every component),
/// entities with changed components, ids to forget. Holds the round, so
/// [`ClientView::confirm`] records exactly the versions it carries.
pub struct Composed {
    round: Arc<ReplicationRound>,
    introduce: Option<u64>,
    entered: Vec<(u32, u64)>,
    changed: Vec<(u32, u64)>,
    left: Vec<u64>,
    bytes: usize,
}

impl Composed {
    /// The round this update is taken from.
    pub fn round(&self) -> &Arc<ReplicationRound> {
        &self.round
    }

    /// `Some(viewer's id)` when this is the client's first update: the `replication` message
    /// (the components' names and encodings, the client's own id) goes before it.
    pub fn introduces(&self) -> Option<u64> {
        self.introduce
    }

    /// Entities new to the client: (slot in the round, mask of the components to send).
    pub fn entered(&self) -> &[(u32, u64)] {
        &self.entered
    }

    /// Entities the client knows whose components changed: (slot, mask of those).
    pub fn changed(&self) -> &[(u32, u64)] {
        &self.changed
    }

    /// Ids the client should forget.
    pub fn left(&self) -> &[u64] {
        &self.left
    }

    /// Bytes of the update's payload in the binary encoding (the budget's measure).
    pub fn binary_bytes(&self) -> usize {
        self.bytes
    }
}

/// A candidate with something to send this round.
struct Pending {
    slot: u32,
    mask: u64,
    entering: bool,
    priority: f32,
    cost: usize,
}

/// An update's lists (entered, changed, left), kept between rounds for their allocations.
type Lists = (Vec<(u32, u64)>, Vec<(u32, u64)>, Vec<u64>);

/// An entity the view tracks: one the client has (the baseline), or a candidate of the last
/// compose with its priority accumulator, or both.
#[derive(Clone, Copy, Debug)]
struct Entry {
    id: u64,
    /// Priority accumulated while a candidate with something to send (0 when sent).
    priority: f32,
    /// Whether the client has it: its versions (in `ClientView::versions`) are the baseline.
    known: bool,
}

/// One client's replication state, in sorted arrays rather than hash tables: `entries`
/// holds the entities the client has and the last round's candidates, sorted by id, and
/// `versions` one `u32` per replicated component of each entry (0: the client does not have
/// it). Each compose merges them with the round's candidates (sorted by id) in one pass, with
/// no hashing and no allocation once the buffers have grown. Memory: both arrays twice
/// (this round's and the next, swapped) plus the round's scratch, all bounded by the
/// candidates examined per round (`max_candidates`, 128 by default) plus the entities not yet
/// confirmed gone: about 21 KB per client at the defaults with two components
/// ([`ClientView::heap_bytes`], printed by `cargo bench --bench replication`).
#[derive(Default)]
pub struct ClientView {
    /// Sorted by id: what the client has, and the last compose's candidates.
    entries: Vec<Entry>,
    /// `entries.len() × stride` versions, entry-major.
    versions: Vec<u32>,
    /// Replicated components per entry (the round's schema; fixed once the app is built).
    stride: usize,
    /// The arrays the next compose merges into (swapped with `entries` and `versions`).
    next_entries: Vec<Entry>,
    next_versions: Vec<u32>,
    /// Whether the client was sent the `replication` message.
    introduced: bool,
    found: Vec<(f32, f32, u32)>,
    /// This round's visible candidates: (id, slot, squared distance to the viewer), sorted.
    candidates: Vec<(u64, u32, f32)>,
    pending: Vec<Pending>,
    /// The lists of the last confirmed update, kept for their allocations.
    spare: Option<Lists>,
}

impl ClientView {
    /// A fresh view: the client has nothing, so its first update brings full state (at login,
    /// and after a resume, which starts a new view).
    pub fn new() -> Self {
        Self::default()
    }

    /// Entities the client is known to have.
    pub fn known(&self) -> usize {
        self.entries.iter().filter(|e| e.known).count()
    }

    /// An estimate of the heap this view holds, in bytes.
    pub fn heap_bytes(&self) -> usize {
        let spare = self.spare.as_ref().map_or(0, |(e, c, l)| {
            (e.capacity() + c.capacity()) * size_of::<(u32, u64)>() + l.capacity() * 8
        });
        (self.entries.capacity() + self.next_entries.capacity()) * size_of::<Entry>()
            + (self.versions.capacity() + self.next_versions.capacity()) * 4
            + self.found.capacity() * size_of::<(f32, f32, u32)>()
            + self.candidates.capacity() * size_of::<(u64, u32, f32)>()
            + self.pending.capacity() * size_of::<Pending>()
            + spare
    }

    /// This round's update for the player `viewer`, at most `budget` bytes in the binary
    /// encoding (at least one entity goes out whatever its size, so nothing starves): `None`
    /// while the viewer is not in the round. Changes only the priority accumulators, never
    /// the baseline. Cost: the grid cells within the radius, at most `max_candidates`
    /// candidates (sorted by id, then by priority), and one pass over the entities the
    /// client knows.
    pub fn compose(
        &mut self,
        round: &Arc<ReplicationRound>,
        viewer: PlayerId,
        budget: usize,
    ) -> Option<Composed> {
        let number = round.number();
        let viewer_slot = round.slot_of(viewer)?;
        let entities = round.entities();
        let me = entities[viewer_slot as usize];
        let settings = *round.settings();
        let stride = round.components().len();
        if stride != self.stride {
            // The schema is fixed once the app is built; a view from before it starts over.
            self.entries.clear();
            self.versions.clear();
            self.stride = stride;
        }
        self.find_candidates(round, viewer_slot);
        let (mut entered, mut changed, mut left) = self.spare.take().unwrap_or_default();
        entered.clear();
        changed.clear();
        left.clear();

        // Merge the entries (sorted) with the candidates (sorted): a known entity that is no
        // longer a candidate leaves; a candidate new to the view gets an entry.
        let mut next = std::mem::take(&mut self.next_entries);
        let mut next_versions = std::mem::take(&mut self.next_versions);
        next.clear();
        next_versions.clear();
        self.pending.clear();
        let (mut e, mut c) = (0, 0);
        while e < self.entries.len() || c < self.candidates.len() {
            let entry_id = self.entries.get(e).map_or(u64::MAX, |x| x.id);
            let candidate = self.candidates.get(c).copied();
            let candidate_id = candidate.map_or(u64::MAX, |x| x.0);
            if e < self.entries.len() && (c == self.candidates.len() || entry_id < candidate_id) {
                // Tracked, not a candidate now: its accumulator is forgotten; if the client
                // has it, it leaves (and stays in the baseline until that is confirmed).
                let entry = self.entries[e];
                if entry.known {
                    left.push(entry.id);
                    next.push(Entry {
                        priority: 0.0,
                        ..entry
                    });
                    next_versions.extend_from_slice(self.entry_versions(e));
                }
                e += 1;
                continue;
            }
            let (id, slot, d2) = candidate.expect("a candidate is left");
            let mut entry = if e < self.entries.len() && entry_id == id {
                let entry = self.entries[e];
                next_versions.extend_from_slice(self.entry_versions(e));
                e += 1;
                entry
            } else {
                next_versions.resize(next_versions.len() + stride, 0);
                Entry {
                    id,
                    priority: 0.0,
                    known: false,
                }
            };
            c += 1;
            let versions = &next_versions[next_versions.len() - stride..];
            let mut mask = 0u64;
            let mut cost = 0;
            for (i, value) in round.values(slot).iter().enumerate() {
                let Some(value) = value else { continue };
                let Some(bytes) = value.binary() else {
                    continue;
                };
                if !entry.known || versions[i] != value.version() {
                    mask |= 1 << i;
                    cost += len_u64(bytes.len() as u64) + bytes.len();
                }
            }
            if mask != 0 {
                cost += len_u64(id) + len_u64(mask);
                let priority = if slot == viewer_slot {
                    f32::INFINITY
                } else {
                    entry.priority += gain(d2, settings.radius, !entry.known);
                    entry.priority
                };
                self.pending.push(Pending {
                    slot,
                    mask,
                    entering: !entry.known,
                    priority,
                    cost,
                });
            }
            next.push(entry);
        }
        self.next_entries = std::mem::replace(&mut self.entries, next);
        self.next_versions = std::mem::replace(&mut self.versions, next_versions);

        let mut bytes = len_u64(number) + 3;
        bytes += left.iter().map(|&id| len_u64(id)).sum::<usize>();
        let limit = budget.min(MAX_FRAME_BYTES - UPDATE_OVERHEAD);
        self.pending
            .sort_unstable_by(|a, b| b.priority.total_cmp(&a.priority));
        for p in &self.pending {
            let first = entered.is_empty() && changed.is_empty();
            if bytes + p.cost > limit && !(first && p.cost < MAX_FRAME_BYTES - UPDATE_OVERHEAD) {
                continue;
            }
            bytes += p.cost;
            if p.entering {
                entered.push((p.slot, p.mask));
            } else {
                changed.push((p.slot, p.mask));
            }
        }
        bytes += len_u64(entered.len() as u64)
            + len_u64(changed.len() as u64)
            + len_u64(left.len() as u64)
            - 3;
        Some(Composed {
            round: Arc::clone(round),
            introduce: (!self.introduced).then_some(me.id),
            entered,
            changed,
            left,
            bytes,
        })
    }

    /// Fills `candidates`: the entities within the viewer's radius its rule lets it see (and
    /// itself, always), with their squared distance to it, sorted by id.
    fn find_candidates(&mut self, round: &ReplicationRound, viewer_slot: u32) {
        let entities = round.entities();
        let me = entities[viewer_slot as usize];
        self.found.clear();
        if let Some((x, y)) = me.at {
            round.near(x, y, &mut self.found);
        }
        self.candidates.clear();
        let mut myself = false;
        for &(ox, oy, slot) in &self.found {
            let other = &entities[slot as usize];
            if slot == viewer_slot {
                myself = true;
            } else if !round.rule().visible(&me.tags, &other.tags) {
                continue;
            }
            let (mx, my) = me.at.unwrap_or((ox, oy));
            let d2 = (ox - mx).powi(2) + (oy - my).powi(2);
            self.candidates.push((other.id, slot, d2));
        }
        if !myself {
            self.candidates.push((me.id, viewer_slot, 0.0));
        }
        self.candidates.sort_unstable_by_key(|c| c.0);
    }

    fn entry_versions(&self, index: usize) -> &[u32] {
        &self.versions[index * self.stride..(index + 1) * self.stride]
    }

    /// Records that `update` was written to the client: its baseline now holds what the
    /// update carried, and what it sent starts accumulating priority afresh.
    pub fn confirm(&mut self, update: Composed) {
        let Composed {
            round,
            entered,
            changed,
            left,
            ..
        } = update;
        self.introduced = true;
        let stride = self.stride;
        for (list, entering) in [(&entered, true), (&changed, false)] {
            for &(slot, mask) in list {
                let id = round.entities()[slot as usize].id;
                let index = match self.entries.binary_search_by_key(&id, |e| e.id) {
                    Ok(index) => index,
                    Err(index) => {
                        // Only if another compose came between this update's and now.
                        self.entries.insert(
                            index,
                            Entry {
                                id,
                                priority: 0.0,
                                known: false,
                            },
                        );
                        let at = index * stride;
                        self.versions.splice(at..at, std::iter::repeat_n(0, stride));
                        index
                    }
                };
                let entry = &mut self.entries[index];
                entry.known = true;
                entry.priority = 0.0;
                let versions = &mut self.versions[index * stride..(index + 1) * stride];
                if entering {
                    versions.fill(0);
                }
                for (i, value) in round.values(slot).iter().enumerate() {
                    if mask & (1 << i) != 0
                        && let Some(value) = value
                    {
                        versions[i] = value.version();
                    }
                }
            }
        }
        for id in &left {
            // The entry goes at the next compose (it is no longer a candidate, or it enters
            // again as new).
            if let Ok(index) = self.entries.binary_search_by_key(id, |e| e.id) {
                self.entries[index].known = false;
            }
        }
        self.spare = Some((entered, changed, left));
    }
}
