//! Accounts in Redis, beside the player store: the same key layout ([`Keys`]) and the same
//! connection settings (`TCP_NODELAY`, keepalive) as the store's lanes. Each auth worker
//! owns one [`RedisAccounts`]: one persistent connection, reopened only after it fails.

use std::time::Duration;

use hearth_components::PlayerId;
use redis::Script;

use super::Keys;
use super::scripts::RESUME_LUA;
use super::startup::client_for;
use crate::net::accounts::{Account, AccountError, AccountStore, Resumed};
use crate::net::resume::{TOKENS_PER_PLAYER, TokenHash};

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
        let client = client_for(url).map_err(|e| AccountError::Unavailable(e.to_string()))?;
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
