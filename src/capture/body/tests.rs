//! Tests of `parse_capture`: both shapes, escapes, every refusal and what its message names.

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

/// Whether `s` points into `body`: the parser made no copy of it.
fn borrowed_from(body: &[u8], s: &str) -> bool {
    body.as_ptr_range().contains(&s.as_ptr())
}

#[test]
fn plain_shape_borrows_frames() {
    let body = sample_capture_json(3, false, "video_selfie_blank");
    let c = parse(&body).expect("valid");
    assert_eq!(c.action, "video_selfie_blank");
    assert!(!c.virtual_camera);
    assert_eq!(c.frames.len(), 3);
    assert!(c.frames.iter().all(|f| borrowed_from(&body, f.raw())));
    assert!(c.frames.iter().all(|f| !f.has_escapes()));
    assert!(c.frames[0].raw().starts_with("data:image/jpeg;base64,/9j/"));
    assert!(c.frames[0].json_literal().starts_with("\"data:image/jpeg;"));
    let best = c.best_frame.expect("best frame");
    assert!(borrowed_from(&body, best.raw()));
    assert!(c
        .best_frame_png
        .is_some_and(|f| f.raw().starts_with("data:image/png;base64,")));
    assert_eq!(c.additional_info.get(), info_json());
    assert_eq!(c.frame_list_field(), "frame_list");
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

/// Escaped frames (PHP's `\/`) are kept as sent, borrowed from the body: no copy is made here,
/// they are unescaped one at a time when decoded (`capture::frame`).
#[test]
fn escaped_frames_stay_borrowed_as_sent_and_additional_info_verbatim() {
    for vc in [false, true] {
        let body = sample_capture_json_escaped(2, vc, "video_selfie_blank");
        let c = parse(&body).expect("valid");
        assert!(c.frames.iter().all(|f| borrowed_from(&body, f.raw())));
        assert!(c.frames.iter().all(Frame::has_escapes));
        assert!(c.frames[0].raw().starts_with(r"data:image\/jpeg;base64,"));
        let best = c.best_frame_png.expect("best frame png");
        assert!(borrowed_from(&body, best.raw()) && best.has_escapes());
        // Unescaped, each frame is the one in the plain body.
        let plain = sample_capture_json(2, vc, "video_selfie_blank");
        let p = parse(&plain).expect("valid");
        for (escaped, plain) in c.frames.iter().zip(&p.frames) {
            let s: String = serde_json::from_str(escaped.json_literal()).expect("string");
            assert_eq!(s, plain.raw());
        }
        // additional_info is forwarded as sent, escapes included.
        assert!(c.additional_info.get().contains(r"oz-liveness-web\/1.9.2"));
        let s: String = serde_json::from_str(c.additional_info.get()).expect("string");
        assert_eq!(s, SAMPLE_ADDITIONAL_INFO);
    }
}

#[test]
fn frames_keep_any_escape_as_sent() {
    let body = r#"{"action":"a","additional_info":"","frame_list":["data:x","data:\u0078","\"\\\/\b\f\n\r\t\uD83D\uDE00"],"best_frame":"\u0041"}"#;
    let c = parse(body.as_bytes()).expect("valid");
    let raw: Vec<&str> = c.frames.iter().map(Frame::raw).collect();
    assert_eq!(
        raw,
        ["data:x", r"data:\u0078", r#"\"\\\/\b\f\n\r\t\uD83D\uDE00"#]
    );
    assert!(!c.frames[0].has_escapes() && c.frames[1].has_escapes());
    assert_eq!(c.best_frame.map(|f| f.raw()), Some(r"\u0041"));
    // Half a surrogate pair is valid JSON syntax but no text: the frame is refused when it is
    // decoded, with its index (`capture::frame`), not here.
    let body = r#"{"action":"a","additional_info":"","frame_list":["\uD800"]}"#;
    assert_eq!(
        parse(body.as_bytes()).expect("valid").frames[0].raw(),
        r"\uD800"
    );
}

/// A syntax error inside a frame string names the frame; the same error elsewhere, or a body
/// cut short inside a frame, is a JSON error.
#[test]
fn a_syntax_error_inside_a_frame_names_it() {
    for (frame, what) in [
        (r"data:image\/jpeg;base64,\q", "invalid escape"),
        (r"data:image\/jpeg;base64,\u12G4", "invalid escape"),
        ("data:image/jpeg;base64,\u{1}", "control character"),
        ("data:image/jpeg;base64,\t", "control character"),
    ] {
        for vc in [false, true] {
            let list = format!(r#"["f0","f1","{frame}"]"#);
            let body = if vc {
                format!(
                    r#"{{"action":"a","from_virtual_camera":{{"additional_info":"i","frame_list":{list}}}}}"#
                )
            } else {
                format!(r#"{{"action":"a","additional_info":"i","frame_list":{list}}}"#)
            };
            match err(&body) {
                Error::BadFrame {
                    field,
                    index: 2,
                    reason,
                } => {
                    let want = if vc {
                        "from_virtual_camera.frame_list"
                    } else {
                        "frame_list"
                    };
                    assert_eq!(field, want);
                    assert!(reason.starts_with("is not a valid JSON string"), "{reason}");
                    assert!(
                        reason.contains(what) && reason.contains("line 1 column"),
                        "{reason}"
                    );
                }
                other => panic!("{frame}: unexpected {other:?}"),
            }
            let body = format!(
                r#"{{"action":"a","frame_list":["f"],"additional_info":"i","best_frame_png":"{frame}"}}"#
            );
            let (field, reason) = bad_field(&body);
            assert_eq!(field, "best_frame_png");
            assert!(reason.contains(what), "{reason}");
        }
    }
    // Not UTF-8 inside a frame string.
    let mut bytes = br#"{"action":"a","frame_list":[""#.to_vec();
    bytes.extend_from_slice(&[0xFF, 0xFE]);
    bytes.extend_from_slice(br#""],"additional_info":"i"}"#);
    assert!(matches!(
        parse(&bytes),
        Err(Error::BadFrame {
            field: "frame_list",
            index: 0,
            ..
        })
    ));
    // Elsewhere, the same errors are about the JSON.
    for body in [
        r#"{"action":"a\q","frame_list":["f"],"additional_info":"i"}"#,
        r#"{"action":"a","frame_list":["f"],"additional_info":"i\q"}"#,
        r#"{"action":"a","frame_list":["f"] "additional_info":"i"}"#,
        r#"{"action":"a","frame_list":["f" "g"],"additional_info":"i"}"#,
        r#"{"action":"a","frame_list":["data:image\/jpeg;base64,AAAA"#,
    ] {
        assert!(matches!(err(body), Error::BadJson { .. }), "{body}");
    }
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
fn a_key_spelt_plainly_and_with_escapes_is_a_duplicate() {
    let body = r#"{"action":"a","frame_list":["f"],"additional_info":"i","frame\u005flist":["g"]}"#;
    let (f, r) = bad_field(body);
    assert_eq!(f, "frame_list");
    assert!(r.starts_with("appears more than once"), "{r}");
    let body = r#"{"action":"a","from_virtual_camera":{"\u0066rame_list":["f"],"additional_info":"i","frame_list":["g"]}}"#;
    assert_eq!(bad_field(body).0, "from_virtual_camera.frame_list");
    // Spelt with escapes alone, it is the field.
    let body = r#"{"\u0061ction":"a","frame\u005flist":["f"],"additional_info":"i"}"#;
    let c = parse(body.as_bytes()).expect("valid");
    assert_eq!((c.action.as_ref(), c.frames.len()), ("a", 1));
}

/// Keys that are a known field but for letter case or word separators, and the field path their
/// error names.
const CASE_VARIANTS: [(&str, &str, &str); 21] = [
    // camelCase, kebab-case and run-together aliases of a field.
    (r#""bestFrame":"x""#, "bestFrame", "best_frame"),
    (r#""frameList":["x"]"#, "frameList", "frame_list"),
    (r#""best-frame":"x""#, "best-frame", "best_frame"),
    (
        r#""additionalinfo":"j""#,
        "additionalinfo",
        "additional_info",
    ),
    (r#""BestFramePNG":null"#, "BestFramePNG", "best_frame_png"),
    (r#""FRAME_LIST":["x"]"#, "FRAME_LIST", "frame_list"),
    (r#""Frame_List":null"#, "Frame_List", "frame_list"),
    (
        r#""Additional_Info":"j""#,
        "Additional_Info",
        "additional_info",
    ),
    (r#""Best_Frame":"x""#, "Best_Frame", "best_frame"),
    (
        r#""BEST_FRAME_PNG":null"#,
        "BEST_FRAME_PNG",
        "best_frame_png",
    ),
    (r#""Action":"b""#, "Action", "action"),
    (
        r#""From_Virtual_Camera":null"#,
        "From_Virtual_Camera",
        "from_virtual_camera",
    ),
    (
        r#""frame_Landmarks":[]"#,
        "frame_Landmarks",
        "frame_landmarks",
    ),
    // Long s for `s`, Kelvin sign for `k`, dotless i and I with dot for `i`: raw and escaped.
    (
        "\"frame_li\u{17f}t\":[\"x\"]",
        "frame_li\u{17f}t",
        "frame_list",
    ),
    (
        r#""frame_li\u017ft":["x"]"#,
        "frame_li\u{17f}t",
        "frame_list",
    ),
    (
        "\"best_frame_landmar\u{212a}s\":{}",
        "best_frame_landmar\u{212a}s",
        "best_frame_landmarks",
    ),
    (
        "\"frame_l\u{131}st\":[\"x\"]",
        "frame_l\u{131}st",
        "frame_list",
    ),
    (
        r#""additional_\u0130nfo":"j""#,
        "additional_\u{130}nfo",
        "additional_info",
    ),
    // Escapes are undone before keys are compared.
    (r#""FRAME\u005fLIST":["x"]"#, "FRAME_LIST", "frame_list"),
    (r#""\u0042est_frame":"x""#, "Best_frame", "best_frame"),
    (
        r#""\u0046\u0052\u0041\u004D\u0045\u005F\u0042\u004F\u0055\u004E\u0044\u0049\u004E\u0047\u005F\u0042\u004F\u0058\u005F\u004C\u0049\u0053\u0054":[]"#,
        "FRAME_BOUNDING_BOX_LIST",
        "frame_bounding_box_list",
    ),
];

#[test]
fn a_known_field_in_another_letter_case_is_refused_and_named() {
    for (entry, key, known) in CASE_VARIANTS {
        let top = format!(r#"{{"action":"a","frame_list":["f"],"additional_info":"i",{entry}}}"#);
        let (field, reason) = bad_field(&top);
        assert_eq!(field, key, "{top}");
        assert!(
            reason.starts_with(&format!(
                "differs from `{known}` only in letter case or word separators (line 1, column "
            )),
            "{top}: {reason}"
        );
        // Before the known field too: the key is refused when it is read.
        let first = format!(r#"{{{entry},"action":"a","frame_list":["f"],"additional_info":"i"}}"#);
        assert_eq!(bad_field(&first).0, key, "{first}");
        // Under `from_virtual_camera`, but for the fields that only live at the top level.
        let vc = format!(
            r#"{{"action":"a","from_virtual_camera":{{"frame_list":["f"],"additional_info":"i",{entry}}}}}"#
        );
        if matches!(known, "action" | "from_virtual_camera") {
            assert!(parse(vc.as_bytes()).is_ok(), "{vc}");
        } else {
            let (field, reason) = bad_field(&vc);
            assert_eq!(field, format!("from_virtual_camera.{key}"), "{vc}");
            assert!(
                reason.starts_with(&format!(
                    "differs from `from_virtual_camera.{known}` only in letter case"
                )),
                "{vc}: {reason}"
            );
        }
    }
}

#[test]
fn exact_fields_and_other_unknown_keys_still_pass() {
    for key in [
        "sdk_version",
        "frame_lists",
        "frame list",
        "frame_li\u{df}t",
        "frame_l\u{12b}st",
        "\u{17f}dk_version",
        "",
    ] {
        let body = format!(
            r#"{{"action":"a","frame_list":["f"],"additional_info":"i",{}:1,"from_virtual_camera":null}}"#,
            serde_json::to_string(key).expect("str")
        );
        let c = parse(body.as_bytes()).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!((c.action.as_ref(), c.frames.len()), ("a", 1));
    }
    let body = sample_capture_json(2, true, "video_selfie_blank");
    assert!(parse(&body).is_ok());
}

/// A key fully spelt in `\u` escapes is too short to be cut from the skeleton, even the
/// longest name, so it is matched (and checked) in a body whose frames are cut.
#[test]
fn escaped_keys_reach_the_parser_in_a_cut_body() {
    let escaped: String = "frame_bounding_box_list"
        .bytes()
        .map(|b| format!("\\u{b:04x}"))
        .collect();
    let plain =
        String::from_utf8(sample_capture_json(3, false, "video_selfie_blank")).expect("UTF-8");
    let body = plain.replacen(
        "\"frame_bounding_box_list\":[",
        &format!("\"{escaped}\":7,\"x\":["),
        1,
    );
    assert!(
        matches!(skim(body.as_bytes(), MIN_CUT).text, Cow::Owned(_)),
        "cut"
    );
    let (field, reason) = bad_field(&body);
    assert_eq!(field, "frame_bounding_box_list");
    assert!(
        reason.starts_with("expected an array or null, found a number"),
        "{reason}"
    );
    let kelvin = escaped.replacen("\\u0062", "\\u0042", 1);
    let body = plain.replacen("\"frame_bounding_box_list\"", &format!("\"{kelvin}\""), 1);
    assert_eq!(bad_field(&body).0, "frame_Bounding_box_list");
}

#[test]
fn the_fold_table_is_every_case_mapping_into_ascii() {
    let single = |s: String| {
        let mut cs = s.chars();
        cs.next().filter(|_| cs.next().is_none())
    };
    for c in (0..=0x10FFFF)
        .filter_map(char::from_u32)
        .filter(|c| !c.is_ascii())
    {
        let lower = c.to_lowercase().to_string();
        let upper = c.to_uppercase().to_string();
        // Simple mappings only, but `İ`'s lower case is `i` and a combining dot.
        let ascii = [single(lower.clone()), single(upper), lower.chars().next()]
            .into_iter()
            .flatten()
            .find(char::is_ascii_alphabetic)
            .filter(|_| c.to_lowercase().count() == 1 || c == '\u{130}');
        assert_eq!(
            fold_to_ascii(c),
            ascii.map(|a| a.to_ascii_lowercase() as u8),
            "U+{:04X}",
            c as u32
        );
    }
    for b in 0..0x80u8 {
        assert_eq!(fold_to_ascii(b as char), Some(b.to_ascii_lowercase()));
    }
    for field in Field::ALL {
        assert_eq!(Field::from_key(field.name()), Some(field));
        assert_eq!(
            Field::from_key_loosely(&field.name().to_uppercase()),
            Some(field)
        );
    }
    assert_eq!(Field::LONGEST_NAME, "frame_bounding_box_list".len());
}

#[test]
fn top_level_best_frames_must_be_null_in_the_virtual_camera_shape() {
    for (key, vc_path) in [
        ("best_frame", "from_virtual_camera.best_frame"),
        ("best_frame_png", "from_virtual_camera.best_frame_png"),
    ] {
        let body = format!(
            r#"{{"action":"a","{key}":"data:image/jpeg;base64,{SECRET}","from_virtual_camera":{{"frame_list":["f"],"additional_info":"i"}}}}"#
        );
        let (field, reason) = bad_field(&body);
        assert_eq!(field, key);
        assert!(reason.contains(vc_path), "{reason}");
        assert!(!reason.contains(SECRET), "{reason}");
        // null, as the Web SDK sends them, is fine.
        let body = body.replace(&format!("\"data:image/jpeg;base64,{SECRET}\""), "null");
        assert!(parse(body.as_bytes()).expect("valid").virtual_camera);
    }
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
    // Not UTF-8 inside a string that is not a frame.
    let mut bytes = br#"{"action":""#.to_vec();
    bytes.extend_from_slice(&[0xFF, 0xFE]);
    bytes.extend_from_slice(br#"","frame_list":["f"],"additional_info":"i"}"#);
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
        format!(
            r#"{{"action":"a","frame_list":["data:image\/jpeg;base64,{SECRET}\q"],"additional_info":"i"}}"#
        ),
        format!(
            r#"{{"action":"a","frame_list":["f"],"best_frame":"{SECRET}\x","additional_info":"i"}}"#
        ),
        format!(
            r#"{{"action":"a","frame_list":["{SECRET}{}"],"additional_info":"i"}}"#,
            '\u{1}'
        ),
        format!(
            r#"{{"action":"a","frame_list":["f"],"Best_Frame":"{SECRET}","additional_info":"i"}}"#
        ),
        format!(
            r#"{{"action":"a","frame_list":["f"],"additional_info":"i","ADDITIONAL_INFO":"{SECRET}"}}"#
        ),
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

// === Skeleton against whole body ===

/// Parses `body` as `parse_capture` does but with every string of 40 bytes or more cut (so
/// frames, and no key), and as serde_json read the whole body before skeletons: the two must
/// agree on everything, every error message and position included.
fn assert_same_as_whole(body: &[u8]) {
    let cut = parse_skeleton(&skim::skim_always(body, 40), 300);
    let whole = parse_skeleton(&Skeleton::whole(body), 300);
    assert_eq!(
        format!("{cut:?}"),
        format!("{whole:?}"),
        "{}",
        String::from_utf8_lossy(body)
    );
    if let Ok(c) = cut {
        assert!(c.frames.iter().all(|f| borrowed_from(body, f.raw())));
        assert!(borrowed_from(body, c.additional_info.get()));
    }
}

/// Sample bodies: plain, `\/`-escaped, virtual camera, and spread over several lines.
fn skeleton_samples() -> Vec<Vec<u8>> {
    let plain = sample_capture_json(1, false, "video_selfie_blank");
    let lines = String::from_utf8(plain.clone())
        .expect("utf8")
        .replace(",\"", ",\n  \"")
        .replace('[', "[\n");
    vec![
        plain,
        sample_capture_json_escaped(1, false, "video_selfie_blank"),
        sample_capture_json_escaped(1, true, "video_selfie_eyes"),
        lines.into_bytes(),
    ]
}

#[test]
fn skeleton_parse_matches_whole_body_parse() {
    let mut long_action = SampleCapture::new(2, false, &"video\u{e9}/selfie".repeat(8));
    long_action.escape_slashes = true;
    let mut bodies = skeleton_samples();
    bodies.push(long_action.to_json());
    let plain = String::from_utf8(bodies[0].clone()).expect("UTF-8");
    // Keys shorter than the 40 bytes `assert_same_as_whole` cuts from (`MIN_CUT` is longer than
    // any of them).
    for (entry, _, _) in CASE_VARIANTS {
        let key = entry.split(':').next().expect("a key");
        if key.len() < 40 {
            bodies.push(plain.replacen("\"best_frame\"", key, 1).into_bytes());
        }
    }
    for body in bodies {
        assert_same_as_whole(&body);
    }
}

#[test]
fn skeleton_parse_matches_whole_body_parse_when_cut_short() {
    for body in skeleton_samples() {
        for end in 0..body.len() {
            assert_same_as_whole(&body[..end]);
        }
    }
}

#[test]
fn skeleton_parse_matches_whole_body_parse_with_bad_bytes_anywhere() {
    // Bad and unusual escapes, a control character, a line break, a lone surrogate, a byte
    // that is not UTF-8, a stray quote or separator; at every position (every third, to keep
    // the test quick), so inside frames, right before closing quotes and in the structure.
    let snippets: [&[u8]; 10] = [
        br"\x", br"\u12G4", br"\u002F", br"\uD800", b"\x01", b"\n", b"\xFF", b"\"", b";", b"\\",
    ];
    for body in skeleton_samples() {
        for snippet in snippets {
            for at in (0..=body.len()).step_by(3) {
                let mut bad = body[..at].to_vec();
                bad.extend_from_slice(snippet);
                bad.extend_from_slice(&body[at..]);
                assert_same_as_whole(&bad);
            }
        }
    }
}
