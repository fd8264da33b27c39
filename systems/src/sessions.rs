//! Session leases: joining (claim + load + spawn), leaving (final save + release), the
//! refresh of every lease once per interval, paced in slices like the flush, and losing a
//! lease to another server.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use bevy_app::{App, Plugin, PostUpdate, PreUpdate};
use bevy_ecs::lifecycle::{Add, Remove};
use bevy_ecs::observer::On;
use bevy_ecs::prelude::*;
use bevy_time::{Real, Time, Timer, TimerMode};
use hearth_components::{
    JoinRefusal, JoinRefused, JoinRequest, JustLoaded, LeaveRequest, Leaving, OwnershipLost,
    PlayerId, PlayerJoined, SaveNowPending, SaveState, SessionOwner, UnknownSections,
};

use crate::persistence::{PersistenceSystems, PersistentRegistry};
use crate::storage::{
    JoinCompleted, LeaseItem, RefreshOutcome, RefreshesCompleted, StoreJob, StorePort,
};

/// Ordering points of the session lifecycle.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum SessionSystems {
    /// `PreUpdate`: spawn joined players, apply refresh results.
    ApplyResults,
    /// `PostUpdate`: send joins, start leaves, refresh leases.
    Requests,
}

/// Players on this server by id, including those whose join is still in flight.
#[derive(Resource, Default, Debug)]
pub struct OnlinePlayers {
    entities: HashMap<PlayerId, Entity>,
    joining: HashSet<PlayerId>,
}

impl OnlinePlayers {
    /// The entity of an online player.
    pub fn entity(&self, player: PlayerId) -> Option<Entity> {
        self.entities.get(&player).copied()
    }

    /// Whether the player is online or joining here.
    pub fn is_present(&self, player: PlayerId) -> bool {
        self.entities.contains_key(&player) || self.joining.contains(&player)
    }

    /// Number of spawned players.
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// Whether no player is spawned.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }
}

/// How often a slice of leases is refreshed (or a tenth of the refresh interval, if
/// shorter): the same pace as the flush's slices, so no frame refreshes everyone.
pub const REFRESH_SLICE: Duration = Duration::from_millis(100);

/// The lease refresh, paced: every player's lease is refreshed once per `interval`, a slice
/// of them every [`REFRESH_SLICE`], half a slice after the flush's slices so the two seldom
/// share a frame. At 10,000 players and 20 s that is 50 leases a slice instead of 10,000 in
/// one frame. One slice is in flight at a time; leases owed while the store is slow go in
/// the next slice, so every lease is still refreshed about once per interval.
#[derive(Resource)]
pub struct LeaseRefreshSchedule {
    interval: Duration,
    slice_timer: Timer,
    /// Players in refresh order: a slice takes from the front and puts them at the back; a
    /// joined player goes to the back (its claim just set its lease).
    order: VecDeque<Entity>,
    /// Players owed a refresh, times `interval` in nanoseconds (`players × elapsed`
    /// accrues, a slice takes whole players): exact, whatever the frame rate.
    owed: u128,
    in_flight: Option<u64>,
    next_batch: u64,
    /// The most leases one slice sent (benches print it).
    pub largest_slice: usize,
}

impl LeaseRefreshSchedule {
    /// Refresh every lease once per `interval`, in slices.
    pub fn new(interval: Duration) -> Self {
        let interval = interval.max(Duration::from_millis(1));
        let slice = REFRESH_SLICE
            .min(interval / 10)
            .max(Duration::from_micros(1));
        let mut slice_timer = Timer::new(slice, TimerMode::Repeating);
        // Half a slice ahead of the flush's timer: its slices fall between the flush's.
        slice_timer.set_elapsed(slice / 2);
        Self {
            interval,
            slice_timer,
            order: VecDeque::new(),
            owed: 0,
            in_flight: None,
            next_batch: 1,
            largest_slice: 0,
        }
    }
}

