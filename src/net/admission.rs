//! Who may use the front door, per client address: how many connections it holds and how
//! many accounts it registers. Both limits exist so one address (a script, a botnet node)
//! cannot take what every other client needs: file descriptors, connection slots, auth work.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hearth_components::protocol::{ErrorCode, ServerMessage};

/// Addresses remembered by the registration limiter before idle ones are forgotten.
const REMEMBERED_ADDRESSES: usize = 10_000;

/// Registrations per address per minute (a keyed token bucket: bursts up to the quota).
pub struct RegistrationLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    per_minute: u32,
}

impl RegistrationLimit {
    /// `per_minute` registrations per address per minute (at least 1).
    pub fn new(per_minute: u32) -> Self {
        let per_minute = per_minute.max(1);
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self {
            limiter: RateLimiter::keyed(quota),
            per_minute,
        }
    }

    /// Counts one registration from `addr`; the `rate_limited` answer when it is over.
    pub fn check(&self, addr: IpAddr) -> Result<(), ServerMessage> {
        if self.limiter.len() > REMEMBERED_ADDRESSES {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&addr).map_err(|_| {
            ServerMessage::error(
                ErrorCode::RateLimited,
                format!(
                    "more than {} registrations per minute from your address; try again later",
                    self.per_minute
                ),
            )
        })
    }
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The server holds `max_connections` already.
    ServerFull(usize),
    /// This address holds `max_connections_per_address` already.
    AddressFull(usize),
}

impl Refused {
    /// The `server_busy` error the refused client gets before the close.
    pub fn message(self) -> ServerMessage {
        let message = match self {
            Self::ServerFull(max) => {
                format!("the server is full ({max} connections); try again later")
            }
            Self::AddressFull(max) => format!(
                "too many connections from your address (at most {max}); close one and retry"
            ),
        };
        ServerMessage::error(ErrorCode::ServerBusy, message)
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Connections held, in all and per address, against their limits.
pub struct ConnectionLimits {
    max: usize,
    per_address: usize,
    counts: Mutex<Counts>,
}

/// One admitted connection; dropping it frees its slot.
pub struct ConnectionPermit {
    limits: Arc<ConnectionLimits>,
    addr: IpAddr,
}

impl ConnectionLimits {
    /// At most `max` connections, `per_address` of them from one address.
    pub fn new(max: usize, per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            per_address,
            counts: Mutex::default(),
        })
    }

    /// Takes a slot for a connection from `addr`, or says why there is none.
    pub fn admit(self: &Arc<Self>, addr: IpAddr) -> Result<ConnectionPermit, Refused> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.total >= self.max {
            return Err(Refused::ServerFull(self.max));
        }
        let held = counts.by_address.entry(addr).or_default();
        if *held >= self.per_address {
            return Err(Refused::AddressFull(self.per_address));
        }
        *held += 1;
        counts.total += 1;
        Ok(ConnectionPermit {
            limits: Arc::clone(self),
            addr,
        })
    }

    /// Connections held now.
    pub fn held(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self.limits.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total -= 1;
        if let Some(held) = counts.by_address.get_mut(&self.addr) {
            *held -= 1;
            if *held == 0 {
                counts.by_address.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn each_address_gets_its_share_and_the_total_stays_bounded() {
        let limits = ConnectionLimits::new(3, 2);
        let a1 = limits.admit(ip(1)).unwrap();
        let _a2 = limits.admit(ip(1)).unwrap();
        assert_eq!(limits.admit(ip(1)).err(), Some(Refused::AddressFull(2)));
        let _b1 = limits.admit(ip(2)).unwrap();
        assert_eq!(limits.admit(ip(3)).err(), Some(Refused::ServerFull(3)));
        drop(a1);
        assert_eq!(limits.held(), 2);
        limits
            .admit(ip(1))
            .expect("a closed connection frees its slot");
    }

    #[test]
    fn registrations_are_limited_per_address() {
        let limit = RegistrationLimit::new(3);
        for _ in 0..3 {
            limit.check(ip(1)).unwrap();
        }
        let refused = limit.check(ip(1)).unwrap_err();
        assert!(
            matches!(&refused, ServerMessage::Error { code: ErrorCode::RateLimited, message } if message.contains("registrations")),
            "{refused:?}"
        );
        limit.check(ip(2)).expect("other addresses are unaffected");
    }
}
