//! Opening a connection to a server, over any of its doors: TCP, TCP in TLS, WebSocket
//! (`ws://`) and WebSocket in TLS (`wss://`); then the binary preamble exchange on a byte
//! stream when the binary encoding is chosen (over WebSocket the subprotocol chooses it). A
//! connection is a stream of [`RawMessage`]s and a sink of [`Outgoing`] messages, whatever
//! carries them.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt, future};
use hearth_components::wire::{self, PREAMBLE, decode_frame};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::codec::{Codec, CodecError, Encoding, Inbound, Outgoing, RawMessage, decode_json};
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::event::Refusal;
use crate::tls::TlsConfig;

/// Where a client connects (kept to reconnect to the same place).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Plain TCP to `host:port` (the default door, `--listen`).
    Tcp(String),
    /// TCP in TLS to `host:port` (a server with `--tls-cert`); trusts
    /// [`ClientConfig::tls`]'s roots.
    Tls(String),
    /// A WebSocket URL: `ws://host:port/ws`, or `wss://...` (in TLS, trusting
    /// [`ClientConfig::tls`]'s roots).
    WebSocket(String),
}

impl Target {
    /// The same transport to another server's `addr` (`host:port`), as a `handoff` names
    /// it: a WebSocket URL keeps its scheme and path.
    pub fn with_addr(&self, addr: &str) -> Self {
        match self {
            Self::Tcp(_) => Self::Tcp(addr.into()),
            Self::Tls(_) => Self::Tls(addr.into()),
            Self::WebSocket(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("ws", url));
                let path = rest.find('/').map_or("", |at| &rest[at..]);
                Self::WebSocket(format!("{scheme}://{addr}{path}"))
            }
        }
    }

    /// The transport's name, as `hearth-swarm --transport` spells it.
    pub fn transport(&self) -> &'static str {
        match self {
            Self::Tcp(_) => "tcp",
            Self::Tls(_) => "tls",
            Self::WebSocket(url) if url.starts_with("wss:") => "wss",
            Self::WebSocket(_) => "ws",
        }
    }
}

/// What the server sends, message by message.
pub type Incoming = Pin<Box<dyn Stream<Item = Result<RawMessage, CodecError>> + Send>>;
/// Where messages to the server go.
pub type Outbound = Pin<Box<dyn Sink<Outgoing, Error = CodecError> + Send>>;

/// An open connection in its encoding, not yet logged in.
pub struct RawConn {
    pub incoming: Incoming,
    pub outbound: Outbound,
}

/// Opens a connection to `target` as `config` says (encoding, TLS roots, source address).
pub async fn connect_raw(target: &Target, config: &ClientConfig) -> Result<RawConn, ClientError> {
    let encoding = config.encoding;
    match target {
        Target::Tcp(addr) => {
            let mut stream = tcp(addr, config.bind_ip).await?;
            if encoding == Encoding::Binary {
                open_binary(&mut stream).await?;
            }
            let (read, write) = stream.into_split();
            Ok(framed(read, write, encoding))
        }
        Target::Tls(addr) => {
            let tls = tls_config(config)?;
            let host = host_of(addr);
            let stream = tcp(addr, config.bind_ip).await?;
            let mut stream = tls.connect(host, stream).await?;
            if encoding == Encoding::Binary {
                open_binary(&mut stream).await?;
            }
            let (read, write) = tokio::io::split(stream);
            Ok(framed(read, write, encoding))
        }
        Target::WebSocket(url) => {
            let mut request = url
                .as_str()
                .into_client_request()
                .map_err(|e| ClientError::Connect(std::io::Error::other(e)))?;
            let subprotocol = match encoding {
                Encoding::Json => "hearth.json",
                Encoding::Binary => "hearth.binary",
            };
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static(subprotocol),
            );
            let secure = request.uri().scheme_str() == Some("wss");
            let host = request.uri().host().unwrap_or_default().to_string();
            let port = request
                .uri()
                .port_u16()
                .unwrap_or(if secure { 443 } else { 80 });
            // `[::1]` in a URL is the address `::1`.
            let addr = format!("{}:{port}", host);
            let stream = tcp(&addr, config.bind_ip).await?;
            let limits = WebSocketConfig::default()
                .max_message_size(Some(ws_limit()))
                .max_frame_size(Some(ws_limit()));
            if secure {
                let tls = tls_config(config)?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let stream = tls.connect(host, stream).await?;
                let (ws, response) =
                    tokio_tungstenite::client_async_with_config(request, stream, Some(limits))
                        .await
                        .map_err(ws_refused)?;
                check_subprotocol(&response, subprotocol)?;
                Ok(websocket(ws, encoding))
            } else {
                let (ws, response) =
                    tokio_tungstenite::client_async_with_config(request, stream, Some(limits))
                        .await
                        .map_err(ws_refused)?;
                check_subprotocol(&response, subprotocol)?;
                Ok(websocket(ws, encoding))
            }
        }
    }
}

/// The largest WebSocket message a server sends: a line or frame at its limit, with room.
fn ws_limit() -> usize {
    wire::MAX_FRAME_BYTES + 16
}

fn tls_config(config: &ClientConfig) -> Result<&TlsConfig, ClientError> {
    config.tls.as_ref().ok_or_else(|| {
        ClientError::Tls(
            "no root certificate to trust: set ClientConfig::tls (TlsConfig::from_pem)".into(),
        )
    })
}

