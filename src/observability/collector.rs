//! The Prometheus collector: reads the server's own counters and histograms at scrape time
//! (store [`StoreMetrics`], tick [`TickStats`], front door counts) and writes them in the
//! exposition format. One source of truth: nothing is recorded twice, a scrape costs the
//! tick nothing but a histogram lock held while its buckets are counted.
//!
//! Latencies are exported as Prometheus *histograms* with fixed buckets, counted from the
//! hdrhistogram data since start: buckets add up across servers and over any window
//! (`histogram_quantile(0.99, sum by (le) (rate(..._bucket[5m])))`); a summary's quantiles
//! cannot be aggregated and would be fixed to one window.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hearth_systems::TickStats;
use hearth_systems::storage::{LatencyHistogram, StoreMetrics};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::net::FrontDoorObserver;
use crate::net::stats::NetStats;
use crate::net::transport::TransportKind;

/// Bucket upper bounds of every latency histogram, in seconds: from 0.5 ms (a local Redis
/// round trip, a fast frame) to 10 s (past any store timeout).
const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.0167, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Collects every Hearth metric at scrape time.
pub struct HearthCollector {
    pub store: Arc<StoreMetrics>,
    pub tick: Arc<TickStats>,
    pub tick_period: Duration,
    /// `None` when the server has no front door.
    pub front_door: Option<FrontDoorObserver>,
    /// How old neighbours' border snapshots are on arrival; `None` without zones.
    pub border_age: Option<Arc<LatencyHistogram>>,
}

impl fmt::Debug for HearthCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HearthCollector")
    }
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    ConstCounter::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    ConstGauge::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A counter family with one label.
fn counters(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> fmt::Result {
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in values {
        ConstCounter::new(*count).encode(metric.encode_family(&[(label, *value)])?)?;
    }
    Ok(())
}

/// A gauge family with one label.
fn gauges(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, f64)],
) -> fmt::Result {
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, level) in values {
        ConstGauge::new(*level).encode(metric.encode_family(&[(label, *value)])?)?;
    }
    Ok(())
}

/// The labels of one series: (name, value) pairs, none for an unlabelled family.
type Labels<'a> = &'a [(&'a str, &'a str)];

/// A histogram family, one series per label set, in seconds.
fn histograms(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels, &LatencyHistogram)],
) -> fmt::Result {
    let bounds = LATENCY_BUCKETS.map(Duration::from_secs_f64);
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (value, histogram) in values {
        let counted = histogram.buckets(&bounds);
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(counted.counts)
            .collect();
        let sum = counted.sum.as_secs_f64();
        if value.is_empty() {
            metric.encode_histogram::<NoLabelSet>(sum, counted.count, &buckets, None)?;
        } else {
            metric
                .encode_family(value)?
                .encode_histogram::<NoLabelSet>(sum, counted.count, &buckets, None)?;
        }
    }
    Ok(())
}

impl HearthCollector {
    fn encode_tick(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let t = &self.tick;
        gauge(
            e,
            "hearth_players_online",
            "Players on this server (joins in flight included).",
            get(&t.players_online) as f64,
        )?;
        counter(
            e,
            "hearth_player_joins",
            "Players who joined (entity spawned).",
            get(&t.joins),
        )?;
        counter(
            e,
            "hearth_player_join_refusals",
            "Joins refused (lease held elsewhere, store unavailable, ...).",
            get(&t.joins_refused),
        )?;
        counter(
            e,
            "hearth_player_leaves",
            "Players who left (final save durable, lease released).",
            get(&t.leaves),
        )?;
        counter(
            e,
            "hearth_leases_lost",
            "Players dropped unsaved because another server owns their lease.",
            get(&t.ownership_lost),
        )?;
        counter(
            e,
            "hearth_flush_batches",
            "Flush batches handed to the store.",
            get(&t.flush_batches),
        )?;
        counter(
            e,
            "hearth_flush_players",
            "Players snapshotted by all flush batches (divide by batches for the mean batch size).",
            get(&t.players_flushed),
        )?;
        gauge(
            e,
            "hearth_flush_last_batch_players",
            "Players in the last flush batch.",
            get(&t.last_flush_batch_size) as f64,
        )?;
        histograms(
            e,
            "hearth_tick_duration_seconds",
            "Duration of each frame (all schedules).",
            &[(&[], &t.frame)],
        )?;
        counter(
            e,
            "hearth_tick_overruns",
            "Frames longer than the tick budget (1 / tick rate).",
            get(&t.overruns),
        )?;
        gauge(
            e,
            "hearth_tick_budget_seconds",
            "The tick budget: 1 / tick rate.",
            self.tick_period.as_secs_f64(),
        )?;
        gauge(
            e,
            "hearth_tick_last_frame_age_seconds",
            "Time since the last frame completed (liveness).",
            t.since_last_frame().as_secs_f64(),
        )
    }

