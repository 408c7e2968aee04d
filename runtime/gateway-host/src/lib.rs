//! The webhook gateway of `dripline up`: serves the HTTP routes of `spin.toml`
//! on a listener of its own, each route by its Spin component (the gateway,
//! built with spin-sdk) in a sandboxed instance that serves one request at a
//! time and is reused while it ends its requests cleanly ([`Idle`]).
//!
//! Each gateway is composed with its route's trigger at load ([`compose`]),
//! as Spin composes a component with its dependencies, so the same files run
//! alike under both. The host implements the Spin key-value interface on the
//! embedded store and Spin variables from the environment or a file
//! ([`host`], [`manifest`]).
//!
//! One engine serves both the journey steps (synchronous calls) and the
//! gateway (`wasi:http` needs async calls): in wasmtime 48 async support is a
//! property of how a store is called, not of the engine, so the sandbox's one
//! engine, pool, epoch ticker and compiled-component cache serve both.

pub mod compose;
pub mod dedupe_sweep;
pub mod group_commit;
pub mod host;
pub mod manifest;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::BodyExt as _;
use hyper::body::Bytes;
use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use dripline_clock::{Clock, SystemClock};
use dripline_sandbox::{Sandbox, Sandboxed};
use dripline_store::{Dedupe, KeyValue};
use host::{GatewayCall, Reusable as _, RouteGrants};
pub use manifest::{SpinApp, VariableSource};
use wasmtime_wasi_http::WasiHttpView as _;

/// What the gateway needs of a store: the key-value stores its components
/// are granted (the inbox among them) and the dedupe marks it sweeps. Nothing
/// about journeys, contacts or the outbox: the gateway does nothing slow
/// before its 2xx.
pub trait GatewayStore: KeyValue + Dedupe {}

impl<T: KeyValue + Dedupe + ?Sized> GatewayStore for T {}

/// How long one webhook request may take from its first byte to its answer,
/// body upload included. Webhook providers give up after 5 s (Shopify) to
/// 10 s (Tally). The trigger, composed into the gateway, runs within it too.
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// How long a connection may take to send a request's headers: a client that
/// opens connections and never finishes its headers holds no more than a
/// socket for this long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How many requests one route serves at once, by default, counted from when
/// their headers are read until they are answered (the body upload
/// included). A route at its cap answers 503 with `Retry-After` (webhook
/// providers retry), so a flood on one route neither starves the others nor
/// holds unbounded buffers.
pub const DEFAULT_ROUTE_CONCURRENCY: usize = 256;

/// What a provider is told to wait before it retries a 503.
const RETRY_AFTER_SECONDS: &str = "5";

/// The header Spin gives a component the client's address in.
const CLIENT_ADDR: &str = "spin-client-addr";

/// How many requests one gateway instance serves before it is dropped. A
/// bound, so that anything a guest leaks per request (an unreleased handle, a
/// heap that only grows) is cleared now and then.
pub const REQUESTS_PER_INSTANCE: u32 = 1_000;

/// Most idle instances a component keeps (its routes share them). Each holds
/// two linear memories of the sandbox's pool (the gateway's and its
/// trigger's); more than the requests it runs at once would only hold slots
/// the journey steps could use.
const IDLE_PER_COMPONENT: usize = 16;

/// One route's component, ready to serve.
struct Route {
    pattern: manifest::HttpRoute,
    pre: ProxyPre<Sandboxed<GatewayCall>>,
    grants: Arc<RouteGrants>,
    idle: Arc<Idle>,
    /// The route's share of concurrent requests.
    running: Arc<tokio::sync::Semaphore>,
}

/// A component's instances between requests, shared by its routes.
///
/// Why reuse instances at all: instantiating the composed gateway and
/// dropping it again (its store, its two memories reset) was about a sixth of
/// a webhook's CPU time under `./dev bench ingest`. An instance serves one
/// request at a time, and only instances whose last request ended cleanly
/// come back: one that trapped, ran out of time or memory, or holds more
/// key-value stores open than it has store labels (one handle per store is a
/// cache, more is a leak) is dropped, and so is every instance after
/// [`REQUESTS_PER_INSTANCE`] requests. What the gateway keeps between
/// requests cannot change what a request sees (its route's variables, read
/// once, and its handle on the `default` store), so a request sees the same
/// under `dripline up` as under Spin, which instantiates per request. The
/// host's per-request state (the held-back writes, the deadline) is reset for
/// each request.
#[derive(Default)]
struct Idle {
    instances: std::sync::Mutex<Vec<Ready>>,
}

