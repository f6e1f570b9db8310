//! Log output: JSON lines by default, plain text on request, filtered by `log.level`.
//!
//! Logs carry method, path, status, durations, sizes and request ids; never bodies, frames,
//! `additional_info`, tokens or query strings.
//!
//! JSON lines come from tracing-subscriber's JSON formatter, except the access log: one line per
//! request is the hottest log call by far, and the generic formatter (serde through an `io::Write`
//! adaptor that re-checks UTF-8 on every small write) cost a fifth of the proxy's user-space
//! instructions per request (BENCHMARKS.md, "What was profiled and changed"). [`JsonLines`]
//! writes those lines directly, byte for byte as the generic formatter would. In the proxy itself
//! ([`init_deferred`] with JSON lines) access lines skip `tracing` altogether: [`AccessLog`]
//! (module `access`) writes them with the same formatter straight into the [`Deferred`] buffer.
//!
//! The proxy writes its lines through [`Deferred`] (`runtime::deferred`), which holds them until
//! the runtime's worker is about to go idle instead of costing a `write` on the request path.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io;
use std::time::UNIX_EPOCH;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Json, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;
use crate::runtime::deferred::Deferred;

/// Target of the access log lines (`proxy::observe`).
const ACCESS_TARGET: &str = "access";

mod access;

pub use access::{AccessLine, AccessLog};

/// Installs the global subscriber (the one piece of process state, owned by `main`), writing
/// each line to stdout at once.
pub fn init(format: LogFormat, level: &str) {
    install(format, level, io::stdout);
}

/// Installs the global subscriber writing through `deferred`, which the caller flushes when its
/// runtime's workers park and before the process exits. Returns the access log to hand to the
/// proxy: with JSON lines it writes into `deferred` directly, respecting `level`.
pub fn init_deferred(format: LogFormat, level: &str, deferred: &Deferred) -> AccessLog {
    let installed = install(format, level, deferred.clone());
    match format {
        LogFormat::Json if installed => AccessLog::json(filter(level), deferred),
        // Text lines come from tracing-subscriber's own formatter; and if another subscriber
        // was there first, the lines must go where it sends them.
        _ => AccessLog::default(),
    }
}

