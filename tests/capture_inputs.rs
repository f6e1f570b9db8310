//! End-to-end tests of what a capture route refuses, and when: bad bodies, size limits (with
//! `Content-Length`, `Expect: 100-continue` and chunked), content types, path spellings, and
//! overload. Every refusal must leave Oz and the backend untouched. Harness: `support::stack`.

mod support;

use oz_capture_proxy::capture::testdata::{
    data_url, sample_capture_json, sample_jpeg, SampleCapture,
};
use serde_json::Value;
use support::stack::*;

/// Routes with small limits next to the default one.
const FEW_FRAMES: &str = "/capture/few-frames";
const SMALL_FRAMES: &str = "/capture/small-frames";
const TINY: &str = "/capture/tiny";
const TINY_LIMIT: u64 = 4096;

fn limits_yaml() -> String {
    format!(
        concat!(
            "{oz}capture:\n",
            "  wait_for_result: \"5s\"\n",
            // The samples carry both best frames, as the Web SDK's do.
            "  unchecked_images: strip\n",
            "  routes:\n",
            "    - path: \"{capture}\"\n      on_result: forward\n",
            "    - path: \"{few}\"\n      on_result: forward\n      max_frames: 3\n",
            "    - path: \"{small}\"\n      on_result: forward\n      max_frame_bytes: 64\n",
            "    - path: \"{tiny}\"\n      on_result: forward\n      max_body_bytes: {limit}\n",
        ),
        oz = oz_token(""),
        capture = CAPTURE,
        few = FEW_FRAMES,
        small = SMALL_FRAMES,
        tiny = TINY,
        limit = TINY_LIMIT,
    )
}

/// A sample capture changed by `f`.
fn capture_with(frames: usize, vc: bool, f: impl FnOnce(&mut SampleCapture)) -> Vec<u8> {
    let mut c = SampleCapture::new(frames, vc, "video_selfie_blank");
    f(&mut c);
    c.to_json()
}

/// A 3-frame capture with every `/` escaped (PHP's `json_encode`), whose frame `index` is
/// replaced by `literal`, written into the JSON as it is (escapes and all).
fn escaped_with_frame(index: usize, literal: &str) -> Vec<u8> {
    let mut c = SampleCapture::new(3, false, "video_selfie_blank");
    c.escape_slashes = true;
    c.frames[index] = "REPLACED".into();
    let json = String::from_utf8(c.to_json()).expect("UTF-8");
    json.replacen("REPLACED", literal, 1).into_bytes()
}

