//! Auth workers: a small pool of threads off the tick that register accounts and check
//! logins (argon2 is deliberately slow CPU work). Each worker owns its account store (on
//! Redis: its own persistent connection). The queue is bounded and fair between client
//! addresses ([`super::fair_queue`]): when the caller's share or the whole queue is full the
//! client gets `server_busy` at once instead of waiting in an ever-growing line, and a flood
//! from one address never stands between another address and a worker.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use crossbeam_channel::Sender;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hearth_components::PlayerId;
use hearth_components::protocol::{ErrorCode, ServerMessage};
use hearth_systems::net::{ClientOutbox, ConnId, NetEvent};

use super::accounts::{AccountError, AccountStore, AccountStoreFactory};
use super::fair_queue::{FairSender, Full, fair_queue};
use super::stats::NetStats;

/// Failed logins allowed per address per minute before a lockout.
pub const FAILED_LOGINS_PER_MINUTE: u32 = 5;
/// Requests waiting for a worker before new ones are answered `server_busy`.
pub const AUTH_QUEUE: usize = 64;
/// Requests one address may have waiting: enough for a few clients behind one NAT logging
/// in together, small enough that one address cannot fill the queue.
pub const AUTH_QUEUE_PER_ADDRESS: usize = 4;

/// Work for an auth worker.
pub enum AuthRequest {
    Register {
        username: String,
        password: String,
        reply: Arc<dyn ClientOutbox>,
    },
    Login {
        conn: ConnId,
        addr: IpAddr,
        username: String,
        password: String,
        reply: Arc<dyn ClientOutbox>,
    },
}

/// The queue into the auth workers, fair between client addresses.
#[derive(Clone)]
pub struct AuthQueue(FairSender<IpAddr, AuthRequest>, Arc<NetStats>);

impl AuthQueue {
    /// Queues a request from `addr`; the `server_busy` answer when that address already has
    /// its share waiting or the whole queue is full.
    pub fn try_submit(&self, addr: IpAddr, request: AuthRequest) -> Result<(), ServerMessage> {
        // Counted before the push, so a worker taking it at once never sees the depth at 0.
        NetStats::count(&self.1.auth_queued);
        let pushed = self.0.try_push(addr, request);
        if pushed.is_err() {
            self.1.auth_dequeued();
            NetStats::count(&self.1.auth_queue_full);
        }
        pushed.map_err(|full| {
            let message = match full {
                Full::Key => format!(
                    "{AUTH_QUEUE_PER_ADDRESS} requests from your address are already waiting; try again shortly"
                ),
                Full::Total => "the server is busy; try again shortly".to_string(),
            };
            ServerMessage::error(ErrorCode::ServerBusy, message)
        })
    }
}

/// Per-address lockout after too many failed logins.
pub struct LoginThrottle {
    failures: DefaultKeyedRateLimiter<IpAddr>,
    locked: Mutex<HashMap<IpAddr, Instant>>,
    lockout: Duration,
}

impl LoginThrottle {
    /// [`FAILED_LOGINS_PER_MINUTE`] failures per minute, then `lockout`.
    pub fn new(lockout: Duration) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(FAILED_LOGINS_PER_MINUTE).expect("non-zero"));
        Self {
            failures: RateLimiter::keyed(quota),
            locked: Mutex::default(),
            lockout,
        }
    }

    /// Whether the address is locked out now.
    pub fn is_locked(&self, addr: IpAddr) -> bool {
        let mut locked = self.locked.lock().unwrap_or_else(|p| p.into_inner());
        match locked.get(&addr) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                locked.remove(&addr);
                false
            }
            None => false,
        }
    }

    /// Counts a failed login; past the quota the address is locked out.
    pub fn record_failure(&self, addr: IpAddr) {
        if self.failures.check_key(&addr).is_err() {
            tracing::warn!(%addr, lockout = ?self.lockout, "too many failed logins; address locked out");
            self.locked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(addr, Instant::now() + self.lockout);
            self.failures.retain_recent();
        }
    }
}

