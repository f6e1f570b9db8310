//! The demo page in a real headless Chromium, as a person would use it: a fake camera playing a
//! clip this test writes, the page capturing and posting on its own (`?auto=1`), and what ends up
//! on the page, at the simulated Oz and at the backend checked against the clip.
//!
//! Chromium and chromedriver are Debian's (scripts/test.sh installs them); without them these
//! tests fail and say so. The page's automation contract is in src/demo/page/page.js.

mod support;

use oz_capture_proxy::demo::{FORWARD_PATH, RESPOND_PATH};
use serde_json::Value;
use support::bin::TempDir;
use support::browser::{read_frame, write_numbered_clip, Browser, Camera, Outcome};
use support::client::{self, body, get};

/// The clip's size: not the 640×480 the page asks for, so a frame of this size is the camera's.
const CLIP_WIDTH: usize = 320;
const CLIP_HEIGHT: usize = 240;
/// 25 frames a second for 10 s: the page takes its frames 100 ms apart, so one capture spans a
/// few clip frames and never wraps around the end of the clip.
const CLIP_FRAMES: usize = 250;
const CLIP_FPS: u32 = 25;
/// The size of the test pattern the page draws without a camera.
const PATTERN_SIZE: (usize, usize) = (640, 480);
/// The browser window: wide enough for the page's two columns.
const WINDOW: (u32, u32) = (1280, 1000);

/// The demo, a clip for the camera and a browser filming it.
struct Scene {
    demo: oz_capture_proxy::demo::Demo,
    browser: Browser,
    _dir: TempDir,
}

impl Scene {
    async fn start(camera: Option<Camera>) -> Scene {
        let dir = TempDir::new("browser");
        let camera = camera.unwrap_or_else(|| {
            Camera::Clip(write_numbered_clip(
                &dir,
                CLIP_WIDTH,
                CLIP_HEIGHT,
                CLIP_FRAMES,
                CLIP_FPS,
            ))
        });
        let demo = support::demo::start().await;
        let browser = Browser::start(camera, WINDOW.0, WINDOW.1).await;
        Scene {
            demo,
            browser,
            _dir: dir,
        }
    }

    /// Opens the page with `query` and returns how its capture ended.
    async fn capture(&self, query: &str) -> Outcome {
        self.browser
            .open(&format!("{}{query}", self.demo.page_url))
            .await;
        self.browser.outcome().await
    }

    /// The upload the simulated Oz received for `folder`, in full (loopback only).
    async fn upload(&self, folder: &str) -> Value {
        json(&format!(
            "http://{}/_sim/uploads/{folder}",
            self.demo.oz_addr
        ))
        .await
    }

    async fn stop(self) {
        self.browser.quit().await;
        if let Err(e) = self.demo.stop().await {
            panic!("the demo did not stop cleanly: {e:#}");
        }
    }
}

async fn json(url: &str) -> Value {
    let rsp = get(&client::http1(), url).await;
    assert_eq!(rsp.status(), 200, "{url}");
    serde_json::from_slice(&body(rsp).await).expect("a JSON answer")
}

/// The JPEG entries of an upload's ZIP, decoded from their data URLs.
fn jpeg_entries(upload: &Value) -> Vec<(String, Vec<u8>)> {
    use base64::Engine as _;
    upload["zip_entries"]
        .as_array()
        .expect("the upload has ZIP entries")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap_or_default().to_owned();
            let url = e["data_url"].as_str().unwrap_or_default();
            let b64 = url
                .strip_prefix("data:image/jpeg;base64,")
                .unwrap_or_else(|| panic!("{name} is not a JPEG: {}", &url[..url.len().min(30)]));
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("a data URL in base64");
            (name, bytes)
        })
        .collect()
}

/// The clip frame each JPEG of an upload shows, in upload order; fails unless every one is a
/// frame of the clip, at the clip's size.
fn clip_frame_numbers(upload: &Value) -> Vec<u8> {
    jpeg_entries(upload)
        .iter()
        .map(|(name, jpeg)| {
            let filmed = read_frame(jpeg);
            assert_eq!(
                (filmed.width, filmed.height),
                (CLIP_WIDTH, CLIP_HEIGHT),
                "{name} is not of the camera's size"
            );
            let n = filmed
                .number
                .unwrap_or_else(|why| panic!("{name} is not a frame of the clip: {why}"));
            assert!(usize::from(n) < CLIP_FRAMES, "{name} carries {n}");
            n
        })
        .collect()
}

/// Where the screenshot of the page after a capture is written; scripts/screenshot.sh copies it
/// into docs/ for the README.
fn screenshot_path() -> std::path::PathBuf {
    std::env::var_os("OZ_DEMO_SCREENSHOT")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-after-capture.png")
        })
}

