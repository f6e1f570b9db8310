//! Black-box tests of the simulated Oz API: each test starts `serve` on 127.0.0.1:0
//! ([`support::sim::Sim`]), talks real HTTP to it (raw HTTP/1.1 over [`RawConn`], one h2c test
//! through hyper's client), and stops it. Every wait is under `support::within`, only there to
//! turn a hang into a failure.

mod support;

use std::io::{Cursor, Write};
use std::time::{Duration, Instant};

use oz_capture_proxy::oz_sim::{Endpoint, SimConfig, Verdict};
use serde_json::{json, Value};
use support::raw::RawConn;
use support::sim::Sim;
use support::within;
use tokio::net::TcpStream;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

const EMAIL: &str = "tester@example.com";
const PASSWORD: &str = "correct horse";
const BOUNDARY: &str = "test-boundary-7MA4YWxkTrZu0gW";

// === harness ===

fn config() -> SimConfig {
    SimConfig {
        email: EMAIL.into(),
        password: PASSWORD.into(),
        ..SimConfig::default()
    }
}

/// An HTTP answer, read off the wire.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts an Oz error answer and returns its message.
    fn oz_error(&self, status: u16, code: u64) -> String {
        let j = self.json();
        assert_eq!(self.status, status, "{j}");
        assert_eq!(j["error_code"], code, "{j}");
        assert!(j["details"].is_null(), "{j}");
        j["error_message"]
            .as_str()
            .expect("error_message")
            .to_owned()
    }
}

/// Requests to the simulator, as the proxy makes them.
impl Sim {
    /// Sends raw request bytes on a fresh connection and reads the whole answer.
    async fn raw(&self, request: &[u8]) -> Reply {
        let mut conn = RawConn::connect(self.addr).await;
        conn.send(request).await;
        parse_reply(&conn.read_to_end().await)
    }

    /// Sends a request with a `Content-Length` (always, as the proxy promises one).
    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.raw(&[req.as_bytes(), body].concat()).await
    }

    async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(t) = token {
            headers.push(("X-Forensic-Access-Token", t));
        }
        self.send("POST", path, &headers, body.to_string().as_bytes())
            .await
    }

    async fn get(&self, path: &str, token: &str) -> Reply {
        self.send("GET", path, &[("X-Forensic-Access-Token", token)], b"")
            .await
    }

    async fn login(&self) -> String {
        let r = self
            .post_json(
                "/api/authorize/auth/",
                None,
                &json!({"credentials": {"email": EMAIL, "password": PASSWORD}}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.json());
        r.json()["access_token"].as_str().expect("token").to_owned()
    }

    async fn upload(&self, path: &str, token: &str, content_type: &str, body: &[u8]) -> Reply {
        self.send(
            "POST",
            path,
            &[
                ("X-Forensic-Access-Token", token),
                ("Content-Type", content_type),
            ],
            body,
        )
        .await
    }
}

fn parse_reply(buf: &[u8]) -> Reply {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header block ends");
    let head = std::str::from_utf8(&buf[..end]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    if let Some((_, len)) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        let len: usize = len.parse().expect("content-length");
        assert_eq!(body.len(), len, "body length matches Content-Length");
        body.truncate(len);
    }
    Reply {
        status,
        headers,
        body,
    }
}

// === request builders ===

/// A small but real JPEG-shaped frame: SOI, a marker the tests can search for, EOI.
fn frame(n: usize) -> Vec<u8> {
    [
        &[0xFF, 0xD8, 0xFF, 0xE0][..],
        format!("FRAME-BYTES-{n:03}").as_bytes(),
        &[0xFF, 0xD9],
    ]
    .concat()
}

fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    for (name, data) in entries {
        w.start_file(name.as_str(), opts).expect("start entry");
        w.write_all(data).expect("write entry");
    }
    w.finish().expect("finish zip").into_inner()
}

fn frames(n: usize) -> Vec<(String, Vec<u8>)> {
    (1..=n).map(|i| (format!("{i:06}.jpg"), frame(i))).collect()
}

const ADDITIONAL_INFO: &str = "ENV-SECRET-ua=Mozilla/5.0;gpu=xyz";

fn payload(file_key: &str) -> Value {
    json!({
        "media:tags": {file_key: ["video_selfie", "video_selfie_blank", "orientation_portrait"]},
        "media:meta_data": {file_key: {"additional_info": ADDITIONAL_INFO}},
        "folder:meta_data": {"request_id": "req-42"},
    })
}

/// One multipart part: its header lines (without the final CRLF) and its content.
struct Part<'a> {
    head: String,
    body: &'a [u8],
}

fn file_part<'a>(name: &str, filename: &str, content_type: &str, body: &'a [u8]) -> Part<'a> {
    Part {
        head: format!(
            "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
             Content-Type: {content_type}"
        ),
        body,
    }
}

fn field_part<'a>(name: &str, body: &'a [u8]) -> Part<'a> {
    Part {
        head: format!("Content-Disposition: form-data; name=\"{name}\""),
        body,
    }
}

