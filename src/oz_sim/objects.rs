//! The Oz objects the simulator stores (folders, media, analyses) and their JSON form.
//!
//! Follows docs/oz-api.md §2.8 (folder and media fields), §3.1 (analysis types, sent lowercase and
//! reported uppercase; both `analysis_id` and `analyse_id`, §8.3) and §3.5 (the status table:
//! `state`, `resolution_status`, the folder's combined `resolution_status` and
//! `system_resolution`, and `results_media[].results_data.confidence_spoofing`). A folder and
//! an analysis list their media under `source_media` as §2.8 describes analysis sources
//! (`media_id`, `media_type`, and a `preview_url` where the media has a preview, §2.7; see
//! `preview` for which do).

use serde_json::{json, Value};
use tokio::time::Instant;

use super::config::Verdict;
use super::error::ApiError;
use super::shots::MediaType;

/// Analysis types Oz knows (docs/oz-api.md §3.1). `collection` is the inferred blacklist name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AnalysisType {
    Quality,
    Biometry,
    Documents,
    Collection,
}

impl AnalysisType {
    const ALL: [AnalysisType; 4] = [
        AnalysisType::Quality,
        AnalysisType::Biometry,
        AnalysisType::Documents,
        AnalysisType::Collection,
    ];

    fn request_name(self) -> &'static str {
        match self {
            AnalysisType::Quality => "quality",
            AnalysisType::Biometry => "biometry",
            AnalysisType::Documents => "documents",
            AnalysisType::Collection => "collection",
        }
    }

    fn wire_name(self) -> &'static str {
        match self {
            AnalysisType::Quality => "QUALITY",
            AnalysisType::Biometry => "BIOMETRY",
            AnalysisType::Documents => "DOCUMENTS",
            AnalysisType::Collection => "COLLECTION",
        }
    }

    /// Parses the lowercase request name; the uppercase wire form is refused on purpose, since
    /// the docs only ever send lowercase.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        Self::ALL
            .into_iter()
            .find(|t| t.request_name() == s)
            .ok_or_else(|| {
                ApiError::value(format!(
                    "unknown analysis type {s:?}; expected one of quality, biometry, documents, \
                     collection (lowercase)"
                ))
            })
    }
}

/// One entry of an `analyses` request array (docs/oz-api.md §3.1).
#[derive(Clone, Debug)]
pub(crate) struct AnalysisRequest {
    pub kind: AnalysisType,
    /// Media ids to run on; `None` means every media in the folder.
    pub source_media: Option<Vec<String>>,
    pub params: Value,
}

/// Parses `[{"type": "quality", "source_media": [...], "params": {...}}, ...]`.
pub(crate) fn parse_analysis_requests(v: &Value) -> Result<Vec<AnalysisRequest>, ApiError> {
    let items = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::structure("\"analyses\" must be a non-empty array"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let obj = item
                .as_object()
                .ok_or_else(|| ApiError::structure(format!("analyses[{i}] is not an object")))?;
            let kind = match obj.get("type") {
                Some(Value::String(t)) => AnalysisType::parse(t)?,
                Some(_) => {
                    return Err(ApiError::kind(format!(
                        "analyses[{i}].type must be a string"
                    )))
                }
                None => return Err(ApiError::structure(format!("analyses[{i}] has no type"))),
            };
            let source_media = match obj.get("source_media") {
                None | Some(Value::Null) => None,
                Some(Value::Array(ids)) => Some(
                    ids.iter()
                        .map(|id| id.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| {
                            ApiError::kind(format!(
                                "analyses[{i}].source_media must be an array of media id strings"
                            ))
                        })?,
                ),
                Some(_) => {
                    return Err(ApiError::kind(format!(
                        "analyses[{i}].source_media must be an array"
                    )))
                }
            };
            let params = match obj.get("params") {
                None | Some(Value::Null) => json!({}),
                Some(p @ Value::Object(_)) => p.clone(),
                Some(_) => {
                    return Err(ApiError::kind(format!(
                        "analyses[{i}].params must be an object"
                    )))
                }
            };
            Ok(AnalysisRequest {
                kind,
                source_media,
                params,
            })
        })
        .collect()
}

