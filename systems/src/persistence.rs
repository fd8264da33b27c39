//! Persistence by change detection.
//!
//! Any component registered with [`PersistentAppExt::register_persistent`] becomes a section
//! of the player record. A change to it marks the player [`Dirty`]; the flush saves each dirty
//! player within one flush interval of its change, spread over the interval in small slices
//! ([`pacing`]) so no frame snapshots everyone. Tier-1 (immediate) and final (leave) saves use
//! the same snapshot path on the interactive lane. Results come back and are applied here: a
//! failed write marks the player dirty again, and a leave ends only once a final save holds
//! every change made to the player (else a follow-up final save goes out).

pub mod linked;
mod pacing;

use std::collections::HashSet;
use std::time::Duration;

use bevy_app::{App, Plugin, PostUpdate, PreUpdate};
use bevy_ecs::change_detection::Tick;
use bevy_ecs::lifecycle::HookContext;
use bevy_ecs::prelude::*;
use bevy_ecs::resource::IsResource;
use bevy_ecs::system::{EntityCommands, SystemChangeTick};
use bevy_ecs::world::{DeferredWorld, EntityRefExcept};
use bevy_time::{Real, Time, Timer, TimerMode};
use hearth_components::{
    Dirty, InFlightSave, JustLoaded, Leaving, OwnershipLost, PlayerId, PlayerLeft, PlayerRecord,
    PlayerSnapshot, SaveNowPending, SaveNowRequest, SaveState, SaveTogether, SavedNow,
    SavedTogether, SectionValue, UnknownSections,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::linked::{Linked, LinkedSaves, apply_link_results, queue_links, send_links};
use self::pacing::DueQueue;
use crate::storage::{
    DrainStoreCompletions, Lane, SaveItem, SaveOutcome, SavesCompleted, StoreJob, StorePort,
};

/// How long a failed immediate or final save waits before it is tried again.
pub const PRIORITY_RETRY_DELAY: Duration = Duration::from_secs(1);

/// How often the flush hands a slice of due players to the store (or a tenth of the flush
/// interval, if shorter). A slice is one store job, one Redis round trip: 10 a second rather
/// than one per frame (60), while a slice of 10,000 players' 30 s interval is about 33
/// snapshots, a few tens of microseconds of one frame.
pub const FLUSH_SLICE: Duration = Duration::from_millis(100);

/// Ordering points of persistence, so game systems can run before or after them.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum PersistenceSystems {
    /// `PreUpdate`: apply save results from the store.
    ApplyResults,
    /// `PostUpdate`: turn changes of persistent components into [`Dirty`].
    MarkDirty,
    /// `PostUpdate`, after `MarkDirty`: batch flush and immediate/final saves.
    Save,
}

/// The entity view a snapshot reads components through. Queries using it also filter
/// `Without<IsResource>`: resources are entities too, and reading "all components" would
/// otherwise conflict with the system's own `ResMut`s.
pub type SnapshotSource<'w, 's> = EntityRefExcept<'w, 's, SaveState>;

type SnapshotFn = for<'w, 's> fn(&SnapshotSource<'w, 's>) -> Option<SectionValue>;
type ChangedFn = for<'w, 's> fn(&SnapshotSource<'w, 's>, Tick, Tick) -> bool;
type RestoreFn = fn(&mut EntityCommands, &serde_json::Value) -> Result<(), serde_json::Error>;
type CheckFn = fn(&serde_json::Value) -> Result<(), serde_json::Error>;

/// A stored section that does not decode as the component registered under its name.
#[derive(Debug, thiserror::Error)]
#[error("section {section:?}: {source}")]
pub struct RestoreError {
    /// The section's name in the record.
    pub section: &'static str,
    /// What the decoder refused.
    #[source]
    pub source: serde_json::Error,
}

/// One registered persistent component.
pub struct PersistentSection {
    /// Section name in the record.
    pub name: &'static str,
    snapshot: SnapshotFn,
    changed: ChangedFn,
    restore: RestoreFn,
    check: CheckFn,
}

/// Every registered persistent component, in registration order.
#[derive(Resource, Default)]
pub struct PersistentRegistry {
    sections: Vec<PersistentSection>,
}

impl PersistentRegistry {
    /// The registered sections.
    pub fn sections(&self) -> &[PersistentSection] {
        &self.sections
    }

