//! The demo page's files, built into the binary: plain HTML, CSS and JavaScript with no build
//! step and nothing fetched from elsewhere, served by the stand-in backend as a legacy app
//! serves its own page.

/// One file of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// The `Content-Type` it is served with.
    pub content_type: &'static str,
    /// Its text.
    pub body: &'static str,
}

const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_str!("page/index.html"),
};
const CSS: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    body: include_str!("page/page.css"),
};
const JS: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("page/page.js"),
};

/// The page allows its own files only (no inline script, nothing from another origin), and
/// images from `data:` URLs, which is how frames and thumbnails are shown.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; \
     media-src 'self' blob:; style-src 'self'; script-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'";

/// The file served at `path` (the query is not part of it), if any.
pub fn asset(path: &str) -> Option<Asset> {
    match path {
        "/" | "/index.html" => Some(INDEX),
        "/page.css" => Some(CSS),
        "/page.js" => Some(JS),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_three_files_with_their_types() {
        assert_eq!(asset("/"), asset("/index.html"));
        assert!(asset("/").unwrap().content_type.starts_with("text/html"));
        assert!(asset("/page.css")
            .unwrap()
            .content_type
            .starts_with("text/css"));
        assert!(asset("/page.js")
            .unwrap()
            .content_type
            .starts_with("text/javascript"));
        assert_eq!(asset("/page.js/"), None);
        assert_eq!(asset("/api/liveness/capture"), None);
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        let html = asset("/").unwrap().body;
        assert!(html.contains(r#"src="/page.js""#) && html.contains(r#"href="/page.css""#));
        assert!(html.contains(r#"id="result""#));
        for text in [html, CSS.body, JS.body] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
    }
}
