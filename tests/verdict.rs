//! Verdict tokens, checked the way a backend would: by the README's Python verifier (PyJWT),
//! which shares no code with the proxy that signs. Forward and respond mode, EdDSA and HS256,
//! the session binding, the JWKS, key rotation by reload, and every way a token must fail:
//! a tampered claim, a wrong key, an expired token, another request's body, another session.

mod support;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use oz_capture_proxy::capture::testdata::sample_capture_json;
use serde_json::json;
use support::bin::{self, TempDir};
use support::stack::{oz_token, sim_config, Stack, CAPTURE};
use support::verifiers::{self, b64, ed25519_pem, header_and_claims, verified};

const RESPOND: &str = "/api/liveness/respond";

/// Key files in a directory that lives as long as the test.
struct Keys {
    dir: TempDir,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            dir: TempDir::new("verdict-keys"),
        }
    }

    fn ed25519(&self, name: &str) -> PathBuf {
        self.dir.write(name, ed25519_pem())
    }

    fn secret(&self, name: &str, secret: &[u8]) -> PathBuf {
        self.dir.write(name, secret)
    }
}

fn ed_key(kid: &str, path: &Path) -> String {
    format!(
        "    - kid: \"{kid}\"\n      alg: EdDSA\n      private_key_file: \"{}\"\n",
        path.display()
    )
}

fn hs_key(kid: &str, path: &Path) -> String {
    format!(
        "    - kid: \"{kid}\"\n      alg: HS256\n      secret_file: \"{}\"\n",
        path.display()
    )
}

/// A forward route on [`CAPTURE`] and a `safe` respond route on [`RESPOND`], with `verdict`
/// lines `extra` and `keys`.
fn config(extra: &str, keys: &str) -> String {
    format!(
        "{}capture:\n  wait_for_result: \"5s\"\n  unchecked_images: strip\n  routes:\n    - path: \"{CAPTURE}\"\n      on_result: forward\n    - path: \"{RESPOND}\"\n      on_result: respond\n      result_mode: safe\nverdict:\n{extra}  keys:\n{keys}",
        oz_token("")
    )
}

/// A capture through the forward route; the request the backend got.
async fn forward_capture(stack: &Stack, headers: &[(&str, &str)]) -> support::backend::Recorded {
    let before = stack.backend.seen().len();
    let reply = stack
        .post_with(
            CAPTURE,
            "application/json",
            headers,
            sample_capture_json(3, false, "video_selfie_blank"),
        )
        .await;
    reply.assert_from_backend();
    stack.backend.seen().remove(before)
}

/// The token with one claim changed and the signature kept.
fn tampered(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let (_, mut payload) = header_and_claims(token);
    payload["oz"]["resolution"] = "SUCCESS".into();
    payload["sub"] = "00000000-0000-4000-8000-000000000000".into();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&payload).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

