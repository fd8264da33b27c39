//! Neighbours across a zone border (issue 20, item 4): each zone's process publishes the
//! players in its border strip ([`snapshot`]) through Redis Pub/Sub, 20 times a second, and
//! keeps its neighbours' as **remote entities**: local entities with a [`Remote`] marker and
//! their replicated values as the neighbour encoded them ([`EncodedReplica`]). They are not
//! players (no `PlayerId`, no lease, never saved) and carry no game component, so no game
//! system moves them; replication sends them to clients exactly like local entities.
//! Publishing and receiving run on the link's own threads ([`link`]); the tick only swaps in
//! the latest snapshot of each neighbour.

mod link;
mod snapshot;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bevy_app::{App, PreUpdate};
use bevy_ecs::prelude::*;
use hearth_components::PlayerId;
use hearth_systems::net::NetSystems;
use hearth_systems::replication::{
    EncodedReplica, InterestTags, ReplicationFeed, ReplicationRegistry,
};
use hearth_systems::sessions::{OnlinePlayers, SessionSystems};

use hearth_systems::storage::LatencyHistogram;

use self::link::{BorderLink, Mailbox, Received, unix_us};
use self::snapshot::Strip;
use super::ServedZone;
use crate::store::redis::border::BorderBus;

/// How long a neighbour may stay silent before its remote entities are despawned (its
/// process died or lost Redis): twenty of its snapshots.
pub const SILENCE: Duration = Duration::from_secs(1);

/// An entity that is a neighbouring zone's player near the border, as its latest snapshot
/// shows it: read-only here (its own process owns it).
#[derive(Component, Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    /// The zone whose process serves it.
    pub zone: String,
    /// The player it is (not a `PlayerId` component: it is no player of this process).
    pub player: PlayerId,
}

/// How old each neighbour's snapshot is when the tick swaps it in (from its round there to
/// its remote entities here; they reach this process's next round, like any change here):
/// the `hearth_border_snapshot_age_seconds` histogram.
#[derive(Resource, Clone, Default)]
pub struct BorderSnapshotAge(pub Arc<LatencyHistogram>);

/// The remote entities by player (with the zone each came from), and when each neighbour
/// was last heard.
#[derive(Resource, Default)]
struct Remotes {
    entities: HashMap<PlayerId, (Entity, String)>,
    heard: HashMap<String, Instant>,
}

/// Adds the tick's side of border sharing (the swap-in system); the link starts in
/// [`start`].
pub(super) fn build(app: &mut App) {
    app.init_resource::<Mailbox>()
        .init_resource::<Remotes>()
        .init_resource::<BorderSnapshotAge>()
        .add_systems(
            PreUpdate,
            // After this frame's joins: a player who just arrived here is a remote entity no
            // more in the same frame, so no round holds it twice.
            apply_snapshots
                .after(NetSystems::Receive)
                .after(SessionSystems::ApplyResults)
                .run_if(resource_exists::<BorderLink>),
        );
}

/// Starts the link when the process shares borders: it serves a zone on a single Redis
/// ([`BorderBus`]) and its game replicates something.
pub(super) fn start(app: &mut App) {
    let world = app.world();
    let (Some(bus), Some(served), Some(feed), Some(registry)) = (
        world.get_resource::<BorderBus>(),
        world.get_resource::<ServedZone>(),
        world.get_resource::<ReplicationFeed>(),
        world.get_resource::<ReplicationRegistry>(),
    ) else {
        return;
    };
    let radius = feed.latest().settings().radius;
    let strip = Strip::new(&served.map, &served.zone, radius);
    let started = BorderLink::start(
        bus.clone(),
        served.zone.name.clone(),
        strip,
        feed,
        registry.components().to_vec(),
        world.resource::<Mailbox>().clone(),
    );
    match started {
        Ok(link) => {
            app.insert_resource(link);
        }
        Err(e) => tracing::error!(error = %e, "border sharing is off: its threads did not start"),
    }
}

/// Swaps in the neighbours' latest snapshots: remote entities spawned, updated (only what
/// changed is marked changed) and despawned when absent from their zone's latest snapshot,
/// when their zone fell silent for [`SILENCE`], or when the player is online here (handed
/// over: a client never sees it twice).
fn apply_snapshots(
    mut commands: Commands,
    mailbox: Res<Mailbox>,
    mut remotes: ResMut<Remotes>,
    age: Res<BorderSnapshotAge>,
    online: Option<Res<OnlinePlayers>>,
    mut entities: Query<(&mut EncodedReplica, &mut InterestTags), With<Remote>>,
) {
    let here = |player: PlayerId| online.as_ref().is_some_and(|o| o.entity(player).is_some());
    let now = Instant::now();
    for received in mailbox.take() {
        let taken =
            Duration::from_micros(unix_us(SystemTime::now()).saturating_sub(received.taken_us));
        age.0.record(taken);
        remotes.heard.insert(received.zone.clone(), received.at);
        apply(&mut commands, &mut remotes, &mut entities, received, &here);
    }
    let Remotes {
        entities: by_player,
        heard,
    } = &mut *remotes;
    heard.retain(|_, at| now.duration_since(*at) < SILENCE);
    by_player.retain(|&player, (entity, zone)| {
        let keep = !here(player) && heard.contains_key(zone);
        if !keep {
            commands.entity(*entity).try_despawn();
        }
        keep
    });
}

