//! Prometheus metric families, registered in one place on a registry the caller owns.
//!
//! The hot path never looks a label set up: every (route kind, status class) counter and every
//! histogram is resolved once here and kept as a cheap clone of an atomic, so recording a
//! passthrough request is a handful of atomic adds. The Oz error family is only touched on the
//! capture path; its `code` values come from a fixed set (`oz::transport` maps whatever Oz sends
//! onto it), so no peer can grow the number of series; the rate-limit family's `route` is a
//! configured path, never a client's value. Served as text by `crate::admin` at
//! `/metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `oz_proxy_requests_total` | counter | `route_kind`, `status_class` |
//! | `oz_proxy_request_duration_seconds` | histogram | `route_kind` |
//! | `oz_proxy_requests_in_flight` | gauge | `route_kind` |
//! | `oz_proxy_backend_errors_total` | counter | `kind` (`connect`, `timeout`, `failed`) |
//! | `oz_proxy_captures_total` | counter | `outcome` |
//! | `oz_proxy_capture_bytes_total` | counter | `direction` (`in`: client bodies, `out`: uploads to Oz) |
//! | `oz_proxy_oz_request_duration_seconds` | histogram | `endpoint` |
//! | `oz_proxy_oz_errors_total` | counter | `endpoint`, `code` (a fixed set, `other` for the rest) |
//! | `oz_proxy_config_reloads_total` | counter | `result` (`applied`, `rejected`) |
//! | `oz_proxy_late_verdicts_total` | counter | `result` (`delivered`, `retry`, `failed`, `rejected`, `dropped`, `expired`, `oz_error`, `cancelled`) |
//! | `oz_proxy_rate_limited_total` | counter | `route` (a configured capture path), `limit` (`per_client`, `global`) |
//! | `oz_proxy_state_up` | gauge | `store` (`memory`, `redis`) |
//! | `oz_proxy_state_errors_total` | counter | `op` (`rate_limit`, `replay`, `confirm`, `release`), `result` (`refused`, `unguarded`, `not_recorded`) |
//! | `oz_proxy_trace_spans_total` | counter | `result` (`exported`, `queue_full`, `export_failed`, `shutdown`) |
//! | `oz_proxy_process_resident_memory_bytes` | gauge | — |

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// What kind of route a request took.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// Streamed to the backend unchanged.
    Passthrough,
    /// A capture route handled by the proxy.
    Capture,
    /// An upgraded connection (WebSocket and friends).
    Upgrade,
}

impl RouteKind {
    const ALL: [RouteKind; 3] = [
        RouteKind::Passthrough,
        RouteKind::Capture,
        RouteKind::Upgrade,
    ];

    /// The label value, also used in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Passthrough => "passthrough",
            RouteKind::Capture => "capture",
            RouteKind::Upgrade => "upgrade",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why the backend could not be used.
#[derive(Clone, Copy, Debug)]
pub enum BackendErrorKind {
    Connect,
    Timeout,
    Failed,
}

/// How a capture ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureOutcome {
    Success,
    Declined,
    OperatorRequired,
    Failed,
    Processing,
    /// Oz failed (and the route rejects or forwards with `ERROR`).
    OzError,
    /// Bad input from the client (4xx).
    Rejected,
    /// 503: concurrency limit or memory budget.
    Overloaded,
    /// 409: the capture's media was already accepted (`capture.replay`).
    Replayed,
    /// 429: beyond a rate limit (`capture.rate_limit`).
    RateLimited,
    /// 503: the state store could not answer and `state.on_error` is `fail_closed`.
    StateUnavailable,
}

impl CaptureOutcome {
    const ALL: [CaptureOutcome; 11] = [
        CaptureOutcome::Success,
        CaptureOutcome::Declined,
        CaptureOutcome::OperatorRequired,
        CaptureOutcome::Failed,
        CaptureOutcome::Processing,
        CaptureOutcome::OzError,
        CaptureOutcome::Rejected,
        CaptureOutcome::Overloaded,
        CaptureOutcome::Replayed,
        CaptureOutcome::RateLimited,
        CaptureOutcome::StateUnavailable,
    ];

