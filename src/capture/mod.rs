//! Capture routes: the body the Web SDK's `on_capture_complete` produced, turned into an Oz upload.

pub mod error;
pub mod handler;
pub mod limit;

pub use error::Error;