/// Large allocations come straight from the kernel and go back to it when freed.
///
/// Every password hash allocates argon2's 19 MiB of blocks and frees them. glibc's malloc
/// raises its mmap threshold after the first such free (up to 32 MiB), so the next blocks
/// come from a heap arena instead, where fragmentation kept them: the server's RSS grew by
/// 10-20 MiB per registration or login, without bound (866 MiB after 60 registrations,
/// measured). Setting the threshold explicitly turns the adjustment off; an allocation of a
/// MiB or more then costs an mmap and a munmap, which next to a 17 ms hash is nothing.
fn return_large_allocations_to_the_kernel() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const ONE_MIB: libc::c_int = 1 << 20;
        // SAFETY: mallopt only changes allocator parameters; any value is accepted.
        if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, ONE_MIB) } != 1 {
            tracing::debug!("could not set the allocator's mmap threshold");
        }
    }
}

/// Starts `workers` auth threads. Returns the queue into them; they stop when every queue
/// handle is dropped.
pub fn start_workers(
    workers: usize,
    accounts: AccountStoreFactory,
    events: Sender<NetEvent>,
    throttle: Arc<LoginThrottle>,
    stats: Arc<NetStats>,
) -> AuthQueue {
    return_large_allocations_to_the_kernel();
    let (tx, rx) = fair_queue(AUTH_QUEUE_PER_ADDRESS, AUTH_QUEUE);
    for n in 0..workers {
        let (rx, accounts, events, throttle, stats) = (
            rx.clone(),
            Arc::clone(&accounts),
            events.clone(),
            Arc::clone(&throttle),
            Arc::clone(&stats),
        );
        thread::Builder::new()
            .name(format!("hearth-auth-{n}"))
            .spawn(move || {
                super::priority::lower_this_thread(super::priority::AUTH_NICENESS);
                let mut worker = Worker {
                    accounts: accounts(),
                    events,
                    throttle,
                    argon2: Argon2::default(),
                    stats,
                };
                while let Some(request) = rx.pop() {
                    worker.stats.auth_dequeued();
                    let started = Instant::now();
                    worker.handle(request);
                    worker.stats.auth_done(started.elapsed());
                }
            })
            .expect("spawning an auth worker");
    }
    AuthQueue(tx, stats)
}

struct Worker {
    accounts: Box<dyn AccountStore>,
    events: Sender<NetEvent>,
    throttle: Arc<LoginThrottle>,
    argon2: Argon2<'static>,
    stats: Arc<NetStats>,
}

/// Queues an answer for the client; a client whose queue is full is not reading, and is
/// disconnected rather than left without its answer (as the world does with slow clients).
fn answer_or_close(reply: &dyn ClientOutbox, answer: ServerMessage) {
    if reply.send(answer).is_err() {
        reply.close();
    }
}

/// A hash to verify against when the username does not exist, so both failures take as long.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2tKhHnNiYUGmJcqGu8Y6OOl7mAgpq1z2T6xqMFMu0Cs";

impl Worker {
    fn handle(&mut self, request: AuthRequest) {
        match request {
            AuthRequest::Register {
                username,
                password,
                reply,
            } => {
                let answer = self.register(&username, &password);
                answer_or_close(reply.as_ref(), answer);
            }
            AuthRequest::Login {
                conn,
                addr,
                username,
                password,
                reply,
            } => {
                if let Err(answer) = self.login(conn, addr, &username, &password) {
                    answer_or_close(reply.as_ref(), answer);
                }
            }
        }
    }

    fn register(&mut self, username: &str, password: &str) -> ServerMessage {
        let username = match validate_username(username)
            .and_then(|u| validate_password(password).map(|()| u))
        {
            Ok(u) => u,
            Err(message) => return ServerMessage::error(ErrorCode::BadRequest, message),
        };
        let salt = SaltString::generate(&mut OsRng);
        let hash = match self.argon2.hash_password(password.as_bytes(), &salt) {
            Ok(hash) => hash.to_string(),
            Err(e) => {
                return ServerMessage::error(
                    ErrorCode::BadRequest,
                    format!("password cannot be hashed: {e}"),
                );
            }
        };
        match self.accounts.create(&username, &hash) {
            Ok(player_id) => ServerMessage::Registered { player_id },
            Err(AccountError::Taken) => {
                ServerMessage::error(ErrorCode::UsernameTaken, "that username is taken")
            }
            Err(AccountError::Unavailable(e)) => {
                tracing::warn!(error = %e, "register failed: account storage unavailable");
                ServerMessage::error(
                    ErrorCode::Unavailable,
                    "account storage is unavailable; try again",
                )
            }
        }
    }

