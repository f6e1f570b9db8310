//! A `redis-server` of the bench's own (the Debian package) on a free loopback port, with no
//! persistence, in a temporary directory, killed when its handle drops.
//!
//! `tests/support/redis.rs` does more (TLS, passwords, restarts, dumps) and leans on the test
//! harness (`TempDir`, `WAIT`, rcgen), so it does not compile on its own in a bench; this is the
//! part a bench needs.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long redis-server may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A running `redis-server`.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts one and waits for its "Ready to accept connections" line. Panics with what to do
    /// when redis-server is not installed: a bench that cannot compare both stores must not
    /// print a table as if it had.
    pub fn start() -> RedisServer {
        let dir = std::env::temp_dir().join(format!("oz-bench-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the redis-server directory");
        let mut log = Vec::new();
        // A port found free may be taken before redis-server binds it: then another is tried.
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = spawn(port, &dir, &mut log) {
                return RedisServer { port, child, dir };
            }
        }
        panic!(
            "redis-server could not bind a free port; its output:\n{}",
            log.join("\n")
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Panics as [`RedisServer::start`] would when redis-server is not installed: called first,
    /// so that a missing server fails the bench at once rather than after its other parts.
    pub fn require() {
        if let Err(e) = Command::new("redis-server").arg("--version").output() {
            not_runnable(e);
        }
    }

    /// `redis-server --version`, for the report.
    pub fn version() -> String {
        Command::new("redis-server")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs redis-server on `port`; `None` when the port was taken meanwhile.
fn spawn(port: u16, dir: &Path, log: &mut Vec<String>) -> Option<Child> {
    let mut child = match Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--dir".as_ref(), dir.as_os_str()])
        .args(["--daemonize", "no", "--logfile", ""])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => not_runnable(e),
    };
    let stdout = child.stdout.take().expect("piped");
    let (tx, lines) = mpsc::channel();
    // Reads every line for as long as it runs, so that it never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let ready = line.contains("Ready to accept connections");
                let taken = line.contains("Address already in use");
                log.push(line);
                if ready {
                    return Some(child);
                }
                if taken {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().expect("wait for redis-server");
                panic!(
                    "redis-server exited ({status}) before it was ready; its output:\n{}",
                    log.join("\n")
                );
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "redis-server was not ready within {READY_WITHIN:?}; its output:\n{}",
                    log.join("\n")
                );
            }
        }
    }
}

fn not_runnable(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::NotFound {
        panic!(
            "redis-server not found: this bench starts its own on loopback; \
             install it with `apt-get install redis-server`"
        );
    }
    panic!("cannot run redis-server: {e}");
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
