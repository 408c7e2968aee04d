//! The console: the web front end of the admin API, served by the admin
//! listener. Its files are built from `console/` (`./dev build`, which runs
//! `npm ci` and esbuild there) and embedded in the binary, so `dripline up`
//! stays one file and the console works offline.
//!
//! The files hold no data and are served without a token. The page asks for
//! a token and sends it as a bearer header to the API, which decides, per
//! route, what the token's role may see; the token is kept in the tab's
//! session storage, never in a cookie, so no other site can make the
//! browser use it. A strict content security policy allows only this
//! origin's scripts and styles, and no framing.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;

/// The built console (`console/dist`). A build without it (plain `cargo
/// build`, without `./dev`) serves a page that says how to build it.
#[derive(RustEmbed)]
#[folder = "../../console/dist"]
#[allow_missing = true]
struct Assets;

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>Dripline console</title>\
    <p>This dripline was built without its console. Build it with <code>./dev build</code> \
    (it runs <code>npm ci</code> and esbuild in <code>console/</code>), then build dripline again.";

/// The console's routes: `/` (the page) and `/console/<file>` (its script
/// and styles).
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { file("index.html", &headers) }),
        )
        .route(
            "/console/{*file}",
            get(
                |Path(name): Path<String>, headers: HeaderMap| async move { file(&name, &headers) },
            ),
        )
}

fn file(name: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = Assets::get(name) else {
        if name == "index.html" {
            return with_policy(
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    NOT_BUILT,
                )
                    .into_response(),
            );
        }
        return StatusCode::NOT_FOUND.into_response();
    };
    let tag = format!("\"{}\"", hex::encode(asset.metadata.sha256_hash()));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == tag);
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, asset.metadata.mimetype().to_owned())],
            asset.data.into_owned(),
        )
            .into_response()
    };
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    // Asked again each time (an answer of 304 when unchanged), so that a new
    // dripline's console is never mixed with an old one's files.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_policy(response)
}

fn with_policy(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
