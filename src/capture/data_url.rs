//! Decodes one frame's data URL (`data:image/jpeg;base64,…` or `data:image/png;base64,…`) into
//! image bytes, strictly.
//!
//! Only those two exact prefixes are accepted, followed by padded standard base64 (RFC 4648 §4)
//! with no whitespace: that is what browsers' `canvas.toDataURL` produces, and every looser form
//! would be a second parser with its own edge cases. The decoded size is checked against the limit
//! from the base64 length alone, before any byte is decoded, and the result must start with the
//! magic bytes of the declared type. Error reasons describe the problem, never the data.

use base64::Engine as _;

const JPEG_PREFIX: &str = "data:image/jpeg;base64,";
const PNG_PREFIX: &str = "data:image/png;base64,";
/// JPEG SOI marker plus the first byte of the next marker (ITU T.81 §B.2.1).
const JPEG_MAGIC: &[u8] = &[0xFF, 0xD8, 0xFF];
/// PNG signature (ISO/IEC 15948 §5.2).
const PNG_MAGIC: &[u8] = &[0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
/// How far into the URL the media type is looked for when reporting an unsupported one, so a
/// multi-megabyte string without a comma is not scanned just to word an error.
const MEDIA_TYPE_SCAN: usize = 128;

/// The image types a frame may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    Jpeg,
    Png,
}

impl ImageKind {
    /// File extension used for ZIP entries and part file names.
    pub fn extension(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "jpg",
            ImageKind::Png => "png",
        }
    }

    /// The media type, as in the data URL and a multipart part's `Content-Type`.
    pub fn media_type(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Png => "image/png",
        }
    }

    /// The type the bytes really are, judged by their magic bytes.
    pub fn sniff(bytes: &[u8]) -> Option<ImageKind> {
        if bytes.starts_with(JPEG_MAGIC) {
            Some(ImageKind::Jpeg)
        } else if bytes.starts_with(PNG_MAGIC) {
            Some(ImageKind::Png)
        } else {
            None
        }
    }
}

/// Why a data URL was refused. The caller adds the field and frame index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataUrlError {
    /// The decoded image would exceed the limit.
    TooLarge,
    /// Not a usable image; the reason never contains input data.
    Invalid(String),
}

/// Base64 engine: SIMD (AVX2 or NEON, detected at run time, scalar fallback) where the crate
/// offers it, about 4 times the scalar throughput on 60 KB frames (docs/dependencies.md, "base64: the SIMD engine").
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
type B64 = base64::engine::Simd;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
type B64 = base64::engine::GeneralPurpose;

/// A strict data-URL decoder. Build one per capture and reuse it for every frame: building it
/// runs the CPU feature detection.
#[derive(Debug, Clone)]
pub struct DataUrlDecoder {
    engine: B64,
}

impl Default for DataUrlDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl DataUrlDecoder {
    /// A decoder for padded standard base64 that rejects non-canonical trailing bits.
    pub fn new() -> Self {
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        let engine = base64::engine::Simd::standard(base64::engine::general_purpose::PAD);
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let engine = base64::engine::general_purpose::STANDARD;
        Self { engine }
    }

    /// Decodes `url` and appends the image bytes to `out`, returning the image type.
    ///
    /// `url` is bytes, not `str`: a frame unescaped from its JSON literal need not be proven
    /// UTF-8 first, since anything outside ASCII is refused here anyway.
    ///
    /// `out` is only grown, never shrunk below its previous length, so a caller that clears and
    /// reuses one buffer decodes every frame without allocating once the buffer is large enough.
    /// On error `out` holds its previous contents plus unspecified bytes; callers clear it anyway.
    pub fn decode_into(
        &self,
        url: &[u8],
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> Result<ImageKind, DataUrlError> {
        let (declared, b64) = split_data_url(url)?;
        let offset = url.len() - b64.len();

        let decoded_len = exact_decoded_len(b64)?;
        if decoded_len > max_bytes {
            return Err(DataUrlError::TooLarge);
        }

        // The engine wants room for its conservative estimate (3 bytes per 4 symbols), which is at
        // most 2 bytes above the exact length; it writes only the decoded bytes.
        let start = out.len();
        out.resize(start + b64.len() / 4 * 3, 0);
        let written = match self.engine.decode_slice(b64, &mut out[start..]) {
            Ok(n) => n,
            Err(e) => return Err(DataUrlError::Invalid(base64_reason(&e, offset))),
        };
        out.truncate(start + written);

        let image = &out[start..];
        match ImageKind::sniff(image) {
            Some(actual) if actual == declared => Ok(declared),
            Some(actual) => Err(DataUrlError::Invalid(format!(
                "declared {} but data is a {}",
                declared.media_type(),
                kind_name(actual)
            ))),
            None => Err(DataUrlError::Invalid(format!(
                "declared {} but data is not a {}",
                declared.media_type(),
                kind_name(declared)
            ))),
        }
    }
}

fn kind_name(kind: ImageKind) -> &'static str {
    match kind {
        ImageKind::Jpeg => "JPEG",
        ImageKind::Png => "PNG",
    }
}

