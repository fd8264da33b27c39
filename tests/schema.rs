//! Typed bindings (`hearth schema`): the checked-in bindings of the demo game are what the
//! registry generates now (a message changed without regenerating them fails here), a game's
//! own messages appear with their fields, and the JSON Schema accepts every message a real
//! server sends and a client may send — and refuses what the server would refuse.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::client::NetServer;
use hearth::demo_game::DemoGamePlugin;
use hearth::prelude::*;
use hearth::schema::{Bindings, SCHEMA_FILE, TYPESCRIPT_FILE, bindings_of};
use hearth::testing::test_config;
use serde_json::{Value, json};

/// Where the demo game's bindings are checked in (the browser client imports them).
const BINDINGS_DIR: &str = "web";

/// The first line where `checked_in` and `generated` differ, for the failure message.
fn first_difference(checked_in: &str, generated: &str) -> String {
    for (n, (a, b)) in checked_in.lines().zip(generated.lines()).enumerate() {
        if a != b {
            return format!("line {}: checked in `{a}`, generated `{b}`", n + 1);
        }
    }
    format!(
        "checked in {} lines, generated {}",
        checked_in.lines().count(),
        generated.lines().count()
    )
}

#[test]
fn the_checked_in_bindings_are_what_the_demo_games_registry_generates() {
    let Bindings {
        json_schema,
        typescript,
    } = bindings_of("hearth", DemoGamePlugin).expect("the demo game has bindings");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(BINDINGS_DIR);
    for (file, generated) in [(SCHEMA_FILE, json_schema), (TYPESCRIPT_FILE, typescript)] {
        let path = dir.join(file);
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{BINDINGS_DIR}/{file} is not what the message registry generates ({}): a message \
             changed without its bindings. Run `cargo run -- schema --out {BINDINGS_DIR}` and \
             commit the result.",
            first_difference(&checked_in, &generated)
        );
    }
}

/// A game with a message of every shape: fields of several types, an optional field, a
/// nested enum, a unit message, a server push, and a replicated component.
struct TestGame;

/// `trade`: offer items.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Trade {
    /// Who to trade with.
    with: u64,
    items: Vec<Item>,
    note: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum Item {
    Sword,
    Coins { amount: u32 },
}

#[derive(Deserialize, JsonSchema)]
struct Wave;

/// `emote`: one of several gestures, each its own shape (an enum tagged by `kind`).
#[derive(Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(dead_code)]
enum Emote {
    Wave,
    Bow { depth: u8 },
}

#[derive(Serialize, JsonSchema)]
struct Traded {
    accepted: bool,
}

#[derive(Component, Clone, Serialize, JsonSchema)]
struct Mood {
    happy: bool,
}

impl Plugin for TestGame {
    fn build(&self, app: &mut App) {
        app.add_client_message::<Trade>("trade")
            .add_client_message::<Wave>("wave")
            .add_client_message::<Emote>("emote")
            .add_server_message::<Traded>("traded")
            .replicate::<Mood>();
    }
}

