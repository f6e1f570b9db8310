//! The access log: one line per proxied request, written straight into the [`Deferred`] buffer.
//!
//! Through `tracing` the line cost about 5,200 instructions of a 68,000-instruction proxied GET
//! (callgrind): the dispatcher lookup, the filter, the fmt layer's line buffer and a dynamic
//! visitor call per field, with every small write going through `&mut dyn fmt::Write`. When the
//! logs are JSON lines into a `Deferred` (the proxy as `main` runs it), [`AccessLog`] writes the
//! line with the same formatter ([`write_flat_line`]) monomorphized for the pending buffer, and
//! decides once at start-up, with the configured filter itself, whether access lines are wanted.
//! Everywhere else (text logs, tests and the demo with their own subscribers) the line is a
//! `tracing` event, as before. Both give the same bytes.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use tracing::callsite::{Callsite, Identifier};
use tracing::field::FieldSet;
use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
use tracing::metadata::Kind;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::EnvFilter;

use super::{
    write_end, write_f64, write_flat_line, write_json_str, write_key, write_level, write_u64,
    JsonFieldsVisitor, ACCESS_TARGET,
};
use crate::runtime::deferred::Deferred;

/// What one access line says. Never the query string (it may carry secrets) and never a body.
pub struct AccessLine<'a> {
    pub method: &'a str,
    /// The path alone, without the query.
    pub path: &'a str,
    /// The route kind (`passthrough`, `capture`, `upgrade`).
    pub route: &'a str,
    /// `None` when the exchange ended before a response was sent: logged as `"aborted"`.
    pub status: Option<u16>,
    pub duration_ms: f64,
    /// Response body bytes handed to the connection.
    pub bytes: u64,
    /// Empty when the request has none.
    pub request_id: &'a str,
    /// The trace id, in hex, of a traced request (left out of the line otherwise).
    pub trace_id: Option<&'a str>,
    /// The request's server span id, in hex, of a traced request.
    pub span_id: Option<&'a str>,
}

/// Where access lines go. Cloning is cheap (the deferred buffer is shared). The default sends
/// them through `tracing`, to whatever subscriber the process has.
#[derive(Clone, Default)]
pub struct AccessLog {
    sink: Sink,
}

#[derive(Clone, Default)]
enum Sink {
    /// A `tracing` event with target `access`.
    #[default]
    Tracing,
    /// A JSON line appended to the buffer directly.
    Json(Arc<Direct>),
    /// The configured filter drops access lines.
    Off,
}

/// The direct path's buffer, and the parts of its lines that never change, rendered once by
/// the functions that write them for events.
struct Direct {
    deferred: Deferred,
    /// [`write_level`]: `","level":"INFO"`.
    level: String,
    /// [`write_key`]: `,"name":` of each of [`FIELDS`].
    keys: [String; FIELDS.len()],
    /// [`write_end`]: `,"target":"access"}` and a newline.
    end: String,
}

impl AccessLog {
    /// Direct JSON lines into `deferred`, if the `filter` the subscriber was installed with
    /// lets `info` events of target `access` through; none at all if it does not.
    pub(super) fn json(filter: EnvFilter, deferred: &Deferred) -> Self {
        let sink = if tracing_would_log(filter) {
            Sink::Json(Arc::new(Direct {
                deferred: deferred.clone(),
                level: render(|w| write_level(w, ACCESS_METADATA.level())),
                keys: FIELDS.map(|name| render(|w| write_key(w, name))),
                end: render(|w| write_end(w, ACCESS_TARGET)),
            }))
        } else {
            Sink::Off
        };
        AccessLog { sink }
    }

