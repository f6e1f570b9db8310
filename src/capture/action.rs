//! Maps the Web SDK's `action` code to the Oz `media:tags` of the uploaded ZIP.
//!
//! Oz ignores media with missing or wrong tags (oz-api.md §2.3), so an action without a known
//! mapping is refused rather than guessed. The action codes are the Web SDK's (oz-api.md §4.5);
//! the tags are Oz API's media tags (oz-api.md §2.4). They are equal except for One Shot, where
//! the SDK says `video_selfie_best` and Oz expects `video_selfie_oneshot`.

use super::Error;

/// The tags Oz expects for a frame ZIP captured with `action`, in the order Oz's docs list them.
///
/// Videos (a ZIP of frames is a shots set, which Oz treats as a video) get the data type, the
/// action tag and `orientation_portrait` (the Web SDK captures in portrait); the two document
/// sides get `photo_id` plus the side. Anything else is [`Error::UnknownAction`]; the error
/// deliberately does not echo the client's string.
pub fn tags_for_action(action: &str) -> Result<&'static [&'static str], Error> {
    const P: &str = "orientation_portrait";
    const V: &str = "video_selfie";
    let tags: &'static [&'static str] = match action {
        "video_selfie_left" => &[V, "video_selfie_left", P],
        "video_selfie_right" => &[V, "video_selfie_right", P],
        "video_selfie_down" => &[V, "video_selfie_down", P],
        "video_selfie_high" => &[V, "video_selfie_high", P],
        "video_selfie_smile" => &[V, "video_selfie_smile", P],
        "video_selfie_eyes" => &[V, "video_selfie_eyes", P],
        "video_selfie_scan" => &[V, "video_selfie_scan", P],
        "video_selfie_blank" => &[V, "video_selfie_blank", P],
        // The one exception to "action code = tag" (gesture table, oz-api.md §2.4).
        "video_selfie_best" => &[V, "video_selfie_oneshot", P],
        "photo_id_front" => &["photo_id", "photo_id_front"],
        "photo_id_back" => &["photo_id", "photo_id_back"],
        _ => return Err(Error::UnknownAction),
    };
    Ok(tags)
}

/// The tag of the optional best-frame part: a plain reference selfie (oz-api.md §2.4).
pub const BEST_FRAME_TAGS: &[&str] = &["photo_selfie"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_actions_map_to_video_selfie_plus_action_plus_portrait() {
        for g in [
            "left", "right", "down", "high", "smile", "eyes", "scan", "blank",
        ] {
            let action = format!("video_selfie_{g}");
            let tags = tags_for_action(&action).expect("known action");
            assert_eq!(
                tags,
                ["video_selfie", action.as_str(), "orientation_portrait"]
            );
        }
    }

    #[test]
    fn best_maps_to_oneshot() {
        assert_eq!(
            tags_for_action("video_selfie_best").expect("known action"),
            [
                "video_selfie",
                "video_selfie_oneshot",
                "orientation_portrait"
            ]
        );
    }

    #[test]
    fn photo_id_sides_map_to_photo_id_plus_side() {
        assert_eq!(
            tags_for_action("photo_id_front").expect("known"),
            ["photo_id", "photo_id_front"]
        );
        assert_eq!(
            tags_for_action("photo_id_back").expect("known"),
            ["photo_id", "photo_id_back"]
        );
    }

    #[test]
    fn unknown_actions_are_refused_without_echo() {
        for a in [
            "",
            "video_selfie",
            "video_selfie_oneshot",
            "VIDEO_SELFIE_BLANK",
            "video_selfie_zoom_in",
        ] {
            let err = tags_for_action(a).expect_err("unknown action");
            assert!(matches!(err, Error::UnknownAction));
        }
        let err = tags_for_action("secret-marker-42").expect_err("unknown action");
        assert!(
            !err.to_string().contains("secret-marker-42"),
            "message echoes input: {err}"
        );
    }
}
