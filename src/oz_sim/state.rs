//! The simulator handle, [`OzSim`]: shared state behind one lock, plus the methods tests and
//! the `demo` use to read what arrived and to inject faults.
//!
//! The state mirrors what docs/oz-api.md describes Oz keeping: sessions (§1), folders with media
//! (§2), analyses and their progress (§3). Nothing here is global; each simulator is its own
//! value, so tests run side by side.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::auth::Sessions;
use super::config::{SimConfig, Verdict};
use super::faults::{Endpoint, Faults};
use super::objects::{Analysis, Folder};
use super::records::{CallRecord, ReceivedUpload};

/// Everything a simulator knows. Guarded by a std `Mutex`: every critical section is short
/// and synchronous (no `.await` inside), which is the case mini-redis's `db.rs` makes for a
/// blocking lock over an async one. No `Debug`: it holds tokens and `additional_info`.
pub(crate) struct State {
    /// Settings; verdict, polls and single-request mode change at run time.
    pub cfg: SimConfig,
    pub sessions: Sessions,
    pub faults: Faults,
    pub folders: HashMap<String, Folder>,
    pub analyses: HashMap<String, Analysis>,
    uploads: VecDeque<ReceivedUpload>,
    calls: VecDeque<CallRecord>,
}

struct Inner {
    state: Mutex<State>,
    /// How many uploads were ever recorded, so a test can wait on arrival instead of sleeping.
    uploads_seen: watch::Sender<u64>,
}

/// A simulated Oz API: cheap to clone, every clone sees the same state.
#[derive(Clone)]
pub struct OzSim {
    inner: Arc<Inner>,
}

/// Counts only: the state holds tokens and client metadata that must not reach a log.
impl std::fmt::Debug for OzSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("OzSim")
            .field("folders", &st.folders.len())
            .field("analyses", &st.analyses.len())
            .field("uploads", &st.uploads.len())
            .field("calls", &st.calls.len())
            .finish_non_exhaustive()
    }
}