/// Present once the server is shutting down: new joins are refused.
#[derive(Resource, Debug, Default)]
pub struct ShuttingDown;

/// Present while the server drains for a rolling deploy (a shutdown whose players move to
/// other servers): joins are refused with [`JoinRefusal::Draining`] and players who leave
/// are told to reconnect, so clients know to go elsewhere rather than retry here.
#[derive(Resource, Debug, Default)]
pub struct Draining;

/// Join requests waiting for the store, by ticket.
#[derive(Resource, Default)]
struct PendingJoins {
    by_ticket: HashMap<u64, u64>,
    next_ticket: u64,
}

fn index_player_added(
    add: On<Add<PlayerId>>,
    ids: Query<&PlayerId>,
    mut online: ResMut<OnlinePlayers>,
) {
    if let Ok(id) = ids.get(add.entity) {
        online.entities.insert(*id, add.entity);
    }
}

fn index_player_removed(
    remove: On<Remove<PlayerId>>,
    ids: Query<&PlayerId>,
    mut online: ResMut<OnlinePlayers>,
) {
    if let Ok(id) = ids.get(remove.entity)
        && online.entities.get(id) == Some(&remove.entity)
    {
        online.entities.remove(id);
    }
}

/// Sends a claim-and-load for each join request, refusing players already present here.
fn request_joins(
    mut requests: MessageReader<JoinRequest>,
    mut online: ResMut<OnlinePlayers>,
    mut pending: ResMut<PendingJoins>,
    port: Res<StorePort>,
    (shutting_down, draining): (Option<Res<ShuttingDown>>, Option<Res<Draining>>),
    mut refused: MessageWriter<JoinRefused>,
) {
    for request in requests.read() {
        if draining.is_some() || shutting_down.is_some() {
            let reason = if draining.is_some() {
                JoinRefusal::Draining
            } else {
                JoinRefusal::Unavailable("the server is shutting down".into())
            };
            // A resume took the player's lease for this server with its token (resume.lua):
            // give it back at once, so the player can log in elsewhere now, not when that
            // short lease lapses. Only ours is deleted, and never that of a player here.
            if !online.is_present(request.player) {
                port.submit(StoreJob::Release {
                    player: request.player,
                });
            }
            refused.write(JoinRefused {
                player: request.player,
                origin: request.origin,
                reason,
            });
            continue;
        }
        if online.is_present(request.player) {
            refused.write(JoinRefused {
                player: request.player,
                origin: request.origin,
                reason: JoinRefusal::AlreadyOnline {
                    owner: port.info().lease_owner,
                },
            });
            continue;
        }
        online.joining.insert(request.player);
        pending.next_ticket += 1;
        let ticket = pending.next_ticket;
        pending.by_ticket.insert(ticket, request.origin);
        port.submit(StoreJob::Join {
            ticket,
            player: request.player,
        });
    }
}