/// Splits a data URL into its declared type and base64 text, accepting only the two exact prefixes.
fn split_data_url(url: &[u8]) -> Result<(ImageKind, &[u8]), DataUrlError> {
    if let Some(rest) = url.strip_prefix(JPEG_PREFIX.as_bytes()) {
        return Ok((ImageKind::Jpeg, rest));
    }
    if let Some(rest) = url.strip_prefix(PNG_PREFIX.as_bytes()) {
        return Ok((ImageKind::Png, rest));
    }
    let Some(after_scheme) = url.strip_prefix(b"data:") else {
        return Err(DataUrlError::Invalid(
            "not a data URL (expected `data:image/jpeg;base64,` or `data:image/png;base64,`)"
                .into(),
        ));
    };
    // The media type is the client's text like the rest of the URL, and reasons reach the
    // logs and the client: only a name from `KNOWN_MEDIA_TYPES` is given back, in this crate's
    // own spelling, never the client's bytes.
    let head = &after_scheme[..after_scheme.len().min(MEDIA_TYPE_SCAN)];
    let end = head.iter().position(|&b| b == b';' || b == b',');
    let media_type = end.map(|e| &head[..e]);
    match media_type {
        Some(b"image/jpeg") | Some(b"image/png") => Err(DataUrlError::Invalid(
            "not base64-encoded (expected `;base64,` right after the media type)".into(),
        )),
        Some(mt)
            if mt.eq_ignore_ascii_case(b"image/jpeg") || mt.eq_ignore_ascii_case(b"image/png") =>
        {
            Err(DataUrlError::Invalid(
                "media type must be written in lowercase (`image/jpeg` or `image/png`), as \
                 browsers write it"
                    .into(),
            ))
        }
        Some(mt) => match KNOWN_MEDIA_TYPES
            .iter()
            .find(|k| k.as_bytes().eq_ignore_ascii_case(mt))
        {
            Some(known) => Err(DataUrlError::Invalid(format!(
                "unsupported media type {known} (expected image/jpeg or image/png)"
            ))),
            None => Err(DataUrlError::Invalid(
                "unsupported or malformed media type (expected image/jpeg or image/png)".into(),
            )),
        },
        None => Err(DataUrlError::Invalid(
            "unsupported or malformed media type (expected image/jpeg or image/png)".into(),
        )),
    }
}

/// Media types a client may send by mistake and that an error may name: what browsers'
/// `canvas.toDataURL` and image pipelines produce besides JPEG and PNG.
const KNOWN_MEDIA_TYPES: &[&str] = &[
    "image/jpg",
    "image/pjpeg",
    "image/x-png",
    "image/apng",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/bmp",
    "image/tiff",
    "image/heic",
    "image/heif",
    "image/svg+xml",
    "image/x-icon",
    "application/octet-stream",
    "text/plain",
];

/// The exact decoded length of padded base64, from its length and trailing `=` alone.
fn exact_decoded_len(b64: &[u8]) -> Result<usize, DataUrlError> {
    if b64.is_empty() {
        return Err(DataUrlError::Invalid("empty image data".into()));
    }
    if !b64.len().is_multiple_of(4) {
        return Err(DataUrlError::Invalid(
            "not base64 (length is not a multiple of 4; expected padded base64 without whitespace)"
                .into(),
        ));
    }
    let pad = b64.iter().rev().take(2).take_while(|&&b| b == b'=').count();
    Ok(b64.len() / 4 * 3 - pad)
}

