//! The capture handler: orchestrates one capture from request to verdict, and says what comes
//! of it as an [`Outcome`]. It only orchestrates; parsing and packing (the body filter) live in
//! `capture::transform`, Oz calls in `oz`, and every byte to or from the backend goes through
//! `proxy::dispatch`, which sends a forwarded capture the way it sends any other request.
//!
//! 1. The content type picks the mode (`application/json` → frames, `application/octet-stream` →
//!    OzCapsula container, anything else → 415) before any body is read.
//! 2. A declared `Content-Length` over the route's `max_body_bytes` gets 413 at once; since hyper
//!    only sends `100 Continue` when the body is first polled, an `Expect: 100-continue` client
//!    never uploads it. The memory budget is reserved next (`capture::limit`).
//!    The route's rate limits come next (`capture::guard`): a capture beyond one gets 429
//!    before its body is read.
//! 3. The body is read under the limit and `capture.body_timeout`.
//! 4. The transform runs on the capture threads (`runtime::pool`) under the concurrency limit,
//!    and fingerprints the media (`capture::digest`); a capture whose fingerprint is already
//!    claimed or accepted is a replay (409), before anything is uploaded.
//! 5. Oz: upload (once Oz has accepted it, the replay guard remembers the capture for
//!    `capture.replay.window`; an upload that failed lets its claim go), then analyses and
//!    verdict (`oz::OzClient::verdict`).
//! 6. Forward mode gives back the request the backend is to get, the original plus `X-Oz-*`
//!    ([`Outcome::Forward`]); respond mode the client's answer ([`Outcome::Respond`]). A capture
//!    that failed is never forwarded as if checked: with `on_oz_error: forward` it goes with
//!    `X-Oz-Resolution: ERROR`, otherwise it ends as a [`Failure`] (502/504 to the client) and the
//!    backend gets nothing. Nor is an image Oz did not see: a best frame the upload left out is refused in
//!    step 4 or, with `unchecked_images: strip`, nulled in the body the backend gets.
//! 7. A verdict still `PROCESSING` on a route with `late_verdict_path` comes with a
//!    [`FollowUp`]: what `proxy::late` follows in the background ([`CaptureService::follow`])
//!    until the verdict is final, then delivers to the backend as a [`Report`].
//! 8. On a route with `capture.server_timing`, the time each phase took comes too
//!    ([`Timings`]), for `proxy::dispatch` to add the backend's and answer it as `Server-Timing`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::capture::digest::FrameDigests;
use crate::capture::guard::{Guard, Held};
use crate::capture::limit::{Limiter, MemoryPermit};
use crate::capture::report::{oz_headers, Report};
use crate::capture::timing::Timings;
use crate::capture::transform::{
    prepare_frames_upload, strip_images, PreparedUpload, TransformOptions, UncheckedImage,
};
use crate::capture::{Error as CaptureError, Failure};
use crate::config::{
    Binding, CaptureRoute, Config, ForwardBody, OnOzError, OnResult, OzApiMode, OzConfig,
    ResultMode, StateConfig, StoreKind, UncheckedImages,
};
use crate::metrics::{CaptureOutcome, Metrics};
use crate::oz::{Analysis, OzClient, Resolution, UploadBody, Verdict};
use crate::runtime::pool::TransformPool;
use crate::state::Store;
use crate::trace::Tracing;
use crate::verdict_token::Signer;

/// Everything the capture path needs; swapped as a whole on config reload.
pub struct CaptureService {
    oz: OzClient,
    /// The settings `oz` was built from, to keep it across reloads that leave them alone.
    oz_config: OzConfig,
    metrics: Metrics,
    limiter: Limiter,
    /// `(memory_budget_bytes, max_concurrent)` the limiter was built with.
    limits: (u64, usize),
    /// Where transforms run; shared with the services that replace this one on reloads that
    /// leave its size and priority alone.
    pool: Arc<TransformPool>,
    body_timeout: Duration,
    folder_meta_data: Arc<BTreeMap<String, String>>,
    /// Signs verdict tokens; `None` when `verdict.keys` is empty.
    signer: Option<Arc<Signer>>,
    /// `capture.follow_up_for`.
    follow_up_for: Duration,
    /// `capture.max_follow_ups`.
    max_follow_ups: usize,
    /// Rate limits and the replay guard.
    guard: Guard,
    /// The `state` section and `capture.replay.max_entries` the guard's store was built from,
    /// to keep the store (and what it remembers) across reloads that leave them alone.
    store_config: (StateConfig, u64),
}