/// Spawns players whose lease was claimed, restoring every registered section.
#[allow(clippy::too_many_arguments)]
fn spawn_joined_players(
    time: Res<Time<Real>>,
    registry: Res<PersistentRegistry>,
    port: Res<StorePort>,
    mut completed: MessageReader<JoinCompleted>,
    mut online: ResMut<OnlinePlayers>,
    mut pending: ResMut<PendingJoins>,
    mut joined: MessageWriter<PlayerJoined>,
    mut refused: MessageWriter<JoinRefused>,
    mut commands: Commands,
) {
    for done in completed.read() {
        online.joining.remove(&done.player);
        let origin = pending.by_ticket.remove(&done.ticket).unwrap_or_default();
        let grant = match &done.result {
            Ok(grant) => grant,
            Err(reason) => {
                if let JoinRefusal::BadRecord(why) = reason {
                    tracing::error!(player = %done.player, reason = %why, "stored record cannot be loaded; join refused, record left untouched, lease released");
                }
                refused.write(JoinRefused {
                    player: done.player,
                    origin,
                    reason: reason.clone(),
                });
                continue;
            }
        };
        let loaded_seq = grant.record.as_ref().map_or(0, |r| r.seq);
        let mut entity = commands.spawn((
            done.player,
            SaveState {
                seq: loaded_seq,
                stored: loaded_seq,
                in_flight: None,
            },
            SessionOwner {
                lease_key: grant.lease_key.clone(),
                owner: port.info().lease_owner,
                last_refresh: time.elapsed(),
            },
            JustLoaded,
        ));
        let mut unknown = UnknownSections::default();
        let mut failure = None;
        for (name, value) in grant.record.iter().flat_map(|r| r.sections.iter()) {
            match registry.get(name) {
                Some(section) => {
                    if let Err(reason) = section.restore(&mut entity, value) {
                        failure = Some(reason.to_string());
                        break;
                    }
                }
                None => {
                    unknown.0.insert(name.clone(), value.clone());
                }
            }
        }
        if let Some(reason) = failure {
            tracing::error!(player = %done.player, %reason, "stored record does not fit this build; join refused, record left untouched");
            entity.despawn();
            port.submit(StoreJob::Release {
                player: done.player,
            });
            refused.write(JoinRefused {
                player: done.player,
                origin,
                reason: JoinRefusal::BadRecord(reason),
            });
            continue;
        }
        if !unknown.0.is_empty() {
            entity.insert(unknown);
        }
        joined.write(PlayerJoined {
            entity: entity.id(),
            player: done.player,
            origin,
        });
    }
}

/// Starts a leave: the final save (with release) is sent by persistence once nothing else
/// is in flight; the entity is despawned when a final save is durable and nothing changed
/// after its snapshot (see `persistence::finish_leaves`).
fn start_leaves(
    mut requests: MessageReader<LeaveRequest>,
    players: Query<(), (With<PlayerId>, Without<Leaving>)>,
    mut commands: Commands,
) {
    for request in requests.read() {
        if players.contains(request.entity) {
            commands.entity(request.entity).insert(Leaving {
                origin: request.origin,
                ..Leaving::default()
            });
        }
    }
}

/// Refreshes a slice of the leases every [`REFRESH_SLICE`] so each is refreshed once per
/// interval, never two slices at once.
fn refresh_leases(
    time: Res<Time<Real>>,
    mut schedule: ResMut<LeaseRefreshSchedule>,
    port: Res<StorePort>,
    joined: Query<Entity, Added<SessionOwner>>,
    players: Query<&PlayerId, With<SessionOwner>>,
) {
    let schedule = &mut *schedule;
    schedule.order.extend(joined.iter());
    let online = players.iter().len();
    let interval = schedule.interval.as_nanos();
    // Owed leases wait for the slice timer, and for the slice in flight; never more than
    // one refresh per player is owed.
    schedule.owed =
        (schedule.owed + online as u128 * time.delta().as_nanos()).min(online as u128 * interval);
    schedule.slice_timer.tick(time.delta());
    if !schedule.slice_timer.just_finished() || schedule.in_flight.is_some() {
        return;
    }
    let mut count = usize::try_from(schedule.owed / interval).unwrap_or(usize::MAX);
    schedule.owed -= count as u128 * interval;
    let mut leases = Vec::with_capacity(count.min(online));
    // Each player at most once a slice; entities gone (left, despawned) drop out.
    let mut looked = 0;
    let queued = schedule.order.len();
    while count > 0 && looked < queued {
        let Some(entity) = schedule.order.pop_front() else {
            break;
        };
        looked += 1;
        if let Ok(player) = players.get(entity) {
            leases.push(LeaseItem {
                entity,
                player: *player,
            });
            schedule.order.push_back(entity);
            count -= 1;
        }
    }
    if leases.is_empty() {
        return;
    }
    schedule.largest_slice = schedule.largest_slice.max(leases.len());
    let batch = schedule.next_batch;
    schedule.next_batch += 1;
    schedule.in_flight = Some(batch);
    port.submit(StoreJob::Refresh { batch, leases });
}

