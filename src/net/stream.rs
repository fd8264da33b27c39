//! The byte-stream transport: plain TCP or TLS over TCP. The client's first bytes choose the
//! encoding (docs/protocol.md: JSON lines, or the binary preamble then frames); messages are
//! split out of the stream by [`WireCodec`], and a batch of replies is one write.

use std::io;
use std::net::SocketAddr;

use futures_util::StreamExt;
use hearth_components::protocol::{ErrorCode, ServerMessage};
use hearth_components::wire::PREAMBLE;
use hearth_systems::net::ConnId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;

use super::connection::{
    self, CLIENT_MESSAGES_PER_SECOND, ConnectionContext, LINGER, OpenConnection, WRITE_TIMEOUT,
};
use super::encoding::{self, DetectError, Encoding, IncomingError, WireCodec};
use super::sent_rate::{SentRate, SentRateReader};
use super::transport::{Outgoing, Received, Transport, TransportKind};

/// A connection over a byte stream, its read and write halves apart (so a write never waits
/// for a read, and plain TCP's halves need no lock).
pub struct StreamTransport<R, W> {
    lines: FramedRead<SentRateReader<R>, WireCodec>,
    writer: W,
    encoding: Encoding,
}

impl<R: AsyncRead + Unpin + Send, W: AsyncWrite + Unpin + Send> StreamTransport<R, W> {
    /// A transport in `encoding` whose decoder starts with `read` (bytes the encoding was
    /// detected from that belong to the first message).
    fn new(reader: R, writer: W, encoding: Encoding, read: Option<u8>) -> Self {
        let limit = SentRate::new(CLIENT_MESSAGES_PER_SECOND, CLIENT_MESSAGES_PER_SECOND);
        let mut lines =
            FramedRead::new(SentRateReader::new(reader, limit), WireCodec::new(encoding));
        lines.read_buffer_mut().extend(read);
        Self {
            lines,
            writer,
            encoding,
        }
    }
}

impl<R: AsyncRead + Unpin + Send, W: AsyncWrite + Unpin + Send> Transport
    for StreamTransport<R, W>
{
    fn encoding(&self) -> Encoding {
        self.encoding
    }

    async fn receive(&mut self) -> Option<Result<Received, IncomingError>> {
        // FramedRead keeps what it read between polls: cancel-safe.
        self.lines
            .next()
            .await
            .map(|read| read.map(Received::Message))
    }

    fn rate(&mut self) -> &mut SentRate {
        self.lines.get_mut().rate()
    }

    async fn send(&mut self, out: &Outgoing) -> io::Result<()> {
        write_bytes(&mut self.writer, out.bytes()).await
    }

    async fn close(self, last: Option<ServerMessage>) {
        let Self {
            lines,
            mut writer,
            encoding,
        } = self;
        if let Some(message) = last {
            let out = Outgoing::one(encoding, &message);
            write_bytes(&mut writer, out.bytes()).await.ok();
        }
        writer.shutdown().await.ok();
        linger(lines.into_inner().into_inner()).await;
    }
}

/// Closing with input unread (a flood, the rest of an oversized line, a request sent right
/// after connecting) would reset the connection and could destroy the last message before
/// the client reads it, so what still arrives is discarded for a moment (until the client
/// closes, at most [`LINGER`]).
pub(super) async fn linger<R: AsyncRead + Unpin>(mut reader: R) {
    let mut sink = [0u8; 4096];
    let discard = async { while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {} };
    tokio::time::timeout(LINGER, discard).await.ok();
}

/// Writes all of `bytes`, or fails if the client does not take them within [`WRITE_TIMEOUT`].
async fn write_bytes<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> io::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, async {
        writer.write_all(bytes).await?;
        writer.flush().await
    })
    .await
    .map_err(|_| io::ErrorKind::TimedOut)?
}

/// Serves one client over a byte stream (`kind`: tcp or tls) until it leaves, misbehaves,
/// idles out or is closed by the server. The client's first bytes choose the encoding;
/// silence before them counts against the idle timeout.
pub async fn serve<R, W>(
    conn: ConnId,
    mut reader: R,
    writer: W,
    kind: TransportKind,
    peer: SocketAddr,
    ctx: ConnectionContext,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let _open = OpenConnection::new(&ctx, kind);
    let detected = tokio::select! {
        () = ctx.closing.cancelled() => Err(Some(connection::farewell(&ctx))),
        () = tokio::time::sleep(ctx.idle_timeout) => {
            Err(Some(connection::idle_kick(ctx.idle_timeout)))
        }
        detected = encoding::detect(&mut reader) => match detected {
            Ok(detected) => Ok(detected),
            Err(DetectError::Io(_)) => Err(None),
            // Not a preamble this server speaks: the answer is a JSON line any client reads.
            Err(DetectError::Wire(e)) => Err(Some(ServerMessage::error(
                ErrorCode::BadRequest,
                format!("{e}; closing"),
            ))),
        },
    };
    let (encoding, read) = match detected {
        Ok(detected) => detected,
        Err(last) => {
            let transport = StreamTransport::new(reader, writer, Encoding::Json, None);
            return transport.close(last).await;
        }
    };
    let mut transport = StreamTransport::new(reader, writer, encoding, read);
    if encoding == Encoding::Binary && write_bytes(&mut transport.writer, &PREAMBLE).await.is_err()
    {
        return;
    }
    connection::serve(conn, transport, kind, peer, ctx).await;
}

/// Tells a connection refused at the door why (`server_busy`, a JSON line), then closes it.
pub async fn refuse<R, W>(reader: R, writer: W, message: ServerMessage)
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    StreamTransport::new(reader, writer, Encoding::Json, None)
        .close(Some(message))
        .await;
}
