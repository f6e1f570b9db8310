//! The standing bypass suite: every request found so far that could make the backend receive a
//! request, header, trailer or body the proxy did not check as a capture, and the probes of the
//! same review that held.
//!
//! Each row sends exact bytes (HTTP/1.0 and 1.1) or exact frames (HTTP/2, written with the `h2`
//! crate, which sends what hyper's client would refuse to) through the real proxy to a raw backend
//! that records exactly what arrived, and states what the backend may receive: nothing (the
//! proxy refused), the request cleaned, or a capture checked by the Oz simulator. After every row
//! a sentinel request proves that nothing else reached the backend. Every head that reaches the
//! backend is held to [`assert_clean`]: one framing, one `Host`, no `x-oz-*` field in any
//! spelling but the proxy's own, no underscore names, no `Trailer` naming a removed field, no
//! forged trailer. The property test at the end throws arbitrary heads at the same proxy under the
//! same invariants.

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use oz_capture_proxy::capture::testdata::sample_capture_json;
use oz_capture_proxy::oz_sim::{OzSim, SimConfig};
use support::proxy::{proxy, Proxy};
use support::raw::{dechunk_with_trailers, RawAction, RawBackend, RawConn, RawRequest};
use support::sim::Sim;
use support::within;
use tokio::net::TcpListener;

const CAPTURE: &str = "/api/liveness/capture";
const TOKEN: &str = "bypass-suite-token";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const SENTINEL: &str = "/sentinel";

/// The verdict fields only the proxy may set.
const PROXY_OZ_FIELDS: &[&str] = &[
    "x-oz-folder-id",
    "x-oz-resolution",
    "x-oz-action",
    "x-oz-virtual-camera",
];

/// The real proxy with one forward capture route, the Oz simulator, and a raw backend.
struct Bench {
    proxy: Proxy,
    backend: RawBackend,
    oz: OzSim,
    sim: Sim,
}

impl Bench {
    /// Starts the three; `configure` adds proxy settings.
    async fn start(
        configure: impl FnOnce(support::proxy::ProxyBuilder) -> support::proxy::ProxyBuilder,
    ) -> Bench {
        Bench::with_backend(RawBackend::always(OK).await, configure).await
    }

