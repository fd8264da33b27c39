//! `hearth admin`: look at and repair what the store holds, with the server's own
//! configuration (file, `HEARTH_*`, flags) and key layout, instead of hand-typed Redis
//! commands. Every command talks to Redis directly on one connection; none needs a server
//! running. The memory store lives inside a running server's process, so against it every
//! command refuses with a clear message.
//!
//! Exit codes a script can rely on: 0 done; 1 the store failed (unreachable, refused);
//! 2 usage or configuration error (including the memory store); 3 not found; 4 refused to
//! protect a live player or newer data (`--force` / `--overwrite-newer` override).

use std::io::{BufRead, Write};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
use clap::{Args, Subcommand};
use hearth_components::{PlayerId, PlayerRecord, StoreSelection};

use crate::store::StoreSettings;
use redis::{Commands, Script};

use crate::net::accounts::Account;
use crate::net::auth::{normalise, validate_password};
use crate::store::redis::Keys;
use crate::store::redis::registration::describe;
use crate::store::redis::scripts::{IMPORT_LUA, RELEASE_LUA};

/// `hearth admin ...`.
#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// What `hearth admin` does.
#[derive(Subcommand, Debug, Clone)]
pub enum AdminCommand {
    /// A player's stored record (pretty-printed), version and sequence, and who holds its
    /// session lease for how long.
    Player {
        #[command(subcommand)]
        command: PlayerCommand,
    },
    /// Players holding session leases, grouped by server instance (SCAN, never KEYS).
    Online,
    /// Session leases.
    Lease {
        #[command(subcommand)]
        command: LeaseCommand,
    },
    /// Accounts.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Every stored record, one JSON object per line, to stdout.
    Export,
    /// Records from stdin, one JSON object per line (as `export` writes them). A record whose
    /// stored counterpart has an equal or newer sequence is skipped unless `--overwrite-newer`.
    Import {
        /// Write even over an equal or newer stored record.
        #[arg(long)]
        overwrite_newer: bool,
    },
}

/// `hearth admin player ...`.
#[derive(Subcommand, Debug, Clone)]
pub enum PlayerCommand {
    /// Show a player by username or numeric id.
    Show { player: String },
}

/// `hearth admin lease ...`.
#[derive(Subcommand, Debug, Clone)]
pub enum LeaseCommand {
    /// Delete a player's session lease. Refused while the process holding it is alive (it is
    /// still playing that player) unless `--force`.
    Release {
        /// The player id.
        player: u64,
        /// Release even though the holding process is alive.
        #[arg(long)]
        force: bool,
    },
}

/// `hearth admin account ...`.
#[derive(Subcommand, Debug, Clone)]
pub enum AccountCommand {
    /// Set a new password, read from the first line of stdin (never from the command line,
    /// where other users and shell history would see it), and revoke the account's resume
    /// tokens (a client holding one must log in with the new password).
    ResetPassword { username: String },
}

/// Why an admin command did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Usage(String),
    #[error("store: {0}")]
    Store(String),
    #[error("{0}")]
    NotFound(String),
    #[error("refused: {0}")]
    Refused(String),
}

impl AdminError {
    /// The process exit code (see the module docs).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Store(_) => 1,
            Self::Usage(_) => 2,
            Self::NotFound(_) => 3,
            Self::Refused(_) => 4,
        }
    }
}

impl From<redis::RedisError> for AdminError {
    fn from(e: redis::RedisError) -> Self {
        Self::Store(e.to_string())
    }
}

/// Runs an admin command against the store `config` selects, writing results to `out` and
/// reading stdin where the command needs it.
pub fn run(
    config: &StoreSettings,
    command: &AdminCommand,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let url = match &config.selection {
        StoreSelection::Redis(url) => url,
        StoreSelection::Memory => {
            return Err(AdminError::Usage(
                "the memory store lives inside a running server's process and cannot be inspected from outside; admin commands need --store redis://...".into(),
            ));
        }
        StoreSelection::RedisCluster(_) => {
            return Err(AdminError::Usage(
                "admin commands do not work on a Redis Cluster yet; they need --store redis://..."
                    .into(),
            ));
        }
    };
    let client = redis::Client::open(url.as_str()).map_err(|e| AdminError::Usage(e.to_string()))?;
    let mut conn = client.get_connection_with_timeout(config.store_timeout)?;
    conn.set_read_timeout(Some(config.store_timeout.max(Duration::from_secs(5))))?;
    let admin = Admin {
        keys: Keys::new(&config.key_prefix),
        prefix: config.key_prefix.clone(),
    };
    let write = |out: &mut dyn Write, text: String| {
        writeln!(out, "{text}").map_err(|e| AdminError::Usage(format!("writing output: {e}")))
    };
    match command {
        AdminCommand::Player {
            command: PlayerCommand::Show { player },
        } => {
            let text = admin.show_player(&mut conn, player)?;
            write(out, text)
        }
        AdminCommand::Online => {
            let text = admin.online(&mut conn)?;
            write(out, text)
        }
        AdminCommand::Lease {
            command: LeaseCommand::Release { player, force },
        } => {
            let text = admin.release_lease(&mut conn, PlayerId(*player), *force)?;
            write(out, text)
        }
        AdminCommand::Account {
            command: AccountCommand::ResetPassword { username },
        } => {
            let mut password = String::new();
            input
                .read_line(&mut password)
                .map_err(|e| AdminError::Usage(format!("reading the password from stdin: {e}")))?;
            let password = password.trim_end_matches(['\r', '\n']);
            let text = admin.reset_password(&mut conn, username, password)?;
            write(out, text)
        }
        AdminCommand::Export => admin.export(&mut conn, out),
        AdminCommand::Import { overwrite_newer } => {
            let text = admin.import(&mut conn, input, *overwrite_newer)?;
            write(out, text)
        }
    }
}

