//! Any bytes through the whole frames transform: it may refuse them, never panic, and what it
//! accepts must be an upload the simulated Oz API accepts too (its own parser, `oz_sim`), with
//! every frame in it.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use oz_capture_proxy::capture::{prepare_frames_upload, TransformOptions};
use oz_capture_proxy::config::BestFrame;
use oz_capture_proxy::oz_sim::{read_upload, SimConfig};

fuzz_target!(|data: &[u8]| {
    let meta = BTreeMap::new();
    let opts = TransformOptions {
        file_key: "video1",
        max_frames: 16,
        max_frame_bytes: 64 * 1024,
        best_frame: match data.first().map(|b| b % 3) {
            Some(1) => BestFrame::Jpeg,
            Some(2) => BestFrame::Png,
            _ => BestFrame::None,
        },
        refuse_unchecked_images: data.get(1).is_some_and(|b| b & 1 == 1),
        request_id: "fuzz",
        folder_meta_data: &meta,
        boundary: Some("fuzzboundary"),
    };
    if let Ok(p) = prepare_frames_upload(data, &opts) {
        assert!(p.frame_count >= 1 && p.frame_count <= 16);
        assert!(p
            .upload
            .content_type
            .starts_with("multipart/form-data; boundary="));
        assert!(p.upload.content_length() as usize > p.media_len);
        let rec = read_upload(
            &p.upload.content_type,
            &p.upload.to_vec(),
            &SimConfig::default(),
        );
        assert!(rec.accepted(), "the simulator refused it: {:?}", rec.error);
        let media = rec.part("video1").expect("the media part");
        assert_eq!(media.bytes.len(), p.media_len);
        if media.content_type.as_deref() == Some("application/zip") {
            assert_eq!(rec.zip_entries.len(), p.frame_count);
        } else {
            assert_eq!(p.frame_count, 1);
        }
    }
});
