//! Parses the `on_capture_complete` JSON (docs/oz-api.md §4.3) into borrowed
//! views of its frames, without copying them.
//!
//! Two shapes exist. Plain: every field at the top level and `from_virtual_camera` null or absent.
//! Virtual camera: the top-level fields null and the same fields, `additional_info` included,
//! under `from_virtual_camera`; `action` stays at the top level in both.
//!
//! The parser is a hand-written serde visitor rather than a derive, for three reasons:
//! - every type error names the field path (`from_virtual_camera.frame_list`) and, for frames, the
//!   index, which serde's derived messages do not;
//! - no error text is taken from serde for a type error, since serde quotes the offending value
//!   (`invalid type: string "…"`), and values here are frames and `additional_info`;
//! - `frame_list` stops storing frames once `max_frames` is reached, so a body of a million
//!   empty strings cannot make a million-entry vector.
//!
//! Frames (`frame_list`, `best_frame`, `best_frame_png`) are kept as their JSON string literals,
//! borrowed from the body, escapes and all ([`Frame`]): a string with escapes
//! (`data:image\/jpeg…`, as PHP's `json_encode` writes every frame) is unescaped only when it is
//! decoded, one frame at a time (`capture::frame`), never copied here. Every escape is still
//! checked as the literal is read (by `skim`, or serde_json); what is not checked there (an
//! unpaired `\u` surrogate) fails the frame when it is decoded. A syntax error inside a frame is reported with the
//! frame's field and index. Unknown fields are skipped: SDK versions add fields. A field given
//! twice is refused, so the proxy and the backend can never read different values from one body.
//! For the same reason a key that differs from a known field only in letter case or word
//! separators (`FRAME_LIST`, `Best_Frame`, `frame_liſt` with a long s, `bestFrame`,
//! `best-frame`) is refused rather than skipped: Go's `encoding/json` and ASP.NET Core match
//! keys without case, and camelCase alias generators bind `bestFrame`, so a backend would bind it
//! to the field the proxy did not check. Keys are compared as serde_json hands them over, escapes undone, so
//! `"frame\u005flist"` is `frame_list` (and a second `frame_list`, a duplicate).
//!
//! serde_json reads a skeleton of the body (`skim`): the body with every long string (in
//! practice, the frames) cut out after a faster scan has checked it, or the body itself when
//! cutting would not save half of it. Values and error positions are mapped back to the body, so
//! nothing here can tell the difference.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::error::Category;
use serde_json::value::RawValue;

pub use super::frame::Frame;
use super::Error;

/// A parsed and shape-checked capture. Frames are not decoded yet.
#[derive(Debug)]
pub struct Capture<'a> {
    /// The Web SDK action code, not yet checked against the known ones.
    pub action: Cow<'a, str>,
    /// Whether the body had the virtual-camera shape.
    pub virtual_camera: bool,
    /// `frame_list`, non-empty and at most `max_frames` long.
    pub frames: Vec<Frame<'a>>,
    /// `best_frame` (JPEG data URL), if not null.
    pub best_frame: Option<Frame<'a>>,
    /// `best_frame_png` (PNG data URL), if not null.
    pub best_frame_png: Option<Frame<'a>>,
    /// `additional_info` exactly as it appeared in the body (a JSON string, escapes and all), to
    /// be forwarded to Oz unchanged (docs/oz-api.md §2.6).
    pub additional_info: &'a RawValue,
}

impl Capture<'_> {
    /// Path of `frame_list` in this body's shape, for error messages.
    pub fn frame_list_field(&self) -> &'static str {
        Level::of(self.virtual_camera).path(Field::FrameList)
    }

    /// Path of `best_frame` in this body's shape, for error messages.
    pub fn best_frame_field(&self) -> &'static str {
        Level::of(self.virtual_camera).path(Field::BestFrame)
    }

    /// Path of `best_frame_png` in this body's shape, for error messages.
    pub fn best_frame_png_field(&self) -> &'static str {
        Level::of(self.virtual_camera).path(Field::BestFramePng)
    }
}

/// Parses and shape-checks a capture body, refusing more than `max_frames` frames.
pub fn parse_capture(body: &[u8], max_frames: usize) -> Result<Capture<'_>, Error> {
    parse_skeleton(&skim(body, MIN_CUT), max_frames)
}

/// Parses a body's skeleton and maps what it found back to the body.
/// Names a backend may read from the query string of a capture request as if they were part of
/// what the proxy checked: the capture fields, and the members of the `forward_body: summary`
/// document. Rails merges query parameters into `params` (the query wins), Laravel's `input()`
/// falls back to the query for a key the body lacks.
const QUERY_SHADOWS: [&str; 8] = [
    "oz",
    "virtual_camera",
    "frame_count",
    "folder_id",
    "resolution",
    "analyses",
    "verdict",
    "verdict_token",
];

