//! The accept loop of each listener: admits each new connection against the connection
//! limits the listeners share (a refused one is told `server_busy` and closed), hands it to
//! its [`Door`] (the game protocol over TCP or TLS, or HTTP and WebSocket), and backs off
//! while accepting fails (out of file descriptors, say) instead of spinning and logging
//! every failure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hearth_components::protocol::ServerMessage;
use hearth_systems::net::ConnId;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::admission::ConnectionLimits;
use super::connection::ConnectionContext;
use super::stream;
use super::tls;
use super::transport::TransportKind;
use super::web::{self, WebSettings};

/// Connection ids, unique across the listeners.
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Refused connections being told why at once. Each holds a file descriptor for up to the
/// closing linger; past this many, the loop waits for one to finish before accepting more,
/// so refusals stay inside the descriptors kept for them (`fd_limit::FD_RESERVE`).
pub const REFUSING_AT_ONCE: usize = 32;

/// Exponential pause between failed accepts, with one warning per episode of failures.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    failures: u64,
    since: Option<Instant>,
}

impl AcceptBackoff {
    /// The first pause after a failure.
    pub const MIN: Duration = Duration::from_millis(10);
    /// The longest pause.
    pub const MAX: Duration = Duration::from_secs(1);

    /// Counts a failure: the pause before the next accept, and whether this failure starts
    /// an episode (the one to warn about).
    pub fn failed(&mut self) -> (Duration, bool) {
        let first = self.failures == 0;
        if first {
            self.since = Some(Instant::now());
        }
        let doublings = u32::try_from(self.failures.min(16)).unwrap_or(16);
        self.failures += 1;
        let pause = Self::MIN.saturating_mul(1 << doublings).min(Self::MAX);
        (pause, first)
    }

    /// Counts a success: the failures of the episode it ends and how long it lasted, if one.
    pub fn succeeded(&mut self) -> Option<(u64, Duration)> {
        let failures = std::mem::take(&mut self.failures);
        let since = self.since.take()?;
        (failures > 0).then(|| (failures, since.elapsed()))
    }
}

/// What a listener's connections speak.
#[derive(Clone)]
pub struct Door {
    /// `None`: the game protocol on the stream (`listen`); `Some`: HTTP, with WebSocket
    /// client connections at `/ws` (`listen_ws`).
    pub web: Option<Arc<WebSettings>>,
    /// TLS first, when the certificate and key are configured.
    pub tls: Option<TlsAcceptor>,
}

impl Door {
    /// Serves an admitted connection until it ends.
    async fn serve(
        self,
        conn: ConnId,
        stream: TcpStream,
        peer: SocketAddr,
        ctx: ConnectionContext,
    ) {
        stream.set_nodelay(true).ok();
        match (self.web, self.tls) {
            (None, None) => {
                let (reader, writer) = stream.into_split();
                stream::serve(conn, reader, writer, TransportKind::Tcp, peer, ctx).await;
            }
            (None, Some(tls)) => {
                let Some(tls) = tls::handshake(&tls, stream, peer, ctx.idle_timeout).await else {
                    return;
                };
                let (reader, writer) = tokio::io::split(tls);
                stream::serve(conn, reader, writer, TransportKind::Tls, peer, ctx).await;
            }
            (Some(web), None) => web::serve(conn, stream, TransportKind::Ws, peer, ctx, web).await,
            (Some(web), Some(tls)) => {
                let Some(tls) = tls::handshake(&tls, stream, peer, ctx.idle_timeout).await else {
                    return;
                };
                web::serve(conn, tls, TransportKind::Wss, peer, ctx, web).await;
            }
        }
    }

    /// Tells a connection refused at the door why, in what it speaks, and closes it.
    async fn refuse(self, stream: TcpStream, peer: SocketAddr, message: ServerMessage) {
        stream.set_nodelay(true).ok();
        let stream = match &self.tls {
            None => Secured::Plain(stream),
            Some(tls) => match tls::handshake(tls, stream, peer, REFUSAL_HANDSHAKE).await {
                Some(tls) => Secured::Tls(Box::new(tls)),
                None => return,
            },
        };
        match (self.web.is_some(), stream) {
            (false, Secured::Plain(stream)) => {
                let (reader, writer) = stream.into_split();
                stream::refuse(reader, writer, message).await;
            }
            (false, Secured::Tls(tls)) => {
                let (reader, writer) = tokio::io::split(tls);
                stream::refuse(reader, writer, message).await;
            }
            (true, Secured::Plain(stream)) => web::refuse(stream, message).await,
            (true, Secured::Tls(tls)) => web::refuse(tls, message).await,
        }
    }
}

/// A refused connection, in TLS or not.
enum Secured {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// How long a refused TLS connection's handshake may take before it is closed without a
/// word: refusals happen under load, and a slow one holds a refusal slot.
const REFUSAL_HANDSHAKE: Duration = Duration::from_secs(2);

/// Accepts until `accepting` is cancelled, handing what it admits to `door`.
pub async fn run(
    listener: TcpListener,
    door: Door,
    ctx: ConnectionContext,
    limits: Arc<ConnectionLimits>,
    accepting: CancellationToken,
) {
    let refusing = Arc::new(Semaphore::new(REFUSING_AT_ONCE));
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            () = accepting.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                let (pause, first) = backoff.failed();
                if first {
                    tracing::warn!(error = %e, held = limits.held(), "accepting connections fails; retrying with backoff (up to {:?}) and new clients wait until it works again", AcceptBackoff::MAX);
                }
                tokio::select! {
                    () = accepting.cancelled() => return,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        if let Some((failures, lasted)) = backoff.succeeded() {
            tracing::info!(failures, ?lasted, "accepting connections works again");
        }
        match limits.admit(peer.ip()) {
            Ok(permit) => {
                let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                let ctx = ctx.clone();
                let door = door.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    door.serve(conn, stream, peer, ctx).await;
                });
            }
            Err(refused) => {
                tracing::debug!(%peer, ?refused, "connection refused");
                ctx.stats.count_refused(refused);
                let Ok(slot) = Arc::clone(&refusing).acquire_owned().await else {
                    continue; // never closed
                };
                let door = door.clone();
                tokio::spawn(async move {
                    door.refuse(stream, peer, refused.message()).await;
                    drop(slot);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_and_warn_once_per_episode() {
        let mut backoff = AcceptBackoff::default();
        assert_eq!(backoff.succeeded(), None, "no episode yet");
        let pauses: Vec<_> = (0..10).map(|_| backoff.failed()).collect();
        assert_eq!(pauses[0], (Duration::from_millis(10), true));
        assert_eq!(pauses[1], (Duration::from_millis(20), false));
        assert_eq!(pauses[6], (Duration::from_millis(640), false));
        assert_eq!(pauses[7], (AcceptBackoff::MAX, false));
        assert_eq!(pauses[9], (AcceptBackoff::MAX, false));
        let warned = pauses.iter().filter(|(_, warn)| *warn).count();
        assert_eq!(warned, 1, "one warning for the whole episode");
        let (failures, _) = backoff.succeeded().expect("the episode ends");
        assert_eq!(failures, 10);
        assert_eq!(
            backoff.failed(),
            (AcceptBackoff::MIN, true),
            "a new episode"
        );
    }
}
