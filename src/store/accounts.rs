//! The account port: username -> player id and password hash (argon2 PHC string, never
//! plaintext), and each player's resume tokens (their digests, made by the front door's
//! `net::resume`), with the memory adapter.
//!
//! Each auth worker owns one [`AccountStore`]; on Redis that is `RedisAccounts`
//! (`store/redis/accounts.rs`, beside the player store). `hearth admin` uses the same port.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_components::PlayerId;
use hearth_systems::net::ResumeGiveBack;
use serde::{Deserialize, Serialize};

use super::MemoryBackend;

/// Live tokens kept per player: a token handed to a client whose join was then refused (the
/// player online elsewhere) must not push out the token of the session that is online, so a
/// few are kept; older ones are dropped first.
pub const TOKENS_PER_PLAYER: usize = 4;

/// How long the lease a resume takes with its token lasts until the join that follows claims
/// it for the full `lease_ttl`: long enough for that join behind a busy interactive lane,
/// short enough that a join that never comes (the server stopped) frees the player soon.
pub const RESUME_LEASE: std::time::Duration = std::time::Duration::from_secs(10);

/// The stored form of a resume token: the lowercase hex BLAKE2b-256 digest of its wire form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    /// The stored form of a token whose digest (lowercase hex) is `digest`.
    pub fn from_digest(digest: String) -> Self {
        Self(digest)
    }

    /// The digest as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

/// A stored account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub player_id: u64,
    /// Argon2 PHC string.
    pub password_hash: String,
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccountError {
    #[error("username is taken")]
    Taken,
    #[error("account storage unavailable: {0}")]
    Unavailable(String),
}

/// What became of a resume-token exchange ([`AccountStore::resume`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// The fresh token is stored (and the presented one, if any, deleted: used).
    Stored,
    /// The presented token is not live (never issued, used, expired or revoked); nothing
    /// changed.
    Unknown,
    /// The presented token is live but the player is online (its lease is held); nothing
    /// changed, the token stays usable.
    Online,
}

/// Account storage as an auth worker uses it (blocking calls on the worker's own thread).
pub trait AccountStore: Send {
    /// Creates an account with a fresh player id from the atomic counter.
    fn create(&mut self, username: &str, password_hash: &str) -> Result<u64, AccountError>;
    /// Looks an account up by (normalised) username.
    fn find(&mut self, username: &str) -> Result<Option<Account>, AccountError>;
    /// Atomically takes the `presented` resume token of `player_id` (if given) together with
    /// the player's lease for this server (held [`RESUME_LEASE`], until the join claims it),
    /// and stores `fresh` in its place; the player's tokens then live `ttl` from now. A
    /// player whose lease is held (online here or elsewhere) keeps its token: `Online`.
    fn resume(
        &mut self,
        player_id: u64,
        presented: Option<&TokenHash>,
        fresh: &TokenHash,
        ttl: Duration,
    ) -> Result<Resumed, AccountError>;
    /// What undoes a resume of `player_id` that presented `presented` and stored `fresh`
    /// (answered `Stored`) if its join does not happen: `presented` works again (the set
    /// lives `ttl` from then), `fresh` does not, and the short lease the resume took is let
    /// go. It never blocks: the tick runs it.
    fn give_back(
        &self,
        player_id: u64,
        presented: &TokenHash,
        fresh: &TokenHash,
        ttl: Duration,
    ) -> ResumeGiveBack;
    /// Makes the tokens of `players` (those online) live `ttl` from now.
    fn extend_resume(&mut self, players: &[u64], ttl: Duration) -> Result<(), AccountError>;
    /// Replaces the password hash of the account `username` (normalised); its player id,
    /// or `None` when there is no such account (`hearth admin account reset-password`).
    fn set_password(
        &mut self,
        username: &str,
        password_hash: &str,
    ) -> Result<Option<u64>, AccountError>;
    /// Deletes every resume token of `player_id`; whether it had any.
    fn revoke_resume(&mut self, player_id: u64) -> Result<bool, AccountError>;
    /// Starts one client request (a login, resume or registration): its store calls together,
    /// retries included, are bounded by one store timeout, so a hung store answers the client
    /// in about that long. A store that never waits needs nothing.
    fn begin_request(&mut self) {}
}

/// Makes one account store per auth worker.
pub type AccountStoreFactory = Arc<dyn Fn() -> Box<dyn AccountStore> + Send + Sync>;

/// Accounts in process memory, shared by all workers.
#[derive(Clone, Default)]
pub struct MemoryAccounts {
    accounts: Arc<Mutex<HashMap<String, Account>>>,
    next_id: Arc<AtomicU64>,
    resume: Arc<Mutex<HashMap<u64, PlayerTokens>>>,
    /// The memory store whose leases say who is online, if known, and the lease owner of
    /// the server these accounts serve (a resume takes the lease for it).
    leases: Option<(Arc<MemoryBackend>, String)>,
}

