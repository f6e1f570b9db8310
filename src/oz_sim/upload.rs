//! Validates a folder upload and turns it into media to store, filling the upload record as
//! it goes so a refused upload still shows what arrived.
//!
//! Follows docs/oz-api.md §2.2 (multipart with file parts keyed by name, media type from the MIME
//! type), §2.3 (`payload` with `media:tags`, `media:meta_data`, `folder:meta_data`), §2.4 (tags
//! for shots sets), §4.7 with §5 (OzCapsula containers, code 13) and §6.1 (count and size
//! limits). Error codes: 3 for structure, 4 for values, 5 for types; 411 when there is no
//! `Content-Length`.

use std::collections::HashMap;

use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::StatusCode;
use serde_json::{json, Map, Value};

use super::config::SimConfig;
use super::error::{ApiError, ErrorCode};
use super::multipart::{self, Part};
use super::objects::{parse_analysis_requests, AnalysisRequest};
use super::records::{ReceivedPart, ReceivedUpload};
use super::shots::{self, MediaType};
use super::wire::{content_type, essence};

/// The tags Oz documents (docs/oz-api.md §2.4).
const ACTION_TAGS: [&str; 9] = [
    "video_selfie_left",
    "video_selfie_right",
    "video_selfie_down",
    "video_selfie_high",
    "video_selfie_smile",
    "video_selfie_eyes",
    "video_selfie_scan",
    "video_selfie_blank",
    "video_selfie_oneshot",
];
const ORIENTATION_TAGS: [&str; 2] = ["orientation_portrait", "orientation_landscape"];
const PHOTO_TAGS: [&str; 4] = [
    "photo_selfie",
    "photo_id",
    "photo_id_front",
    "photo_id_back",
];

/// A media item to store.
#[derive(Clone, Debug)]
pub(crate) struct NewMedia {
    pub media_type: MediaType,
    pub original_name: String,
    pub tags: Vec<String>,
    pub meta_data: Value,
    /// Whether Oz would render an MP4 preview of it (see `preview`).
    pub has_preview: bool,
}

/// An upload that passed every check.
#[derive(Clone, Debug)]
pub(crate) struct Accepted {
    pub media: Vec<NewMedia>,
    pub folder_meta: Value,
    /// `analyses` from the payload (single request, docs/oz-api.md §3.3), if given.
    pub analyses: Option<Vec<AnalysisRequest>>,
}

/// Checks an upload; `rec` receives what was understood before any refusal.
pub(crate) fn check_upload(
    headers: &HeaderMap,
    body: &[u8],
    cfg: &SimConfig,
    rec: &mut ReceivedUpload,
) -> Result<Accepted, ApiError> {
    rec.content_type = content_type(headers).unwrap_or_default().to_owned();
    rec.content_length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    rec.chunked = rec.content_length.is_none();
    if rec.chunked {
        return Err(ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            ErrorCode::InvalidStructure,
            "Content-Length is required: the upload arrived without one (chunked transfer)",
        ));
    }
    match essence(&rec.content_type).as_str() {
        "application/octet-stream" => check_container(body, rec),
        "multipart/form-data" => check_form(body, cfg, rec),
        "" => Err(ApiError::kind(
            "Content-Type is missing; expected multipart/form-data or application/octet-stream",
        )),
        other => Err(ApiError::kind(format!(
            "Content-Type is {other:?}; expected multipart/form-data or application/octet-stream"
        ))),
    }
}

/// Checks a `POST /api/folders/` body as the simulator does, with no server and no state: the
/// record says what it read (parts, `payload`, ZIP entries) and, when it refuses the upload, why
/// (`status`, `error`); `status` is 200 when every check passes, and no folder is made. Lets the
/// fuzz target `multipart_roundtrip` read the proxy's uploads back with this independent parser.
pub fn read_upload(content_type: &str, body: &[u8], cfg: &SimConfig) -> ReceivedUpload {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(CONTENT_TYPE, v);
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    let mut rec = ReceivedUpload::new("folders", "/api/folders/");
    match check_upload(&headers, body, cfg, &mut rec) {
        Ok(_) => rec.status = StatusCode::OK.as_u16(),
        Err(e) => {
            rec.status = e.status.as_u16();
            rec.error = Some(e.message);
        }
    }
    rec
}

