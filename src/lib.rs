//! oz-capture-proxy: a transparent HTTP reverse proxy that does the Oz Liveness work of a backend.
//!
//! # Data flow
//!
//! ```text
//! listener (server) ─► dispatch (proxy::dispatch) ─┬─► passthrough (proxy::passthrough) ─► backend
//!                                                  └─► capture (capture::handler) ─► oz ─► backend or client
//! ```
//!
//! # Layout
//!
//! - [`config`]: typed configuration from YAML plus `OZ_PROXY__…` overrides.
//! - [`server`]: listeners (HTTP/1.1, h2c, TLS), connection serving, graceful shutdown.
//! - [`admin`]: `/live`, `/ready`, `/metrics` on their own port.
//! - [`proxy`]: dispatch, passthrough forwarding, header rules, path normalization, upgrades.
//! - [`capture`]: capture body model, data URLs, ZIP, multipart, the capture handler.
//! - [`oz`]: Oz API client: auth tokens, folders, analyses, polling.
//! - [`oz_sim`]: the simulated Oz API used by tests and `demo`.
//! - [`runtime`]: what tunes the process rather than the domain: the allocator and memory trim,
//!   the capture threads and their scheduling class, the deferred log writer.
//! - [`telemetry`]: log output, JSON lines by default, and the access log.
//! - [`body`], [`error`], [`problem`], [`metrics`]: the body type, the failure enum, the one
//!   mapping of failures to `application/problem+json`, and the metric families.

pub mod admin;
pub mod body;
pub mod capture;
pub mod config;
pub mod demo;
pub mod error;
pub mod error_chain;
pub mod metrics;
pub mod oz;
pub mod oz_sim;
pub mod problem;
pub mod proxy;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod telemetry;

pub use error::Error;