/// Refuses a capture request whose query string carries a key that a backend could merge with
/// the body's fields: a capture field or a summary member, in any letter case or word
/// separators, percent-encoded or not, with or without a `[…]` or `.…` suffix
/// (`best_frame`, `frameList[]`, `oz[resolution]`). Other keys (`?session=…`) pass.
pub fn check_query(query: &str) -> Result<(), Error> {
    for pair in query.split(['&', ';']) {
        let raw_key = pair.split('=').next().unwrap_or_default();
        let key = decode_query_key(raw_key);
        let stem = key.split(['[', '.']).next().unwrap_or_default();
        let compact: String = stem.chars().filter(|&c| c != ' ').collect();
        let shadowed = Field::from_key_loosely(&compact)
            .map(Field::name)
            .or_else(|| {
                QUERY_SHADOWS
                    .into_iter()
                    .find(|name| loosely_equal(stem, name))
            });
        if let Some(name) = shadowed {
            return Err(Error::BadField {
                field: format!("query.{stem}"),
                reason: format!(
                    "the query string names `{name}`; refused because frameworks that merge \
                     query parameters with the body would read it as part of the checked capture"
                ),
            });
        }
    }
    Ok(())
}

/// `%XX` decoded once and `+` read as a space, as form decoders do; invalid UTF-8 replaced.
fn decode_query_key(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Whether `key` is `name` once letter case, `_`, `-` and spaces are ignored.
fn loosely_equal(key: &str, name: &str) -> bool {
    let folded = key
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .map(fold_to_ascii);
    let name = name.bytes().filter(|&b| b != b'_').map(Some);
    folded.eq(name)
}

fn parse_skeleton<'b>(sk: &Skeleton<'b>, max_frames: usize) -> Result<Capture<'b>, Error> {
    let ctx = Ctx {
        max_frames,
        failure: Cell::new(None),
        reading: Cell::new(None),
    };
    let mut de = serde_json::Deserializer::from_slice(&sk.text);
    let top = RootSeed { ctx: &ctx }
        .deserialize(&mut de)
        .and_then(|top| de.end().map(|()| top))
        .map_err(|e| json_error(&e, sk, ctx.failure.take(), ctx.reading.get()))?;
    Ok(in_body(assemble(top, max_frames)?, sk))
}

/// A capture read from a skeleton, with every value replaced by the text it stands for in the
/// body.
fn in_body<'b>(c: Capture<'_>, sk: &Skeleton<'b>) -> Capture<'b> {
    let frame = |f: Frame<'_>| {
        Frame::from_json_literal(sk.body_str(f.json_literal()))
            .expect("a string literal in the skeleton stands for one in the body")
    };
    let action = match c.action {
        // Borrowed means serde_json saw no escape; a cut string may still have had some.
        Cow::Borrowed(s) => match sk.body_str(s) {
            s if !s.contains('\\') => Cow::Borrowed(s),
            s => Cow::Owned(
                serde_json::from_str(&format!("\"{s}\""))
                    .expect("a cut string's escapes were checked and have no surrogate"),
            ),
        },
        Cow::Owned(s) => Cow::Owned(s),
    };
    Capture {
        action,
        virtual_camera: c.virtual_camera,
        frames: c.frames.into_iter().map(frame).collect(),
        best_frame: c.best_frame.map(frame),
        best_frame_png: c.best_frame_png.map(frame),
        additional_info: serde_json::from_str(sk.body_str(c.additional_info.get()))
            .expect("a raw value in the skeleton stands for a valid one in the body"),
    }
}

