//! Resume tokens: what lets a client log back in after a restart, drain or dropped
//! connection without its password, so a reconnect costs one store round trip instead of an
//! argon2 hash.
//!
//! A token is `<player id>.<secret>`: 32 bytes from the OS's CSPRNG, URL-safe base64 without
//! padding. The store keeps only its BLAKE2b-256 digest (a token has 256 bits of entropy, so a
//! fast cryptographic hash is enough; a slow password hash would defeat the purpose), in a
//! per-player set under the player's hash tag (`<prefix>:resume:{<id>}`, next to its lease).
//! The player id in the token names that set; without the secret it is worth nothing.
//!
//! The set expires `resume_ttl` after its last write or extension, and the [`Keeper`] extends
//! the sets of every player online here, so a token works while its player plays and for
//! `resume_ttl` after (at least three quarters of it after a crash). Each set holds at most
//! [`TOKENS_PER_PLAYER`](crate::store::accounts::TOKENS_PER_PLAYER) tokens: a token taken is deleted and a fresh one stored in its place
//! (rotation), a password reset deletes the set (revocation).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64ct::{Base64UrlUnpadded, Encoding};
use blake2::{Blake2b, Digest, digest::consts::U32};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use hearth_components::protocol::ResumeToken;
use hearth_systems::net::ConnId;

use crate::store::accounts::{AccountStoreFactory, TokenHash};

/// Bytes of randomness in a token.
const SECRET_BYTES: usize = 32;

/// A token and what the store keeps of it.
pub struct Issued {
    pub player_id: u64,
    pub token: ResumeToken,
    pub hash: TokenHash,
}

/// A fresh token for `player_id`.
pub fn issue(player_id: u64) -> Issued {
    let mut secret = [0u8; SECRET_BYTES];
    OsRng.fill_bytes(&mut secret);
    let text = format!("{player_id}.{}", Base64UrlUnpadded::encode_string(&secret));
    Issued {
        player_id,
        hash: digest(&text),
        token: ResumeToken::new(text),
    }
}

/// The player a presented token claims to be for and its digest, or `None` when it does not
/// have a token's shape (it is then refused like an unknown token).
pub fn presented(token: &ResumeToken) -> Option<(u64, TokenHash)> {
    let text = token.expose();
    let (id, secret) = text.split_once('.')?;
    let player_id = id.parse::<u64>().ok()?;
    let mut bytes = [0u8; SECRET_BYTES];
    match Base64UrlUnpadded::decode(secret, &mut bytes) {
        Ok(decoded) if decoded.len() == SECRET_BYTES => Some((player_id, digest(text))),
        _ => None,
    }
}

fn digest(text: &str) -> TokenHash {
    let sum = Blake2b::<U32>::digest(text.as_bytes());
    TokenHash::from_digest(sum.iter().map(|b| format!("{b:02x}")).collect())
}

/// The players logged in on this server's connections: whose token sets the [`Keeper`]
/// keeps alive.
#[derive(Default)]
pub struct OnlinePlayers(Mutex<HashMap<ConnId, u64>>);

impl OnlinePlayers {
    /// `conn` now plays `player_id` (its `logged_in` went out).
    pub fn joined(&self, conn: ConnId, player_id: u64) {
        self.lock().insert(conn, player_id);
    }

    /// `conn` plays no player any more (logged out or closed).
    pub fn left(&self, conn: ConnId) {
        self.lock().remove(&conn);
    }

    fn players(&self) -> Vec<u64> {
        self.lock().values().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Extends the token sets of the players online here every quarter of `resume_ttl`, on its
/// own thread and store connection (one pipelined round trip per 1000 players). Stops when
/// dropped.
pub struct Keeper {
    _stop: Sender<()>,
}

impl Keeper {
    /// Starts keeping the tokens of `online` alive for `ttl`.
    pub fn start(
        online: Arc<OnlinePlayers>,
        accounts: AccountStoreFactory,
        ttl: Duration,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        std::thread::Builder::new()
            .name("hearth-resume".into())
            .spawn(move || keep(&online, &accounts, ttl, &stopped))?;
        Ok(Self { _stop: stop })
    }
}

fn keep(
    online: &OnlinePlayers,
    accounts: &AccountStoreFactory,
    ttl: Duration,
    stop: &Receiver<()>,
) {
    let mut store = accounts();
    let every = ttl / 4;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(every) {
        let players = online.players();
        if players.is_empty() {
            continue;
        }
        if let Err(e) = store.extend_resume(&players, ttl) {
            tracing::warn!(error = %e, players = players.len(), "could not extend resume tokens; they expire unless the next attempt succeeds");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_its_player_and_256_random_bits_and_only_its_digest_is_kept() {
        let a = issue(42);
        let b = issue(42);
        assert_ne!(a.token, b.token, "fresh randomness each time");
        let text = a.token.expose();
        assert!(text.starts_with("42."), "{}", text.len());
        assert_eq!(text.len(), 3 + 43, "32 bytes of URL-safe base64, unpadded");
        assert_eq!(presented(&a.token), Some((42, a.hash.clone())));
        assert_eq!(a.hash.as_str().len(), 64);
        assert!(!a.hash.as_str().contains(&text[3..]));
        assert!(!format!("{:?}", a.hash).contains(a.hash.as_str()));
    }

    #[test]
    fn malformed_tokens_are_not_tokens() {
        for bad in [
            "",
            "42",
            "x.abc",
            "42.short",
            "-1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "42.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
        ] {
            assert_eq!(presented(&ResumeToken::new(bad)), None, "{bad:?}");
        }
    }
}
