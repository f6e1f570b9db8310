//! Folders: `POST /api/folders/` and `POST /api/instant/folders/` create them from an upload,
//! `GET /api/folders/{id}` reads one.
//!
//! Follows docs/oz-api.md §2 (the upload), §2.8 (a folder object with its media), §3.3 (single
//! request: the answer already holds finished analyses), §3.4 (Instant API: synchronous,
//! nothing stored) and §3.5 (`?with_analyses=true` embeds the analyses).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use tokio::time::Instant;
use uuid::Uuid;

use super::analyses::{folder_not_found, new_analyses, Outcome};
use super::error::{ApiError, ErrorCode};
use super::faults::Endpoint;
use super::objects::{folder_json, Analysis, AnalysisRequest, AnalysisType, Folder, Media};
use super::records::ReceivedUpload;
use super::state::OzSim;
use super::upload::{check_upload, Accepted};
use super::wire::{json_rsp, unix_now};

/// Creates a folder (or, for the Instant API, answers as if one had been analysed).
pub(crate) async fn create(
    sim: &OzSim,
    endpoint: Endpoint,
    parts: &Parts,
    body: Bytes,
    origin: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let cfg = sim.lock().cfg.clone();
    let headers = parts.headers.clone();
    let path = parts.uri.path().to_owned();
    // Unzipping and CRC-checking up to the body limit is CPU work; keep it off the runtime.
    let (mut rec, checked) = tokio::task::spawn_blocking(move || {
        let mut rec = ReceivedUpload::new(endpoint.name(), &path);
        let checked = check_upload(&headers, &body, &cfg, &mut rec);
        (rec, checked)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unknown,
            format!("upload check failed: {e}"),
        )
    })?;
    let result =
        checked.and_then(|acc| store(sim, endpoint == Endpoint::InstantFolders, acc, origin));
    match result {
        Ok((status, folder_id, body)) => {
            rec.status = status.as_u16();
            rec.folder_id = folder_id;
            sim.record_upload(rec);
            Ok(json_rsp(status, &body))
        }
        Err(e) => {
            rec.status = e.status.as_u16();
            rec.error = Some(e.message.clone());
            sim.record_upload(rec);
            Err(e)
        }
    }
}

/// Makes the folder and, in single-request or instant mode, its finished analyses.
fn store(
    sim: &OzSim,
    instant: bool,
    acc: Accepted,
    origin: &str,
) -> Result<(StatusCode, String, serde_json::Value), ApiError> {
    let now = unix_now();
    let folder_id = Uuid::new_v4().to_string();
    let mut folder = Folder {
        id: folder_id.clone(),
        time_created: now,
        meta_data: acc.folder_meta,
        media: acc
            .media
            .into_iter()
            .map(|m| Media {
                id: Uuid::new_v4().to_string(),
                media_type: m.media_type,
                original_name: m.original_name,
                tags: m.tags,
                meta_data: m.meta_data,
                time_created: now,
                has_preview: m.has_preview,
            })
            .collect(),
        analyses: vec![],
    };
    let mut st = sim.lock();
    let synchronous = instant || st.cfg.single_request;
    let analyses: Vec<Analysis> = if synchronous {
        // Which analyses a single request runs when the payload names none is server
        // configuration (docs/oz-api.md §3.2); Liveness (quality) is the one capture needs.
        let reqs = acc.analyses.unwrap_or_else(|| {
            vec![AnalysisRequest {
                kind: AnalysisType::Quality,
                source_media: None,
                params: serde_json::json!({}),
            }]
        });
        // A hold makes even a single request answer before the verdict: its analyses are
        // stored unfinished and polled like any others. The Instant API keeps nothing to
        // poll, so it ignores the hold (latency_ms is how to make it answer late).
        let hold = if instant {
            Duration::ZERO
        } else {
            st.faults.processing_for()
        };
        let outcome = Outcome {
            verdict: st.cfg.verdict,
            polls_until_final: 0,
            hold,
            finished: hold.is_zero(),
        };
        new_analyses(&folder, reqs, outcome)?
    } else {
        vec![]
    };
    folder.analyses = analyses.iter().map(|a| a.id.clone()).collect();
    let refs: Vec<&Analysis> = analyses.iter().collect();
    // An Instant answer links to no preview: nothing is kept to serve one from.
    let links = (!instant).then_some(origin);
    let body = folder_json(&folder, &refs, true, links);
    if instant {
        // The Instant API stores nothing (docs/oz-api.md §3.4): a later GET finds no such folder.
        return Ok((StatusCode::OK, folder_id, body));
    }
    for a in analyses {
        st.analyses.insert(a.id.clone(), a);
    }
    st.folders.insert(folder_id.clone(), folder);
    Ok((StatusCode::CREATED, folder_id, body))
}

/// `GET /api/folders/{id}`: the folder, its combined status, and with `with_analyses` its
/// analyses. Each read counts as one poll of every analysis in it.
pub(crate) fn get(
    sim: &OzSim,
    folder_id: &str,
    with_analyses: bool,
    origin: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let mut guard = sim.lock();
    let st = &mut *guard;
    let folder = st
        .folders
        .get(folder_id)
        .ok_or_else(|| folder_not_found(folder_id))?;
    let now = Instant::now();
    for id in &folder.analyses {
        if let Some(a) = st.analyses.get_mut(id) {
            a.observe(now);
        }
    }
    let analyses: Vec<&Analysis> = folder
        .analyses
        .iter()
        .filter_map(|id| st.analyses.get(id))
        .collect();
    Ok(json_rsp(
        StatusCode::OK,
        &folder_json(folder, &analyses, with_analyses, Some(origin)),
    ))
}
