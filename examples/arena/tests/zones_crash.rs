//! One world across two processes under crashes (issue 20, item 3), as a property: arena
//! players carrying inventories cross the border between two zones back and forth 1,000
//! times while either zone's process is SIGKILLed at random and replaced. Every item is
//! conserved (each player's stored inventory is exactly what it picked up before the
//! crossings), and no player is ever held twice: after every login its lease names the
//! process its client plays on, no client is ever kicked for a takeover, and the players
//! online on the live processes never add up to more than there are players.
//!
//! Real `arena` processes (`--zones`, `--zone`) on a real `redis-server`; a zone's
//! replacement listens where its crashed process did, as a restarted server would. Players
//! are `hearth_client`s, each connecting from a loopback address of its own: the client
//! follows `handoff`s and comes back after a crash by resume token on its own; a player
//! whose client gives up logs in again with a new one (resume token, or password), wherever
//! it is sent. Every event each client tells is read and checked, its automatic logins too.

#[allow(dead_code)]
#[path = "../../../tests/common/redis_server.rs"]
mod redis_server;
#[allow(dead_code)] // The fuzz tests' part of it.
#[path = "../../../tests/common/rng.rs"]
mod rng;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arena::{PickedUp, Pickup, STRIDE, Walk, Walked};
use hearth_client::{
    Client, ClientConfig, ClientError, Event, GameMessage, KickCode, Reconnect, ResumeToken,
    ServerMessage,
};
use redis_server::{RedisServer, free_port};
use rng::Rng;
use serde_json::Value;

const PLAYERS: usize = 6;
const CROSSINGS: usize = 1_000;
const ZONES: [&str; 2] = ["west", "east"];
const PASSWORD: &str = "password1";
/// Guards against a hang (not timing assertions): one player getting back in (or one answer
/// it waits for), the whole run.
const REJOIN_WITHIN: Duration = Duration::from_secs(40);
const RUN_WITHIN: Duration = Duration::from_secs(400);
/// A walk unanswered this long means its process went silent: the player leaves and logs in
/// again (not an assertion).
const WALK_SILENCE: Duration = Duration::from_secs(5);
/// How long a player that stepped over the border waits to hear it was handed off (or kept
/// back) before it walks on (not an assertion: kept back at the border of a zone whose
/// neighbour has no process, it is told so at most every 2 s).
const CROSSING_WAIT: Duration = Duration::from_secs(2);

/// One zone's `arena` process.
struct ZoneProcess {
    child: Child,
    metrics: SocketAddr,
    owner_prefix: String,
    log: tempfile::NamedTempFile,
}

