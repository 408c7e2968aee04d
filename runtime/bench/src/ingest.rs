//! `./dev bench ingest`: signed Shopify checkout webhooks over real HTTP on
//! loopback, from `wrk`, through the gateway and trigger components into the
//! SQLite inbox; then, in the same run, the baseline: the same
//! verify-normalize-write path natively (the gateway's and the trigger's
//! logic as plain Rust) behind the same HTTP server, from the same `wrk`
//! script, into a store of the same kind. The ratio of the two rates is what
//! running the path as WebAssembly components costs. Last, the path alone
//! without HTTP, as callers in threads: what the logic and the store cost.
//!
//! The two servers take turns in rounds (`--rounds`, `--seconds` each), so
//! that whatever else the machine is doing falls on both alike; the figures
//! are the medians of the rounds, the ratio the median of the rounds' ratios.
//! Besides the rates it prints the CPU time per webhook, which moves less
//! than the rates when the machine is shared. `DRIPLINE_PERF_MAP=1 perf record
//! -F 499 -- dripline bench ingest ...` names the guests' functions too.
//!
//! Where the time went (2-core machine, November 2026): ~255-290 µs of CPU
//! per webhook through the components against ~115-145 µs natively, both
//! behind the same HTTP server. The guest call is about 160 µs of it, timed
//! from inside the gateway with one connection: the trigger ~60 (the same
//! call in a warm loop is ~30: in the webhook path its code and data are cold
//! after hyper, SQLite and the kernel ran), the dedupe read ~30 (SQLite
//! rereads pages the group commit changed; natively the same), HMAC-SHA256 in
//! software ~15 (~2 natively, with SHA-NI), and the host calls ~2 µs each
//! (reading the request, writing the response, the store). Wasmtime's epoch
//! checks, which enforce the deadline, cost ~17 µs of the 160: the JSON
//! parse's tight loops pay most. Composing the trigger into the gateway,
//! reusing instances and cutting the gateway's host calls from about forty to
//! about two dozen removed the largest shares; the group-commit thread, hyper,
//! tokio and loopback TCP make up the rest.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use dripline_gateway_host::group_commit::GroupCommit;
use dripline_gateway_host::{
    DEFAULT_REQUEST_DEADLINE, Gateway, GatewayStore, SpinApp, VariableSource,
};
use dripline_sandbox::{Sandbox, SandboxConfig};

const SECRET: &str = "shpss_bench_secret";

/// The checkout the benchmark posts: the Shopify sample of the conformance cases.
const CHECKOUT: &str = include_str!("../../../tests/cases/webhooks/shopify/checkouts-create.json");

/// Settings of one run.
pub struct IngestOptions<'a> {
    /// The Spin manifest (its Shopify route is measured).
    pub manifest: &'a Path,
    /// The directory of built components.
    pub components: &'a Path,
    /// How long each round of each measurement runs.
    pub duration: Duration,
    /// How many rounds each measurement runs, taking turns.
    pub rounds: u32,
    /// Concurrent HTTP connections.
    pub connections: u32,
}

