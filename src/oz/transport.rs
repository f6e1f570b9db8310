//! One Oz API call: build the request, send it on the pooled client, bound it in time, read the
//! answer, turn failures into `oz::Error`, and record metrics.
//!
//! Error mapping (docs/oz-api.md §5): a 2xx answer is the body; any other status is parsed as Oz's
//! `{error_code, error_message, details}` body. HTTP 401, or the auth codes 6/7/8 under any
//! status, become `Error::Auth`; everything else `Error::Api`. Connect failures and broken
//! connections become `Error::Unreachable`; running past the time budget `Error::Timeout`.
//! Every call records `oz_call(endpoint, elapsed)`, and failures `oz_error(endpoint, code)` with
//! Oz's `error_code`, else the HTTP status, else `timeout`, `unreachable` or `bad_response`;
//! codes and statuses outside the documented ones are `other` (see `metric_code`).
//!
//! Retries here are only the ones that cannot duplicate work: a failed *connect* (no byte of
//! the request left this process) is tried once more after a short jittered pause, for every
//! endpoint. hyper-util's pool already resends a request that was handed an idle connection
//! found closed before the request started (`retry_canceled_requests`, on by default, set
//! explicitly below). Everything else is the caller's decision (see `client.rs`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::Value;

use super::body::ChunkBody;
use super::error::Error;
use super::tls::{self, BuildError};
use super::types::parse_error_body;
use crate::config::OzConfig;
use crate::metrics::Metrics;
use crate::trace::{ChildSpan, Tracing};

/// The header Oz reads the token from (§1.1; the Key Concepts page's `X-Forensics-…` is a typo,
/// §8.2).
pub const TOKEN_HEADER: &str = "x-forensic-access-token";

/// Largest answer read from Oz. Folder answers with analyses and media links are a few KB; the
/// cap only stops a misbehaving server from filling memory.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Idle pooled connections are dropped after this. Below the 60–75 s keep-alive of common
/// reverse proxies in front of Oz, so the pool rarely hands out a connection the server is
/// closing (docs/dependencies.md, "hyper-util client: the keep-alive race").
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause before the single connect retry.
const CONNECT_RETRY_DELAY: Duration = Duration::from_millis(100);

const USER_AGENT_VALUE: &str = concat!("oz-capture-proxy/", env!("CARGO_PKG_VERSION"));

/// One request to make; owned so it can be sent again with a fresh token.
pub struct Call {
    /// Metric label: `auth`, `refresh`, `folders`, `instant_folders`, `analyses`, `poll`,
    /// `folder` (a folder read by the verdict lookup), `video` (its preview, `Transport::open`).
    pub endpoint: &'static str,
    pub method: Method,
    /// Path and query, starting with `/`, appended to `oz.url`.
    pub path: String,
    pub content_type: Option<HeaderValue>,
    /// The body; empty for GET. Cloning shares the bytes.
    pub chunks: Vec<Bytes>,
}

impl Call {
    /// A POST with a JSON body.
    pub fn post_json(endpoint: &'static str, path: String, json: &Value) -> Call {
        Call {
            endpoint,
            method: Method::POST,
            path,
            content_type: Some(HeaderValue::from_static("application/json")),
            chunks: vec![Bytes::from(json.to_string())],
        }
    }

    /// A GET.
    pub fn get(endpoint: &'static str, path: String) -> Call {
        Call {
            endpoint,
            method: Method::GET,
            path,
            content_type: None,
            chunks: Vec::new(),
        }
    }
}

/// The pooled HTTP client plus what every call needs.
pub struct Transport {
    http: Client<HttpsConnector<HttpConnector>, ChunkBody>,
    /// `scheme://authority[/prefix]`, without a trailing slash.
    base: String,
    /// The scheme, host (lower case) and port of `oz.url`: the only origin a URL found in an
    /// answer (`preview_url`) is followed on, with the proxy's token.
    origin: Origin,
    timeout: Duration,
    metrics: Metrics,
    /// Each call inside a traced request is a client span, named in its `traceparent`.
    tracing: Tracing,
}

