//! The load: keep-alive clients that each send at a steady pace, every answer checked.
//!
//! Workers, each a loop that sends one request per tick (a request that runs past its tick delays
//! the next one; ticks are never made up in a burst):
//!
//! - HTTP/1.1 passthrough (hyper-util's pooled client, one keep-alive connection per worker):
//!   GET 1 KiB and 1 MiB (half of the 1 MiB ones chunked), POST 1 KiB and 1 MiB echoed as a hash;
//! - h2c with prior knowledge, two workers multiplexed on one connection: GET 1 KiB, POST 1 MiB;
//! - WebSocket: a fresh connection, the upgrade, four masked frames echoed, a close handshake;
//! - captures over HTTP/1.1: valid ones on the forward route (and, once the reload added it, on
//!   the second forward route), valid ones on the respond route, and invalid ones (400 expected).
//!
//! Each request carries a unique `x-soak-id` (also sent as `x-request-id`, so Oz's folder metadata
//! names it) and ends as one [`Outcome`], with its start and end.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use oz_capture_proxy::capture::testdata::SampleCapture;
use oz_capture_proxy::error_chain::chain;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::backend::{FORWARD_PATHS, LARGE, OFFSETS, RESPOND_PATH, SMALL};
use crate::hash::{hash, Hasher};
use crate::ws;

/// Longer than any legitimate answer (the slowest is a capture behind a hanging Oz: `oz.timeout`);
/// a request still open after this is a hang, and counts as lost.
pub const HANG: Duration = Duration::from_secs(30);

type ReqBody = BoxBody<Bytes, std::convert::Infallible>;
pub type HttpClient = Client<HttpConnector, ReqBody>;

/// Id prefix of the captures sent to the forward route the valid reload adds.
pub const EXTRA_PREFIX: &str = "cfwx-";

/// What a request was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    H1Get1k,
    H1Get1m,
    H1Post1k,
    H1Post1m,
    H2Get1k,
    H2Post1m,
    WsEcho,
    CaptureForward,
    CaptureRespond,
    CaptureInvalid,
}

impl Class {
    pub const ALL: [Class; 10] = [
        Class::H1Get1k,
        Class::H1Get1m,
        Class::H1Post1k,
        Class::H1Post1m,
        Class::H2Get1k,
        Class::H2Post1m,
        Class::WsEcho,
        Class::CaptureForward,
        Class::CaptureRespond,
        Class::CaptureInvalid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::H1Get1k => "HTTP/1.1 GET 1 KiB",
            Class::H1Get1m => "HTTP/1.1 GET 1 MiB",
            Class::H1Post1k => "HTTP/1.1 POST 1 KiB",
            Class::H1Post1m => "HTTP/1.1 POST 1 MiB",
            Class::H2Get1k => "h2c GET 1 KiB",
            Class::H2Post1m => "h2c POST 1 MiB",
            Class::WsEcho => "WebSocket echo (4 frames)",
            Class::CaptureForward => "capture, forward route",
            Class::CaptureRespond => "capture, respond route",
            Class::CaptureInvalid => "capture, invalid (400 expected)",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Class::H1Get1k => "g1k",
            Class::H1Get1m => "g1m",
            Class::H1Post1k => "p1k",
            Class::H1Post1m => "p1m",
            Class::H2Get1k => "h2g",
            Class::H2Post1m => "h2p",
            Class::WsEcho => "ws",
            Class::CaptureForward => "cfw",
            Class::CaptureRespond => "crs",
            Class::CaptureInvalid => "cin",
        }
    }

    /// Safe to repeat (RFC 9110 §9.2.2): a second copy at the backend is allowed, if reported.
    pub fn idempotent(self) -> bool {
        matches!(
            self,
            Class::H1Get1k | Class::H1Get1m | Class::H2Get1k | Class::WsEcho
        )
    }

    /// Passthrough traffic, which no Oz fault may touch.
    pub fn passthrough(self) -> bool {
        !matches!(
            self,
            Class::CaptureForward | Class::CaptureRespond | Class::CaptureInvalid
        )
    }

    /// Sent over HTTP/1.1 through hyper's client (answers checked for `Connection: close`).
    fn http1(self) -> bool {
        !matches!(self, Class::H2Get1k | Class::H2Post1m | Class::WsEcho)
    }
}