/// One neighbour's snapshot: its players in, its others out.
fn apply(
    commands: &mut Commands,
    remotes: &mut Remotes,
    entities: &mut Query<(&mut EncodedReplica, &mut InterestTags), With<Remote>>,
    received: Received,
    here: &impl Fn(PlayerId) -> bool,
) {
    let mut present = Vec::with_capacity(received.players.len());
    for (player, tags, replica) in received.players {
        if here(player) {
            continue;
        }
        present.push(player);
        let existing = match remotes.entities.get(&player) {
            Some((entity, zone)) if *zone == received.zone => Some(*entity),
            Some((entity, _)) => {
                // It came from another neighbour until now (it walked from there): a new
                // entity of this zone's.
                commands.entity(*entity).try_despawn();
                None
            }
            None => None,
        };
        match existing.and_then(|entity| entities.get_mut(entity).ok()) {
            Some((mut values, mut old_tags)) => {
                values.set_if_neq(replica);
                old_tags.set_if_neq(tags);
            }
            None => {
                let remote = Remote {
                    zone: received.zone.clone(),
                    player,
                };
                let entity = commands.spawn((remote, replica, tags)).id();
                remotes
                    .entities
                    .insert(player, (entity, received.zone.clone()));
            }
        }
    }
    present.sort_unstable_by_key(|p| p.0);
    remotes.entities.retain(|player, (entity, zone)| {
        let keep =
            *zone != received.zone || present.binary_search_by_key(&player.0, |p| p.0).is_ok();
        if !keep {
            commands.entity(*entity).try_despawn();
        }
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_systems::replication::EncodedValue;
    use serde_json::value::RawValue;

    fn player(id: u64, x: f32) -> (PlayerId, InterestTags, EncodedReplica) {
        let json = RawValue::from_string(format!(r#"{{"x":{x},"y":0.0}}"#)).unwrap();
        let value = EncodedValue {
            binary: x.to_le_bytes().into(),
            json,
        };
        let replica = EncodedReplica {
            at: (x, 0.0),
            values: vec![Some(value)],
        };
        (PlayerId(id), InterestTags::default(), replica)
    }

    fn app() -> App {
        let mut app = App::new();
        app.init_resource::<Mailbox>()
            .init_resource::<Remotes>()
            .init_resource::<BorderSnapshotAge>()
            .init_resource::<OnlinePlayers>()
            .add_systems(bevy_app::Update, apply_snapshots);
        app
    }

    fn receive(
        app: &mut App,
        zone: &str,
        at: Instant,
        players: Vec<(PlayerId, InterestTags, EncodedReplica)>,
    ) {
        app.world().resource::<Mailbox>().put(Received {
            zone: zone.into(),
            at,
            taken_us: unix_us(SystemTime::now()),
            players,
        });
        app.update();
    }

    /// The remote entities: player → (entity, x).
    fn remotes(app: &mut App) -> HashMap<u64, (Entity, f32)> {
        app.world_mut()
            .query::<(Entity, &Remote, &EncodedReplica)>()
            .iter(app.world())
            .map(|(entity, remote, replica)| (remote.player.0, (entity, replica.at.0)))
            .collect()
    }

    #[test]
    fn snapshots_spawn_update_and_despawn_remote_entities() {
        let mut app = app();
        receive(
            &mut app,
            "east",
            Instant::now(),
            vec![player(1, 3.0), player(2, 4.0)],
        );
        let first = remotes(&mut app);
        assert_eq!(first.len(), 2);
        assert_eq!(first[&1].1, 3.0);

        // 1 moved, 2 left the strip: the same entity for 1, none for 2.
        receive(&mut app, "east", Instant::now(), vec![player(1, 5.0)]);
        let second = remotes(&mut app);
        assert_eq!(second.len(), 1);
        assert_eq!(second[&1], (first[&1].0, 5.0));

        // Another neighbour's snapshot leaves east's entities alone.
        receive(&mut app, "north", Instant::now(), vec![player(3, 0.0)]);
        assert_eq!(remotes(&mut app).len(), 2);
        assert_eq!(
            app.world()
                .resource::<BorderSnapshotAge>()
                .0
                .summary()
                .count,
            3,
            "each snapshot's age is recorded"
        );
    }

    #[test]
    fn a_silent_neighbour_s_entities_go() {
        let mut app = app();
        receive(&mut app, "east", Instant::now(), vec![player(1, 3.0)]);
        receive(
            &mut app,
            "north",
            Instant::now() - SILENCE,
            vec![player(3, 0.0)],
        );
        let left = remotes(&mut app);
        assert_eq!(
            left.keys().collect::<Vec<_>>(),
            vec![&1],
            "north was last heard {SILENCE:?} ago"
        );
    }
}