/// The key layout of one prefix.
struct Admin {
    keys: Keys,
    prefix: String,
}

impl Admin {
    /// A player id from a numeric id or a username (looked up in its account).
    fn resolve(&self, conn: &mut redis::Connection, player: &str) -> Result<PlayerId, AdminError> {
        if let Ok(id) = player.parse::<u64>() {
            return Ok(PlayerId(id));
        }
        let username = normalise(player);
        let account: Option<String> = conn.get(self.keys.account(&username))?;
        let account = account.ok_or_else(|| {
            AdminError::NotFound(format!(
                "no account named {username:?} and not a numeric id"
            ))
        })?;
        let account: Account = serde_json::from_str(&account)
            .map_err(|e| AdminError::Store(format!("account {username:?} is malformed: {e}")))?;
        Ok(PlayerId(account.player_id))
    }

    fn show_player(
        &self,
        conn: &mut redis::Connection,
        player: &str,
    ) -> Result<String, AdminError> {
        let id = self.resolve(conn, player)?;
        let raw: Option<String> = conn.get(self.keys.player(id))?;
        let lease: Option<String> = conn.get(self.keys.session(id))?;
        let ttl_ms: i64 = redis::cmd("PTTL").arg(self.keys.session(id)).query(conn)?;
        let mut text = format!("player {id}\n");
        match &raw {
            None => text.push_str("record: none (never saved)\n"),
            Some(raw) => {
                let value: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
                text.push_str(&format!(
                    "version: {}  seq: {}\n",
                    value["version"], value["seq"]
                ));
                if let Err(e) = PlayerRecord::decode_for(raw.as_bytes(), id.0) {
                    text.push_str(&format!(
                        "WARNING: a server would refuse this record: {e}\n"
                    ));
                }
                let pretty = serde_json::to_string_pretty(&value).unwrap_or_else(|_| raw.clone());
                text.push_str(&format!("record:\n{pretty}\n"));
            }
        }
        match lease {
            None => text.push_str("lease: none (not online)"),
            Some(owner) => text.push_str(&format!(
                "lease: held by {owner} for {} more ms",
                ttl_ms.max(0)
            )),
        }
        Ok(text)
    }