    fn login(
        &mut self,
        conn: ConnId,
        addr: IpAddr,
        username: &str,
        password: &str,
    ) -> Result<(), ServerMessage> {
        if self.throttle.is_locked(addr) {
            NetStats::count(&self.stats.rate_limited_logins);
            return Err(ServerMessage::error(
                ErrorCode::RateLimited,
                "too many failed logins; try again later",
            ));
        }
        let username = normalise(username);
        let account = self.accounts.find(&username).map_err(|e| {
            tracing::warn!(error = %e, "login failed: account storage unavailable");
            ServerMessage::error(
                ErrorCode::Unavailable,
                "account storage is unavailable; try again",
            )
        })?;
        let hash = account
            .as_ref()
            .map_or(DUMMY_HASH, |a| a.password_hash.as_str());
        let verified = PasswordHash::new(hash)
            .is_ok_and(|h| self.argon2.verify_password(password.as_bytes(), &h).is_ok());
        match account {
            Some(account) if verified => {
                self.events
                    .send(NetEvent::Authenticated {
                        conn,
                        player: PlayerId(account.player_id),
                    })
                    .ok();
                Ok(())
            }
            _ => {
                self.throttle.record_failure(addr);
                Err(ServerMessage::error(
                    ErrorCode::InvalidCredentials,
                    "unknown username or wrong password",
                ))
            }
        }
    }
}

/// A username as stored: trimmed, lower case.
pub(crate) fn normalise(username: &str) -> String {
    username.trim().to_ascii_lowercase()
}

/// 3-32 characters of `[A-Za-z0-9_-]`, compared case-insensitively.
fn validate_username(username: &str) -> Result<String, String> {
    let u = normalise(username);
    let ok = (3..=32).contains(&u.len())
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(u)
    } else {
        Err("username must be 3-32 characters of letters, digits, '_' or '-'".into())
    }
}

/// 8-128 characters.
pub(crate) fn validate_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if (8..=128).contains(&n) {
        Ok(())
    } else {
        Err("password must be 8-128 characters".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_systems::net::OutboxClosed;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// An outbox that is full (or open and accepting), recording whether it was closed.
    struct TestOutbox {
        full: bool,
        closed: AtomicBool,
    }

    impl ClientOutbox for TestOutbox {
        fn send(&self, _: ServerMessage) -> Result<(), OutboxClosed> {
            if self.full { Err(OutboxClosed) } else { Ok(()) }
        }

        fn close(&self) {
            self.closed.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_client_whose_queue_is_full_is_disconnected_not_left_without_its_answer() {
        for full in [false, true] {
            let outbox = TestOutbox {
                full,
                closed: AtomicBool::new(false),
            };
            answer_or_close(&outbox, ServerMessage::Pong { nonce: 1 });
            assert_eq!(outbox.closed.load(Ordering::SeqCst), full);
        }
    }

    #[test]
    fn dummy_hash_is_a_valid_phc_string() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn lockout_after_the_quota_of_failures() {
        let throttle = LoginThrottle::new(Duration::from_secs(300));
        let addr: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..FAILED_LOGINS_PER_MINUTE {
            throttle.record_failure(addr);
            assert!(!throttle.is_locked(addr));
        }
        throttle.record_failure(addr);
        assert!(throttle.is_locked(addr));
        assert!(
            !throttle.is_locked("10.0.0.2".parse().unwrap()),
            "other addresses are unaffected"
        );
    }

    #[test]
    fn usernames_and_passwords_are_validated() {
        assert_eq!(validate_username(" Alice ").unwrap(), "alice");
        assert!(validate_username("a").is_err());
        assert!(validate_username("no spaces").is_err());
        assert!(validate_password("short").is_err());
        assert!(validate_password("long enough").is_ok());
    }
}
