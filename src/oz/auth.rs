//! The Oz access token: a static service token, or one obtained by login, kept, renewed before
//! it expires, and renewed at once when Oz says it is invalid or expired.
//!
//! Follows docs/oz-api.md §1: login is `POST /api/authorize/auth/` with
//! `{"credentials":{"email","password"}}`, answering `access_token`, `expire_token` and
//! `expire_date` (§1.1); renewal is `POST /api/authorize/refresh/` with `{"expire_token"}` and
//! the current token (§1.2); error codes 7 (invalid) and 8 (expired) mean "log in again" (§5).
//!
//! Renewal is single flight. The token sits behind one async mutex with a generation number
//! that grows on every new token. A caller whose token was refused says which generation it
//! used: if a newer one exists someone already renewed, and it just takes that; otherwise it
//! logs in while holding the lock, so concurrent callers queue behind one login instead of
//! sending N. Callers that waited while an attempt *failed* get that failure instead of
//! trying again themselves (an attempt counter, read before waiting, tells them).
//!
//! Proactive renewal (`renew_before` ahead of expiry) uses refresh and falls back to a full
//! login; after a 401 the session is gone, so it logs in directly. If a proactive renewal fails
//! while the current token is still valid, the current token is used: Oz being slow to renew
//! must not fail captures that would still succeed.
//!
//! Nothing here logs or returns a token, an e-mail or a password.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::HeaderValue;
use serde_json::json;
use tokio::sync::Mutex;

use super::error::Error;
use super::transport::{Call, Transport};
use super::types::{parse_token_answer, TokenAnswer};
use crate::config::OzAuthConfig;

/// The token to send with one request, and which generation it is.
#[derive(Clone)]
pub struct Token {
    /// `None`: no credentials configured (an Instant API guarded on the customer's side, §3.4).
    pub header: Option<HeaderValue>,
    generation: u64,
}

/// How the client authenticates.
pub enum Auth {
    /// No token is sent.
    None,
    /// A service token used as is (§1.3); a 401 is final.
    Static(HeaderValue),
    /// Login with e-mail and password (boxed: it is much larger than the other variants).
    Login(Box<Login>),
}

impl Auth {
    /// From config; `Err` names a problem without quoting the secret.
    pub fn from_config(cfg: &OzAuthConfig) -> Result<Auth, String> {
        if !cfg.token.is_empty() {
            let mut h = HeaderValue::from_str(cfg.token.trim())
                .map_err(|_| "oz.auth.token is not a valid header value".to_string())?;
            h.set_sensitive(true);
            return Ok(Auth::Static(h));
        }
        if cfg.email.is_empty() || cfg.password.is_empty() {
            return Ok(Auth::None);
        }
        let credentials = json!({"credentials": {"email": cfg.email, "password": cfg.password}});
        Ok(Auth::Login(Box::new(Login {
            credentials: Bytes::from(credentials.to_string()),
            renew_before: cfg.renew_before,
            attempts: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        })))
    }

    /// The token for the next request, logging in or renewing first if needed.
    pub async fn token(&self, t: &Transport) -> Result<Token, Error> {
        match self {
            Auth::None => Ok(Token {
                header: None,
                generation: 0,
            }),
            Auth::Static(h) => Ok(Token {
                header: Some(h.clone()),
                generation: 0,
            }),
            Auth::Login(l) => l.token(t, None).await,
        }
    }

    /// After Oz refused `stale` with error_code 7 or 8: a fresh token, or `None` when this kind
    /// of auth cannot renew (then the refusal is final).
    pub async fn renew(&self, t: &Transport, stale: &Token) -> Result<Option<Token>, Error> {
        match self {
            Auth::None | Auth::Static(_) => Ok(None),
            Auth::Login(l) => l.token(t, Some(stale.generation)).await.map(Some),
        }
    }
}

/// Login state; shared by all clones of the client.
pub struct Login {
    /// The login request body, serialized once. Never logged.
    credentials: Bytes,
    renew_before: Duration,
    /// Login or refresh attempts started; read before waiting for the lock.
    attempts: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    current: Option<Current>,
    /// Grows with every new token.
    generation: u64,
    /// The failure of the last attempt, handed to callers that waited on it.
    last_failure: Option<Error>,
}

struct Current {
    header: HeaderValue,
    expire_token: Option<String>,
    expires_at: Instant,
    renew_at: Instant,
}

impl Current {
    fn from_answer(
        a: TokenAnswer,
        renew_before: Duration,
        t: &Transport,
        endpoint: &'static str,
    ) -> Result<Current, Error> {
        let mut header = HeaderValue::from_str(&a.access_token).map_err(|_| {
            t.bad_response(endpoint, "access_token is not a valid header value".into())
        })?;
        header.set_sensitive(true);
        let now = Instant::now();
        let expires_at = now + a.lifetime;
        // With renew_before >= lifetime every request renews; the token still works, and a
        // config that asks for that gets it.
        let renew_at = expires_at.checked_sub(renew_before).unwrap_or(now).max(now);
        tracing::info!(lifetime_s = a.lifetime.as_secs(), "oz token obtained");
        Ok(Current {
            header,
            expire_token: a.expire_token,
            expires_at,
            renew_at,
        })
    }

