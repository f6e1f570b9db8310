//! The verdict flow: after the upload (`OzClient::create_folder`), take, start or poll analyses until the verdict is final or
//! `wait_for_result` runs out.
//!
//! Decisions (docs/oz-api.md §3):
//! - **Results in the upload answer are used as they are.** Single-request mode (§3.3) and the
//!   Instant API (§3.4) answer with the analyses; nothing is started again (that would bill
//!   twice). If some of them are not final yet (folders mode only), they are polled by id.
//! - **Instant mode never starts or polls**: nothing is stored (§3.4), so there is nothing to
//!   ask about later. An instant answer without analyses gives the folder-level verdict
//!   (`system_resolution`) if it is final, else `Error::BadResponse`.
//! - **No analyses configured and none in the answer**: the verdict is the folder's own
//!   (`system_resolution`, or FAILED from `resolution_status`), else PROCESSING: the upload
//!   worked, nobody asked for a check, and the backend can look at the folder later.
//! - **Analyses configured**: they are started (§3.1) and polled with
//!   `GET /api/analyses/{id}` (§3.5), backing off from 100 ms, doubling to 2 s, jittered.
//!   Oz starting none of them is `Error::BadResponse`: no verdict would ever come.
//! - **`wait_for_result` bounds the polling only** (the upload and the start each have
//!   `oz.timeout`). When it runs out the result is `Ok` with PROCESSING, not an error: forward
//!   mode sends `X-Oz-Resolution: PROCESSING` and the backend can look the folder up later.
//!   `wait_for_result == 0` polls not at all.
//! - **Poll failures**: 5xx, timeouts, broken connections and unreadable answers are retried
//!   within the budget (a GET is safe to repeat); 4xx and auth failures end the check with the
//!   error. If the budget ends during an Oz outage the verdict is PROCESSING, with the failures
//!   logged and counted in `oz_errors_total`.
//! - **Oz does not decide how much work one capture makes.** An answer listing more than
//!   [`MAX_ANALYSES`](super::client::MAX_ANALYSES) analyses is refused where it is read
//!   (`Error::TooManyAnalyses`, 502 `oz_bad_response`), and one capture makes at most
//!   [`MAX_POLLS`] polls, however long `wait_for_result` is; when they are spent the verdict is
//!   PROCESSING, as when the wait runs out. Time bounds the rounds too: the pauses start at
//!   50–100 ms and reach 1–2 s after five rounds, so a wait of `w` seconds holds at most about
//!   `5 + w` rounds. With both bounds a capture makes at most 1 upload, 1 start and
//!   [`MAX_POLLS`] polls (each call possibly preceded by one login or refresh and sent once more
//!   after a 401 code 7/8, see `client.rs`).
//! - **Late verdicts** (`OzClient::follow`): a capture still PROCESSING after the wait, on a
//!   route with `late_verdict_path`, is polled on with the same backoff, the same retries and
//!   the same per-analysis checks, until `capture.follow_up_for` has passed since the capture
//!   or [`MAX_FOLLOW_POLLS`] polls are spent.

use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use super::client::{check_id, OzClient};
use super::error::Error;
use super::types::{Analysis, Folder};
use super::upload::UploadBody;
use super::verdict::Verdict;
use crate::backoff::jitter;
use crate::config::OzApiMode;

/// First pause between polls.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between polls.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Most polls (`GET /api/analyses/{id}`) one capture makes. The default 30 s wait with up to
/// three analyses needs at most about 100 (33 rounds at the shortest pauses), one analysis can
/// be polled for two minutes and more; so the cap only bites when an answer lists many
/// analyses, or on waits of minutes, where it stops the number of analyses from multiplying
/// the rounds.
pub const MAX_POLLS: usize = 128;

/// Most polls one late-verdict follow-up ([`OzClient::follow`]) makes. The pauses reach 2 s
/// after five rounds, so the default `capture.follow_up_for` of 15 minutes with one analysis
/// takes at most about 455 polls, with two about 910; a follow-up whose polls are spent ends
/// without a verdict, as one whose time ran out.
pub const MAX_FOLLOW_POLLS: usize = 1024;

impl OzClient {
    /// Uploads a capture and obtains its verdict: [`OzClient::create_folder`], then
    /// [`OzClient::verdict`]. The capture handler calls the two itself, to tell the replay guard
    /// when Oz accepted the capture.
    pub async fn check(
        &self,
        upload: &UploadBody,
        analyses: &[String],
        wait_for_result: Duration,
        request_id: &str,
    ) -> Result<Verdict, Error> {
        let folder = self.create_folder(upload, request_id).await?;
        self.verdict(folder, analyses, wait_for_result, request_id)
            .await
    }

    /// Obtains the verdict of `folder`, the answer [`OzClient::create_folder`] gave for a
    /// capture's upload (see the module doc for every branch). The two are apart so that the
    /// caller knows when Oz accepted the capture: the replay guard remembers a capture from
    /// then on, whatever comes of its analyses.
    ///
    /// `analyses` are lowercase types to start (`["quality"]`); `wait_for_result` is how long
    /// to poll for them; `request_id` only labels the log lines.
    pub async fn verdict(
        &self,
        folder: Folder,
        analyses: &[String],
        wait_for_result: Duration,
        request_id: &str,
    ) -> Result<Verdict, Error> {
        let span = tracing::info_span!("oz_check", request_id);
        async {
            let verdict = self
                .verdict_inner(folder, analyses, wait_for_result)
                .await?;
            tracing::info!(
                folder_id = %verdict.folder_id,
                resolution = verdict.resolution.as_str(),
                analyses = verdict.analyses.len(),
                "oz verdict"
            );
            Ok(verdict)
        }
        .instrument(span)
        .await
    }