/// A stored media item.
#[derive(Clone, Debug)]
pub(crate) struct Media {
    pub id: String,
    pub media_type: MediaType,
    pub original_name: String,
    pub tags: Vec<String>,
    pub meta_data: Value,
    pub time_created: f64,
    /// Whether `preview` serves an MP4 of it.
    pub has_preview: bool,
}

impl Media {
    /// `{origin}/api/folders/{folder_id}/media/{media_id}/preview.mp4`, the path `routes` maps
    /// to `preview`, when the media has a preview and the answer has an origin to link to.
    pub fn preview_url(&self, folder_id: &str, origin: Option<&str>) -> Option<String> {
        let origin = origin.filter(|_| self.has_preview)?;
        Some(format!(
            "{origin}/api/folders/{folder_id}/media/{}/preview.mp4",
            self.id
        ))
    }

    /// The media as a `source_media` entry; `preview_url` is absent, not null, without a
    /// preview, so a client tells "no video" by the key alone.
    pub fn source_json(&self, folder_id: &str, origin: Option<&str>) -> Value {
        let mut v = json!({
            "media_id": self.id,
            "media_type": self.media_type.as_str(),
            "original_name": self.original_name,
        });
        if let Some(url) = self.preview_url(folder_id, origin) {
            v["preview_url"] = json!(url);
        }
        v
    }

    pub fn to_json(&self, folder_id: &str) -> Value {
        json!({
            "media_id": self.id,
            "folder_id": folder_id,
            "media_type": self.media_type.as_str(),
            "original_name": self.original_name,
            "tags": self.tags,
            "meta_data": self.meta_data,
            "time_created": self.time_created,
            "time_updated": self.time_created,
        })
    }
}

/// A stored folder.
#[derive(Clone, Debug)]
pub(crate) struct Folder {
    pub id: String,
    pub time_created: f64,
    pub meta_data: Value,
    pub media: Vec<Media>,
    /// Ids of the folder's analyses, in start order.
    pub analyses: Vec<String>,
}

/// What an analysis currently shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Processing,
    Final(Verdict),
}

/// A stored analysis.
#[derive(Clone, Debug)]
pub(crate) struct Analysis {
    pub id: String,
    pub folder_id: String,
    pub kind: AnalysisType,
    /// Media ids it runs on.
    pub source_media: Vec<String>,
    pub params: Value,
    pub time_created: f64,
    /// Reads left that still answer `PROCESSING`.
    pub polls_left: u32,
    /// No read before this instant turns it final (the `processing_for` hold). On tokio's
    /// clock, so a test that pauses time controls it.
    pub ready_at: Instant,
    pub verdict: Verdict,
    pub finished: bool,
}

impl Analysis {
    /// One read of the analysis by a client at `now`: it turns final on the first read after
    /// `polls_left` reads and once `ready_at` has passed; reads during the hold still count.
    /// A read takes one `now` for the whole answer, so every analysis in it agrees on time.
    pub fn observe(&mut self, now: Instant) {
        if self.polls_left > 0 {
            self.polls_left -= 1;
        } else if now >= self.ready_at {
            self.finished = true;
        }
    }

    fn phase(&self) -> Phase {
        if self.finished {
            Phase::Final(self.verdict)
        } else {
            Phase::Processing
        }
    }

    /// The analysis object; `media` is the folder's media, to name the sources, and `origin`
    /// (`http://host`) what their preview URLs start with.
    pub fn to_json(&self, media: &[Media], origin: Option<&str>) -> Value {
        let sources: Vec<&Media> = media
            .iter()
            .filter(|m| self.source_media.contains(&m.id))
            .collect();
        // §3.5: while unfinished, resolution_status copies state; a system error is FAILED in
        // all three fields.
        let (state, resolution) = match self.phase() {
            Phase::Processing => ("PROCESSING", "PROCESSING"),
            Phase::Final(Verdict::Failed) => ("FAILED", "FAILED"),
            Phase::Final(v) => ("FINISHED", v.as_str()),
        };
        let (results_media, results_data) = match self.phase() {
            Phase::Final(v) if v != Verdict::Failed => self.results(v, &sources),
            _ => (vec![], Value::Null),
        };
        json!({
            "analysis_id": self.id,
            "analyse_id": self.id,
            "folder_id": self.folder_id,
            "type": self.kind.wire_name(),
            "state": state,
            "resolution_status": resolution,
            "resolution": resolution,
            "params": self.params,
            "source_media": sources
                .iter()
                .map(|m| m.source_json(&self.folder_id, origin))
                .collect::<Vec<_>>(),
            "results_media": results_media,
            "results_data": results_data,
            "time_created": self.time_created,
        })
    }