#[test]
fn a_games_messages_appear_with_their_fields_and_types() {
    let bindings = bindings_of("test-game", TestGame).expect("bindings");
    let document: Value = serde_json::from_str(&bindings.json_schema).unwrap();
    let defs = &document["$defs"];
    let trade = &defs["TradeMessage"];
    assert_eq!(trade["properties"]["type"]["const"], "trade");
    assert_eq!(
        trade["required"],
        json!(["type", "with", "items"]),
        "{trade}"
    );
    assert_eq!(
        trade["properties"]["with"]["description"],
        "Who to trade with."
    );
    assert_eq!(
        trade["additionalProperties"], false,
        "unknown fields are refused"
    );
    assert_eq!(defs["WaveMessage"]["required"], json!(["type"]));
    assert_eq!(
        defs["TradedMessage"]["properties"]["accepted"]["type"],
        "boolean"
    );
    assert_eq!(
        defs["ReplicatedEntity"]["properties"]["mood"]["$ref"],
        "#/$defs/Mood"
    );
    let client: Vec<&Value> = defs["ClientMessage"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["$ref"])
        .collect();
    assert!(
        client.contains(&&json!("#/$defs/TradeMessage")),
        "{client:?}"
    );
    assert!(
        client.contains(&&json!("#/$defs/LoginMessage")),
        "{client:?}"
    );

    let ts = &bindings.typescript;
    for expected in [
        "export interface TradeMessage {\n  type: \"trade\";\n",
        "  items: Item[];\n",
        "  note?: string | null;\n",
        "  /** Who to trade with. */\n  with: number;\n",
        "export interface WaveMessage {\n  type: \"wave\";\n  id?: RequestId;\n}",
        "  trade: TradeMessage;\n",
        "  traded: TradedMessage;\n",
        "  mood?: Mood;\n",
    ] {
        assert!(ts.contains(expected), "missing {expected:?} in:\n{ts}");
    }
    assert!(
        ts.contains("export type Item = \"sword\" | {"),
        "an enum is a union of its forms:\n{ts}"
    );
    assert!(
        ts.contains("export type EmoteMessage = {\n  type: \"emote\";\n  id?: RequestId;\n} & ("),
        "a message that is not a plain object is its tag beside its own schema:\n{ts}"
    );
    let emote = &defs["EmoteMessage"];
    assert_eq!(emote["properties"]["type"]["const"], "emote");
    assert_eq!(
        emote["allOf"][0]["oneOf"].as_array().map(Vec::len),
        Some(2),
        "{emote}"
    );
}

#[test]
fn a_game_without_replication_has_no_update_messages() {
    struct Silent;
    impl Plugin for Silent {
        fn build(&self, _: &mut App) {}
    }
    let bindings = bindings_of("silent", Silent).unwrap();
    assert!(!bindings.typescript.contains("UpdateMessage"));
    assert!(bindings.typescript.contains("export interface PongMessage"));
}

#[test]
fn a_type_named_like_one_of_the_documents_own_definitions_is_refused_by_name() {
    #[derive(Serialize, JsonSchema)]
    struct PingMessage {
        loud: bool,
    }
    #[derive(Serialize, JsonSchema)]
    struct Echo {
        of: PingMessage,
    }
    struct Clashing;
    impl Plugin for Clashing {
        fn build(&self, app: &mut App) {
            app.add_server_message::<Echo>("echo");
        }
    }
    let error = bindings_of("clashing", Clashing)
        .expect_err("a clash")
        .to_string();
    assert!(error.contains("`PingMessage`"), "{error}");
}

/// A validator for messages of one direction (`ClientMessage` or `ServerMessage`) of the
/// demo game's document.
fn validator(document: &Value, union: &str) -> jsonschema::Validator {
    let mut schema = document.clone();
    let object = schema.as_object_mut().unwrap();
    object.remove("anyOf");
    object.insert("$ref".into(), json!(format!("#/$defs/{union}")));
    jsonschema::validator_for(&schema).expect("the document is a valid JSON Schema")
}

fn errors(validator: &jsonschema::Validator, message: &Value) -> Vec<String> {
    validator
        .iter_errors(message)
        .map(|e| e.to_string())
        .collect()
}

/// A JSON-lines session whose every message, both ways, is checked against the schema.
struct Session<'a> {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    client_messages: &'a jsonschema::Validator,
    server_messages: &'a jsonschema::Validator,
    /// Every `type` received.
    seen: std::collections::BTreeSet<String>,
    /// The `level_up` received, if one was.
    level_up: Option<Value>,
}

impl<'a> Session<'a> {
    fn connect(
        server: &NetServer,
        client_messages: &'a jsonschema::Validator,
        server_messages: &'a jsonschema::Validator,
    ) -> Self {
        let stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        Self {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
            client_messages,
            server_messages,
            seen: Default::default(),
            level_up: None,
        }
    }