impl ZoneProcess {
    /// Starts the process for `zone` (the `generation`th) listening on `addr`, retrying while
    /// the zone is still registered to a process that just crashed (until its liveness key
    /// expires).
    fn start(
        redis: &RedisServer,
        map: &str,
        zone: &str,
        addr: SocketAddr,
        generation: usize,
    ) -> Self {
        let started = Instant::now();
        loop {
            let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let instance = format!("{zone}-{generation}");
            let log = tempfile::NamedTempFile::new().unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_arena"))
                .args(["--store", &redis.url(), "--zones", map, "--zone", zone])
                .args(["--instance-id", &instance, "--listen", &addr.to_string()])
                .args(["--metrics-listen", &metrics.to_string()])
                .args(["--lease-ttl", "2s", "--lease-refresh-interval", "500ms"])
                .args(["--flush-interval", "500ms"])
                .stdout(Stdio::null())
                .stderr(log.reopen().unwrap())
                .spawn()
                .expect("starting the arena binary");
            let mut process = Self {
                child,
                metrics,
                owner_prefix: format!("{instance}/"),
                log,
            };
            loop {
                if TcpStream::connect(addr).is_ok() {
                    return process;
                }
                if let Ok(Some(_)) = process.child.try_wait() {
                    break; // refused: the crashed predecessor still holds the zone
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let log = std::fs::read_to_string(process.log.path()).unwrap_or_default();
            assert!(
                log.contains("is served by another running process"),
                "{zone} did not start:\n{log}"
            );
            assert!(
                started.elapsed() < REJOIN_WITHIN,
                "{zone} was never taken over from its crashed process:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Its `hearth_players_online` gauge, if it answers.
    fn players_online(&self) -> Option<u64> {
        let mut stream =
            TcpStream::connect_timeout(&self.metrics, Duration::from_millis(300)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut body = String::new();
        std::io::Read::read_to_string(&mut stream, &mut body).ok()?;
        body.lines()
            .find_map(|line| line.strip_prefix("hearth_players_online "))
            .and_then(|n| n.trim().parse::<f64>().ok())
            .map(|n| n as u64)
    }

    fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for ZoneProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A zone: its address, where every process serving it listens (so a client whose process
/// crashed comes back to the replacement by itself), and its current process.
struct Zone {
    addr: SocketAddr,
    process: ZoneProcess,
    /// Its process was killed and its replacement is not up yet.
    replacing: bool,
}

/// The world: both zones' current processes.
struct World {
    redis: RedisServer,
    map: String,
    zones: Mutex<Vec<Zone>>,
    generation: AtomicUsize,
}

impl World {
    fn addr_of(&self, zone: usize) -> SocketAddr {
        self.zones.lock().unwrap()[zone].addr
    }

    /// The owner prefix (`<instance>/`) of the process listening on `addr`; `None` while
    /// that zone's process is being replaced.
    fn owner_at(&self, addr: SocketAddr) -> Option<String> {
        let zones = self.zones.lock().unwrap();
        zones
            .iter()
            .find(|z| z.addr == addr && !z.replacing)
            .map(|z| z.process.owner_prefix.clone())
    }

    /// SIGKILLs `zone`'s process and starts its replacement, on the same address.
    fn crash(&self, zone: usize) {
        let addr = {
            let mut zones = self.zones.lock().unwrap();
            zones[zone].replacing = true;
            zones[zone].process.kill();
            zones[zone].addr
        };
        let generation = self.generation.fetch_add(1, Ordering::SeqCst);
        let replacement = ZoneProcess::start(&self.redis, &self.map, ZONES[zone], addr, generation);
        let mut zones = self.zones.lock().unwrap();
        zones[zone].process = replacement;
        zones[zone].replacing = false;
    }
}

/// A player's client settings: connections from `from` (a loopback address of the player's
/// own: the server throttles failed logins per address, as it would different players'
/// homes); after a drop, it keeps trying its process's address until its replacement is up
/// (giving up well within [`REJOIN_WITHIN`], so the player can log in again).
fn config(from: IpAddr) -> ClientConfig {
    ClientConfig {
        bind_ip: Some(from),
        reconnect: Reconnect {
            enabled: true,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            give_up_after: REJOIN_WITHIN / 2,
        },
        ..ClientConfig::default()
    }
}

/// `work`, or a failure naming `what` after [`REJOIN_WITHIN`] (a guard against a hang).
async fn within<T>(what: &str, work: impl Future<Output = T>) -> T {
    match tokio::time::timeout(REJOIN_WITHIN, work).await {
        Ok(out) => out,
        Err(_) => panic!("no {what} within {REJOIN_WITHIN:?}"),
    }
}

/// An answer decoded as the arena's type for `name`.
fn decode<T: serde::de::DeserializeOwned>(answer: &GameMessage, name: &str) -> T {
    answer
        .decode_if(name)
        .unwrap_or_else(|| panic!("expected {name}, got {answer:?}"))
        .unwrap_or_else(|e| panic!("{name} does not decode: {e}"))
}

/// Promise: no client is ever kicked for a takeover (its player held twice).
fn assert_not_taken_over(name: &str, event: &Event) {
    if let Event::Server(ServerMessage::Kicked { code, reason }) = event {
        assert_ne!(
            *code,
            KickCode::Takeover,
            "{name} was held twice: kicked: {reason}"
        );
    }
}

/// Where a player is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Logged in on the process at [`Player::at`]: it walks.
    Playing,
    /// Its connection dropped or it was handed off (since then): its client is resuming.
    Moving(Instant),
    /// Without a client, or with one that gave up: it logs in again.
    Out,
}

/// What a player waiting for its client heard.
enum Heard {
    Event(Event),
    /// The client is done (it gave up resuming, or could not resume).
    Done,
    /// Nothing within the wait.
    Nothing,
}

/// One player: its account, its client and what it heard, its latest resume token.
struct Player {
    name: String,
    id: u64,
    /// Where its connections come from.
    from: IpAddr,
    /// The address of the process its client plays on (or last played on).
    at: SocketAddr,
    token: Option<ResumeToken>,
    client: Option<Client>,
    state: State,
    /// Events read from the client and not yet taken in, oldest first.
    heard: VecDeque<Event>,
    /// How many of the [`Event::Resumed`] in `heard` a walk may have gone after: their lease
    /// is not checked, as the walk may have moved the player on before the check.
    unchecked: usize,
    crossings: Arc<AtomicUsize>,
}

impl Player {
    fn client(&self) -> &Client {
        self.client.as_ref().expect("a client")
    }

    /// Moves what the client has told so far to `heard`.
    fn drain(&mut self) {
        if let Some(client) = self.client.as_mut() {
            while let Some(event) = client.try_next_event() {
                self.heard.push_back(event);
            }
        }
    }

    /// The next event (heard already, or waited for up to `wait`).
    async fn hear(&mut self, wait: Duration) -> Heard {
        if let Some(event) = self.heard.pop_front() {
            return Heard::Event(event);
        }
        let Some(client) = self.client.as_mut() else {
            return Heard::Done;
        };
        match tokio::time::timeout(wait, client.next_event()).await {
            Ok(Some(event)) => Heard::Event(event),
            Ok(None) => Heard::Done,
            Err(_) => Heard::Nothing,
        }
    }

    fn moving(&mut self) {
        if !matches!(self.state, State::Moving(_)) {
            self.state = State::Moving(Instant::now());
        }
    }

    /// Takes one event in: checks what it promises, and follows where the player is. `true`
    /// when it says where the player is (or that it was kept back at the border).
    async fn take_in(&mut self, event: Event, world: &World) -> bool {
        assert_not_taken_over(&self.name, &event);
        match event {
            Event::Replication { .. }
            | Event::Update(_)
            | Event::Reconnecting { .. }
            // A `kicked` for anything but a takeover: the drop that follows says the rest.
            | Event::Server(ServerMessage::Kicked { .. } | ServerMessage::Queued { .. }) => false,
            // It walked into the other zone: its client follows.
            Event::Server(ServerMessage::Handoff { .. }) => {
                self.crossings.fetch_add(1, Ordering::SeqCst);
                self.moving();
                true
            }
            Event::Disconnected { .. } => {
                self.moving();
                true
            }
            Event::HandedOff { addr } => {
                self.at = addr.parse().expect("a handoff names a process's address");
                self.moving();
                true
            }
            // Logged in again, by its client (after a handoff, or a drop).
            Event::Resumed { .. } => {
                self.state = State::Playing;
                if self.unchecked > 0 {
                    self.unchecked -= 1;
                } else {
                    self.check_lease(world).await;
                }
                true
            }
            Event::ResumeFailed { .. } => {
                self.state = State::Out;
                true
            }
            // A walk's refusal, sent with no request waiting: towards a zone whose process is
            // being replaced (or one that arrived while the player was leaving).
            Event::Refused(refusal)
                if matches!(
                    refusal.code.as_str(),
                    "zone_unavailable" | "not_logged_in"
                ) =>
            {
                true
            }
            other => panic!("{}: {other:?}", self.name),
        }
    }

    /// Takes in everything heard so far.
    async fn settle(&mut self, world: &World) {
        self.drain();
        while let Some(event) = self.heard.pop_front() {
            self.take_in(event, world).await;
        }
    }

    /// Promise: the player's lease names the process its client just logged in on. Checked
    /// while it still plays there: that process answers a ping on the same connection, with
    /// no drop or handoff told before the answer (it was neither killed nor left since the
    /// login, so it is the zone's current process and was all along).
    async fn check_lease(&mut self, world: &World) {
        let Some(owner) = world.owner_at(self.at) else {
            return; // that process is being replaced: its client finds out soon
        };
        let lease: Option<String> = redis::cmd("GET")
            .arg(format!("hearth:session:{{{}}}", self.id))
            .query(&mut world.redis.connection())
            .unwrap();
        let pong = within("pong", self.client().ping()).await;
        self.drain();
        let left = self.heard.iter().any(|event| {
            matches!(
                event,
                Event::Disconnected { .. }
                    | Event::HandedOff { .. }
                    | Event::Resumed { .. }
                    | Event::ResumeFailed { .. }
                    | Event::Server(ServerMessage::Handoff { .. })
            )
        });
        if pong.is_err() || left {
            return; // it left that process meanwhile: its next login is checked
        }
        if let Some(lease) = lease {
            assert!(
                lease.starts_with(&owner),
                "{} plays on {owner} but its lease is {lease}",
                self.name
            );
        }
    }

    /// Closes the client (its events checked), keeping its newest resume token.
    async fn close(&mut self) {
        self.drain();
        for event in self.heard.drain(..) {
            assert_not_taken_over(&self.name, &event);
        }
        if let Some(client) = self.client.take() {
            if let Some(token) = client.resume_token() {
                self.token = Some(token);
            }
            client.close().await;
        }
        self.state = State::Out;
    }

    /// Gets the player in with a new client (resume token first, password if that is
    /// refused), wherever it is sent (the client follows a `handoff` answer itself), waiting
    /// out a crashed process's lease or a zone without a process for a moment; checks its
    /// lease names the process it plays on.
    async fn enter(&mut self, world: &World) {
        self.close().await;
        let started = Instant::now();
        let mut by_password = self.token.is_none();
        loop {
            assert!(
                started.elapsed() < REJOIN_WITHIN,
                "{} could not get back in within {REJOIN_WITHIN:?}",
                self.name
            );
            let mut client = match Client::connect_with(self.at, config(self.from)).await {
                Ok(client) => client,
                Err(_) => {
                    // Its process is being replaced.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let answer = match (&self.token, by_password) {
                (Some(token), false) => within("logged_in", client.resume(token.clone())).await,
                _ => within("logged_in", client.login(&self.name, PASSWORD)).await,
            };
            match answer {
                Ok(_) => {
                    self.client = Some(client);
                    self.state = State::Playing;
                    self.unchecked = 0;
                    // A login that followed a `handoff` is told as `Resumed` there, and
                    // checked when taken in; one answered where it was sent, here.
                    self.drain();
                    if !self
                        .heard
                        .iter()
                        .any(|event| matches!(event, Event::Resumed { .. }))
                    {
                        self.check_lease(world).await;
                    }
                    self.settle(world).await;
                    return;
                }
                Err(ClientError::Refused(refusal)) => match refusal.code.as_str() {
                    "invalid_credentials" => by_password = true,
                    // Held by a crashed process until its liveness key expires, or its zone
                    // has no process for a moment.
                    "already_online" | "unavailable" | "draining" => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    _ => panic!("{}: {refusal}", self.name),
                },
                // Its process died meanwhile, or the process it was sent to is not up yet.
                Err(
                    ClientError::Disconnected | ClientError::Reconnecting | ClientError::Closed,
                ) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{}: {e}", self.name),
            }
            while let Some(event) = client.try_next_event() {
                assert_not_taken_over(&self.name, &event);
            }
            if let Some(token) = client.resume_token() {
                self.token = Some(token);
            }
            client.close().await;
        }
    }

    /// One walk towards the other zone; a step over the border waits to be handed off.
    async fn walk(&mut self, world: &World) {
        let toward_east = self.at == world.addr_of(0);
        let step = Walk {
            dx: if toward_east { STRIDE } else { -STRIDE },
            dy: 0.0,
        };
        let answer = tokio::time::timeout(WALK_SILENCE, self.client().request("walk", &step)).await;
        // The walk may have gone to a session the client resumed after what was taken in
        // before it.
        self.drain();
        self.unchecked = self
            .heard
            .iter()
            .filter(|event| matches!(event, Event::Resumed { .. }))
            .count();
        match answer {
            // Its process went silent: back in, wherever sent.
            Err(_) => return self.close().await,
            Ok(Ok(answer)) => {
                let walked: Walked = decode(&answer, "walked");
                let across = if toward_east {
                    walked.x >= 0.0
                } else {
                    walked.x < 0.0
                };
                if across {
                    return self.await_crossing(world).await;
                }
            }
            // A walk that arrived while the player was leaving for the other zone, or
            // towards a zone whose process is being replaced.
            Ok(Err(ClientError::Refused(refusal)))
                if matches!(refusal.code.as_str(), "not_logged_in" | "zone_unavailable") => {}
            // Its connection dropped: the client tells what it does next.
            Ok(Err(
                ClientError::Disconnected | ClientError::Reconnecting | ClientError::Closed,
            )) => {}
            Ok(Err(e)) => panic!("{}: {e}", self.name),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// After a step over the border: takes events in until one says where the player is, or
    /// that it was kept back (or for [`CROSSING_WAIT`]).
    async fn await_crossing(&mut self, world: &World) {
        let until = Instant::now() + CROSSING_WAIT;
        loop {
            match self
                .hear(until.saturating_duration_since(Instant::now()))
                .await
            {
                Heard::Event(event) => {
                    if self.take_in(event, world).await {
                        return;
                    }
                }
                Heard::Done => return self.close().await,
                Heard::Nothing => return,
            }
        }
    }

    /// Crosses back and forth until the world has crossed [`CROSSINGS`] times, then logs out.
    async fn play(mut self, world: &World, started: Instant) {
        while self.crossings.load(Ordering::SeqCst) < CROSSINGS {
            assert!(started.elapsed() < RUN_WITHIN, "the run did not finish");
            self.settle(world).await;
            match self.state {
                State::Out => self.enter(world).await,
                State::Moving(since) => {
                    let waited = since.elapsed();
                    assert!(
                        waited < REJOIN_WITHIN,
                        "{} could not get back in within {REJOIN_WITHIN:?}",
                        self.name
                    );
                    match self.hear(REJOIN_WITHIN - waited).await {
                        Heard::Event(event) => {
                            self.take_in(event, world).await;
                        }
                        Heard::Done => self.close().await,
                        Heard::Nothing => {}
                    }
                }
                State::Playing => self.walk(world).await,
            }
        }
        if self.state == State::Playing {
            // Its process may have died meanwhile: then it is not logged out, only gone.
            let _ = within("logged_out", self.client().logout()).await;
        }
        self.close().await;
    }
}

/// Registers `player{i}`, picks a few items up, logs out (so the inventory is durable:
/// `logged_out` comes once the final save is) and returns the player with what it carries.
async fn outfit(
    world: &World,
    i: u8,
    rng: &mut Rng,
    crossings: &Arc<AtomicUsize>,
) -> (Player, BTreeMap<String, u64>) {
    let name = format!("player{i}");
    let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + i));
    let west = world.addr_of(0);
    let client = Client::connect_with(west, config(from))
        .await
        .expect("west listens");
    let id = within("registered", client.register(&name, PASSWORD))
        .await
        .expect("registered");
    client.close().await;
    let mut player = Player {
        name,
        id,
        from,
        at: west,
        token: None,
        client: None,
        state: State::Out,
        heard: VecDeque::new(),
        unchecked: 0,
        crossings: Arc::clone(crossings),
    };
    player.enter(world).await;
    let mut carried = BTreeMap::new();
    for item in ["coin", "gem", "herb"] {
        for _ in 0..rng.below(4) + 1 {
            let pickup = Pickup { item: item.into() };
            let answer = within("picked_up", player.client().request("pickup", &pickup))
                .await
                .expect("picked up");
            let picked: PickedUp = decode(&answer, "picked_up");
            assert_eq!(picked.item, item, "{answer:?}");
            carried.insert(item.to_string(), u64::from(picked.count));
        }
    }
    within("logged_out", player.client().logout())
        .await
        .expect("logged out");
    player.close().await;
    (player, carried)
}

/// A runtime of its own for one thread's clients.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

#[test]
fn items_are_conserved_and_no_player_is_held_twice_across_crossings_and_crashes() {
    let mut rng = Rng(Rng::seed_from_env("HEARTH_CRASH_SEED"));
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("zones.toml");
    // New players start at (0, 0): on the border, in east. One 5-unit walk crosses it.
    std::fs::write(
        &map,
        "[[zone]]\nname = \"west\"\nmin = [-100, -100]\nmax = [0, 100]\n\
         [[zone]]\nname = \"east\"\nmin = [0, -100]\nmax = [100, 100]\n",
    )
    .unwrap();
    let map = map.to_str().unwrap().to_string();
    let zones = ZONES
        .iter()
        .map(|zone| {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            Zone {
                addr,
                process: ZoneProcess::start(&redis, &map, zone, addr, 1),
                replacing: false,
            }
        })
        .collect();
    let world = Arc::new(World {
        redis,
        map,
        zones: Mutex::new(zones),
        generation: AtomicUsize::new(2),
    });

    let crossings = Arc::new(AtomicUsize::new(0));
    let outfitted: Vec<(Player, BTreeMap<String, u64>)> = {
        let runtime = runtime();
        (0..PLAYERS)
            .map(|i| runtime.block_on(outfit(&world, i as u8, &mut rng, &crossings)))
            .collect()
    };
    let expected: Vec<(u64, BTreeMap<String, u64>)> =
        outfitted.iter().map(|(p, c)| (p.id, c.clone())).collect();

    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let walkers: Vec<_> = outfitted
        .into_iter()
        .map(|(player, _)| {
            let world = Arc::clone(&world);
            std::thread::spawn(move || runtime().block_on(player.play(&world, started)))
        })
        .collect();

    // Never more players online than there are, on the processes alive at any moment.
    let monitor = {
        let (world, done) = (Arc::clone(&world), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while !done.load(Ordering::SeqCst) {
                let counts: Vec<Option<u64>> = {
                    let zones = world.zones.lock().unwrap();
                    zones.iter().map(|z| z.process.players_online()).collect()
                };
                if counts.iter().all(Option::is_some) {
                    let online: u64 = counts.iter().flatten().sum();
                    assert!(
                        online <= PLAYERS as u64,
                        "{online} players online of {PLAYERS}: {counts:?}"
                    );
                    samples += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            samples
        })
    };

    let mut kills = 0;
    while crossings.load(Ordering::SeqCst) < CROSSINGS {
        std::thread::sleep(Duration::from_millis(700 + rng.below(1_300)));
        if crossings.load(Ordering::SeqCst) >= CROSSINGS {
            break;
        }
        world.crash(rng.below(2) as usize);
        kills += 1;
    }
    for walker in walkers {
        walker.join().expect("a player failed");
    }
    done.store(true, Ordering::SeqCst);
    let samples = monitor.join().expect("the online check failed");
    eprintln!(
        "{} crossings, {kills} crashes, {samples} online samples in {:.1} s",
        crossings.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64()
    );
    assert!(kills >= 3, "too few crashes to mean anything: {kills}");

    // Every item conserved: what each player carries in the store is what it picked up.
    let mut conn = world.redis.connection();
    let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (id, carried) in &expected {
        let record: String = redis::cmd("GET")
            .arg(format!("hearth:player:{{{id}}}"))
            .query(&mut conn)
            .unwrap();
        let record: Value = serde_json::from_str(&record).unwrap();
        let stored: BTreeMap<String, u64> =
            serde_json::from_value(record["sections"]["inventory"].clone()).unwrap();
        for item in ["coin", "gem", "herb"] {
            let total = totals.entry(item.to_string()).or_default();
            total.0 += carried.get(item).copied().unwrap_or(0);
            total.1 += stored.get(item).copied().unwrap_or(0);
        }
        assert_eq!(&stored, carried, "player {id}'s inventory");
    }
    for (item, (picked, stored)) in totals {
        assert_eq!(picked, stored, "{item}s picked up vs stored");
    }
}
