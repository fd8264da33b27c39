//! One client's view, kept by its connection task (off the tick): the baseline (what the
//! client was actually sent: per entity, the version of each component) and the priority
//! accumulators. [`ClientView::compose`] picks this round's update within a byte budget;
//! [`ClientView::confirm`] advances the baseline once the update was written. An update that
//! was composed and never confirmed (skipped, failed) leaves the view as it was, so the next
//! update still brings the client from what it really has.

use std::collections::HashMap;
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

/// One client's replication state. Memory: per entity the client knows, its id and one
/// `u32` version per replicated component, and per candidate an accumulator, in hash tables;
/// both are bounded by the candidates examined per round (`max_candidates`, 128 by default)
/// plus the entities not yet confirmed gone: about 20 KB per client at the defaults with two
/// components ([`ClientView::heap_bytes`], printed by `cargo bench --bench replication`).
#[derive(Default)]
pub struct ClientView {
    /// The baseline: entity id → version of each component the client has (0: none).
    known: HashMap<u64, Box<[u32]>>,
    /// Whether the client was sent the `replication` message.
    introduced: bool,
    /// Priority accumulators: entity id → (priority, last round it was a candidate in).
    accumulators: HashMap<u64, (f32, u64)>,
    found: Vec<(f32, f32, u32)>,
    pending: Vec<Pending>,
}

impl ClientView {
    /// A fresh view: the client has nothing, so its first update brings full state (at login,
    /// and after a resume, which starts a new view).
    pub fn new() -> Self {
        Self::default()
    }

    /// Entities the client is known to have.
    pub fn known(&self) -> usize {
        self.known.len()
    }

    /// An estimate of the heap this view holds, in bytes.
    pub fn heap_bytes(&self) -> usize {
        let versions: usize = self.known.values().map(|v| v.len() * 4 + 16).sum();
        self.known.capacity() * (8 + 16 + 1)
            + versions
            + self.accumulators.capacity() * (8 + 16 + 1)
            + self.found.capacity() * 12
            + self.pending.capacity() * std::mem::size_of::<Pending>()
    }

    /// This round's update for the player `viewer`, at most `budget` bytes in the binary
    /// encoding (at least one entity goes out whatever its size, so nothing starves): `None`
    /// while the viewer is not in the round. Changes only the priority accumulators, never
    /// the baseline. Cost: the grid cells within the radius, at most `max_candidates`
    /// candidates (sorted), and the entities the client knows.
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
        let mut found = std::mem::take(&mut self.found);
        found.clear();
        if let Some((x, y)) = me.at {
            round.near(x, y, &mut found);
        }
        if !found.iter().any(|f| f.2 == viewer_slot) {
            found.push((0.0, 0.0, viewer_slot));
        }
        self.pending.clear();
        for &(ox, oy, slot) in &found {
            let other = &entities[slot as usize];
            let myself = slot == viewer_slot;
            if !myself && !round.rule().visible(&me.tags, &other.tags) {
                continue;
            }
            let accumulator = self.accumulators.entry(other.id).or_insert((0.0, number));
            accumulator.1 = number;
            let known = self.known.get(&other.id);
            let mut mask = 0u64;
            let mut cost = 0;
            for (i, value) in round.values(slot).iter().enumerate() {
                let Some(value) = value else { continue };
                let Some(bytes) = value.binary() else {
                    continue;
                };
                if known.is_none_or(|k| k[i] != value.version()) {
                    mask |= 1 << i;
                    cost += len_u64(bytes.len() as u64) + bytes.len();
                }
            }
            if mask == 0 {
                continue;
            }
            cost += len_u64(other.id) + len_u64(mask);
            let entering = known.is_none();
            let priority = if myself {
                f32::INFINITY
            } else {
                let (mx, my) = me.at.unwrap_or((ox, oy));
                let d2 = (ox - mx).powi(2) + (oy - my).powi(2);
                accumulator.0 += gain(d2, settings.radius, entering);
                accumulator.0
            };
            self.pending.push(Pending {
                slot,
                mask,
                entering,
                priority,
                cost,
            });
        }
        self.found = found;
        // Forget the accumulators of entities no longer candidates.
        self.accumulators.retain(|_, a| a.1 == number);
        let left: Vec<u64> = self
            .known
            .keys()
            .copied()
            .filter(|id| !self.accumulators.contains_key(id))
            .collect();
        let mut bytes = len_u64(number) + 3;
        bytes += left.iter().map(|&id| len_u64(id)).sum::<usize>();
        let limit = budget.min(MAX_FRAME_BYTES - UPDATE_OVERHEAD);
        self.pending
            .sort_unstable_by(|a, b| b.priority.total_cmp(&a.priority));
        let mut entered = Vec::new();
        let mut changed = Vec::new();
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

    /// Records that `update` was written to the client: its baseline now holds what the
    /// update carried, and what it sent starts accumulating priority afresh.
    pub fn confirm(&mut self, update: Composed) {
        let round = &update.round;
        self.introduced = true;
        let n = round.components().len();
        for (list, entering) in [(&update.entered, true), (&update.changed, false)] {
            for &(slot, mask) in list {
                let id = round.entities()[slot as usize].id;
                let versions = self.known.entry(id).or_insert_with(|| vec![0; n].into());
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
                if let Some(a) = self.accumulators.get_mut(&id) {
                    a.0 = 0.0;
                }
            }
        }
        for id in &update.left {
            self.known.remove(id);
        }
    }
}
