//! `--reconnect`: how long every bot takes to get back in after all connections drop at once
//! (what a server restart or drain does to its players), first with the resume tokens of
//! their last `logged_in`, then with passwords, for comparison.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::bot::{self, Backoff, Refused, Shared};
use crate::conn::{self, Outgoing};

/// One reconnect wave, measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Wave {
    /// `resume` or `password`.
    pub kind: &'static str,
    pub bots: usize,
    /// Bots back in (logged in again) by the end.
    pub back: usize,
    /// From the moment every connection was dropped to the last bot's `logged_in`.
    pub seconds: f64,
    pub logins_per_s: f64,
    /// Refusals met on the way (each retried): `server_busy`, `already_online` (the old
    /// session not released yet), other errors.
    pub server_busy: u64,
    pub already_online: u64,
    pub other_errors: u64,
    /// Why the bots not back gave up, with how many gave up for each reason (`no token`,
    /// `timed out`, a final error's code and message, an unexpected answer).
    pub not_back: BTreeMap<String, usize>,
}

#[derive(Default)]
struct Refusals {
    server_busy: AtomicU64,
    already_online: AtomicU64,
    other: AtomicU64,
}

/// A connection kept open after its bot is back in, with the token of that login.
struct Back {
    _conn: conn::Conn,
    token: Option<String>,
}

/// Drops every bot connection (the bots stop), then brings all bots back with `resume`, then
/// drops those and brings them back with passwords. Bots whose token is missing count as
/// not back in the resume wave.
pub async fn measure(shared: &Arc<Shared>, bots: usize, timeout: Duration) -> Vec<Wave> {
    shared.stop.send_replace(true);
    let tokens: Vec<Option<String>> = shared
        .tokens
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let (resume, back) = wave(shared, "resume", tokens, timeout).await;
    drop(back);
    let (password, back) = wave(shared, "password", vec![None; bots], timeout).await;
    drop(back);
    vec![resume, password]
}

async fn wave(
    shared: &Arc<Shared>,
    kind: &'static str,
    tokens: Vec<Option<String>>,
    timeout: Duration,
) -> (Wave, Vec<Back>) {
    let refusals = Arc::new(Refusals::default());
    let bots = tokens.len();
    let started = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(tokens.len());
    for (n, token) in tokens.into_iter().enumerate() {
        let (shared, refusals, last) =
            (Arc::clone(shared), Arc::clone(&refusals), Arc::clone(&last));
        tasks.push(tokio::spawn(async move {
            let username = format!("{}{n}", shared.config.prefix);
            let message = match (&token, kind) {
                (Some(token), "resume") => Outgoing::Resume { token },
                (None, "resume") => return Err("no token".to_string()),
                _ => Outgoing::Login {
                    username: &username,
                    password: &shared.config.password,
                },
            };
            let back = tokio::time::timeout(timeout, rejoin(&shared, n, &message, &refusals))
                .await
                .map_err(|_| "timed out".to_string())??;
            last.fetch_max(started.elapsed().as_micros() as u64, Relaxed);
            Ok(back)
        }));
    }
    // Bot number and connection of each bot back in; why the others are not.
    let mut back = Vec::new();
    let mut not_back = BTreeMap::new();
    for (n, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(Ok(b)) => back.push((n, b)),
            Ok(Err(why)) => *not_back.entry(why).or_default() += 1,
            Err(e) => *not_back.entry(format!("bot task failed: {e}")).or_default() += 1,
        }
    }
    let seconds = last.load(Relaxed) as f64 / 1e6;
    let wave = Wave {
        kind,
        bots,
        back: back.len(),
        seconds,
        logins_per_s: back.len() as f64 / seconds.max(1e-6),
        server_busy: refusals.server_busy.load(Relaxed),
        already_online: refusals.already_online.load(Relaxed),
        other_errors: refusals.other.load(Relaxed),
        not_back,
    };
    // Later waves resume with the newest tokens (by bot number: not every bot came back).
    let mut tokens = shared.tokens.lock().unwrap_or_else(|p| p.into_inner());
    for (n, b) in &back {
        if let (Some(slot), Some(token)) = (tokens.get_mut(*n), &b.token) {
            *slot = Some(token.clone());
        }
    }
    (wave, back.into_iter().map(|(_, b)| b).collect())
}

/// Connects as bot `n` and sends `message` until it is answered `logged_in`, retrying refusals
/// that say "later" after a short, growing pause. `Err`: refused for good, and why.
async fn rejoin(
    shared: &Shared,
    n: usize,
    message: &Outgoing<'_>,
    refusals: &Refusals,
) -> Result<Back, String> {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    let mut conn = None;
    loop {
        if conn.is_none() {
            match conn::connect(&shared.config, n).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    backoff.wait().await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected");
        match bot::request(c, message, &shared.stats).await {
            Ok(message) if message.kind == "logged_in" => {
                let token = message.resume_token.clone();
                return Ok(Back {
                    _conn: conn.take().expect("connected"),
                    token,
                });
            }
            Ok(other) => return Err(format!("answered {}", other.kind)),
            Err(Refused::Retry { reconnect, code }) => {
                let counter = match code.as_deref() {
                    Some("server_busy") => &refusals.server_busy,
                    Some("already_online") => &refusals.already_online,
                    _ => &refusals.other,
                };
                counter.fetch_add(1, Relaxed);
                if reconnect && let Some(mut c) = conn.take() {
                    c.writer.shutdown().await.ok();
                }
                backoff.wait().await;
            }
            Err(Refused::Fatal(why)) => return Err(why),
        }
    }
}

/// The waves as a Markdown table.
pub fn markdown(waves: &[Wave]) -> String {
    let mut out = String::from(
        "| reconnect with | bots back | all back in | logins/s | server_busy | already_online | other errors | not back, why |\n|---|---|---|---|---|---|---|---|\n",
    );
    for w in waves {
        out.push_str(&format!(
            "| {} | {}/{} | {:.2} s | {:.0} | {} | {} | {} | {} |\n",
            w.kind,
            w.back,
            w.bots,
            w.seconds,
            w.logins_per_s,
            w.server_busy,
            w.already_online,
            w.other_errors,
            if w.not_back.is_empty() {
                "-".to_string()
            } else {
                w.not_back
                    .iter()
                    .map(|(why, bots)| format!("{bots}: {why}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            }
        ));
    }
    out
}
