//! Logs never carry frame data, `additional_info`, secrets, verdict keys or tokens.
//!
//! The test captures every `tracing` event of the process at debug level, as JSON with span
//! fields and as plain text, while captures, logins, token renewals, refusals and Oz failures
//! run through the real proxy and simulator; then it looks for marker strings and for anything
//! shaped like frame data or an Oz token. It sets the *global* subscriber, because the proxy
//! logs from tasks on every runtime thread and from the blocking pool, which a thread-local
//! default would miss; that is why it is alone in this test binary.

mod support;

use std::sync::Mutex;

use oz_capture_proxy::capture::testdata::SampleCapture;
use oz_capture_proxy::oz_sim::{Endpoint, SimConfig};
use support::logs::Captured;
use support::stack::*;
use tracing_subscriber::layer::SubscriberExt as _;

const INFO_MARKER: &str = "ADDINFO-MARKER-5c1e";
const FRAME_MARKER: &str = "FRAMEMARKER9Q";
const EMAIL_MARKER: &str = "email-marker-77@example.com";
const PASSWORD_MARKER: &str = "PASSWORD-MARKER-e41d";
const TOKEN_MARKER: &str = "STATIC-TOKEN-MARKER-0b9a";
const HS_SECRET_MARKER: &str = "HS256-SECRET-MARKER-7c3e";
const SESSION_MARKER: &str = "SESSION-MARKER-19fa";
const COOKIE_MARKER: &str = "COOKIE-MARKER-a6d2";
/// A documentation address (RFC 5737) nothing else in the run uses.
const CLIENT_IP_MARKER: &str = "203.0.113.77";

