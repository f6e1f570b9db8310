//! The traffic side: dispatch, passthrough forwarding, header rules and path normalization.

pub mod path;
