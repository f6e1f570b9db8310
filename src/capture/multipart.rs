//! Writes the `multipart/form-data` body (RFC 7578) of `POST /api/folders/`: the media part (the
//! frame ZIP, or the photo of a document action), the `payload` JSON part and, optionally, the
//! best frame.
//!
//! Hand-written because the body is three fixed parts and the media already sits in one buffer:
//! the result is `[head, media, tail]`, so the ZIP is never copied again, and its exact length is
//! known for `Content-Length` (whether Oz accepts chunked uploads is unknown, docs/oz-api.md §8).
//! The `payload` JSON follows docs/oz-api.md §2.3 and its example (§2.6):
//! `media:tags` and `media:meta_data` keyed by file key, `additional_info` forwarded verbatim.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::action::BEST_FRAME_TAGS;
use super::data_url::ImageKind;
use crate::oz::upload::UploadBody;

// Defined by config, which refuses them as `file_key` and `folder_meta_data` keys; static
// entries with a reserved name are skipped here all the same.
pub use crate::config::{BEST_FRAME_KEY, RESERVED_FOLDER_KEYS};

/// File name of the ZIP part; Oz picks the media type from the part's type and name (§2.2).
pub const ZIP_FILENAME: &str = "capture.zip";
/// File name of a document photo, before its extension (`capture.jpg`, `capture.png`).
pub const PHOTO_FILENAME_STEM: &str = "capture";

/// Everything the upload says about the capture, besides the ZIP bytes.
#[derive(Debug, Clone, Copy)]
pub struct FolderUpload<'a> {
    /// Multipart key of the ZIP part (`capture.file_key`).
    pub file_key: &'a str,
    /// `media:tags` of the media part (see [`super::action::map_action`]).
    pub tags: &'a [&'a str],
    /// The client's `additional_info` JSON value, written as is.
    pub additional_info: &'a RawValue,
    /// The request id, in `folder:meta_data.request_id`, so the folder can be found again.
    pub request_id: &'a str,
    /// Whether the capture came in the virtual-camera shape.
    pub virtual_camera: bool,
    /// Static `folder:meta_data` entries from the config, after the two above.
    pub folder_meta_data: &'a BTreeMap<String, String>,
    /// The decoded best frame to send as [`BEST_FRAME_KEY`], if the route asks for one.
    pub best_frame: Option<(ImageKind, &'a [u8])>,
}

/// The media part: the file Oz stores and analyses.
#[derive(Debug, Clone)]
pub struct MediaFile {
    /// `filename` of the part: `capture.zip`, or `capture.jpg` / `capture.png` for a photo.
    pub filename: String,
    /// The part's `Content-Type`, from which Oz decides the media type (docs/oz-api.md §2.2).
    pub content_type: &'static str,
    /// The file.
    pub bytes: Bytes,
}

impl MediaFile {
    /// A frame ZIP (a shots set).
    pub fn zip(bytes: Bytes) -> MediaFile {
        MediaFile {
            filename: ZIP_FILENAME.to_owned(),
            content_type: "application/zip",
            bytes,
        }
    }

    /// A single photo of `kind`.
    pub fn photo(kind: ImageKind, bytes: Bytes) -> MediaFile {
        MediaFile {
            filename: format!("{PHOTO_FILENAME_STEM}.{}", kind.extension()),
            content_type: kind.media_type(),
            bytes,
        }
    }
}

/// A fresh boundary: a fixed prefix and a random UUID v4, so no client can predict it and put
/// it inside a frame (RFC 2046 §5.1.1 allows 70 characters; this is 49).
pub fn random_boundary() -> String {
    format!("oz-capture-proxy-{}", uuid::Uuid::new_v4().simple())
}

/// Whether `b` is a valid RFC 2046 §5.1.1 boundary (1–70 `bchars`, not ending in a space).
pub fn is_valid_boundary(b: &str) -> bool {
    let bchar = |c: u8| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c);
    (1..=70).contains(&b.len()) && !b.ends_with(' ') && b.bytes().all(bchar)
}

