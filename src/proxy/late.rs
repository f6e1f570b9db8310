//! Late verdicts: captures whose verdict was still `PROCESSING` when `wait_for_result` ran out,
//! on a route with `late_verdict_path`, followed in the background and delivered to the backend
//! once final (README.md, "Late verdicts").
//!
//! - **Who owns what.** `capture` says what to follow (a [`FollowUp`], with a clone of its Oz
//!   client) and how to poll Oz for it ([`FollowUp::follow`], the backoff of `wait_for_result`
//!   until `capture.follow_up_for` has passed since the capture); this module spawns, counts,
//!   delivers and cancels. A follow-up starts once the capture's own exchange is over, however
//!   it ended (forward mode: answered, timed out, or the client gone; never when the backend
//!   could not be reached), so the late verdict comes after the `PROCESSING` capture.
//! - **The delivery** is `POST {late_verdict_path}` with the [`Report`] JSON, its `X-Oz-*`
//!   headers, the request id header carrying the capture's request id, and a fresh
//!   `X-Oz-Verdict-Token` minted for each attempt with the current signer, whose `body_sha256`
//!   covers the body and whose `jti` is `{request_id}.late` (distinct from the capture's own
//!   token, the same on every attempt) and `sub` the folder id. It goes through
//!   [`Passthrough`], the one backend client: `Host` is the backend's own, framing as for any
//!   request, the pool and `backend.timeout` as for any request.
//! - **Retries.** A connect error, a timeout, a broken exchange, a 5xx, a 408 or a 429 is tried again after
//!   [`FIRST_RETRY`], doubling to [`MAX_RETRY`], jittered (half to the whole pause), for
//!   [`DELIVERY_RETRY_FOR`] after the first attempt; then the delivery is given up (`failed`).
//!   A 2xx is `delivered`; any other answer (3xx, another 4xx) is final (`rejected`). Deliveries are
//!   at-least-once: an attempt the backend processed but whose answer was lost is sent again.
//! - **Bounds.** At most `capture.max_follow_ups` follow-ups are pending at once; beyond that a
//!   capture is logged and counted (`dropped`) and left to `GET /verdicts/{folder_id}`. When
//!   the listener closes the pending folder ids are logged on one line
//!   ([`LateVerdicts::pending`]); when the drain ends they are cancelled (`cancelled`), never
//!   waited for.
//! - **Logs** name the folder id, the request id, the attempt and the backend's status or
//!   failure; never frames, `additional_info`, tokens or keys. Every result is counted in
//!   `oz_proxy_late_verdicts_total{result}`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::Body;
use crate::capture::handler::{FollowUp, Followed};
use crate::capture::report::oz_headers;
use crate::capture::report::Report;
use crate::metrics::{LateResult, Metrics};
use crate::proxy::passthrough::Passthrough;
use crate::proxy::pool::Leased;
use crate::proxy::routes::Live;

/// First pause before a failed delivery is tried again.
pub const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Longest pause between delivery attempts.
pub const MAX_RETRY: Duration = Duration::from_secs(30);
/// How long after its first attempt a delivery is retried before it is given up.
pub const DELIVERY_RETRY_FOR: Duration = Duration::from_secs(10 * 60);

/// Most bytes of a backend's answer to a delivery read (and dropped) so that its connection can
/// go back to the pool; a longer answer closes the connection instead.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How long reading that answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The `User-Agent` of deliveries: the proxy itself is the client.
const USER_AGENT: &str = concat!("oz-capture-proxy/", env!("CARGO_PKG_VERSION"));

/// The pending follow-ups and what they need. Cloning is cheap.
#[derive(Clone)]
pub struct LateVerdicts {
    inner: Arc<Inner>,
}

struct Inner {
    passthrough: Passthrough,
    /// `forwarding.request_id_header`, if any.
    request_id_header: Option<HeaderName>,
    /// The live config, for the signer at the time of each attempt (keys may rotate).
    live: Arc<ArcSwap<Live>>,
    metrics: Metrics,
    tracker: TaskTracker,
    cancel: CancellationToken,
    /// Folder ids of the pending follow-ups, by a key of their own.
    pending: Mutex<HashMap<u64, String>>,
    next_key: AtomicU64,
}

impl LateVerdicts {
    /// Follow-ups delivered through `passthrough`, with the request id in `request_id_header`.
    pub fn new(
        passthrough: Passthrough,
        request_id_header: Option<HeaderName>,
        live: Arc<ArcSwap<Live>>,
        metrics: Metrics,
    ) -> Self {
        LateVerdicts {
            inner: Arc::new(Inner {
                passthrough,
                request_id_header,
                live,
                metrics,
                tracker: TaskTracker::new(),
                cancel: CancellationToken::new(),
                pending: Mutex::new(HashMap::new()),
                next_key: AtomicU64::new(0),
            }),
        }
    }

