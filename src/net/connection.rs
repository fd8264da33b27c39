//! One client connection: reads messages in the encoding the client chose (newline-delimited
//! JSON or binary frames, see [`super::encoding`]), answers what it can itself (`ping`,
//! protocol errors), sends auth work to the auth queue and world work to the ECS, writes
//! whatever the ECS or auth workers queue for it, and composes its player's replication
//! updates from each new round ([`super::replica`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_channel::Sender;
use hearth_components::PlayerId;
use hearth_components::protocol::CORE_CLIENT_MESSAGES;
use hearth_components::protocol::{
    ClientMessage, ErrorCode, KickCode, MAX_LINE_BYTES, RequestId, ServerMessage,
};
use hearth_components::wire::WireError;
use hearth_systems::ReplicationFeed;
use hearth_systems::game_messages::{ClientMessageTypes, DecodeError};
use hearth_systems::net::{ClientOutbox, ConnId, DRAINING_REFUSAL, NetEvent, OutboxClosed};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::admission::RegistrationLimit;
use super::auth::{AuthQueue, AuthRequest};
use super::encoding::{Encoding, IncomingError};
use super::replica::Replica;
use super::resume::OnlinePlayers;
use super::stats::NetStats;
use super::transport::{Outgoing, Received, Transport, TransportKind};

/// The `kicked` reason of a connection without a player when the server shuts down.
pub const SHUTTING_DOWN: &str = "the server is shutting down";

/// Messages queued for one client before it counts as too slow and is disconnected.
pub const CLIENT_QUEUE: usize = 256;
/// A write the client does not accept within this time closes the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closing connection keeps discarding what the client still sends, so the close
/// does not reset the connection before the client reads the last message.
pub(super) const LINGER: Duration = Duration::from_millis(500);

/// Messages one connection may send per second (and in one burst) before the excess is
/// refused with `rate_limited`: twice the default tick rate, so a client moving every frame
/// never meets it, while a flooding one costs the ECS no more than that. A client that has
/// more than this many messages refused in a row is disconnected (`kicked`), so a flood
/// does not keep the front door busy answering it either.
pub const CLIENT_MESSAGES_PER_SECOND: u32 = 120;

/// A connection's outbound queue, shared by the ECS and auth workers.
pub struct TokioOutbox {
    queue: mpsc::Sender<ServerMessage>,
    closed: CancellationToken,
}

impl ClientOutbox for TokioOutbox {
    fn send(&self, message: ServerMessage) -> Result<(), OutboxClosed> {
        self.queue.try_send(message).map_err(|_| OutboxClosed)
    }

    fn close(&self) {
        self.closed.cancel();
    }

    fn backlog(&self) -> usize {
        CLIENT_QUEUE - self.queue.capacity()
    }

    fn is_gone(&self) -> bool {
        self.queue.is_closed() || self.closed.is_cancelled()
    }
}