impl OzSim {
    /// A simulator with no sessions, folders or faults.
    pub fn new(cfg: SimConfig) -> Self {
        let state = State {
            sessions: Sessions::new(cfg.token_ttl, cfg.token.clone()),
            faults: Faults::default(),
            folders: HashMap::new(),
            analyses: HashMap::new(),
            uploads: VecDeque::new(),
            calls: VecDeque::new(),
            cfg,
        };
        OzSim {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                uploads_seen: watch::Sender::new(0),
            }),
        }
    }

    /// The state, locked. A panic while it was held cannot leave it half-updated in a way
    /// that matters to a simulator, so a poisoned lock is simply taken over.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // --- what arrived ---

    /// Every request on `POST /api/folders/` and `POST /api/instant/folders/` that got past
    /// fault injection and authentication, accepted or refused, oldest first.
    pub fn uploads(&self) -> Vec<ReceivedUpload> {
        self.lock().uploads.iter().cloned().collect()
    }

    /// The uploads that created a folder (or got an instant answer).
    pub fn accepted_uploads(&self) -> Vec<ReceivedUpload> {
        self.lock()
            .uploads
            .iter()
            .filter(|u| u.accepted())
            .cloned()
            .collect()
    }

    /// Every Oz API call answered (not `/_sim/` ones), oldest first.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.lock().calls.iter().cloned().collect()
    }

    /// Waits until at least `n` uploads have been recorded since the simulator started.
    /// Callers put it under a `tokio::time::timeout`.
    pub async fn wait_for_uploads(&self, n: usize) {
        let mut rx = self.inner.uploads_seen.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|seen| *seen >= n as u64).await;
    }

    // --- faults and knobs ---

    /// Answer the next `count` requests on `endpoint` with `status` (meant for 4xx/5xx; an
    /// invalid code answers 500) and an Oz error body with `error_code` 0. Replaces a pending
    /// failure on that endpoint; `count` 0 removes it.
    pub fn fail_next(&self, endpoint: Endpoint, status: u16, count: u32) {
        self.lock().faults.fail_next(endpoint, status, count);
    }

    /// Like [`OzSim::fail_next`], with `error_code` (any integer) in the error body.
    pub fn fail_next_with_code(
        &self,
        endpoint: Endpoint,
        status: u16,
        count: u32,
        error_code: i64,
    ) {
        self.lock()
            .faults
            .fail_next_with_code(endpoint, status, count, error_code);
    }

    /// The next answer to `POST /api/folders/{id}/analyses/` also lists `n` analyses that stay
    /// `PROCESSING` however often they are polled: an Oz that makes a client do unbounded work.
    pub fn set_unfinished_analyses(&self, n: u32) {
        self.lock().faults.set_unfinished_analyses(n);
    }

    /// Delay every answer on `endpoint` by `latency` (after the body is read); zero removes it.
    pub fn set_latency(&self, endpoint: Endpoint, latency: Duration) {
        self.lock().faults.set_latency(endpoint, latency);
    }

    /// Analyses started from now on (by `POST /api/folders/{id}/analyses/`, or by an upload in
    /// single-request mode) read `PROCESSING` on every endpoint until `hold` has passed since
    /// they started, then turn final as usual: the first read once both the hold and the
    /// [`OzSim::set_polls_until_final`] count have run out (reads during the hold count) shows
    /// the verdict. A late verdict, on tokio's clock. Stays set until changed; zero removes it.
    /// The Instant API ignores it, having nothing to poll.
    pub fn set_processing_for(&self, hold: Duration) {
        self.lock().faults.set_processing_for(hold);
    }

    /// Removes every pending failure, latency, flood of unfinished analyses and hold.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Every token issued so far, and the static service token, answer error_code 8 from now
    /// on. Refresh still works for login sessions; new logins get fresh tokens.
    pub fn expire_all_tokens(&self) {
        self.lock().sessions.expire_all();
    }

    /// Rotates the static service token: `token` is accepted from now on, the old one answers
    /// error_code 7 (invalid), as a revoked token does. `None` accepts login tokens only.
    pub fn set_service_token(&self, token: Option<&str>) {
        self.lock()
            .sessions
            .set_service_token(token.map(str::to_owned));
    }

    /// Changes the password login accepts from now on. Sessions already issued stay valid (the
    /// simulator does not tie them to the password), so a client that keeps its session token
    /// after its password file changed is not caught by a refused call, only by its logins.
    pub fn set_password(&self, password: &str) {
        self.lock().cfg.password = password.to_owned();
    }

    /// Verdict of analyses started from now on.
    pub fn set_verdict(&self, verdict: Verdict) {
        self.lock().cfg.verdict = verdict;
    }

    /// `PROCESSING` reads of analyses started from now on.
    pub fn set_polls_until_final(&self, n: u32) {
        self.lock().cfg.polls_until_final = n;
    }

    /// Switches single-request mode (docs/oz-api.md §3.3) for uploads from now on.
    pub fn set_single_request(&self, on: bool) {
        self.lock().cfg.single_request = on;
    }

    /// A valid login-session token without a login call, for tests that exercise other paths.
    pub fn issue_token(&self) -> String {
        self.lock().sessions.issue().access_token
    }

    // --- recording (crate-internal) ---

    pub(crate) fn record_upload(&self, upload: ReceivedUpload) {
        {
            let mut st = self.lock();
            let keep = st.cfg.keep_uploads.max(1);
            while st.uploads.len() >= keep {
                st.uploads.pop_front();
            }
            st.uploads.push_back(upload);
        }
        self.inner.uploads_seen.send_modify(|n| *n += 1);
    }

    pub(crate) fn record_call(&self, call: CallRecord) {
        let mut st = self.lock();
        let keep = st.cfg.keep_calls.max(1);
        while st.calls.len() >= keep {
            st.calls.pop_front();
        }
        st.calls.push_back(call);
    }
}
