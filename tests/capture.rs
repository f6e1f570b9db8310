//! End-to-end tests of the capture path: a capture goes from a client through the real proxy to
//! the simulated Oz API and on to a recording backend (or back to the client), and the tests
//! check what each of them received. Bad inputs, limits and overload are in
//! `capture_inputs.rs`; the log check is alone in `capture_logs.rs` (it owns the global
//! subscriber). Harness: `support::stack`.

mod support;

use std::io::{Cursor, Read as _};
use std::time::Duration;

use oz_capture_proxy::capture::testdata::{
    sample_capture_json, sample_capture_json_escaped, sample_frames, sample_jpeg, sample_png,
    SampleCapture, SAMPLE_ADDITIONAL_INFO,
};
use oz_capture_proxy::oz_sim::{Endpoint, SimConfig, Verdict};
use serde_json::{json, Value};
use support::stack::*;

/// The tags Oz must receive for a frame ZIP captured with `action` (docs/oz-api.md §2.4).
fn video_tags(action_tag: &str) -> Value {
    json!(["video_selfie", action_tag, "orientation_portrait"])
}

/// The ZIP's entries as (name, compression method, bytes), in archive order.
fn zip_entries(zip: &[u8]) -> Vec<(String, zip::CompressionMethod, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).expect("the ZIP part opens");
    (0..archive.len())
        .map(|i| {
            let mut e = archive.by_index(i).expect("entry");
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("entry reads (CRC ok)");
            (
                e.name().expect("UTF-8 name").into_owned(),
                e.compression(),
                data,
            )
        })
        .collect()
}

/// `000001.jpg`… for `n` JPEG frames.
fn entry_names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{i:06}.jpg")).collect()
}

// === Shapes, actions and what the backend gets ===

/// Both shapes of `on_capture_complete` (plain, and everything under `from_virtual_camera`)
/// reach Oz as the same kind of upload, and the backend learns which one it was.
#[tokio::test]
async fn both_shapes_are_uploaded_and_forwarded_with_the_virtual_camera_flag() {
    let stack = Stack::forward().await;
    for (i, vc) in [false, true].into_iter().enumerate() {
        let body = sample_capture_json(3, vc, "video_selfie_blank");
        let rsp = stack.post(CAPTURE, body.clone()).await;
        rsp.assert_from_backend();

        let upload = stack.oz().accepted_uploads().remove(i);
        let payload = upload.payload.as_ref().expect("payload");
        assert_eq!(payload["folder:meta_data"]["virtual_camera"], vc);
        assert_eq!(
            payload["media:meta_data"]["video1"]["additional_info"],
            SAMPLE_ADDITIONAL_INFO
        );
        let frames: Vec<(String, Vec<u8>)> =
            entry_names(3).into_iter().zip(sample_frames(3)).collect();
        assert_eq!(upload.zip_entries, frames, "virtual_camera={vc}");

        let seen = stack.backend.seen().remove(i);
        assert_eq!(
            seen.body,
            best_frames_nulled(&SampleCapture::new(3, vc, "video_selfie_blank")),
            "the backend gets the original body, but for the best frames Oz did not get"
        );
        assert_eq!(
            seen.get("x-oz-virtual-camera"),
            Some(if vc { "true" } else { "false" })
        );
        assert_eq!(seen.get("x-oz-folder-id"), Some(upload.folder_id.as_str()));
        assert_eq!(seen.get("x-oz-resolution"), Some("SUCCESS"));
        assert_eq!(seen.get("x-oz-action"), Some("video_selfie_blank"));
    }
    stack.stop().await;
}

/// A capture re-encoded by PHP's `json_encode` (every `/` written `\/`, frames included) reaches
/// Oz as the same upload as the plain one, and the backend still gets the body as sent (but for
/// the best frames Oz did not get).
#[tokio::test]
async fn escaped_capture_is_uploaded_like_a_plain_one() {
    let stack = Stack::forward().await;
    for (i, vc) in [false, true].into_iter().enumerate() {
        let body = sample_capture_json_escaped(3, vc, "video_selfie_blank");
        stack
            .post(CAPTURE, body.clone())
            .await
            .assert_from_backend();

        let upload = stack.oz().accepted_uploads().remove(i);
        let frames: Vec<(String, Vec<u8>)> =
            entry_names(3).into_iter().zip(sample_frames(3)).collect();
        assert_eq!(upload.zip_entries, frames, "virtual_camera={vc}");
        let payload = upload.payload.as_ref().expect("payload");
        assert_eq!(
            payload["media:meta_data"]["video1"]["additional_info"],
            SAMPLE_ADDITIONAL_INFO
        );
        let mut sent = SampleCapture::new(3, vc, "video_selfie_blank");
        sent.escape_slashes = true;
        assert_eq!(sent.to_json(), body);
        assert_eq!(
            stack.backend.seen().remove(i).body,
            best_frames_nulled(&sent)
        );
    }
    stack.stop().await;
}

