//! A real `redis-server` (the Debian package) as a child process on a free loopback port, for the
//! tests of the Redis store: started and known ready from its own "Ready to accept connections"
//! log line, stopped and restarted on the same port, killed when its handle drops, and read back
//! key by key for the "nothing sensitive in Redis" checks.
//!
//! It runs with no persistence (`--save "" --appendonly no`) in a temporary directory of its
//! own; a test that needs it and cannot start it fails with redis-server's own words.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use super::bin::TempDir;
use super::WAIT;

/// What a test may ask of the server besides a plain one.
#[derive(Default, Clone)]
pub struct Options {
    /// `requirepass`: the URL then carries it.
    pub password: Option<String>,
    /// Also listen with TLS, with a certificate for 127.0.0.1 from a private CA.
    pub tls: bool,
}

/// A running `redis-server`.
pub struct Redis {
    /// The plain port, where the helpers below connect.
    pub port: u16,
    /// The TLS port, when started with [`Options::tls`].
    pub tls_port: Option<u16>,
    options: Options,
    dir: TempDir,
    child: Option<Child>,
    /// Every line it printed, for failure messages.
    log: Vec<String>,
}

/// One key as stored.
#[derive(Debug)]
pub struct Entry {
    pub key: String,
    /// The value's bytes (a string's value; a hash's fields and values, one after another).
    pub value: Vec<u8>,
    /// `PTTL`: ms left, -1 without expiry.
    pub pttl: i64,
}

impl Redis {
    /// A plain server.
    pub fn start() -> Redis {
        Redis::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Redis {
        let dir = TempDir::new("redis");
        let mut redis = Redis {
            port: 0,
            tls_port: None,
            options,
            dir,
            child: None,
            log: Vec::new(),
        };
        if redis.options.tls {
            redis.write_pki();
        }
        // A port found free may be taken before redis-server binds it; then it says so and
        // another is tried.
        for _ in 0..5 {
            redis.port = free_port();
            if redis.options.tls {
                redis.tls_port = Some(free_port());
            }
            if redis.spawn() {
                return redis;
            }
        }
        panic!(
            "redis-server could not bind a free port; its output:\n{}",
            redis.log.join("\n")
        );
    }

    /// `redis://[:password@]127.0.0.1:port/0`.
    pub fn url(&self) -> String {
        match &self.options.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// `rediss://…` on the TLS port; the certificate is for 127.0.0.1, from [`Redis::ca_file`].
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("started with Options { tls: true }");
        match &self.options.password {
            Some(p) => format!("rediss://:{p}@127.0.0.1:{port}/0"),
            None => format!("rediss://127.0.0.1:{port}/0"),
        }
    }

    /// The PEM file of the CA that signed the TLS certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path.join("ca.pem")
    }

    /// Kills the server (no clean shutdown: as a crash or a lost node) and waits for it to go.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait().expect("wait for redis-server");
        }
    }

    /// Starts it again on the same port(s), empty, and waits until it is ready.
    pub fn restart(&mut self) {
        self.stop();
        if !self.spawn() {
            panic!(
                "redis-server did not restart on port {}; its output:\n{}",
                self.port,
                self.log.join("\n")
            );
        }
    }

    /// A connection of its own to the plain port (the helpers' own, never the store's).
    pub fn connection(&self) -> ::redis::Connection {
        let client = ::redis::Client::open(self.url()).expect("the test URL parses");
        let conn = client
            .get_connection_with_timeout(WAIT)
            .expect("connect to the test redis-server");
        conn.set_read_timeout(Some(WAIT))
            .expect("set a read timeout");
        conn
    }

    /// Runs one command, as `redis-cli` would: `redis.cmd(&["CLIENT", "PAUSE", "1000"])`.
    pub fn cmd(&self, args: &[&str]) -> ::redis::Value {
        let mut cmd = ::redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut self.connection())
            .unwrap_or_else(|e| panic!("redis-server refused {args:?}: {e}"))
    }

    /// Every key with its value and time to live.
    pub fn dump(&self) -> Vec<Entry> {
        let mut conn = self.connection();
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg("*")
            .query(&mut conn)
            .expect("KEYS");
        let mut entries = Vec::new();
        for key in keys {
            let kind: String = ::redis::cmd("TYPE")
                .arg(&key)
                .query(&mut conn)
                .expect("TYPE");
            let value: Vec<u8> = match kind.as_str() {
                "string" => ::redis::cmd("GET").arg(&key).query(&mut conn).expect("GET"),
                "hash" => {
                    let pairs: Vec<Vec<u8>> = ::redis::cmd("HGETALL")
                        .arg(&key)
                        .query(&mut conn)
                        .expect("HGETALL");
                    pairs.concat()
                }
                // Gone between KEYS and TYPE: expired.
                "none" => continue,
                other => panic!("the proxy writes strings only, found a {other} at {key}"),
            };
            let pttl: i64 = ::redis::cmd("PTTL")
                .arg(&key)
                .query(&mut conn)
                .expect("PTTL");
            entries.push(Entry { key, value, pttl });
        }
        entries
    }

    /// Starts redis-server on `self.port` and waits for its ready line; false when the port was
    /// taken.
    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir".as_ref(), self.dir.path.as_os_str()])
            .args(["--daemonize", "no", "--logfile", ""]);
        if let Some(p) = &self.options.password {
            cmd.args(["--requirepass", p]);
        }
        if let Some(tls_port) = self.tls_port {
            let file = |name: &str| self.dir.path.join(name).into_os_string();
            cmd.args(["--tls-port", &tls_port.to_string()])
                .arg("--tls-cert-file")
                .arg(file("server.pem"))
                .arg("--tls-key-file")
                .arg(file("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(file("ca.pem"))
                .args(["--tls-auth-clients", "no"]);
        }
        let mut child = match cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server not found: the test command installs it \
                 (apt-get install redis-server); scripts/test.sh does"
            ),
            Err(e) => panic!("cannot run redis-server: {e}"),
        };
        let lines = super::bin::output_lines(&mut child);
        // Both streams end when it exits: then the channel closes.
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    let ready = line.contains("Ready to accept connections");
                    let taken = line.contains("Address already in use");
                    self.log.push(line);
                    if ready {
                        self.child = Some(child);
                        // Keep draining its output so that it never blocks on a full pipe.
                        std::thread::spawn(move || while lines.recv().is_ok() {});
                        return true;
                    }
                    if taken {
                        let _ = child.kill();
                        let _ = child.wait();
                        return false;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().expect("wait for redis-server");
                    panic!(
                        "redis-server exited ({status}) before it was ready; its output:\n{}",
                        self.log.join("\n")
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "redis-server was not ready within {WAIT:?}; its output:\n{}",
                        self.log.join("\n")
                    );
                }
            }
        }
    }

    /// A private CA (`ca.pem`) and a certificate for 127.0.0.1 signed by it (`server.pem`,
    /// `server.key`), in the server's directory.
    fn write_pki(&self) {
        let pki = super::pki::private_ca("oz-capture-proxy test Redis CA", &["127.0.0.1"]);
        self.dir.write("ca.pem", pki.ca_pem);
        self.dir.write("server.pem", pki.cert_pem);
        self.dir.write("server.key", pki.key_pem);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
