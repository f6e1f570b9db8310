//! Access tokens: issuing them at login, checking `X-Forensic-Access-Token`, sliding expiry,
//! refresh, and forced expiry for tests.
//!
//! Follows docs/oz-api.md §1.1 (hex tokens, `expire_date` in Unix seconds), §1.2 (sliding expiry,
//! refresh with `expire_token`, the old pair deleted when the new one is first used, refresh
//! errors) and §5 (codes 6 missing, 7 invalid, 8 expired, 9 forbidden).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::header::HeaderMap;
use hyper::StatusCode;
use uuid::Uuid;

use super::error::{ApiError, ErrorCode};

/// The header Oz reads the token from (docs/oz-api.md §1.1; the `X-Forensics-` spelling is a typo
/// in one page, §8.2, and is not accepted).
pub const TOKEN_HEADER: &str = "x-forensic-access-token";

type SessionId = u64;

/// Who made an authenticated call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The configured static service token.
    Service,
    /// A login session.
    Session(SessionId),
}

/// A token pair handed out by login or refresh.
#[derive(Clone)]
pub(crate) struct Issued {
    pub access_token: String,
    pub expire_token: String,
    /// Unix seconds.
    pub expire_date: u64,
}

struct Session {
    access: String,
    refresh: String,
    expires_at: Instant,
    expire_date: SystemTime,
    /// Set by `expire_all`; a forced expiry never slides back.
    forced_expired: bool,
    /// The session this one replaced by refresh; deleted on this one's first use.
    replaces: Option<SessionId>,
}

/// All tokens the simulator knows. No `Debug`, so no token can be printed by accident.
pub(crate) struct Sessions {
    ttl: Duration,
    service_token: Option<String>,
    service_expired: bool,
    sessions: HashMap<SessionId, Session>,
    by_access: HashMap<String, SessionId>,
    by_refresh: HashMap<String, SessionId>,
    next_id: SessionId,
}

