//! The real proxy binary as a child process: its config file (and the rewrites the reload phases
//! make), its output (kept in files, scanned for panics), SIGTERM, its exit, and its RSS and open
//! file descriptors sampled from `/proc`.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// `shutdown.drain_delay` and `shutdown.drain_deadline` of the config written here.
pub const DRAIN_DELAY: Duration = Duration::from_secs(1);
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// `oz.timeout`: the hanging-Oz phase delays answers past it.
pub const OZ_TIMEOUT: Duration = Duration::from_secs(2);

/// Which config the file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// At start: a forward route and a respond route.
    Initial,
    /// The valid change: `max_frames` lowered, and a second forward route added.
    Changed,
    /// `Changed` without the respond route: valid YAML, refused by design (a reload may not remove
    /// a capture route).
    Weakened,
}

/// The proxy's config for `variant`.
pub fn config_yaml(
    backend: SocketAddr,
    oz: SocketAddr,
    password_file: &Path,
    v: Variant,
) -> String {
    let mut routes =
        String::from("    - path: \"/api/liveness/capture\"\n      on_result: forward\n");
    if v != Variant::Weakened {
        routes.push_str("    - path: \"/api/liveness/check\"\n      on_result: respond\n");
    }
    if v != Variant::Initial {
        routes.push_str("    - path: \"/api/liveness/extra\"\n      on_result: forward\n");
    }
    let max_frames = if v == Variant::Initial { 300 } else { 200 };
    let email = oz_capture_proxy::oz_sim::DEFAULT_EMAIL;
    let password_file = password_file.display();
    let drain_delay = humantime::format_duration(DRAIN_DELAY);
    let drain_deadline = humantime::format_duration(DRAIN_DEADLINE);
    let oz_timeout = humantime::format_duration(OZ_TIMEOUT);
    format!(
        r#"# Written by benches/soak.rs ({v:?}).
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
backend:
  url: "http://{backend}"
  connect_timeout: "500ms"
  timeout: "5s"
  pool_idle_timeout: "2s"
server:
  header_read_timeout: "10s"
  body_idle_timeout: "3s"
shutdown:
  drain_delay: "{drain_delay}"
  drain_deadline: "{drain_deadline}"
reload:
  interval: "200ms"
log:
  format: json
  level: info
oz:
  url: "http://{oz}"
  connect_timeout: "500ms"
  timeout: "{oz_timeout}"
  auth:
    email: "{email}"
    password_file: "{password_file}"
capture:
  wait_for_result: "5s"
  unchecked_images: strip
  max_frames: {max_frames}
  routes:
{routes}"#
    )
}

/// Replaces `path` with `text` in one rename, so the proxy never reads it half written.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The running proxy.
pub struct ProxyProcess {
    pub pid: u32,
    pub traffic: SocketAddr,
    pub admin: SocketAddr,
    /// Lines of its stdout and stderr that contain `panicked`.
    panics: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    exited: watch::Receiver<Option<(ExitStatus, Instant)>>,
}

impl ProxyProcess {
    /// Starts `bin --config config`, its stdout and stderr going to `out/proxy.{stdout,stderr}.log`,
    /// and waits (at most 30 s) for its "ready" line.
    pub fn start(bin: &Path, config: &Path, out: &Path) -> anyhow::Result<ProxyProcess> {
        let mut child: Child = Command::new(bin)
            .arg("--config")
            .arg(config)
            // Nothing from the driver's environment (no OZ_PROXY__* override) reaches the proxy.
            .env_clear()
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id();
        let panics = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let (ready_tx, ready_rx) = mpsc::channel();
        let streams: [(Box<dyn std::io::Read + Send>, PathBuf); 2] = [
            (
                Box::new(child.stdout.take().expect("piped stdout")),
                out.join("proxy.stdout.log"),
            ),
            (
                Box::new(child.stderr.take().expect("piped stderr")),
                out.join("proxy.stderr.log"),
            ),
        ];
        for (stream, file) in streams {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&file)?);
            let panics = panics.clone();
            let ready_tx = ready_tx.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(file, "{line}");
                    if line.contains("panicked") {
                        panics.lock().unwrap().push(line.clone());
                    }
                    if line.contains("oz-capture-proxy ready") {
                        let _ = ready_tx.send(line);
                    }
                }
                let _ = file.flush();
            }));
        }
        let (exit_tx, exited) = watch::channel(None);
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(Some((status, Instant::now())));
            }
        });
        let ready = match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                signal(pid, "KILL");
                anyhow::bail!(
                    "the proxy printed no ready line within 30 s (see {})",
                    out.display()
                );
            }
        };
        let v: serde_json::Value = serde_json::from_str(&ready)?;
        let addr = |key: &str| -> anyhow::Result<SocketAddr> {
            v[key]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("the ready line has no {key}: {ready}"))
        };
        Ok(ProxyProcess {
            pid,
            traffic: addr("listen")?,
            admin: addr("admin_listen")?,
            panics,
            readers,
            exited,
        })
    }

    /// Kills the process if it is still running, waits until all its output is read and
    /// written out (at most 5 s: a process it left behind may hold the pipes open), and returns
    /// the lines that mention a panic.
    pub fn finish(mut self) -> Vec<String> {
        if self.exited.borrow().is_none() {
            signal(self.pid, "KILL");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for r in std::mem::take(&mut self.readers) {
            while !r.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if r.is_finished() {
                let _ = r.join();
            }
        }
        std::mem::take(&mut *self.panics.lock().unwrap())
    }

    /// Sends `SIGTERM` (through `kill`, as Kubernetes' runtime would send it).
    pub fn terminate(&self) {
        signal(self.pid, "TERM");
    }

    /// The exit status and when it was seen, once the process has exited.
    pub async fn exited(&self) -> (ExitStatus, Instant) {
        let mut rx = self.exited.clone();
        let got = rx
            .wait_for(|e| e.is_some())
            .await
            .map(|e| e.expect("checked"));
        match got {
            Ok(e) => e,
            // The watcher thread ended without a status: wait() failed, which cannot happen for
            // our own child; report it as a failure rather than hang.
            Err(_) => panic!("lost track of the proxy process"),
        }
    }

    /// A receiver that turns `Some` when the process exits.
    pub fn exit_watch(&self) -> watch::Receiver<Option<(ExitStatus, Instant)>> {
        self.exited.clone()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if self.exited.borrow().is_none() {
            signal(self.pid, "KILL");
        }
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// One reading of the proxy's `/proc` entries.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub at: Instant,
    pub rss_kib: u64,
    pub fds: usize,
}

/// Reads VmRSS and the number of open fds of `pid`; `None` once the process is gone.
pub fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Sample {
        at: Instant::now(),
        rss_kib,
        fds,
    })
}