    /// Follows `follow_up` in the background, unless `max_follow_ups` (`capture.max_follow_ups`
    /// of the capture's config) are pending already or the drain has ended.
    pub fn spawn(&self, follow_up: FollowUp, max_follow_ups: usize) {
        let me = &*self.inner;
        let key = {
            let mut pending = me.pending.lock().expect("never poisoned");
            if me.cancel.is_cancelled() {
                me.metrics.late_verdict(LateResult::Cancelled);
                return;
            }
            if pending.len() >= max_follow_ups {
                drop(pending);
                me.metrics.late_verdict(LateResult::Dropped);
                tracing::warn!(
                    folder_id = %follow_up.folder_id,
                    request_id = %follow_up.request_id,
                    max_follow_ups,
                    "late verdict not followed: capture.max_follow_ups are pending; GET /verdicts/{{folder_id}} has it"
                );
                return;
            }
            let key = me.next_key.fetch_add(1, Ordering::Relaxed);
            pending.insert(key, follow_up.folder_id.clone());
            key
        };
        tracing::info!(
            folder_id = %follow_up.folder_id,
            request_id = %follow_up.request_id,
            "verdict still PROCESSING: following it for a late delivery"
        );
        let this = self.clone();
        me.tracker.spawn(async move {
            let _pending = Pending { late: &this, key };
            tokio::select! {
                biased;
                _ = this.inner.cancel.cancelled() => {
                    this.inner.metrics.late_verdict(LateResult::Cancelled);
                    tracing::info!(folder_id = %follow_up.folder_id, request_id = %follow_up.request_id, "late verdict follow-up cancelled at the end of the drain");
                }
                _ = this.run(&follow_up) => {}
            }
        });
    }

    /// The folder ids of the pending follow-ups, sorted.
    pub fn pending(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .inner
            .pending
            .lock()
            .expect("never poisoned")
            .values()
            .cloned()
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Cancels every pending follow-up and waits until they have all stopped.
    pub async fn cancel(&self) {
        self.inner.cancel.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    async fn run(&self, f: &FollowUp) {
        let metrics = &self.inner.metrics;
        match f.follow().await {
            Followed::Final(report) => self.deliver(f, report).await,
            Followed::Unresolved => {
                metrics.late_verdict(LateResult::Expired);
                tracing::warn!(folder_id = %f.folder_id, request_id = %f.request_id, "late verdict not final within capture.follow_up_for: not delivered");
            }
            Followed::OzFailed(error) => {
                metrics.late_verdict(LateResult::OzError);
                tracing::warn!(folder_id = %f.folder_id, request_id = %f.request_id, error, "Oz refused a poll: late verdict not delivered");
            }
        }
    }

    /// Delivers `report` to the backend, retrying as the module doc says.
    async fn deliver(&self, f: &FollowUp, report: Report) {
        let me = &*self.inner;
        let body = report.body();
        let jti = format!("{}.late", f.request_id);
        let give_up_at = Instant::now() + DELIVERY_RETRY_FOR;
        let mut backoff = FIRST_RETRY;
        for attempt in 1u32.. {
            let req = self.request(f, &report, &jti, &body);
            let failure = match me.passthrough.send(req).await {
                Ok(rsp) => {
                    let status = rsp.status();
                    drain(rsp.into_body()).await;
                    if status.is_success() {
                        me.metrics.late_verdict(LateResult::Delivered);
                        tracing::info!(folder_id = %f.folder_id, request_id = %f.request_id, resolution = report.resolution, attempt, status = status.as_u16(), "late verdict delivered");
                        return;
                    }
                    // 408 and 429 say "not now", not "never": retried like a 5xx.
                    let later = status.is_server_error()
                        || status == http::StatusCode::REQUEST_TIMEOUT
                        || status == http::StatusCode::TOO_MANY_REQUESTS;
                    if !later {
                        me.metrics.late_verdict(LateResult::Rejected);
                        tracing::warn!(folder_id = %f.folder_id, request_id = %f.request_id, attempt, status = status.as_u16(), "the backend refused the late verdict: not retried");
                        return;
                    }
                    format!("the backend answered {}", status.as_u16())
                }
                Err(e) => e.to_string(),
            };
            let pause = crate::backoff::jitter(backoff);
            if Instant::now() + pause > give_up_at {
                me.metrics.late_verdict(LateResult::Failed);
                tracing::warn!(folder_id = %f.folder_id, request_id = %f.request_id, attempt, error = failure, "late verdict delivery given up after retrying for {DELIVERY_RETRY_FOR:?}");
                return;
            }
            me.metrics.late_verdict(LateResult::Retry);
            tracing::warn!(folder_id = %f.folder_id, request_id = %f.request_id, attempt, error = failure, retry_in = ?pause, "late verdict delivery failed, will retry");
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(MAX_RETRY);
        }
    }

    /// One delivery attempt's request. The token is minted now, by the signer of the live
    /// config if it has capture routes (keys may have rotated since the capture), else by the
    /// capture's.
    fn request(&self, f: &FollowUp, report: &Report, jti: &str, body: &Bytes) -> Request<Body> {
        let token = match &self.inner.live.load().captures {
            Some(c) => c.service().late_token(report, jti, body),
            None => f.token(report, jti, body),
        };
        let mut req = Request::new(Body::full(body.clone()));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = f
            .late_verdict_path
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("/"));
        let h = req.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        if let (Some(name), Ok(id)) = (
            &self.inner.request_id_header,
            HeaderValue::from_str(&f.request_id),
        ) {
            h.insert(name.clone(), id);
        }
        report.headers(h);
        if let Some(token) = token {
            if let Ok(v) = HeaderValue::from_str(&token) {
                h.insert(oz_headers::VERDICT_TOKEN.clone(), v);
            }
        }
        req
    }
}

/// Removes a follow-up from the pending ones when its task ends, however it ends.
struct Pending<'a> {
    late: &'a LateVerdicts,
    key: u64,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.late.inner.pending.lock() {
            pending.remove(&self.key);
        }
    }
}

/// Reads the backend's answer to the end (within bounds), so its connection can be pooled again.
async fn drain(mut body: Leased) {
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, async {
        let mut read = 0;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                read += data.len();
                if read > MAX_ANSWER_BYTES {
                    return;
                }
            }
        }
    })
    .await;
}