/// Every Web SDK video action goes through the whole path with its Oz tag; One Shot's
/// `video_selfie_best` is tagged `video_selfie_oneshot` (docs/oz-api.md §2.4).
#[tokio::test]
async fn every_video_action_reaches_oz_with_its_tag() {
    let stack = Stack::forward().await;
    let actions = [
        ("video_selfie_left", "video_selfie_left"),
        ("video_selfie_right", "video_selfie_right"),
        ("video_selfie_down", "video_selfie_down"),
        ("video_selfie_high", "video_selfie_high"),
        ("video_selfie_smile", "video_selfie_smile"),
        ("video_selfie_eyes", "video_selfie_eyes"),
        ("video_selfie_scan", "video_selfie_scan"),
        ("video_selfie_blank", "video_selfie_blank"),
        ("video_selfie_best", "video_selfie_oneshot"),
    ];
    for (i, (action, tag)) in actions.into_iter().enumerate() {
        // Both shapes, alternately; `both_shapes_…` covers each shape in full.
        let vc = i % 2 == 1;
        let rsp = stack
            .post(CAPTURE, sample_capture_json(2, vc, action))
            .await;
        rsp.assert_from_backend();
        let upload = &stack.oz().accepted_uploads()[i];
        let payload = upload.payload.as_ref().expect("payload");
        assert_eq!(payload["media:tags"]["video1"], video_tags(tag), "{action}");
        let seen = &stack.backend.seen()[i];
        assert_eq!(seen.get("x-oz-action"), Some(action));
        assert_eq!(seen.get("x-oz-resolution"), Some("SUCCESS"), "{action}");
    }
    stack.stop().await;
}

/// The Web SDK's document actions upload the photo as an image tagged `photo_id` plus the
/// side (docs/oz-api.md §2.4): a ZIP is a shots set, which Oz treats as a video, and photo tags on
/// a video would leave it out of every analysis.
#[tokio::test]
async fn photo_id_actions_reach_oz_as_a_tagged_image() {
    let stack = Stack::forward().await;
    for (i, (side, vc)) in [("photo_id_front", false), ("photo_id_back", true)]
        .into_iter()
        .enumerate()
    {
        let rsp = stack.post(CAPTURE, sample_capture_json(1, vc, side)).await;
        rsp.assert_from_backend();
        let upload = &stack.oz().accepted_uploads()[i];
        let names: Vec<&str> = upload.parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["video1", "payload"]);
        assert!(upload.zip_entries.is_empty(), "no ZIP for a document");
        let part = upload.part("video1").expect("media part");
        assert_eq!(part.content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(part.filename.as_deref(), Some("capture.jpg"));
        assert_eq!(part.bytes, sample_jpeg(0));
        let payload = upload.payload.as_ref().expect("payload");
        assert_eq!(payload["media:tags"]["video1"], json!(["photo_id", side]));
        assert_eq!(
            payload["media:meta_data"]["video1"]["additional_info"],
            SAMPLE_ADDITIONAL_INFO
        );
        assert_eq!(stack.backend.seen()[i].get("x-oz-action"), Some(side));
    }
    stack.stop().await;
}

/// Golden check of the upload: path, framing, part order and headers, ZIP entries (names,
/// order, stored, bytes), and the payload JSON member by member.
#[tokio::test]
async fn oz_receives_the_exact_upload() {
    let stack = Stack::forward().await;
    let mut capture = SampleCapture::new(4, false, "video_selfie_smile");
    // JSON inside a string, with quotes, a slash and non-ASCII: it must arrive as sent.
    let info = r#"{"sdk":"1.9.2","ua":"Mozilla/5.0 \"quoted\"","city":"Zürich"}"#;
    capture.additional_info = Some(info.to_owned());
    let rsp = stack.post(CAPTURE, capture.to_json()).await;
    rsp.assert_from_backend();

    let upload = stack.only_upload();
    assert_eq!(upload.path, "/api/folders/");
    assert_eq!(upload.endpoint, "folders");
    assert!(!upload.chunked, "the upload has a Content-Length");
    assert!(upload.content_length.is_some_and(|n| n > 0));
    let boundary = upload
        .content_type
        .strip_prefix("multipart/form-data; boundary=")
        .expect("multipart content type with a boundary");
    assert!(!boundary.is_empty());

    let names: Vec<&str> = upload.parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["video1", "payload"]);
    let zip_part = &upload.parts[0];
    assert_eq!(zip_part.filename.as_deref(), Some("capture.zip"));
    assert_eq!(zip_part.content_type.as_deref(), Some("application/zip"));
    let payload_part = &upload.parts[1];
    assert_eq!(payload_part.filename, None);
    assert_eq!(
        payload_part.content_type.as_deref(),
        Some("application/json")
    );

    let want: Vec<(String, zip::CompressionMethod, Vec<u8>)> = entry_names(4)
        .into_iter()
        .zip(sample_frames(4))
        .map(|(n, b)| (n, zip::CompressionMethod::Stored, b))
        .collect();
    assert_eq!(zip_entries(&zip_part.bytes), want);

    let seen = stack.backend.only();
    let request_id = seen
        .get("x-request-id")
        .expect("the backend got a request id");
    let payload: Value = serde_json::from_slice(&payload_part.bytes).expect("payload is JSON");
    assert_eq!(
        payload,
        json!({
            "media:tags": {"video1": video_tags("video_selfie_smile")},
            "media:meta_data": {"video1": {"additional_info": info}},
            "folder:meta_data": {"request_id": request_id, "virtual_camera": false},
        })
    );
    assert_eq!(seen.get("x-oz-folder-id"), Some(upload.folder_id.as_str()));
    stack.stop().await;
}

