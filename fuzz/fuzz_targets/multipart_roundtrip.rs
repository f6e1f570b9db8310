//! Any frames and `additional_info` through the proxy's upload writer (capture body → frame
//! ZIP or photo → multipart) and back through the simulator's own parser (`oz_sim::read_upload`,
//! which shares no code with the writer): the simulator accepts the upload and reads the same
//! frames, byte for byte and in order, the same best frame, the same `additional_info` and the
//! same folder metadata.
#![no_main]

use std::collections::BTreeMap;

use base64::Engine as _;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use oz_capture_proxy::capture::multipart::{BEST_FRAME_KEY, RESERVED_FOLDER_KEYS};
use oz_capture_proxy::capture::testdata::SampleCapture;
use oz_capture_proxy::capture::{prepare_frames_upload, TransformOptions};
use oz_capture_proxy::config::BestFrame;
use oz_capture_proxy::oz_sim::{read_upload, SimConfig};
use serde_json::{json, Value};

const MAX_FRAMES: usize = 16;
const MAX_FRAME_BYTES: usize = 64 * 1024;

#[derive(Arbitrary, Debug)]
enum Action {
    Blank,
    /// The one action whose tag differs from its code (`video_selfie_oneshot`).
    Best,
    /// A document: one photo, no ZIP.
    PhotoFront,
}

#[derive(Arbitrary, Debug)]
enum Send {
    None,
    Jpeg,
    Png,
}

#[derive(Arbitrary, Debug)]
enum FileKey {
    Video1,
    Media,
    Odd,
}

/// An image: the magic bytes of its type, then anything.
#[derive(Arbitrary, Debug)]
struct Image {
    png: bool,
    tail: Vec<u8>,
}

