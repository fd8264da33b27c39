//! Replication over real TCP, in both encodings: players see each other move, a JSON and a
//! binary client agree on positions within the binary encoding's precision, and hostile
//! binary input gets an error and a closed connection (the server goes on serving).

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::client::{CLIENT_WAIT, Client, NetServer};
use hearth::testing::test_config;
use hearth_components::wire::{
    FrameKind, PREAMBLE, QuantisedPosition, UpdateFrame, WireError, decode_frame, decode_message,
    encode_frame, encode_message,
};
use serde_json::{Value, json};

/// Half of 1/64: the largest error of a fixed-point coordinate.
const PRECISION: f64 = 0.5 / 64.0;

/// What a binary client knows of an entity: its player id and position, once told.
type Known = (Option<u64>, Option<(f32, f32)>);

/// A client speaking the binary encoding, rebuilding the world from updates.
struct BinaryClient {
    stream: TcpStream,
    buffer: Vec<u8>,
    you: Option<u64>,
    /// Component names by index, from the `replication` message.
    components: Vec<String>,
    /// Entity id → (player id, position).
    world: HashMap<u64, Known>,
}

/// What a binary client read.
enum Frame {
    Message(Value),
    Update(UpdateFrame),
}

impl BinaryClient {
    fn connect(addr: SocketAddr) -> Self {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        stream.write_all(&PREAMBLE).unwrap();
        let mut client = Self {
            stream,
            buffer: Vec::new(),
            you: None,
            components: Vec::new(),
            world: HashMap::new(),
        };
        client.fill_until(PREAMBLE.len());
        assert_eq!(
            client.buffer[..PREAMBLE.len()],
            PREAMBLE,
            "the server answers in kind"
        );
        client.buffer.drain(..PREAMBLE.len());
        client
    }

