//! The HTTP side of `dripline up`: health now; the admin API and the gateway's
//! routes join it as they land.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

/// What the server answers about.
pub struct ServerState {
    /// Names of the loaded step components.
    pub steps: Vec<String>,
    /// Names of the loaded trigger components.
    pub triggers: Vec<String>,
}

/// The router of `dripline up`.
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(state)
}

async fn health(State(state): State<Arc<ServerState>>) -> Json<Value> {
    Json(json!({ "status": "ok", "steps": state.steps, "triggers": state.triggers }))
}