/// An OzCapsula container is opaque (docs/oz-api.md §4.7): only emptiness can be checked.
fn check_container(body: &[u8], rec: &mut ReceivedUpload) -> Result<Accepted, ApiError> {
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::NoContainer,
            "No data container provided",
        ));
    }
    rec.container = Some(body.to_vec());
    Ok(Accepted {
        // What Oz unpacks from a container is unknown; one shots set stands in for it.
        media: vec![NewMedia {
            media_type: MediaType::ShotsSet,
            original_name: "container".into(),
            tags: vec![],
            meta_data: json!({}),
            // Nothing in a container can be read, so nothing can be rendered from it.
            has_preview: false,
        }],
        folder_meta: json!({}),
        analyses: None,
    })
}

fn check_form(
    body: &[u8],
    cfg: &SimConfig,
    rec: &mut ReceivedUpload,
) -> Result<Accepted, ApiError> {
    let boundary =
        multipart::boundary(&rec.content_type).map_err(|e| ApiError::kind(e.to_string()))?;
    let parts =
        multipart::parse(body, &boundary).map_err(|e| ApiError::structure(e.to_string()))?;
    rec.parts = parts
        .iter()
        .map(|p| ReceivedPart {
            name: p.name.clone(),
            filename: p.filename.clone(),
            content_type: p.content_type.clone(),
            bytes: p.body.to_vec(),
            zip_entry_names: vec![],
        })
        .collect();
    for (i, p) in parts.iter().enumerate() {
        if parts[..i].iter().any(|q| q.name == p.name) {
            return Err(ApiError::structure(format!(
                "two parts are named {:?}; each form key must be unique",
                p.name
            )));
        }
    }

    let payload = check_payload(&parts, rec)?;
    let files = check_files(&parts, cfg, rec)?;
    let tags = check_tags(&payload, &files)?;
    let media_meta = check_media_meta(&payload, &files)?;
    let folder_meta = match payload.get("folder:meta_data") {
        None | Some(Value::Null) => json!({}),
        Some(m @ Value::Object(_)) => m.clone(),
        Some(_) => return Err(ApiError::kind("payload folder:meta_data must be an object")),
    };
    let analyses = match payload.get("analyses") {
        None => None,
        Some(a) => {
            let reqs = parse_analysis_requests(a)?;
            if reqs.iter().any(|r| r.source_media.is_some()) {
                // The docs' single-request example is cut off (docs/oz-api.md §3.3), so what
                // source_media would name there (file keys? media ids?) is unknown.
                return Err(ApiError::value(
                    "source_media is not supported in payload analyses; they run on every media",
                ));
            }
            Some(reqs)
        }
    };
    let media = files
        .iter()
        .map(|(part, media_type)| NewMedia {
            media_type: *media_type,
            original_name: part.filename.clone().unwrap_or_default(),
            tags: tags.get(&part.name).cloned().unwrap_or_default(),
            meta_data: media_meta.get(&part.name).cloned().unwrap_or(json!({})),
            has_preview: matches!(media_type, MediaType::ShotsSet | MediaType::Video),
        })
        .collect();
    Ok(Accepted {
        media,
        folder_meta,
        analyses,
    })
}

/// The `payload` part: one plain form field holding a JSON object.
fn check_payload(
    parts: &[Part<'_>],
    rec: &mut ReceivedUpload,
) -> Result<Map<String, Value>, ApiError> {
    let part = parts.iter().find(|p| p.name == "payload").ok_or_else(|| {
        ApiError::structure("no \"payload\" part: the tags and metadata go in a payload JSON field")
    })?;
    if part.filename.is_some() {
        // A form parser files a part with a filename under uploads, not fields, so Oz would
        // not see the payload at all.
        return Err(ApiError::structure(
            "part \"payload\" has a filename, so a form parser treats it as a file, not a field; \
             send it without one",
        ));
    }
    if let Some(ct) = &part.content_type {
        let e = essence(ct);
        if e != "application/json" && e != "text/plain" {
            return Err(ApiError::kind(format!(
                "part \"payload\" has Content-Type {ct:?}; expected application/json or none"
            )));
        }
    }
    let value: Value = serde_json::from_slice(part.body)
        .map_err(|e| ApiError::structure(format!("part \"payload\" is not valid JSON: {e}")))?;
    rec.payload = Some(value.clone());
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::structure(
            "part \"payload\" must be a JSON object",
        )),
    }
}

