//! `OzClient`: the Oz API endpoints the proxy uses, each one authenticated call.
//!
//! Endpoints (docs/oz-api.md): `POST /api/folders/` (§2.1) or `POST /api/instant/folders/` (§3.4)
//! for the upload, `POST /api/folders/{id}/analyses/` (§3.1), `GET /api/analyses/{id}` (§3.5);
//! for the verdict lookup, `GET /api/folders/{id}?with_analyses=true` (§3.5) and the folder's
//! `preview_url` (§2.7), followed only on the `oz.url` origin.
//! The slashed forms follow the current docs' upload and analyses pages (§8.1); the analysis
//! GET has no slash because every source writes it so. The whole verdict flow is in `check.rs`.
//!
//! Retries, decided here:
//! - **Upload (`create_folder`) is never resent after it may have reached Oz.** Folder creation
//!   is not idempotent: a 5xx or a timeout may come after Oz created the folder, and sending it
//!   again could create a second folder and bill the analyses twice. It is resent only when it
//!   provably did not reach Oz: a failed connect (once, in `transport.rs`), a pooled connection
//!   found closed before the request started (hyper-util `retry_canceled_requests`), and once
//!   after a 401 with error_code 7/8, which Oz answers before touching the upload.
//! - **Starting analyses** follows the same rule (a resend could start them twice).
//! - **Polling GETs** are safe to repeat; the poll loop in `check.rs` keeps going after 5xx,
//!   timeouts and connection failures until `wait_for_result` runs out.
//! - Every call, whatever its endpoint, is retried once after a 401 with code 7 or 8 when
//!   logged in with credentials, after one shared renewal (see `auth.rs`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use serde_json::json;
use tracing::Instrument;

use super::auth::Auth;
use super::error::Error;
use super::tls::BuildError;
use super::transport::{Call, Transport};
use super::types::{parse_analyses, parse_folder, Analysis, Folder};
use super::upload::UploadBody;
use crate::config::{OzApiMode, OzConfig};
use crate::metrics::Metrics;
use crate::trace::Tracing;

// Defined by config, which holds `capture.analyses` to the same limit.
pub use crate::config::MAX_ANALYSES;

/// A handle to Oz API. Cloning is cheap; clones share the connection pool and the token.
#[derive(Clone)]
pub struct OzClient {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    auth: Auth,
    api: OzApiMode,
}

impl OzClient {
    /// Builds the client: HTTPS by rustls (aws-lc-rs, webpki roots plus `oz.ca_file`), plain
    /// HTTP for `http://` URLs, a pooled connection per host. No network I/O happens here; the
    /// first login happens on the first call.
    pub fn new(cfg: &OzConfig, metrics: Metrics) -> Result<OzClient, BuildError> {
        OzClient::traced(cfg, metrics, Tracing::off())
    }

    /// [`OzClient::new`], each call made inside a traced request a client span of it, and
    /// its `traceparent` sent to Oz.
    pub fn traced(
        cfg: &OzConfig,
        metrics: Metrics,
        tracing: Tracing,
    ) -> Result<OzClient, BuildError> {
        let auth = Auth::from_config(&cfg.auth).map_err(BuildError::Auth)?;
        Ok(OzClient {
            inner: Arc::new(Inner {
                transport: Transport::new(cfg, metrics, tracing)?,
                auth,
                api: cfg.api,
            }),
        })
    }

