//! `/api/journeys`: every journey the store has a version of, its state and
//! figures, and the operator's controls. The versions are read from the
//! store (the runner keeps each one it loaded there), so the API shows what
//! the workers run, wherever they are.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use dripline_delivery::analytics;
use dripline_store::control::{
    JOURNEY_VERSIONS_PREFIX, JourneyControl, JourneyState, journey_control, journey_controls,
    journey_version_of, set_journey_control,
};
use dripline_store::{RUNTIME_KV_STORE, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{AdminState, blocking, need};
use crate::analytics::{JourneyAnalytics, Splits, report};
use crate::auth::{Caller, Scope};
use crate::canvas::{Canvas, VersionCounts, canvas as draw, counts_by_version};
use crate::problem::Problem;

/// A journey in the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct JourneySummary {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The newest version.
    pub version: u32,
    /// Every version stored.
    pub versions: Vec<u32>,
    /// `running`, `paused` or `draining`.
    #[schema(value_type = String)]
    pub state: JourneyState,
    /// Contacts who entered, all versions, all time.
    pub entered: i64,
    /// Conversions, all versions, all time.
    pub converted: i64,
    /// The canary in force: `version` takes `percent` of new enrollments,
    /// `stable` the rest.
    #[schema(value_type = Option<Object>)]
    pub canary: Option<dripline_store::control::Canary>,
}

/// One journey.
#[derive(Debug, Serialize, ToSchema)]
pub struct JourneyDetail {
    /// Its id.
    pub id: String,
    /// `running`, `paused` or `draining`, and who set it when.
    #[schema(value_type = Object)]
    pub control: JourneyControl,
    /// The canary in force, if any.
    #[schema(value_type = Option<Object>)]
    pub canary: Option<dripline_store::control::Canary>,
    /// Every version, newest first.
    pub versions: Vec<VersionDetail>,
}

/// One version: what its file says, and its steps' counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDetail {
    /// The version.
    pub version: u32,
    /// The journey file, as JSON.
    #[schema(value_type = Object)]
    pub definition: Value,
    /// Per step: `entered`, `passed`, `exited` and the step's other counts;
    /// under `-`, the journey's own (`entered`, `converted`, `entry_paused`).
    #[schema(value_type = Object)]
    pub counts: BTreeMap<String, BTreeMap<String, i64>>,
}

/// A stored version.
pub(crate) struct StoredVersion {
    pub(crate) version: u32,
    pub(crate) definition: Value,
    /// The file as it was loaded.
    pub(crate) text: String,
}

/// The stored versions of every journey, oldest first within each.
pub(crate) fn stored_versions(
    store: &dyn Store,
) -> Result<BTreeMap<String, Vec<StoredVersion>>, Problem> {
    let mut journeys: BTreeMap<String, Vec<StoredVersion>> = BTreeMap::new();
    let records = store
        .kv_scan_prefix(RUNTIME_KV_STORE, JOURNEY_VERSIONS_PREFIX, None, usize::MAX)
        .map_err(Problem::store)?;
    for (key, text) in records {
        let Some((id, version)) = journey_version_of(&key) else {
            continue;
        };
        let text = String::from_utf8_lossy(&text);
        // Each was parsed by the runner before it was stored; one that does
        // not read now is shown without its definition rather than hidden.
        let definition = toml::from_str::<Value>(&text).unwrap_or(Value::Null);
        journeys
            .entry(id.to_owned())
            .or_default()
            .push(StoredVersion {
                version,
                definition,
                text: text.into_owned(),
            });
    }
    Ok(journeys)
}

/// The stored versions of journey `id`, oldest first; 404 if it has none.
fn versions_of(store: &dyn Store, id: &str) -> Result<Vec<StoredVersion>, Problem> {
    stored_versions(store)?
        .remove(id)
        .ok_or_else(|| Problem::not_found(format!("no journey {id:?}")))
}

/// A journey's name, as its newest version's file gives it (else its id).
fn name_of(versions: &[StoredVersion], id: &str) -> String {
    versions
        .last()
        .and_then(|v| v.definition.get("name").and_then(Value::as_str))
        .unwrap_or(id)
        .to_owned()
}

