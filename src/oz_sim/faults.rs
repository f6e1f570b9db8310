//! Fault injection: failed answers and latency per endpoint, an answer that floods a client with
//! analyses, analyses held in `PROCESSING` for a set time, and the JSON control body of
//! `POST /_sim/faults`.
//!
//! Injected failures carry the Oz error body with `error_code` 0, "Unknown server side error
//! occurred" (docs/oz-api.md §5), so a client's error path sees exactly what a real Oz outage sends;
//! a failure may name another `error_code`, any integer, to see what a client does with codes
//! it has never heard of.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

/// An Oz API endpoint the simulator serves, named for fault injection and call records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /api/authorize/auth/` (docs/oz-api.md §1.1).
    Auth,
    /// `POST /api/authorize/refresh/` (docs/oz-api.md §1.2).
    Refresh,
    /// `POST /api/folders/` (docs/oz-api.md §2).
    Folders,
    /// `POST /api/instant/folders/` (docs/oz-api.md §3.4).
    InstantFolders,
    /// `POST /api/folders/{id}/analyses/` (docs/oz-api.md §3.1).
    StartAnalyses,
    /// `GET /api/folders/{id}/analyses/` (docs/oz-api.md §3.5).
    ListAnalyses,
    /// `GET /api/analyses/{id}` (docs/oz-api.md §3.5).
    GetAnalysis,
    /// `GET /api/folders/{id}` (docs/oz-api.md §3.5).
    GetFolder,
    /// `GET /api/folders/{id}/media/{media_id}/preview.mp4`: where the simulator's
    /// `preview_url` points (docs/oz-api.md §2.7).
    GetPreview,
}

impl Endpoint {
    /// Every endpoint, in the order the docs introduce them.
    pub const ALL: [Endpoint; 9] = [
        Endpoint::Auth,
        Endpoint::Refresh,
        Endpoint::Folders,
        Endpoint::InstantFolders,
        Endpoint::StartAnalyses,
        Endpoint::ListAnalyses,
        Endpoint::GetAnalysis,
        Endpoint::GetFolder,
        Endpoint::GetPreview,
    ];

    /// The name used in `/_sim/faults` bodies and in records.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Auth => "auth",
            Endpoint::Refresh => "refresh",
            Endpoint::Folders => "folders",
            Endpoint::InstantFolders => "instant_folders",
            Endpoint::StartAnalyses => "start_analyses",
            Endpoint::ListAnalyses => "list_analyses",
            Endpoint::GetAnalysis => "get_analysis",
            Endpoint::GetFolder => "get_folder",
            Endpoint::GetPreview => "get_preview",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Endpoint::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Endpoint::ALL.iter().map(|e| e.name()).collect();
                format!(
                    "unknown endpoint {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// An injected failure: the answer's status and Oz `error_code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub status: u16,
    pub error_code: i64,
}

/// Pending failures and latencies, per endpoint.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// The failure to answer with and how many more requests get it.
    fail_next: HashMap<Endpoint, (Failure, u32)>,
    latency: HashMap<Endpoint, Duration>,
    /// Analyses that never finish, added to the next answer that starts analyses.
    unfinished_analyses: Option<u32>,
    /// How long analyses started from now on stay `PROCESSING`; zero holds nothing.
    processing_for: Duration,
}

impl Faults {
    /// Answer the next `count` requests on `endpoint` with `status` and `error_code` 0;
    /// replaces a pending failure.
    pub fn fail_next(&mut self, endpoint: Endpoint, status: u16, count: u32) {
        self.fail_next_with_code(endpoint, status, count, 0);
    }

    /// Like [`Faults::fail_next`], with any Oz `error_code` in the answer.
    pub fn fail_next_with_code(
        &mut self,
        endpoint: Endpoint,
        status: u16,
        count: u32,
        error_code: i64,
    ) {
        if count == 0 {
            self.fail_next.remove(&endpoint);
        } else {
            let failure = Failure { status, error_code };
            self.fail_next.insert(endpoint, (failure, count));
        }
    }

    /// Takes one pending failure for `endpoint`, if any.
    pub fn take_failure(&mut self, endpoint: Endpoint) -> Option<Failure> {
        let (failure, left) = self.fail_next.get_mut(&endpoint)?;
        let failure = *failure;
        *left -= 1;
        if *left == 0 {
            self.fail_next.remove(&endpoint);
        }
        Some(failure)
    }

    /// The next answer to `POST /api/folders/{id}/analyses/` also lists `n` analyses that stay
    /// `PROCESSING` however often they are read (stored, so polling them works); 0 removes it.
    pub fn set_unfinished_analyses(&mut self, n: u32) {
        self.unfinished_analyses = (n > 0).then_some(n);
    }

    /// Takes the pending number of never-finishing analyses, if any.
    pub fn take_unfinished_analyses(&mut self) -> Option<u32> {
        self.unfinished_analyses.take()
    }

    /// Analyses started from now on stay `PROCESSING` for `hold` after they start, however
    /// often they are read; zero removes the hold. Stays until changed or cleared.
    pub fn set_processing_for(&mut self, hold: Duration) {
        self.processing_for = hold;
    }

    /// The hold given to analyses that start now.
    pub fn processing_for(&self) -> Duration {
        self.processing_for
    }

    /// Delay every answer on `endpoint` by `latency`; zero removes it.
    pub fn set_latency(&mut self, endpoint: Endpoint, latency: Duration) {
        if latency.is_zero() {
            self.latency.remove(&endpoint);
        } else {
            self.latency.insert(endpoint, latency);
        }
    }