/// What a connection needs from the server.
#[derive(Clone)]
pub struct ConnectionContext {
    pub events: Sender<NetEvent>,
    pub auth: AuthQueue,
    /// The client messages the game registered, decoded here, off the tick.
    pub game_messages: Arc<ClientMessageTypes>,
    /// Registrations per address, counted before they take a place in the auth queue.
    pub registrations: Arc<RegistrationLimit>,
    pub idle_timeout: Duration,
    /// Cancelled at the end of a shutdown: every connection says so and closes.
    pub closing: CancellationToken,
    /// Why `closing` closes connections, set just before it is cancelled (a drain tells
    /// clients to go elsewhere; a shutdown just that the server stops).
    pub farewell: Arc<OnceLock<(KickCode, &'static str)>>,
    /// The server drains: logins and resumes are answered `draining` here.
    pub draining: Arc<AtomicBool>,
    /// Connections being served.
    pub open: Arc<AtomicUsize>,
    /// The front door's counters.
    pub stats: Arc<NetStats>,
    /// Players logged in here, whose resume tokens are kept alive.
    pub online: Arc<OnlinePlayers>,
    /// The latest replication round, if the game replicates anything.
    pub replication: Option<ReplicationFeed>,
}

/// Counts a connection as open while it lives: in the total (which a shutdown waits on)
/// and under its transport.
pub(super) struct OpenConnection {
    open: Arc<AtomicUsize>,
    stats: Arc<NetStats>,
    kind: TransportKind,
}

impl OpenConnection {
    pub(super) fn new(ctx: &ConnectionContext, kind: TransportKind) -> Self {
        ctx.open.fetch_add(1, Ordering::SeqCst);
        ctx.stats.connection_opened(kind);
        Self {
            open: Arc::clone(&ctx.open),
            stats: Arc::clone(&ctx.stats),
            kind,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
        self.stats.connection_closed(self.kind);
    }
}

/// Where the client's login stands, as far as this connection can tell. The discriminants
/// index `NetStats::CONNECTION_STATES` (anonymous, logging in, playing).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Login {
    No,
    Pending,
    Yes,
}

/// A connection's [`Login`] state, counted in the front door's connections-by-state gauges
/// for as long as the connection lives.
struct LoginState {
    state: Login,
    stats: Arc<NetStats>,
}

impl LoginState {
    fn new(stats: Arc<NetStats>) -> Self {
        stats.connection_state(None, Some(Login::No as usize));
        Self {
            state: Login::No,
            stats,
        }
    }

    fn get(&self) -> Login {
        self.state
    }