/// A capture whose verdict was still `PROCESSING` when `wait_for_result` ran out, on a route
/// with `late_verdict_path`: what the proxy follows in the background until the verdict is
/// final. Holds no capture data: ids, the action tag and the analyses to poll.
#[derive(Debug, Clone)]
pub struct FollowUp {
    pub folder_id: String,
    /// The request id of the capture.
    pub request_id: String,
    pub action: Option<String>,
    pub virtual_camera: Option<bool>,
    /// Where the backend gets the late verdict (`POST`).
    pub late_verdict_path: String,
    /// Followed until then: `capture.follow_up_for` after the capture started.
    pub until: tokio::time::Instant,
    /// The analyses as last seen, ids and all.
    analyses: Vec<Analysis>,
    /// The Oz client that polls it: a clone, so a follow-up keeps no capture service (its
    /// threads, its limiter) alive past a reload.
    oz: OzClient,
    /// The signer of the capture, for when the live config has none.
    signer: Option<Arc<Signer>>,
}

impl FollowUp {
    /// Polls Oz for the late verdict (`OzClient::follow`: the backoff of `wait_for_result`,
    /// until `until`).
    pub async fn follow(&self) -> Followed {
        match self
            .oz
            .follow(
                &self.folder_id,
                self.analyses.clone(),
                self.until,
                &self.request_id,
            )
            .await
        {
            Ok(v) if v.resolution.is_final() => Followed::Final(Report::new(
                &v,
                Some(self.request_id.clone()),
                self.action.clone(),
                self.virtual_camera,
            )),
            Ok(_) => Followed::Unresolved,
            Err(e) => Followed::OzFailed(e.to_string()),
        }
    }

    /// A token for a late delivery of `report` by the capture's own signer; `None` when tokens
    /// were off.
    pub fn token(&self, report: &Report, jti: &str, body: &[u8]) -> Option<String> {
        let signer = self.signer.as_ref()?;
        Some(report.token(signer, jti, Some(body), None))
    }
}

/// What following a capture came to.
#[derive(Debug)]
pub enum Followed {
    /// The verdict is final.
    Final(Report),
    /// Still not final when `capture.follow_up_for` ran out or the polls were spent.
    Unresolved,
    /// Oz refused a poll (a 4xx or an auth failure); the reason, for the log.
    OzFailed(String),
}

/// What comes of a checked capture.
#[derive(Debug)]
pub enum Outcome {
    /// Respond mode: the client's answer.
    Respond(Response<Bytes>),
    /// Forward mode: the request the backend gets, with the verdict headers and the body as
    /// `forward_body` says. Its head is the one the request filter made.
    Forward(Request<Bytes>),
}

/// A checked capture: what comes of it, what to follow, and how long it took.
#[derive(Debug)]
pub struct Checked {
    pub outcome: Outcome,
    /// Set when the verdict is still `PROCESSING` on a route with `late_verdict_path`.
    pub follow_up: Option<FollowUp>,
    /// The phases so far, the backend's to come: for `Server-Timing` on a route with
    /// `capture.server_timing`, and for the trace.
    pub timings: Timings,
    /// What the trace says about the capture.
    pub summary: Summary,
}

/// What a checked capture's trace says about it: sizes and Oz's answer, never its content.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The request body's size.
    pub body_bytes: u64,
    /// The upload's size (the multipart body, or the container).
    pub upload_bytes: u64,
    /// Frames sent (frames mode).
    pub frames: Option<usize>,
    /// The action, as mapped (frames mode).
    pub action: Option<String>,
    /// Oz's folder and verdict, when Oz gave one.
    pub folder_id: Option<String>,
    pub resolution: Option<&'static str>,
}

