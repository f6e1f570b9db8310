//! Analyses: `POST /api/folders/{id}/analyses/` starts them, `GET /api/analyses/{id}` and
//! `GET /api/folders/{id}/analyses/` read them.
//!
//! Follows docs/oz-api.md §3.1 (request `{"analyses": [{"type", "source_media", "params"}]}`,
//! answered with an array of analysis objects; biometry needs two media) and §3.5 (polling
//! until `resolution_status` leaves `PROCESSING`). Each read of an analysis counts as one poll,
//! whichever endpoint reads it, so a client may poll the analysis or its folder. An analysis
//! turns final on the first read after its poll count and its `processing_for` hold (see
//! [`super::faults`]) have both run out; every endpoint reads the same stored state, so they
//! agree.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use super::body::json_body;
use super::config::Verdict;
use super::error::ApiError;
use super::objects::{parse_analysis_requests, Analysis, AnalysisRequest, AnalysisType, Folder};
use super::state::OzSim;
use super::wire::{json_rsp, unix_now};

/// How new analyses behave: the verdict, poll count and hold in force when they start.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outcome {
    pub verdict: Verdict,
    pub polls_until_final: u32,
    /// How long after starting they stay `PROCESSING` whatever the reads.
    pub hold: Duration,
    /// True for single-request and instant answers, which carry finished analyses.
    pub finished: bool,
}

/// Builds analyses for `folder`, checking their sources; nothing is stored.
pub(crate) fn new_analyses(
    folder: &Folder,
    reqs: Vec<AnalysisRequest>,
    outcome: Outcome,
) -> Result<Vec<Analysis>, ApiError> {
    let ready_at = Instant::now() + outcome.hold;
    reqs.into_iter()
        .map(|req| {
            let source_media = match req.source_media {
                None => folder.media.iter().map(|m| m.id.clone()).collect(),
                Some(ids) => {
                    if let Some(bad) = ids
                        .iter()
                        .find(|id| !folder.media.iter().any(|m| &&m.id == id))
                    {
                        return Err(ApiError::value(format!(
                            "source_media {bad:?} is not a media of folder {}",
                            folder.id
                        )));
                    }
                    ids
                }
            };
            if req.kind == AnalysisType::Biometry && source_media.len() < 2 {
                return Err(ApiError::value(
                    "biometry needs at least 2 media to compare",
                ));
            }
            Ok(Analysis {
                id: Uuid::new_v4().to_string(),
                folder_id: folder.id.clone(),
                kind: req.kind,
                source_media,
                params: req.params,
                time_created: unix_now(),
                polls_left: if outcome.finished {
                    0
                } else {
                    outcome.polls_until_final
                },
                ready_at,
                verdict: outcome.verdict,
                finished: outcome.finished,
            })
        })
        .collect()
}

/// `POST /api/folders/{id}/analyses/`.
pub(crate) fn start(
    sim: &OzSim,
    folder_id: &str,
    headers: &HeaderMap,
    body: &[u8],
    origin: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let body = json_body(headers, body)?;
    let reqs = parse_analysis_requests(body.get("analyses").ok_or_else(|| {
        ApiError::structure("body must be {\"analyses\": [{\"type\": \"quality\"}, …]}")
    })?)?;
    let mut guard = sim.lock();
    let st = &mut *guard;
    let folder = st
        .folders
        .get_mut(folder_id)
        .ok_or_else(|| folder_not_found(folder_id))?;
    let outcome = Outcome {
        verdict: st.cfg.verdict,
        polls_until_final: st.cfg.polls_until_final,
        hold: st.faults.processing_for(),
        finished: false,
    };
    let mut created = new_analyses(folder, reqs, outcome)?;
    if let Some(n) = st.faults.take_unfinished_analyses() {
        let never = Outcome {
            polls_until_final: u32::MAX,
            ..outcome
        };
        let quality = AnalysisRequest {
            kind: AnalysisType::Quality,
            source_media: None,
            params: Value::Object(Default::default()),
        };
        created.extend(new_analyses(folder, vec![quality; n as usize], never)?);
    }
    let out: Vec<Value> = created
        .iter()
        .map(|a| a.to_json(&folder.media, Some(origin)))
        .collect();
    for a in created {
        folder.analyses.push(a.id.clone());
        st.analyses.insert(a.id.clone(), a);
    }
    // 201: the analyses are created entities (docs/oz-api.md §5).
    Ok(json_rsp(StatusCode::CREATED, &Value::Array(out)))
}

/// `GET /api/folders/{id}/analyses/`: every analysis of the folder, each read once.
pub(crate) fn list(
    sim: &OzSim,
    folder_id: &str,
    origin: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let mut guard = sim.lock();
    let st = &mut *guard;
    let folder = st
        .folders
        .get(folder_id)
        .ok_or_else(|| folder_not_found(folder_id))?;
    let now = Instant::now();
    let mut out = Vec::with_capacity(folder.analyses.len());
    for id in &folder.analyses {
        if let Some(a) = st.analyses.get_mut(id) {
            a.observe(now);
            out.push(a.to_json(&folder.media, Some(origin)));
        }
    }
    Ok(json_rsp(StatusCode::OK, &Value::Array(out)))
}

/// `GET /api/analyses/{id}`.
pub(crate) fn get(
    sim: &OzSim,
    analysis_id: &str,
    origin: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let mut guard = sim.lock();
    let st = &mut *guard;
    let analysis = st
        .analyses
        .get_mut(analysis_id)
        .ok_or_else(|| ApiError::not_found(format!("Analysis {analysis_id} not found")))?;
    analysis.observe(Instant::now());
    let media = st
        .folders
        .get(&analysis.folder_id)
        .map(|f| f.media.as_slice())
        .unwrap_or_default();
    Ok(json_rsp(
        StatusCode::OK,
        &analysis.to_json(media, Some(origin)),
    ))
}

pub(crate) fn folder_not_found(folder_id: &str) -> ApiError {
    ApiError::not_found(format!("Folder {folder_id} not found"))
}