    fn set(&mut self, next: Login) {
        if next != self.state {
            self.stats
                .connection_state(Some(self.state as usize), Some(next as usize));
            self.state = next;
        }
    }
}

impl Drop for LoginState {
    fn drop(&mut self) {
        self.stats.connection_state(Some(self.state as usize), None);
    }
}

/// Serves one client over `transport` until it leaves, misbehaves, idles out or is closed
/// by the server: the same rules whatever the transport.
pub async fn serve<T: Transport>(
    conn: ConnId,
    mut transport: T,
    kind: TransportKind,
    peer: SocketAddr,
    ctx: ConnectionContext,
) {
    let encoding = transport.encoding();
    let mut out = Outgoing::new(encoding);
    let (queue, mut outbound) = mpsc::channel(CLIENT_QUEUE);
    let closed = CancellationToken::new();
    let outbox: Arc<dyn ClientOutbox> = Arc::new(TokioOutbox {
        queue,
        closed: closed.clone(),
    });
    if ctx
        .events
        .send(NetEvent::Connected {
            conn,
            outbox: Arc::clone(&outbox),
        })
        .is_err()
    {
        return; // server stopping
    }
    let mut login = LoginState::new(Arc::clone(&ctx.stats));
    let mut replica = Replica::new(ctx.replication.as_ref());
    let mut refused_in_a_row = 0u32;
    // A register, login, resume or logout sent and not answered yet: nothing more is read
    // until its answer is written, so a connection's answers come in the order of its
    // requests (a later ping cannot overtake a login being checked).
    // Holds the request's id (if it had one), for its answer to carry.
    let mut awaiting: Option<Option<RequestId>> = None;
    // Only complete messages from the client count as activity: what we send it (updates),
    // WebSocket pings and incomplete lines or frames do not, so a silent or half-open
    // connection ends.
    let idle = tokio::time::sleep(ctx.idle_timeout);
    tokio::pin!(idle);
    // Runs until the connection ends, with the last word for the client, if any.
    let farewell = loop {
        // Unbiased: under load, reading what the client sent and writing what the world
        // queued take turns, so neither starves the other.
        tokio::select! {
            () = closed.cancelled() => {
                // The world's last word (a `kicked`, say) ends the connection.
                break write_queued(&mut transport, &mut outbound, &mut out, &ctx.stats, kind).await;
            }
            () = ctx.closing.cancelled() => {
                // What the world queued last (a logout answer, say) goes first.
                let kicked = write_queued(&mut transport, &mut outbound, &mut out, &ctx.stats, kind).await;
                break Some(kicked.unwrap_or_else(|| farewell(&ctx)));
            }
            () = &mut idle => {
                if awaiting.is_some() {
                    // Waiting for our answer (a login in the waiting room) is not idling.
                    idle.as_mut().reset(tokio::time::Instant::now() + ctx.idle_timeout);
                    continue;
                }
                break Some(idle_kick(ctx.idle_timeout));
            }
            Some(message) = outbound.recv() => {
                let was_awaiting = awaiting.is_some();
                let mut batch = Batch { transport: &mut transport, out: &mut out, outbound: &mut outbound, login: &mut login, replica: &mut replica, awaiting: &mut awaiting, kind };
                match write_batch(&mut batch, message, conn, &ctx).await {
                    // The answer came: the client's idle time starts now.
                    Ok(None) if was_awaiting && awaiting.is_none() => {
                        idle.as_mut().reset(tokio::time::Instant::now() + ctx.idle_timeout);
                    }
                    Ok(None) => {}
                    Ok(Some(kicked)) => break Some(kicked),
                    Err(_) => break None,
                }
            }
            round = replica.next_round(), if replica.active() => {
                out.clear();
                if let Some(update) = out.push_with(|bytes| replica.compose(&round, encoding, bytes)) {
                    // Confirmed only once written: a failed write ends the connection, and
                    // a round never written leaves the view as it was.
                    if transport.send(&out).await.is_err() {
                        break None;
                    }
                    replica.confirm(update);
                    ctx.stats.messages_out(kind, 1);
                }
            }
            line = transport.receive(), if awaiting.is_none() => {
                if let Some(Ok(Received::Message(message))) = &line {
                    idle.as_mut().reset(tokio::time::Instant::now() + ctx.idle_timeout);
                    if !message.is_blank() {
                        ctx.stats.message_in(kind);
                    }
                }
                let reply = match line {
                    None => break None,
                    Some(Err(IncomingError::TooLarge)) => break Some(too_large(encoding)),
                    Some(Err(IncomingError::InvalidUtf8)) => {
                        break Some(ServerMessage::error(ErrorCode::BadRequest, "a line must be valid UTF-8"));
                    }
                    Some(Err(IncomingError::Wire(e))) => break Some(broken_stream(&e)),
                    Some(Err(IncomingError::Malformed(reason))) => {
                        break Some(ServerMessage::error(ErrorCode::BadRequest, format!("{reason}; closing")));
                    }
                    Some(Err(IncomingError::Io(_))) => break None,
                    Some(Ok(Received::Message(message))) if message.is_blank() => None,
                    Some(Ok(received)) if !transport.rate().take() => {
                        ctx.stats.rate_limited(kind);
                        refused_in_a_row += 1;
                        if refused_in_a_row > CLIENT_MESSAGES_PER_SECOND {
                            break Some(kicked(KickCode::Rate, &format!("more than {CLIENT_MESSAGES_PER_SECOND} messages per second, for too long")));
                        }
                        // A control frame over the rate is dropped without a word.
                        matches!(received, Received::Message(_)).then(|| {
                            let message = format!("more than {CLIENT_MESSAGES_PER_SECOND} messages per second; this one was dropped");
                            ServerMessage::error(ErrorCode::RateLimited, message)
                        })
                    }
                    Some(Ok(Received::Control)) => None,
                    Some(Ok(Received::Message(message))) => {
                        refused_in_a_row = 0;
                        match message.into_text() {
                            Ok(text) => match handle_line(conn, peer, &text, encoding, &login, &outbox, &ctx) {
                                Handled::Answer(answer) => Some(answer),
                                Handled::Awaiting(pending, id) => {
                                    if let Some(state) = pending {
                                        login.set(state);
                                    }
                                    awaiting = Some(id);
                                    None
                                }
                                Handled::Nothing => None,
                            },
                            Err(reason) => Some(ServerMessage::error(ErrorCode::BadRequest, format!("not a valid MessagePack message: {reason}"))),
                        }
                    }
                };
                if let Some(reply) = reply {
                    out.clear();
                    out.push(&reply);
                    if transport.send(&out).await.is_err() {
                        break None;
                    }
                    ctx.stats.messages_out(kind, 1);
                }
            }
        }
    };
    ctx.online.left(conn);
    transport.close(farewell).await;
    ctx.events.send(NetEvent::Disconnected { conn }).ok();
}

/// The answer to a line over [`MAX_LINE_BYTES`] or a frame over
/// [`hearth_components::wire::MAX_FRAME_BYTES`] (the connection closes after it).
fn too_large(encoding: Encoding) -> ServerMessage {
    let message = match encoding {
        Encoding::Json => format!("a line may hold at most {MAX_LINE_BYTES} bytes"),
        Encoding::Binary => format!(
            "a frame may hold at most {} bytes",
            hearth_components::wire::MAX_FRAME_BYTES
        ),
    };
    ServerMessage::error(ErrorCode::TooLarge, message)
}

/// The answer to a binary stream that broke the format (the connection closes after it: a
/// binary stream cannot resynchronise).
fn broken_stream(e: &WireError) -> ServerMessage {
    ServerMessage::error(ErrorCode::BadRequest, format!("{e}; closing"))
}

/// A `kicked` message.
fn kicked(code: KickCode, reason: &str) -> ServerMessage {
    ServerMessage::kicked(code, reason)
}

/// The `kicked` a client gets after `idle_timeout` without a message.
pub(super) fn idle_kick(idle_timeout: Duration) -> ServerMessage {
    kicked(KickCode::Idle, &format!("no message for {idle_timeout:?}"))
}

/// The `kicked` every connection gets when the server closes them all (shutdown or drain).
pub(super) fn farewell(ctx: &ConnectionContext) -> ServerMessage {
    let (code, reason) = ctx
        .farewell
        .get()
        .copied()
        .unwrap_or((KickCode::Shutdown, SHUTTING_DOWN));
    kicked(code, reason)
}

/// Writes what is queued for the client (all of it, in one write) up to a `kicked`, which
/// it returns for the connection to close with (so a transport closes the way a kick
/// closes, as WebSocket's close code tells).
async fn write_queued<T: Transport>(
    transport: &mut T,
    outbound: &mut mpsc::Receiver<ServerMessage>,
    out: &mut Outgoing,
    stats: &NetStats,
    kind: TransportKind,
) -> Option<ServerMessage> {
    out.clear();
    let mut count: u64 = 0;
    let mut kicked = None;
    while let Ok(message) = outbound.try_recv() {
        if matches!(message, ServerMessage::Kicked { .. }) {
            kicked = Some(message);
            break;
        }
        out.push(&message);
        count += 1;
    }
    if count > 0 && transport.send(out).await.is_ok() {
        stats.messages_out(kind, count);
    }
    kicked
}

/// Most messages written with one system call: what a client is sent in a few frames.
const WRITE_BATCH: usize = 64;

/// What [`write_batch`] works with: the connection's transport, reused buffer, queue,
/// login state and replication.
struct Batch<'a, T> {
    transport: &'a mut T,
    out: &'a mut Outgoing,
    outbound: &'a mut mpsc::Receiver<ServerMessage>,
    login: &'a mut LoginState,
    replica: &'a mut Replica,
    /// The request whose answer is awaited (reading is paused meanwhile), with its id: its
    /// answer clears it and carries the id.
    awaiting: &'a mut Option<Option<RequestId>>,
    /// The transport's kind, for the counters.
    kind: TransportKind,
}

