//! The verdict listener (`verdict_listen`, off by default): a stateless lookup of a folder's
//! verdict and its video, asked of Oz with the proxy's credentials at every request, so it
//! answers the same after a restart and on any replica. Never on the traffic port (config
//! validation holds `verdict_listen` apart from `listen` and `admin_listen`).
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /verdicts/{folder_id}` | `200 application/json`: the [`Report`] of the folder, plus `verdict_token` when tokens are on; the `X-Oz-*` headers |
//! | `GET /verdicts/{folder_id}/video` | `200`, the folder's MP4 (`source_media[].preview_url`) streamed from Oz with its `Content-Type` and `Content-Length` |
//!
//! Decisions:
//! - **The id is checked before Oz is asked**: anything but a UUID in its 8-4-4-4-12 form is
//!   `400 invalid_folder_id`, without a call. It is sent to Oz in lower case.
//! - **The verdict combines as on the capture path** ([`Verdict::of_folder`]): the folder's
//!   analyses, else its own verdict. `request_id` and `virtual_camera` come from the folder's
//!   `meta_data` (what the upload wrote in `folder:meta_data`), `action` from the media tags
//!   (`capture::action::action_of_tags`, the inverse of the capture's mapping); each is `null`
//!   when the folder does not say (a folder this proxy did not upload, a container).
//! - **The token is fresh and unbound**: `jti` is `lookup.{uuid}`, new for every answer (the
//!   same value as the answer's `X-Request-Id`); it carries no `body_sha256` (the token is a
//!   member of the body it would cover) and no `bind_sha256` (a lookup is not a client
//!   session). `sub` is the folder id and `oz` the same claims as the JSON.
//! - **The video is never buffered**: Oz's body streams through, cut if Oz sends nothing for
//!   `oz.timeout`. Only a `preview_url` on the `oz.url` origin (scheme, host and port) is
//!   followed with the token; any other is `502 oz_bad_response` and is never fetched, so
//!   whoever controls an Oz answer cannot make the proxy send its token, or requests, elsewhere.
//! - **Failures** are `application/problem+json` from `crate::problem`: an unknown folder (Oz's
//!   404) is `404 folder_not_found`, a folder without a video (or a preview Oz no longer has)
//!   `404 no_video`, every other Oz failure the 502/504 of the capture path.
//!
//! Only GET and HEAD (405 otherwise); any other path is `404 not_found`.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::Value;

use crate::body::Body;
use crate::capture::action::action_of_tags;
use crate::capture::report::oz_headers;
use crate::capture::report::Report;
use crate::error::Error;
use crate::oz::{self, Folder, OzClient, Verdict};
use crate::problem::{self, Severity};
use crate::verdict_token::Signer;

/// The verdict lookup service.
#[derive(Clone)]
pub struct Lookup {
    oz: OzClient,
    /// The verdict signer in force (the one reload publishes).
    signer: Arc<ArcSwapOption<Signer>>,
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Verdict(String),
    Video(String),
}

impl Lookup {
    pub fn new(oz: OzClient, signer: Arc<ArcSwapOption<Signer>>) -> Self {
        Lookup { oz, signer }
    }

    /// Answers one request on the verdict listener.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body> {
        let request_id = format!("lookup.{}", uuid::Uuid::new_v4());
        let mut rsp = match self.answer(&req, &request_id).await {
            Ok(rsp) => rsp,
            Err(err) => {
                let class = problem::classify(&err);
                match class.severity {
                    Severity::Refusal => {
                        tracing::debug!(request_id, error = %err, "verdict lookup refused")
                    }
                    _ => tracing::warn!(request_id, error = %err, "verdict lookup failed"),
                }
                let mut rsp = problem::respond(&err, class, &request_id);
                if matches!(err, Error::MethodNotAllowed) {
                    rsp.headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                }
                rsp
            }
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            rsp.headers_mut().insert("x-request-id", v);
        }
        rsp
    }

    async fn answer<B>(&self, req: &Request<B>, request_id: &str) -> Result<Response<Body>, Error> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Err(Error::MethodNotAllowed);
        }
        match target(req.uri().path())? {
            Target::Verdict(id) => self.verdict(&id, request_id).await,
            Target::Video(id) => self.video(&id).await,
        }
    }

    /// The folder, or `FolderNotFound` when Oz has none with this id.
    async fn folder(&self, folder_id: &str) -> Result<Folder, Error> {
        self.oz.get_folder(folder_id).await.map_err(|e| match e {
            // Oz says "not found" with a 404, or with its error code 10 on another status
            // (docs/oz-api.md §5).
            oz::Error::Api { status: 404, .. }
            | oz::Error::Api {
                error_code: Some(10),
                ..
            } => Error::FolderNotFound,
            e => Error::Oz(e),
        })
    }

    async fn verdict(&self, folder_id: &str, request_id: &str) -> Result<Response<Body>, Error> {
        let folder = self.folder(folder_id).await?;
        let report = report_of(folder);
        let mut doc = serde_json::to_value(&report).expect("a report always serializes");
        let token = self
            .signer
            .load()
            .as_deref()
            .map(|signer| report.token(signer, request_id, None, None));
        if let (Some(t), Value::Object(map)) = (&token, &mut doc) {
            map.insert("verdict_token".into(), t.as_str().into());
        }
        tracing::info!(
            request_id,
            folder_id = %report.folder_id,
            resolution = %report.resolution,
            "verdict looked up"
        );
        let body = serde_json::to_vec(&doc).expect("a JSON value always serializes");
        let mut rsp = Response::new(Body::full(body));
        let h = rsp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // PROCESSING turns into a verdict later, and a token is minted per answer.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        report.headers(h);
        if let Some(v) = token.and_then(|t| HeaderValue::from_str(&t).ok()) {
            h.insert(oz_headers::VERDICT_TOKEN.clone(), v);
        }
        Ok(rsp)
    }

    async fn video(&self, folder_id: &str) -> Result<Response<Body>, Error> {
        let folder = self.folder(folder_id).await?;
        let url = folder.preview_url().ok_or(Error::NoVideo)?;
        let media = self.oz.open_media(url).await.map_err(|e| match e {
            oz::Error::Api { status: 404, .. }
            | oz::Error::Api {
                error_code: Some(10),
                ..
            } => Error::NoVideo,
            e => Error::Oz(e),
        })?;
        let (parts, incoming) = media.into_parts();
        let mut rsp = Response::new(Body::streamed(incoming, Some(self.oz.timeout())));
        *rsp.status_mut() = StatusCode::OK;
        let h = rsp.headers_mut();
        for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH] {
            if let Some(v) = parts.headers.get(&name) {
                h.insert(name, v.clone());
            }
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(&folder.folder_id) {
            h.insert(oz_headers::FOLDER_ID.clone(), v);
        }
        tracing::info!(folder_id = %folder.folder_id, "verdict video streamed from Oz");
        Ok(rsp)
    }
}

/// The report of a folder read from Oz.
fn report_of(folder: Folder) -> Report {
    let request_id = folder
        .meta("request_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    // Written as a JSON boolean; an Oz that keeps metadata as strings gives it back as one.
    let virtual_camera = match folder.meta("virtual_camera") {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) if s == "true" => Some(true),
        Some(Value::String(s)) if s == "false" => Some(false),
        _ => None,
    };
    let action = action_of_tags(&folder.media_tags()).map(str::to_owned);
    let verdict = Verdict::of_folder(folder);
    Report::new(&verdict, request_id, action, virtual_camera)
}

/// The target of `path`: `/verdicts/{uuid}` or `/verdicts/{uuid}/video`.
fn target(path: &str) -> Result<Target, Error> {
    let rest = path.strip_prefix("/verdicts/").ok_or(Error::UnknownPath)?;
    let (id, video) = match rest.split_once('/') {
        None => (rest, false),
        Some((id, "video")) => (id, true),
        Some(_) => return Err(Error::UnknownPath),
    };
    if id.is_empty() {
        return Err(Error::UnknownPath);
    }
    let id = folder_id(id).ok_or(Error::InvalidFolderId)?;
    Ok(if video {
        Target::Video(id)
    } else {
        Target::Verdict(id)
    })
}

/// `id` in lower case if it is a UUID written 8-4-4-4-12 (the only form Oz uses for folder ids).
fn folder_id(id: &str) -> Option<String> {
    (id.len() == 36 && uuid::Uuid::try_parse(id).is_ok()).then(|| id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b4f1c9e-7a52-4c8e-9f1d-2f5a7c3b8e10";

    #[test]
    fn targets() {
        assert_eq!(
            target(&format!("/verdicts/{ID}")).unwrap(),
            Target::Verdict(ID.into())
        );
        assert_eq!(
            target(&format!("/verdicts/{}/video", ID.to_uppercase())).unwrap(),
            Target::Video(ID.into())
        );
        for bad in [
            "/verdicts/not-a-uuid",
            "/verdicts/0b4f1c9e7a524c8e9f1d2f5a7c3b8e10",
            "/verdicts/{0b4f1c9e-7a52-4c8e-9f1d-2f5a7c3b8e1}",
            "/verdicts/..%2Fadmin",
            "/verdicts/0b4f1c9e-7a52-4c8e-9f1d-2f5a7c3b8e1g/video",
        ] {
            assert!(matches!(target(bad), Err(Error::InvalidFolderId)), "{bad}");
        }
        for unknown in [
            "/",
            "/verdicts",
            "/verdicts/",
            "/verdict/x",
            &format!("/verdicts/{ID}/"),
            &format!("/verdicts/{ID}/video/"),
            &format!("/verdicts/{ID}/audio"),
        ] {
            assert!(
                matches!(target(unknown), Err(Error::UnknownPath)),
                "{unknown}"
            );
        }
    }

    #[test]
    fn report_reads_meta_data_and_tags() {
        let folder = oz::types::parse_folder(&serde_json::json!({
            "folder_id": ID,
            "system_resolution": "SUCCESS",
            "meta_data": {"request_id": "req-1", "virtual_camera": "true"},
            "media": [{"tags": ["video_selfie", "video_selfie_oneshot", "orientation_portrait"]}],
            "analyses": [{"type": "QUALITY", "resolution_status": "DECLINED"}],
        }))
        .unwrap();
        let r = report_of(folder);
        assert_eq!(
            r.resolution, "DECLINED",
            "the analyses decide, as on capture"
        );
        assert_eq!(r.request_id.as_deref(), Some("req-1"));
        assert_eq!(r.virtual_camera, Some(true));
        assert_eq!(r.action.as_deref(), Some("video_selfie_best"));

        let bare = oz::types::parse_folder(&serde_json::json!({
            "folder_id": ID, "system_resolution": "SUCCESS",
        }))
        .unwrap();
        let r = report_of(bare);
        assert_eq!(
            r.resolution, "SUCCESS",
            "no analyses: the folder's own verdict"
        );
        assert_eq!(
            (r.request_id, r.action, r.virtual_camera),
            (None, None, None)
        );
    }
}
