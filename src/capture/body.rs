//! Parses the `on_capture_complete` JSON (oz-api.md §4.3, `seed-capture-mode.txt`) into borrowed
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
//! Frame strings borrow from the body. A string with escapes (`data:image\/jpeg…`, as PHP's
//! `json_encode` writes it) cannot be borrowed and is unescaped into an owned copy instead.
//! Unknown fields are skipped: SDK versions add fields. A field given twice is refused, so the
//! proxy and the backend can never read different values from one body.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::Error;

/// One frame's data URL, borrowed from the body unless it contained escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a>(pub Cow<'a, str>);

impl Frame<'_> {
    /// The data URL text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the text points into the request body (no copy was made).
    pub fn is_borrowed(&self) -> bool {
        matches!(self.0, Cow::Borrowed(_))
    }
}

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
    /// be forwarded to Oz unchanged (oz-api.md §2.6).
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
    let ctx = Ctx {
        max_frames,
        failure: Cell::new(None),
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let top = RootSeed { ctx: &ctx }
        .deserialize(&mut de)
        .and_then(|top| de.end().map(|()| top))
        .map_err(|e| json_error(&e, ctx.failure.get()))?;
    assemble(top, max_frames)
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
fn json_error(err: &serde_json::Error, failure: Option<Failure>) -> Error {
    let at = format!("line {}, column {}", err.line(), err.column());
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
        Some(Failure::RootNotObject { found }) => Error::BadJson {
            detail: format!("expected a JSON object, found {found} ({at})"),
        },
        None => match err.classify() {
            // Syntax and EOF messages are fixed texts in serde_json ("expected `,` or `]`",
            // "EOF while parsing a string"), followed by "at line L column C": nothing quoted.
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                Error::BadJson {
                    detail: err.to_string(),
                }
            }
            // Data errors carry free text that may quote input; none is expected here because
            // every visitor records its failure, but never pass one through.
            serde_json::error::Category::Data | serde_json::error::Category::Io => Error::BadJson {
                detail: format!("unexpected value ({at})"),
            },
        },
    }
}

// === Parse state ===

/// Shared by all visitors of one parse: the frame limit and the first failure, recorded so the
/// error can be worded here instead of by serde.
struct Ctx {
    max_frames: usize,
    failure: Cell<Option<Failure>>,
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

#[derive(Clone, Copy, Debug)]
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
    RootNotObject {
        found: Found,
    },
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

/// The fields the proxy knows; anything else is skipped.
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

    fn name(self) -> &'static str {
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

// === Visitors ===

/// The body: must be an object.
struct RootSeed<'c> {
    ctx: &'c Ctx,
}

impl<'de> DeserializeSeed<'de> for RootSeed<'_> {
    type Value = Fields<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RootSeed<'_> {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        read_fields(self.ctx, Level::Top, map)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(self.ctx.fail(Failure::RootNotObject { found: Found::Null }))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.ctx.fail(Failure::RootNotObject { found: Found::Bool }))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.ctx.fail(Failure::RootNotObject {
            found: Found::Number,
        }))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.ctx.fail(Failure::RootNotObject {
            found: Found::Number,
        }))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.ctx.fail(Failure::RootNotObject {
            found: Found::Number,
        }))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.ctx.fail(Failure::RootNotObject {
            found: Found::String,
        }))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.ctx.fail(Failure::RootNotObject {
            found: Found::Array,
        }))
    }
}