/// Applies the shape rules to the parsed fields.
fn assemble(mut top: Fields<'_>, max_frames: usize) -> Result<Capture<'_>, Error> {
    let action = top
        .action
        .take()
        .ok_or_else(|| missing(Field::Action.name()))?;
    // In the virtual-camera shape the fields are read from `from_virtual_camera`; an
    // `additional_info` left at the top level is still accepted there, since it describes the
    // same client either way.
    let (mut src, top_info, virtual_camera) = match top.from_virtual_camera.take() {
        Some(vc) => {
            if top.frame_list.is_some() {
                return Err(Error::BadField {
                    field: Field::FrameList.name().into(),
                    reason: "must be null when `from_virtual_camera` is set (frames are read \
                             from `from_virtual_camera.frame_list`)"
                        .into(),
                });
            }
            // Nothing reads a top-level best frame in this shape, so it would never reach Oz,
            // yet a backend that looks for it there would find it.
            for (present, field) in [
                (top.best_frame.is_some(), Field::BestFrame),
                (top.best_frame_png.is_some(), Field::BestFramePng),
            ] {
                if present {
                    return Err(Error::BadField {
                        field: field.name().into(),
                        reason: format!(
                            "must be null when `from_virtual_camera` is set (the best frame is \
                             read from `{}`)",
                            field.vc_path()
                        ),
                    });
                }
            }
            (*vc, top.additional_info, true)
        }
        None => (top, None, false),
    };
    let level = Level::of(virtual_camera);

    let field = level.path(Field::FrameList);
    let frames = match src.frame_list.take() {
        None => return Err(Error::NoFrames { field }),
        Some(FrameList::TooMany(count)) => {
            return Err(Error::TooManyFrames {
                field,
                count,
                limit: max_frames,
            })
        }
        Some(FrameList::Frames(v)) if v.is_empty() => return Err(Error::NoFrames { field }),
        Some(FrameList::Frames(v)) => v,
    };

    let additional_info = src
        .additional_info
        .or(top_info)
        .ok_or_else(|| Error::BadField {
            field: level.path(Field::AdditionalInfo).into(),
            reason: "is missing (Oz API requires it in capture mode)".into(),
        })?;

    Ok(Capture {
        action,
        virtual_camera,
        frames,
        best_frame: src.best_frame,
        best_frame_png: src.best_frame_png,
        additional_info,
    })
}

fn missing(field: &str) -> Error {
    Error::BadField {
        field: field.into(),
        reason: "is missing".into(),
    }
}

/// Turns a serde_json error into a capture error, never using serde's text for a type error.
/// `reading` is the frame whose value was being read when the error came, if any.
fn json_error(
    err: &serde_json::Error,
    sk: &Skeleton<'_>,
    failure: Option<Failure>,
    reading: Option<Place>,
) -> Error {
    let (line, column) = sk.body_position(err.line(), err.column());
    let at = format!("line {line}, column {column}");
    let text = serde_text(err, sk);
    match failure {
        Some(Failure::WrongType {
            field,
            expected,
            found,
        }) => Error::BadField {
            field: field.into(),
            reason: format!("expected {expected}, found {found} ({at})"),
        },
        Some(Failure::FrameWrongType {
            field,
            index,
            found,
        }) => Error::BadFrame {
            field,
            index,
            reason: format!("expected a data URL string, found {found} ({at})"),
        },
        Some(Failure::Duplicate { field }) => Error::BadField {
            field: field.into(),
            reason: format!("appears more than once ({at})"),
        },
        Some(Failure::CaseVariant { key, level, field }) => Error::BadField {
            // The key as sent (escapes undone) names it: it can only be made of the letters of
            // a known field, so it is short and quotes nothing the client meant as data.
            field: match level {
                Level::Top => key.into(),
                Level::VirtualCamera => format!("{}.{key}", Field::FromVirtualCamera.name()),
            },
            reason: format!(
                "differs from `{}` only in letter case or word separators ({at}); refused \
                 because readers that match keys loosely (Go's encoding/json, ASP.NET Core, \
                 camelCase aliases) would take it for that field",
                level.path(field)
            ),
        },
        Some(Failure::RootNotObject { found }) => Error::BadJson {
            detail: format!("expected a JSON object, found {found} ({at})"),
        },
        None => match (err.classify(), reading) {
            // Syntax and EOF messages are fixed texts in serde_json ("invalid escape",
            // "EOF while parsing a string"), followed by "at line L column C": nothing quoted.
            // A syntax error inside a frame (a bad escape, a control character, bytes that are
            // not UTF-8) names that frame; a body cut short stays a JSON error.
            (Category::Syntax, Some(Place::Listed { field, index })) => Error::BadFrame {
                field,
                index,
                reason: format!("is not a valid JSON string: {text}"),
            },
            (Category::Syntax, Some(Place::Single { field })) => Error::BadField {
                field: field.into(),
                reason: format!("is not a valid JSON string: {text}"),
            },
            (Category::Syntax | Category::Eof, _) => Error::BadJson { detail: text },
            // Data errors carry free text that may quote input; none is expected here because
            // every visitor records its failure, but never pass one through.
            (Category::Data | Category::Io, _) => Error::BadJson {
                detail: format!("unexpected value ({at})"),
            },
        },
    }
}

/// serde_json's text for `err`, with the position it gives in the skeleton replaced by the one
/// in the body.
fn serde_text(err: &serde_json::Error, sk: &Skeleton<'_>) -> String {
    let text = err.to_string();
    // serde_json writes "{message} at line {line} column {column}" when it knows the position.
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    match text.strip_suffix(&suffix) {
        Some(message) if err.line() != 0 => {
            let (line, column) = sk.body_position(err.line(), err.column());
            format!("{message} at line {line} column {column}")
        }
        _ => text,
    }
}

// === Parse state ===

/// Shared by all visitors of one parse: the frame limit, the first failure, recorded so the
/// error can be worded here instead of by serde, and the frame being read, so a syntax error
/// inside it can name it.
struct Ctx {
    max_frames: usize,
    failure: Cell<Option<Failure>>,
    reading: Cell<Option<Place>>,
}

impl Ctx {
    fn fail<E: de::Error>(&self, failure: Failure) -> E {
        self.failure.set(Some(failure));
        // Only a marker: `json_error` words the message from the recorded failure.
        E::custom("capture shape")
    }

    fn wrong_type<E: de::Error>(
        &self,
        field: &'static str,
        expected: &'static str,
        found: Found,
    ) -> E {
        self.fail(Failure::WrongType {
            field,
            expected,
            found,
        })
    }
}

#[derive(Debug)]
enum Failure {
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: Found,
    },
    FrameWrongType {
        field: &'static str,
        index: usize,
        found: Found,
    },
    Duplicate {
        field: &'static str,
    },
    /// A key that is `field` of `level` but for letter case.
    CaseVariant {
        key: Box<str>,
        level: Level,
        field: Field,
    },
    RootNotObject {
        found: Found,
    },
}

