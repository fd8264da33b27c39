//! Linked saves: several players made durable together (a trade, a gift), or not at all.
//!
//! A game writes [`SaveTogether`] in the system that changes the players. From then until
//! the linked save is durable the players carry [`Linked`], and no save of one of them
//! alone goes out (the flush and the immediate/final saves wait for it): a record holding
//! one side of the change without the other would, after a crash, duplicate or destroy
//! what was traded. Links that share a player are sent as one group (the shared player's
//! state holds both changes), once none of the group's players has a save in flight, as one
//! [`StoreJob::SaveTogether`] on the interactive lane: one script writing every record or
//! none. A failed group is sent again after [`PRIORITY_RETRY_DELAY`] with the newest state;
//! a group with a player lost (another server's, or despawned) is answered
//! [`TogetherOutcome::Abandoned`], and its other players save on their own again.

use std::collections::HashMap;

use bevy_ecs::prelude::*;
use bevy_ecs::resource::IsResource;
use bevy_ecs::system::SystemChangeTick;
use bevy_time::{Real, Time};
use hearth_components::{Dirty, PlayerId, SaveState, SaveTogether, SavedTogether, TogetherOutcome};

use super::{FlushSchedule, PRIORITY_RETRY_DELAY, PersistentRegistry, SnapshotSource, start_save};
use crate::storage::{SaveOutcome, SavesCompleted, StoreJob, StorePort};

/// On a player named by a linked save not durable yet: none of its saves goes out alone.
#[derive(Component, Debug)]
#[component(storage = "SparseSet")]
pub struct Linked;

/// One [`SaveTogether`] request.
#[derive(Clone, Debug)]
struct Link {
    tag: u64,
    players: Vec<Entity>,
    /// Real time before which a failed attempt is not sent again.
    retry_at: std::time::Duration,
}

/// The linked saves not durable yet: asked for (in request order) and in flight (by store
/// batch).
#[derive(Resource, Default)]
pub struct LinkedSaves {
    waiting: Vec<Link>,
    in_flight: HashMap<u64, Vec<Link>>,
}

impl LinkedSaves {
    /// Whether any link, waiting or in flight, names `entity`.
    fn names(&self, entity: Entity) -> bool {
        self.waiting
            .iter()
            .chain(self.in_flight.values().flatten())
            .any(|link| link.players.contains(&entity))
    }

    /// Linked saves not durable yet (waiting or in flight).
    pub fn pending(&self) -> usize {
        self.waiting.len() + self.in_flight.values().map(Vec::len).sum::<usize>()
    }
}

/// Takes this frame's [`SaveTogether`] requests: marks their players [`Linked`] at once
/// (before this frame's flush) and queues them. A request naming a non-player is answered
/// `Abandoned` at once.
pub(super) fn queue_links(
    time: Res<Time<Real>>,
    mut requests: MessageReader<SaveTogether>,
    players: Query<(), With<PlayerId>>,
    mut links: ResMut<LinkedSaves>,
    mut answers: MessageWriter<SavedTogether>,
    mut commands: Commands,
) {
    for request in requests.read() {
        let mut unique = Vec::with_capacity(request.players.len());
        for entity in &request.players {
            if !unique.contains(entity) {
                unique.push(*entity);
            }
        }
        if let Some(missing) = unique.iter().find(|e| players.get(**e).is_err()) {
            answers.write(SavedTogether {
                tag: request.tag,
                players: request.players.clone(),
                outcome: TogetherOutcome::Abandoned { entity: *missing },
            });
            continue;
        }
        for entity in &unique {
            commands.entity(*entity).insert(Linked);
        }
        links.waiting.push(Link {
            tag: request.tag,
            players: unique,
            retry_at: time.elapsed(),
        });
    }
}

/// Sends every group of waiting links (links sharing a player form one group) whose players
/// all exist and have no save in flight, as one [`StoreJob::SaveTogether`] each. A link
/// naming a player that is gone is abandoned first.
#[allow(clippy::too_many_arguments)]
pub(super) fn send_links(
    time: Res<Time<Real>>,
    ticks: SystemChangeTick,
    registry: Res<PersistentRegistry>,
    port: Res<StorePort>,
    mut schedule: ResMut<FlushSchedule>,
    mut links: ResMut<LinkedSaves>,
    mut players: Query<(&PlayerId, &mut SaveState, SnapshotSource), Without<IsResource>>,
    mut answers: MessageWriter<SavedTogether>,
    mut commands: Commands,
) {
    if links.waiting.is_empty() {
        return;
    }
    let now = time.elapsed();
    let waiting = std::mem::take(&mut links.waiting);
    let mut live = Vec::with_capacity(waiting.len());
    let mut abandoned = Vec::new();
    for link in waiting {
        match link.players.iter().copied().find(|e| !players.contains(*e)) {
            Some(gone) => abandoned.push((link, gone)),
            None => live.push(link),
        }
    }
    for group in groups(live) {
        let ready = group.iter().all(|link| link.retry_at <= now)
            && group
                .iter()
                .flat_map(|link| &link.players)
                .all(|e| players.get(*e).is_ok_and(|p| p.1.in_flight.is_none()));
        if !ready {
            links.waiting.extend(group);
            continue;
        }
        let mut members: Vec<Entity> = Vec::new();
        for entity in group.iter().flat_map(|link| &link.players) {
            if !members.contains(entity) {
                members.push(*entity);
            }
        }
        let mut items = Vec::with_capacity(members.len());
        for entity in &members {
            let Ok((player, mut state, source)) = players.get_mut(*entity) else {
                continue; // checked above
            };
            items.push(start_save(
                &registry,
                *entity,
                *player,
                &mut state,
                Vec::new(),
                false,
                ticks.this_run(),
                &source,
            ));
            commands.entity(*entity).remove::<Dirty>();
        }
        let batch = schedule.take_batch_id();
        links.in_flight.insert(batch, group);
        port.submit(StoreJob::SaveTogether { batch, items });
    }
    for (link, gone) in abandoned {
        finish(
            &links,
            &link,
            TogetherOutcome::Abandoned { entity: gone },
            &mut answers,
            &mut commands,
        );
    }
}

