//! The process's open-file limit: every client connection costs a file descriptor, and a
//! server that runs out of them cannot accept anyone (not even to say it is full). At start
//! the soft limit is raised to the hard one, and `max_connections` is fitted inside it.
//!
//! Reading and raising the limit (`getrlimit`, `setrlimit`) is done on Linux only. Elsewhere
//! [`raise_to_hard`] answers [`std::io::ErrorKind::Unsupported`], so [`fit_max_connections`]
//! logs once, at start, that it cannot read the limit and uses `max_connections` as
//! configured.

/// Descriptors kept out of `max_connections`: the listener, the store's and auth workers'
/// connections, log files, and connections being refused (see [`super::accept`]).
pub const FD_RESERVE: u64 = 128;

/// The open-file limit after [`raise_to_hard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimit {
    /// The limit in effect now.
    pub soft: u64,
    /// The most it could be raised to without privileges.
    pub hard: u64,
    /// The soft limit before it was raised, when it was.
    pub raised_from: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (when that fails, the limit stays as
/// it was) and reports the result.
#[cfg(target_os = "linux")]
pub fn raise_to_hard() -> std::io::Result<FileLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    let mut raised_from = None;
    if limit.rlim_cur < limit.rlim_max {
        let wanted = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
            limit.rlim_cur = limit.rlim_max;
            raised_from = Some(before);
        }
    }
    Ok(FileLimit {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
        raised_from,
    })
}

/// Fallback off Linux: the limit is not read or raised; the error says so.
#[cfg(not(target_os = "linux"))]
pub fn raise_to_hard() -> std::io::Result<FileLimit> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "the open-file limit is read and raised on Linux only",
    ))
}

/// How many connections fit in `soft` open files, keeping [`FD_RESERVE`] (or half of a very
/// small limit) for everything else.
pub fn connections_that_fit(soft: u64) -> u64 {
    soft.saturating_sub(FD_RESERVE).max(soft / 2)
}

/// Raises the limit, logs it, and returns `max_connections` fitted inside it (with a
/// warning when it had to be lowered).
pub fn fit_max_connections(max_connections: usize) -> usize {
    let limit = match raise_to_hard() {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, max_connections, "cannot read the open-file limit; max_connections is used as configured");
            return max_connections;
        }
    };
    match limit.raised_from {
        Some(from) => tracing::info!(
            open_files = limit.soft,
            raised_from = from,
            "open-file limit raised to the hard limit"
        ),
        None => tracing::info!(
            open_files = limit.soft,
            hard = limit.hard,
            "open-file limit"
        ),
    }
    let fit = usize::try_from(connections_that_fit(limit.soft)).unwrap_or(usize::MAX);
    if max_connections > fit {
        tracing::warn!(
            max_connections,
            open_files = limit.soft,
            serving_at_most = fit,
            "max_connections does not fit in the open-file limit ({FD_RESERVE} files are kept for \
             the store, auth workers and refusals); serving at most {fit} connections, so new \
             ones are answered server_busy instead of failing to be accepted. Raise the limit \
             (ulimit -n, systemd LimitNOFILE=) to serve more"
        );
        return fit;
    }
    max_connections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_kept_and_tiny_limits_still_serve_someone() {
        assert_eq!(connections_that_fit(1_048_576), 1_048_576 - FD_RESERVE);
        assert_eq!(connections_that_fit(256), 128);
        assert_eq!(connections_that_fit(64), 32);
    }

    /// Sets this process's soft limit to one below the hard one (so there is something to
    /// raise: without it the test would pass without raising anything wherever the soft limit
    /// starts at the hard one) and raises it to the hard one. It runs in the test process
    /// itself: harmless to the other tests, which see at most one file fewer meanwhile and end
    /// with the limit they started with or a higher one.
    #[cfg(target_os = "linux")]
    #[test]
    fn raising_lifts_a_lowered_soft_limit_to_the_hard_one() {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only touch the struct we own.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
            limit.rlim_cur = limit.rlim_max - 1;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
        let lowered = limit.rlim_cur;
        let raised = raise_to_hard().unwrap();
        assert_eq!(raised.raised_from, Some(lowered));
        assert_eq!(raised.soft, raised.hard);
        assert_eq!(raised.hard, limit.rlim_max);
        assert_eq!(
            raise_to_hard().unwrap().raised_from,
            None,
            "nothing left to raise"
        );
    }
}
