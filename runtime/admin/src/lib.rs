//! The HTTP side of `dripline up`: health, the admin API (the outbox so far),
//! and the addresses that tracking links in sent emails point at (open pixel,
//! click redirect, unsubscribe). The webhook gateway has its own listener
//! (`dripline-gateway-host`).

mod readiness;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dripline_store::{Outbox, OutboxStatus, Store};
use serde::Deserialize;
use serde_json::{Value, json};

use dripline_clock::Clock;
use dripline_delivery::tracking::{self, Link, Tracker};
pub use readiness::{Readiness, Report, WORKER_SILENCE_MS};

/// What the server answers about.
pub struct ServerState {
    /// Names of the loaded step components.
    pub steps: Vec<String>,
    /// Names of the loaded trigger components.
    pub triggers: Vec<String>,
    /// The store whose outbox the admin API lists, if it is served.
    pub store: Option<Arc<dyn Outbox>>,
    /// Tracking, when `delivery.toml` gives it a base URL.
    pub tracking: Option<TrackingState>,
    /// What `/health/ready` reads; without it the route answers 404.
    pub readiness: Option<Readiness>,
}

/// What the tracking routes need: where to record, and how to check links.
pub struct TrackingState {
    /// The deployment's store; events go into its inbox.
    pub store: Arc<dyn Store>,
    /// Checks link signatures.
    pub tracker: Tracker,
    /// The time events are stamped with.
    pub clock: Arc<dyn Clock>,
}

/// The router of `dripline up`.
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/admin/outbox", get(outbox))
        .route("/t/o/{token}/{file}", get(open))
        .route("/t/c/{token}/{signature}/{url}", get(click))
        .route(
            "/u/{token}/{signature}",
            get(unsubscribe_page).post(unsubscribe),
        )
        .with_state(state)
}

/// Serves the router on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn health(State(state): State<Arc<ServerState>>) -> Json<Value> {
    Json(json!({ "status": "ok", "steps": state.steps, "triggers": state.triggers }))
}

