//! Sample captures for tests and the `demo` command: real, decodable images and the JSON the
//! Web SDK's `on_capture_complete` produces, in both shapes.
//!
//! Public (not `cfg(test)`) because `demo` and the integration tests push these through the real
//! proxy. Everything is generated in code, deterministically from a seed, so no binary fixtures
//! live in the repository.

use base64::Engine as _;

/// The `additional_info` string every sample carries. It holds JSON and a `/`, like the SDK's
/// environment report, so tests can check it is forwarded byte for byte, escaping included.
pub const SAMPLE_ADDITIONAL_INFO: &str =
    r#"{"sdk":"oz-liveness-web/1.9.2","user_agent":"Mozilla/5.0 (X11; Linux x86_64)"}"#;

/// A valid 8×8 grey baseline JPEG (ITU T.81), different for every seed.
///
/// One component, one block, DC only: a single-code Huffman table for DC category 8 and one for
/// the end-of-block symbol keep the entropy-coded data at two bytes. The grey level comes from the
/// seed (it sets the DC difference), and a comment segment carries the seed as well, so all 256
/// seeds give distinct files.
pub fn sample_jpeg(seed: u8) -> Vec<u8> {
    numbered_jpeg(seed, None)
}

/// [`sample_jpeg`], or with `Some(n)` picture number `n` of a series: `n` is in the comment and,
/// as sixteen nibbles, in AC steps of the quantization table, which the DC-only picture never
/// uses, so it looks the same but every number is another picture to the replay guard (which
/// reads the tables and scans, not the comments: `capture::digest`).
fn numbered_jpeg(seed: u8, n: Option<u64>) -> Vec<u8> {
    let mut j = Vec::with_capacity(192);
    j.extend_from_slice(&[0xFF, 0xD8]); // SOI
                                        // APP0: JFIF 1.01, no density units, 1:1, no thumbnail.
    jpeg_segment(
        &mut j,
        0xE0,
        &[b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0],
    );
    let comment = match n {
        None => format!("oz-capture-proxy sample {seed}"),
        Some(n) => format!("oz-capture-proxy sample {seed}, capture {n}"),
    };
    jpeg_segment(&mut j, 0xFE, comment.as_bytes());
    // DQT: table 0, 8-bit precision, every step 1 (but the AC steps a number sets).
    let mut dqt = [1u8; 65];
    dqt[0] = 0x00;
    if let Some(n) = n {
        for (i, step) in dqt[2..18].iter_mut().enumerate() {
            *step = ((n >> (4 * i)) & 0xF) as u8 + 1;
        }
    }
    jpeg_segment(&mut j, 0xDB, &dqt);
    // SOF0: 8-bit, 8 lines, 8 columns, one component (id 1, 1×1 sampling, table 0).
    jpeg_segment(&mut j, 0xC0, &[8, 0, 8, 0, 8, 1, 1, 0x11, 0]);
    // DHT: DC table 0 and AC table 0, each one code of length 1 ("0"): DC category 8, AC EOB.
    for (class_id, symbol) in [(0x00u8, 8u8), (0x10, 0x00)] {
        let mut dht = [0u8; 18];
        dht[0] = class_id;
        dht[1] = 1; // one code of length 1
        dht[17] = symbol;
        jpeg_segment(&mut j, 0xC4, &dht);
    }
    // SOS: one component using tables 0/0, spectral 0..63, no approximation.
    jpeg_segment(&mut j, 0xDA, &[1, 1, 0x00, 0, 63, 0]);
    // Entropy-coded data: DC code "0", 8 bits of the (positive, 128..=255) difference, AC code
    // "0" (EOB), then 1-bits to the byte boundary. Neither byte can be 0xFF.
    let dc = 0x80 | u16::from(seed & 0x7F);
    j.push((dc >> 1) as u8);
    j.push((((dc & 1) << 7) as u8) | 0x3F);
    j.extend_from_slice(&[0xFF, 0xD9]); // EOI
    j
}

fn jpeg_segment(out: &mut Vec<u8>, marker: u8, body: &[u8]) {
    let len = u16::try_from(body.len() + 2).expect("sample segments are tiny");
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
}