/// One player's live resume tokens in memory, oldest first.
struct PlayerTokens {
    tokens: VecDeque<TokenHash>,
    expires: Instant,
}

impl PlayerTokens {
    /// `player_id`'s tokens in `all`, an empty set if it has none.
    fn of(all: &mut HashMap<u64, PlayerTokens>, player_id: u64, now: Instant) -> &mut Self {
        all.entry(player_id).or_insert_with(|| PlayerTokens {
            tokens: VecDeque::new(),
            expires: now,
        })
    }

    /// Adds `token` (the oldest dropped beyond [`TOKENS_PER_PLAYER`]); the set then lives
    /// `ttl` from `now`.
    fn store(&mut self, token: TokenHash, now: Instant, ttl: Duration) {
        self.tokens.push_back(token);
        while self.tokens.len() > TOKENS_PER_PLAYER {
            self.tokens.pop_front();
        }
        self.expires = now + ttl;
    }
}

impl AccountStore for MemoryAccounts {
    fn create(&mut self, username: &str, password_hash: &str) -> Result<u64, AccountError> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        if accounts.contains_key(username) {
            return Err(AccountError::Taken);
        }
        let player_id = self.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        accounts.insert(
            username.to_string(),
            Account {
                player_id,
                password_hash: password_hash.to_string(),
            },
        );
        Ok(player_id)
    }

    fn find(&mut self, username: &str) -> Result<Option<Account>, AccountError> {
        Ok(self
            .accounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(username)
            .cloned())
    }

    /// Without a view of the leases ([`MemoryAccounts::on_leases`]) a token presented while
    /// its player is online is taken, and the join is then refused.
    fn resume(
        &mut self,
        player_id: u64,
        presented: Option<&TokenHash>,
        fresh: &TokenHash,
        ttl: Duration,
    ) -> Result<Resumed, AccountError> {
        let mut all = self.resume.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        all.retain(|_, player| player.expires > now);
        let player = PlayerTokens::of(&mut all, player_id, now);
        if let Some(presented) = presented {
            let Some(at) = player.tokens.iter().position(|t| t == presented) else {
                return Ok(Resumed::Unknown);
            };
            if let Some((leases, owner)) = &self.leases {
                // The lease goes with the token, in one step under the lock.
                if leases
                    .claim_free(PlayerId(player_id), owner, RESUME_LEASE)
                    .is_err()
                {
                    return Ok(Resumed::Online);
                }
            }
            player.tokens.remove(at);
        }
        player.store(fresh.clone(), now, ttl);
        Ok(Resumed::Stored)
    }

    fn give_back(
        &self,
        player_id: u64,
        presented: &TokenHash,
        fresh: &TokenHash,
        ttl: Duration,
    ) -> ResumeGiveBack {
        let (resume, leases) = (Arc::clone(&self.resume), self.leases.clone());
        let (presented, fresh) = (presented.clone(), fresh.clone());
        ResumeGiveBack::new(move || {
            let mut all = resume.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let player = PlayerTokens::of(&mut all, player_id, now);
            player.tokens.retain(|t| *t != fresh);
            player.store(presented, now, ttl);
            drop(all);
            if let Some((leases, owner)) = leases {
                leases.release_short(PlayerId(player_id), &owner, RESUME_LEASE);
            }
        })
    }

    fn extend_resume(&mut self, players: &[u64], ttl: Duration) -> Result<(), AccountError> {
        let mut all = self.resume.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        for id in players {
            if let Some(player) = all.get_mut(id).filter(|p| p.expires > now) {
                player.expires = now + ttl;
            }
        }
        Ok(())
    }

    fn set_password(
        &mut self,
        username: &str,
        password_hash: &str,
    ) -> Result<Option<u64>, AccountError> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        Ok(accounts.get_mut(username).map(|account| {
            account.password_hash = password_hash.to_string();
            account.player_id
        }))
    }

    fn revoke_resume(&mut self, player_id: u64) -> Result<bool, AccountError> {
        let mut all = self.resume.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        Ok(all.remove(&player_id).is_some_and(|p| p.expires > now))
    }
}

impl MemoryAccounts {
    /// Accounts that see who is online in the memory store `leases`, for the server whose
    /// lease owner is `owner`.
    pub fn on_leases(leases: Arc<MemoryBackend>, owner: &str) -> Self {
        Self {
            leases: Some((leases, owner.to_string())),
            ..Self::default()
        }
    }

    /// The same accounts and tokens as seen by another server sharing the memory store (whose
    /// lease owner is `owner`): several servers in one process, as several share one Redis.
    pub fn for_server(&self, owner: &str) -> Self {
        Self {
            leases: self
                .leases
                .as_ref()
                .map(|(leases, _)| (Arc::clone(leases), owner.to_string())),
            ..self.clone()
        }
    }
}
