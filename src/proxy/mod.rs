//! The traffic side: dispatch, passthrough forwarding, the backend pool, header rules, path normalization, tunnels, late verdict deliveries.

pub mod dispatch;
pub mod headers;
pub mod late;
pub mod observe;
pub mod outgoing;
pub mod passthrough;
pub mod path;
pub mod pool;
pub mod routes;
pub mod upgrade;

pub use dispatch::Proxy;
pub use routes::{Live, RouteTable};

/// A response as the proxy sends it to a client: made by the proxy, or streamed from the backend
/// on a leased connection.
pub type ResponseBody = crate::body::Body<pool::Leased>;