    /// Scores that agree with the verdict: Liveness reports `confidence_spoofing` per media
    /// (≥ 0.5 means an attack), Biometry `min_confidence`/`max_confidence` (≥ 0.85 means a
    /// match), per the default thresholds of docs/oz-api.md §3.5.
    fn results(&self, verdict: Verdict, sources: &[&Media]) -> (Vec<Value>, Value) {
        match self.kind {
            AnalysisType::Quality => {
                let spoofing = match verdict {
                    Verdict::Declined => 0.99,
                    Verdict::OperatorRequired => 0.5,
                    _ => 0.01,
                };
                let per_media = sources
                    .iter()
                    .map(|m| {
                        let mut r = json!({
                            "results_media_id": format!("{}-{}", self.id, m.id),
                            "source_media_id": m.id,
                            "results_data": {"confidence_spoofing": spoofing},
                        });
                        let key = match m.media_type {
                            MediaType::ShotsSet => "source_shots_set_id",
                            MediaType::Video => "source_video_id",
                            MediaType::Image => "source_image_id",
                        };
                        r[key] = json!(m.id);
                        r
                    })
                    .collect();
                (per_media, Value::Null)
            }
            AnalysisType::Biometry => {
                let c = match verdict {
                    Verdict::Declined => 0.01,
                    Verdict::OperatorRequired => 0.8,
                    _ => 0.99,
                };
                (vec![], json!({"min_confidence": c, "max_confidence": c}))
            }
            AnalysisType::Documents | AnalysisType::Collection => (vec![], Value::Null),
        }
    }
}

/// The folder object. `analyses` are the folder's analyses; `embed` puts them in the answer;
/// `origin` (`http://host`) starts the preview URLs, `None` leaves them out.
pub(crate) fn folder_json(
    folder: &Folder,
    analyses: &[&Analysis],
    embed: bool,
    origin: Option<&str>,
) -> Value {
    let (status, system) = combined(analyses);
    let mut v = json!({
        "folder_id": folder.id,
        "resolution_status": status,
        "system_resolution": system,
        "time_created": folder.time_created,
        "time_updated": folder.time_created,
        "meta_data": folder.meta_data,
        "technical_meta_data": {},
        "media": folder.media.iter().map(|m| m.to_json(&folder.id)).collect::<Vec<_>>(),
        "source_media": folder
            .media
            .iter()
            .map(|m| m.source_json(&folder.id, origin))
            .collect::<Vec<_>>(),
    });
    if embed {
        v["analyses"] = analyses
            .iter()
            .map(|a| a.to_json(&folder.media, origin))
            .collect();
    }
    v
}