/// A sample capture with `entry` (a key and its value) added first, at the top level or under
/// `from_virtual_camera`.
fn with_entry(vc: bool, entry: &str) -> Vec<u8> {
    let json = String::from_utf8(sample_capture_json(2, vc, "video_selfie_blank")).expect("UTF-8");
    let json = if vc {
        json.replacen(
            r#""from_virtual_camera":{"#,
            &format!(r#""from_virtual_camera":{{{entry},"#),
            1,
        )
    } else {
        json.replacen('{', &format!("{{{entry},"), 1)
    };
    json.into_bytes()
}

/// One bad request and the refusal it must get.
struct Case {
    name: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    /// Problem members that must be present with these values.
    members: Vec<(&'static str, Value)>,
}

fn case(name: &'static str, body: Vec<u8>, status: u16, code: &'static str) -> Case {
    Case {
        name,
        path: CAPTURE,
        content_type: Some("application/json"),
        body,
        status,
        code,
        members: Vec::new(),
    }
}

impl Case {
    fn on(mut self, path: &'static str) -> Case {
        self.path = path;
        self
    }

    fn content_type(mut self, ct: Option<&'static str>) -> Case {
        self.content_type = ct;
        self
    }

    fn member(mut self, key: &'static str, value: impl Into<Value>) -> Case {
        self.members.push((key, value.into()));
        self
    }
}

fn bad_inputs() -> Vec<Case> {
    let sample = sample_capture_json(3, false, "video_selfie_blank");
    vec![
        case(
            "corrupt base64",
            capture_with(3, false, |c| {
                c.frames[1] = "data:image/jpeg;base64,/9j/4AAQ*@@@".into()
            }),
            400,
            "invalid_frame",
        )
        .member("field", "frame_list")
        .member("frame", 1),
        case(
            "base64 of text, not an image",
            capture_with(3, true, |c| {
                c.frames[2] = data_url("image/jpeg", b"this is plain text, not a JPEG at all")
            }),
            400,
            "invalid_frame",
        )
        .member("field", "from_virtual_camera.frame_list")
        .member("frame", 2),
        case(
            "escaped frame whose escape is not base64",
            escaped_with_frame(1, r"data:image\/jpeg;base64,\/9j\/4AAQ\n\/\/\/"),
            400,
            "invalid_frame",
        )
        .member("field", "frame_list")
        .member("frame", 1),
        case(
            "frame with an invalid JSON escape",
            escaped_with_frame(2, r"data:image\/jpeg;base64,\x9j\/4AAQ"),
            400,
            "invalid_frame",
        )
        .member("field", "frame_list")
        .member("frame", 2),
        case(
            "gif data URL",
            capture_with(2, false, |c| {
                c.frames[0] = data_url("image/gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")
            }),
            400,
            "invalid_frame",
        )
        .member("frame", 0),
        case(
            "no frame_list at all",
            br#"{"action":"video_selfie_blank","additional_info":"env"}"#.to_vec(),
            400,
            "no_frames",
        )
        .member("field", "frame_list"),
        case(
            "empty frame_list",
            capture_with(0, false, |_| {}),
            400,
            "no_frames",
        ),
        case(
            "empty frame_list under from_virtual_camera",
            capture_with(0, true, |_| {}),
            400,
            "no_frames",
        )
        .member("field", "from_virtual_camera.frame_list"),
        case(
            "null frame_list",
            br#"{"action":"video_selfie_blank","frame_list":null,"additional_info":"env"}"#
                .to_vec(),
            400,
            "no_frames",
        ),
        case(
            "truncated JSON",
            sample[..sample.len() / 2].to_vec(),
            400,
            "invalid_json",
        ),
        case("empty body", Vec::new(), 400, "invalid_json"),
        case("JSON array", b"[1,2,3]".to_vec(), 400, "invalid_json"),
        case(
            "action as a number",
            br#"{"action":7,"frame_list":["x"],"additional_info":"env"}"#.to_vec(),
            400,
            "invalid_field",
        )
        .member("field", "action"),
        case(
            "frame_list as a string",
            br#"{"action":"video_selfie_blank","frame_list":"data:image/jpeg;base64,AAAA","additional_info":"env"}"#.to_vec(),
            400,
            "invalid_field",
        )
        .member("field", "frame_list"),
        case(
            "frame element as a number",
            br#"{"action":"video_selfie_blank","frame_list":[42],"additional_info":"env"}"#
                .to_vec(),
            400,
            "invalid_frame",
        )
        .member("frame", 0),
        case(
            "additional_info missing",
            capture_with(2, false, |c| c.additional_info = None),
            400,
            "invalid_field",
        )
        .member("field", "additional_info"),
        case(
            "additional_info missing under from_virtual_camera",
            capture_with(2, true, |c| c.additional_info = None),
            400,
            "invalid_field",
        )
        .member("field", "from_virtual_camera.additional_info"),
        case(
            "additional_info as an object",
            br#"{"action":"video_selfie_blank","frame_list":["x"],"additional_info":{"a":1}}"#
                .to_vec(),
            400,
            "invalid_field",
        )
        .member("field", "additional_info"),
        // Go's encoding/json and ASP.NET Core would bind these to the field the proxy skipped.
        case(
            "frame_list in capitals",
            with_entry(false, &format!(r#""FRAME_LIST":["{}"]"#, data_url("image/jpeg", &sample_jpeg(1)))),
            400,
            "invalid_field",
        )
        .member("field", "FRAME_LIST"),
        case(
            "best_frame in another case under from_virtual_camera",
            with_entry(true, r#""Best_Frame":null"#),
            400,
            "invalid_field",
        )
        .member("field", "from_virtual_camera.Best_Frame"),
        case(
            "additional_info with an escaped dotted capital I",
            with_entry(false, r#""additional_\u0130nfo":"x""#),
            400,
            "invalid_field",
        )
        .member("field", "additional_\u{130}nfo"),
        case(
            "frame_list spelt with an escape, next to the plain one",
            with_entry(false, r#""frame\u005flist":["x"]"#),
            400,
            "invalid_field",
        )
        .member("field", "frame_list"),
        case(
            "a best frame at the top level of the virtual-camera shape",
            String::from_utf8(sample_capture_json(2, true, "video_selfie_blank"))
                .expect("UTF-8")
                .replacen(
                    r#""best_frame":null"#,
                    &format!(r#""best_frame":"{}""#, data_url("image/jpeg", &sample_jpeg(1))),
                    1,
                )
                .into_bytes(),
            400,
            "invalid_field",
        )
        .member("field", "best_frame"),
        case(
            "too many frames",
            sample_capture_json(4, false, "video_selfie_blank"),
            400,
            "too_many_frames",
        )
        .on(FEW_FRAMES)
        .member("limit", 3),
        case(
            "frame too large",
            sample_capture_json(2, false, "video_selfie_blank"),
            400,
            "frame_too_large",
        )
        .on(SMALL_FRAMES)
        .member("frame", 0)
        .member("limit", 64),
        case(
            "unknown action",
            sample_capture_json(2, false, "video_selfie_zoom_in"),
            400,
            "unknown_action",
        ),
        case(
            "One Shot's tag used as the action",
            sample_capture_json(2, false, "video_selfie_oneshot"),
            400,
            "unknown_action",
        ),
        case(
            "document action with two frames",
            sample_capture_json(2, false, "photo_id_front"),
            400,
            "invalid_field",
        )
        .member("field", "frame_list"),
        case(
            "empty container",
            Vec::new(),
            400,
            "empty_container",
        )
        .content_type(Some("application/octet-stream")),
        case("text/plain", sample.clone(), 415, "unsupported_media_type")
            .content_type(Some("text/plain")),
        case(
            "multipart instead of JSON",
            sample.clone(),
            415,
            "unsupported_media_type",
        )
        .content_type(Some("multipart/form-data; boundary=x")),
        case("no content type", sample, 415, "unsupported_media_type").content_type(None),
    ]
}

/// Every bad input gets its status and problem code, and nothing reaches Oz or the backend.
#[tokio::test]
async fn bad_inputs_are_refused_before_oz_and_the_backend() {
    let stack = Stack::start(sim_config(), &limits_yaml()).await;
    for case in bad_inputs() {
        let headers: Vec<(&str, &str)> = case
            .content_type
            .map(|ct| vec![("content-type", ct)])
            .unwrap_or_default();
        let mut req = http::Request::post(case.path);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let rsp = stack
            .send(
                req.body(http_body_util::Full::new(bytes::Bytes::from(case.body)))
                    .expect("request"),
            )
            .await;
        assert_eq!(
            rsp.status.as_u16(),
            case.status,
            "{}: {}",
            case.name,
            String::from_utf8_lossy(&rsp.body)
        );
        let doc = rsp.problem(case.status, case.code);
        for (key, want) in &case.members {
            assert_eq!(&doc[*key], want, "{}: member {key} in {doc}", case.name);
        }
        assert!(doc["request_id"].is_string(), "{}: {doc}", case.name);
        stack.assert_nothing_sent(case.name);
    }
    stack.stop().await;
}

/// A best frame Oz does not get never reaches the backend in a forwarded body. By default
/// (`unchecked_images: strip`) the capture goes on with that value `null`; with `refuse` it is
/// refused before Oz, naming the field. The best frame the route sends to Oz passes as sent, and a summary
/// carries no image at all.
#[tokio::test]
async fn best_frames_oz_does_not_get_are_refused_or_nulled() {
    let yaml = format!(
        concat!(
            "{oz}capture:\n  wait_for_result: \"5s\"\n  routes:\n",
            "    - path: \"/refuse\"\n      on_result: forward\n      unchecked_images: refuse\n",
            "    - path: \"/strip\"\n      on_result: forward\n",
            "    - path: \"/jpeg\"\n      on_result: forward\n      best_frame: jpeg\n      unchecked_images: refuse\n",
            "    - path: \"/summary\"\n      on_result: forward\n      forward_body: summary\n",
        ),
        oz = oz_token(""),
    );
    let stack = Stack::start(sim_config(), &yaml).await;
    let sdk = |vc| SampleCapture::new(2, vc, "video_selfie_blank");
    let best_base64 = data_url("image/jpeg", &sample_jpeg(200))
        .split_once(',')
        .expect("a data URL")
        .1
        .to_owned();

    // Refused, before Oz: the refuse route sends no best frame, the jpeg route not the PNG.
    for (path, capture, field) in [
        ("/refuse", sdk(false), "best_frame"),
        ("/refuse", sdk(true), "from_virtual_camera.best_frame"),
        ("/jpeg", sdk(false), "best_frame_png"),
    ] {
        let rsp = stack.post(path, capture.to_json()).await;
        let doc = rsp.problem(400, "invalid_field");
        assert_eq!(doc["field"], field, "{path}: {doc}");
        assert!(!doc.to_string().contains(&best_base64), "{doc}");
        stack.assert_nothing_sent(path);
    }

    // Stripped: the backend gets the body as sent but for the best frames, now null.
    let capture = sdk(false);
    stack
        .post("/strip", capture.to_json())
        .await
        .assert_from_backend();
    let seen = stack.backend.only();
    assert_eq!(seen.body, best_frames_nulled(&capture));
    let doc: Value = serde_json::from_slice(&seen.body).expect("JSON");
    assert!(
        doc["best_frame"].is_null() && doc["best_frame_png"].is_null(),
        "{doc}"
    );
    assert_eq!(
        seen.get("content-length"),
        Some(seen.body.len().to_string().as_str())
    );
    assert_eq!(seen.get("x-oz-resolution"), Some("SUCCESS"));
    let upload = stack.only_upload();
    let parts: Vec<&str> = upload.parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(parts, ["video1", "payload"]);

    // Sent to Oz, so checked: the JPEG best frame goes to Oz and on to the backend as sent.
    let mut capture = sdk(false);
    capture.best_frame_png = None;
    stack
        .post("/jpeg", capture.to_json())
        .await
        .assert_from_backend();
    let upload = stack.oz().accepted_uploads().remove(1);
    let part = upload.part("photo_selfie1").expect("the best frame part");
    assert_eq!(part.bytes, sample_jpeg(200));
    assert_eq!(stack.backend.seen()[1].body, capture.to_json());

    // A summary has no images to strip.
    stack
        .post("/summary", sdk(true).to_json())
        .await
        .assert_from_backend();
    assert!(!stack.backend.seen()[2]
        .body
        .windows(best_base64.len())
        .any(|w| w == best_base64.as_bytes()));
    stack.stop().await;
}

/// A declared `Content-Length` over the limit gets 413 at once, before any byte of the body.
#[tokio::test]
async fn over_limit_content_length_gets_413_before_the_body() {
    let stack = Stack::start(sim_config(), &limits_yaml()).await;
    let len = (TINY_LIMIT + 1).to_string();
    let head = raw_head(
        "POST",
        TINY,
        &[
            ("Content-Type", "application/json"),
            ("Content-Length", &len),
        ],
    );
    // Only the head is sent: the answer must come without the body.
    let rsp = stack.raw(&head).await;
    assert_eq!(rsp.status, 413, "{}", String::from_utf8_lossy(&rsp.body));
    assert_eq!(rsp.header("content-type"), Some("application/problem+json"));
    let doc = rsp.json();
    assert_eq!(doc["code"], "body_too_large");
    assert_eq!(doc["limit"], TINY_LIMIT);
    stack.assert_nothing_sent("Content-Length over the limit");
    stack.stop().await;
}

/// With `Expect: 100-continue`, a declared length over the limit is answered 413 without a
/// `100 Continue` first, so the client never uploads the body.
#[tokio::test]
async fn over_limit_with_expect_100_continue_gets_413_without_100() {
    let stack = Stack::start(sim_config(), &limits_yaml()).await;
    let len = (10 * TINY_LIMIT).to_string();
    let head = raw_head(
        "POST",
        TINY,
        &[
            ("Content-Type", "application/json"),
            ("Content-Length", &len),
            ("Expect", "100-continue"),
        ],
    );
    let rsp = stack.raw(&head).await;
    assert_eq!(rsp.status_lines.len(), 1, "{:?}", rsp.status_lines);
    assert!(
        rsp.status_lines[0].starts_with("HTTP/1.1 413 "),
        "{:?}",
        rsp.status_lines
    );
    assert_eq!(rsp.json()["code"], "body_too_large");
    stack.assert_nothing_sent("Expect: 100-continue over the limit");
    stack.stop().await;
}

/// Within the limit, `Expect: 100-continue` gets `100 Continue`, then the capture goes through.
#[tokio::test]
async fn expect_100_continue_within_the_limit_goes_through() {
    let stack = Stack::forward().await;
    let body = sample_capture_json(2, false, "video_selfie_blank");
    let len = body.len().to_string();
    let mut conn = RawConn::connect(stack.proxy.traffic).await;
    conn.send(&raw_head(
        "POST",
        CAPTURE,
        &[
            ("Content-Type", "application/json"),
            ("Content-Length", &len),
            ("Expect", "100-continue"),
        ],
    ))
    .await;
    let (line, status, _) = support::raw::parse_head(&conn.read_head().await);
    assert_eq!(status, 100, "{line}");
    conn.send(&body).await;
    let rsp = conn.read_reply().await;
    assert_eq!(rsp.status, 200, "{}", String::from_utf8_lossy(&rsp.body));
    let seen = stack.backend.only();
    assert_eq!(
        seen.body,
        best_frames_nulled(&SampleCapture::new(2, false, "video_selfie_blank"))
    );
    assert_eq!(
        seen.get("expect"),
        None,
        "the backend gets the body, not the dance"
    );
    assert_eq!(seen.get("x-oz-resolution"), Some("SUCCESS"));
    stack.stop().await;
}

/// A chunked body that passes the limit is refused with 413 while it streams in.
#[tokio::test]
async fn over_limit_chunked_body_gets_413_while_streaming() {
    let stack = Stack::start(sim_config(), &limits_yaml()).await;
    let mut conn = RawConn::connect(stack.proxy.traffic).await;
    conn.send(&raw_head(
        "POST",
        TINY,
        &[
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
        ],
    ))
    .await;
    // One chunk within the limit, then one that passes it. The chunk's closing CRLF and the
    // last chunk are never sent: the proxy must answer from what it has, and every byte sent
    // is one it has read, so closing the connection cannot reset the answer away.
    let first = vec![b' '; (TINY_LIMIT / 2) as usize];
    conn.send(format!("{:x}\r\n", first.len()).as_bytes()).await;
    conn.send(&first).await;
    conn.send(b"\r\n").await;
    let second = vec![b' '; TINY_LIMIT as usize];
    conn.send(format!("{:x}\r\n", second.len()).as_bytes())
        .await;
    conn.send(&second).await;
    let rsp = conn.read_reply().await;
    assert_eq!(rsp.status, 413, "{}", String::from_utf8_lossy(&rsp.body));
    let doc = rsp.json();
    assert_eq!(doc["code"], "body_too_large");
    assert_eq!(doc["limit"], TINY_LIMIT);
    stack.assert_nothing_sent("chunked over the limit");
    stack.stop().await;
}

/// A chunked capture within the limit is accepted, and the backend gets it with a
/// `Content-Length` (the proxy has the whole body by then).
#[tokio::test]
async fn chunked_capture_within_the_limit_is_forwarded_with_a_length() {
    let stack = Stack::forward().await;
    let body = sample_capture_json(3, true, "video_selfie_left");
    let mut req = raw_head(
        "POST",
        CAPTURE,
        &[
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
        ],
    );
    for chunk in body.chunks(700) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let rsp = stack.raw(&req).await;
    assert_eq!(rsp.status, 200, "{}", String::from_utf8_lossy(&rsp.body));
    let seen = stack.backend.only();
    let forwarded = best_frames_nulled(&SampleCapture::new(3, true, "video_selfie_left"));
    assert_eq!(seen.body, forwarded);
    assert_eq!(
        seen.get("content-length"),
        Some(forwarded.len().to_string().as_str())
    );
    assert_eq!(seen.get("transfer-encoding"), None);
    assert_eq!(seen.get("x-oz-virtual-camera"), Some("true"));
    stack.stop().await;
}

/// Only POST is a capture: a GET on the capture path goes to the backend untouched.
#[tokio::test]
async fn get_on_a_capture_route_passes_through() {
    let stack = Stack::forward().await;
    let target = format!("{CAPTURE}?session=42");
    let rsp = stack
        .send(
            http::Request::get(target.as_str())
                .header("accept", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .expect("request"),
        )
        .await;
    rsp.assert_from_backend();
    let seen = stack.backend.only();
    assert_eq!(seen.method, http::Method::GET);
    assert_eq!(seen.target, target);
    assert_eq!(seen.get("accept"), Some("application/json"));
    assert_eq!(seen.get("x-oz-resolution"), None);
    assert!(seen.body.is_empty());
    assert!(stack.oz().calls().is_empty());
    stack.stop().await;
}

/// Other spellings of the capture path are the capture route too: a bad capture is refused
/// and never reaches the backend, a good one reaches it only with a verdict.
#[tokio::test]
async fn path_spellings_cannot_bypass_the_capture_route() {
    let stack = Stack::forward().await;
    let bad = capture_with(2, false, |c| {
        c.frames[0] = "data:image/jpeg;base64,@@@@".into()
    });
    let good = sample_capture_json(2, false, "video_selfie_blank");
    let spellings = [
        "/api/liveness/capture/",
        // `//api/…` is refused on every route before routing (tests/bypass.rs).
        "/api/liveness/%63apture",
        "/API/liveness/capture",
        "/api/liveness/capture?next=/home",
        "/api/liveness/./capture",
        "/api/liveness/capture;jsessionid=1",
    ];
    for (i, path) in spellings.into_iter().enumerate() {
        let rsp = stack
            .raw(&raw_request("POST", path, "application/json", &bad))
            .await;
        assert_eq!(
            rsp.status,
            400,
            "{path}: {}",
            String::from_utf8_lossy(&rsp.body)
        );
        assert_eq!(rsp.json()["code"], "invalid_frame", "{path}");
        assert_eq!(
            stack.backend.seen().len(),
            i,
            "{path}: bad capture forwarded"
        );

        let rsp = stack
            .raw(&raw_request("POST", path, "application/json", &good))
            .await;
        assert_eq!(
            rsp.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&rsp.body)
        );
        let seen = stack.backend.seen().remove(i);
        assert_eq!(seen.target, path, "forwarded as the client spelled it");
        assert_eq!(seen.get("x-oz-resolution"), Some("SUCCESS"), "{path}");
        assert_eq!(stack.oz().accepted_uploads().len(), i + 1, "{path}");
    }
    stack.stop().await;
}

/// When the memory budget is taken, another capture gets 503 `overloaded` with `Retry-After`
/// at once, and nothing of it is sent on; once the first capture is done, captures run again.
///
/// The first capture holds its reservation deterministically: it declares a body of exactly
/// `max_body_bytes` (whose reservation, twice the body, is the whole budget) and sends
/// `Expect: 100-continue`. The proxy reserves before it reads the body, and hyper sends
/// `100 Continue` only when the body is first read, so the `100` proves the reservation is
/// held; the body is sent only after the second capture has been refused.
#[tokio::test]
async fn capture_over_the_memory_budget_gets_503() {
    const MAX_BODY: usize = 64 * 1024;
    let yaml = format!(
        "{}{}",
        oz_token(""),
        forward_route(&format!(
            "  max_body_bytes: {MAX_BODY}\n  memory_budget_bytes: {}\n",
            2 * MAX_BODY
        ))
    );
    let stack = Stack::start(sim_config(), &yaml).await;

    // A valid capture padded with an unknown field to exactly MAX_BODY bytes.
    let sample = sample_capture_json(2, false, "video_selfie_blank");
    let pad = MAX_BODY - sample.len() - r#""padding":"","#.len();
    let padded = |capture: &[u8]| {
        let mut body = br#"{"padding":""#.to_vec();
        body.extend(std::iter::repeat_n(b'p', pad));
        body.extend_from_slice(br#"","#);
        body.extend_from_slice(&capture[1..]);
        body
    };
    let first = padded(&sample);
    assert_eq!(first.len(), MAX_BODY);

    let mut conn = RawConn::connect(stack.proxy.traffic).await;
    conn.send(&raw_head(
        "POST",
        CAPTURE,
        &[
            ("Content-Type", "application/json"),
            ("Content-Length", &MAX_BODY.to_string()),
            ("Expect", "100-continue"),
        ],
    ))
    .await;
    let (line, status, _) = support::raw::parse_head(&conn.read_head().await);
    assert_eq!(status, 100, "{line}");

    let rsp = stack.post(CAPTURE, sample.clone()).await;
    rsp.problem(503, "overloaded");
    assert_eq!(rsp.header("retry-after"), Some("1"));
    stack.assert_nothing_sent("the refused capture");

    conn.send(&first).await;
    let done = conn.read_reply().await;
    assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.body));
    assert_eq!(
        stack.backend.only().body,
        padded(&best_frames_nulled(&SampleCapture::new(
            2,
            false,
            "video_selfie_blank"
        )))
    );

    // The reservation is released when the capture ends.
    stack.post(CAPTURE, sample).await.assert_from_backend();
    assert_eq!(stack.oz().accepted_uploads().len(), 2);
    let m = stack.metrics().await;
    assert_eq!(
        m.value(r#"oz_proxy_captures_total{outcome="overloaded"}"#),
        1.0
    );
    stack.stop().await;
}