    /// Every key matching `pattern`, by SCAN (never KEYS, which blocks Redis).
    fn scan(&self, conn: &mut redis::Connection, pattern: &str) -> Result<Vec<String>, AdminError> {
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query(conn)?;
            keys.extend(page);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// The id in braces of a key (`hearth:session:{42}` -> 42).
    fn id_of(key: &str) -> Option<u64> {
        key.rsplit_once('{')?.1.strip_suffix('}')?.parse().ok()
    }

    fn online(&self, conn: &mut redis::Connection) -> Result<String, AdminError> {
        let leases = self.scan(conn, &self.keys.session_pattern())?;
        let mut by_owner: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        for key in leases {
            let owner: Option<String> = conn.get(&key)?;
            if let (Some(owner), Some(id)) = (owner, Self::id_of(&key)) {
                by_owner.entry(owner).or_default().push(id);
            }
        }
        if by_owner.is_empty() {
            return Ok("no player holds a lease".into());
        }
        let mut text = String::new();
        let total: usize = by_owner.values().map(Vec::len).sum();
        for (owner, mut players) in by_owner {
            players.sort_unstable();
            let instance = owner.split_once('/').map_or(owner.as_str(), |(i, _)| i);
            let alive = match self.registration(conn, instance)? {
                Some((registered, detail)) if registered == owner => format!("alive: {detail}"),
                Some(_) => "its process is gone (the instance id now belongs to another)".into(),
                None => {
                    "no live process registered (crashed or stopped; leases expire by their TTL)"
                        .into()
                }
            };
            let ids: Vec<String> = players.iter().map(u64::to_string).collect();
            text.push_str(&format!(
                "{owner} ({alive}): {} players: {}\n",
                players.len(),
                ids.join(" ")
            ));
        }
        text.push_str(&format!("{total} players online"));
        Ok(text)
    }

    /// The lease owner registered under `instance` and its registration in words.
    fn registration(
        &self,
        conn: &mut redis::Connection,
        instance: &str,
    ) -> Result<Option<(String, String)>, AdminError> {
        let raw: Option<String> = conn.get(self.keys.instance(instance))?;
        Ok(raw.map(|raw| {
            let owner = serde_json::from_str::<serde_json::Value>(&raw)
                .ok()
                .and_then(|v| v["owner"].as_str().map(str::to_string))
                .unwrap_or_default();
            (owner, describe(&raw))
        }))
    }

    fn release_lease(
        &self,
        conn: &mut redis::Connection,
        player: PlayerId,
        force: bool,
    ) -> Result<String, AdminError> {
        let key = self.keys.session(player);
        let owner: Option<String> = conn.get(&key)?;
        let Some(owner) = owner else {
            return Err(AdminError::NotFound(format!(
                "player {player} holds no lease"
            )));
        };
        let instance = owner.split_once('/').map_or(owner.as_str(), |(i, _)| i);
        if let Some((registered, detail)) = self.registration(conn, instance)?
            && registered == owner
            && !force
        {
            return Err(AdminError::Refused(format!(
                "the lease of player {player} is held by {owner}, whose process is alive ({detail}) and still plays it. Releasing it lets the player log in on another server while this one still has it: that process's next save of the player is then refused and its progress since its last save is lost. Log the player out, drain that server, or use --force if the process is wedged"
            )));
        }
        // Deleted only if it still holds the owner read above (release.lua compares).
        let deleted: i64 = Script::new(RELEASE_LUA)
            .key(&key)
            .arg(&owner)
            .invoke(conn)?;
        if deleted == 1 {
            Ok(format!(
                "released the lease of player {player} (was {owner})"
            ))
        } else {
            Err(AdminError::Refused(format!(
                "the lease of player {player} changed meanwhile; nothing released"
            )))
        }
    }

    fn reset_password(
        &self,
        conn: &mut redis::Connection,
        username: &str,
        password: &str,
    ) -> Result<String, AdminError> {
        validate_password(password).map_err(AdminError::Usage)?;
        let username = normalise(username);
        let key = self.keys.account(&username);
        let raw: Option<String> = conn.get(&key)?;
        let raw =
            raw.ok_or_else(|| AdminError::NotFound(format!("no account named {username:?}")))?;
        let mut account: Account = serde_json::from_str(&raw)
            .map_err(|e| AdminError::Store(format!("account {username:?} is malformed: {e}")))?;
        let salt = SaltString::generate(&mut OsRng);
        account.password_hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| AdminError::Usage(format!("password cannot be hashed: {e}")))?
            .to_string();
        let json = serde_json::to_string(&account).expect("an account always serialises");
        let written: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(json)
            .arg("XX")
            .query(conn)?;
        if written.is_none() {
            return Err(AdminError::NotFound(format!(
                "account {username:?} disappeared meanwhile"
            )));
        }
        // After the new password is in place: a login with the old one that was still being
        // checked could otherwise store a token after the revocation.
        let revoked: i64 = conn.del(self.keys.resume(PlayerId(account.player_id)))?;
        let tokens = if revoked == 1 {
            "; its resume tokens are revoked"
        } else {
            ""
        };
        Ok(format!(
            "password of {username:?} (player {}) reset{tokens}",
            account.player_id
        ))
    }

    fn export(&self, conn: &mut redis::Connection, out: &mut dyn Write) -> Result<(), AdminError> {
        let mut keys = self.scan(conn, &self.keys.player_pattern())?;
        keys.sort_by_key(|k| Self::id_of(k));
        for key in keys {
            let raw: Option<String> = conn.get(&key)?;
            if let Some(raw) = raw {
                writeln!(out, "{raw}")
                    .map_err(|e| AdminError::Usage(format!("writing output: {e}")))?;
            }
        }
        Ok(())
    }

    fn import(
        &self,
        conn: &mut redis::Connection,
        input: &mut dyn BufRead,
        overwrite_newer: bool,
    ) -> Result<String, AdminError> {
        let script = Script::new(IMPORT_LUA);
        let (mut written, mut skipped) = (0u64, Vec::new());
        for (n, line) in input.lines().enumerate() {
            let line = line.map_err(|e| AdminError::Usage(format!("reading stdin: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            let record = PlayerRecord::decode(line.as_bytes()).map_err(|e| {
                AdminError::Usage(format!("line {}: not a record Hearth can load: {e}", n + 1))
            })?;
            // Stored as the current layout (a v1 record is written migrated), so the
            // sequence prefix save.lua reads is there.
            let (done, stored): (i64, String) = script
                .key(self.keys.player(PlayerId(record.id)))
                .arg(record.encode())
                .arg(record.seq.to_string())
                .arg(if overwrite_newer { "1" } else { "0" })
                .invoke(conn)?;
            if done == 1 {
                written += 1;
            } else {
                skipped.push(format!(
                    "player {} (stored seq {stored} >= imported {})",
                    record.id, record.seq
                ));
            }
        }
        let mut text = format!("imported {written} records under prefix {:?}", self.prefix);
        if !skipped.is_empty() {
            text.push_str(&format!(
                "; skipped {} with an equal or newer stored record (use --overwrite-newer): {}",
                skipped.len(),
                skipped.join(", ")
            ));
            return Err(AdminError::Refused(text));
        }
        Ok(text)
    }
}
