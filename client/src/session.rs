//! The task behind a [`crate::Client`]: it owns the connection, writes what the handles ask,
//! routes each answer to the request with its `id`, applies replication to the shared world,
//! turns everything else into [`Event`]s, pings while the client is quiet, and after a drop
//! reconnects with backoff and resumes with the token it holds.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hearth_components::protocol::{
    CORE_SERVER_MESSAGES, ClientMessage, ResumeToken, ServerMessage,
};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::codec::{Encoding, Inbound, Outgoing, encode};

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::event::{Event, GameMessage, Refusal, kick_allows_resume};
use crate::transport::{RawConn as Conn, Target, connect_raw};
use crate::world::{ComponentInfo, Update, World};

/// What the client's handles share with the session: the world and who is logged in.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) world: World,
    /// The newest resume token (every `logged_in` brings one).
    pub(crate) token: Option<ResumeToken>,
    pub(crate) player_id: Option<u64>,
    pub(crate) logged_in: bool,
}

/// Locks the shared state; a handle that panicked while holding it left nothing half-made
/// that matters more than going on, so a poisoned lock is taken as is.
pub(crate) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The answer a request gets: the answering message's object (`type` and `id` included).
pub(crate) type Answer = Result<Map<String, Value>, ClientError>;

/// What a handle asks of the session.
pub(crate) enum Command {
    /// Write `message` (which carries the request id `id`) and send the answer back.
    Request {
        id: u64,
        message: Outgoing,
        answer: oneshot::Sender<Answer>,
    },
    /// Write `message`; say when written.
    Send {
        message: Outgoing,
        done: oneshot::Sender<Result<(), ClientError>>,
    },
    /// A `login` or `resume` was answered `handoff` (the player is in another zone): follow
    /// it to the destination's door for this transport (`addr`, or `ws_addr` over WebSocket)
    /// and answer with the resume's `logged_in` there.
    Follow {
        addr: String,
        ws_addr: Option<String>,
        answer: oneshot::Sender<Answer>,
    },
    /// Close the connection and end.
    Close,
}

/// A request waiting for its answer.
enum Pending {
    Request(oneshot::Sender<Answer>),
    /// The session's own keep-alive ping: its pong is swallowed.
    Keepalive,
}

/// Why a connection's service ended.
enum End {
    /// The client was closed or dropped.
    Closed,
    /// The connection ended or broke, with why.
    Dropped(String),
    /// The player was handed off to the server at this address (a world cut into zones).
    HandedOff(String),
}

/// How an attempt to resume on a new connection went.
enum Attempt {
    /// Logged in again: the connection, and the `logged_in` answer.
    Resumed(Conn, Map<String, Value>),
    /// Try again (the connection dropped, the player is still leaving, the server is busy).
    Retry(String),
    /// The token is refused: resuming cannot work.
    Refused(String),
    /// Answered `handoff`: the player is in another zone; resume there (the door of this
    /// client's transport), with the handoff's token (already held).
    HandedOff(String),
    Closed,
}

/// A request id source shared by the handles and the session (ids are unique per client).
pub(crate) type Ids = Arc<AtomicU64>;

/// The session task's state.
pub(crate) struct Session {
    pub(crate) target: Target,
    pub(crate) config: ClientConfig,
    pub(crate) shared: Arc<Mutex<Shared>>,
    pub(crate) ids: Ids,
    pub(crate) events: mpsc::Sender<Event>,
    pending: HashMap<u64, Pending>,
    /// The `kicked` code of the current connection, if the server kicked it.
    kicked: Option<hearth_components::protocol::KickCode>,
    /// Where a `handoff` pushed on the current connection sends the player.
    handed_off: Option<String>,
    /// The caller of a login or resume answered `handoff`, waiting for the `logged_in` at
    /// the destination ([`Command::Follow`]).
    following: Option<oneshot::Sender<Answer>>,
}