/// Reads the known fields of one object (the body or `from_virtual_camera`).
fn read_fields<'de, A: MapAccess<'de>>(
    ctx: &Ctx,
    level: Level,
    mut map: A,
) -> Result<Fields<'de>, A::Error> {
    let mut out = Fields::default();
    let mut seen = 0u16;
    while let Some(key) = map.next_key_seed(KeySeed)? {
        // `action` lives only at the top level, and `from_virtual_camera` does not nest: at
        // the other level they are unknown fields like any other.
        let field = match (level, key) {
            (Level::VirtualCamera, Some(Field::Action | Field::FromVirtualCamera)) => None,
            (_, k) => k,
        };
        let Some(field) = field else {
            map.next_value::<IgnoredAny>()?;
            continue;
        };
        let path = level.path(field);
        if seen & field.bit() != 0 {
            return Err(ctx.fail(Failure::Duplicate { field: path }));
        }
        seen |= field.bit();
        match field {
            Field::Action => {
                out.action = map.next_value_seed(StrSeed {
                    ctx,
                    path,
                    nullable: false,
                })?;
            }
            Field::BestFrame => {
                out.best_frame = map
                    .next_value_seed(StrSeed {
                        ctx,
                        path,
                        nullable: true,
                    })?
                    .map(Frame);
            }
            Field::BestFramePng => {
                out.best_frame_png = map
                    .next_value_seed(StrSeed {
                        ctx,
                        path,
                        nullable: true,
                    })?
                    .map(Frame);
            }
            Field::AdditionalInfo => {
                let raw: &'de RawValue = map.next_value()?;
                out.additional_info = match Found::of_raw(raw) {
                    Found::String => Some(raw),
                    // null counts as missing; `assemble` reports it.
                    Found::Null => None,
                    found => return Err(ctx.wrong_type(path, "a string", found)),
                };
            }
            Field::BestFrameBoundingBox | Field::BestFrameLandmarks => {
                map.next_value_seed(ShapeSeed {
                    ctx,
                    path,
                    want: Found::Object,
                })?;
            }
            Field::FrameBoundingBoxList | Field::FrameLandmarks => {
                map.next_value_seed(ShapeSeed {
                    ctx,
                    path,
                    want: Found::Array,
                })?;
            }
            Field::FrameList => {
                out.frame_list = map.next_value_seed(FrameListSeed { ctx, path })?;
            }
            Field::FromVirtualCamera => {
                out.from_virtual_camera = map
                    .next_value_seed(VirtualCameraSeed { ctx, path })?
                    .map(Box::new);
            }
        }
    }
    Ok(out)
}

impl Found {
    /// The type of a raw JSON value, from its first byte (serde_json trims whitespace).
    fn of_raw(raw: &RawValue) -> Found {
        match raw.get().as_bytes().first() {
            Some(b'"') => Found::String,
            Some(b'n') => Found::Null,
            Some(b't' | b'f') => Found::Bool,
            Some(b'[') => Found::Array,
            Some(b'{') => Found::Object,
            _ => Found::Number,
        }
    }
}

/// A map key, matched without allocating.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<Field>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Option<Field>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Field::from_key(key))
    }
}

/// Generates the `visit_*` methods that refuse a JSON type, recording what was found.
macro_rules! refuse {
    ($fail:ident; $($method:ident($($arg:ty)?) => $found:expr),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self $(, _: $arg)?) -> Result<Self::Value, E> {
                Err(self.$fail($found))
            }
        )*
    };
}

/// Generates `visit_seq`/`visit_map` that refuse an array or object.
macro_rules! refuse_containers {
    ($fail:ident; seq => $seq:expr, map => $map:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.$fail($seq))
        }
        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.$fail($map))
        }
    };
}

/// A string field (`action`, `best_frame`, `best_frame_png`), borrowed when unescaped.
struct StrSeed<'c> {
    ctx: &'c Ctx,
    path: &'static str,
    nullable: bool,
}

impl StrSeed<'_> {
    fn wrong<E: de::Error>(&self, found: Found) -> E {
        let expected = if self.nullable {
            "a string or null"
        } else {
            "a string"
        };
        self.ctx.wrong_type(self.path, expected, found)
    }
}

impl<'de> DeserializeSeed<'de> for StrSeed<'_> {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrSeed<'_> {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(s)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        if self.nullable {
            Ok(None)
        } else {
            Err(self.wrong(Found::Null))
        }
    }
    refuse!(wrong;
        visit_bool(bool) => Found::Bool,
        visit_u64(u64) => Found::Number,
        visit_i64(i64) => Found::Number,
        visit_f64(f64) => Found::Number,
    );
    refuse_containers!(wrong; seq => Found::Array, map => Found::Object);
}

/// An optional object or array whose content the proxy does not use (boxes, landmarks): only
/// its type is checked, and it is skipped without allocating.
struct ShapeSeed<'c> {
    ctx: &'c Ctx,
    path: &'static str,
    want: Found,
}

impl ShapeSeed<'_> {
    fn wrong<E: de::Error>(&self, found: Found) -> E {
        let expected = match self.want {
            Found::Array => "an array or null",
            _ => "an object or null",
        };
        self.ctx.wrong_type(self.path, expected, found)
    }
}

