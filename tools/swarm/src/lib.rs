//! `hearth-swarm`: a load generator for Hearth that speaks only the wire protocol
//! (docs/protocol.md), so it measures what real clients would see. Steps of N bots are held
//! and measured; the run fails when a promise broke, so it can gate a release.

mod bot;
pub mod config;
mod conn;
pub mod procfs;
pub mod reconnect;
pub mod report;
mod stats;
pub mod tick;
mod update;
mod walk;
mod world;
pub mod zones;

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

pub use config::{Config, Encoding, Placement, Transport};
pub use report::{Limits, StepReport};
pub use stats::Rtt;

use bot::Shared;
use stats::Counters;

/// The outcome of a run: each step measured, and why it failed if it did.
#[derive(Debug)]
pub struct RunReport {
    pub steps: Vec<StepReport>,
    /// The `--reconnect` waves (resume, then password), when asked for.
    pub reconnects: Vec<reconnect::Wave>,
    /// Every broken promise of every step, plus run-level failures (time ran out).
    pub failures: Vec<String>,
}

impl RunReport {
    /// The process exit code: 0 when every promise was kept.
    pub fn exit_code(&self) -> i32 {
        if self.failures.is_empty() { 0 } else { 1 }
    }
}

/// Runs the load test `config` describes on a runtime of `--threads` workers.
pub fn run(config: Config) -> Result<RunReport, String> {
    config.validate()?;
    if let Some(url) = &config.metrics_url {
        tick::scrape(url)?; // reachable and a Hearth exposition, before any bot starts
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .thread_name("swarm")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let report = runtime.block_on(run_steps(config));
    // Bots still running are dropped with the runtime: their connections close.
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(report)
}

/// One line of progress on stderr, once a second.
struct Progress {
    quiet: bool,
    terminal: bool,
    last: Counters,
    at: Instant,
}

impl Progress {
    fn tick(&mut self, stats: &stats::Stats, phase: &str) {
        let now = stats.counters();
        let delta = now.since(&self.last);
        let seconds = self.at.elapsed().as_secs_f64().max(1e-3);
        self.last = now;
        self.at = Instant::now();
        let rtt = stats.take_second_rtt();
        if self.quiet {
            return;
        }
        let online = stats.online.load(Relaxed);
        let line = format!(
            "{phase} | online {online} | logins/s {:.0} | RTT p50 {} p99 {} ms | updates/s per bot {:.1} | bytes/s per bot {:.0} | violations {} | disconnects {} rate_limited {} server_busy {}",
            delta.logins as f64 / seconds,
            rtt.p50_ms.map_or("-".into(), |v| format!("{v:.1}")),
            rtt.p99_ms.map_or("-".into(), |v| format!("{v:.1}")),
            delta.updates as f64 / seconds / online.max(1) as f64,
            delta.bytes as f64 / seconds / online.max(1) as f64,
            now.violations,
            now.disconnects,
            now.rate_limited,
            now.server_busy,
        );
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    fn end_line(&self) {
        if self.terminal && !self.quiet {
            eprintln!();
        }
    }
}

async fn run_steps(config: Config) -> RunReport {
    let (stop, _) = watch::channel(false);
    let limits = Limits {
        min_update_rate: config.min_update_rate,
        max_rtt_p99_ms: config.max_rtt_p99.as_secs_f64() * 1000.0,
        max_handoff_gap_p99_ms: config.max_handoff_gap_p99.as_secs_f64() * 1000.0,
    };
    let bots = config.steps.last().copied().unwrap_or(0);
    let shared = Arc::new(Shared {
        logins: Semaphore::new(config.login_concurrency),
        stats: stats::Stats::new(),
        stop,
        tokens: std::sync::Mutex::new(vec![None; bots]),
        zones: config
            .zones
            .clone()
            .map(|map| zones::ZoneStats::new(map, bots)),
        config,
    });
    let config = &shared.config;
    let stats = &shared.stats;
    let deadline = Instant::now() + config.max_duration;
    let mut progress = Progress {
        quiet: config.quiet,
        terminal: std::io::stderr().is_terminal(),
        last: stats.counters(),
        at: Instant::now(),
    };
    let mut report = RunReport {
        steps: Vec::new(),
        reconnects: Vec::new(),
        failures: Vec::new(),
    };
    let mut spawned = 0;
    let mut second = tokio::time::interval(Duration::from_secs(1));
    for (index, &target) in config.steps.iter().enumerate() {
        let step_start = Instant::now();
        let step_start_us = stats.now_us();
        let at_start = stats.counters();
        let zones_at_start = shared.zones.as_ref().map(|z| z.counters());
        while spawned < target {
            tokio::spawn(bot::run(Arc::clone(&shared), spawned));
            spawned += 1;
        }
        let label = format!("step {}/{} ({target} bots)", index + 1, config.steps.len());
        while (stats.settled.load(Relaxed) as usize) < target {
            second.tick().await;
            progress.tick(stats, &format!("{label} ramp"));
            if step_start.elapsed() > config.ramp_timeout || Instant::now() > deadline {
                break;
            }
        }
        let ramp = step_start.elapsed().as_secs_f64();
        let logins = stats.counters().since(&at_start).logins;
        let login_span = stats
            .last_login_us
            .load(Relaxed)
            .saturating_sub(step_start_us) as f64
            / 1e6;

        stats.start_hold();
        let zones_at_hold = shared.zones.as_ref().map(|z| {
            z.start_hold();
            z.counters()
        });
        let hold_start = Instant::now();
        let online_at_start = stats.online.load(Relaxed);
        let at_hold = stats.counters();
        let servers = &config.server_pid;
        let server_before = (!servers.is_empty()).then(|| procfs::threads_of(servers));
        let own_before = procfs::own_ticks();
        let tick_before = config.metrics_url.as_deref().map(tick::scrape);
        while hold_start.elapsed() < config.hold && Instant::now() < deadline {
            second.tick().await;
            let left = config.hold.saturating_sub(hold_start.elapsed()).as_secs();
            progress.tick(stats, &format!("{label} hold, {left}s left"));
        }
        let hold = hold_start.elapsed().as_secs_f64();
        let own = procfs::own_ticks() - own_before;
        let tick = match (config.metrics_url.as_deref(), tick_before) {
            (Some(url), Some(before)) => match before.and_then(|b| Ok((b, tick::scrape(url)?))) {
                Ok((before, after)) => Some(tick::between(&before, &after)),
                Err(reason) => {
                    report
                        .failures
                        .push(format!("step {}: {reason}", index + 1));
                    None
                }
            },
            _ => None,
        };
        let during_hold = stats.counters().since(&at_hold);
        let whole_step = stats.counters().since(&at_start);
        let online = stats.online.load(Relaxed);
        let mean_online = ((online + online_at_start) as f64 / 2.0).max(1.0);
        let mut step = StepReport {
            step: index + 1,
            bots: target,
            online,
            placement: config.placement,
            encoding: config.encoding,
            transport: config.transport,
            hold_s: hold,
            ramp_s: ramp,
            logins_per_s: logins as f64 / login_span.max(1e-3),
            rtt: stats.hold_rtt(),
            updates_per_bot_per_s: during_hold.updates as f64 / hold / mean_online,
            max_update_gap_ms: stats.max_gap_us.load(Relaxed) as f64 / 1000.0,
            bytes_per_bot_per_s: during_hold.bytes as f64 / hold / mean_online,
            violations: whole_step.violations,
            first_violation: stats.first_violation(),
            unchecked_bots: whole_step.unchecked,
            disconnects: whole_step.disconnects,
            kicked: whole_step.kicked,
            rate_limited: whole_step.rate_limited,
            server_busy: whole_step.server_busy,
            other_errors: whole_step.other_errors,
            login_failures: whole_step.login_failures,
            server_cpu: server_before
                .map(|before| procfs::cpu_by_name(&before, &procfs::threads_of(servers), hold)),
            server_rss_mib: (!servers.is_empty())
                .then(|| servers.iter().filter_map(|&pid| procfs::rss_mib(pid)).sum()),
            swarm_cpu_percent: procfs::percent(own, hold),
            tick,
            zones: shared
                .zones
                .as_ref()
                .zip(zones_at_start.zip(zones_at_hold))
                .map(|(z, (at_step, at_hold))| z.figures(&at_step, &at_hold, hold)),
            broken: Vec::new(),
        };
        step.broken = report::broken_promises(&step, &limits);
        report.failures.extend(
            step.broken
                .iter()
                .map(|b| format!("step {} ({target} bots): {b}", index + 1)),
        );
        report.steps.push(step);
        if Instant::now() >= deadline {
            report.failures.push(format!(
                "the run reached --max-duration {} and stopped",
                humantime::format_duration(config.max_duration)
            ));
            break;
        }
    }
    progress.end_line();
    if config.reconnect {
        let bots = config.steps.last().copied().unwrap_or(0);
        report.reconnects = reconnect::measure(&shared, bots, config.ramp_timeout).await;
        for wave in &report.reconnects {
            if wave.back < wave.bots {
                report.failures.push(format!(
                    "reconnect with {}: only {} of {} bots got back in (why: {:?})",
                    wave.kind, wave.back, wave.bots, wave.not_back
                ));
            }
        }
    }
    shared.stop.send_replace(true);
    report
}