/// How one request ended, as the client saw it.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The expected answer, checked (hash and length, verdict, 400 for an invalid capture).
    Ok,
    /// An `application/problem+json` answer.
    Problem { status: u16, code: String },
    /// The connection was refused (the listener is closed).
    Refused,
    /// Connected, but no complete answer: reset, closed, or a body cut short.
    Reset(String),
    /// An answer that is neither the expected one nor a problem (a wrong hash, no verdict, a bare
    /// error status): always lost.
    Wrong(String),
    /// Nothing within [`HANG`].
    Hang,
}

/// One request, as the client saw it.
#[derive(Clone, Debug)]
pub struct Record {
    pub id: String,
    pub class: Class,
    pub start: Instant,
    pub end: Instant,
    pub outcome: Outcome,
    /// For HTTP/1.1 answers: whether `Connection: close` was on it.
    pub conn_close: Option<bool>,
}

/// What every worker shares.
pub struct Ctx {
    pub proxy: SocketAddr,
    /// Random bytes request bodies are cut from.
    pub data: Bytes,
    /// How many valid captures were sent: each is a new one (`SampleCapture::numbered`), as
    /// from many users; the same one again would be refused as a replay.
    pub captures_sent: AtomicU64,
    /// Set once the reload that adds the second forward route has been applied.
    pub extra_route: AtomicBool,
    pub records: Mutex<Vec<Record>>,
}

impl Ctx {
    /// A valid `on_capture_complete` body, new media each time.
    pub fn next_capture(&self) -> Bytes {
        let n = self.captures_sent.fetch_add(1, Ordering::Relaxed);
        Bytes::from(SampleCapture::numbered(n, 3, false, "video_selfie_blank").to_json())
    }
}

/// A kind of worker.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Http1,
    H2c,
    WebSocket,
    Capture,
}

/// The workers for `rate` requests per second in total: (kind, how many, share of the rate).
pub fn plan(rate: f64) -> Vec<(Kind, usize, f64)> {
    vec![
        (Kind::Http1, 4, rate * 0.55),
        (Kind::H2c, 2, rate * 0.15),
        (Kind::WebSocket, 1, rate * 0.05),
        (Kind::Capture, 3, rate * 0.25),
    ]
}

/// Runs one worker until `stop`: one request per `period`.
pub async fn worker(
    kind: Kind,
    n: usize,
    period: Duration,
    ctx: Arc<Ctx>,
    h2: HttpClient,
    stop: CancellationToken,
) {
    let h1: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build_http();
    let mut rng = fastrand::Rng::with_seed((0x50A_u64 << 16) | n as u64);
    // Workers start spread over one period, not all at once.
    tokio::time::sleep(period.mul_f64(rng.f64())).await;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        seq += 1;
        let class = pick(kind, &mut rng);
        // Once the reload added it, half the forward captures go to the second forward route;
        // their ids say so (`cfwx-…`).
        let extra =
            class == Class::CaptureForward && ctx.extra_route.load(Ordering::Relaxed) && rng.bool();
        let id = format!("{}{}-{n}-{seq}", class.tag(), if extra { "x" } else { "" });
        let start = Instant::now();
        let run = async {
            match class {
                Class::WsEcho => (ws_session(&ctx, &id, &mut rng).await, None),
                Class::H2Get1k | Class::H2Post1m => {
                    http_request(&h2, &ctx, class, &id, &mut rng, None).await
                }
                _ => http_request(&h1, &ctx, class, &id, &mut rng, None).await,
            }
        };
        let (outcome, conn_close) = tokio::time::timeout(HANG, run)
            .await
            .unwrap_or((Outcome::Hang, None));
        ctx.records.lock().unwrap().push(Record {
            id,
            class,
            start,
            end: Instant::now(),
            outcome,
            conn_close,
        });
    }
}

