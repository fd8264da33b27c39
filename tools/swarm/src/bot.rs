//! One bot: connect, register or reuse its account, log in, walk to its place, then move and
//! ping while reading everything the server sends, rebuilding its world from the updates and
//! checking them.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use tokio::time::MissedTickBehavior;

use crate::config::{Config, Encoding, Placement, Transport};
use crate::conn::{self, Conn, Incoming, Message, Outgoing, ReadError, Reader, Writer};
use crate::stats::Stats;
use crate::update;
use crate::walk::{self, Precision, Walk};
use crate::world::World;
use crate::zones::{Crossing, FOLLOW_TIMEOUT, HandoffTimes, ZoneStats};

/// What every bot shares: the flags, the counters, the login gate and the stop signal.
pub struct Shared {
    pub config: Config,
    pub stats: Stats,
    /// Bounds registrations and logins in flight.
    pub logins: Semaphore,
    /// Set to `true` when the run ends.
    pub stop: watch::Sender<bool>,
    /// The resume token of each bot's latest `logged_in`, by bot number.
    pub tokens: Mutex<Vec<Option<String>>>,
    /// With `--zones`: the map and the zone figures.
    pub(crate) zones: Option<ZoneStats>,
}

/// How a request failed.
pub(crate) enum Refused {
    /// Worth another try after a pause (busy, rate limited, unavailable, the lease of a
    /// previous run still held); `reconnect` when the connection is gone; the error code.
    Retry {
        reconnect: bool,
        code: Option<String>,
    },
    /// Retrying cannot help (wrong password, a bad request).
    Fatal(String),
}

/// Exponential back-off with jitter: from `first`, doubling up to `max`.
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Self { next: first, max }
    }

    pub(crate) async fn wait(&mut self) {
        let jitter = 0.5 + fastrand::f64();
        tokio::time::sleep(self.next.mul_f64(jitter)).await;
        self.next = (self.next * 2).min(self.max);
    }
}

/// Sends `message` and waits for its answer, skipping replication, pongs and `queued` notices.
pub(crate) async fn request(
    conn: &mut Conn,
    message: &Outgoing<'_>,
    stats: &Stats,
) -> Result<Message, Refused> {
    let gone = Refused::Retry {
        reconnect: true,
        code: None,
    };
    if conn.writer.send(message).await.is_err() {
        return Err(gone);
    }
    loop {
        let message = match conn.reader.next().await {
            Ok(Some((Incoming::Message(message), _))) => message,
            Ok(Some((Incoming::Update(_), _))) | Err(ReadError::Decode(_)) => continue,
            Ok(None) | Err(ReadError::Io | ReadError::Framing(_)) => return Err(gone),
        };
        match message.kind.as_str() {
            "replication" | "pong" | "queued" => {}
            "error" => {
                let code = message.code.as_deref().unwrap_or("");
                match code {
                    "server_busy" => stats.server_busy.fetch_add(1, Relaxed),
                    "rate_limited" => stats.rate_limited.fetch_add(1, Relaxed),
                    _ => stats.other_errors.fetch_add(1, Relaxed),
                };
                return match code {
                    "server_busy" | "rate_limited" | "unavailable" | "already_online" => {
                        Err(Refused::Retry {
                            reconnect: false,
                            code: Some(code.to_string()),
                        })
                    }
                    "username_taken" => Ok(message),
                    _ => Err(Refused::Fatal(format!(
                        "{code}: {}",
                        message.message.unwrap_or_default()
                    ))),
                };
            }
            "kicked" => return Err(gone),
            _ => return Ok(message),
        }
    }
}

