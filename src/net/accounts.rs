//! Accounts: username -> player id and password hash (argon2 PHC string, never plaintext),
//! and each player's resume tokens (their digests, see [`super::resume`]).
//!
//! Each auth worker owns one [`AccountStore`]; on Redis that is one persistent connection
//! per worker, reopened only after it fails.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_components::PlayerId;
use redis::Script;
use serde::{Deserialize, Serialize};

use super::resume::{TOKENS_PER_PLAYER, TokenHash};
use crate::store::MemoryBackend;
use crate::store::redis::Keys;
use crate::store::redis::scripts::RESUME_LUA;

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
    /// Atomically takes the `presented` resume token of `player_id` (if given) and stores
    /// `fresh` in its place; the player's tokens then live `ttl` from now.
    fn resume(
        &mut self,
        player_id: u64,
        presented: Option<&TokenHash>,
        fresh: &TokenHash,
        ttl: Duration,
    ) -> Result<Resumed, AccountError>;
    /// Makes the tokens of `players` (those online) live `ttl` from now.
    fn extend_resume(&mut self, players: &[u64], ttl: Duration) -> Result<(), AccountError>;
}

/// Makes one account store per auth worker.
pub type AccountStoreFactory = Arc<dyn Fn() -> Box<dyn AccountStore> + Send + Sync>;

/// Accounts in process memory, shared by all workers.
#[derive(Clone, Default)]
pub struct MemoryAccounts {
    accounts: Arc<Mutex<HashMap<String, Account>>>,
    next_id: Arc<AtomicU64>,
    resume: Arc<Mutex<HashMap<u64, PlayerTokens>>>,
    /// The memory store whose leases say who is online, if known.
    leases: Option<Arc<MemoryBackend>>,
}

/// One player's live resume tokens in memory, oldest first.
struct PlayerTokens {
    tokens: VecDeque<TokenHash>,
    expires: Instant,
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
        let player = all.entry(player_id).or_insert_with(|| PlayerTokens {
            tokens: VecDeque::new(),
            expires: now,
        });
        if let Some(presented) = presented {
            let Some(at) = player.tokens.iter().position(|t| t == presented) else {
                return Ok(Resumed::Unknown);
            };
            let online =
                |leases: &Arc<MemoryBackend>| leases.lease_owner(PlayerId(player_id)).is_some();
            if self.leases.as_ref().is_some_and(online) {
                return Ok(Resumed::Online);
            }
            player.tokens.remove(at);
        }
        player.tokens.push_back(fresh.clone());
        while player.tokens.len() > TOKENS_PER_PLAYER {
            player.tokens.pop_front();
        }
        player.expires = now + ttl;
        Ok(Resumed::Stored)
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
}

impl MemoryAccounts {
    /// Accounts that see who is online in the memory store `leases`.
    pub fn on_leases(leases: Arc<MemoryBackend>) -> Self {
        Self {
            leases: Some(leases),
            ..Self::default()
        }
    }
}

/// Accounts in Redis: `<prefix>:account:{<username>}` holds the account JSON,
/// `<prefix>:next_player_id` is the id counter (INCR), `<prefix>:resume:{<id>}` the digests
/// of a player's resume tokens (`resume.lua`).
pub struct RedisAccounts {
    client: redis::Client,
    connection: Option<redis::Connection>,
    prefix: String,
    timeout: Duration,
    resume_script: Script,
}