    async fn with_backend(
        backend: RawBackend,
        configure: impl FnOnce(support::proxy::ProxyBuilder) -> support::proxy::ProxyBuilder,
    ) -> Bench {
        let sim = Sim::start(SimConfig {
            token: Some(TOKEN.to_owned()),
            polls_until_final: 0,
            ..SimConfig::default()
        })
        .await;
        let (oz, sim_addr) = (sim.sim.clone(), sim.addr);
        let builder = proxy(backend.addr).yaml_tail(&format!(
            concat!(
                "oz:\n  url: \"http://{sim}\"\n  auth:\n    token: \"{token}\"\n",
                "capture:\n  wait_for_result: \"5s\"\n  routes:\n",
                "    - path: \"{capture}\"\n      on_result: forward\n"
            ),
            sim = sim_addr,
            token = TOKEN,
            capture = CAPTURE
        ));
        let proxy = configure(builder).start().await;
        Bench {
            proxy,
            backend,
            oz,
            sim,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.proxy.traffic
    }

    /// Sends the sentinel and returns every request the backend received before it.
    async fn drain_until_sentinel(&mut self) -> Vec<RawRequest> {
        let mut conn = RawConn::connect(self.addr()).await;
        conn.send(format!("GET {SENTINEL} HTTP/1.1\r\nHost: s\r\n\r\n").as_bytes())
            .await;
        assert_eq!(conn.read_response(false).await.status, 200, "the sentinel");
        let mut before = Vec::new();
        loop {
            let seen = self.backend.next().await;
            if seen.request_line().starts_with(&format!("GET {SENTINEL} ")) {
                return before;
            }
            before.push(seen);
        }
    }

    async fn stop(self) {
        self.proxy.stop().await;
        drop(self.sim);
    }
}

/// What the backend may receive for one row.
enum Want {
    /// The proxy answers this status with this problem `code` (`""`: any, or hyper's own
    /// answer), and the backend receives nothing.
    Refused(u16, &'static str),
    /// The backend receives exactly one request; `check` looks at it (after [`assert_clean`]).
    Forwarded(fn(&RawRequest)),
    /// The backend receives nothing, or one request that passes [`assert_clean`]: framing
    /// oddities where hyper's own parser decides between refusing and one clean reading.
    Clean,
    /// A capture: Oz receives one upload and the backend receives the request with the proxy's
    /// verdict.
    Checked,
}

struct Row {
    name: &'static str,
    bytes: Vec<u8>,
    want: Want,
}

fn row(name: &'static str, bytes: impl Into<Vec<u8>>, want: Want) -> Row {
    Row {
        name,
        bytes: bytes.into(),
        want,
    }
}

/// A request with `Content-Length` framing.
fn with_body(method: &str, target: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: app.example\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A body-less request with exactly these header lines.
fn head(method: &str, target: &str, version: &str, headers: &[&str]) -> Vec<u8> {
    let mut out = format!("{method} {target} {version}\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn capture_body() -> Vec<u8> {
    sample_capture_json(2, false, "video_selfie_blank")
}

/// A capture body that the proxy refuses (`invalid_frame`): proof that a spelling was taken
/// for the capture route, without a round trip to Oz.
fn bad_capture_body() -> Vec<u8> {
    br#"{"action":"video_selfie_blank","frame_list":["data:image/jpeg;base64,@@@@"],"additional_info":"x"}"#.to_vec()
}

/// The invariants of every head the backend receives.
fn assert_clean(req: &RawRequest, checked: bool, name: &str) {
    let line = req.request_line();
    let method = line.split(' ').next().unwrap_or_default();
    assert!(
        !method.bytes().any(|b| b.is_ascii_lowercase()),
        "{name}: method {method:?} reached the backend"
    );
    let target = line.split(' ').nth(1).unwrap_or_default();
    assert!(
        !target.starts_with("//") && !target.starts_with("/\\"),
        "{name}: target {target:?} reached the backend"
    );
    let lines = req.header_lines();
    let names: Vec<String> = lines
        .iter()
        .map(|l| l.split(':').next().unwrap_or_default().to_ascii_lowercase())
        .collect();
    let count = |n: &str| names.iter().filter(|x| *x == n).count();
    assert_eq!(count("host"), 1, "{name}: Host fields in {lines:?}");
    let framings = count("content-length") + count("transfer-encoding");
    assert!(framings <= 1, "{name}: framing fields in {lines:?}");
    for (n, l) in names.iter().zip(&lines) {
        assert!(
            n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{name}: a field name beyond letters, digits and `-`: {l:?}"
        );
        assert!(
            !matches!(
                n.as_str(),
                "te" | "keep-alive" | "proxy-connection" | "http2-settings" | "trailers"
            ),
            "{name}: hop-by-hop field {l:?}"
        );
        if folded_oz(n) {
            assert!(
                checked && PROXY_OZ_FIELDS.contains(&n.as_str()) && count(n) == 1,
                "{name}: verdict field {l:?} the proxy did not set"
            );
        }
    }
    if checked {
        assert_eq!(
            req.header_values("x-oz-resolution"),
            ["SUCCESS"],
            "{name}: the verdict"
        );
    }
    for declared in req.header_values("trailer") {
        for t in declared.split(',').map(str::trim) {
            let t = t.to_ascii_lowercase();
            assert!(
                !folded_oz(&t) && !t.contains('_'),
                "{name}: Trailer names {t:?}"
            );
        }
    }
    if req
        .header_values("transfer-encoding")
        .iter()
        .any(|v| v.contains("chunked"))
    {
        let (_, trailers) = dechunk_with_trailers(&req.body);
        for t in trailers {
            let n = t.split(':').next().unwrap_or_default().to_ascii_lowercase();
            assert!(
                !folded_oz(&n) && !n.contains('_'),
                "{name}: trailer {t:?} reached the backend"
            );
        }
    }
}

/// Whether a field name reads as `x-oz-…` to a backend that takes any separator for `-` (CGI
/// gateways map every non-alphanumeric character to `_`).
fn folded_oz(name: &str) -> bool {
    name.to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .starts_with("x-oz-")
}

/// Runs the rows in order against one bench, and fails naming every row that did not hold.
async fn run_rows(bench: &mut Bench, rows: Vec<Row>) {
    let mut failed = Vec::new();
    for r in rows {
        let uploads = bench.oz.accepted_uploads().len();
        let mut conn = RawConn::connect(bench.addr()).await;
        conn.send(&r.bytes).await;
        let rsp = conn.read_response(false).await;
        let seen = bench.drain_until_sentinel().await;
        let uploads_after = bench.oz.accepted_uploads().len();
        let name = r.name;
        let held = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_row(name, &r.want, &rsp, &seen, uploads_after - uploads)
        }));
        if let Err(e) = held {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{name}: {why}"));
        }
    }
    assert!(
        failed.is_empty(),
        "rows that did not hold:\n{}",
        failed.join("\n")
    );
}

/// Whether one row's outcome is what it wants.
fn check_row(
    name: &str,
    want: &Want,
    rsp: &support::raw::RawResponse,
    seen: &[RawRequest],
    uploads: usize,
) {
    match want {
        Want::Refused(status, code) => {
            assert_eq!(
                rsp.status,
                *status,
                "{name}: {}",
                String::from_utf8_lossy(&rsp.body)
            );
            if !code.is_empty() {
                let doc: serde_json::Value =
                    serde_json::from_slice(&rsp.body).expect("a problem document");
                assert_eq!(doc["code"], *code, "{name}: {doc}");
            }
            assert!(seen.is_empty(), "{name}: the backend received {seen:?}");
        }
        Want::Forwarded(check) => {
            assert_eq!(
                rsp.status,
                200,
                "{name}: {}",
                String::from_utf8_lossy(&rsp.body)
            );
            assert_eq!(seen.len(), 1, "{name}: the backend received {seen:?}");
            assert_clean(&seen[0], false, name);
            check(&seen[0]);
        }
        Want::Clean => {
            assert!(seen.len() <= 1, "{name}: the backend received {seen:?}");
            for s in seen {
                assert_clean(s, false, name);
            }
        }
        Want::Checked => {
            assert_eq!(
                rsp.status,
                200,
                "{name}: {}",
                String::from_utf8_lossy(&rsp.body)
            );
            assert_eq!(seen.len(), 1, "{name}: the backend received {seen:?}");
            assert_clean(&seen[0], true, name);
            assert_eq!(uploads, 1, "{name}: Oz received the capture");
        }
    }
    if !matches!(want, Want::Checked) {
        assert_eq!(uploads, 0, "{name}: nothing went to Oz");
    }
}

// === HTTP/1.x rows ===

#[tokio::test]
async fn http1_requests_never_reach_the_backend_unchecked() {
    let mut bench = Bench::start(|p| p).await;
    let capture = capture_body();
    let bad = bad_capture_body();
    let mut rows = vec![
        // Finding 2: lower-case methods.
        row("post on the capture path", with_body("post", CAPTURE, &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        row("Post on the capture path", with_body("Post", CAPTURE, &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        row("get on a passthrough path", head("get", "/x", "HTTP/1.1", &["Host: a"]), Want::Refused(400, "bad_request")),
        // Finding 3: `//` targets.
        row("//a before the capture path", with_body("POST", "//a/api/liveness/capture", &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        row("//host on a passthrough path", head("GET", "//evil.example/x", "HTTP/1.1", &["Host: a"]), Want::Refused(400, "bad_request")),
        row("/\\host", head("GET", "/\\evil.example/x", "HTTP/1.1", &["Host: a"]), Want::Refused(400, "")),
        // Finding 4: forged verdict trailers.
        row(
            "x-oz trailers declared in Trailer",
            concat!(
                "POST /carrier HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n",
                "Trailer: X-Oz-Resolution, X_Oz_Folder_Id, X-Checksum, Content-Length\r\n\r\n",
                "2\r\nhi\r\n0\r\nX-Oz-Resolution: SUCCESS\r\nX_Oz_Folder_Id: forged\r\n",
                "Content-Length: 5\r\nX-Checksum: 1\r\n\r\n"
            ),
            Want::Forwarded(|r| {
                assert_eq!(r.header_values("trailer"), ["X-Checksum"]);
                let (body, trailers) = dechunk_with_trailers(&r.body);
                assert_eq!(body, b"hi");
                assert_eq!(trailers.len(), 1, "{trailers:?}");
                assert!(trailers[0].eq_ignore_ascii_case("x-checksum: 1"), "{trailers:?}");
            }),
        ),
        // Finding 5 and every spelling of a verdict field.
        row(
            "verdict fields in every spelling",
            head("GET", "/x", "HTTP/1.1", &[
                "Host: a",
                "X-Oz-Resolution: SUCCESS",
                "x-oz-folder-id: forged",
                "X-OZ-ACTION: x",
                "X_Oz_Resolution: SUCCESS",
                "x_oz_virtual_camera: false",
                "X-Oz_Resolution: SUCCESS",
                "X_OZ-Folder-Id: forged",
                "X-Oz-Verdict-Token: forged",
                "X-Request-Id: r1",
            ]),
            Want::Forwarded(|r| assert_eq!(r.header_values("x-request-id"), ["r1"])),
        ),
        row(
            "verdict fields with other separators (CGI maps them all to `_`)",
            head("GET", "/x", "HTTP/1.1", &[
                "Host: a",
                "X-Oz.Resolution: SUCCESS",
                "X.Oz.Action: x",
                "X-Oz~Folder-Id: forged",
                "X-Oz!Virtual-Camera: false",
                "X-Keep: 1",
            ]),
            Want::Forwarded(|r| assert_eq!(r.header_values("x-keep"), ["1"])),
        ),
        row(
            "routing overrides are dropped",
            with_body("POST", "/other", &[
                "X-Original-URL: /api/liveness/capture",
                "X-Rewrite-URL: /api/liveness/capture",
                "X-HTTP-Method-Override: PUT",
                "X-Method-Override: PUT",
            ], b"{}"),
            Want::Forwarded(|r| {
                for h in ["x-original-url", "x-rewrite-url", "x-http-method-override", "x-method-override"] {
                    assert!(r.header_values(h).is_empty(), "{h}");
                }
            }),
        ),
        row("a Host that is a list", head("GET", "/x", "HTTP/1.1", &["Host: good.example,evil.example"]), Want::Refused(400, "")),
        row("a Host with a non-numeric port", head("GET", "/x", "HTTP/1.1", &["Host: a:b"]), Want::Refused(400, "")),
        row(
            "an IPv6 Host with a port",
            head("GET", "/x", "HTTP/1.1", &["Host: [::1]:8080"]),
            Want::Forwarded(|r| assert_eq!(r.header_values("host"), ["[::1]:8080"])),
        ),
        row(
            "underscore names are dropped",
            head("GET", "/x", "HTTP/1.1", &["Host: a", "Foo_Bar: 1", "X-Keep: 2"]),
            Want::Forwarded(|r| assert_eq!(r.header_values("x-keep"), ["2"])),
        ),
        row(
            "a verdict field named in Connection",
            head("GET", "/x", "HTTP/1.1", &["Host: a", "Connection: x-forwarded-for, x-request-id", "X-Request-Id: r2"]),
            Want::Forwarded(|r| {
                assert_eq!(r.header_values("x-forwarded-for"), ["127.0.0.1"]);
                assert_eq!(r.header_values("x-request-id").len(), 1);
            }),
        ),
        // Finding 7: Host for every version.
        row("HTTP/1.0 with two Hosts", head("GET", "/x", "HTTP/1.0", &["Host: a", "Host: b"]), Want::Refused(400, "")),
        row("HTTP/1.0 with userinfo in Host", head("GET", "/x", "HTTP/1.0", &["Host: user@evil"]), Want::Refused(400, "")),
        row("HTTP/1.0 with a space in Host", head("GET", "/x", "HTTP/1.0", &["Host: a b"]), Want::Refused(400, "")),
        row(
            "HTTP/1.0 without Host gets the backend's",
            head("GET", "/x", "HTTP/1.0", &[]),
            Want::Forwarded(|r| assert_eq!(r.header_values("host").len(), 1)),
        ),
        row("HTTP/1.1 with two Hosts", head("GET", "/x", "HTTP/1.1", &["Host: a", "Host: b"]), Want::Refused(400, "")),
        row("HTTP/1.1 without Host", head("GET", "/x", "HTTP/1.1", &[]), Want::Refused(400, "")),
        row(
            "absolute form: the target's authority is Host",
            head("GET", "http://app.example/x", "HTTP/1.1", &["Host: other.example"]),
            Want::Forwarded(|r| {
                assert_eq!(r.request_line(), "GET /x HTTP/1.1");
                assert_eq!(r.header_values("host"), ["app.example"]);
            }),
        ),
        // Finding 14: authority form outside CONNECT, client request ids.
        row("authority form on GET", head("GET", "evil.example:443", "HTTP/1.1", &["Host: evil.example:443"]), Want::Refused(400, "")),
        row("CONNECT", head("CONNECT", "evil.example:443", "HTTP/1.1", &["Host: evil.example:443"]), Want::Refused(405, "")),
        row(
            "an over-long request id is replaced",
            head("GET", "/x", "HTTP/1.1", &["Host: a", &format!("X-Request-Id: {}", "r".repeat(300))]),
            Want::Forwarded(|r| {
                let id = r.header_values("x-request-id");
                assert_eq!(id.len(), 1);
                assert_eq!(id[0].len(), 36, "a fresh UUID: {id:?}");
            }),
        ),
        row(
            "a request id that is not UTF-8 is replaced",
            [&b"GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: \xff\xfe\x80\r\n\r\n"[..]].concat(),
            Want::Forwarded(|r| assert_eq!(r.header_values("x-request-id")[0].len(), 36)),
        ),
        row(
            "a request id with quotes is replaced",
            head("GET", "/x", "HTTP/1.1", &["Host: a", "X-Request-Id: a\"b", "X-Request-Id: c"]),
            Want::Forwarded(|r| assert_eq!(r.header_values("x-request-id")[0].len(), 36)),
        ),
        // Framing (held probes; hyper's parser decides, the backend sees one reading at most).
        row(
            "Content-Length and Transfer-Encoding",
            "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            Want::Clean,
        ),
        row(
            "two equal Content-Lengths",
            "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
            Want::Clean,
        ),
        row(
            "two different Content-Lengths",
            "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi!",
            Want::Refused(400, ""),
        ),
        row(
            "chunked twice",
            "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            Want::Clean,
        ),
        row(
            "a coding before chunked",
            "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            Want::Clean,
        ),
        row(
            "a Content-Length with a sign",
            "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: +2\r\n\r\nhi",
            Want::Refused(400, ""),
        ),
        // Finding 1: a body on an upgrade request.
        row(
            "websocket upgrade with a Content-Length body",
            with_body("GET", "/ws", &["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="], b"POST /api/liveness/capture HTTP/1.1\r\n"),
            Want::Refused(400, "bad_request"),
        ),
        row(
            "websocket upgrade with a chunked body",
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
            Want::Refused(400, "bad_request"),
        ),
        // Finding 10: only allowed protocols are offered; HTTP2-Settings never passes.
        row(
            "h2c upgrade is an ordinary request",
            head("GET", "/x", "HTTP/1.1", &["Host: a", "Connection: Upgrade", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA"]),
            Want::Forwarded(|r| {
                assert!(r.header_values("upgrade").is_empty(), "{:?}", r.header_lines());
                assert!(r.header_values("http2-settings").is_empty());
            }),
        ),
        row(
            "HTTP2-Settings not named in Connection",
            head("GET", "/x", "HTTP/1.1", &["Host: a", "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA"]),
            Want::Forwarded(|r| assert!(r.header_values("http2-settings").is_empty())),
        ),
        row(
            "an unknown upgrade with a body is an ordinary request",
            with_body("POST", "/x", &["Connection: Upgrade", "Upgrade: foo/1"], b"hello"),
            Want::Forwarded(|r| {
                assert!(r.header_values("upgrade").is_empty());
                assert_eq!(r.body, b"hello");
            }),
        ),
        row(
            "websocket offered beside h2c: only websocket is offered on",
            head("GET", "/ws", "HTTP/1.1", &["Host: a", "Connection: Upgrade", "Upgrade: h2c, websocket"]),
            Want::Forwarded(|r| assert_eq!(r.header_values("upgrade"), ["websocket"])),
        ),
        // A capture never upgrades.
        row(
            "an upgrade on the capture path is a capture",
            with_body("POST", CAPTURE, &["Content-Type: application/json", "Connection: Upgrade", "Upgrade: websocket"], &capture),
            Want::Checked,
        ),
        // Finding 9: methods and spellings.
        row("PUT with a capture body", with_body("PUT", CAPTURE, &["Content-Type: application/json"], &capture), Want::Refused(405, "method_not_allowed")),
        row("PATCH with a capture body", with_body("PATCH", CAPTURE, &["Content-Type: application/json"], &capture), Want::Refused(405, "method_not_allowed")),
        row("DELETE with a body", with_body("DELETE", CAPTURE, &[], b"x"), Want::Refused(405, "method_not_allowed")),
        row("GET on the capture path", head("GET", CAPTURE, "HTTP/1.1", &["Host: a"]), Want::Forwarded(|_| {})),
        row("a .json suffix", with_body("POST", "/api/liveness/capture.json", &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        row("a trailing dot", with_body("POST", "/api/liveness/capture.", &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        row("an encoded trailing space", with_body("POST", "/api/liveness/capture%20", &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        row("an encoded trailing NUL", with_body("POST", "/api/liveness/capture%00", &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        row("an IIS %u escape", with_body("POST", "/api/liveness/captur%u0065", &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        row("dotless i (U+0131)", with_body("POST", "/api/l%C4%B1veness/capture", &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        row("long s (U+017F)", with_body("POST", "/api/livene%C5%BFs/capture", &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        row("full-width c (U+FF43)", with_body("POST", "/api/liveness/%EF%BD%83apture", &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        row("a double-encoded letter", with_body("POST", "/api/liveness/%2563apture", &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        row("two suffixes", with_body("POST", "/api/liveness/capture.a.b", &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        row("NUL then a suffix", with_body("POST", "/api/liveness/capture%00.json", &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        row("a zero-width space", with_body("POST", "/api/liveness/cap%E2%80%8Bture", &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        row("mathematical bold c (NFKC)", with_body("POST", "/api/liveness/%F0%9D%90%9Capture", &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        row("into the capture path and out again", with_body("POST", "/api/liveness/capture/%2e%2e", &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        row("an encoded slash and dot-dot", with_body("POST", "/api/liveness/capture%2F..", &["Content-Type: application/json"], &capture), Want::Refused(400, "bad_request")),
        // The query string and the head of a capture.
        row("a best frame in the query", with_body("POST", "/api/liveness/capture?best_frame=data:image/jpeg;base64,AAAA", &["Content-Type: application/json"], &capture), Want::Refused(400, "invalid_field")),
        row("a summary member in the query", with_body("POST", "/api/liveness/capture?oz%5Bresolution%5D=SUCCESS", &["Content-Type: application/json"], &capture), Want::Refused(400, "invalid_field")),
        row("a camelCase frame list in the query", with_body("POST", "/api/liveness/capture?frameList[]=x", &["Content-Type: application/json"], &capture), Want::Refused(400, "invalid_field")),
        row("an unrelated query on a capture", with_body("POST", "/api/liveness/capture?session=abc", &["Content-Type: application/json"], &capture), Want::Checked),
        row("two Content-Types on a capture", with_body("POST", CAPTURE, &["Content-Type: application/json", "Content-Type: application/x-www-form-urlencoded"], &capture), Want::Refused(400, "invalid_field")),
        row("a content coding on a capture", with_body("POST", CAPTURE, &["Content-Type: application/json", "Content-Encoding: gzip"], &capture), Want::Refused(400, "invalid_field")),
    ];
    // Held: spellings that normalize to the capture path are the capture route itself.
    for spelling in [
        "/api/liveness/capture/",
        "/API/LIVENESS/CAPTURE",
        "/api/liveness/%63apture",
        "/api/./liveness/capture",
        "/api/x/../liveness/capture",
        "/api/liveness/capture;jsessionid=1",
        "/api%2Fliveness%2Fcapture",
        "/api/liveness/capture?next=/home",
    ] {
        rows.push(Row {
            name: "a spelling of the capture path is the capture route",
            bytes: with_body("POST", spelling, &["Content-Type: application/json"], &bad),
            want: Want::Refused(400, "invalid_frame"),
        });
    }
    // Finding 6: what Oz checked is what the backend reads; keys that fold onto a known field.
    for (name, key) in [
        ("FRAME_LIST beside frame_list", "\"FRAME_LIST\":[],"),
        (
            "Additional_Info beside additional_info",
            "\"Additional_Info\":\"forged\",",
        ),
        (
            "a long-s spelling of frame_list",
            "\"frame_li\u{017F}t\":[],",
        ),
        (
            "a camelCase alias of best_frame",
            "\"bestFrame\":\"data:image/jpeg;base64,AAAA\",",
        ),
        (
            "a kebab-case alias of best_frame",
            "\"best-frame\":\"data:image/jpeg;base64,AAAA\",",
        ),
    ] {
        let mut body = b"{".to_vec();
        body.extend_from_slice(key.as_bytes());
        body.extend_from_slice(&capture[1..]);
        rows.push(Row {
            name,
            bytes: with_body("POST", CAPTURE, &["Content-Type: application/json"], &body),
            want: Want::Refused(400, "invalid_field"),
        });
    }
    rows.push(row(
        "the capture path as configured",
        with_body(
            "POST",
            CAPTURE,
            &[
                "Content-Type: application/json",
                "X-Oz-Resolution: DECLINED",
                "X_Oz_Resolution: SUCCESS",
            ],
            &capture,
        ),
        Want::Checked,
    ));
    run_rows(&mut bench, rows).await;
    bench.stop().await;
}

#[tokio::test]
async fn head_limits_hold_on_http1() {
    let mut bench = Bench::start(|p| p.set("server.max_headers", 20)).await;
    let many: Vec<String> = (0..30).map(|i| format!("X-H{i}: v")).collect();
    let mut lines: Vec<&str> = vec!["Host: a"];
    lines.extend(many.iter().map(String::as_str));
    run_rows(
        &mut bench,
        vec![row(
            "30 fields over a limit of 20",
            head("GET", "/x", "HTTP/1.1", &lines),
            Want::Refused(431, ""),
        )],
    )
    .await;
    bench.stop().await;
}

#[tokio::test]
async fn underscore_names_pass_when_configured_but_verdict_spellings_never_do() {
    let mut bench = Bench::start(|p| p.set("server.underscores_in_headers", true)).await;
    let mut conn = RawConn::connect(bench.addr()).await;
    conn.send(&head(
        "GET",
        "/x",
        "HTTP/1.1",
        &["Host: a", "Foo_Bar: 1", "X_Oz_Resolution: SUCCESS"],
    ))
    .await;
    assert_eq!(conn.read_response(false).await.status, 200);
    let seen = bench.drain_until_sentinel().await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header_values("foo_bar"), ["1"]);
    assert!(seen[0].header_values("x_oz_resolution").is_empty());
    bench.stop().await;
}

// === Finding 1 end to end: the smuggling that forged a verdict ===

/// The attack as reported: an upgrade whose body the proxy dropped but whose `Content-Length`
/// it kept, answered without 101, left the backend waiting for that many bytes; the next request
/// on the pooled connection was read as that body plus a request of the attacker's choosing.
/// The raw backend reads bodies by `Content-Length`, as JDK HttpServer, Tomcat and Jetty do.
#[tokio::test]
async fn upgrade_with_a_body_cannot_smuggle_a_request_onto_a_pooled_connection() {
    let mut bench = Bench::start(|p| p).await;
    let smuggled = "POST /api/liveness/capture HTTP/1.1\r\nHost: a\r\nX-Oz-Resolution: SUCCESS\r\nX-Oz-Folder-Id: forged-by-attacker\r\nContent-Length: 0\r\n\r\n";
    let carrier_head = "POST /carrier HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n";
    // Before the fix the backend waited for these 150 bytes after the proxy's empty upgrade
    // request, and took them from the head of the carrier below.
    let upgrade = with_body(
        "GET",
        "/chat",
        &["Connection: Upgrade", "Upgrade: websocket"],
        &[b'x'; 150],
    );
    let mut conn = RawConn::connect(bench.addr()).await;
    conn.send(&upgrade).await;
    let rsp = conn.read_response(false).await;
    assert_eq!(rsp.status, 400, "an upgrade with a body is refused");

    let mut carrier = RawConn::connect(bench.addr()).await;
    let body = format!("{}{smuggled}", "p".repeat(40));
    carrier
        .send(format!("{carrier_head}Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes())
        .await;
    assert_eq!(carrier.read_response(false).await.status, 200);
    let seen = bench.drain_until_sentinel().await;
    assert_eq!(seen.len(), 1, "only the carrier: {seen:?}");
    assert_eq!(seen[0].request_line(), "POST /carrier HTTP/1.1");
    assert_eq!(seen[0].body, body.as_bytes(), "the carrier's body, whole");
    bench.stop().await;
}

/// Sends two plain GETs, `probe`, then one more GET, each on a client connection of its own,
/// and checks on which backend connection each arrived: the plain exchanges leave their
/// connection pooled, `probe` goes on it, and the request after `probe` must not.
async fn assert_connection_retired_after(bench: &mut Bench, probe: Vec<u8>, what: &str) {
    let mut conns = Vec::new();
    for (i, bytes) in [
        head("GET", "/a", "HTTP/1.1", &["Host: a"]),
        head("GET", "/b", "HTTP/1.1", &["Host: a"]),
        probe,
        head("GET", "/c", "HTTP/1.1", &["Host: a"]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut conn = RawConn::connect(bench.addr()).await;
        conn.send(&bytes).await;
        assert_eq!(conn.read_response(false).await.status, 200, "request {i}");
        conns.push(bench.backend.next().await.conn);
    }
    assert_eq!(
        conns[0], conns[1],
        "a complete exchange leaves its connection pooled"
    );
    assert_eq!(conns[1], conns[2], "{what} went on the pooled connection");
    assert_ne!(conns[2], conns[3], "the connection of {what} was reused");
}

/// An upgrade the backend did not take leaves its connection closed, not pooled: what follows on
/// it may be read by the backend as part of the upgrade.
#[tokio::test]
async fn a_connection_that_saw_an_upgrade_offer_is_never_pooled() {
    let mut bench = Bench::start(|p| p).await;
    let offer = head(
        "GET",
        "/chat",
        "HTTP/1.1",
        &["Host: a", "Connection: Upgrade", "Upgrade: websocket"],
    );
    assert_connection_retired_after(&mut bench, offer, "the refused upgrade").await;
    bench.stop().await;
}

/// A body on a method whose body a backend may ignore (GET, HEAD, OPTIONS, TRACE, DELETE) is
/// forwarded framed, but its connection is not reused: a backend route that ignores the body
/// would read it as the next request.
#[tokio::test]
async fn a_connection_that_carried_a_get_body_is_never_pooled() {
    let mut bench = Bench::start(|p| p).await;
    let get_with_body = with_body(
        "GET",
        "/search",
        &[],
        b"GET /api/liveness/capture HTTP/1.1\r\n",
    );
    assert_connection_retired_after(&mut bench, get_with_body, "the GET with a body").await;
    bench.stop().await;
}

/// A 101 must switch to a protocol the client offered, and only to an offered upgrade.
#[tokio::test]
async fn a_101_the_client_did_not_ask_for_is_a_502() {
    let backend = RawBackend::start(|_, req| {
        let upgrade = req.header_values("upgrade");
        let to = if upgrade.is_empty() {
            "websocket"
        } else {
            "h2c"
        };
        RawAction::Reply(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {to}\r\n\r\n"
            )
            .into_bytes(),
        )
    })
    .await;
    let bench = Bench::with_backend(backend, |p| p).await;
    for (name, bytes) in [
        (
            "no upgrade offered",
            head("GET", "/x", "HTTP/1.1", &["Host: a"]),
        ),
        (
            "websocket offered, h2c chosen",
            head(
                "GET",
                "/ws",
                "HTTP/1.1",
                &["Host: a", "Connection: Upgrade", "Upgrade: websocket"],
            ),
        ),
    ] {
        let mut conn = RawConn::connect(bench.addr()).await;
        conn.send(&bytes).await;
        let rsp = conn.read_response(false).await;
        assert_eq!(rsp.status, 502, "{name}: {}", rsp.head);
    }
    bench.stop().await;
}

/// A connection goes back to the pool only when both messages were read completely: a backend
/// that answered before the request body ended, whose client then cut the upload, keeps a
/// connection on which the rest of that body is still expected, and it is closed, not reused.
#[tokio::test]
async fn a_connection_whose_request_body_was_cut_is_not_pooled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = listener.local_addr().unwrap();
    let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let (heads_tx, mut heads) = tokio::sync::mpsc::unbounded_channel::<(usize, String)>();
    tokio::spawn(async move {
        for n in 0.. {
            let (mut stream, _) = listener.accept().await.unwrap();
            let (closed_tx, heads_tx) = (closed_tx.clone(), heads_tx.clone());
            tokio::spawn(async move {
                // Answers every head at once, without waiting for its body; reports EOF.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).into_owned();
                        buf.drain(..i + 4);
                        if !head.starts_with("GET ") && !head.starts_with("POST ") {
                            continue;
                        }
                        let _ = heads_tx.send((n, head));
                        let _ = stream.write_all(OK).await;
                    }
                }
                let _ = closed_tx.send(n);
            });
        }
    });
    let proxy = proxy(backend_addr).start().await;

    let mut upload = RawConn::connect(proxy.traffic).await;
    upload
        .send(b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
        .await;
    assert_eq!(
        upload.read_response(false).await.status,
        200,
        "the early answer"
    );
    let (upload_conn, _) = within("the upload head", heads.recv()).await.unwrap();
    drop(upload);
    let closed_conn = within(
        "the backend connection of the cut upload to close",
        closed.recv(),
    )
    .await
    .unwrap();
    assert_eq!(closed_conn, upload_conn);

    let mut next = RawConn::connect(proxy.traffic).await;
    next.send(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(next.read_response(false).await.status, 200);
    let (after_conn, head) = within("the next request", heads.recv()).await.unwrap();
    assert!(head.starts_with("GET /after "), "{head}");
    assert_ne!(after_conn, upload_conn);
    proxy.stop().await;
}

// === HTTP/2 rows ===

/// One h2 exchange: the response status, or `None` when the stream or connection was reset.
async fn h2_exchange(
    addr: SocketAddr,
    req: http::Request<()>,
    body: Option<&'static [u8]>,
    trailers: Option<http::HeaderMap>,
) -> Option<u16> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::Builder::new()
        .max_header_list_size(1 << 20)
        .handshake::<_, Bytes>(tcp)
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.ok()?;
    let end = body.is_none() && trailers.is_none();
    let (rsp, mut stream) = client.send_request(req, end).ok()?;
    if let Some(b) = body {
        stream
            .send_data(Bytes::from_static(b), trailers.is_none())
            .ok()?;
    }
    if let Some(t) = trailers {
        stream.send_trailers(t).ok()?;
    }
    let rsp = within("an h2 response", rsp).await.ok()?;
    Some(rsp.status().as_u16())
}

fn h2_request(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut req = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(()).unwrap()
}

#[tokio::test]
async fn http2_requests_never_reach_the_backend_unchecked() {
    let mut bench = Bench::start(|p| p.set("server.max_headers", 100)).await;
    let base = format!("http://{}", bench.addr());
    let url = |path: &str| format!("{base}{path}");

    // Finding 2 over h2.
    let status = h2_exchange(
        bench.addr(),
        h2_request(
            "post",
            &url(CAPTURE),
            &[("content-type", "application/json")],
        ),
        Some(b"{}"),
        None,
    )
    .await;
    assert_eq!(status, Some(400), "post over h2");
    assert!(bench.drain_until_sentinel().await.is_empty());

    // Finding 3 over h2.
    let status = h2_exchange(
        bench.addr(),
        h2_request("POST", &url("//a/api/liveness/capture"), &[]),
        Some(b"{}"),
        None,
    )
    .await;
    assert_eq!(status, Some(400), "// over h2");
    assert!(bench.drain_until_sentinel().await.is_empty());

    // Header forgery over h2.
    let status = h2_exchange(
        bench.addr(),
        h2_request(
            "GET",
            &url("/x"),
            &[
                ("x-oz-resolution", "SUCCESS"),
                ("x_oz_resolution", "SUCCESS"),
                ("x-oz-folder-id", "f"),
            ],
        ),
        None,
        None,
    )
    .await;
    assert_eq!(status, Some(200));
    let seen = bench.drain_until_sentinel().await;
    assert_eq!(seen.len(), 1);
    assert_clean(&seen[0], false, "h2 verdict fields");

    // Finding 4 over h2: trailing HEADERS with a verdict, declared or not.
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-oz-resolution", "SUCCESS".parse().unwrap());
    trailers.insert("x_oz_folder_id", "forged".parse().unwrap());
    trailers.insert("x-checksum", "1".parse().unwrap());
    let status = h2_exchange(
        bench.addr(),
        h2_request(
            "POST",
            &url("/carrier"),
            &[("trailer", "x-oz-resolution, x_oz_folder_id, x-checksum")],
        ),
        Some(b"hi"),
        Some(trailers),
    )
    .await;
    assert_eq!(status, Some(200));
    let seen = bench.drain_until_sentinel().await;
    assert_eq!(seen.len(), 1);
    assert_clean(&seen[0], false, "h2 trailers");
    assert_eq!(seen[0].header_values("trailer"), ["x-checksum"]);
    let (body, forwarded) = dechunk_with_trailers(&seen[0].body);
    assert_eq!(body, b"hi");
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");

    // Finding 7 over h2: without :authority, exactly one valid host.
    for (name, hosts) in [
        ("two hosts", vec!["user@evil", "a b"]),
        ("userinfo", vec!["user@evil"]),
        ("no host at all", vec![]),
    ] {
        let mut req = http::Request::builder().method("GET").uri("/x");
        for h in hosts {
            req = req.header("host", h);
        }
        let status = h2_exchange(bench.addr(), req.body(()).unwrap(), None, None).await;
        assert_eq!(status, Some(400), "{name}");
        assert!(bench.drain_until_sentinel().await.is_empty(), "{name}");
    }
    let status = h2_exchange(
        bench.addr(),
        http::Request::builder()
            .method("GET")
            .uri("/x")
            .header("host", "app.example")
            .body(())
            .unwrap(),
        None,
        None,
    )
    .await;
    assert_eq!(status, Some(200), "one host, no :authority");
    let seen = bench.drain_until_sentinel().await;
    assert_eq!(seen.len(), 1);
    assert_clean(&seen[0], false, "one host, no :authority");
    assert_eq!(seen[0].header_values("host"), ["app.example"]);

    // Finding 8: head limits and repeated content-length on h2.
    let many: Vec<(String, String)> = (0..1500)
        .map(|i| (format!("x-h{i}"), "v".to_owned()))
        .collect();
    let mut req = http::Request::builder().method("GET").uri(url("/x"));
    for (k, v) in &many {
        req = req.header(k.as_str(), v.as_str());
    }
    let status = h2_exchange(bench.addr(), req.body(()).unwrap(), None, None).await;
    assert_eq!(status, Some(431), "1,500 fields over h2");
    assert!(
        bench.drain_until_sentinel().await.is_empty(),
        "1,500 fields reached the backend"
    );

    let status = h2_exchange(
        bench.addr(),
        h2_request(
            "POST",
            &url("/x"),
            &[("content-length", "2"), ("content-length", "2")],
        ),
        Some(b"hi"),
        None,
    )
    .await;
    assert_eq!(status, Some(200), "repeated equal content-length over h2");
    let seen = bench.drain_until_sentinel().await;
    assert_eq!(seen.len(), 1);
    assert_clean(&seen[0], false, "h2 repeated content-length");
    assert_eq!(seen[0].header_values("content-length"), ["2"]);
    let status = h2_exchange(
        bench.addr(),
        h2_request(
            "POST",
            &url("/x"),
            &[("content-length", "2"), ("content-length", "3")],
        ),
        Some(b"hi"),
        None,
    )
    .await;
    assert_ne!(status, Some(200), "differing content-length over h2");
    assert!(bench.drain_until_sentinel().await.is_empty());

    // Capture methods over h2.
    let status = h2_exchange(
        bench.addr(),
        h2_request(
            "PUT",
            &url(CAPTURE),
            &[("content-type", "application/json")],
        ),
        Some(b"{}"),
        None,
    )
    .await;
    assert_eq!(status, Some(405));
    assert!(bench.drain_until_sentinel().await.is_empty());
    bench.stop().await;
}

// === Property: any head in, a clean head out ===

/// What a property case appends after the head.
#[derive(Clone, Copy, Debug)]
enum Tail {
    None,
    /// Five bytes, whatever the head's framing says.
    Bytes,
    /// A chunked body with a forged verdict trailer.
    ChunkedWithTrailers,
    /// A valid capture, with its own `Content-Type` and `Content-Length` after the fields.
    Capture,
}

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "post", "Get",
];
const TARGETS: &[&str] = &[
    "/x",
    CAPTURE,
    "/api/liveness/capture.json",
    "/API/liveness/capture/",
    "//api/liveness/capture",
    "/api/liveness/captur%u0065",
    "http://app.example/api/liveness/capture",
    "app.example:443",
    "*",
    "/a%2F..%2Fb",
    "/ws",
];
const NAMES: &[&str] = &[
    "Host",
    "X-Oz-Resolution",
    "x_oz_resolution",
    "X-Oz_Folder-Id",
    "X-OZ-VIRTUAL-CAMERA",
    "Foo_Bar",
    "Connection",
    "Upgrade",
    "HTTP2-Settings",
    "Trailer",
    "Content-Length",
    "Transfer-Encoding",
    "TE",
    "Keep-Alive",
    "Proxy-Connection",
    "X-Request-Id",
    "Content-Type",
    "X-Forwarded-For",
];
const VALUES: &[&str] = &[
    "a",
    "SUCCESS",
    "close",
    "Upgrade",
    "websocket",
    "h2c",
    "x-oz-resolution",
    "X_Oz_Resolution, x-checksum",
    "chunked",
    "gzip, chunked",
    "0",
    "5",
    "5, 5",
    "trailers",
    "user@evil",
    "keep-alive, x-oz-folder-id",
    "application/json",
];

/// Sends one arbitrary request and waits for the head of the proxy's answer, or for the
/// connection to close. A request that waits for body bytes that never come is cut by the bench's
/// short `server.body_idle_timeout`.
async fn send_case(addr: SocketAddr, bytes: Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(&bytes).await;
    let mut got = Vec::new();
    within("the proxy to answer a case", async {
        let mut chunk = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
}

/// [`assert_clean`], with "checked" read off the request: a verdict whose folder Oz made.
fn assert_clean_against(req: &RawRequest, folders: &[String], name: &str) {
    let folder = req.header_values("x-oz-folder-id");
    let checked = folder.len() == 1 && folders.iter().any(|f| f == folder[0]);
    assert_clean(req, checked, name);
}

#[test]
fn any_request_head_reaches_the_backend_clean_or_not_at_all() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let bench = std::cell::RefCell::new(
        rt.block_on(Bench::start(|p| p.set("server.body_idle_timeout", "300ms"))),
    );
    let strategy = (
        prop::sample::select(METHODS),
        prop::sample::select(TARGETS),
        prop::sample::select(&["HTTP/1.1", "HTTP/1.0"][..]),
        prop::bool::weighted(0.85),
        prop::collection::vec(
            (prop::sample::select(NAMES), prop::sample::select(VALUES)),
            0..10,
        ),
        prop::sample::select(&[Tail::None, Tail::Bytes, Tail::ChunkedWithTrailers][..]),
        // A third of the cases are a capture under arbitrary fields.
        prop::bool::weighted(0.3),
    );
    let capture = capture_body();
    let forwarded = std::cell::Cell::new(0usize);
    let checked = std::cell::Cell::new(0usize);
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |(method, target, version, host, fields, tail, as_capture)| {
        let (method, target, tail) = if as_capture {
            ("POST", CAPTURE, Tail::Capture)
        } else {
            (method, target, tail)
        };
        let mut text = format!("{method} {target} {version}\r\n");
        if host {
            text.push_str("Host: app.example\r\n");
        }
        for (n, v) in &fields {
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        if let Tail::Capture = tail {
            text.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                capture.len()
            ));
        }
        text.push_str("\r\n");
        let mut bytes = text.clone().into_bytes();
        match tail {
            Tail::None => {}
            Tail::Bytes => bytes.extend_from_slice(b"hello"),
            Tail::Capture => bytes.extend_from_slice(&capture),
            Tail::ChunkedWithTrailers => bytes.extend_from_slice(
                b"5\r\nhello\r\n0\r\nX-Oz-Resolution: SUCCESS\r\nX_Oz_Folder_Id: f\r\nX-Checksum: 1\r\n\r\n",
            ),
        }
        let mut bench = bench.borrow_mut();
        let seen = rt.block_on(async {
            send_case(bench.addr(), bytes).await;
            bench.drain_until_sentinel().await
        });
        let folders: Vec<String> = bench
            .oz
            .accepted_uploads()
            .into_iter()
            .map(|u| u.folder_id)
            .collect();
        let name = format!("{text:?} + {tail:?}");
        forwarded.set(forwarded.get() + seen.len());
        checked.set(
            checked.get()
                + seen
                    .iter()
                    .filter(|r| !r.header_values("x-oz-folder-id").is_empty())
                    .count(),
        );
        for req in &seen {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                assert_clean_against(req, &folders, &name)
            }))
            .map_err(|_| {
                TestCaseError::fail(format!("{name}: the backend received {:?}", req.head_str()))
            })?;
        }
        Ok(())
    });
    let bench = bench.into_inner();
    rt.block_on(bench.stop());
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "{} requests reached the backend, {} of them checked captures",
        forwarded.get(),
        checked.get()
    );
    // The property means something only if arbitrary heads do get through, captures included.
    assert!(
        forwarded.get() >= 20,
        "only {} cases reached the backend",
        forwarded.get()
    );
    assert!(checked.get() >= 1, "no case made a checked capture");
}
