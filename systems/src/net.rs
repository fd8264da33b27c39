//! The bridge between client connections (tokio tasks in the `hearth` crate) and the ECS.
//!
//! Connection tasks send [`NetEvent`]s over a crossbeam channel; a `PreUpdate` system drains
//! it without waiting. The ECS answers through each connection's [`ClientOutbox`], a bounded
//! queue: a client that cannot keep up is disconnected, never waited for.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bevy_app::{App, Plugin, PostUpdate, PreUpdate};
use bevy_ecs::prelude::*;
use bevy_ecs::resource::IsResource;
use bevy_time::{Real, Time, Timer, TimerMode};
use crossbeam_channel::Receiver;
use hearth_components::protocol::{ClientMessage, ErrorCode, ServerMessage, SnapshotEntry};
use hearth_components::{
    JoinRefusal, JoinRefused, JoinRequest, LeaveRequest, OwnershipLost, PlayerId, PlayerJoined,
    PlayerLeft, Position, SaveState, SavedNow,
};

use crate::gameplay::{GameTick, MoveIntent, WORLD_HALF_EXTENT};
use crate::persistence::{PersistentRegistry, SnapshotSource};
use crate::sessions::SessionSystems;
use crate::spatial::SpatialGrid;

/// Snapshots per second sent to each player.
pub const SNAPSHOT_HZ: f64 = 20.0;
/// Players within this distance appear in a snapshot.
pub const VIEW_RADIUS: f32 = 50.0;
/// Most players listed in one snapshot.
pub const SNAPSHOT_LIMIT: usize = 64;

/// Id of a client connection, unique for the process lifetime.
pub type ConnId = u64;

/// A message could not be queued: the client's queue is full (too slow) or it is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("client queue full or closed")]
pub struct OutboxClosed;

/// Where the ECS queues messages for one client.
pub trait ClientOutbox: Send + Sync + 'static {
    /// Queues a message without waiting.
    fn send(&self, message: ServerMessage) -> Result<(), OutboxClosed>;
    /// Closes the connection once the queued messages are written.
    fn close(&self);
}

/// What connection tasks and auth workers tell the ECS.
pub enum NetEvent {
    /// A client connected.
    Connected {
        conn: ConnId,
        outbox: Arc<dyn ClientOutbox>,
    },
    /// The client proved who it is (auth worker): join the world as this player.
    Authenticated { conn: ConnId, player: PlayerId },
    /// A request that needs the world (`move`, `logout`).
    Request {
        conn: ConnId,
        message: ClientMessage,
    },
    /// The connection closed (or was closed).
    Disconnected { conn: ConnId },
}

/// The receiving end of the connections' channel.
#[derive(Resource)]
pub struct NetInbox(pub Receiver<NetEvent>);

/// Where a connection's player stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Session {
    Anonymous,
    Joining(PlayerId),
    Playing(Entity),
    LoggingOut(Entity),
}

struct Connection {
    outbox: Arc<dyn ClientOutbox>,
    session: Session,
}

/// Open connections and which player entity each one drives.
#[derive(Resource, Default)]
pub struct Connections {
    by_conn: HashMap<ConnId, Connection>,
    by_entity: HashMap<Entity, ConnId>,
}

impl Connections {
    /// Sends to a connection; a full queue disconnects the client. Returns whether it was
    /// queued.
    fn send(
        &mut self,
        conn: ConnId,
        message: ServerMessage,
        leaves: &mut MessageWriter<LeaveRequest>,
    ) -> bool {
        let Some(connection) = self.by_conn.get(&conn) else {
            return false;
        };
        if connection.outbox.send(message).is_ok() {
            return true;
        }
        tracing::info!(
            conn,
            "client cannot keep up (outbound queue full); disconnecting it"
        );
        connection.outbox.close();
        self.drop_connection(conn, leaves);
        false
    }

    /// Forgets a connection; its player (if any) leaves with a final save.
    fn drop_connection(&mut self, conn: ConnId, leaves: &mut MessageWriter<LeaveRequest>) {
        let Some(connection) = self.by_conn.remove(&conn) else {
            return;
        };
        if let Session::Playing(entity) | Session::LoggingOut(entity) = connection.session {
            self.by_entity.remove(&entity);
            if let Session::Playing(entity) = connection.session {
                leaves.write(LeaveRequest {
                    entity,
                    origin: conn,
                });
            }
        }
    }
}