impl Transport {
    pub fn new(
        cfg: &OzConfig,
        metrics: Metrics,
        tracing: Tracing,
    ) -> Result<Transport, BuildError> {
        let scheme = cfg
            .url
            .scheme_str()
            .filter(|s| matches!(*s, "http" | "https"))
            .ok_or_else(|| BuildError::Url("needs an http:// or https:// URL".into()))?;
        let authority = cfg
            .url
            .authority()
            .ok_or_else(|| BuildError::Url("needs a host".into()))?;
        let base = format!(
            "{scheme}://{authority}{}",
            cfg.url.path().trim_end_matches('/')
        );
        if format!("{base}/api/folders/").parse::<http::Uri>().is_err() {
            return Err(BuildError::Url("cannot be used as a base URL".into()));
        }
        let http = Client::builder(TokioExecutor::new())
            // Without a timer the idle timeout silently does nothing (docs/dependencies.md, "hyper: timeouts need a timer").
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            // Safe for every method: it only resends requests that never started.
            .retry_canceled_requests(true)
            .build(tls::connector(cfg)?);
        let origin = Origin::of(&cfg.url).ok_or_else(|| {
            BuildError::Url("needs an http:// or https:// URL with a host".into())
        })?;
        Ok(Transport {
            http,
            base,
            origin,
            timeout: cfg.timeout,
            metrics,
            tracing,
        })
    }

