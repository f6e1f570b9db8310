//! The serde visitors behind `parse_capture`: one seed per field shape, each naming the field
//! path (and frame index) in its errors without ever quoting a value.

use serde::Deserialize;

use super::*;

/// The body: must be an object.
pub(super) struct RootSeed<'c> {
    pub(super) ctx: &'c Ctx,
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
        let (field, case_variant) = match key {
            Key::Field(field) => (Some(field), None),
            Key::CaseVariant(field, key) => (Some(field), Some(key)),
            Key::Other => (None, None),
        };
        // `action` lives only at the top level, and `from_virtual_camera` does not nest: at
        // the other level they are unknown fields like any other, in any case.
        let field = match (level, field) {
            (Level::VirtualCamera, Some(Field::Action | Field::FromVirtualCamera)) => None,
            (_, f) => f,
        };
        let Some(field) = field else {
            map.next_value::<IgnoredAny>()?;
            continue;
        };
        if let Some(key) = case_variant {
            return Err(ctx.fail(Failure::CaseVariant { key, level, field }));
        }
        let path = level.path(field);
        if seen & field.bit() != 0 {
            return Err(ctx.fail(Failure::Duplicate { field: path }));
        }
        seen |= field.bit();
        match field {
            Field::Action => {
                out.action = Some(map.next_value_seed(StrSeed { ctx, path })?);
            }
            Field::BestFrame => {
                out.best_frame = map.next_value_seed(FrameSeed {
                    ctx,
                    place: Place::Single { field: path },
                })?;
            }
            Field::BestFramePng => {
                out.best_frame_png = map.next_value_seed(FrameSeed {
                    ctx,
                    place: Place::Single { field: path },
                })?;
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

/// A map key as read: a known field, a known field in another letter case, or anything else.
enum Key {
    Field(Field),
    /// The key as sent (escapes undone), to name it in the error.
    CaseVariant(Field, Box<str>),
    Other,
}

/// A map key, matched without allocating (but for a case variant, which is refused). serde_json
/// undoes escapes in a key before it gets here.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        // Fields spelt as known are nearly every key, so folding is left for the rest.
        Ok(match Field::from_key(key) {
            Some(field) => Key::Field(field),
            None => match Field::from_key_loosely(key) {
                Some(field) => Key::CaseVariant(field, key.into()),
                None => Key::Other,
            },
        })
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

/// `action`: a string, borrowed when it has no escapes (it is short, so a copy costs nothing).
struct StrSeed<'c> {
    ctx: &'c Ctx,
    path: &'static str,
}

impl StrSeed<'_> {
    fn wrong<E: de::Error>(&self, found: Found) -> E {
        self.ctx.wrong_type(self.path, "a string", found)
    }
}

impl<'de> DeserializeSeed<'de> for StrSeed<'_> {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrSeed<'_> {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s))
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
                place: Place::Listed {
                    field: self.path,
                    index: frames.len(),
                },
            };
            match seq.next_element_seed(seed)? {
                // `FrameSeed` refuses null in a list, so every element is a frame.
                Some(Some(frame)) => frames.push(frame),
                Some(None) => unreachable!("a listed frame is never null"),
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

/// A frame: an element of `frame_list` (a string), or `best_frame` / `best_frame_png` (a string
/// or null). Read as a raw JSON value, so a string is kept as its literal, borrowed from the
/// body even when it has escapes.
struct FrameSeed<'c> {
    ctx: &'c Ctx,
    place: Place,
}

impl FrameSeed<'_> {
    fn wrong<E: de::Error>(&self, found: Found) -> E {
        match self.place {
            Place::Listed { field, index } => self.ctx.fail(Failure::FrameWrongType {
                field,
                index,
                found,
            }),
            Place::Single { field } => self.ctx.wrong_type(field, "a string or null", found),
        }
    }
}

impl<'de> DeserializeSeed<'de> for FrameSeed<'_> {
    type Value = Option<Frame<'de>>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        // Left set if reading fails, so a syntax error inside the value names this frame.
        self.ctx.reading.set(Some(self.place));
        let raw: &'de RawValue = Deserialize::deserialize(d)?;
        self.ctx.reading.set(None);
        match Found::of_raw(raw) {
            Found::String => Ok(Some(Frame::from_json_literal(raw.get()).expect(
                "serde_json hands a string value over as its literal, quotes included",
            ))),
            Found::Null if matches!(self.place, Place::Single { .. }) => Ok(None),
            found => Err(self.wrong(found)),
        }
    }
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