impl RedisAccounts {
    /// Accounts on the Redis at `url`; the connection opens on first use and persists.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, AccountError> {
        let client =
            redis::Client::open(url).map_err(|e| AccountError::Unavailable(e.to_string()))?;
        Ok(Self {
            client,
            connection: None,
            prefix: prefix.to_string(),
            timeout,
            resume_script: Script::new(RESUME_LUA),
        })
    }

    /// Runs `op` on the worker's connection, opening one if there is none. A connection
    /// that was already open and fails with a connection error (Redis restarted, or closed it
    /// while idle under its `timeout` setting) is replaced and `op` runs once more, so the
    /// first login after that does not fail for it. Every `op` here is safe to repeat: `GET`
    /// reads, `INCR` at worst skips an id, a repeated `SET NX` of our own account is
    /// recognised as ours (see `create`), `PEXPIRE` is idempotent, and `resume.lua` is run
    /// again only when the connection was found broken before its reply (a resume whose
    /// first run took the token then answers "unknown": the client falls back to its
    /// password, nothing else is lost).
    fn with_connection<T>(
        &mut self,
        op: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, AccountError> {
        let mut reused = self.connection.is_some();
        loop {
            if self.connection.is_none() {
                let conn = self
                    .client
                    .get_connection_with_timeout(self.timeout)
                    .map_err(|e| AccountError::Unavailable(e.to_string()))?;
                conn.set_read_timeout(Some(self.timeout)).ok();
                conn.set_write_timeout(Some(self.timeout)).ok();
                self.connection = Some(conn);
            }
            let conn = self.connection.as_mut().expect("connected above");
            match op(conn) {
                Ok(value) => return Ok(value),
                Err(e) => {
                    self.connection = None; // reconnect on next use
                    let broken = e.is_io_error() || e.is_unrecoverable_error();
                    if std::mem::take(&mut reused) && broken {
                        tracing::debug!(error = %e, "account storage connection had closed; retrying on a new one");
                        continue;
                    }
                    return Err(AccountError::Unavailable(e.to_string()));
                }
            }
        }
    }

    fn account_key(&self, username: &str) -> String {
        Keys::new(&self.prefix).account(username)
    }
}

impl AccountStore for RedisAccounts {
    fn create(&mut self, username: &str, password_hash: &str) -> Result<u64, AccountError> {
        let key = self.account_key(username);
        let counter = format!("{}:next_player_id", self.prefix);
        let player_id: u64 = self.with_connection(|c| redis::cmd("INCR").arg(&counter).query(c))?;
        let account = serde_json::to_string(&Account {
            player_id,
            password_hash: password_hash.to_string(),
        })
        .expect("an account always serialises");
        // SET NX, then read back: a SET repeated after a lost reply finds our own account
        // (the fresh player id makes it unique) and is a success, not "taken".
        let stored: Option<String> = self.with_connection(|c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(&account)
                .arg("NX")
                .query::<Option<String>>(c)?;
            redis::cmd("GET").arg(&key).query(c)
        })?;
        if stored.as_deref() == Some(account.as_str()) {
            Ok(player_id)
        } else {
            Err(AccountError::Taken)
        }
    }

    fn find(&mut self, username: &str) -> Result<Option<Account>, AccountError> {
        let key = self.account_key(username);
        let raw: Option<String> = self.with_connection(|c| redis::cmd("GET").arg(&key).query(c))?;
        match raw {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                AccountError::Unavailable(format!("account {username:?} is malformed: {e}"))
            }),
        }
    }

    fn resume(
        &mut self,
        player_id: u64,
        presented: Option<&TokenHash>,
        fresh: &TokenHash,
        ttl: Duration,
    ) -> Result<Resumed, AccountError> {
        let keys = Keys::new(&self.prefix);
        let (set, lease) = (
            keys.resume(PlayerId(player_id)),
            keys.session(PlayerId(player_id)),
        );
        let presented = presented.map_or("", TokenHash::as_str);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let script = self.resume_script.clone();
        let answer: i64 = self.with_connection(|c| {
            script
                .key(&set)
                .key(&lease)
                .arg(presented)
                .arg(fresh.as_str())
                .arg(ttl_ms)
                .arg(TOKENS_PER_PLAYER)
                .invoke(c)
        })?;
        match answer {
            1 => Ok(Resumed::Stored),
            0 => Ok(Resumed::Unknown),
            2 => Ok(Resumed::Online),
            other => Err(AccountError::Unavailable(format!(
                "resume.lua answered {other}"
            ))),
        }
    }

    fn extend_resume(&mut self, players: &[u64], ttl: Duration) -> Result<(), AccountError> {
        let keys = Keys::new(&self.prefix);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        for chunk in players.chunks(1000) {
            let mut pipe = redis::pipe();
            for &id in chunk {
                pipe.cmd("PEXPIRE")
                    .arg(keys.resume(PlayerId(id)))
                    .arg(ttl_ms)
                    .ignore();
            }
            self.with_connection(|c| pipe.query::<()>(c))?;
        }
        Ok(())
    }
}
