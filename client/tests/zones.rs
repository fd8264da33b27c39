//! A handoff followed by the client: two servers of one world cut into zones (in this
//! process, on a real `redis-server`); a player walks across the border, and the client
//! follows the `handoff` to the other server and resumes there on its own, the world
//! entered again and the walk going on.

mod common;
// The Hearth suite's harness: a real redis-server on a free port, killed on drop.
#[allow(dead_code)]
#[path = "../../tests/common/redis_server.rs"]
mod redis_server;

use std::sync::Arc;
use std::time::Duration;

use common::within;
use hearth::components::{Position, StoreSelection};
use hearth::testing::{ServerThread, test_config};
use hearth::zones::ZoneMap;
use hearth_client::{Client, Event};
use serde::Serialize;

#[derive(Serialize)]
struct Move {
    dx: f32,
    dy: f32,
}

/// The server of `zone` in a world of two zones whose border is at x = 2, with a WebSocket
/// listener too.
fn zone_server(redis: &redis_server::RedisServer, zone: &str) -> ServerThread {
    let map: ZoneMap = "[[zone]]\nname = \"west\"\nmin = [-1000, -1000]\nmax = [2, 1000]\n\n\
                        [[zone]]\nname = \"east\"\nmin = [2, -1000]\nmax = [1000, 1000]\n"
        .parse()
        .expect("a zone map");
    let mut config = test_config(&format!("{zone}-1"));
    // A fixed port: a zone's server advertises its configured address to the others (for
    // handoffs), which port 0 is not.
    config.front_door.listen = format!("127.0.0.1:{}", redis_server::free_port())
        .parse()
        .unwrap();
    config.front_door.listen_ws = Some(
        format!("127.0.0.1:{}", redis_server::free_port())
            .parse()
            .unwrap(),
    );
    config.store.settings.selection = StoreSelection::Redis(redis.url());
    config.zones.map = Some(Arc::new(map));
    config.zones.zone = Some(zone.to_string());
    ServerThread::demo(config).expect("the zone's server starts")
}