/// What the client sent, once read and checked.
enum Mode {
    Frames,
    Container,
}

/// What the capture turned into, for the headers and the summary.
struct Prepared {
    upload: UploadBody,
    action: Option<String>,
    virtual_camera: Option<bool>,
    frame_count: Option<usize>,
    /// Best frames in the body that Oz does not get (none for a container).
    unchecked_images: Vec<UncheckedImage>,
    /// The media's fingerprints for the replay guard, one per frame (a container's is taken
    /// only when the route guards against replays).
    media_digests: Option<Vec<[u8; 32]>>,
    /// `parse` and `zip` (none for a container: it is sent as it came).
    timings: Timings,
}

impl CaptureService {
    /// Builds the capture path from `config`. On a reload, `previous` is the service being
    /// replaced: its Oz client (with its login token) is kept when the `oz` section did not change,
    /// its limiter when the limits did not, so captures in flight still count against the
    /// same budget, and its transform pool when `max_concurrent` and `transform_priority` did not.
    pub fn new(
        config: &Config,
        signer: Option<Arc<Signer>>,
        metrics: Metrics,
        tracing: &Tracing,
        previous: Option<&CaptureService>,
    ) -> anyhow::Result<Self> {
        let limits = (
            config.capture.memory_budget_bytes,
            config.capture.max_concurrent,
        );
        let oz = match previous {
            Some(p) if p.oz_config == config.oz => p.oz.clone(),
            _ => OzClient::traced(&config.oz, metrics.clone(), tracing.clone())
                .map_err(|e| anyhow::anyhow!("oz client: {e}"))?,
        };
        let limiter = match previous {
            Some(p) if p.limits == limits => p.limiter.clone(),
            _ => Limiter::new(limits.0, limits.1),
        };
        let (threads, priority) = (
            config.capture.max_concurrent,
            config.capture.transform_priority,
        );
        let pool = match previous {
            Some(p) if p.pool.fits(threads, priority) => p.pool.clone(),
            _ => Arc::new(
                TransformPool::new(threads, priority)
                    .map_err(|e| anyhow::anyhow!("capture threads: {e}"))?,
            ),
        };
        let store_config = (config.state.clone(), config.capture.replay.max_entries);
        // What the store remembers survives any reload that can keep it: `on_error` applies
        // through the guard, and a memory store depends on nothing else of the section.
        let store = match previous {
            Some(p) if same_store(&p.store_config, &store_config) => p.guard.store().clone(),
            _ => Store::new(&config.state, store_config.1, metrics.clone())
                .map_err(|e| anyhow::anyhow!("state store: {e}"))?,
        };
        let guard = Guard::new(store, config.state.on_error, metrics.clone());
        for route in config.capture.effective_routes() {
            let limits = &route.rate_limit;
            for (set, name) in [
                (limits.per_client.is_some(), "per_client"),
                (limits.global.is_some(), "global"),
            ] {
                if set {
                    metrics.rate_limit_configured(&route.path, name);
                }
            }
        }
        Ok(CaptureService {
            oz,
            oz_config: config.oz.clone(),
            metrics,
            limiter,
            limits,
            pool,
            body_timeout: config.capture.body_timeout,
            folder_meta_data: Arc::new(config.capture.folder_meta_data.clone()),
            signer,
            follow_up_for: config.capture.follow_up_for,
            max_follow_ups: config.capture.max_follow_ups,
            guard,
            store_config,
        })
    }

    /// `capture.max_follow_ups`: most captures followed at once.
    pub fn max_follow_ups(&self) -> usize {
        self.max_follow_ups
    }

    /// A fresh verdict token for a late delivery of `report` with `body`, `jti` as given
    /// (stable across the retries of one delivery); `None` when tokens are off.
    pub fn late_token(&self, report: &Report, jti: &str, body: &[u8]) -> Option<String> {
        let signer = self.signer.as_ref()?;
        Some(report.token(signer, jti, Some(body), None))
    }

