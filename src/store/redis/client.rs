//! The URLs of the Redis store: a client with the socket options the store relies on, and a
//! URL safe to print in logs.

use std::time::Duration;

/// A client for `url` with the socket options the store relies on: `TCP_NODELAY` (a
/// pipelined chunk is written in many segments; without it Nagle's algorithm and delayed
/// ACKs stall the last one for ~40 ms) and TCP keepalive (a peer that vanished without a
/// FIN is noticed on an idle connection too).
pub(super) fn client_for(url: &str) -> redis::RedisResult<redis::Client> {
    use redis::IntoConnectionInfo;
    use redis::io::tcp::{TcpSettings, socket2::TcpKeepalive};
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10));
    let info = url.into_connection_info()?.set_tcp_settings(
        TcpSettings::default()
            .set_nodelay(true)
            .set_keepalive(keepalive),
    );
    redis::Client::open(info)
}

/// A URL safe to print: any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let shown = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_string()
            };
            format!("{scheme}://{shown}@{host}{path}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_printed_without_their_password() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("redis://app:s3cret@db.example:6379/2"),
            "redis://app:***@db.example:6379/2"
        );
        assert_eq!(
            redact_url("rediss://:s3cret@db.example"),
            "rediss://:***@db.example"
        );
    }
}