/// Liveness: the process answers. Nothing else, so that an orchestrator
/// does not restart a process that is merely behind.
async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 200 when the worker is alive and the store answers, 503
/// otherwise; the body carries the figures either way.
async fn ready(State(state): State<Arc<ServerState>>) -> Response {
    if state.readiness.is_none() {
        return problem(StatusCode::NOT_FOUND, "readiness is not served here");
    }
    let task = tokio::task::spawn_blocking(move || state.readiness.as_ref().map(Readiness::report));
    match task.await {
        Ok(Some(report)) => {
            let status = if report.status == "ready" {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, Json(report)).into_response()
        }
        Ok(None) => problem(StatusCode::NOT_FOUND, "readiness is not served here"),
        Err(e) => {
            tracing::error!("readiness: {e}");
            problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// The smallest transparent GIF: what an open pixel answers, valid or not, so
/// a mail client never shows a broken image.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

fn problem(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Verifies a link and records its event off the async threads (the store is
/// blocking SQLite). `Ok(false)`: the signature did not verify or the message
/// is unknown.
async fn verify_and_record(
    state: Arc<ServerState>,
    link: Link,
    token: String,
    signature: String,
    url: String,
) -> Result<bool, Response> {
    let Some(tracking) = state.tracking.as_ref() else {
        return Err(problem(StatusCode::NOT_FOUND, "tracking is not enabled"));
    };
    let Some(message) = tracking.tracker.verify(link, &token, &signature, &url) else {
        return Ok(false);
    };
    let task = tokio::task::spawn_blocking(move || {
        let Some(tracking) = state.tracking.as_ref() else {
            return Ok(None);
        };
        let now = tracking.clock.now_ms();
        tracking::record(tracking.store.as_ref(), link, &message, &url, now)
    });
    match task.await {
        Ok(Ok(recorded)) => Ok(recorded.is_some()),
        Ok(Err(e)) => {
            tracing::error!("tracking event not recorded: {e:#}");
            Err(problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "could not record; try again",
            ))
        }
        Err(e) => {
            tracing::error!("tracking task: {e}");
            Err(problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
        }
    }
}

async fn open(
    State(state): State<Arc<ServerState>>,
    Path((token, file)): Path<(String, String)>,
) -> Response {
    let signature = file.strip_suffix(".gif").unwrap_or(&file).to_string();
    // A pixel that fails to record still draws: the reader's email is not the
    // place to show our problem.
    let _ = verify_and_record(state, Link::Open, token, signature, String::new()).await;
    (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PIXEL,
    )
        .into_response()
}

async fn click(
    State(state): State<Arc<ServerState>>,
    Path((token, signature, url)): Path<(String, String, String)>,
) -> Response {
    let Some(target) = URL_SAFE_NO_PAD
        .decode(&url)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
    else {
        return problem(StatusCode::BAD_REQUEST, "url: not a link this server made");
    };
    match verify_and_record(state, Link::Click, token, signature, target.clone()).await {
        Ok(true) => Redirect::to(&target).into_response(),
        // Never redirect on a link we did not sign: that would make us an open
        // redirect for phishing.
        Ok(false) => problem(
            StatusCode::NOT_FOUND,
            "signature: this link was not made by this server",
        ),
        Err(response) => response,
    }
}

/// A GET only shows a button: mail scanners follow links, and must not
/// unsubscribe anyone by doing so. The button (and RFC 8058 one-click
/// unsubscribe from the mail client) POSTs.
async fn unsubscribe_page(
    State(state): State<Arc<ServerState>>,
    Path((token, signature)): Path<(String, String)>,
) -> Response {
    let Some(tracking) = state.tracking.as_ref() else {
        return problem(StatusCode::NOT_FOUND, "tracking is not enabled");
    };
    if tracking
        .tracker
        .verify(Link::Unsubscribe, &token, &signature, "")
        .is_none()
    {
        return problem(
            StatusCode::NOT_FOUND,
            "signature: this link was not made by this server",
        );
    }
    Html(format!(
        "<!doctype html><title>Unsubscribe</title><form method=\"post\" action=\"/u/{token}/{signature}\">\
         <p>Stop receiving these emails?</p><button type=\"submit\">Unsubscribe</button></form>"
    ))
    .into_response()
}

async fn unsubscribe(
    State(state): State<Arc<ServerState>>,
    Path((token, signature)): Path<(String, String)>,
) -> Response {
    match verify_and_record(state, Link::Unsubscribe, token, signature, String::new()).await {
        Ok(true) => Html(
            "<!doctype html><title>Unsubscribed</title><p>You are unsubscribed. You will not get these emails again.</p>",
        )
        .into_response(),
        Ok(false) => problem(
            StatusCode::NOT_FOUND,
            "signature: this link was not made by this server",
        ),
        Err(response) => response,
    }
}

/// `GET /admin/outbox?contact=&status=&after=&limit=`: messages in insertion
/// order, optionally to one contact or in one status, after an id (the
/// previous page's `next_after`).
#[derive(Debug, Deserialize)]
struct OutboxQuery {
    contact: Option<String>,
    status: Option<OutboxStatus>,
    after: Option<i64>,
    limit: Option<usize>,
}

async fn outbox(
    State(state): State<Arc<ServerState>>,
    query: Result<Query<OutboxQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // A query that does not read (an unknown status, a limit that is not a
    // number) is the caller's mistake, answered with the field.
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return problem(StatusCode::BAD_REQUEST, &rejection.body_text()),
    };
    let Some(store) = state.store.clone() else {
        return problem(StatusCode::NOT_FOUND, "no store is served here");
    };
    match tokio::task::spawn_blocking(move || list_outbox(store.as_ref(), &query)).await {
        Ok(Ok(listed)) => Json(listed).into_response(),
        Ok(Err(e)) => {
            tracing::error!("listing the outbox: {e}");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store failed; try again",
            )
        }
        Err(e) => {
            tracing::error!("listing the outbox: {e}");
            problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

fn list_outbox(store: &dyn Outbox, query: &OutboxQuery) -> dripline_store::Result<Value> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let wanted = |m: &dripline_store::OutboxMessage| {
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
            ids(list_outbox(&store, &query(None, Some(OutboxStatus::Suppressed), None)).unwrap()),
            [2]
        );
    }
}