    /// The latency configured for `endpoint`.
    pub fn latency(&self, endpoint: Endpoint) -> Duration {
        self.latency.get(&endpoint).copied().unwrap_or_default()
    }

    /// Drops every pending failure, latency, flood and hold.
    pub fn clear(&mut self) {
        *self = Faults::default();
    }

    /// The current faults as JSON.
    pub fn summary(&self) -> Value {
        let fail_next: serde_json::Map<String, Value> = self
            .fail_next
            .iter()
            .map(|(e, (failure, count))| {
                (
                    e.name().to_owned(),
                    json!({"status": failure.status, "error_code": failure.error_code, "count": count}),
                )
            })
            .collect();
        let latency_ms: serde_json::Map<String, Value> = self
            .latency
            .iter()
            .map(|(e, d)| (e.name().to_owned(), json!(millis(*d))))
            .collect();
        json!({
            "fail_next": fail_next,
            "latency_ms": latency_ms,
            "unfinished_analyses": self.unfinished_analyses.unwrap_or(0),
            "processing_for_ms": millis(self.processing_for),
        })
    }
}

/// Whole milliseconds, as the control body writes durations; saturates rather than wraps.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The body of `POST /_sim/faults`; every member is optional and unknown members are refused,
/// so a typo does not silently inject nothing.
///
/// ```json
/// {"fail_next": {"endpoint": "folders", "status": 503, "count": 1, "error_code": 0},
///  "latency_ms": {"folders": 2000}, "expire_tokens": true, "verdict": "DECLINED",
///  "unfinished_analyses": 20000, "processing_for_ms": 1500}
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultRequest {
    /// Remove every pending failure and latency first.
    #[serde(default)]
    pub clear: bool,
    /// One failure rule, or a list of them.
    pub fail_next: Option<OneOrMany<FailNext>>,
    /// Latency per endpoint name, in milliseconds; 0 removes it.
    pub latency_ms: Option<HashMap<String, u64>>,
    /// Expire every token issued so far (and the static one).
    #[serde(default)]
    pub expire_tokens: bool,
    /// Verdict for analyses started from now on.
    pub verdict: Option<String>,
    /// `PROCESSING` reads for analyses started from now on.
    pub polls_until_final: Option<u32>,
    /// Switch single-request mode (docs/oz-api.md §3.3).
    pub single_request: Option<bool>,
    /// The next answer that starts analyses also lists this many that never finish.
    pub unfinished_analyses: Option<u32>,
    /// Analyses started from now on stay `PROCESSING` this many milliseconds; 0 removes it.
    pub processing_for_ms: Option<u64>,
}

/// One `fail_next` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailNext {
    pub endpoint: String,
    pub status: u16,
    #[serde(default = "one")]
    pub count: u32,
    /// The Oz `error_code` of the answer; 0 (unknown server error) when absent.
    #[serde(default)]
    pub error_code: i64,
}

fn one() -> u32 {
    1
}

/// Either a single value or an array of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Statuses an injected failure may carry: client and server errors only, since a "failure"
/// that answers 2xx would not have the body a client expects.
pub(crate) fn check_fault_status(status: u16) -> Result<(), String> {
    if (400..=599).contains(&status) {
        Ok(())
    } else {
        Err(format!("fail_next status {status} must be 400..=599"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_down_per_endpoint() {
        let mut f = Faults::default();
        f.fail_next(Endpoint::Folders, 503, 2);
        let outage = Failure {
            status: 503,
            error_code: 0,
        };
        assert_eq!(f.take_failure(Endpoint::Auth), None);
        assert_eq!(f.take_failure(Endpoint::Folders), Some(outage));
        assert_eq!(f.take_failure(Endpoint::Folders), Some(outage));
        assert_eq!(f.take_failure(Endpoint::Folders), None);
        f.fail_next_with_code(Endpoint::GetAnalysis, 400, 1, 987_654);
        assert_eq!(
            f.take_failure(Endpoint::GetAnalysis).map(|f| f.error_code),
            Some(987_654)
        );
    }

    #[test]
    fn endpoint_names_round_trip() {
        for e in Endpoint::ALL {
            assert_eq!(e.name().parse::<Endpoint>(), Ok(e));
        }
        assert!("folder"
            .parse::<Endpoint>()
            .unwrap_err()
            .contains("folders"));
    }

    #[test]
    fn request_refuses_unknown_members() {
        assert!(serde_json::from_str::<FaultRequest>(r#"{"fail":{}}"#).is_err());
        let r: FaultRequest = serde_json::from_str(
            r#"{"fail_next":{"endpoint":"folders","status":503},"latency_ms":{"folders":5}}"#,
        )
        .unwrap();
        assert_eq!(r.fail_next.unwrap().into_vec()[0].count, 1);
    }

    #[test]
    fn hold_is_set_shown_and_cleared() {
        let r: FaultRequest = serde_json::from_str(r#"{"processing_for_ms":1500}"#).unwrap();
        assert_eq!(r.processing_for_ms, Some(1500));
        let mut f = Faults::default();
        assert_eq!(f.summary()["processing_for_ms"], 0);
        f.set_processing_for(Duration::from_millis(1500));
        assert_eq!(f.processing_for(), Duration::from_millis(1500));
        assert_eq!(f.summary()["processing_for_ms"], 1500);
        f.clear();
        assert_eq!(f.processing_for(), Duration::ZERO);
    }
}