impl<'de> DeserializeSeed<'de> for ShapeSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ShapeSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object, an array or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if !matches!(self.want, Found::Array) {
            return Err(self.wrong(Found::Array));
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if !matches!(self.want, Found::Object) {
            return Err(self.wrong(Found::Object));
        }
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
    refuse!(wrong;
        visit_bool(bool) => Found::Bool,
        visit_u64(u64) => Found::Number,
        visit_i64(i64) => Found::Number,
        visit_f64(f64) => Found::Number,
        visit_str(&str) => Found::String,
    );
}

/// `frame_list`: null, or an array of strings of which at most `max_frames` are kept.
struct FrameListSeed<'c> {
    ctx: &'c Ctx,
    path: &'static str,
}

impl FrameListSeed<'_> {
    fn wrong<E: de::Error>(&self, found: Found) -> E {
        self.ctx
            .wrong_type(self.path, "an array of data-URL strings or null", found)
    }
}

impl<'de> DeserializeSeed<'de> for FrameListSeed<'_> {
    type Value = Option<FrameList<'de>>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FrameListSeed<'_> {
    type Value = Option<FrameList<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of strings or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut frames = Vec::new();
        while frames.len() < self.ctx.max_frames {
            let seed = FrameSeed {
                ctx: self.ctx,
                field: self.path,
                index: frames.len(),
            };
            match seq.next_element_seed(seed)? {
                Some(frame) => frames.push(frame),
                None => return Ok(Some(FrameList::Frames(frames))),
            }
        }
        // At the limit: count the rest without keeping (or type-checking) them.
        let mut count = frames.len();
        while seq.next_element::<IgnoredAny>()?.is_some() {
            count += 1;
        }
        if count > frames.len() {
            Ok(Some(FrameList::TooMany(count)))
        } else {
            Ok(Some(FrameList::Frames(frames)))
        }
    }
    refuse!(wrong;
        visit_bool(bool) => Found::Bool,
        visit_u64(u64) => Found::Number,
        visit_i64(i64) => Found::Number,
        visit_f64(f64) => Found::Number,
        visit_str(&str) => Found::String,
    );
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong(Found::Object))
    }
}

/// One element of `frame_list`: a string, borrowed when unescaped.
struct FrameSeed<'c> {
    ctx: &'c Ctx,
    field: &'static str,
    index: usize,
}

impl FrameSeed<'_> {
    fn wrong<E: de::Error>(&self, found: Found) -> E {
        self.ctx.fail(Failure::FrameWrongType {
            field: self.field,
            index: self.index,
            found,
        })
    }
}

impl<'de> DeserializeSeed<'de> for FrameSeed<'_> {
    type Value = Frame<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FrameSeed<'_> {
    type Value = Frame<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a data URL string")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Frame(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Frame(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Frame(Cow::Owned(s)))
    }
    refuse!(wrong;
        visit_unit() => Found::Null,
        visit_bool(bool) => Found::Bool,
        visit_u64(u64) => Found::Number,
        visit_i64(i64) => Found::Number,
        visit_f64(f64) => Found::Number,
    );
    refuse_containers!(wrong; seq => Found::Array, map => Found::Object);
}

/// `from_virtual_camera`: null, or an object with the same fields as the body.
struct VirtualCameraSeed<'c> {
    ctx: &'c Ctx,
    path: &'static str,
}

impl VirtualCameraSeed<'_> {
    fn wrong<E: de::Error>(&self, found: Found) -> E {
        self.ctx.wrong_type(self.path, "an object or null", found)
    }
}

