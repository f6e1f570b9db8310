//! What the client reads out of Oz API answers: folders, analyses, error bodies, login answers.
//!
//! Oz documents these shapes only in part (docs/oz-api.md §2.8, §8.9), so parsing is tolerant: it
//! reads the fields it needs, ignores the rest, and keeps the raw folder JSON for callers.
//! Sources: folder `folder_id`/`resolution_status` (§2.8) and `system_resolution` (§3.5);
//! analysis `analysis_id` or the older `analyse_id` (§3.1, §8.3), `type`, `state`,
//! `resolution_status` (§3.5; third-party code reads `resolution`); error bodies
//! `{error_code, error_message, details}` (§5); login answers `access_token`, `expire_token`,
//! `expire_date` (§1.1).

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::resolution::Resolution;

/// Longest Oz `error_message` kept for logs; Oz text is not ours to repeat at length.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 200;

/// Token lifetime assumed when a login answer has no usable `expire_date`: the default
/// `OZ_SESSION_TTL` of an ordinary account (§1.2). Oz extends a live session on use, so this
/// errs on the early side.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// A folder as answered by `POST /api/folders/` or `POST /api/instant/folders/`.
#[derive(Clone, Debug, PartialEq)]
pub struct Folder {
    /// The folder id (a UUID).
    pub folder_id: String,
    /// Folder processing status (INITIAL, PROCESSING, FAILED, FINISHED), when present.
    pub resolution_status: Option<String>,
    /// The folder-level verdict over all its analyses, when present (§3.5).
    pub system_resolution: Option<String>,
    /// Analyses already in the answer: single-request mode (§3.3) and the Instant API (§3.4).
    pub analyses: Vec<Analysis>,
    /// The whole answer, for callers that want more (media URLs, best shot).
    pub raw: Value,
}

impl Folder {
    /// The folder-level verdict: `system_resolution`, else `resolution_status` (where only
    /// FAILED is a verdict), else `Processing`.
    pub fn resolution(&self) -> Resolution {
        match (&self.system_resolution, &self.resolution_status) {
            (Some(s), _) => Resolution::parse(s),
            (None, Some(s)) => Resolution::parse(s),
            (None, None) => Resolution::Processing,
        }
    }
}

impl Folder {
    /// The folder object of the answer (the first item carrying `folder_id` in an array answer).
    fn object(&self) -> Option<&serde_json::Map<String, Value>> {
        match &self.raw {
            Value::Object(map) => Some(map),
            Value::Array(items) => items
                .iter()
                .find(|i| i.get("folder_id").is_some())
                .and_then(Value::as_object),
            _ => None,
        }
    }

    /// `meta_data.{key}` of the folder: what the upload wrote in `folder:meta_data` (§2.3).
    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.object()?.get("meta_data")?.get(key)
    }

    /// Every tag of every media of the folder (`media[].tags`), in answer order.
    pub fn media_tags(&self) -> Vec<&str> {
        let Some(Value::Array(media)) = self.object().and_then(|o| o.get("media")) else {
            return Vec::new();
        };
        media
            .iter()
            .filter_map(|m| m.get("tags").and_then(Value::as_array))
            .flatten()
            .filter_map(Value::as_str)
            .collect()
    }

    /// The `preview_url` of the first media in `source_media` that has one (§2.7, §2.8): the
    /// MP4 Oz rendered of the capture. Unchecked: see `OzClient::open_media`.
    pub fn preview_url(&self) -> Option<&str> {
        let Some(Value::Array(media)) = self.object().and_then(|o| o.get("source_media")) else {
            return None;
        };
        media
            .iter()
            .filter_map(|m| m.get("preview_url").and_then(Value::as_str))
            .find(|u| !u.is_empty())
    }
}

/// One analysis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Analysis {
    /// `analysis_id`, or `analyse_id` in older API versions; empty if Oz sent neither.
    pub id: String,
    /// The analysis `type` as Oz reports it (uppercase, e.g. `QUALITY`).
    pub kind: String,
    /// `state` as Oz reports it (PROCESSING, FAILED, FINISHED); empty if absent.
    pub state: String,
    /// The verdict of this analysis.
    pub resolution: Resolution,
}

#[derive(Deserialize)]
struct RawAnalysis {
    analysis_id: Option<String>,
    analyse_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    state: Option<String>,
    resolution_status: Option<String>,
    resolution: Option<String>,
}

