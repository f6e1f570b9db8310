//! The frames-mode capture transform: an `on_capture_complete` JSON body in, a ready Oz folder
//! upload out.
//!
//! Synchronous and CPU-bound (parse, base64, ZIP): the handler runs it on a blocking thread.
//! Cheap checks come first, so a bad capture costs as little as possible: the JSON shape and frame
//! count, then the action, then the best frame if the route sends one, and only then the frames.
//!
//! The action decides the media (`action::map_action`): the video actions send every frame in a
//! ZIP; the two document actions (`photo_id_front`, `photo_id_back`) send their one frame as a
//! photo, and no best frame, since that would be the same document tagged as a selfie.
//!
//! A best frame the upload leaves out (`best_frame_png` under `best_frame: jpeg`, both under
//! `none` or with a document action) is never checked by Oz, yet a backend that gets the body as
//! sent may keep it as the verified selfie. The transform says where each such image sits in
//! the body ([`UncheckedImage`]), refuses the capture when asked to
//! (`capture.unchecked_images: refuse`), and [`strip_images`] writes the body without them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::action::{map_action, MediaKind};
use super::body::{parse_capture, Capture};
use super::data_url::{DataUrlError, ImageKind};
use super::digest::FrameDigests;
use super::frame::{Frame, FrameDecoder};
use super::multipart::{
    build_multipart, is_valid_boundary, random_boundary, FolderUpload, MediaFile,
};
use super::zip::{build_zip, frame_error};
use super::Error;
use crate::config::BestFrame;
use crate::oz::upload::UploadBody;

/// The per-route settings and per-request values the transform needs.
#[derive(Debug, Clone, Copy)]
pub struct TransformOptions<'a> {
    /// Multipart key of the ZIP part (`capture.file_key`).
    pub file_key: &'a str,
    /// Most frames accepted (`capture.max_frames`).
    pub max_frames: usize,
    /// Largest decoded frame in bytes (`capture.max_frame_bytes`); the best frame too.
    pub max_frame_bytes: usize,
    /// Whether to add the best frame as a `photo_selfie` part, and which one.
    pub best_frame: BestFrame,
    /// Refuse a capture that carries a best frame the upload leaves out: set when the route
    /// forwards the body as it came and says `capture.unchecked_images: refuse`.
    pub refuse_unchecked_images: bool,
    /// The request id, written to `folder:meta_data.request_id`.
    pub request_id: &'a str,
    /// Static `folder:meta_data` entries (`capture.folder_meta_data`).
    pub folder_meta_data: &'a BTreeMap<String, String>,
    /// A fixed multipart boundary (golden tests); `None` for a random one.
    pub boundary: Option<&'a str>,
}

/// A capture turned into an upload, plus what the handler reports about it.
#[derive(Debug, Clone)]
pub struct PreparedUpload {
    /// The `POST /api/folders/` body and its content type.
    pub upload: UploadBody,
    /// The capture's Web SDK action code (known to map to tags), for `X-Oz-Action`.
    pub action: String,
    /// Whether the body had the virtual-camera shape, for `X-Oz-Virtual-Camera`.
    pub virtual_camera: bool,
    /// Frames uploaded (in the ZIP, or the one photo).
    pub frame_count: usize,
    /// Size of the media part in bytes (the ZIP, or the photo).
    pub media_len: usize,
    /// The best frames in the body that the upload leaves out, in body order.
    pub unchecked_images: Vec<UncheckedImage>,
    /// The replay guard's fingerprints of the frames, in order (`capture::digest`).
    pub frame_digests: Vec<[u8; 32]>,
    /// When parsing began, by the wall clock (for the trace).
    pub started_at: std::time::SystemTime,
    /// Time spent parsing the body and checking its action and best frames
    /// (`Server-Timing: parse`).
    pub parse_time: Duration,
    /// Time spent decoding the frames and building the ZIP and the multipart body
    /// (`Server-Timing: zip`).
    pub zip_time: Duration,
}

/// A non-null best frame that the upload leaves out, so Oz never checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncheckedImage {
    /// Its field path (`best_frame_png`, `from_virtual_camera.best_frame`).
    pub field: &'static str,
    /// Where its value, the JSON string literal with its quotes, sits in the body.
    pub literal: Range<usize>,
}

