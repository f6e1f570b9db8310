//! The demo's printed walkthrough: pushes generated captures through a forward route, a respond
//! route and a route that gets its verdict late, then a corrupt and a replayed one, and prints
//! what Oz, the backend and the client each got, with `curl` lines to try afterwards.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use bytes::Bytes;
use http::{header, HeaderMap, Request};
use http_body_util::{BodyExt, Full};

use super::backend::HttpClient;
use super::{Demo, FORWARD_PATH, LATE_PATH, LATE_ROUTE, RESPOND_PATH};
use crate::capture::testdata;
use crate::oz_sim::OzSim;

/// Runs the walkthrough against a started demo and prints it; returns where the sample capture
/// for `curl` was written.
pub(super) async fn tell(demo: &Demo) -> anyhow::Result<PathBuf> {
    let base = format!("http://{}", demo.traffic_addr);
    let oz_addr = demo.oz_addr;
    // 4. Push generated captures through both modes: a new one each time, as from a new user;
    // the same one again is a replay, which step 5 shows.
    let numbered =
        |n| testdata::SampleCapture::numbered(n, 5, false, "video_selfie_blank").to_json();
    let capture = numbered(1);
    let sample_file = write_sample(&numbered(4))?;
    let client = demo.backend.client();

    let (status, _, body) =
        post(&client, &format!("{base}{FORWARD_PATH}"), capture.clone()).await?;
    let mut out = String::new();
    let _ = writeln!(out, "1) forward mode: POST {FORWARD_PATH} ({} bytes of on_capture_complete JSON, 5 JPEG frames)", capture.len());
    describe_upload(&mut out, &demo.sim);
    let _ = writeln!(out, "   the backend received:");
    if let Some(seen) = demo.backend.last() {
        let _ = writeln!(
            out,
            "     {} {} with {} body bytes",
            seen.method, seen.path, seen.body_len
        );
        for (name, value) in seen.headers.iter().filter(|(n, _)| {
            (n.as_str().starts_with("x-oz-") && n.as_str() != "x-oz-verdict-token")
                || n.as_str() == "x-request-id"
        }) {
            let _ = writeln!(out, "     {}: {}", name, value.to_str().unwrap_or("?"));
        }
        if let Some(token) = seen
            .headers
            .get("x-oz-verdict-token")
            .and_then(|v| v.to_str().ok())
        {
            let _ = writeln!(
                out,
                "     x-oz-verdict-token: {}… ({} bytes), decoded:",
                &token[..token.len().min(24)],
                token.len()
            );
            describe_token(&mut out, token);
            let _ = writeln!(
                out,
                "     (verify it with the keys at http://{}/.well-known/jwks.json; README, \"Verifying the verdict\")",
                demo.admin_addr
            );
        }
    } else {
        let _ = writeln!(out, "     nothing");
    }
    let _ = writeln!(
        out,
        "   the client got {status}: {}\n",
        String::from_utf8_lossy(&body)
    );

    let (status, _, body) = post(&client, &format!("{base}{RESPOND_PATH}"), numbered(2)).await?;
    let _ = writeln!(out, "2) respond mode: POST {RESPOND_PATH}");
    describe_upload(&mut out, &demo.sim);
    let _ = writeln!(
        out,
        "   the proxy answered {status} itself: {}\n",
        String::from_utf8_lossy(&body)
    );

    // A verdict Oz takes 2 s to reach, on a route that waits 500 ms: PROCESSING now, the final
    // verdict delivered to the backend when Oz has it.
    demo.sim
        .set_processing_for(std::time::Duration::from_secs(2));
    let (status, _, body) = post(&client, &format!("{base}{LATE_ROUTE}"), numbered(3)).await?;
    let _ = writeln!(
        out,
        "3) a late verdict: POST {LATE_ROUTE} (waits 500 ms; the simulated Oz takes 2 s)"
    );
    let _ = writeln!(
        out,
        "   the client got {status} at once: {}",
        String::from_utf8_lossy(&body)
    );
    print!("{out}");
    out.clear();
    match demo
        .backend
        .wait_for(LATE_PATH, std::time::Duration::from_secs(10))
        .await
    {
        Some(late) => {
            let _ = writeln!(
                out,
                "   then the backend received {} {}: {}",
                late.method,
                late.path,
                String::from_utf8_lossy(&late.late_body)
            );
            if let Some(token) = late
                .headers
                .get("x-oz-verdict-token")
                .and_then(|v| v.to_str().ok())
            {
                let _ = writeln!(out, "     with a fresh token, decoded:");
                describe_token(&mut out, token);
            }
            if let (Some(addr), Some(folder)) = (
                demo.verdict_addr,
                late.headers
                    .get("x-oz-folder-id")
                    .and_then(|v| v.to_str().ok()),
            ) {
                let _ = writeln!(
                    out,
                    "   any replica answers the same: curl -s http://{addr}/verdicts/{folder}\n"
                );
            }
        }
        None => {
            let _ = writeln!(out, "   no late verdict within 10 s\n");
        }
    }
    demo.sim.set_processing_for(std::time::Duration::ZERO);

    let bad = br#"{"action":"video_selfie_blank","frame_list":["data:image/jpeg;base64,@@@"],"additional_info":"x"}"#.to_vec();
    let (status, _, body) = post(&client, &format!("{base}{FORWARD_PATH}"), bad).await?;
    let _ = writeln!(
        out,
        "4) a corrupt frame is refused before Oz or the backend see anything:"
    );
    let _ = writeln!(out, "   {status}: {}\n", String::from_utf8_lossy(&body));

    let (status, _, body) = post(&client, &format!("{base}{FORWARD_PATH}"), capture).await?;
    let _ = writeln!(
        out,
        "5) the capture of 1) sent again is a replay, refused before Oz or the backend see it:"
    );
    let _ = writeln!(out, "   {status}: {}\n", String::from_utf8_lossy(&body));

    let _ = writeln!(
        out,
        "Try it yourself (a new sample capture is in {}):",
        sample_file.display()
    );
    let _ = writeln!(out, "  curl -s -X POST -H 'content-type: application/json' --data-binary @{} {base}{FORWARD_PATH}", sample_file.display());
    let _ = writeln!(
        out,
        "  (the same command again: 409 capture_replayed; capture.replay, README \"Abuse control\")"
    );
    let _ = writeln!(
        out,
        "  curl -s {base}/anything/else            # passthrough to the backend"
    );
    let _ = writeln!(
        out,
        "  curl -s http://{oz_addr}/_sim/uploads   # what Oz received"
    );
    let _ = writeln!(out, "  curl -s http://{}/metrics", demo.admin_addr);
    let _ = writeln!(out, "\nServing until Ctrl-C.");
    print!("{out}");
    Ok(sample_file)
}