    /// `oz.timeout`, the budget of one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `call` within `budget` (default `oz.timeout`) and returns the 2xx body.
    pub async fn send(
        &self,
        call: &Call,
        token: Option<&HeaderValue>,
        budget: Option<Duration>,
    ) -> Result<Bytes, Error> {
        let started = Instant::now();
        let budget = budget.unwrap_or(self.timeout);
        let span = self.span(call);
        let result =
            match tokio::time::timeout(budget, self.exchange(call, token, span.as_ref())).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout {
                    endpoint: call.endpoint,
                }),
            };
        if let Some(span) = span {
            match &result {
                Ok((status, _)) => span.end(Some(status.as_u16()), None),
                Err(e) => span.end(e.status(), Some(metric_code(e))),
            }
        }
        let result = result.map(|(_, body)| body);
        let elapsed = started.elapsed();
        self.metrics.oz_call(call.endpoint, elapsed);
        match &result {
            Ok(body) => tracing::debug!(
                endpoint = call.endpoint,
                elapsed_ms = elapsed.as_millis() as u64,
                answer_bytes = body.len(),
                "oz call done"
            ),
            Err(e) => self.failed(call.endpoint, e),
        }
        result
    }

    /// Parses a 2xx body as JSON; an unreadable one is `BadResponse` (and counted as such).
    pub fn json(&self, endpoint: &'static str, body: &[u8]) -> Result<Value, Error> {
        serde_json::from_slice(body)
            .map_err(|e| self.bad_response(endpoint, format!("not JSON: {e}")))
    }

    /// A `BadResponse` for a 2xx answer whose content does not fit, counted and logged.
    pub fn bad_response(&self, endpoint: &'static str, reason: String) -> Error {
        self.counted(endpoint, Error::BadResponse { endpoint, reason })
    }

    /// `e`, found in a 2xx answer from `endpoint`, counted and logged like a failed call.
    pub fn counted(&self, endpoint: &'static str, e: Error) -> Error {
        self.failed(endpoint, &e);
        e
    }

    fn failed(&self, endpoint: &'static str, e: &Error) {
        self.metrics.oz_error(endpoint, metric_code(e));
        // Display of `Error` carries no token, credential or media; Oz's message stays out of it.
        tracing::warn!(endpoint, error = %e, "oz call failed");
    }

    /// The client span of `call`, when it is made inside a traced request; its URL without the
    /// query.
    fn span(&self, call: &Call) -> Option<ChildSpan> {
        if !self.tracing.is_on() {
            return None;
        }
        let url: http::Uri = format!("{}{}", self.base, call.path).parse().ok()?;
        self.tracing.oz_span(call.endpoint, &call.method, &url)
    }

    async fn exchange(
        &self,
        call: &Call,
        token: Option<&HeaderValue>,
        span: Option<&ChildSpan>,
    ) -> Result<(StatusCode, Bytes), Error> {
        let answer = self
            .head(call.endpoint, || {
                let mut req = self.request(call, token)?;
                if let Some(span) = span {
                    span.inject_traceparent(req.headers_mut());
                }
                Ok(req)
            })
            .await?;
        let status = answer.status();
        let body = self.collect(call.endpoint, answer.into_body()).await?;
        if status.is_success() {
            Ok((status, body))
        } else {
            Err(classify(call.endpoint, status, &body))
        }
    }

    /// Sends the request `build` makes and returns the answer's head, its body unread; a failed
    /// connect is tried once more.
    async fn head(
        &self,
        endpoint: &'static str,
        build: impl Fn() -> Result<Request<ChunkBody>, Error>,
    ) -> Result<Response<Incoming>, Error> {
        let mut retried = false;
        loop {
            match self.http.request(build()?).await {
                Ok(answer) => return Ok(answer),
                // Nothing was sent on a failed connect, so trying again cannot duplicate a
                // folder; once only, since a host that refuses twice is down.
                Err(e) if e.is_connect() && !retried => {
                    retried = true;
                    tracing::debug!(endpoint, error = %crate::error_chain::chain(&e), "oz connect failed, retrying once");
                    tokio::time::sleep(crate::backoff::jitter(CONNECT_RETRY_DELAY)).await;
                }
                Err(e) => {
                    return Err(Error::Unreachable {
                        endpoint,
                        reason: crate::error_chain::chain(&e),
                        sent: !e.is_connect(),
                    })
                }
            }
        }
    }

    /// Reads an answer body, at most [`MAX_ANSWER_BYTES`].
    async fn collect(&self, endpoint: &'static str, body: Incoming) -> Result<Bytes, Error> {
        Ok(Limited::new(body, MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    Error::BadResponse {
                        endpoint,
                        reason: format!("answer larger than {MAX_ANSWER_BYTES} bytes"),
                    }
                } else {
                    Error::Unreachable {
                        endpoint,
                        reason: format!("answer cut short: {}", crate::error_chain::chain(&*e)),
                        sent: true,
                    }
                }
            })?
            .to_bytes())
    }

    /// Whether `uri` is an absolute URL on the origin of `oz.url` (scheme, host and port; no
    /// user info): the only URLs from an answer the proxy follows with its token.
    pub fn on_origin(&self, uri: &http::Uri) -> bool {
        let has_userinfo = uri.authority().is_some_and(|a| a.as_str().contains('@'));
        !has_userinfo && Origin::of(uri).as_ref() == Some(&self.origin)
    }

    /// A GET of `uri`, which must be [`on_origin`](Self::on_origin), answered within `budget`
    /// (default `oz.timeout`) with a 2xx head; the body is left to stream. A non-2xx answer is
    /// read (bounded) and mapped like any other call's. Recorded as one call of `endpoint`, timed
    /// to the head.
    pub async fn open(
        &self,
        endpoint: &'static str,
        uri: &http::Uri,
        token: Option<&HeaderValue>,
        budget: Option<Duration>,
    ) -> Result<Response<Incoming>, Error> {
        let started = Instant::now();
        let budget = budget.unwrap_or(self.timeout);
        let exchange = async {
            if !self.on_origin(uri) {
                // Never logged with the URL: it came from Oz's answer and may carry anything.
                return Err(Error::BadResponse {
                    endpoint,
                    reason: "the media URL is not on the oz.url origin; not followed".into(),
                });
            }
            let build = || {
                let mut req = Request::get(uri.clone()).header(USER_AGENT, USER_AGENT_VALUE);
                if let Some(t) = token {
                    req = req.header(TOKEN_HEADER, t.clone());
                }
                req.body(ChunkBody::new([]))
                    .map_err(|_| Error::Unreachable {
                        endpoint,
                        reason: "request not sent: invalid request head".into(),
                        sent: false,
                    })
            };
            let answer = self.head(endpoint, build).await?;
            let status = answer.status();
            if status.is_success() {
                return Ok(answer);
            }
            let body = self.collect(endpoint, answer.into_body()).await?;
            Err(classify(endpoint, status, &body))
        };
        let result = match tokio::time::timeout(budget, exchange).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout { endpoint }),
        };
        self.metrics.oz_call(endpoint, started.elapsed());
        if let Err(e) = &result {
            self.failed(endpoint, e);
        }
        result
    }

    fn request(
        &self,
        call: &Call,
        token: Option<&HeaderValue>,
    ) -> Result<Request<ChunkBody>, Error> {
        let not_sent = |what: &str| Error::Unreachable {
            endpoint: call.endpoint,
            reason: format!("request not sent: {what}"),
            sent: false,
        };
        let uri: http::Uri = format!("{}{}", self.base, call.path)
            .parse()
            .map_err(|_| not_sent("invalid URL"))?;
        let mut req = Request::builder()
            .method(call.method.clone())
            .uri(uri)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, USER_AGENT_VALUE);
        if let Some(t) = token {
            req = req.header(TOKEN_HEADER, t.clone());
        }
        if let Some(ct) = &call.content_type {
            let len: u64 = call.chunks.iter().map(|c| c.len() as u64).sum();
            req = req
                .header(CONTENT_TYPE, ct.clone())
                .header(CONTENT_LENGTH, len);
        }
        req.body(ChunkBody::new(call.chunks.iter().cloned()))
            .map_err(|_| not_sent("invalid request head"))
    }
}