/// `host` of `host:port` (brackets of an IPv6 address removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A TCP connection to `addr` (`host:port`), from `bind_ip` when given (so one machine can
/// be many client addresses, as hearth-swarm's bots are).
async fn tcp(addr: &str, bind_ip: Option<IpAddr>) -> Result<TcpStream, ClientError> {
    let stream = match bind_ip {
        None => TcpStream::connect(addr).await,
        Some(ip) => {
            let target: SocketAddr = tokio::net::lookup_host(addr)
                .await
                .map_err(ClientError::Connect)?
                .find(|a| a.is_ipv4() == ip.is_ipv4())
                .ok_or_else(|| {
                    ClientError::Connect(std::io::Error::other(format!(
                        "no address of {addr} for {ip}"
                    )))
                })?;
            let socket = if ip.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(ClientError::Connect)?;
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(ClientError::Connect)?;
            socket.connect(target).await
        }
    }
    .map_err(ClientError::Connect)?;
    stream.set_nodelay(true).map_err(ClientError::Connect)?;
    Ok(stream)
}

/// Lines or frames on a byte stream's halves.
fn framed(
    read: impl AsyncRead + Send + 'static,
    write: impl AsyncWrite + Send + 'static,
    encoding: Encoding,
) -> RawConn {
    RawConn {
        incoming: Box::pin(FramedRead::new(read, Codec::new(encoding))),
        outbound: Box::pin(FramedWrite::new(write, Codec::new(encoding))),
    }
}

/// Sends the binary preamble and reads the server's. A server that refuses (`server_busy`,
/// or another version) answers with one JSON error line instead: that is the error.
async fn open_binary(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
) -> Result<(), ClientError> {
    stream
        .write_all(&PREAMBLE)
        .await
        .map_err(ClientError::Connect)?;
    let mut answer = [0u8; PREAMBLE.len()];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(ClientError::Connect)?;
    if wire::read_preamble(&answer).is_ok() {
        return Ok(());
    }
    let mut line = answer.to_vec();
    let mut rest =
        BufReader::new(stream).take(hearth_components::protocol::MAX_ERROR_LINE_BYTES as u64);
    rest.read_until(b'\n', &mut line)
        .await
        .map_err(ClientError::Connect)?;
    Err(refusal_or(
        line.trim_ascii(),
        "the server did not answer the binary preamble",
    ))
}

/// The `error` in `text`, or a protocol error saying `otherwise`.
fn refusal_or(text: &[u8], otherwise: &str) -> ClientError {
    match decode_json(text) {
        Inbound::Message(object)
            if object.get("type").and_then(|t| t.as_str()) == Some("error") =>
        {
            ClientError::Refused(Refusal::from_object(&object))
        }
        _ => ClientError::Protocol(otherwise.into()),
    }
}

/// A refused WebSocket handshake: the server's JSON error body when it sent one (503
/// `server_busy`), else the HTTP status.
fn ws_refused(error: tungstenite::Error) -> ClientError {
    match error {
        tungstenite::Error::Http(response) => {
            let status = response.status();
            let body = response.body().as_deref().unwrap_or_default();
            refusal_or(
                body,
                &format!("the WebSocket handshake was refused: HTTP {status}"),
            )
        }
        other => ClientError::Connect(std::io::Error::other(other)),
    }
}

/// The server must speak the encoding asked for.
fn check_subprotocol(
    response: &tungstenite::handshake::client::Response,
    asked: &str,
) -> Result<(), ClientError> {
    let chosen = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok());
    if chosen == Some(asked) {
        Ok(())
    } else {
        Err(ClientError::Protocol(format!(
            "asked for the WebSocket subprotocol {asked}, the server chose {chosen:?}"
        )))
    }
}

impl From<tungstenite::Error> for CodecError {
    fn from(error: tungstenite::Error) -> Self {
        Self::WebSocket(error.to_string())
    }
}

/// Messages on a WebSocket: text messages are JSON messages, binary messages one frame each.
fn websocket<S>(ws: WebSocketStream<S>, encoding: Encoding) -> RawConn
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    let incoming = stream.filter_map(|message| {
        future::ready(match message {
            Ok(Message::Text(text)) => Some(Ok(RawMessage::Json(Bytes::from(text)))),
            Ok(Message::Binary(bytes)) => Some(one_frame(bytes)),
            // Pings are answered by tungstenite; a close ends the stream after it.
            Ok(_) => None,
            Err(e) => Some(Err(CodecError::from(e))),
        })
    });
    let outbound = sink.with(move |message: Outgoing| {
        future::ready(Ok::<_, CodecError>(match encoding {
            Encoding::Json => {
                Message::Text(String::from_utf8_lossy(&message.0).into_owned().into())
            }
            Encoding::Binary => Message::Binary(message.0.into()),
        }))
    });
    RawConn {
        incoming: Box::pin(incoming),
        outbound: Box::pin(outbound),
    }
}

/// A binary WebSocket message, which must hold exactly one frame.
fn one_frame(bytes: Bytes) -> Result<RawMessage, CodecError> {
    let (frame, used) =
        decode_frame(&bytes).map_err(|e| CodecError::Framing(format!("a bad frame: {e}")))?;
    if used != bytes.len() {
        return Err(CodecError::Framing(
            "a binary WebSocket message holds more than one frame".into(),
        ));
    }
    let kind = frame.kind;
    let start = used - frame.payload.len();
    Ok(RawMessage::Frame {
        kind,
        payload: bytes.slice(start..used),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handoff_keeps_the_transport() {
        assert_eq!(
            Target::Tcp("a:1".into()).with_addr("b:2"),
            Target::Tcp("b:2".into())
        );
        assert_eq!(
            Target::Tls("a:1".into()).with_addr("b:2"),
            Target::Tls("b:2".into())
        );
        assert_eq!(
            Target::WebSocket("wss://a:1/ws".into()).with_addr("b:2"),
            Target::WebSocket("wss://b:2/ws".into())
        );
    }
}
