//! Tunnels for upgraded connections (WebSocket and any other `Upgrade`), RFC 9110 §7.8.
//!
//! After the backend answers 101, both upgraded streams are spliced with
//! `tokio::io::copy_bidirectional`, which also passes half-closes along. A tunnel that carries no
//! byte in either direction for `server.tunnel_idle_timeout` is closed, one that has lived for
//! `server.tunnel_max_lifetime` is closed however busy (nothing inside a tunnel is inspected, so
//! its life and reach stay bounded), and all tunnels are closed when the shutdown deadline
//! passes. Only the protocols of `server.upgrade_protocols` get here (`proxy::dispatch`). HTTP/2 has no `Upgrade` (RFC 9113 §8.6): such requests are
//! never tunnelled from an HTTP/2 client.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::{Metrics, RouteKind};

/// Everything a tunnel needs besides its two ends.
#[derive(Clone)]
pub struct Tunnels {
    /// Tracks live tunnels so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Cancelled when the drain deadline passes.
    pub cancel: CancellationToken,
    /// Close a tunnel after this long without traffic.
    pub idle_timeout: Duration,
    /// Close a tunnel after this long in any case; zero = never.
    pub max_lifetime: Duration,
    pub metrics: Metrics,
}

impl Tunnels {
    /// Spawns the splice between the client's and the backend's upgraded connections.
    pub fn spawn(&self, client: OnUpgrade, backend: OnUpgrade) {
        let this = self.clone();
        self.tracker.spawn(async move {
            let (client, backend) = match tokio::try_join!(client, backend) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade did not complete");
                    return;
                }
            };
            let gauge = this.metrics.in_flight(RouteKind::Upgrade).clone();
            gauge.inc();
            let activity = Arc::new(Activity::new());
            let mut client = Tracked::new(TokioIo::new(client), activity.clone());
            let mut backend = Tracked::new(TokioIo::new(backend), activity.clone());
            let started = Instant::now();
            let outcome = tokio::select! {
                r = tokio::io::copy_bidirectional(&mut client, &mut backend) => match r {
                    Ok((up, down)) => format!("closed ({up} bytes up, {down} bytes down)"),
                    Err(e) => format!("failed: {e}"),
                },
                _ = activity.idle_for(this.idle_timeout) => "idle timeout".to_owned(),
                _ = lifetime(this.max_lifetime) => "maximum lifetime".to_owned(),
                _ = this.cancel.cancelled() => "shutdown deadline".to_owned(),
            };
            gauge.dec();
            // The upgrade request itself was counted (as a 101) when its response went out;
            // counting the tunnel again would show every WebSocket session twice.
            tracing::debug!(
                outcome,
                duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                "tunnel ended"
            );
        });
    }
}

/// Resolves after `max`; never when `max` is zero.
async fn lifetime(max: Duration) {
    if max.is_zero() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(max).await;
}

/// Last time a tunnel moved a byte, in milliseconds since it started.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

pin_project_lite::pin_project! {
    /// An I/O object that records when it last moved a byte.
    struct Tracked<T> {
        #[pin]
        io: T,
        activity: Arc<Activity>,
    }
}

impl<T> Tracked<T> {
    fn new(io: T, activity: Arc<Activity>) -> Self {
        Tracked { io, activity }
    }
}

impl<T: AsyncRead> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.io.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let r = this.io.poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}
