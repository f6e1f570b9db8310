//! What the simulator saw: each upload it processed and each Oz API call it answered, plus the
//! JSON summaries `/_sim/uploads` and `/_sim/calls` serve.
//!
//! Uploads follow the shape of docs/oz-api.md §2.2–2.3 (file parts plus a `payload` part). The
//! summaries leave out frame bytes and every `additional_info` value: those are biometric and
//! client-environment data (docs/oz-api.md §2.6, §7) and must not leak through an introspection
//! endpoint or a debug print.

use std::fmt;
use std::time::Duration;

use serde_json::{json, Map, Value};

/// One part of a multipart upload, as received.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedPart {
    /// The form field name (the "file key" for media).
    pub name: String,
    /// The `filename` parameter, for file parts.
    pub filename: Option<String>,
    /// The part's `Content-Type`, as sent.
    pub content_type: Option<String>,
    /// The part's content.
    pub bytes: Vec<u8>,
    /// For a ZIP part: the entry names, in archive order.
    pub zip_entry_names: Vec<String>,
}

/// One request on `POST /api/folders/` or `POST /api/instant/folders/` that got past fault
/// injection and authentication, accepted or refused.
#[derive(Clone, PartialEq)]
pub struct ReceivedUpload {
    /// The folder id given out, or an empty string when the upload was refused.
    pub folder_id: String,
    /// `"folders"` or `"instant_folders"`, the same names fault injection uses.
    pub endpoint: String,
    /// The request path as sent (with or without the trailing slash).
    pub path: String,
    /// The HTTP status the simulator answered.
    pub status: u16,
    /// The `error_message` of a refusal.
    pub error: Option<String>,
    /// The request `Content-Type`, as sent (empty if absent).
    pub content_type: String,
    /// The request `Content-Length`, if one was sent.
    pub content_length: Option<u64>,
    /// The multipart parts, in body order (empty for a container or a malformed body).
    pub parts: Vec<ReceivedPart>,
    /// The `payload` part, parsed.
    pub payload: Option<Value>,
    /// The entries of every ZIP part: part order, then archive order.
    pub zip_entries: Vec<(String, Vec<u8>)>,
    /// An OzCapsula container body (`application/octet-stream`), stored unchanged.
    pub container: Option<Vec<u8>>,
    /// True when the request had no `Content-Length` (chunked or, on HTTP/2, unframed); the
    /// simulator refuses those with 411, since the proxy promises a length.
    pub chunked: bool,
}

/// One answered Oz API call (introspection calls under `/_sim/` are not recorded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// Request method.
    pub method: String,
    /// Request path, without the query.
    pub path: String,
    /// The endpoint name fault injection uses, or `None` for an unknown route.
    pub endpoint: Option<String>,
    /// Status answered.
    pub status: u16,
    /// Latency the simulator injected before answering.
    pub delayed: Duration,
    /// The W3C `traceparent` the caller sent (Oz would join the caller's trace with it).
    pub traceparent: Option<String>,
}

// === impl ReceivedUpload ===

impl ReceivedUpload {
    /// An empty record for a request on `endpoint` at `path`.
    pub(crate) fn new(endpoint: &str, path: &str) -> Self {
        ReceivedUpload {
            folder_id: String::new(),
            endpoint: endpoint.to_owned(),
            path: path.to_owned(),
            status: 0,
            error: None,
            content_type: String::new(),
            content_length: None,
            parts: Vec::new(),
            payload: None,
            zip_entries: Vec::new(),
            container: None,
            chunked: false,
        }
    }

    /// True when the simulator accepted the upload and created a folder.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The part called `name`.
    pub fn part(&self, name: &str) -> Option<&ReceivedPart> {
        self.parts.iter().find(|p| p.name == name)
    }

    /// A summary safe to show anyone: names, types, sizes, tags and folder metadata, but no
    /// frame bytes and no `additional_info`. The media metadata is reduced to its keys.
    pub fn summary(&self) -> Value {
        let parts: Vec<Value> = self
            .parts
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "filename": p.filename,
                    "content_type": p.content_type,
                    "size": p.bytes.len(),
                    "zip_entries": p.zip_entry_names,
                })
            })
            .collect();
        let payload = self.payload.as_ref();
        let media_meta_keys = payload
            .and_then(|p| p.get("media:meta_data"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let keys: Vec<&String> = v
                            .as_object()
                            .map(|o| o.keys().collect())
                            .unwrap_or_default();
                        (k.clone(), json!(keys))
                    })
                    .collect::<Map<_, _>>()
            });
        json!({
            "folder_id": (!self.folder_id.is_empty()).then_some(&self.folder_id),
            "endpoint": self.endpoint,
            "path": self.path,
            "status": self.status,
            "error": self.error,
            "content_type": self.content_type,
            "content_length": self.content_length,
            "chunked": self.chunked,
            "parts": parts,
            "container_size": self.container.as_ref().map(Vec::len),
            "payload_keys": payload.and_then(Value::as_object).map(|o| o.keys().collect::<Vec<_>>()),
            "media_tags": payload.and_then(|p| p.get("media:tags")).map(redact),
            "media_meta_keys": media_meta_keys,
            "folder_meta": payload.and_then(|p| p.get("folder:meta_data")).map(redact),
        })
    }
}

