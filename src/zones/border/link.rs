//! The border link: threads of their own, each with its own Redis connection, so the tick
//! never waits on the network. The publisher takes each replication round from the feed (as
//! the connection tasks do), keeps this zone's strip and publishes it on the zone's channel;
//! a subscriber per neighbour listens on its channel (on a cluster each channel is on its own
//! slot's master), decodes what arrives into remote entities' parts and leaves the latest
//! snapshot of each neighbour in the [`Mailbox`], from which the tick swaps it in. All
//! reconnect on their own after Redis fails.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bevy_ecs::resource::Resource;
use hearth_components::PlayerId;
use hearth_systems::replication::{
    EncodedReplica, InterestTags, ReplicatedComponent, ReplicationFeed, ReplicationRound,
};
use tokio::sync::watch;

use super::snapshot::{BorderSnapshot, Strip, replica};
use crate::store::redis::border::{BorderBus, next_message};

/// How long a reading subscriber waits before it looks whether the link stopped.
const READ_TIMEOUT: Duration = Duration::from_millis(250);
/// How long after a failed connection the link tries again.
const RECONNECT_AFTER: Duration = Duration::from_millis(200);

/// A neighbour's strip as received: its players, ready to become remote entities.
pub struct Received {
    pub zone: String,
    pub at: Instant,
    /// When the sender took it ([`BorderSnapshot::taken_us`]).
    pub taken_us: u64,
    pub players: Vec<(PlayerId, InterestTags, EncodedReplica)>,
}

/// The latest snapshot of each neighbour not yet taken by the tick.
#[derive(Resource, Clone, Default)]
pub struct Mailbox(Arc<Mutex<HashMap<String, Received>>>);

impl Mailbox {
    /// The snapshots received since the last call (the latest of each neighbour).
    pub fn take(&self) -> Vec<Received> {
        let mut latest = self.0.lock().unwrap_or_else(|p| p.into_inner());
        latest.drain().map(|(_, received)| received).collect()
    }

    pub(super) fn put(&self, received: Received) {
        let mut latest = self.0.lock().unwrap_or_else(|p| p.into_inner());
        latest.insert(received.zone.clone(), received);
    }
}

/// The running link; its threads stop when this is dropped (the publisher also when the
/// feed goes).
#[derive(Resource)]
pub struct BorderLink {
    stop: Arc<AtomicBool>,
}

impl Drop for BorderLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl BorderLink {
    /// Starts publishing `zone`'s strip and receiving its neighbours' into `mailbox`.
    pub fn start(
        bus: BorderBus,
        zone: String,
        strip: Strip,
        feed: &ReplicationFeed,
        components: Vec<ReplicatedComponent>,
        mailbox: Mailbox,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = feed.subscribe();
        let channels: Vec<String> = strip.neighbours().map(|z| bus.channel(z)).collect();
        let (publisher_bus, publisher_stop) = (bus.clone(), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("hearth-border-pub".into())
            .spawn(move || publish(&publisher_bus, &zone, &strip, rounds, &publisher_stop))?;
        let components: Arc<[ReplicatedComponent]> = Arc::from(components);
        for channel in channels {
            let (bus, components, mailbox) =
                (bus.clone(), Arc::clone(&components), mailbox.clone());
            let subscriber_stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("hearth-border-sub".into())
                .spawn(move || {
                    subscribe(&bus, &channel, &components, &mailbox, &subscriber_stop);
                })?;
        }
        Ok(Self { stop })
    }
}

/// Publishes the strip of every round until the feed ends or the link stops. A round that
/// cannot be published is dropped (the next one carries the full state anyway).
fn publish(
    bus: &BorderBus,
    zone: &str,
    strip: &Strip,
    mut rounds: watch::Receiver<Arc<ReplicationRound>>,
    stop: &AtomicBool,
) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
        tracing::error!("border sharing: no runtime for the publisher");
        return;
    };
    let channel = bus.channel(zone);
    let mut connection = None;
    while !stop.load(Ordering::Relaxed) && runtime.block_on(rounds.changed()).is_ok() {
        let round = Arc::clone(&rounds.borrow_and_update());
        let snapshot = strip.snapshot(zone, &round, unix_us(SystemTime::now()));
        let Ok(bytes) = rmp_serde::to_vec(&snapshot) else {
            continue;
        };
        if connection.is_none() {
            connection = bus
                .connect(&channel, READ_TIMEOUT)
                .inspect_err(|e| tracing::debug!(error = %e, "border publisher cannot connect"))
                .ok();
        }
        let Some(c) = connection.as_mut() else {
            continue;
        };
        if let Err(e) = bus.publish(c, &channel, &bytes) {
            tracing::debug!(error = %e, "border snapshot not published; reconnecting");
            connection = None;
        }
    }
}

/// Receives one neighbour's snapshots (on `channel`) until the link stops, reconnecting
/// after failures (on a cluster, to the master its slot has then).
fn subscribe(
    bus: &BorderBus,
    channel: &str,
    components: &[ReplicatedComponent],
    mailbox: &Mailbox,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let mut connection = match bus.connect(channel, READ_TIMEOUT) {
            Ok(connection) => connection,
            Err(e) => {
                tracing::debug!(error = %e, "border subscriber cannot connect");
                std::thread::sleep(RECONNECT_AFTER);
                continue;
            }
        };
        if let Err(e) = bus.subscribe(&mut connection, channel) {
            tracing::debug!(error = %e, "border subscriber cannot subscribe");
            std::thread::sleep(RECONNECT_AFTER);
            continue;
        }
        while !stop.load(Ordering::Relaxed) {
            match next_message(&mut connection) {
                Ok(Some(payload)) => receive(&payload, components, mailbox),
                Ok(None) => {}
                Err(e) if e.is_timeout() => {}
                Err(e) => {
                    tracing::debug!(error = %e, "border subscriber lost Redis; reconnecting");
                    std::thread::sleep(RECONNECT_AFTER);
                    break;
                }
            }
        }
    }
}

/// Decodes one snapshot into the mailbox; one that is not a snapshot is logged and dropped.
fn receive(payload: &[u8], components: &[ReplicatedComponent], mailbox: &Mailbox) {
    let snapshot: BorderSnapshot = match rmp_serde::from_slice(payload) {
        Ok(snapshot) => snapshot,
        Err(e) => {
            tracing::warn!(error = %e, "a border message that is not a snapshot was dropped");
            return;
        }
    };
    mailbox.put(Received {
        zone: snapshot.zone,
        at: Instant::now(),
        taken_us: snapshot.taken_us,
        players: snapshot
            .players
            .into_iter()
            .map(|player| replica(player, components))
            .collect(),
    });
}

/// Microseconds since the Unix epoch (0 for a clock before it).
pub fn unix_us(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
