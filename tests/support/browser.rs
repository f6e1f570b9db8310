//! A real headless Chromium (Debian's `chromium`), driven over W3C WebDriver by Debian's
//! `chromedriver`, for the tests of the demo page; and the fake camera it films: a Y4M clip whose
//! frames carry their own number, so a test can tell from a JPEG Oz received which frame it is.
//!
//! chromedriver runs as a child process on a port it picks itself (`--port=0`) and is known ready
//! from its own "started successfully on port N" line; each [`Browser`] is one WebDriver session
//! with its own profile. WebDriver is plain HTTP and JSON, so the crate's own test client speaks
//! it. Waiting on the page is done inside the page (a `MutationObserver` in an async script), so a
//! test wakes when the page changes, never on a timer. When the browser cannot start, the test
//! fails with chromedriver's own words; it never skips.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use http::{Method, Request};
use serde_json::{json, Value};

use super::bin::TempDir;
use super::client::{self, body, full, send};
use super::within_for;

/// How long a page may take to capture, post and draw its panels: Chromium on a loaded 2-core
/// machine is slow to start and to encode frames. A limit, never a wait.
pub const PAGE_WAIT: Duration = Duration::from_secs(90);

/// What the browser is allowed to film.
#[derive(Clone, Debug)]
pub enum Camera {
    /// A fake camera playing this Y4M file (its size is the file's, whatever the page asks).
    Clip(PathBuf),
    /// No camera at all: `getUserMedia` fails with `NotFoundError`.
    Absent,
    /// A camera the user refuses: headless Chromium without `--use-fake-ui-for-media-stream`
    /// answers the permission prompt with `NotAllowedError`.
    Refused,
}

/// A running chromedriver with one browser session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    profile: TempDir,
}

/// The `#result` element's automation attributes once a capture ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub state: String,
    pub status: String,
    pub resolution: String,
    pub folder_id: String,
}