    /// Uploads a capture: creates a folder with its media (§2.1) or, in instant mode, sends it
    /// to the Instant API (§3.4). The body goes out as its chunks with an exact `Content-Length`.
    pub async fn create_folder(
        &self,
        upload: &UploadBody,
        request_id: &str,
    ) -> Result<Folder, Error> {
        let (endpoint, path) = match self.inner.api {
            OzApiMode::Folders => ("folders", "/api/folders/"),
            OzApiMode::Instant => ("instant_folders", "/api/instant/folders/"),
        };
        let content_type =
            HeaderValue::from_str(&upload.content_type).map_err(|_| Error::Unreachable {
                endpoint,
                reason: "request not sent: the upload content type is not a valid header value"
                    .into(),
                sent: false,
            })?;
        let call = Call {
            endpoint,
            method: http::Method::POST,
            path: path.into(),
            content_type: Some(content_type),
            chunks: upload.chunks.clone(),
        };
        let span = tracing::info_span!(
            "oz_upload",
            request_id,
            endpoint,
            bytes = upload.content_length()
        );
        let body = self.call(&call, None).instrument(span).await?;
        let t = &self.inner.transport;
        let folder =
            parse_folder(&t.json(endpoint, &body)?).map_err(|r| t.bad_response(endpoint, r))?;
        check_id(&folder.folder_id)
            .map_err(|r| t.bad_response(endpoint, format!("folder_id {r}")))?;
        self.bounded(endpoint, folder.analyses.len())?;
        crate::trace::record_folder_id(&folder.folder_id);
        tracing::info!(request_id, folder_id = %folder.folder_id, analyses = folder.analyses.len(), "oz folder created");
        Ok(folder)
    }

    /// Starts `analyses` (lowercase types such as `quality`, §3.1) on all media of a folder.
    pub async fn start_analyses(
        &self,
        folder_id: &str,
        analyses: &[String],
    ) -> Result<Vec<Analysis>, Error> {
        const EP: &str = "analyses";
        check_id(folder_id).map_err(|r| Error::Unreachable {
            endpoint: EP,
            reason: format!("request not sent: folder_id {r}"),
            sent: false,
        })?;
        let types: Vec<_> = analyses.iter().map(|a| json!({ "type": a })).collect();
        let call = Call::post_json(
            EP,
            format!("/api/folders/{folder_id}/analyses/"),
            &json!({ "analyses": types }),
        );
        let body = self.call(&call, None).await?;
        let t = &self.inner.transport;
        let started = parse_analyses(&t.json(EP, &body)?).map_err(|r| t.bad_response(EP, r))?;
        self.bounded(EP, started.len())?;
        Ok(started)
    }

    /// Reads one analysis (§3.5), within `oz.timeout`.
    pub async fn get_analysis(&self, analysis_id: &str) -> Result<Analysis, Error> {
        self.get_analysis_within(analysis_id, None).await
    }

    /// Reads one analysis within `budget` (default `oz.timeout`); the budget bounds the whole
    /// call, a token renewal included, so polling never overruns `wait_for_result`.
    pub(crate) async fn get_analysis_within(
        &self,
        analysis_id: &str,
        budget: Option<Duration>,
    ) -> Result<Analysis, Error> {
        const EP: &str = "poll";
        check_id(analysis_id).map_err(|r| Error::Unreachable {
            endpoint: EP,
            reason: format!("request not sent: analysis id {r}"),
            sent: false,
        })?;
        let call = Call::get(EP, format!("/api/analyses/{analysis_id}"));
        let budget = budget.unwrap_or(self.inner.transport.timeout());
        let body = match tokio::time::timeout(budget, self.call(&call, Some(budget))).await {
            Ok(r) => r?,
            Err(_) => return Err(Error::Timeout { endpoint: EP }),
        };
        let t = &self.inner.transport;
        let all = parse_analyses(&t.json(EP, &body)?).map_err(|r| t.bad_response(EP, r))?;
        // One object is documented; if a list comes back, take the one asked for.
        let mut found = all
            .iter()
            .find(|a| a.id == analysis_id)
            .or(all.first())
            .cloned()
            .ok_or_else(|| t.bad_response(EP, "empty answer".into()))?;
        if found.id.is_empty() {
            found.id = analysis_id.to_owned();
        }
        Ok(found)
    }

    /// Reads a folder with its analyses (`GET /api/folders/{id}?with_analyses=true`, §3.5),
    /// within `oz.timeout`: what the verdict lookup answers from. Metric endpoint `folder`.
    pub async fn get_folder(&self, folder_id: &str) -> Result<Folder, Error> {
        const EP: &str = "folder";
        check_id(folder_id).map_err(|r| Error::Unreachable {
            endpoint: EP,
            reason: format!("request not sent: folder_id {r}"),
            sent: false,
        })?;
        let call = Call::get(EP, format!("/api/folders/{folder_id}?with_analyses=true"));
        let body = self.call(&call, None).await?;
        let t = &self.inner.transport;
        let folder = parse_folder(&t.json(EP, &body)?).map_err(|r| t.bad_response(EP, r))?;
        if !folder.folder_id.eq_ignore_ascii_case(folder_id) {
            return Err(t.bad_response(EP, "the answer is for another folder".into()));
        }
        self.bounded(EP, folder.analyses.len())?;
        Ok(folder)
    }