    fn as_str(self) -> &'static str {
        match self {
            CaptureOutcome::Success => "success",
            CaptureOutcome::Declined => "declined",
            CaptureOutcome::OperatorRequired => "operator_required",
            CaptureOutcome::Failed => "failed",
            CaptureOutcome::Processing => "processing",
            CaptureOutcome::OzError => "oz_error",
            CaptureOutcome::Rejected => "rejected",
            CaptureOutcome::Overloaded => "overloaded",
            CaptureOutcome::Replayed => "replayed",
            CaptureOutcome::RateLimited => "rate_limited",
            CaptureOutcome::StateUnavailable => "state_unavailable",
        }
    }
}

/// What came of a late verdict follow-up, or of one attempt to deliver it (`proxy::late`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LateResult {
    /// The backend answered the delivery with 2xx.
    Delivered,
    /// One delivery attempt failed (connect error, timeout, 5xx) and will be tried again.
    Retry,
    /// The delivery was given up after its retries.
    Failed,
    /// The backend refused the delivery (a 3xx or 4xx): final, not retried.
    Rejected,
    /// Not followed: `capture.max_follow_ups` captures were already followed.
    Dropped,
    /// No final verdict within `capture.follow_up_for` (or the polls of one follow-up).
    Expired,
    /// Oz refused a poll: the follow-up ended without a verdict.
    OzError,
    /// Cut when the shutdown drain ended.
    Cancelled,
}

impl LateResult {
    const ALL: [LateResult; 8] = [
        LateResult::Delivered,
        LateResult::Retry,
        LateResult::Failed,
        LateResult::Rejected,
        LateResult::Dropped,
        LateResult::Expired,
        LateResult::OzError,
        LateResult::Cancelled,
    ];

    /// The label value, also used in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            LateResult::Delivered => "delivered",
            LateResult::Retry => "retry",
            LateResult::Failed => "failed",
            LateResult::Rejected => "rejected",
            LateResult::Dropped => "dropped",
            LateResult::Expired => "expired",
            LateResult::OzError => "oz_error",
            LateResult::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route_kind: &'static str,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route_kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OzErrorLabels {
    endpoint: &'static str,
    /// `&'static str`, so only values written in this crate can become a label.
    code: &'static str,
}

/// A capture route (its configured path: bounded by the config, never a client's value) and
/// which of its limits refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitedLabels {
    route: String,
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateErrorLabels {
    op: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The `endpoint` label values of Oz calls (see `crate::oz`).
const OZ_ENDPOINTS: [&str; 8] = [
    "auth",
    "refresh",
    "folders",
    "instant_folders",
    "analyses",
    "poll",
    "folder",
    "video",
];

const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

/// Handles to every metric. Cloning is cheap; all clones record into the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    /// `[route kind][status class]`, resolved at start.
    requests: [[Counter; 6]; 3],
    durations: [Histogram; 3],
    in_flight: [Gauge; 3],
    backend_errors: [Counter; 3],
    captures: [Counter; 11],
    capture_bytes_in: Counter,
    capture_bytes_out: Counter,
    oz_durations: Family<EndpointLabels, Histogram>,
    oz_errors: Family<OzErrorLabels, Counter>,
    reloads_applied: Counter,
    reloads_rejected: Counter,
    late_verdicts: [Counter; 8],
    connections_open: Gauge,
    connection_waits: Counter,
    rate_limited: Family<RateLimitedLabels, Counter>,
    state_up: Family<StoreLabels, Gauge>,
    state_errors: Family<StateErrorLabels, Counter>,
    /// `SpanResult` order.
    trace_spans: [Counter; 4],
}

/// What became of a finished span (`telemetry.otlp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanResult {
    /// The collector accepted it.
    Exported,
    /// Dropped: the export queue was full (the collector slower than the traffic).
    QueueFull,
    /// Dropped: its export failed (collector down, refusing, or too slow).
    ExportFailed,
    /// Dropped: still queued when the shutdown's flush time ran out.
    Shutdown,
}