    /// Checks one capture request (its head already through the request filter, its method a
    /// capture method) from the client at `client_ip`. A capture with a verdict is counted in
    /// the metrics here; a [`Failure`] is counted where it is classified, by the caller. A
    /// verdict still `PROCESSING` on a route with `late_verdict_path` comes with the
    /// [`FollowUp`] to run.
    pub async fn handle(
        &self,
        route: &CaptureRoute,
        req: Request<Incoming>,
        client_ip: std::net::IpAddr,
        request_id: &str,
    ) -> Result<Checked, Failure> {
        let started = tokio::time::Instant::now();
        check_head(&req)?;
        // The session value is taken from the head now; a capture without it is refused before
        // its body is read.
        let binding = match self.signer.as_ref().and_then(|s| s.binding()) {
            Some(b) => Some(
                b.value(req.headers())
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| missing_binding(b))?,
            ),
            None => None,
        };
        let mode = mode_of(req.headers())?;
        let declared = declared_length(req.headers())?;
        if declared.is_some_and(|n| n > route.max_body_bytes) {
            return Err(CaptureError::BodyTooLarge {
                limit: route.max_body_bytes,
            }
            .into());
        }
        self.guard
            .admit(&route.path, &route.rate_limit, req.headers(), client_ip)
            .await?;
        let memory = self
            .limiter
            .reserve_memory(declared.unwrap_or(route.max_body_bytes))?;

        let (parts, body) = req.into_parts();
        let raw = match tokio::time::timeout(
            self.body_timeout,
            read_body(body, route.max_body_bytes, declared),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => {
                return Err(CaptureError::BodyRead(
                    "the body did not arrive within capture.body_timeout".into(),
                )
                .into())
            }
        };
        let reserved = Arc::new(memory);

        let prepared = match mode {
            Mode::Container => {
                if raw.is_empty() {
                    return Err(CaptureError::EmptyContainer.into());
                }
                let media_digests = match route.replay {
                    Some(_) => {
                        let body = raw.clone();
                        let digest = self
                            .pool
                            .run(move || FrameDigests::container(&body))
                            .await
                            .map_err(|_| CaptureError::Internal)?;
                        Some(digest)
                    }
                    None => None,
                };
                Prepared {
                    upload: UploadBody {
                        content_type: "application/octet-stream".to_owned(),
                        chunks: vec![raw.clone()],
                    },
                    action: None,
                    virtual_camera: None,
                    frame_count: None,
                    unchecked_images: Vec::new(),
                    media_digests,
                    timings: Timings::default(),
                }
            }
            Mode::Frames => {
                self.transform(route, raw.clone(), request_id, reserved.clone())
                    .await?
            }
        };
        let (body_bytes, upload_bytes) = (raw.len(), prepared.upload.content_length());
        self.metrics.capture_bytes(body_bytes as u64, upload_bytes);

        let mut timings = prepared.timings;
        let verdict = self
            .ask_oz(route, &prepared, request_id, &mut timings)
            .await?;
        // The upload is no longer needed, nor the body unless it goes to the backend as it came;
        // both are freed on a capture thread (`TransformPool::dispose`), and the budget they
        // count against with them.
        let Prepared {
            upload,
            action,
            virtual_camera,
            frame_count,
            unchecked_images,
            media_digests: _,
            timings: _,
        } = prepared;
        self.pool.dispose(upload);
        let raw = if route.forwards_original_body() {
            Some((raw, unchecked_images))
        } else {
            self.pool.dispose((raw, reserved.clone()));
            None
        };

        let verdict = match verdict {
            Ok(v) => {
                self.metrics.capture_done(outcome_of(v.resolution));
                tracing::info!(request_id, folder_id = %v.folder_id, resolution = v.resolution.as_str(), "capture checked");
                Some(v)
            }
            Err(e)
                if route.on_oz_error == OnOzError::Forward
                    && route.on_result == OnResult::Forward =>
            {
                self.metrics.capture_done(CaptureOutcome::OzError);
                tracing::warn!(request_id, error = %e, "Oz failed; forwarding with X-Oz-Resolution: ERROR as configured");
                None
            }
            Err(e) => return Err(e.into()),
        };

