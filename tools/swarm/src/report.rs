//! A step's figures, the promises they are checked against, and the markdown table.

use std::fmt::Write;

use crate::config::{Encoding, Placement, Transport};
use crate::procfs::ThreadCpu;
use crate::stats::Rtt;
use crate::tick::TickReport;
use crate::zones::ZoneFigures;

/// The figures of one step, measured over its hold (disconnects and login counters over the
/// whole step: ramp and hold).
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepReport {
    /// 1-based step number.
    pub step: usize,
    /// Bots this step asked for.
    pub bots: usize,
    /// Bots logged in and connected at the end of the hold.
    pub online: u64,
    pub placement: Placement,
    pub encoding: Encoding,
    /// The door bots used (`tcp`, `tls`, `ws`, `wss`).
    pub transport: Transport,
    pub hold_s: f64,
    /// Time to get the step's new bots logged in and in place.
    pub ramp_s: f64,
    /// Logins of the step's new bots, per second from the step's start to its last login.
    pub logins_per_s: f64,
    pub rtt: Rtt,
    /// Replication updates received per bot per second over the hold.
    pub updates_per_bot_per_s: f64,
    /// The largest time between two updates of one bot during the hold.
    pub max_update_gap_ms: f64,
    /// Bytes received per bot per second over the hold (every message, in the encoding).
    pub bytes_per_bot_per_s: f64,
    /// Broken replication promises over the whole step (see the `world` module): each one
    /// breaks the step.
    pub violations: u64,
    /// The first broken replication promise of the run, if any.
    pub first_violation: Option<String>,
    /// Bots whose own position stopped being checked during the step (too many moves in
    /// flight to explore).
    pub unchecked_bots: u64,
    pub disconnects: u64,
    pub kicked: u64,
    pub rate_limited: u64,
    pub server_busy: u64,
    pub other_errors: u64,
    pub login_failures: u64,
    /// The server's CPU per thread name over the hold (with `--server-pid`).
    pub server_cpu: Option<Vec<ThreadCpu>>,
    /// The server's resident set at the end of the hold (with `--server-pid`).
    pub server_rss_mib: Option<f64>,
    /// The swarm's own CPU over the hold, percent of one core.
    pub swarm_cpu_percent: f64,
    /// The server's frame timing over the hold (with `--metrics-url`).
    pub tick: Option<TickReport>,
    /// Handoffs, their gap and remote-entity staleness (with `--zones`).
    pub zones: Option<ZoneFigures>,
    /// The promises this step broke (empty: all kept).
    pub broken: Vec<String>,
}

/// The promises a step must keep for the run to pass.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub min_update_rate: f64,
    pub max_rtt_p99_ms: f64,
    /// With `--zones`.
    pub max_handoff_gap_p99_ms: f64,
}

/// Every promise `step` broke, each as a sentence saying by how much.
pub fn broken_promises(step: &StepReport, limits: &Limits) -> Vec<String> {
    let mut broken = Vec::new();
    if step.disconnects > 0 {
        broken.push(format!(
            "{} bots disconnected ({} kicked)",
            step.disconnects, step.kicked
        ));
    }
    if step.online < step.bots as u64 {
        broken.push(format!(
            "only {} of {} bots online ({} gave up logging in)",
            step.online, step.bots, step.login_failures
        ));
    }
    if step.violations > 0 {
        broken.push(format!(
            "{} replication violations (first: {})",
            step.violations,
            step.first_violation.as_deref().unwrap_or("-")
        ));
    }
    if step.updates_per_bot_per_s < limits.min_update_rate {
        broken.push(format!(
            "{:.1} updates/s per bot, below {}",
            step.updates_per_bot_per_s, limits.min_update_rate
        ));
    }
    if let Some(tick) = step.tick.filter(|t| !t.within_budget()) {
        broken.push(format!(
            "tick p99 over the {:.1} ms budget ({} of {} frames over it)",
            tick.budget_ms, tick.overruns, tick.frames
        ));
    }
    if let Some(zones) = &step.zones {
        broken.extend(zones_broken(zones, limits));
    }
    match step.rtt.p99_ms {
        None => broken.push("no pong received during the hold".into()),
        Some(p99) if p99 > limits.max_rtt_p99_ms => broken.push(format!(
            "ping RTT p99 {p99:.1} ms, above {} ms",
            limits.max_rtt_p99_ms
        )),
        Some(_) => {}
    }
    broken
}

