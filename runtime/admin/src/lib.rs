//! The HTTP side of `dripline up`, on two listeners:
//!
//! - the public one ([`router`]): health, and the addresses that tracking
//!   links in sent emails point at (open pixel, click redirect,
//!   unsubscribe). Nothing else, so that it can face the internet;
//! - the admin API ([`api`]), apart, behind tokens with roles ([`auth`]),
//!   documented by its OpenAPI document.
//!
//! The webhook gateway has its own listener (`dripline-gateway-host`).

pub mod analytics;
pub mod api;
pub mod auth;
pub mod canvas;
pub mod console;
pub mod mask;
pub mod problem;
mod readiness;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dripline_store::Store;
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

/// The public router of `dripline up`.
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/t/o/{token}/{file}", get(open))
        .route("/t/c/{token}/{signature}/{url}", get(click))
        .route(
            "/u/{token}/{signature}",
            get(unsubscribe_page).post(unsubscribe),
        )
        .route("/y/{token}/{signature}", get(confirm_page).post(confirm))
        .with_state(state)
}

/// Serves the admin API on `listener` until `shutdown` completes.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    state: Arc<api::AdminState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves the public router on `listener` until `shutdown` completes.
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

/// The request's `User-Agent`, for telling a person from a link scanner.
fn agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

async fn open(
    State(state): State<Arc<ServerState>>,
    Path((token, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let signature = file.strip_suffix(".gif").unwrap_or(&file).to_string();
    // A pixel that fails to record still draws: the reader's email is not the
    // place to show our problem. A scanner's fetch is no open.
    if !tracking::from_machine(agent(&headers)) {
        let _ = verify_and_record(state, Link::Open, token, signature, String::new()).await;
    }
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
    headers: HeaderMap,
) -> Response {
    let Some(target) = URL_SAFE_NO_PAD
        .decode(&url)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
    else {
        return problem(StatusCode::BAD_REQUEST, "url: not a link this server made");
    };
    // A link scanner is sent on like a person, so it sees nothing odd, but
    // its visit is no click: it would move the lead on and add to its score.
    let verified = if tracking::from_machine(agent(&headers)) {
        verify(&state, Link::Click, &token, &signature, &target)
    } else {
        verify_and_record(state, Link::Click, token, signature, target.clone()).await
    };
    match verified {
        Ok(true) => Redirect::to(&target).into_response(),
        // Never redirect on a link we did not sign: that would make us an open
        // redirect for phishing.
        Ok(false) => not_ours(),
        Err(response) => response,
    }
}

/// Checks a link's signature without recording anything.
fn verify(
    state: &ServerState,
    link: Link,
    token: &str,
    signature: &str,
    url: &str,
) -> Result<bool, Response> {
    let Some(tracking) = state.tracking.as_ref() else {
        return Err(problem(StatusCode::NOT_FOUND, "tracking is not enabled"));
    };
    Ok(tracking
        .tracker
        .verify(link, token, signature, url)
        .is_some())
}

fn not_ours() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "signature: this link was not made by this server",
    )
}

/// What the page of a link that acts on a POST says: a question with its
/// button, and what is said once it is done.
struct ButtonPage {
    path: &'static str,
    title: &'static str,
    question: &'static str,
    button: &'static str,
    done: &'static str,
}

const UNSUBSCRIBE_PAGE: ButtonPage = ButtonPage {
    path: "u",
    title: "Unsubscribe",
    question: "Stop receiving these emails?",
    button: "Unsubscribe",
    done: "You are unsubscribed. You will not get these emails again.",
};

const CONFIRM_PAGE: ButtonPage = ButtonPage {
    path: "y",
    title: "Confirm your address",
    question: "Confirm that this address wants our emails: what you asked for, and what follows it. You can unsubscribe from any of them.",
    button: "Confirm",
    done: "Thank you: your address is confirmed.",
};

/// A GET only shows a button: mail scanners follow links, and must not
/// unsubscribe or confirm anyone by doing so. The button (and RFC 8058
/// one-click unsubscribe from the mail client) POSTs.
fn button_page(
    state: &ServerState,
    link: Link,
    page: &ButtonPage,
    token: &str,
    signature: &str,
) -> Response {
    match verify(state, link, token, signature, "") {
        Ok(true) => Html(format!(
            "<!doctype html><title>{title}</title><form method=\"post\" action=\"/{path}/{token}/{signature}\">\
             <p>{question}</p><button type=\"submit\">{button}</button></form>",
            title = page.title,
            path = page.path,
            question = page.question,
            button = page.button,
        ))
        .into_response(),
        Ok(false) => not_ours(),
        Err(response) => response,
    }
}

async fn button_pressed(
    state: Arc<ServerState>,
    link: Link,
    page: &ButtonPage,
    token: String,
    signature: String,
) -> Response {
    match verify_and_record(state, link, token, signature, String::new()).await {
        Ok(true) => Html(format!(
            "<!doctype html><title>{}</title><p>{}</p>",
            page.title, page.done
        ))
        .into_response(),
        Ok(false) => not_ours(),
        Err(response) => response,
    }
}

async fn unsubscribe_page(
    State(state): State<Arc<ServerState>>,
    Path((token, signature)): Path<(String, String)>,
) -> Response {
    button_page(
        &state,
        Link::Unsubscribe,
        &UNSUBSCRIBE_PAGE,
        &token,
        &signature,
    )
}

async fn unsubscribe(
    State(state): State<Arc<ServerState>>,
    Path((token, signature)): Path<(String, String)>,
) -> Response {
    button_pressed(
        state,
        Link::Unsubscribe,
        &UNSUBSCRIBE_PAGE,
        token,
        signature,
    )
    .await
}

async fn confirm_page(
    State(state): State<Arc<ServerState>>,
    Path((token, signature)): Path<(String, String)>,
) -> Response {
    button_page(&state, Link::Confirm, &CONFIRM_PAGE, &token, &signature)
}

async fn confirm(
    State(state): State<Arc<ServerState>>,
    Path((token, signature)): Path<(String, String)>,
) -> Response {
    button_pressed(state, Link::Confirm, &CONFIRM_PAGE, token, signature).await
}
