//! The Spin glue: the `wasi:http/incoming-handler` export (spin-sdk), the
//! route's variables, the `default` key-value store, and the import of the
//! route's trigger. It reads the body chunk by chunk and stops past the limit;
//! everything else is decided by the plain functions of the crate.
//!
//! The handler is synchronous and uses WASI's blocking stream calls: a read
//! or a write is one host call that waits in the host (the runtime suspends
//! the instance, not a thread), where spin-sdk's async streams check, write
//! and flush in several. With the route's variables read and the `default`
//! store opened once per instance, a webhook makes about two dozen host calls
//! instead of about forty.

use std::cell::Cell;
use std::sync::OnceLock;

use spin_sdk::http::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
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

/// Most bytes one write to the response stream may carry (WASI's
/// `blocking-write-and-flush` takes at most 4096).
const WRITE_CHUNK: usize = 4096;

#[http_component]
fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let reply = serve(request);
    respond(out, &reply);
}

fn serve(request: IncomingRequest) -> Reply {
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
    // check_head has refused a declared length past the limit.
    let declared = crate::header(&headers, "content-length")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n <= MAX_BODY);
    let body = match read_body(request, declared) {
        Ok(body) => body,
        Err(reply) => return reply,
    };

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
    let unavailable = |what: &str, e: String| {
        eprintln!("gateway: cannot open {what}: {e}");
        Reply {
            status: 503,
            body: serde_json::json!({ "error": "the inbox is unavailable", "field": null }),
            headers: Vec::new(),
        }
    };
    let address = inbox_redis();
    if !address.is_empty() {
        // A gateway at the edge: the inbox goes to the workers' Redis.
        let connection = match spin_sdk::redis::Connection::open(address) {
            Ok(connection) => connection,
            Err(e) => return unavailable("the inbox's Redis", e.to_string()),
        };
        let inbox = Inbox::Redis(connection);
        return logged(
            route,
            crate::handle_body(&mut SpinBackend { inbox: &inbox }, route, inbound),
        );
    }
    let store = match STORE.take() {
        Some(store) => store,
        None => match Store::open(crate::STORE) {
            Ok(store) => store,
            Err(e) => return unavailable("the `default` key-value store", e.to_string()),
        },
    };
    let inbox = Inbox::KeyValue(store);
    let reply = crate::handle_body(&mut SpinBackend { inbox: &inbox }, route, inbound);
    if let Inbox::KeyValue(store) = inbox {
        STORE.set(Some(store));
    }
    logged(route, reply)
}

/// The reply, logged first if it is a failure of ours.
fn logged(route: &Route, reply: Reply) -> Reply {
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

/// Reads the whole body, at most [`MAX_BODY`] bytes: a read never asks for
/// more than one byte past the limit, which is enough to refuse, so a hostile
/// sender cannot make the gateway buffer more. With a declared length the
/// read stops once that many bytes are in (the host's HTTP server holds the
/// sender to its `content-length`), which spares the call that would only
/// report the end of the stream.
fn read_body(request: IncomingRequest, declared: Option<usize>) -> Result<Vec<u8>, Reply> {
    let unreadable = |reason: String| Reply {
        status: 400,
        body: serde_json::json!({ "error": format!("reading the body: {reason}"), "field": "body" }),
        headers: Vec::new(),
    };
    let incoming = request
        .consume()
        .map_err(|()| unreadable("the body was already taken".into()))?;
    let stream = incoming
        .stream()
        .map_err(|()| unreadable("the body was already taken".into()))?;
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while declared != Some(body.len()) {
        let room = (MAX_BODY + 1 - body.len()) as u64;
        match stream.blocking_read(room) {
            Ok(chunk) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(crate::too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Err(::wasi::io::streams::StreamError::Closed) => break,
            Err(::wasi::io::streams::StreamError::LastOperationFailed(e)) => {
                return Err(unreadable(e.to_debug_string()));
            }
        }
    }
    // The stream is a child of the body: it goes first.
    drop(stream);
    drop(incoming);
    Ok(body)
}

thread_local! {
    /// The `default` store, opened by the instance's first request and kept
    /// for the next ones: opening and closing it are two host calls, and a
    /// store handle carries nothing from one request into another (the host
    /// commits each request's writes apart).
    static STORE: Cell<Option<Store>> = const { Cell::new(None) };
}

/// The route's variables (see [`crate::route_from`]).
/// They are read once per instance: under Spin an instance serves one
/// request, and `dripline up` resolves variables once, when it starts.
fn route() -> Result<&'static Route, Reply> {
    static ROUTE: OnceLock<Option<Route>> = OnceLock::new();
    let variable = |name: &str| spin_sdk::variables::get(name).unwrap_or_default();
    ROUTE
        .get_or_init(|| crate::route_from(variable))
        .as_ref()
        .ok_or_else(|| {
            eprintln!(
                "gateway: the component's `source` variable names no known source: {:?}",
                variable("source")
            );
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

fn respond(out: ResponseOutparam, reply: &Reply) {
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
    // A new response is a 200 already; every host call counts on this path.
    if reply.status != 200 && response.set_status_code(reply.status).is_err() {
        let _ = response.set_status_code(500);
    }
    let Ok(outgoing) = response.body() else {
        eprintln!("gateway: the response's body was already taken");
        return;
    };
    out.set(response);
    if let Err(e) = write_body(&outgoing, &body) {
        eprintln!("gateway: could not send the response: {e}");
        return;
    }
    if let Err(e) = OutgoingBody::finish(outgoing, None) {
        eprintln!("gateway: could not finish the response: {e:?}");
    }
}

fn write_body(outgoing: &OutgoingBody, body: &[u8]) -> Result<(), String> {
    let stream = outgoing
        .write()
        .map_err(|()| "the body stream was already taken".to_string())?;
    for chunk in body.chunks(WRITE_CHUNK) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|e| format!("{e:?}"))?;
    }
    Ok(())
}

/// Where the route keeps its inbox and dedupe marks: Spin's `default`
/// key-value store, or a Redis through Spin's outbound Redis. The keys and
/// values are the same either way (the Redis ones are what Spin's own Redis
/// key-value backend would write), so the workers read both alike.
enum Inbox {
    KeyValue(Store),
    Redis(spin_sdk::redis::Connection),
}

/// The `inbox_redis` variable: a Redis URL for the inbox, for platforms
/// whose key-value store nothing outside them can read (no runtime config);
/// empty (the default) for the `default` key-value store.
fn inbox_redis() -> &'static str {
    static ADDRESS: OnceLock<String> = OnceLock::new();
    ADDRESS.get_or_init(|| {
        spin_sdk::variables::get("inbox_redis")
            .unwrap_or_default()
            .trim()
            .to_string()
    })
}

struct SpinBackend<'a> {
    inbox: &'a Inbox,
}

impl Backend for SpinBackend<'_> {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        match self.inbox {
            Inbox::KeyValue(store) => store.get(key).map_err(|e| e.to_string()),
            Inbox::Redis(redis) => redis.get(key).map_err(|e| e.to_string()),
        }
    }

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        match self.inbox {
            Inbox::KeyValue(store) => store.set(key, value).map_err(|e| e.to_string()),
            Inbox::Redis(redis) => redis.set(key, value).map_err(|e| e.to_string()),
        }
    }

    fn trigger(&mut self, request: Inbound) -> Result<Vec<Event>, TriggerError> {
        let request = wit::InboundRequest {
            source: request.source,
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body,
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