    fn send(&mut self, message: Value) {
        let problems = errors(self.client_messages, &message);
        assert!(problems.is_empty(), "{message}: {problems:?}");
        writeln!(self.writer, "{message}").unwrap();
    }

    /// Reads until a message of `kind` (an `update` with something changed), checking every
    /// message on the way.
    fn until(&mut self, kind: &str) -> Value {
        loop {
            let mut line = String::new();
            let read = self
                .reader
                .read_line(&mut line)
                .expect("a line within 15 s");
            assert!(read > 0, "closed while waiting for {kind}");
            let message: Value = serde_json::from_str(&line).unwrap();
            let problems = errors(self.server_messages, &message);
            assert!(problems.is_empty(), "{message}: {problems:?}");
            let this = message["type"].as_str().unwrap().to_string();
            if this == "level_up" {
                self.level_up = Some(message.clone());
            }
            self.seen.insert(this.clone());
            if this == kind && (kind != "update" || message["changed"] != json!([])) {
                return message;
            }
        }
    }
}

#[test]
fn the_schema_accepts_every_message_of_a_real_session_and_refuses_bad_requests() {
    let bindings = bindings_of("hearth", DemoGamePlugin).unwrap();
    let document: Value = serde_json::from_str(&bindings.json_schema).unwrap();
    let client_messages = validator(&document, "ClientMessage");
    let server_messages = validator(&document, "ServerMessage");

    let server = NetServer::memory(test_config("schema"));
    let mut session = Session::connect(&server, &client_messages, &server_messages);
    session.send(json!({"type": "register", "username": "ada", "password": "pw-ada-1", "id": 1}));
    session.until("registered");
    session.send(json!({"type": "login", "username": "ada", "password": "pw-ada-1", "id": "in"}));
    assert_eq!(session.until("logged_in")["id"], "in");
    session.until("replication");
    // Ten steps (one per tick: each waits for the update that shows it) are 100 xp: level 2.
    for _ in 0..10 {
        session.send(json!({"type": "move", "dx": 1, "dy": 0.5}));
        let update = session.until("update");
        assert!(
            update["changed"][0]["position"]["x"].is_number(),
            "{update}"
        );
    }
    if session.level_up.is_none() {
        session.until("level_up");
    }
    assert_eq!(session.level_up.as_ref().unwrap()["level"], 2);
    session.send(json!({"type": "ping", "nonce": 9, "id": 2}));
    session.until("pong");
    session.send(json!({"type": "login", "username": "ada", "password": "pw-ada-1"}));
    session.until("error");
    session.send(json!({"type": "logout"}));
    session.until("logged_out");
    assert_eq!(
        session.seen.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "error",
            "level_up",
            "logged_in",
            "logged_out",
            "pong",
            "registered",
            "replication",
            "update"
        ]
    );
    server.stop();

    // What the server refuses, the schema refuses too.
    for bad in [
        json!({"type": "move", "dx": 1}),
        json!({"type": "move", "dx": 1, "dy": 0, "speed": 9}),
        json!({"type": "ping", "nonce": -1}),
        json!({"type": "ping", "nonce": 1, "id": [1]}),
        json!({"type": "fly"}),
        json!({"type": "login", "username": "ada"}),
    ] {
        assert!(
            !errors(&client_messages, &bad).is_empty(),
            "{bad} passed the schema"
        );
    }
}

#[test]
fn the_schema_subcommand_writes_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bindings");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["schema", "--out"])
        .arg(&out)
        .env_remove("HEARTH_CONFIG")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let expected = bindings_of("hearth", DemoGamePlugin).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join(SCHEMA_FILE)).unwrap(),
        expected.json_schema
    );
    assert_eq!(
        std::fs::read_to_string(out.join(TYPESCRIPT_FILE)).unwrap(),
        expected.typescript
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains(TYPESCRIPT_FILE), "{stdout}");
}
