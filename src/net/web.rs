//! The WebSocket listener's HTTP side (`listen_ws`): hyper's HTTP/1.1 server, one task per
//! connection. `GET /ws` with a WebSocket upgrade becomes a client connection
//! ([`super::websocket`]) whose subprotocol chose its encoding; any other `GET` is a file of
//! the browser client ([`super::static_files`]), or 404. A handshake whose `Origin` is not
//! allowed is answered 403. A request head must arrive within the idle timeout (a handshake
//! that never completes is closed then), in at most [`MAX_HEAD_BYTES`] and
//! [`MAX_HEADERS`] headers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hearth_components::protocol::ServerMessage;
use hearth_systems::net::ConnId;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::connection::{self, ConnectionContext, OpenConnection, WRITE_TIMEOUT};
use super::encoding::Encoding;
use super::static_files;
use super::stream::linger;
use super::transport::TransportKind;
use super::websocket::{self, WsTransport};

/// The path of WebSocket client connections.
pub const WS_PATH: &str = "/ws";

/// The largest request head read before answering 431 (hyper's read buffer is capped at it).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The most headers a request may have (else 431).
pub const MAX_HEADERS: usize = 64;

/// What the WebSocket listener is configured with.
#[derive(Debug, Default)]
pub struct WebSettings {
    /// The `Origin`s allowed to open a WebSocket, normalised by [`normalise_origin`];
    /// `None`: any (a handshake without `Origin`, from a program rather than a browser, is
    /// always allowed: the setting protects browsers' users from other sites' pages).
    pub allowed_origins: Option<Vec<String>>,
}

impl WebSettings {
    /// Settings allowing `origins` (empty: any origin).
    pub fn new(origins: &[String]) -> Self {
        let allowed = origins
            .iter()
            .map(|origin| normalise_origin(origin))
            .filter(|origin| !origin.is_empty())
            .collect::<Vec<_>>();
        Self {
            allowed_origins: (!allowed.is_empty()).then_some(allowed),
        }
    }

    fn allows(&self, origin: Option<&HeaderValue>) -> bool {
        let (Some(allowed), Some(origin)) = (&self.allowed_origins, origin) else {
            return true;
        };
        let origin = origin.to_str().map(normalise_origin).unwrap_or_default();
        allowed.contains(&origin)
    }
}

/// An origin as compared: trimmed, lowercase, without a trailing `/`.
pub fn normalise_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// A WebSocket upgrade accepted by the service, taken over once hyper hands over the socket.
type Upgrade = Arc<Mutex<Option<(OnUpgrade, Encoding)>>>;

/// Serves one connection of the WebSocket listener (`kind`: ws or wss): HTTP requests until
/// one upgrades to WebSocket, then the game protocol on it until it ends.
pub async fn serve<S>(
    conn: ConnId,
    io: S,
    kind: TransportKind,
    peer: SocketAddr,
    ctx: ConnectionContext,
    settings: Arc<WebSettings>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let upgrade = Upgrade::default();
    let slot = Arc::clone(&upgrade);
    let service = service_fn(move |request| {
        let response = answer(request, &settings, &slot);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(ctx.idle_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    let served = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let served = tokio::select! {
        () = ctx.closing.cancelled() => return,
        served = served => served,
    };
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "WebSocket listener: HTTP connection closed");
    }
    let taken = upgrade.lock().ok().and_then(|mut slot| slot.take());
    let Some((on_upgrade, encoding)) = taken else {
        return;
    };
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "WebSocket upgrade failed");
            return;
        }
    };
    let _open = OpenConnection::new(&ctx, kind);
    let transport = WsTransport::new(TokioIo::new(upgraded), encoding).await;
    connection::serve(conn, transport, kind, peer, ctx).await;
}

/// Tells a connection refused at the door why (503, the `server_busy` message as the body),
/// then closes it.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, message: ServerMessage) {
    let body = message.to_line();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
        io.write_all(response.as_bytes()).await?;
        io.shutdown().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) {
        linger(io).await;
    }
}

/// The answer to one request; a WebSocket handshake it accepts leaves its upgrade in `slot`.
fn answer(
    mut request: Request<Incoming>,
    settings: &WebSettings,
    slot: &Upgrade,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    if request.uri().path() != WS_PATH {
        return match static_files::lookup(request.uri().path()) {
            Some(file) => {
                let mut response = Response::new(Full::new(Bytes::from_static(file.body)));
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(file.content_type),
                );
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                headers.insert(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                );
                response
            }
            None => plain(StatusCode::NOT_FOUND, "not found\n"),
        };
    }
    let headers = request.headers();
    if !is_upgrade(headers) {
        let mut response = plain(
            StatusCode::UPGRADE_REQUIRED,
            "/ws takes WebSocket connections only (docs/protocol.md, \"WebSocket\")\n",
        );
        response
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return response;
    }
    if !settings.allows(headers.get(header::ORIGIN)) {
        return plain(StatusCode::FORBIDDEN, "this origin may not connect\n");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|version| version.as_bytes() != b"13")
    {
        let mut response = plain(StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 only\n");
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return plain(StatusCode::BAD_REQUEST, "no Sec-WebSocket-Key\n");
    };
    let accept = derive_accept_key(key.as_bytes());
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let (encoding, subprotocol) = websocket::choose_subprotocol(&offered);
    let on_upgrade = hyper::upgrade::on(&mut request);
    match slot.lock() {
        Ok(mut slot) => *slot = Some((on_upgrade, encoding)),
        Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "try again\n"),
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(name) = subprotocol {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(name),
        );
    }
    response
}

/// Whether a request asks to upgrade to WebSocket (`Connection: upgrade`, `Upgrade:
/// websocket`, in any case, among other tokens).
fn is_upgrade(headers: &HeaderMap) -> bool {
    let has = |name, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_without_case_or_a_trailing_slash() {
        let settings = WebSettings::new(&["https://Game.example/".into()]);
        let allows =
            |origin: &'static str| settings.allows(Some(&HeaderValue::from_static(origin)));
        assert!(allows("https://game.example"));
        assert!(!allows("https://evil.example"));
        assert!(!allows("http://game.example"));
        assert!(settings.allows(None), "no Origin: not a browser");
        let any = WebSettings::new(&[]);
        assert!(any.allows(Some(&HeaderValue::from_static("https://evil.example"))));
    }
}
