//! Maps a method and path to the Oz endpoint the simulator serves.
//!
//! Paths are matched with or without a trailing slash, because the docs disagree on it
//! (docs/oz-api.md §8.1): `/api/folders/` and `/api/folders` are the same route. Endpoints are the
//! ones in docs/oz-api.md §1.1, §1.2, §2.1, §3.1, §3.4 and §3.5, plus the simulator's own home
//! for `preview_url` (§2.7), under `/api/` so it takes a token like the rest.

use hyper::Method;

use super::faults::Endpoint;

/// A matched Oz API route; ids are as they appear in the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Auth,
    Refresh,
    CreateFolder,
    CreateInstantFolder,
    StartAnalyses(String),
    ListAnalyses(String),
    GetAnalysis(String),
    GetFolder(String),
    /// Folder id, media id.
    GetPreview(String, String),
}

/// Why no route matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Miss {
    /// No Oz endpoint has this path.
    NotFound,
    /// The path exists, with this method only.
    MethodNotAllowed(Method),
}

impl Route {
    /// The endpoint name used by faults and records.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Route::Auth => Endpoint::Auth,
            Route::Refresh => Endpoint::Refresh,
            Route::CreateFolder => Endpoint::Folders,
            Route::CreateInstantFolder => Endpoint::InstantFolders,
            Route::StartAnalyses(_) => Endpoint::StartAnalyses,
            Route::ListAnalyses(_) => Endpoint::ListAnalyses,
            Route::GetAnalysis(_) => Endpoint::GetAnalysis,
            Route::GetFolder(_) => Endpoint::GetFolder,
            Route::GetPreview(..) => Endpoint::GetPreview,
        }
    }
}

/// Finds the route for `method` and `path` (the path without its query).
pub(crate) fn route(method: &Method, path: &str) -> Result<Route, Miss> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<&str> = match trimmed.strip_prefix('/') {
        Some(rest) => rest.split('/').collect(),
        None => return Err(Miss::NotFound),
    };
    if segments.iter().any(|s| s.is_empty()) {
        return Err(Miss::NotFound);
    }
    let id = |s: &str| s.to_owned();
    let (route, allowed) = match segments.as_slice() {
        ["api", "authorize", "auth"] => (Route::Auth, Method::POST),
        ["api", "authorize", "refresh"] => (Route::Refresh, Method::POST),
        ["api", "folders"] => (Route::CreateFolder, Method::POST),
        ["api", "instant", "folders"] => (Route::CreateInstantFolder, Method::POST),
        ["api", "folders", f, "analyses"] if *method == Method::GET => {
            (Route::ListAnalyses(id(f)), Method::GET)
        }
        ["api", "folders", f, "analyses"] => (Route::StartAnalyses(id(f)), Method::POST),
        ["api", "folders", f] => (Route::GetFolder(id(f)), Method::GET),
        ["api", "analyses", a] => (Route::GetAnalysis(id(a)), Method::GET),
        ["api", "folders", f, "media", m, "preview.mp4"] => {
            (Route::GetPreview(id(f), id(m)), Method::GET)
        }
        _ => return Err(Miss::NotFound),
    };
    if *method == allowed {
        Ok(route)
    } else {
        Err(Miss::MethodNotAllowed(allowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slash_is_optional() {
        for p in ["/api/folders/", "/api/folders"] {
            assert_eq!(route(&Method::POST, p), Ok(Route::CreateFolder));
        }
        for p in ["/api/authorize/auth/", "/api/authorize/auth"] {
            assert_eq!(route(&Method::POST, p), Ok(Route::Auth));
        }
        assert_eq!(
            route(&Method::GET, "/api/analyses/a1/"),
            Ok(Route::GetAnalysis("a1".into()))
        );
    }

    #[test]
    fn analyses_path_serves_get_and_post() {
        assert_eq!(
            route(&Method::POST, "/api/folders/f/analyses/"),
            Ok(Route::StartAnalyses("f".into()))
        );
        assert_eq!(
            route(&Method::GET, "/api/folders/f/analyses"),
            Ok(Route::ListAnalyses("f".into()))
        );
    }

    #[test]
    fn preview_path_is_get_only() {
        assert_eq!(
            route(&Method::GET, "/api/folders/f/media/m/preview.mp4"),
            Ok(Route::GetPreview("f".into(), "m".into()))
        );
        assert_eq!(
            route(&Method::POST, "/api/folders/f/media/m/preview.mp4"),
            Err(Miss::MethodNotAllowed(Method::GET))
        );
        assert_eq!(
            route(&Method::GET, "/api/folders/f/media/m/"),
            Err(Miss::NotFound)
        );
    }

    #[test]
    fn misses() {
        assert_eq!(
            route(&Method::GET, "/api/folders/"),
            Err(Miss::MethodNotAllowed(Method::POST))
        );
        assert_eq!(route(&Method::GET, "/api//folders"), Err(Miss::NotFound));
        assert_eq!(route(&Method::GET, "/nope"), Err(Miss::NotFound));
        assert_eq!(
            route(&Method::GET, "/api/folders/f/media/"),
            Err(Miss::NotFound)
        );
    }
}