/// Scheme, lower-case host and port (the scheme's default when absent) of a URL.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn of(uri: &http::Uri) -> Option<Origin> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        Some(Origin {
            host: uri.host()?.to_ascii_lowercase(),
            port: uri.port_u16().unwrap_or(default),
            scheme,
        })
    }
}

/// Maps a non-2xx answer to an error.
fn classify(endpoint: &'static str, status: StatusCode, body: &[u8]) -> Error {
    let parsed = parse_error_body(body);
    let login = matches!(endpoint, "auth" | "refresh");
    // On login and refresh, 401/403 mean the credentials or the session were refused (§1.2);
    // elsewhere 401 or an auth error_code (6 none, 7 invalid, 8 expired; §5) means the token.
    // 403 with code 9 (forbidden) stays an API error: a permission problem, not a bad token.
    let refused = if login {
        matches!(status.as_u16(), 401 | 403)
    } else {
        status == StatusCode::UNAUTHORIZED || matches!(parsed.error_code, Some(6..=8))
    };
    if refused {
        return Error::Auth {
            error_code: parsed.error_code,
        };
    }
    Error::Api {
        endpoint,
        status: status.as_u16(),
        error_code: parsed.error_code,
        // The login endpoint's message might name the account; it is not kept.
        message: if login { String::new() } else { parsed.message },
    }
}

/// The `code` label of `oz_errors_total`: a fixed set, whatever Oz sends. Oz's `error_code` is
/// kept when docs/oz-api.md §5 documents it (0–11, 13, 14), the HTTP status when it is a registered
/// 4xx or 5xx; anything else is `other`, so an Oz (or a proxy in front of it) that invents codes
/// adds one series, not one per code.
fn metric_code(e: &Error) -> &'static str {
    match e {
        Error::Api {
            error_code: Some(c),
            ..
        }
        | Error::Auth {
            error_code: Some(c),
        } => known_error_code(*c),
        Error::Api { status, .. } => known_status(*status),
        Error::Auth { error_code: None } => "auth",
        Error::Timeout { .. } => "timeout",
        Error::Unreachable { .. } => "unreachable",
        Error::BadResponse { .. } | Error::TooManyAnalyses { .. } => "bad_response",
        Error::ResultTimeout => "result_timeout",
    }
}

