//! Simulator settings: accepted credentials, token lifetime, how long analyses stay
//! `PROCESSING`, the verdict they end with, and the upload limits.
//!
//! Defaults follow docs/oz-api.md: §1.2 (`OZ_SESSION_TTL` = 15 minutes), §3.5 (the statuses a
//! verdict can take) and §6.1 (`OZ_ATTACHMENT_MAX_COUNT` = 10, `OZ_ATTACHMENT_MAX_SIZE` = 10 MB).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Login accepted by a default simulator (no Oz account needed for `demo`).
pub const DEFAULT_EMAIL: &str = "demo@oz-sim.local";
/// Password accepted by a default simulator.
pub const DEFAULT_PASSWORD: &str = "demo-password";

/// The final resolution an analysis reaches (docs/oz-api.md §3.5, `analyse.resolution_status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Check passed.
    #[default]
    Success,
    /// Check failed: an attack or no match.
    Declined,
    /// Needs human review.
    OperatorRequired,
    /// System error: the analysis ends in state `FAILED`.
    Failed,
}

impl Verdict {
    /// The uppercase wire value Oz uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Success => "SUCCESS",
            Verdict::Declined => "DECLINED",
            Verdict::OperatorRequired => "OPERATOR_REQUIRED",
            Verdict::Failed => "FAILED",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is none of the four verdicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVerdict(pub String);

impl fmt::Display for UnknownVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown verdict {:?}; expected SUCCESS, DECLINED, OPERATOR_REQUIRED or FAILED",
            self.0
        )
    }
}

impl std::error::Error for UnknownVerdict {}

impl FromStr for Verdict {
    type Err = UnknownVerdict;

    /// Accepts the wire value in any case, so `--verdict declined` works on a command line.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "SUCCESS" => Ok(Verdict::Success),
            "DECLINED" => Ok(Verdict::Declined),
            "OPERATOR_REQUIRED" => Ok(Verdict::OperatorRequired),
            "FAILED" => Ok(Verdict::Failed),
            _ => Err(UnknownVerdict(s.to_owned())),
        }
    }
}

/// How a simulator behaves. Cheap to clone; read once by [`crate::oz_sim::OzSim::new`].
#[derive(Clone)]
pub struct SimConfig {
    /// A static service token that is always accepted (docs/oz-api.md §1.3); `None` accepts only
    /// tokens issued by login.
    pub token: Option<String>,
    /// The email `POST /api/authorize/auth/` accepts.
    pub email: String,
    /// The password `POST /api/authorize/auth/` accepts.
    pub password: String,
    /// Lifetime of login tokens; each authenticated call slides it forward (docs/oz-api.md §1.2).
    /// `Duration::ZERO` issues tokens that are already expired, which tests use.
    pub token_ttl: Duration,
    /// How many reads of an analysis answer `PROCESSING` before it turns final.
    pub polls_until_final: u32,
    /// The resolution analyses end with.
    pub verdict: Verdict,
    /// Single-request mode (docs/oz-api.md §3.3): `POST /api/folders/` answers with finished analyses.
    pub single_request: bool,
    /// Largest request body read; larger ones get 413.
    pub max_body_bytes: usize,
    /// Largest single file part (`OZ_ATTACHMENT_MAX_SIZE`, docs/oz-api.md §6.1).
    pub max_file_bytes: usize,
    /// Most file parts in one upload (`OZ_ATTACHMENT_MAX_COUNT`, docs/oz-api.md §6.1).
    pub max_files: usize,
    /// How many uploads the handle keeps; older ones are dropped so a long `simulate-oz`
    /// run does not grow without bound.
    pub keep_uploads: usize,
    /// How many call records the handle keeps.
    pub keep_calls: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            token: None,
            email: DEFAULT_EMAIL.to_owned(),
            password: DEFAULT_PASSWORD.to_owned(),
            token_ttl: Duration::from_secs(15 * 60),
            polls_until_final: 2,
            verdict: Verdict::Success,
            single_request: false,
            max_body_bytes: 64 * 1024 * 1024,
            max_file_bytes: 10 * 1024 * 1024,
            max_files: 10,
            keep_uploads: 100,
            keep_calls: 10_000,
        }
    }
}

/// Written by hand so the password and the static token never reach a log line.
impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("email", &self.email)
            .field("password", &"[redacted]")
            .field("token_ttl", &self.token_ttl)
            .field("polls_until_final", &self.polls_until_final)
            .field("verdict", &self.verdict)
            .field("single_request", &self.single_request)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_file_bytes", &self.max_file_bytes)
            .field("max_files", &self.max_files)
            .field("keep_uploads", &self.keep_uploads)
            .field("keep_calls", &self.keep_calls)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_parses_any_case_and_round_trips() {
        for v in [
            Verdict::Success,
            Verdict::Declined,
            Verdict::OperatorRequired,
            Verdict::Failed,
        ] {
            assert_eq!(v.as_str().parse::<Verdict>(), Ok(v));
            assert_eq!(v.as_str().to_lowercase().parse::<Verdict>(), Ok(v));
        }
        assert!("PASSED".parse::<Verdict>().is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let cfg = SimConfig {
            token: Some("t0k3n".into()),
            password: "hunter2".into(),
            ..SimConfig::default()
        };
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("t0k3n") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
