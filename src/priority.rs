//! Scheduling priorities of the server's threads. The tick runs at the process's own
//! priority; network threads (and resume workers) run a little lower, the store's threads and
//! the password workers (argon2) lower still, so when the CPU is short the scheduler serves
//! the frame first: its deadline matters more than the network's throughput (which catches
//! up next frame), a save's latency (the world never waits for one) or a login's.
//!
//! Per-thread priorities are a Linux feature (`setpriority` on a thread id). On every other
//! system [`lower_this_thread`] logs once that threads keep the process's priority and does
//! nothing else: the server works the same, the tick only loses its head start.

/// How much lower than the tick the network threads run (a `nice` increment).
pub const NETWORK_NICENESS: i32 = 5;
/// How much lower than the tick the password workers run: hashing is batch work.
pub const AUTH_NICENESS: i32 = 10;
/// How much lower than the tick the store's threads run: saves are off the tick and the
/// world never waits for one.
pub const STORE_NICENESS: i32 = 10;

/// Lowers the calling thread's scheduling priority by `niceness` below its current one (a
/// server started with `nice` keeps its threads' order; the kernel stops at 19, the lowest).
/// Linux applies `getpriority` and `setpriority` to one thread when given its thread id.
/// Failing to (a sandbox) only costs the tick its head start, so it is logged, not fatal.
#[cfg(target_os = "linux")]
pub fn lower_this_thread(niceness: i32) {
    // SAFETY: gettid has no preconditions; errno is this thread's own; getpriority and
    // setpriority only read their arguments.
    let changed = unsafe {
        let thread = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let current = libc::getpriority(libc::PRIO_PROCESS, thread);
        if current == -1 && *libc::__errno_location() != 0 {
            -1
        } else {
            libc::setpriority(libc::PRIO_PROCESS, thread, current + niceness)
        }
    };
    if changed != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not lower a thread's scheduling priority"
        );
    }
}

/// Fallback where threads have no priority of their own to set (macOS, Windows, the BSDs):
/// logs once, the first time any thread asks, and leaves every thread at the process's
/// priority.
#[cfg(not(target_os = "linux"))]
pub fn lower_this_thread(niceness: i32) {
    static LOGGED: std::sync::Once = std::sync::Once::new();
    LOGGED.call_once(|| {
        tracing::info!(
            niceness,
            "per-thread scheduling priorities are Linux-only: network, store and password \
             threads run at the tick's priority on this system"
        );
    });
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The lowest priority (highest niceness) Linux gives a thread; `setpriority` clamps to it.
    const LOWEST: i64 = 19;

    /// The niceness of the calling thread, from `/proc/thread-self/stat` (field 19).
    fn own_niceness() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    /// Holds at any starting niceness: the thread ends `NETWORK_NICENESS` below where it
    /// started, or at 19 when that is closer (the kernel clamps there). Started at 19 already
    /// (`nice -n 19 cargo test`), nothing can be lowered, so the lowering is unobservable and
    /// only "the others are untouched" is really checked; the test says so on stderr.
    #[test]
    fn only_the_calling_thread_is_lowered() {
        let before = own_niceness();
        let lowered = std::thread::spawn(|| {
            lower_this_thread(NETWORK_NICENESS);
            own_niceness()
        })
        .join()
        .unwrap();
        let expected = (before + i64::from(NETWORK_NICENESS)).min(LOWEST);
        if before == LOWEST {
            eprintln!("started at niceness {LOWEST}: no lower priority exists to observe");
        }
        assert_eq!(lowered, expected, "started at niceness {before}");
        assert_eq!(own_niceness(), before);
    }
}
