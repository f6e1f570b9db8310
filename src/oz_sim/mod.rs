//! A simulated Oz API for tests, `demo` and integrators without an Oz account.
//!
//! Work in progress: the request-checking building blocks come first.

mod error;
mod multipart;
mod shots;
mod wire;