/// `log.level` as a filter; config validation refuses a bad one, `info` stands in regardless.
fn filter(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// Whether the subscriber was installed: a second init (tests, demo) keeps the first one.
fn install<W>(format: LogFormat, level: &str, writer: W) -> bool
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_writer(writer);
    let result = match format {
        LogFormat::Json => builder.json().event_format(JsonLines::default()).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.is_ok()
}

/// The JSON event format: flattened fields, no current span object, span list when inside
/// spans. Access-log events outside any span are written by a direct path; every other event
/// goes through tracing-subscriber's formatter. Both give the same bytes.
pub struct JsonLines {
    generic: format::Format<Json, SystemTime>,
}

impl Default for JsonLines {
    fn default() -> Self {
        JsonLines {
            generic: format::format()
                .json()
                .flatten_event(true)
                .with_current_span(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Inside a span the generic formatter adds a span list: leave those lines to it.
        if event.metadata().target() != ACCESS_TARGET
            || event.parent().is_some()
            || ctx.lookup_current().is_some()
        {
            return self.generic.format_event(ctx, writer, event);
        }
        write_event_line(&mut writer, event)
    }
}

/// One event outside any span as a flattened JSON line.
fn write_event_line(writer: &mut Writer<'_>, event: &Event<'_>) -> fmt::Result {
    let meta = event.metadata();
    write_flat_line(
        writer,
        |w| write_level(w, meta.level()),
        |fields| event.record(fields),
        |w| write_end(w, meta.target()),
    )
}

/// One flattened JSON line outside any span: timestamp, then what `level` ([`write_level`]),
/// `record` (the fields) and `end` ([`write_end`]) write. Events and the access log's direct
/// path (`access`) both come through here; the access log passes copies of what `write_level`
/// and `write_end` rendered once, since its level and target never change.
fn write_flat_line<W: fmt::Write>(
    writer: &mut W,
    level: impl FnOnce(&mut W) -> fmt::Result,
    record: impl FnOnce(&mut JsonFieldsVisitor<'_, W>),
    end: impl FnOnce(&mut W) -> fmt::Result,
) -> fmt::Result {
    writer.write_str("{\"timestamp\":\"")?;
    write_timestamp(writer)?;
    level(writer)?;
    let mut fields = JsonFieldsVisitor {
        writer,
        result: Ok(()),
    };
    record(&mut fields);
    fields.result?;
    end(writer)
}

/// `","level":"INFO"`: closes the timestamp, then the level.
fn write_level(w: &mut impl fmt::Write, level: &Level) -> fmt::Result {
    w.write_str("\",\"level\":\"")?;
    w.write_str(level.as_str())?;
    w.write_char('"')
}

/// `,"target":"access"}` and the newline.
fn write_end(w: &mut impl fmt::Write, target: &str) -> fmt::Result {
    w.write_str(",\"target\":")?;
    write_json_str(w, target)?;
    w.write_str("}\n")
}

/// The current time as [`SystemTime`] writes it (RFC 3339, UTC, microseconds), with the date and
/// time of day formatted once per second per thread: through `fmt` they were a sixth of the cost
/// of an access line.
fn write_timestamp(w: &mut impl fmt::Write) -> fmt::Result {
    thread_local! {
        /// The second last written on this thread, as `YYYY-MM-DDTHH:MM:SS.`: kept as text, so
        /// writing it costs no UTF-8 check.
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    /// 10000-01-01T00:00:00Z: from there on the generic format writes a `+` before the year.
    const YEAR_10000: u64 = 253_402_300_800;
    let since_epoch = match std::time::SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) if d.as_secs() < YEAR_10000 => d,
        _ => return SystemTime.format_time(&mut Writer::new(w)),
    };
    let secs = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(cached, date_time)| {
        if *cached != secs {
            date_time.clear();
            date_time
                .push_str(std::str::from_utf8(&format_date_time(secs)).map_err(|_| fmt::Error)?);
            date_time.push('.');
            *cached = secs;
        }
        w.write_str(date_time)
    })?;
    // Six digits: a leading 1 makes itoa keep the zeros, and is dropped.
    let mut micros = itoa::Buffer::new();
    w.write_str(&micros.format(1_000_000 + since_epoch.subsec_micros())[1..])?;
    w.write_char('Z')
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time before year 10000 (proleptic Gregorian calendar, days
/// to civil date as in Howard Hinnant's `civil_from_days`).
fn format_date_time(secs: u64) -> [u8; 19] {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let mut out = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for digit in out[at..at + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, rem / 3_600);
    put(14, 2, rem % 3_600 / 60);
    put(17, 2, rem % 60);
    out
}

/// Writes `,"name":value` per field, typed as tracing-serde's `SerdeMapVisitor` types them:
/// bool, integers and floats as JSON values, strings and everything else (`Debug`, `Display`,
/// errors, 128-bit integers, through `record_debug`) as JSON strings. [`Self::field`] takes the
/// key as a writer of its own, so a line whose field names are known in advance (`access`) can
/// copy keys that [`write_key`] rendered once instead of escaping each name every time.
struct JsonFieldsVisitor<'a, W> {
    writer: &'a mut W,
    result: fmt::Result,
}

impl<W: fmt::Write> JsonFieldsVisitor<'_, W> {
    /// One field: `key` writes `,"name":`, then `value` the value.
    fn field(
        &mut self,
        key: impl FnOnce(&mut W) -> fmt::Result,
        value: impl FnOnce(&mut W) -> fmt::Result,
    ) {
        if self.result.is_ok() {
            self.result = key(self.writer).and_then(|()| value(self.writer));
        }
    }

    fn named(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        self.field(|w| write_key(w, field.name()), value);
    }
}

impl<W: fmt::Write> Visit for JsonFieldsVisitor<'_, W> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.named(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.named(field, |w| write_u64(w, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.named(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.named(field, |w| write_f64(w, value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.named(field, |w| write_json_str(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.named(field, |w| {
            w.write_char('"')?;
            write!(JsonEscape(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// `,"name":`, the start of every field after the level.
fn write_key(w: &mut impl fmt::Write, name: &str) -> fmt::Result {
    w.write_char(',')?;
    write_json_str(w, name)?;
    w.write_char(':')
}

fn write_u64(w: &mut impl fmt::Write, value: u64) -> fmt::Result {
    w.write_str(itoa::Buffer::new().format(value))
}

/// serde_json's own float text (shortest round-trip, `null` when not finite), written into a
/// stack buffer: its formatter needs at most 24 bytes.
fn write_f64(w: &mut impl fmt::Write, value: f64) -> fmt::Result {
    let mut buf = [0u8; 32];
    let len = {
        let mut out: &mut [u8] = &mut buf;
        serde_json::to_writer(&mut out, &value).map_err(|_| fmt::Error)?;
        32 - out.len()
    };
    w.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
}

/// `s` as a JSON string. Always inlined: a call apiece was a tenth of an access line's cost,
/// and what is inlined is small since the escaping itself is out of line.
#[inline(always)]
fn write_json_str(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    JsonEscape(w).write_str(s)?;
    w.write_char('"')
}

/// Whether `bytes` hold a `"`, a `\\` or a control character: what [`JsonEscape`] escapes.
/// Paths, ids and methods almost never do, and this check runs on every one of them, so it
/// looks at eight bytes a step ("determine if a word has a byte less than n" and "has a zero
/// byte" from Sean Anderson's Bit Twiddling Hacks; both are exact about whether any byte does).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let any_byte_below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH;
    let any_byte_is = |word: u64, b: u8| any_byte_below(word ^ (ONES * u64::from(b)), 1);
    let mut words = bytes.chunks_exact(8);
    let escapes_in_words = words.by_ref().any(|chunk| {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of exactly 8 bytes"));
        any_byte_below(word, 0x20) | any_byte_is(word, b'"') | any_byte_is(word, b'\\') != 0
    });
    escapes_in_words
        || words
            .remainder()
            .iter()
            .any(|&b| b == b'"' || b == b'\\' || b < 0x20)
}

/// Escapes what it is given as serde_json does inside a string: `"` and `\`, the short forms
/// `\b \f \n \r \t`, `\u00xx` (lowercase) for the other control characters, nothing else.
struct JsonEscape<'a, W: fmt::Write + ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for JsonEscape<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        // Check first, then copy in one go.
        if needs_escape(bytes) {
            write_escaped(self.0, s)
        } else {
            self.0.write_str(s)
        }
    }
}

/// `s` with what [`JsonEscape`] escapes escaped. Apart from the hot path, so that path stays
/// small enough to be inlined into every field.
#[cold]
fn write_escaped<W: fmt::Write + ?Sized>(w: &mut W, s: &str) -> fmt::Result {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0C => "\\f",
            0x00..=0x1F => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices fall on character boundaries.
        w.write_str(&s[start..i])?;
        if short.is_empty() {
            write!(w, "\\u{b:04x}")?;
        } else {
            w.write_str(short)?;
        }
        start = i + 1;
    }
    w.write_str(&s[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A `MakeWriter` collecting everything written into one buffer.
    #[derive(Clone, Default)]
    pub(super) struct Buf(pub(super) Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    impl Buf {
        /// The lines written, each with its timestamp value blanked.
        pub(super) fn lines(&self) -> Vec<String> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .map(|l| {
                    let (head, rest) = l.split_once("\"timestamp\":\"").expect("timestamp");
                    let (_, tail) = rest.split_once('"').expect("closing quote");
                    format!("{head}\"timestamp\":\"T\"{tail}")
                })
                .collect()
        }
    }

    /// Formats every event with the direct path, whatever its target.
    struct DirectOnly;

    impl<S, N> FormatEvent<S, N> for DirectOnly
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'w> FormatFields<'w> + 'static,
    {
        fn format_event(
            &self,
            _: &FmtContext<'_, S, N>,
            mut writer: Writer<'_>,
            event: &Event<'_>,
        ) -> fmt::Result {
            write_event_line(&mut writer, event)
        }
    }

    /// Runs `emit` under the generic JSON formatter (as configured before `JsonLines`) and
    /// under `other`, and returns both outputs.
    fn both<E>(other: E, emit: impl Fn()) -> (Vec<String>, Vec<String>)
    where
        E: for<'a> FormatEvent<tracing_subscriber::Registry, format::JsonFields>
            + Send
            + Sync
            + 'static,
    {
        let generic = generic_json_lines(&emit);
        let fast = Buf::default();
        let sub = tracing_subscriber::fmt()
            .with_writer(fast.clone())
            .json()
            .event_format(other)
            .finish();
        tracing::subscriber::with_default(sub, &emit);
        (generic, fast.lines())
    }

    /// The lines `emit` logs through the generic JSON formatter, as configured before
    /// `JsonLines`.
    pub(super) fn generic_json_lines(emit: impl Fn()) -> Vec<String> {
        let generic = Buf::default();
        let sub = tracing_subscriber::fmt()
            .with_writer(generic.clone())
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .finish();
        tracing::subscriber::with_default(sub, emit);
        generic.lines()
    }

    #[test]
    fn direct_lines_are_the_bytes_the_generic_formatter_writes() {
        let (generic, fast) = both(DirectOnly, || {
            let method = http::Method::GET;
            let id = "b7df58c1-dea5-483a-9569-18f0cd83436e";
            tracing::info!(
                target: "access",
                method = %method,
                path = "/a \"quoted\" \\ path\t\n\u{1}\u{1b}\u{7f}é/€",
                route = "passthrough",
                status = 200u16,
                duration_ms = 0.503781,
                bytes = 1024u64,
                request_id = id,
            );
            tracing::info!(
                target: "access",
                method = %method,
                path = "",
                route = "capture",
                status = "aborted",
                duration_ms = 12.0,
                bytes = 0u64,
                request_id = "",
            );
            let err = std::io::Error::other("broken \"pipe\"");
            tracing::warn!(
                target: "access",
                negative = -3i64,
                most_negative = i64::MIN,
                zero = 0u64,
                largest = u64::MAX,
                big = 1u128 << 100,
                nan = f64::NAN,
                tiny = 1e-300,
                flag = true,
                debug = ?("x", 1),
                error = &err as &dyn std::error::Error,
                "a message with \u{8} and \u{c}"
            );
        });
        assert_eq!(fast.len(), 3);
        assert_eq!(fast, generic);
    }

    #[test]
    fn needs_escape_finds_every_byte_json_escapes_at_every_position() {
        let byte_wise = |s: &[u8]| s.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20);
        for len in 0..=24 {
            for at in 0..len {
                for b in 0..=255u8 {
                    // Around `b`: bytes next to the thresholds, and UTF-8 continuation bytes.
                    for fill in [b' ', b'!', b'#', b'[', b']', 0x7f, 0x80, 0xff] {
                        let mut s = vec![fill; len];
                        s[at] = b;
                        assert_eq!(needs_escape(&s), byte_wise(&s), "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn dates_and_times_of_known_instants() {
        let text = |secs| String::from_utf8(format_date_time(secs).to_vec()).unwrap();
        assert_eq!(text(0), "1970-01-01T00:00:00");
        assert_eq!(text(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(text(951_868_799), "2000-02-29T23:59:59");
        assert_eq!(text(951_868_800), "2000-03-01T00:00:00");
        assert_eq!(text(1_709_164_800), "2024-02-29T00:00:00");
        assert_eq!(text(4_102_444_799), "2099-12-31T23:59:59");
        assert_eq!(text(253_402_300_799), "9999-12-31T23:59:59");
    }

    #[test]
    fn timestamps_read_like_the_generic_ones() {
        // Both take their own `now`; retry when a second boundary falls between them.
        for _ in 0..10 {
            let (mut ours, mut theirs) = (String::new(), String::new());
            write_timestamp(&mut Writer::new(&mut ours)).unwrap();
            SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            assert_eq!(ours.len(), theirs.len(), "{ours} vs {theirs}");
            if ours[..19] == theirs[..19] {
                assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.', "{ours}");
                return;
            }
        }
        panic!("the two clocks never agreed on the second");
    }

    #[test]
    fn json_lines_match_the_generic_formatter_in_and_out_of_spans() {
        let (generic, fast) = both(JsonLines::default(), || {
            tracing::info!(target: "access", method = "GET", status = 200u64, duration_ms = 0.25);
            tracing::info!(target: "oz_capture_proxy::server", listen = "127.0.0.1:8080", "ready");
            let span = tracing::info_span!("oz_check", request_id = "r-1");
            let _entered = span.enter();
            tracing::info!(target: "access", status = 502u64, "inside a span");
        });
        assert_eq!(fast.len(), 3);
        assert!(fast[2].contains("\"spans\":[{"), "{}", fast[2]);
        assert_eq!(fast, generic);
    }
}
