//! The replay guard's fingerprints of a capture: one SHA-256 per frame, over the picture the frame
//! holds, fed by the transform while each decoded frame is still in cache (no extra pass over
//! the body). The guard refuses a capture when any one of them was seen before, so a replay is
//! caught whether it is sent whole, cut short, reordered or padded with new frames.
//!
//! What is hashed is the picture, not the file: of a JPEG, the frame header, tables and scans
//! from the first start-of-scan marker to the end-of-image marker (so new metadata segments,
//! comments or bytes after the end do not make another frame); of a PNG, its header and image
//! data chunks; of anything else, every byte. An OzCapsula container is one fingerprint of its
//! bytes as sent. A label tells the kinds apart. What no digest can see: the same face in pixels
//! that were decoded and encoded again; Oz's liveness checks judge those.

use aws_lc_rs::digest;

/// The fingerprints of one capture's frames, in order.
#[derive(Default)]
pub struct FrameDigests(Vec<[u8; 32]>);

impl FrameDigests {
    /// Adds the next decoded frame.
    pub fn frame(&mut self, decoded: &[u8]) {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"oz-capture-proxy frame\0");
        for part in picture(decoded) {
            ctx.update(part);
        }
        self.0.push(to_array(ctx.finish()));
    }

    pub fn finish(self) -> Vec<[u8; 32]> {
        self.0
    }

    /// The one fingerprint of an OzCapsula container body.
    pub fn container(body: &[u8]) -> Vec<[u8; 32]> {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"oz-capture-proxy container\0");
        ctx.update(body);
        vec![to_array(ctx.finish())]
    }
}

/// The parts of an image file that make its picture; the whole file when it is not a JPEG or a
/// PNG this can walk.
fn picture(file: &[u8]) -> Vec<&[u8]> {
    jpeg_picture(file)
        .map(|p| vec![p])
        .or_else(|| png_picture(file))
        .unwrap_or_else(|| vec![file])
}

/// A JPEG from its frame and table segments on, without the APPn and COM segments before them
/// and without anything after the end-of-image marker (ITU T.81 §B.1.1). Segments are walked by
/// their lengths, so a JPEG thumbnail inside an APP1 segment is skipped, not taken for the image.
fn jpeg_picture(file: &[u8]) -> Option<&[u8]> {
    if !file.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut at = 2;
    // The first segment that is not metadata: SOFn, DHT, DQT, DRI, SOS…
    let start = loop {
        if *file.get(at)? != 0xFF {
            return None;
        }
        let marker = *file.get(at + 1)?;
        let metadata = matches!(marker, 0xE0..=0xEF | 0xFE);
        if !metadata {
            break at;
        }
        let len = usize::from(u16::from_be_bytes([*file.get(at + 2)?, *file.get(at + 3)?]));
        at += 2 + len;
    };
    // In entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so the first
    // 0xFF 0xD9 after the start of the image is its end.
    let end = memchr::memmem::find(&file[start..], &[0xFF, 0xD9])? + start + 2;
    Some(&file[start..end])
}

/// A PNG's IHDR and IDAT chunk data (ISO/IEC 15948 §5.3), without ancillary chunks (text,
/// time, colour profiles) or anything after IEND.
fn png_picture(file: &[u8]) -> Option<Vec<&[u8]>> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    let mut rest = file.strip_prefix(SIGNATURE)?;
    let mut parts = Vec::new();
    while rest.len() >= 12 {
        let len = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
        let kind = &rest[4..8];
        let data = rest.get(8..8 + len)?;
        if matches!(kind, b"IHDR" | b"IDAT") {
            parts.push(data);
        }
        if kind == b"IEND" {
            return Some(parts);
        }
        rest = rest.get(12 + len..)?;
    }
    None
}

fn to_array(d: digest::Digest) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::testdata::{sample_jpeg, sample_png};

    fn of(file: &[u8]) -> [u8; 32] {
        let mut d = FrameDigests::default();
        d.frame(file);
        d.finish()[0]
    }

    /// `jpeg` with a segment of `marker` holding `body` inserted after SOI.
    fn with_segment(jpeg: &[u8], marker: u8, body: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn a_jpeg_with_other_metadata_or_trailing_bytes_is_the_same_picture() {
        let jpeg = sample_jpeg(7);
        let picture = of(&jpeg);
        assert_eq!(of(&with_segment(&jpeg, 0xFE, b"another comment")), picture);
        // An EXIF segment holding a whole JPEG (a thumbnail) is skipped, not read as the image.
        assert_eq!(of(&with_segment(&jpeg, 0xE1, &sample_jpeg(9))), picture);
        let mut padded = jpeg.clone();
        padded.extend_from_slice(b"\0\0trailing");
        assert_eq!(of(&padded), picture);
        // Another picture is another digest.
        assert_ne!(of(&sample_jpeg(8)), picture);
    }

    #[test]
    fn a_png_with_other_ancillary_chunks_is_the_same_picture() {
        let png = sample_png(3);
        let picture = of(&png);
        // A tEXt chunk after IHDR (13 bytes of data: 8 + 4 + 13 + 4 = 33 bytes in).
        let mut texted = png[..33].to_vec();
        texted.extend_from_slice(&4u32.to_be_bytes());
        texted.extend_from_slice(b"tEXtnote");
        texted.extend_from_slice(&[0; 4]);
        texted.extend_from_slice(&png[33..]);
        assert_eq!(of(&texted), picture);
        assert_ne!(of(&sample_png(4)), picture);
    }

    #[test]
    fn frames_and_containers_are_told_apart() {
        let jpeg = sample_jpeg(1);
        assert_ne!(vec![of(&jpeg)], FrameDigests::container(&jpeg));
        // Something that is no image is hashed whole.
        assert_ne!(of(b"abc"), of(b"abd"));
    }
}
