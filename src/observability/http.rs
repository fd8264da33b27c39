//! The HTTP listener of the operations endpoints: one thread of its own (tiny_http), so a
//! scrape or a probe never waits on the tick or the front door's runtime, and neither waits
//! on it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use bevy_ecs::resource::Resource;
use prometheus_client::registry::Registry;
use tiny_http::{Header, Method, Request, Response, Server};

use super::health::Health;

/// The exposition format `prometheus-client` writes: OpenMetrics text (a counter family
/// `x` has samples `x_total`, the body ends with `# EOF`). Prometheus picks its parser by
/// this content type.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The running listener. Dropping it stops the thread.
#[derive(Resource)]
pub struct MetricsEndpoint {
    server: Arc<Server>,
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
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Binds `addr` and serves `/metrics` from `registry`, `/healthz` and `/readyz` from `health`.
pub fn serve(
    addr: SocketAddr,
    registry: Registry,
    health: Health,
) -> std::io::Result<MetricsEndpoint> {
    let server = Arc::new(Server::http(addr).map_err(std::io::Error::other)?);
    let local_addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| std::io::Error::other("the metrics listener is not on an IP address"))?;
    let serving = Arc::clone(&server);
    let thread = std::thread::Builder::new()
        .name("hearth-metrics".into())
        .spawn(move || {
            for request in serving.incoming_requests() {
                answer(request, &registry, &health);
            }
        })?;
    Ok(MetricsEndpoint {
        server,
        local_addr,
        thread: Some(thread),
    })
}

fn answer(request: Request, registry: &Registry, health: &Health) {
    let (status, content_type, body) = if *request.method() != Method::Get {
        (405, "text/plain", "only GET\n".to_string())
    } else {
        match request.url().split('?').next().unwrap_or_default() {
            "/metrics" => {
                let mut text = String::new();
                match prometheus_client::encoding::text::encode(&mut text, registry) {
                    Ok(()) => (200, METRICS_CONTENT_TYPE, text),
                    Err(e) => (500, "text/plain", format!("encoding failed: {e}\n")),
                }
            }
            "/healthz" => verdict(health.live()),
            "/readyz" => verdict(health.ready()),
            _ => (
                404,
                "text/plain",
                "not found: /metrics, /healthz or /readyz\n".to_string(),
            ),
        }
    };
    let header = Header::from_bytes("Content-Type", content_type).expect("a valid header");
    let response = Response::from_string(body)
        .with_status_code(status)
        .with_header(header);
    if let Err(e) = request.respond(response) {
        tracing::debug!(error = %e, "metrics endpoint: could not answer a request");
    }
}

fn verdict(check: Result<(), impl std::fmt::Display>) -> (u16, &'static str, String) {
    match check {
        Ok(()) => (200, "text/plain", "ok\n".to_string()),
        Err(reason) => (503, "text/plain", format!("{reason}\n")),
    }
}
