//! `POST /api/authorize/auth/` and `POST /api/authorize/refresh/`: the token endpoints.
//!
//! Follows docs/oz-api.md §1.1 (credentials body; `access_token`, `expire_token`, `expire_date` in
//! Unix seconds and a `user` object) and §1.2 (refresh with `{"expire_token": …}` and the
//! current token header; its 400/401/403 errors).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::auth::Issued;
use super::body::json_body;
use super::error::{ApiError, ErrorCode};
use super::state::OzSim;
use super::wire::json_rsp;

/// The one user every simulator has.
const USER_ID: &str = "00000000-0000-4000-8000-00000000051a";

/// Logs in with the configured email and password.
pub(crate) fn login(
    sim: &OzSim,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, ApiError> {
    let body = json_body(headers, body)?;
    let shape = "body must be {\"credentials\": {\"email\": …, \"password\": …}}";
    let creds = body
        .get("credentials")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::structure(shape))?;
    let field = |name: &str| {
        creds
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::structure(format!("credentials.{name} is missing; {shape}")))
    };
    let (email, password) = (field("email")?, field("password")?);
    let mut st = sim.lock();
    if email != st.cfg.email || password != st.cfg.password {
        // Which of the two was wrong is not said, as any login service would do.
        return Err(ApiError::unauthorized(
            ErrorCode::AuthInvalid,
            "Invalid credentials",
        ));
    }
    let issued = st.sessions.issue();
    let email = st.cfg.email.clone();
    drop(st);
    Ok(json_rsp(StatusCode::OK, &token_body(&issued, &email)))
}

/// Exchanges `expire_token` for a new token pair.
pub(crate) fn refresh(
    sim: &OzSim,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, ApiError> {
    let mut st = sim.lock();
    // Token errors come first: the header is checked before the body is looked at.
    st.sessions.identify(headers)?;
    let body = if body.is_empty() {
        json!({})
    } else {
        json_body(headers, body)?
    };
    let issued = st
        .sessions
        .refresh(headers, body.get("expire_token").and_then(Value::as_str))?;
    let email = st.cfg.email.clone();
    drop(st);
    Ok(json_rsp(StatusCode::OK, &token_body(&issued, &email)))
}

fn token_body(t: &Issued, email: &str) -> Value {
    json!({
        "access_token": t.access_token,
        "expire_token": t.expire_token,
        "expire_date": t.expire_date,
        "user": {
            "user_id": USER_ID,
            "user_type": "CLIENT",
            "email": email,
            "first_name": "Oz",
            "last_name": "Simulator",
            "is_admin": false,
            "is_service": false,
            "can_start_analyse_quality": true,
            "can_start_analyse_biometry": true,
            "can_start_analyse_documents": true,
            "can_start_analyse_collection": true,
        },
    })
}
