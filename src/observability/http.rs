//! The HTTP listener of the operations endpoints: hyper's HTTP/1.1 server on a one-thread
//! tokio runtime of its own (thread `hearth-metrics`), so a scrape or a probe never waits on
//! the tick or the front door's runtime, and neither waits on it.
//!
//! The port is reachable by whoever can reach the interface, so no client can make it hold
//! much or for long: each connection is its own task (a client that never reads stalls only
//! its own connection), at most [`MAX_CONNECTIONS`] are served at once and at most
//! [`MAX_CONNECTIONS_PER_ADDRESS`] from one address (the next is answered 503 and closed, so
//! one host cannot take the slots a probe from another needs), a request head is at most [`MAX_HEAD_BYTES`] in at most [`MAX_HEADERS`]
//! headers (else 431 and closed), and a head, a read or a write that takes longer than
//! [`IO_TIMEOUT`] closes the connection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bevy_ecs::resource::Resource;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;

use super::health::Health;

/// The exposition format `prometheus-client` writes: OpenMetrics text (a counter family
/// `x` has samples `x_total`, the body ends with `# EOF`). Prometheus picks its parser by
/// this content type.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Connections served at once. A scraper and two probes need three; 64 leaves room for
/// several Prometheus servers and orchestrators while bounding what a flood of connections
/// costs (a task and a buffer each).
pub const MAX_CONNECTIONS: usize = 64;

/// Connections served at once from one address: a flood from one host holds at most this
/// many slots, and a probe or a scrape from another host is still answered.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 8;

/// The largest request head (request line and headers) read before answering 431: hyper's
/// read buffer is capped at this, so a header line that never ends costs no more.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The most headers a request may have (else 431).
pub const MAX_HEADERS: usize = 64;

/// How long a request head may take to arrive, and any one read or write may block, before
/// the connection is closed: a client that stops reading or sending frees its slot.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What the connection after the last allowed one is told before it is closed.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 29\r\nConnection: close\r\n\r\ntoo many metrics connections\n";

/// The running listener. Dropping it stops the runtime and its thread.
#[derive(Resource)]
pub struct MetricsEndpoint {
    stop: CancellationToken,
    local_addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl MetricsEndpoint {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What every connection's task reads to answer.
struct Endpoints {
    registry: Registry,
    health: Health,
}

/// Binds `addr` and serves `/metrics` from `registry`, `/healthz` and `/readyz` from `health`.
pub fn serve(
    addr: SocketAddr,
    registry: Registry,
    health: Health,
) -> std::io::Result<MetricsEndpoint> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    // Bound here, so a taken port is the caller's error, not the thread's.
    let listener = runtime.block_on(TcpListener::bind(addr))?;
    let local_addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let endpoints = Arc::new(Endpoints { registry, health });
    let thread = std::thread::Builder::new()
        .name("hearth-metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    () = stopped.cancelled() => {}
                    () = accept_loop(listener, endpoints) => {}
                }
            });
            // Dropping the runtime drops every connection's task.
        })?;
    Ok(MetricsEndpoint {
        stop,
        local_addr,
        thread: Some(thread),
    })
}

/// Accepts connections for ever: each is served by a task of its own while a slot is free
/// (in all and for its address); past either limit it is answered 503 and closed.
async fn accept_loop(listener: TcpListener, endpoints: Arc<Endpoints>) {
    let served = Arc::new(Mutex::new(Served::default()));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, mostly: wait rather than spin.
                tracing::warn!(error = %e, "metrics endpoint: accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match Served::take(&served, peer.ip()) {
            Some(slot) => {
                let endpoints = Arc::clone(&endpoints);
                tokio::spawn(async move {
                    serve_connection(stream, endpoints).await;
                    drop(slot);
                });
            }
            None => {
                tokio::spawn(refuse(stream));
            }
        }
    }
}

/// The connections being served, in all and per client address.
#[derive(Default)]
struct Served {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

impl Served {
    /// A slot for a connection from `address`, if both limits allow one.
    fn take(served: &Arc<Mutex<Served>>, address: IpAddr) -> Option<Slot> {
        let mut now = served.lock().unwrap_or_else(|p| p.into_inner());
        let from_address = now.by_address.get(&address).copied().unwrap_or(0);
        if now.total >= MAX_CONNECTIONS || from_address >= MAX_CONNECTIONS_PER_ADDRESS {
            return None;
        }
        now.total += 1;
        now.by_address.insert(address, from_address + 1);
        Some(Slot {
            served: Arc::clone(served),
            address,
        })
    }
}

/// One connection's slot, given back when the connection ends.
struct Slot {
    served: Arc<Mutex<Served>>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut now = self.served.lock().unwrap_or_else(|p| p.into_inner());
        now.total -= 1;
        if let Some(count) = now.by_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                now.by_address.remove(&self.address);
            }
        }
    }
}

/// Answers a connection over the limit 503 (bounded by [`IO_TIMEOUT`]) and closes it.
async fn refuse(mut stream: TcpStream) {
    let written = tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(BUSY_RESPONSE).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::debug!("metrics endpoint: could not tell a connection over the limit");
    }
}

/// Serves one connection's requests until the client closes it, breaks a limit or stalls.
async fn serve_connection(stream: TcpStream, endpoints: Arc<Endpoints>) {
    let mut io = TimeoutStream::new(stream);
    io.set_read_timeout(Some(IO_TIMEOUT));
    io.set_write_timeout(Some(IO_TIMEOUT));
    let io = TokioIo::new(Box::pin(io));
    let service = service_fn(move |request| {
        let endpoints = Arc::clone(&endpoints);
        async move { Ok::<_, Infallible>(answer(&request, &endpoints)) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(IO_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true)
        .serve_connection(io, service)
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "metrics endpoint: connection closed");
    }
}

fn answer(request: &Request<Incoming>, endpoints: &Endpoints) -> Response<Full<Bytes>> {
    let (status, content_type, body) = if request.method() != Method::GET {
        (405, "text/plain", "only GET\n".to_string())
    } else {
        match request.uri().path() {
            "/metrics" => {
                let mut text = String::new();
                match prometheus_client::encoding::text::encode(&mut text, &endpoints.registry) {
                    Ok(()) => (200, METRICS_CONTENT_TYPE, text),
                    Err(e) => (500, "text/plain", format!("encoding failed: {e}\n")),
                }
            }
            "/healthz" => verdict(endpoints.health.live()),
            "/readyz" => verdict(endpoints.health.ready()),
            _ => (
                404,
                "text/plain",
                "not found: /metrics, /healthz or /readyz\n".to_string(),
            ),
        }
    };
    // hyper sets Content-Length from the full body and honours `Connection: close`.
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn verdict(check: Result<(), impl std::fmt::Display>) -> (u16, &'static str, String) {
    match check {
        Ok(()) => (200, "text/plain", "ok\n".to_string()),
        Err(reason) => (503, "text/plain", format!("{reason}\n")),
    }
}