fn pick(kind: Kind, rng: &mut fastrand::Rng) -> Class {
    let r = rng.u32(0..100);
    match kind {
        Kind::Http1 => match r {
            0..45 => Class::H1Get1k,
            45..80 => Class::H1Post1k,
            80..90 => Class::H1Get1m,
            _ => Class::H1Post1m,
        },
        Kind::H2c => match r {
            0..80 => Class::H2Get1k,
            _ => Class::H2Post1m,
        },
        Kind::WebSocket => Class::WsEcho,
        Kind::Capture => match r {
            0..45 => Class::CaptureForward,
            45..80 => Class::CaptureRespond,
            _ => Class::CaptureInvalid,
        },
    }
}

/// A capture body the proxy must refuse with 400 before anything reaches Oz or the backend.
const INVALID_CAPTURES: [&str; 3] = [
    "{\"action\":\"video_selfie_blank\",\"frame_list\":[",
    "{\"action\":\"video_selfie_blank\",\"frame_list\":[]}",
    "{\"action\":\"video_selfie_blank\",\"frame_list\":[\"data:image/jpeg;base64,AAAA\"]}",
];

/// What the answer must be.
enum Expect {
    /// The body the backend describes in `x-soak-hash` / `x-soak-len`.
    Body,
    /// `x-soak-hash` / `x-soak-len` equal to what was sent.
    Echo { hash: String, len: u64 },
    /// The backend's answer with the verdict it got echoed.
    Verdict,
    /// The proxy's own verdict JSON.
    Respond,
    /// 400 problem.
    Invalid,
}

/// One request outside the workers' pace, on a connection of its own, recorded like theirs: the
/// kill phase sends two 1 MiB GETs (`chunked` picks the framing) so that the backend dies while
/// both are mid-body, the valid reload one capture on the route it adds.
pub async fn probe(ctx: Arc<Ctx>, class: Class, id: String, chunked: Option<bool>) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut rng = fastrand::Rng::with_seed(7);
    let start = Instant::now();
    let run = http_request(&client, &ctx, class, &id, &mut rng, chunked);
    let (outcome, conn_close) = tokio::time::timeout(HANG, run)
        .await
        .unwrap_or((Outcome::Hang, None));
    ctx.records.lock().unwrap().push(Record {
        id,
        class,
        start,
        end: Instant::now(),
        outcome,
        conn_close,
    });
}

