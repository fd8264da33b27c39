//! A demo-game server in this process (memory store, its front door on a free port), a
//! relay whose connections a test can cut (a network failure the client did not ask for),
//! and a guard against a test that waits forever.

#![allow(dead_code)] // Each test file uses part of this.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hearth::testing::{ServerThread, test_config};
use hearth_client::{Client, Event};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

/// How long a test waits for what it expects before failing (a guard against a hang, not a
/// timing assertion).
pub const WAIT: Duration = Duration::from_secs(20);

/// The default server (demo game, memory store) on a free port of 127.0.0.1.
pub fn demo_server(instance: &str) -> ServerThread {
    let mut config = test_config(instance);
    config.front_door.listen = "127.0.0.1:0".parse().unwrap();
    ServerThread::demo(config).expect("the server starts")
}

/// `work`, or a failure naming `what` after [`WAIT`].
pub async fn within<T>(what: &str, work: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, work).await {
        Ok(out) => out,
        Err(_) => panic!("no {what} within {WAIT:?}"),
    }
}

/// Reads events until `check` accepts one (returning what it returns); fails if the client
/// ends first.
pub async fn until<T>(
    client: &mut Client,
    what: &str,
    mut check: impl FnMut(&Client, &Event) -> Option<T>,
) -> T {
    within(what, async {
        loop {
            let event = client
                .next_event()
                .await
                .unwrap_or_else(|| panic!("the client ended while waiting for {what}"));
            if let Some(out) = check(client, &event) {
                return out;
            }
        }
    })
    .await
}

/// A TCP relay to a server: every connection made to it is forwarded, until [`Relay::cut`]
/// drops them all at once (the relay keeps accepting new ones).
pub struct Relay {
    pub addr: SocketAddr,
    cut: broadcast::Sender<()>,
}

impl Relay {
    pub async fn start(server: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = broadcast::channel(1);
        let cuts = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(server).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = cut.recv() => {}
                    }
                });
            }
        });
        Self { addr, cut }
    }

    /// Drops every connection through the relay (both sides see the connection end).
    pub fn cut(&self) {
        let _ = self.cut.send(());
    }
}
