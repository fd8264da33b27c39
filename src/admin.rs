//! `hearth admin`: look at and repair what the store holds, with the server's own
//! configuration (file, `HEARTH_*`, flags), through the same ports as the server (the
//! account port [`AccountStore`] and the maintenance port [`Maintenance`]) and the same
//! password hashing, on one Redis or a Redis Cluster. None needs a server running. The memory
//! store lives inside a running server's process, so against it every command refuses with a
//! clear message.
//!
//! Exit codes a script can rely on: 0 done; 1 the store failed (unreachable, refused);
//! 2 usage or configuration error (including the memory store); 3 not found; 4 refused to
//! protect a live player or newer data (`--force` / `--overwrite-newer` override); 5 an
//! import file rejected, every bad line named and nothing written.

use std::io::{BufRead, Write};
use std::time::Duration;

use clap::{Args, Subcommand};
use hearth_components::{PlayerId, PlayerRecord, StoreSelection};
use hearth_systems::PersistentRegistry;

use crate::store::StoreSettings;

use crate::net::auth::{normalise, validate_password};
use crate::net::password::Passwords;
use crate::store::accounts::{AccountError, AccountStore};
use crate::store::maintenance::{Imported, Maintenance, MaintenanceError};
use crate::store::redis::accounts::RedisAccounts;
use crate::store::redis::maintenance::RedisMaintenance;
use crate::store::redis::registration::describe;

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
    /// Records from stdin, one JSON object per line (as `export` writes them). Every line is
    /// checked as a login would load it before the first is written: one bad line and
    /// nothing is written (exit 5, every bad line named). A record whose stored counterpart
    /// has an equal or newer sequence is skipped unless `--overwrite-newer`.
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
    /// Input refused as a whole before anything was written (an import with bad lines).
    #[error("rejected, nothing written: {0}")]
    Rejected(String),
}

impl AdminError {
    /// The process exit code (see the module docs).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Store(_) => 1,
            Self::Usage(_) => 2,
            Self::NotFound(_) => 3,
            Self::Refused(_) => 4,
            Self::Rejected(_) => 5,
        }
    }
}

impl From<MaintenanceError> for AdminError {
    fn from(e: MaintenanceError) -> Self {
        Self::Store(e.to_string())
    }
}

impl From<AccountError> for AdminError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Unavailable(reason) => Self::Store(reason),
            AccountError::Taken => Self::Store(e.to_string()),
        }
    }
}

/// Runs an admin command against the store `config` selects, writing results to `out` and
/// reading stdin where the command needs it. `registry` holds the game's persistent sections:
/// an import decodes each record's sections with it, as the server does when the player joins.
pub fn run(
    config: &StoreSettings,
    registry: &PersistentRegistry,
    command: &AdminCommand,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let url = match &config.selection {
        StoreSelection::Redis(url) | StoreSelection::RedisCluster(url) => url,
        StoreSelection::Memory => {
            return Err(AdminError::Usage(
                "the memory store lives inside a running server's process and cannot be inspected from outside; admin commands need --store redis://...".into(),
            ));
        }
    };
    // Scans and imports may take longer than a game's requests: at least 5 s per call.
    let timeout = config.store_timeout.max(Duration::from_secs(5));
    let mut store = RedisMaintenance::new(url, &config.key_prefix, timeout)
        .map_err(|e| AdminError::Usage(e.to_string()))?;
    let mut accounts = RedisAccounts::new(url, &config.key_prefix, timeout, "")
        .map_err(|e| AdminError::Usage(e.to_string()))?;
    let mut admin = Admin {
        store: &mut store,
        accounts: &mut accounts,
        prefix: &config.key_prefix,
        registry,
    };
    admin.execute(command, input, out)
}

/// The ports a command works through, the key prefix (for messages) and the game's
/// persistent sections (for checking imports).
struct Admin<'a> {
    store: &'a mut dyn Maintenance,
    accounts: &'a mut dyn AccountStore,
    prefix: &'a str,
    registry: &'a PersistentRegistry,
}

