//! The tick's side: at the replication rate, the replicated components that changed since the
//! last round are copied (nothing is encoded on the tick) into one shared
//! [`ReplicationRound`], published in the [`ReplicationFeed`] for connection tasks to read.
//! An unchanged value is the previous round's, shared: a round costs the tick an `Arc` clone
//! per replicated component, a copy per changed one.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bevy_ecs::prelude::*;
use bevy_time::{Real, Time, Timer, TimerMode};
use hearth_components::{PlayerId, Position};
use tokio::sync::watch;

use super::interest::{InterestRule, InterestTags, SharedLayer};
use super::registry::{ComponentValue, ReplicatedComponent, ReplicationEncoding};
use super::replica::EncodedReplica;
use crate::spatial::SpatialGrid;

/// The settings every client's view of a round follows (the plugin's, copied into rounds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoundSettings {
    /// Rounds per second.
    pub rate_hz: f64,
    /// Entities within this distance of a viewer are in its area of interest.
    pub radius: f32,
    /// Half the side of the square the interest grid covers (outside: the edge cells).
    pub half_extent: f32,
    /// Most candidates examined per client per round, nearest cells first.
    pub max_candidates: usize,
    /// Bytes (in the binary encoding) each client may be sent per second.
    pub bytes_per_second: usize,
}

impl RoundSettings {
    /// Bytes each client may be sent per round.
    pub fn round_budget(&self) -> usize {
        (self.bytes_per_second as f64 / self.rate_hz).max(1.0) as usize
    }
}

/// One replicated entity in a round.
#[derive(Clone, Copy, Debug)]
pub struct RoundEntity {
    /// Its id on the wire: given when the entity first replicates, counting up from 0, never
    /// given again in this process (so never reused while a client may know it), and small:
    /// one varint byte for the first 128 entities, two up to 16,384, three up to 2 million.
    pub id: u64,
    /// The player it is, if a player.
    pub player: Option<PlayerId>,
    /// Where it is, for interest; `None` without a [`Position`] (then no one's area of
    /// interest holds it).
    pub at: Option<(f32, f32)>,
    /// What the visibility rule knows of it.
    pub tags: InterestTags,
}

/// Every replicated entity's state as of one round, shared by all connections.
pub struct ReplicationRound {
    number: u64,
    /// Taken between two rounds of the cadence because a player joined: only clients with no
    /// update yet compose from it ([`ReplicationRound::is_early`]).
    early: bool,
    settings: RoundSettings,
    components: Arc<[ReplicatedComponent]>,
    rule: Arc<dyn InterestRule>,
    entities: Vec<RoundEntity>,
    /// `entities.len() × components.len()` values, entity-major.
    values: Vec<Option<Arc<ComponentValue>>>,
    /// Built by the first reader that needs it, off the tick: (player, slot), sorted (a
    /// sort and binary searches cost a fraction of a hash table's inserts and lookups).
    by_player: OnceLock<Vec<(PlayerId, u32)>>,
    grid: OnceLock<SpatialGrid<u32>>,
}

impl ReplicationRound {
    /// An empty round (before the first one is taken).
    pub fn empty(settings: RoundSettings) -> Self {
        Self {
            number: 0,
            early: false,
            settings,
            components: Arc::from(Vec::new()),
            rule: Arc::new(SharedLayer),
            entities: Vec::new(),
            values: Vec::new(),
            by_player: OnceLock::new(),
            grid: OnceLock::new(),
        }
    }

    /// The round's number, counting from 1 (0: no round yet).
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Whether this round was taken early, in the frame a player joined, between two rounds
    /// of the cadence: a client that just joined composes its first update from it (its
    /// player is in it), so it waits for no round period; a client that already has an
    /// update skips it and stays at the cadence (its next round's delta covers what this one
    /// changed, by version).
    pub fn is_early(&self) -> bool {
        self.early
    }

    /// The settings clients follow.
    pub fn settings(&self) -> &RoundSettings {
        &self.settings
    }

    /// The replicated components, by index.
    pub fn components(&self) -> &[ReplicatedComponent] {
        &self.components
    }

    /// The game's visibility rule.
    pub fn rule(&self) -> &dyn InterestRule {
        &*self.rule
    }

    /// Entities, by slot.
    pub fn entities(&self) -> &[RoundEntity] {
        &self.entities
    }

    /// The components of the entity in `slot`, by component index.
    pub fn values(&self, slot: u32) -> &[Option<Arc<ComponentValue>>] {
        let n = self.components.len();
        let start = slot as usize * n;
        &self.values[start..start + n]
    }

    /// The slot of a player's entity.
    pub fn slot_of(&self, player: PlayerId) -> Option<u32> {
        let by_player = self.by_player.get_or_init(|| {
            let mut by_player: Vec<(PlayerId, u32)> = self
                .entities
                .iter()
                .enumerate()
                .filter_map(|(slot, e)| Some((e.player?, slot as u32)))
                .collect();
            by_player.sort_unstable_by_key(|&(player, _)| player.0);
            by_player
        });
        let index = by_player
            .binary_search_by_key(&player.0, |&(p, _)| p.0)
            .ok()?;
        Some(by_player[index].1)
    }