/// The zone promises: no player lost in a handoff, no update from a source after its
/// handoff, handoffs during the hold, and the gap's p99 within its limit.
fn zones_broken(zones: &ZoneFigures, limits: &Limits) -> Vec<String> {
    let mut broken = Vec::new();
    if zones.lost > 0 {
        broken.push(format!("{} players lost in a handoff", zones.lost));
    }
    if zones.updates_after_handoff > 0 {
        broken.push(format!(
            "{} updates from a source after its handoff (a double hold)",
            zones.updates_after_handoff
        ));
    }
    match zones.gap_p99_ms {
        None => broken.push("no handoff completed during the hold".into()),
        Some(p99) if p99 > limits.max_handoff_gap_p99_ms => broken.push(format!(
            "handoff gap p99 {p99:.1} ms, above {} ms",
            limits.max_handoff_gap_p99_ms
        )),
        Some(_) => {}
    }
    broken
}

/// The zone figures of the steps that have them, as a markdown table.
pub fn zones_markdown(steps: &[StepReport]) -> String {
    let mut out = String::from(
        "| bots | handoffs/s (in the hold) | handoff gap p50 / p99 / max | gap parts p50 / p99: to the handoff; resume; first update | update interval without a handoff p50 / p99 | remote staleness p50 / p99 / max (samples; seen remotely first; unmatched) | lost | updates after handoff | handed off at login | zone_unavailable |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in steps {
        let Some(z) = &s.zones else { continue };
        let _ = writeln!(
            out,
            "| {} | {:.1} ({}) | {} / {} / {} ms | {} / {}; {} / {}; {} / {} ms | {} / {} ms | {} / {} / {} ms ({}; {}; {}) | {} | {} | {} | {} |",
            s.bots,
            z.handoffs_per_s,
            z.handoffs,
            ms(z.gap_p50_ms),
            ms(z.gap_p99_ms),
            ms(z.gap_max_ms),
            ms(z.to_handoff_ms[0]),
            ms(z.to_handoff_ms[1]),
            ms(z.follow_ms[0]),
            ms(z.follow_ms[1]),
            ms(z.first_update_ms[0]),
            ms(z.first_update_ms[1]),
            ms(z.interval_ms[0]),
            ms(z.interval_ms[1]),
            ms(z.staleness_p50_ms),
            ms(z.staleness_p99_ms),
            ms(z.staleness_max_ms),
            z.staleness_samples,
            z.staleness_remote_first,
            z.staleness_unmatched,
            z.lost,
            z.updates_after_handoff,
            z.login_handoffs,
            z.zone_refusals,
        );
    }
    out
}

fn ms(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.1}"))
}

/// Bytes per second, in B/s, KB/s or MB/s (powers of 1000).
fn bytes(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} MB/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.2} KB/s", per_s / 1e3)
    } else {
        format!("{per_s:.0} B/s")
    }
}

fn server_cpu(cpu: &[ThreadCpu]) -> String {
    let total: f64 = cpu.iter().map(|t| t.cpu_percent).sum();
    let mut text = format!("{total:.0}%:");
    for thread in cpu.iter().filter(|t| t.cpu_percent >= 0.5) {
        let count = if thread.threads > 1 {
            format!("×{}", thread.threads)
        } else {
            String::new()
        };
        let _ = write!(text, " {}{count} {:.0}%", thread.name, thread.cpu_percent);
    }
    text
}

fn tick_cell(tick: TickReport) -> String {
    let share = tick.overruns as f64 * 100.0 / tick.frames.max(1) as f64;
    format!(
        "≤ {:.1} ms ({} of {}, {share:.1}%)",
        tick.p99_at_most_ms, tick.overruns, tick.frames
    )
}