#[tokio::test(flavor = "multi_thread")]
async fn eddsa_tokens_verify_in_forward_and_respond_mode_and_fail_when_they_should() {
    let keys = Keys::new();
    let stack = Stack::start(
        sim_config(),
        &config("", &ed_key("k2", &keys.ed25519("k2.pem"))),
    )
    .await;
    let jwks_url = stack.proxy.admin_url("/.well-known/jwks.json");

    // Forward mode: the token covers exactly the body the backend got.
    let seen = forward_capture(&stack, &[]).await;
    let token = seen.header("x-oz-verdict-token").to_owned();
    let (header, _) = header_and_claims(&token);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], "k2");
    assert_eq!(header["typ"], "JWT");
    let claims = verified(json!({
        "name": "forward", "token": token, "jwks_url": jwks_url, "body_b64": b64(&seen.body),
    }))
    .await;
    assert_eq!(claims["iss"], "oz-capture-proxy");
    assert_eq!(claims["sub"], seen.header("x-oz-folder-id"));
    assert_eq!(claims["jti"], seen.header("x-request-id"));
    assert_eq!(claims["oz"]["resolution"], seen.header("x-oz-resolution"));
    assert_eq!(claims["oz"]["action"], seen.header("x-oz-action"));
    assert_eq!(claims["oz"]["virtual_camera"], false);
    assert!(claims["oz"]["analyses"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        600
    );
    assert!(claims.get("aud").is_none() && claims.get("bind_sha256").is_none());

    // Respond mode, `safe`: the browser learns only that it finished, and gets the token.
    let reply = stack
        .post(RESPOND, sample_capture_json(3, false, "video_selfie_blank"))
        .await;
    assert_eq!(reply.status, 200);
    let answer = reply.json();
    assert_eq!(answer["state"], "finished");
    let respond_token = answer["verdict_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let claims = verified(json!({
        "name": "respond", "token": respond_token, "jwks_url": jwks_url,
    }))
    .await;
    assert!(claims.get("body_sha256").is_none(), "{claims}");
    assert_eq!(claims["oz"]["resolution"], "SUCCESS");

    // A second proxy with a key of the same `kid`: its JWKS is the wrong key.
    let other_keys = Keys::new();
    let other = Stack::start(
        sim_config(),
        &config("", &ed_key("k2", &other_keys.ed25519("k2.pem"))),
    )
    .await;
    let exp = header_and_claims(&token).1["exp"].as_u64().unwrap();
    let must_fail = vec![
        json!({"name": "tampered claim", "token": tampered(&token), "jwks_url": jwks_url}),
        json!({"name": "wrong key", "token": token, "jwks_url": other.proxy.admin_url("/.well-known/jwks.json")}),
        json!({"name": "expired", "token": token, "jwks_url": jwks_url, "body_b64": b64(&seen.body), "at": exp + 1}),
        json!({"name": "another body", "token": token, "jwks_url": jwks_url, "body_b64": b64(b"{\"other\":1}")}),
    ];
    let why = [
        "InvalidSignatureError",
        "InvalidSignatureError",
        "ExpiredSignatureError",
        "another body",
    ];
    for (r, why) in verifiers::python(must_fail).await.iter().zip(why) {
        assert_eq!(r["ok"], false, "{r}");
        assert!(r["error"].as_str().unwrap().contains(why), "{why}: {r}");
    }
    // The README's Node and Go verifiers agree, on the good token and on the bad ones; each
    // says "bad signature" in its own words.
    let cases = vec![
        json!({"name": "forward", "token": token, "jwks_url": jwks_url, "body_b64": b64(&seen.body)}),
        json!({"name": "tampered claim", "token": tampered(&token), "jwks_url": jwks_url}),
        json!({"name": "another body", "token": token, "jwks_url": jwks_url, "body_b64": b64(b"{}")}),
        json!({"name": "wrong key", "token": token, "jwks_url": other.proxy.admin_url("/.well-known/jwks.json")}),
    ];
    for (results, bad_signature) in [
        (verifiers::node(cases.clone()).await, "signature"),
        (verifiers::go(cases).await, "verification error"),
    ] {
        assert_eq!(results[0]["ok"], true, "{}", results[0]);
        assert_eq!(results[0]["claims"]["sub"], seen.header("x-oz-folder-id"));
        for r in &results[1..] {
            assert_eq!(r["ok"], false, "{r}");
        }
        assert!(
            results[1]["error"]
                .as_str()
                .unwrap()
                .contains(bad_signature),
            "{}",
            results[1]
        );
        assert!(
            results[2]["error"]
                .as_str()
                .unwrap()
                .contains("another body"),
            "{}",
            results[2]
        );
    }

    // And the untouched token still passes as of just before it expires.
    let claims = verified(json!({
        "name": "before expiry", "token": token, "jwks_url": jwks_url, "body_b64": b64(&seen.body), "at": exp - 1,
    }))
    .await;
    assert_eq!(claims["sub"], seen.header("x-oz-folder-id"));
    other.stop().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hs256_tokens_verify_with_the_shared_secret_only_and_are_never_published() {
    let keys = Keys::new();
    let secret = b"an-hs256-secret-of-more-than-32-bytes-0123456789";
    let stack = Stack::start(
        sim_config(),
        &config(
            "  audience: \"kyc-backend\"\n",
            &hs_key(
                "h1",
                &keys.secret("h1.secret", &[&secret[..], b"\n"].concat()),
            ),
        ),
    )
    .await;
    let seen = forward_capture(&stack, &[]).await;
    let token = seen.header("x-oz-verdict-token").to_owned();
    assert_eq!(header_and_claims(&token).0["alg"], "HS256");
    let claims = verified(json!({
        "name": "hs256", "token": token, "secret_b64": b64(secret),
        "body_b64": b64(&seen.body), "audience": "kyc-backend",
    }))
    .await;
    assert_eq!(claims["aud"], "kyc-backend");
    let results = verifiers::python(vec![
        json!({"name": "wrong secret", "token": token, "secret_b64": b64(b"another-secret-of-more-than-32-bytes-000000"), "audience": "kyc-backend"}),
        json!({"name": "wrong audience", "token": token, "secret_b64": b64(secret), "audience": "someone-else"}),
    ])
    .await;
    assert!(
        results[0]["error"]
            .as_str()
            .unwrap()
            .contains("InvalidSignatureError"),
        "{}",
        results[0]
    );
    assert!(
        results[1]["error"]
            .as_str()
            .unwrap()
            .contains("InvalidAudienceError"),
        "{}",
        results[1]
    );
    let jwks = stack.admin_get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status, 200);
    assert_eq!(
        jwks.json(),
        json!({"keys": []}),
        "HS256 secrets are never published"
    );
    let metrics = stack.metrics().await.0;
    assert!(!metrics.contains("an-hs256-secret"), "{metrics}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bound_token_carries_the_session_and_a_capture_without_it_is_refused() {
    let keys = Keys::new();
    let stack = Stack::start(
        sim_config(),
        &config(
            "  bind: \"cookie:sid\"\n",
            &ed_key("k2", &keys.ed25519("k2.pem")),
        ),
    )
    .await;
    let jwks_url = stack.proxy.admin_url("/.well-known/jwks.json");
    let refused = stack
        .post(CAPTURE, sample_capture_json(3, false, "video_selfie_blank"))
        .await;
    let doc = refused.problem(400, "missing_binding");
    assert_eq!(doc["field"], "sid");
    assert!(
        stack.backend.seen().is_empty(),
        "nothing reaches the backend"
    );
    assert!(stack.oz().uploads().is_empty(), "nothing reaches Oz");

    let seen = forward_capture(&stack, &[("cookie", "theme=dark; sid=session-one")]).await;
    let token = seen.header("x-oz-verdict-token").to_owned();
    let claims = verified(json!({
        "name": "bound", "token": token, "jwks_url": jwks_url,
        "body_b64": b64(&seen.body), "binding_b64": b64(b"session-one"),
    }))
    .await;
    assert!(claims["bind_sha256"].is_string());
    let other_session = verifiers::python(vec![json!({
        "name": "another session", "token": token, "jwks_url": jwks_url,
        "body_b64": b64(&seen.body), "binding_b64": b64(b"session-two"),
    })])
    .await;
    assert_eq!(other_session[0]["ok"], false, "{}", other_session[0]);
    assert!(
        other_session[0]["error"]
            .as_str()
            .unwrap()
            .contains("another session"),
        "{}",
        other_session[0]
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_sent_token_never_reaches_the_backend() {
    let keys = Keys::new();
    let stack = Stack::start(
        sim_config(),
        &config("", &ed_key("k2", &keys.ed25519("k2.pem"))),
    )
    .await;
    let forged = "eyJhbGciOiJub25lIn0.eyJveiI6eyJyZXNvbHV0aW9uIjoiU1VDQ0VTUyJ9fQ.";
    for name in [
        "X-Oz-Verdict-Token",
        "x-oz-verdict_token",
        "X-OZ-VERDICT-TOKEN",
    ] {
        let req = Request::get("/passthrough")
            .header(name, forged)
            .body(Full::new(Bytes::new()))
            .unwrap();
        stack.send(req).await;
    }
    let seen = forward_capture(&stack, &[("x-oz-verdict-token", forged)]).await;
    assert_ne!(seen.header("x-oz-verdict-token"), forged);
    let all = stack.backend.seen();
    assert_eq!(all.len(), 4);
    for r in &all[..3] {
        assert!(
            r.headers.keys().all(|k| !k.as_str().contains("verdict")),
            "{:?}",
            r.headers
        );
    }
    // The JWKS holds public members only.
    let jwks = stack.admin_get("/.well-known/jwks.json").await.json();
    let key = &jwks["keys"][0];
    let mut members: Vec<&str> = key
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x"]);
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["use"], "sig");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_by_reload_signs_with_the_new_key_and_old_tokens_still_verify() {
    let keys = Keys::new();
    let old = keys.ed25519("old.pem");
    let new = keys.ed25519("new.pem");
    let stack = Stack::start_from_file(sim_config(), &config("", &ed_key("old", &old))).await;
    let jwks_url = stack.proxy.admin_url("/.well-known/jwks.json");
    let before = forward_capture(&stack, &[]).await;
    let old_token = before.header("x-oz-verdict-token").to_owned();

    stack.rewrite(&stack.config(&config(
        "",
        &format!("{}{}", ed_key("new", &new), ed_key("old", &old)),
    )));
    support::within("the JWKS to publish both keys", async {
        loop {
            let jwks = stack.admin_get("/.well-known/jwks.json").await.json();
            if jwks["keys"].as_array().is_some_and(|k| k.len() == 2) {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let after = forward_capture(&stack, &[]).await;
    let new_token = after.header("x-oz-verdict-token").to_owned();
    assert_eq!(header_and_claims(&new_token).0["kid"], "new");
    verified(json!({"name": "old token after rotation", "token": old_token, "jwks_url": jwks_url, "body_b64": b64(&before.body)})).await;
    verified(json!({"name": "new token", "token": new_token, "jwks_url": jwks_url, "body_b64": b64(&after.body)})).await;
    stack.stop().await;
}

#[test]
fn check_names_the_key_path_of_a_bad_key_and_never_prints_key_material() {
    let dir = TempDir::new("verdict-check");
    let short = dir.write("short.secret", "only-twenty-bytes-xx");
    let not_a_key = dir.write(
        "not-a-key.pem",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let good_secret = dir.write(
        "good.secret",
        "a-good-secret-that-is-long-enough-0123456789",
    );
    let good_pem = dir.write("good.pem", ed25519_pem());
    let base = "backend:\n  url: \"http://127.0.0.1:1\"\n";
    let cases: Vec<(String, &str)> = vec![
        (hs_key("a", &short), "verdict.keys[0].secret_file"),
        (ed_key("a", &not_a_key), "verdict.keys[0].private_key_file"),
        (
            ed_key("a", &dir.path.join("missing.pem")),
            "verdict.keys[0].private_key_file",
        ),
        (
            format!("{}{}", ed_key("a", &good_pem), hs_key("a", &good_secret)),
            "verdict.keys[1].kid",
        ),
        (
            ed_key("a", &good_secret),
            "verdict.keys[0].private_key_file",
        ),
        (
            "    - kid: \"a\"\n      alg: HS256\n".to_owned(),
            "verdict.keys[0].secret_file",
        ),
    ];
    for (keys, key_path) in cases {
        let file = dir.write("config.yaml", format!("{base}verdict:\n  keys:\n{keys}"));
        let out = bin::check(&file, &[]);
        assert_eq!(out.status.code(), Some(64), "{}", out.all());
        assert!(out.all().contains(key_path), "{key_path} in {}", out.all());
        assert!(!out.all().contains("a-good-secret"), "{}", out.all());
        assert!(!out.all().contains("only-twenty"), "{}", out.all());
    }
    let file = dir.write(
        "config.yaml",
        format!(
            "{base}verdict:\n  keys:\n{}{}",
            ed_key("k2", &good_pem),
            hs_key("k1", &good_secret)
        ),
    );
    let out = bin::check(&file, &[]);
    assert!(out.status.success(), "{}", out.all());
    let pem = std::fs::read_to_string(&good_pem).unwrap();
    let pem_body = pem.lines().nth(1).unwrap();
    assert!(!out.all().contains(pem_body), "{}", out.all());
    assert!(!out.all().contains("a-good-secret"), "{}", out.all());
}