/// Oz error codes docs/oz-api.md §5 lists: 0–11, and 13, 14 for OzCapsula.
fn known_error_code(code: i64) -> &'static str {
    // Indexed by code; 12 is not documented and goes to `other` like every unknown one.
    const CODES: [&str; 15] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14",
    ];
    match code {
        0..=11 | 13 | 14 => CODES[code as usize],
        _ => "other",
    }
}

/// The 4xx and 5xx statuses in the IANA HTTP Status Code Registry.
fn known_status(status: u16) -> &'static str {
    const STATUSES: [&str; 37] = [
        "400", "401", "402", "403", "404", "405", "406", "407", "408", "409", "410", "411", "412",
        "413", "414", "415", "416", "417", "421", "422", "425", "426", "428", "429", "431", "451",
        "500", "501", "502", "503", "504", "505", "506", "507", "508", "510", "511",
    ];
    let text = status.to_string();
    STATUSES
        .iter()
        .find(|s| **s == text)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_maps_auth_and_api_errors() {
        let body = br#"{"error_code": 8, "error_message": "expired"}"#;
        assert!(matches!(
            classify("folders", StatusCode::UNAUTHORIZED, body),
            Error::Auth {
                error_code: Some(8)
            }
        ));
        assert!(matches!(
            classify("folders", StatusCode::BAD_REQUEST, br#"{"error_code": 7}"#),
            Error::Auth {
                error_code: Some(7)
            }
        ));
        match classify(
            "folders",
            StatusCode::FORBIDDEN,
            br#"{"error_code": 9, "error_message": "no"}"#,
        ) {
            Error::Api {
                status: 403,
                error_code: Some(9),
                message,
                ..
            } => assert_eq!(message, "no"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify("auth", StatusCode::FORBIDDEN, b""),
            Error::Auth { error_code: None }
        ));
        match classify(
            "auth",
            StatusCode::BAD_REQUEST,
            br#"{"error_code": 3, "error_message": "user bob@example.com"}"#,
        ) {
            Error::Api { message, .. } => assert!(message.is_empty(), "login messages are dropped"),
            other => panic!("{other:?}"),
        }
        match classify("poll", StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>") {
            Error::Api {
                status: 502,
                error_code: None,
                message,
                ..
            } => assert!(message.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn metric_codes() {
        let api = |status, error_code| Error::Api {
            endpoint: "folders",
            status,
            error_code,
            message: String::new(),
        };
        assert_eq!(metric_code(&api(400, Some(3))), "3");
        assert_eq!(metric_code(&api(400, Some(14))), "14");
        assert_eq!(metric_code(&api(400, Some(12))), "other", "not documented");
        assert_eq!(metric_code(&api(400, Some(-1))), "other");
        assert_eq!(metric_code(&api(400, Some(987_654_321))), "other");
        assert_eq!(metric_code(&api(502, None)), "502");
        assert_eq!(metric_code(&api(429, None)), "429");
        assert_eq!(metric_code(&api(599, None)), "other");
        assert_eq!(metric_code(&api(999, None)), "other");
        assert_eq!(
            metric_code(&Error::Auth {
                error_code: Some(70_000)
            }),
            "other"
        );
        assert_eq!(metric_code(&Error::Timeout { endpoint: "poll" }), "timeout");
        assert_eq!(
            metric_code(&Error::Unreachable {
                endpoint: "poll",
                reason: String::new(),
                sent: true,
            }),
            "unreachable"
        );
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let o = |s: &str| Origin::of(&s.parse().unwrap());
        assert_eq!(o("http://Oz.Example:80/a"), o("http://oz.example/b?c"));
        assert_eq!(o("https://oz.example/"), o("https://oz.example:443/x"));
        assert_ne!(o("https://oz.example/"), o("http://oz.example/"));
        assert_ne!(o("http://oz.example/"), o("http://oz.example:8080/"));
        assert_ne!(o("http://oz.example/"), o("http://oz.example.evil/"));
        assert_eq!(o("/relative"), None);
        assert_eq!(o("ftp://oz.example/"), None);
    }
}
