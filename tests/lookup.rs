//! The verdict listener (`verdict_listen`, `src/lookup.rs`), black-box: `GET /verdicts/{id}`
//! agrees with the `X-Oz-*` headers the backend got for the capture, its token verifies with the
//! README's Python verifier, a freshly started proxy answers the same (nothing is kept between
//! requests), bad and unknown ids are refused (a bad one without asking Oz), `/video` streams
//! the simulator's MP4 byte for byte, and neither path is served on the traffic or admin port.

mod support;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use oz_capture_proxy::capture::testdata::sample_capture_json;
use serde_json::{json, Value};
use support::bin::TempDir;
use support::stack::{forward_route, oz_token, sim_config, Reply, Stack, CAPTURE, TOKEN};
use support::verifiers::verified;

/// An id Oz never gave out.
const UNKNOWN: &str = "0b4f1c9e-7a52-4c8e-9f1d-2f5a7c3b8e10";

/// The default forward stack's config, with an EdDSA verdict key at `key` (tokens off if `None`).
fn config(key: Option<&Path>) -> String {
    let mut yaml = format!("{}{}", oz_token(""), forward_route(""));
    if let Some(key) = key {
        yaml.push_str(&format!(
            "verdict:\n  keys:\n    - kid: \"l1\"\n      alg: EdDSA\n      private_key_file: \"{}\"\n",
            key.display()
        ));
    }
    yaml
}

/// A fresh Ed25519 key file in `dir`.
fn ed25519_key(dir: &TempDir) -> PathBuf {
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .expect("an Ed25519 key")
        .serialize_pem();
    dir.write("l1.pem", pem)
}

/// A capture through the forward route; the request the backend got.
async fn capture(stack: &Stack) -> support::backend::Recorded {
    let before = stack.backend.seen().len();
    stack
        .post(CAPTURE, sample_capture_json(3, false, "video_selfie_smile"))
        .await
        .assert_from_backend();
    stack.backend.seen().remove(before)
}

/// Every Oz call the simulator recorded.
fn oz_calls(stack: &Stack) -> usize {
    stack.oz().calls().len()
}

/// The lookup answer without its per-answer token, for comparing two answers.
fn without_token(reply: &Reply) -> Value {
    let mut doc = reply.json();
    doc.as_object_mut().unwrap().remove("verdict_token");
    doc
}