/// A multipart body built by hand, as RFC 7578 lays it out.
fn form(parts: &[Part<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(format!("--{BOUNDARY}\r\n{}\r\n\r\n", p.head).as_bytes());
        out.extend_from_slice(p.body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

fn form_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// The upload a correct proxy sends: a ZIP of `n` frames under `video1` and a payload.
fn capture_body(n: usize) -> Vec<u8> {
    let zip = zip_of(&frames(n));
    let payload = payload("video1").to_string();
    form(&[
        file_part("video1", "frames.zip", "application/zip", &zip),
        field_part("payload", payload.as_bytes()),
    ])
}

async fn create_folder(s: &Sim, token: &str) -> Value {
    let r = s
        .upload("/api/folders/", token, &form_type(), &capture_body(2))
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    r.json()
}

// === authentication (docs/oz-api.md §1) ===

#[tokio::test]
async fn login_with_right_credentials_gives_hex_token_pair() {
    let s = Sim::start(config()).await;
    // Without the trailing slash too: the docs disagree on it (docs/oz-api.md §8.1).
    for path in ["/api/authorize/auth/", "/api/authorize/auth"] {
        let r = s
            .post_json(
                path,
                None,
                &json!({"credentials": {"email": EMAIL, "password": PASSWORD}}),
            )
            .await;
        assert_eq!(r.status, 200);
        let j = r.json();
        for key in ["access_token", "expire_token"] {
            let t = j[key].as_str().expect(key);
            assert!(
                !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit()),
                "{key} is hex"
            );
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let expire = j["expire_date"].as_u64().expect("expire_date in seconds");
        assert!(expire > now && expire <= now + 16 * 60, "{expire} vs {now}");
        assert_eq!(j["user"]["user_type"], "CLIENT");
    }
    s.stop().await;
}

#[tokio::test]
async fn login_with_wrong_password_gets_401_oz_error() {
    let s = Sim::start(config()).await;
    let r = s
        .post_json(
            "/api/authorize/auth/",
            None,
            &json!({"credentials": {"email": EMAIL, "password": "wrong"}}),
        )
        .await;
    r.oz_error(401, 7);
    let r = s
        .post_json("/api/authorize/auth/", None, &json!({"email": EMAIL}))
        .await;
    r.oz_error(400, 3);
    s.stop().await;
}

#[tokio::test]
async fn token_missing_unknown_expired_get_codes_6_7_8() {
    let s = Sim::start(SimConfig {
        token: Some("static-service-token".into()),
        ..config()
    })
    .await;
    let path = "/api/folders/00000000-0000-0000-0000-000000000000";
    s.send("GET", path, &[], b"").await.oz_error(401, 6);
    s.get(path, "not-a-token").await.oz_error(401, 7);
    // Authenticated, the folder simply does not exist.
    s.get(path, "static-service-token").await.oz_error(404, 10);
    let token = s.login().await;
    s.get(path, &token).await.oz_error(404, 10);

    s.sim.expire_all_tokens();
    s.get(path, &token).await.oz_error(401, 8);
    s.get(path, "static-service-token").await.oz_error(401, 8);
    // A new login gets a fresh, working token.
    let fresh = s.login().await;
    s.get(path, &fresh).await.oz_error(404, 10);
    s.stop().await;
}

#[tokio::test]
async fn token_from_zero_ttl_login_is_expired_at_once() {
    let s = Sim::start(SimConfig {
        token_ttl: Duration::ZERO,
        ..config()
    })
    .await;
    let token = s.login().await;
    s.get("/api/analyses/x", &token).await.oz_error(401, 8);
    s.stop().await;
}

#[tokio::test]
async fn refresh_gives_a_new_pair_even_after_expiry() {
    let s = Sim::start(config()).await;
    let r = s
        .post_json(
            "/api/authorize/auth",
            None,
            &json!({"credentials": {"email": EMAIL, "password": PASSWORD}}),
        )
        .await
        .json();
    let (access, refresh) = (
        r["access_token"].as_str().unwrap().to_owned(),
        r["expire_token"].as_str().unwrap().to_owned(),
    );
    s.sim.expire_all_tokens();
    // The error texts of docs/oz-api.md §1.2.
    let m = s
        .post_json("/api/authorize/refresh/", Some(&access), &json!({}))
        .await
        .oz_error(400, 3);
    assert!(m.contains("expire_token"), "{m}");
    let m = s
        .post_json(
            "/api/authorize/refresh/",
            Some(&access),
            &json!({"expire_token": "ffff"}),
        )
        .await
        .oz_error(401, 7);
    assert_eq!(m, "Session not found");
    let r = s
        .post_json(
            "/api/authorize/refresh",
            Some(&access),
            &json!({"expire_token": refresh}),
        )
        .await;
    assert_eq!(r.status, 200);
    let new_access = r.json()["access_token"].as_str().unwrap().to_owned();
    assert_ne!(new_access, access);
    s.get("/api/analyses/x", &new_access)
        .await
        .oz_error(404, 10);
    // The old pair is gone once the new one has been used.
    s.get("/api/analyses/x", &access).await.oz_error(401, 7);
    s.stop().await;
}

// === uploads (docs/oz-api.md §2) ===

#[tokio::test]
async fn valid_upload_is_recorded_with_zip_entries_and_payload() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let body = capture_body(3);
    let r = s.upload("/api/folders/", &token, &form_type(), &body).await;
    assert_eq!(r.status, 201);
    let j = r.json();
    let folder_id = j["folder_id"].as_str().expect("folder_id");
    assert!(uuid::Uuid::parse_str(folder_id).is_ok(), "{folder_id}");
    assert_eq!(j["resolution_status"], "INITIAL");
    assert_eq!(j["meta_data"], json!({"request_id": "req-42"}));
    assert_eq!(j["analyses"], json!([]));
    let media = &j["media"][0];
    assert_eq!(media["media_type"], "SHOTS_SET");
    assert_eq!(media["original_name"], "frames.zip");
    assert_eq!(
        media["tags"],
        json!(["video_selfie", "video_selfie_blank", "orientation_portrait"])
    );
    assert!(media["media_id"].is_string());

    let uploads = s.sim.uploads();
    assert_eq!(uploads.len(), 1);
    let u = &uploads[0];
    assert!(u.accepted());
    assert_eq!(u.folder_id, folder_id);
    assert_eq!(u.endpoint, "folders");
    assert_eq!(u.content_type, form_type());
    assert_eq!(u.content_length, Some(body.len() as u64));
    assert!(!u.chunked);
    assert_eq!(u.zip_entries, frames(3));
    assert_eq!(u.payload.as_ref(), Some(&payload("video1")));
    let names: Vec<&str> = u.parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["video1", "payload"]);
    let zip_part = u.part("video1").expect("video1 part");
    assert_eq!(zip_part.content_type.as_deref(), Some("application/zip"));
    assert_eq!(zip_part.filename.as_deref(), Some("frames.zip"));
    assert_eq!(
        zip_part.zip_entry_names,
        ["000001.jpg", "000002.jpg", "000003.jpg"]
    );
    // The folder can be read back, with or without the trailing slash.
    let r = s.get(&format!("/api/folders/{folder_id}"), &token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["folder_id"], folder_id);
    s.stop().await;
}

#[tokio::test]
async fn upload_without_content_length_gets_411_and_is_recorded_as_chunked() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let body = capture_body(1);
    let mut req = format!(
        "POST /api/folders/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         X-Forensic-Access-Token: {token}\r\nContent-Type: {}\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        s.addr,
        form_type(),
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    let r = s.raw(&req).await;
    let m = r.oz_error(411, 3);
    assert!(m.contains("Content-Length"), "{m}");
    let u = &s.sim.uploads()[0];
    assert!(u.chunked && !u.accepted() && u.folder_id.is_empty());
    assert_eq!(u.status, 411);
    s.stop().await;
}

#[tokio::test]
async fn payload_that_is_not_json_gets_400_code_3() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let zip = zip_of(&frames(1));
    let body = form(&[
        file_part("video1", "frames.zip", "application/zip", &zip),
        field_part("payload", b"{\"media:tags\": {"),
    ]);
    let m = s
        .upload("/api/folders/", &token, &form_type(), &body)
        .await
        .oz_error(400, 3);
    assert!(m.contains("payload") && m.contains("JSON"), "{m}");
    let u = &s.sim.uploads()[0];
    assert_eq!(u.status, 400);
    assert_eq!(u.error.as_deref(), Some(m.as_str()));
    assert!(s.sim.accepted_uploads().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn tags_naming_a_missing_part_get_400_code_4() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let zip = zip_of(&frames(1));
    let mut p = payload("video1");
    p["media:tags"]["video2"] = json!(["video_selfie"]);
    let p = p.to_string();
    let body = form(&[
        file_part("video1", "frames.zip", "application/zip", &zip),
        field_part("payload", p.as_bytes()),
    ]);
    let m = s
        .upload("/api/folders/", &token, &form_type(), &body)
        .await
        .oz_error(400, 4);
    assert!(
        m.contains("\"video2\"") && m.contains("no file part"),
        "{m}"
    );
    s.stop().await;
}

#[tokio::test]
async fn sdk_action_used_as_tag_is_refused_with_a_hint() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let zip = zip_of(&frames(1));
    let p = json!({"media:tags": {"video1": ["video_selfie", "video_selfie_best", "orientation_portrait"]}})
        .to_string();
    let body = form(&[
        file_part("video1", "frames.zip", "application/zip", &zip),
        field_part("payload", p.as_bytes()),
    ]);
    let m = s
        .upload("/api/folders/", &token, &form_type(), &body)
        .await
        .oz_error(400, 4);
    assert!(m.contains("video_selfie_oneshot"), "{m}");
    s.stop().await;
}