    fn encode_store(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let s = &self.store;
        counters(
            e,
            "hearth_store_saves",
            "Player record saves by outcome (failed ones are retried).",
            "outcome",
            &[
                ("saved", get(&s.saves)),
                ("failed", get(&s.save_errors)),
                ("lease_lost", get(&s.saves_lease_lost)),
                ("stale", get(&s.saves_stale)),
            ],
        )?;
        counters(
            e,
            "hearth_store_loads",
            "Records loaded on join, by outcome.",
            "outcome",
            &[("loaded", get(&s.loads)), ("failed", get(&s.load_errors))],
        )?;
        counters(
            e,
            "hearth_store_lease_refreshes",
            "Session lease refreshes, by outcome (failed ones are retried).",
            "outcome",
            &[
                ("refreshed", get(&s.refreshes)),
                ("failed", get(&s.refresh_errors)),
            ],
        )?;
        counter(
            e,
            "hearth_store_round_trips",
            "Requests sent to the store (a pipeline counts once).",
            get(&s.round_trips),
        )?;
        counter(
            e,
            "hearth_store_connections_opened",
            "Connections opened to the store (reconnects included).",
            get(&s.connections_opened),
        )?;
        let down: Vec<(&str, f64)> = s
            .lanes_down()
            .map(|(lane, down)| (lane, f64::from(u8::from(down))))
            .to_vec();
        gauge(
            e,
            "hearth_store_connections_open",
            "Store connections (one per lane) whose last request Redis answered.",
            get(&s.connections_open) as f64,
        )?;
        gauges(
            e,
            "hearth_store_lane_down",
            "1 while the store lane is in an outage, else 0.",
            "lane",
            &down,
        )?;
        histograms(
            e,
            "hearth_store_call_duration_seconds",
            "Store call latency by operation and lane: per pipelined save or refresh chunk, per join (claim + load).",
            &[
                (
                    &[("operation", "save"), ("lane", "periodic")],
                    &s.save_batch_latency,
                ),
                (
                    &[("operation", "save"), ("lane", "interactive")],
                    &s.priority_save_batch_latency,
                ),
                (
                    &[("operation", "load"), ("lane", "interactive")],
                    &s.load_latency,
                ),
                (
                    &[("operation", "refresh"), ("lane", "periodic")],
                    &s.refresh_batch_latency,
                ),
            ],
        )?;
        histograms(
            e,
            "hearth_store_record_duration_seconds",
            "Latency each record saw (the round trip that carried it), by operation and lane.",
            &[
                (
                    &[("operation", "save"), ("lane", "periodic")],
                    &s.save_record_latency,
                ),
                (
                    &[("operation", "save"), ("lane", "interactive")],
                    &s.priority_save_record_latency,
                ),
                (
                    &[("operation", "refresh"), ("lane", "periodic")],
                    &s.refresh_record_latency,
                ),
            ],
        )
    }

