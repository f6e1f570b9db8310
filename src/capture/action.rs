//! Maps the Web SDK's `action` code to the Oz media the capture becomes: its `media:tags` and
//! whether the frames go as a ZIP or as one photo.
//!
//! Oz ignores media with missing or wrong tags (docs/oz-api.md §2.3), so an action without a known
//! mapping is refused rather than guessed. The action codes are the Web SDK's (docs/oz-api.md §4.5);
//! the tags are Oz API's media tags (docs/oz-api.md §2.4). They are equal except for One Shot, where
//! the SDK says `video_selfie_best` and Oz expects `video_selfie_oneshot`.
//!
//! The media type matters as much as the tags: Oz decides it from the part's MIME type (§2.2),
//! and a ZIP is a shots set, which Oz treats as a video (§2.4, §3.2: even a zipped photo had to
//! be tagged `video_*`). Video tags belong on the frame ZIP; the document tags `photo_id` +
//! side belong on an image, so the two document actions send their photo as one.

use super::Error;

/// How the frames of a capture go to Oz.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    /// A ZIP of every frame: a shots set, analysed like a video.
    ShotsSet,
    /// One image: the photo of a document side.
    Photo,
}

/// The Oz media a capture becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// `media:tags` of the media part, in the order Oz's docs list them.
    pub tags: &'static [&'static str],
    /// ZIP or photo.
    pub media: MediaKind,
}

/// The Oz media for a capture made with `action`.
///
/// Videos (a ZIP of frames) get the data type, the action tag and `orientation_portrait` (the
/// Web SDK captures in portrait); the two document sides get `photo_id` plus the side, on a
/// photo. Anything else is [`Error::UnknownAction`]; the error deliberately does not echo the
/// client's string.
pub fn map_action(action: &str) -> Result<Mapping, Error> {
    const P: &str = "orientation_portrait";
    const V: &str = "video_selfie";
    let video = |tags| Mapping {
        tags,
        media: MediaKind::ShotsSet,
    };
    let photo = |tags| Mapping {
        tags,
        media: MediaKind::Photo,
    };
    Ok(match action {
        "video_selfie_left" => video(&[V, "video_selfie_left", P]),
        "video_selfie_right" => video(&[V, "video_selfie_right", P]),
        "video_selfie_down" => video(&[V, "video_selfie_down", P]),
        "video_selfie_high" => video(&[V, "video_selfie_high", P]),
        "video_selfie_smile" => video(&[V, "video_selfie_smile", P]),
        "video_selfie_eyes" => video(&[V, "video_selfie_eyes", P]),
        "video_selfie_scan" => video(&[V, "video_selfie_scan", P]),
        "video_selfie_blank" => video(&[V, "video_selfie_blank", P]),
        // The one exception to "action code = tag" (gesture table, docs/oz-api.md §2.4).
        "video_selfie_best" => video(&[V, "video_selfie_oneshot", P]),
        "photo_id_front" => photo(&["photo_id", "photo_id_front"]),
        "photo_id_back" => photo(&["photo_id", "photo_id_back"]),
        _ => return Err(Error::UnknownAction),
    })
}

/// Every action [`map_action`] knows.
pub const ACTIONS: &[&str] = &[
    "video_selfie_left",
    "video_selfie_right",
    "video_selfie_down",
    "video_selfie_high",
    "video_selfie_smile",
    "video_selfie_eyes",
    "video_selfie_scan",
    "video_selfie_blank",
    "video_selfie_best",
    "photo_id_front",
    "photo_id_back",
];

/// The action a capture was made with, read back from the tags of its media (a folder read
/// later, `crate::lookup`): the inverse of [`map_action`], so it equals the `X-Oz-Action` the
/// capture got (`video_selfie_oneshot` gives `video_selfie_best`). `None` when no tag is the
/// action tag of a known action: a folder this proxy did not upload, or a container.
pub fn action_of_tags(tags: &[&str]) -> Option<&'static str> {
    ACTIONS.iter().copied().find(|action| {
        map_action(action)
            .ok()
            .and_then(|m| m.tags.get(1).copied())
            .is_some_and(|tag| tags.contains(&tag))
    })
}

/// The tag of the optional best-frame part: a plain reference selfie (docs/oz-api.md §2.4).
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
            let m = map_action(&action).expect("known action");
            assert_eq!(
                m.tags,
                ["video_selfie", action.as_str(), "orientation_portrait"]
            );
            assert_eq!(m.media, MediaKind::ShotsSet);
        }
    }

    #[test]
    fn tags_give_back_the_action() {
        for action in ACTIONS {
            let m = map_action(action).expect("known action");
            assert_eq!(action_of_tags(m.tags), Some(*action), "{action}");
        }
        assert_eq!(
            action_of_tags(&["video_selfie", "video_selfie_oneshot"]),
            Some("video_selfie_best")
        );
        assert_eq!(
            action_of_tags(&["video_selfie", "orientation_portrait"]),
            None
        );
        assert_eq!(
            action_of_tags(&["photo_selfie", "video_selfie_zoom_in"]),
            None
        );
        assert_eq!(action_of_tags(&[]), None);
    }

    #[test]
    fn best_maps_to_oneshot() {
        assert_eq!(
            map_action("video_selfie_best").expect("known action").tags,
            [
                "video_selfie",
                "video_selfie_oneshot",
                "orientation_portrait"
            ]
        );
    }

    #[test]
    fn photo_id_sides_map_to_a_photo_tagged_photo_id_plus_side() {
        for side in ["photo_id_front", "photo_id_back"] {
            let m = map_action(side).expect("known");
            assert_eq!(m.tags, ["photo_id", side]);
            assert_eq!(m.media, MediaKind::Photo);
        }
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
            let err = map_action(a).expect_err("unknown action");
            assert!(matches!(err, Error::UnknownAction));
        }
        let err = map_action("secret-marker-42").expect_err("unknown action");
        assert!(
            !err.to_string().contains("secret-marker-42"),
            "message echoes input: {err}"
        );
    }
}
