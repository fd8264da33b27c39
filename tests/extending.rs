//! A user's own persistent component, registered with `register_persistent`, is saved and
//! restored with no persistence code of its own (as the arena's `Inventory` is, in
//! examples/arena).

use bevy_app::FixedUpdate;
use bevy_ecs::prelude::*;
use hearth::components::{Dirty, PlayerId};
use hearth::systems::PersistentAppExt;
use hearth::testing::{TestServer, test_config};
use serde::{Deserialize, Serialize};

#[derive(Component, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Pet {
    name: String,
    meals: u64,
}

fn feed_pets(mut pets: Query<&mut Pet>) {
    for mut pet in &mut pets {
        pet.meals += 1;
    }
}

fn server() -> TestServer {
    TestServer::with_setup(test_config("a"), |app| {
        app.register_persistent::<Pet>("pet")
            .add_systems(FixedUpdate, feed_pets);
    })
}

#[test]
fn a_registered_component_is_persisted_by_change_detection_alone() {
    let mut server = server();
    let p = PlayerId(3);
    let e = server.join(p);
    server.world_mut().entity_mut(e).insert(Pet {
        name: "rex".into(),
        meals: 0,
    });
    server.frame();
    assert!(
        server.world().get::<Dirty>(e).is_some(),
        "a change to a user component marks the player dirty"
    );
    server.advance_secs(31.0);
    let record = server.stored(p).expect("flushed");
    assert_eq!(record.sections["pet"]["name"], "rex");
    let meals = record.sections["pet"]["meals"].as_u64().unwrap();
    assert!(meals > 0, "the gameplay system's changes were saved");

    server.leave(e);
    let saved = server.stored(p).unwrap().sections["pet"].clone();
    let e = server.join(p);
    let pet = server.world().get::<Pet>(e).unwrap().clone();
    assert_eq!(pet.name, saved["name"]);
    let saved_meals = saved["meals"].as_u64().unwrap();
    // The join frame's fixed ticks already fed the pet a few times.
    assert!(
        (saved_meals..saved_meals + 10).contains(&pet.meals),
        "joining restores the saved section ({saved_meals} meals), got {}",
        pet.meals
    );
}

#[test]
fn a_section_that_does_not_fit_the_component_refuses_the_join_and_keeps_the_record() {
    let mut server = server();
    let p = PlayerId(4);
    let bad = br#"{"version":2,"seq":2,"id":4,"sections":{"pet":{"name":17}}}"#;
    server.store().put_raw_record(p, bad.to_vec());
    let refused = server.try_join(p).unwrap_err();
    assert!(
        matches!(refused, hearth::components::JoinRefusal::BadRecord(_)),
        "{refused:?}"
    );
    assert_eq!(
        server.store().raw_record(p).unwrap(),
        bad.to_vec(),
        "the record is left untouched"
    );
    server.frame();
    assert_eq!(
        server.store().lease_owner(p),
        None,
        "the lease claimed for the join is released"
    );
}
