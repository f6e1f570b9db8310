//! A simulated Oz API for tests, `demo` and integrators without an Oz account.
//!
//! It follows `docs/oz-api.md`: token login and refresh (§1), folder upload as multipart
//! with a `payload` part or as an OzCapsula container (§2), analyses, polling and statuses (§3),
//! single-request and Instant answers (§3.3, §3.4), a `preview_url` per shots set or video in
//! `source_media` with a small MP4 behind it (§2.7, §2.8), and Oz error bodies (§5). It is strict
//! where the proxy makes promises (a `Content-Length`, well-formed multipart, a `payload` whose
//! tags name real file parts, ZIPs of decoded images) and shares no logic with the proxy's own
//! writer in `capture`, so a bug in one cannot hide the same bug in the other.
//!
//! # Layout
//!
//! - [`config`]: [`SimConfig`] and [`Verdict`].
//! - [`state`]: the [`OzSim`] handle: what arrived, and fault knobs.
//! - [`server`]: [`serve`], the listener loop with graceful stop.
//! - `dispatch`, `routes`: one request's path through the simulator, and the route table.
//! - `login`, `folders`, `analyses`: the Oz endpoints; `auth`: tokens.
//! - `upload`, `multipart`, `shots`: checking an upload, the strict form parser, ZIPs/images.
//! - `objects`: folders, media, analyses and their JSON; `error`: Oz error bodies.
//! - `preview`: the MP4 behind each `preview_url` in `source_media`, and which media have one.
//! - [`faults`], `introspect`: fault injection and the `/_sim/…` endpoints, including late
//!   verdicts: [`OzSim::set_processing_for`] (or `"processing_for_ms"`) holds new analyses in
//!   `PROCESSING` for a set time on every read endpoint.
//! - [`records`]: [`ReceivedUpload`], [`CallRecord`].
//!
//! # Use
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use oz_capture_proxy::oz_sim::{serve, OzSim, SimConfig};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let sim = OzSim::new(SimConfig::default());
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(serve(listener, sim.clone(), async { let _ = stopped.await; }));
//! // ... point a client at the listener's address, then:
//! let _ = stop.send(());
//! server.await.expect("server task")?;
//! # Ok(()) }
//! ```

mod analyses;
mod auth;
mod body;
pub mod config;
mod dispatch;
mod error;
pub mod faults;
mod folders;
mod introspect;
mod login;
mod multipart;
mod objects;
mod preview;
pub mod records;
mod routes;
pub mod server;
mod shots;
pub mod state;
mod upload;
mod wire;

pub use auth::TOKEN_HEADER;
pub use config::{SimConfig, UnknownVerdict, Verdict, DEFAULT_EMAIL, DEFAULT_PASSWORD};
pub use faults::Endpoint;
pub use records::{CallRecord, ReceivedPart, ReceivedUpload};
pub use server::serve;
pub use state::OzSim;
pub use upload::read_upload;
