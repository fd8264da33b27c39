//! One world across two processes under crashes (issue 20, item 3), as a property: arena
//! players carrying inventories cross the border between two zones back and forth 1,000
//! times while either zone's process is SIGKILLed at random and replaced. Every item is
//! conserved (each player's stored inventory is exactly what it picked up before the
//! crossings), and no player is ever held twice: after every login its lease names the
//! process its client plays on, no client is ever kicked for a takeover, and the players
//! online on the live processes never add up to more than there are players.
//!
//! Real `arena` processes (`--zones`, `--zone`) on a real `redis-server`, players on plain
//! JSON-line TCP connections that follow `handoff`s and come back after a crash by resume
//! token (or password), wherever they are sent.

#[allow(dead_code)]
#[path = "../../../tests/common/redis_server.rs"]
mod redis_server;
#[allow(dead_code)] // The fuzz tests' part of it.
#[path = "../../../tests/common/rng.rs"]
mod rng;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_server::{RedisServer, free_port};
use rng::Rng;
use serde_json::{Value, json};

const PLAYERS: usize = 6;
const CROSSINGS: usize = 1_000;
const ZONES: [&str; 2] = ["west", "east"];
/// Guards against a hang (not timing assertions): one player getting back in, the whole run.
const REJOIN_WITHIN: Duration = Duration::from_secs(40);
const RUN_WITHIN: Duration = Duration::from_secs(400);

/// One zone's `arena` process.
struct ZoneProcess {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
    owner_prefix: String,
    log: tempfile::NamedTempFile,
}

impl ZoneProcess {
    /// Starts the process for `zone` (the `generation`th), retrying while the zone is still
    /// registered to a process that just crashed (until its liveness key expires).
    fn start(redis: &RedisServer, map: &str, zone: &str, generation: usize) -> Self {
        let started = Instant::now();
        loop {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
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
                addr,
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

/// The world: both zones' current processes.
struct World {
    redis: RedisServer,
    map: String,
    zones: Mutex<Vec<ZoneProcess>>,
    generation: AtomicUsize,
}

impl World {
    fn addr_of(&self, zone: usize) -> SocketAddr {
        self.zones.lock().unwrap()[zone].addr
    }

    /// The owner prefix (`<instance>/`) of the process listening on `addr`, if it is current.
    fn owner_at(&self, addr: SocketAddr) -> Option<String> {
        let zones = self.zones.lock().unwrap();
        zones
            .iter()
            .find(|z| z.addr == addr)
            .map(|z| z.owner_prefix.clone())
    }

    /// SIGKILLs `zone`'s process and starts its replacement.
    fn crash(&self, zone: usize) {
        self.zones.lock().unwrap()[zone].kill();
        let generation = self.generation.fetch_add(1, Ordering::SeqCst);
        let replacement = ZoneProcess::start(&self.redis, &self.map, ZONES[zone], generation);
        self.zones.lock().unwrap()[zone] = replacement;
    }
}

/// A player's JSON-line connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    addr: SocketAddr,
}

impl Conn {
    /// Connects to `addr` from `from` (a loopback address of the player's own: the server
    /// throttles failed logins per address, as it would different players' homes).
    fn open(from: IpAddr, addr: SocketAddr) -> Option<Self> {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
        socket.bind(&SocketAddr::new(from, 0).into()).ok()?;
        socket
            .connect_timeout(&addr.into(), Duration::from_secs(1))
            .ok()?;
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        Some(Self {
            writer: stream.try_clone().ok()?,
            reader: BufReader::new(stream),
            addr,
        })
    }

    fn send(&mut self, message: Value) -> bool {
        writeln!(self.writer, "{message}").is_ok()
    }

    /// The next message that is not replication, or `None` when the connection ended (or
    /// went silent: its process died).
    fn next(&mut self) -> Option<Value> {
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let message: Value = serde_json::from_str(&line).expect("the server sends JSON");
            match message["type"].as_str() {
                Some("update" | "replication" | "queued") => continue,
                Some("kicked") => {
                    assert_ne!(
                        message["code"], "takeover",
                        "a player was held twice: {message}"
                    );
                    return None;
                }
                _ => return Some(message),
            }
        }
    }
}

/// One player: its account, its inventory as picked up, its latest resume token.
struct Player {
    name: String,
    id: u64,
    /// Where its connections come from.
    from: IpAddr,
    token: Option<String>,
    conn: Option<Conn>,
}

impl Player {
    /// Gets the player in (resume token first, password if that is refused), following
    /// handoffs and waiting out a crashed process's lease; checks its lease names the
    /// process it plays on.
    fn enter(&mut self, world: &World, mut at: SocketAddr) {
        let started = Instant::now();
        let mut by_password = self.token.is_none();
        loop {
            assert!(
                started.elapsed() < REJOIN_WITHIN,
                "{} could not get back in within {REJOIN_WITHIN:?}",
                self.name
            );
            let Some(mut conn) = Conn::open(self.from, at) else {
                std::thread::sleep(Duration::from_millis(100));
                at = world.addr_of(0);
                continue;
            };
            let request = match (&self.token, by_password) {
                (Some(token), false) => json!({"type": "resume", "token": token}),
                _ => json!({"type": "login", "username": self.name, "password": "password1"}),
            };
            conn.send(request);
            let Some(answer) = conn.next() else {
                at = world.addr_of(0);
                continue;
            };
            match answer["type"].as_str() {
                Some("logged_in") => {
                    self.token = answer["resume_token"].as_str().map(String::from);
                    self.check_lease(world, conn.addr);
                    self.conn = Some(conn);
                    return;
                }
                Some("handoff") => {
                    self.token = answer["resume_token"].as_str().map(String::from);
                    by_password = false;
                    at = answer["addr"].as_str().unwrap().parse().unwrap();
                }
                _ if answer["code"] == "invalid_credentials" => by_password = true,
                // Held by a crashed process until its liveness key expires, or its zone
                // has no process for a moment.
                _ if matches!(
                    answer["code"].as_str(),
                    Some("already_online" | "unavailable" | "draining")
                ) =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                    at = world.addr_of(0);
                }
                _ => panic!("{}: {answer}", self.name),
            }
        }
    }

