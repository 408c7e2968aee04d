//! The HTTP side of `dripline up`: health, and the admin API (the outbox so
//! far); the rest of the admin API joins it as it lands.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use dripline_store::Store;
use serde::Deserialize;
use serde_json::{Value, json};

/// What the server answers about.
pub struct ServerState {
    /// Names of the loaded step components.
    pub steps: Vec<String>,
    /// Names of the loaded trigger components.
    pub triggers: Vec<String>,
    /// The store whose outbox the admin API lists, if it is served.
    pub store: Option<Arc<dyn Store>>,
}

/// The router of `dripline up`.
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/admin/outbox", get(outbox))
        .with_state(state)
}

async fn health(State(state): State<Arc<ServerState>>) -> Json<Value> {
    Json(json!({ "status": "ok", "steps": state.steps, "triggers": state.triggers }))
}

/// `GET /admin/outbox?contact=&status=&after=&limit=`: messages in insertion
/// order, optionally to one contact or in one status, after an id (the
/// previous page's `next_after`).
#[derive(Debug, Deserialize)]
struct OutboxQuery {
    contact: Option<String>,
    status: Option<String>,
    after: Option<i64>,
    limit: Option<usize>,
}

async fn outbox(
    State(state): State<Arc<ServerState>>,
    Query(query): Query<OutboxQuery>,
) -> Result<Json<Value>, (StatusCode, String)> {
    let Some(store) = state.store.clone() else {
        return Err((StatusCode::NOT_FOUND, "no store is served here".into()));
    };
    let listed = tokio::task::spawn_blocking(move || list_outbox(store.as_ref(), &query))
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(listed))
}

fn list_outbox(store: &dyn Store, query: &OutboxQuery) -> dripline_store::Result<Value> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let wanted = |m: &dripline_store::OutboxMessage| {
        query.status.as_deref().is_none_or(|s| m.status == s)
            && query.contact.as_deref().is_none_or(|c| m.contact_id == c)
            && query.after.is_none_or(|a| m.id > a)
    };
    let mut messages = Vec::new();
    if let Some(contact) = &query.contact {
        messages.extend(store.outbox_of_contact(contact)?.into_iter().filter(wanted));
        messages.truncate(limit);
    } else {
        // Pages through the outbox in id order; a filter that matches little
        // stops after a bounded scan and says where to go on.
        let mut after = query.after;
        for _ in 0..20 {
            let page = store.outbox_list(after, 1000)?;
            let Some(last) = page.last().map(|m| m.id) else {
                break;
            };
            after = Some(last);
            messages.extend(page.into_iter().filter(wanted));
            if messages.len() >= limit {
                break;
            }
        }
        messages.truncate(limit);
    }
    let next_after = messages.last().map(|m| m.id);
    Ok(json!({ "messages": messages, "next_after": next_after }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use dripline_store::{MemoryStore, NewOutboxMessage};

    #[test]
    fn the_outbox_is_listed_by_contact_status_and_page() {
        let store = MemoryStore::new();
        for (n, contact) in ["c1", "c2", "c1"].iter().enumerate() {
            store
                .outbox_insert(NewOutboxMessage {
                    idempotency_key: format!("k{n}"),
                    contact_id: contact.to_string(),
                    channel: "sms".into(),
                    content: json!({}),
                    status: if n == 1 { "suppressed" } else { "pending" }.into(),
                    created_at_ms: 0,
                    deliver_at_ms: 0,
                })
                .unwrap();
        }
        let query = |contact: Option<&str>, status: Option<&str>, after: Option<i64>| OutboxQuery {
            contact: contact.map(str::to_string),
            status: status.map(str::to_string),
            after,
            limit: Some(1),
        };
        let ids = |v: Value| -> Vec<i64> {
            v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_i64().unwrap())
                .collect()
        };
        let first = list_outbox(&store, &query(Some("c1"), None, None)).unwrap();
        assert_eq!(ids(first.clone()), [1]);
        let next = first["next_after"].as_i64();
        assert_eq!(
            ids(list_outbox(&store, &query(Some("c1"), None, next)).unwrap()),
            [3]
        );
        assert_eq!(
            ids(list_outbox(&store, &query(None, Some("suppressed"), None)).unwrap()),
            [2]
        );
    }
}
