//! Scheduling priorities of the server's threads. The tick runs at the process's own
//! priority; network threads (and resume workers) run a little lower, the store's threads and
//! the password workers (argon2) lower still, so when the CPU is short the scheduler serves
//! the frame first: its deadline matters more than the network's throughput (which catches
//! up next frame), a save's latency (the world never waits for one) or a login's.

/// How much lower than the tick the network threads run (a `nice` increment).
pub const NETWORK_NICENESS: libc::c_int = 5;
/// How much lower than the tick the password workers run: hashing is batch work.
pub const AUTH_NICENESS: libc::c_int = 10;
/// How much lower than the tick the store's threads run: saves are off the tick and the
/// world never waits for one.
pub const STORE_NICENESS: libc::c_int = 10;

/// Lowers the calling thread's scheduling priority by `niceness` below its current one (a
/// server started with `nice` keeps its threads' order). Linux applies `getpriority` and
/// `setpriority` to one thread when given its thread id. Failing to (another OS, a sandbox)
/// only costs the tick its head start, so it is logged, not fatal.
pub fn lower_this_thread(niceness: libc::c_int) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The niceness of the calling thread, from `/proc/thread-self/stat` (field 19).
    fn own_niceness() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn only_the_calling_thread_is_lowered() {
        let before = own_niceness();
        let lowered = std::thread::spawn(|| {
            lower_this_thread(NETWORK_NICENESS);
            own_niceness()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, before + i64::from(NETWORK_NICENESS));
        assert_eq!(own_niceness(), before);
    }
}