/// The steps as a markdown table, one row each.
pub fn markdown(steps: &[StepReport]) -> String {
    let mut out = String::from(
        "| bots (online) | placement, encoding, transport | tick p99 (frames over budget) | ping RTT p50 / p99 | updates/s per bot (largest gap) | bytes/s per bot | violations | disconnects (kicked) | rate_limited | server_busy | logins/s | server CPU by thread | server RSS | swarm CPU | promises |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in steps {
        let _ = writeln!(
            out,
            "| {} ({}) | {}, {}, {} | {} | {} / {} ms | {:.1} ({:.0} ms) | {} | {} | {} ({}) | {} | {} | {:.1} | {} | {} | {:.0}% | {} |",
            s.bots,
            s.online,
            s.placement,
            s.encoding,
            s.transport,
            s.tick.map_or("-".into(), tick_cell),
            ms(s.rtt.p50_ms),
            ms(s.rtt.p99_ms),
            s.updates_per_bot_per_s,
            s.max_update_gap_ms,
            bytes(s.bytes_per_bot_per_s),
            if s.unchecked_bots > 0 {
                format!("{} ({} bots unchecked)", s.violations, s.unchecked_bots)
            } else {
                s.violations.to_string()
            },
            s.disconnects,
            s.kicked,
            s.rate_limited,
            s.server_busy,
            s.logins_per_s,
            s.server_cpu.as_deref().map_or("-".into(), server_cpu),
            s.server_rss_mib
                .map_or("-".into(), |rss| format!("{rss:.0} MiB")),
            s.swarm_cpu_percent,
            if s.broken.is_empty() {
                "kept".to_string()
            } else {
                s.broken.join("; ")
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> StepReport {
        StepReport {
            step: 1,
            bots: 100,
            online: 100,
            placement: Placement::Clustered,
            encoding: Encoding::Binary,
            transport: Transport::Tcp,
            hold_s: 40.0,
            ramp_s: 2.0,
            logins_per_s: 50.0,
            rtt: Rtt {
                p50_ms: Some(0.3),
                p99_ms: Some(12.0),
                max_ms: Some(20.0),
                count: 4000,
            },
            updates_per_bot_per_s: 20.0,
            max_update_gap_ms: 70.0,
            bytes_per_bot_per_s: 2450.0,
            violations: 0,
            first_violation: None,
            unchecked_bots: 0,
            disconnects: 0,
            kicked: 0,
            rate_limited: 0,
            server_busy: 3,
            other_errors: 0,
            login_failures: 0,
            server_cpu: None,
            server_rss_mib: None,
            tick: None,
            zones: None,
            swarm_cpu_percent: 30.0,
            broken: Vec::new(),
        }
    }

    const LIMITS: Limits = Limits {
        min_update_rate: 19.0,
        max_rtt_p99_ms: 50.0,
        max_handoff_gap_p99_ms: 100.0,
    };

    #[test]
    fn a_healthy_step_keeps_every_promise() {
        assert!(broken_promises(&healthy(), &LIMITS).is_empty());
        // server_busy during logins and a long gap are reported, not failures.
        let table = markdown(&[healthy()]);
        assert!(table.contains(
            "| 100 (100) | clustered, binary, tcp | - | 0.3 / 12.0 ms | 20.0 (70 ms) | 2.45 KB/s | 0 |"
        ));
        assert!(table.ends_with("| kept |\n"));
    }

    #[test]
    fn each_broken_promise_is_named() {
        let mut step = healthy();
        step.disconnects = 2;
        step.kicked = 1;
        step.online = 98;
        assert_eq!(
            broken_promises(&step, &LIMITS),
            [
                "2 bots disconnected (1 kicked)",
                "only 98 of 100 bots online (0 gave up logging in)"
            ]
        );

        let mut step = healthy();
        step.updates_per_bot_per_s = 18.9;
        step.rtt.p99_ms = Some(50.1);
        step.violations = 2;
        step.first_violation = Some("bot 3: entity 9 left, never entered".into());
        assert_eq!(
            broken_promises(&step, &LIMITS),
            [
                "2 replication violations (first: bot 3: entity 9 left, never entered)",
                "18.9 updates/s per bot, below 19",
                "ping RTT p99 50.1 ms, above 50 ms"
            ]
        );

        let mut step = healthy();
        step.rtt = Rtt::default();
        assert_eq!(
            broken_promises(&step, &LIMITS),
            ["no pong received during the hold"]
        );
    }

    #[test]
    fn zone_promises_are_named() {
        let mut step = healthy();
        step.zones = Some(ZoneFigures {
            handoffs: 10,
            handoffs_per_s: 1.0,
            gap_p50_ms: Some(30.0),
            gap_p99_ms: Some(120.0),
            lost: 1,
            updates_after_handoff: 2,
            ..ZoneFigures::default()
        });
        assert_eq!(
            broken_promises(&step, &LIMITS),
            [
                "1 players lost in a handoff",
                "2 updates from a source after its handoff (a double hold)",
                "handoff gap p99 120.0 ms, above 100 ms"
            ]
        );
        let table = zones_markdown(&[step]);
        assert!(
            table.contains("| 100 | 1.0 (10) | 30.0 / 120.0 / - ms |"),
            "{table}"
        );
        step = healthy();
        step.zones = Some(ZoneFigures::default());
        assert_eq!(
            broken_promises(&step, &LIMITS),
            ["no handoff completed during the hold"]
        );
    }
}
