//! Oz API client: authentication, folder upload, analyses and polling.

pub mod error;
pub mod upload;

pub use error::Error;
pub use upload::UploadBody;