/// Answers the linked saves the store completed: all saved, `Saved`; a player lost or stale,
/// `Abandoned` (its drop is `apply_save_results`'s); otherwise (failed, unknown) the group
/// waits [`PRIORITY_RETRY_DELAY`] and goes again with the newest state.
pub(super) fn apply_link_results(
    time: Res<Time<Real>>,
    mut completed: MessageReader<SavesCompleted>,
    mut links: ResMut<LinkedSaves>,
    mut answers: MessageWriter<SavedTogether>,
    mut commands: Commands,
) {
    let retry_at = time.elapsed() + PRIORITY_RETRY_DELAY;
    for done in completed.read() {
        let Some(group) = links.in_flight.remove(&done.batch) else {
            continue;
        };
        let refused = done.results.iter().find(|r| {
            matches!(
                r.outcome,
                SaveOutcome::LeaseLost | SaveOutcome::StaleSequence
            )
        });
        if let Some(refused) = refused {
            for link in &group {
                let outcome = TogetherOutcome::Abandoned {
                    entity: refused.entity,
                };
                finish(&links, link, outcome, &mut answers, &mut commands);
            }
        } else if done.results.iter().all(|r| r.outcome == SaveOutcome::Saved) {
            for link in &group {
                finish(
                    &links,
                    link,
                    TogetherOutcome::Saved,
                    &mut answers,
                    &mut commands,
                );
            }
        } else {
            links
                .waiting
                .extend(group.into_iter().map(|link| Link { retry_at, ..link }));
        }
    }
}

/// Answers `link` and takes [`Linked`] off its players that no other link names.
fn finish(
    links: &LinkedSaves,
    link: &Link,
    outcome: TogetherOutcome,
    answers: &mut MessageWriter<SavedTogether>,
    commands: &mut Commands,
) {
    for &entity in &link.players {
        if !links.names(entity) {
            commands.queue(move |world: &mut World| {
                if let Ok(mut entity) = world.get_entity_mut(entity) {
                    entity.remove::<Linked>();
                }
            });
        }
    }
    answers.write(SavedTogether {
        tag: link.tag,
        players: link.players.clone(),
        outcome,
    });
}

/// Splits links into groups that share no player (links sharing one, directly or through
/// others, in one group), each group in request order.
fn groups(links: Vec<Link>) -> Vec<Vec<Link>> {
    let mut groups: Vec<Vec<Link>> = Vec::new();
    for link in links {
        let (mut joined, rest): (Vec<Vec<Link>>, Vec<Vec<Link>>) =
            groups.into_iter().partition(|group| {
                group
                    .iter()
                    .any(|other| other.players.iter().any(|p| link.players.contains(p)))
            });
        let mut merged: Vec<Link> = joined.drain(..).flatten().collect();
        merged.push(link);
        groups = rest;
        groups.push(merged);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(tag: u64, players: &[u32]) -> Link {
        Link {
            tag,
            players: players
                .iter()
                .map(|i| Entity::from_raw_u32(*i).expect("a valid index"))
                .collect(),
            retry_at: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn links_sharing_a_player_directly_or_through_others_form_one_group() {
        let groups = groups(vec![
            link(1, &[1, 2]),
            link(2, &[3, 4]),
            link(3, &[5, 6]),
            link(4, &[2, 3]),
        ]);
        let tags: Vec<Vec<u64>> = groups
            .iter()
            .map(|g| {
                let mut tags: Vec<u64> = g.iter().map(|l| l.tag).collect();
                tags.sort_unstable();
                tags
            })
            .collect();
        assert_eq!(tags.len(), 2, "{tags:?}");
        assert!(tags.contains(&vec![1, 2, 4]), "{tags:?}");
        assert!(tags.contains(&vec![3]), "{tags:?}");
    }
}
