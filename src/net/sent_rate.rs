//! The per-connection message rate limit, counted by what the client sent rather than by
//! when the server got round to reading it.
//!
//! A limiter that counts lines as the server reads them punishes well-behaved clients
//! whenever the server falls behind: seconds of ordinary traffic, read in one go, look like a
//! burst. [`SentRateReader`] sits under the line decoder and watches the socket instead:
//! while the client's bytes keep arriving, credit grows with real time at the allowed rate,
//! without a cap; only when the socket has been read empty (everything the client sent so
//! far is in) is unused credit cut back to one burst. So a client never sent more than the
//! rate plus one burst over any stretch of time the server covered in one catch-up, and a
//! flood is still held to exactly the rate.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Credit for lines, in lines.
#[derive(Debug)]
pub struct SentRate {
    per_second: f64,
    burst: f64,
    credit: f64,
    since: Instant,
}

impl SentRate {
    /// A limit of `per_second` lines, with bursts of `burst`, starting with a full burst.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst),
            credit: f64::from(burst),
            since: Instant::now(),
        }
    }

    /// Bytes arrived: the time since the last event is credited in full.
    fn arrived(&mut self, now: Instant) {
        self.credit += self.per_second * now.saturating_duration_since(self.since).as_secs_f64();
        self.since = now;
    }

    /// The socket was read empty: unused credit above one burst lapses.
    fn drained(&mut self, now: Instant) {
        self.arrived(now);
        self.credit = self.credit.min(self.burst);
    }

    /// Takes one line's credit; false when the line is over the limit.
    pub fn take(&mut self) -> bool {
        if self.credit >= 1.0 {
            self.credit -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A reader that keeps a [`SentRate`] up to date with what the socket shows: data, or empty.
pub struct SentRateReader<R> {
    inner: R,
    rate: SentRate,
}

impl<R> SentRateReader<R> {
    pub fn new(inner: R, rate: SentRate) -> Self {
        Self { inner, rate }
    }

    /// The limit, to take a line's credit from.
    pub fn rate(&mut self) -> &mut SentRate {
        &mut self.rate
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for SentRateReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => this.rate.arrived(Instant::now()),
            Poll::Pending => this.rate.drained(Instant::now()),
            Poll::Ready(_) => {}
        }
        polled
    }
}

/// Writes pass straight through, so a transport that both reads and writes one stream
/// (WebSocket) can sit on top of the reader.
impl<R: AsyncWrite + Unpin> AsyncWrite for SentRateReader<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::{FramedRead, LinesCodec};

    use super::*;

    /// Lines accepted and refused when `lines` lines are sent `gap` apart and the server
    /// starts reading after `read_after` (then reads as they come).
    async fn send_and_read(lines: usize, gap: Duration, read_after: Duration) -> (usize, usize) {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let sender = tokio::spawn(async move {
            for n in 0..lines {
                client
                    .write_all(format!("line {n}\n").as_bytes())
                    .await
                    .unwrap();
                if !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
            }
        });
        let rate = SentRate::new(120, 120);
        tokio::time::sleep(read_after).await;
        let mut framed = FramedRead::new(SentRateReader::new(server, rate), LinesCodec::new());
        let (mut accepted, mut refused) = (0, 0);
        while let Some(line) = framed.next().await {
            line.unwrap();
            if framed.get_mut().rate().take() {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        sender.await.unwrap();
        (accepted, refused)
    }

    #[tokio::test(start_paused = true)]
    async fn a_backlog_read_late_is_counted_by_when_it_was_sent() {
        // 1,000 lines at 100/s (under the 120/s limit), the server 10 s behind: counted on
        // reading (the old limit), everything past the first burst of 120 was refused.
        let (accepted, refused) =
            send_and_read(1000, Duration::from_millis(10), Duration::from_secs(10)).await;
        assert_eq!((accepted, refused), (1000, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_is_held_to_the_rate() {
        // 10,000 lines at 1,000/s for 10 s, read as they come: 120/s and one burst pass.
        let (accepted, refused) =
            send_and_read(10_000, Duration::from_millis(1), Duration::ZERO).await;
        assert_eq!(accepted + refused, 10_000);
        assert!((1200..=1330).contains(&accepted), "accepted {accepted}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_read_late_gains_at_most_the_time_it_waited() {
        // 2,000 lines at once, read 5 s later: the server cannot tell them from 5 s of
        // traffic, so at most 5 s of rate and one burst pass; the rest is refused.
        let (accepted, refused) = send_and_read(2000, Duration::ZERO, Duration::from_secs(5)).await;
        assert_eq!(accepted + refused, 2000);
        assert!(accepted <= 120 + 5 * 120, "accepted {accepted}");
    }

    #[test]
    fn credit_above_a_burst_lapses_once_the_socket_is_empty() {
        let start = Instant::now();
        let mut rate = SentRate::new(10, 5);
        rate.since = start;
        rate.drained(start + Duration::from_secs(60));
        assert_eq!((0..20).filter(|_| rate.take()).count(), 5);
        rate.arrived(start + Duration::from_secs(62));
        assert_eq!((0..30).filter(|_| rate.take()).count(), 20);
    }
}