/// The file parts, each checked for size and format; ZIP entries go into `rec`.
fn check_files<'p, 'a>(
    parts: &'p [Part<'a>],
    cfg: &SimConfig,
    rec: &mut ReceivedUpload,
) -> Result<Vec<(&'p Part<'a>, MediaType)>, ApiError> {
    if let Some(p) = parts
        .iter()
        .find(|p| p.name != "payload" && p.filename.is_none())
    {
        return Err(ApiError::structure(format!(
            "part {:?} has no filename; besides \"payload\", every part must be a media file",
            p.name
        )));
    }
    let files: Vec<&Part<'a>> = parts.iter().filter(|p| p.filename.is_some()).collect();
    if files.is_empty() {
        return Err(ApiError::structure(
            "no file parts: a folder upload needs at least one media file",
        ));
    }
    if files.len() > cfg.max_files {
        return Err(ApiError::value(format!(
            "{} file parts; at most {} are accepted (OZ_ATTACHMENT_MAX_COUNT)",
            files.len(),
            cfg.max_files
        )));
    }
    let mut out = Vec::with_capacity(files.len());
    for part in files {
        let name = &part.name;
        if part.body.len() > cfg.max_file_bytes {
            return Err(ApiError::value(format!(
                "file part {name:?} is {} bytes; at most {} are accepted (OZ_ATTACHMENT_MAX_SIZE)",
                part.body.len(),
                cfg.max_file_bytes
            )));
        }
        let ct = part.content_type.as_deref().ok_or_else(|| {
            ApiError::kind(format!(
                "file part {name:?} has no Content-Type; Oz decides the media type from it"
            ))
        })?;
        let e = essence(ct);
        let media_type = MediaType::from_content_type(&e).ok_or_else(|| {
            ApiError::kind(format!(
                "file part {name:?} has Content-Type {ct:?}, which is no image, video or ZIP type"
            ))
        })?;
        match media_type {
            MediaType::ShotsSet => {
                let entries = shots::read_zip(name, part.body)?;
                if let Some(r) = rec.parts.iter_mut().find(|r| &r.name == name) {
                    r.zip_entry_names = entries.iter().map(|(n, _)| n.clone()).collect();
                }
                rec.zip_entries.extend(entries);
            }
            MediaType::Image => shots::check_image(name, &e, part.body)?,
            MediaType::Video => {}
        }
        out.push((part, media_type));
    }
    Ok(out)
}