/// Writes `first` and whatever else the world queued for the client since (up to
/// [`WRITE_BATCH`] messages) with one write, through the connection's reused buffer: one
/// system call per connection per frame rather than one per message. Tracks the login state
/// the messages imply (a `logged_in` starts the player's replication with a fresh view, a
/// `logged_out` ends it); an answer to the request awaited resumes reading; stops at a
/// `kicked`, which it returns for the connection to close with.
async fn write_batch<T: Transport>(
    batch: &mut Batch<'_, T>,
    first: ServerMessage,
    conn: ConnId,
    ctx: &ConnectionContext,
) -> std::io::Result<Option<ServerMessage>> {
    batch.out.clear();
    let mut next = Some(first);
    let mut count: u64 = 0;
    let mut kicked = None;
    while let Some(mut message) = next.take() {
        if matches!(
            message,
            ServerMessage::Registered { .. }
                | ServerMessage::LoggedIn { .. }
                | ServerMessage::LoggedOut {}
                | ServerMessage::Error { .. }
                | ServerMessage::Handoff { .. }
        ) && let Some(id) = batch.awaiting.take()
        {
            message = message.answering(id);
        } else if matches!(message, ServerMessage::Queued { .. })
            && let Some(Some(id)) = batch.awaiting.as_ref()
        {
            // A notice about the request awaited names it too.
            message = message.answering(Some(id.clone()));
        }
        match message.inner() {
            ServerMessage::LoggedIn { player_id, .. } => {
                ctx.online.joined(conn, *player_id);
                batch.replica.joined(PlayerId(*player_id));
            }
            ServerMessage::LoggedOut {} | ServerMessage::Handoff { .. } => {
                ctx.online.left(conn);
                batch.replica.left();
            }
            _ => {}
        }
        batch.login.set(match (message.inner(), batch.login.get()) {
            (ServerMessage::LoggedIn { .. }, _) => Login::Yes,
            (ServerMessage::LoggedOut {} | ServerMessage::Handoff { .. }, _) => Login::No,
            (ServerMessage::Error { .. }, Login::Pending) => Login::No,
            (_, state) => state,
        });
        if matches!(message, ServerMessage::Kicked { .. }) {
            kicked = Some(message);
            break;
        }
        batch.out.push(&message);
        count += 1;
        if count < WRITE_BATCH as u64 {
            next = batch.outbound.try_recv().ok();
        }
    }
    if count > 0 {
        batch.transport.send(batch.out).await?;
        ctx.stats.messages_out(batch.kind, count);
    }
    Ok(kicked)
}