    /// Opens a media file Oz links to (a folder's `preview_url`, §2.7) with the proxy's token:
    /// the answer's head within `oz.timeout`, its body left to stream. Only a URL on the
    /// `oz.url` origin is followed (anything else is `Error::BadResponse`, never fetched): an
    /// answer must not make the proxy send its token elsewhere. Metric endpoint `video`.
    pub async fn open_media(
        &self,
        url: &str,
    ) -> Result<http::Response<hyper::body::Incoming>, Error> {
        const EP: &str = "video";
        let Inner {
            transport, auth, ..
        } = &*self.inner;
        let uri: http::Uri = url
            .parse()
            .map_err(|_| transport.bad_response(EP, "the media URL is not a URL".into()))?;
        let token = auth.token(transport).await?;
        match transport.open(EP, &uri, token.header.as_ref(), None).await {
            Err(Error::Auth {
                error_code: Some(code @ (7 | 8)),
            }) => match auth.renew(transport, &token).await? {
                Some(fresh) => transport.open(EP, &uri, fresh.header.as_ref(), None).await,
                None => Err(Error::Auth {
                    error_code: Some(code),
                }),
            },
            other => other,
        }
    }

    /// `oz.timeout`, the budget of one call.
    pub fn timeout(&self) -> Duration {
        self.inner.transport.timeout()
    }

    /// `Err(TooManyAnalyses)`, counted like every other failure, when an answer to `endpoint`
    /// listed more than [`MAX_ANALYSES`].
    fn bounded(&self, endpoint: &'static str, listed: usize) -> Result<(), Error> {
        if listed <= MAX_ANALYSES {
            return Ok(());
        }
        Err(self
            .inner
            .transport
            .counted(endpoint, Error::TooManyAnalyses { endpoint, listed }))
    }

    /// A `BadResponse`, counted in `oz_errors_total` like every other failure.
    pub(super) fn bad_response(&self, endpoint: &'static str, reason: String) -> Error {
        self.inner.transport.bad_response(endpoint, reason)
    }

    /// The API mode this client was built for.
    pub fn api(&self) -> OzApiMode {
        self.inner.api
    }

    /// One authenticated call, resent once with a fresh token after a 401 code 7/8.
    async fn call(&self, call: &Call, budget: Option<Duration>) -> Result<Bytes, Error> {
        let Inner {
            transport, auth, ..
        } = &*self.inner;
        let token = auth.token(transport).await?;
        match transport.send(call, token.header.as_ref(), budget).await {
            Err(Error::Auth {
                error_code: Some(code @ (7 | 8)),
            }) => match auth.renew(transport, &token).await? {
                Some(fresh) => {
                    tracing::info!(
                        endpoint = call.endpoint,
                        error_code = code,
                        "oz token refused, sending again with a new one"
                    );
                    transport.send(call, fresh.header.as_ref(), budget).await
                }
                None => Err(Error::Auth {
                    error_code: Some(code),
                }),
            },
            other => other,
        }
    }
}

impl std::fmt::Debug for OzClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OzClient")
            .field("api", &self.inner.api)
            .finish_non_exhaustive()
    }
}

/// Ids from Oz go into URL paths; accept only what UUIDs and similar ids are made of, so an
/// odd answer cannot steer a request elsewhere.
pub(super) fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("is empty".into());
    }
    if id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("has characters outside [A-Za-z0-9_-] or is too long".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_id;

    #[test]
    fn ids_are_path_safe() {
        assert!(check_id("0b4f1c9e-7a52-4c8e-9f1d-2f5a7c3b8e10").is_ok());
        assert!(check_id("abc_123").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("../admin").is_err());
        assert!(check_id("a?b=c").is_err());
        assert!(check_id(&"a".repeat(129)).is_err());
    }
}