        let facts = Facts {
            verdict: verdict.as_ref(),
            action: action.as_deref(),
            virtual_camera,
            frame_count,
        };
        // The token says what the `X-Oz-*` headers say: the same report a late delivery sends.
        let report = facts.verdict.map(|v| {
            Report::new(
                v,
                Some(request_id.to_owned()),
                facts.action.map(str::to_owned),
                facts.virtual_camera,
            )
        });
        let token = |body: Option<&[u8]>| {
            let (signer, report) = (self.signer.as_ref()?, report.as_ref()?);
            Some(report.token(signer, request_id, body, binding.as_deref()))
        };
        let outcome = match route.on_result {
            OnResult::Respond => {
                Outcome::Respond(respond(route.result_mode, &facts, token(None).as_deref()))
            }
            OnResult::Forward => {
                let mut req = self.forward_request(route, parts, raw, &facts).await?;
                if let Some(token) = token(Some(req.body())) {
                    if let Ok(v) = HeaderValue::from_str(&token) {
                        req.headers_mut()
                            .insert(oz_headers::VERDICT_TOKEN.clone(), v);
                    }
                }
                Outcome::Forward(req)
            }
        };
        let summary = Summary {
            body_bytes: body_bytes as u64,
            upload_bytes,
            frames: facts.frame_count,
            action: facts.action.map(str::to_owned),
            folder_id: facts.verdict.map(|v| v.folder_id.clone()),
            resolution: facts.verdict.map(|v| v.resolution.as_str()),
        };
        Ok(Checked {
            outcome,
            follow_up: self.follow_up(route, &facts, request_id, started),
            timings,
            summary,
        })
    }

    /// Uploads a prepared capture under the replay guard and obtains its verdict. The outer error
    /// is a refusal before anything is uploaded (a replay, or the store down under
    /// `fail_closed`); the inner one is Oz's. The upload's and the analyses' times go to
    /// `timings`, the wait for the replay guard to neither.
    async fn ask_oz(
        &self,
        route: &CaptureRoute,
        prepared: &Prepared,
        request_id: &str,
        timings: &mut Timings,
    ) -> Result<Result<Verdict, crate::oz::Error>, Failure> {
        // The claim holds for the whole window until Oz's answer decides: a capture whose
        // request ends mid-upload (the client gone, the process stopped) may have reached Oz,
        // so it stays spent rather than open to a replay.
        let held = match (route.replay, &prepared.media_digests) {
            (Some(window), Some(digests)) => self.guard.claim(digests, window).await?,
            _ => Held::none(),
        };
        let upload_started = tokio::time::Instant::now();
        let folder = self.oz.create_folder(&prepared.upload, request_id).await;
        timings.upload = Some(upload_started.elapsed());
        // Spent once Oz has it, or may have it (a timeout, a cut connection); an upload Oz
        // refused, or that never left, lets the claim go, so the retry is checked.
        let spent = folder
            .as_ref()
            .map_or_else(|e| e.may_have_been_taken(), |_| true);
        match (spent, route.replay) {
            (true, Some(window)) => self.guard.accepted(held, window).await,
            (false, _) => self.guard.failed(held).await,
            (true, None) => {}
        }
        Ok(match folder {
            Ok(folder) => {
                let analyses_started = tokio::time::Instant::now();
                let verdict = self
                    .oz
                    .verdict(folder, &route.analyses, route.wait_for_result, request_id)
                    .await;
                timings.analyses = Some(analyses_started.elapsed());
                verdict
            }
            Err(e) => Err(e),
        })
    }

    /// What to follow of a capture whose verdict is not final yet: only on a route with
    /// `late_verdict_path`, and only when there are analyses to poll (the Instant API stores
    /// nothing; a folder without analyses has nothing that will turn final).
    fn follow_up(
        &self,
        route: &CaptureRoute,
        facts: &Facts<'_>,
        request_id: &str,
        started: tokio::time::Instant,
    ) -> Option<FollowUp> {
        let path = route.late_verdict_path.as_ref()?;
        let verdict = facts.verdict?;
        let pending = verdict.resolution == Resolution::Processing
            && self.oz.api() != OzApiMode::Instant
            && verdict.analyses.iter().any(|a| !a.resolution.is_final());
        pending.then(|| FollowUp {
            folder_id: verdict.folder_id.clone(),
            request_id: request_id.to_owned(),
            action: facts.action.map(str::to_owned),
            virtual_camera: facts.virtual_camera,
            late_verdict_path: path.clone(),
            until: started + self.follow_up_for,
            analyses: verdict.analyses.clone(),
            oz: self.oz.clone(),
            signer: self.signer.clone(),
        })
    }

    /// Runs the frames transform on the capture threads. The job holds `reserved` as well: if
    /// the client gives up, the request is dropped but the job runs on (on an idle-class thread
    /// it may wait long for a core), and its memory must count against the budget until it ends.
    async fn transform(
        &self,
        route: &CaptureRoute,
        raw: Bytes,
        request_id: &str,
        reserved: Arc<MemoryPermit>,
    ) -> Result<Prepared, Failure> {
        let permit = self.limiter.start_transform()?;
        let file_key = route.file_key.clone();
        let (max_frames, max_frame_bytes, best_frame) =
            (route.max_frames, route.max_frame_bytes, route.best_frame);
        let refuse_unchecked_images =
            route.forwards_original_body() && route.unchecked_images == UncheckedImages::Refuse;
        let request_id = request_id.to_owned();
        let meta = self.folder_meta_data.clone();
        let job = self.pool.run(move || {
            let _permit = permit;
            let _reserved = reserved;
            let opts = TransformOptions {
                file_key: &file_key,
                max_frames,
                max_frame_bytes,
                best_frame,
                refuse_unchecked_images,
                request_id: &request_id,
                folder_meta_data: &meta,
                boundary: None,
            };
            prepare_frames_upload(&raw, &opts)
        });
        let prepared: PreparedUpload = job.await.map_err(|_| CaptureError::Internal)??;
        Ok(Prepared {
            upload: prepared.upload,
            action: Some(prepared.action),
            virtual_camera: Some(prepared.virtual_camera),
            frame_count: Some(prepared.frame_count),
            unchecked_images: prepared.unchecked_images,
            media_digests: Some(prepared.frame_digests),
            timings: Timings {
                started: Some(prepared.started_at),
                parse: Some(prepared.parse_time),
                zip: Some(prepared.zip_time),
                ..Timings::default()
            },
        })
    }

    /// The checked request as the backend gets it, with the verdict headers. `raw` is the body
    /// as it came and the best frames in it that Oz did not get, when the route forwards it.
    async fn forward_request(
        &self,
        route: &CaptureRoute,
        mut parts: http::request::Parts,
        raw: Option<(Bytes, Vec<UncheckedImage>)>,
        facts: &Facts<'_>,
    ) -> Result<Request<Bytes>, CaptureError> {
        // The body is already here; the backend must not wait for a `100 Continue` dance.
        parts.headers.remove(header::EXPECT);
        let replaced = !matches!(
            (&route.forward_body, &raw),
            (ForwardBody::Original, Some((_, images))) if images.is_empty()
        );
        if replaced {
            // A digest of the body as sent would not match the body as forwarded.
            for name in ["content-md5", "digest", "content-digest", "repr-digest"] {
                parts.headers.remove(name);
            }
        }
        let body = match route.forward_body {
            ForwardBody::Original => {
                match raw.expect("run keeps the body when the route forwards it as it came") {
                    (raw, images) if images.is_empty() => raw,
                    // Only with `unchecked_images: strip`: the transform refused them
                    // otherwise. A body-sized copy, made on a capture thread (the original is
                    // freed there too) after the upload was given up, so the body and its copy
                    // stay within the two bodies the capture reserved.
                    (raw, images) => self
                        .pool
                        .run(move || Bytes::from(strip_images(&raw, &images)))
                        .await
                        .map_err(|_| CaptureError::Internal)?,
                }
            }
            ForwardBody::Summary => {
                parts.headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                summary_json(facts)
            }
        };
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len() as u64));
        set_verdict_headers(&mut parts.headers, facts);
        Ok(Request::from_parts(parts, body))
    }
}

