//! The server's frame timing over a hold, read from its Prometheus endpoint (`--metrics-url`):
//! the `hearth_tick_duration_seconds` histogram and `hearth_tick_overruns` counter, scraped at
//! the start and end of the hold and subtracted, so the figures cover the hold only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The cumulative frame-time figures of one scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TickScrape {
    /// `(upper bound in seconds, cumulative count)` per bucket, `+Inf` last.
    buckets: Vec<(f64, u64)>,
    frames: u64,
    overruns: u64,
    budget_s: f64,
}

/// Frame timing over a hold.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct TickReport {
    pub frames: u64,
    /// Upper bound of the histogram bucket holding the 99th percentile frame (bucket
    /// resolution: the server's buckets include the 16.7 ms budget itself).
    pub p99_at_most_ms: f64,
    /// Frames longer than the budget.
    pub overruns: u64,
    pub budget_ms: f64,
}

impl TickReport {
    /// Whether the 99th percentile frame is within the budget: at most 1 % of frames over it.
    pub fn within_budget(&self) -> bool {
        self.overruns * 100 <= self.frames
    }
}

/// Scrapes `url` (`http://host:port/metrics`): plain HTTP/1.0, the server's own endpoint.
pub fn scrape(url: &str) -> Result<TickScrape, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--metrics-url must start with http:// (got {url})"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, "metrics"));
    let mut stream =
        TcpStream::connect(host).map_err(|e| format!("cannot connect to {host}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")
        .map_err(|e| format!("cannot ask {url}: {e}"))?;
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .map_err(|e| format!("cannot read {url}: {e}"))?;
    parse(&body).ok_or_else(|| format!("{url} has no hearth_tick_duration_seconds histogram"))
}

/// Reads the tick figures out of a Prometheus text exposition.
fn parse(text: &str) -> Option<TickScrape> {
    let mut scrape = TickScrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let number = || value.parse::<f64>().ok();
        if let Some(le) = name
            .strip_prefix("hearth_tick_duration_seconds_bucket{le=\"")
            .and_then(|rest| rest.strip_suffix("\"}"))
        {
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            scrape.buckets.push((bound, number()? as u64));
        } else if name == "hearth_tick_duration_seconds_count" {
            scrape.frames = number()? as u64;
        } else if name == "hearth_tick_overruns_total" {
            scrape.overruns = number()? as u64;
        } else if name == "hearth_tick_budget_seconds" {
            scrape.budget_s = number()?;
        }
    }
    (!scrape.buckets.is_empty()).then_some(scrape)
}

/// The frames between two scrapes of one server.
pub fn between(before: &TickScrape, after: &TickScrape) -> TickReport {
    let frames = after.frames.saturating_sub(before.frames);
    let in_bucket = |i: usize| {
        after.buckets[i]
            .1
            .saturating_sub(before.buckets.get(i).map_or(0, |b| b.1))
    };
    let wanted = (frames as f64 * 0.99).ceil() as u64;
    let p99 = (0..after.buckets.len())
        .find(|&i| in_bucket(i) >= wanted)
        .map_or(f64::INFINITY, |i| after.buckets[i].0);
    TickReport {
        frames,
        p99_at_most_ms: p99 * 1000.0,
        overruns: after.overruns.saturating_sub(before.overruns),
        budget_ms: after.budget_s * 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(counts: [u64; 3], overruns: u64) -> String {
        format!(
            "# TYPE hearth_tick_duration_seconds histogram\n\
             hearth_tick_duration_seconds_sum 1.0\n\
             hearth_tick_duration_seconds_count {}\n\
             hearth_tick_duration_seconds_bucket{{le=\"0.01\"}} {}\n\
             hearth_tick_duration_seconds_bucket{{le=\"0.0167\"}} {}\n\
             hearth_tick_duration_seconds_bucket{{le=\"+Inf\"}} {}\n\
             hearth_tick_overruns_total {overruns}\n\
             hearth_tick_budget_seconds 0.016666666666666666\n",
            counts[2], counts[0], counts[1], counts[2]
        )
    }

    #[test]
    fn the_hold_is_the_difference_of_two_scrapes() {
        let before = parse(&exposition([100, 100, 100], 0)).unwrap();
        // 1,000 frames in the hold: 985 under 10 ms, 10 up to 16.7 ms, 5 over.
        let after = parse(&exposition([1085, 1095, 1100], 5)).unwrap();
        let hold = between(&before, &after);
        assert_eq!(hold.frames, 1000);
        assert_eq!(hold.p99_at_most_ms, 16.7);
        assert_eq!(hold.overruns, 5);
        assert!(hold.within_budget());
        let slow = parse(&exposition([1000, 1050, 1100], 50)).unwrap();
        let hold = between(&before, &slow);
        assert!(hold.p99_at_most_ms.is_infinite());
        assert!(!hold.within_budget());
    }

    #[test]
    fn an_exposition_without_the_histogram_is_refused() {
        assert!(parse("# nothing\nup 1\n").is_none());
    }
}
