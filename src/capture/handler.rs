//! The capture handler: orchestrates body reading, the transform, Oz and the result.

use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::Body;
use crate::config::CaptureRoute;
use crate::error::Error;

/// Everything the capture path needs; swapped as a whole on config reload.
pub struct CaptureService {}

impl CaptureService {
    /// Builds the capture path from `config`.
    pub fn new(
        _config: &crate::config::Config,
        _passthrough: crate::proxy::passthrough::Passthrough,
        _metrics: crate::metrics::Metrics,
    ) -> anyhow::Result<Self> {
        Ok(CaptureService {})
    }

    /// Handles one capture request.
    pub async fn handle(
        &self,
        _route: &CaptureRoute,
        _req: Request<Incoming>,
        _request_id: &str,
    ) -> Result<Response<Body>, Error> {
        Err(Error::Capture(crate::capture::Error::Internal))
    }
}