/// The folder's `resolution_status` and `system_resolution` from its analyses (§3.5): the
/// folder's own status only says where processing is (INITIAL, PROCESSING, FAILED, FINISHED);
/// `system_resolution` carries the combined verdict, the worst one winning.
fn combined(analyses: &[&Analysis]) -> (&'static str, &'static str) {
    if analyses.is_empty() {
        return ("INITIAL", "INITIAL");
    }
    let phases: Vec<Phase> = analyses.iter().map(|a| a.phase()).collect();
    if phases.contains(&Phase::Final(Verdict::Failed)) {
        ("FAILED", "FAILED")
    } else if phases.contains(&Phase::Processing) {
        ("PROCESSING", "PROCESSING")
    } else if phases.contains(&Phase::Final(Verdict::Declined)) {
        ("FINISHED", "DECLINED")
    } else if phases.contains(&Phase::Final(Verdict::OperatorRequired)) {
        ("FINISHED", "OPERATOR_REQUIRED")
    } else {
        ("FINISHED", "SUCCESS")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(polls: u32, verdict: Verdict) -> Analysis {
        held(polls, verdict, Instant::now())
    }

    fn held(polls: u32, verdict: Verdict, ready_at: Instant) -> Analysis {
        Analysis {
            id: "a1".into(),
            folder_id: "f1".into(),
            kind: AnalysisType::Quality,
            source_media: vec!["m1".into()],
            params: json!({}),
            time_created: 0.0,
            polls_left: polls,
            ready_at,
            verdict,
            finished: false,
        }
    }

    fn media() -> Vec<Media> {
        vec![Media {
            id: "m1".into(),
            media_type: MediaType::ShotsSet,
            original_name: "frames.zip".into(),
            tags: vec![],
            meta_data: json!({}),
            time_created: 0.0,
            has_preview: true,
        }]
    }

    #[test]
    fn processing_for_n_reads_then_final() {
        let mut a = analysis(2, Verdict::Declined);
        let mut seen = vec![];
        for _ in 0..4 {
            a.observe(Instant::now());
            seen.push(
                a.to_json(&media(), None)["resolution"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        assert_eq!(seen, ["PROCESSING", "PROCESSING", "DECLINED", "DECLINED"]);
        let j = a.to_json(&media(), None);
        assert_eq!(j["state"], "FINISHED");
        assert_eq!(j["analyse_id"], j["analysis_id"]);
        assert_eq!(j["results_media"][0]["source_shots_set_id"], "m1");
        assert_eq!(
            j["results_media"][0]["results_data"]["confidence_spoofing"],
            0.99
        );
    }

    #[test]
    fn failed_verdict_fails_state_and_folder() {
        let mut a = analysis(0, Verdict::Failed);
        a.observe(Instant::now());
        assert_eq!(a.to_json(&media(), None)["state"], "FAILED");
        assert_eq!(combined(&[&a]), ("FAILED", "FAILED"));
    }

    #[test]
    fn folder_combines_worst_verdict() {
        let mut ok = analysis(0, Verdict::Success);
        let mut bad = analysis(0, Verdict::Declined);
        assert_eq!(combined(&[]), ("INITIAL", "INITIAL"));
        assert_eq!(combined(&[&ok]), ("PROCESSING", "PROCESSING"));
        ok.observe(Instant::now());
        bad.observe(Instant::now());
        assert_eq!(combined(&[&ok]), ("FINISHED", "SUCCESS"));
        assert_eq!(combined(&[&ok, &bad]), ("FINISHED", "DECLINED"));
    }

    #[test]
    fn hold_keeps_processing_until_its_instant_and_counts_reads_meanwhile() {
        let start = Instant::now();
        let hold = std::time::Duration::from_millis(1500);
        let mut a = held(1, Verdict::Declined, start + hold);
        let resolution = |a: &Analysis| a.to_json(&media(), None)["resolution"].clone();
        // Two reads during the hold: the first uses up the poll count, neither finishes it.
        a.observe(start);
        a.observe(start + hold / 2);
        assert_eq!(resolution(&a), "PROCESSING");
        assert_eq!(combined(&[&a]), ("PROCESSING", "PROCESSING"));
        // The first read at the end of the hold shows the verdict, and it stays.
        a.observe(start + hold);
        assert_eq!(resolution(&a), "DECLINED");
        assert_eq!(combined(&[&a]), ("FINISHED", "DECLINED"));
        a.observe(start);
        assert_eq!(resolution(&a), "DECLINED");
    }

    #[test]
    fn source_media_links_a_preview_only_where_there_is_one() {
        let mut m = media().remove(0);
        let entry = m.source_json("f1", Some("http://oz.test:81"));
        assert_eq!(
            entry["preview_url"],
            "http://oz.test:81/api/folders/f1/media/m1/preview.mp4"
        );
        assert_eq!(entry["media_type"], "SHOTS_SET");
        // No origin (an Instant answer) or no preview: the key is absent, not null.
        assert!(m.source_json("f1", None).get("preview_url").is_none());
        m.has_preview = false;
        assert!(m
            .source_json("f1", Some("http://oz.test:81"))
            .get("preview_url")
            .is_none());
    }
}