/// Words a base64 failure by position and kind, never by content (except to say "whitespace").
fn base64_reason(err: &base64::DecodeSliceError, offset: usize) -> String {
    use base64::{DecodeError as D, DecodeSliceError as S};
    match err {
        S::DecodeError(D::InvalidByte(at, b)) if b.is_ascii_whitespace() => format!(
            "not base64 (whitespace at offset {}; whitespace is not allowed)",
            offset + at
        ),
        S::DecodeError(D::InvalidByte(at, _)) => {
            format!("not base64 (invalid character at offset {})", offset + at)
        }
        S::DecodeError(D::InvalidLength(_)) => "not base64 (invalid length)".into(),
        S::DecodeError(D::InvalidLastSymbol { offset: at, .. }) => format!(
            "not base64 (non-canonical final symbol at offset {})",
            offset + at
        ),
        S::DecodeError(D::InvalidPadding) => "not base64 (invalid padding)".into(),
        S::OutputSliceTooSmall => "not base64".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::testdata::{data_url, sample_jpeg, sample_png};
    use base64::engine::general_purpose::STANDARD;

    const MAX: usize = 1 << 20;

    fn decode(url: &str) -> Result<(ImageKind, Vec<u8>), DataUrlError> {
        let mut out = Vec::new();
        DataUrlDecoder::new()
            .decode_into(url.as_bytes(), MAX, &mut out)
            .map(|k| (k, out))
    }

    fn reason(url: &str) -> String {
        match decode(url) {
            Err(DataUrlError::Invalid(r)) => r,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn decodes_jpeg_and_png() {
        let jpeg = sample_jpeg(7);
        let png = sample_png(7);
        assert_eq!(
            decode(&data_url("image/jpeg", &jpeg)).expect("jpeg"),
            (ImageKind::Jpeg, jpeg)
        );
        assert_eq!(
            decode(&data_url("image/png", &png)).expect("png"),
            (ImageKind::Png, png)
        );
    }

    #[test]
    fn decodes_large_frames_through_the_simd_path() {
        // Well above the SIMD engine's 64-byte threshold and not a multiple of 3, so both the
        // vector loop and the padded tail run.
        let mut big = sample_jpeg(1);
        big.extend((0..100_001u32).map(|i| (i % 251) as u8));
        let (_, got) = decode(&data_url("image/jpeg", &big)).expect("big jpeg");
        assert_eq!(got, big);
    }

    #[test]
    fn appends_to_the_buffer_and_reuses_it() {
        let d = DataUrlDecoder::new();
        let mut out = b"keep".to_vec();
        let jpeg = sample_jpeg(3);
        d.decode_into(data_url("image/jpeg", &jpeg).as_bytes(), MAX, &mut out)
            .expect("ok");
        assert_eq!(&out[..4], b"keep");
        assert_eq!(&out[4..], &jpeg[..]);
        out.clear();
        let cap = out.capacity();
        d.decode_into(data_url("image/jpeg", &jpeg).as_bytes(), MAX, &mut out)
            .expect("ok");
        assert_eq!(out, jpeg);
        assert_eq!(out.capacity(), cap, "no reallocation for a same-size frame");
    }

    #[test]
    fn size_limit_is_checked_before_decoding() {
        let jpeg = sample_jpeg(1);
        let url = data_url("image/jpeg", &jpeg);
        let mut out = Vec::new();
        let d = DataUrlDecoder::new();
        assert!(d.decode_into(url.as_bytes(), jpeg.len(), &mut out).is_ok());
        out.clear();
        assert_eq!(
            d.decode_into(url.as_bytes(), jpeg.len() - 1, &mut out),
            Err(DataUrlError::TooLarge)
        );
        assert!(out.is_empty(), "nothing decoded for an oversized frame");
        // Invalid base64 that is too large is refused for size, without being decoded.
        let junk = format!("data:image/jpeg;base64,{}", "!".repeat(4000));
        assert_eq!(
            d.decode_into(junk.as_bytes(), 100, &mut out),
            Err(DataUrlError::TooLarge)
        );
    }

    #[test]
    fn exact_decoded_len_counts_padding() {
        for n in 1..40usize {
            let bytes = vec![0xABu8; n];
            let b64 = STANDARD.encode(&bytes);
            assert_eq!(exact_decoded_len(b64.as_bytes()), Ok(n));
        }
    }

    #[test]
    fn rejects_corrupt_base64() {
        let mut b64 = STANDARD.encode(sample_jpeg(1));
        b64.replace_range(8..9, "*");
        let r = reason(&format!("{JPEG_PREFIX}{b64}"));
        assert!(r.starts_with("not base64"), "{r}");
        assert!(
            r.contains(&format!("offset {}", JPEG_PREFIX.len() + 8)),
            "{r}"
        );
    }

    #[test]
    fn rejects_whitespace_in_base64() {
        let b64 = STANDARD.encode(sample_jpeg(1));
        // A line break that keeps the length a multiple of 4 still fails, as whitespace.
        let r = reason(&format!("{JPEG_PREFIX}{}\r\n{}", &b64[..20], &b64[22..]));
        assert!(r.contains("whitespace"), "{r}");
        let r = reason(&format!("{JPEG_PREFIX} {}", &b64[1..]));
        assert!(r.contains("whitespace"), "{r}");
        let r = reason(&format!("{JPEG_PREFIX}{b64}\n"));
        assert!(r.starts_with("not base64"), "{r}");
    }

    #[test]
    fn rejects_missing_padding_and_non_canonical_bits() {
        // 4 bytes encode to "AAECAw==": drop the padding, or flip discarded trailing bits.
        let r = reason(&format!("{JPEG_PREFIX}/9j/4A"));
        assert!(r.starts_with("not base64"), "{r}");
        let r = reason(&format!("{JPEG_PREFIX}/9j/4B=="));
        assert!(r.contains("non-canonical"), "{r}");
    }

    #[test]
    fn rejects_non_images_and_mismatched_types() {
        let r = reason(&data_url("image/jpeg", b"just some text, not an image"));
        assert_eq!(r, "declared image/jpeg but data is not a JPEG");
        let r = reason(&data_url("image/jpeg", &sample_png(1)));
        assert_eq!(r, "declared image/jpeg but data is a PNG");
        let r = reason(&data_url("image/png", &sample_jpeg(1)));
        assert_eq!(r, "declared image/png but data is a JPEG");
        let r = reason(&data_url("image/png", b"\x89PNG"));
        assert_eq!(r, "declared image/png but data is not a PNG");
        assert_eq!(reason("data:image/jpeg;base64,"), "empty image data");
    }

    #[test]
    fn rejects_other_media_types_and_forms() {
        let gif = reason(&data_url("image/gif", b"GIF89a"));
        assert_eq!(
            gif,
            "unsupported media type image/gif (expected image/jpeg or image/png)"
        );
        assert!(reason("data:image/jpeg,abcd").contains("`;base64,`"));
        assert!(reason("data:image/jpeg;charset=x;base64,abcd").contains("`;base64,`"));
        assert!(reason("DATA:image/jpeg;base64,abcd").starts_with("not a data URL"));
        assert!(reason("/9j/4AAQSkZJRg==").starts_with("not a data URL"));
        assert!(reason("data:IMAGE/JPEG;base64,abcd").contains("lowercase"));
        assert_eq!(
            reason("data:IMAGE/WEBP;base64,abcd"),
            "unsupported media type image/webp (expected image/jpeg or image/png)"
        );
        assert_eq!(
            reason("data:image/made-up;base64,abcd"),
            "unsupported or malformed media type (expected image/jpeg or image/png)"
        );
    }

    /// `capture::frame` decodes a frame's JSON text as it is, unescaping only when that fails:
    /// sound only because no text with a backslash is ever accepted.
    #[test]
    fn a_backslash_anywhere_is_refused() {
        let url = data_url("image/jpeg", &sample_jpeg(1));
        let d = DataUrlDecoder::new();
        for at in 0..url.len() {
            for with in [r"\", r"\/"] {
                let mut bad = url.clone();
                bad.replace_range(at..at + 1, with);
                let mut out = Vec::new();
                assert!(
                    d.decode_into(bad.as_bytes(), MAX, &mut out).is_err(),
                    "{at}"
                );
            }
        }
    }

    #[test]
    fn reasons_never_echo_data() {
        let secret = "SECRETMARKER";
        for url in [
            format!("data:{secret};base64,AAAA"),
            format!("data:{secret}/x{};base64,AAAA", "y".repeat(80)),
            // Shaped like a media type, but still the client's text.
            format!("data:image/{secret};base64,AAAA"),
            format!("data:{secret}/jpeg,AAAA"),
            format!("data:image/jpeg;base64,{secret}"),
            format!("data:image/jpeg;base64,{secret}AAAA"),
            data_url("image/jpeg", secret.as_bytes()),
            format!("{secret}data:image/jpeg;base64,AAAA"),
        ] {
            let r = reason(&url);
            assert!(!r.contains(secret), "{r}");
        }
    }
}