fn describe_upload(out: &mut String, sim: &OzSim) {
    let uploads = sim.uploads();
    let Some(u) = uploads.last() else {
        let _ = writeln!(out, "   Oz received nothing");
        return;
    };
    let _ = writeln!(
        out,
        "   Oz received folder {} ({}):",
        u.folder_id,
        u.content_type.split(';').next().unwrap_or("")
    );
    for p in &u.parts {
        let _ = writeln!(
            out,
            "     part {:<8} {:<18} {:>7} bytes {}",
            p.name,
            p.content_type.as_deref().unwrap_or("-"),
            p.bytes.len(),
            p.filename
                .as_deref()
                .map(|f| format!("filename={f}"))
                .unwrap_or_default()
        );
    }
    let names: Vec<&str> = u.zip_entries.iter().map(|(n, _)| n.as_str()).collect();
    let _ = writeln!(out, "     ZIP entries: {}", names.join(", "));
    if let Some(payload) = &u.payload {
        let _ = writeln!(
            out,
            "     media:tags: {}",
            payload
                .get("media:tags")
                .map(|v| v.to_string())
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "     folder:meta_data: {}",
            payload
                .get("folder:meta_data")
                .map(|v| v.to_string())
                .unwrap_or_default()
        );
        let has_info = payload
            .pointer("/media:meta_data")
            .map(|m| m.to_string().contains("additional_info"))
            .unwrap_or(false);
        let _ = writeln!(
            out,
            "     media:meta_data carries additional_info: {has_info}"
        );
    }
}

/// Prints the header and claims of a compact JWS, as any JWT debugger would.
fn describe_token(out: &mut String, token: &str) {
    use base64::Engine as _;
    for (what, part) in ["header", "claims"].into_iter().zip(token.split('.')) {
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        let _ = writeln!(
            out,
            "       {what}: {}",
            decoded.map_or_else(|| "(unreadable)".to_owned(), |v| v.to_string())
        );
    }
}

/// A fresh Ed25519 key for this run's tokens, as PKCS#8 PEM (what `openssl genpkey -algorithm
fn write_sample(capture: &[u8]) -> anyhow::Result<PathBuf> {
    let path =
        std::env::temp_dir().join(format!("oz-capture-proxy-demo-{}.json", std::process::id()));
    std::fs::write(&path, capture).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

async fn post(
    client: &HttpClient,
    url: &str,
    body: Vec<u8>,
) -> anyhow::Result<(u16, HeaderMap, Bytes)> {
    let req = Request::post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let rsp = tokio::time::timeout(std::time::Duration::from_secs(30), client.request(req))
        .await
        .context("request timed out")??;
    let status = rsp.status().as_u16();
    let headers = rsp.headers().clone();
    let body = rsp.into_body().collect().await?.to_bytes();
    Ok((status, headers, body))
}
