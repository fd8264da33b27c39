//! The Bevy client plugin, headless: two client `App`s (bevy_app and bevy_ecs, no renderer)
//! against one server in this process. One player moves; the other's App gets the entity
//! with the new `Position`.

mod common;

use std::time::{Duration, Instant};

use bevy_app::App;
use bevy_ecs::prelude::*;
use common::{WAIT, demo_server};
use hearth::components::Position;
use hearth_client::bevy::{
    HearthClient, HearthClientPlugin, HearthEvent, ReplicateFromServer, Replicated, You,
};
use hearth_client::{ClientError, ErrorCode};
use serde::{Deserialize, Serialize};

/// The client's own component for the replicated `player_id`.
#[derive(Component, Deserialize, Clone, Copy, Debug, PartialEq)]
struct PlayerId(u64);

/// The demo game's `move`.
#[derive(Serialize)]
struct Move {
    dx: f32,
    dy: f32,
}

/// Every `HearthEvent` an App has read, kept for the test.
#[derive(Resource, Default)]
struct Heard(Vec<HearthEvent>);

fn hear(mut events: MessageReader<HearthEvent>, mut heard: ResMut<Heard>) {
    heard.0.extend(events.read().cloned());
}

fn client_app(addr: std::net::SocketAddr) -> App {
    let mut app = App::new();
    app.add_plugins(HearthClientPlugin::new(addr))
        .replicate_from_server::<Position>("position")
        .replicate_from_server::<PlayerId>("player_id")
        .init_resource::<Heard>()
        .add_systems(bevy_app::Update, hear);
    app
}

/// Updates `app` (as its own loop would, a few ms apart) until `done` finds what it wants.
fn update_until<T>(app: &mut App, what: &str, mut done: impl FnMut(&mut World) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        app.update();
        if let Some(out) = done(app.world_mut()) {
            return out;
        }
        assert!(Instant::now() < deadline, "no {what} within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The answer the App heard that `pick` picks.
fn heard<T>(world: &mut World, pick: impl Fn(&HearthEvent) -> Option<T>) -> Option<T> {
    world.resource::<Heard>().0.iter().find_map(pick)
}

/// Registers and logs in through the plugin; the player id.
fn join(app: &mut App, name: &str) -> u64 {
    update_until(app, "the connection", |w| {
        heard(w, |e| matches!(e, HearthEvent::Connected).then_some(()))
    });
    app.world()
        .resource::<HearthClient>()
        .register(name, "password1");
    let id = update_until(app, "registered", |w| {
        heard(w, |e| match e {
            HearthEvent::Registered(answer) => Some(answer.clone().expect("registered")),
            _ => None,
        })
    });
    app.world()
        .resource::<HearthClient>()
        .login(name, "password1");
    let logged_in = update_until(app, "logged in", |w| {
        heard(w, |e| match e {
            HearthEvent::LoggedIn(answer) => Some(answer.clone().expect("logged in")),
            _ => None,
        })
    });
    assert_eq!(logged_in.player_id, id);
    id
}

/// Where `player` stands in `world`'s mirror, if mirrored.
fn mirrored(world: &mut World, player: u64) -> Option<Position> {
    let mut query = world.query::<(&Replicated, &PlayerId, &Position)>();
    query
        .iter(world)
        .find(|(_, id, _)| id.0 == player)
        .map(|(_, _, position)| *position)
}

#[test]
fn two_client_apps_see_each_other_move() {
    let server = demo_server("bevy-clients");
    let mut alice = client_app(server.game_addr());
    let mut bob = client_app(server.game_addr());
    let alice_id = join(&mut alice, "alice");
    let bob_id = join(&mut bob, "bob");

    update_until(&mut alice, "bob in alice's app", |w| mirrored(w, bob_id));
    let origin = Position { x: 0.0, y: 0.0 };
    assert_eq!(mirrored(alice.world_mut(), bob_id), Some(origin));
    // Alice's own entity is marked.
    let own = update_until(&mut alice, "alice's own entity", |w| {
        let mut query = w.query_filtered::<&PlayerId, With<You>>();
        query.iter(w).next().copied()
    });
    assert_eq!(own, PlayerId(alice_id));

    bob.world()
        .resource::<HearthClient>()
        .send("move", &Move { dx: 1.0, dy: 0.0 });
    let east = Position { x: 1.0, y: 0.0 };
    update_until(&mut bob, "bob's own step", |w| {
        (mirrored(w, bob_id) == Some(east)).then_some(())
    });
    update_until(&mut alice, "bob's step in alice's app", |w| {
        (mirrored(w, bob_id) == Some(east)).then_some(())
    });
    // And the other way: alice steps, bob's app sees it.
    alice
        .world()
        .resource::<HearthClient>()
        .send("move", &Move { dx: 0.0, dy: -1.0 });
    let south = Position { x: 0.0, y: -1.0 };
    update_until(&mut bob, "alice's step in bob's app", |w| {
        (mirrored(w, alice_id) == Some(south)).then_some(())
    });
    // One entity per player: the changes updated the mirrors, they did not spawn others.
    for app in [&mut alice, &mut bob] {
        let mut query = app.world_mut().query::<&Replicated>();
        assert_eq!(query.iter(app.world()).count(), 2);
    }
    drop(alice);
    drop(bob);
    assert_eq!(server.stop(), 0);
}

#[test]
fn a_refused_login_comes_as_the_clients_typed_error() {
    let server = demo_server("bevy-refused");
    let mut app = client_app(server.game_addr());
    update_until(&mut app, "the connection", |w| {
        heard(w, |e| matches!(e, HearthEvent::Connected).then_some(()))
    });
    app.world()
        .resource::<HearthClient>()
        .login("nobody", "password1");
    let error = update_until(&mut app, "the refusal", |w| {
        heard(w, |e| match e {
            HearthEvent::LoggedIn(Err(error)) => Some(error.clone()),
            _ => None,
        })
    });
    assert!(
        matches!(
            &*error,
            ClientError::Refused(refusal)
                if refusal.core_code() == Some(ErrorCode::InvalidCredentials)
        ),
        "{error}"
    );
    drop(app);
    assert_eq!(server.stop(), 0);
}