/// The `payload` part: `media:tags`, `media:meta_data` and `folder:meta_data`.
///
/// Key order is fixed (as written here, then the static entries in `BTreeMap` order) so the same
/// capture always gives the same bytes.
pub fn payload_json(upload: &FolderUpload<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + upload.additional_info.get().len());
    out.extend_from_slice(b"{\"media:tags\":{");
    json_str(&mut out, upload.file_key);
    out.push(b':');
    json_str_array(&mut out, upload.tags);
    if upload.best_frame.is_some() {
        out.push(b',');
        json_str(&mut out, BEST_FRAME_KEY);
        out.push(b':');
        json_str_array(&mut out, BEST_FRAME_TAGS);
    }
    out.extend_from_slice(b"},\"media:meta_data\":{");
    json_str(&mut out, upload.file_key);
    out.extend_from_slice(b":{\"additional_info\":");
    out.extend_from_slice(upload.additional_info.get().as_bytes());
    out.extend_from_slice(b"}},\"folder:meta_data\":{\"request_id\":");
    json_str(&mut out, upload.request_id);
    out.extend_from_slice(b",\"virtual_camera\":");
    out.extend_from_slice(if upload.virtual_camera {
        b"true"
    } else {
        b"false"
    });
    for (k, v) in upload.folder_meta_data {
        if RESERVED_FOLDER_KEYS.contains(&k.as_str()) {
            continue;
        }
        out.push(b',');
        json_str(&mut out, k);
        out.push(b':');
        json_str(&mut out, v);
    }
    out.extend_from_slice(b"}}");
    out
}

/// The whole upload body: `[head, media, tail]` with `multipart/form-data; boundary=…`.
///
/// Parts, in order: `{file_key}` (the media file), `payload` (JSON), then the best frame if any.
/// `boundary` must satisfy [`is_valid_boundary`].
pub fn build_multipart(upload: &FolderUpload<'_>, media: MediaFile, boundary: &str) -> UploadBody {
    debug_assert!(is_valid_boundary(boundary), "invalid multipart boundary");
    let mut head = Vec::with_capacity(160);
    part_header(
        &mut head,
        boundary,
        upload.file_key,
        Some(&media.filename),
        media.content_type,
    );

    let payload = payload_json(upload);
    let best_len = upload.best_frame.map_or(0, |(_, b)| b.len() + 200);
    let mut tail = Vec::with_capacity(payload.len() + best_len + 200);
    // The CRLF before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).
    tail.extend_from_slice(b"\r\n");
    part_header(&mut tail, boundary, "payload", None, "application/json");
    tail.extend_from_slice(&payload);
    if let Some((kind, bytes)) = upload.best_frame {
        tail.extend_from_slice(b"\r\n");
        let filename = format!("best_frame.{}", kind.extension());
        part_header(
            &mut tail,
            boundary,
            BEST_FRAME_KEY,
            Some(&filename),
            kind.media_type(),
        );
        tail.extend_from_slice(bytes);
    }
    tail.extend_from_slice(b"\r\n--");
    tail.extend_from_slice(boundary.as_bytes());
    tail.extend_from_slice(b"--\r\n");

    UploadBody {
        content_type: format!("multipart/form-data; boundary={boundary}"),
        chunks: vec![Bytes::from(head), media.bytes, Bytes::from(tail)],
    }
}

