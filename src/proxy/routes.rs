//! The capture routes as dispatch reads them: indexed by normalized path, with the method and
//! spelling rules of `capture`, and what a config reload swaps ([`Live`]): the routes together
//! with the service that runs their captures, or none.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use http::{HeaderValue, Method};

use crate::capture::handler::CaptureService;
use crate::config::{self, CaptureConfig, CaptureRoute};
use crate::proxy::path;

/// Capture routes by normalized path, the rules of capture paths, and `service`, what runs a
/// capture (the capture service in the proxy; nothing where only routing is asked about).
pub struct RouteTable<S = ()> {
    by_path: HashMap<String, Arc<CaptureRoute>>,
    /// `capture.methods`.
    methods: Vec<Method>,
    /// `Allow` of a 405 on a capture path.
    allow: HeaderValue,
    /// `capture.strict_paths`.
    strict_paths: bool,
    /// The normalized `late_verdict_path`s: the proxy's own deliveries go there, a client's
    /// request never (it could carry a verdict body of its own making).
    late_paths: HashSet<String>,
    service: S,
}

/// What a request target and method are to the capture routes.
pub enum Hit<'a> {
    /// A capture.
    Capture(&'a Arc<CaptureRoute>),
    /// A capture path, a method that is not a capture method, and a body: refused with 405.
    WrongMethod(HeaderValue),
    /// Not the capture path, but a spelling some framework reads as one: refused with 400.
    Spelling,
    /// A `late_verdict_path`, with a body or a capture method: refused with 403.
    Reserved,
    /// A capture path, but neither a capture method nor a body: passed through, never upgraded.
    Bodiless,
    /// Not a capture path.
    Miss,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable::new(Vec::new(), &CaptureConfig::default())
            .expect("no routes, so no two of them normalize to the same path")
    }
}

impl RouteTable {
    /// Indexes `routes` by their normalized path, with the method and spelling rules of
    /// `capture`. `routes` are `capture.effective_routes()`, in order: two that normalize to
    /// the same path are refused, naming the later one as `capture.routes[i].path` (one of
    /// them would never be reached, and which one would depend on the order).
    pub fn new(routes: Vec<CaptureRoute>, capture: &CaptureConfig) -> Result<Self, config::Error> {
        let methods: Vec<Method> = capture
            .methods
            .iter()
            .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
            .collect();
        let allow = methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let late_paths = routes
            .iter()
            .filter_map(|r| r.late_verdict_path.as_deref())
            .map(|p| path::normalize(p.as_bytes()))
            .collect();
        let mut by_path = HashMap::with_capacity(routes.len());
        for (i, route) in routes.into_iter().enumerate() {
            let normalized = path::normalize(route.path.as_bytes());
            if by_path.contains_key(&normalized) {
                return Err(config::Error::Invalid {
                    key: format!("capture.routes[{i}].path"),
                    reason: format!("duplicates another route (both normalize to `{normalized}`)"),
                });
            }
            by_path.insert(normalized, Arc::new(route));
        }
        Ok(RouteTable {
            by_path,
            methods,
            allow: HeaderValue::from_str(&allow).unwrap_or(HeaderValue::from_static("POST")),
            strict_paths: capture.strict_paths,
            late_paths,
            service: (),
        })
    }

    /// The same routes, run by `service`.
    pub fn served_by<S>(self, service: S) -> RouteTable<S> {
        RouteTable {
            by_path: self.by_path,
            methods: self.methods,
            allow: self.allow,
            strict_paths: self.strict_paths,
            late_paths: self.late_paths,
            service,
        }
    }
}

impl<S> RouteTable<S> {
    /// Whether there is no capture route at all.
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// What runs the captures of these routes.
    pub fn service(&self) -> &S {
        &self.service
    }

    /// What a request with `method` on `target`, carrying a body or not and asking for an
    /// upgrade or not, is to the capture routes.
    pub fn hit(&self, method: &Method, target: &str, has_body: bool, upgrade: bool) -> Hit<'_> {
        // A request that is neither a capture method nor carries a body nor asks for a tunnel
        // cannot carry a capture: the common GET skips the path work.
        if self.by_path.is_empty() || !(has_body || upgrade || self.methods.contains(method)) {
            return Hit::Miss;
        }
        let normalized = path::normalize(target.as_bytes());
        if let Some(route) = self.by_path.get(&normalized) {
            return if self.methods.contains(method) {
                Hit::Capture(route)
            } else if has_body {
                Hit::WrongMethod(self.allow.clone())
            } else {
                // A GET or OPTIONS without a body cannot carry a capture; the backend may serve
                // something of its own there.
                Hit::Bodiless
            };
        }
        if self.late_paths.contains(&normalized) {
            return Hit::Reserved;
        }
        let known = |f: &String| {
            self.by_path.contains_key(f)
                || self.late_paths.contains(f)
                || (f.contains(path::WILDCARD)
                    && self
                        .by_path
                        .keys()
                        .chain(&self.late_paths)
                        .any(|p| path::matches_folded(f, p)))
        };
        if self.strict_paths
            && path::might_fold(target.as_bytes())
            && path::folded_forms(target.as_bytes()).iter().any(known)
        {
            return Hit::Spelling;
        }
        Hit::Miss
    }
}

/// The capture routes with the service that runs them: one cannot be had without the other.
pub type Captures = RouteTable<Arc<CaptureService>>;

/// What a config reload may swap: the capture routes and their service, or none (passthrough
/// only).
pub struct Live {
    pub captures: Option<Captures>,
}
