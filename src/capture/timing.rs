//! How long each phase of a capture took, written as a W3C `Server-Timing` field
//! (<https://www.w3.org/TR/server-timing/>) when the route says `capture.server_timing`.
//!
//! The field holds fixed metric names and durations only, never a value from the capture: a
//! duration in milliseconds says how big a capture was and how busy Oz is, no more than the
//! response time already does.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue};

/// `Server-Timing`; the `http` crate has no constant for it.
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// The phases of one capture; a phase that did not run is `None` and left out of the field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// When parsing began, by the wall clock: the trace's `capture.parse` and `capture.zip`
    /// spans start here and follow each other (they run back to back on a capture thread).
    pub started: Option<SystemTime>,
    /// Parsing the body and checking its action and best frames (frames mode only).
    pub parse: Option<Duration>,
    /// Decoding the frames, building the ZIP and the multipart body (frames mode only).
    pub zip: Option<Duration>,
    /// The Oz upload (`OzClient::create_folder`).
    pub upload: Option<Duration>,
    /// Starting the analyses and waiting for the verdict (`OzClient::verdict`).
    pub analyses: Option<Duration>,
    /// Forward mode: from sending the checked request to the backend's response head.
    pub backend: Option<Duration>,
}

impl Timings {
    /// The field value, entries in the order the phases ran: `parse;dur=1.204, zip;dur=3.51`.
    /// Several `Server-Timing` fields make one list (RFC 9110 §5.3), so a backend's own field
    /// stays as it is and this one goes beside it.
    pub fn header_value(&self) -> HeaderValue {
        let mut out = String::new();
        for (name, dur) in [
            ("parse", self.parse),
            ("zip", self.zip),
            ("upload", self.upload),
            ("analyses", self.analyses),
            ("backend", self.backend),
        ] {
            let Some(dur) = dur else { continue };
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "{name};dur={}", millis(dur));
        }
        HeaderValue::from_str(&out).expect("metric names and decimal numbers are visible ASCII")
    }

    /// Whether no phase was timed (then there is no field to send).
    pub fn is_empty(&self) -> bool {
        Timings {
            started: None,
            ..*self
        } == Timings::default()
    }

    /// `capture.parse` and `capture.zip` by the wall clock: (start, end) of each, when both ran.
    pub fn transform_spans(&self) -> Option<[(SystemTime, SystemTime); 2]> {
        let (start, parse, zip) = (self.started?, self.parse?, self.zip?);
        let parsed = start + parse;
        Some([(start, parsed), (parsed, parsed + zip)])
    }
}

/// Milliseconds with at most three decimals and at least one (`20.0`, `3.51`, `1.204`): finer
/// than a microsecond is noise, and a `dur` is a decimal number either way.
fn millis(d: Duration) -> String {
    let mut s = format!("{:.3}", d.as_secs_f64() * 1000.0);
    while s.ends_with('0') && !s.ends_with(".0") {
        s.pop();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::{millis, Timings};
    use std::time::Duration;

    #[test]
    fn durations_are_milliseconds_with_up_to_three_decimals() {
        assert_eq!(millis(Duration::from_micros(1204)), "1.204");
        assert_eq!(millis(Duration::from_micros(3510)), "3.51");
        assert_eq!(millis(Duration::from_millis(20)), "20.0");
        assert_eq!(millis(Duration::from_nanos(1_204_999)), "1.205");
        assert_eq!(millis(Duration::ZERO), "0.0");
    }

    #[test]
    fn phases_that_did_not_run_are_left_out_in_order() {
        let t = Timings {
            upload: Some(Duration::from_millis(20)),
            analyses: Some(Duration::from_micros(130_200)),
            backend: Some(Duration::from_micros(2700)),
            ..Timings::default()
        };
        assert_eq!(
            t.header_value(),
            "upload;dur=20.0, analyses;dur=130.2, backend;dur=2.7"
        );
        assert!(Timings::default().is_empty());
        assert!(!t.is_empty());
    }
}