/// A valid 4×4 RGB PNG (ISO/IEC 15948), different for every seed.
///
/// The zlib stream holds one stored (uncompressed) deflate block, so no compressor is needed;
/// CRC-32 and Adler-32 are computed here.
pub fn sample_png(seed: u8) -> Vec<u8> {
    const W: u8 = 4;
    const H: u8 = 4;
    let mut raw = Vec::with_capacity(usize::from(H) * (1 + 3 * usize::from(W)));
    for y in 0..H {
        raw.push(0); // filter type None
        for x in 0..W {
            raw.extend_from_slice(&[seed, x * 64, y * 64]);
        }
    }
    let len = u16::try_from(raw.len()).expect("tiny image");
    // zlib header 0x78 0x01 (deflate, 32 KiB window, no dictionary; 0x7801 % 31 == 0), then a
    // final stored block: BFINAL=1 BTYPE=00, LEN, NLEN, bytes (RFC 1950, RFC 1951 §3.2.4).
    let mut zlib = vec![0x78, 0x01, 0x01];
    zlib.extend_from_slice(&len.to_le_bytes());
    zlib.extend_from_slice(&(!len).to_le_bytes());
    zlib.extend_from_slice(&raw);
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&u32::from(W).to_be_bytes());
    ihdr.extend_from_slice(&u32::from(H).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, truecolour, deflate, adaptive, no interlace
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(&mut png, b"IDAT", &zlib);
    png_chunk(&mut png, b"IEND", &[]);
    png
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let len = u32::try_from(data.len()).expect("tiny chunk");
    out.extend_from_slice(&len.to_be_bytes());
    let crc_start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[crc_start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// CRC-32 (ISO 3309, reflected 0xEDB88320), bit by bit: samples are a few hundred bytes.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Adler-32 (RFC 1950 §8).
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

/// `data:{media_type};base64,{padded standard base64}`, as `canvas.toDataURL` writes it.
pub fn data_url(media_type: &str, bytes: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!("data:{media_type};base64,{b64}")
}

/// The frames [`sample_capture_json`] puts in `frame_list`, decoded: `sample_jpeg(i)` for frame `i`.
pub fn sample_frames(frames: usize) -> Vec<Vec<u8>> {
    (0..frames).map(|i| sample_jpeg(i as u8)).collect()
}

/// A sample `on_capture_complete` body with `frames` JPEG frames, in the plain shape or the
/// virtual-camera shape, with best frames, boxes, landmarks and [`SAMPLE_ADDITIONAL_INFO`].
pub fn sample_capture_json(frames: usize, virtual_camera: bool, action: &str) -> Vec<u8> {
    SampleCapture::new(frames, virtual_camera, action).to_json()
}

/// Like [`sample_capture_json`], but with every `/` escaped as `\/`, as PHP's `json_encode` and
/// some other encoders write it (so every frame must be unescaped before it is decoded).
pub fn sample_capture_json_escaped(frames: usize, virtual_camera: bool, action: &str) -> Vec<u8> {
    let mut c = SampleCapture::new(frames, virtual_camera, action);
    c.escape_slashes = true;
    c.to_json()
}

/// A capture body under construction; change any field, then call [`SampleCapture::to_json`].
///
/// String fields hold the JSON *values* (they are escaped when written), so a test can put a
/// broken data URL into `frames` or drop `additional_info`.
#[derive(Debug, Clone)]
pub struct SampleCapture {
    /// `action`, always at the top level.
    pub action: String,
    /// `frame_list` entries (data URLs, or anything a test wants).
    pub frames: Vec<String>,
    /// `best_frame`: a JPEG data URL, or `null` when `None`.
    pub best_frame: Option<String>,
    /// `best_frame_png`: a PNG data URL, or `null` when `None`.
    pub best_frame_png: Option<String>,
    /// The `additional_info` string; the field is left out when `None`.
    pub additional_info: Option<String>,
    /// Put everything under `from_virtual_camera` and null the top-level fields.
    pub virtual_camera: bool,
    /// Write `/` as `\/` everywhere.
    pub escape_slashes: bool,
}

impl SampleCapture {
    /// `frames` JPEG frames (`sample_jpeg(0..frames)`), a JPEG and a PNG best frame.
    pub fn new(frames: usize, virtual_camera: bool, action: &str) -> Self {
        SampleCapture {
            action: action.to_owned(),
            frames: sample_frames(frames)
                .iter()
                .map(|f| data_url("image/jpeg", f))
                .collect(),
            best_frame: Some(data_url("image/jpeg", &sample_jpeg(200))),
            best_frame_png: Some(data_url("image/png", &sample_png(200))),
            additional_info: Some(SAMPLE_ADDITIONAL_INFO.to_owned()),
            virtual_camera,
            escape_slashes: false,
        }
    }

    /// Like [`SampleCapture::new`], but capture number `n` of a series: every frame is another
    /// picture to the replay guard than the frames of every other number (`demo` and the soak
    /// send many captures, as many users would, not one capture many times).
    pub fn numbered(n: u64, frames: usize, virtual_camera: bool, action: &str) -> Self {
        let mut c = SampleCapture::new(frames, virtual_camera, action);
        c.frames = (0..frames)
            .map(|i| data_url("image/jpeg", &numbered_jpeg(i as u8, Some(n))))
            .collect();
        c
    }

    /// The JSON body, in the field order of the Web SDK documentation.
    pub fn to_json(&self) -> Vec<u8> {
        let fields = self.fields_json();
        let action = json_str(&self.action);
        let json = if self.virtual_camera {
            format!(
                concat!(
                    r#"{{"action":{},"best_frame":null,"best_frame_png":null,"#,
                    r#""best_frame_bounding_box":null,"best_frame_landmarks":null,"#,
                    r#""frame_list":null,"frame_bounding_box_list":null,"frame_landmarks":null,"#,
                    r#""from_virtual_camera":{{{}}}}}"#
                ),
                action, fields
            )
        } else {
            format!(r#"{{"action":{action},{fields},"from_virtual_camera":null}}"#)
        };
        if self.escape_slashes {
            // `/` occurs only inside strings in JSON, so escaping every one is still valid JSON.
            json.replace('/', "\\/").into_bytes()
        } else {
            json.into_bytes()
        }
    }

    /// The fields that sit at the top level or under `from_virtual_camera`, without braces.
    fn fields_json(&self) -> String {
        let bbox = r#"{"left":10,"top":12,"right":110,"bottom":140}"#;
        let marks = concat!(
            r#"{"left_eye":[40,50],"right_eye":[80,50],"nose_base":[60,80],"#,
            r#""mouth_bottom":[60,110],"left_ear":[20,70],"right_ear":[100,70]}"#
        );
        let frames: Vec<String> = self.frames.iter().map(|f| json_str(f)).collect();
        let n = self.frames.len();
        let mut out = String::new();
        if let Some(info) = &self.additional_info {
            out.push_str(&format!(r#""additional_info":{},"#, json_str(info)));
        }
        out.push_str(&format!(
            concat!(
                r#""best_frame":{},"best_frame_png":{},"best_frame_bounding_box":{},"#,
                r#""best_frame_landmarks":{},"frame_list":[{}],"#,
                r#""frame_bounding_box_list":[{}],"frame_landmarks":[{}]"#
            ),
            opt_json_str(self.best_frame.as_deref()),
            opt_json_str(self.best_frame_png.as_deref()),
            bbox,
            marks,
            frames.join(","),
            vec![bbox; n].join(","),
            vec![marks; n].join(","),
        ));
        out
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a str always serializes")
}

fn opt_json_str(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_owned(), json_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_known_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn numbered_captures_share_no_frame() {
        let (a, b) = (
            SampleCapture::numbered(1, 3, false, "video_selfie_blank"),
            SampleCapture::numbered(2, 3, false, "video_selfie_blank"),
        );
        for f in &a.frames {
            assert!(!b.frames.contains(f));
        }
        assert_eq!(a.frames.len(), 3);
    }

    #[test]
    fn jpeg_has_the_expected_markers_and_varies_with_seed() {
        let j = sample_jpeg(5);
        assert!(j.starts_with(&[0xFF, 0xD8, 0xFF, 0xE0]));
        assert!(j.ends_with(&[0xFF, 0xD9]));
        for marker in [0xDB, 0xC0, 0xC4, 0xDA] {
            assert!(
                j.windows(2).any(|w| w == [0xFF, marker]),
                "marker {marker:#x}"
            );
        }
        let all: std::collections::HashSet<Vec<u8>> = (0..=255).map(sample_jpeg).collect();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn png_has_signature_ihdr_and_iend() {
        let p = sample_png(9);
        assert!(p.starts_with(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR"));
        assert!(p.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]));
        assert_ne!(sample_png(1), sample_png(2));
    }

    #[test]
    fn sample_json_is_valid_in_both_shapes() {
        for vc in [false, true] {
            for body in [
                sample_capture_json(3, vc, "video_selfie_blank"),
                sample_capture_json_escaped(3, vc, "video_selfie_blank"),
            ] {
                let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
                let fields = if vc {
                    assert!(v["frame_list"].is_null());
                    &v["from_virtual_camera"]
                } else {
                    assert!(v["from_virtual_camera"].is_null());
                    &v
                };
                assert_eq!(fields["frame_list"].as_array().map(Vec::len), Some(3));
                assert_eq!(fields["additional_info"], SAMPLE_ADDITIONAL_INFO);
                assert_eq!(v["action"], "video_selfie_blank");
            }
        }
        let escaped = sample_capture_json_escaped(1, false, "video_selfie_blank");
        assert!(escaped.windows(16).any(|w| w == br"data:image\/jpeg"));
    }
}