#[tokio::test]
async fn the_cameras_frames_become_a_verdict_the_backend_receives() {
    let scene = Scene::start(None).await;
    let outcome = scene
        .capture(&format!("?auto=1&route={FORWARD_PATH}"))
        .await;
    let b = &scene.browser;
    assert_eq!(
        outcome.state,
        "done",
        "{outcome:?}; the page says: {}",
        b.text("result").await
    );
    assert_eq!(outcome.status, "200");
    assert_eq!(outcome.resolution, "SUCCESS");
    assert!(!outcome.folder_id.is_empty(), "{outcome:?}");

    // The page filmed the camera, not the test pattern.
    let source = b
        .eval("return document.getElementById('camera-status').dataset.source;")
        .await;
    assert_eq!(source, "camera", "{}", b.text("camera-status").await);

    // Oz received the camera's frames: JPEGs of the clip's size, in the order filmed.
    let upload = scene.upload(&outcome.folder_id).await;
    let entries = jpeg_entries(&upload);
    assert_eq!(entries.len(), 5, "the page sends five frames by default");
    let numbers = clip_frame_numbers(&upload);
    assert!(
        numbers.windows(2).all(|w| w[0] <= w[1]) && numbers[0] < numbers[numbers.len() - 1],
        "the frames are not in the order filmed: {numbers:?}"
    );
    assert!(
        upload["additional_info"]
            .as_object()
            .is_some_and(|m| !m.is_empty()),
        "Oz got the page's additional_info: {upload}"
    );

    // The backend received the verdict in X-Oz-* headers, and the page shows them.
    let last = json(&format!("{}_demo/last", scene.demo.page_url)).await;
    let headers = last["headers"].as_object().expect("the backend's headers");
    assert_eq!(headers["x-oz-resolution"], "SUCCESS");
    assert_eq!(headers["x-oz-folder-id"], outcome.folder_id.as_str());
    assert_eq!(headers["x-oz-action"], "video_selfie_blank");
    let backend_panel = b.text("backend").await;
    for name in ["x-oz-resolution", "x-oz-folder-id", "x-oz-verdict-token"] {
        assert!(
            backend_panel.contains(name),
            "{name} not shown: {backend_panel}"
        );
    }
    // Each ZIP entry is shown as a thumbnail, and each phase of Server-Timing as a bar.
    let thumbnails = b
        .eval("return document.querySelectorAll('#oz .thumbs img').length;")
        .await;
    assert_eq!(thumbnails, entries.len());
    let timing = b.text("timing").await;
    for phase in ["parse", "zip", "upload", "analyses", "backend"] {
        assert!(timing.contains(phase), "{phase} not charted: {timing}");
    }
    let bars = b
        .eval("return document.querySelectorAll('#timing .bar').length;")
        .await;
    assert_eq!(bars, 5, "{timing}");

    scene.stop().await;
}

#[tokio::test]
async fn the_respond_route_shows_the_verdict_and_its_token_decoded() {
    let scene = Scene::start(None).await;
    let outcome = scene
        .capture(&format!("?auto=1&route={RESPOND_PATH}"))
        .await;
    let b = &scene.browser;
    assert_eq!(outcome.state, "done", "{}", b.text("result").await);
    assert_eq!(outcome.status, "200");
    assert_eq!(outcome.resolution, "SUCCESS");
    let route = b
        .eval("return document.getElementById('route').value;")
        .await;
    assert_eq!(route, RESPOND_PATH, "?route= chose the route");

    let token = b.text("token").await;
    assert!(token.contains("verdict_token"), "{token}");
    assert!(
        token.contains("\"alg\": \"EdDSA\""),
        "the header is decoded: {token}"
    );
    assert!(
        token.contains(&format!("\"{}\"", outcome.folder_id)),
        "the claims name the folder: {token}"
    );
    let backend = b.text("backend").await;
    assert!(backend.contains("respond route"), "{backend}");
    let upload = scene.upload(&outcome.folder_id).await;
    clip_frame_numbers(&upload);
    scene.stop().await;
}