/// Whether a store built from `(state, max_entries)` `old` serves `new` as well.
fn same_store(old: &(StateConfig, u64), new: &(StateConfig, u64)) -> bool {
    let ((old_state, old_max), (new_state, new_max)) = (old, new);
    match (old_state.store, new_state.store) {
        (StoreKind::Memory, StoreKind::Memory) => old_max == new_max,
        (StoreKind::Redis, StoreKind::Redis) => old_state.redis == new_state.redis,
        _ => false,
    }
}

/// What the proxy learnt about a capture.
struct Facts<'a> {
    verdict: Option<&'a Verdict>,
    action: Option<&'a str>,
    virtual_camera: Option<bool>,
    frame_count: Option<usize>,
}

impl Facts<'_> {
    fn resolution(&self) -> &'static str {
        self.verdict.map_or("ERROR", |v| v.resolution.as_str())
    }
}

fn set_verdict_headers(h: &mut HeaderMap, facts: &Facts<'_>) {
    let mut set = |name: &HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name.clone(), v);
        }
    };
    if let Some(v) = facts.verdict {
        set(&oz_headers::FOLDER_ID, &v.folder_id);
    }
    set(&oz_headers::RESOLUTION, facts.resolution());
    if let Some(a) = facts.action {
        set(&oz_headers::ACTION, a);
    }
    if let Some(vc) = facts.virtual_camera {
        set(
            &oz_headers::VIRTUAL_CAMERA,
            if vc { "true" } else { "false" },
        );
    }
}