    /// Slots of entities within the radius of `(x, y)`, nearest cells first, at most
    /// `max_candidates`, into `out`.
    pub fn near(&self, x: f32, y: f32, out: &mut Vec<(f32, f32, u32)>) {
        let s = &self.settings;
        let grid = self.grid.get_or_init(|| {
            // Cells of half the radius: the 5 x 5 cells around a viewer cover its circle
            // with little excess, so "nearest cells first" is close to nearest first.
            let mut grid = SpatialGrid::new(s.radius / 2.0, s.half_extent);
            for (slot, e) in self.entities.iter().enumerate() {
                if let Some((x, y)) = e.at {
                    grid.insert(x, y, slot as u32);
                }
            }
            grid
        });
        grid.nearest_first(x, y, s.radius, s.max_candidates, out);
    }

    /// A round from parts (tests and benches build rounds without an app).
    pub fn from_parts(
        number: u64,
        settings: RoundSettings,
        components: Vec<ReplicatedComponent>,
        rule: Arc<dyn InterestRule>,
        entities: Vec<(RoundEntity, Vec<Option<Arc<ComponentValue>>>)>,
    ) -> Self {
        let n = components.len();
        let mut values = Vec::with_capacity(entities.len() * n);
        let entities = entities
            .into_iter()
            .map(|(e, mut v)| {
                v.resize(n, None);
                values.extend(v);
                e
            })
            .collect();
        Self {
            number,
            early: false,
            settings,
            components: Arc::from(components),
            rule,
            entities,
            values,
            by_player: OnceLock::new(),
            grid: OnceLock::new(),
        }
    }
}

/// The latest round, for connection tasks: `watch` cells, so a connection that is behind
/// just sees the newest round. Two of them: the cadence's rounds, which every client with an
/// update follows (and the border link), and every round, early ones included, which only a
/// client that just joined follows; so an early round wakes only those.
#[derive(Resource, Clone)]
pub struct ReplicationFeed {
    cadence: watch::Sender<Arc<ReplicationRound>>,
    every: watch::Sender<Arc<ReplicationRound>>,
}

impl ReplicationFeed {
    /// A feed holding an empty round.
    pub fn new(settings: RoundSettings) -> Self {
        let empty = Arc::new(ReplicationRound::empty(settings));
        Self {
            cadence: watch::Sender::new(Arc::clone(&empty)),
            every: watch::Sender::new(empty),
        }
    }

    /// A receiver of every newer round of the cadence (no early round).
    pub fn subscribe(&self) -> watch::Receiver<Arc<ReplicationRound>> {
        self.cadence.subscribe()
    }

    /// A receiver of every newer round, early ones included (see
    /// [`ReplicationRound::is_early`]).
    pub fn subscribe_arrivals(&self) -> watch::Receiver<Arc<ReplicationRound>> {
        self.every.subscribe()
    }

    /// The latest round, early or not.
    pub fn latest(&self) -> Arc<ReplicationRound> {
        Arc::clone(&self.every.borrow())
    }

    fn publish(&self, round: ReplicationRound) {
        let round = Arc::new(round);
        if !round.early {
            self.cadence.send_replace(Arc::clone(&round));
        }
        self.every.send_replace(round);
    }
}

/// One entity's values between rounds.
pub(super) struct Staged {
    entity: Entity,
    /// Its id on the wire ([`RoundEntity::id`]).
    id: u64,
    /// Bit i: component i was seen on the entity this round.
    pub(super) present: u64,
    pub(super) values: Vec<Option<Arc<ComponentValue>>>,
}

/// What the round systems keep between rounds: every replicated entity's latest values, by
/// entity index.
#[derive(Resource)]
pub struct Staging {
    settings: RoundSettings,
    components: Arc<[ReplicatedComponent]>,
    rule: Arc<dyn InterestRule>,
    timer: Timer,
    due: bool,
    /// The round due is an early one (a player joined; the cadence's timer did not fire).
    early: bool,
    number: u64,
    slots: Vec<Option<Staged>>,
    /// The next wire id to give.
    next_id: u64,
}

impl Staging {
    /// Staging for rounds at `settings.rate_hz`.
    pub fn new(settings: RoundSettings) -> Self {
        Self {
            settings,
            components: Arc::from(Vec::new()),
            rule: Arc::new(SharedLayer),
            timer: Timer::new(
                Duration::from_secs_f64(1.0 / settings.rate_hz),
                TimerMode::Repeating,
            ),
            due: false,
            early: false,
            number: 0,
            slots: Vec::new(),
            next_id: 0,
        }
    }

    /// Adds a component to the rounds' schema (in registry order).
    pub(super) fn add_component(&mut self, component: ReplicatedComponent) {
        let mut components = self.components.to_vec();
        components.push(component);
        self.components = Arc::from(components);
    }

    /// Replaces the visibility rule.
    pub(super) fn set_rule(&mut self, rule: Arc<dyn InterestRule>) {
        self.rule = rule;
    }