/// An OzCapsula container (`application/octet-stream`) goes to Oz byte for byte with its
/// content type; the backend gets the same bytes and the verdict.
#[tokio::test]
async fn container_goes_to_oz_unchanged() {
    let stack = Stack::forward().await;
    let container: Vec<u8> = b"OZCAPSULA\x00\x01\x02\xff\xfe"
        .iter()
        .copied()
        .chain((0..=255u8).cycle().take(5000))
        .collect();
    let rsp = stack
        .post_with(CAPTURE, "application/octet-stream", &[], container.clone())
        .await;
    rsp.assert_from_backend();

    let upload = stack.only_upload();
    assert_eq!(upload.content_type, "application/octet-stream");
    assert_eq!(upload.container.as_deref(), Some(&container[..]));
    assert_eq!(upload.content_length, Some(container.len() as u64));
    assert!(upload.parts.is_empty());

    let seen = stack.backend.only();
    assert_eq!(seen.body, container);
    assert_eq!(seen.get("content-type"), Some("application/octet-stream"));
    assert_eq!(seen.get("x-oz-folder-id"), Some(upload.folder_id.as_str()));
    assert_eq!(seen.get("x-oz-resolution"), Some("SUCCESS"));
    // The container is opaque: the proxy cannot know the action or the camera.
    assert_eq!(seen.get("x-oz-action"), None);
    assert_eq!(seen.get("x-oz-virtual-camera"), None);
    stack.stop().await;
}

// === Respond mode ===