impl<'de> DeserializeSeed<'de> for VirtualCameraSeed<'_> {
    type Value = Option<Fields<'de>>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for VirtualCameraSeed<'_> {
    type Value = Option<Fields<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        read_fields(self.ctx, Level::VirtualCamera, map).map(Some)
    }
    refuse!(wrong;
        visit_bool(bool) => Found::Bool,
        visit_u64(u64) => Found::Number,
        visit_i64(i64) => Found::Number,
        visit_f64(f64) => Found::Number,
        visit_str(&str) => Found::String,
    );
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong(Found::Array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::testdata::{
        sample_capture_json, sample_capture_json_escaped, SampleCapture, SAMPLE_ADDITIONAL_INFO,
    };

    const SECRET: &str = "SECRETMARKER";

    fn parse(body: &[u8]) -> Result<Capture<'_>, Error> {
        parse_capture(body, 300)
    }

    fn err(body: &str) -> Error {
        match parse_capture(body.as_bytes(), 300) {
            Ok(_) => panic!("expected an error for {body}"),
            Err(e) => e,
        }
    }

    fn bad_field(body: &str) -> (String, String) {
        match err(body) {
            Error::BadField { field, reason } => (field, reason),
            other => panic!("expected BadField, got {other:?}"),
        }
    }

    /// `additional_info` as the JSON text it was sent as.
    fn info_json() -> String {
        serde_json::to_string(SAMPLE_ADDITIONAL_INFO).expect("str")
    }

    #[test]
    fn plain_shape_borrows_frames() {
        let body = sample_capture_json(3, false, "video_selfie_blank");
        let c = parse(&body).expect("valid");
        assert_eq!(c.action, "video_selfie_blank");
        assert!(!c.virtual_camera);
        assert_eq!(c.frames.len(), 3);
        assert!(c.frames.iter().all(Frame::is_borrowed));
        assert!(c.frames[0]
            .as_str()
            .starts_with("data:image/jpeg;base64,/9j/"));
        assert!(c.best_frame.as_ref().is_some_and(Frame::is_borrowed));
        assert!(c
            .best_frame_png
            .as_ref()
            .is_some_and(|f| f.as_str().starts_with("data:image/png;base64,")));
        assert_eq!(c.additional_info.get(), info_json());
        assert_eq!(c.frame_list_field(), "frame_list");
        // The frame points into the body: no copy was made.
        let range = body.as_ptr_range();
        assert!(range.contains(&c.frames[1].as_str().as_ptr()));
    }

    #[test]
    fn virtual_camera_shape_reads_from_virtual_camera() {
        let body = sample_capture_json(2, true, "video_selfie_eyes");
        let c = parse(&body).expect("valid");
        assert!(c.virtual_camera);
        assert_eq!(c.action, "video_selfie_eyes");
        assert_eq!(c.frames.len(), 2);
        assert!(c.best_frame.is_some() && c.best_frame_png.is_some());
        assert_eq!(c.additional_info.get(), info_json());
        assert_eq!(c.frame_list_field(), "from_virtual_camera.frame_list");
        assert_eq!(
            c.best_frame_png_field(),
            "from_virtual_camera.best_frame_png"
        );
    }

    #[test]
    fn escaped_slashes_fall_back_to_owned_and_keep_additional_info_verbatim() {
        for vc in [false, true] {
            let body = sample_capture_json_escaped(2, vc, "video_selfie_blank");
            let c = parse(&body).expect("valid");
            assert!(c.frames.iter().all(|f| !f.is_borrowed()));
            assert!(c.frames[0].as_str().starts_with("data:image/jpeg;base64,"));
            // The unescaped frame equals the one in the unescaped body.
            let plain = sample_capture_json(2, vc, "video_selfie_blank");
            let p = parse(&plain).expect("valid");
            assert_eq!(c.frames, p.frames);
            // additional_info is forwarded as sent, escapes included.
            assert!(c.additional_info.get().contains(r"oz-liveness-web\/1.9.2"));
            let s: String = serde_json::from_str(c.additional_info.get()).expect("string");
            assert_eq!(s, SAMPLE_ADDITIONAL_INFO);
        }
    }

    #[test]
    fn escapes_only_in_some_frames_borrow_the_rest() {
        let body = r#"{"action":"a","additional_info":"","frame_list":["data:x","data:\u0078"]}"#;
        let c = parse(body.as_bytes()).expect("valid");
        assert!(c.frames[0].is_borrowed());
        assert!(!c.frames[1].is_borrowed());
        assert_eq!(c.frames[1].as_str(), "data:x");
    }

    #[test]
    fn unknown_fields_and_absent_optionals_are_fine() {
        let body = r#"{"sdk_new_field":{"deep":[1,{"x":null}]},"action":"video_selfie_blank",
            "frame_list":["f0"],"additional_info":"i","extra":"x"}"#;
        let c = parse(body.as_bytes()).expect("valid");
        assert!(c.best_frame.is_none() && c.best_frame_png.is_none() && !c.virtual_camera);
        // `from_virtual_camera: null` is the plain shape too.
        let body = r#"{"action":"a","frame_list":["f"],"additional_info":"i","from_virtual_camera":null,
            "best_frame":null,"best_frame_png":null,"best_frame_bounding_box":null,
            "best_frame_landmarks":null,"frame_bounding_box_list":null,"frame_landmarks":null}"#;
        assert!(!parse(body.as_bytes()).expect("valid").virtual_camera);
    }

    #[test]
    fn whitespace_around_additional_info_is_not_part_of_it() {
        let body = "{\"action\":\"a\",\"frame_list\":[\"f\"],\"additional_info\" :\n  \"i\"  \n}";
        assert_eq!(
            parse(body.as_bytes()).expect("valid").additional_info.get(),
            "\"i\""
        );
    }

    #[test]
    fn missing_or_null_or_empty_frames_are_no_frames() {
        for body in [
            r#"{"action":"a","additional_info":"i"}"#,
            r#"{"action":"a","additional_info":"i","frame_list":null}"#,
            r#"{"action":"a","additional_info":"i","frame_list":[]}"#,
        ] {
            assert!(
                matches!(
                    err(body),
                    Error::NoFrames {
                        field: "frame_list"
                    }
                ),
                "{body}"
            );
        }
        let vc = r#"{"action":"a","frame_list":null,"from_virtual_camera":{"additional_info":"i","frame_list":[]}}"#;
        assert!(matches!(
            err(vc),
            Error::NoFrames {
                field: "from_virtual_camera.frame_list"
            }
        ));
        let vc = r#"{"action":"a","from_virtual_camera":{"additional_info":"i"}}"#;
        assert!(matches!(
            err(vc),
            Error::NoFrames {
                field: "from_virtual_camera.frame_list"
            }
        ));
    }

    #[test]
    fn too_many_frames_are_counted_not_kept() {
        let body = sample_capture_json(5, false, "video_selfie_blank");
        assert_eq!(
            parse_capture(&body, 5).expect("at the limit").frames.len(),
            5
        );
        match parse_capture(&body, 4) {
            Err(Error::TooManyFrames {
                field: "frame_list",
                count: 5,
                limit: 4,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        // Elements past the limit are only counted, whatever their type.
        let body = r#"{"action":"a","additional_info":"i","frame_list":["a","b",1,{},null]}"#;
        assert!(matches!(
            parse_capture(body.as_bytes(), 2),
            Err(Error::TooManyFrames { count: 5, .. })
        ));
        let body = sample_capture_json(3, true, "video_selfie_blank");
        assert!(matches!(
            parse_capture(&body, 2),
            Err(Error::TooManyFrames {
                field: "from_virtual_camera.frame_list",
                count: 3,
                limit: 2
            })
        ));
    }

    #[test]
    fn frames_in_both_places_are_refused() {
        let body = r#"{"action":"a","frame_list":["x"],"from_virtual_camera":{"additional_info":"i","frame_list":["y"]}}"#;
        let (field, reason) = bad_field(body);
        assert_eq!(field, "frame_list");
        assert!(reason.contains("from_virtual_camera"), "{reason}");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let cases = [
            (
                r#"{"action":5,"frame_list":["f"],"additional_info":"i"}"#,
                "action",
                "expected a string, found a number",
            ),
            (
                r#"{"action":null,"frame_list":["f"],"additional_info":"i"}"#,
                "action",
                "expected a string, found null",
            ),
            (
                r#"{"action":"a","frame_list":"data:image/jpeg;base64,AAAA","additional_info":"i"}"#,
                "frame_list",
                "expected an array of data-URL strings or null, found a string",
            ),
            (
                r#"{"action":"a","frame_list":["f"],"additional_info":{"k":1}}"#,
                "additional_info",
                "expected a string, found an object",
            ),
            (
                r#"{"action":"a","frame_list":["f"],"additional_info":"i","best_frame":7}"#,
                "best_frame",
                "expected a string or null, found a number",
            ),
            (
                r#"{"action":"a","frame_list":["f"],"additional_info":"i","best_frame_png":[]}"#,
                "best_frame_png",
                "expected a string or null, found an array",
            ),
            (
                r#"{"action":"a","frame_list":["f"],"additional_info":"i","best_frame_bounding_box":[1]}"#,
                "best_frame_bounding_box",
                "expected an object or null, found an array",
            ),
            (
                r#"{"action":"a","frame_list":["f"],"additional_info":"i","best_frame_landmarks":"x"}"#,
                "best_frame_landmarks",
                "expected an object or null, found a string",
            ),
            (
                r#"{"action":"a","frame_list":["f"],"additional_info":"i","frame_bounding_box_list":{}}"#,
                "frame_bounding_box_list",
                "expected an array or null, found an object",
            ),
            (
                r#"{"action":"a","frame_list":["f"],"additional_info":"i","frame_landmarks":true}"#,
                "frame_landmarks",
                "expected an array or null, found a boolean",
            ),
            (
                r#"{"action":"a","from_virtual_camera":"yes"}"#,
                "from_virtual_camera",
                "expected an object or null, found a string",
            ),
            (
                r#"{"action":"a","from_virtual_camera":{"frame_list":["f"],"additional_info":1}}"#,
                "from_virtual_camera.additional_info",
                "expected a string, found a number",
            ),
            (
                r#"{"action":"a","from_virtual_camera":{"frame_list":7}}"#,
                "from_virtual_camera.frame_list",
                "expected an array of data-URL strings or null, found a number",
            ),
        ];
        for (body, want_field, want_reason) in cases {
            let (field, reason) = bad_field(body);
            assert_eq!(field, want_field, "{body}");
            assert!(reason.starts_with(want_reason), "{body}: {reason}");
            assert!(reason.contains("line 1, column "), "{reason}");
        }
    }

    #[test]
    fn a_frame_of_the_wrong_type_names_its_index() {
        let body = r#"{"action":"a","additional_info":"i","frame_list":["f0","f1",42]}"#;
        match err(body) {
            Error::BadFrame {
                field: "frame_list",
                index: 2,
                reason,
            } => assert!(reason.starts_with("expected a data URL string, found a number")),
            other => panic!("unexpected {other:?}"),
        }
        let body = r#"{"action":"a","from_virtual_camera":{"frame_list":[null]}}"#;
        match err(body) {
            Error::BadFrame {
                field: "from_virtual_camera.frame_list",
                index: 0,
                reason,
            } => assert!(reason.contains("found null"), "{reason}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn missing_required_fields() {
        let (f, r) = bad_field(r#"{"frame_list":["f"],"additional_info":"i"}"#);
        assert_eq!((f.as_str(), r.as_str()), ("action", "is missing"));
        for body in [
            r#"{"action":"a","frame_list":["f"]}"#,
            r#"{"action":"a","frame_list":["f"],"additional_info":null}"#,
        ] {
            let (f, r) = bad_field(body);
            assert_eq!(f, "additional_info");
            assert!(r.starts_with("is missing"), "{r}");
        }
        let (f, _) = bad_field(r#"{"action":"a","from_virtual_camera":{"frame_list":["f"]}}"#);
        assert_eq!(f, "from_virtual_camera.additional_info");
    }

    #[test]
    fn virtual_camera_accepts_additional_info_at_the_top_level() {
        let body =
            r#"{"action":"a","additional_info":"top","from_virtual_camera":{"frame_list":["f"]}}"#;
        let c = parse(body.as_bytes()).expect("valid");
        assert_eq!(c.additional_info.get(), r#""top""#);
        // When both are there, the one under from_virtual_camera wins.
        let body = r#"{"action":"a","additional_info":"top","from_virtual_camera":{"frame_list":["f"],"additional_info":"vc"}}"#;
        assert_eq!(
            parse(body.as_bytes()).expect("valid").additional_info.get(),
            r#""vc""#
        );
    }

    #[test]
    fn action_and_nesting_under_from_virtual_camera_are_ignored() {
        let body = r#"{"action":"a","from_virtual_camera":{"action":5,"from_virtual_camera":[],"frame_list":["f"],"additional_info":"i"}}"#;
        let c = parse(body.as_bytes()).expect("valid");
        assert_eq!(c.action, "a");
    }

    #[test]
    fn duplicate_fields_are_refused() {
        let body = r#"{"action":"a","frame_list":["f"],"additional_info":"i","frame_list":["g"]}"#;
        let (f, r) = bad_field(body);
        assert_eq!(f, "frame_list");
        assert!(r.starts_with("appears more than once"), "{r}");
        let body = r#"{"action":"a","from_virtual_camera":{"additional_info":"i","additional_info":"j","frame_list":["f"]}}"#;
        assert_eq!(bad_field(body).0, "from_virtual_camera.additional_info");
        // Unknown fields may repeat: they are not read.
        let body = r#"{"x":1,"x":2,"action":"a","frame_list":["f"],"additional_info":"i"}"#;
        assert!(parse(body.as_bytes()).is_ok());
    }

    #[test]
    fn syntax_errors_are_bad_json_with_position() {
        let body = sample_capture_json(2, false, "video_selfie_blank");
        for cut in [1, 40, body.len() / 2, body.len() - 1] {
            match parse(&body[..cut]) {
                Err(Error::BadJson { detail }) => {
                    assert!(detail.contains("line 1 column"), "{detail}");
                    assert!(detail.starts_with("EOF while parsing"), "{detail}");
                }
                other => panic!("cut at {cut}: unexpected {other:?}"),
            }
        }
        for body in [
            "",
            "{",
            r#"{"action":"a",}"#,
            r#"{"action":"a"} trailing"#,
            "{\"action\":\"a\u{1}\"}",
            "{\"action\":\"a\\q\"}",
        ] {
            assert!(matches!(err(body), Error::BadJson { .. }), "{body}");
        }
        // Not UTF-8 inside a string.
        let mut bytes = br#"{"action":"a","frame_list":[""#.to_vec();
        bytes.extend_from_slice(&[0xFF, 0xFE]);
        bytes.extend_from_slice(br#""],"additional_info":"i"}"#);
        assert!(matches!(parse(&bytes), Err(Error::BadJson { .. })));
    }

    #[test]
    fn a_body_that_is_not_an_object_is_bad_json() {
        for (body, found) in [
            ("[]", "an array"),
            ("null", "null"),
            ("\"x\"", "a string"),
            ("12", "a number"),
            ("true", "a boolean"),
        ] {
            match err(body) {
                Error::BadJson { detail } => {
                    assert!(detail.starts_with(&format!("expected a JSON object, found {found}")))
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn errors_never_contain_input_values() {
        let secret_url = format!("data:image/jpeg;base64,{SECRET}");
        let mut cases: Vec<String> = vec![
            format!(
                r#"{{"action":"{SECRET}","frame_list":"{secret_url}","additional_info":"{SECRET}"}}"#
            ),
            format!(
                r#"{{"action":"a","frame_list":["f"],"additional_info":"i","best_frame_bounding_box":"{SECRET}"}}"#
            ),
            format!(
                r#"{{"action":"a","frame_list":["f"],"additional_info":"i","frame_landmarks":"{SECRET}"}}"#
            ),
            format!(r#"{{"action":"a","from_virtual_camera":"{SECRET}"}}"#),
            format!(r#"{{"action":["{SECRET}"],"frame_list":["f"],"additional_info":"i"}}"#),
            format!(r#"{{"action":"a","frame_list":["f",["{SECRET}"]],"additional_info":"i"}}"#),
            format!(r#"{{"action":"a","frame_list":["f"],"additional_info":["{SECRET}"]}}"#),
            format!(
                r#"{{"action":"a","frame_list":["f"],"additional_info":"{SECRET}","frame_list":1}}"#
            ),
            format!(r#""{SECRET}""#),
            format!(r#"{{"action":"a","frame_list":["{SECRET}"#),
            format!(r#"{{"action":"a","{SECRET}":1,,}}"#),
        ];
        let mut sample = SampleCapture::new(2, false, "video_selfie_blank");
        sample.additional_info = Some(format!("{SECRET} env"));
        sample.frames[1] = format!("data:image/jpeg;base64,{SECRET}");
        let full = String::from_utf8(sample.to_json()).expect("utf8");
        cases.push(full[..full.len() - 3].to_owned());
        for body in cases {
            let e = err(&body);
            let msg = e.to_string();
            assert!(!msg.contains(SECRET), "{msg}");
            assert!(!format!("{e:?}").contains(SECRET), "{e:?}");
        }
    }
}