    /// Writes one line.
    pub fn write(&self, line: &AccessLine<'_>) {
        match &self.sink {
            Sink::Json(direct) => direct.deferred.append(|pending| {
                let [method, path, route, status, duration_ms, bytes, request_id, trace_id, span_id] =
                    &direct.keys;
                let record = |fields: &mut JsonFieldsVisitor<'_, Utf8<'_>>| {
                    // Typed as the event below types them: `%method` is recorded through
                    // `record_debug`, which writes the same quoted, escaped text as a `str`.
                    fields.field(rendered(method), |w| write_json_str(w, line.method));
                    fields.field(rendered(path), |w| write_json_str(w, line.path));
                    fields.field(rendered(route), |w| write_json_str(w, line.route));
                    match line.status {
                        Some(code) => fields.field(rendered(status), |w| write_u64(w, code.into())),
                        None => fields.field(rendered(status), |w| write_json_str(w, "aborted")),
                    }
                    fields.field(rendered(duration_ms), |w| write_f64(w, line.duration_ms));
                    fields.field(rendered(bytes), |w| write_u64(w, line.bytes));
                    fields.field(rendered(request_id), |w| write_json_str(w, line.request_id));
                    if let (Some(t), Some(s)) = (line.trace_id, line.span_id) {
                        fields.field(rendered(trace_id), |w| write_json_str(w, t));
                        fields.field(rendered(span_id), |w| write_json_str(w, s));
                    }
                };
                let out = &mut Utf8(pending);
                write_flat_line(out, rendered(&direct.level), record, rendered(&direct.end))
            }),
            Sink::Tracing => match line.status {
                Some(status) => tracing::info!(
                    target: ACCESS_TARGET,
                    method = %line.method,
                    path = line.path,
                    route = line.route,
                    status,
                    duration_ms = line.duration_ms,
                    bytes = line.bytes,
                    request_id = line.request_id,
                    trace_id = line.trace_id,
                    span_id = line.span_id,
                ),
                None => tracing::info!(
                    target: ACCESS_TARGET,
                    method = %line.method,
                    path = line.path,
                    route = line.route,
                    status = "aborted",
                    duration_ms = line.duration_ms,
                    bytes = line.bytes,
                    request_id = line.request_id,
                    trace_id = line.trace_id,
                    span_id = line.span_id,
                ),
            },
            Sink::Off => {}
        }
    }
}

/// Whether `tracing` would hand an access event to a subscriber filtered by `filter`, decided
/// the way its macros decide (static max level, max level hint, callsite interest, `enabled`)
/// on metadata with the event's target, level and field names: an `EnvFilter` directive may
/// name any of them (`access=off`, `warn`, `[{request_id}]=off`). Span directives cannot
/// matter: access lines are written outside any span (an `Observation` is never part of an
/// instrumented future).
fn tracing_would_log(filter: EnvFilter) -> bool {
    let meta = &ACCESS_METADATA;
    if *meta.level() > STATIC_MAX_LEVEL {
        return false;
    }
    let subscriber = tracing_subscriber::registry().with(filter);
    if *meta.level() > subscriber.max_level_hint().unwrap_or(LevelFilter::TRACE) {
        return false;
    }
    let interest = subscriber.register_callsite(meta);
    interest.is_always() || (!interest.is_never() && subscriber.enabled(meta))
}

/// The access event's field names, in the order it records them.
const FIELDS: [&str; 9] = [
    "method",
    "path",
    "route",
    "status",
    "duration_ms",
    "bytes",
    "request_id",
    "trace_id",
    "span_id",
];

/// The callsite the filter is asked about; nothing is ever recorded through it, and it is never
/// registered with `tracing`. A constant, as every `tracing` macro's own callsite is.
struct AccessCallsite;

static ACCESS_CALLSITE: AccessCallsite = AccessCallsite;

static ACCESS_METADATA: Metadata<'static> = Metadata::new(
    "access line",
    ACCESS_TARGET,
    Level::INFO,
    None,
    None,
    None,
    FieldSet::new(&FIELDS, Identifier(&ACCESS_CALLSITE)),
    Kind::EVENT,
);

impl Callsite for AccessCallsite {
    fn set_interest(&self, _: Interest) {}

    fn metadata(&self) -> &Metadata<'_> {
        &ACCESS_METADATA
    }
}

/// What `write` writes, as a string.
fn render(write: impl FnOnce(&mut String) -> fmt::Result) -> String {
    let mut text = String::new();
    write(&mut text).expect("a String takes any text");
    text
}

