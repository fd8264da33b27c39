//! The browser client (web/) in real headless Chromium, driven through chromedriver
//! (WebDriver): the `hearth` binary serves the page and the game over `--listen-ws`; two
//! pages register and log in, one walks with the keyboard, the other sees it move; a dropped
//! connection and a reload are resumed with the stored token, a token in use is retried
//! until its player logs out; a page follows its player's
//! handoff between two zone servers; over HTTPS the page plays on `wss://`. A screenshot of
//! each page is saved to `<target>/browser-artifacts/` (docs/testing.md). Chromium missing is
//! a failure that says how to install it, never a skip.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::Hearth;
use common::redis_server::{RedisServer, free_port};
use common::ws::TestCertificate;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How long a page may take to reach an expected state before the test fails.
const WAIT: Duration = Duration::from_secs(20);

/// The browser and its WebDriver, from Debian's `chromium` and `chromium-driver`
/// (overridable with `HEARTH_CHROMIUM` and `HEARTH_CHROMEDRIVER`).
fn tool(variable: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var(variable).unwrap_or_else(|_| default.to_string()));
    assert!(
        path.exists(),
        "{} not found: the browser test needs headless Chromium and its WebDriver. Install \
         them with `apt-get install -y chromium chromium-driver` (./scripts/test.sh does), or \
         point {variable} at them.",
        path.display()
    );
    path
}

/// Where the screenshots go: `<target dir>/browser-artifacts`.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target tmp dir is inside the target dir")
        .join("browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `GET path` over plain HTTP/1.1: the status code and body.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string();
    Ok((status, body))
}

/// The `hearth` binary with its WebSocket listener on a free port, once the listener serves
/// the page and every module it loads.
fn server() -> (Hearth, SocketAddr) {
    let ws = free_ws_addr();
    let hearth = Hearth::start_args(&["--listen-ws", &ws.to_string()]);
    serves_the_page(ws);
    (hearth, ws)
}

/// A free address for a WebSocket listener, once the binary is known to have one.
fn free_ws_addr() -> SocketAddr {
    let help = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("--listen-ws"),
        "this hearth binary has no --listen-ws: the browser client needs the WebSocket \
         listener (issue 19, item 1)"
    );
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// Waits until the WebSocket listener at `ws` serves the page and every module it loads.
fn serves_the_page(ws: SocketAddr) {
    let started = Instant::now();
    while http_get(ws, "/").is_err() {
        assert!(started.elapsed() < WAIT, "--listen-ws {ws} never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    for file in ["/", "/app.js", "/client.js"] {
        let (status, body) = http_get(ws, file).unwrap();
        assert_eq!(
            status, 200,
            "GET {file} from the WebSocket listener: the browser client's files (web/) must \
             all be served; got {status} {body}"
        );
    }
}

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let chromedriver = tool("HEARTH_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < WAIT, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A new headless Chromium (its own profile, so its own sessionStorage) on `page`.
    async fn open(&self, page: &str) -> Client {
        self.open_trusting(page, false).await
    }

    /// [`Driver::open`], accepting a certificate no authority signed (a test's own) when
    /// `self_signed`.
    async fn open_trusting(&self, page: &str, self_signed: bool) -> Client {
        let chromium = tool("HEARTH_CHROMIUM", "/usr/bin/chromium");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                // Root in a container has no user namespace for the sandbox; no GPU here.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1000,760"]
            }),
        );
        capabilities.insert("acceptInsecureCerts".into(), json!(self_signed));
        let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session through chromedriver");
        browser.goto(page).await.expect("the page loads");
        browser
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// What the page knows (`window.hearth.snapshot()`).
async fn snapshot(page: &Client) -> Value {
    page.execute("return window.hearth.snapshot();", vec![])
        .await
        .expect("the page exposes window.hearth")
}