/// Registers (or finds the account taken: it is ours from an earlier run) and logs in,
/// retrying after refusals that say "later". Returns the connection and the position.
async fn log_in(shared: &Shared, n: usize) -> Result<(Conn, (f32, f32)), String> {
    let config = &shared.config;
    let stats = &shared.stats;
    let _permit = shared.logins.acquire().await.expect("never closed");
    let username = format!("{}{n}", config.prefix);
    let (username, password) = (username.as_str(), config.password.as_str());
    let register = Outgoing::Register { username, password };
    let login = Outgoing::Login { username, password };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut registered = false;
    let mut conn = None;
    loop {
        if conn.is_none() {
            match conn::connect(config, n).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    backoff.wait().await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected");
        let line = if registered { &login } else { &register };
        match request(c, line, stats).await {
            // `registered`, or `username_taken` (passed as Ok): the account is ours.
            Ok(message) if !registered => {
                if message.kind != "registered" && message.kind != "error" {
                    return Err(format!("unexpected answer to register: {}", message.kind));
                }
                registered = true;
            }
            Ok(message) if message.kind == "logged_in" => {
                let position = logged_in(shared, n, &message);
                return Ok((conn.expect("connected"), position));
            }
            // The player is stored in another zone: continue there.
            Ok(message) if message.kind == "handoff" => {
                if let Some(zones) = &shared.zones {
                    zones.login_handoffs.fetch_add(1, Relaxed);
                }
                drop(conn);
                return follow(shared, n, &message).await;
            }
            Ok(message) => return Err(format!("unexpected answer to login: {}", message.kind)),
            Err(Refused::Retry { reconnect, .. }) => {
                if reconnect {
                    conn = None;
                }
                backoff.wait().await;
            }
            Err(Refused::Fatal(reason)) => return Err(reason),
        }
    }
}

/// Takes note of a `logged_in`: its resume token, which player the bot is; returns the
/// player's position.
fn logged_in(shared: &Shared, n: usize, message: &Message) -> (f32, f32) {
    shared.tokens.lock().unwrap_or_else(|p| p.into_inner())[n] = message.resume_token.clone();
    if let (Some(zones), Some(player)) = (&shared.zones, message.player_id) {
        zones.player_is(player, n);
    }
    message
        .state
        .as_ref()
        .map(|s| &s["position"])
        .and_then(|p| Some((p["x"].as_f64()? as f32, p["y"].as_f64()? as f32)))
        .unwrap_or((0.0, 0.0))
}

/// Follows a `handoff`: connects to the server it names and resumes with its token,
/// retrying refusals that say "later" for up to [`FOLLOW_TIMEOUT`] (a resume answered with
/// another `handoff` is followed on). `Err`: the player is lost, and why.
async fn follow(
    shared: &Shared,
    n: usize,
    handoff: &Message,
) -> Result<(Conn, (f32, f32)), String> {
    let websocket = matches!(shared.config.transport, Transport::Ws | Transport::Wss);
    let destination = |handoff: &Message| -> Result<(String, String), String> {
        let addr = if websocket {
            &handoff.ws_addr
        } else {
            &handoff.addr
        };
        match (addr, &handoff.resume_token) {
            (Some(addr), Some(token)) => Ok((addr.clone(), token.clone())),
            _ => Err(format!(
                "a handoff without {} or resume_token",
                if websocket { "ws_addr" } else { "addr" }
            )),
        }
    };
    let (mut addr, mut token) = destination(handoff)?;
    let deadline = tokio::time::Instant::now() + FOLLOW_TIMEOUT;
    let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(500));
    let mut conn = None;
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "{addr} did not take the player within {FOLLOW_TIMEOUT:?}"
            ));
        }
        if conn.is_none() {
            match conn::connect_to(&shared.config, n, &addr).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    backoff.wait().await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected");
        let resume = Outgoing::Resume { token: &token };
        let answer = tokio::time::timeout_at(deadline, request(c, &resume, &shared.stats)).await;
        match answer {
            Err(_) => continue,
            Ok(Ok(message)) if message.kind == "logged_in" => {
                let position = logged_in(shared, n, &message);
                return Ok((conn.expect("connected"), position));
            }
            Ok(Ok(message)) if message.kind == "handoff" => {
                (addr, token) = destination(&message)?;
                conn = None;
            }
            Ok(Ok(message)) => return Err(format!("resume at {addr} answered {}", message.kind)),
            Ok(Err(Refused::Retry { reconnect, .. })) => {
                if reconnect {
                    conn = None;
                }
                backoff.wait().await;
            }
            Ok(Err(Refused::Fatal(why))) => return Err(format!("resume at {addr}: {why}")),
        }
    }
}

/// One step of 1.0 from `from` toward `to` (the server moves players that way).
fn step_toward(from: (f64, f64), to: (f64, f64)) -> (f64, f64) {
    let (dx, dy) = (to.0 - from.0, to.1 - from.1);
    let length = dx.hypot(dy);
    if length < 1e-9 {
        (1.0, 0.0)
    } else {
        (dx / length, dy / length)
    }
}

fn distance(a: (f64, f64), b: (f64, f64)) -> f64 {
    (a.0 - b.0).hypot(a.1 - b.1)
}

/// Where a bot plays: near the origin, or a random point of the world.
fn home(placement: Placement) -> (f64, f64) {
    let spread = match placement {
        Placement::Clustered => 5.0,
        Placement::Spread => 950.0,
    };
    (
        (fastrand::f64() * 2.0 - 1.0) * spread,
        (fastrand::f64() * 2.0 - 1.0) * spread,
    )
}