/// Where a frame sits: in `frame_list` at an index, or in its own field (`best_frame`).
#[derive(Clone, Copy, Debug)]
enum Place {
    Listed { field: &'static str, index: usize },
    Single { field: &'static str },
}

/// The JSON type found where another was expected; never the value.
#[derive(Clone, Copy, Debug)]
enum Found {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Found::Null => "null",
            Found::Bool => "a boolean",
            Found::Number => "a number",
            Found::String => "a string",
            Found::Array => "an array",
            Found::Object => "an object",
        })
    }
}

/// Which object is being read: the body itself or `from_virtual_camera`.
#[derive(Clone, Copy, Debug)]
enum Level {
    Top,
    VirtualCamera,
}

impl Level {
    fn of(virtual_camera: bool) -> Level {
        if virtual_camera {
            Level::VirtualCamera
        } else {
            Level::Top
        }
    }

    fn path(self, field: Field) -> &'static str {
        match self {
            Level::Top => field.name(),
            Level::VirtualCamera => field.vc_path(),
        }
    }
}

/// The fields the proxy knows; anything else is skipped, unless it is one of these in another
/// letter case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Action,
    AdditionalInfo,
    BestFrame,
    BestFramePng,
    BestFrameBoundingBox,
    BestFrameLandmarks,
    FrameList,
    FrameBoundingBoxList,
    FrameLandmarks,
    FromVirtualCamera,
}

impl Field {
    const ALL: [Field; 10] = [
        Field::Action,
        Field::AdditionalInfo,
        Field::BestFrame,
        Field::BestFramePng,
        Field::BestFrameBoundingBox,
        Field::BestFrameLandmarks,
        Field::FrameList,
        Field::FrameBoundingBoxList,
        Field::FrameLandmarks,
        Field::FromVirtualCamera,
    ];

    /// The length of the longest name, in bytes and in characters (names are ASCII).
    const LONGEST_NAME: usize = {
        let (mut i, mut longest) = (0, 0);
        while i < Field::ALL.len() {
            let len = Field::ALL[i].name().len();
            if len > longest {
                longest = len;
            }
            i += 1;
        }
        longest
    };

    fn from_key(key: &str) -> Option<Field> {
        Some(match key {
            "action" => Field::Action,
            "additional_info" => Field::AdditionalInfo,
            "best_frame" => Field::BestFrame,
            "best_frame_png" => Field::BestFramePng,
            "best_frame_bounding_box" => Field::BestFrameBoundingBox,
            "best_frame_landmarks" => Field::BestFrameLandmarks,
            "frame_list" => Field::FrameList,
            "frame_bounding_box_list" => Field::FrameBoundingBoxList,
            "frame_landmarks" => Field::FrameLandmarks,
            "from_virtual_camera" => Field::FromVirtualCamera,
            _ => return None,
        })
    }

