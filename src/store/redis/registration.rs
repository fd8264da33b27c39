//! The process's registrations (see `assets/redis/instance.lua`): under its instance id
//! (`<prefix>:instance:{<id>}`) and, in a world cut into zones, under its zone
//! (`<prefix>:zone:{<name>}`, which carries the address its clients are handed over to).
//! Claimed at start, so a second process started with the same instance id or zone refuses to
//! start naming the first; kept alive on the periodic lane like a lease; released on a clean
//! stop, so a restart starts at once.

use std::time::{Duration, SystemTime};

use crate::store::StoreSettings;
use redis::Value;

use super::conn::{CallError, LaneConn};
use super::scripts::{Keys, Scripts};

/// What a registration is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registered {
    /// The process's instance id.
    Instance(String),
    /// The zone the process serves.
    Zone(String),
}

impl std::fmt::Display for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Instance(id) => write!(f, "instance id {id:?}"),
            Self::Zone(name) => write!(f, "zone {name:?}"),
        }
    }
}

/// One registration of this process: what for, where it is stored and what it says.
pub struct Registration {
    pub what: Registered,
    pub key: String,
    /// JSON: lease owner, host, pid, client address, start time (and the zone and the
    /// address clients are handed over to). Unique per process start (it carries the boot
    /// token), so "ours" is an exact string comparison in Lua.
    pub value: String,
    pub ttl_ms: u64,
}

/// Why the registration could not be held or released: Redis did not answer as
/// `instance.lua` does.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The request got no reply.
    #[error("{0}")]
    Call(CallError),
    /// Redis refused the script.
    #[error("{0}")]
    Refused(redis::ServerError),
    /// The reply has the wrong number of values.
    #[error("{0} replies to one command")]
    Replies(usize),
    /// The script answered something it never answers.
    #[error("unexpected reply to instance.lua: {0:?}")]
    Unexpected(Value),
}

/// What holding the registration found.
pub enum Held {
    /// The instance id is registered to this process (now, or still).
    Ours,
    /// Another running process holds the instance id.
    Taken {
        /// Who, in words (host, pid, address, start time).
        holder: String,
        /// Its registration as stored (JSON), to take it over if its process is dead.
        raw: String,
        /// When its registration expires unless it is refreshed.
        expires_in: Duration,
    },
}

impl Registration {
    /// The registrations of the process `config` describes, starting now: its instance id,
    /// then its zone if it serves one.
    pub fn all(config: &StoreSettings, keys: &Keys, ttl_ms: u64) -> Vec<Self> {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let mut value = serde_json::json!({
            "owner": config.lease_owner(),
            "host": host,
            "pid": std::process::id(),
            "listen": config.listen.map(|addr| addr.to_string()).unwrap_or_default(),
            "started": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        });
        let instance = Self {
            what: Registered::Instance(config.instance_id.clone()),
            key: keys.instance(&config.instance_id),
            value: value.to_string(),
            ttl_ms,
        };
        let mut all = vec![instance];
        if let Some(zone) = &config.zone {
            value["zone"] = zone.name.clone().into();
            value["map"] = zone.map.clone().into();
            value["public_addr"] = zone.public_addr.clone().into();
            value["public_ws_addr"] = zone.public_ws_addr.clone().into();
            all.push(Self {
                what: Registered::Zone(zone.name.clone()),
                key: keys.zone(&zone.name),
                value: value.to_string(),
                ttl_ms,
            });
        }
        all
    }

    /// Registers, or extends the registration. `Err` when Redis did not answer.
    pub async fn hold(
        &self,
        conn: &mut LaneConn,
        scripts: &Scripts,
    ) -> Result<Held, RegistrationError> {
        let reply = self
            .call(conn, scripts, "hold", "", "registering the process")
            .await?;
        Self::held(reply)
    }

    /// Registers in place of `dead`, the registration of a process found dead (its liveness
    /// key gone); `Taken` if the registration changed meanwhile.
    pub async fn take(
        &self,
        conn: &mut LaneConn,
        scripts: &Scripts,
        dead: &str,
    ) -> Result<Held, RegistrationError> {
        let reply = self
            .call(
                conn,
                scripts,
                "take",
                dead,
                "taking over a dead process's registration",
            )
            .await?;
        Self::held(reply)
    }

    fn held(reply: Value) -> Result<Held, RegistrationError> {
        match reply {
            Value::Array(parts) if matches!(parts.first(), Some(Value::Int(1))) => Ok(Held::Ours),
            Value::Array(parts) if parts.len() == 3 => {
                let raw = match &parts[1] {
                    Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                    other => format!("{other:?}"),
                };
                let holder = describe(&raw);
                let expires_in = match parts[2] {
                    Value::Int(ms) => Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
                    _ => Duration::ZERO,
                };
                Ok(Held::Taken {
                    holder,
                    raw,
                    expires_in,
                })
            }
            other => Err(RegistrationError::Unexpected(other)),
        }
    }

    /// Deletes the registration if it is still ours (a clean stop).
    pub async fn release(&self, conn: &mut LaneConn, scripts: &Scripts) {
        if let Err(e) = self
            .call(conn, scripts, "release", "", "releasing a registration")
            .await
        {
            tracing::warn!(registration = %self.what, error = %e, "could not release the registration; it expires by its TTL");
        }
    }

    async fn call(
        &self,
        conn: &mut LaneConn,
        scripts: &Scripts,
        mode: &str,
        dead: &str,
        what: &str,
    ) -> Result<Value, RegistrationError> {
        let script = &scripts.instance;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.load_script(script).ignore();
        pipe.cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(1)
            .arg(&self.key)
            .arg(mode)
            .arg(&self.value)
            .arg(self.ttl_ms)
            .arg(dead);
        let reply = conn.request(pipe, what).await;
        match reply.result {
            Ok(mut values) if values.len() == 1 => match values.remove(0) {
                Value::ServerError(e) => Err(RegistrationError::Refused(e)),
                value => Ok(value),
            },
            Ok(values) => Err(RegistrationError::Replies(values.len())),
            Err(e) => Err(RegistrationError::Call(e)),
        }
    }
}

/// The lease owner a registration names (`""` if it names none).
pub fn owner_of(registration: &str) -> String {
    serde_json::from_str::<serde_json::Value>(registration)
        .ok()
        .and_then(|fields| fields["owner"].as_str().map(String::from))
        .unwrap_or_default()
}

/// A registration in words: "host h, pid 12, listening on 127.0.0.1:7777, started at ...".
pub fn describe(registration: &str) -> String {
    let Ok(fields) = serde_json::from_str::<serde_json::Value>(registration) else {
        return format!("registration {registration:?}");
    };
    let field = |name: &str| match &fields[name] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "?".to_string(),
        other => other.to_string(),
    };
    format!(
        "host {}, pid {}, listening on {}, started at {}",
        field("host"),
        field("pid"),
        field("listen"),
        field("started")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_is_described_in_words() {
        let text = r#"{"owner":"eu-1/ab","host":"box","pid":12,"listen":"0.0.0.0:7777","started":"2026-11-28T06:00:00Z"}"#;
        assert_eq!(
            describe(text),
            "host box, pid 12, listening on 0.0.0.0:7777, started at 2026-11-28T06:00:00Z"
        );
        assert_eq!(describe("junk"), "registration \"junk\"");
    }
}
