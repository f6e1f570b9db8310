//! Keep-alive connections to the backend: lent out for one exchange, taken back when the
//! response body has been read to its end.
//!
//! Built on `hyper::client::conn::http1` rather than hyper-util's pooled client. The backend is
//! one origin, so the pool is one stack behind a mutex, with no key to hash; and a connection
//! comes back from the end of its response body ([`Lease::release`], called by [`Leased`]), where hyper-util spawns a task on every request to wait for that moment.
//! Last in, first out: the warmest connection is reused and the surplus ages out after
//! `backend.pool_idle_timeout`, so the proxy, not the backend, closes idle connections.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};

use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::outgoing::Outgoing;
use crate::body::BoxError;

type Sender = SendRequest<Outgoing>;

/// The backend's connection pool; clones share it.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    /// `host:port` of the backend, resolved on every connect (it may be a DNS name).
    target: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    http1: Builder,
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    /// Oldest first: a connection is pushed when it comes back and popped when lent out.
    conns: Vec<IdleConn>,
    /// Whether a task is closing connections that outlived the idle timeout.
    reaper: bool,
}

struct IdleConn {
    sender: Sender,
    since: Instant,
}

/// A connection lent out for one exchange. Dropping it without [`Lease::release`] closes the
/// connection (hyper ends a client connection whose last handle is gone).
pub struct Lease {
    sender: Sender,
    pool: Arc<Inner>,
    reused: bool,
    /// Whether the connection may serve another exchange once this one is complete.
    reusable: bool,
}

impl Pool {
    /// An empty pool for the backend at `host:port`; `preserve_header_case` applies to every
    /// connection it opens.
    pub fn new(
        target: String,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
        preserve_header_case: bool,
    ) -> Self {
        let mut http1 = Builder::new();
        http1.preserve_header_case(preserve_header_case);
        Pool {
            inner: Arc::new(Inner {
                target,
                connect_timeout,
                idle_timeout,
                max_idle,
                http1,
                idle: Mutex::default(),
            }),
        }
    }

    /// The warmest idle connection that is still open, or a new one.
    pub async fn checkout(&self) -> Result<Lease, BoxError> {
        let (sender, reused) = match self.inner.take_idle() {
            Some(sender) => (sender, true),
            None => (self.inner.connect().await?, false),
        };
        Ok(Lease {
            sender,
            pool: self.inner.clone(),
            reused,
            reusable: true,
        })
    }

    /// Connections waiting in the pool.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.inner.idle.lock().expect("pool lock").conns.len()
    }
}

impl Lease {
    /// The connection's request handle.
    pub fn sender(&mut self) -> &mut Sender {
        &mut self.sender
    }

    /// Whether the connection had served an exchange before this one.
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Marks the connection as one that must close after this exchange: the backend may read
    /// what follows on it differently from the proxy (an upgrade it did not take).
    pub fn forbid_reuse(&mut self) {
        self.reusable = false;
    }

    /// Gives the connection back after a complete exchange. hyper reports it ready only once
    /// both messages are done: the request body sent to its end and the response read to its
    /// end; a request body that failed half-way closes it instead.
    pub fn release(self) {
        let Lease {
            sender,
            pool,
            reusable,
            ..
        } = self;
        if !reusable || sender.is_closed() {
            return;
        }
        if sender.is_ready() {
            pool.put(sender);
            return;
        }
        // hyper's connection task has not caught up with the end of the response yet, or the
        // backend answered before it had the whole request body: wait for the connection off the
        // response path. Rare; the common case above costs no task.
        spawn(async move {
            let mut sender = sender;
            if sender.ready().await.is_ok() {
                pool.put(sender);
            }
        });
    }
}

/// A backend response body. On a pooled exchange it holds the connection's lease, and gives the
/// connection back to the pool as soon as the body has been read to its end; dropped before that,
/// the connection is closed, as its rest of the response is still on the wire. It streams inside
/// the proxy's `Body` (`crate::body`), which need not know about leases.
pub struct Leased {
    body: Incoming,
    lease: Option<Lease>,
}

impl Leased {
    /// A backend response body on the connection `lease`.
    pub fn on(lease: Lease, body: Incoming) -> Self {
        Leased {
            body,
            lease: Some(lease),
        }
    }

    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
}

impl From<Incoming> for Leased {
    /// A body on a connection that is not given back (an upgrade offer, an unpooled exchange).
    fn from(body: Incoming) -> Self {
        Leased { body, lease: None }
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        // A body with nothing left (HEAD, 204, 304, `Content-Length: 0`, or read to the end
        // without the final poll) leaves a connection ready for the next exchange.
        if self.lease.is_some() && hyper::body::Body::is_end_stream(&self.body) {
            self.release();
        }
    }
}

impl fmt::Debug for Leased {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leased")
            .field("body", &self.body)
            .field("leased", &self.lease.is_some())
            .finish()
    }
}