/// Writes a part of the line rendered at start-up.
fn rendered(key: &str) -> impl FnOnce(&mut Utf8<'_>) -> fmt::Result + '_ {
    move |w| w.write_str(key)
}

/// `fmt::Write` into the pending bytes: every write is a whole `str`, so they stay UTF-8.
struct Utf8<'a>(&'a mut Vec<u8>);

// Inlined: a line is some 25 small writes, and a call apiece was a fifth of its cost.
impl fmt::Write for Utf8<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }

    /// Quotes, commas and colons: one byte pushed, not a UTF-8 encoding and a copy.
    #[inline]
    fn write_char(&mut self, c: char) -> fmt::Result {
        if c.is_ascii() {
            self.0.push(c as u8);
            Ok(())
        } else {
            self.write_str(c.encode_utf8(&mut [0; 4]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{generic_json_lines, Buf};
    use super::*;

    /// Lines with everything JSON must escape, an aborted exchange and empty values.
    fn lines() -> Vec<AccessLine<'static>> {
        vec![
            AccessLine {
                method: "GET",
                path: "/a \"quoted\" \\ path\t\n\u{1}\u{1b}\u{7f}é/€",
                route: "passthrough",
                status: Some(200),
                duration_ms: 0.503781,
                bytes: 1024,
                request_id: "b7df58c1-dea5-483a-9569-18f0cd83436e",
                trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
                span_id: Some("00f067aa0ba902b7"),
            },
            AccessLine {
                method: "POST",
                path: "",
                route: "capture",
                status: None,
                duration_ms: 12.0,
                bytes: 0,
                request_id: "",
                trace_id: None,
                span_id: None,
            },
            AccessLine {
                method: "PROPFIND",
                path: "/",
                route: "upgrade",
                status: Some(u16::MAX),
                duration_ms: 1e-7,
                bytes: u64::MAX,
                request_id: "id with \"quotes\"",
                trace_id: None,
                span_id: None,
            },
        ]
    }

    /// A direct access log over `filter` writing to a buffer (at once: this thread never parks).
    fn direct(filter: &str) -> (AccessLog, Buf) {
        let out = Buf::default();
        let log = AccessLog::json(
            super::super::filter(filter),
            &Deferred::to(Box::new(out.clone())),
        );
        (log, out)
    }

    #[test]
    fn direct_lines_are_the_bytes_the_generic_formatter_writes_for_the_event() {
        let generic = generic_json_lines(|| {
            for line in &lines() {
                AccessLog::default().write(line);
            }
        });
        let (log, out) = direct("info");
        for line in &lines() {
            log.write(line);
        }
        assert_eq!(out.lines().len(), 3);
        assert_eq!(out.lines(), generic);
    }

    #[test]
    fn direct_lines_are_written_exactly_when_the_filter_lets_the_event_through() {
        let line = &lines()[0];
        let mut outcomes = Vec::new();
        for filter in [
            "info",
            "warn",
            "debug",
            "off",
            "access=off",
            "info,access=warn",
            "warn,access=info",
            "warn,acc=info",
            "access::sub=info",
            "oz_capture_proxy=debug",
            "info,[{request_id}]=off",
            "warn,[{request_id}]=info",
            "warn,[{message}]=info",
            "warn,[oz_check]=debug",
            "not a filter[",
        ] {
            let through_tracing = Buf::default();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(super::super::filter(filter))
                .with_writer(through_tracing.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || AccessLog::default().write(line));
            let (log, out) = direct(filter);
            log.write(line);
            let written = !out.0.lock().unwrap().is_empty();
            let expected = !through_tracing.0.lock().unwrap().is_empty();
            assert_eq!(written, expected, "filter {filter:?}");
            outcomes.push(written);
        }
        assert_eq!(
            outcomes,
            [
                true, false, true, false, false, false, true, true, false, false, false, true,
                false, false, true
            ],
            "the cases cover both outcomes"
        );
    }
}
