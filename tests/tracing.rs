//! Tracing (`telemetry.otlp`, README "Tracing"): what a collector receives, decoded from OTLP
//! protobuf as a collector decodes it (support::otlp): one trace per capture with the proxy's
//! phases, every Oz call and the backend call, joined to the client's and the backend's by W3C
//! `traceparent`; passthrough sampled by the client's flag or the ratio; nothing of the capture,
//! no secret and no query string in any export; and a collector that is down or silent never
//! holding a request up.

mod support;

use std::collections::BTreeSet;

use oz_capture_proxy::capture::testdata::SampleCapture;
use support::bin::{ProxyProcess, TempDir};
use support::otlp::{self, Collector, Mode, Span, CLIENT, ERROR, INTERNAL, SERVER};
use support::stack::*;
use support::within_for;

/// The client's trace, as a browser SDK or an edge proxy would send it.
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

const INFO_MARKER: &str = "ADDINFO-MARKER-7d21";
const COOKIE_MARKER: &str = "COOKIE-MARKER-3b0e";
const AUTH_MARKER: &str = "AUTH-MARKER-c55a";
const QUERY_MARKER: &str = "QUERY-MARKER-18f4";

fn traceparent(sampled: bool) -> String {
    format!(
        "00-{CLIENT_TRACE}-{CLIENT_SPAN}-{}",
        if sampled { "01" } else { "00" }
    )
}

/// The stack's forward route with `telemetry.otlp` sending to `endpoint`, with `ratio` for
/// passthrough.
fn traced_yaml(endpoint: &str, ratio: f64) -> String {
    format!(
        "{}{}telemetry:\n  otlp:\n    endpoint: \"{endpoint}\"\n    sample_ratio: {ratio}\n",
        oz_token(""),
        forward_route("")
    )
}

/// `GET path`, with the client's `traceparent` when given.
fn get(
    path: &str,
    traceparent: Option<String>,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut req = http::Request::get(path);
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    req.body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap()
}

/// The trace id and parent span id a `traceparent` names.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one {name} span in {spans:#?}");
    found[0]
}