/// The split ways of a version: split step → way names (the step each
/// leads to, or `holdout`), as the engine names a contact's arm.
pub(crate) fn splits_of(definition: &Value) -> Splits {
    let mut splits = Splits::new();
    let steps = definition.get("steps").and_then(Value::as_array);
    for step in steps.into_iter().flatten() {
        let (Some(id), Some(ways)) = (
            step.get("id").and_then(Value::as_str),
            step.get("split").and_then(Value::as_array),
        ) else {
            continue;
        };
        let names = ways
            .iter()
            .enumerate()
            .map(
                |(index, way)| match way.get("next").and_then(Value::as_str) {
                    Some(next) => next.to_owned(),
                    None if way.get("holdout").and_then(Value::as_bool) == Some(true) => {
                        "holdout".to_owned()
                    }
                    None => format!("way {index}"),
                },
            )
            .collect();
        splits.insert(id.to_owned(), names);
    }
    splits
}

fn analytics_of(store: &dyn Store, journey: &str) -> Result<BTreeMap<String, i64>, Problem> {
    store
        .metrics_with_prefix(&format!("{}{journey}/", analytics::PREFIX))
        .map_err(Problem::store)
}

/// A journey's counters, summed over days, per version.
fn counts_of(store: &dyn Store, journey: &str) -> Result<BTreeMap<u32, VersionCounts>, Problem> {
    Ok(counts_by_version(&analytics_of(store, journey)?))
}

/// Lists the journeys.
#[utoipa::path(get, path = "/api/journeys", tag = "journeys",
    responses((status = 200, body = [JourneySummary]), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<JourneySummary>>, Problem> {
    need(&caller, Scope::JourneysRead)?;
    blocking(move || {
        let store = state.store.as_ref();
        let controls = journey_controls(store).map_err(Problem::store)?;
        let mut list = Vec::new();
        for (id, versions) in stored_versions(store)? {
            let Some(newest) = versions.last() else {
                continue;
            };
            let counts = counts_of(store, &id)?;
            let total = |what: &str| counts.values().map(|c| c.total(what)).sum::<i64>();
            list.push(JourneySummary {
                name: name_of(&versions, &id),
                version: newest.version,
                versions: versions.iter().map(|v| v.version).collect(),
                state: controls.get(&id).map(|c| c.state).unwrap_or_default(),
                entered: total("entered"),
                converted: total("converted"),
                canary: canary_now(&controls.get(&id).cloned().unwrap_or_default(), &versions),
                id,
            });
        }
        Ok(Json(list))
    })
    .await
}

/// One journey: its state, versions and per-step counts.
#[utoipa::path(get, path = "/api/journeys/{id}", tag = "journeys",
    params(("id" = String, Path, description = "The journey's id")),
    responses((status = 200, body = JourneyDetail), (status = 404, body = Problem)))]
