//! Frame decoding: never panics, never writes more than the limit, and what it accepts starts
//! with the magic bytes of the type it reports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oz_capture_proxy::capture::data_url::{DataUrlDecoder, ImageKind};

fuzz_target!(|data: &[u8]| {
    let decoder = DataUrlDecoder::new();
    let mut out = Vec::new();
    if let Ok(kind) = decoder.decode_into(data, 4096, &mut out) {
        assert!(out.len() <= 4096);
        match kind {
            ImageKind::Jpeg => assert!(out.starts_with(&[0xff, 0xd8, 0xff])),
            ImageKind::Png => assert!(out.starts_with(b"\x89PNG\r\n\x1a\n")),
        }
    }
});
