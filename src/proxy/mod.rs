//! The traffic side: dispatch, passthrough forwarding, the backend pool, header rules, path normalization, tunnels.

pub mod dispatch;
pub mod headers;
pub mod observe;
pub mod passthrough;
pub mod path;
pub mod pool;
pub mod upgrade;

pub use dispatch::{Live, Proxy, RouteTable};