/// Sends one request of `class`; `chunked` picks the framing of a 1 MiB answer (random if `None`).
async fn http_request(
    client: &HttpClient,
    ctx: &Ctx,
    class: Class,
    id: &str,
    rng: &mut fastrand::Rng,
    chunked: Option<bool>,
) -> (Outcome, Option<bool>) {
    let base = format!("http://{}", ctx.proxy);
    let mut req = Request::builder()
        .header("x-soak-id", id)
        .header("x-request-id", id);
    let (body, expect) = match class {
        Class::H1Get1k | Class::H2Get1k | Class::H1Get1m => {
            let len = if class == Class::H1Get1m {
                LARGE
            } else {
                SMALL
            };
            let chunked = class == Class::H1Get1m && chunked.unwrap_or_else(|| rng.bool());
            let at = rng.usize(0..OFFSETS);
            req = req.method("GET").uri(format!(
                "{base}/pt/get?len={len}&at={at}&chunked={}",
                u8::from(chunked)
            ));
            (Empty::new().boxed(), Expect::Body)
        }
        Class::H1Post1k | Class::H1Post1m | Class::H2Post1m => {
            let len = if class == Class::H1Post1k {
                SMALL
            } else {
                LARGE
            };
            let at = rng.usize(0..ctx.data.len() - len);
            let body = ctx.data.slice(at..at + len);
            let sum = hash(&body);
            req = req
                .method("POST")
                .uri(format!("{base}/pt/echo"))
                .header("content-type", "application/octet-stream")
                .header("x-soak-hash", &sum);
            if rng.u8(0..4) == 0 {
                // A forged verdict: the proxy strips every x-oz-* field on every route.
                req = req.header("x-oz-resolution", "SUCCESS");
            }
            (
                Full::new(body).boxed(),
                Expect::Echo {
                    hash: sum,
                    len: len as u64,
                },
            )
        }
        Class::CaptureForward => {
            let path = if id.starts_with(EXTRA_PREFIX) {
                FORWARD_PATHS[1]
            } else {
                FORWARD_PATHS[0]
            };
            req = req
                .method("POST")
                .uri(format!("{base}{path}"))
                .header("content-type", "application/json");
            (Full::new(ctx.next_capture()).boxed(), Expect::Verdict)
        }
        Class::CaptureRespond => {
            req = req
                .method("POST")
                .uri(format!("{base}{RESPOND_PATH}"))
                .header("content-type", "application/json");
            (Full::new(ctx.next_capture()).boxed(), Expect::Respond)
        }
        Class::CaptureInvalid => {
            let body = INVALID_CAPTURES[rng.usize(0..INVALID_CAPTURES.len())];
            req = req
                .method("POST")
                .uri(format!("{base}{}", FORWARD_PATHS[0]))
                .header("content-type", "application/json");
            (
                Full::new(Bytes::from_static(body.as_bytes())).boxed(),
                Expect::Invalid,
            )
        }
        Class::WsEcho => unreachable!("WebSocket sessions do not go through hyper's client"),
    };
    let req = req.body(body).expect("a valid request");
    let rsp = match client.request(req).await {
        Ok(rsp) => rsp,
        Err(e) if e.is_connect() => return (Outcome::Refused, None),
        Err(e) => return (Outcome::Reset(chain(&e)), None),
    };
    let conn_close = (class.http1() && rsp.version() == Version::HTTP_11).then(|| {
        rsp.headers().get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("close"))
        })
    });
    (judge(class, rsp, expect).await, conn_close)
}

