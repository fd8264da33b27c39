//! The Lua scripts of the Redis store (`assets/redis/*.lua`, embedded at build time so the
//! binary works from any directory) and the key layout.

use hearth_components::PlayerId;
use redis::Script;

/// `claim.lua`: claim (or re-claim and extend) a lease and load the record in one round trip.
pub const CLAIM_LUA: &str = include_str!("../../../assets/redis/claim.lua");
/// `refresh.lua`: extend a lease only if it is ours.
pub const REFRESH_LUA: &str = include_str!("../../../assets/redis/refresh.lua");
/// `release.lua`: delete a lease only if it is ours.
pub const RELEASE_LUA: &str = include_str!("../../../assets/redis/release.lua");
/// `instance.lua`: register this process under its instance id, refresh or release it.
pub const INSTANCE_LUA: &str = include_str!("../../../assets/redis/instance.lua");
/// `import.lua`: write an imported record unless a newer one is stored (`hearth admin`).
pub const IMPORT_LUA: &str = include_str!("../../../assets/redis/import.lua");
/// `save.lua`: owner-checked, sequence-fenced record write (optionally releasing the lease).
pub const SAVE_LUA: &str = include_str!("../../../assets/redis/save.lua");
/// `save_together.lua`: several players' records, every one or none (a linked save).
pub const SAVE_TOGETHER_LUA: &str = include_str!("../../../assets/redis/save_together.lua");
/// `link_prepare.lua`: a linked save across cluster slots, step 1: pending records.
pub const LINK_PREPARE_LUA: &str = include_str!("../../../assets/redis/link_prepare.lua");
/// `link_finish.lua`: apply (committed) or drop (aborted) a link's pending records.
pub const LINK_FINISH_LUA: &str = include_str!("../../../assets/redis/link_finish.lua");

/// `resume.lua`: take a presented resume token and store a fresh one (the front door's
/// account store, not the player store, runs it).
pub const RESUME_LUA: &str = concat!(
    include_str!("../../../assets/redis/tokens.lua"),
    include_str!("../../../assets/redis/resume.lua")
);
/// `handoff.lua`: hand a player who just left to the server of the zone it walked into.
pub const HANDOFF_LUA: &str = concat!(
    include_str!("../../../assets/redis/tokens.lua"),
    include_str!("../../../assets/redis/handoff.lua")
);
/// `resume_undo.lua`: cancel a resume answered `unavailable`, and reverse it if it ran.
pub const RESUME_UNDO_LUA: &str = include_str!("../../../assets/redis/resume_undo.lua");

/// The scripts, with their SHA1s computed once.
pub struct Scripts {
    pub claim: Script,
    pub instance: Script,
    pub refresh: Script,
    pub release: Script,
    pub save: Script,
    pub save_together: Script,
    pub link_prepare: Script,
    pub link_finish: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            claim: Script::new(CLAIM_LUA),
            instance: Script::new(INSTANCE_LUA),
            refresh: Script::new(REFRESH_LUA),
            release: Script::new(RELEASE_LUA),
            save: Script::new(SAVE_LUA),
            save_together: Script::new(SAVE_TOGETHER_LUA),
            link_prepare: Script::new(LINK_PREPARE_LUA),
            link_finish: Script::new(LINK_FINISH_LUA),
        }
    }
}

/// Key names. The player id is a hash tag (`{42}`) so both keys of one player live in one
/// cluster slot, which a script touching both needs.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (`hearth` by default).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    /// `<prefix>:player:{<id>}`: the JSON record.
    pub fn player(&self, player: PlayerId) -> String {
        format!("{}:player:{{{}}}", self.prefix, player.0)
    }

    /// `<prefix>:session:{<id>}`: the lease; value = the owning process's lease owner
    /// (`<instance id>/<boot token>`), with a TTL.
    pub fn session(&self, player: PlayerId) -> String {
        format!("{}:session:{{{}}}", self.prefix, player.0)
    }

    /// `<prefix>:released:{<id>}`: `<lease owner> <sequence>` of the last save that released
    /// the player's lease (with a TTL), so a save retried after a timeout recognises the
    /// record a late copy of its own release wrote (`save.lua`).
    pub fn released(&self, player: PlayerId) -> String {
        format!("{}:released:{{{}}}", self.prefix, player.0)
    }

    /// `<prefix>:instance:{<instance id>}`: the registration of the process running under
    /// that instance id (JSON), with a TTL; see `instance.lua`.
    pub fn instance(&self, instance_id: &str) -> String {
        format!("{}:instance:{{{instance_id}}}", self.prefix)
    }

    /// `<prefix>:alive:{<lease owner>}`: present while the process with that lease owner
    /// runs (a short TTL its heartbeat renews); a lease whose holder has none may be taken
    /// over (`liveness.rs`).
    pub fn alive(&self, owner: &str) -> String {
        format!("{}:alive:{{{owner}}}", self.prefix)
    }

    /// `<prefix>:zone:{<name>}`: the registration of the process serving the zone (JSON, with
    /// the address its clients are handed over to), kept alive like the instance's.
    pub fn zone(&self, name: &str) -> String {
        format!("{}:zone:{{{name}}}", self.prefix)
    }

    /// `<prefix>:border:{<name>}`: a Pub/Sub channel, not a key: the zone's process publishes
    /// the players in its border strip there, 20 times a second (`src/zones/border`).
    pub fn border(&self, zone: &str) -> String {
        format!("{}:border:{{{zone}}}", self.prefix)
    }

    /// `<prefix>:handoff:{<id>}`: `<destination owner> <token digest>` while a handoff holds
    /// the player's lease for the destination; see `handoff.lua`.
    pub fn handoff(&self, player: PlayerId) -> String {
        format!("{}:handoff:{{{}}}", self.prefix, player.0)
    }

    /// `<prefix>:account:{<username>}`: the account (player id, password hash), JSON.
    pub fn account(&self, username: &str) -> String {
        format!("{}:account:{{{username}}}", self.prefix)
    }

    /// `<prefix>:resume:{<id>}`: the digests of the player's live resume tokens (a hash,
    /// with a TTL), in the slot of its lease; see `resume.lua`.
    pub fn resume(&self, player: PlayerId) -> String {
        format!("{}:resume:{{{}}}", self.prefix, player.0)
    }

    /// `<prefix>:resume:{<id>}:cancelled`: the fresh-token digests of the player's resumes
    /// given up on (a set, with a TTL), so a late copy of one changes nothing; see
    /// `resume_undo.lua`.
    pub fn resume_cancelled(&self, player: PlayerId) -> String {
        format!("{}:resume:{{{}}}:cancelled", self.prefix, player.0)
    }

    /// `<prefix>:pending:{<id>}`: a linked save's pending record of the player (a hash:
    /// `link`, `seq`, `record`), in the player's slot; see `link_prepare.lua`.
    pub fn pending(&self, player: PlayerId) -> String {
        format!("{}:pending:{{{}}}", self.prefix, player.0)
    }

    /// `<prefix>:link:{<link id>}`: the decision of a linked save across slots, `committed`
    /// or `aborted`, set once (`SET NX`) by whoever decides first.
    pub fn link(&self, link: &str) -> String {
        format!("{}:link:{{{link}}}", self.prefix)
    }

    /// A `SCAN MATCH` pattern for every record under the prefix.
    pub fn player_pattern(&self) -> String {
        format!("{}:player:*", self.prefix)
    }

    /// A `SCAN MATCH` pattern for every lease under the prefix.
    pub fn session_pattern(&self) -> String {
        format!("{}:session:*", self.prefix)
    }
}
