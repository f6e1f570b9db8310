//! The demo page as `demo` serves it: its files through the proxy with their content types, and
//! the introspection endpoints the page reads after a capture (on loopback only).
//! The page's own behaviour in a real browser is tested separately (issue 16, item 2).

mod support;

use http::Request;
use oz_capture_proxy::capture::testdata::{SampleCapture, SAMPLE_ADDITIONAL_INFO};
use oz_capture_proxy::demo::{FORWARD_PATH, RESPOND_PATH};
use serde_json::Value;
use support::client::{self, body, full, get, send, text};

/// POSTs `body` as `content_type` to `url`; the status, content type and JSON answer.
async fn post(url: &str, content_type: &str, body_bytes: Vec<u8>) -> (u16, String, Value) {
    let c = client::http1();
    let req = Request::post(url)
        .header("content-type", content_type)
        .body(full(body_bytes))
        .unwrap();
    let rsp = send(&c, req).await;
    let status = rsp.status().as_u16();
    let ct = header(&rsp, "content-type");
    let doc = serde_json::from_slice(&body(rsp).await).expect("a JSON answer");
    (status, ct, doc)
}

fn header<B>(rsp: &http::Response<B>, name: &str) -> String {
    rsp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn get_json(url: &str) -> (u16, Value) {
    let rsp = get(&client::http1(), url).await;
    let status = rsp.status().as_u16();
    let doc = serde_json::from_slice(&body(rsp).await).expect("a JSON answer");
    (status, doc)
}

#[tokio::test]
async fn the_page_is_served_through_the_proxy_with_its_content_types() {
    let demo = support::demo::start().await;
    assert_eq!(
        demo.page_url,
        format!("http://{}/", demo.traffic_addr),
        "the page is on the proxy's listener"
    );
    let c = client::http1();
    for (path, ty, marker) in [
        ("/", "text/html; charset=utf-8", r#"id="result""#),
        (
            "/?auto=1&route=/api/liveness/check",
            "text/html; charset=utf-8",
            "/page.js",
        ),
        ("/page.js", "text/javascript; charset=utf-8", "data-state"),
        ("/page.css", "text/css; charset=utf-8", "#result"),
    ] {
        let rsp = get(&c, &format!("http://{}{path}", demo.traffic_addr)).await;
        assert_eq!(rsp.status(), 200, "{path}");
        assert_eq!(header(&rsp, "content-type"), ty, "{path}");
        assert_eq!(header(&rsp, "cache-control"), "no-store", "{path}");
        assert!(header(&rsp, "content-security-policy").contains("default-src 'self'"));
        let page = text(rsp).await;
        assert!(page.contains(marker), "{path} lacks {marker}");
    }
    if let Err(e) = demo.stop().await {
        panic!("the demo did not stop cleanly: {e:#}");
    }
}

#[tokio::test]
async fn after_a_forward_capture_the_page_can_see_what_the_backend_and_oz_received() {
    let demo = support::demo::start().await;
    let base = format!("http://{}", demo.traffic_addr);
    let (status, nothing) = get_json(&format!("{base}/_demo/last")).await;
    assert_eq!(status, 404, "no capture yet: {nothing}");

    let capture = SampleCapture::numbered(901, 3, false, "video_selfie_blank").to_json();
    let sent = capture.len();
    let (status, _, echo) = post(
        &format!("{base}{FORWARD_PATH}"),
        "application/json",
        capture,
    )
    .await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["saw_resolution"], "SUCCESS");
    let folder = echo["saw_folder_id"]
        .as_str()
        .expect("the echo names the folder")
        .to_owned();

    // What the backend received: the request line, its size and the X-Oz-* headers only.
    let rsp = get(&client::http1(), &format!("{base}/_demo/last")).await;
    assert_eq!(header(&rsp, "content-type"), "application/json");
    let raw = text(rsp).await;
    assert!(
        !raw.contains("data:image") && !raw.contains("additional_info"),
        "{raw}"
    );
    let last: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(last["method"], "POST");
    assert_eq!(last["path"], FORWARD_PATH);
    let size = last["body_size"].as_u64().expect("a body size");
    assert!(size > 0 && size <= sent as u64, "{size} of {sent}");
    let headers = last["headers"].as_object().expect("headers");
    assert_eq!(headers["x-oz-folder-id"], folder.as_str());
    assert_eq!(headers["x-oz-resolution"], "SUCCESS");
    assert_eq!(headers["x-oz-action"], "video_selfie_blank");
    assert!(headers["x-oz-verdict-token"]
        .as_str()
        .is_some_and(|t| t.split('.').count() == 3));
    assert!(headers
        .keys()
        .all(|k| k.starts_with("x-oz-") || k == "x-request-id"));

    // What Oz received, through the backend (same origin for the page) and from the simulator.
    for url in [
        format!("{base}/_demo/oz/uploads/{folder}"),
        format!("http://{}/_sim/uploads/{folder}", demo.oz_addr),
    ] {
        let (status, up) = get_json(&url).await;
        assert_eq!(status, 200, "{url}");
        assert_eq!(up["folder_id"], folder.as_str());
        let entries = up["zip_entries"].as_array().expect("ZIP entries");
        assert_eq!(entries.len(), 3, "{url}");
        for e in entries {
            assert!(e["data_url"]
                .as_str()
                .is_some_and(|d| d.starts_with("data:image/jpeg;base64,/9j/")));
        }
        let info = up["additional_info"]
            .as_object()
            .expect("additional_info per file");
        assert!(
            info.values().all(|v| v == SAMPLE_ADDITIONAL_INFO),
            "{info:?}"
        );
        assert!(up["media_tags"].is_object());
    }
    let (status, _) = get_json(&format!("{base}/_demo/oz/uploads/no-such-folder")).await;
    assert_eq!(status, 404);
    if let Err(e) = demo.stop().await {
        panic!("the demo did not stop cleanly: {e:#}");
    }
}

#[tokio::test]
async fn introspection_refuses_a_client_that_is_not_on_loopback() {
    let demo = support::demo::start().await;
    let base = format!("http://{}", demo.traffic_addr);
    let capture = SampleCapture::numbered(902, 2, false, "video_selfie_blank").to_json();
    let (status, _, _) = post(
        &format!("{base}{FORWARD_PATH}"),
        "application/json",
        capture,
    )
    .await;
    assert_eq!(status, 200);
    // The proxy appends the connection's address to the client's list; a list that names
    // another machine is a browser elsewhere, whatever else it says.
    for path in ["/_demo/last", "/_demo/oz/uploads/last"] {
        let req = Request::get(format!("{base}{path}"))
            .header("x-forwarded-for", "192.0.2.7")
            .body(client::empty())
            .unwrap();
        let rsp = send(&client::http1(), req).await;
        assert_eq!(rsp.status(), 403, "{path}");
        let answer = text(rsp).await;
        assert!(
            !answer.contains("x-oz-") && !answer.contains("data:"),
            "{answer}"
        );
    }
    if let Err(e) = demo.stop().await {
        panic!("the demo did not stop cleanly: {e:#}");
    }
}

#[tokio::test]
async fn the_respond_route_answers_the_verdict_and_a_token_and_a_broken_capture_a_problem() {
    let demo = support::demo::start().await;
    let base = format!("http://{}", demo.traffic_addr);
    let capture = SampleCapture::numbered(903, 2, true, "video_selfie_blank").to_json();
    let (status, _, verdict) = post(
        &format!("{base}{RESPOND_PATH}"),
        "application/json",
        capture,
    )
    .await;
    assert_eq!(status, 200, "{verdict}");
    assert_eq!(verdict["resolution"], "SUCCESS");
    assert!(verdict["folder_id"].is_string());
    assert!(verdict["verdict_token"].is_string());

    let mut broken = SampleCapture::numbered(904, 2, false, "video_selfie_blank");
    broken.frames[1] = "data:image/jpeg;base64,@@@not-base64".to_owned();
    let (status, ct, problem) = post(
        &format!("{base}{FORWARD_PATH}"),
        "application/json",
        broken.to_json(),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(ct, "application/problem+json");
    assert!(
        problem["title"].is_string() && problem["detail"].is_string(),
        "{problem}"
    );
    if let Err(e) = demo.stop().await {
        panic!("the demo did not stop cleanly: {e:#}");
    }
}

#[test]
fn demo_prints_the_page_url_first() {
    let first = support::bin::demo_first_line();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("the first line names no URL: {first}"));
    assert!(url.ends_with('/'), "{first}");
    assert!(first.contains("open"), "{first}");
}
