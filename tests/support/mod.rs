//! The one test harness of the black-box suites in `tests/`.
//!
//! Every fixture binds `127.0.0.1:0` and hands back a handle with its address once bound, so
//! tests run in parallel and never race a port:
//!
//! - [`backend`]: the recording backend on hyper: records method, raw target, version, headers in
//!   order and the body; answers with a programmable [`backend::Reply`] (status, repeated headers,
//!   bytes, a deterministic [`pattern::Pattern`], a channel-fed stream, a hold until a gate opens,
//!   a 101 plus WebSocket echo).
//! - [`raw`]: a raw TCP backend that records the exact request head bytes and answers with
//!   scripted bytes, and the raw client ([`raw::RawConn`]) for byte-exact requests and responses.
//! - [`proxy`]: the real proxy started in process from a YAML config, through the same
//!   `Config::from_yaml` loader as `main`.
//! - [`sim`]: the real Oz simulator started in process.
//! - [`stack`]: proxy, simulator and backend together, for the end-to-end capture tests.
//! - [`client`]: hyper clients (HTTP/1.1, h2c prior knowledge, TLS with ALPN h2) and bodies.
//! - [`pattern`]: deterministic bodies produced and checked chunk by chunk.
//! - [`ws`]: hand-encoded WebSocket frames and the `Sec-WebSocket-Accept` computation.
//! - [`demo`]: the `demo` command's services in process: the page, its introspection, routes.
//! - [`bin`]: the built binary run as a child process, and temporary directories.
//! - [`verifiers`]: the README's verdict verifiers (Python, Node, Go), run as written.
//! - [`otlp`]: an OTLP/HTTP trace collector decoding what it receives with the OTLP protobuf
//!   types; or one that accepts connections and never answers.
//! - [`redis`]: a real `redis-server` on a free loopback port (plain, with a password, or with
//!   TLS from a private CA), stopped and restarted on the same port, read back key by key.
//!
//! Every wait goes through [`within`] (or its `_for` variant), so a failure fails fast with a
//! message instead of hanging; nothing sleeps to synchronize.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

pub mod backend;
pub mod bin;
pub mod browser;
pub mod client;
pub mod demo;
pub mod logs;
pub mod otlp;
pub mod pattern;
pub mod pki;
pub mod proxy;
pub mod raw;
pub mod redis;
pub mod sim;
pub mod stack;
pub mod verifiers;
pub mod ws;

use std::future::Future;
use std::time::Duration;

/// How long any single wait may take before the test fails. Generous: it only stops hangs.
pub const WAIT: Duration = Duration::from_secs(15);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    within_for(WAIT, what, fut).await
}

/// Awaits `fut`, failing the test with `what` if it takes longer than `limit`.
pub async fn within_for<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}
