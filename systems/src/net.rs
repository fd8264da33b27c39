//! The bridge between client connections (tokio tasks in the `hearth` crate) and the ECS.
//!
//! Connection tasks send [`NetEvent`]s over a crossbeam channel; a `PreUpdate` system drains
//! it without waiting. The ECS answers through each connection's [`ClientOutbox`], a bounded
//! queue: a client that cannot keep up is disconnected, never waited for.
//!
//! The bridge knows sessions and bytes, not the game: a game's own requests arrive as
//! [`GameRequest`]s (decoded by the registry in the `game_messages` module, which builds on
//! this one) and are handed to the world as the game's messages; a game's pushes leave
//! through the same outboxes.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use bevy_app::{App, Plugin, PostUpdate, PreUpdate};
use bevy_ecs::prelude::*;
use bevy_ecs::resource::IsResource;
use crossbeam_channel::Receiver;
use hearth_components::protocol::{
    ClientMessage, ErrorCode, KickCode, RequestId, ResumeToken, ServerMessage,
};
use hearth_components::{
    JoinRefusal, JoinRefused, JoinRequest, LeaveRequest, OwnershipLost, PlayerId, PlayerJoined,
    PlayerLeft, SaveState,
};

use crate::persistence::{PersistentRegistry, SnapshotSource};
use crate::sessions::{Draining, SessionSystems};

/// The `kicked` reason of a player drained off this server: its save is durable and its
/// lease released, so it can log in on another server right away.
pub const DRAINED_KICK_REASON: &str =
    "this server is draining for maintenance; reconnect to continue, your progress is saved";

/// The message of the `draining` error a login gets during a drain.
pub const DRAINING_REFUSAL: &str =
    "this server is draining for maintenance; connect to another server";

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
    /// Messages queued and not yet written to the client: a sender of messages that
    /// supersede each other (snapshots) skips a client that still has some waiting.
    fn backlog(&self) -> usize {
        0
    }
    /// Whether the connection has ended, so nothing sent would be read: work queued for it
    /// (a login waiting for a worker) can be dropped undone.
    fn is_gone(&self) -> bool {
        false
    }
}

/// A decoded game message on its way to the world, type-erased for the trip: the front
/// door builds it with the game's registry, the bridge delivers it without knowing its type.
pub struct GameRequest {
    kind: &'static str,
    deliver: DeliverFn,
    message: Box<dyn Any + Send>,
    id: Option<RequestId>,
}

/// Writes a type-erased game message into the world, from a player's entity, with the
/// request id its answers echo.
pub(crate) type DeliverFn =
    fn(&mut World, PlayerId, Entity, Option<RequestId>, Box<dyn Any + Send>);

impl GameRequest {
    /// A message of type `kind`, which `deliver` knows how to write into the world.
    pub(crate) fn new(
        kind: &'static str,
        deliver: DeliverFn,
        message: Box<dyn Any + Send>,
    ) -> Self {
        Self {
            kind,
            deliver,
            message,
            id: None,
        }
    }

    /// The same request, answered with `id` (the client's request id, if it sent one).
    pub fn with_id(mut self, id: Option<RequestId>) -> Self {
        self.id = id;
        self
    }

    /// The message's `type`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Writes it into the world as a `FromClient` message from `player`'s `entity`.
    pub fn deliver(self, world: &mut World, player: PlayerId, entity: Entity) {
        (self.deliver)(world, player, entity, self.id, self.message);
    }
}

impl std::fmt::Debug for GameRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GameRequest({})", self.kind)
    }
}

