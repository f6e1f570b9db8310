//! The built `oz-capture-proxy` binary as a child process, and temporary directories for the
//! files it reads. Child processes are always reaped: every wait is bounded, and a process still
//! running when its handle drops is killed.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::WAIT;

/// Path of the binary Cargo built for this test run.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_oz-capture-proxy")
}

/// A directory under the system temp dir with a unique name, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir().join(format!(
            "oz-capture-proxy-test-{tag}-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir(&path).expect("create temp dir");
        TempDir { path }
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// What a finished command printed.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout and stderr together, for "never appears anywhere" assertions.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `oz-capture-proxy check --config FILE` with `env` added to a cleared environment.
pub fn check(config: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.arg("check").arg("--config").arg(config);
    cmd.env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd)
}

/// Runs `cmd` to completion, at most [`WAIT`].
pub fn run(mut cmd: Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the binary");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(out) => {
            let out = out.expect("wait for the binary");
            Output {
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => {
            kill(pid, "KILL");
            panic!("the binary did not finish within {WAIT:?}");
        }
    }
}

fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// The lines a child process prints on its piped stdout and stderr, as they come; the channel
/// closes when both streams end (the child exited).
pub fn output_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().expect("stdout piped")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr piped")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    lines
}

/// Starts `oz-capture-proxy demo` on free ports, returns the first line it prints on stdout,
/// and kills it.
pub fn demo_first_line() -> String {
    let mut child = Command::new(binary())
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the demo");
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(WAIT);
    let _ = child.kill();
    let _ = child.wait();
    line.unwrap_or_else(|_| panic!("the demo printed nothing within {WAIT:?}"))
}

/// The proxy running as a child process, its stdout and stderr read line by line.
pub struct ProxyProcess {
    pid: u32,
    /// Where the traffic listener is bound, from the startup log line.
    pub traffic: SocketAddr,
    lines: mpsc::Receiver<String>,
    exited: mpsc::Receiver<ExitStatus>,
    done: bool,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl ProxyProcess {
    /// Starts `oz-capture-proxy --config FILE` and waits for its "ready" log line.
    pub fn start(config: &Path) -> Self {
        ProxyProcess::start_with_env(config, &[])
    }

    /// [`ProxyProcess::start`] with `env` as the whole environment.
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Self {
        let mut child: Child = Command::new(binary())
            .arg("--config")
            .arg(config)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the proxy");
        let pid = child.id();
        let lines = output_lines(&mut child);
        let (exit_tx, exited) = mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(status);
            }
        });
        let mut p = ProxyProcess {
            pid,
            traffic: "0.0.0.0:0".parse().unwrap(),
            lines,
            exited,
            done: false,
            seen: Vec::new(),
        };
        let ready = p.wait_line(|l| l.contains("oz-capture-proxy ready"));
        let v: serde_json::Value = serde_json::from_str(&ready).expect("the ready line is JSON");
        p.traffic = v["listen"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("the ready line names the bound listen address: {ready}"));
        p
    }

    /// Waits for a line matching `pred`, at most [`WAIT`].
    pub fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no matching log line within {WAIT:?}; lines so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Sends SIGTERM, waits for the exit, and returns the status with every line printed.
    pub fn terminate(mut self) -> (ExitStatus, Vec<String>) {
        kill(self.pid, "TERM");
        let status = self
            .exited
            .recv_timeout(WAIT + Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("the proxy did not exit after SIGTERM"));
        self.done = true;
        // The reader threads end at EOF, which follows the exit.
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            self.seen.push(line);
        }
        (status, std::mem::take(&mut self.seen))
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if !self.done && self.exited.try_recv().is_err() {
            kill(self.pid, "KILL");
        }
    }
}