/// The compact body sent instead of the frames with `forward_body: summary`.
fn summary_json(facts: &Facts<'_>) -> Bytes {
    let doc = serde_json::json!({
        "oz": {
            "folder_id": facts.verdict.map(|v| v.folder_id.as_str()),
            "resolution": facts.resolution(),
            "analyses": analyses_json(facts.verdict),
        },
        "action": facts.action,
        "virtual_camera": facts.virtual_camera,
        "frame_count": facts.frame_count,
    });
    Bytes::from(serde_json::to_vec(&doc).expect("a json! value always serializes"))
}

fn analyses_json(verdict: Option<&Verdict>) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for a in verdict.map(|v| v.analyses.as_slice()).unwrap_or_default() {
        map.insert(
            a.kind.to_ascii_lowercase(),
            serde_json::json!({ "state": a.state, "resolution": a.resolution.as_str() }),
        );
    }
    serde_json::Value::Object(map)
}

fn missing_binding(binding: &Binding) -> CaptureError {
    let (kind, name) = match binding {
        Binding::Cookie(name) => ("cookie", name.clone()),
        Binding::Header(name) => ("header", name.as_str().to_owned()),
    };
    CaptureError::MissingBinding { kind, name }
}

/// The respond-mode answer, shaped like the Web SDK's `result_mode` names it, with the verdict
/// token in every mode (the browser can do nothing with it; the backend it relays it to can).
fn respond(mode: ResultMode, facts: &Facts<'_>, token: Option<&str>) -> Response<Bytes> {
    let state = match facts.verdict.map(|v| v.resolution) {
        Some(Resolution::Processing) => "processing",
        _ => "finished",
    };
    let mut doc = match mode {
        ResultMode::Safe => serde_json::json!({ "state": state }),
        ResultMode::Status => serde_json::json!({
            "state": state,
            "resolution": facts.resolution(),
            "analyses": analyses_json(facts.verdict),
        }),
        ResultMode::Folder => serde_json::json!({
            "state": state,
            "folder_id": facts.verdict.map(|v| v.folder_id.as_str()),
            "resolution": facts.resolution(),
            "analyses": analyses_json(facts.verdict),
        }),
    };
    if let Some(token) = token {
        doc["verdict_token"] = token.into();
    }
    let mut rsp = Response::new(Bytes::from(
        serde_json::to_vec(&doc).expect("a json! value always serializes"),
    ));
    *rsp.status_mut() = StatusCode::OK;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    rsp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    rsp
}