/// What connection tasks and auth workers tell the ECS.
pub enum NetEvent {
    /// A client connected.
    Connected {
        conn: ConnId,
        outbox: Arc<dyn ClientOutbox>,
    },
    /// The client proved who it is (auth worker): join the world as this player. The resume
    /// token, already stored by the auth worker, goes out with `logged_in` if the join works;
    /// if it does not, `give_back` (a resume's) gives the client its presented token back.
    Authenticated {
        conn: ConnId,
        player: PlayerId,
        resume_token: Option<ResumeToken>,
        give_back: Option<ResumeGiveBack>,
    },
    /// A core request that needs the world (`logout`).
    Request {
        conn: ConnId,
        message: ClientMessage,
    },
    /// A game-defined request, decoded by the front door.
    Game { conn: ConnId, request: GameRequest },
    /// The connection closed (or was closed).
    Disconnected { conn: ConnId },
}

/// Undoes a granted resume whose join does not happen (refused: draining, a record that
/// cannot be loaded, storage unavailable; or the client gone before `logged_in`): the token
/// it presented works again, the fresh one it stored (never delivered) does not, and the
/// short lease it took is let go. A resume spends its token only together with a join, as
/// one that loses a race keeps it. Made by the account store; it never blocks (the tick
/// runs it), so a store that needs I/O queues the work and retries it.
pub struct ResumeGiveBack(Box<dyn FnOnce() + Send + Sync>);

impl ResumeGiveBack {
    /// Wraps the store's undo.
    pub fn new(undo: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self(Box::new(undo))
    }

    /// Gives the resume back.
    pub fn run(self) {
        (self.0)()
    }
}

impl std::fmt::Debug for ResumeGiveBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeGiveBack")
    }
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
    /// Its player leaves for another server ([`HandingOff`]); the connection's answer
    /// (`handoff`, or why not) comes from [`Connections::answer_handoff`].
    HandingOff(Entity),
}

/// Marks a player who leaves this server for another one (the zone it walked into, or the
/// zone its stored position is in). The bridge answers neither `logged_in` (for a join) nor
/// `logged_out`: the player leaves with a final save and [`HandoffDue`] names its connection,
/// whose answer the module handing it over sends with [`Connections::answer_handoff`].
#[derive(Component, Clone, Copy, Debug, Default)]
#[component(storage = "SparseSet")]
pub struct HandingOff;

/// A player marked [`HandingOff`] left (its final save is durable, its lease released): its
/// connection awaits the handoff's answer.
#[derive(Message, Clone, Copy, Debug)]
pub struct HandoffDue {
    pub conn: ConnId,
    pub player: PlayerId,
}

struct Connection {
    outbox: Arc<dyn ClientOutbox>,
    session: Session,
    /// The token for the `logged_in` of the join in progress.
    resume_token: Option<ResumeToken>,
    /// The join in progress came from a resume: run if the join does not happen.
    give_back: Option<ResumeGiveBack>,
}

/// Open connections and which player entity each one drives.
#[derive(Resource, Default)]
pub struct Connections {
    by_conn: HashMap<ConnId, Connection>,
    by_entity: HashMap<Entity, ConnId>,
    /// Connections told to close by a send through a shared reference ([`Connections::queue`]);
    /// the bridge forgets them, and their players leave, at its next run.
    overflowed: std::sync::Mutex<Vec<ConnId>>,
}

