//! Oz API client: authentication tokens, folder upload, analyses, polling, the verdict.
//!
//! Everything here follows `docs/oz-api.md`; each file cites the sections it implements.
//!
//! - [`client`]: [`OzClient`], the endpoints, and the retry rules (folder creation is never
//!   resent once it may have reached Oz).
//! - `check`: the whole flow, upload → analyses → poll → [`Verdict`], within [`MAX_ANALYSES`]
//!   analyses and [`MAX_POLLS`] polls per capture, whatever Oz answers.
//! - `auth`: static token or login, renewal before expiry and on 401 codes 7/8, single flight.
//! - `transport`: one call: timeout, error mapping, metrics, the connect retry.
//! - [`tls`]: rustls with the aws-lc-rs provider, webpki roots plus `oz.ca_file`.
//! - [`types`], [`resolution`], [`verdict`]: what is read out of Oz answers, the verdict values
//!   and how they combine, and a capture's verdict.
//! - `body`, [`upload`]: request bodies; [`error`]: why a call failed.

mod auth;
mod body;
mod check;
pub mod client;
pub mod error;
pub mod resolution;
pub mod tls;
mod transport;
pub mod types;
pub mod upload;
pub mod verdict;

pub use check::{MAX_FOLLOW_POLLS, MAX_POLLS};
pub use client::{OzClient, MAX_ANALYSES};
pub use error::Error;
pub use resolution::Resolution;
pub use tls::BuildError;
pub use types::{Analysis, Folder};
pub use upload::UploadBody;
pub use verdict::Verdict;