/// Respond mode answers the client itself, in the Web SDK's `result_mode` shapes: `safe` says
/// only that it finished, `status` adds the verdict but no folder id, `folder` adds the id.
#[tokio::test]
async fn respond_mode_answers_in_each_result_mode() {
    let yaml = format!(
        "{}capture:\n  wait_for_result: \"5s\"\n  routes:\n{}",
        oz_token(""),
        ["safe", "status", "folder"]
            .map(|m| format!(
                "    - path: \"/check/{m}\"\n      on_result: respond\n      result_mode: {m}\n"
            ))
            .concat()
    );
    let stack = Stack::start(sim_config(), &yaml).await;
    let body = sample_capture_json(2, false, "video_selfie_blank");

    let safe = stack.post("/check/safe", body.clone()).await;
    assert_eq!(safe.status, 200);
    assert_eq!(safe.header("content-type"), Some("application/json"));
    assert_eq!(safe.header("cache-control"), Some("no-store"));
    assert_eq!(&safe.body[..], br#"{"state":"finished"}"#);

    let analyses = json!({"quality": {"state": "FINISHED", "resolution": "SUCCESS"}});
    let status = stack.post("/check/status", body.clone()).await;
    assert_eq!(status.status, 200);
    assert_eq!(
        status.json(),
        json!({"state": "finished", "resolution": "SUCCESS", "analyses": analyses})
    );

    let folder = stack.post("/check/folder", body).await;
    assert_eq!(folder.status, 200);
    let folder_id = stack.oz().accepted_uploads()[2].folder_id.clone();
    assert_eq!(
        folder.json(),
        json!({"state": "finished", "folder_id": folder_id, "resolution": "SUCCESS", "analyses": analyses})
    );

    assert_eq!(stack.oz().accepted_uploads().len(), 3);
    assert!(
        stack.backend.seen().is_empty(),
        "respond mode never forwards"
    );
    stack.stop().await;
}

/// A DECLINED verdict reaches the backend as `X-Oz-Resolution: DECLINED` and the client of a
/// respond route as `"resolution":"DECLINED"`.
#[tokio::test]
async fn declined_verdict_in_forward_and_respond_mode() {
    let sim = SimConfig {
        verdict: Verdict::Declined,
        ..sim_config()
    };
    let yaml = format!(
        "{}{}    - path: \"/check\"\n      on_result: respond\n",
        oz_token(""),
        forward_route("")
    );
    let stack = Stack::start(sim, &yaml).await;
    let body = sample_capture_json(2, false, "video_selfie_blank");

    stack
        .post(CAPTURE, body.clone())
        .await
        .assert_from_backend();
    assert_eq!(
        stack.backend.only().get("x-oz-resolution"),
        Some("DECLINED")
    );

    let rsp = stack.post("/check", body).await;
    assert_eq!(rsp.status, 200);
    let doc = rsp.json();
    assert_eq!(doc["resolution"], "DECLINED", "{doc}");
    assert_eq!(
        doc["analyses"]["quality"]["resolution"], "DECLINED",
        "{doc}"
    );
    stack.stop().await;
}

// === Forward mode ===

/// `X-Oz-*` headers from the client are dropped; the backend sees only the proxy's verdict.
#[tokio::test]
async fn client_cannot_forge_x_oz_headers() {
    let sim = SimConfig {
        verdict: Verdict::Declined,
        ..sim_config()
    };
    let stack = Stack::start(sim, &format!("{}{}", oz_token(""), forward_route(""))).await;
    let body = sample_capture_json(2, false, "video_selfie_blank");
    let forged = [
        ("X-Oz-Resolution", "SUCCESS"),
        ("X-Oz-Folder-Id", "forged-folder"),
        ("X-Oz-Action", "video_selfie_best"),
        ("X-Oz-Virtual-Camera", "false"),
        ("X-Oz-Extra", "forged"),
    ];
    let rsp = stack
        .post_with(CAPTURE, "application/json", &forged, body)
        .await;
    rsp.assert_from_backend();

    let seen = stack.backend.only();
    let upload = stack.only_upload();
    assert_eq!(seen.get("x-oz-resolution"), Some("DECLINED"));
    assert_eq!(seen.get("x-oz-folder-id"), Some(upload.folder_id.as_str()));
    assert_eq!(seen.get("x-oz-action"), Some("video_selfie_blank"));
    assert_eq!(seen.get("x-oz-virtual-camera"), Some("false"));
    assert_eq!(seen.get("x-oz-extra"), None);
    stack.stop().await;
}

/// With `forward_body: summary` the backend gets a compact JSON instead of the frames, with a
/// `Content-Length` that matches it.
#[tokio::test]
async fn summary_body_replaces_the_frames() {
    let yaml = format!(
        "{}{}",
        oz_token(""),
        forward_route("  forward_body: summary\n")
    );
    let stack = Stack::start(sim_config(), &yaml).await;
    let rsp = stack
        .post(CAPTURE, sample_capture_json(5, true, "video_selfie_scan"))
        .await;
    rsp.assert_from_backend();

    let seen = stack.backend.only();
    let upload = stack.only_upload();
    assert_eq!(seen.get("content-type"), Some("application/json"));
    assert_eq!(
        seen.get("content-length"),
        Some(seen.body.len().to_string().as_str())
    );
    let text = String::from_utf8(seen.body.to_vec()).expect("UTF-8 summary");
    assert!(!text.contains("data:image"), "{text}");
    assert!(!text.contains(SAMPLE_ADDITIONAL_INFO), "{text}");
    let doc: Value = serde_json::from_str(&text).expect("summary is JSON");
    assert_eq!(
        doc,
        json!({
            "oz": {
                "folder_id": upload.folder_id,
                "resolution": "SUCCESS",
                "analyses": {"quality": {"state": "FINISHED", "resolution": "SUCCESS"}},
            },
            "action": "video_selfie_scan",
            "virtual_camera": true,
            "frame_count": 5,
        })
    );
    assert_eq!(seen.get("x-oz-resolution"), Some("SUCCESS"));
    assert_eq!(seen.get("x-oz-virtual-camera"), Some("true"));
    stack.stop().await;
}

/// `best_frame: jpeg` / `png` adds the best frame as part `photo_selfie1`, tagged
/// `photo_selfie`, from either shape.
#[tokio::test]
async fn best_frame_is_sent_as_a_photo_selfie_part() {
    for (choice, content_type, bytes, filename) in [
        ("jpeg", "image/jpeg", sample_jpeg(200), "best_frame.jpg"),
        ("png", "image/png", sample_png(200), "best_frame.png"),
    ] {
        let yaml = format!(
            "{}{}",
            oz_token(""),
            forward_route(&format!("  best_frame: {choice}\n"))
        );
        let stack = Stack::start(sim_config(), &yaml).await;
        for vc in [false, true] {
            stack
                .post(CAPTURE, sample_capture_json(2, vc, "video_selfie_blank"))
                .await
                .assert_from_backend();
        }
        for upload in stack.oz().accepted_uploads() {
            let names: Vec<&str> = upload.parts.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(names, ["video1", "payload", "photo_selfie1"], "{choice}");
            let part = upload.part("photo_selfie1").expect("best frame part");
            assert_eq!(part.content_type.as_deref(), Some(content_type));
            assert_eq!(part.filename.as_deref(), Some(filename));
            assert_eq!(part.bytes, bytes, "{choice}");
            let tags = &upload.payload.as_ref().expect("payload")["media:tags"];
            assert_eq!(tags["photo_selfie1"], json!(["photo_selfie"]));
            assert_eq!(tags["video1"], video_tags("video_selfie_blank"));
        }
        stack.stop().await;
    }
}

// === Oz behaviour: tokens, failures, timing, modes ===

/// Logged in with email and password, the proxy survives Oz expiring every token between two
/// captures: the second gets error_code 8, logs in once more, and goes through.
#[tokio::test]
async fn expired_login_token_is_renewed_with_one_login() {
    let sim = SimConfig {
        token: None,
        email: "proxy@example.com".into(),
        password: "s3cret-pass".into(),
        ..sim_config()
    };
    let yaml = format!(
        "oz:\n  url: \"http://{{oz}}\"\n  auth:\n    email: \"proxy@example.com\"\n    password: \"s3cret-pass\"\n{}",
        forward_route("")
    );
    let stack = Stack::start(sim, &yaml).await;
    let body = sample_capture_json(2, false, "video_selfie_blank");

    stack
        .post(CAPTURE, body.clone())
        .await
        .assert_from_backend();
    assert_eq!(stack.calls_to("auth").len(), 1, "first capture logs in");

    stack.oz().expire_all_tokens();
    stack.post(CAPTURE, body).await.assert_from_backend();

    assert_eq!(stack.calls_to("auth").len(), 2, "exactly one re-login");
    assert!(stack.calls_to("refresh").is_empty());
    let folders: Vec<u16> = stack.calls_to("folders").iter().map(|c| c.status).collect();
    assert_eq!(
        folders,
        [201, 401, 201],
        "the refused upload is sent once more"
    );
    assert_eq!(stack.oz().accepted_uploads().len(), 2);
    let seen = stack.backend.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen
        .iter()
        .all(|s| s.get("x-oz-resolution") == Some("SUCCESS")));
    stack.stop().await;
}

