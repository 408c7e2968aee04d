//! The webhook gateway of `dripline up`, in this process: the repository's
//! `spin.toml` served over loopback HTTP on an embedded SQLite store that
//! nothing consumes, so that a test reads exactly what each delivery stored.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dripline_gateway_host::{Gateway, SpinApp, VariableSource};
use dripline_store::SqliteStore;

use crate::{components_dir, repo_root, sandbox};

/// The Shopify app's secret the gateway checks signatures with.
pub const SHOPIFY_SECRET: &str = "shpss_test_secret";
/// The track API's write key.
pub const TRACK_KEY: &str = "wk_test_key";
/// The Typeform webhook's secret.
pub const TYPEFORM_SECRET: &str = "tf_test_secret";
/// The Tally webhook's secret.
pub const TALLY_SECRET: &str = "tally_test_secret";

/// A gateway serving the repository's `spin.toml` on a loopback port.
pub struct Served {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The store it writes.
    pub store: Arc<SqliteStore>,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

/// Serves the repository's `spin.toml` with the secrets above.
pub fn serve() -> Served {
    serve_with(dripline_gateway_host::DEFAULT_ROUTE_CONCURRENCY)
}

/// [`serve`], each route serving at most `concurrency` requests at once.
pub fn serve_with(concurrency: usize) -> Served {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(
        SqliteStore::open(dir.path().join("dripline.db")).unwrap_or_else(|e| panic!("{e}")),
    );
    let gateway = Arc::new(load(store.clone(), concurrency));
    let (runtime, listener) = crate::loopback(2);
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    runtime.spawn(gateway.serve(listener, std::future::pending()));
    Served {
        addr,
        store,
        _runtime: runtime,
        _dir: dir,
    }
}

/// A gateway serving into a store it does not own ([`serve_into`]).
pub struct FrontDoor {
    /// Where it listens.
    pub addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

/// The gateway writing into `store`, stamping deliveries with `clock`: what a
/// test deployment's front door is ([`crate::Deployment::serve_gateway`]).
pub fn serve_into(
    store: Arc<dyn dripline_gateway_host::GatewayStore>,
    clock: Arc<dyn dripline_clock::Clock>,
) -> FrontDoor {
    let gateway =
        Arc::new(load(store, dripline_gateway_host::DEFAULT_ROUTE_CONCURRENCY).with_clock(clock));
    let (runtime, listener) = crate::loopback(2);
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    runtime.spawn(gateway.serve(listener, std::future::pending()));
    FrontDoor {
        addr,
        _runtime: runtime,
    }
}

fn load(store: Arc<dyn dripline_gateway_host::GatewayStore>, concurrency: usize) -> Gateway {
    // Generous limits: two shared cores also build and test other crates.
    let sandbox = sandbox(Duration::from_secs(2), 64 << 20);
    let env: BTreeMap<String, String> = [
        ("SPIN_VARIABLE_SHOPIFY_SECRET", SHOPIFY_SECRET),
        ("SPIN_VARIABLE_TRACK_WRITE_KEY", TRACK_KEY),
        ("SPIN_VARIABLE_TYPEFORM_SECRET", TYPEFORM_SECRET),
        ("SPIN_VARIABLE_TALLY_SECRET", TALLY_SECRET),
        ("SPIN_VARIABLE_FORM_REDIRECT_HOSTS", "example.com"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let variables = VariableSource {
        file: BTreeMap::new(),
        env: Some(env),
    };
    let app = SpinApp::load(
        &repo_root().join("spin.toml"),
        Some(components_dir()),
        &variables,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Gateway::load(sandbox, &app, store, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"))
        .with_route_concurrency(concurrency)
}

/// A sample payload and its headers from `tests/cases/webhooks/`.
pub fn stored_case(source: &str, name: &str) -> (Vec<u8>, Vec<(String, String)>) {
    let dir = repo_root().join("tests/cases/webhooks").join(source);
    let body = std::fs::read(dir.join(format!("{name}.json")))
        .or_else(|_| std::fs::read(dir.join(format!("{name}.body"))))
        .unwrap_or_else(|e| panic!("{e}"));
    let spec: toml::Table = toml::from_str(
        &std::fs::read_to_string(dir.join(format!("{name}.toml")))
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let headers = spec
        .get("headers")
        .and_then(|h| h.as_table())
        .map(|h| {
            h.iter()
                .map(|(k, v)| {
                    (
                        k.to_ascii_lowercase(),
                        v.as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (body, headers)
}

/// A signed delivery from every source the gateway serves (a Shopify
/// checkout, a Typeform and a Tally response, an HTML form post, a track
/// call), signed with the secrets above, as (request head, body) for
/// [`crate::process::http`].
pub fn signed_deliveries() -> Vec<(String, Vec<u8>)> {
    let checkout = stored_case("shopify", "checkouts-create").0;
    let typeform = stored_case("typeform", "form-response").0;
    let tally = stored_case("tally", "form-response").0;
    vec![
        (
            format!(
                "POST /webhooks/shopify HTTP/1.1\r\nContent-Type: application/json\r\n\
                 X-Shopify-Topic: checkouts/create\r\nX-Shopify-Shop-Domain: acme-mugs.myshopify.com\r\n\
                 X-Shopify-Event-Id: 98880550-7158-44d4-b7cd-2c97c8a091b5\r\n\
                 X-Shopify-Hmac-Sha256: {}",
                webhook_auth::sign(SHOPIFY_SECRET.as_bytes(), &checkout)
            ),
            checkout,
        ),
        (
            format!(
                "POST /forms/typeform/wasm-report HTTP/1.1\r\nContent-Type: application/json\r\n\
                 Typeform-Signature: sha256={}",
                webhook_auth::sign(TYPEFORM_SECRET.as_bytes(), &typeform)
            ),
            typeform,
        ),
        (
            format!(
                "POST /forms/tally/webinar HTTP/1.1\r\nContent-Type: application/json\r\nTally-Signature: {}",
                webhook_auth::sign(TALLY_SECRET.as_bytes(), &tally)
            ),
            tally,
        ),
        (
            "POST /forms/whitepaper HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded"
                .to_string(),
            stored_case("html", "whitepaper-urlencoded").0,
        ),
        (
            format!(
                "POST /v1/track HTTP/1.1\r\nContent-Type: application/json\r\nAuthorization: Bearer {TRACK_KEY}"
            ),
            stored_case("track", "track").0,
        ),
    ]
}