fn text_header(rsp: &Response<Incoming>, name: &str) -> Option<String> {
    rsp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Reads the whole answer, hashing it, and says whether it is the one expected.
async fn judge(class: Class, rsp: Response<Incoming>, expect: Expect) -> Outcome {
    let status = rsp.status();
    let content_type = text_header(&rsp, "content-type").unwrap_or_default();
    let soak_hash = text_header(&rsp, "x-soak-hash");
    let soak_len = text_header(&rsp, "x-soak-len");
    let verdict = text_header(&rsp, "x-soak-verdict");
    let mut body = rsp.into_body();
    let mut h = Hasher::new();
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    h.update(&data);
                    if kept.len() < 64 * 1024 {
                        kept.extend_from_slice(&data[..data.len().min(64 * 1024 - kept.len())]);
                    }
                }
            }
            Err(e) => {
                return Outcome::Reset(format!(
                    "answer {status} cut after {} body bytes: {}",
                    h.bytes(),
                    chain(&e)
                ))
            }
        }
    }
    let json = || serde_json::from_slice::<serde_json::Value>(&kept).ok();
    if content_type == "application/problem+json" {
        let code = json()
            .and_then(|v| v["code"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if matches!(expect, Expect::Invalid) && status == StatusCode::BAD_REQUEST {
            return Outcome::Ok;
        }
        return Outcome::Problem {
            status: status.as_u16(),
            code,
        };
    }
    if status != StatusCode::OK {
        return Outcome::Wrong(format!(
            "{}: status {status}, content-type {content_type:?}, not a problem answer",
            class.name()
        ));
    }
    let got_len = h.bytes().to_string();
    match expect {
        Expect::Body => {
            let got = h.finish();
            if soak_hash.as_deref() != Some(got.as_str())
                || soak_len.as_deref() != Some(got_len.as_str())
            {
                return Outcome::Wrong(format!(
                    "response body changed: {got_len} bytes hash {got}, the backend sent {soak_len:?} bytes hash {soak_hash:?}"
                ));
            }
        }
        Expect::Echo { hash, len } => {
            if soak_hash.as_deref() != Some(hash.as_str())
                || soak_len.as_deref() != Some(len.to_string().as_str())
            {
                return Outcome::Wrong(format!(
                    "request body changed: the backend read {soak_len:?} bytes hash {soak_hash:?}, {len} bytes hash {hash} were sent"
                ));
            }
        }
        Expect::Verdict => match verdict.as_deref() {
            Some(v) if !v.is_empty() => {}
            _ => {
                return Outcome::Wrong(
                    "a forwarded capture's answer: the backend got no verdict".into(),
                )
            }
        },
        Expect::Respond => {
            let doc = json().unwrap_or_default();
            if !content_type.starts_with("application/json")
                || doc["resolution"].as_str().is_none()
                || doc["folder_id"].as_str().is_none()
            {
                return Outcome::Wrong(format!(
                    "respond route: not a verdict: {content_type} {}",
                    String::from_utf8_lossy(&kept[..kept.len().min(200)])
                ));
            }
        }
        Expect::Invalid => {
            return Outcome::Wrong("an invalid capture was answered 200".into());
        }
    }
    Outcome::Ok
}

/// One WebSocket session through the proxy: upgrade, four echoed frames, close handshake.
async fn ws_session(ctx: &Ctx, id: &str, rng: &mut fastrand::Rng) -> Outcome {
    let mut s = match TcpStream::connect(ctx.proxy).await {
        Ok(s) => s,
        Err(_) => return Outcome::Refused,
    };
    let mut key = [0u8; 16];
    rng.fill(&mut key);
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nx-soak-id: {id}\r\nx-request-id: {id}\r\n\r\n"
    );
    if let Err(e) = s.write_all(head.as_bytes()).await {
        return Outcome::Reset(format!("writing the upgrade: {e}"));
    }
    let mut buf = Vec::new();
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) => return Outcome::Reset("closed before the upgrade answer".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Outcome::Reset(format!("reading the upgrade answer: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let rest = buf[end + 4..].to_vec();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let field = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    if status != 101 {
        let len: usize = field("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = rest;
        while body.len() < len {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    return Outcome::Reset(format!("upgrade answer {status} cut"));
                }
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        if field("content-type").as_deref() == Some("application/problem+json") {
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Outcome::Problem { status, code };
        }
        return Outcome::Wrong(format!("upgrade answered {status}, not a problem"));
    }
    if field("sec-websocket-accept") != Some(ws::accept_key(&key)) {
        return Outcome::Wrong("101 with a wrong Sec-WebSocket-Accept".into());
    }
    if !rest.is_empty() {
        return Outcome::Wrong("bytes after the 101 before any frame was sent".into());
    }
    for i in 0..4 {
        let len = rng.usize(1..=8192);
        let at = rng.usize(0..ctx.data.len() - len);
        let payload = &ctx.data[at..at + len];
        let mut mask = [0u8; 4];
        rng.fill(&mut mask);
        if let Err(e) = s
            .write_all(&ws::encode(ws::TEXT, payload, Some(mask)))
            .await
        {
            return Outcome::Reset(format!("tunnel cut writing frame {i}: {e}"));
        }
        match ws::read_frame(&mut s).await {
            Ok(f) if f.opcode == ws::TEXT && f.payload == payload => {}
            Ok(f) => {
                return Outcome::Wrong(format!(
                    "frame {i} echoed wrong: opcode {}, {} bytes for {len}",
                    f.opcode,
                    f.payload.len()
                ))
            }
            Err(e) => return Outcome::Reset(format!("tunnel cut reading frame {i}: {e}")),
        }
    }
    let mut mask = [0u8; 4];
    rng.fill(&mut mask);
    if let Err(e) = s
        .write_all(&ws::encode(ws::CLOSE, &1000u16.to_be_bytes(), Some(mask)))
        .await
    {
        return Outcome::Reset(format!("tunnel cut writing the close frame: {e}"));
    }
    match ws::read_frame(&mut s).await {
        Ok(f) if f.opcode == ws::CLOSE => Outcome::Ok,
        Ok(f) => Outcome::Wrong(format!("opcode {} instead of the close echo", f.opcode)),
        Err(e) => Outcome::Reset(format!("tunnel cut reading the close echo: {e}")),
    }
}