/// Writes one line of output.
fn write_line(out: &mut dyn Write, text: &str) -> Result<(), AdminError> {
    writeln!(out, "{text}").map_err(|e| AdminError::Usage(format!("writing output: {e}")))
}

impl Admin<'_> {
    fn execute(
        &mut self,
        command: &AdminCommand,
        input: &mut dyn BufRead,
        out: &mut dyn Write,
    ) -> Result<(), AdminError> {
        let text = match command {
            AdminCommand::Player {
                command: PlayerCommand::Show { player },
            } => self.show_player(player)?,
            AdminCommand::Online => self.online()?,
            AdminCommand::Lease {
                command: LeaseCommand::Release { player, force },
            } => self.release_lease(PlayerId(*player), *force)?,
            AdminCommand::Account {
                command: AccountCommand::ResetPassword { username },
            } => {
                let mut password = String::new();
                input.read_line(&mut password).map_err(|e| {
                    AdminError::Usage(format!("reading the password from stdin: {e}"))
                })?;
                let password = password.trim_end_matches(['\r', '\n']);
                self.reset_password(username, password)?
            }
            AdminCommand::Export => return self.export(out),
            AdminCommand::Import { overwrite_newer } => self.import(input, *overwrite_newer)?,
        };
        write_line(out, &text)
    }

    /// A player id from a numeric id or a username (looked up in its account).
    fn resolve(&mut self, player: &str) -> Result<PlayerId, AdminError> {
        if let Ok(id) = player.parse::<u64>() {
            return Ok(PlayerId(id));
        }
        let username = normalise(player);
        let account = self.accounts.find(&username)?.ok_or_else(|| {
            AdminError::NotFound(format!(
                "no account named {username:?} and not a numeric id"
            ))
        })?;
        Ok(PlayerId(account.player_id))
    }

    fn show_player(&mut self, player: &str) -> Result<String, AdminError> {
        let id = self.resolve(player)?;
        let raw = self.store.record(id)?;
        let lease = self.store.lease(id)?;
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
            Some(lease) => text.push_str(&format!(
                "lease: held by {} for {} more ms",
                lease.owner,
                lease.ttl.as_millis()
            )),
        }
        Ok(text)
    }

    fn online(&mut self) -> Result<String, AdminError> {
        let mut by_owner: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        for (id, owner) in self.store.leases()? {
            by_owner.entry(owner).or_default().push(id.0);
        }
        if by_owner.is_empty() {
            return Ok("no player holds a lease".into());
        }
        let mut text = String::new();
        let total: usize = by_owner.values().map(Vec::len).sum();
        for (owner, mut players) in by_owner {
            players.sort_unstable();
            let instance = owner.split_once('/').map_or(owner.as_str(), |(i, _)| i);
            // Alive means the process renews its liveness key now: a crashed server is shown
            // dead within `liveness_ttl`, while its registration and leases still last.
            let registered = self.registration(instance)?;
            let alive = match (self.store.alive(&owner)?, registered) {
                (true, Some((registered, detail))) if registered == owner => {
                    format!("alive: {detail}")
                }
                (true, _) => "alive".into(),
                (false, _) => "not alive: crashed, stopped or cut off from the store; its players can log in on another server".into(),
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
    fn registration(&mut self, instance: &str) -> Result<Option<(String, String)>, AdminError> {
        let raw = self.store.registration(instance)?;
        Ok(raw.map(|raw| {
            let owner = serde_json::from_str::<serde_json::Value>(&raw)
                .ok()
                .and_then(|v| v["owner"].as_str().map(str::to_string))
                .unwrap_or_default();
            (owner, describe(&raw))
        }))
    }

    fn release_lease(&mut self, player: PlayerId, force: bool) -> Result<String, AdminError> {
        let Some(lease) = self.store.lease(player)? else {
            return Err(AdminError::NotFound(format!(
                "player {player} holds no lease"
            )));
        };
        let owner = lease.owner;
        let instance = owner.split_once('/').map_or(owner.as_str(), |(i, _)| i);
        if let Some((registered, detail)) = self.registration(instance)?
            && registered == owner
            && !force
        {
            return Err(AdminError::Refused(format!(
                "the lease of player {player} is held by {owner}, whose process is alive ({detail}) and still plays it. Releasing it lets the player log in on another server while this one still has it: that process's next save of the player is then refused and its progress since its last save is lost. Log the player out, drain that server, or use --force if the process is wedged"
            )));
        }
        // Deleted only if it still holds the owner read above.
        if self.store.release_lease(player, &owner)? {
            Ok(format!(
                "released the lease of player {player} (was {owner})"
            ))
        } else {
            Err(AdminError::Refused(format!(
                "the lease of player {player} changed meanwhile; nothing released"
            )))
        }
    }

    fn reset_password(&mut self, username: &str, password: &str) -> Result<String, AdminError> {
        validate_password(password).map_err(|e| AdminError::Usage(e.to_string()))?;
        let username = normalise(username);
        if self.accounts.find(&username)?.is_none() {
            return Err(AdminError::NotFound(format!(
                "no account named {username:?}"
            )));
        }
        let hash = Passwords::default()
            .hash(password)
            .map_err(|e| AdminError::Usage(format!("password cannot be hashed: {e}")))?;
        let Some(player_id) = self.accounts.set_password(&username, &hash)? else {
            return Err(AdminError::NotFound(format!(
                "account {username:?} disappeared meanwhile"
            )));
        };
        // After the new password is in place: a login with the old one that was still being
        // checked could otherwise store a token after the revocation.
        let tokens = if self.accounts.revoke_resume(player_id)? {
            "; its resume tokens are revoked"
        } else {
            ""
        };
        Ok(format!(
            "password of {username:?} (player {player_id}) reset{tokens}"
        ))
    }

    fn export(&mut self, out: &mut dyn Write) -> Result<(), AdminError> {
        for player in self.store.players()? {
            if let Some(raw) = self.store.record(player)? {
                write_line(out, &raw)?;
            }
        }
        Ok(())
    }

    fn import(
        &mut self,
        input: &mut dyn BufRead,
        overwrite_newer: bool,
    ) -> Result<String, AdminError> {
        let records = self.check_import(input)?;
        let (mut written, mut skipped) = (0u64, Vec::new());
        for (done, record) in records.iter().enumerate() {
            // Stored as the current layout (a v1 record is written migrated), so the
            // sequence prefix save.lua reads is there.
            let imported = self.store.import(record, overwrite_newer).map_err(|e| {
                // Say exactly what is in the store: the records go in file order.
                AdminError::Store(format!(
                    "{e}; the first {done} of {} records are stored ({written} written, {} \
                     kept), player {} and those after it are not; importing the same file \
                     again is safe (records already written are then kept as equal)",
                    records.len(),
                    skipped.len(),
                    record.id,
                ))
            })?;
            match imported {
                Imported::Written => written += 1,
                Imported::Kept { stored_seq } => skipped.push(format!(
                    "player {} (stored seq {stored_seq} >= imported {})",
                    record.id, record.seq
                )),
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

    /// Every record of an import file, each checked as a join would load it (the record's
    /// layout, then each registered section through [`PersistentRegistry::check_record`]);
    /// or, if any line fails, every failing line named and nothing to write.
    fn check_import(&self, input: &mut dyn BufRead) -> Result<Vec<PlayerRecord>, AdminError> {
        let (mut records, mut bad) = (Vec::new(), Vec::new());
        let mut ids = std::collections::HashMap::new();
        for (n, line) in input.lines().enumerate() {
            let line_no = n + 1;
            let line = line.map_err(|e| AdminError::Usage(format!("reading stdin: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            let checked = PlayerRecord::decode(line.as_bytes())
                .map_err(|e| e.to_string())
                .and_then(|record| {
                    self.registry
                        .check_record(&record)
                        .map(|()| record)
                        .map_err(|e| e.to_string())
                });
            match checked {
                Ok(record) => {
                    if let Some(first) = ids.insert(record.id, line_no) {
                        bad.push(format!(
                            "line {line_no}: player {} is also on line {first}",
                            record.id
                        ));
                    }
                    records.push(record);
                }
                Err(why) => bad.push(format!(
                    "line {line_no}: a server would refuse to load it: {why}"
                )),
            }
        }
        if bad.is_empty() {
            Ok(records)
        } else {
            Err(AdminError::Rejected(format!(
                "{} of the file's lines cannot be imported:\n{}",
                bad.len(),
                bad.join("\n")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::accounts::MemoryAccounts;
    use crate::store::{MemoryBackend, StoreClock};

    /// Runs `command` against the memory adapters of both ports.
    fn run_on(
        store: &mut Arc<MemoryBackend>,
        accounts: &mut MemoryAccounts,
        command: AdminCommand,
        stdin: &str,
    ) -> Result<String, AdminError> {
        let mut out = Vec::new();
        let registry = PersistentRegistry::default();
        let mut admin = Admin {
            store,
            accounts,
            prefix: "hearth",
            registry: &registry,
        };
        admin.execute(&command, &mut stdin.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out).expect("utf-8 output"))
    }

    #[test]
    fn commands_work_through_the_ports_on_the_memory_adapters() {
        let mut store = MemoryBackend::new(StoreClock::manual());
        let mut accounts = MemoryAccounts::on_leases(Arc::clone(&store), "");
        let hash = Passwords::default().hash("password1").unwrap();
        let id = accounts.create("alice", &hash).unwrap();
        let mut record = PlayerRecord::new(id);
        record.seq = 3;
        store.put_raw_record(PlayerId(id), record.encode());
        store.force_lease(PlayerId(id), "eu-1/boot", Duration::from_secs(5));

        let show = AdminCommand::Player {
            command: PlayerCommand::Show {
                player: "Alice".into(),
            },
        };
        let shown = run_on(&mut store, &mut accounts, show, "").unwrap();
        assert!(
            shown.starts_with(&format!("player {id}\nversion: 2  seq: 3\n")),
            "{shown}"
        );
        assert!(
            shown.contains("lease: held by eu-1/boot for 5000 more ms"),
            "{shown}"
        );

        let online = run_on(&mut store, &mut accounts, AdminCommand::Online, "").unwrap();
        assert!(online.contains("eu-1/boot (not alive: crashed"), "{online}");
        assert!(online.ends_with("1 players online\n"), "{online}");

        let release = AdminCommand::Lease {
            command: LeaseCommand::Release {
                player: id,
                force: false,
            },
        };
        let released = run_on(&mut store, &mut accounts, release.clone(), "").unwrap();
        assert!(released.contains("(was eu-1/boot)"), "{released}");
        let again = run_on(&mut store, &mut accounts, release, "").unwrap_err();
        assert_eq!(again.exit_code(), 3, "{again}");

        let reset = AdminCommand::Account {
            command: AccountCommand::ResetPassword {
                username: "alice".into(),
            },
        };
        run_on(&mut store, &mut accounts, reset, "new password 2\n").unwrap();
        let stored = accounts.find("alice").unwrap().unwrap().password_hash;
        assert!(Passwords::default().verify("new password 2", &stored));

        let exported = run_on(&mut store, &mut accounts, AdminCommand::Export, "").unwrap();
        assert_eq!(exported.lines().count(), 1, "{exported}");
        let import = AdminCommand::Import {
            overwrite_newer: false,
        };
        let kept = run_on(&mut store, &mut accounts, import, &exported).unwrap_err();
        assert_eq!(kept.exit_code(), 4, "{kept}");
        assert!(
            kept.to_string().contains("stored seq 3 >= imported 3"),
            "{kept}"
        );
    }
}