impl Connections {
    /// Queues a message for the player on `entity`, if it has a connection. A client whose
    /// queue is full is told to close (its connection ends, and its player leaves with a
    /// final save when the bridge hears of it). Returns whether it was queued. Used by
    /// `ToClients`, which only reads `Connections`, so game systems sending messages can run
    /// in parallel.
    pub fn queue(&self, entity: Entity, message: ServerMessage) -> bool {
        let Some(&conn) = self.by_entity.get(&entity) else {
            return false;
        };
        let queued = self.offer(conn, message);
        if !queued && self.by_conn.contains_key(&conn) {
            self.overflowed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
        queued
    }

    /// Answers the connection whose player was handed off ([`HandoffDue`]): `message` is the
    /// `handoff` (or the error saying why not), and the connection has no player after it.
    /// Returns whether it was queued (`false` for a connection gone meanwhile).
    pub fn answer_handoff(&mut self, conn: ConnId, message: ServerMessage) -> bool {
        let Some(connection) = self.by_conn.get_mut(&conn) else {
            return false;
        };
        if !matches!(connection.session, Session::HandingOff(_)) {
            return false;
        }
        connection.session = Session::Anonymous;
        if let Some(give_back) = connection.give_back.take()
            && !matches!(message, ServerMessage::Handoff { .. })
        {
            // A resume's join that could not be handed over: the client keeps its token (a
            // `handoff` brings a token of its own).
            give_back.run();
        }
        let queued = self.offer(conn, message);
        if !queued {
            self.by_conn.remove(&conn);
        }
        queued
    }

    /// The outbox of connection `conn` while it awaits a handoff's answer ([`HandoffDue`]):
    /// the module handing the player over answers from its own thread as soon as the store
    /// did, not a frame later, and the tick then notes it with
    /// [`Connections::handoff_answered`].
    pub fn handoff_outbox(&self, conn: ConnId) -> Option<Arc<dyn ClientOutbox>> {
        let connection = self.by_conn.get(&conn)?;
        matches!(connection.session, Session::HandingOff(_)).then(|| Arc::clone(&connection.outbox))
    }

    /// The handoff of `conn` was answered through [`Connections::handoff_outbox`]: the
    /// connection has no player after it.
    pub fn handoff_answered(&mut self, conn: ConnId) {
        if let Some(connection) = self.by_conn.get_mut(&conn)
            && matches!(connection.session, Session::HandingOff(_))
        {
            connection.session = Session::Anonymous;
            connection.give_back = None; // the `handoff` brought a token of its own
        }
    }

    /// Queues `message` on connection `conn`. A full queue closes the connection (the
    /// caller forgets it). Returns whether it was queued; `false` too for an unknown `conn`.
    fn offer(&self, conn: ConnId, message: ServerMessage) -> bool {
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
        false
    }

    /// Messages queued for the player on `entity` and not yet written; `None` without a
    /// connection.
    pub fn backlog(&self, entity: Entity) -> Option<usize> {
        let conn = self.by_entity.get(&entity)?;
        self.by_conn.get(conn).map(|c| c.outbox.backlog())
    }

    /// Whether the player on `entity` has a connection.
    pub fn is_connected(&self, entity: Entity) -> bool {
        self.by_entity.contains_key(&entity)
    }

    /// Entities of every player with a connection.
    pub fn players(&self) -> impl Iterator<Item = Entity> + '_ {
        self.by_entity.keys().copied()
    }

    /// Sends to a connection; a full queue disconnects the client. Returns whether it was
    /// queued.
    fn send(
        &mut self,
        conn: ConnId,
        message: ServerMessage,
        leaves: &mut MessageWriter<LeaveRequest>,
    ) -> bool {
        let queued = self.offer(conn, message);
        if !queued {
            self.drop_connection(conn, leaves);
        }
        queued
    }

    /// Connects `outbox` to the player already playing on `entity`, as connection `conn`:
    /// for test fixtures and embedders that bring their own transport. What the world sends
    /// the player (`ToClients`, kicks) then goes to `outbox`.
    pub fn attach(&mut self, conn: ConnId, entity: Entity, outbox: Arc<dyn ClientOutbox>) {
        self.by_conn.insert(
            conn,
            Connection {
                outbox,
                session: Session::Playing(entity),
                resume_token: None,
                give_back: None,
            },
        );
        self.by_entity.insert(entity, conn);
    }

