//! `/api/contacts`: a contact found by any identity, its profile (consent
//! with its source, segments, facts), its enrollments, and its timeline of
//! events, journey steps and messages with every policy decision and its
//! reason. Personal data is masked for a caller without `personal_data`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use dripline_store::{Contact, Identity, OutboxMessage, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::{AdminState, blocking, need};
use crate::auth::{Caller, Scope};
use crate::mask;
use crate::problem::Problem;

/// How a contact is looked up: exactly one of these.
#[derive(Debug, Deserialize, IntoParams)]
pub struct Lookup {
    /// An email address (any case).
    pub email: Option<String>,
    /// A phone number in E.164 (`+8613800138000`).
    pub phone: Option<String>,
    /// An id in another system, `<system>:<id>` (`shopify:7001`).
    pub external: Option<String>,
}

/// A contact.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactOut {
    /// Its id.
    pub id: String,
    /// Its identities: `kind` (`email`, `phone`, `external:<system>`) and
    /// `value`.
    #[schema(value_type = Vec<Object>)]
    pub identities: Vec<Value>,
    /// Its profile: attributes, tags, score, consent with its source and
    /// history, segments, facts.
    #[schema(value_type = Object)]
    pub profile: Value,
}

/// A contact with its enrollments and timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactDetail {
    /// The contact.
    pub contact: ContactOut,
    /// Its enrollments, newest first.
    #[schema(value_type = Vec<Object>)]
    pub enrollments: Vec<Value>,
    /// What happened to it, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

/// One moment of a contact's timeline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimelineEntry {
    /// When, ms since the epoch.
    pub at: i64,
    /// `event`, `entered`, `exited`, `message` or `consent`.
    pub kind: String,
    /// What: the event's name, the journey, the message's channel and step.
    pub what: String,
    /// The details: the exit reason, the policy's decision and its reason,
    /// the message's status and subject.
    #[schema(value_type = Object)]
    pub detail: Value,
}

fn identity_of(lookup: &Lookup) -> Result<Identity, Problem> {
    let given = [
        lookup.email.as_ref().map(|e| ("email", e)),
        lookup.phone.as_ref().map(|p| ("phone", p)),
        lookup.external.as_ref().map(|x| ("external", x)),
    ];
    let mut given = given.into_iter().flatten();
    let (Some((field, value)), None) = (given.next(), given.next()) else {
        return Err(Problem::field(
            "query",
            "give exactly one of `email`, `phone`, `external`",
        ));
    };
    let value = value.trim();
    match field {
        "email" if value.contains('@') => Ok(Identity::Email(value.to_lowercase())),
        "phone" if value.starts_with('+') && value[1..].chars().all(|c| c.is_ascii_digit()) => {
            Ok(Identity::Phone(value.to_owned()))
        }
        "external" => match value.split_once(':') {
            Some((system, id)) if !system.is_empty() && !id.is_empty() => Ok(Identity::External {
                system: system.to_owned(),
                id: id.to_owned(),
            }),
            _ => Err(Problem::field("external", "write it as <system>:<id>")),
        },
        "email" => Err(Problem::field("email", "not an email address")),
        _ => Err(Problem::field(
            "phone",
            "not a phone number in E.164 (+<digits>)",
        )),
    }
}

pub(crate) fn contact_out(contact: &Contact, unmasked: bool) -> ContactOut {
    let identities = contact
        .identities
        .iter()
        .map(|identity| {
            let kind = identity.index_kind();
            let value = match unmasked {
                true => identity.index_value().to_owned(),
                false => mask::identity(&kind, identity.index_value()),
            };
            json!({ "kind": kind, "value": value })
        })
        .collect();
    let mut profile = contact.profile.clone();
    // Audience timers and goal events are the runner's bookkeeping.
    if let Some(map) = profile.as_object_mut() {
        map.remove("scheduled");
        map.remove("recent");
        map.remove("timeline");
    }
    if !unmasked {
        mask::personal(&mut profile);
    }
    ContactOut {
        id: contact.id.clone(),
        identities,
        profile,
    }
}

/// Finds a contact by one identity.
#[utoipa::path(get, path = "/api/contacts", tag = "contacts", params(Lookup),
    responses((status = 200, body = ContactOut), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn find(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    lookup: Result<Query<Lookup>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ContactOut>, Problem> {
    need(&caller, Scope::ContactsRead)?;
    let Query(lookup) = lookup.map_err(|e| Problem::field("query", e.body_text()))?;
    let identity = identity_of(&lookup)?;
    let unmasked = caller.reads_personal_data();
    blocking(move || {
        let contact = state
            .store
            .contact_find_by_identity(&identity)
            .map_err(Problem::store)?
            .ok_or_else(|| Problem::not_found("no contact has this identity"))?;
        Ok(Json(contact_out(&contact, unmasked)))
    })
    .await
}

/// A contact, its enrollments and its timeline.
#[utoipa::path(get, path = "/api/contacts/{id}", tag = "contacts",
    params(("id" = String, Path, description = "The contact's id")),
    responses((status = 200, body = ContactDetail), (status = 404, body = Problem)))]