/// Sends one step in `direction` (recorded in `walk` first) and tracks the position it
/// leads to.
async fn send_move(
    writer: &mut Writer,
    walk: &Mutex<Walk>,
    position: &mut (f64, f64),
    direction: (f64, f64),
) -> std::io::Result<()> {
    let (dx, dy) = walk::direction(direction.0, direction.1);
    walk.lock().unwrap_or_else(|p| p.into_inner()).sent(dx, dy);
    let length = dx.hypot(dy);
    *position = (
        (position.0 + dx / length).clamp(-1000.0, 1000.0),
        (position.1 + dy / length).clamp(-1000.0, 1000.0),
    );
    writer.send(&Outgoing::Move { dx, dy }).await
}

/// How far a playing bot wanders from its place.
const WANDER: f64 = 10.0;

fn interval(rate: f64) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// Walks out to the bot's place (tracking its position by the steps it sends), marks it in
/// place, then moves and pings at the configured rates. Ends when a write fails.
async fn write_loop(
    mut writer: Writer,
    mut position: (f64, f64),
    walk: Arc<Mutex<Walk>>,
    shared: Arc<Shared>,
    settled: Arc<AtomicBool>,
) {
    let config = &shared.config;
    let home = home(config.placement);
    let mut walking = interval(config.walk_rate);
    // One direction all the way: however the server collapses these moves, the positions
    // they lead to are few, so the bot's check explains them cheaply.
    let direction = step_toward(position, home);
    for _ in 0..config.max_walk_steps {
        if distance(position, home) <= WANDER {
            break;
        }
        walking.tick().await;
        if send_move(&mut writer, &walk, &mut position, direction)
            .await
            .is_err()
        {
            return;
        }
    }
    if !settled.swap(true, Relaxed) {
        shared.stats.settled.fetch_add(1, Relaxed);
    }
    let mut moves = interval(config.move_rate);
    let mut pings = interval(config.ping_rate);
    loop {
        let sent = tokio::select! {
            _ = moves.tick() => {
                let direction = if distance(position, home) > WANDER {
                    step_toward(position, home)
                } else {
                    let angle = fastrand::f64() * std::f64::consts::TAU;
                    (angle.cos(), angle.sin())
                };
                send_move(&mut writer, &walk, &mut position, direction).await
            }
            _ = pings.tick() => {
                writer.send(&Outgoing::Ping { nonce: shared.stats.now_us() }).await
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

/// With `--zones`: walks out to the bot's border (at `--walk-rate`), marks it in place, then
/// walks back and forth across it (at `--move-rate`) and pings. Each leg keeps one direction,
/// so the bot's check explains the server's positions cheaply. Ends when a write fails.
async fn cross_loop(
    mut writer: Writer,
    mut position: (f64, f64),
    walk: Arc<Mutex<Walk>>,
    shared: Arc<Shared>,
    settled: Arc<AtomicBool>,
    crossing: Arc<Crossing>,
) {
    let config = &shared.config;
    let mut moves = interval(if settled.load(Relaxed) {
        config.move_rate
    } else {
        config.walk_rate
    });
    let mut pings = interval(config.ping_rate);
    let mut walked_out = 0;
    // The end of the current leg and the direction toward it.
    let mut leg: Option<((f64, f64), (f64, f64))> = None;
    loop {
        let sent = tokio::select! {
            _ = moves.tick() => {
                if let Some(at) = crossing.take_resync() {
                    position = at;
                    leg = None;
                }
                let (end, direction) = *leg.get_or_insert_with(|| {
                    let end = crossing.target(position);
                    (end, step_toward(position, end))
                });
                let ahead = (end.0 - position.0) * direction.0 + (end.1 - position.1) * direction.1;
                let out_of_steps = !settled.load(Relaxed) && walked_out >= config.max_walk_steps;
                if ahead < 0.5 || out_of_steps {
                    if !settled.swap(true, Relaxed) {
                        shared.stats.settled.fetch_add(1, Relaxed);
                        moves = interval(config.move_rate);
                    }
                    crossing.turn();
                    leg = None;
                    Ok(())
                } else {
                    walked_out += 1;
                    send_move(&mut writer, &walk, &mut position, direction).await
                }
            }
            _ = pings.tick(), if settled.load(Relaxed) => {
                writer.send(&Outgoing::Ping { nonce: shared.stats.now_us() }).await
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Starts the writing half of a logged-in bot at `position`: [`cross_loop`] with `--zones`,
/// [`write_loop`] otherwise.
fn start_writing(
    shared: &Arc<Shared>,
    writer: Writer,
    position: (f32, f32),
    walk: &Arc<Mutex<Walk>>,
    settled: &Arc<AtomicBool>,
    crossing: Option<&Arc<Crossing>>,
) -> tokio::task::JoinHandle<()> {
    let position = (f64::from(position.0), f64::from(position.1));
    let (walk, shared, settled) = (Arc::clone(walk), Arc::clone(shared), Arc::clone(settled));
    match crossing {
        Some(crossing) => tokio::spawn(cross_loop(
            writer,
            position,
            walk,
            shared,
            settled,
            Arc::clone(crossing),
        )),
        None => tokio::spawn(write_loop(writer, position, walk, shared, settled)),
    }
}

/// After a `handoff`, reads what the source still sends on the old connection for a second:
/// an update there means the source still plays the player (a double hold).
async fn watch_source(mut reader: Reader, shared: Arc<Shared>) {
    let watched = async {
        while let Ok(Some((incoming, _))) = reader.next().await {
            if let (Incoming::Update(_), Some(zones)) = (incoming, &shared.zones) {
                zones.updates_after_handoff.fetch_add(1, Relaxed);
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), watched).await;
}

/// With `--zones`, on one round in ten of each bot (two a second): the other bots it sees
/// in another zone than its own, at the positions this update changed (`moved`), are
/// compared with when each saw itself there.
fn sample_staleness(
    shared: &Shared,
    n: usize,
    world: &World,
    round: u64,
    moved: &[(u64, (f32, f32))],
) {
    let Some(zones) = &shared.zones else {
        return;
    };
    if round % 10 != n as u64 % 10 {
        return;
    }
    let Some(own) = world.own_position() else {
        return;
    };
    let here = zones.map.zone_at(own.0, own.1);
    let now = shared.stats.now_us();
    for &(id, at) in moved {
        if zones.map.zone_at(at.0, at.1) == here {
            continue;
        }
        if let Some(bot) = world.player_of(id).and_then(|p| zones.bot_of(p)) {
            zones.remote_seen(bot, at, now);
        }
    }
}

/// Runs bot `n` until the run stops or the server closes its connection.
pub async fn run(shared: Arc<Shared>, n: usize) {
    let stats = &shared.stats;
    let mut stop = shared.stop.subscribe();
    let settled = Arc::new(AtomicBool::new(false));
    let settle = |settled: &AtomicBool| {
        if !settled.swap(true, Relaxed) {
            stats.settled.fetch_add(1, Relaxed);
        }
    };
    let logged_in = tokio::select! {
        result = log_in(&shared, n) => result,
        _ = stop.wait_for(|stopped| *stopped) => return,
    };
    let (conn, position) = match logged_in {
        Ok(ok) => ok,
        Err(reason) => {
            if stats.login_failures.fetch_add(1, Relaxed) == 0 {
                eprintln!("bot {n} gave up logging in: {reason}");
            }
            settle(&settled);
            return;
        }
    };
    stats.logins.fetch_add(1, Relaxed);
    stats.last_login_us.fetch_max(stats.now_us(), Relaxed);
    stats.online.fetch_add(1, Relaxed);
    let Conn { mut reader, writer } = conn;
    let precision = match shared.config.encoding {
        Encoding::Json => Precision::Exact,
        Encoding::Binary => Precision::Quantised,
    };
    let crossing = shared
        .zones
        .as_ref()
        .map(|zones| Arc::new(zones.map.crossing(n, shared.config.cross_depth)));
    let mut walk = Arc::new(Mutex::new(Walk::new(position, precision)));
    let mut writing = start_writing(
        &shared,
        writer,
        position,
        &walk,
        &settled,
        crossing.as_ref(),
    );
    let mut world = World::new();
    let mut last_update: Option<Instant> = None;
    // After a handoff: when the source's last update, the handoff and the destination's
    // `logged_in` arrived (the gap ends at the destination's first update).
    let mut handed_off: Option<(Instant, Instant, Instant)> = None;
    let mut moved = Vec::new();
    let closed = loop {
        let next = tokio::select! {
            next = reader.next() => next,
            _ = stop.wait_for(|stopped| *stopped) => break false,
        };
        let (incoming, bytes) = match next {
            Ok(Some(read)) => read,
            Ok(None) | Err(ReadError::Io) => break true,
            Err(ReadError::Decode(why)) => {
                stats.record_violation(n, &why);
                continue;
            }
            Err(ReadError::Framing(why)) => {
                stats.record_violation(n, &why);
                break true;
            }
        };
        stats.bytes.fetch_add(bytes as u64, Relaxed);
        let message = match incoming {
            Incoming::Update(raw) => {
                stats.updates.fetch_add(1, Relaxed);
                let now = Instant::now();
                let previous = last_update.replace(now);
                if let Some(last) = previous {
                    stats.record_gap((now - last).as_micros() as u64);
                }
                match (handed_off.take(), &shared.zones) {
                    (Some((last_update, handoff, logged_in)), Some(zones)) => {
                        zones.handoff_done(&HandoffTimes {
                            last_update,
                            handoff,
                            logged_in,
                            first_update: now,
                        });
                    }
                    // Two updates from one server: the same run's reference for the gap.
                    (None, Some(zones)) => {
                        if let Some(last) = previous {
                            zones.update_interval((now - last).as_micros() as u64);
                        }
                    }
                    _ => {}
                }
                let (round, checked) = match update::decode(raw, world.schema()) {
                    Ok(update) => {
                        moved.clear();
                        if shared.zones.is_some() {
                            moved.extend(update.changed.iter().filter_map(|e| {
                                e.components.iter().find_map(|(_, c)| match c {
                                    update::Component::Position(x, y) => Some((e.id, (*x, *y))),
                                    _ => None,
                                })
                            }));
                        }
                        let round = update.round;
                        let checked = world
                            .apply(update, &mut walk.lock().unwrap_or_else(|p| p.into_inner()));
                        (round, checked)
                    }
                    Err(why) => {
                        stats.record_violation(n, &why);
                        continue;
                    }
                };
                if let (Some(zones), Some(own)) = (&shared.zones, checked.own) {
                    zones.own_position(n, own, stats.now_us());
                }
                sample_staleness(&shared, n, &world, round, &moved);
                for why in &checked.violations {
                    stats.record_violation(n, why);
                }
                if checked.unchecked {
                    stats.unchecked.fetch_add(1, Relaxed);
                }
                continue;
            }
            Incoming::Message(message) => message,
        };
        match (message.kind.as_str(), message.code.as_deref()) {
            ("replication", _) => match (message.you, message.components) {
                (Some(you), Some(components)) => world.replication(you, components),
                _ => stats.record_violation(n, "a replication message without you or components"),
            },
            ("pong", _) => stats.record_pong(message.nonce.unwrap_or(0)),
            ("kicked", _) => {
                stats.kicked.fetch_add(1, Relaxed);
            }
            ("handoff", _) => {
                writing.abort();
                let handoff = Instant::now();
                match follow(&shared, n, &message).await {
                    Ok((conn, position)) => {
                        let source = std::mem::replace(&mut reader, conn.reader);
                        tokio::spawn(watch_source(source, Arc::clone(&shared)));
                        handed_off =
                            Some((last_update.unwrap_or(handoff), handoff, Instant::now()));
                        walk = Arc::new(Mutex::new(Walk::new(position, precision)));
                        writing = start_writing(
                            &shared,
                            conn.writer,
                            position,
                            &walk,
                            &settled,
                            crossing.as_ref(),
                        );
                    }
                    Err(why) => {
                        if let Some(zones) = &shared.zones
                            && zones.lost.fetch_add(1, Relaxed) == 0
                        {
                            eprintln!("bot {n} lost in a handoff: {why}");
                        }
                        break true;
                    }
                }
            }
            ("error", Some("zone_unavailable")) => {
                // Held at the border: its moves no longer explain where it is.
                if let Some(zones) = &shared.zones {
                    zones.zone_refusals.fetch_add(1, Relaxed);
                }
                walk.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .stop_checking();
                if let (Some(crossing), Some(at)) = (&crossing, world.own_position()) {
                    crossing.resync((f64::from(at.0), f64::from(at.1)));
                }
            }
            ("error", Some("rate_limited")) => {
                stats.rate_limited.fetch_add(1, Relaxed);
            }
            ("error", Some("server_busy")) => {
                stats.server_busy.fetch_add(1, Relaxed);
            }
            ("error", _) => {
                stats.other_errors.fetch_add(1, Relaxed);
            }
            _ => {}
        }
    };
    writing.abort();
    stats.online.fetch_sub(1, Relaxed);
    if closed {
        stats.disconnects.fetch_add(1, Relaxed);
        settle(&settled);
    }
}