    /// Reads until the buffer holds `n` bytes; false when the server closed first.
    fn fill_until(&mut self, n: usize) -> bool {
        let deadline = Instant::now() + CLIENT_WAIT;
        let mut chunk = [0u8; 4096];
        while self.buffer.len() < n {
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(k) => self.buffer.extend_from_slice(&chunk[..k]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    assert!(Instant::now() < deadline, "nothing from the server");
                }
                Err(_) => return false,
            }
        }
        true
    }

    fn send(&mut self, message: Value) {
        let mut out = Vec::new();
        encode_message(&message, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    /// The next frame, applied to the world; `None` once the server closed.
    fn next(&mut self) -> Option<Frame> {
        loop {
            match decode_frame(&self.buffer) {
                Ok((frame, used)) => {
                    let read = match frame.kind {
                        FrameKind::Message => {
                            Frame::Message(decode_message(frame.payload).unwrap())
                        }
                        FrameKind::Update => {
                            Frame::Update(UpdateFrame::decode(frame.payload).unwrap())
                        }
                    };
                    self.buffer.drain(..used);
                    self.apply(&read);
                    return Some(read);
                }
                Err(WireError::Truncated(_)) => {
                    let want = self.buffer.len() + 1;
                    if !self.fill_until(want) {
                        return None;
                    }
                }
                Err(e) => panic!("the server sent a bad frame: {e}"),
            }
        }
    }

    fn apply(&mut self, read: &Frame) {
        match read {
            Frame::Message(m) if m["type"] == "replication" => {
                self.you = m["you"].as_u64();
                self.components = m["components"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["name"].as_str().unwrap().to_string())
                    .collect();
                self.world.clear();
            }
            Frame::Message(_) => {}
            Frame::Update(update) => {
                for entity in &update.entered {
                    self.world.insert(entity.id, (None, None));
                }
                for entity in update.entered.iter().chain(&update.changed) {
                    let known = self
                        .world
                        .get_mut(&entity.id)
                        .unwrap_or_else(|| panic!("a change of unknown entity {}", entity.id));
                    for (index, payload) in &entity.components {
                        match self.components[*index as usize].as_str() {
                            "position" => {
                                known.1 =
                                    Some(QuantisedPosition::decode(payload).unwrap().to_world())
                            }
                            "player_id" => known.0 = Some(decode_message(payload).unwrap()),
                            other => panic!("unexpected component {other}"),
                        }
                    }
                }
                for id in &update.left {
                    assert!(self.world.remove(id).is_some(), "unknown entity {id} left");
                }
            }
        }
    }

    /// Reads until a message of `kind` (skipping updates).
    fn expect(&mut self, kind: &str) -> Value {
        loop {
            match self
                .next()
                .unwrap_or_else(|| panic!("closed waiting for {kind}"))
            {
                Frame::Message(m) if m["type"] == kind => return m,
                Frame::Message(m) if m["type"] == "replication" => {}
                Frame::Message(m) => panic!("expected {kind}, got {m}"),
                Frame::Update(_) => {}
            }
        }
    }

    /// Players seen: player id → position.
    fn seen(&self) -> HashMap<u64, (f32, f32)> {
        self.world
            .values()
            .filter_map(|(p, at)| Some(((*p)?, (*at)?)))
            .collect()
    }

    /// Reads updates until `check` holds for what is seen.
    fn until(&mut self, what: &str, check: impl Fn(&HashMap<u64, (f32, f32)>) -> bool) {
        let deadline = Instant::now() + CLIENT_WAIT;
        while !check(&self.seen()) {
            assert!(
                Instant::now() < deadline,
                "never saw {what}: {:?}",
                self.seen()
            );
            self.next().expect("connection open");
        }
    }
}

/// Reads JSON updates until `check` holds for what the client sees.
fn json_until(client: &mut Client, what: &str, check: impl Fn(&HashMap<u64, Value>) -> bool) {
    let deadline = Instant::now() + CLIENT_WAIT;
    while !check(&client.seen()) {
        assert!(
            Instant::now() < deadline,
            "never saw {what}: {:?}",
            client.seen()
        );
        client.update();
    }
}

fn xy(position: &Value) -> (f64, f64) {
    (
        position["x"].as_f64().unwrap(),
        position["y"].as_f64().unwrap(),
    )
}

#[test]
fn two_json_players_see_each_other_move() {
    let server = NetServer::memory(test_config("repl-json"));
    let mut alice = server.client();
    let alice_id = alice.register("alice", "password1");
    alice.login("alice", "password1");
    let mut bob = server.client();
    let bob_id = bob.register("bobby", "password1");
    bob.login("bobby", "password1");
    json_until(&mut alice, "bob", |seen| seen.contains_key(&bob_id));
    bob.step(1.0, 0.0);
    bob.step(0.0, 1.0);
    json_until(&mut alice, "bob's steps", |seen| {
        seen.get(&bob_id) == Some(&json!({"x": 1.0, "y": 1.0}))
    });
    assert_eq!(alice.seen()[&alice_id], json!({"x": 0.0, "y": 0.0}));
    // Bob walks out of range: alice is told he left.
    for _ in 0..55 {
        bob.step(1.0, 0.0);
    }
    json_until(&mut alice, "bob leave", |seen| !seen.contains_key(&bob_id));
}

#[test]
fn a_json_and_a_binary_client_agree_on_positions() {
    let server = NetServer::memory(test_config("repl-both"));
    let mut json_client = server.client();
    let walker = json_client.register("walker", "password1");
    json_client.login("walker", "password1");

    let mut bin = BinaryClient::connect(server.addr);
    bin.send(json!({"type": "register", "username": "binary", "password": "password1"}));
    let watcher = bin.expect("registered")["player_id"].as_u64().unwrap();
    bin.send(json!({"type": "login", "username": "binary", "password": "password1"}));
    let logged_in = bin.expect("logged_in");
    assert_eq!(logged_in["player_id"], watcher);
    bin.send(json!({"type": "ping", "nonce": 9}));
    assert_eq!(bin.expect("pong")["nonce"], 9);

    // The JSON client walks a diagonal (positions that are not multiples of 1/64).
    for _ in 0..3 {
        json_client.step(1.0, 0.5);
    }
    let (jx, jy) = xy(&json_client.position().unwrap());
    bin.until("the walker's steps", |seen| {
        seen.get(&walker).is_some_and(|&(x, y)| {
            (f64::from(x) - jx).abs() <= PRECISION && (f64::from(y) - jy).abs() <= PRECISION
        })
    });

    // The binary client walks; the JSON client sees it where the binary client sees itself.
    bin.send(json!({"type": "move", "dx": -1.0, "dy": 0.3}));
    bin.until("its own step", |seen| {
        seen.get(&watcher).is_some_and(|&(x, _)| x < 0.0)
    });
    let (bx, by) = bin.seen()[&watcher];
    json_until(&mut json_client, "the binary client's step", |seen| {
        seen.get(&watcher).is_some_and(|p| {
            let (x, y) = xy(p);
            (x - f64::from(bx)).abs() <= PRECISION && (y - f64::from(by)).abs() <= PRECISION
        })
    });
    // Errors come back as binary messages too, and the connection stays open.
    bin.send(json!({"type": "move", "dx": "left"}));
    assert_eq!(bin.expect("error")["code"], "bad_request");
    bin.send(json!({"type": "logout"}));
    bin.expect("logged_out");
}

/// Sends `bytes` after the preamble (then ends the client's side when `end` is set) and
/// returns the messages the server sent before closing.
fn hostile(addr: SocketAddr, bytes: &[u8], end: bool) -> Vec<Value> {
    let mut client = BinaryClient::connect(addr);
    client.stream.write_all(bytes).unwrap();
    if end {
        client.stream.shutdown(Shutdown::Write).unwrap();
    }
    let mut messages = Vec::new();
    while let Some(read) = client.next() {
        if let Frame::Message(m) = read {
            messages.push(m);
        }
    }
    messages
}

#[test]
fn hostile_binary_input_gets_an_error_and_a_closed_connection() {
    let server = NetServer::memory(test_config("repl-hostile"));
    let truncated = [9, 1, 0x81];
    let mut oversized = Vec::new();
    hearth_components::wire::varint::write_u64(&mut oversized, 1 << 20);
    let unknown_kind = [2, 0x7f, 0];
    let mut update = Vec::new();
    encode_frame(FrameKind::Update, &[1, 0, 0, 0], &mut update).unwrap();
    for (bytes, end, code, words) in [
        (&truncated[..], true, "bad_request", "truncated"),
        (&oversized[..], false, "too_large", "at most 65536 bytes"),
        (
            &unknown_kind[..],
            false,
            "bad_request",
            "unknown frame kind 0x7f",
        ),
        (&update[..], false, "bad_request", "unknown frame kind 0x02"),
        (&[0][..], false, "bad_request", "at least its kind byte"),
    ] {
        let messages = hostile(server.addr, bytes, end);
        let error = messages
            .last()
            .unwrap_or_else(|| panic!("{bytes:?}: no answer"));
        assert_eq!(error["code"], code, "{bytes:?}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(words),
            "{bytes:?}: {error}"
        );
    }
    // Not MessagePack inside a well-formed frame: a bad request, the stream goes on.
    let mut c = BinaryClient::connect(server.addr);
    let mut junk = Vec::new();
    encode_frame(FrameKind::Message, &[0xc1], &mut junk).unwrap();
    c.stream.write_all(&junk).unwrap();
    assert_eq!(c.expect("error")["code"], "bad_request");
    c.send(json!({"type": "ping", "nonce": 1}));
    assert_eq!(c.expect("pong")["nonce"], 1);

    // An unknown version: a JSON line says so, and the connection closes.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(CLIENT_WAIT)).unwrap();
    let mut v9 = PREAMBLE;
    v9[5] = 9;
    stream.write_all(&v9).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let error: Value = serde_json::from_str(answer.trim()).unwrap();
    assert_eq!(error["code"], "bad_request");
    assert!(
        error["message"].as_str().unwrap().contains("version 9"),
        "{error}"
    );

    // The server still serves JSON.
    let mut json_client = server.client();
    json_client.send(json!({"type": "ping", "nonce": 5}));
    assert_eq!(json_client.expect("pong")["nonce"], 5);
}

/// A MessagePack fixstr (shorter than 32 bytes), for payloads written by hand.
fn mp_str(text: &str) -> Vec<u8> {
    assert!(text.len() < 32);
    let mut out = vec![0xa0 | text.len() as u8];
    out.extend_from_slice(text.as_bytes());
    out
}

/// A MessagePack fixmap header of `entries` followed by `parts`.
fn mp_map(entries: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![0x80 | entries];
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// docs/protocol.md, "Binary encoding": "the rules, limits and errors above hold in both
/// encodings". Each message frame here is refused as its JSON twin line is (`bad_request`,
/// the connection stays open), in binary terms: the message speaks of MessagePack, never of
/// JSON, and says "not a valid MessagePack message" once.
#[test]
fn binary_messages_are_refused_as_their_json_twins_are() {
    let server = NetServer::memory(test_config("repl-binary-rules"));
    let (ty, ping, nonce) = (mp_str("type"), mp_str("ping"), mp_str("nonce"));
    let ping_1 = mp_map(2, &[&ty, &ping, &nonce, &[1]]);
    let with_trailing_nil = [&ping_1[..], &[0xc0]].concat();
    let two_maps = [&ping_1[..], &ping_1[..]].concat();
    let cases: [(&str, Vec<u8>, Option<&str>); 10] = [
        (
            "a repeated field",
            mp_map(3, &[&ty, &ping, &nonce, &[1], &nonce, &[2]]),
            Some(r#"{"type":"ping","nonce":1,"nonce":2}"#),
        ),
        (
            "a repeated type",
            mp_map(3, &[&ty, &ping, &ty, &ping, &nonce, &[1]]),
            Some(r#"{"type":"ping","type":"ping","nonce":1}"#),
        ),
        (
            "a repeated key in a nested map",
            mp_map(
                3,
                &[
                    &ty,
                    &ping,
                    &nonce,
                    &[1],
                    &mp_str("extra"),
                    &mp_map(2, &[&ty, &[1], &ty, &[2]]),
                ],
            ),
            None,
        ),
        (
            "a byte after the map",
            with_trailing_nil,
            Some(r#"{"type":"ping","nonce":1} null"#),
        ),
        (
            "a second map after the map",
            two_maps,
            Some(r#"{"type":"ping","nonce":1}{"type":"ping","nonce":1}"#),
        ),
        ("not a map", vec![0x07], Some("7")),
        (
            "a map cut short",
            mp_map(3, &[&ty, &ping, &nonce, &[1]]),
            Some(r#"{"type":"ping","nonce":1,"#),
        ),
        (
            "no type",
            mp_map(1, &[&nonce, &[1]]),
            Some(r#"{"nonce":1}"#),
        ),
        (
            "a bin value",
            mp_map(2, &[&ty, &ping, &nonce, &[0xc4, 1, 7]]),
            None,
        ),
        (
            "a key that is not a string",
            mp_map(2, &[&ty, &ping, &[1], &[1]]),
            Some(r#"{"type":"ping",1:1}"#),
        ),
    ];
    let mut bin = BinaryClient::connect(server.addr);
    let mut json = server.client();
    let mut wrong = Vec::new();
    for (nonce, (case, payload, twin)) in (10u64..).zip(cases) {
        let mut frame = Vec::new();
        encode_frame(FrameKind::Message, &payload, &mut frame).unwrap();
        bin.stream.write_all(&frame).unwrap();
        // Then a ping: the frame's length kept the stream in step, so the connection goes
        // on and the pong comes after the answer to the frame.
        bin.send(json!({"type": "ping", "nonce": nonce}));
        let mut answers = Vec::new();
        loop {
            match bin.next().unwrap_or_else(|| panic!("{case}: closed")) {
                Frame::Message(m) if m["type"] == "pong" && m["nonce"] == nonce => break,
                Frame::Message(m) if m["type"] != "replication" => answers.push(m),
                _ => {}
            }
        }
        match &answers[..] {
            [error] if error["code"] == "bad_request" => {
                let words = error["message"].as_str().unwrap();
                if words.contains("JSON")
                    || words.matches("not a valid MessagePack message").count() != 1
                {
                    wrong.push(format!("{case}: worded {words:?}"));
                }
            }
            other => wrong.push(format!("{case}: answered {other:?}, not one bad_request")),
        }
        if let Some(line) = twin {
            json.send_raw(format!("{line}\n").as_bytes());
            json.expect_error("bad_request");
            json.ping(nonce);
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// docs/protocol.md, "Budget and priority": 4,096 bytes a second at 20 rounds a second is
/// 204 bytes a round (rounded down), counted as update payload bytes.
#[test]
fn the_default_budget_is_204_bytes_a_round() {
    let settings = hearth_systems::replication::ReplicationPlugin::default().settings;
    assert_eq!((settings.bytes_per_second, settings.rate_hz), (4096, 20.0));
    assert_eq!(settings.round_budget(), 204);
}

/// A binary client's errors about its message's fields say what is wrong, and no line or
/// column (the JSON text the server reads a binary message through is not what
/// the client sent).
#[test]
fn a_binary_clients_field_errors_carry_no_json_position() {
    let server = NetServer::memory(test_config("repl-binary-positions"));
    let mut bin = BinaryClient::connect(server.addr);
    // A game's message names the field; a core one says what was expected.
    for (message, named) in [
        (json!({"type": "move", "dx": "east", "dy": 0}), "field `dx`"),
        (json!({"type": "ping", "nonce": "one"}), "expected u64"),
    ] {
        bin.send(message.clone());
        let error = loop {
            match bin.next().expect("an answer") {
                Frame::Message(m) if m["type"] == "error" => break m,
                _ => {}
            }
        };
        assert_eq!(error["code"], "bad_request", "{message}: {error}");
        let text = error["message"].as_str().unwrap();
        assert!(text.contains(named), "{message}: {text}");
        assert!(!text.contains(" at line "), "{message}: {text}");
    }
}

/// Fuzzed binary input over TCP (issue 17, item 7; the decoders are also fuzzed on their
/// own): message frames with random payloads are each answered with an `error` and the
/// connection goes on; random bytes where frames should be get only `error`s before the
/// connection ends (a binary stream cannot resynchronise); every frame the server sends is
/// well formed, and a bystander plays on throughout.
#[test]
fn fuzzed_binary_input_gets_errors_and_a_bystander_plays_on() {
    let server = NetServer::memory(test_config("repl-binary-fuzz"));
    let mut bystander = BinaryClient::connect(server.addr);
    // A fixed seed: the cases are the same every run.
    let mut rng = common::rng::Rng(0x4249_4E41_5259_2121);
    // 4 connections x 50 random payloads in message frames, each followed by a ping (inside
    // the per-connection burst): everything before the pong is an error.
    for round in 0..4u64 {
        let mut fuzzed = BinaryClient::connect(server.addr);
        for case in 0..50u64 {
            let payload: Vec<u8> = (0..rng.below(40))
                .map(|_| u8::try_from(rng.below(256)).unwrap())
                .collect();
            let mut frame = Vec::new();
            encode_frame(FrameKind::Message, &payload, &mut frame).unwrap();
            fuzzed.stream.write_all(&frame).unwrap();
            let nonce = round * 100 + case;
            fuzzed.send(json!({"type": "ping", "nonce": nonce}));
            loop {
                match fuzzed
                    .next()
                    .unwrap_or_else(|| panic!("closed after {payload:02x?}"))
                {
                    Frame::Message(m) if m["type"] == "pong" => {
                        assert_eq!(m["nonce"], nonce, "{payload:02x?}");
                        break;
                    }
                    Frame::Message(m) => assert_eq!(m["type"], "error", "{payload:02x?}: {m}"),
                    Frame::Update(_) => panic!("an update before login"),
                }
            }
        }
    }
    // Random bytes as the whole stream: errors only, then the end.
    for _ in 0..16 {
        let mut fuzzed = BinaryClient::connect(server.addr);
        let bytes: Vec<u8> = (0..1 + rng.below(300))
            .map(|_| u8::try_from(rng.below(256)).unwrap())
            .collect();
        fuzzed.stream.write_all(&bytes).unwrap();
        fuzzed.stream.shutdown(Shutdown::Write).unwrap();
        while let Some(frame) = fuzzed.next() {
            match frame {
                Frame::Message(m) => assert_eq!(m["type"], "error", "{bytes:02x?}: {m}"),
                Frame::Update(_) => panic!("an update before login"),
            }
        }
    }
    bystander.send(json!({"type": "ping", "nonce": 7}));
    loop {
        match bystander.next().expect("the bystander is served") {
            Frame::Message(m) if m["type"] == "pong" => break,
            _ => {}
        }
    }
}