    /// Promise: the player's lease names the process its client just logged in on.
    fn check_lease(&self, world: &World, addr: SocketAddr) {
        let Some(owner) = world.owner_at(addr) else {
            return; // that process was replaced meanwhile: its client finds out soon
        };
        let lease: Option<String> = redis::cmd("GET")
            .arg(format!("hearth:session:{{{}}}", self.id))
            .query(&mut world.redis.connection())
            .unwrap();
        if let Some(lease) = lease {
            assert!(
                lease.starts_with(&owner),
                "{} plays on {owner} but its lease is {lease}",
                self.name
            );
        }
    }

    /// Walks towards the other zone until handed off (`true`), or the connection ends.
    fn cross(&mut self, toward_east: bool) -> Option<SocketAddr> {
        let conn = self.conn.as_mut()?;
        let dx = if toward_east { 5 } else { -5 };
        for _ in 0..10 {
            if !conn.send(json!({"type": "walk", "dx": dx, "dy": 0})) {
                return None;
            }
            let message = conn.next()?;
            match message["type"].as_str() {
                Some("walked") => {}
                Some("handoff") => {
                    self.token = message["resume_token"].as_str().map(String::from);
                    return message["addr"].as_str().unwrap().parse().ok();
                }
                // A walk that arrived while the player was leaving for the other zone, or
                // towards a zone whose process is being replaced.
                Some("error")
                    if matches!(
                        message["code"].as_str(),
                        Some("not_logged_in" | "zone_unavailable")
                    ) => {}
                _ => panic!("{}: {message}", self.name),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

/// Registers `name`, picks a few items up, logs out (so the inventory is durable: `logged_out`
/// comes once the final save is) and returns the player with what it carries.
fn outfit(world: &World, i: u8, rng: &mut Rng) -> (Player, BTreeMap<String, u64>) {
    let name = format!("player{i}");
    let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + i));
    let mut conn = Conn::open(from, world.addr_of(0)).expect("west listens");
    conn.send(json!({"type": "register", "username": name, "password": "password1"}));
    let id = conn.next().expect("registered")["player_id"]
        .as_u64()
        .unwrap();
    let mut player = Player {
        name,
        id,
        from,
        token: None,
        conn: None,
    };
    player.enter(world, world.addr_of(0));
    let mut carried = BTreeMap::new();
    let conn = player.conn.as_mut().unwrap();
    for item in ["coin", "gem", "herb"] {
        for _ in 0..rng.below(4) + 1 {
            conn.send(json!({"type": "pickup", "item": item}));
            let picked = conn.next().expect("picked_up");
            assert_eq!(picked["type"], "picked_up", "{picked}");
            carried.insert(item.to_string(), picked["count"].as_u64().unwrap());
        }
    }
    conn.send(json!({"type": "logout"}));
    assert_eq!(conn.next().expect("logged_out")["type"], "logged_out");
    player.conn = None;
    (player, carried)
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
        .map(|zone| ZoneProcess::start(&redis, &map, zone, 1))
        .collect();
    let world = Arc::new(World {
        redis,
        map,
        zones: Mutex::new(zones),
        generation: AtomicUsize::new(2),
    });

    let outfitted: Vec<(Player, BTreeMap<String, u64>)> = (0..PLAYERS)
        .map(|i| outfit(&world, i as u8, &mut rng))
        .collect();
    let expected: Vec<(u64, BTreeMap<String, u64>)> =
        outfitted.iter().map(|(p, c)| (p.id, c.clone())).collect();

    let crossings = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let walkers: Vec<_> = outfitted
        .into_iter()
        .map(|(mut player, _)| {
            let (world, crossings) = (Arc::clone(&world), Arc::clone(&crossings));
            std::thread::spawn(move || {
                let mut toward_east = false;
                while crossings.load(Ordering::SeqCst) < CROSSINGS {
                    assert!(started.elapsed() < RUN_WITHIN, "the run did not finish");
                    if player.conn.is_none() {
                        player.enter(&world, world.addr_of(0));
                        toward_east = player.conn.as_ref().unwrap().addr == world.addr_of(0);
                    }
                    match player.cross(toward_east) {
                        Some(next) => {
                            crossings.fetch_add(1, Ordering::SeqCst);
                            player.conn = None;
                            player.enter(&world, next);
                            toward_east = !toward_east;
                        }
                        // Its process died (or it could not cross): back in, wherever sent.
                        None => player.conn = None,
                    }
                }
                if let Some(conn) = player.conn.as_mut() {
                    conn.send(json!({"type": "logout"}));
                    while let Some(message) = conn.next() {
                        if message["type"] == "logged_out" {
                            break;
                        }
                    }
                }
            })
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
                    zones.iter().map(ZoneProcess::players_online).collect()
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
        std::thread::sleep(Duration::from_millis(1_500 + rng.below(2_000)));
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
