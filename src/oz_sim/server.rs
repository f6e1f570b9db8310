//! Serves a simulator on a listener until a shutdown future resolves, then drains.
//!
//! HTTP/1.1 and h2c (prior knowledge) on the same port through hyper-util's auto builder, as
//! Oz API is reached over plain HTTP in tests and demos; connections are watched by
//! `GracefulShutdown` so in-flight answers (including injected latency) complete.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::dispatch;
use super::state::OzSim;

/// How long in-flight requests get after shutdown before connections are dropped.
const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `sim` on `listener` until `shutdown` resolves, then stops accepting and waits up
/// to 10 s for open requests to finish.
///
/// Accept errors are logged and retried, so this returns `Ok` once stopped; the `Result` is
/// kept for callers that treat serving as fallible.
pub async fn serve(
    listener: TcpListener,
    sim: OzSim,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // http1's header_read_timeout only works with a timer (docs/dependencies.md, "hyper: timeouts need a timer").
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "oz-sim accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                // Preview URLs fall back to it when a request names no host.
                let local = match stream.local_addr() {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "oz-sim connection gone before serving");
                        continue;
                    }
                };
                let sim = sim.clone();
                let svc = service_fn(move |req| {
                    let sim = sim.clone();
                    async move { Ok::<_, Infallible>(dispatch::handle(sim, req, local, peer).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "oz-sim connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::debug!("oz-sim drained"),
        () = tokio::time::sleep(DRAIN_GRACE) => {
            tracing::warn!(grace = ?DRAIN_GRACE, "oz-sim stopped before all requests finished");
        }
    }
    Ok(())
}
