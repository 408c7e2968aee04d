//! `/api/outbox`: messages in insertion order, by contact, status and page.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Query, State};
use dripline_store::{Outbox, OutboxMessage, OutboxStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{AdminState, blocking, need};
use crate::auth::{Caller, Scope};
use crate::mask;
use crate::problem::Problem;

/// Which messages: optionally to one contact or in one status, after an id
/// (the previous page's `next_after`).
#[derive(Debug, Deserialize, IntoParams)]
pub struct OutboxQuery {
    /// The contact's id.
    pub contact: Option<String>,
    /// `pending`, `sent`, `failed` or `suppressed`.
    #[param(value_type = Option<String>)]
    pub status: Option<OutboxStatus>,
    /// Only messages after this id.
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// A page of the outbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxPage {
    /// The messages; their content masked for a caller without
    /// `personal_data`.
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<OutboxMessage>,
    /// Where the next page starts.
    pub next_after: Option<i64>,
}

/// Lists the outbox.
#[utoipa::path(get, path = "/api/outbox", tag = "outbox", params(OutboxQuery),
    responses((status = 200, body = OutboxPage), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<OutboxQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<OutboxPage>, Problem> {
    need(&caller, Scope::OutboxRead)?;
    // A query that does not read (an unknown status, a limit that is not a
    // number) is the caller's mistake, answered with the field.
    let Query(query) = query.map_err(|e| Problem::field("query", e.body_text()))?;
    let unmasked = caller.reads_personal_data();
    blocking(move || {
        let mut page = list_outbox(state.store.as_ref(), &query).map_err(Problem::store)?;
        if !unmasked {
            for message in &mut page.messages {
                mask::personal(&mut message.content);
            }
        }
        Ok(Json(page))
    })
    .await
}

pub(crate) fn list_outbox(
    store: &dyn Outbox,
    query: &OutboxQuery,
) -> dripline_store::Result<OutboxPage> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let wanted = |m: &OutboxMessage| {
        query.status.is_none_or(|s| m.status == s)
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
    Ok(OutboxPage {
        messages,
        next_after,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use dripline_store::{MemoryStore, NewOutboxMessage};
    use serde_json::json;

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
                    status: if n == 1 {
                        OutboxStatus::Suppressed
                    } else {
                        OutboxStatus::Pending
                    },
                    created_at_ms: 0,
                    deliver_at_ms: 0,
                })
                .unwrap();
        }
        let query =
            |contact: Option<&str>, status: Option<OutboxStatus>, after: Option<i64>| OutboxQuery {
                contact: contact.map(str::to_string),
                status,
                after,
                limit: Some(1),
            };
        let ids = |page: OutboxPage| -> Vec<i64> { page.messages.iter().map(|m| m.id).collect() };
        let first = list_outbox(&store, &query(Some("c1"), None, None)).unwrap();
        let next = first.next_after;
        assert_eq!(ids(first), [1]);
        assert_eq!(
            ids(list_outbox(&store, &query(Some("c1"), None, next)).unwrap()),
            [3]
        );
        assert_eq!(
            ids(list_outbox(&store, &query(None, Some(OutboxStatus::Suppressed), None)).unwrap()),
            [2]
        );
    }
}