/// Parses, checks and decodes a frames-mode capture body and builds its Oz upload.
///
/// Every failure is a [`capture::Error`](Error) that names the field or frame; none quotes the
/// client's data. `Error::Internal` means a bug (or an invalid fixed `boundary`).
pub fn prepare_frames_upload(
    body: &[u8],
    opts: &TransformOptions<'_>,
) -> Result<PreparedUpload, Error> {
    let boundary = match opts.boundary {
        Some(b) if is_valid_boundary(b) => Cow::Borrowed(b),
        Some(_) => {
            tracing::error!("fixed multipart boundary is not a valid RFC 2046 boundary");
            return Err(Error::Internal);
        }
        None => Cow::Owned(random_boundary()),
    };

    let started_at = std::time::SystemTime::now();
    let started = Instant::now();
    let capture = parse_capture(body, opts.max_frames)?;
    let mapping = map_action(&capture.action)?;
    let unchecked_images = unchecked_images(body, &capture, mapping.media, opts.best_frame);
    if let Some(image) = unchecked_images
        .first()
        .filter(|_| opts.refuse_unchecked_images)
    {
        return Err(Error::BadField {
            field: image.field.to_owned(),
            reason: format!(
                "is not sent to Oz {}, so the backend would get an image Oz never checked \
                 (capture.unchecked_images: refuse)",
                match mapping.media {
                    MediaKind::ShotsSet => match opts.best_frame {
                        BestFrame::None => "under this route's `capture.best_frame: none`",
                        BestFrame::Jpeg => "under this route's `capture.best_frame: jpeg`",
                        BestFrame::Png => "under this route's `capture.best_frame: png`",
                    },
                    MediaKind::Photo => "with a document action",
                }
            ),
        });
    }
    let parsed = Instant::now();
    let mut decoder = FrameDecoder::new();
    let mut digest = FrameDigests::default();
    let (media, best_frame) = match mapping.media {
        MediaKind::ShotsSet => {
            let best_frame = decode_best_frame(&capture, opts, &mut decoder)?;
            let zip = build_zip(
                &capture.frames,
                capture.frame_list_field(),
                &mut decoder,
                opts.max_frame_bytes,
                &mut digest,
            )?;
            (MediaFile::zip(Bytes::from(zip)), best_frame)
        }
        MediaKind::Photo => (
            decode_photo(&capture, opts, &mut decoder, &mut digest)?,
            None,
        ),
    };
    let media_len = media.bytes.len();

    let upload = build_multipart(
        &FolderUpload {
            file_key: opts.file_key,
            tags: mapping.tags,
            additional_info: capture.additional_info,
            request_id: opts.request_id,
            virtual_camera: capture.virtual_camera,
            folder_meta_data: opts.folder_meta_data,
            best_frame: best_frame.as_ref().map(|(k, b)| (*k, b.as_slice())),
        },
        media,
        &boundary,
    );
    let parse_time = parsed - started;
    let zip_time = parsed.elapsed();
    Ok(PreparedUpload {
        upload,
        action: capture.action.into_owned(),
        virtual_camera: capture.virtual_camera,
        frame_count: capture.frames.len(),
        media_len,
        unchecked_images,
        frame_digests: digest.finish(),
        started_at,
        parse_time,
        zip_time,
    })
}

/// The non-null best frames of `capture` that the upload leaves out: a document action sends
/// none, a video action the one `best_frame` names.
fn unchecked_images(
    body: &[u8],
    capture: &Capture<'_>,
    media: MediaKind,
    best_frame: BestFrame,
) -> Vec<UncheckedImage> {
    let sent = match media {
        MediaKind::ShotsSet => best_frame,
        MediaKind::Photo => BestFrame::None,
    };
    let mut images: Vec<UncheckedImage> = [
        (
            capture.best_frame.as_ref(),
            capture.best_frame_field(),
            BestFrame::Jpeg,
        ),
        (
            capture.best_frame_png.as_ref(),
            capture.best_frame_png_field(),
            BestFrame::Png,
        ),
    ]
    .into_iter()
    .filter(|&(_, _, kind)| kind != sent)
    .filter_map(|(frame, field, _)| {
        let literal = frame?.json_literal();
        // The parser borrows every frame from the body (`capture::body`).
        let start = (literal.as_ptr() as usize)
            .checked_sub(body.as_ptr() as usize)
            .filter(|start| start + literal.len() <= body.len())
            .expect("a frame's literal is a slice of the body");
        Some(UncheckedImage {
            field,
            literal: start..start + literal.len(),
        })
    })
    .collect();
    // The body may have them in either order.
    images.sort_by_key(|i| i.literal.start);
    images
}

/// `body` with the value of each of `images` (in body order) replaced by `null`: the one copy
/// of the body it takes is the only cost, and every other byte, the frames' escapes included,
/// stays as the client sent it. The key stays too: `null` is what the Web SDK sends for a best
/// frame it does not have, so the backend sees the shape it knows.
pub fn strip_images(body: &[u8], images: &[UncheckedImage]) -> Vec<u8> {
    let removed: usize = images.iter().map(|i| i.literal.len()).sum();
    let mut out = Vec::with_capacity(body.len() - removed + 4 * images.len());
    let mut copied = 0;
    for image in images {
        out.extend_from_slice(&body[copied..image.literal.start]);
        out.extend_from_slice(b"null");
        copied = image.literal.end;
    }
    out.extend_from_slice(&body[copied..]);
    out
}

/// Decodes the one frame of a document action into its photo. A document side is one still
/// image; which of several frames would be "the" photo is not documented (docs/oz-api.md §4.6), so
/// more than one is refused rather than guessed.
fn decode_photo(
    capture: &Capture<'_>,
    opts: &TransformOptions<'_>,
    decoder: &mut FrameDecoder,
    digest: &mut FrameDigests,
) -> Result<MediaFile, Error> {
    let field = capture.frame_list_field();
    let [frame] = capture.frames.as_slice() else {
        return Err(Error::BadField {
            field: field.to_owned(),
            reason: format!(
                "holds {} frames, but a document action (photo_id_front, photo_id_back) \
                 uploads exactly one photo",
                capture.frames.len()
            ),
        });
    };
    let mut bytes = Vec::new();
    let kind = decoder
        .decode_into(frame, opts.max_frame_bytes, &mut bytes)
        .map_err(|e| frame_error(e, field, 0, opts.max_frame_bytes))?;
    digest.frame(&bytes);
    Ok(MediaFile::photo(kind, Bytes::from(bytes)))
}