impl Session {
    pub(crate) fn new(
        target: Target,
        config: ClientConfig,
        shared: Arc<Mutex<Shared>>,
        ids: Ids,
        events: mpsc::Sender<Event>,
    ) -> Self {
        Self {
            target,
            config,
            shared,
            ids,
            events,
            pending: HashMap::new(),
            kicked: None,
            handed_off: None,
            following: None,
        }
    }

    fn encoding(&self) -> Encoding {
        self.config.encoding
    }

    /// Serves `conn`, and after each drop resumes on a new one, until the client closes or a
    /// drop cannot be resumed.
    pub(crate) async fn run(mut self, mut conn: Conn, mut commands: mpsc::Receiver<Command>) {
        loop {
            let end = self.serve(&mut conn, &mut commands).await;
            for (_, pending) in self.pending.drain() {
                if let Pending::Request(answer) = pending {
                    let _ = answer.send(Err(ClientError::Disconnected));
                }
            }
            let reason = match end {
                End::Closed => return,
                End::Dropped(reason) => reason,
                End::HandedOff(addr) => {
                    // The player left this server for `addr`: follow it there, with the
                    // handoff's token, on the same transport.
                    let _ = conn.outbound.close().await;
                    lock(&self.shared).world.clear();
                    self.target = self.target.with_addr(&addr);
                    self.emit(Event::HandedOff { addr }).await;
                    // The destination expects the player now: no pause before the first try.
                    let resumed = self.reconnect(&mut commands, Duration::ZERO).await;
                    let following = self.following.take();
                    let Some((next, logged_in)) = resumed else {
                        if let Some(answer) = following {
                            let _ = answer.send(Err(ClientError::Disconnected));
                        }
                        return;
                    };
                    if let Some(answer) = following {
                        let _ = answer.send(Ok(logged_in));
                    }
                    conn = next;
                    continue;
                }
            };
            let resumable = {
                let mut shared = lock(&self.shared);
                shared.world.clear();
                let was_playing = std::mem::take(&mut shared.logged_in);
                was_playing
                    && shared.token.is_some()
                    && self.config.reconnect.enabled
                    && self.kicked.is_none_or(kick_allows_resume)
            };
            self.kicked = None;
            self.emit(Event::Disconnected { reason }).await;
            if !resumable {
                return;
            }
            let first_delay = self.config.reconnect.first_delay;
            conn = match self.reconnect(&mut commands, first_delay).await {
                Some((conn, _)) => conn,
                None => return,
            };
        }
    }