impl From<RawAnalysis> for Analysis {
    fn from(raw: RawAnalysis) -> Analysis {
        let state = raw.state.unwrap_or_default();
        let mut resolution = raw
            .resolution_status
            .or(raw.resolution)
            .map(|s| Resolution::parse(&s))
            .unwrap_or(Resolution::Processing);
        // A system error shows in `state` first; `resolution_status` copies it, but do not
        // wait for that if only `state` says so (§3.5: "resolution_status copies state").
        if resolution == Resolution::Processing && Resolution::parse(&state) == Resolution::Failed {
            resolution = Resolution::Failed;
        }
        Analysis {
            id: raw.analysis_id.or(raw.analyse_id).unwrap_or_default(),
            kind: raw.kind.unwrap_or_default(),
            state,
            resolution,
        }
    }
}

/// Parses one analysis object.
pub fn parse_analysis(v: &Value) -> Result<Analysis, String> {
    RawAnalysis::deserialize(v)
        .map(Analysis::from)
        .map_err(|e| format!("analysis: {e}"))
}

/// Parses the answer to `POST /api/folders/{id}/analyses/`: documented as an array (§3.1);
/// an object with an `analyses` array or a single analysis object are accepted too.
pub fn parse_analyses(v: &Value) -> Result<Vec<Analysis>, String> {
    match v {
        Value::Array(items) => items.iter().map(parse_analysis).collect(),
        Value::Object(map) => match map.get("analyses") {
            Some(Value::Array(items)) => items.iter().map(parse_analysis).collect(),
            _ => parse_analysis(v).map(|a| vec![a]),
        },
        _ => Err("expected a JSON array of analyses".into()),
    }
}

/// Parses a folder answer: a folder object with `folder_id`, or (§2.8, the Postman Instant
/// script) an array of media whose items carry `folder_id`.
pub fn parse_folder(v: &Value) -> Result<Folder, String> {
    let obj = match v {
        Value::Object(_) => v,
        Value::Array(items) => items
            .iter()
            .find(|i| i.get("folder_id").is_some_and(Value::is_string))
            .ok_or("array answer without any `folder_id`")?,
        _ => return Err("expected a JSON object with `folder_id`".into()),
    };
    let folder_id = obj
        .get("folder_id")
        .and_then(Value::as_str)
        .ok_or("no `folder_id` string")?
        .to_owned();
    let text = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_owned);
    let analyses = match obj.get("analyses") {
        Some(Value::Array(items)) => items.iter().map(parse_analysis).collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    Ok(Folder {
        folder_id,
        resolution_status: text("resolution_status"),
        system_resolution: text("system_resolution"),
        analyses,
        raw: v.clone(),
    })
}

/// What an Oz error body says (§5). Both fields are optional: a reverse proxy in front of Oz
/// may answer with its own HTML page.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ErrorBody {
    pub error_code: Option<i64>,
    /// `error_message`, already cut to [`MAX_ERROR_MESSAGE_CHARS`].
    pub message: String,
}

/// Reads an error body; anything that is not Oz's JSON gives an empty `ErrorBody`.
pub fn parse_error_body(body: &[u8]) -> ErrorBody {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return ErrorBody::default();
    };
    let error_code = match v.get("error_code") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let message = v
        .get("error_message")
        .and_then(Value::as_str)
        .map(truncate)
        .unwrap_or_default();
    ErrorBody {
        error_code,
        message,
    }
}

/// Cuts `s` to [`MAX_ERROR_MESSAGE_CHARS`] characters (never inside a character) and drops
/// control characters, so an Oz message cannot break a log line.
pub fn truncate(s: &str) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_MESSAGE_CHARS)
        .collect();
    if s.chars()
        .filter(|c| !c.is_control())
        .nth(MAX_ERROR_MESSAGE_CHARS)
        .is_some()
    {
        out.push('…');
    }
    out
}

/// A login or refresh answer (§1.1, §1.2).
pub struct TokenAnswer {
    pub access_token: String,
    pub expire_token: Option<String>,
    /// How long the token lives from now.
    pub lifetime: Duration,
}