impl hyper::body::Body for Leased {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.body).poll_frame(cx);
        if this.lease.is_some() {
            match &r {
                Poll::Ready(None) => this.release(),
                // Trailers are the last frame; the final `None` may never be asked for.
                Poll::Ready(Some(Ok(frame)))
                    if frame.is_trailers() || this.body.is_end_stream() =>
                {
                    this.release()
                }
                // The exchange failed half-way: the connection must not serve another.
                Poll::Ready(Some(Err(_))) => drop(this.lease.take()),
                _ => {}
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Inner {
    fn take_idle(&self) -> Option<Sender> {
        let now = Instant::now();
        let mut idle = self.idle.lock().expect("pool lock");
        while let Some(conn) = idle.conns.pop() {
            if now.duration_since(conn.since) >= self.idle_timeout {
                // Oldest first, so everything below is older still: the reaper's job, done now.
                let stale = std::mem::take(&mut idle.conns);
                drop(idle);
                drop(stale);
                return None;
            }
            if conn.sender.is_ready() {
                return Some(conn.sender);
            }
            // Closed by the backend while it waited: dropped.
        }
        None
    }

    fn put(self: Arc<Self>, sender: Sender) {
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.conns.len() >= self.max_idle {
            drop(idle);
            drop(sender);
            return;
        }
        idle.conns.push(IdleConn {
            sender,
            since: Instant::now(),
        });
        if !idle.reaper {
            idle.reaper = spawn(reap(Arc::downgrade(&self), self.idle_timeout));
        }
    }

    async fn connect(&self) -> Result<Sender, BoxError> {
        let stream = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(self.target.as_str()),
        )
        .await
        .map_err(|_| format!("connect timed out after {:?}", self.connect_timeout))?
        .map_err(|e| format!("connect to {}: {e}", self.target))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = self.http1.handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "backend connection failed");
            }
        });
        Ok(sender)
    }
}

/// Spawns `task` if a runtime is there to run it: a response body may be dropped while the
/// runtime shuts down, and giving a connection back must not panic then.
fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> bool {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(task);
            true
        }
        Err(_) => false,
    }
}

/// Closes idle connections once they are older than `idle_timeout`, and those the backend closed;
/// ends when the pool is empty or gone (the next connection put back starts another).
async fn reap(pool: Weak<Inner>, idle_timeout: Duration) {
    let mut tick = tokio::time::interval((idle_timeout / 2).max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = pool.upgrade() else { return };
        let now = Instant::now();
        let mut idle = inner.idle.lock().expect("pool lock");
        let expired = idle
            .conns
            .partition_point(|c| now.duration_since(c.since) >= idle_timeout);
        idle.conns.drain(..expired);
        idle.conns.retain(|c| !c.sender.is_closed());
        if idle.conns.is_empty() {
            idle.reaper = false;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Request, Response};
    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use tokio::net::TcpListener;

    use super::*;
    use crate::body::Body;

    /// A loopback HTTP/1.1 server answering "ok" on every connection it accepts.
    async fn server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                    TokioIo::new(stream),
                    service_fn(|_req| async {
                        Ok::<_, Infallible>(Response::new(Body::<Incoming>::full("ok")))
                    }),
                ));
            }
        });
        addr.to_string()
    }

    /// One complete exchange on `lease`, body read to its end; the lease comes back with it.
    async fn exchange(mut lease: Lease) -> Lease {
        let (req, _sent) = Outgoing::watch(
            Request::get("/")
                .header("host", "backend")
                .body(Body::Empty)
                .unwrap(),
            false,
        );
        let rsp = lease.sender().send_request(req).await.unwrap();
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        lease.sender().ready().await.unwrap();
        lease
    }

    fn pool(target: String, idle_timeout: Duration, max_idle: usize) -> Pool {
        Pool::new(target, Duration::from_secs(5), idle_timeout, max_idle, true)
    }

    #[tokio::test]
    async fn a_released_connection_is_lent_again_and_the_surplus_is_closed() {
        let pool = pool(server().await, Duration::from_secs(60), 1);
        let first = pool.checkout().await.unwrap();
        let second = pool.checkout().await.unwrap();
        assert!(!first.reused() && !second.reused());
        let (first, second) = tokio::join!(exchange(first), exchange(second));
        first.release();
        second.release();
        assert_eq!(pool.idle_count(), 1, "pool_max_idle is 1");

        let again = pool.checkout().await.unwrap();
        assert!(again.reused());
        assert_eq!(pool.idle_count(), 0);
        exchange(again).await.release();
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_connection_idle_for_the_idle_timeout_is_not_lent_again() {
        let pool = pool(server().await, Duration::ZERO, 4);
        exchange(pool.checkout().await.unwrap()).await.release();
        let next = pool.checkout().await.unwrap();
        assert!(
            !next.reused(),
            "an expired connection is closed, a new one opened"
        );
        assert_eq!(pool.idle_count(), 0);
    }
}