    /// Serves one connection until it ends.
    async fn serve(&mut self, conn: &mut Conn, commands: &mut mpsc::Receiver<Command>) -> End {
        let keepalive = self.config.keepalive;
        let mut tick = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sent = Instant::now();
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let (message, done) = match command {
                        None | Some(Command::Close) => {
                            let _ = conn.outbound.close().await;
                            return End::Closed;
                        }
                        Some(Command::Request { id, message, answer }) => {
                            self.pending.insert(id, Pending::Request(answer));
                            (message, None)
                        }
                        Some(Command::Send { message, done }) => (message, Some(done)),
                        Some(Command::Follow { addr, ws_addr, answer }) => {
                            // The destination's door of this client's transport.
                            let next = match self.target {
                                Target::WebSocket(_) => ws_addr,
                                Target::Tcp(_) | Target::Tls(_) => Some(addr),
                            };
                            match next {
                                Some(next) => {
                                    self.following = Some(answer);
                                    return End::HandedOff(next);
                                }
                                None => {
                                    let _ = answer.send(Err(ClientError::Protocol(
                                        "handed off to a server without a WebSocket listener".into(),
                                    )));
                                    continue;
                                }
                            }
                        }
                    };
                    last_sent = Instant::now();
                    if let Err(e) = conn.outbound.send(message).await {
                        if let Some(done) = done {
                            let _ = done.send(Err(ClientError::Disconnected));
                        }
                        return End::Dropped(format!("writing failed: {e}"));
                    }
                    if let Some(done) = done {
                        let _ = done.send(Ok(()));
                    }
                }
                inbound = conn.incoming.next() => match inbound {
                    None => return End::Dropped(self.closed_reason()),
                    Some(Err(e)) => return End::Dropped(format!("reading failed: {e}")),
                    Some(Ok(raw)) => {
                        self.dispatch(raw.decode()).await;
                        if let Some(addr) = self.handed_off.take() {
                            return End::HandedOff(addr);
                        }
                    }
                },
                _ = tick.tick() => {
                    if last_sent.elapsed() >= keepalive {
                        let id = self.ids.fetch_add(1, Ordering::Relaxed);
                        let ping = self.message(&ClientMessage::Ping { nonce: id }, Some(id));
                        self.pending.insert(id, Pending::Keepalive);
                        last_sent = Instant::now();
                        if let Err(e) = conn.outbound.send(ping).await {
                            return End::Dropped(format!("writing failed: {e}"));
                        }
                    }
                }
            }
        }
    }

    /// Why the server ended the stream, for [`Event::Disconnected`].
    fn closed_reason(&self) -> String {
        match self.kicked {
            Some(code) => format!("kicked ({code:?})"),
            None => "the server closed the connection".into(),
        }
    }

    /// A core message encoded in this connection's encoding, with a request id.
    fn message(&self, message: &ClientMessage, id: Option<u64>) -> Outgoing {
        let mut object = match serde_json::to_value(message) {
            Ok(Value::Object(object)) => object,
            _ => unreachable!("a client message serialises as an object"),
        };
        if let Some(id) = id {
            object.insert("id".into(), id.into());
        }
        match encode(self.encoding(), &object) {
            Ok(message) => message,
            Err(e) => unreachable!("a core message is small and encodes: {e}"),
        }
    }

    /// Handles what the server sent that no resume is waiting for.
    async fn dispatch(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Invalid(reason) => self.emit(Event::Invalid { reason }).await,
            Inbound::JsonUpdate(update) => self.apply(update).await,
            Inbound::BinaryUpdate(frame) => {
                let components = lock(&self.shared).world.components().to_vec();
                match Update::from_binary(frame, &components) {
                    Ok(update) => self.apply(update).await,
                    Err(e) => {
                        let reason = format!("not a valid update frame: {e}");
                        self.emit(Event::Invalid { reason }).await;
                    }
                }
            }
            Inbound::Message(object) => self.on_message(object).await,
        }
    }

    async fn apply(&mut self, update: Update) {
        lock(&self.shared).world.apply(&update);
        self.emit(Event::Update(update)).await;
    }

    async fn on_message(&mut self, object: Map<String, Value>) {
        let kind = object
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let id = object.get("id").and_then(Value::as_u64);
        if let Some(id) = id.filter(|id| self.pending.contains_key(id)) {
            if kind == "queued" {
                // A notice about the waiting request, not its answer.
                return self.core_event(object).await;
            }
            if let Some(Pending::Request(answer)) = self.pending.remove(&id) {
                self.note_answer(&kind, &object);
                let _ = answer.send(Ok(object));
            }
            return;
        }
        match kind.as_str() {
            "replication" => self.on_replication(object).await,
            "error" => {
                let refusal = Refusal::from_object(&object);
                self.emit(Event::Refused(refusal)).await;
            }
            core if CORE_SERVER_MESSAGES.contains(&core) => self.core_event(object).await,
            _ => {
                self.emit(Event::Game(GameMessage::from_object(object)))
                    .await
            }
        }
    }

    /// A core message as an [`Event::Server`] (a `kicked` is remembered: it decides whether
    /// the drop that follows is resumed).
    async fn core_event(&mut self, object: Map<String, Value>) {
        match serde_json::from_value::<ServerMessage>(Value::Object(object)) {
            Ok(message) => {
                match &message {
                    ServerMessage::Kicked { code, .. } => self.kicked = Some(*code),
                    // The player left this server for another: nothing here to resume.
                    ServerMessage::Handoff {
                        addr,
                        ws_addr,
                        resume_token,
                    } => {
                        let mut shared = lock(&self.shared);
                        shared.logged_in = false;
                        shared.token = Some(resume_token.clone());
                        // The destination's door of this client's transport (a server
                        // without a WebSocket listener cannot be followed over WebSocket).
                        let next = match self.target {
                            Target::WebSocket(_) => ws_addr.clone(),
                            Target::Tcp(_) | Target::Tls(_) => Some(addr.clone()),
                        };
                        if self.config.reconnect.enabled {
                            self.handed_off = next;
                        }
                    }
                    _ => {}
                }
                self.emit(Event::Server(message)).await;
            }
            Err(e) => {
                let reason = format!("a core message that does not decode: {e}");
                self.emit(Event::Invalid { reason }).await;
            }
        }
    }

    async fn on_replication(&mut self, object: Map<String, Value>) {
        let you = object.get("you").and_then(Value::as_u64);
        let rate_hz = object.get("rate_hz").and_then(Value::as_f64);
        let components = object
            .get("components")
            .cloned()
            .map(serde_json::from_value::<Vec<ComponentInfo>>);
        match (you, rate_hz, components) {
            (Some(you), Some(rate_hz), Some(Ok(components))) => {
                lock(&self.shared).world.reset(you, rate_hz, components);
                self.emit(Event::Replication { you }).await;
            }
            _ => {
                let reason = format!("not a valid replication message: {object:?}");
                self.emit(Event::Invalid { reason }).await;
            }
        }
    }

    /// Keeps who is logged in (and the newest token) from an answer.
    fn note_answer(&self, kind: &str, object: &Map<String, Value>) {
        let mut shared = lock(&self.shared);
        match kind {
            "logged_in" => {
                shared.logged_in = true;
                shared.player_id = object.get("player_id").and_then(Value::as_u64);
                if let Some(token) = object.get("resume_token").and_then(Value::as_str) {
                    shared.token = Some(ResumeToken::new(token));
                }
            }
            "logged_out" => shared.logged_in = false,
            "handoff" => {
                shared.logged_in = false;
                if let Some(token) = object.get("resume_token").and_then(Value::as_str) {
                    shared.token = Some(ResumeToken::new(token));
                }
            }
            _ => {}
        }
    }

    /// Hands an event to the client (waiting while its queue is full: a client that does not
    /// read its events stops reading the server, which then drops it as too slow).
    async fn emit(&self, event: Event) {
        let _ = self.events.send(event).await;
    }

    /// Reconnects with backoff (the first try after `first_delay`, then the policy's) and
    /// resumes: the connection and the `logged_in`; `None` when the client closed or resuming
    /// failed for good (told as [`Event::ResumeFailed`]).
    async fn reconnect(
        &mut self,
        commands: &mut mpsc::Receiver<Command>,
        first_delay: Duration,
    ) -> Option<(Conn, Map<String, Value>)> {
        let policy = self.config.reconnect.clone();
        let give_up = Instant::now() + policy.give_up_after;
        let mut delay = first_delay;
        let mut last = String::new();
        for attempt in 1.. {
            if Instant::now() + delay > give_up {
                let reason = format!("gave up after {:?}: {last}", policy.give_up_after);
                self.emit(Event::ResumeFailed { reason }).await;
                return None;
            }
            self.emit(Event::Reconnecting { attempt }).await;
            refusing(commands, tokio::time::sleep(delay)).await?;
            delay = (delay * 2).max(policy.first_delay).min(policy.max_delay);
            let conn = match refusing(commands, connect_raw(&self.target, &self.config)).await? {
                Ok(conn) => conn,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            match self.resume_on(conn, commands).await {
                Attempt::Resumed(conn, logged_in) => {
                    let player_id = lock(&self.shared).player_id.unwrap_or_default();
                    self.emit(Event::Resumed { player_id }).await;
                    return Some((conn, logged_in));
                }
                Attempt::Retry(reason) => last = reason,
                Attempt::HandedOff(addr) => {
                    // The destination expects the player now: no pause before trying there.
                    lock(&self.shared).world.clear();
                    self.target = self.target.with_addr(&addr);
                    self.emit(Event::HandedOff { addr }).await;
                    delay = Duration::ZERO;
                }
                Attempt::Refused(reason) => {
                    self.emit(Event::ResumeFailed { reason }).await;
                    return None;
                }
                Attempt::Closed => return None,
            }
        }
        None
    }

    /// Sends `resume` with the token held and waits for its answer on `conn`.
    async fn resume_on(
        &mut self,
        mut conn: Conn,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Attempt {
        let Some(token) = lock(&self.shared).token.clone() else {
            return Attempt::Refused("no resume token".into());
        };
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let resume = self.message(&ClientMessage::Resume { token }, Some(id));
        if let Err(e) = conn.outbound.send(resume).await {
            return Attempt::Retry(format!("writing failed: {e}"));
        }
        loop {
            let inbound = tokio::select! {
                command = commands.recv() => match command {
                    None | Some(Command::Close) => return Attempt::Closed,
                    Some(command) => {
                        refuse(command);
                        continue;
                    }
                },
                inbound = conn.incoming.next() => inbound,
            };
            let object = match inbound.map(|raw| raw.map(|raw| raw.decode())) {
                None => return Attempt::Retry(self.closed_reason()),
                Some(Err(e)) => return Attempt::Retry(format!("reading failed: {e}")),
                Some(Ok(Inbound::Message(object)))
                    if object.get("id").and_then(Value::as_u64) == Some(id) =>
                {
                    object
                }
                Some(Ok(other)) => {
                    self.dispatch(other).await;
                    continue;
                }
            };
            match object.get("type").and_then(Value::as_str) {
                Some("logged_in") => {
                    self.note_answer("logged_in", &object);
                    return Attempt::Resumed(conn, object);
                }
                Some("queued") => {}
                Some("handoff") => {
                    self.note_answer("handoff", &object);
                    let field = match self.target {
                        Target::WebSocket(_) => "ws_addr",
                        Target::Tcp(_) | Target::Tls(_) => "addr",
                    };
                    return match object.get(field).and_then(Value::as_str) {
                        Some(addr) => Attempt::HandedOff(addr.to_string()),
                        None => Attempt::Refused(
                            "resume answered handoff to a server without a door for this transport"
                                .into(),
                        ),
                    };
                }
                Some("error") => {
                    let refusal = Refusal::from_object(&object);
                    return match refusal.code.as_str() {
                        "already_online" | "server_busy" | "unavailable" | "draining" => {
                            Attempt::Retry(refusal.to_string())
                        }
                        _ => Attempt::Refused(refusal.to_string()),
                    };
                }
                other => {
                    return Attempt::Refused(format!("unexpected answer to resume: {other:?}"));
                }
            }
        }
    }
}

/// Answers a command that cannot be served while reconnecting.
fn refuse(command: Command) {
    match command {
        Command::Request { answer, .. } => {
            let _ = answer.send(Err(ClientError::Reconnecting));
        }
        Command::Send { done, .. } => {
            let _ = done.send(Err(ClientError::Reconnecting));
        }
        Command::Follow { answer, .. } => {
            let _ = answer.send(Err(ClientError::Reconnecting));
        }
        Command::Close => {}
    }
}

/// Awaits `work` while refusing the commands that come meanwhile; `None` when the client
/// closes.
async fn refusing<T>(
    commands: &mut mpsc::Receiver<Command>,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return Some(out),
            command = commands.recv() => match command {
                None | Some(Command::Close) => return None,
                Some(command) => refuse(command),
            },
        }
    }
}
