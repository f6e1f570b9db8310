//! Oz API client: authentication, folder upload, analyses and polling.

pub mod error;

pub use error::Error;