#[tokio::test]
async fn the_virtual_camera_shape_and_the_container_toggles_reach_oz_as_the_sdk_would_send_them() {
    let scene = Scene::start(None).await;
    let b = &scene.browser;
    let first = scene
        .capture(&format!("?auto=1&route={FORWARD_PATH}"))
        .await;
    assert_eq!(first.state, "done", "{}", b.text("result").await);

    // The virtual-camera shape: everything under from_virtual_camera; the backend is told.
    b.click("virtual-camera").await;
    b.click("capture").await;
    let virtual_camera = b.next_outcome(&first).await;
    assert_eq!(
        (
            virtual_camera.state.as_str(),
            virtual_camera.status.as_str()
        ),
        ("done", "200"),
        "{}",
        b.text("result").await
    );
    let last = json(&format!("{}_demo/last", scene.demo.page_url)).await;
    assert_eq!(last["headers"]["x-oz-virtual-camera"], "true", "{last}");
    assert_eq!(
        last["headers"]["x-oz-folder-id"],
        virtual_camera.folder_id.as_str()
    );
    let upload = scene.upload(&virtual_camera.folder_id).await;
    clip_frame_numbers(&upload);
    assert!(b.text("sent").await.contains("virtual camera"));

    // The container: an application/octet-stream body Oz gets unchanged, no ZIP made of it.
    b.click("container").await;
    b.click("capture").await;
    let container = b.next_outcome(&virtual_camera).await;
    assert_eq!(
        (container.state.as_str(), container.status.as_str()),
        ("done", "200"),
        "{}",
        b.text("result").await
    );
    let upload = scene.upload(&container.folder_id).await;
    assert!(
        upload["container_size"].as_u64().is_some_and(|n| n > 0),
        "{upload}"
    );
    assert_eq!(upload["zip_entries"].as_array().map(Vec::len), Some(0));
    assert!(b.text("sent").await.contains("application/octet-stream"));
    assert!(b.text("oz").await.contains("unchanged"));
    scene.stop().await;
}

#[tokio::test]
async fn a_broken_capture_shows_the_problem_answer_and_reaches_nobody() {
    let scene = Scene::start(None).await;
    let b = &scene.browser;
    b.open(&scene.demo.page_url).await;
    // The buttons are enabled once the camera (or the pattern) is running.
    b.wait_for(
        "the page's camera to start",
        "return document.getElementById('broken').disabled ? null : true;",
    )
    .await;
    b.click("broken").await;
    let outcome = b.outcome().await;
    assert_eq!(outcome.state, "error", "{}", b.text("result").await);
    assert_eq!(outcome.status, "400");
    assert_eq!(outcome.folder_id, "");

    // The problem as a user sees it: a title, a detail naming the frame, and the document.
    let shown = b
        .eval("return !document.getElementById('problem').hidden;")
        .await;
    assert_eq!(shown, true, "the problem box is visible");
    let problem = b.text("problem").await;
    assert!(problem.contains("application/problem+json"), "{problem}");
    assert!(
        problem.contains("frame_list"),
        "the field is named: {problem}"
    );
    assert!(
        problem.contains("\"status\": 400"),
        "the problem document is shown: {problem}"
    );
    // Nothing reached Oz or the backend.
    let uploads = json(&format!("http://{}/_sim/uploads", scene.demo.oz_addr)).await;
    assert_eq!(uploads.as_array().map(Vec::len), Some(0), "{uploads}");
    let rsp = get(
        &client::http1(),
        &format!("{}_demo/last", scene.demo.page_url),
    )
    .await;
    assert_eq!(rsp.status(), 404, "the backend saw no capture");
    scene.stop().await;
}

#[tokio::test]
async fn without_a_camera_or_when_it_is_refused_the_test_pattern_is_sent() {
    for (camera, error) in [
        (Camera::Absent, "NotFoundError"),
        (Camera::Refused, "NotAllowedError"),
    ] {
        let scene = Scene::start(Some(camera.clone())).await;
        let outcome = scene
            .capture(&format!("?auto=1&route={FORWARD_PATH}"))
            .await;
        let b = &scene.browser;
        assert_eq!(
            outcome.state,
            "done",
            "{camera:?}: {}",
            b.text("result").await
        );
        assert_eq!(outcome.resolution, "SUCCESS", "{camera:?}");
        let source = b
            .eval("return document.getElementById('camera-status').dataset.source;")
            .await;
        assert_eq!(source, "pattern", "{camera:?}");
        let status = b.text("camera-status").await;
        assert!(
            status.contains(error) && status.contains("test pattern"),
            "{camera:?}: the page says why: {status}"
        );
        let upload = scene.upload(&outcome.folder_id).await;
        let entries = jpeg_entries(&upload);
        assert_eq!(entries.len(), 5);
        let mut distinct = entries.iter().map(|(_, j)| j).collect::<Vec<_>>();
        distinct.dedup();
        assert_eq!(distinct.len(), 5, "{camera:?}: the pattern moves");
        for (name, jpeg) in &entries {
            let filmed = read_frame(jpeg);
            assert_eq!(
                (filmed.width, filmed.height),
                PATTERN_SIZE,
                "{camera:?} {name}"
            );
            assert!(filmed.number.is_err(), "{camera:?} {name} is not the clip");
        }
        if matches!(camera, Camera::Absent) {
            // The picture the README shows, as a newcomer without a camera sees the page;
            // scripts/screenshot.sh remakes it.
            let png = b.screenshot_of_page().await;
            assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
            assert!(
                png.len() > 50_000,
                "a page's worth of picture: {} bytes",
                png.len()
            );
            let path = screenshot_path();
            std::fs::write(&path, &png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        scene.stop().await;
    }
}