/// Runs the benchmark and prints its figures.
pub fn ingest(options: &IngestOptions<'_>) -> anyhow::Result<()> {
    let wrk = which("wrk").context(
        "`wrk` is not installed: `./dev bench ingest` installs it (apt-get install wrk)",
    )?;
    let dir = tempfile_dir()?;
    let signature = webhook_auth::sign(SECRET.as_bytes(), CHECKOUT.as_bytes());

    // ---- over HTTP, through the components ----
    let store = Arc::new(crate::sealed_store(dir.join("http.db"))?);
    let sandbox = Arc::new(Sandbox::new(SandboxConfig {
        cache_dir: Some(dir.join("cache")),
        deadline: Duration::from_secs(1),
        ..SandboxConfig::default()
    })?);
    let variables = VariableSource {
        file: BTreeMap::new(),
        env: Some(BTreeMap::from([(
            "SPIN_VARIABLE_SHOPIFY_SECRET".to_string(),
            SECRET.to_string(),
        )])),
    };
    let app = SpinApp::load(options.manifest, Some(options.components), &variables)?;
    let gateway = Arc::new(Gateway::load(
        sandbox,
        &app,
        store.clone(),
        DEFAULT_REQUEST_DEADLINE,
    )?);
    let (components_runtime, listener, components_url) = server_runtime("bench-components")?;
    components_runtime.spawn(gateway.serve(listener, std::future::pending()));

    // ---- natively behind the same HTTP server: the baseline ----
    let native_store: Arc<dyn GatewayStore> =
        Arc::new(crate::sealed_store(dir.join("native-http.db"))?);
    let (native_runtime, listener, native_url) = server_runtime("bench-native")?;
    let commit = GroupCommit::start(native_store.clone())?;
    native_runtime.spawn(serve_native(listener, native_store.clone(), commit));

    let body_path = dir.join("checkout.json");
    std::fs::write(&body_path, CHECKOUT)?;
    let script = dir.join("shopify.lua");
    std::fs::write(&script, wrk_script(&body_path, &signature))?;
    let components = Server {
        name: "components",
        url: components_url,
        store: store.clone(),
    };
    let native = Server {
        name: "native",
        url: native_url,
        store: native_store,
    };
    // A short warm-up at the measured concurrency compiles nothing
    // (components are compiled at load) but fills the instance pools, the
    // connections' buffers and SQLite's caches.
    for server in [&components, &native] {
        run_wrk(
            &wrk,
            &script,
            &server.url,
            options.connections,
            Duration::from_secs(2),
            &format!("{}-warm", server.name),
        )?;
    }
    let mut http = Vec::new();
    let mut baseline = Vec::new();
    for round in 0..options.rounds.max(1) {
        http.push(components.measure(&wrk, &script, options, round)?);
        baseline.push(native.measure(&wrk, &script, options, round)?);
    }
    drop(components_runtime);
    drop(native_runtime);

    // ---- natively, no HTTP: the path alone ----
    let bare_store: Arc<dyn GatewayStore> = Arc::new(crate::sealed_store(dir.join("native.db"))?);
    let cpu_before = CpuTime::now();
    let bare = native_rate(
        bare_store,
        &signature,
        options.duration,
        options.connections,
    )?;
    let bare_cpu = CpuTime::now().since(&cpu_before);

    println!(
        "webhooks: signed Shopify checkouts/create, {} bytes each",
        CHECKOUT.len()
    );
    println!(
        "connections: {}; {} rounds of {} s each, components and native taking turns",
        options.connections,
        http.len(),
        options.duration.as_secs()
    );
    let list = |rounds: &[Round], figure: fn(&Round) -> f64, digits: usize| {
        rounds
            .iter()
            .map(|r| format!("{:.digits$}", figure(r)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (name, rounds) in [("http", &http), ("native", &baseline)] {
        println!(
            "{name}_webhooks_per_s: {:.0} (rounds: {})",
            median(rounds, |r| r.rate),
            list(rounds, |r| r.rate, 0)
        );
        println!("{name}_latency_p50: {:.2} ms", median(rounds, |r| r.p50_ms));
        println!(
            "{name}_latency_p99: {:.2} ms (rounds: {})",
            median(rounds, |r| r.p99_ms),
            list(rounds, |r| r.p99_ms, 1)
        );
        // CPU time per webhook says what the path costs whatever else the
        // machine is doing (a shared machine makes the rates swing; these
        // move far less).
        println!(
            "{name}_cpu_per_webhook: {:.0} us (server process), wrk {:.0} us",
            median(rounds, |r| r.server_cpu_us),
            median(rounds, |r| r.wrk_cpu_us)
        );
    }
    let ratios: Vec<f64> = http
        .iter()
        .zip(&baseline)
        .map(|(h, n)| h.rate / n.rate)
        .collect();
    println!(
        "ratio_http_to_native: {:.2} (median of the rounds: {})",
        median_of(ratios.clone()),
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    // The path alone, without HTTP or a load generator: what the components'
    // logic and the store cost, for comparison; not the baseline.
    println!("native_no_http_per_s: {bare:.0}");
    println!(
        "native_no_http_cpu_per_webhook: {:.0} us",
        bare_cpu.process * 1e6 / (bare * bare_cpu.wall).max(1.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A runtime for one of the two servers, with two workers as `dripline up`
/// has (the one not being measured sits idle), its listener on loopback and
/// the Shopify route's URL. Its threads carry `name`, so that a profile
/// (`perf report --sort comm`) tells the two servers apart.
fn server_runtime(
    name: &str,
) -> anyhow::Result<(tokio::runtime::Runtime, tokio::net::TcpListener, String)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}/webhooks/shopify", listener.local_addr()?);
    Ok((runtime, listener, url))
}

/// The Shopify route both native paths serve.
fn shopify_route() -> gateway::Route {
    gateway::Route {
        source: gateway::Source::Shopify,
        secret: SECRET.to_string(),
        redirect_hosts: Vec::new(),
        consent_fields: Vec::new(),
        guard: gateway::FormGuard::default(),
    }
}

/// One of the two servers measured.
struct Server {
    name: &'static str,
    url: String,
    store: Arc<dyn GatewayStore>,
}

/// One round of one server.
struct Round {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_cpu_us: f64,
    wrk_cpu_us: f64,
}

impl Server {
    /// Runs wrk against the server for one round and checks that every 2xx
    /// landed in its inbox.
    fn measure(
        &self,
        wrk: &Path,
        script: &Path,
        options: &IngestOptions<'_>,
        round: u32,
    ) -> anyhow::Result<Round> {
        let before = inbox_len(&*self.store)?;
        let cpu_before = CpuTime::now();
        let result = run_wrk(
            wrk,
            script,
            &self.url,
            options.connections,
            options.duration,
            &format!("{}-{round}", self.name),
        )?;
        let cpu = CpuTime::now().since(&cpu_before);
        // wrk counts the answers it read before its time was up; the requests
        // still in flight then (at most one per connection) land as well, so
        // wait for them before counting.
        std::thread::sleep(Duration::from_millis(200));
        let stored = inbox_len(&*self.store)? - before;
        if result.errors > 0 {
            bail!(
                "{}: {} requests were not answered 2xx",
                self.name,
                result.errors
            );
        }
        if stored < result.requests || stored > result.requests + u64::from(options.connections) {
            bail!(
                "{}: {} webhooks were answered 2xx but {stored} landed in the inbox",
                self.name,
                result.requests
            );
        }
        Ok(Round {
            rate: result.requests as f64 / result.seconds,
            p50_ms: result.p50_ms,
            p99_ms: result.p99_ms,
            server_cpu_us: cpu.process * 1e6 / stored.max(1) as f64,
            wrk_cpu_us: cpu.children * 1e6 / stored.max(1) as f64,
        })
    }
}

fn median(rounds: &[Round], figure: fn(&Round) -> f64) -> f64 {
    median_of(rounds.iter().map(figure).collect())
}

fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The baseline server: the same HTTP/1.1 server as the gateway's (hyper,
/// keep-alive, no Nagle, two tokio workers), whose handler runs the gateway's
/// and the Shopify trigger's logic as plain Rust: the head checks, the body
/// read up to the limit, then [`gateway::handle_body`] and the request's
/// writes committed through a group commit before the answer, as the host
/// does for the components.
async fn serve_native(
    listener: tokio::net::TcpListener,
    store: Arc<dyn GatewayStore>,
    commit: GroupCommit,
) {
    let route = Arc::new(shopify_route());
    while let Ok((socket, _)) = listener.accept().await {
        let _ = socket.set_nodelay(true);
        let (store, commit, route) = (store.clone(), commit.clone(), route.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (store, commit, route) = (store.clone(), commit.clone(), route.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(
                        native_handle(request, store, commit, &route).await,
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(wasmtime_wasi_http::io::TokioIo::new(socket), service)
                .await;
        });
    }
}

async fn native_handle(
    request: hyper::Request<hyper::body::Incoming>,
    store: Arc<dyn GatewayStore>,
    commit: GroupCommit,
    route: &gateway::Route,
) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    use http_body_util::BodyExt as _;
    let (parts, body) = request.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let head = gateway::Head {
        method: &method,
        path: &path,
        headers: &headers,
    };
    let reply = match gateway::check_head(route.source, &head) {
        Err(reply) => reply,
        Ok(()) => match http_body_util::Limited::new(body, gateway::MAX_BODY)
            .collect()
            .await
        {
            Err(_) => gateway::too_large(),
            Ok(body) => {
                let request = gateway::Inbound {
                    source: route.source.name().to_string(),
                    method,
                    path,
                    query: parts.uri.query().unwrap_or_default().to_string(),
                    headers,
                    body: body.to_bytes().to_vec(),
                    received_at: now_ms(),
                };
                let mut backend = NativeBackend {
                    store,
                    commit: commit.clone(),
                    writes: Vec::new(),
                };
                let reply = gateway::handle_body(&mut backend, route, request);
                match commit.commit(backend.writes).await {
                    Ok(()) => reply,
                    Err(_) => gateway::Reply {
                        status: 503,
                        body: serde_json::json!({ "error": "the inbox is unavailable" }),
                        headers: Vec::new(),
                    },
                }
            }
        },
    };
    let mut response = hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::from(
        reply.body_bytes(),
    )));
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn wrk_script(body: &Path, signature: &str) -> String {
    format!(
        r#"-- Posts the same signed checkout with a new X-Shopify-Event-Id each time,
-- so that every request passes dedupe and writes an inbox record. The run's
-- name (the argument after `--`) keeps the ids of one run apart from another's.
local file = io.open("{body}", "rb")
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["content-type"] = "application/json"
wrk.headers["x-shopify-topic"] = "checkouts/create"
wrk.headers["x-shopify-shop-domain"] = "acme-mugs.myshopify.com"
wrk.headers["x-shopify-hmac-sha256"] = "{signature}"

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local run = "run"
function init(args)
  run = args[1] or run
end

local counter = 0
function request()
  counter = counter + 1
  wrk.headers["x-shopify-event-id"] = string.format("bench-%s-%d-%d-%d", run, os.time(), tid, counter)
  return wrk.format()
end
"#,
        body = body.display()
    )
}

struct WrkResult {
    requests: u64,
    seconds: f64,
    errors: u64,
    p50_ms: f64,
    p99_ms: f64,
}

fn run_wrk(
    wrk: &Path,
    script: &Path,
    url: &str,
    connections: u32,
    duration: Duration,
    run: &str,
) -> anyhow::Result<WrkResult> {
    let output = Command::new(wrk)
        .arg("-t1")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url)
        .arg("--")
        .arg(run)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("reading wrk's report:\n{text}"))
}

fn parse_wrk(text: &str) -> anyhow::Result<WrkResult> {
    let mut result = WrkResult {
        requests: 0,
        seconds: 0.0,
        errors: 0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
    };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => result.p50_ms = duration_ms(value)?,
            ["99%", value] => result.p99_ms = duration_ms(value)?,
            [count, "requests", "in", seconds, ..] => {
                result.requests = count.parse()?;
                result.seconds = duration_ms(seconds.trim_end_matches(','))? / 1e3;
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => result.errors += n.parse::<u64>()?,
            ["Socket", "errors:", ..] => {
                let n: u64 = line
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|d| d.parse::<u64>().ok())
                    .sum();
                result.errors += n;
            }
            _ => {}
        }
    }
    if result.requests == 0 || result.seconds == 0.0 {
        bail!("no request count");
    }
    Ok(result)
}