/// An instance that served its last request cleanly.
struct Ready {
    store: wasmtime::Store<Sandboxed<GatewayCall>>,
    proxy: wasmtime_wasi_http::p2::bindings::Proxy,
    served: u32,
}

impl Idle {
    fn take(&self) -> Option<Ready> {
        self.instances
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
    }

    fn give_back(&self, ready: Ready) {
        let mut instances = self
            .instances
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if instances.len() < IDLE_PER_COMPONENT {
            instances.push(ready);
        }
    }
}

/// The gateway: every HTTP route of a Spin app, ready to serve.
pub struct Gateway {
    sandbox: Arc<Sandbox>,
    routes: Vec<Route>,
    deadline: Duration,
    store: Arc<dyn GatewayStore>,
    clock: Arc<dyn Clock>,
    /// Set once the process is stopping: every request is answered 503 with
    /// `Retry-After`, so that providers deliver it again to the next process
    /// rather than to one that may not get it into the inbox.
    refusing: std::sync::atomic::AtomicBool,
}

/// Stops a background task when the server that started it stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sweeps expired dedupe marks now and then every
/// [`dedupe_sweep::SWEEP_EVERY`], at the clock's time. `dripline up`'s
/// gateway runs it; so does `dripline worker`, since a gateway under Spin
/// writes marks into the shared store and never sweeps them.
pub async fn sweep_forever(store: Arc<dyn GatewayStore>, clock: Arc<dyn Clock>) {
    let mut every = tokio::time::interval(dedupe_sweep::SWEEP_EVERY);
    loop {
        every.tick().await;
        let (store, now_ms) = (store.clone(), clock.now_ms());
        let swept =
            tokio::task::spawn_blocking(move || dedupe_sweep::sweep_dedupe_marks(&*store, now_ms))
                .await;
        match swept {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!("swept {n} expired dedupe marks"),
            Ok(Err(e)) => tracing::warn!("sweeping dedupe marks failed: {e}"),
            Err(e) => tracing::warn!("the dedupe sweep stopped: {e}"),
        }
    }
}