/// 64 lowercase hex characters, the shape real Oz tokens have (docs/oz-api.md §1.1).
fn hex_token() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Sessions {
    pub fn new(ttl: Duration, service_token: Option<String>) -> Self {
        Sessions {
            ttl,
            service_token: service_token.filter(|t| !t.is_empty()),
            service_expired: false,
            sessions: HashMap::new(),
            by_access: HashMap::new(),
            by_refresh: HashMap::new(),
            next_id: 1,
        }
    }

    /// A new session, valid for the configured TTL.
    pub fn issue(&mut self) -> Issued {
        self.issue_replacing(None)
    }

    fn issue_replacing(&mut self, replaces: Option<SessionId>) -> Issued {
        let id = self.next_id;
        self.next_id += 1;
        let session = Session {
            access: hex_token(),
            refresh: hex_token(),
            expires_at: Instant::now() + self.ttl,
            expire_date: SystemTime::now() + self.ttl,
            forced_expired: false,
            replaces,
        };
        let issued = Issued {
            access_token: session.access.clone(),
            expire_token: session.refresh.clone(),
            expire_date: unix_secs(session.expire_date),
        };
        self.by_access.insert(session.access.clone(), id);
        self.by_refresh.insert(session.refresh.clone(), id);
        self.sessions.insert(id, session);
        issued
    }

    /// Finds the caller named by the token header and says whether its token has expired.
    pub fn identify(&self, headers: &HeaderMap) -> Result<(Caller, bool), ApiError> {
        let raw = headers.get(TOKEN_HEADER).ok_or_else(|| {
            ApiError::unauthorized(
                ErrorCode::AuthNotProvided,
                "Authentication credentials were not provided: X-Forensic-Access-Token is missing",
            )
        })?;
        let invalid =
            || ApiError::unauthorized(ErrorCode::AuthInvalid, "Access token is not valid");
        let token = raw.to_str().map_err(|_| invalid())?;
        if self.service_token.as_deref() == Some(token) {
            return Ok((Caller::Service, self.service_expired));
        }
        let id = *self.by_access.get(token).ok_or_else(invalid)?;
        let s = &self.sessions[&id];
        let expired = s.forced_expired || Instant::now() >= s.expires_at;
        Ok((Caller::Session(id), expired))
    }

    /// Checks the token header of an API call; a valid session's expiry slides forward and
    /// the session it replaced (by refresh) is deleted.
    pub fn check(&mut self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let (caller, expired) = self.identify(headers)?;
        if expired {
            return Err(ApiError::unauthorized(
                ErrorCode::AuthExpired,
                "Access token has expired",
            ));
        }
        if let Caller::Session(id) = caller {
            let ttl = self.ttl;
            let s = self
                .sessions
                .get_mut(&id)
                .expect("identify found this session");
            s.expires_at = Instant::now() + ttl;
            s.expire_date = SystemTime::now() + ttl;
            if let Some(old) = s.replaces.take() {
                self.remove(old);
            }
        }
        Ok(caller)
    }

    /// `POST /api/authorize/refresh/`: the header must name a known session (an expired one is
    /// fine, that is what refresh is for) that owns `expire_token`.
    pub fn refresh(
        &mut self,
        headers: &HeaderMap,
        expire_token: Option<&str>,
    ) -> Result<Issued, ApiError> {
        let (caller, _expired) = self.identify(headers)?;
        // Error texts are the ones docs/oz-api.md §1.2 quotes.
        let expire_token = expire_token.ok_or_else(|| {
            ApiError::structure(
                "Could not locate field for key_path expire_token from provided dict data",
            )
        })?;
        let owner = *self
            .by_refresh
            .get(expire_token)
            .ok_or_else(|| ApiError::unauthorized(ErrorCode::AuthInvalid, "Session not found"))?;
        if caller != Caller::Session(owner) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::AuthForbidden,
                "You have not access to refresh this session",
            ));
        }
        Ok(self.issue_replacing(Some(owner)))
    }

    /// Accepts `token` as the static service token from now on, instead of the old one (which
    /// then answers error_code 7, as a revoked token does); `None` accepts none.
    pub fn set_service_token(&mut self, token: Option<String>) {
        self.service_token = token.filter(|t| !t.is_empty());
        self.service_expired = false;
    }

    /// Marks every token issued so far, and the static one, as expired.
    pub fn expire_all(&mut self) {
        self.service_expired = true;
        for s in self.sessions.values_mut() {
            s.forced_expired = true;
        }
    }

    fn remove(&mut self, id: SessionId) {
        if let Some(s) = self.sessions.remove(&id) {
            self.by_access.remove(&s.access);
            self.by_refresh.remove(&s.refresh);
        }
    }
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn with_token(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TOKEN_HEADER, HeaderValue::from_str(t).unwrap());
        h
    }

    fn code<T>(r: Result<T, ApiError>) -> u16 {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.code as u16,
        }
    }

    #[test]
    fn codes_for_missing_unknown_expired() {
        let mut s = Sessions::new(Duration::from_secs(60), Some("svc".into()));
        assert_eq!(code(s.check(&HeaderMap::new())), 6);
        assert_eq!(code(s.check(&with_token("nope"))), 7);
        assert_eq!(s.check(&with_token("svc")).unwrap(), Caller::Service);
        let t = s.issue();
        assert_eq!(t.access_token.len(), 64);
        assert!(t.access_token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(s.check(&with_token(&t.access_token)).is_ok());
        s.expire_all();
        assert_eq!(code(s.check(&with_token(&t.access_token))), 8);
        assert_eq!(code(s.check(&with_token("svc"))), 8);
    }

    #[test]
    fn zero_ttl_tokens_are_born_expired() {
        let mut s = Sessions::new(Duration::ZERO, None);
        let t = s.issue();
        assert_eq!(code(s.check(&with_token(&t.access_token))), 8);
    }

    #[test]
    fn refresh_replaces_the_pair_on_first_use() {
        let mut s = Sessions::new(Duration::from_secs(60), None);
        let a = s.issue();
        let b = s.issue();
        let h = with_token(&a.access_token);
        assert_eq!(code(s.refresh(&h, None)), 3);
        assert_eq!(code(s.refresh(&h, Some("unknown"))), 7);
        assert_eq!(code(s.refresh(&h, Some(&b.expire_token))), 9);
        s.expire_all();
        let a2 = s.refresh(&h, Some(&a.expire_token)).unwrap();
        // The old pair lives until the new one is used once.
        assert_eq!(code(s.check(&h)), 8);
        assert!(s.check(&with_token(&a2.access_token)).is_ok());
        assert_eq!(code(s.check(&h)), 7);
    }
}