impl SpanResult {
    const ALL: [SpanResult; 4] = [
        SpanResult::Exported,
        SpanResult::QueueFull,
        SpanResult::ExportFailed,
        SpanResult::Shutdown,
    ];

    fn as_str(self) -> &'static str {
        match self {
            SpanResult::Exported => "exported",
            SpanResult::QueueFull => "queue_full",
            SpanResult::ExportFailed => "export_failed",
            SpanResult::Shutdown => "shutdown",
        }
    }
}

impl Metrics {
    /// Creates every family and registers it on `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let reg = registry.sub_registry_with_prefix("oz_proxy");

        let requests_family = Family::<RequestLabels, Counter>::default();
        reg.register(
            "requests",
            "Requests answered, by route kind and status class",
            requests_family.clone(),
        );
        let requests = RouteKind::ALL.map(|k| {
            STATUS_CLASSES.map(|c| {
                requests_family.get_or_create_owned(&RequestLabels {
                    route_kind: k.as_str(),
                    status_class: c,
                })
            })
        });

        let durations_family = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 100 µs .. ~52 s: passthrough overhead is sub-millisecond, captures wait on Oz.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.0001, 2.0, 20,
            ))
        });
        reg.register_with_unit(
            "request_duration",
            "Time from request head to the end of the response body",
            prometheus_client::registry::Unit::Seconds,
            durations_family.clone(),
        );
        let durations = RouteKind::ALL.map(|k| {
            durations_family.get_or_create_owned(&RouteLabels {
                route_kind: k.as_str(),
            })
        });

        let in_flight_family = Family::<RouteLabels, Gauge>::default();
        reg.register(
            "requests_in_flight",
            "Requests and tunnels currently open",
            in_flight_family.clone(),
        );
        let in_flight = RouteKind::ALL.map(|k| {
            in_flight_family.get_or_create_owned(&RouteLabels {
                route_kind: k.as_str(),
            })
        });

        let backend_family = Family::<KindLabels, Counter>::default();
        reg.register(
            "backend_errors",
            "Failures reaching the backend, by kind",
            backend_family.clone(),
        );
        let backend_errors = ["connect", "timeout", "failed"]
            .map(|k| backend_family.get_or_create_owned(&KindLabels { kind: k }));

        let captures_family = Family::<OutcomeLabels, Counter>::default();
        reg.register(
            "captures",
            "Captures handled, by outcome",
            captures_family.clone(),
        );
        let captures = CaptureOutcome::ALL.map(|o| {
            captures_family.get_or_create_owned(&OutcomeLabels {
                outcome: o.as_str(),
            })
        });

        let bytes_family = Family::<DirectionLabels, Counter>::default();
        reg.register_with_unit(
            "capture",
            "Capture bytes: `in` read from clients, `out` uploaded to Oz",
            prometheus_client::registry::Unit::Bytes,
            bytes_family.clone(),
        );
        let capture_bytes_in =
            bytes_family.get_or_create_owned(&DirectionLabels { direction: "in" });
        let capture_bytes_out =
            bytes_family.get_or_create_owned(&DirectionLabels { direction: "out" });

        let oz_durations = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.005, 2.0, 14,
            ))
        });
        reg.register_with_unit(
            "oz_request_duration",
            "Latency of Oz API calls, by endpoint",
            prometheus_client::registry::Unit::Seconds,
            oz_durations.clone(),
        );
        // Known endpoints get their series at once, so dashboards show zeros rather than
        // "no data" before the first capture.
        for endpoint in OZ_ENDPOINTS {
            oz_durations.get_or_create_owned(&EndpointLabels { endpoint });
        }
        let oz_errors = Family::<OzErrorLabels, Counter>::default();
        reg.register(
            "oz_errors",
            "Failed Oz API calls, by endpoint and Oz error_code (or status/timeout/unreachable)",
            oz_errors.clone(),
        );

        let reload_family = Family::<ResultLabels, Counter>::default();
        reg.register(
            "config_reloads",
            "Config file reloads, applied or rejected",
            reload_family.clone(),
        );
        let reloads_applied =
            reload_family.get_or_create_owned(&ResultLabels { result: "applied" });
        let reloads_rejected =
            reload_family.get_or_create_owned(&ResultLabels { result: "rejected" });

        let late_family = Family::<ResultLabels, Counter>::default();
        reg.register(
            "late_verdicts",
            "Late verdict follow-ups and delivery attempts, by result",
            late_family.clone(),
        );
        let late_verdicts = LateResult::ALL
            .map(|r| late_family.get_or_create_owned(&ResultLabels { result: r.as_str() }));

        let connections_open = Gauge::default();
        reg.register(
            "connections_open",
            "Client connections open on the traffic listener",
            connections_open.clone(),
        );
        let connection_waits = Counter::default();
        reg.register(
            "connection_limit_reached",
            "Times the traffic listener stopped accepting because server.max_connections connections were open",
            connection_waits.clone(),
        );

        let rate_limited = Family::<RateLimitedLabels, Counter>::default();
        reg.register(
            "rate_limited",
            "Captures refused with 429, by capture route and limit (per_client or global)",
            rate_limited.clone(),
        );
        let state_up = Family::<StoreLabels, Gauge>::default();
        reg.register(
            "state_up",
            "1 while the state store (memory or redis) answers, 0 while it does not",
            state_up.clone(),
        );
        let state_errors = Family::<StateErrorLabels, Counter>::default();
        // Every series at once: a dashboard shows zeros, not "no data", before the first failure.
        for op in ["rate_limit", "replay"] {
            for result in ["refused", "unguarded"] {
                state_errors.get_or_create_owned(&StateErrorLabels { op, result });
            }
        }
        for op in ["confirm", "release"] {
            state_errors.get_or_create_owned(&StateErrorLabels {
                op,
                result: "not_recorded",
            });
        }
        reg.register(
            "state_errors",
            "State store failures during captures, by operation (rate_limit, replay, confirm, release) and result (refused: 503 under fail_closed; unguarded: went on under fail_open; not_recorded: after the upload)",
            state_errors.clone(),
        );

        let trace_spans_family = Family::<ResultLabels, Counter>::default();
        reg.register(
            "trace_spans",
            "Finished trace spans, by result: exported, or dropped (queue_full, export_failed, shutdown)",
            trace_spans_family.clone(),
        );
        let trace_spans = SpanResult::ALL
            .map(|r| trace_spans_family.get_or_create_owned(&ResultLabels { result: r.as_str() }));

        reg.register_collector(Box::new(ProcessCollector));

        Metrics {
            inner: Arc::new(Inner {
                requests,
                durations,
                in_flight,
                backend_errors,
                captures,
                capture_bytes_in,
                capture_bytes_out,
                oz_durations,
                oz_errors,
                reloads_applied,
                reloads_rejected,
                late_verdicts,
                connections_open,
                connection_waits,
                rate_limited,
                state_up,
                state_errors,
                trace_spans,
            }),
        }
    }

    /// Counts a finished request and observes its duration.
    pub fn request_done(&self, kind: RouteKind, status: Option<u16>, elapsed: Duration) {
        let class = match status {
            Some(s @ 100..=599) => (s / 100 - 1) as usize,
            _ => 5,
        };
        let i = kind.index();
        self.inner.requests[i][class].inc();
        self.inner.durations[i].observe(elapsed.as_secs_f64());
    }

    /// The in-flight gauge of `kind`.
    pub fn in_flight(&self, kind: RouteKind) -> &Gauge {
        &self.inner.in_flight[kind.index()]
    }

    /// Counts a backend failure.
    pub fn backend_error(&self, kind: BackendErrorKind) {
        self.inner.backend_errors[kind as usize].inc();
    }

    /// Counts a finished capture.
    pub fn capture_done(&self, outcome: CaptureOutcome) {
        let i = CaptureOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .expect("ALL lists every outcome");
        self.inner.captures[i].inc();
    }

    /// Adds to the capture byte counters.
    pub fn capture_bytes(&self, read_from_client: u64, uploaded_to_oz: u64) {
        self.inner.capture_bytes_in.inc_by(read_from_client);
        self.inner.capture_bytes_out.inc_by(uploaded_to_oz);
    }

    /// Observes the latency of one Oz call.
    pub fn oz_call(&self, endpoint: &'static str, elapsed: Duration) {
        self.inner
            .oz_durations
            .get_or_create(&EndpointLabels { endpoint })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a failed Oz call; `code` is a documented Oz `error_code`, a registered HTTP status,
    /// `other`, `auth`, `timeout`, `unreachable`, `bad_response` or `result_timeout`.
    pub fn oz_error(&self, endpoint: &'static str, code: &'static str) {
        self.inner
            .oz_errors
            .get_or_create(&OzErrorLabels { endpoint, code })
            .inc();
    }

    /// Counts a late verdict result.
    pub fn late_verdict(&self, result: LateResult) {
        let i = LateResult::ALL
            .iter()
            .position(|r| *r == result)
            .expect("ALL lists every result");
        self.inner.late_verdicts[i].inc();
    }

    /// The gauge of open traffic connections.
    pub fn connections_open(&self) -> &Gauge {
        &self.inner.connections_open
    }

    /// Counts a pause of the listener at `server.max_connections`.
    pub fn connection_waited(&self) {
        self.inner.connection_waits.inc();
    }

    /// Makes the series of a configured limit of `route` (`per_client` or `global`), at 0 until
    /// the first refusal.
    pub fn rate_limit_configured(&self, route: &str, limit: &'static str) {
        self.inner
            .rate_limited
            .get_or_create_owned(&RateLimitedLabels {
                route: route.to_owned(),
                limit,
            });
    }

    /// Counts a capture refused by the `limit` (`per_client` or `global`) of `route`.
    pub fn rate_limited(&self, route: &str, limit: &'static str) {
        self.inner
            .rate_limited
            .get_or_create(&RateLimitedLabels {
                route: route.to_owned(),
                limit,
            })
            .inc();
    }

    /// Sets whether the state store `store` answers.
    pub fn state_up(&self, store: &'static str, up: bool) {
        self.inner
            .state_up
            .get_or_create(&StoreLabels { store })
            .set(i64::from(up));
    }

    /// Counts a state store failure during a capture's `op` (`rate_limit`, `replay`, `confirm`,
    /// `release`) and its `result`: `refused` (503, `fail_closed`), `unguarded` (went on,
    /// `fail_open`) or `not_recorded` (after the upload, nothing to refuse any more).
    pub fn state_error(&self, op: &'static str, result: &'static str) {
        self.inner
            .state_errors
            .get_or_create(&StateErrorLabels { op, result })
            .inc();
    }

    /// Counts `n` finished spans with what became of them.
    pub fn trace_spans(&self, result: SpanResult, n: usize) {
        self.inner.trace_spans[result as usize].inc_by(n as u64);
    }

    /// Counts a config reload.
    pub fn config_reload(&self, applied: bool) {
        if applied {
            self.inner.reloads_applied.inc();
        } else {
            self.inner.reloads_rejected.inc();
        }
    }
}

/// Reads the resident set size at scrape time, so memory is visible without a node exporter.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(rss) = resident_memory_bytes() {
            let gauge = ConstGauge::new(rss as i64);
            let m = encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident set size of the proxy process",
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(m)?;
        }
        Ok(())
    }
}

/// Resident set size from `/proc/self/statm` (Linux only).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Renders the registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(8 * 1024);
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_show_in_text() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.request_done(RouteKind::Passthrough, Some(204), Duration::from_millis(2));
        m.capture_done(CaptureOutcome::Declined);
        m.oz_error("folders", "7");
        let text = render(&registry);
        assert!(
            text.contains(
                r#"oz_proxy_requests_total{route_kind="passthrough",status_class="2xx"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"oz_proxy_captures_total{outcome="declined"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"oz_proxy_oz_errors_total{endpoint="folders",code="7"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("oz_proxy_request_duration_seconds_bucket"),
            "{text}"
        );
    }
}