/// `1.23ms`, `456.00us`, `2.00s`, `10.01s` in milliseconds.
fn duration_ms(text: &str) -> anyhow::Result<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e3)
    } else {
        bail!("not a duration: {text}")
    };
    Ok(number.parse::<f64>()? * factor)
}

fn inbox_len(store: &dyn GatewayStore) -> anyhow::Result<u64> {
    let mut count = 0u64;
    let mut after: Option<String> = None;
    loop {
        let page = store.kv_scan_prefix(
            dripline_store::DEFAULT_KV_STORE,
            dripline_store::INBOX_PREFIX,
            after.as_deref(),
            10_000,
        )?;
        let Some((last, _)) = page.last() else {
            return Ok(count);
        };
        after = Some(last.clone());
        count += page.len() as u64;
    }
}

/// The same checks, trigger logic and writes as a gateway request, in plain
/// Rust, with as many callers as the HTTP run has connections (so that group
/// commit batches alike), for `duration`.
fn native_rate(
    store: Arc<dyn GatewayStore>,
    signature: &str,
    duration: Duration,
    concurrency: u32,
) -> anyhow::Result<f64> {
    let route = shopify_route();
    let commit = GroupCommit::start(store.clone())?;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (store, route, stop, done, failed, commit) = (
                store.clone(),
                route.clone(),
                stop.clone(),
                done.clone(),
                failed.clone(),
                commit.clone(),
            );
            let signature = signature.to_string();
            std::thread::spawn(move || {
                let mut backend = NativeBackend {
                    store,
                    commit,
                    writes: Vec::new(),
                };
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let request = gateway::Inbound {
                        source: "shopify".into(),
                        method: "POST".into(),
                        path: "/webhooks/shopify".into(),
                        query: String::new(),
                        headers: vec![
                            ("content-type".into(), "application/json".into()),
                            ("x-shopify-topic".into(), "checkouts/create".into()),
                            (
                                "x-shopify-shop-domain".into(),
                                "acme-mugs.myshopify.com".into(),
                            ),
                            ("x-shopify-hmac-sha256".into(), signature.clone()),
                            ("x-shopify-event-id".into(), format!("native-{worker}-{n}")),
                        ],
                        body: CHECKOUT.as_bytes().to_vec(),
                        received_at: now_ms(),
                    };
                    let reply = gateway::handle_body(&mut backend, &route, request);
                    // As the host does: the request's writes in one commit
                    // before the answer counts.
                    let committed = backend
                        .commit
                        .commit_blocking(std::mem::take(&mut backend.writes));
                    if reply.status == 200 && committed.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    if failed.load(Ordering::Relaxed) > 0 {
        bail!("{} native webhooks failed", failed.load(Ordering::Relaxed));
    }
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The native stand-in for the component platform: the store directly and
/// the Shopify trigger's logic as a function.
struct NativeBackend {
    store: Arc<dyn GatewayStore>,
    commit: GroupCommit,
    /// The request's writes, committed together once it is answered.
    writes: Vec<dripline_store::Write>,
}

impl gateway::Backend for NativeBackend {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let written = self.writes.iter().rev().find_map(|w| match w {
            dripline_store::Write::KvSet { key: k, value, .. } if k == key => Some(value.clone()),
            _ => None,
        });
        if written.is_some() {
            return Ok(written);
        }
        self.store
            .kv_get(dripline_store::DEFAULT_KV_STORE, key)
            .map_err(|e| e.to_string())
    }

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        self.writes.push(dripline_store::Write::KvSet {
            store: dripline_store::DEFAULT_KV_STORE.to_string(),
            key: key.to_string(),
            value: value.to_vec(),
        });
        Ok(())
    }

    fn trigger(
        &mut self,
        request: gateway::Inbound,
    ) -> Result<Vec<gateway::Event>, gateway::TriggerError> {
        let parsed = shopify::handle(&canonical::Request {
            path: &request.path,
            headers: &request.headers,
            body: &request.body,
            received_at: request.received_at,
        });
        match parsed {
            Ok(events) => Ok(events
                .into_iter()
                .map(|e| gateway::Event {
                    properties: e.properties_json(),
                    id: e.id,
                    source: e.source,
                    name: e.name,
                    email: e.identities.email,
                    phone: e.identities.phone,
                    external_ids: e.identities.external_ids.into_iter().collect(),
                    occurred_at: e.occurred_at,
                    received_at: request.received_at,
                })
                .collect()),
            Err(canonical::TriggerError::Malformed(m)) => Err(gateway::TriggerError::Malformed(m)),
            Err(canonical::TriggerError::UnsupportedContentType(m)) => {
                Err(gateway::TriggerError::UnsupportedContentType(m))
            }
            Err(canonical::TriggerError::UnsupportedTopic(m)) => {
                Err(gateway::TriggerError::UnsupportedTopic(m))
            }
            Err(canonical::TriggerError::MissingIdentity(m)) => {
                Err(gateway::TriggerError::MissingIdentity(m))
            }
        }
    }
}

/// This process's CPU time and that of its finished children (wrk), from
/// `/proc/self/stat` (zero where there is no procfs).
struct CpuTime {
    process: f64,
    children: f64,
    wall: f64,
    at: Instant,
}

impl CpuTime {
    fn now() -> Self {
        // Fields 14-17 (utime, stime, cutime, cstime) in clock ticks; Linux
        // reports them at USER_HZ, which is 100 on every architecture it runs.
        let ticks: Vec<f64> = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| {
                let after_name = stat.rsplit_once(')')?.1.to_string();
                Some(
                    after_name
                        .split_whitespace()
                        .skip(11)
                        .take(4)
                        .filter_map(|t| t.parse::<f64>().ok())
                        .collect(),
                )
            })
            .unwrap_or_default();
        let tick = |i: usize| ticks.get(i).copied().unwrap_or(0.0) / 100.0;
        Self {
            process: tick(0) + tick(1),
            children: tick(2) + tick(3),
            wall: 0.0,
            at: Instant::now(),
        }
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            process: self.process - before.process,
            children: self.children - before.children,
            wall: self.at.duration_since(before.at).as_secs_f64(),
            at: self.at,
        }
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("dripline-bench-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