/// `--boundary`, `Content-Disposition` and `Content-Type`, then the blank line.
fn part_header(
    out: &mut Vec<u8>,
    boundary: &str,
    name: &str,
    filename: Option<&str>,
    content_type: &str,
) {
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
    out.extend_from_slice(quoted(name).as_bytes());
    out.push(b'"');
    if let Some(f) = filename {
        out.extend_from_slice(b"; filename=\"");
        out.extend_from_slice(quoted(f).as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b"\r\nContent-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// Escapes a name for a quoted `Content-Disposition` parameter as browsers do (HTML form
/// submission, which RFC 7578 §4.2 defers to): `"` → `%22`, CR → `%0D`, LF → `%0A`. Names
/// here come from the config, which already restricts them; this keeps the framing safe anyway.
fn quoted(s: &str) -> Cow<'_, str> {
    if !s.contains(['"', '\r', '\n']) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.replace('"', "%22")
            .replace('\r', "%0D")
            .replace('\n', "%0A"),
    )
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing a JSON string to a Vec cannot fail");
}

fn json_str_array(out: &mut Vec<u8>, items: &[&str]) {
    out.push(b'[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, s);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::testdata::{sample_jpeg, sample_png};
    use http_body_util::{BodyDataStream, Full};

    const BOUNDARY: &str = "test-boundary-1234";

    fn raw(json: &str) -> &RawValue {
        serde_json::from_str(json).expect("valid raw JSON")
    }

    fn upload<'a>(
        info: &'a RawValue,
        meta: &'a BTreeMap<String, String>,
        best: Option<(ImageKind, &'a [u8])>,
    ) -> FolderUpload<'a> {
        FolderUpload {
            file_key: "video1",
            tags: &["video_selfie", "video_selfie_blank", "orientation_portrait"],
            additional_info: info,
            request_id: "req-42",
            virtual_camera: false,
            folder_meta_data: meta,
            best_frame: best,
        }
    }

    #[test]
    fn golden_body_without_best_frame() {
        let info = raw(r#""{\"sdk\":\"web\/1.9\"}""#);
        let meta = BTreeMap::from([
            ("tenant".to_owned(), "acme".to_owned()),
            ("env".to_owned(), "prod \"eu\"".to_owned()),
        ]);
        let zip = Bytes::from_static(b"PK\x03\x04fake-zip");
        let body = build_multipart(
            &upload(info, &meta, None),
            MediaFile::zip(zip.clone()),
            BOUNDARY,
        );

        assert_eq!(
            body.content_type,
            "multipart/form-data; boundary=test-boundary-1234"
        );
        assert_eq!(body.chunks.len(), 3);
        assert_eq!(
            body.chunks[0],
            "--test-boundary-1234\r\n\
             Content-Disposition: form-data; name=\"video1\"; filename=\"capture.zip\"\r\n\
             Content-Type: application/zip\r\n\
             \r\n"
        );
        // The ZIP chunk is the caller's buffer, not a copy.
        assert_eq!(body.chunks[1].as_ptr(), zip.as_ptr());
        assert_eq!(
            std::str::from_utf8(&body.chunks[2]).expect("text"),
            concat!(
                "\r\n--test-boundary-1234\r\n",
                "Content-Disposition: form-data; name=\"payload\"\r\n",
                "Content-Type: application/json\r\n",
                "\r\n",
                r#"{"media:tags":{"video1":["video_selfie","video_selfie_blank","orientation_portrait"]},"#,
                r#""media:meta_data":{"video1":{"additional_info":"{\"sdk\":\"web\/1.9\"}"}},"#,
                r#""folder:meta_data":{"request_id":"req-42","virtual_camera":false,"env":"prod \"eu\"","tenant":"acme"}}"#,
                "\r\n--test-boundary-1234--\r\n",
            )
        );
        let total: usize = body.chunks.iter().map(Bytes::len).sum();
        assert_eq!(body.content_length(), total as u64);
        assert_eq!(body.to_vec().len(), total);
    }

    #[test]
    fn golden_best_frame_part() {
        let info = raw(r#""i""#);
        let meta = BTreeMap::new();
        let png = sample_png(1);
        let mut u = upload(info, &meta, Some((ImageKind::Png, &png)));
        u.virtual_camera = true;
        let body = build_multipart(&u, MediaFile::zip(Bytes::from_static(b"zip")), BOUNDARY);
        let tail = &body.chunks[2];
        let payload = concat!(
            r#"{"media:tags":{"video1":["video_selfie","video_selfie_blank","orientation_portrait"],"#,
            r#""photo_selfie1":["photo_selfie"]},"media:meta_data":{"video1":{"additional_info":"i"}},"#,
            r#""folder:meta_data":{"request_id":"req-42","virtual_camera":true}}"#,
        );
        let mut want = format!(
            concat!(
                "\r\n--test-boundary-1234\r\n",
                "Content-Disposition: form-data; name=\"payload\"\r\n",
                "Content-Type: application/json\r\n\r\n",
                "{}\r\n--test-boundary-1234\r\n",
                "Content-Disposition: form-data; name=\"photo_selfie1\"; filename=\"best_frame.png\"\r\n",
                "Content-Type: image/png\r\n\r\n",
            ),
            payload
        )
        .into_bytes();
        want.extend_from_slice(&png);
        want.extend_from_slice(b"\r\n--test-boundary-1234--\r\n");
        assert_eq!(&tail[..], &want[..]);
    }

    #[test]
    fn photo_media_part_has_the_image_type_and_name() {
        let info = raw(r#""i""#);
        let meta = BTreeMap::new();
        let mut u = upload(info, &meta, None);
        u.tags = &["photo_id", "photo_id_back"];
        let png = Bytes::from(sample_png(3));
        let body = build_multipart(&u, MediaFile::photo(ImageKind::Png, png.clone()), BOUNDARY);
        assert_eq!(
            body.chunks[0],
            "--test-boundary-1234\r\n\
             Content-Disposition: form-data; name=\"video1\"; filename=\"capture.png\"\r\n\
             Content-Type: image/png\r\n\
             \r\n"
        );
        assert_eq!(body.chunks[1], png);
        let tail = String::from_utf8_lossy(&body.chunks[2]).into_owned();
        assert!(tail.contains(r#"{"media:tags":{"video1":["photo_id","photo_id_back"]}"#));
    }

    #[test]
    fn reserved_folder_keys_cannot_be_overridden() {
        let info = raw(r#""i""#);
        let meta = BTreeMap::from([
            ("request_id".to_owned(), "forged".to_owned()),
            ("virtual_camera".to_owned(), "forged".to_owned()),
        ]);
        let json = payload_json(&upload(info, &meta, None));
        let v: serde_json::Value = serde_json::from_slice(&json).expect("valid JSON");
        assert_eq!(v["folder:meta_data"]["request_id"], "req-42");
        assert_eq!(v["folder:meta_data"]["virtual_camera"], false);
        assert!(!String::from_utf8_lossy(&json).contains("forged"));
    }

    #[test]
    fn names_cannot_break_the_framing() {
        assert_eq!(quoted("video1"), "video1");
        assert_eq!(quoted("a\"b\r\nc"), "a%22b%0D%0Ac");
    }

    #[test]
    fn random_boundaries_are_valid_and_differ() {
        let (a, b) = (random_boundary(), random_boundary());
        assert!(is_valid_boundary(&a) && is_valid_boundary(&b));
        assert_ne!(a, b);
        assert!(!is_valid_boundary(""));
        assert!(!is_valid_boundary(&"x".repeat(71)));
        assert!(!is_valid_boundary("ends with space "));
        assert!(!is_valid_boundary("quote\"s"));
    }

    /// An independent parser (multer, as a server would use) reads back every part.
    #[tokio::test]
    async fn multer_reads_the_parts_back() {
        let info = raw(r#""{\"k\":\"v\"}""#);
        let meta = BTreeMap::new();
        let jpeg = sample_jpeg(4);
        let zip = Bytes::from(vec![0x50, 0x4B, 0x03, 0x04, 1, 2, 3]);
        let boundary = random_boundary();
        let body = build_multipart(
            &upload(info, &meta, Some((ImageKind::Jpeg, &jpeg))),
            MediaFile::zip(zip.clone()),
            &boundary,
        );
        let stream = BodyDataStream::new(Full::new(Bytes::from(body.to_vec())));
        let mut mp = multer::Multipart::new(stream, boundary);
        let mut parts = Vec::new();
        while let Some(field) = mp.next_field().await.expect("well-formed") {
            let name = field.name().map(str::to_owned);
            let file = field.file_name().map(str::to_owned);
            let ct = field.content_type().map(|m| m.to_string());
            let data = field.bytes().await.expect("part body");
            parts.push((name, file, ct, data));
        }
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].0.as_deref(), Some("video1"));
        assert_eq!(parts[0].1.as_deref(), Some("capture.zip"));
        assert_eq!(parts[0].2.as_deref(), Some("application/zip"));
        assert_eq!(parts[0].3, zip);
        assert_eq!(parts[1].0.as_deref(), Some("payload"));
        assert_eq!(parts[1].2.as_deref(), Some("application/json"));
        let payload: serde_json::Value = serde_json::from_slice(&parts[1].3).expect("JSON");
        assert_eq!(
            payload["media:meta_data"]["video1"]["additional_info"],
            "{\"k\":\"v\"}"
        );
        assert_eq!(payload["media:tags"]["photo_selfie1"][0], "photo_selfie");
        assert_eq!(parts[2].0.as_deref(), Some("photo_selfie1"));
        assert_eq!(parts[2].1.as_deref(), Some("best_frame.jpg"));
        assert_eq!(parts[2].2.as_deref(), Some("image/jpeg"));
        assert_eq!(parts[2].3, jpeg);
    }
}
