//! The demo's stand-in legacy backend: it serves the demo page (through the proxy, as a host app
//! serves its own page), answers every other request with a short JSON that echoes the verdict
//! it saw, remembers the last request, and has the page's introspection endpoints:
//!
//! - `GET /_demo/last`: the last capture that reached it: method, path, body size and its
//!   `X-Oz-*` headers (never the body);
//! - `GET /_demo/oz/uploads/{folder_id}`: what the simulated Oz received for a folder, fetched
//!   from the simulator's `/_sim/uploads/{folder_id}` so the page needs only its own origin.
//!
//! Both answer only when the client is on loopback (403 otherwise): the connection's peer and
//! every address in `X-Forwarded-For`, which the proxy appends the browser's address to.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::page;

/// The HTTP client the demo uses toward its own services.
pub(super) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// What the stand-in backend saw in one request.
#[derive(Clone)]
pub(super) struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body_len: usize,
    /// The body of a late verdict (a small JSON report); empty for anything else.
    pub late_body: Bytes,
}

/// A legacy backend stand-in; clones share what it saw.
#[derive(Clone)]
pub(super) struct StandIn {
    /// The last request other than the page and `/_demo/…`.
    last: Arc<Mutex<Option<Seen>>>,
    /// The last capture that carried a verdict (`X-Oz-Folder-Id`), for `/_demo/last`; a late
    /// verdict delivery is not a capture.
    last_capture: Arc<Mutex<Option<Seen>>>,
    /// Signalled on every request it remembers.
    answered: Arc<tokio::sync::Notify>,
    /// The simulated Oz, e.g. `http://127.0.0.1:40123`.
    sim_url: String,
    client: HttpClient,
    /// The path of late verdicts, whose bodies it keeps.
    late_path: &'static str,
}

impl StandIn {
    pub fn new(sim_url: String, late_path: &'static str) -> Self {
        StandIn {
            last: Arc::default(),
            last_capture: Arc::default(),
            answered: Arc::default(),
            sim_url,
            client: Client::builder(TokioExecutor::new()).build_http(),
            late_path,
        }
    }

    /// Its HTTP client, which the walkthrough shares.
    pub fn client(&self) -> HttpClient {
        self.client.clone()
    }

    pub fn last(&self) -> Option<Seen> {
        self.last
            .lock()
            .expect("lock poisoned only by a panic")
            .clone()
    }

    /// The next request on `path`, waited for at most `limit`.
    pub async fn wait_for(&self, path: &str, limit: Duration) -> Option<Seen> {
        tokio::time::timeout(limit, async {
            loop {
                let answered = self.answered.notified();
                if let Some(seen) = self.last().filter(|s| s.path == path) {
                    return seen;
                }
                answered.await;
            }
        })
        .await
        .ok()
    }

    pub async fn serve(self, listener: TcpListener, stop: CancellationToken) {
        loop {
            let (stream, peer) = tokio::select! {
                _ = stop.cancelled() => return,
                r = listener.accept() => match r { Ok(a) => a, Err(_) => continue },
            };
            let this = self.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.answer(req, peer).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }

    async fn answer(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        if req.method() == Method::GET {
            if let Some(asset) = page::asset(&path) {
                return page_rsp(asset);
            }
        }
        if let Some(rest) = path.strip_prefix("/_demo/") {
            if !from_loopback(peer, req.headers()) {
                return json_rsp(
                    StatusCode::FORBIDDEN,
                    &json!({"detail": "the demo's introspection answers on loopback only"}),
                );
            }
            return self.introspect(req.method(), rest).await;
        }
        self.remember_and_echo(req).await
    }

    /// `/_demo/{rest}`, for a client already known to be on loopback.
    async fn introspect(&self, method: &Method, rest: &str) -> Response<Full<Bytes>> {
        if method != Method::GET {
            return json_rsp(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"detail": "GET only"}),
            );
        }
        if rest == "last" {
            let seen = self
                .last_capture
                .lock()
                .expect("lock poisoned only by a panic")
                .clone();
            return match seen {
                Some(seen) => json_rsp(StatusCode::OK, &last_view(&seen)),
                None => json_rsp(
                    StatusCode::NOT_FOUND,
                    &json!({"detail": "no capture has reached the backend yet"}),
                ),
            };
        }
        match rest
            .strip_prefix("oz/uploads/")
            .filter(|id| is_folder_id(id))
        {
            Some(id) => self.sim_upload(id).await,
            None => json_rsp(
                StatusCode::NOT_FOUND,
                &json!({"detail": "try GET /_demo/last or /_demo/oz/uploads/{folder_id}"}),
            ),
        }
    }

    /// Relays the simulator's full view of one upload (its frames included; loopback only there
    /// too, and this backend reaches it on loopback).
    async fn sim_upload(&self, id: &str) -> Response<Full<Bytes>> {
        let url = format!("{}/_sim/uploads/{id}", self.sim_url);
        let got = async {
            let req = Request::get(&url).body(Full::new(Bytes::new()))?;
            let rsp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
                .await
                .map_err(|_| anyhow::anyhow!("the simulator did not answer in 10 s"))??;
            let status = rsp.status();
            let body = rsp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        }
        .await;
        match got {
            Ok((status, body)) => {
                let mut rsp = Response::new(Full::new(body));
                *rsp.status_mut() = status;
                rsp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                rsp
            }
            Err(e) => json_rsp(
                StatusCode::BAD_GATEWAY,
                &json!({"detail": format!("cannot reach the simulated Oz: {e}")}),
            ),
        }
    }

    /// What a legacy backend does: takes the request, answers a short JSON.
    async fn remember_and_echo(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let resolution = header("x-oz-resolution");
        let folder_id = header("x-oz-folder-id");
        let late_body = if parts.uri.path() == self.late_path {
            body.clone()
        } else {
            Bytes::new()
        };
        let seen = Seen {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            body_len: body.len(),
            late_body,
        };
        if folder_id.is_some() && seen.path != self.late_path {
            *self
                .last_capture
                .lock()
                .expect("lock poisoned only by a panic") = Some(seen.clone());
        }
        *self.last.lock().expect("lock poisoned only by a panic") = Some(seen);
        self.answered.notify_one();
        // The page reads the verdict of a forward route from here, as a host app would.
        let doc = json!({
            "backend": "legacy stand-in",
            "saw_resolution": resolution.as_deref().unwrap_or("none"),
            "saw_folder_id": folder_id,
        });
        json_rsp(StatusCode::OK, &doc)
    }
}

