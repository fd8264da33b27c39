//! Auth workers: small pools of threads off the tick that register accounts and check
//! logins and resumes. Each worker owns its account store (on Redis: its own persistent
//! connection). Passwords (argon2: deliberately slow CPU work) and resume tokens (one store
//! round trip) have separate queues and workers, so a reconnect wave of thousands of resumes
//! is never refused for want of room behind argon2, and never slows password logins down.
//! Both queues are bounded and fair between client addresses ([`super::fair_queue`]): a flood
//! from one address never stands between another address and a worker. The password line is
//! deep enough for a crowd logging in at once; a request waiting in it is told its place
//! ([`super::waiting_room`]). Only when the caller's share or the whole line is full does the
//! client get `server_busy` at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hearth_components::PlayerId;
use hearth_components::protocol::{ErrorCode, ResumeToken, ServerMessage};
use hearth_systems::net::{ClientOutbox, ConnId, NetEvent, ResumeGiveBack};

use super::fair_queue::{FairReceiver, FairSender, Full, fair_queue};
use super::password::Passwords;
use super::resume;
use super::stats::NetStats;
use super::waiting_room::{self, WaitEstimate};
use crate::store::accounts::{AccountError, AccountStore, AccountStoreFactory, Resumed};

/// Failed logins allowed per address per minute before a lockout.
pub const FAILED_LOGINS_PER_MINUTE: u32 = 5;
/// Registrations and logins waiting for a password worker before new ones are answered
/// `server_busy`: a whole server's crowd logging in at once waits (told its place) instead of
/// retrying. Each holds a connection, so `max_connections` bounds it too.
pub const AUTH_QUEUE: usize = 8_192;
/// Requests one address may have waiting: as many as the connections it may hold
/// (`max_connections_per_address`' default), so players behind one NAT wait like anyone
/// else, while addresses take turns.
pub const AUTH_QUEUE_PER_ADDRESS: usize = 64;
/// Resumes waiting for a resume worker before new ones are answered `server_busy`. A resume
/// costs one store round trip (~0.1 ms), so this is a few tens of milliseconds of work: deep
/// enough that a whole server's players reconnecting at once mostly wait instead of retrying.
pub const RESUME_QUEUE: usize = 1024;
/// Resumes one address may have waiting (players behind one NAT reconnect together).
pub const RESUME_QUEUE_PER_ADDRESS: usize = 16;
/// Resume worker threads: each spends its time waiting for its store round trip, not on CPU.
pub const RESUME_WORKERS: usize = 2;

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
    Resume {
        conn: ConnId,
        addr: IpAddr,
        token: ResumeToken,
        reply: Arc<dyn ClientOutbox>,
    },
}

impl AuthRequest {
    /// Where the request's answers (and `queued` notices) go.
    pub fn reply(&self) -> &Arc<dyn ClientOutbox> {
        match self {
            Self::Register { reply, .. }
            | Self::Login { reply, .. }
            | Self::Resume { reply, .. } => reply,
        }
    }
}

impl waiting_room::Waiting for AuthRequest {
    fn outbox(&self) -> &dyn ClientOutbox {
        self.reply().as_ref()
    }
}

/// The queues into the auth workers (passwords, resumes), fair between client addresses.
#[derive(Clone)]
pub struct AuthQueue {
    passwords: FairSender<IpAddr, AuthRequest>,
    resumes: FairSender<IpAddr, AuthRequest>,
    wait: Arc<WaitEstimate>,
    stats: Arc<NetStats>,
}

