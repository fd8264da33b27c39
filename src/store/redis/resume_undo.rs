//! Resumes the client was told failed. A resume that got no reply within the store timeout (a
//! hung Redis) or lost its connection after sending is answered `unavailable` ("nothing was
//! changed"), but Redis may still run `resume.lua` later: the client's token would be spent
//! and its player's lease held, unseen, refusing the token everywhere. Each such resume is
//! undone with `resume_undo.lua`, which first marks it cancelled (so a copy that runs later
//! changes nothing) and then reverses it if it had already run: on a thread of its own, once
//! Redis answers again (retried every [`UNDO_RETRY`] for at most [`UNDO_FOR`]), and at once,
//! inside the request, when the same player's token is presented here again, so a client that
//! retries is never told its token is unknown because of the undo it is waiting for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use hearth_components::PlayerId;
use redis::Script;

use super::Keys;
use super::blocking::{BlockingError, BlockingNodes};
use super::scripts::RESUME_UNDO_LUA;
use crate::store::accounts::{RESUME_LEASE, TokenHash};

/// How long a failed undo waits before it is tried again.
pub const UNDO_RETRY: Duration = Duration::from_secs(1);
/// How long an undo is retried before it is given up (Redis unreachable all that time).
pub const UNDO_FOR: Duration = Duration::from_secs(300);
/// How long a cancellation is kept: far longer than a late copy of the resume, already sent
/// before the undo, can wait once Redis reads again.
const CANCELLED_FOR: Duration = Duration::from_secs(60);

/// A resume answered `unavailable` whose effect is not known.
#[derive(Clone)]
struct Uncertain {
    presented: TokenHash,
    fresh: TokenHash,
    /// The token set's lifetime, restored with the presented token.
    ttl: Duration,
    give_up_at: Instant,
}

type Pending = HashMap<PlayerId, Vec<Uncertain>>;

/// The server's uncertain resumes, shared by its resume workers and undone by a thread of
/// its own (which stops when the last handle is dropped).
#[derive(Clone)]
pub struct ResumeUndos {
    pending: Arc<Mutex<Pending>>,
    wake: Sender<()>,
    undoer: Arc<Undoer>,
}

/// How an undo is run: the script, the key names, this server's lease owner.
struct Undoer {
    script: Script,
    keys: Keys,
    owner: String,
}

impl ResumeUndos {
    /// Starts the undo thread, on its own connections to the Redis at `url`, for the server
    /// whose lease owner is `owner`.
    pub fn start(
        url: &str,
        prefix: &str,
        timeout: Duration,
        owner: &str,
    ) -> Result<Self, BlockingError> {
        let nodes = BlockingNodes::new(url, timeout)?;
        let (wake, woken) = crossbeam_channel::unbounded();
        let undos = Self {
            pending: Arc::default(),
            wake,
            undoer: Arc::new(Undoer {
                script: Script::new(RESUME_UNDO_LUA),
                keys: Keys::new(prefix),
                owner: owner.to_string(),
            }),
        };
        let (pending, undoer) = (Arc::clone(&undos.pending), Arc::clone(&undos.undoer));
        std::thread::Builder::new()
            .name("hearth-resume-undo".into())
            .spawn(move || run(nodes, &pending, &undoer, &woken))
            .map_err(|e| {
                BlockingError::Redis(redis::RedisError::from(std::io::Error::other(format!(
                    "starting the resume undo thread: {e}"
                ))))
            })?;
        Ok(undos)
    }

    /// The resume of `player` presenting `presented` and storing `fresh` failed with no known
    /// outcome: undo it once Redis answers.
    pub fn uncertain(
        &self,
        player: PlayerId,
        presented: &TokenHash,
        fresh: &TokenHash,
        ttl: Duration,
    ) {
        lock(&self.pending)
            .entry(player)
            .or_default()
            .push(Uncertain {
                presented: presented.clone(),
                fresh: fresh.clone(),
                ttl,
                give_up_at: Instant::now() + UNDO_FOR,
            });
        self.wake.send(()).ok();
    }