    /// Finds a section by name.
    pub fn get(&self, name: &str) -> Option<&PersistentSection> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Clones every registered component of the entity into a snapshot (no serialisation).
    pub fn snapshot(&self, player: PlayerId, seq: u64, source: &SnapshotSource) -> PlayerSnapshot {
        PlayerSnapshot {
            player,
            seq,
            sections: self
                .sections
                .iter()
                .filter_map(|s| Some((s.name, (s.snapshot)(source)?)))
                .collect(),
            unknown: source
                .get::<UnknownSections>()
                .map(|u| u.0.clone())
                .unwrap_or_default(),
        }
    }

    /// Whether a join would restore every section of `record`: each registered section is
    /// decoded with the very code [`PersistentSection::restore`] uses (and dropped); a section
    /// this build does not register is kept unchanged on a join, so it passes. `hearth admin
    /// import` checks records with it, so a record it writes cannot refuse its player's login.
    pub fn check_record(&self, record: &PlayerRecord) -> Result<(), RestoreError> {
        for (name, value) in &record.sections {
            if let Some(section) = self.get(name) {
                (section.check)(value).map_err(|source| RestoreError {
                    section: section.name,
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Whether a registered component of the entity changed after `since` (a snapshot's
    /// tick), as seen by a system running at `now`.
    pub fn changed_since(&self, source: &SnapshotSource, since: Tick, now: Tick) -> bool {
        self.sections
            .iter()
            .any(|s| (s.changed)(source, since, now))
    }
}

impl PersistentSection {
    /// Inserts the component decoded from `value` on the entity.
    pub fn restore(
        &self,
        entity: &mut EntityCommands,
        value: &serde_json::Value,
    ) -> Result<(), RestoreError> {
        (self.restore)(entity, value).map_err(|source| RestoreError {
            section: self.name,
            source,
        })
    }
}

fn snapshot_section<T: Component + Serialize + Clone + Send + Sync>(
    source: &SnapshotSource,
) -> Option<SectionValue> {
    source
        .get::<T>()
        .map(|c| Box::new(c.clone()) as SectionValue)
}

fn section_changed<T: Component>(source: &SnapshotSource, since: Tick, now: Tick) -> bool {
    source
        .get_change_ticks::<T>()
        .is_some_and(|ticks| ticks.is_changed(since, now))
}

/// A stored section as the component `T`: the one decode of a section, used by a join
/// ([`restore_section`]) and by a check ([`check_section`]) alike.
fn decode_section<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, serde_json::Error> {
    T::deserialize(value)
}

fn restore_section<T: Component + DeserializeOwned>(
    entity: &mut EntityCommands,
    value: &serde_json::Value,
) -> Result<(), serde_json::Error> {
    entity.insert(decode_section::<T>(value)?);
    Ok(())
}

fn check_section<T: DeserializeOwned>(value: &serde_json::Value) -> Result<(), serde_json::Error> {
    decode_section::<T>(value).map(drop)
}

/// Registers persistent player components.
pub trait PersistentAppExt {
    /// Makes `T` a section of the player record named `name`: changes mark the player dirty,
    /// saves include it, joins restore it. Panics if `name` is registered twice (a build-time
    /// programming error, not input).
    fn register_persistent<T>(&mut self, name: &'static str) -> &mut Self
    where
        T: Component + Serialize + DeserializeOwned + Clone + Send + Sync;
}

impl PersistentAppExt for App {
    fn register_persistent<T>(&mut self, name: &'static str) -> &mut Self
    where
        T: Component + Serialize + DeserializeOwned + Clone + Send + Sync,
    {
        let mut registry = self
            .world_mut()
            .get_resource_or_init::<PersistentRegistry>();
        assert!(
            registry.get(name).is_none(),
            "persistent section {name:?} registered twice"
        );
        registry.sections.push(PersistentSection {
            name,
            snapshot: snapshot_section::<T>,
            changed: section_changed::<T>,
            restore: restore_section::<T>,
            check: check_section::<T>,
        });
        self.add_systems(
            PostUpdate,
            mark_dirty::<T>.in_set(PersistenceSystems::MarkDirty),
        )
    }
}

/// Marks players whose `T` changed since this system last ran.
#[allow(clippy::type_complexity)]
fn mark_dirty<T: Component>(
    changed: Query<
        Entity,
        (
            Changed<T>,
            With<PlayerId>,
            Without<Dirty>,
            Without<JustLoaded>,
        ),
    >,
    mut commands: Commands,
) {
    for entity in &changed {
        commands.entity(entity).insert(Dirty);
    }
}

fn clear_just_loaded(loaded: Query<Entity, With<JustLoaded>>, mut commands: Commands) {
    for entity in &loaded {
        commands.entity(entity).remove::<JustLoaded>();
    }
}

/// When dirty players are saved: each within `flush_interval` of becoming dirty, in slices
/// handed to the store every [`FLUSH_SLICE`] (see [`pacing`]), plus a switch to save every
/// dirty player at the next frame.
#[derive(Resource)]
pub struct FlushSchedule {
    interval: Duration,
    slice: Duration,
    slice_timer: Timer,
    /// Players that became dirty since the flush last ran (filled by `Dirty`'s add hook).
    newly_dirty: Vec<Entity>,
    /// Dirty players by due time.
    due: DueQueue,
    /// The slice the store has not answered yet: the next waits for it, so a slow or hung
    /// store gets one slice at a time (the players due meanwhile go in the next one).
    slice_in_flight: Option<u64>,
    forced: bool,
    next_batch: u64,
}

impl FlushSchedule {
    /// Saves each dirty player within `interval`, in slices every [`FLUSH_SLICE`] (or a tenth
    /// of `interval`, if shorter).
    pub fn new(interval: Duration) -> Self {
        Self::with_slice(interval, FLUSH_SLICE.min(interval / 10))
    }

    /// Like [`FlushSchedule::new`] with slices every `slice` (benches compare slice lengths).
    pub fn with_slice(interval: Duration, slice: Duration) -> Self {
        let slice = slice.max(Duration::from_micros(1));
        Self {
            interval,
            slice,
            slice_timer: Timer::new(slice, TimerMode::Repeating),
            newly_dirty: Vec::new(),
            due: DueQueue::default(),
            slice_in_flight: None,
            forced: false,
            next_batch: 1,
        }
    }

    /// Save every dirty player at the next frame, whatever is due.
    pub fn flush_now(&mut self) {
        self.forced = true;
    }

    fn take_batch_id(&mut self) -> u64 {
        self.next_batch += 1;
        self.next_batch - 1
    }
}

/// `Dirty`'s add hook: notes the player, whoever marked it (change detection, a failed save,
/// a game), so the flush gives it a due time.
fn note_dirty(mut world: DeferredWorld, context: HookContext) {
    if let Some(mut schedule) = world.get_resource_mut::<FlushSchedule>() {
        schedule.newly_dirty.push(context.entity);
    }
}

/// Statistics of batch flushes, for metrics and tests.
#[derive(Resource, Default, Debug, Clone)]
pub struct FlushStats {
    /// Batches handed to the store.
    pub batches: u64,
    /// Players in the last batch.
    pub last_batch_size: usize,
    /// Players snapshotted by all batches.
    pub players_flushed: u64,
}

/// Saves the dirty players whose turn has come, one slice every [`FLUSH_SLICE`], or every
/// dirty player when [`FlushSchedule::flush_now`] asked. A player in flight stays dirty and
/// queued until its save lands.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn flush_dirty(
    time: Res<Time<Real>>,
    ticks: SystemChangeTick,
    mut schedule: ResMut<FlushSchedule>,
    mut stats: ResMut<FlushStats>,
    registry: Res<PersistentRegistry>,
    port: Res<StorePort>,
    mut dirty: Query<
        (Entity, &PlayerId, &mut SaveState, SnapshotSource),
        (With<Dirty>, Without<Leaving>, Without<IsResource>),
    >,
    players: Query<(), (With<PlayerId>, Without<IsResource>)>,
    mut commands: Commands,
) {
    let schedule = &mut *schedule;
    let now = time.elapsed();
    schedule
        .due
        .push_back(now + schedule.interval, schedule.newly_dirty.drain(..));
    schedule.slice_timer.tick(time.delta());
    let forced = std::mem::take(&mut schedule.forced);
    let mut items = Vec::new();
    if forced {
        // Every dirty player now. Only those in flight stay dirty: the queue keeps theirs.
        items.reserve(dirty.iter().len());
        let mut in_flight = HashSet::new();
        for player in &mut dirty {
            if player.2.in_flight.is_none() && !player.3.contains::<Linked>() {
                items.push(batch_save(&registry, ticks.this_run(), player));
            } else {
                in_flight.insert(player.0);
            }
        }
        schedule.due.retain(|entity| in_flight.contains(&entity));
    } else {
        if !schedule.slice_timer.just_finished() || schedule.slice_in_flight.is_some() {
            return;
        }
        // The pace that saves everyone online (or queued) once per interval.
        let pace =
            players.iter().len().max(schedule.due.len()) as f64 / schedule.interval.as_secs_f64();
        let take = schedule.due.must_take(now + schedule.slice, pace);
        let mut waiting = Vec::new();
        for _ in 0..take {
            let Some((due, entity)) = schedule.due.pop_front() else {
                break;
            };
            // Not found: saved meanwhile (immediate, final or forced save), leaving or gone.
            if let Ok(player) = dirty.get_mut(entity) {
                // A linked player waits for its linked save, like one in flight.
                if player.2.in_flight.is_some() || player.3.contains::<Linked>() {
                    waiting.push((due, entity));
                } else {
                    items.push(batch_save(&registry, ticks.this_run(), player));
                }
            }
        }
        for (due, entity) in waiting.into_iter().rev() {
            schedule.due.push_front(due, entity);
        }
    }
    if items.is_empty() {
        return;
    }
    let cleaned: Vec<Entity> = items.iter().map(|item| item.entity).collect();
    commands.queue(move |world: &mut World| remove_dirty(world, cleaned));
    stats.batches += 1;
    stats.last_batch_size = items.len();
    stats.players_flushed += items.len() as u64;
    let batch = schedule.take_batch_id();
    if !forced {
        schedule.slice_in_flight = Some(batch);
    }
    port.submit(StoreJob::Save {
        lane: Lane::Periodic,
        batch,
        items,
    });
}

/// A batch (tier-2) save of a dirty player, snapshotted at tick `now`.
fn batch_save(
    registry: &PersistentRegistry,
    now: Tick,
    (entity, player, mut state, source): (Entity, &PlayerId, Mut<SaveState>, SnapshotSource),
) -> SaveItem {
    start_save(
        registry,
        entity,
        *player,
        &mut state,
        Vec::new(),
        false,
        now,
        &source,
    )
}

/// Takes the next sequence number, marks the save in flight and snapshots the player (in a
/// system running at tick `now`).
#[allow(clippy::too_many_arguments)]
fn start_save(
    registry: &PersistentRegistry,
    entity: Entity,
    player: PlayerId,
    state: &mut SaveState,
    tags: Vec<u64>,
    release: bool,
    now: Tick,
    source: &SnapshotSource,
) -> SaveItem {
    state.seq += 1;
    state.in_flight = Some(InFlightSave {
        seq: state.seq,
        tags,
        release,
        taken_at: now,
    });
    SaveItem {
        entity,
        snapshot: registry.snapshot(player, state.seq, source),
        release,
        last_stored_seq: state.stored,
    }
}

/// Removes `Dirty` from many players in one command (cheaper than one command each).
fn remove_dirty(world: &mut World, players: Vec<Entity>) {
    for entity in players {
        if let Ok(mut entity) = world.get_entity_mut(entity) {
            entity.remove::<Dirty>();
        }
    }
}

/// Sends immediate (tier-1) and final (leave) saves as soon as no other save of the player
/// is in flight, in one batch per frame on the interactive lane.
#[allow(clippy::type_complexity)]
fn submit_priority_saves(
    time: Res<Time<Real>>,
    ticks: SystemChangeTick,
    mut schedule: ResMut<FlushSchedule>,
    registry: Res<PersistentRegistry>,
    port: Res<StorePort>,
    mut waiting: Query<
        (Entity, &PlayerId, &mut SaveState, SnapshotSource),
        (
            Or<(With<SaveNowPending>, With<Leaving>)>,
            Without<IsResource>,
        ),
    >,
    mut commands: Commands,
) {
    let now = time.elapsed();
    let mut items = Vec::new();
    for (entity, player, mut state, source) in &mut waiting {
        let pending = source.get::<SaveNowPending>();
        let leaving = source.get::<Leaving>();
        let retry_at = pending
            .map(|p| p.retry_at)
            .max(leaving.map(|l| l.retry_at))
            .unwrap_or_default();
        // A linked player's own save waits until its linked save is durable.
        if state.in_flight.is_some() || retry_at > now || source.contains::<Linked>() {
            continue;
        }
        let tags = pending.map(|p| p.tags.clone()).unwrap_or_default();
        let release = leaving.is_some();
        items.push(start_save(
            &registry,
            entity,
            *player,
            &mut state,
            tags,
            release,
            ticks.this_run(),
            &source,
        ));
        commands.entity(entity).remove::<(Dirty, SaveNowPending)>();
    }
    if !items.is_empty() {
        let batch = schedule.take_batch_id();
        port.submit(StoreJob::Save {
            lane: Lane::Interactive,
            batch,
            items,
        });
    }
}

/// Turns [`SaveNowRequest`]s into pending immediate saves.
fn queue_save_now(
    mut requests: MessageReader<SaveNowRequest>,
    mut players: Query<Option<&mut SaveNowPending>, With<PlayerId>>,
    mut commands: Commands,
) {
    for request in requests.read() {
        match players.get_mut(request.entity) {
            Ok(Some(mut pending)) => pending.tags.push(request.tag),
            Ok(None) => {
                commands.entity(request.entity).try_insert(SaveNowPending {
                    tags: vec![request.tag],
                    retry_at: Duration::ZERO,
                });
            }
            Err(_) => {
                tracing::debug!(entity = ?request.entity, "save requested for an entity that is not a player")
            }
        }
    }
}

/// Applies save results: ends the in-flight save, re-dirties failures, answers tier-1 saves,
/// notes durable final saves on `Leaving` (for [`finish_leaves`]), and drops players whose
/// lease is gone.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn apply_save_results(
    time: Res<Time<Real>>,
    mut schedule: ResMut<FlushSchedule>,
    mut completed: MessageReader<SavesCompleted>,
    mut players: Query<(
        &PlayerId,
        &mut SaveState,
        Option<&mut Leaving>,
        Option<&mut SaveNowPending>,
    )>,
    mut saved_now: MessageWriter<SavedNow>,
    mut lost: MessageWriter<OwnershipLost>,
    port: Res<StorePort>,
    mut commands: Commands,
) {
    let retry_at = time.elapsed() + PRIORITY_RETRY_DELAY;
    let mut redirty = Vec::new();
    for done in completed.read() {
        if schedule.slice_in_flight == Some(done.batch) {
            schedule.slice_in_flight = None;
        }
        for result in &done.results {
            let Ok((player, mut state, leaving, pending)) = players.get_mut(result.entity) else {
                continue; // despawned meanwhile
            };
            let answers_in_flight = state
                .in_flight
                .as_ref()
                .is_some_and(|f| f.seq == result.seq);
            if *player != result.player || !answers_in_flight {
                continue;
            }
            let Some(InFlightSave {
                tags,
                release,
                taken_at,
                ..
            }) = state.in_flight.take()
            else {
                continue;
            };
            match &result.outcome {
                SaveOutcome::Saved => {
                    state.stored = state.stored.max(result.seq);
                    for tag in tags {
                        saved_now.write(SavedNow {
                            entity: result.entity,
                            player: *player,
                            tag,
                        });
                    }
                    // Only a final save (one that released the lease) may end a leave; a batch
                    // save that was in flight when the leave began does not.
                    if release && let Some(mut leaving) = leaving {
                        leaving.saved_at = Some(taken_at);
                    }
                }
                SaveOutcome::LeaseLost | SaveOutcome::StaleSequence => {
                    tracing::warn!(player = %player, outcome = ?result.outcome, "lease lost or newer record stored elsewhere; dropping player without saving");
                    if result.outcome == SaveOutcome::StaleSequence {
                        // The lease is still ours: give it up, or the player could not log in
                        // anywhere until it expired.
                        port.submit(StoreJob::Release { player: *player });
                    }
                    lost.write(OwnershipLost {
                        entity: result.entity,
                        player: *player,
                    });
                    commands.entity(result.entity).despawn();
                }
                SaveOutcome::Failed(_) => {
                    redirty.push(result.entity);
                    if !tags.is_empty() {
                        match pending {
                            Some(mut p) => {
                                // The failed save's tags were asked for before the waiting ones:
                                // they go first, so answers keep request order.
                                p.tags.splice(0..0, tags);
                                p.retry_at = retry_at;
                            }
                            None => {
                                commands
                                    .entity(result.entity)
                                    .insert(SaveNowPending { tags, retry_at });
                            }
                        }
                    }
                    if release && let Some(mut leaving) = leaving {
                        leaving.retry_at = retry_at;
                    }
                }
            }
        }
    }
    if !redirty.is_empty() {
        commands.queue(move |world: &mut World| {
            for entity in redirty {
                if let Ok(mut entity) = world.get_entity_mut(entity) {
                    entity.insert(Dirty);
                }
            }
        });
    }
}

/// How many follow-up final saves a leave sends at most: a player changed again after each of
/// them leaves with the state of the last one, and the changes since are logged as lost. A
/// game that changes a player at every frame of its leave (after the frame's saves, or while
/// a slow store holds the save for several frames) would otherwise never let it leave.
pub const MAX_LEAVE_FOLLOW_UPS: u32 = 5;

/// Ends the leaves whose final save is durable, right after the results are applied (before
/// any game system of the frame): `PlayerLeft` and the despawn if the player is unchanged since
/// that save's snapshot; otherwise the leave goes on with a follow-up final save of the newest
/// state, sent this frame by [`submit_priority_saves`]. The lease went with the durable save,
/// so the follow-up re-claims it, fenced by `SaveState::stored`: only if nobody claimed or
/// wrote the player in between (else it comes back lost, like any save of a lost player).
fn finish_leaves(
    ticks: SystemChangeTick,
    registry: Res<PersistentRegistry>,
    leaving: Query<(Entity, &PlayerId, &Leaving, SnapshotSource), Without<IsResource>>,
    mut left: MessageWriter<PlayerLeft>,
    mut commands: Commands,
) {
    for (entity, player, leave, source) in &leaving {
        let Some(saved_at) = leave.saved_at else {
            continue;
        };
        let changed = source.contains::<Dirty>()
            || registry.changed_since(&source, saved_at, ticks.this_run());
        if changed && leave.follow_ups < MAX_LEAVE_FOLLOW_UPS {
            commands.entity(entity).insert(Leaving {
                saved_at: None,
                follow_ups: leave.follow_ups + 1,
                ..leave.clone()
            });
            continue;
        }
        if changed {
            tracing::error!(player = %player, follow_ups = leave.follow_ups, "player changed after every final save of its leave; leaving with the last saved state, the newest changes are not saved");
        }
        left.write(PlayerLeft {
            entity,
            player: *player,
            origin: leave.origin,
        });
        commands.entity(entity).despawn();
    }
}

/// Persistence by change detection, paced flushes and save result handling.
#[derive(Clone, Debug)]
pub struct PersistencePlugin {
    /// Each dirty player is saved within this of becoming dirty; saves are paced over the
    /// interval rather than sent in one burst (the `flush_interval` key).
    pub flush_interval: Duration,
}

impl Default for PersistencePlugin {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(30),
        }
    }
}

impl Plugin for PersistencePlugin {
    fn build(&self, app: &mut App) {
        let interval = self.flush_interval;
        app.world_mut()
            .register_component_hooks::<Dirty>()
            .on_add(note_dirty);
        app.init_resource::<PersistentRegistry>()
            .init_resource::<FlushStats>()
            .insert_resource(FlushSchedule::new(interval))
            .add_message::<SavesCompleted>()
            .add_message::<SaveNowRequest>()
            .add_message::<SavedNow>()
            .add_message::<PlayerLeft>()
            .add_message::<OwnershipLost>()
            .add_message::<SaveTogether>()
            .add_message::<SavedTogether>()
            .init_resource::<LinkedSaves>()
            .configure_sets(
                PreUpdate,
                PersistenceSystems::ApplyResults.after(DrainStoreCompletions),
            )
            .configure_sets(
                PostUpdate,
                (PersistenceSystems::MarkDirty, PersistenceSystems::Save).chain(),
            )
            .add_systems(
                PreUpdate,
                (
                    (apply_save_results, finish_leaves).chain(),
                    apply_link_results,
                )
                    .in_set(PersistenceSystems::ApplyResults),
            )
            .add_systems(
                PostUpdate,
                (
                    clear_just_loaded
                        .after(PersistenceSystems::MarkDirty)
                        .before(PersistenceSystems::Save),
                    queue_save_now.before(PersistenceSystems::MarkDirty),
                    (queue_links, send_links, flush_dirty, submit_priority_saves)
                        .chain()
                        .in_set(PersistenceSystems::Save),
                ),
            );
    }
}