impl AuthQueue {
    /// Queues a request from `addr` (a resume on the resume queue, the rest on the password
    /// queue, where a request that waits behind others is told its place at once); the
    /// `server_busy` answer when that address already has its share waiting or the whole
    /// queue is full.
    pub fn try_submit(&self, addr: IpAddr, request: AuthRequest) -> Result<(), ServerMessage> {
        let (queue, per_address, told) = match request {
            AuthRequest::Resume { .. } => (&self.resumes, RESUME_QUEUE_PER_ADDRESS, None),
            _ => (
                &self.passwords,
                AUTH_QUEUE_PER_ADDRESS,
                Some(Arc::clone(request.reply())),
            ),
        };
        // Counted before the push, so a worker taking it at once never sees the depth at 0.
        NetStats::count(&self.stats.auth_queued);
        let pushed = queue.try_push(addr, request);
        match (&pushed, told) {
            (Err(_), _) => {
                self.stats.auth_dequeued();
                NetStats::count(&self.stats.auth_queue_full);
            }
            (Ok(ahead), Some(reply)) if self.wait.waits(*ahead) => {
                // A notice, not an answer: a client too slow to take it misses only this.
                reply.send(self.wait.notice(*ahead)).ok();
            }
            (Ok(_), _) => {}
        }
        pushed.map(|_| ()).map_err(|full| {
            let message = match full {
                Full::Key => format!(
                    "{per_address} requests from your address are already waiting; try again shortly"
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

/// Starts `workers` password workers and [`RESUME_WORKERS`] resume workers. Returns the
/// queue into them; they stop when every queue handle is dropped. Resume tokens live
/// `resume_ttl`.
pub fn start_workers(
    workers: usize,
    accounts: AccountStoreFactory,
    events: Sender<NetEvent>,
    throttle: Arc<LoginThrottle>,
    stats: Arc<NetStats>,
    resume_ttl: Duration,
) -> AuthQueue {
    let (passwords, password_rx) = fair_queue(AUTH_QUEUE_PER_ADDRESS, AUTH_QUEUE);
    let (resumes, resume_rx) = fair_queue(RESUME_QUEUE_PER_ADDRESS, RESUME_QUEUE);
    let wait = Arc::new(WaitEstimate::new(workers));
    waiting_room::start(passwords.watcher(), Arc::clone(&wait)).expect("spawning the waiting room");
    let pools = [
        ("auth", workers, password_rx),
        ("resume", RESUME_WORKERS, resume_rx),
    ];
    for (kind, count, rx) in pools {
        for n in 0..count {
            let worker = Worker {
                accounts: Arc::clone(&accounts),
                events: events.clone(),
                throttle: Arc::clone(&throttle),
                stats: Arc::clone(&stats),
                wait: (kind == "auth").then(|| Arc::clone(&wait)),
                resume_ttl,
            };
            let rx = rx.clone();
            thread::Builder::new()
                .name(format!("hearth-{kind}-{n}"))
                .spawn(move || {
                    // Password hashing is batch work; a resume is a round trip a player
                    // waits on, ranked with the network.
                    crate::priority::lower_this_thread(if kind == "auth" {
                        crate::priority::AUTH_NICENESS
                    } else {
                        crate::priority::NETWORK_NICENESS
                    });
                    worker.run(&rx, kind == "auth")
                })
                .expect("spawning an auth worker");
        }
    }
    AuthQueue {
        passwords,
        resumes,
        wait,
        stats,
    }
}

/// What a worker thread starts from; it opens its store connection (and, for passwords,
/// its argon2 memory) on its own thread.
struct Worker {
    accounts: AccountStoreFactory,
    events: Sender<NetEvent>,
    throttle: Arc<LoginThrottle>,
    stats: Arc<NetStats>,
    /// Password workers time their requests for the waiting room's estimates.
    wait: Option<Arc<WaitEstimate>>,
    resume_ttl: Duration,
}

impl Worker {
    fn run(self, rx: &FairReceiver<IpAddr, AuthRequest>, hashes_passwords: bool) {
        let mut worker = Working {
            accounts: (self.accounts)(),
            passwords: hashes_passwords.then(Passwords::default),
            setup: self,
        };
        while let Some(request) = rx.pop() {
            worker.setup.stats.auth_dequeued();
            if request.reply().is_gone() {
                // Its connection ended while it waited (a client that gave up): nobody to
                // answer, so nothing is hashed, checked or spent for it.
                continue;
            }
            let started = Instant::now();
            worker.handle(request);
            let took = started.elapsed();
            worker.setup.stats.auth_done(took);
            if let Some(wait) = &worker.setup.wait {
                wait.record(took);
            }
        }
    }
}

/// A worker at work: its store and (password workers only) its argon2 memory.
struct Working {
    accounts: Box<dyn AccountStore>,
    passwords: Option<Passwords>,
    setup: Worker,
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

impl Working {
    fn handle(&mut self, request: AuthRequest) {
        self.accounts.begin_request();
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
            AuthRequest::Resume {
                conn,
                addr,
                token,
                reply,
            } => {
                if let Err(answer) = self.resume(conn, addr, &token) {
                    answer_or_close(reply.as_ref(), answer);
                }
            }
        }
    }

    fn passwords(&mut self) -> &mut Passwords {
        // Only password workers get password requests (AuthQueue routes them).
        self.passwords.get_or_insert_with(Passwords::default)
    }

    fn register(&mut self, username: &str, password: &str) -> ServerMessage {
        let username = match validate_username(username)
            .and_then(|u| validate_password(password).map(|()| u))
        {
            Ok(u) => u,
            Err(refused) => {
                return ServerMessage::error(ErrorCode::BadRequest, refused.to_string());
            }
        };
        let hash = match self.passwords().hash(password) {
            Ok(hash) => hash,
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
                unavailable()
            }
        }
    }

    /// The `rate_limited` answer when `addr` is locked out after too many failures.
    fn check_lockout(&self, addr: IpAddr) -> Result<(), ServerMessage> {
        if self.setup.throttle.is_locked(addr) {
            NetStats::count(&self.setup.stats.rate_limited_logins);
            return Err(ServerMessage::error(
                ErrorCode::RateLimited,
                "too many failed logins; try again later",
            ));
        }
        Ok(())
    }

    /// Whether the password a login verified is still the account's, read again after its
    /// token was stored: a reset (`hearth admin account reset-password`) writes the new hash
    /// and then deletes the tokens, so a token stored after that delete is caught here (the
    /// hash changed: the login is refused and its token, never sent, is worth nothing), and
    /// one stored before it was deleted by it. `Ok(false)` when the store cannot say: the
    /// login goes on without a token.
    fn still_current(&mut self, username: &str, verified: &str) -> Result<bool, ServerMessage> {
        match self.accounts.find(username) {
            Ok(Some(now)) if now.password_hash == verified => Ok(true),
            Ok(_) => Err(ServerMessage::error(
                ErrorCode::InvalidCredentials,
                "the password was changed while logging in; log in with the new one",
            )),
            Err(e) => {
                tracing::warn!(error = %e, "login without a resume token: account storage unavailable");
                Ok(false)
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
        self.check_lockout(addr)?;
        let username = normalise(username);
        let account = self.accounts.find(&username).map_err(|e| {
            tracing::warn!(error = %e, "login failed: account storage unavailable");
            unavailable()
        })?;
        let hash = account
            .as_ref()
            .map_or(DUMMY_HASH, |a| a.password_hash.as_str());
        let verified = self.passwords().verify(password, hash);
        match account {
            Some(account) if verified => {
                let issued = resume::issue(account.player_id);
                let stored = self.accounts.resume(
                    account.player_id,
                    None,
                    &issued.hash,
                    self.setup.resume_ttl,
                );
                let resume_token = match stored {
                    Ok(_) => self
                        .still_current(&username, &account.password_hash)?
                        .then_some(issued.token),
                    Err(e) => {
                        // The password was right: log in, only without a way to resume.
                        tracing::warn!(error = %e, "login without a resume token: account storage unavailable");
                        None
                    }
                };
                self.authenticated(conn, account.player_id, resume_token);
                Ok(())
            }
            _ => {
                self.setup.throttle.record_failure(addr);
                Err(ServerMessage::error(
                    ErrorCode::InvalidCredentials,
                    "unknown username or wrong password",
                ))
            }
        }
    }

    /// Exchanges a resume token for a login and a fresh token: no argon2, one store round
    /// trip. A token that is not live counts as a failed login.
    fn resume(
        &mut self,
        conn: ConnId,
        addr: IpAddr,
        token: &ResumeToken,
    ) -> Result<(), ServerMessage> {
        self.check_lockout(addr)?;
        let refused = || {
            ServerMessage::error(
                ErrorCode::InvalidCredentials,
                "unknown, expired, used or revoked resume token; log in with your password",
            )
        };
        let Some((player_id, presented)) = resume::presented(token) else {
            self.setup.throttle.record_failure(addr);
            return Err(refused());
        };
        let fresh = resume::issue(player_id);
        let outcome = self
            .accounts
            .resume(
                player_id,
                Some(&presented),
                &fresh.hash,
                self.setup.resume_ttl,
            )
            .map_err(|e| {
                tracing::warn!(error = %e, "resume failed: account storage unavailable");
                unavailable()
            })?;
        match outcome {
            Resumed::Stored => {
                let give_back = self.accounts.give_back(
                    player_id,
                    &presented,
                    &fresh.hash,
                    self.setup.resume_ttl,
                );
                self.authenticated_by_resume(conn, player_id, fresh.token, give_back);
                Ok(())
            }
            Resumed::Online => Err(ServerMessage::error(
                ErrorCode::AlreadyOnline,
                "this player is online (on this or another server); your resume token stays valid, retry once that session has ended",
            )),
            Resumed::Unknown => {
                self.setup.throttle.record_failure(addr);
                Err(refused())
            }
        }
    }

    fn authenticated(&self, conn: ConnId, player_id: u64, resume_token: Option<ResumeToken>) {
        self.setup
            .events
            .send(NetEvent::Authenticated {
                conn,
                player: PlayerId(player_id),
                resume_token,
                give_back: None,
            })
            .ok();
    }

    /// A granted resume: its token was exchanged for `fresh`, undone by `give_back` if the
    /// join does not happen.
    fn authenticated_by_resume(
        &self,
        conn: ConnId,
        player_id: u64,
        fresh: ResumeToken,
        give_back: ResumeGiveBack,
    ) {
        let event = NetEvent::Authenticated {
            conn,
            player: PlayerId(player_id),
            resume_token: Some(fresh),
            give_back: Some(give_back),
        };
        if let Err(unsent) = self.setup.events.send(event) {
            // The world is gone (shutting down): no join will come.
            if let NetEvent::Authenticated {
                give_back: Some(give_back),
                ..
            } = unsent.into_inner()
            {
                give_back.run();
            }
        }
    }
}

/// The answer when the account store cannot be reached.
fn unavailable() -> ServerMessage {
    ServerMessage::error(
        ErrorCode::Unavailable,
        "account storage is unavailable; try again",
    )
}

/// A username as stored: trimmed, lower case.
pub(crate) fn normalise(username: &str) -> String {
    username.trim().to_ascii_lowercase()
}

/// Why a username or password is refused (the text is what the client is told).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CredentialError {
    /// Not 3-32 characters of `[A-Za-z0-9_-]`.
    #[error("username must be 3-32 characters of letters, digits, '_' or '-'")]
    Username,
    /// Not 8-128 characters.
    #[error("password must be 8-128 characters")]
    Password,
}

/// 3-32 characters of `[A-Za-z0-9_-]`, compared case-insensitively.
fn validate_username(username: &str) -> Result<String, CredentialError> {
    let u = normalise(username);
    let ok = (3..=32).contains(&u.len())
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(u)
    } else {
        Err(CredentialError::Username)
    }
}

/// 8-128 characters.
pub(crate) fn validate_password(password: &str) -> Result<(), CredentialError> {
    let n = password.chars().count();
    if (8..=128).contains(&n) {
        Ok(())
    } else {
        Err(CredentialError::Password)
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
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
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
