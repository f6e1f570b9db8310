//! Oz resolution values, and how several analyses combine into one.
//!
//! Status vocabulary from docs/oz-api.md §3.5 ("Statuses"): an analysis carries `state`
//! (PROCESSING, FAILED, FINISHED) and `resolution_status` (PROCESSING, FAILED, DECLINED,
//! OPERATOR_REQUIRED, SUCCESS); a folder carries `system_resolution` with the same verdict
//! values. The REST API sends them uppercase while the Web SDK reports lowercase (§4.4), so
//! parsing ignores case.

/// One verdict value, for an analysis or for the whole capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// The check passed.
    Success,
    /// The check failed: no match, or an attack (§3.5).
    Declined,
    /// A human must review it (only where Oz is set up for that, §3.5).
    OperatorRequired,
    /// Oz hit a system error while analysing.
    Failed,
    /// No final verdict yet: still running, not started, or not known within `wait_for_result`.
    Processing,
}

impl Resolution {
    /// The value as Oz spells it, also sent as `X-Oz-Resolution`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Success => "SUCCESS",
            Resolution::Declined => "DECLINED",
            Resolution::OperatorRequired => "OPERATOR_REQUIRED",
            Resolution::Failed => "FAILED",
            Resolution::Processing => "PROCESSING",
        }
    }

    /// Parses an Oz status value, ignoring case and treating `-` or a space like `_`.
    ///
    /// Everything that is not a verdict (`INITIAL`, `PROCESSING`, `FINISHED`, a value Oz may add
    /// later) reads as `Processing`: a value we do not understand must never pass as a verdict.
    pub fn parse(value: &str) -> Resolution {
        let normalized: String = value
            .trim()
            .chars()
            .map(|c| match c {
                '-' | ' ' => '_',
                c => c.to_ascii_uppercase(),
            })
            .collect();
        match normalized.as_str() {
            "SUCCESS" => Resolution::Success,
            "DECLINED" => Resolution::Declined,
            "OPERATOR_REQUIRED" => Resolution::OperatorRequired,
            "FAILED" => Resolution::Failed,
            _ => Resolution::Processing,
        }
    }

    /// True for every value but `Processing`: polling can stop.
    pub fn is_final(self) -> bool {
        self != Resolution::Processing
    }

    /// Combines several verdicts into one, the most cautious winning: any FAILED gives FAILED,
    /// else any DECLINED gives DECLINED, else any OPERATOR_REQUIRED, else any PROCESSING, else
    /// SUCCESS. No verdict at all gives PROCESSING, so an empty list can never pass as SUCCESS.
    pub fn combine(all: impl IntoIterator<Item = Resolution>) -> Resolution {
        let mut seen = [false; 5];
        let mut any = false;
        for r in all {
            any = true;
            seen[r.rank()] = true;
        }
        if !any {
            return Resolution::Processing;
        }
        Resolution::BY_PRIORITY
            .into_iter()
            .find(|r| seen[r.rank()])
            .unwrap_or(Resolution::Success)
    }

    /// Most cautious first; `combine` picks the first one present.
    const BY_PRIORITY: [Resolution; 5] = [
        Resolution::Failed,
        Resolution::Declined,
        Resolution::OperatorRequired,
        Resolution::Processing,
        Resolution::Success,
    ];

    fn rank(self) -> usize {
        match self {
            Resolution::Failed => 0,
            Resolution::Declined => 1,
            Resolution::OperatorRequired => 2,
            Resolution::Processing => 3,
            Resolution::Success => 4,
        }
    }
}

impl std::fmt::Display for Resolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
