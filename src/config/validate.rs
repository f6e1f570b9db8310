//! Validation: what the types alone cannot say about a loaded config, each problem reported
//! with the key path it is about. Checks run in a fixed order and the first problem is the one
//! reported.
//!
//! Duplicate capture routes are not checked here but where routes are compiled
//! (`proxy::RouteTable::new`), since what counts as the same path is path normalization's
//! business; `check` compiles the routes too.

use super::capture::{BEST_FRAME_KEY, MAX_ANALYSES, MAX_FRAMES, RESERVED_FOLDER_KEYS};
use super::verdict::{Binding, VerdictAlg};
use super::{Config, Error};

impl Config {
    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), Error> {
        let b = &self.backend.url;
        match b.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(Error::invalid(
                    "backend.url",
                    format!("scheme `{other}` is not supported, use http"),
                ))
            }
            None => {
                return Err(Error::invalid(
                    "backend.url",
                    "needs a scheme, e.g. http://",
                ))
            }
        }
        match b.authority() {
            None => return Err(Error::invalid("backend.url", "needs a host and port")),
            // The backend client never sends userinfo, and the URL is logged at startup and
            // printed by `check`: refuse it rather than ignore and print credentials.
            Some(a) if a.as_str().contains('@') => {
                return Err(Error::invalid(
                    "backend.url",
                    "must not carry credentials (`user:password@`); they would not be sent and would be logged",
                ))
            }
            Some(_) => {}
        }
        if !matches!(b.path(), "" | "/") || b.query().is_some() {
            return Err(Error::invalid(
                "backend.url",
                "must not carry a path or query; requests keep their own path",
            ));
        }
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return Err(Error::invalid(
                "admin_listen",
                "must differ from `listen`: the admin endpoints are never on the traffic port",
            ));
        }
        if let Some(v) = self.verdict_listen {
            if v.port() != 0 && (v == self.listen || v == self.admin_listen) {
                return Err(Error::invalid(
                    "verdict_listen",
                    "must differ from `listen` and `admin_listen`: verdicts are never on the traffic port",
                ));
            }
        }
        // hyper bounds an HTTP/1 request head by its read buffer, which cannot be smaller than
        // 8 KiB: a lower limit would silently not apply.
        if self.server.max_header_bytes < 8192 {
            return Err(Error::invalid(
                "server.max_header_bytes",
                "must be at least 8192 (the smallest head limit the HTTP/1 server can enforce)",
            ));
        }
        let h2_idle = self.server.http2_idle_timeout;
        if !h2_idle.is_zero() && h2_idle <= self.backend.timeout {
            return Err(Error::invalid(
                "server.http2_idle_timeout",
                "must be 0s or longer than backend.timeout: no byte moves while the backend thinks",
            ));
        }
        if self.server.max_connections == 0 {
            return Err(Error::invalid(
                "server.max_connections",
                "must be at least 1",
            ));
        }
        if self.server.max_headers == 0 {
            return Err(Error::invalid("server.max_headers", "must be at least 1"));
        }
        for (i, p) in self.server.upgrade_protocols.iter().enumerate() {
            let key = format!("server.upgrade_protocols[{i}]");
            if p.is_empty() || http::HeaderValue::from_str(p).is_err() || p.contains([',', ' ']) {
                return Err(Error::invalid(
                    key,
                    "must be one protocol token, e.g. `websocket`",
                ));
            }
            let name = p.split('/').next().unwrap_or_default();
            if name.eq_ignore_ascii_case("h2c") || name.eq_ignore_ascii_case("h2") {
                return Err(Error::invalid(
                    key,
                    "HTTP/2 is never tunnelled: requests inside the tunnel would bypass every check (RFC 9113 §3.1)",
                ));
            }
        }
        if self.backend.pool_idle_timeout.is_zero() {
            return Err(Error::invalid(
                "backend.pool_idle_timeout",
                "must be above 0s",
            ));
        }
        if !self.forwarding.request_id_header.is_empty()
            && http::HeaderName::from_bytes(self.forwarding.request_id_header.as_bytes()).is_err()
        {
            return Err(Error::invalid(
                "forwarding.request_id_header",
                "is not a valid header name",
            ));
        }
        if !self.forwarding.via.is_empty()
            && http::HeaderValue::from_str(&self.forwarding.via).is_err()
        {
            return Err(Error::invalid(
                "forwarding.via",
                "is not a valid header value",
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(Error::invalid(
                "log.level",
                "is not a valid filter (e.g. `info`)",
            ));
        }
        self.validate_oz()?;
        self.validate_capture()?;
        self.validate_abuse_controls()?;
        self.telemetry.validate()?;
        self.validate_verdict()
    }

    /// The shape of `verdict`; the key files are read and checked where the keys are built
    /// (`crate::verdict_token`), which `check` runs too.
    fn validate_verdict(&self) -> Result<(), Error> {
        let v = &self.verdict;
        if v.issuer.is_empty() {
            return Err(Error::invalid("verdict.issuer", "must not be empty"));
        }
        if v.token_ttl.is_zero() {
            return Err(Error::invalid("verdict.token_ttl", "must be above 0s"));
        }
        if let Some(Binding::Header(name)) =
            Binding::parse(&v.bind).map_err(|reason| Error::invalid("verdict.bind", reason))?
        {
            // The request filter removes these before a capture is read: every capture would
            // be refused as missing its binding.
            let n = name.as_str();
            let removed = removed_before_capture(n, self.server.underscores_in_headers);
            if removed {
                return Err(Error::invalid(
                    "verdict.bind",
                    format!("`{n}` is a header the proxy removes from requests; bind to another"),
                ));
            }
        }
        let mut kids = std::collections::HashSet::new();
        for (i, key) in v.keys.iter().enumerate() {
            let at = |field: &str| format!("verdict.keys[{i}].{field}");
            if key.kid.is_empty() {
                return Err(Error::invalid(at("kid"), "must not be empty"));
            }
            if !kids.insert(key.kid.as_str()) {
                return Err(Error::invalid(
                    at("kid"),
                    format!("`{}` is used by an earlier key", key.kid),
                ));
            }
            let (needed, other) = match key.alg {
                VerdictAlg::EdDSA => ("private_key_file", key.secret_file.is_some()),
                VerdictAlg::HS256 => ("secret_file", key.private_key_file.is_some()),
            };
            let given = match key.alg {
                VerdictAlg::EdDSA => key.private_key_file.is_some(),
                VerdictAlg::HS256 => key.secret_file.is_some(),
            };
            if !given {
                return Err(Error::invalid(
                    at(needed),
                    format!("is required for alg {:?}", key.alg),
                ));
            }
            if other {
                return Err(Error::invalid(
                    at(if needed == "secret_file" {
                        "private_key_file"
                    } else {
                        "secret_file"
                    }),
                    format!("does not go with alg {:?}", key.alg),
                ));
            }
        }
        Ok(())
    }

    fn validate_oz(&self) -> Result<(), Error> {
        let oz = &self.oz;
        match oz.url.scheme_str() {
            Some("https") | Some("http") => {}
            _ => return Err(Error::invalid("oz.url", "needs an http:// or https:// URL")),
        }
        if oz.url.authority().is_none() {
            return Err(Error::invalid("oz.url", "needs a host"));
        }
        if oz.timeout.is_zero() {
            return Err(Error::invalid("oz.timeout", "must be above 0s"));
        }
        let a = &oz.auth;
        if a.token.is_empty()
            && !self.capture.routes.is_empty()
            && (a.email.is_empty() || a.password.is_empty())
        {
            return Err(Error::invalid(
                "oz.auth",
                "capture routes need Oz credentials: set oz.auth.token (or token_file), or both oz.auth.email and oz.auth.password",
            ));
        }
        if !a.token.is_empty() && (!a.email.is_empty() || !a.password.is_empty()) {
            return Err(Error::invalid(
                "oz.auth",
                "set either a token or email and password, not both",
            ));
        }
        if let Some(ca) = &oz.ca_file {
            if !ca.is_file() {
                return Err(Error::invalid(
                    "oz.ca_file",
                    format!("{} is not a readable file", ca.display()),
                ));
            }
        }
        Ok(())
    }

    fn validate_capture(&self) -> Result<(), Error> {
        let c = &self.capture;
        if c.max_concurrent == 0 {
            return Err(Error::invalid(
                "capture.max_concurrent",
                "must be at least 1",
            ));
        }
        if c.follow_up_for.is_zero() {
            return Err(Error::invalid("capture.follow_up_for", "must be above 0s"));
        }
        if c.methods.is_empty() {
            return Err(Error::invalid(
                "capture.methods",
                "must name at least one method",
            ));
        }
        for (i, m) in c.methods.iter().enumerate() {
            let token = !m.is_empty()
                && m.bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
            if !token || m == "CONNECT" {
                return Err(Error::invalid(
                    format!("capture.methods[{i}]"),
                    "must be an upper-case method such as `POST` (methods are case-sensitive)",
                ));
            }
        }
        for key in c.folder_meta_data.keys() {
            if RESERVED_FOLDER_KEYS.contains(&key.as_str()) {
                return Err(Error::invalid(
                    format!("capture.folder_meta_data.{key}"),
                    "is set by the proxy itself and cannot be configured",
                ));
            }
        }
        for (i, r) in self.capture.effective_routes().iter().enumerate() {
            let key = |field: &str| format!("capture.routes[{i}].{field}");
            if !r.path.starts_with('/') {
                return Err(Error::invalid(key("path"), "must start with `/`"));
            }
            if let Some(late) = &r.late_verdict_path {
                if !late.starts_with('/') || late.parse::<http::uri::PathAndQuery>().is_err() {
                    return Err(Error::invalid(
                        key("late_verdict_path"),
                        "must be a path on the backend, starting with `/`",
                    ));
                }
            }
            if r.file_key.is_empty()
                || r.file_key == "payload"
                || r.file_key == BEST_FRAME_KEY
                || !r
                    .file_key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(Error::invalid(
                    key("file_key"),
                    "must be letters, digits, `_` or `-`, and not `payload` or `photo_selfie1` (used by the proxy)",
                ));
            }
            if r.max_body_bytes == 0 {
                return Err(Error::invalid(key("max_body_bytes"), "must be above 0"));
            }
            // A capture reserves twice its body (body + ZIP/multipart, see capture::limit).
            if r.max_body_bytes.saturating_mul(2) > c.memory_budget_bytes {
                return Err(Error::invalid(
                    key("max_body_bytes"),
                    "twice this must fit in capture.memory_budget_bytes, or such a capture could never run",
                ));
            }
            if r.max_frames == 0 || r.max_frames > MAX_FRAMES {
                return Err(Error::invalid(
                    key("max_frames"),
                    format!("must be between 1 and {MAX_FRAMES}"),
                ));
            }
            // More could never run: an Oz answer listing more is refused (see `MAX_ANALYSES`).
            if r.analyses.len() > MAX_ANALYSES {
                return Err(Error::invalid(
                    key("analyses"),
                    format!("at most {MAX_ANALYSES} analyses per capture"),
                ));
            }
            for (j, a) in r.analyses.iter().enumerate() {
                if a.is_empty() || !a.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    return Err(Error::invalid(
                        format!("capture.routes[{i}].analyses[{j}]"),
                        "analysis types are lowercase words such as `quality`",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether the request filter removes the header `name` (lower case) before a capture is read:
/// `x-oz-*`, hop-by-hop fields, and names with `_` unless `server.underscores_in_headers`. A
/// setting that reads such a header (`verdict.bind`, a rate limit's client key) would never
/// find it.
pub(super) fn removed_before_capture(name: &str, keep_underscores: bool) -> bool {
    name.starts_with("x-oz-")
        || (name.contains('_') && !keep_underscores)
        || matches!(
            name,
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "te"
                | "transfer-encoding"
                | "upgrade"
                | "proxy-authorization"
                | "http2-settings"
                | "trailer"
        )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::test_input::{env, MINIMAL};
    use crate::config::{Config, MAX_ANALYSES};

    #[test]
    fn more_analyses_than_a_capture_may_use_are_refused() {
        let list = vec!["quality"; MAX_ANALYSES + 1].join(",");
        let e = Config::from_yaml(
            &format!("{MINIMAL}oz:\n  auth:\n    token: t\ncapture:\n  routes:\n    - path: /a\n"),
            &env(&[("OZ_PROXY__CAPTURE__ANALYSES", &list)]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("capture.routes[0].analyses"), "{e}");
    }

    #[test]
    fn h2c_and_h2_are_never_tunnelled() {
        for (list, ok) in [
            ("[websocket]", true),
            ("[\"websocket\", \"foo/2\"]", true),
            ("[h2c]", false),
            ("[\"H2C\"]", false),
            ("[\"h2/1\"]", false),
            ("[\"a b\"]", false),
        ] {
            let r = Config::from_yaml(
                &format!("{MINIMAL}server:\n  upgrade_protocols: {list}\n"),
                &env(&[]),
            );
            assert_eq!(r.is_ok(), ok, "{list}: {:?}", r.err());
            if let Err(e) = r {
                assert!(e.to_string().contains("server.upgrade_protocols[0]"), "{e}");
            }
        }
        let c = Config::from_yaml(MINIMAL, &env(&[])).unwrap();
        assert_eq!(c.server.upgrade_protocols, ["websocket"]);
        assert!(!c.server.underscores_in_headers);
        assert_eq!(c.server.tunnel_max_lifetime, Duration::from_secs(3600));
    }

    #[test]
    fn capture_methods_are_upper_case_tokens() {
        let c = Config::from_yaml(MINIMAL, &env(&[])).unwrap();
        assert_eq!(c.capture.methods, ["POST"]);
        assert!(c.capture.strict_paths);
        for (list, ok) in [
            ("[POST, PUT]", true),
            ("[post]", false),
            ("[CONNECT]", false),
            ("[]", false),
        ] {
            let r = Config::from_yaml(
                &format!("{MINIMAL}capture:\n  methods: {list}\n"),
                &env(&[]),
            );
            assert_eq!(r.is_ok(), ok, "{list}: {:?}", r.err());
            if let Err(e) = r {
                assert!(e.to_string().contains("capture.methods"), "{e}");
            }
        }
    }

    #[test]
    fn capture_routes_need_credentials() {
        let yaml = format!("{MINIMAL}capture:\n  routes:\n    - path: /a\n");
        let e = Config::from_yaml(&yaml, &env(&[])).unwrap_err().to_string();
        assert!(e.contains("oz.auth"), "{e}");
    }
}
