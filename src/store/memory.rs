//! The in-memory store: the default for a first run and for fast tests. Not durable.
//!
//! It keeps the semantics of the Redis store (leases with a TTL that expire, owner-checked
//! saves and refreshes, sequence-fenced writes, release only by the owner) so everything
//! tested against it holds on Redis too. Jobs run on a worker thread, never on the tick.
//! Several servers (apps) can share one [`MemoryBackend`] to test lease contention.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use futures_util::FutureExt;
use hearth_components::{JoinRefusal, PlayerId, PlayerRecord};

use super::StoreSettings;
use hearth_systems::storage::{
    JoinGrant, LeaseItem, PlayerStore, RefreshOutcome, RefreshResult, SaveItem, SaveOutcome,
    SaveResult, StoreCompletion, StoreInfo, StoreJob, StoreMetrics, StorePort,
};

use super::dispatch::{self, RoundTrips, StoreOperations};
use super::maintenance::{Imported, Lease as MaintenanceLease, Maintenance, MaintenanceError};

/// Time as the memory store sees it: real, or advanced by hand in tests.
#[derive(Clone)]
pub enum StoreClock {
    /// Wall-clock time since the backend was made.
    Real(Instant),
    /// Milliseconds advanced explicitly with [`StoreClock::advance`].
    Manual(Arc<AtomicU64>),
}

impl StoreClock {
    /// A clock that only moves when told to.
    pub fn manual() -> Self {
        Self::Manual(Arc::new(AtomicU64::new(0)))
    }

    /// Now, as a duration since the clock's start.
    pub fn now(&self) -> Duration {
        match self {
            Self::Real(start) => start.elapsed(),
            Self::Manual(ms) => Duration::from_millis(ms.load(Ordering::SeqCst)),
        }
    }

    /// Moves a manual clock forward; a real clock ignores it.
    pub fn advance(&self, by: Duration) {
        if let Self::Manual(ms) = self {
            ms.fetch_add(
                u64::try_from(by.as_millis()).unwrap_or(u64::MAX),
                Ordering::SeqCst,
            );
        }
    }
}

struct Lease {
    owner: String,
    expires: Duration,
}

#[derive(Default)]
struct Data {
    records: HashMap<PlayerId, (u64, Vec<u8>)>,
    leases: HashMap<PlayerId, Lease>,
    /// `save.lua`'s release markers: who last released each player with a save, at which
    /// stored sequence, until when.
    released: HashMap<PlayerId, (String, u64, Duration)>,
}

/// The shared data of the memory store: records and leases.
pub struct MemoryBackend {
    data: Mutex<Data>,
    clock: StoreClock,
}

impl MemoryBackend {
    /// A backend on the given clock.
    pub fn new(clock: StoreClock) -> Arc<Self> {
        Arc::new(Self {
            data: Mutex::default(),
            clock,
        })
    }

