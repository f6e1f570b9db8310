//! Decodes the frames of `frame_list` straight into a ZIP of stored entries, in frame order.
//!
//! Oz treats a ZIP of images as a video ("shots set", docs/oz-api.md §2.4) and documents nothing about
//! its entries (§2.7), so the layout is the unambiguous one: entries `000001.jpg`, `000002.png`…
//! at the root, numbered from 1 in frame order, each with the extension of the image it really
//! is. Entries are stored, not deflated (JPEG and PNG do not shrink), and every header field
//! is fixed (1980-01-01 timestamps, Unix, mode 0644), so the same frames always give the same
//! bytes. `ZipWriter::new` over a seekable buffer writes sizes and CRCs into the local headers
//! with no data descriptors, which every reader accepts (docs/dependencies.md, "zip: stored entries, no data descriptor").

use std::fmt::Write as _;
use std::io::{Cursor, Write as _};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, System, ZipWriter};

use super::data_url::DataUrlError;
use super::digest::FrameDigests;
use super::frame::{Frame, FrameDecoder};
use super::Error;

/// Local file header (30) + central directory header (46), without the name (APPNOTE 4.3.7, 4.3.12).
const ENTRY_OVERHEAD: usize = 30 + 46;
/// End of central directory record without a comment (APPNOTE 4.3.16).
const EOCD_LEN: usize = 22;
/// Decoded bytes between two offers of the CPU to other threads: tens of microseconds of work.
const YIELD_EVERY: usize = 256 * 1024;

/// Decodes every frame and stores it in a new ZIP; `field` is the frames' path for errors.
///
/// Each frame is decoded into one scratch buffer reused for all frames (an escaped frame is
/// unescaped into `decoder`'s buffer first, also reused), then copied into the archive buffer,
/// which is sized up front from the base64 lengths so it does not grow either.
/// The first bad frame stops the work: [`Error::BadFrame`] or [`Error::FrameTooLarge`] with its
/// 0-based index in `frame_list`.
///
/// Every [`YIELD_EVERY`] decoded bytes the thread yields its core. The transform runs on a
/// blocking thread, and a sidecar often has a single core, shared with the tokio worker that
/// carries passthrough traffic: without the yield, a request that becomes ready while a capture
/// is being zipped waits for the scheduler to preempt the transform, milliseconds later (a
/// 5 MiB capture is about a millisecond of work; four at once are several). With it, the
/// worker runs within tens of microseconds. When nothing else is runnable a yield is one cheap
/// syscall (BENCHMARKS.md, "Captures end to end").
pub fn build_zip(
    frames: &[Frame<'_>],
    field: &'static str,
    decoder: &mut FrameDecoder,
    max_frame_bytes: usize,
    digest: &mut FrameDigests,
) -> Result<Vec<u8>, Error> {
    // 3 bytes per 4 base64 symbols bounds each decoded frame (the prefix and any escapes only
    // add slack).
    let estimate = |f: &Frame<'_>| (f.max_url_len() / 4 * 3).min(max_frame_bytes);
    let name_len = entry_name(frames.len(), "jpg").len();
    let capacity = frames
        .iter()
        .map(|f| estimate(f) + ENTRY_OVERHEAD + 2 * name_len)
        .sum::<usize>()
        + EOCD_LEN;
    let mut scratch = Vec::with_capacity(frames.iter().map(estimate).max().unwrap_or(0));
    let mut zip = ZipWriter::new(Cursor::new(Vec::with_capacity(capacity)));
    let options = entry_options();
    let mut name = String::with_capacity(name_len);
    let mut since_yield = 0;

    for (index, frame) in frames.iter().enumerate() {
        scratch.clear();
        let kind = decoder
            .decode_into(frame, max_frame_bytes, &mut scratch)
            .map_err(|e| frame_error(e, field, index, max_frame_bytes))?;
        digest.frame(&scratch);
        name.clear();
        // Writing to a String cannot fail.
        let _ = write!(name, "{:06}.{}", index + 1, kind.extension());
        zip.start_file(name.as_str(), options).map_err(internal)?;
        zip.write_all(&scratch).map_err(internal)?;
        since_yield += scratch.len();
        if since_yield >= YIELD_EVERY {
            std::thread::yield_now();
            since_yield = 0;
        }
    }
    // `finish` writes the central directory; dropping the writer would only print its errors.
    Ok(zip.finish().map_err(internal)?.into_inner())
}

/// The capture error for frame `index` of `field` that failed to decode.
pub(super) fn frame_error(
    e: DataUrlError,
    field: &'static str,
    index: usize,
    limit: usize,
) -> Error {
    match e {
        DataUrlError::TooLarge => Error::FrameTooLarge {
            field,
            index,
            limit,
        },
        DataUrlError::Invalid(reason) => Error::BadFrame {
            field,
            index,
            reason,
        },
    }
}

/// The options of every entry: stored, fixed timestamp, Unix 0644, no ZIP64.
fn entry_options() -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::DEFAULT)
        .system(System::Unix)
        .unix_permissions(0o644)
}

