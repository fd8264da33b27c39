//! How a server is put together: `HearthPlugins` is all there is, each plugin owns its
//! settings (`.set(...)` overrides one plugin and everything follows it), and each plugin
//! opens what it owns and publishes where it listens.

mod common;

use std::time::Duration;

use common::client::Client;
use hearth::prelude::*;
use hearth::store::{StorePlugin, StoreSettings};
use hearth::systems::TickMetrics;
use hearth::systems::storage::StorePort;
use hearth::testing::ServerThread;

/// The core server of `plugins`, its plugins finished (store open, listeners bound), no
/// runner: what `App::run` would start.
fn finished(plugins: impl PluginGroup) -> App {
    let mut app = App::new();
    app.add_plugins(plugins);
    app.finish();
    app.cleanup();
    app
}

#[test]
fn a_plugin_set_over_the_config_is_the_one_every_system_follows() {
    let mut config = ServerConfig::default();
    config.store.settings.instance_id = "from-config".into();
    config.front_door.listen = "127.0.0.1:0".parse().unwrap();
    let plugins = HearthPlugins::new(config)
        .set(TickRatePlugin { tick_rate: 10.0 })
        .set(StorePlugin {
            settings: StoreSettings {
                instance_id: "from-set".into(),
                ..StoreSettings::default()
            },
        })
        .build()
        .disable::<RunnerPlugin>();
    let app = finished(plugins);
    let world = app.world();
    assert_eq!(
        world.resource::<Time<bevy_time::Fixed>>().timestep(),
        Duration::from_millis(100),
        "the fixed tick follows the set tick rate"
    );
    assert_eq!(
        world.resource::<TickMetrics>().budget(),
        Duration::from_millis(100),
        "and so does the frame budget the metrics count overruns against"
    );
    let owner = world.resource::<StorePort>().info().lease_owner;
    assert!(
        owner.starts_with("from-set/"),
        "the store opened with the set plugin's identity: {owner}"
    );
    assert!(
        world
            .resource::<BoundAddresses>()
            .game
            .is_some_and(|a| a.port() != 0),
        "the front door published the port it bound"
    );
}

#[test]
fn a_front_door_set_over_the_config_serves_with_its_own_settings() {
    let mut config = ServerConfig::default();
    config.front_door.idle_timeout = Duration::from_secs(3600);
    let server = ServerThread::start(move || {
        let mut app = App::new();
        app.add_plugins(HearthPlugins::new(config).set(FrontDoorPlugin {
            listen: "127.0.0.1:0".parse().unwrap(),
            idle_timeout: Duration::from_millis(300),
            ..FrontDoorPlugin::default()
        }));
        app
    })
    .expect("the server starts");
    let mut client = Client::connect(server.game_addr());
    let kicked = client.expect("kicked");
    assert_eq!(
        kicked["code"], "idle",
        "closed after the set plugin's 300 ms, not the config's hour: {kicked}"
    );
    assert_eq!(server.stop(), 0);
}

#[test]
fn a_listener_that_cannot_bind_fails_the_start_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut config = ServerConfig::default();
    config.front_door.listen = addr;
    let failure = ServerThread::start(move || {
        let mut app = App::new();
        app.add_plugins(HearthPlugins::new(config));
        app
    })
    .err()
    .expect("a taken port is a failed start")
    .to_string();
    assert!(
        failure.contains(&format!("cannot listen on {addr}")),
        "{failure}"
    );
}
