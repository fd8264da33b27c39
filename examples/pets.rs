//! Extending Hearth: a new persistent component and the gameplay system that changes it.
//!
//! `Pet` is registered with `register_persistent`; the `feed_pets` system changes it every
//! tick. Nothing here saves anything: the change marks the player dirty, the flush writes
//! the `pet` section of the record, and joining restores it.
//!
//! Run: `cargo run --example pets` (memory store; Ctrl-C to stop, which saves everyone).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bevy_app::FixedUpdate;
use bevy_ecs::prelude::*;
use hearth::components::{JoinRequest, PlayerId, ServerConfig};
use hearth::systems::PersistentAppExt;
use serde::{Deserialize, Serialize};

/// A pet that grows as it is fed. Persisted as the `pet` section of the player record.
#[derive(Component, Clone, Debug, Default, Serialize, Deserialize)]
struct Pet {
    name: String,
    meals: u64,
}

/// Gameplay: every pet eats once per tick.
fn feed_pets(mut pets: Query<&mut Pet>) {
    for mut pet in &mut pets {
        pet.meals += 1;
    }
}

/// Gives every joining player a pet.
fn adopt_pets(mut joined: MessageReader<hearth::components::PlayerJoined>, mut commands: Commands) {
    for j in joined.read() {
        commands.entity(j.entity).insert_if_new(Pet {
            name: format!("pet of {}", j.player),
            meals: 0,
        });
    }
}

fn main() {
    tracing_subscriber::fmt().init();
    let config = ServerConfig {
        instance_id: hearth::config::generate_instance_id(),
        flush_interval: std::time::Duration::from_secs(5),
        ..ServerConfig::default()
    };
    let port = hearth::store::open(&config).expect("the memory store always opens");
    let mut app = hearth::build_app(config, port);
    app.register_persistent::<Pet>("pet")
        .add_systems(FixedUpdate, feed_pets)
        .add_systems(bevy_app::Update, adopt_pets);
    app.world_mut().write_message(JoinRequest {
        player: PlayerId(1),
        origin: 0,
    });

    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).expect("Ctrl-C handler");
    std::process::exit(hearth::server::run(app, stop));
}