pub async fn show(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ContactDetail>, Problem> {
    need(&caller, Scope::ContactsRead)?;
    let unmasked = caller.reads_personal_data();
    blocking(move || detail(state.store.as_ref(), &id, unmasked).map(Json)).await
}

/// A contact's timeline alone.
#[utoipa::path(get, path = "/api/contacts/{id}/timeline", tag = "contacts",
    params(("id" = String, Path, description = "The contact's id")),
    responses((status = 200, body = [TimelineEntry]), (status = 404, body = Problem)))]
pub async fn timeline(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Vec<TimelineEntry>>, Problem> {
    need(&caller, Scope::ContactsRead)?;
    let unmasked = caller.reads_personal_data();
    blocking(move || detail(state.store.as_ref(), &id, unmasked).map(|d| Json(d.timeline))).await
}

fn detail(store: &dyn Store, id: &str, unmasked: bool) -> Result<ContactDetail, Problem> {
    let contact = store
        .contact_get(id)
        .map_err(Problem::store)?
        .ok_or_else(|| Problem::not_found(format!("no contact {id:?}")))?;
    let mut timeline = Vec::new();
    let events = contact.profile.get("timeline").and_then(Value::as_array);
    for event in events.into_iter().flatten() {
        timeline.push(TimelineEntry {
            at: event.get("at").and_then(Value::as_i64).unwrap_or(0),
            kind: "event".into(),
            what: str_of(event, "name"),
            detail: json!({ "id": event.get("id"), "source": event.get("source") }),
        });
    }
    let history = contact
        .profile
        .get("consent_history")
        .and_then(Value::as_array);
    for change in history.into_iter().flatten() {
        timeline.push(TimelineEntry {
            at: change.get("at").and_then(Value::as_i64).unwrap_or(0),
            kind: "consent".into(),
            what: format!("{} {}", str_of(change, "channel"), str_of(change, "state")),
            detail: json!({ "source": change.get("source") }),
        });
    }
    let mut enrollments = Vec::new();
    for stored in store.enrollments_of_contact(id).map_err(Problem::store)? {
        let state: Value = serde_json::from_str(&stored.state).unwrap_or(Value::Null);
        let journey = format!(
            "{} v{}",
            stored.journey,
            state
                .get("journey_version")
                .and_then(Value::as_u64)
                .unwrap_or(0)
        );
        let entered = state.get("entered_at").and_then(Value::as_i64).unwrap_or(0);
        let trigger = state
            .pointer("/trigger/name")
            .cloned()
            .unwrap_or(Value::Null);
        timeline.push(TimelineEntry {
            at: entered,
            kind: "entered".into(),
            what: journey.clone(),
            detail: json!({ "enrollment": stored.id, "trigger": trigger }),
        });
        if let Some(exited) = state.get("exited_at").and_then(Value::as_i64) {
            timeline.push(TimelineEntry {
                at: exited,
                kind: "exited".into(),
                what: journey.clone(),
                detail: json!({
                    "enrollment": stored.id,
                    "reason": state.get("exit_reason"),
                    "step": state.get("step"),
                }),
            });
        }
        enrollments.push(json!({
            "id": stored.id,
            "journey": stored.journey,
            "version": state.get("journey_version"),
            "status": state.get("status"),
            "step": state.get("step"),
            "arm": state.get("arm"),
            "entered_at": entered,
            "exited_at": state.get("exited_at"),
            "exit_reason": state.get("exit_reason"),
            "converted_at": state.get("converted_at"),
            "trigger": trigger,
        }));
    }
    enrollments.sort_by_key(|e| std::cmp::Reverse(e["entered_at"].as_i64().unwrap_or(0)));
    for message in store.outbox_of_contact(id).map_err(Problem::store)? {
        timeline.push(message_entry(&message, unmasked));
    }
    timeline.sort_by_key(|e| e.at);
    Ok(ContactDetail {
        contact: contact_out(&contact, unmasked),
        enrollments,
        timeline,
    })
}

/// A message as the timeline shows it: where it came from, what the policy
/// decided and why, what became of it.
fn message_entry(message: &OutboxMessage, unmasked: bool) -> TimelineEntry {
    let record = &message.content;
    let mut detail = json!({
        "message": message.id,
        "status": message.status,
        "journey": record.get("journey"),
        "step": record.get("step"),
        "template": record.get("template"),
        "category": record.get("category"),
        "decision": record.get("delivery"),
        "deliver_at": message.deliver_at_ms,
        "attempts": message.attempts,
        "last_error": message.last_error,
        "subject": record.get("subject"),
        "body": record.get("body"),
    });
    if !unmasked {
        mask::personal(&mut detail);
    }
    TimelineEntry {
        at: message.created_at_ms,
        kind: "message".into(),
        what: format!("{} from {}", message.channel, str_of(record, "step")),
        detail,
    }
}

fn str_of(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Whether a contact is a test contact.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TestMark {
    /// `true`: its messages are marked as tests and it is left out of the
    /// analytics; `false`: an ordinary contact again.
    pub test: bool,
}

/// Makes a contact a test contact (an operator's own address going through
/// live journeys) or an ordinary one again. The change is queued for the
/// runner, which owns contacts, and takes effect with its next pass.
#[utoipa::path(post, path = "/api/contacts/{id}/test", tag = "contacts",
    params(("id" = String, Path, description = "The contact's id")),
    request_body = TestMark,
    responses((status = 202, description = "Queued", body = Object), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn mark_test(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<TestMark>, axum::extract::rejection::JsonRejection>,
) -> Result<(axum::http::StatusCode, Json<Value>), Problem> {
    need(&caller, Scope::JourneysWrite)?;
    let Json(mark) = body.map_err(|e| Problem::field("body", e.body_text()))?;
    blocking(move || {
        let store = state.store.as_ref();
        if store.contact_get(&id).map_err(Problem::store)?.is_none() {
            return Err(Problem::not_found(format!("no contact {id:?}")));
        }
        let now = state.clock.now_ms();
        let event_id = format!("test-mark-{id}-{now}");
        let event = json!({
            "id": event_id,
            "source": dripline_store::control::ADMIN_SOURCE,
            "name": dripline_store::control::TEST_MARKED,
            "properties": { "contact": id, "test": mark.test, "by": caller.name },
            "occurred_at": now,
            "received_at": now,
        });
        store
            .apply(&[dripline_store::Write::inbox_put(now, &event_id, event.to_string().into_bytes())])
            .map_err(Problem::store)?;
        tracing::info!(contact = %id, test = mark.test, by = %caller.name, "test contact mark queued");
        Ok((axum::http::StatusCode::ACCEPTED, Json(json!({ "queued": true }))))
    })
    .await
}

/// Erases a contact everywhere: profile, identities, enrollments, timers,
/// messages, dead letters and waiting events. Queued for the runner, which
/// carries it out in its turn behind the events already accepted, and leaves
/// an anonymous tombstone that keeps a replay from bringing the person back.
#[utoipa::path(delete, path = "/api/contacts/{id}", tag = "contacts",
    params(("id" = String, Path, description = "The contact's id")),
    responses((status = 202, description = "Queued", body = Object), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn erase(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<(axum::http::StatusCode, Json<Value>), Problem> {
    need(&caller, Scope::ContactsErase)?;
    blocking(move || {
        let store = state.store.as_ref();
        let known = store.contact_get(&id).map_err(Problem::store)?;
        if known.is_none_or(|c| c.profile.get("erased_at").is_some()) {
            return Err(Problem::not_found(format!("no contact {id:?}")));
        }
        let now = state.clock.now_ms();
        store
            .apply(&[dripline_store::control::erase_request(
                &id,
                now,
                &caller.name,
            )])
            .map_err(Problem::store)?;
        tracing::info!(contact = %id, by = %caller.name, "erasure queued");
        Ok((
            axum::http::StatusCode::ACCEPTED,
            Json(json!({ "queued": true })),
        ))
    })
    .await
}

/// What is kept of a contact, unmasked, as JSON: for answering a person who
/// asks for their data.
#[utoipa::path(get, path = "/api/contacts/{id}/export", tag = "contacts",
    params(("id" = String, Path, description = "The contact's id")),
    responses((status = 200, body = Object), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn export(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    need(&caller, Scope::ContactsErase)?;
    need(&caller, Scope::PersonalData)?;
    blocking(move || {
        match dripline_store::control::export(state.store.as_ref(), &id).map_err(Problem::store)? {
            Value::Null => Err(Problem::not_found(format!("no contact {id:?}"))),
            data => {
                tracing::info!(contact = %id, by = %caller.name, "contact data exported");
                Ok(Json(data))
            }
        }
    })
    .await
}

/// The answers to data requests that came in through Shopify's
/// `customers/data_request`, newest last: each what was kept of the person
/// when the runner reached the request.
#[utoipa::path(get, path = "/api/data-requests", tag = "contacts",
    responses((status = 200, body = [Object]), (status = 403, body = Problem)))]
pub async fn data_requests(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<Value>>, Problem> {
    need(&caller, Scope::ContactsErase)?;
    need(&caller, Scope::PersonalData)?;
    blocking(move || {
        let records = state
            .store
            .kv_scan_prefix(
                dripline_store::RUNTIME_KV_STORE,
                dripline_store::control::DATA_REQUESTS_PREFIX,
                None,
                1_000,
            )
            .map_err(Problem::store)?;
        let mut answers: Vec<Value> = records
            .into_iter()
            .filter_map(|(_, value)| serde_json::from_slice(&value).ok())
            .collect();
        answers.sort_by_key(|a: &Value| a.get("requested_at").and_then(Value::as_i64));
        Ok(Json(answers))
    })
    .await
}
