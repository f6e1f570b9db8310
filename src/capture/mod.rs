//! Capture routes: the body the Web SDK's `on_capture_complete` produced, turned into an Oz upload.
//!
//! The frames-mode transform is synchronous and CPU-only (run it on a blocking thread):
//! [`body`] parses the JSON, [`frame`] unescapes a frame if it must and [`data_url`] decodes
//! it, [`zip`] stores the frames in a ZIP, [`action`] picks the Oz tags, [`multipart`] writes the
//! upload body, and [`transform`] is the one entry point that runs them in order. [`limit`]
//! admits captures under the memory budget and the concurrency limit, and [`handler`]
//! orchestrates a capture from request to verdict on the threads of `runtime::pool`;
//! [`report`] is a verdict as the backend gets it after the capture (late delivery, lookup);
//! [`timing`] is how long each phase took, for `Server-Timing`.
//! [`block`] finds escapes and quotes 64 bytes at a time for `body` and `frame`.
//! [`testdata`] makes sample captures for tests and `demo`.

pub mod action;
pub mod block;
pub mod body;
pub mod data_url;
pub mod digest;
pub mod error;
pub mod frame;
pub mod guard;
pub mod handler;
pub mod limit;
pub mod multipart;
pub mod report;
pub mod testdata;
pub mod timing;
pub mod transform;
pub mod zip;

pub use error::{Error, Failure};
pub use transform::{prepare_frames_upload, PreparedUpload, TransformOptions};