/// Applies refresh results: confirmed leases get a new timestamp. A lease found gone or
/// owned by someone else does not drop the player yet: an immediate save decides (unless a
/// final save is deciding already). The save re-claims a lease that merely expired if nobody
/// has written the player since, and otherwise comes back lost, which drops the player.
fn apply_refresh_results(
    time: Res<Time<Real>>,
    mut schedule: ResMut<LeaseRefreshSchedule>,
    mut completed: MessageReader<RefreshesCompleted>,
    mut players: Query<(
        &PlayerId,
        &mut SessionOwner,
        Has<Leaving>,
        Has<SaveNowPending>,
    )>,
    mut commands: Commands,
) {
    for done in completed.read() {
        if schedule.in_flight == Some(done.batch) {
            schedule.in_flight = None;
        }
        for result in &done.results {
            let Ok((player, mut owner, leaving, save_pending)) = players.get_mut(result.entity)
            else {
                continue;
            };
            if *player != result.player {
                continue;
            }
            match result.outcome {
                RefreshOutcome::Refreshed => owner.last_refresh = time.elapsed(),
                RefreshOutcome::LeaseLost if !leaving && !save_pending => {
                    tracing::warn!(player = %player, "lease expired or taken; saving now, which re-claims it only if nobody else has written the player");
                    commands.entity(result.entity).try_insert(SaveNowPending {
                        tags: Vec::new(),
                        retry_at: Duration::ZERO,
                    });
                }
                RefreshOutcome::LeaseLost | RefreshOutcome::Failed(_) => {}
            }
        }
    }
}

/// Joining, leaving and keeping session leases alive.
#[derive(Clone, Debug)]
pub struct SessionPlugin {
    /// How often every lease is refreshed (the `lease_refresh_interval` key); well below the
    /// store's `lease_ttl`.
    pub lease_refresh_interval: Duration,
}

impl Default for SessionPlugin {
    fn default() -> Self {
        Self {
            lease_refresh_interval: Duration::from_secs(20),
        }
    }
}

impl Plugin for SessionPlugin {
    fn build(&self, app: &mut App) {
        let interval = self.lease_refresh_interval;
        app.init_resource::<OnlinePlayers>()
            .init_resource::<PendingJoins>()
            .insert_resource(LeaseRefreshSchedule::new(interval))
            .add_message::<JoinRequest>()
            .add_message::<PlayerJoined>()
            .add_message::<JoinRefused>()
            .add_message::<LeaveRequest>()
            .add_message::<OwnershipLost>()
            .add_observer(index_player_added)
            .add_observer(index_player_removed)
            .configure_sets(
                PreUpdate,
                SessionSystems::ApplyResults.after(crate::storage::DrainStoreCompletions),
            )
            .configure_sets(
                PostUpdate,
                SessionSystems::Requests.before(PersistenceSystems::MarkDirty),
            )
            .add_systems(
                PreUpdate,
                (spawn_joined_players, apply_refresh_results).in_set(SessionSystems::ApplyResults),
            )
            .add_systems(
                PostUpdate,
                (request_joins, start_leaves, refresh_leases).in_set(SessionSystems::Requests),
            );
    }
}

/// Shutdown: refuses new joins and starts a leave for every player (each gets a final save
/// that releases its lease). Call it every frame of the shutdown, so players whose join was
/// already in flight leave too. Returns how many players are still here or joining.
pub fn leave_everyone(world: &mut World) -> usize {
    world.insert_resource(ShuttingDown);
    let players: Vec<Entity> = world
        .query_filtered::<Entity, (With<PlayerId>, Without<Leaving>)>()
        .iter(world)
        .collect();
    for entity in players {
        world.entity_mut(entity).insert(Leaving::default());
    }
    let online = world.resource::<OnlinePlayers>();
    online.entities.len() + online.joining.len()
}