impl Image {
    fn bytes(&self, png: bool) -> Vec<u8> {
        let magic: &[u8] = if png {
            b"\x89PNG\r\n\x1a\n"
        } else {
            &[0xff, 0xd8, 0xff]
        };
        [magic, &self.tail].concat()
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    action: Action,
    frames: Vec<Image>,
    best_frame: Option<Image>,
    best_frame_png: Option<Image>,
    send: Send,
    additional_info: String,
    virtual_camera: bool,
    escape_slashes: bool,
    file_key: FileKey,
    request_id: String,
    folder_meta_data: BTreeMap<String, String>,
}

fn data_url(png: bool, bytes: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let media_type = if png { "image/png" } else { "image/jpeg" };
    format!("data:{media_type};base64,{b64}")
}

fuzz_target!(|input: Input| {
    let frames: Vec<Vec<u8>> = input.frames.iter().map(|f| f.bytes(f.png)).collect();
    let best_frame = input.best_frame.as_ref().map(|f| f.bytes(false));
    let best_frame_png = input.best_frame_png.as_ref().map(|f| f.bytes(true));
    let (action, photo) = match input.action {
        Action::Blank => ("video_selfie_blank", false),
        Action::Best => ("video_selfie_best", false),
        Action::PhotoFront => ("photo_id_front", true),
    };
    let mut capture = SampleCapture::new(0, input.virtual_camera, action);
    capture.frames = input
        .frames
        .iter()
        .zip(&frames)
        .map(|(f, b)| data_url(f.png, b))
        .collect();
    capture.best_frame = best_frame.as_ref().map(|b| data_url(false, b));
    capture.best_frame_png = best_frame_png.as_ref().map(|b| data_url(true, b));
    capture.additional_info = Some(input.additional_info.clone());
    capture.escape_slashes = input.escape_slashes;
    let body = capture.to_json();

    let file_key = match input.file_key {
        FileKey::Video1 => "video1",
        FileKey::Media => "media",
        FileKey::Odd => "A-b_9",
    };
    let best = match input.send {
        Send::None => BestFrame::None,
        Send::Jpeg => BestFrame::Jpeg,
        Send::Png => BestFrame::Png,
    };
    let opts = TransformOptions {
        file_key,
        max_frames: MAX_FRAMES,
        max_frame_bytes: MAX_FRAME_BYTES,
        best_frame: best,
        refuse_unchecked_images: false,
        request_id: &input.request_id,
        folder_meta_data: &input.folder_meta_data,
        boundary: None,
    };
    // The best frame the upload carries: only a video action sends one.
    let sent_best = match (photo, best) {
        (true, _) | (_, BestFrame::None) => None,
        (false, BestFrame::Jpeg) => Some(best_frame.as_ref().map(|b| (false, b))),
        (false, BestFrame::Png) => Some(best_frame_png.as_ref().map(|b| (true, b))),
    };
    let fits = |b: &Vec<u8>| b.len() <= MAX_FRAME_BYTES;
    let acceptable = !frames.is_empty()
        && frames.len() <= MAX_FRAMES
        && frames.iter().all(fits)
        && (!photo || frames.len() == 1)
        && sent_best.is_none_or(|b| b.is_some_and(|(_, b)| fits(b)));

    let prepared = match prepare_frames_upload(&body, &opts) {
        Ok(p) => p,
        Err(e) => {
            assert!(
                !acceptable,
                "a capture the proxy should take was refused: {e}"
            );
            return;
        }
    };
    assert!(acceptable, "a capture the proxy should refuse was taken");
    assert_eq!(prepared.frame_count, frames.len());
    assert_eq!(prepared.virtual_camera, input.virtual_camera);

    let upload = prepared.upload.to_vec();
    let rec = read_upload(
        &prepared.upload.content_type,
        &upload,
        &SimConfig::default(),
    );
    assert!(
        rec.accepted(),
        "the simulator refused the upload: {:?}",
        rec.error
    );

    // Parts: the media, the payload, then the best frame if any.
    let names: Vec<&str> = rec.parts.iter().map(|p| p.name.as_str()).collect();
    let mut want = vec![file_key, "payload"];
    if matches!(sent_best, Some(Some(_))) {
        want.push(BEST_FRAME_KEY);
    }
    assert_eq!(names, want);
    let media = &rec.parts[0];
    if photo {
        assert_eq!(media.bytes, frames[0], "the photo");
        assert!(rec.zip_entries.is_empty());
    } else {
        assert_eq!(rec.zip_entries.len(), frames.len());
        for (i, ((name, bytes), (frame, image))) in rec
            .zip_entries
            .iter()
            .zip(frames.iter().zip(&input.frames))
            .enumerate()
        {
            let ext = if image.png { "png" } else { "jpg" };
            assert_eq!(name, &format!("{:06}.{ext}", i + 1));
            assert_eq!(bytes, frame, "frame {i}");
        }
    }
    if let Some(Some((png, bytes))) = sent_best {
        let part = &rec.parts[2];
        assert_eq!(&part.bytes, bytes, "the best frame");
        let want = if png { "image/png" } else { "image/jpeg" };
        assert_eq!(part.content_type.as_deref(), Some(want));
    }

    let payload = rec.payload.as_ref().expect("a payload");
    assert_eq!(
        payload["media:meta_data"][file_key]["additional_info"],
        Value::String(input.additional_info.clone()),
    );
    let folder = &payload["folder:meta_data"];
    assert_eq!(folder["request_id"], json!(input.request_id));
    assert_eq!(folder["virtual_camera"], json!(input.virtual_camera));
    let folder = folder.as_object().expect("folder:meta_data is an object");
    let statics: Vec<_> = input
        .folder_meta_data
        .iter()
        .filter(|(k, _)| !RESERVED_FOLDER_KEYS.contains(&k.as_str()))
        .collect();
    assert_eq!(folder.len(), RESERVED_FOLDER_KEYS.len() + statics.len());
    for (k, v) in statics {
        assert_eq!(folder[k.as_str()], json!(v), "folder:meta_data.{k}");
    }
});