pub async fn show(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<JourneyDetail>, Problem> {
    need(&caller, Scope::JourneysRead)?;
    blocking(move || {
        let store = state.store.as_ref();
        let versions = versions_of(store, &id)?;
        let mut counts = counts_of(store, &id)?;
        let control = journey_control(store, &id).map_err(Problem::store)?;
        Ok(Json(JourneyDetail {
            canary: canary_now(&control, &versions),
            id,
            control,
            versions: versions
                .into_iter()
                .rev()
                .map(|v| VersionDetail {
                    counts: counts
                        .remove(&v.version)
                        .map(VersionCounts::into_steps)
                        .unwrap_or_default(),
                    version: v.version,
                    definition: v.definition,
                })
                .collect(),
        }))
    })
    .await
}

/// The days an analytics report covers.
#[derive(Debug, Deserialize, IntoParams)]
pub struct Range {
    /// The first UTC day, `YYYY-MM-DD`.
    pub from: Option<String>,
    /// The last UTC day, `YYYY-MM-DD`.
    pub to: Option<String>,
}

fn check_day(field: &str, day: Option<&str>) -> Result<(), Problem> {
    match day {
        Some(day) if chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_err() => Err(
            Problem::field(field, format!("{day:?} is not a day (YYYY-MM-DD)")),
        ),
        _ => Ok(()),
    }
}

/// A journey's analytics: per version, step, channel, split way and day,
/// with conversion rates, revenue and each way's uplift over the holdout.
#[utoipa::path(get, path = "/api/journeys/{id}/analytics", tag = "journeys",
    params(("id" = String, Path, description = "The journey's id"), Range),
    responses((status = 200, body = JourneyAnalytics), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn analytics(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    range: Result<Query<Range>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JourneyAnalytics>, Problem> {
    need(&caller, Scope::JourneysRead)?;
    let Query(range) = range.map_err(|e| Problem::field("query", e.body_text()))?;
    check_day("from", range.from.as_deref())?;
    check_day("to", range.to.as_deref())?;
    blocking(move || {
        let store = state.store.as_ref();
        let versions = versions_of(store, &id)?;
        let splits = versions
            .iter()
            .map(|v| (v.version, splits_of(&v.definition)))
            .collect();
        let counters = analytics_of(store, &id)?;
        Ok(Json(report(
            &id,
            &counters,
            &splits,
            range.from.as_deref(),
            range.to.as_deref(),
        )))
    })
    .await
}

async fn set_state(
    state: Arc<AdminState>,
    caller: Caller,
    id: String,
    to: JourneyState,
) -> Result<Json<JourneyControl>, Problem> {
    change_control(state, caller, id, move |control, _| {
        control.state = to;
        Ok(())
    })
    .await
}

/// Pauses a journey: nobody enters, and due waits are put off until it
/// resumes (within a second on every worker).
#[utoipa::path(post, path = "/api/journeys/{id}/pause", tag = "journeys",
    params(("id" = String, Path, description = "The journey's id")),
    responses((status = 200, description = "The journey's new state", body = Object), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn pause(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<JourneyControl>, Problem> {
    set_state(state, caller, id, JourneyState::Paused).await
}

/// Resumes a paused or draining journey.
#[utoipa::path(post, path = "/api/journeys/{id}/resume", tag = "journeys",
    params(("id" = String, Path, description = "The journey's id")),
    responses((status = 200, description = "The journey's new state", body = Object), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn resume(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<JourneyControl>, Problem> {
    set_state(state, caller, id, JourneyState::Running).await
}

/// Drains a journey: nobody enters; contacts in it finish.
#[utoipa::path(post, path = "/api/journeys/{id}/drain", tag = "journeys",
    params(("id" = String, Path, description = "The journey's id")),
    responses((status = 200, description = "The journey's new state", body = Object), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn drain(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<JourneyControl>, Problem> {
    set_state(state, caller, id, JourneyState::Draining).await
}

/// What a canary is set to.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CanaryRequest {
    /// The version on trial; it must be stored, with one before it.
    pub version: u32,
    /// The share of new enrollments it takes, 1 to 99.
    pub percent: u32,
}

/// The canary of a journey now: the one set through the API, else the
/// newest version's own `canary`, unless promoted or rolled back.
pub(crate) fn canary_now(
    control: &JourneyControl,
    versions: &[StoredVersion],
) -> Option<dripline_store::control::Canary> {
    let newest = versions.last()?;
    let file = newest
        .definition
        .get("canary")
        .and_then(Value::as_u64)
        .and_then(|p| u32::try_from(p).ok());
    let before = versions.iter().rev().nth(1).map(|v| v.version);
    control.canary_in_force(newest.version, file, before)
}

async fn change_control(
    state: Arc<AdminState>,
    caller: Caller,
    id: String,
    change: impl FnOnce(&mut JourneyControl, &[StoredVersion]) -> Result<(), Problem> + Send + 'static,
) -> Result<Json<JourneyControl>, Problem> {
    need(&caller, Scope::JourneysWrite)?;
    blocking(move || {
        let store = state.store.as_ref();
        let versions = versions_of(store, &id)?;
        let mut control = journey_control(store, &id).map_err(Problem::store)?;
        change(&mut control, &versions)?;
        control.changed_at = state.clock.now_ms();
        control.changed_by = caller.name.clone();
        store
            .apply(&[set_journey_control(&id, &control)])
            .map_err(Problem::store)?;
        tracing::info!(journey = %id, state = ?control.state, canary = ?control.canary, by = %caller.name, "journey control changed");
        Ok(Json(control))
    })
    .await
}

/// Starts (or changes the share of) a canary: `version` takes `percent` of
/// new enrollments, the version before it the rest.
#[utoipa::path(post, path = "/api/journeys/{id}/canary", tag = "journeys",
    params(("id" = String, Path, description = "The journey's id")),
    request_body = CanaryRequest,
    responses((status = 200, description = "The journey's new control record", body = Object), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn canary(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<CanaryRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<JourneyControl>, Problem> {
    let Json(request) = body.map_err(|e| Problem::field("body", e.body_text()))?;
    if !(1..=99).contains(&request.percent) {
        return Err(Problem::field(
            "percent",
            "a share of new enrollments: 1 to 99",
        ));
    }
    change_control(state, caller, id, move |control, versions| {
        if !versions.iter().any(|v| v.version == request.version) {
            return Err(Problem::field(
                "version",
                format!("no version {} is stored", request.version),
            ));
        }
        let stable = versions
            .iter()
            .map(|v| v.version)
            .filter(|v| *v < request.version)
            .max()
            .ok_or_else(|| Problem::field("version", "no earlier version to keep the rest on"))?;
        control.canary = Some(dripline_store::control::Canary {
            version: request.version,
            stable,
            percent: request.percent,
        });
        control.promoted = None;
        control.rolled_back = None;
        Ok(())
    })
    .await
}

/// Promotes the canary: its version takes every new enrollment.
#[utoipa::path(post, path = "/api/journeys/{id}/promote", tag = "journeys",
    params(("id" = String, Path, description = "The journey's id")),
    responses((status = 200, description = "The journey's new control record", body = Object), (status = 409, body = Problem), (status = 404, body = Problem)))]
pub async fn promote(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<JourneyControl>, Problem> {
    change_control(state, caller, id, |control, versions| {
        let trial = canary_now(control, versions).ok_or_else(|| {
            Problem::new(StatusCode::CONFLICT, "the journey has no canary to promote")
        })?;
        let newest = versions.last().map_or(trial.version, |v| v.version);
        control.canary = None;
        control.rolled_back = None;
        // A trial of an older version than the newest cannot be promoted by
        // flag alone: the newest takes everyone once the trial ends.
        control.promoted = (trial.version == newest).then_some(trial.version);
        Ok(())
    })
    .await
}

/// Rolls the canary back: new enrollments go to the version before it;
/// contacts already on it finish it.
#[utoipa::path(post, path = "/api/journeys/{id}/rollback", tag = "journeys",
    params(("id" = String, Path, description = "The journey's id")),
    responses((status = 200, description = "The journey's new control record", body = Object), (status = 409, body = Problem), (status = 404, body = Problem)))]
pub async fn rollback(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<JourneyControl>, Problem> {
    change_control(state, caller, id, |control, versions| {
        let trial = canary_now(control, versions).ok_or_else(|| {
            Problem::new(
                StatusCode::CONFLICT,
                "the journey has no canary to roll back",
            )
        })?;
        control.canary = None;
        control.promoted = None;
        control.rolled_back = Some(trial.version);
        Ok(())
    })
    .await
}

/// A journey drawn: per version, newest first, its steps as nodes with
/// their counts and the ways between them.
#[derive(Debug, Serialize, ToSchema)]
pub struct JourneyCanvas {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `running`, `paused` or `draining`.
    #[schema(value_type = String)]
    pub state: JourneyState,
    /// The canary in force, if any.
    #[schema(value_type = Option<Object>)]
    pub canary: Option<dripline_store::control::Canary>,
    /// Contacts who entered, all versions.
    pub entered: i64,
    /// Conversions, all versions.
    pub converted: i64,
    /// Every version, newest first.
    pub versions: Vec<Canvas>,
}

/// A journey as a graph for the console: each step a node of its kind with
/// its counts (entered, waiting now, passed, dropped), each message step's
/// sent, open, click and conversion figures, and the ways between them.
#[utoipa::path(get, path = "/api/journeys/{id}/canvas", tag = "journeys",
    params(("id" = String, Path, description = "The journey's id")),
    responses((status = 200, body = JourneyCanvas), (status = 404, body = Problem)))]
pub async fn canvas(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<JourneyCanvas>, Problem> {
    need(&caller, Scope::JourneysRead)?;
    blocking(move || {
        let store = state.store.as_ref();
        let versions = versions_of(store, &id)?;
        let mut counts = counts_of(store, &id)?;
        let total = |what: &str| counts.values().map(|c| c.total(what)).sum::<i64>();
        let (entered, converted) = (total("entered"), total("converted"));
        let control = journey_control(store, &id).map_err(Problem::store)?;
        let name = name_of(&versions, &id);
        Ok(Json(JourneyCanvas {
            canary: canary_now(&control, &versions),
            state: control.state,
            entered,
            converted,
            name,
            versions: versions
                .iter()
                .rev()
                .map(|v| {
                    let counts = counts.remove(&v.version).unwrap_or_default();
                    draw(v.version, &v.definition, &counts)
                })
                .collect(),
            id,
        }))
    })
    .await
}