/// What became of a line.
enum Handled {
    /// Answered at once.
    Answer(ServerMessage),
    /// Sent on (auth workers, the world): its answer comes later, and nothing more is read
    /// until it does. The login state to move to meanwhile, if any, and the request's id.
    Awaiting(Option<Login>, Option<RequestId>),
    /// Nothing to answer (a blank line; a game message, answered by the game if at all).
    Nothing,
}

/// The `bad_request` for a request that needs the client not logged in.
fn logged_in_already(kind: &str) -> Handled {
    Handled::Answer(ServerMessage::error(
        ErrorCode::BadRequest,
        format!("already logged in; {kind} needs a connection without a player (log out first)"),
    ))
}

/// Handles one line; an answer carries the request's id, if it had one.
fn handle_line(
    conn: ConnId,
    peer: SocketAddr,
    line: &str,
    encoding: Encoding,
    login: &LoginState,
    outbox: &Arc<dyn ClientOutbox>,
    ctx: &ConnectionContext,
) -> Handled {
    if line.trim().is_empty() {
        return Handled::Nothing;
    }
    let (id, parsed) = parse(line, &ctx.game_messages);
    let parsed = parsed.map_err(|reason| match encoding {
        Encoding::Json => reason,
        Encoding::Binary => ParseError::Binary(Box::new(reason)),
    });
    match handle_request(conn, peer, parsed, id.clone(), login, outbox, ctx) {
        Handled::Answer(answer) => Handled::Answer(answer.answering(id)),
        Handled::Awaiting(state, _) => Handled::Awaiting(state, id),
        Handled::Nothing => Handled::Nothing,
    }
}

