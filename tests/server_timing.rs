//! `capture.server_timing` (README, "What the backend and the client see"): a capture's answer
//! says how long each phase took in a W3C `Server-Timing` field, in forward and respond mode, with
//! fixed names and durations only; off by default; a backend's own field is kept beside it.
//! Harness: `support::stack`.

mod support;

use http::HeaderMap;
use oz_capture_proxy::capture::testdata::sample_capture_json;
use support::stack::*;

/// A respond route on `/check`, to add after [`forward_route`]'s routes.
const RESPOND_ROUTE: &str = "    - path: \"/check\"\n      on_result: respond\n";

/// Every `Server-Timing` entry of an answer, all its fields read as one list (RFC 9110 §5.3).
fn entries(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("server-timing")
        .iter()
        .flat_map(|v| v.to_str().expect("ASCII").split(','))
        .map(|e| e.trim().to_owned())
        .collect()
}

/// The names of the proxy's entries, each checked to be exactly `name;dur=<ms>` with at most
/// three decimals and nothing else, so no value from the capture can hide in one.
fn proxy_phases(entries: &[String]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            let (name, dur) = e
                .split_once(";dur=")
                .unwrap_or_else(|| panic!("{e:?} is not name;dur=<ms>"));
            let (whole, decimals) = dur.split_once('.').unwrap_or((dur, ""));
            assert!(
                !whole.is_empty()
                    && whole.bytes().all(|b| b.is_ascii_digit())
                    && decimals.len() <= 3
                    && decimals.bytes().all(|b| b.is_ascii_digit()),
                "{e:?}: the duration is not milliseconds with up to three decimals"
            );
            assert!(dur.parse::<f64>().expect("a number") >= 0.0, "{e:?}");
            name.to_owned()
        })
        .collect()
}

/// With the setting on, a forwarded capture's answer times `parse`, `zip`, `upload`,
/// `analyses` and `backend`, in that order; a respond route's the same but `backend`.
#[tokio::test]
async fn capture_answers_time_each_phase_in_forward_and_respond_mode() {
    let yaml = format!(
        "{}{}{RESPOND_ROUTE}",
        oz_token(""),
        forward_route("  server_timing: true\n")
    );
    let stack = Stack::start(sim_config(), &yaml).await;
    let body = sample_capture_json(3, false, "video_selfie_blank");

    let forwarded = stack.post(CAPTURE, body.clone()).await;
    forwarded.assert_from_backend();
    assert_eq!(
        proxy_phases(&entries(&forwarded.headers)),
        ["parse", "zip", "upload", "analyses", "backend"]
    );

    let answered = stack.post("/check", body).await;
    assert_eq!(answered.status, 200);
    assert_eq!(
        proxy_phases(&entries(&answered.headers)),
        ["parse", "zip", "upload", "analyses"]
    );
    stack.stop().await;
}

/// Off by default: no `Server-Timing` on a capture's answer, unless its route turns it on.
#[tokio::test]
async fn server_timing_is_off_unless_the_route_turns_it_on() {
    let yaml = format!(
        "{}{}{RESPOND_ROUTE}      server_timing: true\n",
        oz_token(""),
        forward_route("")
    );
    let stack = Stack::start(sim_config(), &yaml).await;
    let body = sample_capture_json(2, false, "video_selfie_blank");

    let forwarded = stack.post(CAPTURE, body.clone()).await;
    forwarded.assert_from_backend();
    assert_eq!(forwarded.header("server-timing"), None);

    let answered = stack.post("/check", body).await;
    assert_eq!(answered.status, 200);
    assert_eq!(
        proxy_phases(&entries(&answered.headers)),
        ["parse", "zip", "upload", "analyses"]
    );
    stack.stop().await;
}

/// The backend's own `Server-Timing` reaches the client as it sent it, and the proxy's entries
/// come after it in the same list.
#[tokio::test]
async fn backend_server_timing_is_kept_beside_the_proxys() {
    let backend = legacy_backend_with(|_| {
        Some(
            legacy_answer()
                .header("server-timing", "db;dur=53, cache;desc=\"Cache Read\"")
                .header("server-timing", "app;dur=47.2"),
        )
    })
    .await;
    let yaml = format!(
        "{}{}",
        oz_token(""),
        forward_route("  server_timing: true\n")
    );
    let stack = Stack::start_with_backend(sim_config(), &yaml, backend).await;

    let rsp = stack
        .post(CAPTURE, sample_capture_json(2, false, "video_selfie_blank"))
        .await;
    rsp.assert_from_backend();
    let all = entries(&rsp.headers);
    assert_eq!(
        all[..3],
        ["db;dur=53", "cache;desc=\"Cache Read\"", "app;dur=47.2"]
    );
    assert_eq!(
        proxy_phases(&all[3..]),
        ["parse", "zip", "upload", "analyses", "backend"]
    );
    stack.stop().await;
}

/// An OzCapsula container is sent to Oz as it came: its answer has no `parse` or `zip`.
#[tokio::test]
async fn container_capture_is_timed_without_parse_or_zip() {
    let yaml = format!(
        "{}{}",
        oz_token(""),
        forward_route("  server_timing: true\n")
    );
    let stack = Stack::start(sim_config(), &yaml).await;
    let container: Vec<u8> = b"OZCAPSULA\x00\x01\x02\xff\xfe"
        .iter()
        .copied()
        .chain((0..=255u8).cycle().take(5000))
        .collect();

    let rsp = stack
        .post_with(CAPTURE, "application/octet-stream", &[], container)
        .await;
    rsp.assert_from_backend();
    assert_eq!(
        proxy_phases(&entries(&rsp.headers)),
        ["upload", "analyses", "backend"]
    );
    stack.stop().await;
}
