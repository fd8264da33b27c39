//! The WebSocket listener (`listen_ws`) over real sockets, with tokio-tungstenite as the
//! client: the protocol in JSON text messages and in binary frames (`hearth.binary`), the
//! browser client's files, allowed origins, the shared connection caps, drain and idle
//! timeout, metrics by transport; and hostile input (an oversized message, a fragmented
//! flood, pings without end, a handshake that never completes), each of which gets a clear
//! close while a well-behaved client on the same server is served throughout.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::ws::{WsClient, demo_server, handshake};
use futures_util::{SinkExt, StreamExt};
use hearth::config::ServerConfig;
use hearth::testing::ServerThread;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::{self, Message};

/// The demo game with a WebSocket listener (and metrics) on free ports, `configure`d.
fn server(configure: impl FnOnce(&mut ServerConfig)) -> ServerThread {
    demo_server("websocket", configure).expect("the server starts")
}

/// A logged-in client that must keep being served while another misbehaves.
async fn bystander(server: &ServerThread) -> WsClient<TcpStream> {
    let mut client = WsClient::connect(server.ws_addr(), None).await;
    client.register_and_login("bystander").await;
    client.pings(1).await;
    client
}

fn close_code(frame: Option<tungstenite::protocol::CloseFrame>) -> Option<u16> {
    frame.map(|frame| u16::from(frame.code))
}