fn outcome_of(r: Resolution) -> CaptureOutcome {
    match r {
        Resolution::Success => CaptureOutcome::Success,
        Resolution::Declined => CaptureOutcome::Declined,
        Resolution::OperatorRequired => CaptureOutcome::OperatorRequired,
        Resolution::Failed => CaptureOutcome::Failed,
        Resolution::Processing => CaptureOutcome::Processing,
    }
}

/// Refuses a capture head that the proxy and the backend could read two ways: a query that
/// names a capture field (`capture::body::check_query`), more than one `Content-Type` (the
/// proxy reads the first, gunicorn the last, which could make the backend parse the checked
/// JSON as a form), and a content coding the proxy would not undo before checking the body.
fn check_head(req: &Request<Incoming>) -> Result<(), CaptureError> {
    if let Some(query) = req.uri().query() {
        crate::capture::body::check_query(query)?;
    }
    let h = req.headers();
    if h.get_all(header::CONTENT_TYPE).iter().nth(1).is_some() {
        return Err(CaptureError::BadField {
            field: "Content-Type".into(),
            reason: "appears more than once".into(),
        });
    }
    let coded = h.get_all(header::CONTENT_ENCODING).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|c| {
            !c.trim_ascii().is_empty() && !c.trim_ascii().eq_ignore_ascii_case(b"identity")
        })
    });
    if coded {
        return Err(CaptureError::BadField {
            field: "Content-Encoding".into(),
            reason: "must be absent or identity: the capture is checked as sent".into(),
        });
    }
    Ok(())
}

/// The capture mode from `Content-Type` (parameters such as `charset` are ignored).
fn mode_of(h: &HeaderMap) -> Result<Mode, CaptureError> {
    let ct = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(Mode::Frames)
    } else if essence.eq_ignore_ascii_case("application/octet-stream") {
        Ok(Mode::Container)
    } else {
        Err(CaptureError::UnsupportedMediaType)
    }
}

/// The declared body length, if any. Several differing values are refused (RFC 9112 §6.3).
fn declared_length(h: &HeaderMap) -> Result<Option<u64>, CaptureError> {
    let mut found: Option<u64> = None;
    for v in h.get_all(header::CONTENT_LENGTH) {
        let n = v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| CaptureError::BadField {
                field: "Content-Length".into(),
                reason: "is not a number".into(),
            })?;
        if found.is_some_and(|f| f != n) {
            return Err(CaptureError::BadField {
                field: "Content-Length".into(),
                reason: "has differing values".into(),
            });
        }
        found = Some(n);
    }
    Ok(found)
}

/// Reads the whole body into one buffer, refusing it as soon as it passes `limit`.
async fn read_body(
    mut body: Incoming,
    limit: u64,
    declared: Option<u64>,
) -> Result<Bytes, CaptureError> {
    let mut buf = Vec::with_capacity(declared.unwrap_or(64 * 1024).min(limit) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CaptureError::BodyRead(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > limit {
                return Err(CaptureError::BodyTooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_pick_the_mode() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(matches!(mode_of(&h), Ok(Mode::Frames)));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/Octet-Stream"),
        );
        assert!(matches!(mode_of(&h), Ok(Mode::Container)));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(matches!(
            mode_of(&h),
            Err(CaptureError::UnsupportedMediaType)
        ));
        h.remove(header::CONTENT_TYPE);
        assert!(matches!(
            mode_of(&h),
            Err(CaptureError::UnsupportedMediaType)
        ));
    }

    #[test]
    fn differing_content_lengths_are_refused() {
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert_eq!(declared_length(&h).unwrap(), Some(5));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("6"));
        assert!(declared_length(&h).is_err());
    }

    #[test]
    fn safe_mode_says_only_finished() {
        let facts = Facts {
            verdict: None,
            action: Some("video_selfie_blank"),
            virtual_camera: Some(false),
            frame_count: Some(3),
        };
        let rsp = respond(ResultMode::Safe, &facts, None);
        assert_eq!(&rsp.body()[..], br#"{"state":"finished"}"#);
    }
}