/// Decodes the best frame the route asks for; a missing or unusable one fails the capture,
/// since the route was configured to send it (virtual-camera protection, docs/oz-api.md §2.5).
fn decode_best_frame(
    capture: &Capture<'_>,
    opts: &TransformOptions<'_>,
    decoder: &mut FrameDecoder,
) -> Result<Option<(ImageKind, Vec<u8>)>, Error> {
    let (frame, field, want): (Option<&Frame<'_>>, _, _) = match opts.best_frame {
        BestFrame::None => return Ok(None),
        BestFrame::Jpeg => (
            capture.best_frame.as_ref(),
            capture.best_frame_field(),
            ImageKind::Jpeg,
        ),
        BestFrame::Png => (
            capture.best_frame_png.as_ref(),
            capture.best_frame_png_field(),
            ImageKind::Png,
        ),
    };
    let bad = |reason: String| Error::BadField {
        field: field.to_owned(),
        reason,
    };
    let frame = frame.ok_or_else(|| {
        bad("is missing or null, but this route sends the best frame (capture.best_frame)".into())
    })?;
    let mut bytes = Vec::new();
    let kind = decoder
        .decode_into(frame, opts.max_frame_bytes, &mut bytes)
        .map_err(|e| match e {
            DataUrlError::TooLarge => bad(format!(
                "exceeds the limit of {} bytes (capture.max_frame_bytes)",
                opts.max_frame_bytes
            )),
            DataUrlError::Invalid(reason) => bad(reason),
        })?;
    if kind != want {
        return Err(bad(format!(
            "must be a {} data URL, found {}",
            want.media_type(),
            kind.media_type()
        )));
    }
    Ok(Some((kind, bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::testdata::{
        data_url, sample_capture_json, sample_capture_json_escaped, sample_frames, sample_jpeg,
        sample_png, SampleCapture, SAMPLE_ADDITIONAL_INFO,
    };
    use http_body_util::{BodyDataStream, Full};
    use std::io::{Cursor, Read as _};

    const SECRET: &str = "SECRETMARKER";

    fn opts<'a>(meta: &'a BTreeMap<String, String>) -> TransformOptions<'a> {
        TransformOptions {
            file_key: "video1",
            max_frames: 300,
            max_frame_bytes: 1 << 20,
            best_frame: BestFrame::None,
            refuse_unchecked_images: false,
            request_id: "req-1",
            folder_meta_data: meta,
            boundary: Some("golden-boundary"),
        }
    }

    /// Splits the upload back into parts with multer, as a server would.
    async fn parts(p: &PreparedUpload) -> Vec<(String, Option<String>, Bytes)> {
        let boundary = p
            .upload
            .content_type
            .strip_prefix("multipart/form-data; boundary=")
            .expect("multipart content type")
            .to_owned();
        let stream = BodyDataStream::new(Full::new(Bytes::from(p.upload.to_vec())));
        let mut mp = multer::Multipart::new(stream, boundary);
        let mut out = Vec::new();
        while let Some(field) = mp.next_field().await.expect("well-formed") {
            let name = field.name().unwrap_or_default().to_owned();
            let ct = field.content_type().map(|m| m.to_string());
            out.push((name, ct, field.bytes().await.expect("part body")));
        }
        out
    }

    fn zip_entries(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut a = ::zip::ZipArchive::new(Cursor::new(zip)).expect("zip");
        (0..a.len())
            .map(|i| {
                let mut e = a.by_index(i).expect("entry");
                let mut data = Vec::new();
                e.read_to_end(&mut data).expect("read");
                (e.name().expect("utf-8").into_owned(), data)
            })
            .collect()
    }

    #[tokio::test]
    async fn both_shapes_become_the_same_upload_apart_from_the_flag() {
        let meta = BTreeMap::from([("tenant".to_owned(), "acme".to_owned())]);
        for vc in [false, true] {
            for body in [
                sample_capture_json(4, vc, "video_selfie_best"),
                sample_capture_json_escaped(4, vc, "video_selfie_best"),
            ] {
                let p = prepare_frames_upload(&body, &opts(&meta)).expect("valid capture");
                assert_eq!(p.action, "video_selfie_best");
                assert_eq!(p.virtual_camera, vc);
                assert_eq!(p.frame_count, 4);
                assert_eq!(p.media_len, p.upload.chunks[1].len());
                let parts = parts(&p).await;
                let names: Vec<&str> = parts.iter().map(|p| p.0.as_str()).collect();
                assert_eq!(names, ["video1", "payload"]);

                let entries = zip_entries(&parts[0].2);
                let want: Vec<(String, Vec<u8>)> = sample_frames(4)
                    .into_iter()
                    .enumerate()
                    .map(|(i, f)| (format!("{:06}.jpg", i + 1), f))
                    .collect();
                assert_eq!(entries, want);

                let payload: serde_json::Value =
                    serde_json::from_slice(&parts[1].2).expect("payload JSON");
                assert_eq!(
                    payload,
                    serde_json::json!({
                        "media:tags": {"video1": ["video_selfie", "video_selfie_oneshot", "orientation_portrait"]},
                        "media:meta_data": {"video1": {"additional_info": SAMPLE_ADDITIONAL_INFO}},
                        "folder:meta_data": {"request_id": "req-1", "virtual_camera": vc, "tenant": "acme"},
                    })
                );
            }
        }
    }

    /// The same capture written plainly, with PHP's `\/` escapes and with `\u002f` escapes gives
    /// the same upload, byte for byte: ZIP or photo, best frame and payload.
    #[test]
    fn escaped_bodies_give_the_same_upload_bytes() {
        let meta = BTreeMap::new();
        for (action, best_frame) in [
            ("video_selfie_best", BestFrame::Jpeg),
            ("video_selfie_blank", BestFrame::Png),
            ("photo_id_front", BestFrame::None),
        ] {
            for vc in [false, true] {
                let frames = if action == "photo_id_front" { 1 } else { 5 };
                let mut c = SampleCapture::new(frames, vc, action);
                // Without a `/`, so escaping leaves the forwarded text as it is.
                c.additional_info = Some("env".into());
                let plain = c.to_json();
                let slashes = String::from_utf8(plain.clone())
                    .expect("utf-8")
                    .replace('/', r"\/");
                let unicode = String::from_utf8(plain.clone())
                    .expect("utf-8")
                    .replace('/', r"\u002f");
                let o = TransformOptions {
                    best_frame,
                    ..opts(&meta)
                };
                let want = prepare_frames_upload(&plain, &o).expect("valid");
                for body in [slashes, unicode] {
                    assert!(body.contains(r"data:image\"));
                    let got = prepare_frames_upload(body.as_bytes(), &o).expect("valid");
                    assert!(got.upload.to_vec() == want.upload.to_vec(), "{action} {vc}");
                    assert_eq!(got.upload.content_type, want.upload.content_type);
                    assert_eq!(got.frame_count, frames);
                }
            }
        }
    }

    /// Escapes that are not text, or stand for characters a data URL cannot hold, fail the
    /// frame or best frame that has them, named by index or field.
    #[test]
    fn bad_escapes_name_the_frame() {
        let meta = BTreeMap::new();
        let o = TransformOptions {
            best_frame: BestFrame::Jpeg,
            ..opts(&meta)
        };
        let url = data_url("image/jpeg", &sample_jpeg(1));
        let escaped = |s: &str| s.replace('/', r"\/");
        let cases = [
            (
                format!(r"{}\uDFFF", escaped(&url)),
                "is not a valid JSON string",
            ),
            (
                format!(r"{}\n{}", escaped(&url[..30]), escaped(&url[31..])),
                "whitespace at offset 30",
            ),
            (
                format!(r"{}\u0025{}", escaped(&url[..30]), escaped(&url[31..])),
                "invalid character at offset 30",
            ),
            (
                format!(r"data:image\u002fgif;base64,{}", &url[23..]),
                "media type",
            ),
        ];
        for vc in [false, true] {
            for (frame, want) in &cases {
                let mut c = SampleCapture::new(3, vc, "video_selfie_blank");
                c.frames[1] = "FRAME".into();
                let body = String::from_utf8(c.to_json()).expect("utf-8");
                let body = body.replacen("FRAME", frame, 1);
                match prepare_frames_upload(body.as_bytes(), &o) {
                    Err(Error::BadFrame {
                        field,
                        index: 1,
                        reason,
                    }) => {
                        assert_eq!(field == "from_virtual_camera.frame_list", vc, "{field}");
                        assert!(reason.contains(want), "{reason} lacks {want}");
                    }
                    other => panic!("{want}: unexpected {other:?}"),
                }
                let mut c = SampleCapture::new(3, vc, "video_selfie_blank");
                c.best_frame = Some("BEST".into());
                let body = String::from_utf8(c.to_json()).expect("utf-8");
                let body = body.replacen("BEST", frame, 1);
                match prepare_frames_upload(body.as_bytes(), &o) {
                    Err(Error::BadField { field, reason }) => {
                        assert!(field.ends_with("best_frame"), "{field}");
                        assert!(reason.contains(want), "{reason} lacks {want}");
                    }
                    other => panic!("{want}: unexpected {other:?}"),
                }
            }
        }
    }

    #[test]
    fn additional_info_is_forwarded_byte_for_byte() {
        let meta = BTreeMap::new();
        let body = sample_capture_json_escaped(1, false, "video_selfie_blank");
        let p = prepare_frames_upload(&body, &opts(&meta)).expect("valid");
        let sent = serde_json::to_string(SAMPLE_ADDITIONAL_INFO)
            .expect("str")
            .replace('/', "\\/");
        let tail = String::from_utf8(p.upload.chunks[2].to_vec()).expect("utf-8");
        assert!(
            tail.contains(&format!(r#"{{"additional_info":{sent}}}"#)),
            "{tail}"
        );
    }

    #[test]
    fn golden_upload_with_fixed_boundary() {
        let meta = BTreeMap::new();
        let mut c = SampleCapture::new(2, false, "video_selfie_eyes");
        c.additional_info = Some("env".into());
        let p = prepare_frames_upload(&c.to_json(), &opts(&meta)).expect("valid");
        assert_eq!(
            p.upload.content_type,
            "multipart/form-data; boundary=golden-boundary"
        );
        assert_eq!(
            p.upload.chunks[0],
            "--golden-boundary\r\n\
             Content-Disposition: form-data; name=\"video1\"; filename=\"capture.zip\"\r\n\
             Content-Type: application/zip\r\n\r\n"
        );
        assert_eq!(
            p.upload.chunks[2],
            concat!(
                "\r\n--golden-boundary\r\n",
                "Content-Disposition: form-data; name=\"payload\"\r\n",
                "Content-Type: application/json\r\n\r\n",
                r#"{"media:tags":{"video1":["video_selfie","video_selfie_eyes","orientation_portrait"]},"#,
                r#""media:meta_data":{"video1":{"additional_info":"env"}},"#,
                r#""folder:meta_data":{"request_id":"req-1","virtual_camera":false}}"#,
                "\r\n--golden-boundary--\r\n",
            )
        );
        let total: usize = p.upload.chunks.iter().map(Bytes::len).sum();
        assert_eq!(p.upload.content_length(), total as u64);
        assert_eq!(p.media_len, p.upload.chunks[1].len());
        assert!(p.upload.chunks[1].starts_with(b"PK\x03\x04"));
        // The same capture gives the same bytes.
        let again = prepare_frames_upload(&c.to_json(), &opts(&meta)).expect("valid");
        assert_eq!(again.upload.to_vec(), p.upload.to_vec());
    }

    /// A document action sends its one frame as a photo tagged `photo_id` + side, in either
    /// shape, and no best frame even when the route asks for one.
    #[test]
    fn document_actions_send_one_photo() {
        let meta = BTreeMap::new();
        let o = TransformOptions {
            best_frame: BestFrame::Jpeg,
            ..opts(&meta)
        };
        for vc in [false, true] {
            let mut c = SampleCapture::new(1, vc, "photo_id_back");
            c.additional_info = Some("env".into());
            c.frames[0] = data_url("image/png", &sample_png(7));
            let p = prepare_frames_upload(&c.to_json(), &o).expect("valid");
            assert_eq!(p.action, "photo_id_back");
            assert_eq!(p.frame_count, 1);
            assert_eq!(
                p.upload.chunks[0],
                "--golden-boundary\r\n\
                 Content-Disposition: form-data; name=\"video1\"; filename=\"capture.png\"\r\n\
                 Content-Type: image/png\r\n\r\n"
            );
            assert_eq!(p.upload.chunks[1], sample_png(7));
            assert_eq!(p.media_len, p.upload.chunks[1].len());
            assert_eq!(
                p.upload.chunks[2],
                format!(
                    concat!(
                        "\r\n--golden-boundary\r\n",
                        "Content-Disposition: form-data; name=\"payload\"\r\n",
                        "Content-Type: application/json\r\n\r\n",
                        r#"{{"media:tags":{{"video1":["photo_id","photo_id_back"]}},"#,
                        r#""media:meta_data":{{"video1":{{"additional_info":"env"}}}},"#,
                        r#""folder:meta_data":{{"request_id":"req-1","virtual_camera":{}}}}}"#,
                        "\r\n--golden-boundary--\r\n",
                    ),
                    vc
                )
            );
        }
    }

    #[test]
    fn document_actions_refuse_more_than_one_frame() {
        let meta = BTreeMap::new();
        for vc in [false, true] {
            let body = sample_capture_json(2, vc, "photo_id_front");
            match prepare_frames_upload(&body, &opts(&meta)) {
                Err(Error::BadField { field, reason }) => {
                    let want = if vc {
                        "from_virtual_camera.frame_list"
                    } else {
                        "frame_list"
                    };
                    assert_eq!(field, want);
                    assert!(reason.starts_with("holds 2 frames"), "{reason}");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // The photo is checked like any frame.
        let mut c = SampleCapture::new(1, false, "photo_id_front");
        c.frames[0] = data_url("image/gif", b"GIF89a");
        assert!(matches!(
            prepare_frames_upload(&c.to_json(), &opts(&meta)),
            Err(Error::BadFrame { index: 0, .. })
        ));
        let c = SampleCapture::new(1, false, "photo_id_front");
        let o = TransformOptions {
            max_frame_bytes: 10,
            ..opts(&meta)
        };
        assert!(matches!(
            prepare_frames_upload(&c.to_json(), &o),
            Err(Error::FrameTooLarge {
                index: 0,
                limit: 10,
                ..
            })
        ));
    }

    #[test]
    fn random_boundary_by_default() {
        let meta = BTreeMap::new();
        let body = sample_capture_json(1, false, "video_selfie_blank");
        let o = TransformOptions {
            boundary: None,
            ..opts(&meta)
        };
        let a = prepare_frames_upload(&body, &o).expect("valid");
        let b = prepare_frames_upload(&body, &o).expect("valid");
        assert_ne!(a.upload.content_type, b.upload.content_type);
        assert!(a
            .upload
            .content_type
            .starts_with("multipart/form-data; boundary=oz-capture-proxy-"));
    }

    #[test]
    fn invalid_fixed_boundary_is_internal() {
        let meta = BTreeMap::new();
        let body = sample_capture_json(1, false, "video_selfie_blank");
        let o = TransformOptions {
            boundary: Some("bad\"boundary"),
            ..opts(&meta)
        };
        assert!(matches!(
            prepare_frames_upload(&body, &o),
            Err(Error::Internal)
        ));
    }

    #[tokio::test]
    async fn best_frame_jpeg_and_png_parts() {
        let meta = BTreeMap::new();
        for (choice, name, ct, bytes) in [
            (
                BestFrame::Jpeg,
                "best_frame.jpg",
                "image/jpeg",
                sample_jpeg(200),
            ),
            (
                BestFrame::Png,
                "best_frame.png",
                "image/png",
                sample_png(200),
            ),
        ] {
            for vc in [false, true] {
                let body = sample_capture_json(2, vc, "video_selfie_blank");
                let o = TransformOptions {
                    best_frame: choice,
                    ..opts(&meta)
                };
                let p = prepare_frames_upload(&body, &o).expect("valid");
                let parts = parts(&p).await;
                assert_eq!(parts.len(), 3);
                assert_eq!(parts[2].0, "photo_selfie1");
                assert_eq!(parts[2].1.as_deref(), Some(ct));
                assert_eq!(parts[2].2, bytes);
                let tail = String::from_utf8_lossy(&p.upload.chunks[2]).into_owned();
                assert!(tail.contains(&format!("filename=\"{name}\"")));
                assert!(tail.contains(r#""photo_selfie1":["photo_selfie"]"#));
            }
        }
    }

    #[test]
    fn a_missing_or_wrong_best_frame_names_the_field() {
        let meta = BTreeMap::new();
        let mut c = SampleCapture::new(1, true, "video_selfie_blank");
        c.best_frame_png = None;
        let o = TransformOptions {
            best_frame: BestFrame::Png,
            ..opts(&meta)
        };
        match prepare_frames_upload(&c.to_json(), &o) {
            Err(Error::BadField { field, reason }) => {
                assert_eq!(field, "from_virtual_camera.best_frame_png");
                assert!(reason.starts_with("is missing"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        // A PNG where the JPEG best frame belongs.
        let mut c = SampleCapture::new(1, false, "video_selfie_blank");
        c.best_frame = Some(data_url("image/png", &sample_png(1)));
        let o = TransformOptions {
            best_frame: BestFrame::Jpeg,
            ..opts(&meta)
        };
        match prepare_frames_upload(&c.to_json(), &o) {
            Err(Error::BadField { field, reason }) => {
                assert_eq!(field, "best_frame");
                assert_eq!(reason, "must be a image/jpeg data URL, found image/png");
            }
            other => panic!("unexpected {other:?}"),
        }
        // Too large.
        let o = TransformOptions {
            best_frame: BestFrame::Jpeg,
            max_frame_bytes: 10,
            ..opts(&meta)
        };
        let body = sample_capture_json(1, false, "video_selfie_blank");
        match prepare_frames_upload(&body, &o) {
            Err(Error::BadField { field, reason }) => {
                assert_eq!(field, "best_frame");
                assert!(reason.starts_with("exceeds the limit of 10 bytes"));
            }
            other => panic!("unexpected {other:?}"),
        }
        // Not sent, so not checked, when the route does not ask for it.
        let mut c = SampleCapture::new(1, false, "video_selfie_blank");
        c.best_frame = Some("garbage".into());
        assert!(prepare_frames_upload(&c.to_json(), &opts(&meta)).is_ok());
    }

    #[test]
    fn every_action_maps_and_unknown_is_refused() {
        let meta = BTreeMap::new();
        for action in [
            "video_selfie_left",
            "video_selfie_right",
            "video_selfie_down",
            "video_selfie_high",
            "video_selfie_smile",
            "video_selfie_eyes",
            "video_selfie_scan",
            "video_selfie_blank",
            "video_selfie_best",
            "photo_id_front",
            "photo_id_back",
        ] {
            let body = sample_capture_json(1, false, action);
            let p = prepare_frames_upload(&body, &opts(&meta)).expect(action);
            assert_eq!(p.action, action);
        }
        let body = sample_capture_json(1, false, "video_selfie_zoom_in");
        assert!(matches!(
            prepare_frames_upload(&body, &opts(&meta)),
            Err(Error::UnknownAction)
        ));
    }

    #[test]
    fn frame_failures_name_field_and_index() {
        let meta = BTreeMap::new();
        let b64 = |b: &[u8]| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(b)
        };
        let jpeg_b64 = b64(&sample_jpeg(1));
        let cases: Vec<(String, &str)> = vec![
            (
                format!(
                    "data:image/jpeg;base64,{}*",
                    &jpeg_b64[..jpeg_b64.len() - 1]
                ),
                "not base64",
            ),
            (
                format!(
                    "data:image/jpeg;base64,{}\n{}",
                    &jpeg_b64[..8],
                    &jpeg_b64[9..]
                ),
                "whitespace",
            ),
            (
                data_url("image/jpeg", b"plain text, not an image"),
                "declared image/jpeg but data is not a JPEG",
            ),
            (
                data_url("image/gif", b"GIF89a....."),
                "unsupported media type image/gif",
            ),
            (
                data_url("image/png", &sample_jpeg(1)),
                "declared image/png but data is a JPEG",
            ),
            (
                data_url("image/jpeg", &sample_png(1)),
                "declared image/jpeg but data is a PNG",
            ),
            ("not a data url".to_owned(), "not a data URL"),
        ];
        for vc in [false, true] {
            for (frame, want) in &cases {
                let mut c = SampleCapture::new(3, vc, "video_selfie_blank");
                c.frames[2] = frame.clone();
                match prepare_frames_upload(&c.to_json(), &opts(&meta)) {
                    Err(Error::BadFrame {
                        field,
                        index: 2,
                        reason,
                    }) => {
                        let want_field = if vc {
                            "from_virtual_camera.frame_list"
                        } else {
                            "frame_list"
                        };
                        assert_eq!(field, want_field);
                        assert!(reason.contains(want), "{reason} lacks {want}");
                    }
                    other => panic!("{want}: unexpected {other:?}"),
                }
            }
        }
    }

    #[test]
    fn limits_are_enforced() {
        let meta = BTreeMap::new();
        let body = sample_capture_json(6, false, "video_selfie_blank");
        let o = TransformOptions {
            max_frames: 5,
            ..opts(&meta)
        };
        assert!(matches!(
            prepare_frames_upload(&body, &o),
            Err(Error::TooManyFrames {
                count: 6,
                limit: 5,
                ..
            })
        ));
        let mut c = SampleCapture::new(3, false, "video_selfie_blank");
        let limit = sample_jpeg(0).len();
        c.frames[1] = data_url("image/jpeg", &[sample_jpeg(1), vec![0; 1]].concat());
        let o = TransformOptions {
            max_frame_bytes: limit,
            ..opts(&meta)
        };
        assert!(matches!(
            prepare_frames_upload(&c.to_json(), &o),
            Err(Error::FrameTooLarge {
                field: "frame_list",
                index: 1,
                limit: l
            }) if l == limit
        ));
    }

    #[test]
    fn structural_failures() {
        let meta = BTreeMap::new();
        let o = opts(&meta);
        let mut c = SampleCapture::new(0, false, "video_selfie_blank");
        assert!(matches!(
            prepare_frames_upload(&c.to_json(), &o),
            Err(Error::NoFrames {
                field: "frame_list"
            })
        ));
        c.frames = vec![sample_capture_frame()];
        c.additional_info = None;
        assert!(matches!(
            prepare_frames_upload(&c.to_json(), &o),
            Err(Error::BadField { field, .. }) if field == "additional_info"
        ));
        let body = sample_capture_json(2, false, "video_selfie_blank");
        assert!(matches!(
            prepare_frames_upload(&body[..body.len() - 10], &o),
            Err(Error::BadJson { .. })
        ));
        let body = br#"{"action":"video_selfie_blank","frame_list":null,"additional_info":"i"}"#;
        assert!(matches!(
            prepare_frames_upload(body, &o),
            Err(Error::NoFrames { .. })
        ));
    }

    fn sample_capture_frame() -> String {
        data_url("image/jpeg", &sample_jpeg(0))
    }

    #[test]
    fn no_error_message_leaks_frames_or_additional_info() {
        let meta = BTreeMap::new();
        let o = TransformOptions {
            best_frame: BestFrame::Jpeg,
            ..opts(&meta)
        };
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        // Each variant breaks one thing; `SECRETMARKERAAAA` is valid base64 but no image.
        let variants: [fn(&mut SampleCapture); 8] = [
            |c| c.frames[0] = format!("data:image/jpeg;base64,{SECRET}AAAA"),
            |c| c.frames[0] = format!("data:image/jpeg;base64,{SECRET}\n"),
            |c| c.frames[0] = format!("data:{SECRET};base64,AAAA"),
            |c| c.frames[0] = SECRET.to_owned(),
            |c| c.best_frame = Some(format!("data:image/jpeg;base64,{SECRET}AAAA")),
            |c| c.best_frame = Some(data_url("image/jpeg", SECRET.as_bytes())),
            |c| c.action = SECRET.to_owned(),
            |c| c.additional_info = None,
        ];
        for vc in [false, true] {
            for v in &variants {
                let mut c = SampleCapture::new(2, vc, "video_selfie_blank");
                c.additional_info = Some(format!("{SECRET} additional info"));
                v(&mut c);
                let json = c.to_json();
                bodies.push(json.clone());
                bodies.push(json[..json.len() / 2].to_vec());
            }
        }
        bodies.push(
            format!(r#"{{"action":"video_selfie_blank","frame_list":["{SECRET}",7],"additional_info":"{SECRET}"}}"#)
                .into_bytes(),
        );
        bodies.push(
            format!(r#"{{"action":"video_selfie_blank","frame_list":[1],"additional_info":{{"{SECRET}":"{SECRET}"}}}}"#)
                .into_bytes(),
        );
        // Escaped frames: undecodable, unescaping to no text, and with bad JSON escapes.
        for frame in [
            format!(r"data:image\/jpeg;base64,{SECRET}AAAA"),
            format!(r"data:image\/jpeg;base64,{SECRET}\uD800AAA"),
            format!(r"data:image\/{SECRET};base64,AAAA"),
            format!(r"data:image\/jpeg;base64,{SECRET}\qAAA"),
        ] {
            bodies.push(
                format!(r#"{{"action":"video_selfie_blank","frame_list":["{frame}"],"additional_info":"{SECRET}"}}"#)
                    .into_bytes(),
            );
            bodies.push(
                format!(r#"{{"action":"video_selfie_blank","frame_list":["{}"],"best_frame":"{frame}","additional_info":"{SECRET}"}}"#, data_url("image/jpeg", &sample_jpeg(1)))
                    .into_bytes(),
            );
        }
        for body in bodies {
            let e = prepare_frames_upload(&body, &o).expect_err("every variant fails");
            let text = format!("{e} {e:?}");
            assert!(!text.contains(SECRET), "leak: {text}");
        }
    }

    /// The field each route setting refuses in the Web SDK's body, which carries both best
    /// frames: every best frame the upload leaves out.
    #[test]
    fn best_frames_the_upload_leaves_out_are_refused_when_asked() {
        let meta = BTreeMap::new();
        for (action, frames, best_frame, refused) in [
            ("video_selfie_blank", 2, BestFrame::None, "best_frame"),
            ("video_selfie_blank", 2, BestFrame::Jpeg, "best_frame_png"),
            ("video_selfie_blank", 2, BestFrame::Png, "best_frame"),
            ("photo_id_front", 1, BestFrame::Jpeg, "best_frame"),
        ] {
            for vc in [false, true] {
                let body = sample_capture_json(frames, vc, action);
                let o = TransformOptions {
                    best_frame,
                    refuse_unchecked_images: true,
                    ..opts(&meta)
                };
                let want = if vc {
                    format!("from_virtual_camera.{refused}")
                } else {
                    refused.to_owned()
                };
                match prepare_frames_upload(&body, &o) {
                    Err(Error::BadField { field, reason }) => {
                        assert_eq!(field, want, "{action} {best_frame:?}");
                        assert!(reason.starts_with("is not sent to Oz "), "{reason}");
                        assert!(reason.ends_with("(capture.unchecked_images: refuse)"));
                    }
                    other => panic!("{action} {best_frame:?}: unexpected {other:?}"),
                }
                // Not refused, they are reported.
                let o = TransformOptions {
                    refuse_unchecked_images: false,
                    ..o
                };
                let p = prepare_frames_upload(&body, &o).expect("valid");
                let fields: Vec<&str> = p.unchecked_images.iter().map(|i| i.field).collect();
                assert!(fields.first().is_some_and(|f| *f == want), "{fields:?}");
            }
        }
        // The best frame the route sends is checked, so it passes; so do nulls.
        let mut c = SampleCapture::new(2, false, "video_selfie_blank");
        c.best_frame_png = None;
        let o = TransformOptions {
            best_frame: BestFrame::Jpeg,
            refuse_unchecked_images: true,
            ..opts(&meta)
        };
        let p = prepare_frames_upload(&c.to_json(), &o).expect("best_frame is checked");
        assert!(p.unchecked_images.is_empty());
        c.best_frame = None;
        let o = TransformOptions {
            best_frame: BestFrame::None,
            ..o
        };
        assert!(prepare_frames_upload(&c.to_json(), &o).is_ok());
    }

    /// Stripped, the body is the one sent with each unchecked best frame's value made `null`,
    /// escapes and all, in whichever order the fields came.
    #[test]
    fn stripping_nulls_the_unchecked_best_frames_and_keeps_every_other_byte() {
        let meta = BTreeMap::new();
        for vc in [false, true] {
            for body in [
                sample_capture_json(2, vc, "video_selfie_blank"),
                sample_capture_json_escaped(2, vc, "video_selfie_blank"),
            ] {
                let text = String::from_utf8(body.clone()).expect("UTF-8");
                let frame = |name: &str| {
                    let doc: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                    let level = if vc {
                        &doc["from_virtual_camera"]
                    } else {
                        &doc
                    };
                    serde_json::to_string(&level[name]).expect("value")
                };
                for (best_frame, nulled) in [
                    (BestFrame::None, vec!["best_frame", "best_frame_png"]),
                    (BestFrame::Jpeg, vec!["best_frame_png"]),
                    (BestFrame::Png, vec!["best_frame"]),
                ] {
                    let o = TransformOptions {
                        best_frame,
                        ..opts(&meta)
                    };
                    let p = prepare_frames_upload(&body, &o).expect("valid");
                    let stripped = strip_images(&body, &p.unchecked_images);
                    let mut want = text.clone();
                    assert_eq!(p.unchecked_images.len(), nulled.len());
                    for name in nulled {
                        let path = if vc {
                            format!("from_virtual_camera.{name}")
                        } else {
                            name.to_owned()
                        };
                        let image = p.unchecked_images.iter().find(|i| i.field == path);
                        // The literal as sent (escaped if the body is).
                        let sent = &text[image.expect("reported").literal.clone()];
                        assert_eq!(
                            serde_json::from_str::<String>(sent).expect("literal"),
                            serde_json::from_str::<String>(&frame(name)).expect("value")
                        );
                        want = want.replacen(
                            &format!("\"{name}\":{sent}"),
                            &format!("\"{name}\":null"),
                            1,
                        );
                    }
                    assert_eq!(String::from_utf8(stripped).expect("UTF-8"), want);
                }
            }
        }
        // Either order in the body.
        let body = br#"{"action":"video_selfie_blank","best_frame_png":"p","frame_list":["f"],"best_frame":"j","additional_info":"i"}"#;
        let capture = parse_capture(body, 10).expect("valid");
        let images = unchecked_images(body, &capture, MediaKind::ShotsSet, BestFrame::None);
        assert_eq!(
            images.iter().map(|i| i.field).collect::<Vec<_>>(),
            ["best_frame_png", "best_frame"]
        );
        assert_eq!(
            strip_images(body, &images),
            br#"{"action":"video_selfie_blank","best_frame_png":null,"frame_list":["f"],"best_frame":null,"additional_info":"i"}"#
        );
    }
}