/// Handles one parsed request (`id` goes with a game's request to the world).
fn handle_request(
    conn: ConnId,
    peer: SocketAddr,
    parsed: Result<Parsed, ParseError>,
    id: Option<RequestId>,
    login: &LoginState,
    outbox: &Arc<dyn ClientOutbox>,
    ctx: &ConnectionContext,
) -> Handled {
    let message = match parsed {
        Ok(Parsed::Core(message)) => message,
        Ok(Parsed::Game(request)) => {
            let request = request.with_id(id);
            if login.get() == Login::No {
                return Handled::Answer(ServerMessage::error(
                    ErrorCode::NotLoggedIn,
                    format!("log in first ({} needs a player)", request.kind()),
                ));
            }
            ctx.events.send(NetEvent::Game { conn, request }).ok();
            return Handled::Nothing;
        }
        Err(reason) => {
            return Handled::Answer(ServerMessage::error(
                ErrorCode::BadRequest,
                reason.to_string(),
            ));
        }
    };
    let submitted = |request, state| match ctx.auth.try_submit(peer.ip(), request) {
        Ok(()) => Handled::Awaiting(state, None),
        Err(busy) => Handled::Answer(busy),
    };
    let logged_in = login.get() != Login::No;
    match message {
        ClientMessage::Ping { nonce } => Handled::Answer(ServerMessage::Pong { nonce }),
        ClientMessage::Register { .. } if logged_in => logged_in_already("register"),
        ClientMessage::Login { .. } if logged_in => logged_in_already("login"),
        ClientMessage::Resume { .. } if logged_in => logged_in_already("resume"),
        ClientMessage::Login { .. } | ClientMessage::Resume { .. }
            if ctx.draining.load(Ordering::SeqCst) =>
        {
            // Refused before anything is spent: the token still works on another server.
            Handled::Answer(ServerMessage::error(ErrorCode::Draining, DRAINING_REFUSAL))
        }
        ClientMessage::Register { username, password } => {
            if let Err(refused) = ctx.registrations.check(peer.ip()) {
                NetStats::count(&ctx.stats.rate_limited_registrations);
                return Handled::Answer(refused);
            }
            let reply = Arc::clone(outbox);
            let request = AuthRequest::Register {
                username,
                password,
                reply,
            };
            submitted(request, None)
        }
        ClientMessage::Login { username, password } => {
            let reply = Arc::clone(outbox);
            let request = AuthRequest::Login {
                conn,
                addr: peer.ip(),
                username,
                password,
                reply,
            };
            submitted(request, Some(Login::Pending))
        }
        ClientMessage::Resume { token } => {
            let reply = Arc::clone(outbox);
            let request = AuthRequest::Resume {
                conn,
                addr: peer.ip(),
                token,
                reply,
            };
            submitted(request, Some(Login::Pending))
        }
        ClientMessage::Logout {} if !logged_in => {
            Handled::Answer(ServerMessage::error(ErrorCode::NotLoggedIn, "log in first"))
        }
        message @ ClientMessage::Logout {} => {
            ctx.events.send(NetEvent::Request { conn, message }).ok();
            Handled::Awaiting(None, None)
        }
    }
}

/// A line, understood.
enum Parsed {
    /// One of the core's own messages.
    Core(ClientMessage),
    /// A message a game registered, decoded for the world.
    Game(hearth_systems::net::GameRequest),
}

/// `text` without the ` at line L column C` serde_json ends its errors with: for a binary
/// client, whose message was read through its JSON form, that position means nothing.
fn without_json_position(text: String) -> String {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(at) = text.rfind(" at line ")
        && let Some((line, column)) = text[at + " at line ".len()..].split_once(" column ")
        && digits(line)
        && digits(column)
    {
        return text[..at].to_string();
    }
    text
}