/// Player `id`'s x in the world the client was sent, once it is there (reading events).
async fn x_in_own_world(client: &mut Client, id: u64, what: &str) -> f32 {
    within(what, async {
        loop {
            let x = client
                .world()
                .player(id)
                .and_then(|e| e.get::<Position>("position").ok())
                .map(|p| p.x);
            if let Some(x) = x {
                return x;
            }
            client.next_event().await.expect("the client");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_walking_into_another_zone_is_followed_there() {
    walk_into_the_other_zone(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_websocket_a_player_walking_into_another_zone_is_followed_there() {
    walk_into_the_other_zone(true).await;
}

/// Alice walks from west into east over TCP, or WebSocket when `ws`.
async fn walk_into_the_other_zone(ws: bool) {
    let redis = redis_server::RedisServer::start();
    let west = zone_server(&redis, "west");
    let east = zone_server(&redis, "east");
    let door = |server: &ServerThread| {
        if ws {
            server.addrs().ws.expect("a WebSocket listener")
        } else {
            server.game_addr()
        }
    };
    let mut client = if ws {
        Client::connect_ws(&format!("ws://{}/ws", door(&west))).await
    } else {
        Client::connect(door(&west)).await
    }
    .unwrap();
    let id = client.register("alice", "password1").await.unwrap();
    client.login("alice", "password1").await.unwrap();

    // East, one move at a time (refused at the border until west has seen east's process),
    // until the client has followed the handoff.
    let handed_to = within("the handoff", async {
        let mut handed_to = None;
        loop {
            if handed_to.is_none() {
                client.send("move", &Move { dx: 1.0, dy: 0.0 }).await.ok();
            }
            let event = tokio::time::timeout(Duration::from_millis(150), client.next_event()).await;
            match event {
                Ok(Some(Event::HandedOff { addr })) => handed_to = Some(addr),
                Ok(Some(Event::Resumed { player_id })) => {
                    assert_eq!(player_id, id);
                    return handed_to.expect("resumed after the handoff");
                }
                Ok(Some(Event::ResumeFailed { reason })) => panic!("{reason}"),
                Ok(None) => panic!("the client ended"),
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(handed_to, door(&east).to_string());

    // Playing on in east: its world shows the player past the border, then one step more.
    let x = x_in_own_world(&mut client, id, "the player in east's world").await;
    assert!((2.0..3.0).contains(&x), "one step past the border: {x}");
    client
        .send("move", &Move { dx: 1.0, dy: 0.0 })
        .await
        .unwrap();
    within("the next step in east", async {
        loop {
            let moved = {
                let world = client.world();
                world
                    .player(id)
                    .and_then(|e| e.get::<Position>("position").ok())
                    .is_some_and(|p| (p.x - (x + 1.0)).abs() < 1e-4)
            };
            if moved {
                return;
            }
            client.next_event().await.expect("the client");
        }
    })
    .await;
    client.close().await;

    // Alice logs in again at west's door: west answers `handoff` (her place is in east), and
    // the login follows it there and returns east's `logged_in`, past the border.
    let again = if ws {
        Client::connect_ws(&format!("ws://{}/ws", door(&west))).await
    } else {
        Client::connect(door(&west)).await
    }
    .unwrap();
    let logged_in = within("a login answered by a handoff", async {
        loop {
            match again.login("alice", "password1").await {
                Ok(logged_in) => return logged_in,
                // Her previous session is still being released.
                Err(hearth_client::ClientError::Refused(r)) if r.code == "already_online" => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    assert_eq!(logged_in.player_id, id);
    let stored_x = logged_in.state["position"]["x"].as_f64().unwrap();
    assert!(stored_x >= 2.0, "stored in east: {stored_x}");
    again.close().await;
    assert_eq!(east.stop(), 0);
    assert_eq!(west.stop(), 0);
}

/// A door in front of `to` that the test can cut: every connection through it is dropped, and
/// new ones are closed at once, until it is opened again.
struct CuttableDoor {
    addr: std::net::SocketAddr,
    open: Arc<std::sync::atomic::AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
}

impl CuttableDoor {
    async fn start(to: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (is_open, cutting) = (Arc::clone(&open), Arc::clone(&cut));
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !is_open.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let cutting = Arc::clone(&cutting);
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cutting.notified() => {}
                    }
                });
            }
        });
        Self { addr, open, cut }
    }

    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A client whose connection drops resumes on its own; when the server it comes back to
/// answers `handoff` (the player's stored place is now in another zone), the client follows
/// it there and resumes, instead of giving up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automatic_resume_answered_handoff_is_followed() {
    let redis = redis_server::RedisServer::start();
    let west = zone_server(&redis, "west");
    let east = zone_server(&redis, "east");
    let door = CuttableDoor::start(west.game_addr()).await;
    let mut client = Client::connect(door.addr).await.unwrap();
    let id = client.register("erin", "password1").await.unwrap();
    client.login("erin", "password1").await.unwrap();

    // Her connection drops; once west has saved her and let her go, her stored place is
    // moved into east (as another zone's server would have left it).
    door.cut();
    let mut redis_conn = redis.connection();
    let lease = format!("hearth:session:{{{id}}}");
    within("west letting her go", async {
        loop {
            let held: Option<String> = redis::cmd("GET")
                .arg(&lease)
                .query(&mut redis_conn)
                .unwrap();
            if held.is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let key = format!("hearth:player:{{{id}}}");
    let record: String = redis::cmd("GET").arg(&key).query(&mut redis_conn).unwrap();
    let at = record.find("\"position\":{").expect("a position section");
    let end = at + record[at..].find('}').unwrap() + 1;
    let moved = format!(
        "{}\"position\":{{\"x\":10.0,\"y\":0.0}}{}",
        &record[..at],
        &record[end..]
    );
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(moved)
        .query(&mut redis_conn)
        .unwrap();
    door.open();

    let handed_to = within("the resume followed to east", async {
        let mut handed_to = None;
        loop {
            match client.next_event().await.expect("the client") {
                Event::HandedOff { addr } => handed_to = Some(addr),
                Event::Resumed { player_id } if handed_to.is_some() => {
                    assert_eq!(player_id, id);
                    return handed_to.unwrap();
                }
                Event::ResumeFailed { reason } => panic!("gave up: {reason}"),
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(handed_to, east.game_addr().to_string());
    let x = x_in_own_world(&mut client, id, "her place in east's world").await;
    assert_eq!(x, 10.0);
    client.close().await;
    assert_eq!(west.stop(), 0);
    assert_eq!(east.stop(), 0);
}
