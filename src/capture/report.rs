//! A verdict as the backend gets it after the capture: delivered late (`POST
//! {late_verdict_path}`) or looked up (`GET /verdicts/{folder_id}`), one JSON shape, with the
//! `X-Oz-*` headers and a fresh verdict token whose `body_sha256` covers that JSON.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde::Serialize;

use crate::oz::Verdict;
use crate::verdict_token::{AnalysisClaim, OzClaim, Signer, Subject};

/// Verdict headers for the backend (README.md, "What the backend and the client see").
pub mod oz_headers {
    use http::HeaderName;
    pub static FOLDER_ID: HeaderName = HeaderName::from_static("x-oz-folder-id");
    pub static RESOLUTION: HeaderName = HeaderName::from_static("x-oz-resolution");
    pub static ACTION: HeaderName = HeaderName::from_static("x-oz-action");
    pub static VIRTUAL_CAMERA: HeaderName = HeaderName::from_static("x-oz-virtual-camera");
    pub static VERDICT_TOKEN: HeaderName = HeaderName::from_static("x-oz-verdict-token");
}

/// The verdict of one folder, as the backend reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub folder_id: String,
    pub resolution: String,
    /// The request id of the original capture (`folder:meta_data.request_id`); `None` for a
    /// folder this proxy did not upload.
    pub request_id: Option<String>,
    pub action: Option<String>,
    pub virtual_camera: Option<bool>,
    pub analyses: Vec<ReportAnalysis>,
}

/// One analysis of a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportAnalysis {
    #[serde(rename = "type")]
    pub kind: String,
    pub resolution: String,
}

impl Report {
    /// The report of `verdict`, for the capture with `request_id`, `action` and
    /// `virtual_camera` (`None` for a container).
    pub fn new(
        verdict: &Verdict,
        request_id: Option<String>,
        action: Option<String>,
        virtual_camera: Option<bool>,
    ) -> Report {
        Report {
            folder_id: verdict.folder_id.clone(),
            resolution: verdict.resolution.as_str().to_owned(),
            request_id,
            action,
            virtual_camera,
            analyses: verdict
                .analyses
                .iter()
                .map(|a| ReportAnalysis {
                    kind: a.kind.clone(),
                    resolution: a.resolution.as_str().to_owned(),
                })
                .collect(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a report always serializes"))
    }

    /// The `X-Oz-*` headers of this verdict, as a forwarded capture carries them.
    pub fn headers(&self, h: &mut HeaderMap) {
        let mut set = |name: &http::HeaderName, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name.clone(), v);
            }
        };
        set(&oz_headers::FOLDER_ID, &self.folder_id);
        set(&oz_headers::RESOLUTION, &self.resolution);
        if let Some(a) = &self.action {
            set(&oz_headers::ACTION, a);
        }
        if let Some(vc) = self.virtual_camera {
            set(
                &oz_headers::VIRTUAL_CAMERA,
                if vc { "true" } else { "false" },
            );
        }
    }

    /// A token for this report: `sub` the folder id, `jti` = `jti` (the capture's request id, or
    /// one stable across the retries of a late delivery), `body_sha256` over `body` and
    /// `bind_sha256` over `binding` when given.
    pub fn token(
        &self,
        signer: &Signer,
        jti: &str,
        body: Option<&[u8]>,
        binding: Option<&[u8]>,
    ) -> String {
        signer.mint(&Subject {
            folder_id: &self.folder_id,
            request_id: jti,
            oz: OzClaim {
                resolution: &self.resolution,
                action: self.action.as_deref(),
                virtual_camera: self.virtual_camera,
                analyses: self
                    .analyses
                    .iter()
                    .map(|a| AnalysisClaim {
                        kind: &a.kind,
                        resolution: &a.resolution,
                    })
                    .collect(),
            },
            body,
            binding,
        })
    }
}
