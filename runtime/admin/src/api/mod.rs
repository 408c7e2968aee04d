//! The admin API: JSON over HTTP on a listener of its own, every route behind
//! a bearer token (see [`crate::auth`]), described by an OpenAPI document
//! generated from the handlers (`/openapi.json`, the one route served without
//! a token: it holds no data).
//!
//! - [`journeys`]: journeys, their versions, state and figures; pause,
//!   resume, drain.
//! - [`contacts`]: find a contact by any identity; profile, enrollments and
//!   timeline.
//! - [`simulate`]: a journey run for a test contact on a virtual clock.
//! - [`outbox`]: the outbox.
//! - [`metrics`]: the counters, as JSON and in Prometheus's text format.
//! - [`me`]: the caller's token, role and scopes.
//!
//! Errors are `application/problem+json` ([`Problem`]). Personal data is
//! masked ([`crate::mask`]) for a caller without the `personal_data` scope.

pub mod contacts;
pub mod journeys;
pub mod me;
pub mod metrics;
pub mod outbox;
pub mod simulate;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dripline_clock::Clock;
use dripline_store::Store;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, Scope, Tokens};
use crate::problem::Problem;

/// What the admin API serves from.
pub struct AdminState {
    /// The deployment's store.
    pub store: Arc<dyn Store>,
    /// Who may call.
    pub tokens: Tokens,
    /// The time changes are stamped with.
    pub clock: Arc<dyn Clock>,
    /// Runs simulations (`POST /api/simulate`), if this process can.
    pub simulator: Option<Arc<dyn simulate::Simulate>>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Dripline admin API",
        description = "Journeys, their figures and controls; contacts and their timelines; the outbox; the counters. Every route takes `Authorization: Bearer <token>` (`dripline token new`)."
    ),
    modifiers(&BearerToken),
    security(("token" = [])),
    tags(
        (name = "journeys", description = "Journeys, versions, state and analytics"),
        (name = "contacts", description = "Contacts, enrollments and timelines"),
        (name = "outbox", description = "Messages queued, sent, suppressed and failed"),
        (name = "metrics", description = "Counters"),
        (name = "access", description = "The caller's token"),
    )
)]
struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The admin API's routes and their OpenAPI document.
pub fn routes(state: Arc<AdminState>) -> (Router, utoipa::openapi::OpenApi) {
    let (api, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(journeys::list))
        .routes(routes!(journeys::show))
        .routes(routes!(journeys::canvas))
        .routes(routes!(journeys::analytics))
        .routes(routes!(journeys::pause))
        .routes(routes!(journeys::resume))
        .routes(routes!(journeys::drain))
        .routes(routes!(journeys::canary))
        .routes(routes!(journeys::promote))
        .routes(routes!(journeys::rollback))
        .routes(routes!(contacts::find))
        .routes(routes!(contacts::show))
        .routes(routes!(contacts::timeline))
        .routes(routes!(contacts::mark_test))
        .routes(routes!(contacts::erase))
        .routes(routes!(contacts::export))
        .routes(routes!(contacts::data_requests))
        .routes(routes!(simulate::simulate))
        .routes(routes!(outbox::list))
        .routes(routes!(metrics::json))
        .routes(routes!(metrics::prometheus))
        .routes(routes!(me::me))
        .split_for_parts();
    let api = api
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .with_state(state);
    (api, document)
}

/// The admin listener's router: the API, `/openapi.json` and the console
/// ([`crate::console`]).
pub fn router(state: Arc<AdminState>) -> Router {
    let (api, document) = routes(state);
    // The document does not change while the process runs: written once.
    let document = document.to_json().unwrap_or_else(|e| {
        tracing::error!("the OpenAPI document does not serialize: {e}");
        "{}".to_owned()
    });
    api.route(
        "/openapi.json",
        axum::routing::get(move || {
            let document = document.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], document) }
        }),
    )
    .merge(crate::console::router())
}

/// Lets a request through with its [`Caller`] when it carries a known
/// token; 401 otherwise. The refusal is logged with the path, never the
/// token.
async fn authenticate(
    State(state): State<Arc<AdminState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented.and_then(|token| state.tokens.check(token)) {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => {
            tracing::warn!(
                path = %request.uri().path(),
                token_presented = presented.is_some(),
                "admin API: refused a request without a valid token"
            );
            let mut response = Problem::new(
                StatusCode::UNAUTHORIZED,
                "a valid token is needed: Authorization: Bearer <token>",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

/// 403 unless `caller` has `scope`; the refusal is logged with the token's
/// name and role.
pub(crate) fn need(caller: &Caller, scope: Scope) -> Result<(), Problem> {
    if caller.role.may(scope) {
        return Ok(());
    }
    tracing::warn!(token = %caller.name, role = ?caller.role, ?scope, "admin API: refused, the role lacks the scope");
    let scope = serde_json::to_value(scope)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Err(Problem::new(
        StatusCode::FORBIDDEN,
        format!("this token's role may not do this (it needs the scope `{scope}`)"),
    ))
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        tracing::error!("admin API: a task failed: {e}");
        Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
        ))
    })
}