    /// The field `key` is if letter case and word separators are ignored, as readers that
    /// bind keys loosely compare them: letter case folded character by character (simple case
    /// folding: Go's `bytes.EqualFold`, .NET's `OrdinalIgnoreCase`, Java's
    /// `equalsIgnoreCase`; never `ß` for `ss`), and `_` and `-` left out, since camelCase and
    /// kebab-case aliases (`bestFrame`, `best-frame`: Pydantic's `to_camel` alias generator,
    /// Rails' `deep_transform_keys(&:underscore)`, Jackson's `@JsonAlias`) bind to the same
    /// field. Only keys that are not a field as spelt get here.
    fn from_key_loosely(key: &str) -> Option<Field> {
        let mut folded = [0u8; Field::LONGEST_NAME];
        let mut len = 0;
        for c in key.chars() {
            if matches!(c, '_' | '-') {
                continue;
            }
            // A key longer than every name, or with a character that folds to no ASCII letter,
            // is no field in any spelling.
            *folded.get_mut(len)? = fold_to_ascii(c)?;
            len += 1;
        }
        let folded = &folded[..len];
        Field::ALL.into_iter().find(|f| {
            f.name()
                .bytes()
                .filter(|&b| b != b'_')
                .eq(folded.iter().copied())
        })
    }

    const fn name(self) -> &'static str {
        match self {
            Field::Action => "action",
            Field::AdditionalInfo => "additional_info",
            Field::BestFrame => "best_frame",
            Field::BestFramePng => "best_frame_png",
            Field::BestFrameBoundingBox => "best_frame_bounding_box",
            Field::BestFrameLandmarks => "best_frame_landmarks",
            Field::FrameList => "frame_list",
            Field::FrameBoundingBoxList => "frame_bounding_box_list",
            Field::FrameLandmarks => "frame_landmarks",
            Field::FromVirtualCamera => "from_virtual_camera",
        }
    }

    /// The path under `from_virtual_camera` (static, so errors can hold it without allocating).
    fn vc_path(self) -> &'static str {
        match self {
            Field::Action => "from_virtual_camera.action",
            Field::AdditionalInfo => "from_virtual_camera.additional_info",
            Field::BestFrame => "from_virtual_camera.best_frame",
            Field::BestFramePng => "from_virtual_camera.best_frame_png",
            Field::BestFrameBoundingBox => "from_virtual_camera.best_frame_bounding_box",
            Field::BestFrameLandmarks => "from_virtual_camera.best_frame_landmarks",
            Field::FrameList => "from_virtual_camera.frame_list",
            Field::FrameBoundingBoxList => "from_virtual_camera.frame_bounding_box_list",
            Field::FrameLandmarks => "from_virtual_camera.frame_landmarks",
            Field::FromVirtualCamera => "from_virtual_camera.from_virtual_camera",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// `c` in lower case if that is ASCII, else `None`. Besides ASCII itself, four characters fold
/// to an ASCII letter in some reader that ignores key case, and the names are all ASCII, so
/// this is all the folding a key needs to be compared with them. From UnicodeData.txt and
/// CaseFolding.txt (`tests::the_fold_table_is_every_case_mapping_into_ascii` checks it against
/// Rust's tables):
/// - `ſ` U+017F (long s) and `K` U+212A (Kelvin sign) fold to `s` and `k` (Go's
///   `unicode.SimpleFold`, Java);
/// - `ı` U+0131 (dotless i) upper-cases to `I`, and `İ` U+0130 (I with dot) lower-cases to `i`
///   (Java's `equalsIgnoreCase` tries both; Go leaves both alone, so this is stricter than Go).
fn fold_to_ascii(c: char) -> Option<u8> {
    match c {
        '\0'..='\x7f' => Some((c as u8).to_ascii_lowercase()),
        '\u{17f}' => Some(b's'),
        '\u{212a}' => Some(b'k'),
        '\u{130}' | '\u{131}' => Some(b'i'),
        _ => None,
    }
}

/// The known fields of one object, as read.
#[derive(Default)]
struct Fields<'a> {
    action: Option<Cow<'a, str>>,
    additional_info: Option<&'a RawValue>,
    best_frame: Option<Frame<'a>>,
    best_frame_png: Option<Frame<'a>>,
    frame_list: Option<FrameList<'a>>,
    from_virtual_camera: Option<Box<Fields<'a>>>,
}

/// `frame_list` as read: the frames, or only their count once there are too many.
enum FrameList<'a> {
    Frames(Vec<Frame<'a>>),
    TooMany(usize),
}

mod skim;
mod visit;

use skim::{skim, Skeleton, MIN_CUT};
use visit::RootSeed;

#[cfg(test)]
mod tests;