/// Oz refusing the upload (a 4xx with an Oz error body) is a 502 `oz_error` that carries
/// Oz's `error_code`; nothing reaches the backend.
#[tokio::test]
async fn oz_4xx_is_a_502_and_the_backend_gets_nothing() {
    // Oz's attachment size limit (OZ_ATTACHMENT_MAX_SIZE, docs/oz-api.md §6.1) below the ZIP size:
    // a real refusal with code 4 (INVALID VALUE).
    let sim = SimConfig {
        max_file_bytes: 100,
        ..sim_config()
    };
    let stack = Stack::start(sim, &format!("{}{}", oz_token(""), forward_route(""))).await;
    let rsp = stack
        .post(CAPTURE, sample_capture_json(3, false, "video_selfie_blank"))
        .await;
    let doc = rsp.problem(502, "oz_error");
    assert_eq!(doc["oz_error_code"], 4, "{doc}");
    assert_eq!(doc["oz_status"], 400, "{doc}");
    assert_eq!(stack.oz().uploads().len(), 1);
    assert!(!stack.oz().uploads()[0].accepted());
    assert!(stack.backend.seen().is_empty());
    assert!(stack.calls_to("start_analyses").is_empty());

    // An injected 4xx on the upload: Oz's generic error body, code 0.
    stack.oz().fail_next(Endpoint::Folders, 422, 1);
    let rsp = stack
        .post(CAPTURE, sample_capture_json(1, false, "video_selfie_blank"))
        .await;
    let doc = rsp.problem(502, "oz_error");
    assert_eq!(doc["oz_error_code"], 0, "{doc}");
    assert_eq!(doc["oz_status"], 422, "{doc}");
    assert!(stack.backend.seen().is_empty());
    stack.stop().await;
}

/// A 5xx on folder creation may come after Oz created the folder: the proxy answers 502 and
/// does not send the upload again.
#[tokio::test]
async fn oz_5xx_on_folder_creation_is_not_retried() {
    let stack = Stack::forward().await;
    stack.oz().fail_next(Endpoint::Folders, 503, 2);
    let rsp = stack
        .post(CAPTURE, sample_capture_json(2, false, "video_selfie_blank"))
        .await;
    let doc = rsp.problem(502, "oz_error");
    assert_eq!(doc["oz_status"], 503, "{doc}");
    assert_eq!(
        stack.calls_to("folders").len(),
        1,
        "exactly one upload attempt"
    );
    assert!(stack.oz().uploads().is_empty());
    assert!(stack.backend.seen().is_empty());
    stack.stop().await;
}