impl Outcome {
    fn from_page(v: &Value) -> Outcome {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        Outcome {
            state: s("state"),
            status: s("status"),
            resolution: s("resolution"),
            folder_id: s("folder_id"),
        }
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium filming `camera`, with a window of
    /// `width`×`height` CSS pixels.
    pub async fn start(camera: Camera, width: u32, height: u32) -> Browser {
        let profile = TempDir::new("chromium");
        let (driver, port) = start_driver();
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path.display()),
        ];
        match &camera {
            Camera::Clip(clip) => args.extend([
                "--use-fake-ui-for-media-stream".to_owned(),
                "--use-fake-device-for-media-stream".to_owned(),
                format!("--use-file-for-fake-video-capture={}", clip.display()),
            ]),
            Camera::Absent => {}
            Camera::Refused => args.push("--use-fake-device-for-media-stream".to_owned()),
        }
        let base = format!("http://127.0.0.1:{port}");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium_binary(), "args": args},
        }}});
        let created = within_for(
            PAGE_WAIT,
            "chromedriver to start a Chromium session",
            call(&base, Method::POST, "/session", Some(caps)),
        )
        .await
        .unwrap_or_else(|e| panic!("Chromium did not start under chromedriver: {e}"));
        let session = created["sessionId"]
            .as_str()
            .expect("a new session has an id")
            .to_owned();
        let browser = Browser {
            driver,
            base,
            session,
            profile,
        };
        let ms = PAGE_WAIT.as_millis() as u64;
        browser
            .command(
                Method::POST,
                "timeouts",
                json!({"script": ms, "pageLoad": ms}),
            )
            .await;
        browser
    }

    /// Opens `url` and returns once it has loaded.
    pub async fn open(&self, url: &str) {
        self.command(Method::POST, "url", json!({ "url": url }))
            .await;
    }

    /// Waits until `#result` says a capture ended (`data-state` is `done` or `error`) and returns
    /// its attributes. The page sets `data-state` last, after every panel is drawn.
    pub async fn outcome(&self) -> Outcome {
        let v = self
            .wait_for(
                "a capture to end (#result data-state done or error)",
                r#"const r = document.getElementById('result');
                   return (r.dataset.state === 'done' || r.dataset.state === 'error')
                     ? { state: r.dataset.state, status: r.dataset.status || '',
                         resolution: r.dataset.resolution || '',
                         folder_id: r.dataset.folderId || '' }
                     : null;"#,
            )
            .await;
        Outcome::from_page(&v)
    }

    /// Waits for the capture after `before` to end: `#result` settled with another folder id or
    /// status than `before`'s (every capture clears them while it runs).
    pub async fn next_outcome(&self, before: &Outcome) -> Outcome {
        let v = self
            .wait_for(
                "the next capture to end",
                &format!(
                    r#"const r = document.getElementById('result');
                       const settled = r.dataset.state === 'done' || r.dataset.state === 'error';
                       const other = (r.dataset.folderId || '') !== {folder}
                         || (r.dataset.status || '') !== {status};
                       return settled && other
                         ? {{ state: r.dataset.state, status: r.dataset.status || '',
                             resolution: r.dataset.resolution || '',
                             folder_id: r.dataset.folderId || '' }}
                         : null;"#,
                    folder = json!(before.folder_id),
                    status = json!(before.status),
                ),
            )
            .await;
        Outcome::from_page(&v)
    }

    /// Runs `body` (a function body returning null until the page is as wanted) on every change
    /// of the document until it returns something else, and returns that.
    pub async fn wait_for(&self, what: &str, body: &str) -> Value {
        let script = format!(
            r#"const done = arguments[arguments.length - 1];
               const probe = () => {{ {body} }};
               const now = probe();
               if (now !== null && now !== undefined) {{ done(now); return; }}
               const watch = new MutationObserver(() => {{
                 const v = probe();
                 if (v !== null && v !== undefined) {{ watch.disconnect(); done(v); }}
               }});
               watch.observe(document, {{ attributes: true, childList: true, subtree: true,
                                          characterData: true }});"#
        );
        within_for(
            PAGE_WAIT + Duration::from_secs(5),
            what,
            self.command(
                Method::POST,
                "execute/async",
                json!({"script": script, "args": []}),
            ),
        )
        .await
    }

    /// Runs `body` (a function body) in the page and returns its value.
    pub async fn eval(&self, body: &str) -> Value {
        self.command(
            Method::POST,
            "execute/sync",
            json!({"script": body, "args": []}),
        )
        .await
    }

    /// The text a person sees in the element with `id`.
    pub async fn text(&self, id: &str) -> String {
        let v = self
            .eval(&format!(
                "const e = document.getElementById({}); return e ? e.innerText : null;",
                json!(id)
            ))
            .await;
        v.as_str()
            .unwrap_or_else(|| panic!("the page has no element #{id}"))
            .to_owned()
    }

    /// Clicks the element with `id` as a user would (WebDriver's element click, which refuses a
    /// hidden or covered element).
    pub async fn click(&self, id: &str) {
        let found = self
            .command(
                Method::POST,
                "element",
                json!({"using": "css selector", "value": format!("#{id}")}),
            )
            .await;
        let element = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("a found element has a reference")
            .to_owned();
        self.command(Method::POST, &format!("element/{element}/click"), json!({}))
            .await;
    }

    /// A PNG of the whole page, below the window's fold too, at one device pixel per CSS pixel
    /// (Chromium's DevTools protocol through chromedriver: W3C WebDriver shoots the viewport only).
    pub async fn screenshot_of_page(&self) -> Vec<u8> {
        let metrics = self.devtools("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let (width, height) = (size["width"].as_f64(), size["height"].as_f64());
        let (Some(width), Some(height)) = (width, height) else {
            panic!("Chromium gave no content size: {metrics}");
        };
        let shot = self
            .devtools(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
                }),
            )
            .await;
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("a screenshot is base64"))
            .expect("a screenshot is valid base64")
    }

    /// One Chrome DevTools protocol command, through chromedriver's `goog/cdp/execute`.
    async fn devtools(&self, cmd: &str, params: Value) -> Value {
        self.command(
            Method::POST,
            "goog/cdp/execute",
            json!({"cmd": cmd, "params": params}),
        )
        .await
    }

    /// Ends the session, which quits Chromium, then chromedriver.
    pub async fn quit(self) {
        let path = format!("/session/{}", self.session);
        if let Err(e) = call(&self.base, Method::DELETE, &path, None).await {
            panic!("WebDriver did not end the session: {e}");
        }
    }

    /// One command on this session; panics with WebDriver's error when it fails.
    async fn command(&self, method: Method, path: &str, args: Value) -> Value {
        let url = format!("/session/{}/{path}", self.session);
        let args = (method != Method::GET).then_some(args);
        call(&self.base, method, &url, args)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After `quit` this only reaps chromedriver. After a failed test Chromium is still up,
        // and outlives chromedriver (they talk over a TCP port): its processes are found by the
        // profile directory that is this browser's alone.
        let _ = self.driver.kill();
        let _ = Command::new("pkill")
            .arg("-KILL")
            .args(["-f", "--"])
            .arg(format!("--user-data-dir={}", self.profile.path.display()))
            .status();
        let _ = self.driver.wait();
    }
}

/// The Chromium executable: Debian's package puts a launcher script at /usr/bin/chromium and the
/// browser itself under /usr/lib/chromium.
fn chromium_binary() -> String {
    for p in ["/usr/lib/chromium/chromium", "/usr/bin/chromium"] {
        if Path::new(p).exists() {
            return p.to_owned();
        }
    }
    panic!(
        "Chromium is not installed (no /usr/lib/chromium/chromium): scripts/test.sh installs \
         Debian's chromium and chromium-driver; the browser tests need them"
    );
}