/// `/_demo/last`: the request line, body size and the `X-Oz-*` and request-id headers; never
/// the body, which holds frames and `additional_info`.
fn last_view(seen: &Seen) -> Value {
    let headers: serde_json::Map<String, Value> = seen
        .headers
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("x-oz-") || n.as_str() == "x-request-id")
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                Value::from(v.to_str().unwrap_or("(not text)")),
            )
        })
        .collect();
    json!({
        "method": seen.method,
        "path": seen.path,
        "body_size": seen.body_len,
        "headers": headers,
    })
}

/// True when the client is this machine: the connection's peer and every `X-Forwarded-For`
/// address (the proxy appends the browser's) are loopback. A list that cannot be read is not.
pub(super) fn from_loopback(peer: SocketAddr, headers: &HeaderMap) -> bool {
    if !peer.ip().to_canonical().is_loopback() {
        return false;
    }
    headers.get_all("x-forwarded-for").iter().all(|v| {
        v.to_str().is_ok_and(|list| {
            list.split(',').all(|a| {
                let a = a.trim();
                let a = a
                    .strip_prefix('[')
                    .and_then(|r| r.split(']').next())
                    .unwrap_or(a);
                a.parse::<IpAddr>()
                    .ok()
                    .or_else(|| a.parse::<SocketAddr>().ok().map(|s| s.ip()))
                    .is_some_and(|ip| ip.to_canonical().is_loopback())
            })
        })
    })
}

/// Oz folder ids are UUIDs; `last` asks for the newest. Anything else never reaches the URL.
fn is_folder_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn page_rsp(asset: page::Asset) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from_static(asset.body.as_bytes())));
    let h = rsp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // A rebuilt binary serves a new page: no browser should keep the old one.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(page::CONTENT_SECURITY_POLICY),
    );
    rsp
}

fn json_rsp(status: StatusCode, doc: &Value) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from(doc.to_string())));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    rsp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn loopback_means_the_peer_and_every_forwarded_address() {
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "10.0.0.5:5000".parse().unwrap();
        assert!(from_loopback(local, &HeaderMap::new()));
        assert!(from_loopback(local, &xff(&["127.0.0.1"])));
        assert!(from_loopback(local, &xff(&["::1", "[::1]:443, 127.0.0.9"])));
        assert!(from_loopback(local, &xff(&["::ffff:127.0.0.1"])));
        assert!(!from_loopback(remote, &HeaderMap::new()));
        // A forged loopback entry does not hide the address the proxy appended.
        assert!(!from_loopback(local, &xff(&["127.0.0.1, 192.168.1.7"])));
        assert!(!from_loopback(local, &xff(&["unknown"])));
    }

    #[test]
    fn folder_ids_are_plain() {
        assert!(is_folder_id("last"));
        assert!(is_folder_id("0b9c1f3e-5a7d-4c2e-9f1a-2b3c4d5e6f70"));
        assert!(!is_folder_id(""));
        assert!(!is_folder_id("../faults"));
        assert!(!is_folder_id("a?b"));
    }
}
