//! Checks the media files of an upload: a shots-set ZIP must open and hold images, an image
//! must be the format its content type claims.
//!
//! Follows docs/oz-api.md §2.2 (the media type comes from the part's MIME type), §2.4 (a ZIP of
//! frames is a `SHOTS_SET`) and §2.7 (frames are JPEG files at the ZIP root). The format checks
//! catch the classic capture bug of zipping base64 text instead of decoded JPEG bytes.

use std::io::{Cursor, Read};

use zip::ZipArchive;

use super::error::ApiError;

/// The Oz media types (docs/oz-api.md §2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaType {
    /// A ZIP of frames, which Oz treats as a video.
    ShotsSet,
    /// A single photo.
    Image,
    /// A video container (MP4, MOV, …).
    Video,
}

impl MediaType {
    /// The wire name Oz reports.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::ShotsSet => "SHOTS_SET",
            MediaType::Image => "IMAGE",
            MediaType::Video => "VIDEO",
        }
    }

    /// The media type for a part's content type, as Oz decides it from the MIME type.
    pub fn from_content_type(essence: &str) -> Option<MediaType> {
        match essence {
            "application/zip" | "application/x-zip-compressed" => Some(MediaType::ShotsSet),
            "image/jpeg" | "image/png" => Some(MediaType::Image),
            // docs/oz-api.md §6.3, the video MIME types the old docs list.
            "video/mpeg" | "video/mp4" | "video/ogg" | "video/quicktime" | "video/webm"
            | "video/x-ms-wmv" | "video/x-msvideo" => Some(MediaType::Video),
            _ => None,
        }
    }
}

/// An image format recognised by its signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ImageFormat {
    Jpeg,
    Png,
}

fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else {
        None
    }
}

/// A hint for bytes that are no image: base64 or data-URL text is the usual culprit.
fn not_an_image_hint(bytes: &[u8]) -> &'static str {
    let head = &bytes[..bytes.len().min(64)];
    if head.starts_with(b"data:") {
        " (it starts with \"data:\": a data URL that was not decoded)"
    } else if !head.is_empty()
        && head
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=\r\n".contains(b))
    {
        " (it looks like base64 text that was not decoded)"
    } else {
        ""
    }
}

/// Checks a photo part against its content type (`image/jpeg` or `image/png`).
pub fn check_image(part: &str, essence: &str, bytes: &[u8]) -> Result<(), ApiError> {
    let want = if essence == "image/png" {
        ImageFormat::Png
    } else {
        ImageFormat::Jpeg
    };
    match sniff(bytes) {
        Some(got) if got == want => Ok(()),
        Some(got) => Err(ApiError::kind(format!(
            "file part {part:?} is labelled {essence} but holds a {got:?} image"
        ))),
        None => Err(ApiError::kind(format!(
            "file part {part:?} is labelled {essence} but is not a JPEG or PNG image{}",
            not_an_image_hint(bytes)
        ))),
    }
}

/// Opens a shots-set ZIP and returns its file entries, in archive order.
///
/// The simulator's zip build has no decompressors (the proxy stores frames uncompressed, since
/// JPEGs do not shrink), so a compressed entry is refused with a message that says so. Reading
/// an entry to its end also checks its CRC-32.
pub fn read_zip(part: &str, bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
    let corrupt = |e: &dyn std::fmt::Display| {
        ApiError::kind(format!(
            "file part {part:?} is labelled as a ZIP but does not open as one: {e}"
        ))
    };
    let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(|e| corrupt(&e))?;
    let mut entries = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(|e| corrupt(&e))?;
        let name = file.name().map_err(|e| corrupt(&e))?.into_owned();
        if file.is_dir() {
            continue;
        }
        if file.encrypted() {
            return Err(ApiError::kind(format!(
                "ZIP entry {name:?} in file part {part:?} is encrypted"
            )));
        }
        if file.compression() != zip::CompressionMethod::Stored {
            return Err(ApiError::kind(format!(
                "ZIP entry {name:?} in file part {part:?} uses compression {}; this simulator \
                 reads only stored (uncompressed) entries",
                file.compression()
            )));
        }
        let mut data = Vec::with_capacity(file.size().min(bytes.len() as u64) as usize);
        file.read_to_end(&mut data)
            .map_err(|e| corrupt(&format_args!("entry {name:?}: {e}")))?;
        check_frame(part, &name, &data)?;
        entries.push((name, data));
    }
    if entries.is_empty() {
        return Err(ApiError::value(format!(
            "the ZIP in file part {part:?} has no entries; a shots set needs at least one frame"
        )));
    }
    Ok(entries)
}

/// A frame in a shots set must be an image, and a `.jpg`/`.png` name must match its bytes.
fn check_frame(part: &str, name: &str, data: &[u8]) -> Result<(), ApiError> {
    let lower = name.to_ascii_lowercase();
    let named = if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
        Some(ImageFormat::Jpeg)
    } else if lower.ends_with(".png") {
        Some(ImageFormat::Png)
    } else {
        None
    };
    match (sniff(data), named) {
        (None, _) => Err(ApiError::kind(format!(
            "ZIP entry {name:?} in file part {part:?} is not a JPEG or PNG image{}",
            not_an_image_hint(data)
        ))),
        (Some(got), Some(named)) if got != named => Err(ApiError::kind(format!(
            "ZIP entry {name:?} in file part {part:?} holds a {got:?} image, which its extension \
             does not say"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipWriter};

    use super::*;

    const JPEG: &[u8] = &[
        0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0xFF, 0xD9,
    ];

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        for (name, data) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn reads_entries_in_order() {
        let z = zip_of(&[("000001.jpg", JPEG), ("000002.jpg", JPEG)]);
        let entries = read_zip("video1", &z).unwrap();
        let names: Vec<_> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["000001.jpg", "000002.jpg"]);
        assert_eq!(entries[0].1, JPEG);
    }

    #[test]
    fn refuses_empty_corrupt_and_undecoded() {
        assert!(read_zip("v", &zip_of(&[]))
            .unwrap_err()
            .message
            .contains("no entries"));
        assert!(read_zip("v", b"PK\x03\x04garbage")
            .unwrap_err()
            .message
            .contains("does not open"));
        let b64 = zip_of(&[("000001.jpg", b"/9j/4AAQSkZJRgABAQ==")]);
        assert!(read_zip("v", &b64).unwrap_err().message.contains("base64"));
        let png_named_jpg = zip_of(&[("000001.jpg", b"\x89PNG\r\n\x1a\n....")]);
        assert!(read_zip("v", &png_named_jpg)
            .unwrap_err()
            .message
            .contains("extension"));
    }

    #[test]
    fn flipped_byte_in_entry_fails_crc() {
        let mut z = zip_of(&[("000001.jpg", JPEG)]);
        // The stored data follows the 30-byte local header and the 10-byte name.
        z[30 + 10 + 5] ^= 0xFF;
        assert!(read_zip("v", &z).is_err());
    }

    #[test]
    fn images_must_match_their_label() {
        assert!(check_image("p", "image/jpeg", JPEG).is_ok());
        assert!(check_image("p", "image/png", JPEG).is_err());
        assert!(check_image("p", "image/jpeg", b"data:image/jpeg;base64,")
            .unwrap_err()
            .message
            .contains("data URL"));
    }
}