    fn valid(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

impl Login {
    /// `stale`: the generation Oz just refused, if any.
    async fn token(&self, t: &Transport, stale: Option<u64>) -> Result<Token, Error> {
        let attempts_before = self.attempts.load(Ordering::Acquire);
        let mut st = self.state.lock().await;
        let now = Instant::now();
        let take = |st: &State, cur: &Current| Token {
            header: Some(cur.header.clone()),
            generation: st.generation,
        };

        if let Some(cur) = &st.current {
            let fresh = match stale {
                // Someone renewed after our token was handed out: use theirs.
                Some(g) => g != st.generation,
                None => now < cur.renew_at,
            };
            if fresh {
                return Ok(take(&st, cur));
            }
        }
        if self.attempts.load(Ordering::Acquire) != attempts_before {
            // An attempt ran while we waited. Share its outcome instead of starting another.
            if let Some(cur) = st.current.as_ref().filter(|c| c.valid(now)) {
                if stale.is_none_or(|g| g != st.generation) {
                    return Ok(take(&st, cur));
                }
            }
            if let Some(e) = &st.last_failure {
                return Err(duplicate(e));
            }
        }

        self.attempts.fetch_add(1, Ordering::AcqRel);
        let refresh_with = match (&st.current, stale) {
            (Some(cur), None) if cur.valid(now) => {
                cur.expire_token.clone().map(|e| (cur.header.clone(), e))
            }
            _ => None,
        };
        let renewed = match refresh_with {
            Some((header, expire_token)) => match self.refresh(t, &header, &expire_token).await {
                Ok(c) => Ok(c),
                Err(e) => {
                    tracing::info!(error = %e, "oz token refresh failed, logging in again");
                    self.login(t).await
                }
            },
            None => self.login(t).await,
        };
        match renewed {
            Ok(cur) => {
                st.generation += 1;
                st.last_failure = None;
                let token = take(&st, &cur);
                st.current = Some(cur);
                Ok(token)
            }
            Err(e) => {
                st.last_failure = Some(duplicate(&e));
                if stale.is_some() {
                    // Oz refused this token; sending it again would only fail again.
                    st.current = None;
                }
                match st.current.as_ref() {
                    // Proactive renewal failed but the token still works: keep using it.
                    Some(cur) if stale.is_none() && cur.valid(Instant::now()) => {
                        tracing::warn!(error = %e, "oz token renewal failed, current token kept");
                        Ok(take(&st, cur))
                    }
                    _ => Err(e),
                }
            }
        }
    }

    async fn login(&self, t: &Transport) -> Result<Current, Error> {
        let call = Call {
            endpoint: "auth",
            method: http::Method::POST,
            path: "/api/authorize/auth/".into(),
            content_type: Some(HeaderValue::from_static("application/json")),
            chunks: vec![self.credentials.clone()],
        };
        let body = t.send(&call, None, None).await?;
        self.parse(t, "auth", &body)
    }

    async fn refresh(
        &self,
        t: &Transport,
        header: &HeaderValue,
        expire_token: &str,
    ) -> Result<Current, Error> {
        let call = Call::post_json(
            "refresh",
            "/api/authorize/refresh/".into(),
            &json!({ "expire_token": expire_token }),
        );
        let body = t.send(&call, Some(header), None).await?;
        self.parse(t, "refresh", &body)
    }

    fn parse(&self, t: &Transport, endpoint: &'static str, body: &[u8]) -> Result<Current, Error> {
        let v = t.json(endpoint, body)?;
        let answer = parse_token_answer(&v, unix_now()).map_err(|r| t.bad_response(endpoint, r))?;
        Current::from_answer(answer, self.renew_before, t, endpoint)
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// A copy of `e` for the callers that waited on the failed attempt (`Error` is not `Clone`).
fn duplicate(e: &Error) -> Error {
    match e {
        Error::Api {
            endpoint,
            status,
            error_code,
            message,
        } => Error::Api {
            endpoint,
            status: *status,
            error_code: *error_code,
            message: message.clone(),
        },
        Error::Auth { error_code } => Error::Auth {
            error_code: *error_code,
        },
        Error::Timeout { endpoint } => Error::Timeout { endpoint },
        Error::ResultTimeout => Error::ResultTimeout,
        Error::Unreachable {
            endpoint,
            reason,
            sent,
        } => Error::Unreachable {
            endpoint,
            reason: reason.clone(),
            sent: *sent,
        },
        Error::BadResponse { endpoint, reason } => Error::BadResponse {
            endpoint,
            reason: reason.clone(),
        },
        Error::TooManyAnalyses { endpoint, listed } => Error::TooManyAnalyses {
            endpoint,
            listed: *listed,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_token_is_sensitive_and_trimmed() {
        let cfg = OzAuthConfig {
            token: " abc123\n".into(),
            ..Default::default()
        };
        match Auth::from_config(&cfg).unwrap() {
            Auth::Static(h) => {
                assert_eq!(h.as_bytes(), b"abc123");
                assert!(h.is_sensitive());
            }
            _ => panic!("expected a static token"),
        }
    }

    #[test]
    fn bad_static_token_error_does_not_quote_it() {
        let cfg = OzAuthConfig {
            token: "se\u{7}cret".into(),
            ..Default::default()
        };
        let err = Auth::from_config(&cfg).err().unwrap();
        assert!(!err.contains("cret"), "{err}");
    }

    #[test]
    fn no_credentials_means_no_header() {
        assert!(matches!(
            Auth::from_config(&OzAuthConfig::default()).unwrap(),
            Auth::None
        ));
    }
}