    /// The backend's clock.
    pub fn clock(&self) -> &StoreClock {
        &self.clock
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored record of a player, decoded.
    pub fn record(&self, player: PlayerId) -> Option<PlayerRecord> {
        let bytes = self.data().records.get(&player)?.1.clone();
        PlayerRecord::decode(&bytes).ok()
    }

    /// The stored record of a player, as bytes.
    pub fn raw_record(&self, player: PlayerId) -> Option<Vec<u8>> {
        self.data().records.get(&player).map(|r| r.1.clone())
    }

    /// Stores raw record bytes (seeding tests, migrations). The sequence is read from the
    /// record the same way the Redis save script reads it.
    pub fn put_raw_record(&self, player: PlayerId, bytes: Vec<u8>) {
        let seq = stored_seq(&bytes);
        self.data().records.insert(player, (seq, bytes));
    }

    /// The current owner of a player's lease, if it has not expired.
    pub fn lease_owner(&self, player: PlayerId) -> Option<String> {
        let now = self.clock.now();
        self.data()
            .leases
            .get(&player)
            .filter(|l| l.expires > now)
            .map(|l| l.owner.clone())
    }

    /// Gives `owner` the player's lease for `ttl` if nobody (this owner included) holds it:
    /// `resume.lua`'s rule, a resume takes the lease with the token. `Err` names the holder.
    pub fn claim_free(
        &self,
        player: PlayerId,
        owner: &str,
        ttl: Duration,
    ) -> Result<(), JoinRefusal> {
        let now = self.clock.now();
        Self::take_lease(&mut self.data(), player, owner, now, ttl, false)
    }

    /// Lets go of the player's lease if `owner` holds it for at most `left` more (a
    /// resume's short lease, not yet claimed for the full TTL by a join): `resume_undo.lua`'s
    /// rule.
    pub fn release_short(&self, player: PlayerId, owner: &str, left: Duration) {
        let now = self.clock.now();
        let mut data = self.data();
        let short = data
            .leases
            .get(&player)
            .is_some_and(|l| l.owner == owner && l.expires > now && l.expires - now <= left);
        if short {
            data.leases.remove(&player);
        }
    }

    /// Gives `owner` the lease for `ttl` from `now` unless a live holder refuses it: any
    /// holder, or (with `renew_own`) any holder but `owner`. The rule `claim.lua` and
    /// `resume.lua` share.
    fn take_lease(
        data: &mut Data,
        player: PlayerId,
        owner: &str,
        now: Duration,
        ttl: Duration,
        renew_own: bool,
    ) -> Result<(), JoinRefusal> {
        if let Some(current) =
            Self::live_owner(data, player, now).filter(|holder| !(renew_own && *holder == owner))
        {
            return Err(JoinRefusal::AlreadyOnline {
                owner: current.to_string(),
            });
        }
        data.leases.insert(
            player,
            Lease {
                owner: owner.to_string(),
                expires: now + ttl,
            },
        );
        Ok(())
    }

    /// Gives a player's lease to `owner` (simulates another server taking over).
    pub fn force_lease(&self, player: PlayerId, owner: &str, ttl: Duration) {
        let expires = self.clock.now() + ttl;
        self.data().leases.insert(
            player,
            Lease {
                owner: owner.to_string(),
                expires,
            },
        );
    }

    fn live_owner(data: &Data, player: PlayerId, now: Duration) -> Option<&str> {
        data.leases
            .get(&player)
            .filter(|l| l.expires > now)
            .map(|l| l.owner.as_str())
    }

    fn claim(
        &self,
        player: PlayerId,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, JoinRefusal> {
        let now = self.clock.now();
        let mut data = self.data();
        Self::take_lease(&mut data, player, owner, now, ttl, true)?;
        Ok(data.records.get(&player).map(|r| r.1.clone()))
    }

    /// `save.lua`'s rule: write only with the lease ours (or expired, not taken, and the
    /// record unchanged since `last_stored_seq`: then re-claim it) and a newer sequence.
    fn save(&self, owner: &str, ttl: Duration, write: RecordWrite) -> SaveOutcome {
        let RecordWrite {
            player,
            seq,
            last_stored_seq,
            bytes,
            release,
        } = write;
        let now = self.clock.now();
        let mut data = self.data();
        match Self::live_owner(&data, player, now) {
            Some(current) if current == owner => {}
            Some(_) => return SaveOutcome::LeaseLost,
            None => {
                let stored = data.records.get(&player).map_or(0, |r| r.0);
                let ours = data
                    .released
                    .get(&player)
                    .is_some_and(|(by, at, until)| by == owner && *at == stored && *until > now);
                if stored != last_stored_seq && !ours {
                    return SaveOutcome::LeaseLost;
                }
                data.leases.insert(
                    player,
                    Lease {
                        owner: owner.to_string(),
                        expires: now + ttl,
                    },
                );
            }
        }
        let outcome = match data.records.get(&player) {
            Some((stored, _)) if *stored >= seq => SaveOutcome::StaleSequence,
            _ => {
                data.records.insert(player, (seq, bytes));
                SaveOutcome::Saved
            }
        };
        if release {
            data.leases.remove(&player);
            let stored = data.records.get(&player).map_or(0, |r| r.0);
            data.released
                .insert(player, (owner.to_string(), stored, now + ttl));
        }
        outcome
    }

    /// `save_together.lua`'s rule: every write passes [`MemoryBackend::save`]'s checks, or
    /// nothing is written (the players that failed get their outcome, the others `Failed`).
    /// One lock over all of it: atomic like the script. Never releases.
    fn save_together(
        &self,
        owner: &str,
        ttl: Duration,
        writes: Vec<RecordWrite>,
    ) -> Vec<SaveOutcome> {
        let now = self.clock.now();
        let mut data = self.data();
        let checks: Vec<Option<SaveOutcome>> = writes
            .iter()
            .map(|write| {
                let stored = data.records.get(&write.player).map_or(0, |r| r.0);
                match Self::live_owner(&data, write.player, now) {
                    Some(current) if current == owner => {}
                    Some(_) => return Some(SaveOutcome::LeaseLost),
                    None if stored != write.last_stored_seq => return Some(SaveOutcome::LeaseLost),
                    None => {}
                }
                (stored >= write.seq).then_some(SaveOutcome::StaleSequence)
            })
            .collect();
        if let Some(refused) = checks.iter().position(Option::is_some) {
            let player = writes[refused].player;
            return checks
                .into_iter()
                .map(|check| {
                    check.unwrap_or_else(|| {
                        SaveOutcome::Failed(format!("saved together with player {player}, whose save was refused: nothing written"))
                    })
                })
                .collect();
        }
        writes
            .into_iter()
            .map(|write| {
                if Self::live_owner(&data, write.player, now).is_none() {
                    data.leases.insert(
                        write.player,
                        Lease {
                            owner: owner.to_string(),
                            expires: now + ttl,
                        },
                    );
                }
                data.records.insert(write.player, (write.seq, write.bytes));
                SaveOutcome::Saved
            })
            .collect()
    }

    fn refresh(&self, player: PlayerId, owner: &str, ttl: Duration) -> RefreshOutcome {
        let now = self.clock.now();
        let mut data = self.data();
        match data.leases.get_mut(&player) {
            Some(lease) if lease.owner == owner && lease.expires > now => {
                lease.expires = now + ttl;
                RefreshOutcome::Refreshed
            }
            _ => RefreshOutcome::LeaseLost,
        }
    }

    fn release(&self, player: PlayerId, owner: &str) {
        let now = self.clock.now();
        let mut data = self.data();
        if Self::live_owner(&data, player, now) == Some(owner) {
            data.leases.remove(&player);
        }
    }
}

/// The maintenance port on memory (`hearth admin`'s operations, for tests and embedders;
/// the admin command itself cannot reach another process's memory). The memory store keeps
/// no instance registrations.
impl Maintenance for Arc<MemoryBackend> {
    fn record(&mut self, player: PlayerId) -> Result<Option<String>, MaintenanceError> {
        Ok(self
            .raw_record(player)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    fn lease(&mut self, player: PlayerId) -> Result<Option<MaintenanceLease>, MaintenanceError> {
        let now = self.clock.now();
        Ok(self
            .data()
            .leases
            .get(&player)
            .filter(|l| l.expires > now)
            .map(|l| MaintenanceLease {
                owner: l.owner.clone(),
                ttl: l.expires - now,
            }))
    }

    fn leases(&mut self) -> Result<Vec<(PlayerId, String)>, MaintenanceError> {
        let now = self.clock.now();
        let data = self.data();
        let live = data.leases.iter().filter(|(_, l)| l.expires > now);
        Ok(live.map(|(id, l)| (*id, l.owner.clone())).collect())
    }

    fn registration(&mut self, _instance: &str) -> Result<Option<String>, MaintenanceError> {
        Ok(None)
    }

    /// A memory store is never shared between processes: no process it could ask about
    /// announces itself.
    fn alive(&mut self, _owner: &str) -> Result<bool, MaintenanceError> {
        Ok(false)
    }

    fn release_lease(&mut self, player: PlayerId, owner: &str) -> Result<bool, MaintenanceError> {
        let held = self.lease_owner(player).as_deref() == Some(owner);
        self.release(player, owner);
        Ok(held)
    }

    fn players(&mut self) -> Result<Vec<PlayerId>, MaintenanceError> {
        let mut players: Vec<PlayerId> = self.data().records.keys().copied().collect();
        players.sort_unstable_by_key(|p| p.0);
        Ok(players)
    }

    fn import(
        &mut self,
        record: &PlayerRecord,
        overwrite_newer: bool,
    ) -> Result<Imported, MaintenanceError> {
        let player = PlayerId(record.id);
        let stored = self.data().records.get(&player).map_or(0, |r| r.0);
        if !overwrite_newer && stored >= record.seq {
            return Ok(Imported::Kept {
                stored_seq: stored.to_string(),
            });
        }
        self.put_raw_record(player, record.encode());
        Ok(Imported::Written)
    }
}

/// Reads the save sequence from the start of a stored record (`{"version":N,"seq":S,...`),
/// like the Redis save script; a record without one counts as sequence 0.
pub fn stored_seq(bytes: &[u8]) -> u64 {
    let text = std::str::from_utf8(bytes).unwrap_or("");
    let Some(rest) = text.strip_prefix("{\"version\":") else {
        return 0;
    };
    let Some(after) = rest
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .strip_prefix(",\"seq\":")
    else {
        return 0;
    };
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

/// One record write asked of [`MemoryBackend::save`].
struct RecordWrite {
    player: PlayerId,
    seq: u64,
    last_stored_seq: u64,
    bytes: Vec<u8>,
    release: bool,
}

/// Faults a test can inject.
#[derive(Default)]
struct Faults {
    paused: bool,
    held: Vec<StoreJob>,
    failing_saves: u64,
    unavailable: bool,
}

/// One server's handle on a [`MemoryBackend`]: its instance id, lease TTL and job worker.
pub struct MemoryStore {
    shared: Arc<Shared>,
    jobs: Sender<StoreJob>,
}

struct Shared {
    backend: Arc<MemoryBackend>,
    instance: String,
    lease_ttl: Duration,
    key_prefix: String,
    metrics: Arc<StoreMetrics>,
    faults: Mutex<Faults>,
    pending: AtomicUsize,
}

impl MemoryStore {
    /// A store for the server `config` describes, on `backend`, and the port its systems
    /// use (the store completes jobs on the port's channel).
    pub fn open(backend: Arc<MemoryBackend>, config: &StoreSettings) -> (Arc<Self>, StorePort) {
        let (completions, receiver) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            backend,
            instance: config.lease_owner(),
            lease_ttl: config.lease_ttl,
            key_prefix: config.key_prefix.clone(),
            metrics: Arc::default(),
            faults: Mutex::default(),
            pending: AtomicUsize::new(0),
        });
        let (jobs, queue) = crossbeam_channel::unbounded();
        let worker = Arc::clone(&shared);
        thread::Builder::new()
            .name("hearth-memory-store".into())
            .spawn(move || {
                crate::priority::lower_this_thread(crate::priority::STORE_NICENESS);
                worker.run(queue, completions)
            })
            .expect("spawning the memory store worker");
        let store = Arc::new(Self { shared, jobs });
        let port = StorePort::new(Arc::clone(&store) as Arc<dyn PlayerStore>, receiver);
        (store, port)
    }

    /// The data behind this store.
    pub fn backend(&self) -> &Arc<MemoryBackend> {
        &self.shared.backend
    }

    /// Jobs held by [`MemoryStore::pause`].
    pub fn held_jobs(&self) -> usize {
        self.shared.faults().held.len()
    }

    /// Holds every job from now on until [`MemoryStore::resume`] (a save "in flight").
    pub fn pause(&self) {
        self.shared.faults().paused = true;
    }

    /// Runs the held jobs and stops holding.
    pub fn resume(&self) {
        let held = {
            let mut faults = self.shared.faults();
            faults.paused = false;
            std::mem::take(&mut faults.held)
        };
        for job in held {
            self.jobs.send(job).ok();
        }
    }

    /// Makes the next `count` record writes fail as if the store were unreachable.
    pub fn fail_next_saves(&self, count: u64) {
        self.shared.faults().failing_saves = count;
    }

    /// Makes every operation fail (store down) until set back.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.shared.faults().unavailable = unavailable;
    }
}

impl Shared {
    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self, queue: Receiver<StoreJob>, completions: Sender<StoreCompletion>) {
        for job in queue {
            let completion = self.execute(job);
            if completions.send(completion).is_err() {
                return; // the app is gone
            }
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Runs one job through the shared dispatch. Every operation here returns without
    /// waiting, so one poll finishes it.
    fn execute(&self, job: StoreJob) -> StoreCompletion {
        let mut ops = MemoryOps {
            shared: self,
            unavailable: self.faults().unavailable,
        };
        dispatch::execute(&mut ops, &self.metrics, job)
            .now_or_never()
            .expect("the memory store's operations never wait")
    }

    fn save(&self, item: SaveItem, unavailable: bool) -> SaveResult {
        let snapshot = &item.snapshot;
        let outcome = if unavailable || self.take_injected_failure() {
            SaveOutcome::Failed("memory store unavailable (injected)".into())
        } else {
            match snapshot.encode() {
                Ok(bytes) => self.backend.save(
                    &self.instance,
                    self.lease_ttl,
                    RecordWrite {
                        player: snapshot.player,
                        seq: snapshot.seq,
                        last_stored_seq: item.last_stored_seq,
                        bytes,
                        release: item.release,
                    },
                ),
                Err(e) => SaveOutcome::Failed(format!("encoding the record: {e}")),
            }
        };
        SaveResult {
            entity: item.entity,
            player: snapshot.player,
            seq: snapshot.seq,
            outcome,
        }
    }

    /// Every record or none (see [`MemoryBackend::save_together`]). An injected failure or a
    /// record that cannot be encoded fails the whole job, as it would on Redis (nothing sent).
    fn save_together(&self, items: Vec<SaveItem>, unavailable: bool) -> Vec<SaveResult> {
        let mut writes = Vec::with_capacity(items.len());
        let mut failure = (unavailable || self.take_injected_failure())
            .then(|| "memory store unavailable (injected)".to_string());
        for item in &items {
            match item.snapshot.encode() {
                Ok(bytes) => writes.push(RecordWrite {
                    player: item.snapshot.player,
                    seq: item.snapshot.seq,
                    last_stored_seq: item.last_stored_seq,
                    bytes,
                    release: false,
                }),
                Err(e) => {
                    failure = Some(format!(
                        "encoding the record of {}: {e}",
                        item.snapshot.player
                    ))
                }
            }
        }
        let outcomes = match failure {
            Some(reason) => vec![SaveOutcome::Failed(reason); items.len()],
            None => self
                .backend
                .save_together(&self.instance, self.lease_ttl, writes),
        };
        items
            .into_iter()
            .zip(outcomes)
            .map(|(item, outcome)| SaveResult {
                entity: item.entity,
                player: item.snapshot.player,
                seq: item.snapshot.seq,
                outcome,
            })
            .collect()
    }

    fn take_injected_failure(&self) -> bool {
        let mut faults = self.faults();
        if faults.failing_saves > 0 {
            faults.failing_saves -= 1;
            true
        } else {
            false
        }
    }

    fn refresh(&self, lease: LeaseItem, unavailable: bool) -> RefreshResult {
        let outcome = if unavailable {
            RefreshOutcome::Failed("memory store unavailable (injected)".into())
        } else {
            self.backend
                .refresh(lease.player, &self.instance, self.lease_ttl)
        };
        RefreshResult {
            entity: lease.entity,
            player: lease.player,
            outcome,
        }
    }

    fn join(&self, player: PlayerId, unavailable: bool) -> Result<JoinGrant, JoinRefusal> {
        if unavailable {
            StoreMetrics::add(&self.metrics.load_errors, 1);
            return Err(JoinRefusal::Unavailable(
                "memory store unavailable (injected)".into(),
            ));
        }
        let bytes = self.backend.claim(player, &self.instance, self.lease_ttl)?;
        StoreMetrics::add(&self.metrics.loads, 1);
        let record = match bytes
            .map(|b| PlayerRecord::decode_for(&b, player.0))
            .transpose()
        {
            Ok(record) => record,
            Err(e) => {
                self.backend.release(player, &self.instance);
                return Err(JoinRefusal::BadRecord(e.to_string()));
            }
        };
        Ok(JoinGrant {
            lease_key: format!("{}:session:{{{}}}", self.key_prefix, player.0),
            record,
        })
    }
}

/// One job's operations on the memory store. Whether the store is "down" (an injected
/// fault) is read once per job, so a job never half fails.
struct MemoryOps<'a> {
    shared: &'a Shared,
    unavailable: bool,
}

impl StoreOperations for MemoryOps<'_> {
    /// The whole batch is one round trip: one pass over the shared data.
    async fn save(&mut self, items: Vec<SaveItem>, round_trips: RoundTrips<'_>) -> Vec<SaveResult> {
        let started = Instant::now();
        let results: Vec<SaveResult> = items
            .into_iter()
            .map(|item| self.shared.save(item, self.unavailable))
            .collect();
        round_trips.record(started.elapsed(), results.len());
        results
    }

    /// One round trip: one pass under one lock.
    async fn save_together(
        &mut self,
        items: Vec<SaveItem>,
        round_trips: RoundTrips<'_>,
    ) -> Vec<SaveResult> {
        let started = Instant::now();
        let results = self.shared.save_together(items, self.unavailable);
        round_trips.record(started.elapsed(), results.len());
        results
    }

    /// The whole batch is one round trip: one pass over the shared data.
    async fn refresh(
        &mut self,
        leases: Vec<LeaseItem>,
        round_trips: RoundTrips<'_>,
    ) -> Vec<RefreshResult> {
        let started = Instant::now();
        let results: Vec<RefreshResult> = leases
            .into_iter()
            .map(|lease| self.shared.refresh(lease, self.unavailable))
            .collect();
        round_trips.record(started.elapsed(), results.len());
        results
    }

    async fn join(&mut self, _ticket: u64, player: PlayerId) -> Result<JoinGrant, JoinRefusal> {
        self.shared.join(player, self.unavailable)
    }

    async fn release(&mut self, player: PlayerId) {
        if !self.unavailable {
            self.shared.backend.release(player, &self.shared.instance);
        }
    }
}

impl PlayerStore for MemoryStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            backend: "memory",
            durable: false,
            location: "process memory".into(),
            lease_owner: self.shared.instance.clone(),
        }
    }

    fn submit(&self, job: StoreJob) {
        self.shared.pending.fetch_add(1, Ordering::SeqCst);
        let mut faults = self.shared.faults();
        if faults.paused {
            faults.held.push(job);
            return;
        }
        drop(faults);
        self.jobs.send(job).ok();
    }

    fn metrics(&self) -> &Arc<StoreMetrics> {
        &self.shared.metrics
    }

    fn pending_jobs(&self) -> usize {
        self.shared.pending.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_seq_reads_the_record_prefix() {
        assert_eq!(
            stored_seq(br#"{"version":2,"seq":17,"id":1,"sections":{}}"#),
            17
        );
        assert_eq!(stored_seq(br#"{"version":1,"id":1}"#), 0);
        assert_eq!(stored_seq(b"garbage"), 0);
    }

    #[test]
    fn leases_expire_and_only_the_owner_saves_refreshes_and_releases() {
        let backend = MemoryBackend::new(StoreClock::manual());
        let ttl = Duration::from_secs(60);
        let p = PlayerId(1);
        assert!(backend.claim(p, "a", ttl).unwrap().is_none());
        assert_eq!(
            backend.claim(p, "b", ttl),
            Err(JoinRefusal::AlreadyOnline { owner: "a".into() })
        );
        assert!(backend.claim(p, "a", ttl).is_ok(), "the owner may re-claim");
        assert_eq!(
            backend.save("b", ttl, write(p, 1, 0)),
            SaveOutcome::LeaseLost
        );
        assert_eq!(backend.save("a", ttl, write(p, 2, 0)), SaveOutcome::Saved);
        assert_eq!(
            backend.save("a", ttl, write(p, 2, 0)),
            SaveOutcome::StaleSequence
        );
        assert_eq!(backend.refresh(p, "b", ttl), RefreshOutcome::LeaseLost);
        backend.release(p, "b");
        assert_eq!(
            backend.lease_owner(p).as_deref(),
            Some("a"),
            "a non-owner cannot release"
        );
        backend.clock().advance(Duration::from_secs(61));
        assert_eq!(backend.lease_owner(p), None, "an unrefreshed lease expires");
        assert_eq!(backend.refresh(p, "a", ttl), RefreshOutcome::LeaseLost);
        assert!(
            backend.claim(p, "b", ttl).is_ok(),
            "an expired lease can be claimed by another server"
        );
    }

    fn write(player: PlayerId, seq: u64, last_stored_seq: u64) -> RecordWrite {
        RecordWrite {
            player,
            seq,
            last_stored_seq,
            bytes: format!(r#"{{"version":2,"seq":{seq},"id":1,"sections":{{}}}}"#).into_bytes(),
            release: false,
        }
    }

    #[test]
    fn a_save_re_claims_an_expired_lease_only_if_nobody_wrote_since() {
        let backend = MemoryBackend::new(StoreClock::manual());
        let ttl = Duration::from_secs(60);
        let p = PlayerId(1);
        backend.claim(p, "a", ttl).unwrap();
        assert_eq!(backend.save("a", ttl, write(p, 3, 0)), SaveOutcome::Saved);
        backend.clock().advance(Duration::from_secs(61));
        assert_eq!(
            backend.save("a", ttl, write(p, 4, 2)),
            SaveOutcome::LeaseLost,
            "the record moved on since this server's last save: not re-claimed"
        );
        assert_eq!(backend.lease_owner(p), None);
        assert_eq!(backend.save("a", ttl, write(p, 4, 3)), SaveOutcome::Saved);
        assert_eq!(backend.lease_owner(p).as_deref(), Some("a"), "re-claimed");
        backend.claim(p, "a", ttl).unwrap();
        backend.clock().advance(Duration::from_secs(30));
        assert_eq!(
            backend.save("b", ttl, write(p, 5, 4)),
            SaveOutcome::LeaseLost,
            "a live lease of another server is never taken"
        );
    }
}