impl ReceivedUpload {
    /// Everything the upload carried, for the `demo` page on loopback only
    /// (`GET /_sim/uploads/{folder_id}`): each ZIP entry with its image as a data URL, the tags,
    /// folder metadata and each file's `additional_info`, unredacted. Never logged.
    pub fn detail(&self) -> Value {
        use base64::Engine as _;
        let entries: Vec<Value> = self
            .zip_entries
            .iter()
            .map(|(name, bytes)| {
                // The media type from the bytes, not the name: the page shows what Oz would decode.
                let media_type = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
                    Some("image/jpeg")
                } else if bytes.starts_with(b"\x89PNG") {
                    Some("image/png")
                } else {
                    None
                };
                let data_url = media_type.map(|t| {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                    format!("data:{t};base64,{b64}")
                });
                json!({ "name": name, "size": bytes.len(), "data_url": data_url })
            })
            .collect();
        let payload = self.payload.as_ref();
        let additional_info: Map<String, Value> = payload
            .and_then(|p| p.get("media:meta_data"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(key, meta)| {
                        meta.get("additional_info")
                            .map(|info| (key.clone(), info.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "folder_id": (!self.folder_id.is_empty()).then_some(&self.folder_id),
            "endpoint": self.endpoint,
            "status": self.status,
            "error": self.error,
            "content_type": self.content_type,
            "parts": self.parts.iter().map(|p| json!({
                "name": p.name,
                "filename": p.filename,
                "content_type": p.content_type,
                "size": p.bytes.len(),
            })).collect::<Vec<_>>(),
            "zip_entries": entries,
            "container_size": self.container.as_ref().map(Vec::len),
            "media_tags": payload.and_then(|p| p.get("media:tags")),
            "folder_meta": payload.and_then(|p| p.get("folder:meta_data")),
            "additional_info": additional_info,
        })
    }
}

/// Shows sizes and redacted metadata instead of bytes, so a failed assertion that prints an
/// upload does not dump frames or `additional_info` into a CI log.
impl fmt::Debug for ReceivedUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceivedUpload")
            .field("folder_id", &self.folder_id)
            .field("endpoint", &self.endpoint)
            .field("path", &self.path)
            .field("status", &self.status)
            .field("error", &self.error)
            .field("content_type", &self.content_type)
            .field("content_length", &self.content_length)
            .field("parts", &self.parts)
            .field("payload", &self.payload.as_ref().map(redact))
            .field(
                "zip_entries",
                &self
                    .zip_entries
                    .iter()
                    .map(|(n, b)| format!("{n} ({} bytes)", b.len()))
                    .collect::<Vec<_>>(),
            )
            .field("container", &self.container.as_ref().map(Vec::len))
            .field("chunked", &self.chunked)
            .finish()
    }
}

impl fmt::Debug for ReceivedPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = format!("{} bytes", self.bytes.len());
        let mut d = f.debug_struct("ReceivedPart");
        d.field("name", &self.name)
            .field("filename", &self.filename)
            .field("content_type", &self.content_type);
        // The payload is JSON with additional_info inside, so even its bytes stay hidden.
        d.field("bytes", &bytes)
            .field("zip_entry_names", &self.zip_entry_names)
            .finish()
    }
}

// === impl CallRecord ===

impl CallRecord {
    /// The record as JSON for `/_sim/calls`.
    pub fn summary(&self) -> Value {
        json!({
            "method": self.method,
            "path": self.path,
            "endpoint": self.endpoint,
            "status": self.status,
            "delayed_ms": self.delayed.as_millis() as u64,
            "traceparent": self.traceparent,
        })
    }
}

/// A copy of `value` with every `additional_info` member replaced by a size note.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    if k == "additional_info" {
                        let len = v.as_str().map_or_else(|| v.to_string().len(), str::len);
                        (k.clone(), json!(format!("[redacted, {len} bytes]")))
                    } else {
                        (k.clone(), redact(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_debug_hide_additional_info_and_bytes() {
        let mut u = ReceivedUpload::new("folders", "/api/folders/");
        u.payload = Some(json!({
            "media:tags": {"video1": ["video_selfie"]},
            "media:meta_data": {"video1": {"additional_info": "SECRET-ENV"}},
            "folder:meta_data": {"request_id": "r1", "nested": {"additional_info": "SECRET-2"}},
        }));
        u.parts.push(ReceivedPart {
            name: "payload".into(),
            filename: None,
            content_type: None,
            bytes: b"SECRET-ENV".to_vec(),
            zip_entry_names: vec![],
        });
        let shown = format!("{} {:?}", u.summary(), u);
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("request_id") && shown.contains("additional_info"));
    }

    #[test]
    fn detail_shows_entries_as_data_urls_and_additional_info() {
        let mut u = ReceivedUpload::new("folders", "/api/folders/");
        u.folder_id = "f1".into();
        u.zip_entries = vec![
            ("0.jpg".into(), vec![0xFF, 0xD8, 0xFF, 0xE0]),
            ("notes.txt".into(), b"hi".to_vec()),
        ];
        u.payload = Some(json!({
            "media:tags": {"video1": ["video_selfie"]},
            "media:meta_data": {"video1": {"additional_info": "ENV"}},
        }));
        let d = u.detail();
        assert_eq!(
            d["zip_entries"][0]["data_url"],
            "data:image/jpeg;base64,/9j/4A=="
        );
        assert_eq!(d["zip_entries"][0]["size"], 4);
        assert!(d["zip_entries"][1]["data_url"].is_null());
        assert_eq!(d["additional_info"]["video1"], "ENV");
        assert_eq!(d["media_tags"]["video1"][0], "video_selfie");
        assert_eq!(d["folder_id"], "f1");
    }
}