/// Oz slower than `oz.timeout` gives 504 `oz_timeout`; the upload is not sent again and the
/// backend gets nothing.
#[tokio::test]
async fn slow_oz_gives_504() {
    let stack = Stack::start(
        sim_config(),
        &format!(
            "{}{}",
            oz_token("  timeout: \"200ms\"\n"),
            forward_route("")
        ),
    )
    .await;
    // Far past the timeout. The proxy gives up and closes the connection, which cancels the
    // simulator's delayed answer, so the simulator never records the call: the proxy's own
    // per-call metrics are what counts the attempts.
    stack
        .oz()
        .set_latency(Endpoint::Folders, Duration::from_secs(5));
    let rsp = stack
        .post(CAPTURE, sample_capture_json(2, false, "video_selfie_blank"))
        .await;
    rsp.problem(504, "oz_timeout");
    assert!(stack.backend.seen().is_empty());
    let metrics = stack.metrics().await;
    assert_eq!(
        metrics.value(r#"oz_proxy_oz_request_duration_seconds_count{endpoint="folders"}"#),
        1.0,
        "exactly one upload attempt"
    );
    assert_eq!(
        metrics.value(r#"oz_proxy_oz_errors_total{endpoint="folders",code="timeout"}"#),
        1.0
    );
    stack.stop().await;
}

/// When the verdict is not final within `wait_for_result`, the capture is forwarded with
/// `X-Oz-Resolution: PROCESSING` and the folder id, so the backend can look it up later.
#[tokio::test]
async fn verdict_not_ready_in_time_is_forwarded_as_processing() {
    let sim = SimConfig {
        polls_until_final: u32::MAX,
        ..sim_config()
    };
    let yaml = format!(
        "{}capture:\n  wait_for_result: \"300ms\"\n  unchecked_images: strip\n  routes:\n    - path: \"{CAPTURE}\"\n      on_result: forward\n    - path: \"/check\"\n      on_result: respond\n",
        oz_token("")
    );
    let stack = Stack::start(sim, &yaml).await;
    let body = sample_capture_json(2, false, "video_selfie_blank");
    stack
        .post(CAPTURE, body.clone())
        .await
        .assert_from_backend();
    let seen = stack.backend.only();
    assert_eq!(seen.get("x-oz-resolution"), Some("PROCESSING"));
    assert_eq!(
        seen.get("x-oz-folder-id"),
        Some(stack.only_upload().folder_id.as_str())
    );
    assert!(!stack.calls_to("get_analysis").is_empty(), "it did poll");

    let rsp = stack.post("/check", body).await;
    assert_eq!(rsp.status, 200);
    let doc = rsp.json();
    assert_eq!(doc["state"], "processing", "{doc}");
    assert_eq!(doc["resolution"], "PROCESSING", "{doc}");
    stack.stop().await;
}

/// With `on_oz_error: forward`, an Oz failure still reaches the backend, marked
/// `X-Oz-Resolution: ERROR` and without a folder id.
#[tokio::test]
async fn oz_error_is_forwarded_as_error_when_configured() {
    let yaml = format!(
        "{}{}",
        oz_token(""),
        forward_route("  on_oz_error: forward\n")
    );
    let stack = Stack::start(sim_config(), &yaml).await;
    stack.oz().fail_next(Endpoint::Folders, 500, 1);
    let body = sample_capture_json(2, true, "video_selfie_eyes");
    stack
        .post(CAPTURE, body.clone())
        .await
        .assert_from_backend();
    let seen = stack.backend.only();
    assert_eq!(
        seen.body,
        best_frames_nulled(&SampleCapture::new(2, true, "video_selfie_eyes"))
    );
    assert_eq!(seen.get("x-oz-resolution"), Some("ERROR"));
    assert_eq!(seen.get("x-oz-folder-id"), None);
    assert_eq!(seen.get("x-oz-action"), Some("video_selfie_eyes"));
    assert_eq!(seen.get("x-oz-virtual-camera"), Some("true"));
    assert_eq!(stack.calls_to("folders").len(), 1);
    stack.stop().await;
}

/// `oz.api: instant` posts to the Instant API and takes its synchronous answer: no analyses
/// are started and nothing is polled.
#[tokio::test]
async fn instant_api_answers_in_one_call() {
    let stack = Stack::start(
        sim_config(),
        &format!("{}{}", oz_token("  api: instant\n"), forward_route("")),
    )
    .await;
    stack
        .post(CAPTURE, sample_capture_json(2, false, "video_selfie_blank"))
        .await
        .assert_from_backend();
    let upload = stack.only_upload();
    assert_eq!(upload.endpoint, "instant_folders");
    assert_eq!(upload.path, "/api/instant/folders/");
    let endpoints: Vec<Option<String>> =
        stack.oz().calls().into_iter().map(|c| c.endpoint).collect();
    assert_eq!(endpoints, [Some("instant_folders".to_owned())]);
    let seen = stack.backend.only();
    assert_eq!(seen.get("x-oz-resolution"), Some("SUCCESS"));
    assert_eq!(seen.get("x-oz-folder-id"), Some(upload.folder_id.as_str()));
    stack.stop().await;
}

/// In single-request mode the folder answer already holds the finished analyses: the proxy
/// uses them and starts and polls nothing (that would bill twice).
#[tokio::test]
async fn single_request_answer_is_used_as_is() {
    let sim = SimConfig {
        single_request: true,
        verdict: Verdict::OperatorRequired,
        ..sim_config()
    };
    let stack = Stack::start(sim, &format!("{}{}", oz_token(""), forward_route(""))).await;
    stack
        .post(CAPTURE, sample_capture_json(2, false, "video_selfie_blank"))
        .await
        .assert_from_backend();
    let endpoints: Vec<Option<String>> =
        stack.oz().calls().into_iter().map(|c| c.endpoint).collect();
    assert_eq!(endpoints, [Some("folders".to_owned())]);
    assert_eq!(
        stack.backend.only().get("x-oz-resolution"),
        Some("OPERATOR_REQUIRED")
    );
    stack.stop().await;
}

/// `wait_for_result: 0s` starts the analyses but does not wait: the backend gets PROCESSING.
/// `analyses: []` starts none: the folder's own status, PROCESSING for a fresh folder.
#[tokio::test]
async fn zero_wait_and_no_analyses_forward_processing() {
    let yaml = format!(
        concat!(
            "{oz}capture:\n  unchecked_images: strip\n  routes:\n",
            "    - path: \"/no-wait\"\n      on_result: forward\n      wait_for_result: \"0s\"\n",
            "    - path: \"/no-analyses\"\n      on_result: forward\n      analyses: []\n",
        ),
        oz = oz_token("")
    );
    let stack = Stack::start(sim_config(), &yaml).await;
    let body = sample_capture_json(2, false, "video_selfie_blank");

    stack
        .post("/no-wait", body.clone())
        .await
        .assert_from_backend();
    assert_eq!(
        stack.backend.seen()[0].get("x-oz-resolution"),
        Some("PROCESSING")
    );
    assert_eq!(stack.calls_to("start_analyses").len(), 1);
    assert!(stack.calls_to("get_analysis").is_empty());

    stack.post("/no-analyses", body).await.assert_from_backend();
    let seen = &stack.backend.seen()[1];
    assert_eq!(seen.get("x-oz-resolution"), Some("PROCESSING"));
    assert_eq!(
        seen.get("x-oz-folder-id"),
        Some(stack.oz().accepted_uploads()[1].folder_id.as_str())
    );
    assert_eq!(stack.calls_to("start_analyses").len(), 1, "none started");
    stack.stop().await;
}

/// Captures in flight at the same time each get their own folder and verdict: the backend
/// request, the Oz upload and the request id all belong together.
#[tokio::test]
async fn concurrent_captures_are_not_mixed_up() {
    const N: usize = 12;
    let actions = [
        "video_selfie_left",
        "video_selfie_right",
        "video_selfie_smile",
        "video_selfie_eyes",
    ];
    // Transform slots for all of them: above `max_concurrent` a capture gets 503 at once, by
    // design (see `capture_over_the_memory_budget_gets_503` for the refusal).
    let yaml = format!(
        "{}{}",
        oz_token(""),
        forward_route(&format!("  max_concurrent: {N}\n"))
    );
    let stack = Stack::start(sim_config(), &yaml).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let client = stack.client();
        let mut c = SampleCapture::new(1 + i % 3, i % 2 == 0, actions[i % actions.len()]);
        c.additional_info = Some(format!("capture-{i}"));
        tasks.spawn(async move { client.post(CAPTURE, c.to_json()).await });
    }
    while let Some(rsp) = within("captures", tasks.join_next()).await {
        rsp.expect("task").assert_from_backend();
    }

    let uploads = stack.oz().accepted_uploads();
    let seen = stack.backend.seen();
    assert_eq!((uploads.len(), seen.len()), (N, N));
    for s in &seen {
        let body: Value = serde_json::from_slice(&s.body).expect("original JSON body");
        let fields = if body["from_virtual_camera"].is_object() {
            &body["from_virtual_camera"]
        } else {
            &body
        };
        let info = fields["additional_info"].as_str().expect("info");
        let upload = uploads
            .iter()
            .find(|u| Some(u.folder_id.as_str()) == s.get("x-oz-folder-id"))
            .expect("the folder id names an upload");
        let payload = upload.payload.as_ref().expect("payload");
        assert_eq!(
            payload["media:meta_data"]["video1"]["additional_info"],
            info
        );
        assert_eq!(
            payload["folder:meta_data"]["request_id"].as_str(),
            s.get("x-request-id")
        );
        assert_eq!(s.get("x-oz-action"), body["action"].as_str());
        assert_eq!(
            s.get("x-oz-virtual-camera"),
            Some(if body["from_virtual_camera"].is_object() {
                "true"
            } else {
                "false"
            })
        );
        let frames = fields["frame_list"].as_array().expect("frames").len();
        assert_eq!(upload.zip_entries.len(), frames, "{info}");
    }
    stack.stop().await;
}

/// A capture over HTTP/2 (h2c, prior knowledge) is handled like one over HTTP/1.1, and the
/// backend gets it over HTTP/1.1 with a `Host`.
#[tokio::test]
async fn capture_over_h2c_is_forwarded() {
    let stack = Stack::forward().await;
    let h2 = Client::new(stack.proxy.traffic, true);
    let body = sample_capture_json(2, true, "video_selfie_down");
    let rsp = h2.post(CAPTURE, body.clone()).await;
    rsp.assert_from_backend();
    let seen = stack.backend.only();
    assert_eq!(
        seen.body,
        best_frames_nulled(&SampleCapture::new(2, true, "video_selfie_down"))
    );
    assert_eq!(seen.target, CAPTURE);
    assert!(seen.get("host").is_some(), "{:?}", seen.headers);
    assert_eq!(seen.get("x-oz-resolution"), Some("SUCCESS"));
    assert_eq!(seen.get("x-oz-action"), Some("video_selfie_down"));
    assert_eq!(
        seen.get("x-oz-folder-id"),
        Some(stack.only_upload().folder_id.as_str())
    );

    let rsp = h2.post(CAPTURE, &b"{\"action\":1}"[..]).await;
    rsp.problem(400, "invalid_field");
    assert_eq!(stack.backend.seen().len(), 1);
    stack.stop().await;
}

// === Metrics ===

/// After captures, `/metrics` on the admin port counts them by outcome, the bytes in and out,
/// the Oz call durations by endpoint and the Oz errors by endpoint and code.
#[tokio::test]
async fn metrics_count_captures_bytes_and_oz_calls() {
    let stack = Stack::forward().await;
    let body = sample_capture_json(3, false, "video_selfie_blank");
    stack
        .post(CAPTURE, body.clone())
        .await
        .assert_from_backend();
    stack
        .post(CAPTURE, body.clone())
        .await
        .assert_from_backend();
    stack.oz().fail_next(Endpoint::Folders, 503, 1);
    stack
        .post(CAPTURE, body.clone())
        .await
        .problem(502, "oz_error");
    stack
        .post(CAPTURE, &b"{not json"[..])
        .await
        .problem(400, "invalid_json");

    let m = stack.metrics().await;
    assert_eq!(
        m.value(r#"oz_proxy_captures_total{outcome="success"}"#),
        2.0
    );
    assert_eq!(
        m.value(r#"oz_proxy_captures_total{outcome="oz_error"}"#),
        1.0
    );
    assert_eq!(
        m.value(r#"oz_proxy_captures_total{outcome="rejected"}"#),
        1.0
    );
    // The three captures that were read whole and sent on, at least.
    assert!(m.value(r#"oz_proxy_capture_bytes_total{direction="in"}"#) >= 3.0 * body.len() as f64);
    let uploaded: u64 = stack
        .oz()
        .accepted_uploads()
        .iter()
        .map(|u| u.content_length.expect("length"))
        .sum();
    assert!(m.value(r#"oz_proxy_capture_bytes_total{direction="out"}"#) >= uploaded as f64);
    assert_eq!(
        m.value(r#"oz_proxy_oz_request_duration_seconds_bucket{le="+Inf",endpoint="folders"}"#),
        3.0
    );
    assert!(m
        .lines_of("oz_proxy_oz_request_duration_seconds_bucket{")
        .any(|l| l.contains(r#"endpoint="poll""#)));
    assert_eq!(
        m.value(r#"oz_proxy_oz_errors_total{endpoint="folders",code="0"}"#),
        1.0
    );
    stack.stop().await;
}

/// Oz does not decide how much work one capture makes: an answer that lists 20,000 analyses
/// which never finish gets a clear 502 after a bounded number of Oz calls, not a poll of each.
#[tokio::test]
async fn an_answer_listing_thousands_of_analyses_gets_a_bounded_number_of_oz_calls() {
    let stack = Stack::forward().await;
    stack.oz().set_unfinished_analyses(20_000);
    let rsp = stack
        .post(CAPTURE, sample_capture_json(2, false, "video_selfie_blank"))
        .await;
    let doc = rsp.problem(502, "oz_bad_response");
    let detail = doc["detail"].as_str().unwrap();
    assert!(detail.contains("analyses"), "{doc}");
    assert!(
        !detail.contains("PROCESSING") && !detail.contains('-'),
        "quotes Oz: {doc}"
    );
    assert!(stack.backend.seen().is_empty());
    let calls = stack.oz().calls();
    assert!(
        calls.len() <= 2 + oz_capture_proxy::oz::MAX_POLLS,
        "{} Oz calls for one capture",
        calls.len()
    );
    assert_eq!(doc["limit"], oz_capture_proxy::oz::MAX_ANALYSES, "{doc}");
    assert!(
        stack.calls_to("get_analysis").is_empty(),
        "an answer over the limit is not polled at all"
    );
    stack.stop().await;
}

/// `oz_errors_total{code}` takes only codes Oz documents: 50 codes it invents add one series,
/// `other`, however many there are.
#[tokio::test]
async fn error_codes_oz_invents_share_one_metric_series() {
    use std::hash::{BuildHasher, Hasher};
    let stack = Stack::forward().await;
    let series = |m: &MetricsText| m.lines_of("oz_proxy_oz_errors_total{").count();
    let before = series(&stack.metrics().await);
    let mut codes = std::collections::BTreeSet::new();
    while codes.len() < 50 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(codes.len());
        // Above every code docs/oz-api.md §5 lists (0–11, 13, 14).
        codes.insert(100 + (h.finish() % 1_000_000_000) as i64);
    }
    for &code in &codes {
        stack
            .oz()
            .fail_next_with_code(Endpoint::Folders, 400, 1, code);
        let rsp = stack
            .post(CAPTURE, sample_capture_json(2, false, "video_selfie_blank"))
            .await;
        rsp.problem(502, "oz_error");
    }
    let m = stack.metrics().await;
    assert!(series(&m) <= before + 1, "{}", m.0);
    assert_eq!(
        m.value(r#"oz_proxy_oz_errors_total{endpoint="folders",code="other"}"#),
        50.0
    );
    // A code Oz documents keeps its own series.
    stack.oz().fail_next_with_code(Endpoint::Folders, 400, 1, 4);
    stack
        .post(CAPTURE, sample_capture_json(2, false, "video_selfie_blank"))
        .await
        .problem(502, "oz_error");
    assert_eq!(
        stack
            .metrics()
            .await
            .value(r#"oz_proxy_oz_errors_total{endpoint="folders",code="4"}"#),
        1.0
    );
    stack.stop().await;
}