// No Debug derive: the fields are secrets.
impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAnswer")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// Parses a login or refresh answer; `now_unix` is the current Unix time in seconds.
pub fn parse_token_answer(v: &Value, now_unix: f64) -> Result<TokenAnswer, String> {
    let access_token = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("no `access_token` string")?
        .to_owned();
    let expire_token = v
        .get("expire_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    Ok(TokenAnswer {
        access_token,
        expire_token,
        lifetime: token_lifetime(v.get("expire_date"), now_unix),
    })
}

/// How long a token lives, from `expire_date`.
///
/// The type of `expire_date` is not documented (§1.1); public code treats it as Unix seconds.
/// Accepted: an integer or float, or a string holding one. A value above 10^11 is read as
/// milliseconds (10^11 s is the year 5138, 10^11 ms is 1973). Absent, unreadable or already
/// past (clock skew) gives [`DEFAULT_TOKEN_TTL`]: a token that really expired is caught by the
/// 401 error_code 8 path anyway.
pub fn token_lifetime(expire_date: Option<&Value>, now_unix: f64) -> Duration {
    let secs = match expire_date {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let Some(mut at) = secs.filter(|s| s.is_finite()) else {
        return DEFAULT_TOKEN_TTL;
    };
    if at > 1e11 {
        at /= 1000.0;
    }
    let left = at - now_unix;
    if left > 0.0 {
        // Capped at ten years so `Instant` arithmetic cannot overflow; service tokens live 5.
        Duration::from_secs_f64(left.min(10.0 * 365.0 * 86_400.0))
    } else {
        DEFAULT_TOKEN_TTL
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn analysis_accepts_both_id_spellings() {
        let a = parse_analysis(&json!({"analysis_id": "a1", "type": "QUALITY"})).unwrap();
        assert_eq!(a.id, "a1");
        assert_eq!(a.kind, "QUALITY");
        let b = parse_analysis(&json!({"analyse_id": "b2"})).unwrap();
        assert_eq!(b.id, "b2");
        let both = parse_analysis(&json!({"analysis_id": "new", "analyse_id": "old"})).unwrap();
        assert_eq!(both.id, "new");
    }

    #[test]
    fn analysis_status_is_case_insensitive() {
        let a =
            parse_analysis(&json!({"state": "finished", "resolution_status": "Declined"})).unwrap();
        assert_eq!(a.resolution, Resolution::Declined);
        let b = parse_analysis(&json!({"resolution": "success"})).unwrap();
        assert_eq!(b.resolution, Resolution::Success);
    }

    #[test]
    fn analysis_failed_state_is_failed() {
        let a = parse_analysis(&json!({"state": "FAILED", "resolution_status": null})).unwrap();
        assert_eq!(a.resolution, Resolution::Failed);
        let b = parse_analysis(&json!({"state": "PROCESSING"})).unwrap();
        assert_eq!(b.resolution, Resolution::Processing);
    }

    #[test]
    fn analyses_answer_shapes() {
        let arr = json!([{"analysis_id": "a"}, {"analyse_id": "b"}]);
        assert_eq!(parse_analyses(&arr).unwrap().len(), 2);
        let wrapped = json!({"analyses": [{"analysis_id": "a"}]});
        assert_eq!(parse_analyses(&wrapped).unwrap()[0].id, "a");
        let single = json!({"analysis_id": "s"});
        assert_eq!(parse_analyses(&single).unwrap()[0].id, "s");
        assert!(parse_analyses(&json!("nope")).is_err());
    }

    #[test]
    fn folder_object_with_analyses() {
        let v = json!({
            "folder_id": "f1",
            "resolution_status": "FINISHED",
            "system_resolution": "success",
            "analyses": [{"analysis_id": "a", "resolution_status": "SUCCESS"}],
        });
        let f = parse_folder(&v).unwrap();
        assert_eq!(f.folder_id, "f1");
        assert_eq!(f.analyses.len(), 1);
        assert_eq!(f.resolution(), Resolution::Success);
        assert_eq!(f.raw, v);
    }

    #[test]
    fn folder_from_media_array() {
        let v = json!([{"media_id": "m0"}, {"media_id": "m1", "folder_id": "f2"}]);
        let f = parse_folder(&v).unwrap();
        assert_eq!(f.folder_id, "f2");
        assert!(f.analyses.is_empty());
        assert_eq!(f.resolution(), Resolution::Processing);
    }

    #[test]
    fn folder_meta_tags_and_preview() {
        let f = parse_folder(&json!({
            "folder_id": "f",
            "meta_data": {"request_id": "r1", "virtual_camera": true},
            "media": [{"tags": ["photo_selfie"]}, {"tags": ["video_selfie", "video_selfie_left"]}],
            "source_media": [{"media_id": "m0"}, {"media_id": "m1", "preview_url": "http://oz/p.mp4"}],
        }))
        .unwrap();
        assert_eq!(f.meta("request_id"), Some(&json!("r1")));
        assert_eq!(f.meta("virtual_camera"), Some(&json!(true)));
        assert_eq!(f.meta("other"), None);
        assert_eq!(
            f.media_tags(),
            ["photo_selfie", "video_selfie", "video_selfie_left"]
        );
        assert_eq!(f.preview_url(), Some("http://oz/p.mp4"));
        let bare = parse_folder(&json!({"folder_id": "f", "media": [{}]})).unwrap();
        assert!(bare.media_tags().is_empty() && bare.preview_url().is_none());
        assert_eq!(bare.meta("request_id"), None);
    }

    #[test]
    fn folder_without_id_is_an_error() {
        assert!(parse_folder(&json!({"media": []})).is_err());
        assert!(parse_folder(&json!([{"media_id": "m"}])).is_err());
        assert!(parse_folder(&json!(42)).is_err());
    }

    #[test]
    fn folder_status_alone() {
        let mut f =
            parse_folder(&json!({"folder_id": "f", "resolution_status": "FAILED"})).unwrap();
        assert_eq!(f.resolution(), Resolution::Failed);
        f.resolution_status = Some("INITIAL".into());
        assert_eq!(f.resolution(), Resolution::Processing);
    }

    #[test]
    fn error_body_parsing() {
        let e = parse_error_body(
            br#"{"error_code": 8, "error_message": "Token expired", "details": null}"#,
        );
        assert_eq!(e.error_code, Some(8));
        assert_eq!(e.message, "Token expired");
        let s = parse_error_body(br#"{"error_code": "7"}"#);
        assert_eq!(s.error_code, Some(7));
        assert_eq!(s.message, "");
        assert_eq!(parse_error_body(b"<html>502</html>"), ErrorBody::default());
        assert_eq!(parse_error_body(b""), ErrorBody::default());
    }

    #[test]
    fn truncation_keeps_200_chars_and_whole_characters() {
        let long = "é".repeat(500);
        let t = truncate(&long);
        assert_eq!(t.chars().count(), MAX_ERROR_MESSAGE_CHARS + 1);
        assert!(t.ends_with('…'));
        let exact = "x".repeat(MAX_ERROR_MESSAGE_CHARS);
        assert_eq!(truncate(&exact), exact);
        assert_eq!(truncate("a\nb\r\u{1b}c"), "abc");
    }

    #[test]
    fn expire_date_variants() {
        let now = 1_700_000_000.0;
        let secs = |v: Value| token_lifetime(Some(&v), now).as_secs();
        assert_eq!(secs(json!(1_700_000_600)), 600);
        assert_eq!(secs(json!(1_700_000_600.75)), 600);
        assert_eq!(secs(json!("1700000600")), 600);
        assert_eq!(secs(json!(" 1700000600.5 ")), 600);
        assert_eq!(secs(json!(1_700_000_600_000u64)), 600, "milliseconds");
        let default = DEFAULT_TOKEN_TTL.as_secs();
        assert_eq!(token_lifetime(None, now).as_secs(), default);
        assert_eq!(secs(Value::Null), default);
        assert_eq!(secs(json!("2026-11-25T10:00:00Z")), default);
        assert_eq!(secs(json!(1_600_000_000)), default, "past: clock skew");
        assert_eq!(secs(json!(true)), default);
    }

    #[test]
    fn token_answer_needs_access_token() {
        let ok = parse_token_answer(
            &json!({"access_token": "abc", "expire_token": "def", "expire_date": 1_700_000_060}),
            1_700_000_000.0,
        )
        .unwrap();
        assert_eq!(ok.access_token, "abc");
        assert_eq!(ok.expire_token.as_deref(), Some("def"));
        assert_eq!(ok.lifetime.as_secs(), 60);
        assert!(
            !format!("{ok:?}").contains("abc"),
            "Debug must not show the token"
        );
        assert!(parse_token_answer(&json!({"user": {}}), 0.0).is_err());
        assert!(parse_token_answer(&json!({"access_token": ""}), 0.0).is_err());
    }
}