#[tokio::test]
async fn a_capture_is_one_trace_through_the_proxy_oz_and_the_backend() {
    let collector = Collector::start(Mode::Accept).await;
    let yaml = traced_yaml(&collector.endpoint(), 0.0);
    let stack = Stack::start(sim_config(), &yaml).await;
    let mut capture = SampleCapture::new(3, false, "video_selfie_blank");
    capture.additional_info = Some(format!(r#"{{"env":"{INFO_MARKER}"}}"#));
    let frame_b64 = capture.frames[1]
        .split_once(',')
        .expect("a data URL")
        .1
        .to_owned();
    let reply = stack
        .client()
        .post_with(
            &format!("{CAPTURE}?session={QUERY_MARKER}"),
            "application/json",
            &[
                ("traceparent", &traceparent(true)),
                ("tracestate", "vendor=abc"),
                ("cookie", &format!("sid={COOKIE_MARKER}")),
                ("authorization", &format!("Bearer {AUTH_MARKER}")),
            ],
            capture.to_json(),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");

    let spans = collector
        .spans_until("the capture's trace", |s| {
            s.iter().any(|s| s.kind == SERVER) && !named(s, "oz.poll").is_empty()
        })
        .await;
    let server = one(&spans, &format!("POST {CAPTURE}"));
    assert_eq!(server.kind, SERVER);
    assert_eq!(
        server.trace_id, CLIENT_TRACE,
        "the client's trace is joined"
    );
    assert_eq!(server.parent_span_id, CLIENT_SPAN);
    for (key, value) in [
        ("http.request.method", "POST"),
        ("http.route", CAPTURE),
        ("url.path", CAPTURE),
        ("http.response.status_code", "200"),
        ("server.address", "127.0.0.1"),
        ("network.protocol.version", "1.1"),
        ("oz.resolution", "SUCCESS"),
        ("oz.action", "video_selfie_blank"),
        ("capture.frames", "3"),
    ] {
        assert_eq!(server.attr(key), value, "{key} on {server:#?}");
    }
    let body_size: u64 = server.attr("http.request.body.size").parse().unwrap();
    assert_eq!(body_size, capture.to_json().len() as u64);
    assert!(server.attr("oz.upload.size").parse::<u64>().unwrap() > 0);
    assert_eq!(server.status.0, 0, "a success leaves the status unset");
    assert_eq!(server.resource["service.name"], "oz-capture-proxy");

    // The phases: children of the server span, in the order they ran.
    let children: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id == server.span_id)
        .collect();
    let names: BTreeSet<&str> = children.iter().map(|s| s.name.as_str()).collect();
    for name in [
        "capture.parse",
        "capture.zip",
        "oz.upload",
        "oz.analyses",
        "oz.poll",
        "POST",
    ] {
        assert!(
            names.contains(name),
            "{name} is a child of the server span: {names:?}"
        );
    }
    let parse = one(&spans, "capture.parse");
    let zip = one(&spans, "capture.zip");
    let upload = one(&spans, "oz.upload");
    let analyses = one(&spans, "oz.analyses");
    let backend_call = one(&spans, "POST");
    assert_eq!((parse.kind, zip.kind), (INTERNAL, INTERNAL));
    assert_eq!(
        (upload.kind, analyses.kind, backend_call.kind),
        (CLIENT, CLIENT, CLIENT)
    );
    assert!(
        parse.end_unix_nano <= zip.start_unix_nano + 1_000,
        "parse, then zip"
    );
    assert!(
        zip.end_unix_nano <= upload.start_unix_nano,
        "zip, then the upload"
    );
    assert!(upload.end_unix_nano <= analyses.start_unix_nano);
    assert!(analyses.end_unix_nano <= backend_call.start_unix_nano);
    assert!(server.start_unix_nano <= parse.start_unix_nano);
    assert!(backend_call.end_unix_nano <= server.end_unix_nano);
    assert_eq!(parse.attr("capture.frames"), "3");
    assert_eq!(upload.attr("http.request.method"), "POST");
    assert_eq!(upload.attr("url.path"), "/api/folders/");
    assert_eq!(upload.attr("http.response.status_code"), "201");
    assert_eq!(backend_call.attr("http.response.status_code"), "200");
    assert!(children.iter().all(|s| s.trace_id == CLIENT_TRACE));

    // The backend's traceparent names the backend call's span, in the client's trace.
    let seen = stack.backend.only();
    let (trace, parent) = ids(seen.header("traceparent"));
    assert_eq!(trace, CLIENT_TRACE);
    assert_eq!(parent, backend_call.span_id);
    assert_eq!(seen.header("tracestate"), "vendor=abc");
    assert_eq!(
        server.attr("oz.folder_id"),
        seen.header("x-oz-folder-id"),
        "the trace names the folder the backend was told"
    );

    // Oz got each call's own span in its traceparent.
    let calls = stack.sim.sim.calls();
    for (endpoint, span) in [("folders", upload), ("start_analyses", analyses)] {
        let call = calls
            .iter()
            .find(|c| c.endpoint.as_deref() == Some(endpoint))
            .unwrap_or_else(|| panic!("a {endpoint} call in {calls:?}"));
        let tp = call.traceparent.as_deref().expect("Oz got a traceparent");
        assert_eq!(ids(tp), (CLIENT_TRACE.to_owned(), span.span_id.clone()));
    }
    for poll in named(&spans, "oz.poll") {
        assert_eq!(poll.kind, CLIENT);
        assert!(calls.iter().any(|c| c
            .traceparent
            .as_deref()
            .is_some_and(|tp| ids(tp).1 == poll.span_id)));
    }

    // Nothing of the capture, no secret and no query string in any export.
    let exports = collector.exports();
    assert!(!exports.is_empty());
    for export in &exports {
        assert_eq!(export.path, "/v1/traces");
        assert_eq!(export.content_type, "application/x-protobuf");
        let body = String::from_utf8_lossy(&export.body);
        for (what, needle) in [
            ("additional_info", INFO_MARKER),
            ("frame data", &frame_b64[frame_b64.len() / 2..][..32]),
            ("a data URL", "data:image"),
            ("a cookie", COOKIE_MARKER),
            ("an Authorization header", AUTH_MARKER),
            ("the query string", QUERY_MARKER),
            ("the Oz token", TOKEN),
            ("base64 of a JPEG", "/9j/"),
        ] {
            assert!(!body.contains(needle), "{what} in an export");
        }
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_refused_capture_is_an_error_span_with_its_problem_code() {
    let collector = Collector::start(Mode::Accept).await;
    let yaml = traced_yaml(&collector.endpoint(), 0.0);
    let stack = Stack::start(sim_config(), &yaml).await;
    let mut broken = SampleCapture::new(2, false, "video_selfie_blank");
    broken.frames[1] = "data:image/jpeg;base64,@@@".to_owned();
    let reply = stack.post(CAPTURE, broken.to_json()).await;
    assert_eq!(reply.status, 400);
    let problem: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let code = problem["code"].as_str().expect("a problem code").to_owned();

    let spans = collector
        .spans_until("the refused capture's span", |s| {
            s.iter().any(|s| s.kind == SERVER)
        })
        .await;
    let server = one(&spans, &format!("POST {CAPTURE}"));
    assert_eq!(server.status, (ERROR, code.clone()));
    assert_eq!(server.attr("error.type"), code);
    assert_eq!(server.attr("http.response.status_code"), "400");
    assert!(
        server.parent_span_id.is_empty(),
        "without a client traceparent the proxy starts the trace"
    );
    assert!(named(&spans, "oz.upload").is_empty(), "nothing went to Oz");
    stack.stop().await;
}

#[tokio::test]
async fn passthrough_follows_the_clients_flag_and_otherwise_the_ratio() {
    let collector = Collector::start(Mode::Accept).await;
    let yaml = traced_yaml(&collector.endpoint(), 0.0);
    let mut stack = Stack::start(sim_config(), &yaml).await;
    // Sampled out by the client, or no traceparent at ratio 0: no span, and the backend gets
    // the client's traceparent as it was sent (or none).
    let client = stack.client();
    assert_eq!(
        client
            .send(get("/out", Some(traceparent(false))))
            .await
            .status,
        200
    );
    assert_eq!(
        stack.backend.next().await.header("traceparent"),
        traceparent(false)
    );
    assert_eq!(client.send(get("/none", None)).await.status, 200);
    assert_eq!(stack.backend.next().await.get("traceparent"), None);
    // Sampled in by the client: traced, and the backend's parent is the proxy's span.
    assert_eq!(
        client
            .send(get("/in?q=1", Some(traceparent(true))))
            .await
            .status,
        200
    );
    let joined = stack.backend.next().await;

    // A capture afterwards: exports go in order, so once its spans are in, any span of the
    // requests before it would be too.
    assert_eq!(
        stack
            .post(
                CAPTURE,
                SampleCapture::new(1, false, "video_selfie_blank").to_json()
            )
            .await
            .status,
        200
    );
    stack.backend.next().await;
    let spans = collector
        .spans_until("the capture's server span", |s| {
            s.iter().any(|s| s.name == format!("POST {CAPTURE}"))
        })
        .await;
    let servers: Vec<&Span> = spans.iter().filter(|s| s.kind == SERVER).collect();
    let paths: Vec<&str> = servers.iter().map(|s| s.attr("url.path")).collect();
    assert_eq!(
        paths,
        ["/in", CAPTURE],
        "only the sampled-in request and the capture"
    );
    let traced = servers[0];
    assert_eq!(traced.name, "GET");
    assert_eq!(traced.attr("http.route"), "", "passthrough has no route");
    assert_eq!(traced.trace_id, CLIENT_TRACE);
    assert_eq!(traced.parent_span_id, CLIENT_SPAN);
    assert_eq!(
        ids(joined.header("traceparent")),
        (CLIENT_TRACE.to_owned(), traced.span_id.clone())
    );
    stack.stop().await;
}

#[tokio::test]
async fn at_ratio_one_every_passthrough_request_starts_a_trace_the_backend_joins() {
    let collector = Collector::start(Mode::Accept).await;
    let yaml = traced_yaml(&collector.endpoint(), 1.0);
    let mut stack = Stack::start(sim_config(), &yaml).await;
    let req = get("/fresh", None);
    assert_eq!(stack.client().send(req).await.status, 200);
    let seen = stack.backend.next().await;
    let spans = collector
        .spans_until("the request's span", |s| !s.is_empty())
        .await;
    let span = one(&spans, "GET");
    assert!(span.parent_span_id.is_empty(), "a new trace");
    assert_eq!(
        ids(seen.header("traceparent")),
        (span.trace_id.clone(), span.span_id.clone())
    );
    stack.stop().await;
}

#[tokio::test]
async fn the_otel_environment_overrides_the_yaml() {
    let collector = Collector::start(Mode::Accept).await;
    let down = otlp::closed_port();
    let yaml = traced_yaml(&format!("http://{down}"), 0.0);
    let endpoint = collector.endpoint();
    let mut stack = Stack::start_with(sim_config(), &yaml, |p| {
        p.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_SERVICE_NAME", "kyc-edge")
            .env(
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test%20eu",
            )
            .env("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=k3y")
            .env("OTEL_TRACES_SAMPLER", "always_on")
    })
    .await;
    let req = get("/any", None);
    assert_eq!(stack.client().send(req).await.status, 200);
    stack.backend.next().await;
    let spans = collector
        .spans_until("the request's span (always_on)", |s| !s.is_empty())
        .await;
    let span = one(&spans, "GET");
    assert_eq!(span.resource["service.name"], "kyc-edge");
    assert_eq!(span.resource["deployment.environment"], "test eu");
    let exports = collector.exports();
    assert_eq!(exports[0].headers["x-collector-key"], "k3y");
    stack.stop().await;
}

/// With the collector down (connection refused) or silent (accepts, never answers, and the
/// export timeout a minute long), captures and passthrough requests are answered as ever, well
/// within the test's 15 s limit per wait; the spans are dropped and counted; and the shutdown
/// ends within the drain deadline and the flush limit, not the export timeout.
#[tokio::test]
async fn a_collector_down_or_silent_never_holds_a_request_up() {
    let silent = Collector::start(Mode::BlackHole).await;
    for (endpoint, down) in [
        (format!("http://{}", otlp::closed_port()), true),
        (silent.endpoint(), false),
    ] {
        let yaml = traced_yaml(&endpoint, 1.0);
        let mut stack = Stack::start_with(sim_config(), &yaml, |p| {
            p.env("OTEL_EXPORTER_OTLP_TIMEOUT", "60000")
                .set("shutdown.drain_deadline", "2s")
        })
        .await;
        for i in 0..3 {
            let reply = stack
                .post(
                    CAPTURE,
                    SampleCapture::numbered(i, 2, false, "video_selfie_blank").to_json(),
                )
                .await;
            assert_eq!(reply.status, 200, "{endpoint}: {reply:?}");
            stack.backend.next().await;
            let req = get("/page", None);
            assert_eq!(stack.client().send(req).await.status, 200, "{endpoint}");
            stack.backend.next().await;
        }
        if down {
            // The spans of those requests fail to go out, and are counted so.
            stack
                .proxy
                .wait_metric_at_least("oz_proxy_trace_spans_total{result=\"export_failed\"}", 1.0)
                .await;
        }
        assert_eq!(
            stack
                .proxy
                .metric("oz_proxy_trace_spans_total{result=\"exported\"}")
                .await,
            0.0
        );
        // The shutdown: a 2 s drain deadline, the flush inside it; never the minute-long export.
        within_for(
            std::time::Duration::from_secs(8),
            "the proxy to stop within its drain deadline",
            stack.stop(),
        )
        .await;
    }
}

/// The binary as deployed: `OTEL_EXPORTER_OTLP_ENDPOINT` from the process environment turns
/// tracing on with no YAML for it, and the JSON log lines of a traced request carry its trace
/// and span ids.
#[tokio::test]
async fn the_binary_reads_the_otel_environment_and_logs_trace_ids() {
    let collector = Collector::start(Mode::Accept).await;
    let sim = Sim::start(sim_config()).await;
    let mut backend = legacy_backend().await;
    let dir = TempDir::new("tracing");
    let yaml = format!(
        "listen: \"127.0.0.1:0\"\nadmin_listen: \"127.0.0.1:0\"\nbackend:\n  url: \"http://{}\"\nreload:\n  interval: \"0s\"\nshutdown:\n  drain_delay: \"0s\"\n{}{}",
        backend.addr,
        oz_token("").replace("{oz}", &sim.addr.to_string()),
        forward_route("")
    );
    let config = dir.write("config.yaml", yaml);
    let endpoint = collector.endpoint();
    let mut proxy = ProxyProcess::start_with_env(
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OZ_PROXY__CAPTURE__REPLAY__ENABLED", "false"),
        ],
    );
    assert!(
        proxy.seen.iter().any(|l| l.contains("tracing on")),
        "{:#?}",
        proxy.seen
    );
    let client = support::stack::Client::new(proxy.traffic, false);
    let reply = client
        .post_with(
            CAPTURE,
            "application/json",
            &[("traceparent", &traceparent(true))],
            SampleCapture::new(2, false, "video_selfie_blank").to_json(),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    backend.next().await;
    let spans = collector
        .spans_until("the capture's server span", |s| {
            s.iter().any(|s| s.kind == SERVER)
        })
        .await;
    let server = spans.iter().find(|s| s.kind == SERVER).unwrap();
    let access = proxy.wait_line(|l| l.contains("\"target\":\"access\"") && l.contains(CAPTURE));
    let line: serde_json::Value = serde_json::from_str(&access).unwrap();
    assert_eq!(line["trace_id"], CLIENT_TRACE, "{access}");
    assert_eq!(line["span_id"], server.span_id.as_str(), "{access}");
    let (status, lines) = proxy.terminate();
    assert!(status.success(), "{lines:?}");
    let checked = lines
        .iter()
        .find(|l| l.contains("capture checked"))
        .unwrap_or_else(|| panic!("a capture checked line in {lines:#?}"));
    assert!(
        checked.contains(&format!("\"trace_id\":\"{CLIENT_TRACE}\""))
            && checked.contains(&format!("\"span_id\":\"{}\"", server.span_id)),
        "{checked}"
    );
}

/// A collector that never answers, under more traffic than the queue holds: requests are
/// answered as ever, and the spans beyond the queue are dropped and counted, not kept.
#[tokio::test]
async fn spans_beyond_the_queue_are_dropped_and_counted_never_waited_for() {
    let silent = Collector::start(Mode::BlackHole).await;
    let yaml = traced_yaml(&silent.endpoint(), 1.0);
    let stack = Stack::start_with(sim_config(), &yaml, |p| {
        // Long enough that the exporter still waits on its first batch at the end.
        p.env("OTEL_EXPORTER_OTLP_TIMEOUT", "600000")
            .set("shutdown.drain_deadline", "2s")
    })
    .await;
    // The exporter holds one batch while it waits on the silent collector; the queue takes
    // MAX_QUEUED_SPANS more. One span per request.
    let requests =
        oz_capture_proxy::trace::MAX_QUEUED_SPANS + oz_capture_proxy::trace::MAX_BATCH + 600;
    let tasks = 16;
    let mut joins = Vec::new();
    for t in 0..tasks {
        let client = stack.client();
        joins.push(tokio::spawn(async move {
            for i in (t..requests).step_by(tasks) {
                let req = get(&format!("/r/{i}"), None);
                assert_eq!(client.send(req).await.status, 200);
            }
        }));
    }
    for j in joins {
        within_for(
            std::time::Duration::from_secs(120),
            "every request to be answered",
            j,
        )
        .await
        .expect("no request failed");
    }
    stack
        .proxy
        .wait_metric_at_least("oz_proxy_trace_spans_total{result=\"queue_full\"}", 1.0)
        .await;
    let dropped = stack
        .proxy
        .metric("oz_proxy_trace_spans_total{result=\"queue_full\"}")
        .await;
    assert!(
        dropped
            >= (requests
                - oz_capture_proxy::trace::MAX_QUEUED_SPANS
                - oz_capture_proxy::trace::MAX_BATCH) as f64,
        "{dropped} dropped of {requests}"
    );
    within("the proxy to stop", stack.stop()).await;
}

/// A capture is traced whatever the client's flag says, and a head with two `traceparent`s is
/// read as one with none: the proxy starts a trace, and the backend gets exactly one
/// `traceparent`, the proxy's.
#[tokio::test]
async fn a_capture_is_traced_whatever_the_client_sampled_and_two_traceparents_are_none() {
    let collector = Collector::start(Mode::Accept).await;
    let yaml = traced_yaml(&collector.endpoint(), 0.0);
    let mut stack = Stack::start(sim_config(), &yaml).await;
    let client = stack.client();
    let reply = client
        .post_with(
            CAPTURE,
            "application/json",
            &[("traceparent", &traceparent(false))],
            SampleCapture::numbered(1, 2, false, "video_selfie_blank").to_json(),
        )
        .await;
    assert_eq!(reply.status, 200);
    let sampled_out = stack.backend.next().await;
    let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let reply = client
        .post_with(
            CAPTURE,
            "application/json",
            &[("traceparent", &traceparent(true)), ("traceparent", other)],
            SampleCapture::numbered(2, 2, false, "video_selfie_blank").to_json(),
        )
        .await;
    assert_eq!(reply.status, 200);
    let doubled = stack.backend.next().await;

    let spans = collector
        .spans_until("both captures' server spans", |s| {
            s.iter().filter(|s| s.kind == SERVER).count() == 2
        })
        .await;
    let servers: Vec<&Span> = spans.iter().filter(|s| s.kind == SERVER).collect();
    // The sampled-out capture joins the client's trace all the same, sampled.
    assert_eq!(servers[0].trace_id, CLIENT_TRACE);
    assert_eq!(servers[0].parent_span_id, CLIENT_SPAN);
    assert_eq!(ids(sampled_out.header("traceparent")).0, CLIENT_TRACE);
    assert!(sampled_out.header("traceparent").ends_with("-01"));
    // Two traceparents: a new trace, and one traceparent to the backend.
    assert!(servers[1].parent_span_id.is_empty());
    assert_ne!(servers[1].trace_id, CLIENT_TRACE);
    let sent: Vec<&str> = doubled
        .headers
        .get_all("traceparent")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(ids(sent[0]).0, servers[1].trace_id);
    stack.stop().await;
}
