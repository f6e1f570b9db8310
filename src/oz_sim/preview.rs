//! Media previews: `GET /api/folders/{folder_id}/media/{media_id}/preview.mp4`, the target of the
//! `preview_url` in a folder's and an analysis's `source_media`, and the small MP4 it serves.
//!
//! Oz renders an MP4 of an uploaded shots set and points at it with `preview_url`
//! (docs/oz-api.md §2.7, §2.8). The simulator has no video to render, so it serves a minimal
//! ISO BMFF file instead (`ftyp`, then a `moov` with one empty video track, then a `free` box
//! naming the folder and media): well-formed, a few hundred bytes, the same bytes for the same
//! media every time, and no frames to decode.
//!
//! Which media have one: shots sets and videos of a multipart upload, as soon as the folder
//! exists. Images have none (nothing to render), nor does an OzCapsula container (opaque to the
//! simulator, docs/oz-api.md §4.7), nor an Instant API answer (nothing is stored to serve). The
//! path sits under `/api/`, so a preview needs the same access token as every other Oz call
//! (`dispatch` checks it) and answers misses with Oz's error body: 404, `error_code` 10.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::analyses::folder_not_found;
use super::error::ApiError;
use super::state::OzSim;
use super::wire::Rsp;

/// `GET /api/folders/{folder_id}/media/{media_id}/preview.mp4`.
pub(crate) fn get(sim: &OzSim, folder_id: &str, media_id: &str) -> Result<Rsp, ApiError> {
    let st = sim.lock();
    let folder = st
        .folders
        .get(folder_id)
        .ok_or_else(|| folder_not_found(folder_id))?;
    let media = folder
        .media
        .iter()
        .find(|m| m.id == media_id)
        .ok_or_else(|| {
            ApiError::not_found(format!("Media {media_id} not found in folder {folder_id}"))
        })?;
    if !media.has_preview {
        return Err(ApiError::not_found(format!(
            "Media {media_id} has no preview: only shots sets and videos of a multipart upload get one"
        )));
    }
    let mp4 = Bytes::from(mp4(folder_id, media_id));
    let len = mp4.len();
    let mut rsp = Response::new(Full::new(mp4));
    *rsp.status_mut() = StatusCode::OK;
    let headers = rsp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    Ok(rsp)
}

/// The preview's bytes: `ftyp` (major brand `isom`, compatible `isom iso2 mp41`), a `moov` with
/// a movie header and one video track without samples, and a `free` box with the ids, which
/// makes the file differ per media while staying the same for the same media.
pub(crate) fn mp4(folder_id: &str, media_id: &str) -> Vec<u8> {
    let ftyp = boxed(
        b"ftyp",
        &[
            &b"isom"[..],
            &0x200u32.to_be_bytes(),
            b"isom",
            b"iso2",
            b"mp41",
        ]
        .concat(),
    );
    let moov = boxed(b"moov", &[mvhd(), trak()].concat());
    let note = format!("oz-sim preview: folder {folder_id} media {media_id}");
    let free = boxed(b"free", note.as_bytes());
    [ftyp, moov, free].concat()
}

/// Timescale of the movie and its track: milliseconds.
const TIMESCALE: u32 = 1000;
/// The unity matrix of ISO/IEC 14496-12 §8.2.2, in 16.16 and 2.30 fixed point.
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

fn mvhd() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(0u32.to_be_bytes()); // creation time: fixed, so the bytes are deterministic
    b.extend(0u32.to_be_bytes()); // modification time
    b.extend(TIMESCALE.to_be_bytes());
    b.extend(0u32.to_be_bytes()); // duration: no samples
    b.extend(0x0001_0000u32.to_be_bytes()); // rate 1.0
    b.extend(0x0100u16.to_be_bytes()); // volume 1.0
    b.extend([0; 10]); // reserved
    b.extend(MATRIX.iter().flat_map(|v| v.to_be_bytes()));
    b.extend([0; 24]); // pre_defined
    b.extend(2u32.to_be_bytes()); // next track id
    full(b"mvhd", 0, 0, &b)
}

fn trak() -> Vec<u8> {
    boxed(b"trak", &[tkhd(), mdia()].concat())
}

fn tkhd() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(0u32.to_be_bytes()); // creation time
    b.extend(0u32.to_be_bytes()); // modification time
    b.extend(1u32.to_be_bytes()); // track id
    b.extend(0u32.to_be_bytes()); // reserved
    b.extend(0u32.to_be_bytes()); // duration
    b.extend([0; 8]); // reserved
    b.extend(0u16.to_be_bytes()); // layer
    b.extend(0u16.to_be_bytes()); // alternate group
    b.extend(0u16.to_be_bytes()); // volume: 0 for video
    b.extend(0u16.to_be_bytes()); // reserved
    b.extend(MATRIX.iter().flat_map(|v| v.to_be_bytes()));
    b.extend((640u32 << 16).to_be_bytes()); // width, 16.16
    b.extend((480u32 << 16).to_be_bytes()); // height, 16.16
                                            // Flags 3: enabled and in the movie.
    full(b"tkhd", 0, 3, &b)
}