/// A parse error worded for the client (answered as `bad_request`), never echoing the
/// password back.
#[derive(Debug, thiserror::Error)]
enum ParseError {
    /// The line is not JSON at all (or ends early).
    #[error("not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not an object with a string `type`.
    #[error("a message must be a JSON object with a string \"type\": {0}")]
    NoType(#[source] serde_json::Error),
    /// An `id` that is not a request id.
    #[error("field `id`: {0}")]
    Id(#[source] serde_json::Error),
    /// A core message whose fields do not fit.
    #[error("not a valid message: {0}")]
    Core(#[source] serde_json::Error),
    /// A game's message whose fields do not fit.
    #[error("not a valid {kind}: {source}")]
    Game {
        kind: String,
        #[source]
        source: DecodeError,
    },
    /// A binary client's message, read through its JSON form: the same error without the
    /// line and column serde_json gives in that text (not what the client sent).
    #[error("{}", without_json_position(.0.to_string()))]
    Binary(Box<ParseError>),
    /// A `type` neither the core nor the game knows; `known` lists the known ones.
    #[error("unknown message type {kind:?}; known types: {}", known.join(", "))]
    UnknownType {
        kind: String,
        known: Vec<&'static str>,
    },
}

/// The `type` and `id` of a line, read without building a JSON tree.
#[derive(serde::Deserialize)]
struct Kind<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    /// Present whatever its value (`null` too, refused as an id).
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a serde_json::value::RawValue>,
}

/// A field that is there, as its raw JSON (`Option`'s own reading takes `null` for absent).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de serde_json::value::RawValue>, D::Error> {
    serde::Deserialize::deserialize(deserializer).map(Some)
}

/// Parses one line: a JSON object whose `type` is a core message or one a game registered,
/// with its request `id` if it has a valid one. The error says what is wrong (not JSON, no
/// `type`, an unknown one, a bad `id`, or the field at fault).
fn parse(line: &str, game: &ClientMessageTypes) -> (Option<RequestId>, Result<Parsed, ParseError>) {
    let (kind, id) = match serde_json::from_str::<Kind>(line) {
        Ok(Kind { kind, id }) => (kind, id),
        Err(e) if e.is_syntax() || e.is_eof() => return (None, Err(ParseError::NotJson(e))),
        Err(e) => return (None, Err(ParseError::NoType(e))),
    };
    let id = match id
        .map(|raw| serde_json::from_str::<RequestId>(raw.get()))
        .transpose()
    {
        Ok(id) => id,
        Err(e) => return (None, Err(ParseError::Id(e))),
    };
    let parsed = if CORE_CLIENT_MESSAGES.contains(&kind.as_ref()) {
        parse_core(line, id.is_some())
    } else {
        match game.decode(&kind, line) {
            Some(Ok(request)) => Ok(Parsed::Game(request)),
            Some(Err(source)) => Err(ParseError::Game {
                kind: kind.into_owned(),
                source,
            }),
            None => Err(ParseError::UnknownType {
                kind: kind.into_owned(),
                known: CORE_CLIENT_MESSAGES
                    .iter()
                    .copied()
                    .chain(game.names())
                    .collect(),
            }),
        }
    };
    (id, parsed)
}

/// A core message; one with an `id` is read without it (the core's messages refuse fields
/// they do not have).
fn parse_core(line: &str, has_id: bool) -> Result<Parsed, ParseError> {
    if !has_id {
        return serde_json::from_str(line)
            .map(Parsed::Core)
            .map_err(ParseError::Core);
    }
    let UniqueFields(mut object) = serde_json::from_str(line).map_err(ParseError::Core)?;
    object.remove("id");
    serde_json::from_value(serde_json::Value::Object(object))
        .map(Parsed::Core)
        .map_err(ParseError::Core)
}

/// A JSON object whose fields are all named once: a field named twice is refused, as the
/// messages' own derived decoding refuses it (a map would keep the last value silently).
struct UniqueFields(serde_json::Map<String, serde_json::Value>);

impl<'de> serde::Deserialize<'de> for UniqueFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = UniqueFields;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueFields, A::Error> {
                let mut fields = serde_json::Map::new();
                while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
                    if fields.contains_key(&key) {
                        return Err(serde::de::Error::custom(format_args!(
                            "duplicate field `{key}`"
                        )));
                    }
                    fields.insert(key, value);
                }
                Ok(UniqueFields(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

#[cfg(test)]
mod tests {
    use super::without_json_position;

    #[test]
    fn only_a_trailing_json_position_is_dropped() {
        let cut = |text: &str| without_json_position(text.to_string());
        assert_eq!(
            cut(
                "not a valid move: field `dx`: invalid type: string \"east\", expected f32 at line 1 column 23"
            ),
            "not a valid move: field `dx`: invalid type: string \"east\", expected f32"
        );
        assert_eq!(
            cut("unknown message type \"x\""),
            "unknown message type \"x\""
        );
        assert_eq!(
            cut("a name at line up column 3"),
            "a name at line up column 3"
        );
    }
}