    fn encode_front_door(
        &self,
        e: &mut DescriptorEncoder,
        door: &FrontDoorObserver,
    ) -> fmt::Result {
        let n = &door.stats;
        gauge(
            e,
            "hearth_client_connections",
            "Client connections open.",
            door.open_connections() as f64,
        )?;
        let by_state: Vec<(&str, f64)> = NetStats::CONNECTION_STATES
            .iter()
            .zip(&n.connections_by_state)
            .map(|(state, count)| (*state, get(count) as f64))
            .collect();
        gauges(
            e,
            "hearth_client_connections_by_state",
            "Client connections being served, by login state.",
            "state",
            &by_state,
        )?;
        let open: Vec<(&str, f64)> = TransportKind::ALL
            .iter()
            .map(|kind| (kind.label(), get(&n.connections_open[kind.index()]) as f64))
            .collect();
        gauges(
            e,
            "hearth_client_connections_by_transport",
            "Client connections being served, by transport (tcp, tls, ws, wss).",
            "transport",
            &open,
        )?;
        let opened: Vec<(&str, u64)> = TransportKind::ALL
            .iter()
            .map(|kind| (kind.label(), get(&n.connections_opened[kind.index()])))
            .collect();
        counters(
            e,
            "hearth_client_connections_opened",
            "Client connections opened since start, by transport (tcp, tls, ws, wss).",
            "transport",
            &opened,
        )?;
        counters(
            e,
            "hearth_client_connections_refused",
            "New connections refused with server_busy, by reason.",
            "reason",
            &[
                ("server_full", get(&n.refused_server_full)),
                ("address_full", get(&n.refused_address_full)),
            ],
        )?;
        let by_transport = |counts: &[AtomicU64; 4]| -> Vec<(&str, u64)> {
            TransportKind::ALL
                .iter()
                .map(|kind| (kind.label(), get(&counts[kind.index()])))
                .collect()
        };
        counters(
            e,
            "hearth_client_messages_received",
            "Messages received from clients: lines, binary frames and WebSocket messages (blank lines not counted), by transport.",
            "transport",
            &by_transport(&n.messages_in),
        )?;
        counters(
            e,
            "hearth_client_messages_sent",
            "Messages written to clients (answers and pushes), by transport.",
            "transport",
            &by_transport(&n.messages_out),
        )?;
        counters(
            e,
            "hearth_client_messages_rate_limited",
            "Client messages dropped with rate_limited (over the per-connection rate), by transport.",
            "transport",
            &by_transport(&n.rate_limited_messages),
        )?;
        counters(
            e,
            "hearth_rate_limited",
            "Requests refused with rate_limited, by limit.",
            "limit",
            &[
                ("messages", n.rate_limited_messages.iter().map(get).sum()),
                ("registrations", get(&n.rate_limited_registrations)),
                ("logins", get(&n.rate_limited_logins)),
            ],
        )?;
        gauge(
            e,
            "hearth_auth_queue_depth",
            "Auth requests waiting for a worker.",
            get(&n.auth_queued) as f64,
        )?;
        counter(
            e,
            "hearth_auth_queue_full",
            "Auth requests refused with server_busy: the queue or the address's share was full.",
            get(&n.auth_queue_full),
        )?;
        histograms(
            e,
            "hearth_auth_duration_seconds",
            "Time an auth worker spent on a request (hashing, account lookup, session claim and load).",
            &[(&[], &n.auth_latency)],
        )
    }
}

impl Collector for HearthCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        self.encode_tick(&mut e)?;
        self.encode_store(&mut e)?;
        if let Some(door) = &self.front_door {
            self.encode_front_door(&mut e, door)?;
        }
        if let Some(age) = &self.border_age {
            histograms(
                &mut e,
                "hearth_border_snapshot_age_seconds",
                "Age of each neighbouring zone's border snapshot when swapped in (from its round there; its remote entities then wait for this process's next round).",
                &[(&[], age)],
            )?;
        }
        Ok(())
    }
}