#[tokio::test]
async fn corrupt_or_empty_zip_gets_400() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let p = payload("video1").to_string();
    let mut zip = zip_of(&frames(2));
    zip.truncate(zip.len() / 2);
    let body = form(&[
        file_part("video1", "frames.zip", "application/zip", &zip),
        field_part("payload", p.as_bytes()),
    ]);
    let m = s
        .upload("/api/folders/", &token, &form_type(), &body)
        .await
        .oz_error(400, 5);
    assert!(m.contains("ZIP"), "{m}");

    let empty = zip_of(&[]);
    let body = form(&[
        file_part("video1", "frames.zip", "application/zip", &empty),
        field_part("payload", p.as_bytes()),
    ]);
    let m = s
        .upload("/api/folders/", &token, &form_type(), &body)
        .await
        .oz_error(400, 4);
    assert!(m.contains("no entries"), "{m}");

    // Frames zipped as base64 text, not decoded JPEG bytes.
    let text = zip_of(&[("000001.jpg".into(), b"/9j/4AAQSkZJRgABAQAAAQ==".to_vec())]);
    let body = form(&[
        file_part("video1", "frames.zip", "application/zip", &text),
        field_part("payload", p.as_bytes()),
    ]);
    let m = s
        .upload("/api/folders/", &token, &form_type(), &body)
        .await
        .oz_error(400, 5);
    assert!(m.contains("base64"), "{m}");
    assert!(s.sim.accepted_uploads().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn malformed_multipart_gets_400_code_3() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let mut body = capture_body(1);
    // Drop the close delimiter, as a writer that forgets to finish would.
    body.truncate(body.len() - format!("--{BOUNDARY}--\r\n").len());
    let m = s
        .upload("/api/folders/", &token, &form_type(), &body)
        .await
        .oz_error(400, 3);
    assert!(m.contains("malformed multipart"), "{m}");
    let m = s
        .upload(
            "/api/folders/",
            &token,
            "multipart/form-data",
            &capture_body(1),
        )
        .await
        .oz_error(400, 5);
    assert!(m.contains("boundary"), "{m}");
    s.stop().await;
}

