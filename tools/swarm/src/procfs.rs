//! CPU and memory from /proc: the server's per thread (which thread saturates first) and the
//! swarm's own (a saturated swarm measures itself, not the server).

use std::collections::BTreeMap;
use std::fs;

/// CPU time (clock ticks) and name of each thread of a process, by thread id.
pub type ThreadTimes = BTreeMap<u32, (String, u64)>;

/// One thread name's share of a core over a window.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ThreadCpu {
    pub name: String,
    /// Threads of that name seen at the end of the window.
    pub threads: usize,
    /// Percent of one core (200 = two cores busy).
    pub cpu_percent: f64,
}

/// The name and utime + stime (ticks) of a `/proc/.../stat` line. The name is in
/// parentheses and may itself hold spaces and parentheses.
fn parse_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// Clock ticks per second of the stat files.
#[cfg(target_os = "linux")]
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Fallback off Linux, where there is no /proc to read: every reading above is empty or
/// zero (the report shows no CPU figures), so the tick rate only has to be non-zero.
#[cfg(not(target_os = "linux"))]
fn ticks_per_second() -> f64 {
    100.0
}

/// Every thread of `pid` now (empty if the process is gone or not readable).
pub fn thread_times(pid: u32) -> ThreadTimes {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return ThreadTimes::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let tid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let text = fs::read_to_string(entry.path().join("stat")).ok()?;
            Some((tid, parse_stat(&text)?))
        })
        .collect()
}

/// The threads of every process in `pids` (thread ids are unique across processes).
pub fn threads_of(pids: &[u32]) -> ThreadTimes {
    pids.iter().flat_map(|&pid| thread_times(pid)).collect()
}

/// CPU per thread name between two readings `seconds` apart, busiest first. Threads born
/// during the window count from zero.
pub fn cpu_by_name(before: &ThreadTimes, after: &ThreadTimes, seconds: f64) -> Vec<ThreadCpu> {
    let mut by_name: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for (tid, (name, ticks)) in after {
        let start = before.get(tid).map_or(0, |(_, t)| *t);
        let entry = by_name.entry(name).or_default();
        entry.0 += 1;
        entry.1 += ticks.saturating_sub(start);
    }
    let scale = 100.0 / ticks_per_second() / seconds.max(1e-9);
    let mut cpu: Vec<ThreadCpu> = by_name
        .into_iter()
        .map(|(name, (threads, ticks))| ThreadCpu {
            name: name.to_string(),
            threads,
            cpu_percent: ticks as f64 * scale,
        })
        .collect();
    cpu.sort_by(|a, b| b.cpu_percent.total_cmp(&a.cpu_percent));
    cpu
}

/// This process's CPU time so far (all threads), in ticks.
pub fn own_ticks() -> u64 {
    fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|text| parse_stat(&text))
        .map_or(0, |(_, ticks)| ticks)
}

/// Percent of one core used between two [`own_ticks`] readings `seconds` apart.
pub fn percent(ticks: u64, seconds: f64) -> f64 {
    ticks as f64 * 100.0 / ticks_per_second() / seconds.max(1e-9)
}

/// The resident set of `pid` in MiB (`VmRSS` of /proc/<pid>/status).
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "4242 (hearth (net) 1) S 1 2 3 4 5 6 7 8 9 10 250 40 0 0 20 0 3 0";
        assert_eq!(parse_stat(line), Some(("hearth (net) 1".to_string(), 290)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn cpu_is_summed_by_thread_name() {
        let name = |n: &str, t| (n.to_string(), t);
        let before = ThreadTimes::from([(1, name("auth", 10)), (2, name("auth", 20))]);
        let after = ThreadTimes::from([
            (1, name("auth", 10 + 50)),
            (2, name("auth", 20 + 50)),
            (3, name("net", 30)),
        ]);
        let tick = 1.0 / ticks_per_second();
        let cpu = cpu_by_name(&before, &after, 100.0 * tick);
        assert_eq!(cpu[0].name, "auth");
        assert_eq!(cpu[0].threads, 2);
        assert!((cpu[0].cpu_percent - 100.0).abs() < 1e-6);
        assert!((cpu[1].cpu_percent - 30.0).abs() < 1e-6);
        // This process exists: its own readings work.
        assert!(rss_mib(std::process::id()).is_some());
        assert!(!thread_times(std::process::id()).is_empty());
    }
}
