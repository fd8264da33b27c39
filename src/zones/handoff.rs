//! Handoffs on the tick: a player whose position is in another zone (it walked across a
//! border, or its stored position is there when it joins) leaves this server with a final
//! save and is handed to the server of that zone ([`super::worker`]); its client is told
//! where to go (`handoff`). Towards a zone no live process serves, a walking player stays at
//! the border of this zone (told `zone_unavailable`), and a joining one is refused
//! (`unavailable`, naming the zone).

use std::collections::HashMap;
use std::time::Duration;

use bevy_ecs::prelude::*;
use bevy_time::{Real, Time};
use hearth_components::protocol::{ErrorCode, ServerMessage};
use hearth_components::{Leaving, PlayerId, PlayerLeft, Position};
use hearth_systems::net::{Connections, HandingOff, HandoffDue};

use super::ServedZone;
use super::worker::{HandOverJob, ZoneDirectory, ZonesWorker};
use crate::net::resume;
use crate::store::ResumeTokenLifetime;
use crate::store::zones::{HandOver, ZoneHolder};

/// How far inside its zone a player refused at the border is put back (world units).
const BORDER_MARGIN: f32 = 1e-3;
/// A player pushing at a border towards an unserved zone is told so at most this often.
const REFUSAL_EVERY: Duration = Duration::from_secs(2);

/// Where a player marked [`HandingOff`] is going.
enum Destination {
    Served {
        zone: String,
        holder: ZoneHolder,
    },
    /// Its stored position is in a zone nobody serves: the join is refused.
    Unserved {
        zone: String,
    },
}

/// The destinations of players handing off, until their final save is durable.
#[derive(Resource, Default)]
pub struct PendingHandoffs(HashMap<PlayerId, Destination>);

/// When a player at the border was last told the zone beyond has no server.
#[derive(Component)]
pub struct BorderRefused {
    at: Duration,
}

/// Finds players whose position is in another zone and starts their handoff, or keeps them
/// at the border when that zone has no live server.
#[allow(clippy::type_complexity)]
pub fn detect_crossings(
    served: Res<ServedZone>,
    directory: Res<ZoneDirectory>,
    time: Res<Time<Real>>,
    connections: Res<Connections>,
    mut pending: ResMut<PendingHandoffs>,
    mut players: Query<
        (Entity, &PlayerId, Mut<Position>, Option<&mut BorderRefused>),
        (Changed<Position>, Without<Leaving>, Without<HandingOff>),
    >,
    mut commands: Commands,
) {
    for (entity, player, mut position, refused) in &mut players {
        let Some(zone) = served.map.zone_at(position.x, position.y) else {
            continue; // outside the world: the game's to keep players in
        };
        if zone.name == served.zone.name {
            continue;
        }
        let zone = zone.name.clone();
        if let Some(holder) = directory.live_holder(&zone) {
            pending
                .0
                .insert(*player, Destination::Served { zone, holder });
            commands.entity(entity).insert(HandingOff);
        } else if position.is_added() {
            // Joined with a stored position in an unserved zone: nowhere to play it.
            pending.0.insert(*player, Destination::Unserved { zone });
            commands.entity(entity).insert(HandingOff);
        } else {
            let (min, max) = (served.zone.min, served.zone.max);
            let inside = |v: f32, i: usize| v.clamp(min[i], max[i] - BORDER_MARGIN);
            *position = Position {
                x: inside(position.x, 0),
                y: inside(position.y, 1),
            };
            let now = time.elapsed();
            let due = refused.as_ref().is_none_or(|r| now >= r.at + REFUSAL_EVERY);
            if due {
                let message = format!(
                    "zone {zone:?} has no server now; you stay in {:?}",
                    served.zone.name
                );
                connections.queue(
                    entity,
                    ServerMessage::error(ErrorCode::ZoneUnavailable, message),
                );
                match refused {
                    Some(mut refused) => refused.at = now,
                    None => {
                        commands.entity(entity).insert(BorderRefused { at: now });
                    }
                }
            }
        }
    }
}

/// Hands over the players whose final save is durable ([`HandoffDue`]): a token for the
/// client, and the lease to the destination, on the zones worker. A joining player stored
/// in an unserved zone is answered `unavailable`.
pub fn send_hand_overs(
    mut due: MessageReader<HandoffDue>,
    mut left: MessageReader<PlayerLeft>,
    mut pending: ResMut<PendingHandoffs>,
    worker: Res<ZonesWorker>,
    lifetime: Res<ResumeTokenLifetime>,
    mut connections: ResMut<Connections>,
) {
    for d in due.read() {
        match pending.0.remove(&d.player) {
            Some(Destination::Served { zone, holder }) => {
                let issued = resume::issue(d.player.0);
                worker.submit(HandOverJob {
                    conn: d.conn,
                    outbox: connections.handoff_outbox(d.conn),
                    player: d.player,
                    zone,
                    holder,
                    token: issued.token,
                    hash: issued.hash,
                    token_ttl: lifetime.0,
                });
            }
            Some(Destination::Unserved { zone }) => {
                let message = format!(
                    "your player is in zone {zone:?}, which no server serves now; try again later"
                );
                connections.answer_handoff(
                    d.conn,
                    ServerMessage::error(ErrorCode::Unavailable, message),
                );
            }
            None => {
                connections.answer_handoff(d.conn, failed());
            }
        }
    }
    // A player whose connection closed while it handed off: nobody to answer.
    for l in left.read() {
        pending.0.remove(&l.player);
    }
}

/// Tells each handed-over player's client where to go (or that it must log in again); the
/// worker sent a `handoff` itself when it could.
pub fn finish_hand_overs(worker: Res<ZonesWorker>, mut connections: ResMut<Connections>) {
    for done in worker.done.try_iter() {
        let job = done.job;
        if done.sent {
            tracing::debug!(player = %job.player, zone = %job.zone, "handed over");
            connections.handoff_answered(job.conn);
            continue;
        }
        let answer = match done.outcome {
            Ok(HandOver::Done) => {
                tracing::debug!(player = %job.player, zone = %job.zone, "handed over");
                job.message()
            }
            Ok(HandOver::Refused) => {
                tracing::info!(player = %job.player, zone = %job.zone, "handoff refused: the player was held or written elsewhere meanwhile");
                failed()
            }
            Err(e) => {
                tracing::warn!(player = %job.player, zone = %job.zone, error = %e, "handoff failed: the store did not answer");
                failed()
            }
        };
        connections.answer_handoff(job.conn, answer);
    }
}

/// What a client whose handoff did not happen is told: its progress is saved, it logs in
/// again (and is sent where its player is).
fn failed() -> ServerMessage {
    ServerMessage::error(
        ErrorCode::Unavailable,
        "the handoff to the next zone failed; your progress is saved: log in again",
    )
}