    /// Forgets a connection; its player (if any) leaves with a final save.
    fn drop_connection(&mut self, conn: ConnId, leaves: &mut MessageWriter<LeaveRequest>) {
        let Some(connection) = self.by_conn.remove(&conn) else {
            return;
        };
        if let Some(give_back) = connection.give_back {
            // Gone before `logged_in`: the client never saw the fresh token.
            give_back.run();
        }
        if let Session::Playing(entity)
        | Session::LoggingOut(entity)
        | Session::HandingOff(entity) = connection.session
        {
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
    players: Query<&PlayerId>,
    mut joins: MessageWriter<JoinRequest>,
    mut leaves: MessageWriter<LeaveRequest>,
    mut commands: Commands,
) {
    let overflowed = std::mem::take(
        connections
            .overflowed
            .get_mut()
            .unwrap_or_else(|p| p.into_inner()),
    );
    for conn in overflowed {
        connections.drop_connection(conn, &mut leaves);
    }
    for event in inbox.0.try_iter() {
        match event {
            NetEvent::Connected { conn, outbox } => {
                connections.by_conn.insert(
                    conn,
                    Connection {
                        outbox,
                        session: Session::Anonymous,
                        resume_token: None,
                        give_back: None,
                    },
                );
            }
            NetEvent::Authenticated {
                conn,
                player,
                resume_token,
                give_back,
            } => match connections.by_conn.get_mut(&conn) {
                Some(connection) if connection.session == Session::Anonymous => {
                    connection.session = Session::Joining(player);
                    connection.resume_token = resume_token;
                    connection.give_back = give_back;
                    joins.write(JoinRequest {
                        player,
                        origin: conn,
                    });
                }
                _ => give_back.into_iter().for_each(ResumeGiveBack::run),
            },
            NetEvent::Request { conn, message } => {
                let session = connections.by_conn.get(&conn).map(|c| c.session);
                match (message, session) {
                    (_, None) => {}
                    (ClientMessage::Logout {}, Some(Session::Playing(entity))) => {
                        if let Some(c) = connections.by_conn.get_mut(&conn) {
                            c.session = Session::LoggingOut(entity);
                        }
                        leaves.write(LeaveRequest {
                            entity,
                            origin: conn,
                        });
                    }
                    (ClientMessage::Logout {}, Some(_)) => {
                        let error = ServerMessage::error(ErrorCode::NotLoggedIn, "log in first");
                        connections.send(conn, error, &mut leaves);
                    }
                    (other, Some(_)) => {
                        tracing::debug!(conn, ?other, "request not meant for the world")
                    }
                }
            }
            NetEvent::Game { conn, request } => {
                let session = connections.by_conn.get(&conn).map(|c| c.session);
                match session {
                    None => {}
                    Some(Session::Playing(entity)) => {
                        // Handed over only while the sender plays on this entity: a request
                        // of a player who left meanwhile is dropped here, never delivered to
                        // another entity.
                        if let Ok(&player) = players.get(entity) {
                            commands.queue(move |world: &mut World| {
                                request.deliver(world, player, entity);
                            });
                        }
                    }
                    Some(_) => {
                        let error = ServerMessage::error(
                            ErrorCode::NotLoggedIn,
                            format!("log in first ({} needs a player)", request.kind()),
                        );
                        connections.send(conn, error, &mut leaves);
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
    mut lost: MessageReader<OwnershipLost>,
    mut leaves: MessageWriter<LeaveRequest>,
    (handing_off, new_handoffs): (
        Query<(), With<HandingOff>>,
        Query<Entity, Added<HandingOff>>,
    ),
    mut handoffs_due: MessageWriter<HandoffDue>,
    draining: Option<Res<Draining>>,
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
        if handing_off.contains(j.entity) {
            // Its place is on another server: no `logged_in` here, it leaves at once.
            if let Some(c) = connections.by_conn.get_mut(&conn) {
                c.session = Session::HandingOff(j.entity);
                c.resume_token = None;
            }
            connections.by_entity.insert(j.entity, conn);
            leaves.write(LeaveRequest {
                entity: j.entity,
                origin: conn,
            });
            continue;
        }
        let Ok((player, save, source)) = players.get(j.entity) else {
            continue;
        };
        let state = registry
            .snapshot(*player, save.seq, &source)
            .sections_json();
        let mut resume_token = None;
        if let Some(c) = connections.by_conn.get_mut(&conn) {
            c.session = Session::Playing(j.entity);
            resume_token = c.resume_token.take();
            c.give_back = None; // the join happened: the exchange stands
        }
        connections.by_entity.insert(j.entity, conn);
        connections.send(
            conn,
            ServerMessage::LoggedIn {
                player_id: player.0,
                state,
                resume_token,
            },
            &mut leaves,
        );
    }
    for entity in &new_handoffs {
        if let Some(&conn) = connections.by_entity.get(&entity)
            && let Some(c) = connections.by_conn.get_mut(&conn)
            && c.session == Session::Playing(entity)
        {
            c.session = Session::HandingOff(entity);
            leaves.write(LeaveRequest {
                entity,
                origin: conn,
            });
        }
    }
    for r in refused.read() {
        let Some(c) = connections.by_conn.get_mut(&r.origin) else {
            continue;
        };
        if c.session != Session::Joining(r.player) {
            continue;
        }
        c.session = Session::Anonymous;
        c.resume_token = None;
        if let Some(give_back) = c.give_back.take() {
            give_back.run();
        }
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
            JoinRefusal::Draining => (ErrorCode::Draining, DRAINING_REFUSAL.to_string()),
        };
        connections.send(r.origin, ServerMessage::error(code, message), &mut leaves);
    }
    for l in left.read() {
        if let Some(c) = connections.by_conn.get_mut(&l.origin)
            && c.session == Session::HandingOff(l.entity)
        {
            connections.by_entity.remove(&l.entity);
            handoffs_due.write(HandoffDue {
                conn: l.origin,
                player: l.player,
            });
        } else if let Some(c) = connections.by_conn.get_mut(&l.origin)
            && let Session::LoggingOut(entity) = c.session
        {
            c.session = Session::Anonymous;
            connections.by_entity.remove(&entity);
            connections.send(l.origin, ServerMessage::LoggedOut {}, &mut leaves);
        } else if let Some(conn) = connections.by_entity.remove(&l.entity)
            && let Some(c) = connections.by_conn.get_mut(&conn)
        {
            // The server ended the session (shutdown or drain): say so once the save is
            // durable and the lease released, so the client can log in elsewhere at once.
            c.session = Session::Anonymous;
            let (code, reason) = if draining.is_some() {
                (KickCode::Drain, DRAINED_KICK_REASON)
            } else {
                (
                    KickCode::Shutdown,
                    "the server is shutting down; your progress is saved",
                )
            };
            c.outbox.send(ServerMessage::kicked(code, reason)).ok();
            c.outbox.close();
        }
    }
    for l in lost.read() {
        if let Some(conn) = connections.by_entity.remove(&l.entity)
            && let Some(c) = connections.by_conn.get_mut(&conn)
        {
            c.session = Session::Anonymous;
            let reason = "your session was taken over by another server";
            c.outbox
                .send(ServerMessage::kicked(KickCode::Takeover, reason))
                .ok();
            c.outbox.close();
        }
    }
}

/// Ordering points of the bridge, one per schedule it runs in. A game's systems that read
/// client messages run after [`NetSystems::Receive`]; a player appears to `ToClients` once
/// [`NetSystems::Send`] has sent its `logged_in`.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetSystems {
    /// `PreUpdate`: client events handed to the world (joins and leaves requested, game
    /// requests written as `FromClient<T>`), after sessions applied store results.
    Receive,
    /// `PostUpdate`: the lifecycle answered (`logged_in`, `logged_out`, kicks, refusals),
    /// before sessions send their requests.
    Send,
}

/// Connects client connections to the world. Needs a [`NetInbox`] resource.
pub struct NetBridgePlugin;

impl Plugin for NetBridgePlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Connections>()
            .add_message::<HandoffDue>()
            .add_systems(
                PreUpdate,
                receive_net_events
                    .in_set(NetSystems::Receive)
                    .after(SessionSystems::ApplyResults),
            )
            .add_systems(
                PostUpdate,
                answer_lifecycle
                    .in_set(NetSystems::Send)
                    .before(SessionSystems::Requests),
            );
    }
}
