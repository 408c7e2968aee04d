//! `/api/me`: who the token is, so that a client (the console) shows only
//! what its role may do. The API refuses the rest anyway.

use axum::Json;
use axum::extract::Extension;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Caller, Role, Scope};

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// What the role may do.
    pub scopes: Vec<Scope>,
}

/// The token's name, role and scopes.
#[utoipa::path(get, path = "/api/me", tag = "access",
    responses((status = 200, body = Me), (status = 401, body = crate::problem::Problem)))]
pub async fn me(Extension(caller): Extension<Caller>) -> Json<Me> {
    Json(Me {
        scopes: caller.role.scopes().to_vec(),
        role: caller.role,
        name: caller.name,
    })
}
