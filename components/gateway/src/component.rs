//! The Spin glue: the `wasi:http/incoming-handler` export (spin-sdk), the
//! route's variables, the `default` key-value store, and the import of the
//! route's trigger. It reads the body chunk by chunk and stops past the limit;
//! everything else is decided by the plain functions of the crate.

use futures::StreamExt as _;
use spin_sdk::http::{Fields, IncomingRequest, Method, OutgoingResponse, ResponseOutparam};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;

use crate::{Backend, Event, Head, Inbound, MAX_BODY, Reply, Route, TriggerError};

wit_bindgen::generate!({
    inline: r#"
        package dripline:gateway@0.1.0;

        /// The gateway imports the route's trigger; Spin component
        /// dependencies (or `dripline up`) satisfy the import.
        world gateway {
            import dripline:journey/trigger-handler@0.1.0;
        }
    "#,
    path: "../../wit",
    world: "dripline:gateway/gateway",
    generate_all,
});

use dripline::journey::trigger_handler as wit;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let reply = serve(request).await;
    respond(out, &reply).await;
}

async fn serve(request: IncomingRequest) -> Reply {
    let route = match route() {
        Ok(route) => route,
        Err(reply) => return reply,
    };
    let method = method_name(&request.method());
    let path_and_query = request.path_with_query().unwrap_or_default();
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (path_and_query.clone(), String::new()),
    };
    let headers: Vec<(String, String)> = request
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(&value).into_owned(),
            )
        })
        .collect();
    let head = Head {
        method: &method,
        path: &path,
        headers: &headers,
    };
    if let Err(reply) = crate::check_head(route.source, &head) {
        return reply;
    }

    // Read at most MAX_BODY + 1 bytes: one byte past the limit is enough to
    // refuse, and a hostile sender cannot make the gateway buffer more.
    let mut body = Vec::new();
    let mut stream = request.into_body_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return crate::too_large();
                }
                body.extend_from_slice(&chunk);
            }
            Err(e) => {
                return Reply {
                    status: 400,
                    body: serde_json::json!({ "error": format!("reading the body: {e}"), "field": "body" }),
                    headers: Vec::new(),
                };
            }
        }
    }

    let received_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let inbound = Inbound {
        source: route.source.name().to_string(),
        method,
        path,
        query,
        headers,
        body,
        received_at,
    };
    let store = match Store::open(crate::STORE) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("gateway: cannot open the `default` key-value store: {e}");
            return Reply {
                status: 503,
                body: serde_json::json!({ "error": "the inbox is unavailable", "field": null }),
                headers: Vec::new(),
            };
        }
    };
    let reply = crate::handle_body(&mut SpinBackend { store }, &route, inbound);
    if reply.status >= 500 {
        eprintln!(
            "gateway: {} answered {}: {}",
            route.source.name(),
            reply.status,
            reply.body
        );
    }
    reply
}

/// The route's variables: `source` (required), `secret`, `redirect_hosts`.
fn route() -> Result<Route, Reply> {
    let variable = |name: &str| spin_sdk::variables::get(name).unwrap_or_default();
    let source = variable("source");
    crate::route_from(&source, variable("secret"), &variable("redirect_hosts")).ok_or_else(|| {
        eprintln!("gateway: the component's `source` variable names no known source: {source:?}");
        Reply {
            status: 500,
            body: serde_json::json!({ "error": "the route is misconfigured", "field": null }),
            headers: Vec::new(),
        }
    })
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.to_ascii_uppercase(),
    }
}

async fn respond(out: ResponseOutparam, reply: &Reply) {
    let body = reply.body_bytes();
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        ("content-type".into(), b"application/json".to_vec()),
        ("content-length".into(), body.len().to_string().into_bytes()),
    ];
    for (name, value) in &reply.headers {
        headers.push(((*name).to_string(), value.clone().into_bytes()));
    }
    let fields = match Fields::from_list(&headers) {
        Ok(fields) => fields,
        Err(_) => Fields::new(),
    };
    let response = OutgoingResponse::new(fields);
    if response.set_status_code(reply.status).is_err() {
        let _ = response.set_status_code(500);
    }
    if let Err(e) = out.set_with_body(response, body).await {
        eprintln!("gateway: could not send the response: {e}");
    }
}

struct SpinBackend {
    store: Store,
}

impl Backend for SpinBackend {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.store.get(key).map_err(|e| e.to_string())
    }

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        self.store.set(key, value).map_err(|e| e.to_string())
    }

    fn trigger(&mut self, request: &Inbound) -> Result<Vec<Event>, TriggerError> {
        let request = wit::InboundRequest {
            source: request.source.clone(),
            method: request.method.clone(),
            path: request.path.clone(),
            query: request.query.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
            received_at: request.received_at,
        };
        match wit::handle(&request) {
            Ok(events) => Ok(events
                .into_iter()
                .map(|e| Event {
                    id: e.id,
                    source: e.source,
                    name: e.name,
                    email: e.identities.email,
                    phone: e.identities.phone,
                    external_ids: e.identities.external_ids,
                    properties: e.properties,
                    occurred_at: e.occurred_at,
                    received_at: e.received_at,
                })
                .collect()),
            Err(wit::TriggerError::Malformed(m)) => Err(TriggerError::Malformed(m)),
            Err(wit::TriggerError::UnsupportedContentType(m)) => {
                Err(TriggerError::UnsupportedContentType(m))
            }
            Err(wit::TriggerError::UnsupportedTopic(m)) => Err(TriggerError::UnsupportedTopic(m)),
            Err(wit::TriggerError::MissingIdentity(m)) => Err(TriggerError::MissingIdentity(m)),
            Err(wit::TriggerError::Other(m)) => Err(TriggerError::Other(m)),
        }
    }
}