/// Drains connection events into the world.
fn receive_net_events(
    inbox: Res<NetInbox>,
    mut connections: ResMut<Connections>,
    mut joins: MessageWriter<JoinRequest>,
    mut leaves: MessageWriter<LeaveRequest>,
    mut commands: Commands,
) {
    for event in inbox.0.try_iter() {
        match event {
            NetEvent::Connected { conn, outbox } => {
                connections.by_conn.insert(
                    conn,
                    Connection {
                        outbox,
                        session: Session::Anonymous,
                    },
                );
            }
            NetEvent::Authenticated { conn, player } => {
                let Some(connection) = connections.by_conn.get_mut(&conn) else {
                    continue;
                };
                if connection.session == Session::Anonymous {
                    connection.session = Session::Joining(player);
                    joins.write(JoinRequest {
                        player,
                        origin: conn,
                    });
                }
            }
            NetEvent::Request { conn, message } => {
                let session = connections.by_conn.get(&conn).map(|c| c.session);
                match (message, session) {
                    (_, None) => {}
                    (ClientMessage::Move { dx, dy }, Some(Session::Playing(entity))) => {
                        if let Some(intent) = MoveIntent::new(dx, dy) {
                            commands.entity(entity).try_insert(intent);
                        }
                    }
                    (ClientMessage::Logout {}, Some(Session::Playing(entity))) => {
                        if let Some(c) = connections.by_conn.get_mut(&conn) {
                            c.session = Session::LoggingOut(entity);
                        }
                        leaves.write(LeaveRequest {
                            entity,
                            origin: conn,
                        });
                    }
                    (ClientMessage::Move { .. } | ClientMessage::Logout {}, Some(_)) => {
                        let error = ServerMessage::error(ErrorCode::NotLoggedIn, "log in first");
                        connections.send(conn, error, &mut leaves);
                    }
                    (other, Some(_)) => {
                        tracing::debug!(conn, ?other, "request not meant for the world")
                    }
                }
            }
            NetEvent::Disconnected { conn } => connections.drop_connection(conn, &mut leaves),
        }
    }
}

/// Answers the lifecycle: logged in (with state), refused, logged out, level-ups, kicks.
#[allow(clippy::too_many_arguments)]
fn answer_lifecycle(
    mut connections: ResMut<Connections>,
    registry: Res<PersistentRegistry>,
    players: Query<(&PlayerId, &SaveState, SnapshotSource), Without<IsResource>>,
    mut joined: MessageReader<PlayerJoined>,
    mut refused: MessageReader<JoinRefused>,
    mut left: MessageReader<PlayerLeft>,
    mut saved: MessageReader<SavedNow>,
    mut lost: MessageReader<OwnershipLost>,
    mut leaves: MessageWriter<LeaveRequest>,
) {
    for j in joined.read() {
        let conn = j.origin;
        let waiting = connections
            .by_conn
            .get(&conn)
            .is_some_and(|c| c.session == Session::Joining(j.player));
        if !waiting {
            leaves.write(LeaveRequest {
                entity: j.entity,
                origin: conn,
            }); // client gone meanwhile
            continue;
        }
        let Ok((player, save, source)) = players.get(j.entity) else {
            continue;
        };
        let state = registry
            .snapshot(*player, save.seq, &source)
            .sections_json();
        if let Some(c) = connections.by_conn.get_mut(&conn) {
            c.session = Session::Playing(j.entity);
        }
        connections.by_entity.insert(j.entity, conn);
        connections.send(
            conn,
            ServerMessage::LoggedIn {
                player_id: player.0,
                state,
            },
            &mut leaves,
        );
    }
    for r in refused.read() {
        let Some(c) = connections.by_conn.get_mut(&r.origin) else {
            continue;
        };
        if c.session != Session::Joining(r.player) {
            continue;
        }
        c.session = Session::Anonymous;
        let (code, message) = match &r.reason {
            JoinRefusal::AlreadyOnline { .. } => (
                ErrorCode::AlreadyOnline,
                "this player is already online".to_string(),
            ),
            JoinRefusal::Unavailable(_) => (
                ErrorCode::Unavailable,
                "storage is unavailable; try again".to_string(),
            ),
            JoinRefusal::BadRecord(_) => (
                ErrorCode::Unavailable,
                "this player's record cannot be loaded".to_string(),
            ),
        };
        connections.send(r.origin, ServerMessage::error(code, message), &mut leaves);
    }
    for l in left.read() {
        if let Some(c) = connections.by_conn.get_mut(&l.origin)
            && let Session::LoggingOut(entity) = c.session
        {
            c.session = Session::Anonymous;
            connections.by_entity.remove(&entity);
            connections.send(l.origin, ServerMessage::LoggedOut {}, &mut leaves);
        } else if let Some(conn) = connections.by_entity.remove(&l.entity)
            && let Some(c) = connections.by_conn.get_mut(&conn)
        {
            // The server ended the session (shutdown): say so once the save is durable.
            c.session = Session::Anonymous;
            let reason = "the server is shutting down; your progress is saved".to_string();
            c.outbox.send(ServerMessage::Kicked { reason }).ok();
            c.outbox.close();
        }
    }
    for s in saved.read() {
        if let Some(&conn) = connections.by_entity.get(&s.entity) {
            let level = u32::try_from(s.tag).unwrap_or(u32::MAX);
            connections.send(conn, ServerMessage::LevelUp { level }, &mut leaves);
        }
    }
    for l in lost.read() {
        if let Some(conn) = connections.by_entity.remove(&l.entity)
            && let Some(c) = connections.by_conn.get_mut(&conn)
        {
            c.session = Session::Anonymous;
            let reason = "your session was taken over by another server".to_string();
            c.outbox.send(ServerMessage::Kicked { reason }).ok();
            c.outbox.close();
        }
    }
}

