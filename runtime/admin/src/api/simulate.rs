//! `POST /api/simulate`: `dripline simulate` for a stored journey, as the
//! console runs it. The simulation itself is the `dripline` command's (the
//! real engine, components and policy on a throwaway store); this crate
//! only asks for it through [`Simulate`].

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::journeys::stored_versions;
use super::{AdminState, blocking, need};
use crate::auth::{Caller, Scope};
use crate::problem::Problem;

/// What runs simulations.
pub trait Simulate: Send + Sync {
    /// Runs journey `id`, whose file text is `journey` (with `others`, name and
    /// text of every other stored journey, for hand-offs) for `contact`
    /// through `script`: the timeline, or the request's field that is wrong
    /// and why.
    fn simulate(
        &self,
        id: &str,
        journey: &str,
        others: &[(String, String)],
        contact: &Value,
        script: &Value,
    ) -> Result<Value, (String, String)>;
}

/// A simulation request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SimulateRequest {
    /// The journey's id; its newest stored version runs.
    pub journey: String,
    /// The test contact: `email`, `phone`, `time_zone`, `attributes`,
    /// `consent`.
    #[schema(value_type = Object)]
    pub contact: Value,
    /// The script: `start` (RFC 3339), `until` (a duration), `events` (each
    /// with `after`, `name`, `source`, `properties`).
    #[schema(value_type = Object)]
    #[serde(default)]
    pub script: Value,
}

/// Runs a journey for a test contact through a script of timed events on a
/// virtual clock; nothing is sent.
#[utoipa::path(post, path = "/api/simulate", tag = "journeys", request_body = SimulateRequest,
    responses((status = 200, description = "The timeline", body = Object), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn simulate(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<SimulateRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, Problem> {
    need(&caller, Scope::Simulate)?;
    let Json(request) = body.map_err(|e| Problem::field("body", e.body_text()))?;
    let Some(simulator) = state.simulator.clone() else {
        return Err(Problem::not_found("simulations are not served here"));
    };
    blocking(move || {
        let mut texts: Vec<(String, String)> = Vec::new();
        let mut wanted = None;
        for (id, versions) in stored_versions(state.store.as_ref())? {
            let Some(newest) = versions.last() else {
                continue;
            };
            let text = newest.text.clone();
            if id == request.journey {
                wanted = Some(text);
            } else {
                texts.push((format!("{id}.toml"), text));
            }
        }
        let journey = wanted.ok_or_else(|| {
            Problem::field(
                "journey",
                format!("no journey {:?} is stored", request.journey),
            )
        })?;
        let script = match request.script {
            Value::Null => json!({}),
            script => script,
        };
        let timeline = simulator
            .simulate(
                &request.journey,
                &journey,
                &texts,
                &request.contact,
                &script,
            )
            .map_err(|(field, message)| Problem::field(&field, message))?;
        Ok(Json(
            json!({ "journey": request.journey, "timeline": timeline }),
        ))
    })
    .await
}