/// `media:tags`: every file tagged, every key a file, every tag a documented one, and a shots
/// set or video tagged `video_selfie` + one action + one orientation (docs/oz-api.md §2.4).
fn check_tags(
    payload: &Map<String, Value>,
    files: &[(&Part<'_>, MediaType)],
) -> Result<HashMap<String, Vec<String>>, ApiError> {
    let tags = match payload.get("media:tags") {
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(ApiError::kind(
                "payload media:tags must be an object mapping file keys to tag lists",
            ))
        }
        None => {
            return Err(ApiError::structure(
                "payload has no media:tags; Oz ignores untagged media in analyses",
            ))
        }
    };
    check_keys_are_files("media:tags", tags, files)?;
    let mut out = HashMap::new();
    for (part, media_type) in files {
        let key = &part.name;
        let list = tags.get(key).ok_or_else(|| {
            ApiError::value(format!(
                "file part {key:?} has no entry in media:tags; Oz would ignore it in analyses"
            ))
        })?;
        let list: Vec<String> = list
            .as_array()
            .and_then(|a| a.iter().map(|t| t.as_str().map(str::to_owned)).collect())
            .ok_or_else(|| {
                ApiError::kind(format!("media:tags[{key:?}] must be an array of strings"))
            })?;
        for (i, t) in list.iter().enumerate() {
            check_tag(key, t)?;
            if list[..i].contains(t) {
                return Err(ApiError::value(format!(
                    "media:tags[{key:?}] lists {t:?} twice"
                )));
            }
        }
        if matches!(media_type, MediaType::ShotsSet | MediaType::Video) {
            let count = |set: &[&str]| list.iter().filter(|t| set.contains(&t.as_str())).count();
            if !list.iter().any(|t| t == "video_selfie")
                || count(&ACTION_TAGS) != 1
                || count(&ORIENTATION_TAGS) != 1
            {
                return Err(ApiError::value(format!(
                    "media:tags[{key:?}] is {list:?}; a {} needs \"video_selfie\", exactly one \
                     action tag (video_selfie_blank, …) and one orientation tag",
                    media_type.as_str()
                )));
            }
        }
        out.insert(key.clone(), list);
    }
    Ok(out)
}

fn check_tag(key: &str, tag: &str) -> Result<(), ApiError> {
    let known = tag == "video_selfie"
        || ACTION_TAGS.contains(&tag)
        || ORIENTATION_TAGS.contains(&tag)
        || PHOTO_TAGS.contains(&tag);
    if known {
        return Ok(());
    }
    let hint = match tag {
        "video_selfie_best" => {
            "; the Web SDK action video_selfie_best is tagged video_selfie_oneshot"
        }
        "video_selfie_zoom_in" | "video_selfie_zoom_out" => "; this tag is obsolete",
        _ => "",
    };
    Err(ApiError::value(format!(
        "media:tags[{key:?}] has unknown tag {tag:?}{hint}"
    )))
}

/// `media:meta_data`: optional; keys name file parts, values are objects.
fn check_media_meta(
    payload: &Map<String, Value>,
    files: &[(&Part<'_>, MediaType)],
) -> Result<Map<String, Value>, ApiError> {
    let meta = match payload.get("media:meta_data") {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(ApiError::kind(
                "payload media:meta_data must be an object mapping file keys to objects",
            ))
        }
    };
    check_keys_are_files("media:meta_data", meta, files)?;
    if let Some((key, _)) = meta.iter().find(|(_, v)| !v.is_object()) {
        return Err(ApiError::kind(format!(
            "media:meta_data[{key:?}] must be an object"
        )));
    }
    Ok(meta.clone())
}

fn check_keys_are_files(
    what: &str,
    map: &Map<String, Value>,
    files: &[(&Part<'_>, MediaType)],
) -> Result<(), ApiError> {
    for key in map.keys() {
        if !files.iter().any(|(p, _)| &p.name == key) {
            let names: Vec<&str> = files.iter().map(|(p, _)| p.name.as_str()).collect();
            return Err(ApiError::value(format!(
                "{what} names {key:?}, but no file part has that name (file parts: {names:?})"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::capture::testdata::{sample_capture_json, sample_frames};
    use crate::capture::{prepare_frames_upload, TransformOptions};
    use crate::config::BestFrame;

    #[test]
    fn read_upload_reads_the_proxys_upload_and_says_why_it_refuses_one() {
        let meta = BTreeMap::new();
        let opts = TransformOptions {
            file_key: "video1",
            max_frames: 8,
            max_frame_bytes: 64 * 1024,
            best_frame: BestFrame::None,
            refuse_unchecked_images: false,
            request_id: "r1",
            folder_meta_data: &meta,
            boundary: None,
        };
        let body = sample_capture_json(3, false, "video_selfie_blank");
        let p = prepare_frames_upload(&body, &opts).unwrap();
        let rec = read_upload(
            &p.upload.content_type,
            &p.upload.to_vec(),
            &SimConfig::default(),
        );
        assert!(rec.accepted(), "{:?}", rec.error);
        let frames: Vec<Vec<u8>> = rec.zip_entries.iter().map(|(_, b)| b.clone()).collect();
        assert_eq!(frames, sample_frames(3));
        assert_eq!(rec.payload.unwrap()["folder:meta_data"]["request_id"], "r1");

        let rec = read_upload(
            "multipart/form-data; boundary=b",
            b"--b--",
            &SimConfig::default(),
        );
        assert!(!rec.accepted());
        assert_eq!(rec.status, 400);
        assert!(rec.error.unwrap().contains("payload"));
    }
}
