//! A simulated Oz API for tests, `demo` and integrators without an Oz account.
//!
//! Work in progress: state, tokens and upload validation; serving comes next.

mod analyses;
mod auth;
pub mod config;
mod error;
pub mod faults;
mod multipart;
mod objects;
pub mod records;
mod shots;
pub mod state;
mod upload;
mod wire;

pub use config::{SimConfig, Verdict};
pub use faults::Endpoint;
pub use records::{CallRecord, ReceivedPart, ReceivedUpload};
pub use state::OzSim;