    /// The number of the round being taken.
    pub(super) fn number(&self) -> u64 {
        self.number
    }

    /// The staged values of `entity` (new ones for an entity not seen before).
    pub(super) fn slot(&mut self, entity: Entity) -> &mut Staged {
        let index = entity.index_u32() as usize;
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        let n = self.components.len();
        let slot = &mut self.slots[index];
        if slot.as_ref().is_none_or(|s| s.entity != entity) {
            *slot = Some(Staged {
                entity,
                id: self.next_id,
                present: 0,
                values: vec![None; n],
            });
            self.next_id += 1;
        }
        slot.as_mut().expect("just filled")
    }
}

/// Whether a round is due this frame (set by [`advance_clock`]).
pub(super) fn round_due(staging: Res<Staging>) -> bool {
    staging.due
}

/// Advances the round clock on real time; at a round, numbers it and clears every entity's
/// presence (the collect systems mark what they find). A player who joined since the last
/// frame makes an early round this frame (see [`ReplicationRound::is_early`]): a player
/// arriving (a login, a resume, a handoff from another zone) sees the world at once.
pub(super) fn advance_clock(
    time: Res<Time<Real>>,
    mut staging: ResMut<Staging>,
    joined: Query<(), Added<PlayerId>>,
) {
    staging.timer.tick(time.delta());
    let cadence = staging.timer.just_finished();
    staging.due = cadence || !joined.is_empty();
    staging.early = !cadence;
    if staging.due {
        staging.number += 1;
        for slot in staging.slots.iter_mut().flatten() {
            slot.present = 0;
        }
    }
}

/// Takes component `index` (a `C`) of every entity: a changed or new one is copied into a new
/// value of this round's version; an unchanged one keeps its value. Runs only at a round, so
/// change detection covers everything since the previous round.
pub(super) fn collect<C, E>(index: usize) -> impl FnMut(Query<(Entity, Ref<C>)>, ResMut<Staging>)
where
    C: Component + Clone,
    E: ReplicationEncoding<C>,
{
    move |query, mut staging| {
        let version = staging.number as u32;
        for (entity, value) in &query {
            let slot = staging.slot(entity);
            slot.present |= 1 << index;
            if value.is_changed() || slot.values[index].is_none() {
                slot.values[index] = Some(Arc::new(ComponentValue::new::<C, E>(
                    C::clone(&value),
                    version,
                )));
            }
        }
    }
}

/// What a round needs of an entity besides its values: the player it is, where it is (its
/// `Position`, or an [`EncodedReplica`]'s), what the visibility rule knows of it.
type Facts = (
    Option<&'static PlayerId>,
    Option<&'static Position>,
    Option<&'static EncodedReplica>,
    Option<&'static InterestTags>,
);

/// Builds the round from what the collect systems found and publishes it. Entities with no
/// replicated component left are forgotten, as are components an entity lost.
pub(super) fn publish(
    mut staging: ResMut<Staging>,
    feed: Res<ReplicationFeed>,
    facts: Query<Facts>,
) {
    let n = staging.components.len();
    let mut entities = Vec::new();
    let mut values = Vec::new();
    for slot in staging.slots.iter_mut() {
        let Some(staged) = slot else { continue };
        if staged.present == 0 {
            *slot = None;
            continue;
        }
        let Ok((player, position, replica, tags)) = facts.get(staged.entity) else {
            *slot = None;
            continue;
        };
        for (i, value) in staged.values.iter_mut().enumerate() {
            if staged.present & (1 << i) == 0 {
                *value = None;
            }
        }
        entities.push(RoundEntity {
            id: staged.id,
            player: player.copied(),
            at: position.map(|p| (p.x, p.y)).or(replica.map(|r| r.at)),
            tags: tags.copied().unwrap_or_default(),
        });
        values.extend(staged.values.iter().take(n).cloned());
    }
    let round = ReplicationRound {
        number: staging.number,
        early: staging.early,
        settings: staging.settings,
        components: Arc::clone(&staging.components),
        rule: Arc::clone(&staging.rule),
        entities,
        values,
        by_player: OnceLock::new(),
        grid: OnceLock::new(),
    };
    feed.publish(round);
}

/// Copies every [`EncodedReplica`]'s values into the round being taken; a value whose
/// encoded forms changed gets this round's version (so clients are sent it as changed), an
/// equal one keeps its version.
pub(super) fn collect_encoded(
    query: Query<(Entity, Ref<EncodedReplica>)>,
    mut staging: ResMut<Staging>,
) {
    let version = staging.number() as u32;
    for (entity, replica) in &query {
        let slot = staging.slot(entity);
        for (index, value) in replica.values.iter().enumerate() {
            let Some(value) = value else { continue };
            let Some(staged) = slot.values.get_mut(index) else {
                continue;
            };
            slot.present |= 1 << index;
            if staged.as_ref().is_none_or(|s| **s != *value) {
                *staged = Some(Arc::new(ComponentValue::encoded(
                    value.binary.clone(),
                    value.json.clone(),
                    version,
                )));
            }
        }
    }
}