/// The snapshot timer and a reusable spatial grid.
#[derive(Resource)]
struct SnapshotState {
    timer: Timer,
    grid: SpatialGrid<u64>,
    near: Vec<(f32, f32, u64)>,
}

/// Sends each player the players near it, at [`SNAPSHOT_HZ`].
fn send_snapshots(
    time: Res<Time<Real>>,
    tick: Res<GameTick>,
    mut state: ResMut<SnapshotState>,
    mut connections: ResMut<Connections>,
    players: Query<(Entity, &PlayerId, &Position)>,
    mut leaves: MessageWriter<LeaveRequest>,
) {
    state.timer.tick(time.delta());
    if !state.timer.just_finished() || connections.by_entity.is_empty() {
        return;
    }
    let SnapshotState { grid, near, .. } = &mut *state;
    grid.clear();
    for (_, id, p) in &players {
        grid.insert(p.x, p.y, id.0);
    }
    let recipients: Vec<(Entity, ConnId)> = connections
        .by_entity
        .iter()
        .map(|(e, c)| (*e, *c))
        .collect();
    for (entity, conn) in recipients {
        let Ok((_, _, p)) = players.get(entity) else {
            continue;
        };
        grid.near(p.x, p.y, VIEW_RADIUS, SNAPSHOT_LIMIT, near);
        let players = near
            .iter()
            .map(|&(x, y, id)| SnapshotEntry { id, x, y })
            .collect();
        connections.send(
            conn,
            ServerMessage::Snapshot {
                tick: tick.0,
                players,
            },
            &mut leaves,
        );
    }
}

/// Ordering point of the bridge (`PreUpdate`, before sessions apply store results).
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetSystems;

/// Connects client connections to the world. Needs a [`NetInbox`] resource.
pub struct NetBridgePlugin;

impl Plugin for NetBridgePlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Connections>()
            .insert_resource(SnapshotState {
                timer: Timer::new(
                    Duration::from_secs_f64(1.0 / SNAPSHOT_HZ),
                    TimerMode::Repeating,
                ),
                grid: SpatialGrid::new(VIEW_RADIUS, WORLD_HALF_EXTENT),
                near: Vec::new(),
            })
            .add_systems(
                PreUpdate,
                receive_net_events
                    .in_set(NetSystems)
                    .after(SessionSystems::ApplyResults),
            )
            .add_systems(
                PostUpdate,
                (answer_lifecycle, send_snapshots)
                    .chain()
                    .before(SessionSystems::Requests),
            );
    }
}