fn mdia() -> Vec<u8> {
    let mut mdhd = Vec::new();
    mdhd.extend(0u32.to_be_bytes()); // creation time
    mdhd.extend(0u32.to_be_bytes()); // modification time
    mdhd.extend(TIMESCALE.to_be_bytes());
    mdhd.extend(0u32.to_be_bytes()); // duration
    mdhd.extend(0x55C4u16.to_be_bytes()); // language "und", packed ISO 639-2/T
    mdhd.extend(0u16.to_be_bytes()); // pre_defined
    let mut hdlr = Vec::new();
    hdlr.extend(0u32.to_be_bytes()); // pre_defined
    hdlr.extend(b"vide");
    hdlr.extend([0; 12]); // reserved
    hdlr.extend(b"oz-sim preview\0");
    boxed(
        b"mdia",
        &[
            full(b"mdhd", 0, 0, &mdhd),
            full(b"hdlr", 0, 0, &hdlr),
            minf(),
        ]
        .concat(),
    )
}

fn minf() -> Vec<u8> {
    // vmhd: graphics mode copy, opcolor 0; flags 1 as the standard requires.
    let vmhd = full(b"vmhd", 0, 1, &[0; 8]);
    // One data reference, "url " with flag 1: the media data is in this file.
    let dref = full(
        b"dref",
        0,
        0,
        &[&1u32.to_be_bytes()[..], &full(b"url ", 0, 1, &[])].concat(),
    );
    let dinf = boxed(b"dinf", &dref);
    // A sample table with no samples: every table present, every count zero.
    let zero = 0u32.to_be_bytes();
    let stbl = boxed(
        b"stbl",
        &[
            full(b"stsd", 0, 0, &zero),
            full(b"stts", 0, 0, &zero),
            full(b"stsc", 0, 0, &zero),
            full(b"stsz", 0, 0, &[zero, zero].concat()),
            full(b"stco", 0, 0, &zero),
        ]
        .concat(),
    );
    boxed(b"minf", &[vmhd, dinf, stbl].concat())
}

/// A box: 32-bit big-endian size (header included), the four-character type, the body.
fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let size = u32::try_from(8 + body.len()).expect("preview boxes are small");
    [&size.to_be_bytes()[..], kind, body].concat()
}

/// A full box: a box whose body starts with a version byte and 24 bits of flags.
fn full(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let head = (u32::from(version) << 24) | (flags & 0x00FF_FFFF);
    boxed(kind, &[&head.to_be_bytes()[..], body].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boxes in `data` as (type, body), checking that their sizes tile it exactly.
    fn boxes(data: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = vec![];
        let mut rest = data;
        while !rest.is_empty() {
            assert!(rest.len() >= 8, "a box header is cut off");
            let size = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            assert!(
                (8..=rest.len()).contains(&size),
                "box size {size} out of range"
            );
            out.push((rest[4..8].try_into().unwrap(), &rest[8..size]));
            rest = &rest[size..];
        }
        out
    }

    fn kinds(bs: &[([u8; 4], &[u8])]) -> Vec<String> {
        bs.iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    /// The children of the container box `kind` among `bs`.
    fn children<'a>(bs: &[([u8; 4], &'a [u8])], kind: &[u8; 4]) -> Vec<([u8; 4], &'a [u8])> {
        let (_, body) = bs.iter().find(|(k, _)| k == kind).expect("box present");
        boxes(body)
    }

    #[test]
    fn mp4_is_a_well_formed_box_tree() {
        let data = mp4("f1", "m1");
        assert!(data.len() < 1024, "{} bytes", data.len());
        let top = boxes(&data);
        assert_eq!(kinds(&top), ["ftyp", "moov", "free"]);
        let ftyp = top[0].1;
        assert_eq!(&ftyp[..4], b"isom");
        assert_eq!(&ftyp[8..], b"isomiso2mp41");
        let moov = children(&top, b"moov");
        assert_eq!(kinds(&moov), ["mvhd", "trak"]);
        assert_eq!(moov[0].1.len(), 100, "mvhd version 0 body");
        let trak = children(&moov, b"trak");
        assert_eq!(kinds(&trak), ["tkhd", "mdia"]);
        assert_eq!(trak[0].1.len(), 84, "tkhd version 0 body");
        let mdia = children(&trak, b"mdia");
        assert_eq!(kinds(&mdia), ["mdhd", "hdlr", "minf"]);
        let minf = children(&mdia, b"minf");
        assert_eq!(kinds(&minf), ["vmhd", "dinf", "stbl"]);
        let stbl = children(&minf, b"stbl");
        assert_eq!(kinds(&stbl), ["stsd", "stts", "stsc", "stsz", "stco"]);
    }

    #[test]
    fn mp4_is_deterministic_per_media() {
        assert_eq!(mp4("f1", "m1"), mp4("f1", "m1"));
        assert_ne!(mp4("f1", "m1"), mp4("f2", "m1"));
        assert_ne!(mp4("f1", "m1"), mp4("f1", "m2"));
    }
}