/// Waits until `ready` holds for the page's snapshot; returns that snapshot.
async fn wait_until(page: &Client, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let now = snapshot(page).await;
        if ready(&now) {
            return now;
        }
        assert!(
            started.elapsed() < WAIT,
            "the page did not reach: {what}; it knows {now:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fills the account form and presses "Register (and log in)"; returns the snapshot once in
/// the world.
async fn register(page: &Client, username: &str) -> Value {
    wait_until(page, "connected", |s| s["connected"] == true).await;
    page.find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys(username)
        .await
        .unwrap();
    page.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("correct horse battery")
        .await
        .unwrap();
    page.find(Locator::Id("register"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until(page, &format!("{username} in the world"), |s| {
        s["loggedIn"] == true && s["position"].is_object()
    })
    .await
}

/// The position of the player `player_id` as the page knows it.
fn position_of(snapshot: &Value, player_id: &Value) -> Option<(f64, f64)> {
    snapshot["players"]
        .as_array()?
        .iter()
        .find(|p| &p["playerId"] == player_id)
        .and_then(|p| Some((p["x"].as_f64()?, p["y"].as_f64()?)))
}

/// The page's own position.
fn own_position(snapshot: &Value) -> Option<(f64, f64)> {
    let position = &snapshot["position"];
    Some((position["x"].as_f64()?, position["y"].as_f64()?))
}

fn near(actual: Option<(f64, f64)>, expected: (f64, f64)) -> bool {
    actual.is_some_and(|(x, y)| (x - expected.0).abs() < 1e-3 && (y - expected.1).abs() < 1e-3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_play_one_walks_and_the_other_sees_it_move() {
    // Before anything starts: a missing browser fails here, saying how to install it.
    tool("HEARTH_CHROMIUM", "/usr/bin/chromium");
    let driver = Driver::start();
    let (_hearth, ws) = server();
    let page = format!("http://{ws}/");

    let alice = driver.open(&page).await;
    let bob = driver.open(&page).await;
    let alice_in = register(&alice, "alice").await;
    let bob_in = register(&bob, "bob").await;
    let bob_id = bob_in["playerId"].clone();
    assert_ne!(alice_in["playerId"], bob_id);
    assert!(near(own_position(&bob_in), (0.0, 0.0)), "{bob_in:#}");
    wait_until(&alice, "alice sees bob", |s| {
        near(position_of(s, &bob_id), (0.0, 0.0))
    })
    .await;

    // Bob walks: three steps right (D and the right arrow), two up (W and the up arrow),
    // each press waiting for the server's update that shows it.
    let canvas = bob.find(Locator::Id("world")).await.unwrap();
    let steps = [
        // Two taps at once: the second, within the page's 50 ms between moves, waits its turn.
        ("dd", (2.0, 0.0)),
        ("\u{E014}", (3.0, 0.0)), // ArrowRight
        ("w", (3.0, 1.0)),
        ("\u{E013}", (3.0, 2.0)), // ArrowUp
    ];
    for (key, expected) in steps {
        canvas.send_keys(key).await.unwrap();
        wait_until(&bob, &format!("bob at {expected:?}"), |s| {
            near(own_position(s), expected)
        })
        .await;
    }
    let seen = wait_until(&alice, "alice sees bob at (3, 2)", |s| {
        near(position_of(s, &bob_id), (3.0, 2.0))
    })
    .await;
    assert!(
        near(position_of(&seen, &alice_in["playerId"]), (0.0, 0.0)),
        "alice did not move: {seen:#}"
    );
    let bob_now = snapshot(&bob).await;
    assert_eq!(bob_now["xp"], 50, "five steps of 10 xp: {bob_now:#}");
    let xp_shown = bob
        .find(Locator::Id("xp"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(xp_shown, "50");

    let dir = artifacts();
    for (name, browser) in [("alice", &alice), ("bob", &bob)] {
        let png = browser.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}'s screenshot is a PNG");
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    // Bob's connection drops: the page reconnects and resumes with its stored token (no
    // password typed), back where he was.
    bob.execute("window.hearth.client.socket.close();", vec![])
        .await
        .unwrap();
    let back = wait_until(&bob, "bob resumed", |s| {
        s["resumes"] == 1 && s["loggedIn"] == true && s["position"].is_object()
    })
    .await;
    assert_eq!(back["playerId"], bob_id);
    assert!(near(own_position(&back), (3.0, 2.0)), "{back:#}");
    wait_until(&alice, "alice sees bob after his resume", |s| {
        near(position_of(s, &bob_id), (3.0, 2.0))
    })
    .await;

    // A reload keeps the tab's sessionStorage: the new page resumes by itself too.
    bob.refresh().await.unwrap();
    let reloaded = wait_until(&bob, "bob resumed after a reload", |s| {
        s["resumes"] == 1 && s["loggedIn"] == true && s["position"].is_object()
    })
    .await;
    assert_eq!(reloaded["playerId"], bob_id);
    assert!(near(own_position(&reloaded), (3.0, 2.0)), "{reloaded:#}");
    assert_eq!(reloaded["xp"], 50, "the stored progress: {reloaded:#}");

    // Bob's token in a second browser while Bob plays: `already_online`, retried until Bob
    // logs out (which does not spend the token); then that browser is Bob.
    let token = bob
        .execute(
            "return sessionStorage.getItem('hearth.resume_token');",
            vec![],
        )
        .await
        .unwrap();
    let twin = driver.open(&page).await;
    twin.execute(
        "sessionStorage.setItem('hearth.resume_token', arguments[0]); location.reload();",
        vec![token],
    )
    .await
    .unwrap();
    wait_until(&twin, "the twin told already_online", |s| {
        s["notice"]
            .as_str()
            .unwrap_or("")
            .starts_with("already_online")
            && s["loggedIn"] == false
    })
    .await;
    bob.find(Locator::Id("logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let twin_in = wait_until(&twin, "the twin in as bob", |s| {
        s["loggedIn"] == true && s["position"].is_object()
    })
    .await;
    assert_eq!(twin_in["playerId"], bob_id);
    assert!(near(own_position(&twin_in), (3.0, 2.0)), "{twin_in:#}");
    let bob_out = snapshot(&bob).await;
    assert_eq!(bob_out["loggedIn"], false, "{bob_out:#}");

    alice.close().await.unwrap();
    bob.close().await.unwrap();
    twin.close().await.unwrap();
}

/// Presses `key` on the page's canvas until the page has followed `handoffs` handoffs in
/// all and is playing again (a step towards a zone whose server the source has not seen yet
/// is refused with `zone_unavailable`, so one press may not be enough).
async fn walk_until_handed_off(page: &Client, key: &str, handoffs: u64) -> Value {
    let canvas = page.find(Locator::Id("world")).await.unwrap();
    let started = Instant::now();
    loop {
        let now = snapshot(page).await;
        if now["handoffs"] == handoffs && now["loggedIn"] == true && now["position"].is_object() {
            return now;
        }
        assert!(
            started.elapsed() < WAIT,
            "no handoff number {handoffs} within {WAIT:?}; the page knows {now:#}"
        );
        if now["loggedIn"] == true && now["handoffs"] != handoffs {
            // The handoff may come between the snapshot and the key press: the page then
            // hides its canvas while it moves to the other server, and the press waits.
            if let Err(e) = canvas.send_keys(key).await {
                assert!(e.is_element_not_interactable(), "pressing {key:?}: {e}");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_its_player_into_another_zone_and_back() {
    tool("HEARTH_CHROMIUM", "/usr/bin/chromium");
    let driver = Driver::start();
    let redis = RedisServer::start();
    // Two zones, the border at x = 2: a player starting at (0, 0) is in the west.
    let (_dir, map) = common::zones::zones_at(2);
    let map = map.to_str().unwrap();
    let (west_ws, east_ws) = (free_ws_addr(), free_ws_addr());
    let (west_ws_text, east_ws_text) = (west_ws.to_string(), east_ws.to_string());
    let _west = Hearth::start_with(
        &redis,
        "west-1",
        &[
            "--zones",
            map,
            "--zone",
            "west",
            "--listen-ws",
            &west_ws_text,
        ],
    );
    let _east = Hearth::start_with(
        &redis,
        "east-1",
        &[
            "--zones",
            map,
            "--zone",
            "east",
            "--listen-ws",
            &east_ws_text,
        ],
    );
    serves_the_page(west_ws);
    serves_the_page(east_ws);

    let carol = driver.open(&format!("http://{west_ws}/")).await;
    let joined = register(&carol, "carol").await;
    let carol_id = joined["playerId"].clone();

    let east = walk_until_handed_off(&carol, "d", 1).await;
    assert_eq!(east["server"], format!("ws://{east_ws}/ws"), "{east:#}");
    assert_eq!(east["playerId"], carol_id);
    assert_eq!(east["resumes"], 1, "in by the handoff's token: {east:#}");
    let (x, _) = own_position(&east).unwrap();
    assert!(x >= 2.0, "in the east zone: {east:#}");
    let png = carol.screenshot().await.unwrap();
    std::fs::write(artifacts().join("carol-east.png"), png).unwrap();

    let west = walk_until_handed_off(&carol, "\u{E012}", 2).await; // ArrowLeft
    assert_eq!(west["server"], format!("ws://{west_ws}/ws"), "{west:#}");
    assert_eq!(west["playerId"], carol_id);
    let (x, _) = own_position(&west).unwrap();
    assert!(x < 2.0, "back in the west zone: {west:#}");
    assert!(
        west["xp"].as_u64().unwrap() >= 30,
        "the steps' xp came along through both handoffs: {west:#}"
    );
    carol.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_page_plays_on_wss() {
    tool("HEARTH_CHROMIUM", "/usr/bin/chromium");
    let driver = Driver::start();
    let certificate = TestCertificate::new();
    let ws = free_ws_addr();
    let _hearth = Hearth::start_args(&[
        "--listen-ws",
        &ws.to_string(),
        "--tls-cert",
        certificate.cert.to_str().unwrap(),
        "--tls-key",
        certificate.key.to_str().unwrap(),
    ]);
    let started = Instant::now();
    while TcpStream::connect(ws).is_err() {
        assert!(started.elapsed() < WAIT, "--listen-ws {ws} never accepted");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The certificate is for `localhost`.
    let origin = format!("localhost:{}", ws.port());
    let dave = driver
        .open_trusting(&format!("https://{origin}/"), true)
        .await;
    let joined = register(&dave, "dave").await;
    assert_eq!(joined["server"], format!("wss://{origin}/ws"), "{joined:#}");
    dave.find(Locator::Id("world"))
        .await
        .unwrap()
        .send_keys("s")
        .await
        .unwrap();
    wait_until(&dave, "dave one step south", |s| {
        near(own_position(s), (0.0, -1.0))
    })
    .await;
    let png = dave.screenshot().await.unwrap();
    std::fs::write(artifacts().join("dave-https.png"), png).unwrap();
    dave.close().await.unwrap();
}
