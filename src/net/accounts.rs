//! Accounts: username -> player id and password hash (argon2 PHC string, never plaintext).
//!
//! Each auth worker owns one [`AccountStore`]; on Redis that is one persistent connection
//! per worker, reopened only after it fails.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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

/// Account storage as an auth worker uses it (blocking calls on the worker's own thread).
pub trait AccountStore: Send {
    /// Creates an account with a fresh player id from the atomic counter.
    fn create(&mut self, username: &str, password_hash: &str) -> Result<u64, AccountError>;
    /// Looks an account up by (normalised) username.
    fn find(&mut self, username: &str) -> Result<Option<Account>, AccountError>;
}

/// Makes one account store per auth worker.
pub type AccountStoreFactory = Arc<dyn Fn() -> Box<dyn AccountStore> + Send + Sync>;

/// Accounts in process memory, shared by all workers.
#[derive(Clone, Default)]
pub struct MemoryAccounts {
    accounts: Arc<Mutex<HashMap<String, Account>>>,
    next_id: Arc<AtomicU64>,
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
}

/// Accounts in Redis: `<prefix>:account:{<username>}` holds the account JSON,
/// `<prefix>:next_player_id` is the id counter (INCR).
pub struct RedisAccounts {
    client: redis::Client,
    connection: Option<redis::Connection>,
    prefix: String,
    timeout: Duration,
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
        })
    }

    /// Runs `op` on the worker's connection, opening one if there is none. A connection
    /// that was already open and fails with a connection error (Redis restarted, or closed it
    /// while idle under its `timeout` setting) is replaced and `op` runs once more, so the
    /// first login after that does not fail for it. Every `op` here is safe to repeat: `GET`
    /// reads, `INCR` at worst skips an id, and a repeated `SET NX` of our own account is
    /// recognised as ours (see `create`).
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
        crate::store::redis::Keys::new(&self.prefix).account(username)
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
}