#[tokio::test]
async fn json_text_messages_register_log_in_ping_replicate_and_resume() {
    let server = server(|_| {});
    let mut client = WsClient::connect(server.ws_addr(), None).await;
    let logged_in = client.register_and_login("ada").await;
    let token = logged_in["resume_token"]
        .as_str()
        .expect("a resume token")
        .to_string();
    // Request ids come back as on TCP.
    let pong = client
        .ask(json!({"type": "ping", "id": "p-1", "nonce": 7}), "pong")
        .await;
    assert_eq!(
        (pong["id"].as_str(), pong["nonce"].as_u64()),
        (Some("p-1"), Some(7))
    );
    // Replication: who we are, then updates that bring us into view.
    client.until_in_view().await;
    client.send(json!({"type": "move", "dx": 1, "dy": 0})).await;
    // A dropped connection, then a resume on a new one, without the password.
    drop(client);
    let mut again = WsClient::connect(server.ws_addr(), Some("hearth.json")).await;
    let resumed = loop {
        // Until the server has seen the old connection go (and saved the player).
        again.send(json!({"type": "resume", "token": token})).await;
        let answer = again.next().await.expect("an answer");
        if answer["code"] != "already_online" {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(resumed["type"], "logged_in", "{resumed}");
    assert_eq!(resumed["player_id"], logged_in["player_id"]);
    again.ask(json!({"type": "logout"}), "logged_out").await;
    assert_eq!(server.stop(), 0);
}

#[tokio::test]
async fn the_binary_subprotocol_carries_one_frame_per_message() {
    let server = server(|_| {});
    let stream = TcpStream::connect(server.ws_addr()).await.unwrap();
    let (ws, response) = handshake(stream, "ws", server.ws_addr(), Some("hearth.binary"), None)
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "hearth.binary",
        "the server echoes the subprotocol it chose"
    );
    let mut client = WsClient::new(ws, &response);
    client.register_and_login("bea").await;
    let pong = client
        .ask(json!({"type": "ping", "id": 3, "nonce": 9}), "pong")
        .await;
    assert_eq!(
        (pong["id"].as_u64(), pong["nonce"].as_u64()),
        (Some(3), Some(9))
    );
    client.until_in_view().await;
    // A text message under hearth.binary breaks the transport's rule: told, then closed.
    client
        .ws
        .send(Message::Text("{\"type\":\"ping\",\"nonce\":1}".into()))
        .await
        .unwrap();
    let (last, close) = client.until_closed().await;
    assert_eq!(last.last().unwrap()["code"], "bad_request", "{last:?}");
    assert_eq!(close_code(close), Some(1008));
    assert_eq!(server.stop(), 0);
}

/// A raw HTTP/1.1 GET on the WebSocket listener: the status and the whole response.
fn http_get(addr: std::net::SocketAddr, path: &str, headers: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(common::ws::WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    (status, response)
}

#[tokio::test]
async fn the_browser_client_is_served_and_other_paths_are_not() {
    let server = server(|_| {});
    let (status, page) = http_get(server.ws_addr(), "/", "");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("text/html") && page.contains("<html"),
        "{page}"
    );
    let (status, same) = http_get(server.ws_addr(), "/index.html", "");
    assert_eq!(
        (
            status,
            same.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
        ),
        (200, page.split_once("\r\n\r\n").map(|(_, b)| b.to_string()))
    );
    assert_eq!(http_get(server.ws_addr(), "/nothing.js", "").0, 404);
    assert_eq!(http_get(server.ws_addr(), "/../Cargo.toml", "").0, 404);
    assert_eq!(
        http_get(server.ws_addr(), "/ws", "").0,
        426,
        "WebSocket only"
    );
    assert_eq!(server.stop(), 0);
}

#[tokio::test]
async fn a_handshake_from_an_origin_not_allowed_gets_403() {
    let server = server(|config| {
        config.front_door.ws_allowed_origins = vec!["https://game.example".into()];
    });
    let addr = server.ws_addr();
    let stream = TcpStream::connect(addr).await.unwrap();
    match handshake(stream, "ws", addr, None, Some("https://evil.example")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    let stream = TcpStream::connect(addr).await.unwrap();
    let (ws, response) = handshake(stream, "ws", addr, None, Some("https://game.example"))
        .await
        .expect("an allowed origin connects");
    WsClient::new(ws, &response).pings(1).await;
    assert_eq!(server.stop(), 0);
}

#[tokio::test]
async fn websocket_and_tcp_connections_share_the_per_address_cap() {
    let server = server(|config| config.front_door.max_connections_per_address = 2);
    let mut tcp = common::client::Client::connect(server.game_addr());
    tcp.send(json!({"type": "ping", "nonce": 1}));
    assert_eq!(tcp.expect("pong")["nonce"], 1);
    let mut ws = WsClient::connect(server.ws_addr(), None).await;
    ws.pings(2).await;
    // The third connection from this address, on either door, is refused.
    let (status, response) = http_get(server.ws_addr(), "/ws", "");
    assert_eq!(status, 503, "{response}");
    assert!(response.contains("server_busy"), "{response}");
    drop(ws);
    assert_eq!(server.stop(), 0);
}

#[tokio::test]
async fn an_oversized_message_is_refused_too_large_and_closed_1009() {
    let server = server(|_| {});
    let mut bystander = bystander(&server).await;
    let mut client = WsClient::connect(server.ws_addr(), None).await;
    let huge = format!(
        "{{\"type\":\"ping\",\"nonce\":1,\"pad\":\"{}\"}}",
        "x".repeat(70_000)
    );
    client.ws.send(Message::Text(huge.into())).await.unwrap();
    let (last, close) = client.until_closed().await;
    assert_eq!(last.last().unwrap()["code"], "too_large", "{last:?}");
    assert_eq!(close_code(close), Some(1009));
    bystander.pings(2).await;
    assert_eq!(server.stop(), 0);
}

#[tokio::test]
async fn a_fragmented_flood_without_an_end_is_closed_1009() {
    let server = server(|_| {});
    let mut bystander = bystander(&server).await;
    let client = WsClient::connect(server.ws_addr(), None).await;
    let (mut sink, mut stream) = client.ws.split();
    // A text message begun and continued for ever, never finished.
    let flood = tokio::spawn(async move {
        let first = Frame::message(vec![b'x'; 4096], OpCode::Data(Data::Text), false);
        if sink.send(Message::Frame(first)).await.is_err() {
            return;
        }
        loop {
            let more = Frame::message(vec![b'x'; 4096], OpCode::Data(Data::Continue), false);
            if sink.send(Message::Frame(more)).await.is_err() {
                return;
            }
        }
    });
    let mut last = Vec::new();
    let close = loop {
        match tokio::time::timeout(common::ws::WAIT, stream.next())
            .await
            .expect("a close")
        {
            Some(Ok(Message::Text(text))) => last.push(text.to_string()),
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    flood.abort();
    assert!(last.iter().any(|m| m.contains("too_large")), "{last:?}");
    assert_eq!(close_code(close), Some(1009));
    bystander.pings(2).await;
    assert_eq!(server.stop(), 0);
}

#[tokio::test]
async fn pings_without_end_are_kicked_for_their_rate() {
    let server = server(|_| {});
    let mut bystander = bystander(&server).await;
    let client = WsClient::connect(server.ws_addr(), None).await;
    let (mut sink, mut stream) = client.ws.split();
    let flood = tokio::spawn(async move {
        while sink
            .send(Message::Ping(b"hi".to_vec().into()))
            .await
            .is_ok()
        {}
    });
    let mut last = Vec::new();
    let close = loop {
        match tokio::time::timeout(common::ws::WAIT, stream.next())
            .await
            .expect("a close")
        {
            Some(Ok(Message::Text(text))) => {
                last.push(serde_json::from_str::<serde_json::Value>(&text).unwrap())
            }
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    flood.abort();
    let kicked = last.last().expect("a last word");
    assert_eq!(
        (kicked["type"].as_str(), kicked["code"].as_str()),
        (Some("kicked"), Some("rate")),
        "{last:?}"
    );
    assert_eq!(close.map(|frame| frame.code), Some(CloseCode::Policy));
    bystander.pings(2).await;
    assert_eq!(server.stop(), 0);
}

#[tokio::test]
async fn a_handshake_that_never_completes_is_closed_after_the_idle_timeout() {
    let server = server(|config| config.front_door.idle_timeout = Duration::from_millis(500));
    let mut bystander = WsClient::connect(server.ws_addr(), None).await;
    // Half a request head, then silence; and a connection that says nothing at all.
    let mut half = std::net::TcpStream::connect(server.ws_addr()).unwrap();
    half.set_read_timeout(Some(common::ws::WAIT)).unwrap();
    half.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n")
        .unwrap();
    let mut silent = std::net::TcpStream::connect(server.ws_addr()).unwrap();
    silent.set_read_timeout(Some(common::ws::WAIT)).unwrap();
    let closed = tokio::task::spawn_blocking(move || {
        for stream in [&mut half, &mut silent] {
            let mut rest = Vec::new();
            // Closed by the server (an error reply, if any, then the end), not by our guard.
            stream.read_to_end(&mut rest).expect("closed by the server");
        }
    });
    // The bystander is served all the while.
    let mut nonce = 0;
    while !closed.is_finished() {
        nonce += 1;
        bystander.pings(nonce).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    closed.await.unwrap();
    bystander.pings(nonce + 1).await;
    assert_eq!(server.stop(), 0);
}

#[tokio::test]
async fn an_idle_websocket_client_is_kicked_and_closed() {
    let server = server(|config| config.front_door.idle_timeout = Duration::from_millis(500));
    let mut client = WsClient::connect(server.ws_addr(), None).await;
    let (last, close) = client.until_closed().await;
    assert_eq!(last.last().unwrap()["code"], "idle", "{last:?}");
    assert_eq!(close_code(close), Some(1008));
    assert_eq!(server.stop(), 0);
}

#[tokio::test]
async fn a_drain_kicks_websocket_players_with_going_away() {
    let server = server(|_| {});
    let mut client = WsClient::connect(server.ws_addr(), None).await;
    client.register_and_login("dora").await;
    server.drain();
    let (last, close) = client.until_closed().await;
    let kicked = last.iter().find(|m| m["type"] == "kicked").expect("kicked");
    assert_eq!(kicked["code"], "drain", "{last:?}");
    assert_eq!(close_code(close), Some(1001));
    assert_eq!(server.join(), 0);
}

#[tokio::test]
async fn connections_and_messages_are_counted_by_transport() {
    let server = server(|_| {});
    let metrics = server.addrs().metrics.unwrap();
    let mut ws = WsClient::connect(server.ws_addr(), None).await;
    ws.pings(1).await;
    let mut tcp = common::client::Client::connect(server.game_addr());
    tcp.send(json!({"type": "ping", "nonce": 1}));
    tcp.expect("pong");
    let expected = [
        "hearth_client_connections_opened_total{transport=\"ws\"} 1",
        "hearth_client_connections_opened_total{transport=\"tcp\"} 1",
        "hearth_client_connections_opened_total{transport=\"wss\"} 0",
        "hearth_client_connections_by_transport{transport=\"ws\"} 1.0",
        // One ping each, and its pong.
        "hearth_client_messages_received_total{transport=\"ws\"} 1",
        "hearth_client_messages_received_total{transport=\"tcp\"} 1",
        "hearth_client_messages_sent_total{transport=\"ws\"} 1",
        "hearth_client_messages_sent_total{transport=\"tcp\"} 1",
        "hearth_client_messages_rate_limited_total{transport=\"ws\"} 0",
    ];
    // A message is counted once its write returned, which can be just after the client read
    // it: scrape until the counts are there (the guard is against a hang, not a timing).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, body) = common::http::get(metrics, "/metrics");
        assert_eq!(status, 200);
        let missing: Vec<_> = expected
            .iter()
            .filter(|line| !body.lines().any(|l| l == **line))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {missing:?} in\n{body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(ws);
    assert_eq!(server.stop(), 0);
}