    async fn verdict_inner(
        &self,
        folder: Folder,
        analyses: &[String],
        wait: Duration,
    ) -> Result<Verdict, Error> {
        let folder_id = folder.folder_id.clone();

        if self.api() == OzApiMode::Instant {
            if !folder.analyses.is_empty() {
                return Ok(Verdict::from_analyses(folder_id, folder.analyses));
            }
            let resolution = folder.resolution();
            if resolution.is_final() {
                return Ok(Verdict {
                    folder_id,
                    resolution,
                    analyses: Vec::new(),
                });
            }
            return Err(self.bad_response(
                "instant_folders",
                "the answer has neither analyses nor a final system_resolution".into(),
            ));
        }

        let running = if !folder.analyses.is_empty() {
            folder.analyses
        } else if analyses.is_empty() {
            return Ok(Verdict {
                folder_id,
                resolution: folder.resolution(),
                analyses: Vec::new(),
            });
        } else {
            let started = self.start_analyses(&folder_id, analyses).await?;
            if started.is_empty() {
                return Err(self.bad_response(
                    "analyses",
                    "Oz started none of the requested analyses".into(),
                ));
            }
            started
        };
        let done = if wait.is_zero() {
            running
        } else {
            self.poll(running, Instant::now() + wait, MAX_POLLS).await?
        };
        Ok(Verdict::from_analyses(folder_id, done))
    }

    /// Follows a capture whose verdict was still PROCESSING when `wait_for_result` ran out:
    /// polls its unfinished `analyses` (as [`Verdict::analyses`] holds them) with the same
    /// backoff and retry rules as [`OzClient::check`], until all are final, `until` passes or
    /// [`MAX_FOLLOW_POLLS`] polls are spent. The verdict may still be PROCESSING then.
    /// `request_id` only labels the log lines.
    pub async fn follow(
        &self,
        folder_id: &str,
        analyses: Vec<Analysis>,
        until: Instant,
        request_id: &str,
    ) -> Result<Verdict, Error> {
        let span = tracing::info_span!("oz_follow", request_id, folder_id);
        async {
            let done = self.poll(analyses, until, MAX_FOLLOW_POLLS).await?;
            let verdict = Verdict::from_analyses(folder_id.to_owned(), done);
            tracing::info!(
                resolution = verdict.resolution.as_str(),
                analyses = verdict.analyses.len(),
                "oz late verdict"
            );
            Ok(verdict)
        }
        .instrument(span)
        .await
    }

    /// Polls every unfinished analysis until all are final, `deadline` passes or `max_polls`
    /// polls are spent.
    async fn poll(
        &self,
        mut analyses: Vec<Analysis>,
        deadline: Instant,
        max_polls: usize,
    ) -> Result<Vec<Analysis>, Error> {
        let mut backoff = FIRST_BACKOFF;
        let mut polls_left = max_polls;
        loop {
            let pending: Vec<usize> = (0..analyses.len())
                .filter(|&i| !analyses[i].resolution.is_final())
                .collect();
            if pending.is_empty() {
                return Ok(analyses);
            }
            // Ids come from Oz and go into the poll URL; one that cannot be polled would only
            // burn the budget, so it fails the check at once.
            if let Some(a) = pending
                .iter()
                .map(|&i| &analyses[i])
                .find(|a| check_id(&a.id).is_err())
            {
                return Err(self.bad_response(
                    "analyses",
                    format!(
                        "analysis {} is not final and has no usable id to poll",
                        a.kind
                    ),
                ));
            }
            let Some(left) = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                tracing::info!(
                    pending = pending.len(),
                    "oz verdict not final within the time to wait"
                );
                return Ok(analyses);
            };
            if polls_left == 0 {
                tracing::info!(
                    pending = pending.len(),
                    max_polls,
                    "oz verdict not final within the polls it may make"
                );
                return Ok(analyses);
            }
            tokio::time::sleep(jitter(backoff).min(left)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);

            for i in pending {
                let Some(left) = deadline
                    .checked_duration_since(Instant::now())
                    .filter(|d| !d.is_zero())
                else {
                    break;
                };
                let Some(fewer) = polls_left.checked_sub(1) else {
                    break;
                };
                polls_left = fewer;
                match self.get_analysis_within(&analyses[i].id, Some(left)).await {
                    Ok(a) => analyses[i] = a,
                    Err(e) if transient(&e) => {
                        tracing::debug!(analysis_id = %analyses[i].id, error = %e, "oz poll failed, will retry");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// Failures worth polling again: the GET can be repeated and the next one may work.
fn transient(e: &Error) -> bool {
    match e {
        Error::Timeout { .. } | Error::Unreachable { .. } | Error::BadResponse { .. } => true,
        Error::Api { status, .. } => *status >= 500 || *status == 429,
        Error::Auth { .. } | Error::ResultTimeout | Error::TooManyAnalyses { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_poll_failures_are_retried() {
        let api = |status| Error::Api {
            endpoint: "poll",
            status,
            error_code: None,
            message: String::new(),
        };
        assert!(transient(&api(503)));
        assert!(transient(&api(429)));
        assert!(!transient(&api(404)));
        assert!(transient(&Error::Timeout { endpoint: "poll" }));
        assert!(!transient(&Error::Auth {
            error_code: Some(7)
        }));
    }
}
