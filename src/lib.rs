//! oz-capture-proxy: a transparent HTTP reverse proxy that does the Oz Liveness work of a backend.
//!
//! # Data flow
//!
//! ```text
//! listener (server) ─► dispatch (proxy::dispatch) ─┬──────────────────────────────────┬─► upstream request ─► backend
//!                                                  └─► capture (capture::handler) ─► oz ─► Outcome ─┴─► or the client's answer
//! ```
//!
//! Traffic and imports run one way; `docs/ARCHITECTURE.md` is the map, and `tests/layering.rs`
//! holds every module to its floor.
//!
//! # Layout
//!
//! - [`config`]: typed configuration from YAML plus `OZ_PROXY__…` overrides.
//! - [`server`]: listeners (HTTP/1.1, h2c, TLS), connection serving, graceful shutdown.
//! - [`admin`]: `/live`, `/ready`, `/metrics` on their own port.
//! - [`lookup`]: the verdict listener (`verdict_listen`): a folder's verdict and video, from Oz.
//! - [`proxy`]: dispatch, passthrough forwarding, header rules, path normalization, upgrades.
//! - [`capture`]: capture body model, data URLs, ZIP, multipart, the capture handler.
//! - [`oz`]: Oz API client: auth tokens, folders, analyses, polling.
//! - [`oz_sim`]: the simulated Oz API used by tests and `demo`.
//! - [`runtime`]: what tunes the process rather than the domain: the allocator and memory trim,
//!   the capture threads and their scheduling class, the deferred log writer.
//! - [`telemetry`]: log output, JSON lines by default, and the access log.
//! - [`trace`]: OpenTelemetry spans of requests, W3C Trace Context, OTLP export.
//! - [`verdict_token`]: the signed verdict tokens (JWT) and the JWKS that verifies them.
//! - [`backoff`]: the jittered pause every retry loop takes.
//! - [`client_tls`]: the rustls configuration of outgoing TLS (Oz, the trace collector).
//! - [`body`], [`error`], [`problem`], [`metrics`], [`error_chain`]: the body type, the failure
//!   enum, the one classification of failures (and their `application/problem+json`), the metric
//!   families, and an error with its sources on one line.

pub mod admin;
pub mod backoff;
pub mod body;
pub mod capture;
pub mod client_tls;
pub mod config;
pub mod demo;
pub mod error;
pub mod error_chain;
pub mod lookup;
pub mod metrics;
pub mod oz;
pub mod oz_sim;
pub mod problem;
pub mod proxy;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod trace;
pub mod verdict_token;

pub use error::Error;
