//! The liveness verdict of one capture: its folder, its analyses, and their combined
//! [`Resolution`].

use super::resolution::Resolution;
use super::types::{Analysis, Folder};

/// The outcome of [`OzClient::check`](super::OzClient::check).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The Oz folder the capture was uploaded to (what the Instant API answered, in instant mode).
    pub folder_id: String,
    /// The combined verdict; `Processing` when it was not final within `wait_for_result`.
    pub resolution: Resolution,
    /// The analyses as last seen.
    pub analyses: Vec<Analysis>,
}

impl Verdict {
    /// A verdict combining `analyses`.
    pub fn from_analyses(folder_id: String, analyses: Vec<Analysis>) -> Verdict {
        Verdict {
            folder_id,
            resolution: Resolution::combine(analyses.iter().map(|a| a.resolution)),
            analyses,
        }
    }

    /// The verdict of a folder as read later (`GET /api/folders/{id}?with_analyses=true`),
    /// combined as the capture path does (`check.rs`): its analyses when it has any, else the
    /// folder's own verdict (`system_resolution`, or FAILED from `resolution_status`), else
    /// PROCESSING.
    pub fn of_folder(folder: Folder) -> Verdict {
        if folder.analyses.is_empty() {
            return Verdict {
                resolution: folder.resolution(),
                folder_id: folder.folder_id,
                analyses: Vec::new(),
            };
        }
        Verdict::from_analyses(folder.folder_id, folder.analyses)
    }
}

#[cfg(test)]
mod tests {
    use super::Resolution::{self, *};

    #[test]
    fn parse_ignores_case_and_separators() {
        assert_eq!(Resolution::parse("SUCCESS"), Success);
        assert_eq!(Resolution::parse("success"), Success);
        assert_eq!(Resolution::parse(" Declined "), Declined);
        assert_eq!(Resolution::parse("operator_required"), OperatorRequired);
        assert_eq!(Resolution::parse("Operator-Required"), OperatorRequired);
        assert_eq!(Resolution::parse("failed"), Failed);
        assert_eq!(Resolution::parse("processing"), Processing);
    }

    #[test]
    fn non_verdict_values_read_as_processing() {
        for v in ["INITIAL", "FINISHED", "", "CANCELLED", "ok"] {
            assert_eq!(Resolution::parse(v), Processing, "{v}");
        }
    }

    #[test]
    fn as_str_round_trips() {
        for r in [Success, Declined, OperatorRequired, Failed, Processing] {
            assert_eq!(Resolution::parse(r.as_str()), r);
        }
    }

    #[test]
    fn combine_follows_priority() {
        assert_eq!(Resolution::combine([Success, Declined, Failed]), Failed);
        assert_eq!(
            Resolution::combine([Success, Processing, Declined]),
            Declined
        );
        assert_eq!(
            Resolution::combine([Processing, OperatorRequired, Success]),
            OperatorRequired
        );
        assert_eq!(Resolution::combine([Success, Processing]), Processing);
        assert_eq!(Resolution::combine([Success, Success]), Success);
        assert_eq!(Resolution::combine([Failed, Processing]), Failed);
    }

    #[test]
    fn combine_of_nothing_is_never_success() {
        assert_eq!(Resolution::combine([]), Processing);
    }
}
