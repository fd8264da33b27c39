//! Opening a connection to a server: TCP, then the binary preamble exchange when the binary
//! encoding is chosen. A connection is a stream of [`Inbound`] and a sink of [`Outgoing`],
//! whatever carries them.

use std::pin::Pin;

use futures_util::{Sink, Stream};
use hearth_components::wire::{self, PREAMBLE};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::codec::{Codec, CodecError, Encoding, Inbound, Outgoing, decode_json};
use crate::error::ClientError;
use crate::event::Refusal;

/// Where a client connects, kept to reconnect to the same place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A TCP address (`host:port`), resolved at each connect.
    Tcp(String),
}

/// What the server sends.
pub(crate) type Incoming = Pin<Box<dyn Stream<Item = Result<Inbound, CodecError>> + Send>>;
/// Where messages to the server go.
pub(crate) type Outbound = Pin<Box<dyn Sink<Outgoing, Error = CodecError> + Send>>;

/// An open connection.
pub(crate) struct Conn {
    pub(crate) incoming: Incoming,
    pub(crate) outbound: Outbound,
}

/// Opens a connection to `target` speaking `encoding`.
pub(crate) async fn connect(target: &Target, encoding: Encoding) -> Result<Conn, ClientError> {
    match target {
        Target::Tcp(addr) => {
            let stream = TcpStream::connect(addr.as_str())
                .await
                .map_err(ClientError::Connect)?;
            stream.set_nodelay(true).map_err(ClientError::Connect)?;
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            if encoding == Encoding::Binary {
                open_binary(&mut read, &mut write).await?;
            }
            Ok(Conn {
                incoming: Box::pin(FramedRead::new(read, Codec::new(encoding))),
                outbound: Box::pin(FramedWrite::new(write, Codec::new(encoding))),
            })
        }
    }
}

/// Sends the binary preamble and reads the server's. A server that refuses (`server_busy`,
/// or another version) answers with one JSON error line instead: that is the error.
async fn open_binary(
    read: &mut (impl AsyncBufReadExt + Unpin),
    write: &mut (impl AsyncWriteExt + Unpin),
) -> Result<(), ClientError> {
    write
        .write_all(&PREAMBLE)
        .await
        .map_err(ClientError::Connect)?;
    let mut answer = [0u8; PREAMBLE.len()];
    read.read_exact(&mut answer)
        .await
        .map_err(ClientError::Connect)?;
    if wire::read_preamble(&answer).is_ok() {
        return Ok(());
    }
    let mut line = answer.to_vec();
    let mut rest = read.take(hearth_components::protocol::MAX_ERROR_LINE_BYTES as u64);
    rest.read_until(b'\n', &mut line)
        .await
        .map_err(ClientError::Connect)?;
    Err(match decode_json(line.trim_ascii()) {
        Inbound::Message(object)
            if object.get("type").and_then(|t| t.as_str()) == Some("error") =>
        {
            ClientError::Refused(Refusal::from_object(&object))
        }
        _ => ClientError::Protocol("the server did not answer the binary preamble".into()),
    })
}