impl Gateway {
    /// Loads the app's components into the sandbox: each distinct gateway and
    /// trigger pair is composed and compiled once; the routes of one component
    /// share its grants and its idle instances.
    pub fn load(
        sandbox: Arc<Sandbox>,
        app: &SpinApp,
        store: Arc<dyn GatewayStore>,
        deadline: Duration,
    ) -> anyhow::Result<Self> {
        let mut linker: Linker<Sandboxed<GatewayCall>> = Linker::new(sandbox.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        host::bindings::GatewayHost::add_to_linker::<_, HasSelf<GatewayCall>>(&mut linker, |s| {
            &mut s.data
        })?;

        let commit = group_commit::GroupCommit::start(store.clone())?;
        // Keyed by the gateway's and the trigger's files: routes that run the
        // same pair share one compiled composition.
        let mut pres: BTreeMap<(PathBuf, Option<PathBuf>), ProxyPre<Sandboxed<GatewayCall>>> =
            BTreeMap::new();
        let mut served: BTreeMap<String, (Arc<RouteGrants>, Arc<Idle>)> = BTreeMap::new();
        let mut routes = Vec::new();
        for pattern in &app.routes {
            let component = app
                .components
                .get(&pattern.component)
                .with_context(|| format!("route {} names no component", pattern.pattern))?;
            let key = (component.source.clone(), component.trigger.clone());
            let pre = match pres.get(&key) {
                Some(pre) => pre.clone(),
                None => {
                    let compiled = compile_route(&sandbox, component)?;
                    let pre = linker
                        .instantiate_pre(&compiled)
                        .and_then(ProxyPre::new)
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "component `{}` ({}) cannot serve HTTP under `dripline up`: {e:#}",
                                component.id,
                                component.source.display()
                            )
                        })?;
                    pres.insert(key, pre.clone());
                    pre
                }
            };
            let (grants, idle) = served
                .entry(component.id.clone())
                .or_insert_with(|| {
                    let grants = Arc::new(RouteGrants {
                        component: component.id.clone(),
                        key_value_stores: component.key_value_stores.clone(),
                        variables: component.variables.clone(),
                        store: store.clone(),
                        commit: commit.clone(),
                    });
                    (grants, Arc::default())
                })
                .clone();
            routes.push(Route {
                pattern: pattern.clone(),
                pre,
                grants,
                idle,
                running: Arc::new(tokio::sync::Semaphore::new(DEFAULT_ROUTE_CONCURRENCY)),
            });
        }
        Ok(Self {
            sandbox,
            routes,
            deadline,
            store,
            clock: Arc::new(SystemClock),
            refusing: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Lets each route serve at most `requests` at once (see
    /// [`DEFAULT_ROUTE_CONCURRENCY`]).
    pub fn with_route_concurrency(mut self, requests: usize) -> Self {
        for route in &mut self.routes {
            route.running = Arc::new(tokio::sync::Semaphore::new(requests.max(1)));
        }
        self
    }

    /// From now on answers every request 503 with `Retry-After`: the first
    /// thing a stopping process does, before its worker finishes what it
    /// holds.
    pub fn refuse_requests(&self) {
        self.refusing
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reads the time of the dedupe sweep from `clock` (the wall clock by
    /// default).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The routes served, as `(pattern, component)`.
    pub fn routes(&self) -> Vec<(String, String)> {
        self.routes
            .iter()
            .map(|r| (r.pattern.pattern.clone(), r.pattern.component.clone()))
            .collect()
    }

    /// Serves HTTP/1.1 on `listener` until `shutdown` completes, and sweeps
    /// expired dedupe marks meanwhile ([`dedupe_sweep`]).
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let sweeper = AbortOnDrop(tokio::spawn(sweep_forever(
            self.store.clone(),
            self.clock.clone(),
        )));
        tokio::pin!(shutdown);
        loop {
            let (socket, peer) = tokio::select! {
                accepted = listener.accept() => accepted?,
                () = &mut shutdown => {
                    drop(sweeper);
                    return Ok(());
                }
            };
            let _ = socket.set_nodelay(true);
            let gateway = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let gateway = gateway.clone();
                    async move { Ok::<_, std::convert::Infallible>(gateway.handle(request, peer).await) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .keep_alive(true)
                    .serve_connection(wasmtime_wasi_http::io::TokioIo::new(socket), service)
                    .await
                {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
            });
        }
    }

    /// Answers one request from `peer`: finds its route and runs the
    /// route's component.
    pub async fn handle(
        &self,
        mut request: hyper::Request<hyper::body::Incoming>,
        peer: std::net::SocketAddr,
    ) -> hyper::Response<HyperOutgoingBody> {
        // As Spin does: the client's address, for the forms' limits per
        // client. Set here, over any the client sent, so nobody picks theirs.
        if let Ok(value) = hyper::header::HeaderValue::from_str(&peer.to_string()) {
            request.headers_mut().insert(CLIENT_ADDR, value);
        }
        let path = request.uri().path().to_string();
        if self.refusing.load(std::sync::atomic::Ordering::Relaxed) {
            return retry_later(r#"{"error":"dripline is stopping; retry later","field":null}"#);
        }
        let Some(route) = self.routes.iter().find(|r| r.pattern.matches(&path)) else {
            return plain(404, r#"{"error":"no route","field":null}"#);
        };
        let Ok(_running) = route.running.clone().try_acquire_owned() else {
            tracing::warn!(route = %route.pattern.pattern, "the route is at its cap of concurrent requests");
            return retry_later(
                r#"{"error":"too many requests on this route; retry later","field":null}"#,
            );
        };
        // The body is read before the request takes an instance, within the
        // same deadline: a sender that trickles its upload holds a buffer and
        // a task, not one of the sandbox's instances (which journey steps
        // share), so a hundred slow uploads cannot starve the others.
        let run = async {
            let request = buffered(request).await?;
            self.run(route, request).await
        };
        match tokio::time::timeout(self.deadline, run).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                tracing::error!(component = %route.pattern.component, "the gateway failed: {e:#}");
                plain(500, r#"{"error":"the gateway failed","field":null}"#)
            }
            Err(_) => {
                tracing::error!(component = %route.pattern.component, "the gateway ran past {:?}", self.deadline);
                retry_later(r#"{"error":"the gateway timed out","field":null}"#)
            }
        }
    }

    async fn run(
        &self,
        route: &Route,
        request: hyper::Request<BufferedBody>,
    ) -> anyhow::Result<hyper::Response<HyperOutgoingBody>> {
        let ready = route.idle.take();
        let (mut store, proxy, served) = match ready {
            Some(ready) => (ready.store, Some(ready.proxy), ready.served),
            None => (
                self.sandbox.store(GatewayCall::new(route.grants.clone())),
                None,
                0,
            ),
        };
        self.sandbox.arm_for(&mut store, self.deadline);
        let writes = store.data_mut().data.begin_request();
        let commit = route.grants.commit.clone();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let request = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = route.pre.clone();
        let idle = route.idle.clone();
        // The guest runs in a task of its own so that it can go on streaming
        // the body after it has sent the status and headers.
        let late_writes = writes.clone();
        let task = tokio::spawn(async move {
            let proxy = match proxy {
                Some(proxy) => proxy,
                None => pre.instantiate_async(&mut store).await?,
            };
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, out)
                .await?;
            commit
                .commit(late_writes.take_after_response())
                .await
                .map_err(|e| anyhow::anyhow!("committing writes made after the response: {e}"))?;
            let served = served + 1;
            if served < REQUESTS_PER_INSTANCE && store.data().reusable() {
                idle.give_back(Ready {
                    store,
                    proxy,
                    served,
                });
            }
            Ok::<_, anyhow::Error>(())
        });
        match receiver.await {
            Ok(Ok(response)) => {
                // The response leaves only once the request's writes are durable.
                match route.grants.commit.commit(writes.take_for_response()).await {
                    Ok(()) => Ok(response),
                    Err(e) => {
                        tracing::error!(component = %route.pattern.component, "the inbox write failed: {e}");
                        // 503 makes a provider retry later, as a store outage needs.
                        Ok(retry_later(
                            r#"{"error":"the inbox is unavailable","field":null}"#,
                        ))
                    }
                }
            }
            Ok(Err(code)) => anyhow::bail!("the component answered with an error: {code:?}"),
            Err(_) => match task.await {
                Ok(Ok(())) => anyhow::bail!("the component never set a response"),
                Ok(Err(e)) => anyhow::bail!("the component trapped: {e:?}"),
                Err(e) => Err(e.into()),
            },
        }
    }
}

/// A route's component, composed with its trigger when it has one, compiled
/// (through the sandbox's cache, so a restart compiles nothing).
fn compile_route(
    sandbox: &Sandbox,
    component: &manifest::AppComponent,
) -> anyhow::Result<wasmtime::component::Component> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| {
            format!(
                "component `{}`: cannot read {}",
                component.id,
                path.display()
            )
        })
    };
    let bytes = read(&component.source)?;
    let bytes = match &component.trigger {
        Some(trigger) => compose::with_trigger(
            &component.id,
            bytes,
            &dripline_sandbox::plugin_name(trigger),
            read(trigger)?,
        )?,
        None => bytes,
    };
    Ok(sandbox.compile(&component.id, &bytes)?)
}

/// How much of a body the host reads before the gateway sees it: one byte
/// more than the gateway component accepts (`MAX_BODY` in
/// `components/gateway`, 1 MiB), so that it still answers an over-size body
/// with its own 413, having read no more than that.
const BUFFERED_BODY: usize = (1 << 20) + 1;

/// A request body read in full (up to [`BUFFERED_BODY`]) by the host.
type BufferedBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// Reads the request's body into memory, up to [`BUFFERED_BODY`] bytes.
async fn buffered(
    request: hyper::Request<hyper::body::Incoming>,
) -> anyhow::Result<hyper::Request<BufferedBody>> {
    let (parts, mut body) = request.into_parts();
    // A declared length over the limit is answered from the header alone
    // (413 at once): nothing of such a body is read.
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut bytes = Vec::new();
    while bytes.len() < BUFFERED_BODY && declared.is_none_or(|n| n < BUFFERED_BODY) {
        let Some(frame) = body.frame().await else {
            break;
        };
        if let Ok(data) = frame?.into_data() {
            bytes.extend_from_slice(&data);
        }
    }
    bytes.truncate(BUFFERED_BODY);
    let body = http_body_util::Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed();
    Ok(hyper::Request::from_parts(parts, body))
}

/// A 503 that tells the provider when to deliver again.
fn retry_later(body: &'static str) -> hyper::Response<HyperOutgoingBody> {
    let mut response = plain(503, body);
    response.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    response
}

fn plain(status: u16, body: &'static str) -> hyper::Response<HyperOutgoingBody> {
    let body = http_body_util::Full::new(Bytes::from_static(body.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