    /// Undoes `player`'s uncertain resumes now, on `nodes` (within the caller's request): a
    /// resume of that player runs only after them. Those that fail are kept for the thread.
    pub fn settle(&self, player: PlayerId, nodes: &mut BlockingNodes) -> Result<(), BlockingError> {
        let Some(mut undos) = lock(&self.pending).remove(&player) else {
            return Ok(());
        };
        while let Some(undo) = undos.last() {
            if let Err(e) = self.undoer.undo(nodes, player, undo) {
                lock(&self.pending).entry(player).or_default().extend(undos);
                return Err(e);
            }
            undos.pop();
        }
        Ok(())
    }
}

impl Undoer {
    /// Runs `resume_undo.lua` for one uncertain resume of `player`.
    fn undo(
        &self,
        nodes: &mut BlockingNodes,
        player: PlayerId,
        undo: &Uncertain,
    ) -> Result<(), BlockingError> {
        let set = self.keys.resume(player);
        let (lease, cancelled) = (
            self.keys.session(player),
            self.keys.resume_cancelled(player),
        );
        let undone: i64 = nodes.on_key(&set, |c| {
            self.script
                .key(&set)
                .key(&lease)
                .key(&cancelled)
                .arg(undo.presented.as_str())
                .arg(undo.fresh.as_str())
                .arg(&self.owner)
                .arg(RESUME_LEASE.as_millis() as u64)
                .arg(undo.ttl.as_millis().max(1) as u64)
                .arg(CANCELLED_FOR.as_millis() as u64)
                .invoke(c)
        })?;
        tracing::info!(
            player = player.0,
            ran = undone == 1,
            "a resume answered `unavailable` is undone: its token works again"
        );
        Ok(())
    }
}

/// Removes `undo` (named by its fresh digest) from `player`'s pending undos, if still there.
fn forget(pending: &Mutex<Pending>, player: PlayerId, undo: &Uncertain) {
    let mut pending = lock(pending);
    if let Some(undos) = pending.get_mut(&player) {
        undos.retain(|u| u.fresh != undo.fresh);
        if undos.is_empty() {
            pending.remove(&player);
        }
    }
}

fn lock(pending: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(|p| p.into_inner())
}

/// The undo thread: tries every pending undo when woken, and again every [`UNDO_RETRY`] while
/// some are left; ends when every [`ResumeUndos`] handle is gone.
fn run(mut nodes: BlockingNodes, pending: &Mutex<Pending>, undoer: &Undoer, woken: &Receiver<()>) {
    let mut wait = None;
    loop {
        let woke = match wait {
            None => woken.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(retry) => woken.recv_timeout(retry),
        };
        if woke == Err(RecvTimeoutError::Disconnected) {
            return;
        }
        // Left pending while they run: a resume of the same player meanwhile settles them
        // itself (`settle`) before it runs, rather than finding its token not yet given back.
        // An undo run twice is harmless: the second finds the fresh token gone and changes
        // nothing.
        let due: Vec<(PlayerId, Vec<Uncertain>)> = lock(pending)
            .iter()
            .map(|(player, undos)| (*player, undos.clone()))
            .collect();
        let now = Instant::now();
        for (player, undos) in due {
            for undo in undos {
                match undoer.undo(&mut nodes, player, &undo) {
                    Ok(()) => forget(pending, player, &undo),
                    Err(_) if now >= undo.give_up_at => {
                        tracing::error!(
                            player = player.0,
                            "a resume answered `unavailable` could not be undone for {UNDO_FOR:?}: its token may stay spent (the player logs in with the password)"
                        );
                        forget(pending, player, &undo);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, player = player.0, "undoing a resume: Redis still unavailable, retrying");
                    }
                }
            }
        }
        wait = (!lock(pending).is_empty()).then_some(UNDO_RETRY);
    }
}