/// The name of the last entry, to size buffers (names are zero-padded to at least 6 digits).
fn entry_name(number: usize, ext: &str) -> String {
    format!("{number:06}.{ext}")
}

/// Writing to an in-memory ZIP fails only on a bug (e.g. a duplicate name), never on input.
fn internal<E: std::fmt::Display>(err: E) -> Error {
    tracing::error!(error = %err, "ZIP writer failed");
    Error::Internal
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::testdata::{data_url, sample_jpeg, sample_png};
    use std::io::Read as _;

    /// How a test writes its frames into JSON.
    #[derive(Clone, Copy, Debug)]
    enum Spelling {
        /// As serde_json writes them (no escapes in a data URL).
        Plain,
        /// Every `/` as `\/`, as PHP's `json_encode` writes it.
        Slashes,
        /// Every `/` as `\u002f`.
        Unicode,
    }

    const SPELLINGS: [Spelling; 3] = [Spelling::Plain, Spelling::Slashes, Spelling::Unicode];

    /// The JSON string literals of `urls`, spelled as asked.
    fn literals(urls: &[String], spelling: Spelling) -> Vec<String> {
        urls.iter()
            .map(|u| {
                let lit = serde_json::to_string(u).expect("a str serializes");
                match spelling {
                    Spelling::Plain => lit,
                    Spelling::Slashes => lit.replace('/', r"\/"),
                    Spelling::Unicode => lit.replace('/', r"\u002f"),
                }
            })
            .collect()
    }

    fn frames(literals: &[String]) -> Vec<Frame<'_>> {
        literals
            .iter()
            .map(|l| Frame::from_json_literal(l).expect("quoted"))
            .collect()
    }

    /// The ZIP of `urls` written plainly into the JSON, with a new decoder.
    fn zip_of(urls: &[String], field: &'static str, max: usize) -> Result<Vec<u8>, Error> {
        zip_spelled(urls, Spelling::Plain, field, max)
    }

    fn zip_spelled(
        urls: &[String],
        spelling: Spelling,
        field: &'static str,
        max: usize,
    ) -> Result<Vec<u8>, Error> {
        let literals = literals(urls, spelling);
        build_zip(
            &frames(&literals),
            field,
            &mut FrameDecoder::new(),
            max,
            &mut FrameDigests::default(),
        )
    }

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    /// Three frames of mixed types, as data URLs, and their bytes.
    fn mixed() -> (Vec<String>, Vec<Vec<u8>>) {
        let images = vec![sample_jpeg(1), sample_png(2), sample_jpeg(3)];
        let urls = vec![
            data_url("image/jpeg", &images[0]),
            data_url("image/png", &images[1]),
            data_url("image/jpeg", &images[2]),
        ];
        (urls, images)
    }

    #[test]
    fn zip_bytes_have_the_fixed_layout() {
        let (urls, images) = mixed();
        let zip = zip_of(&urls, "frame_list", 1 << 20).expect("zip");
        let names = ["000001.jpg", "000002.png", "000003.jpg"];

        // Local headers, back to back, each followed by its name and the raw image.
        let mut at = 0;
        let mut offsets = Vec::new();
        for (name, image) in names.iter().zip(&images) {
            offsets.push(at);
            assert_eq!(u32_at(&zip, at), 0x0403_4B50, "local header signature");
            assert_eq!(u16_at(&zip, at + 4), 10, "version needed: 1.0 (stored)");
            assert_eq!(
                u16_at(&zip, at + 6),
                0,
                "flags: no data descriptor, no UTF-8 bit"
            );
            assert_eq!(u16_at(&zip, at + 8), 0, "method: stored");
            assert_eq!(u16_at(&zip, at + 10), 0, "time 00:00:00");
            assert_eq!(u16_at(&zip, at + 12), 0x0021, "date 1980-01-01");
            let size = image.len() as u32;
            assert_eq!(u32_at(&zip, at + 18), size, "compressed size");
            assert_eq!(u32_at(&zip, at + 22), size, "uncompressed size");
            assert_eq!(u16_at(&zip, at + 26), 10, "name length");
            assert_eq!(u16_at(&zip, at + 28), 0, "no extra field");
            assert_eq!(&zip[at + 30..at + 40], name.as_bytes());
            assert_eq!(&zip[at + 40..at + 40 + image.len()], &image[..]);
            at += 40 + image.len();
        }
        // Central directory, same order, then the end record.
        let cd_start = at;
        for (i, name) in names.iter().enumerate() {
            assert_eq!(u32_at(&zip, at), 0x0201_4B50, "central header signature");
            assert_eq!(zip[at + 5], 3, "made by: Unix");
            assert_eq!(u16_at(&zip, at + 8), 0, "flags");
            assert_eq!(u16_at(&zip, at + 10), 0, "method");
            assert_eq!(
                u32_at(&zip, at + 38) >> 16,
                0o100644,
                "regular file, mode 0644"
            );
            assert_eq!(
                u32_at(&zip, at + 42),
                offsets[i] as u32,
                "local header offset"
            );
            assert_eq!(&zip[at + 46..at + 56], name.as_bytes());
            at += 56;
        }
        assert_eq!(u32_at(&zip, at), 0x0605_4B50, "end of central directory");
        assert_eq!(u16_at(&zip, at + 10), 3, "entries");
        assert_eq!(
            u32_at(&zip, at + 16),
            cd_start as u32,
            "central directory offset"
        );
        assert_eq!(at + EOCD_LEN, zip.len(), "no trailing bytes, no comment");
    }

    #[test]
    fn zip_reopens_with_the_input_frames_in_order() {
        let (urls, images) = mixed();
        let zip = zip_of(&urls, "frame_list", 1 << 20).expect("zip");
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).expect("readable");
        assert_eq!(archive.len(), 3);
        for (i, image) in images.iter().enumerate() {
            let mut entry = archive.by_index(i).expect("entry");
            assert_eq!(entry.compression(), CompressionMethod::Stored);
            let ext = if i == 1 { "png" } else { "jpg" };
            assert_eq!(
                entry.name().expect("utf-8 name"),
                format!("{:06}.{ext}", i + 1)
            );
            let mut got = Vec::new();
            entry.read_to_end(&mut got).expect("read, CRC checked");
            assert_eq!(&got, image);
        }
    }

    #[test]
    fn same_frames_give_the_same_bytes_and_digest() {
        let (urls, _) = mixed();
        let lits = literals(&urls, Spelling::Plain);
        let mut d = FrameDecoder::new();
        let mut zip = || {
            let mut digest = FrameDigests::default();
            let zip =
                build_zip(&frames(&lits), "frame_list", &mut d, 1 << 20, &mut digest).expect("zip");
            (zip, digest.finish())
        };
        assert_eq!(zip(), zip());
    }

    #[test]
    fn presized_buffer_does_not_grow() {
        let urls: Vec<String> = (0..50)
            .map(|i| data_url("image/jpeg", &sample_jpeg(i)))
            .collect();
        let zip = zip_of(&urls, "frame_list", 1 << 20).expect("zip");
        // The estimate is an upper bound; the slack is the base64 prefix and padding.
        let estimate: usize = urls.iter().map(|u| u.len() / 4 * 3 + 96).sum::<usize>() + 22;
        assert!(zip.len() <= estimate, "{} > {estimate}", zip.len());
        assert!(zip.capacity() <= estimate, "buffer grew past the estimate");
    }

    #[test]
    fn a_bad_frame_is_reported_with_its_index() {
        let (mut urls, _) = mixed();
        urls[1] = data_url("image/png", &sample_jpeg(9));
        let err = zip_of(&urls, "from_virtual_camera.frame_list", 1 << 20).expect_err("bad frame");
        match err {
            Error::BadFrame {
                field: "from_virtual_camera.frame_list",
                index: 1,
                reason,
            } => assert_eq!(reason, "declared image/png but data is a JPEG"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_large_frame_is_reported_with_its_index_and_limit() {
        let (urls, images) = mixed();
        let limit = images[0].len().max(images[1].len());
        let mut big = urls.clone();
        big[2] = data_url("image/jpeg", &[sample_jpeg(3), vec![0; limit]].concat());
        match zip_of(&big, "frame_list", limit) {
            Err(Error::FrameTooLarge {
                field: "frame_list",
                index: 2,
                limit: l,
            }) => assert_eq!(l, limit),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Frames whose JSON escapes `/` (PHP's `\/`, or `\u002f`) give the very same archive.
    #[test]
    fn escaped_frames_give_the_same_zip_bytes() {
        let (mut urls, _) = mixed();
        // Large frames too, so escapes fall in the word-at-a-time path, not only in the tail.
        urls.extend((0..4u8).map(|i| {
            let mut image = sample_jpeg(i);
            image.extend((0..20_000u32).map(|b| (b * 13 + u32::from(i)) as u8));
            data_url("image/jpeg", &image)
        }));
        let plain = zip_of(&urls, "frame_list", 1 << 20).expect("zip");
        for spelling in SPELLINGS {
            let lits = literals(&urls, spelling);
            if !matches!(spelling, Spelling::Plain) {
                assert!(frames(&lits).iter().all(Frame::has_escapes));
            }
            let zip = zip_spelled(&urls, spelling, "frame_list", 1 << 20).expect("zip");
            assert!(zip == plain, "{spelling:?} gives other bytes");
        }
    }

    /// A frame whose escapes are valid JSON syntax but no text (half a surrogate pair) is
    /// refused with its index, without its content.
    #[test]
    fn a_frame_that_does_not_unescape_is_reported_with_its_index() {
        let (urls, _) = mixed();
        let mut lits = literals(&urls, Spelling::Slashes);
        lits[1] = r#""data:image\/jpeg;base64,SECRETMARKER\uD800AAA""#.to_owned();
        match build_zip(
            &frames(&lits),
            "frame_list",
            &mut FrameDecoder::new(),
            1 << 20,
            &mut FrameDigests::default(),
        ) {
            Err(Error::BadFrame {
                field: "frame_list",
                index: 1,
                reason,
            }) => {
                assert!(reason.starts_with("is not a valid JSON string"), "{reason}");
                assert!(!reason.contains("SECRETMARKER"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// An escape that stands for a character a data URL cannot hold is refused with the frame's
    /// index, like that character written plainly.
    #[test]
    fn an_escape_giving_a_non_base64_character_is_reported_with_its_index() {
        let (urls, _) = mixed();
        for (escape, want) in [
            (r"\n", "whitespace at offset 30"),
            (r"\u0021", "invalid character at offset 30"),
            (r#"\""#, "invalid character at offset 30"),
        ] {
            let mut lits = literals(&urls, Spelling::Slashes);
            // Replace the 30th character of the data URL (8 into the base64) with the escape.
            let url = &urls[2];
            lits[2] = format!(
                "\"{}{escape}{}\"",
                url[..30].replace('/', r"\/"),
                url[31..].replace('/', r"\/")
            );
            match build_zip(
                &frames(&lits),
                "frame_list",
                &mut FrameDecoder::new(),
                1 << 20,
                &mut FrameDigests::default(),
            ) {
                Err(Error::BadFrame {
                    field: "frame_list",
                    index: 2,
                    reason,
                }) => assert!(reason.contains(want), "{escape}: {reason}"),
                other => panic!("{escape}: unexpected {other:?}"),
            }
        }
    }
}
