//! How a client connects and comes back.

use std::net::IpAddr;
use std::time::Duration;

use crate::codec::Encoding;
use crate::tls::TlsConfig;

/// How long a keep-alive waits by default: a third of the server's default idle timeout.
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(10);

/// A client's settings; `ClientConfig::default()` is JSON, automatic resume on, a ping after
/// 10 s of silence.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The encoding spoken (JSON lines by default).
    pub encoding: Encoding,
    /// Automatic resume after a dropped connection.
    pub reconnect: Reconnect,
    /// After this long without sending anything the client sends a `ping`, so the server's
    /// idle timeout (30 s by default) never kicks a quiet player.
    pub keepalive: Duration,
    /// The certificates trusted for [`crate::Target::Tls`] and `wss://` (a server's own
    /// certificate, or its CA).
    pub tls: Option<TlsConfig>,
    /// The local address to connect from (default: the system's choice).
    pub bind_ip: Option<IpAddr>,
    /// Events held for the application before the client stops reading the server (see
    /// [`crate::Client::next_event`]).
    pub event_capacity: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            encoding: Encoding::Json,
            reconnect: Reconnect::default(),
            keepalive: DEFAULT_KEEPALIVE,
            tls: None,
            bind_ip: None,
            event_capacity: 4096,
        }
    }
}

/// When and how a dropped connection is resumed: after a drop (or a `kicked` that says come
/// back: `idle`, `shutdown`, `drain`) while logged in with a resume token, the client
/// reconnects to the same address after `first_delay`, doubling up to `max_delay`, until
/// `give_up_after`.
#[derive(Clone, Debug)]
pub struct Reconnect {
    pub enabled: bool,
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub give_up_after: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            enabled: true,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            give_up_after: Duration::from_secs(120),
        }
    }
}