/// Starts chromedriver on a port of its choosing and waits for its "started" line.
fn start_driver() -> (Child, u16) {
    let mut child = Command::new("chromedriver")
        .args(["--port=0", "--log-level=WARNING"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run chromedriver ({e}): scripts/test.sh installs Debian's chromium and \
                 chromium-driver; the browser tests need them"
            )
        });
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(port) = line
                .split("started successfully on port ")
                .nth(1)
                .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok())
            {
                let _ = tx.send(Ok(port));
                return;
            }
            lines.push(line);
        }
        let _ = tx.send(Err(lines.join("\n")));
    });
    match rx.recv_timeout(super::WAIT) {
        Ok(Ok(port)) => (child, port),
        Ok(Err(said)) => panic!("chromedriver exited before it was ready; it said:\n{said}"),
        Err(_) => panic!(
            "chromedriver did not say it had started within {:?}",
            super::WAIT
        ),
    }
}

/// One WebDriver call: its `value`, or the error WebDriver named.
async fn call(
    base: &str,
    method: Method,
    path: &str,
    args: Option<Value>,
) -> Result<Value, String> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    let payload = match args {
        Some(v) => {
            req = req.header("content-type", "application/json");
            v.to_string().into_bytes()
        }
        None => Vec::new(),
    };
    let rsp = send(&client::http1(), req.body(full(payload)).unwrap()).await;
    let status = rsp.status();
    let doc: Value = serde_json::from_slice(&body(rsp).await)
        .map_err(|e| format!("HTTP {status} with a body that is not JSON: {e}"))?;
    let value = doc["value"].clone();
    if status.is_success() {
        Ok(value)
    } else {
        Err(format!(
            "HTTP {status}: {} {}",
            value["error"].as_str().unwrap_or_default(),
            value["message"].as_str().unwrap_or_default()
        ))
    }
}

// === The fake camera's clip ===

/// How many bits of a frame's number its bars carry.
const NUMBER_BITS: u32 = 8;
/// Grey levels (video range) of a set and a clear bar, and of the rest of the picture.
const BAR_SET: u8 = 235;
const BAR_CLEAR: u8 = 16;
const BACKGROUND: u8 = 128;

/// Writes a Y4M clip of `frames` frames of `width`×`height` at `fps` (4:2:0, grey): the top half
/// of frame `n` is eight vertical bars, white for each set bit of `n` (most significant first);
/// the bottom half is mid grey.
pub fn write_numbered_clip(
    dir: &TempDir,
    width: usize,
    height: usize,
    frames: usize,
    fps: u32,
) -> PathBuf {
    assert!(frames <= 1 << NUMBER_BITS, "a frame number fits the bars");
    assert!(
        width.is_multiple_of(16) && height.is_multiple_of(2),
        "bars and chroma planes divide evenly"
    );
    let bar = width / NUMBER_BITS as usize;
    let mut clip = format!("YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n").into_bytes();
    for n in 0..frames {
        clip.extend_from_slice(b"FRAME\n");
        for y in 0..height {
            for x in 0..width {
                let level = if y < height / 2 {
                    let bit = NUMBER_BITS - 1 - (x / bar) as u32;
                    if n >> bit & 1 == 1 {
                        BAR_SET
                    } else {
                        BAR_CLEAR
                    }
                } else {
                    BACKGROUND
                };
                clip.push(level);
            }
        }
        // Neutral chroma: the picture is grey.
        clip.resize(clip.len() + 2 * (width / 2) * (height / 2), 128);
    }
    dir.write("camera.y4m", clip)
}

/// A decoded frame: its size and the number its bars carry, or why it carries none.
#[derive(Debug, PartialEq, Eq)]
pub struct Filmed {
    pub width: usize,
    pub height: usize,
    pub number: Result<u8, String>,
}

/// Decodes a JPEG the page sent and reads the frame number from its bars (sampled at the middle
/// of each bar in the top quarter, the bottom half checked to be grey).
pub fn read_frame(jpeg: &[u8]) -> Filmed {
    let mut decoder = jpeg_decoder::Decoder::new(jpeg);
    let pixels = decoder.decode().expect("Oz received a JPEG that decodes");
    let info = decoder.info().expect("a decoded JPEG has its info");
    let (width, height) = (info.width as usize, info.height as usize);
    let channels = pixels.len() / (width * height);
    let luma = |x: usize, y: usize| -> u32 {
        let i = (y * width + x) * channels;
        pixels[i..i + channels]
            .iter()
            .map(|&c| u32::from(c))
            .sum::<u32>()
            / channels as u32
    };
    let bar = width / NUMBER_BITS as usize;
    let mut number = 0u32;
    let mut problem = None;
    for i in 0..NUMBER_BITS as usize {
        let l = luma(i * bar + bar / 2, height / 4);
        number = number << 1 | u32::from(l > 128);
        if (60..=196).contains(&l) {
            problem = Some(format!("bar {i} is neither black nor white (luma {l})"));
        }
    }
    let grey = luma(width / 2, height * 3 / 4);
    if !(100..=156).contains(&grey) {
        problem = Some(format!("the bottom half is not mid grey (luma {grey})"));
    }
    Filmed {
        width,
        height,
        number: match problem {
            Some(p) => Err(p),
            None => Ok(number as u8),
        },
    }
}