#[tokio::test(flavor = "multi_thread")]
async fn lookup_agrees_with_the_capture_verifies_and_needs_no_state() {
    let keys = TempDir::new("lookup-keys");
    let yaml = config(Some(&ed25519_key(&keys)));
    let stack = Stack::start_with_verdicts(sim_config(), &yaml).await;
    let seen = capture(&stack).await;
    let folder_id = seen.header("x-oz-folder-id").to_owned();
    let path = format!("/verdicts/{folder_id}");

    let reply = stack.verdict_get(&stack.proxy, &path).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let doc = reply.json();
    assert_eq!(doc["folder_id"], folder_id.as_str());
    assert_eq!(doc["resolution"], seen.header("x-oz-resolution"));
    assert_eq!(doc["request_id"], seen.header("x-request-id"));
    assert_eq!(doc["action"], seen.header("x-oz-action"));
    assert_eq!(doc["action"], "video_selfie_smile");
    assert_eq!(doc["virtual_camera"], false);
    assert_eq!(seen.header("x-oz-virtual-camera"), "false");
    let analyses = doc["analyses"].as_array().expect("analyses");
    assert!(!analyses.is_empty(), "{doc}");
    assert!(analyses
        .iter()
        .all(|a| a["type"].is_string() && a["resolution"].is_string()));
    for h in [
        "x-oz-folder-id",
        "x-oz-resolution",
        "x-oz-action",
        "x-oz-virtual-camera",
    ] {
        assert_eq!(reply.header(h), Some(seen.header(h)), "{h}");
    }

    // The token: the README's verifier accepts it against the admin JWKS; fresh and unbound.
    let token = doc["verdict_token"].as_str().expect("a token").to_owned();
    assert_eq!(reply.header("x-oz-verdict-token"), Some(token.as_str()));
    let claims = verified(json!({
        "name": "lookup", "token": token,
        "jwks_url": stack.proxy.admin_url("/.well-known/jwks.json"),
    }))
    .await;
    assert_eq!(claims["sub"], folder_id.as_str());
    assert_eq!(claims["oz"]["resolution"], doc["resolution"]);
    assert_eq!(claims["oz"]["action"], "video_selfie_smile");
    assert_eq!(claims["oz"]["virtual_camera"], false);
    let jti = claims["jti"].as_str().unwrap();
    assert!(jti.starts_with("lookup."), "{jti}");
    assert_eq!(reply.header("x-request-id"), Some(jti));
    assert!(claims.get("body_sha256").is_none() && claims.get("bind_sha256").is_none());
    // A second lookup mints another token.
    let again = stack.verdict_get(&stack.proxy, &path).await;
    assert_ne!(again.json()["verdict_token"], doc["verdict_token"]);
    assert_eq!(without_token(&again), without_token(&reply));

    // HEAD: the same head, no body.
    let head = stack
        .send(
            Request::head(stack.proxy.verdict_url(&path))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("x-oz-folder-id"), Some(folder_id.as_str()));

    // Stateless: a second replica (same simulator) answers the same...
    let replica = stack.another_proxy(&yaml).await;
    let other = stack.verdict_get(&replica, &path).await;
    assert_eq!(other.status, 200);
    assert_eq!(without_token(&other), without_token(&reply));
    replica.stop().await;
    // ...and so does a fresh one after the first stopped.
    let Stack {
        proxy,
        sim,
        backend,
        ..
    } = stack;
    proxy.stop().await;
    let stack = Stack::start_with_verdicts_on(sim, backend, &yaml).await;
    let fresh = stack.verdict_get(&stack.proxy, &path).await;
    assert_eq!(fresh.status, 200);
    assert_eq!(without_token(&fresh), without_token(&reply));
    let claims = verified(json!({
        "name": "lookup after restart", "token": fresh.json()["verdict_token"],
        "jwks_url": stack.proxy.admin_url("/.well-known/jwks.json"),
    }))
    .await;
    assert_eq!(claims["sub"], folder_id.as_str());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_ids_unknown_folders_paths_and_methods_are_problems() {
    let stack = Stack::start_with_verdicts(sim_config(), &config(None)).await;

    // Not a UUID: 400 naming the field, and Oz is not asked.
    for bad in [
        "/verdicts/not-a-uuid",
        "/verdicts/not-a-uuid/video",
        "/verdicts/0b4f1c9e7a524c8e9f1d2f5a7c3b8e10",
        "/verdicts/..%2F..%2Fapi%2Ffolders",
    ] {
        let before = oz_calls(&stack);
        let doc = stack
            .verdict_get(&stack.proxy, bad)
            .await
            .problem(400, "invalid_folder_id");
        assert_eq!(doc["field"], "folder_id", "{bad}: {doc}");
        assert_eq!(oz_calls(&stack), before, "{bad}: Oz was asked");
    }

    // A UUID Oz never gave out: Oz is asked, and the answer is 404.
    for path in [
        format!("/verdicts/{UNKNOWN}"),
        format!("/verdicts/{UNKNOWN}/video"),
    ] {
        let before = stack.calls_to("get_folder").len();
        stack
            .verdict_get(&stack.proxy, &path)
            .await
            .problem(404, "folder_not_found");
        assert_eq!(stack.calls_to("get_folder").len(), before + 1, "{path}");
    }

    for other in [
        "/",
        "/verdicts",
        "/verdicts/",
        "/live",
        &format!("/verdicts/{UNKNOWN}/x"),
    ] {
        stack
            .verdict_get(&stack.proxy, other)
            .await
            .problem(404, "not_found");
    }
    let post = stack
        .send(
            Request::post(stack.proxy.verdict_url(&format!("/verdicts/{UNKNOWN}")))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    post.problem(405, "method_not_allowed");
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    // Tokens off: the same answer without a token.
    let seen = capture(&stack).await;
    let reply = stack
        .verdict_get(
            &stack.proxy,
            &format!("/verdicts/{}", seen.header("x-oz-folder-id")),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.json().get("verdict_token").is_none(),
        "{}",
        reply.json()
    );
    assert_eq!(reply.header("x-oz-verdict-token"), None);
    assert_eq!(reply.json()["resolution"], seen.header("x-oz-resolution"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn video_streams_the_folders_mp4_and_containers_have_none() {
    let stack = Stack::start_with_verdicts(sim_config(), &config(None)).await;
    let seen = capture(&stack).await;
    let folder_id = seen.header("x-oz-folder-id").to_owned();

    let video = stack
        .verdict_get(&stack.proxy, &format!("/verdicts/{folder_id}/video"))
        .await;
    assert_eq!(video.status, 200, "{:?}", video.body);
    assert_eq!(video.header("content-type"), Some("video/mp4"));
    assert_eq!(
        video.header("content-length"),
        Some(video.body.len().to_string().as_str())
    );
    assert_eq!(
        &video.body[4..8],
        b"ftyp",
        "an MP4 starts with its ftyp box"
    );

    // The same bytes as the simulator serves to an authenticated client directly.
    let folder = stack
        .send(
            Request::get(format!("{}/api/folders/{folder_id}", stack.sim.url()))
                .header("x-forensic-access-token", TOKEN)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .json();
    let preview_url = folder["source_media"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|m| m["preview_url"].as_str())
        .expect("a preview_url")
        .to_owned();
    let direct = stack
        .send(
            Request::get(preview_url)
                .header("x-forensic-access-token", TOKEN)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert_eq!(direct.status, 200);
    assert_eq!(video.body, direct.body, "byte for byte");
    assert_eq!(
        video.header("content-length"),
        direct.header("content-length")
    );
    assert_eq!(video.header("content-type"), direct.header("content-type"));
    assert!(stack.proxy.metrics().await.contains(r#"endpoint="video""#));

    // A container: Oz has no preview of it.
    let before = stack.backend.seen().len();
    stack
        .post_with(
            CAPTURE,
            "application/octet-stream",
            &[],
            b"OZCAPSULA\x00\x01\x02".to_vec(),
        )
        .await
        .assert_from_backend();
    let container = stack.backend.seen().remove(before);
    let container_id = container.header("x-oz-folder-id");
    stack
        .verdict_get(&stack.proxy, &format!("/verdicts/{container_id}/video"))
        .await
        .problem(404, "no_video");
    let report = stack
        .verdict_get(&stack.proxy, &format!("/verdicts/{container_id}"))
        .await;
    assert_eq!(report.status, 200);
    assert_eq!(report.json()["action"], Value::Null, "{}", report.json());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn verdict_paths_are_never_served_on_the_traffic_or_admin_port() {
    let stack = Stack::start_with_verdicts(sim_config(), &config(None)).await;
    let seen = capture(&stack).await;
    let folder_id = seen.header("x-oz-folder-id").to_owned();
    for path in [
        format!("/verdicts/{folder_id}"),
        format!("/verdicts/{folder_id}/video"),
    ] {
        // The traffic port: passthrough, the backend answers (and saw the request).
        let before = stack.backend.seen().len();
        let reply = stack
            .send(
                Request::get(path.as_str())
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await;
        reply.assert_from_backend();
        assert_eq!(reply.header("x-oz-folder-id"), None);
        let got = stack.backend.seen();
        assert_eq!(got.len(), before + 1);
        assert_eq!(got[before].path, path);

        // The admin port: not one of its endpoints.
        let admin = stack.admin_get(&path).await;
        assert_eq!(admin.status, 404);
        assert_eq!(&admin.body[..], b"not found\n");
    }
    // Off unless configured.
    let plain = Stack::forward().await;
    assert_eq!(plain.proxy.verdict, None);
    plain.stop().await;
    stack.stop().await;
}

/// An Oz answer is not trusted to say where the proxy sends its token: a `preview_url` off the
/// `oz.url` origin is refused with 502 and never fetched.
#[tokio::test(flavor = "multi_thread")]
async fn a_preview_url_off_the_oz_origin_is_never_followed() {
    use support::backend::{backend, Reply as BackendReply};
    let elsewhere = backend()
        .reply(|_| BackendReply::text("stolen"))
        .start()
        .await;
    for url in [
        format!(
            "http://{}/api/folders/{UNKNOWN}/media/m/preview.mp4",
            elsewhere.addr
        ),
        "/api/folders/relative/preview.mp4".to_owned(),
        "https://127.0.0.1/preview.mp4".to_owned(),
    ] {
        let folder = json!({
            "folder_id": UNKNOWN,
            "system_resolution": "SUCCESS",
            "source_media": [{"media_id": "m", "preview_url": url}],
        })
        .to_string();
        let fake_oz = backend()
            .reply(move |_| {
                BackendReply::status(http::StatusCode::OK)
                    .header("content-type", "application/json")
                    .body(Bytes::from(folder.clone()))
            })
            .start()
            .await;
        let proxy = support::proxy::proxy(elsewhere.addr)
            .verdict_listen()
            .yaml_tail(&oz_token("").replace("{oz}", &fake_oz.addr.to_string()))
            .start()
            .await;
        let rsp = support::client::get(
            &support::client::http1_unpooled(),
            &proxy.verdict_url(&format!("/verdicts/{UNKNOWN}/video")),
        )
        .await;
        assert_eq!(rsp.status(), 502, "{url}");
        let text = support::client::text(rsp).await;
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["code"], "oz_bad_response", "{doc}");
        assert!(!text.contains(&url) && !text.contains(TOKEN), "{text}");
        assert_eq!(fake_oz.seen().len(), 1, "only the folder was read");
        proxy.stop().await;
        fake_oz.stop().await;
    }
    assert!(
        elsewhere.seen().is_empty(),
        "the proxy fetched a foreign URL"
    );
    elsewhere.stop().await;
}
