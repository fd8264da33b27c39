//! The seam between a connection's rules (`net::connection`: admission, rate limits,
//! idle timeout, resume, drain, request ids, kicks, replication) and how its messages
//! travel: a byte stream (plain TCP or TLS, `net::stream`) or WebSocket messages (plain
//! or over TLS, `net::websocket`). One `serve` runs the same rules over each.

use std::future::Future;
use std::io;

use hearth_components::protocol::{ErrorCode, KickCode, ServerMessage};

use hearth_components::wire::decode_frame;

use super::encoding::{self, Encoding, Incoming, IncomingError};
use super::sent_rate::SentRate;

/// Which door a connection came in by: the label of its metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// Plain TCP (`listen`).
    Tcp,
    /// TLS over TCP (`listen` with `tls_cert` and `tls_key`).
    Tls,
    /// WebSocket (`listen_ws`).
    Ws,
    /// WebSocket over TLS (`listen_ws` with `tls_cert` and `tls_key`).
    Wss,
}

impl TransportKind {
    /// Every kind, in the order their metrics are kept.
    pub const ALL: [TransportKind; 4] = [Self::Tcp, Self::Tls, Self::Ws, Self::Wss];

    /// The `transport` label of its metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }

    /// Its index in [`TransportKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One thing the client sent.
#[derive(Debug)]
pub enum Received {
    /// A message (a line, a binary frame, a WebSocket text or binary message).
    Message(Incoming),
    /// A WebSocket ping or pong: answered by the transport, counted against the client's
    /// message rate (so pings without end are kicked like any flood), and not activity (so
    /// they do not keep an idle connection open).
    Control,
}

/// How a connection's messages travel. Every method is called from the connection's one
/// task; `receive` must be cancel-safe (it races the connection's other work).
pub trait Transport: Send {
    /// The encoding the client chose.
    fn encoding(&self) -> Encoding;

    /// The next thing the client sent; `None` once it closed.
    fn receive(&mut self) -> impl Future<Output = Option<Result<Received, IncomingError>>> + Send;

    /// The client's message rate, kept up to date by the transport as bytes arrive.
    fn rate(&mut self) -> &mut SentRate;

    /// Sends every message in `out`, in one write where the transport can (a batch costs
    /// one system call on TCP), or fails if the client does not take them in time.
    fn send(&mut self, out: &Outgoing) -> impl Future<Output = io::Result<()>> + Send;

    /// Sends `last` (if any), closes the connection the way the transport does (for
    /// WebSocket, a close frame whose code [`close_code`] chooses) and lets what the client
    /// still sends drain for a moment, so the close does not destroy the last message.
    fn close(self, last: Option<ServerMessage>) -> impl Future<Output = ()> + Send;
}

/// Encoded messages waiting to be sent: a byte stream writes them all at once, WebSocket
/// sends each as a message of its own ([`Outgoing::messages`]).
#[derive(Debug)]
pub struct Outgoing {
    encoding: Encoding,
    bytes: Vec<u8>,
}

/// A batch's buffer is given back when it grew past this.
const KEPT_BUFFER: usize = 16 * 1024;

impl Outgoing {
    /// An empty batch in `encoding`.
    pub fn new(encoding: Encoding) -> Self {
        Self {
            encoding,
            bytes: Vec::new(),
        }
    }

    /// A batch of one message.
    pub fn one(encoding: Encoding, message: &ServerMessage) -> Self {
        let mut out = Self::new(encoding);
        out.push(message);
        out
    }

    /// Empties it for the next batch (keeping a buffer of ordinary size).
    pub fn clear(&mut self) {
        self.bytes.clear();
        if self.bytes.capacity() > KEPT_BUFFER {
            self.bytes = Vec::new();
        }
    }

    /// Appends `message` (left out, and logged, when it has no form in the encoding).
    pub fn push(&mut self, message: &ServerMessage) {
        encoding::write_message(self.encoding, message, &mut self.bytes);
    }

    /// Appends what `write` writes: whole messages in the batch's encoding (lines, frames).
    pub fn push_with<T>(&mut self, write: impl FnOnce(&mut Vec<u8>) -> T) -> T {
        write(&mut self.bytes)
    }

    /// All of it, as a byte stream carries it.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Each message's bytes, in order: a JSON line with its newline, or one binary frame.
    pub fn messages(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest = self.bytes.as_slice();
        let encoding = self.encoding;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let len = match encoding {
                Encoding::Json => rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |newline| newline + 1),
                // The server wrote these frames: one that does not read back would be a
                // bug, and is sent whole rather than dropped.
                Encoding::Binary => decode_frame(rest).map_or(rest.len(), |(_, used)| used),
            };
            let (message, after) = rest.split_at(len);
            rest = after;
            Some(message)
        })
    }
}

/// The WebSocket close code a connection ends with after `last` (RFC 6455, section 7.4.1):
/// 1009 for a message too large, 1001 when the server goes away (shutdown or drain), 1008
/// for anything else the client did wrong or a kick, 1000 for an ordinary end.
pub fn close_code(last: Option<&ServerMessage>) -> u16 {
    match last.map(ServerMessage::inner) {
        None => 1000,
        Some(ServerMessage::Error {
            code: ErrorCode::TooLarge,
            ..
        }) => 1009,
        Some(ServerMessage::Kicked {
            code: KickCode::Shutdown | KickCode::Drain,
            ..
        }) => 1001,
        Some(_) => 1008,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_knows_where_each_message_ends() {
        let mut out = Outgoing::new(Encoding::Json);
        out.push(&ServerMessage::Pong { nonce: 1 });
        out.push_with(|_| ()); // nothing written: no message
        out.push(&ServerMessage::Pong { nonce: 22 });
        let messages: Vec<&[u8]> = out.messages().collect();
        assert_eq!(
            messages,
            [
                &b"{\"type\":\"pong\",\"nonce\":1}\n"[..],
                &b"{\"type\":\"pong\",\"nonce\":22}\n"[..]
            ]
        );
        assert_eq!(out.bytes(), messages.concat());
        let mut binary = Outgoing::new(Encoding::Binary);
        binary.push(&ServerMessage::Pong { nonce: 1 });
        binary.push(&ServerMessage::Pong { nonce: 300 });
        let frames: Vec<&[u8]> = binary.messages().collect();
        assert_eq!(frames.len(), 2);
        for frame in &frames {
            assert_eq!(
                decode_frame(frame).unwrap().1,
                frame.len(),
                "one whole frame each"
            );
        }
        out.clear();
        assert_eq!(out.messages().count(), 0);
    }

    #[test]
    fn close_codes_follow_the_last_word() {
        let too_large = ServerMessage::error(ErrorCode::TooLarge, "big");
        let drain = ServerMessage::kicked(KickCode::Drain, "deploy");
        let idle = ServerMessage::kicked(KickCode::Idle, "quiet");
        assert_eq!(close_code(None), 1000);
        assert_eq!(close_code(Some(&too_large)), 1009);
        assert_eq!(close_code(Some(&drain)), 1001);
        assert_eq!(close_code(Some(&idle)), 1008);
    }
}