#[tokio::test]
async fn container_upload_is_stored_unchanged() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let blob = b"\x00OZCAPSULA-opaque-bytes\xff".to_vec();
    let r = s
        .upload("/api/folders", &token, "application/octet-stream", &blob)
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let u = &s.sim.uploads()[0];
    assert_eq!(u.container.as_deref(), Some(blob.as_slice()));
    assert!(u.parts.is_empty() && u.payload.is_none());
    assert_eq!(u.folder_id, r.json()["folder_id"]);

    let m = s
        .upload("/api/folders/", &token, "application/octet-stream", b"")
        .await
        .oz_error(400, 13);
    assert_eq!(m, "No data container provided");
    s.stop().await;
}

// === analyses and polling (docs/oz-api.md §3) ===

async fn start_quality(s: &Sim, token: &str, folder_id: &str) -> String {
    let r = s
        .post_json(
            &format!("/api/folders/{folder_id}/analyses/"),
            Some(token),
            &json!({"analyses": [{"type": "quality"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let a = &r.json()[0];
    assert_eq!(a["type"], "QUALITY");
    assert_eq!(a["state"], "PROCESSING");
    assert_eq!(a["resolution_status"], "PROCESSING");
    assert_eq!(a["resolution"], "PROCESSING");
    assert_eq!(a["folder_id"], folder_id);
    assert_eq!(a["analyse_id"], a["analysis_id"]);
    a["analysis_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn analysis_polls_processing_then_finishes_with_configured_verdict() {
    let s = Sim::start(SimConfig {
        polls_until_final: 2,
        ..config()
    })
    .await;
    let token = s.login().await;
    let folder = create_folder(&s, &token).await;
    let folder_id = folder["folder_id"].as_str().unwrap();
    let id = start_quality(&s, &token, folder_id).await;
    for _ in 0..2 {
        let j = s.get(&format!("/api/analyses/{id}"), &token).await.json();
        assert_eq!(j["resolution_status"], "PROCESSING", "{j}");
    }
    let j = s.get(&format!("/api/analyses/{id}/"), &token).await.json();
    assert_eq!(j["state"], "FINISHED");
    assert_eq!(j["resolution_status"], "SUCCESS");
    assert_eq!(j["resolution"], "SUCCESS");
    let rm = &j["results_media"][0];
    assert_eq!(rm["results_data"]["confidence_spoofing"], 0.01);
    assert_eq!(rm["source_shots_set_id"], folder["media"][0]["media_id"]);

    let f = s
        .get(
            &format!("/api/folders/{folder_id}/?with_analyses=true"),
            &token,
        )
        .await
        .json();
    assert_eq!(f["resolution_status"], "FINISHED");
    assert_eq!(f["system_resolution"], "SUCCESS");
    assert_eq!(f["analyses"][0]["analysis_id"], id.as_str());
    s.stop().await;
}

#[tokio::test]
async fn declined_verdict_set_over_http_reaches_new_analyses() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let r = s
        .post_json(
            "/_sim/faults",
            None,
            &json!({"verdict": "DECLINED", "polls_until_final": 0}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["verdict"], "DECLINED");
    let folder = create_folder(&s, &token).await;
    let id = start_quality(&s, &token, folder["folder_id"].as_str().unwrap()).await;
    let j = s.get(&format!("/api/analyses/{id}"), &token).await.json();
    assert_eq!(j["state"], "FINISHED");
    assert_eq!(j["resolution"], "DECLINED");
    assert_eq!(
        j["results_media"][0]["results_data"]["confidence_spoofing"],
        0.99
    );
    s.stop().await;
}

#[tokio::test]
async fn failed_verdict_ends_in_state_failed() {
    let s = Sim::start(SimConfig {
        polls_until_final: 0,
        verdict: Verdict::Failed,
        ..config()
    })
    .await;
    let token = s.login().await;
    let folder = create_folder(&s, &token).await;
    let folder_id = folder["folder_id"].as_str().unwrap();
    let id = start_quality(&s, &token, folder_id).await;
    let list = s
        .get(&format!("/api/folders/{folder_id}/analyses/"), &token)
        .await
        .json();
    assert_eq!(list[0]["analysis_id"], id.as_str());
    assert_eq!(list[0]["state"], "FAILED");
    assert_eq!(list[0]["resolution_status"], "FAILED");
    s.stop().await;
}

#[tokio::test]
async fn unknown_folder_and_unknown_type_are_refused() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    s.post_json(
        "/api/folders/00000000-0000-0000-0000-000000000000/analyses/",
        Some(&token),
        &json!({"analyses": [{"type": "quality"}]}),
    )
    .await
    .oz_error(404, 10);
    let folder = create_folder(&s, &token).await;
    let m = s
        .post_json(
            &format!(
                "/api/folders/{}/analyses",
                folder["folder_id"].as_str().unwrap()
            ),
            Some(&token),
            &json!({"analyses": [{"type": "telepathy"}]}),
        )
        .await
        .oz_error(400, 4);
    assert!(m.contains("telepathy"), "{m}");
    s.stop().await;
}

#[tokio::test]
async fn single_request_mode_answers_with_finished_analyses() {
    let s = Sim::start(SimConfig {
        single_request: true,
        verdict: Verdict::Declined,
        ..config()
    })
    .await;
    let token = s.login().await;
    let j = create_folder(&s, &token).await;
    assert_eq!(j["analyses"][0]["state"], "FINISHED");
    assert_eq!(j["analyses"][0]["resolution"], "DECLINED");
    assert_eq!(j["system_resolution"], "DECLINED");
    s.stop().await;
}

#[tokio::test]
async fn instant_endpoint_answers_at_once_and_stores_nothing() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let r = s
        .upload(
            "/api/instant/folders/",
            &token,
            &form_type(),
            &capture_body(2),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    let j = r.json();
    assert_eq!(j["analyses"][0]["type"], "QUALITY");
    assert_eq!(j["analyses"][0]["state"], "FINISHED");
    assert_eq!(j["analyses"][0]["resolution"], "SUCCESS");
    let u = &s.sim.uploads()[0];
    assert_eq!(u.endpoint, "instant_folders");
    assert_eq!(u.zip_entries.len(), 2);
    let folder_id = j["folder_id"].as_str().unwrap();
    s.get(&format!("/api/folders/{folder_id}"), &token)
        .await
        .oz_error(404, 10);
    s.stop().await;
}

// === late verdicts: the PROCESSING hold ===

/// How long the hold tests keep analyses `PROCESSING`: long enough that the reads right after
/// starting land inside it on a loaded machine, short enough to wait out.
const HOLD: Duration = Duration::from_millis(1000);

/// Every read endpoint's view of a folder's analysis `id`, in one pass: the analysis, the
/// folder's analysis list, the folder, and the folder with its analyses embedded. Each entry is
/// `(what, value)`, so a failed comparison names the endpoint.
async fn views(s: &Sim, token: &str, folder_id: &str, id: &str) -> Vec<(&'static str, Value)> {
    let analysis = s.get(&format!("/api/analyses/{id}"), token).await.json();
    let list = s
        .get(&format!("/api/folders/{folder_id}/analyses/"), token)
        .await
        .json();
    let listed = list
        .as_array()
        .expect("an array of analyses")
        .iter()
        .find(|a| a["analysis_id"] == id)
        .expect("the analysis is listed")
        .clone();
    let folder = s
        .get(&format!("/api/folders/{folder_id}"), token)
        .await
        .json();
    let embedded = s
        .get(
            &format!("/api/folders/{folder_id}?with_analyses=true"),
            token,
        )
        .await
        .json();
    let inner = embedded["analyses"]
        .as_array()
        .expect("embedded analyses")
        .iter()
        .find(|a| a["analysis_id"] == id)
        .expect("the analysis is embedded")
        .clone();
    vec![
        ("analysis state", analysis["state"].clone()),
        (
            "analysis resolution_status",
            analysis["resolution_status"].clone(),
        ),
        ("analysis resolution", analysis["resolution"].clone()),
        ("listed state", listed["state"].clone()),
        (
            "listed resolution_status",
            listed["resolution_status"].clone(),
        ),
        (
            "folder resolution_status",
            folder["resolution_status"].clone(),
        ),
        (
            "folder system_resolution",
            folder["system_resolution"].clone(),
        ),
        (
            "embedded folder resolution_status",
            embedded["resolution_status"].clone(),
        ),
        (
            "embedded folder system_resolution",
            embedded["system_resolution"].clone(),
        ),
        ("embedded analysis state", inner["state"].clone()),
        (
            "embedded analysis resolution_status",
            inner["resolution_status"].clone(),
        ),
    ]
}

/// Asserts that every endpoint reads `PROCESSING`, when the reads are known to have landed
/// inside the hold: the hold began after `sent`, so reads answered before `sent + HOLD` did.
/// Returns whether the check ran.
async fn assert_held(s: &Sim, token: &str, folder_id: &str, id: &str, sent: Instant) -> bool {
    let seen = views(s, token, folder_id, id).await;
    if sent.elapsed() >= HOLD {
        return false;
    }
    for (what, v) in &seen {
        assert_eq!(v, "PROCESSING", "{what} during the hold: {seen:?}");
    }
    true
}

/// Polls (bounded, paced) until `GET /api/analyses/{id}` is final, then checks that the hold
/// was kept (no verdict before `sent + HOLD`) and that every endpoint now shows `DECLINED`.
async fn assert_final_after_hold(s: &Sim, token: &str, folder_id: &str, id: &str, sent: Instant) {
    within("the held analysis to turn final", async {
        // Paced polling: the hold gives no signal a client could wait on, as with a real Oz.
        while s.get(&format!("/api/analyses/{id}"), token).await.json()["state"] == "PROCESSING" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(sent.elapsed() >= HOLD, "final after {:?}", sent.elapsed());
    let seen = views(s, token, folder_id, id).await;
    let want = |what: &str| match what {
        "analysis state" | "listed state" | "embedded analysis state" => "FINISHED",
        "folder resolution_status" | "embedded folder resolution_status" => "FINISHED",
        _ => "DECLINED",
    };
    for (what, v) in &seen {
        assert_eq!(v, want(what), "{what} after the hold: {seen:?}");
    }
}

#[tokio::test]
async fn processing_hold_set_on_the_handle_holds_every_endpoint_then_finishes() {
    let s = Sim::start(SimConfig {
        polls_until_final: 0,
        verdict: Verdict::Declined,
        ..config()
    })
    .await;
    let token = s.login().await;
    let folder = create_folder(&s, &token).await;
    let folder_id = folder["folder_id"].as_str().unwrap();
    s.sim.set_processing_for(HOLD);
    let sent = Instant::now();
    let id = start_quality(&s, &token, folder_id).await;
    // Two passes: with polls_until_final 0, any read outside a hold would already be final.
    let checked = assert_held(&s, &token, folder_id, &id, sent).await
        && assert_held(&s, &token, folder_id, &id, sent).await;
    assert!(
        checked,
        "the machine was too slow to read inside a {HOLD:?} hold"
    );
    assert_final_after_hold(&s, &token, folder_id, &id, sent).await;

    // Removing the hold affects analyses started afterwards only.
    s.sim.set_processing_for(Duration::ZERO);
    let next = start_quality(&s, &token, folder_id).await;
    let j = s.get(&format!("/api/analyses/{next}"), &token).await.json();
    assert_eq!(j["resolution_status"], "DECLINED", "{j}");
    s.stop().await;
}

#[tokio::test]
async fn processing_hold_set_over_http_shows_in_faults_and_holds_single_requests_too() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let r = s
        .post_json(
            "/_sim/faults",
            None,
            &json!({
                "processing_for_ms": HOLD.as_millis() as u64,
                "verdict": "DECLINED",
                "polls_until_final": 0,
                "single_request": true,
            }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["processing_for_ms"], HOLD.as_millis() as u64);
    let shown = s.send("GET", "/_sim/faults", &[], b"").await.json();
    assert_eq!(shown["processing_for_ms"], HOLD.as_millis() as u64);

    // In single-request mode the upload itself starts the analyses; held, it answers before
    // the verdict and the client has to poll.
    let sent = Instant::now();
    let folder = create_folder(&s, &token).await;
    assert_eq!(folder["system_resolution"], "PROCESSING", "{folder}");
    assert_eq!(folder["analyses"][0]["state"], "PROCESSING", "{folder}");
    let folder_id = folder["folder_id"].as_str().unwrap();
    let id = folder["analyses"][0]["analysis_id"].as_str().unwrap();
    assert!(
        assert_held(&s, &token, folder_id, id, sent).await,
        "the machine was too slow to read inside a {HOLD:?} hold"
    );
    assert_final_after_hold(&s, &token, folder_id, id, sent).await;

    // `clear` drops the hold with the other faults.
    let r = s
        .post_json("/_sim/faults", None, &json!({"clear": true}))
        .await;
    assert_eq!(r.json()["processing_for_ms"], 0);
    let folder = create_folder(&s, &token).await;
    assert_eq!(folder["system_resolution"], "DECLINED", "{folder}");
    s.stop().await;
}

// === previews: `preview_url` in `source_media` ===

/// The `preview_url` of a `source_media` entry, if it has one.
fn preview_url(entry: &Value) -> Option<&str> {
    entry
        .get("preview_url")
        .map(|u| u.as_str().expect("preview_url is a string"))
}

#[tokio::test]
async fn preview_url_in_source_media_serves_a_small_mp4() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let created = create_folder(&s, &token).await;
    let folder_id = created["folder_id"].as_str().unwrap();
    let media_id = created["media"][0]["media_id"].as_str().unwrap();
    let want = format!(
        "{}/api/folders/{folder_id}/media/{media_id}/preview.mp4",
        s.url()
    );
    // The upload answer, the folder and an analysis all name the same preview.
    assert_eq!(
        preview_url(&created["source_media"][0]),
        Some(want.as_str())
    );
    let folder = s
        .get(&format!("/api/folders/{folder_id}"), &token)
        .await
        .json();
    assert_eq!(folder["source_media"][0]["media_id"], media_id);
    assert_eq!(folder["source_media"][0]["media_type"], "SHOTS_SET");
    assert_eq!(preview_url(&folder["source_media"][0]), Some(want.as_str()));
    let id = start_quality(&s, &token, folder_id).await;
    let analysis = s.get(&format!("/api/analyses/{id}"), &token).await.json();
    assert_eq!(
        preview_url(&analysis["source_media"][0]),
        Some(want.as_str())
    );

    let path = want.strip_prefix(&s.url()).unwrap();
    let r = s.get(path, &token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("video/mp4"));
    // parse_reply has checked the body against it; it must be there to check.
    let len: usize = r
        .header("content-length")
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert_eq!(len, r.body.len());
    assert!((64..2048).contains(&len), "a small file: {len} bytes");
    // ISO BMFF: the file opens with an ftyp box (32-bit big-endian size, type, major brand,
    // minor version, compatible brands), and a moov box follows it.
    let b = &r.body;
    let ftyp_size = u32::from_be_bytes(b[0..4].try_into().unwrap()) as usize;
    assert_eq!(&b[4..8], b"ftyp");
    assert_eq!(&b[8..12], b"isom", "major brand");
    assert!(
        ftyp_size >= 16 && ftyp_size.is_multiple_of(4) && ftyp_size < len,
        "{ftyp_size}"
    );
    let compatible: Vec<&[u8]> = b[16..ftyp_size].chunks(4).collect();
    assert!(compatible.contains(&&b"isom"[..]), "{compatible:?}");
    let moov_size = u32::from_be_bytes(b[ftyp_size..ftyp_size + 4].try_into().unwrap()) as usize;
    assert_eq!(&b[ftyp_size + 4..ftyp_size + 8], b"moov");
    assert!(ftyp_size + moov_size <= len);
    // The same media, the same bytes.
    assert_eq!(s.get(path, &token).await.body, r.body);
    s.stop().await;
}

#[tokio::test]
async fn preview_needs_a_token_like_every_oz_call() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let created = create_folder(&s, &token).await;
    let url = preview_url(&created["source_media"][0]).expect("a preview");
    let path = url.strip_prefix(&s.url()).unwrap().to_owned();
    let folder_path = format!("/api/folders/{}", created["folder_id"].as_str().unwrap());
    // The same 401s, word for word, as the folder it belongs to.
    let missing = s.send("GET", &path, &[], b"").await;
    missing.oz_error(401, 6);
    assert_eq!(
        missing.body,
        s.send("GET", &folder_path, &[], b"").await.body
    );
    let invalid = s.get(&path, "not-a-token").await;
    invalid.oz_error(401, 7);
    assert_eq!(invalid.body, s.get(&folder_path, "not-a-token").await.body);
    s.sim.expire_all_tokens();
    s.get(&path, &token).await.oz_error(401, 8);
    s.stop().await;
}

#[tokio::test]
async fn preview_of_an_unknown_folder_or_media_is_404() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let unknown = "00000000-0000-0000-0000-000000000000";
    let m = s
        .get(
            &format!("/api/folders/{unknown}/media/{unknown}/preview.mp4"),
            &token,
        )
        .await
        .oz_error(404, 10);
    assert!(m.contains(unknown), "{m}");
    let created = create_folder(&s, &token).await;
    let folder_id = created["folder_id"].as_str().unwrap();
    s.get(
        &format!("/api/folders/{folder_id}/media/{unknown}/preview.mp4"),
        &token,
    )
    .await
    .oz_error(404, 10);
    s.stop().await;
}

#[tokio::test]
async fn container_and_instant_folders_have_no_preview() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let r = s
        .upload(
            "/api/folders",
            &token,
            "application/octet-stream",
            b"\x00OZCAPSULA",
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let folder_id = r.json()["folder_id"].as_str().unwrap().to_owned();
    let folder = s
        .get(&format!("/api/folders/{folder_id}"), &token)
        .await
        .json();
    let entry = &folder["source_media"][0];
    assert!(entry["media_id"].is_string(), "{folder}");
    assert_eq!(preview_url(entry), None, "{folder}");
    // Asked for anyway, where it would be: 404 in Oz's error shape.
    let media_id = entry["media_id"].as_str().unwrap();
    let m = s
        .get(
            &format!("/api/folders/{folder_id}/media/{media_id}/preview.mp4"),
            &token,
        )
        .await
        .oz_error(404, 10);
    assert!(m.contains("no preview"), "{m}");

    // The Instant API keeps nothing to serve a preview from.
    let r = s
        .upload(
            "/api/instant/folders/",
            &token,
            &form_type(),
            &capture_body(1),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    let j = r.json();
    assert_eq!(j["source_media"][0]["media_type"], "SHOTS_SET");
    assert_eq!(preview_url(&j["source_media"][0]), None, "{j}");
    assert_eq!(
        preview_url(&j["analyses"][0]["source_media"][0]),
        None,
        "{j}"
    );
    s.stop().await;
}

// === faults ===

#[tokio::test]
async fn fail_next_answers_503_once_then_succeeds() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    s.sim.fail_next(Endpoint::Folders, 503, 1);
    let m = s
        .upload("/api/folders/", &token, &form_type(), &capture_body(1))
        .await
        .oz_error(503, 0);
    assert_eq!(m, "Unknown server side error occurred");
    let r = s
        .upload("/api/folders/", &token, &form_type(), &capture_body(1))
        .await;
    assert_eq!(r.status, 201);
    // The failed request never reached Oz's upload handling; only the retry is an upload.
    assert_eq!(s.sim.uploads().len(), 1);
    let statuses: Vec<u16> = s
        .sim
        .calls()
        .iter()
        .filter(|c| c.endpoint.as_deref() == Some("folders"))
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [503, 201]);
    s.stop().await;
}

#[tokio::test]
async fn faults_json_expires_tokens_and_fails_calls() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let r = s
        .post_json(
            "/_sim/faults",
            None,
            &json!({
                "fail_next": {"endpoint": "folders", "status": 502, "count": 2},
                "latency_ms": {"get_folder": 1},
                "expire_tokens": true,
            }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["fail_next"]["folders"]["count"], 2);
    // The injected outage answers before the (now expired) token is looked at.
    s.upload("/api/folders/", &token, &form_type(), &capture_body(1))
        .await
        .oz_error(502, 0);
    s.get("/api/analyses/x", &token).await.oz_error(401, 8);
    let fresh = s.login().await;
    s.upload("/api/folders/", &fresh, &form_type(), &capture_body(1))
        .await
        .oz_error(502, 0);
    assert_eq!(
        s.upload("/api/folders/", &fresh, &form_type(), &capture_body(1))
            .await
            .status,
        201
    );
    // A typo in the control body changes nothing and says why.
    let r = s
        .post_json(
            "/_sim/faults",
            None,
            &json!({"fail_next": {"endpoint": "folder", "status": 503}}),
        )
        .await;
    let m = r.oz_error(400, 4);
    assert!(m.contains("folders"), "{m}");
    assert_eq!(
        s.get("/_sim/faults", &fresh).await.json()["fail_next"],
        json!({})
    );
    s.stop().await;
}

#[tokio::test]
async fn faults_json_floods_with_unfinished_analyses_and_sends_any_error_code() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let r = s
        .post_json(
            "/_sim/faults",
            None,
            &json!({
                "fail_next": {"endpoint": "folders", "status": 400, "error_code": 987_654},
                "unfinished_analyses": 3,
            }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["unfinished_analyses"], 3);
    assert_eq!(r.json()["fail_next"]["folders"]["error_code"], 987_654);
    s.upload("/api/folders/", &token, &form_type(), &capture_body(1))
        .await
        .oz_error(400, 987_654);

    let folder = create_folder(&s, &token).await;
    let folder_id = folder["folder_id"].as_str().unwrap();
    let started = s
        .post_json(
            &format!("/api/folders/{folder_id}/analyses/"),
            Some(&token),
            &json!({"analyses": [{"type": "quality"}]}),
        )
        .await
        .json();
    let started = started.as_array().unwrap();
    assert_eq!(started.len(), 4, "the one asked for and 3 more");
    // The extra ones are real analyses that never finish, however often they are read.
    let extra = started[3]["analysis_id"].as_str().unwrap();
    for _ in 0..5 {
        let j = s
            .get(&format!("/api/analyses/{extra}"), &token)
            .await
            .json();
        assert_eq!(j["resolution_status"], "PROCESSING", "{j}");
    }
    // One answer only: the next start lists just what it was asked for.
    let again = s
        .post_json(
            &format!("/api/folders/{folder_id}/analyses/"),
            Some(&token),
            &json!({"analyses": [{"type": "quality"}]}),
        )
        .await
        .json();
    assert_eq!(again.as_array().unwrap().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn injected_latency_delays_the_answer_at_least_that_long() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let latency = Duration::from_millis(150);
    s.sim.set_latency(Endpoint::GetAnalysis, latency);
    let began = Instant::now();
    s.get("/api/analyses/x", &token).await.oz_error(404, 10);
    assert!(began.elapsed() >= latency, "{:?}", began.elapsed());
    let last = s.sim.calls().pop().expect("a call");
    assert_eq!(last.endpoint.as_deref(), Some("get_analysis"));
    assert_eq!(last.delayed, latency);
    s.stop().await;
}

// === introspection and transport ===

#[tokio::test]
async fn sim_uploads_summary_never_shows_additional_info_or_frames() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    create_folder(&s, &token).await;
    let r = s.send("GET", "/_sim/uploads", &[], b"").await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body.clone()).unwrap();
    assert!(!text.contains("ENV-SECRET"), "{text}");
    assert!(!text.contains("FRAME-BYTES"), "{text}");
    let j = r.json();
    let u = &j[0];
    assert_eq!(u["endpoint"], "folders");
    assert_eq!(u["parts"][0]["name"], "video1");
    assert_eq!(u["parts"][0]["content_type"], "application/zip");
    assert_eq!(
        u["parts"][0]["zip_entries"],
        json!(["000001.jpg", "000002.jpg"])
    );
    assert_eq!(u["media_tags"]["video1"][1], "video_selfie_blank");
    assert_eq!(u["media_meta_keys"], json!({"video1": ["additional_info"]}));
    assert_eq!(u["folder_meta"], json!({"request_id": "req-42"}));
    let calls = s.send("GET", "/_sim/calls", &[], b"").await.json();
    assert!(calls
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["path"] == "/api/folders/" && c["status"] == 201));
    s.stop().await;
}

#[tokio::test]
async fn wrong_method_gets_405_with_allow() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let r = s.get("/api/folders/", &token).await;
    r.oz_error(405, 1);
    assert_eq!(r.header("allow"), Some("POST"));
    s.stop().await;
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let s = Sim::start(config()).await;
    let token = s.sim.issue_token();
    let body = within("the h2c exchange", async {
        let stream = TcpStream::connect(s.addr).await.expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        let conn = tokio::spawn(conn);
        let req = hyper::Request::get(format!("http://{}/api/analyses/none", s.addr))
            .header("X-Forensic-Access-Token", token)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let rsp = sender.send_request(req).await.expect("h2 answer");
        assert_eq!(rsp.version(), hyper::Version::HTTP_2);
        assert_eq!(rsp.status(), 404);
        let body = rsp.into_body().collect().await.expect("body").to_bytes();
        drop(sender);
        let _ = conn.await;
        body
    })
    .await;
    let j: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["error_code"], 10);
    s.stop().await;
}

#[tokio::test]
async fn wait_for_uploads_wakes_on_arrival() {
    let s = Sim::start(config()).await;
    let token = s.login().await;
    let waiter = {
        let sim = s.sim.clone();
        tokio::spawn(async move { sim.wait_for_uploads(1).await })
    };
    create_folder(&s, &token).await;
    within("the upload waiter to wake", waiter)
        .await
        .expect("waiter did not panic");
    s.stop().await;
}
