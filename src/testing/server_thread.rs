//! [`ServerThread`]: a whole server (`App::run` with Hearth's runner, its front door on a
//! real socket, real time) on a thread of the test process, as the binary runs it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use bevy_app::{App, AppExit};

use crate::HearthPlugins;
use crate::config::ServerConfig;
use crate::demo_game::DemoGamePlugin;
use crate::runner::{DrainSignal, StopSignal, finish_plugins};
use crate::startup::{BoundAddresses, StartupFailures};

/// Why a [`ServerThread`] did not start: each failure as the runner prints it.
#[derive(Debug, thiserror::Error)]
#[error("the server did not start: {}", .0.join("; "))]
pub struct NotStarted(pub Vec<String>);

/// A server app running on its own thread until stopped, drained or dropped. Built the way a
/// binary builds it (`App::new().add_plugins(HearthPlugins::new(config))...`), usually with
/// `listen` (and `metrics_listen`) on port 0: [`ServerThread::addrs`] says where it bound.
pub struct ServerThread {
    addrs: BoundAddresses,
    stop: Arc<AtomicBool>,
    drain: Arc<AtomicBool>,
    thread: Option<JoinHandle<AppExit>>,
}

impl ServerThread {
    /// The demo game served with `config`, as the `hearth` binary runs it: the server most
    /// client, swarm and protocol tests talk to.
    pub fn demo(config: ServerConfig) -> Result<Self, NotStarted> {
        Self::start(move || {
            let mut app = App::new();
            app.add_plugins(HearthPlugins::new(config))
                .add_plugins(DemoGamePlugin);
            app
        })
    }

    /// Builds the app with `build` on a new thread (an `App` stays on the thread that made
    /// it), lets its plugins open what they own, and runs it. `Err` lists what could not be
    /// opened (the store, a listener), as the runner would print it.
    pub fn start(build: impl FnOnce() -> App + Send + 'static) -> Result<Self, NotStarted> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut app = build();
            app.insert_resource(StopSignal(flag));
            finish_plugins(&mut app);
            let failures = app
                .world()
                .get_resource::<StartupFailures>()
                .map(|f| f.0.iter().map(ToString::to_string).collect::<Vec<_>>())
                .unwrap_or_default();
            if !failures.is_empty() {
                // Safe to drop `ready_tx` after sending: the receiver sees the error.
                let _ = ready_tx.send(Err(NotStarted(failures)));
                return AppExit::from_code(1);
            }
            let addrs = app
                .world()
                .get_resource::<BoundAddresses>()
                .copied()
                .unwrap_or_default();
            let drain = app
                .world()
                .get_resource::<DrainSignal>()
                .map(|d| Arc::clone(&d.0))
                .unwrap_or_default();
            let _ = ready_tx.send(Ok((addrs, drain)));
            app.run()
        });
        match ready_rx.recv() {
            Ok(Ok((addrs, drain))) => Ok(Self {
                addrs,
                stop,
                drain,
                thread: Some(thread),
            }),
            Ok(Err(failures)) => {
                let _ = thread.join();
                Err(failures)
            }
            Err(_) => Err(NotStarted(vec![match thread.join() {
                Err(_) => "the server thread panicked while starting".into(),
                Ok(_) => "the server thread ended without starting".into(),
            }])),
        }
    }

    /// Where its listeners are bound.
    pub fn addrs(&self) -> BoundAddresses {
        self.addrs
    }

    /// The game client address (panics if the app has no front door: a test bug).
    pub fn game_addr(&self) -> std::net::SocketAddr {
        self.addrs
            .game
            .expect("this server has a front door (FrontDoorPlugin)")
    }

    /// The WebSocket listener's address (panics if `listen_ws` was not set: a test bug).
    pub fn ws_addr(&self) -> std::net::SocketAddr {
        self.addrs
            .ws
            .expect("this server has a WebSocket listener (set listen_ws)")
    }

    /// Asks for a drain (as SIGUSR1 does); [`ServerThread::join`] then waits for its end.
    pub fn drain(&self) {
        self.drain.store(true, Ordering::SeqCst);
    }

    /// Stops the server gracefully (everyone saved) and returns its exit code.
    pub fn stop(mut self) -> i32 {
        self.stop.store(true, Ordering::SeqCst);
        self.wait()
    }

    /// Waits for the server to end by itself (a drain) and returns its exit code.
    pub fn join(mut self) -> i32 {
        self.wait()
    }

    fn wait(&mut self) -> i32 {
        match self.thread.take().map(JoinHandle::join) {
            None => 0,
            Some(Ok(AppExit::Success)) => 0,
            Some(Ok(AppExit::Error(code))) => i32::from(code.get()),
            Some(Err(_)) => panic!("the server thread panicked"),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop.store(true, Ordering::SeqCst);
            if !std::thread::panicking() {
                self.wait();
            }
        }
    }
}