/// True when `text` holds a run of at least 64 lowercase hex digits: the shape of an Oz access
/// token (docs/oz-api.md §1.1). UUIDs (request and folder ids) have hyphens and are shorter.
fn has_hex_token(text: &str) -> bool {
    let mut run = 0;
    for b in text.bytes() {
        if b.is_ascii_digit() || (b'a'..=b'f').contains(&b) {
            run += 1;
            if run >= 64 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

fn marked_capture(frames: usize, vc: bool) -> SampleCapture {
    let mut c = SampleCapture::new(frames, vc, "video_selfie_blank");
    c.additional_info = Some(format!(r#"{{"env":"{INFO_MARKER}"}}"#));
    c
}

#[test]
fn logs_never_contain_frames_additional_info_or_secrets() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::DEBUG)
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_writer({
                    let logs = logs.clone();
                    move || logs.clone()
                }),
        )
        .with(tracing_subscriber::fmt::layer().with_writer({
            let logs = logs.clone();
            move || logs.clone()
        }));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run_everything());

    let text = logs.text();
    assert!(
        text.contains("capture checked") && text.contains("oz call failed"),
        "the run was logged:\n{text}"
    );
    for (what, needle) in [
        ("additional_info", INFO_MARKER),
        ("frame data", FRAME_MARKER),
        ("the login email", EMAIL_MARKER),
        ("the login password", PASSWORD_MARKER),
        ("the static token", TOKEN_MARKER),
        ("a data URL", "data:image"),
        ("base64 of a JPEG", "/9j/"),
        ("base64 of a PNG", "iVBORw0KGgo"),
        ("the HS256 secret", HS_SECRET_MARKER),
        ("the bound session value", SESSION_MARKER),
        ("a rate-limit cookie value", COOKIE_MARKER),
        ("a client address", CLIENT_IP_MARKER),
        ("a verdict token (a JWS header)", "eyJ"),
    ] {
        if let Some(at) = text.find(needle) {
            let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            panic!("the logs contain {what}: {}", &text[start..end]);
        }
    }
    assert!(!has_hex_token(&text), "an Oz access token reached the logs");
    for line in KEY_LINES.lock().expect("key lines").iter() {
        assert!(
            !text.contains(line.as_str()),
            "the Ed25519 key reached the logs"
        );
    }
}

async fn run_everything() {
    // --- Login mode, marker credentials. ---
    let sim = SimConfig {
        token: None,
        email: EMAIL_MARKER.into(),
        password: PASSWORD_MARKER.into(),
        ..sim_config()
    };
    let yaml = format!(
        concat!(
            "oz:\n  url: \"http://{{oz}}\"\n  auth:\n",
            "    email: \"{email}\"\n    password: \"{password}\"\n",
            "{route}",
            "    - path: \"/check\"\n      on_result: respond\n",
            "    - path: \"/summary\"\n      on_result: forward\n      forward_body: summary\n",
        ),
        email = EMAIL_MARKER,
        password = PASSWORD_MARKER,
        route = forward_route("  best_frame: png\n"),
    );
    let stack = Stack::start(sim, &yaml).await;
    for vc in [false, true] {
        stack
            .post(CAPTURE, marked_capture(3, vc).to_json())
            .await
            .assert_from_backend();
        assert_eq!(
            stack
                .post("/check", marked_capture(2, vc).to_json())
                .await
                .status,
            200
        );
        stack
            .post("/summary", marked_capture(2, vc).to_json())
            .await
            .assert_from_backend();
    }
    // Token renewal after Oz expires every token.
    stack.oz().expire_all_tokens();
    stack
        .post(CAPTURE, marked_capture(2, false).to_json())
        .await
        .assert_from_backend();
    // Refusals that name a frame or a field, with the marker in the frame and in the info.
    let mut bad = marked_capture(3, true);
    bad.frames[1] = format!("data:image/jpeg;base64,{FRAME_MARKER}AAAA");
    stack
        .post(CAPTURE, bad.to_json())
        .await
        .problem(400, "invalid_frame");
    let mut bad = marked_capture(2, false);
    bad.frames[0] = format!("data:image/{FRAME_MARKER};base64,AAAA");
    stack
        .post(CAPTURE, bad.to_json())
        .await
        .problem(400, "invalid_frame");
    let mut bad = marked_capture(2, false);
    bad.action = FRAME_MARKER.into();
    stack
        .post(CAPTURE, bad.to_json())
        .await
        .problem(400, "unknown_action");
    let json = marked_capture(2, false).to_json();
    stack
        .post(CAPTURE, json[..json.len() - 40].to_vec())
        .await
        .problem(400, "invalid_json");
    // Oz failures: a 5xx on the upload, then on the poll.
    stack.oz().fail_next(Endpoint::Folders, 500, 1);
    stack
        .post(CAPTURE, marked_capture(2, false).to_json())
        .await
        .problem(502, "oz_error");
    stack.oz().fail_next(Endpoint::GetAnalysis, 503, 1);
    stack
        .post(CAPTURE, marked_capture(2, false).to_json())
        .await
        .assert_from_backend();
    // A login that Oz refuses: expire everything and make the next login fail.
    stack.oz().expire_all_tokens();
    stack.oz().fail_next(Endpoint::Auth, 401, 1);
    let rsp = stack
        .post(CAPTURE, marked_capture(2, false).to_json())
        .await;
    assert_eq!(rsp.status, 502, "{}", String::from_utf8_lossy(&rsp.body));
    stack.stop().await;

    // --- Static token mode, marker token; then Oz refuses it. ---
    let sim = SimConfig {
        token: Some(TOKEN_MARKER.into()),
        ..sim_config()
    };
    let yaml = format!(
        "oz:\n  url: \"http://{{oz}}\"\n  auth:\n    token: \"{TOKEN_MARKER}\"\n{}",
        forward_route("")
    );
    let stack = Stack::start(sim, &yaml).await;
    stack
        .post(CAPTURE, marked_capture(2, true).to_json())
        .await
        .assert_from_backend();
    stack.oz().expire_all_tokens();
    stack
        .post(CAPTURE, marked_capture(2, true).to_json())
        .await
        .problem(502, "oz_auth_failed");
    stack
        .post_with(
            CAPTURE,
            "application/octet-stream",
            &[],
            format!("container {FRAME_MARKER} {INFO_MARKER}").into_bytes(),
        )
        .await
        .problem(502, "oz_auth_failed");
    stack.stop().await;

    // --- Verdict tokens: an HS256 secret and an Ed25519 key, a late verdict, a lookup. ---
    let keys = support::bin::TempDir::new("log-keys");
    let secret = keys.write("hs.secret", format!("{HS_SECRET_MARKER}-0123456789abcdef"));
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .expect("an Ed25519 key")
        .serialize_pem();
    let pem_line = pem.lines().nth(1).expect("a PEM body line").to_owned();
    let key = keys.write("ed.pem", &pem);
    let yaml = format!(
        "{}capture:\n  wait_for_result: \"100ms\"\n  unchecked_images: strip\n  routes:\n    - path: \"{CAPTURE}\"\n      on_result: forward\n      late_verdict_path: \"/late\"\nverdict:\n  bind: \"header:x-session\"\n  keys:\n    - kid: \"hs\"\n      alg: HS256\n      secret_file: \"{}\"\n    - kid: \"ed\"\n      alg: EdDSA\n      private_key_file: \"{}\"\n",
        oz_token(""),
        secret.display(),
        key.display()
    );
    let stack = Stack::start_with_verdicts(sim_config(), &yaml).await;
    stack
        .oz()
        .set_processing_for(std::time::Duration::from_millis(300));
    stack
        .post_with(
            CAPTURE,
            "application/json",
            &[("x-session", SESSION_MARKER)],
            marked_capture(2, false).to_json(),
        )
        .await
        .assert_from_backend();
    stack.backend.wait_for(2).await;
    let folder = stack.backend.seen()[0].header("x-oz-folder-id").to_owned();
    let lookup = stack
        .verdict_get(&stack.proxy, &format!("/verdicts/{folder}"))
        .await;
    assert_eq!(lookup.status, 200);
    stack
        .post(CAPTURE, marked_capture(2, false).to_json())
        .await
        .problem(400, "missing_binding");
    stack.stop().await;
    KEY_LINES.lock().expect("key lines").push(pem_line);

    // --- The abuse controls: a replay, and refusals by client address and by cookie. ---
    let yaml = format!(
        "{}{}forwarding:\n  trusted_hops: 1\n",
        oz_token(""),
        forward_route(
            "  rate_limit:\n    per_client: { limit: 1, per: \"1m\" }\n    global: { limit: 3, per: \"1m\" }\n"
        )
    );
    let stack = Stack::start_with(sim_config(), &yaml, ProxyBuilder::replay_guard).await;
    let from_marker = |body: Vec<u8>| {
        let stack = &stack;
        async move {
            stack
                .post_with(
                    CAPTURE,
                    "application/json",
                    &[("x-forwarded-for", CLIENT_IP_MARKER)],
                    body,
                )
                .await
        }
    };
    let capture = marked_capture(2, false).to_json();
    from_marker(capture.clone()).await.assert_from_backend();
    from_marker(capture.clone())
        .await
        .problem(429, "rate_limited");
    stack
        .post(CAPTURE, capture)
        .await
        .problem(409, "capture_replayed");
    stack.stop().await;
    let yaml = format!(
        "{}{}",
        oz_token(""),
        forward_route(
            "  rate_limit:\n    per_client: { limit: 1, per: \"1m\", key: \"cookie:sid\" }\n"
        )
    );
    let stack = Stack::start_with(sim_config(), &yaml, ProxyBuilder::replay_guard).await;
    let cookie = format!("sid={COOKIE_MARKER}");
    for (n, status) in [(1, 200), (2, 429)] {
        let rsp = stack
            .post_with(
                CAPTURE,
                "application/json",
                &[("cookie", &cookie)],
                SampleCapture::numbered(n, 2, false, "video_selfie_blank").to_json(),
            )
            .await;
        assert_eq!(rsp.status, status);
    }
    stack.stop().await;
}

/// The Ed25519 key's PEM lines made by [`run_everything`], looked for in the logs afterwards.
static KEY_LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
