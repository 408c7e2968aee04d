//! The crash drill: proof that a `dripline` process killed with SIGKILL at any
//! point loses no event, misses no timer and applies no effect twice.
//!
//! Two deployments receive the same stream of events over the same simulated
//! days. The reference runs `dripline process` to completion at each point in
//! time; the drilled one has its child process killed at random moments, then
//! restarted until it completes. Each delivers its email through a webhook
//! channel to a provider on loopback (a [`Provider`] in this process, which
//! takes a few milliseconds per message, so kills land during deliveries
//! too). Afterwards every contact's score (a step that is not idempotent by
//! nature, so a repeated effect shows), tags, messages, enrollments and
//! deliveries are compared. A delivery repeated under its idempotency key (a
//! kill between the provider's answer and its recording) is what the
//! provider drops; a message delivered under a second key, or never, is not. `tests/crash.rs` runs a short drill in CI;
//! `./dev bench crash --kills 100` runs it at length.
//!
//! With `--store redis --workers 4` the drilled deployment is on Redis and
//! each round runs four `dripline process` children at once on it, as four
//! workers; the kills pick one of them at random and start another in its
//! place. What a killed worker had claimed (timers, messages) comes back
//! when its lease ends, so each round is completed once the lease is over.
//! The reference stays one unkilled process on SQLite.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use dripline::{OpenStore, StoreUrl};
use dripline_store::{Identity, Store, Write};
use serde_json::json;

const JOURNEY: &str = r#"
name = "Crash drill"
version = 1

[trigger]
event = "member.joined"

[[steps]]
id = "points-on-join"
uses = "score"
config = { points = 1 }
next = "wait-1h"

[[steps]]
id = "wait-1h"
wait = "1h"
next = "hello"

[[steps]]
id = "hello"
uses = "send"
config = { channel = "email", template = "drill-hello", category = "transactional" }
next = "points-after-hello"

[[steps]]
id = "points-after-hello"
uses = "score"
config = { points = 10 }
next = "wait-1d"

[[steps]]
id = "wait-1d"
wait = "1d"
next = "points-at-end"

[[steps]]
id = "points-at-end"
uses = "score"
config = { points = 100 }
next = "tag-done"

[[steps]]
id = "tag-done"
uses = "tag"
config = { tag = "drilled" }
"#;

const TEMPLATE: &str =
    "---\nsubject: Welcome, member\n---\nHello {{ contact.email }}, welcome aboard.\n";

/// Every contact ends with this score: 1 + 10 + 100, once each.
pub const EXPECTED_SCORE: i64 = 111;

const HOUR: i64 = 3_600_000;
const T0: i64 = 1_795_000_000_000;

/// What a drill is asked to do.
pub struct Drill {
    /// The `dripline` executable to run as the child.
    pub binary: PathBuf,
    /// Directory holding `tag.wasm`, `score.wasm` and `send.wasm`.
    pub components: PathBuf,
    /// Where the two deployments live.
    pub work_dir: PathBuf,
    /// Contacts joining per cycle (half at the start, half an hour later).
    pub contacts: usize,
    /// How many times to kill the child mid-run: the drill goes on until
    /// that many kills have landed.
    pub kills: usize,
    /// Seed of the kill moments, so a failing drill can be replayed.
    pub seed: u64,
    /// The drilled deployment's Redis (`redis://...`), or None for SQLite.
    pub redis: Option<String>,
    /// Workers run at once on the drilled deployment (1 on SQLite).
    pub workers: usize,
}

/// How long a worker's claims hold in the drill's simulated time; a round
/// is completed after them.
const DRILL_LEASE_MS: i64 = 1_000;

/// What a drill found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrillReport {
    /// Kills that landed while the child was still working.
    pub kills: usize,
    /// Child runs in all.
    pub runs: usize,
    /// Events accepted but without their consequences afterwards.
    pub lost: usize,
    /// Effects applied more often than in the reference.
    pub duplicated: usize,
    /// Timers or steps that should have run and did not, and messages not
    /// delivered.
    pub missed: usize,
    /// Kills that landed while the provider held a delivery of the drilled
    /// deployment.
    pub kills_during_delivery: usize,
    /// Deliveries repeated under the same idempotency key (the provider
    /// drops them): what at-least-once delivery costs at a kill.
    pub redelivered: usize,
}

/// Runs a drill and compares the drilled deployment with the reference.
///
/// A kill lands only while the child still has work: once a round's work is
/// done, a child started for it finishes before any kill moment. So the drill
/// goes on with new contacts, cycle after cycle of the same days, until the
/// kills asked for have landed, and then lets every contact finish.
pub fn run(drill: &Drill) -> anyhow::Result<DrillReport> {
    let reference = drill.work_dir.join("reference");
    let drilled = drill.work_dir.join("drilled");
    let provider = Provider::start()?;
    for dir in [&reference, &drilled] {
        prepare(dir, &drill.components, &provider)?;
    }
    let mut rng = drill.seed | 1;
    let mut report = DrillReport::default();
    let mut cycle = 0;
    // At least one cycle, so that a drill asked for no kills still compares an
    // uninterrupted run with the reference.
    loop {
        let landed_before = report.kills;
        let rounds = rounds(cycle, drill.contacts);
        // Spread over the rounds, so that events and each kind of timer are
        // all interrupted, not only the first round's work.
        let per_round = drill.kills.div_ceil(rounds.len());
        for (now, joining) in rounds {
            for dir in [&reference, &drilled] {
                receive(drill, dir, &joining, now)?;
            }
            let started = Instant::now();
            complete(drill, &reference, now)?;
            // Kill moments spread over how long the same work took the reference.
            let span = started.elapsed().as_micros().max(1000) as u64;
            // Until the round's share has landed or its work is done: a child
            // that finishes by itself has done it, and the next would find
            // nothing to interrupt.
            let mut landed = 0;
            let mut children: Vec<Child> = Vec::new();
            while landed < per_round && report.kills < drill.kills {
                while children.len() < drill.workers.max(1) {
                    children.push(spawn(drill, &drilled, now)?);
                    report.runs += 1;
                }
                std::thread::sleep(Duration::from_micros(next_random(&mut rng) % span));
                let mut working = Vec::new();
                for mut child in children.drain(..) {
                    match child.try_wait()? {
                        Some(_) => {}
                        None => working.push(child),
                    }
                }
                children = working;
                // Every worker finished by itself: the round's work is done.
                if children.is_empty() {
                    break;
                }
                if provider.in_flight("drilled") > 0 {
                    report.kills_during_delivery += 1;
                }
                let victim = (next_random(&mut rng) as usize) % children.len();
                let mut child = children.swap_remove(victim);
                // A child that exited meanwhile cannot be killed; it is reaped all the same.
                let _ = child.kill();
                child.wait()?;
                report.kills += 1;
                landed += 1;
            }
            for mut child in children {
                child.wait()?;
            }
            // Shared workers leave a killed one's claims to lapse: the round
            // is finished once they have.
            let finish_at = match drill.redis {
                Some(_) => now + DRILL_LEASE_MS,
                None => now,
            };
            complete(drill, &drilled, finish_at)?;
            report.runs += 1;
        }
        cycle += 1;
        if report.kills >= drill.kills {
            break;
        }
        if report.kills == landed_before {
            bail!("a whole cycle of work went by without a kill landing: {report:?}");
        }
    }
    compare(
        drill,
        &reference,
        &drilled,
        cycle * drill.contacts,
        &provider,
        &mut report,
    )?;
    Ok(report)
}

/// How far apart cycles are: past the last timer of the cycle before.
const CYCLE: i64 = 48 * HOUR;

/// (time, contacts joining then) in cycle `cycle`: a stream of joins and the
/// days they live through, so each round has new events as well as due
/// timers. Cycle `n` brings contacts `n * contacts..(n + 1) * contacts`.
fn rounds(cycle: usize, contacts: usize) -> Vec<(i64, Vec<usize>)> {
    let start = T0 + CYCLE * cycle as i64;
    let first = cycle * contacts;
    let half = first + contacts / 2;
    let end = first + contacts;
    vec![
        (start, (first..half).collect()),
        (start + HOUR / 2, (half..end).collect()),
        (start + HOUR + HOUR / 2, vec![]),
        (start + 26 * HOUR, vec![]),
        (start + 27 * HOUR, vec![]),
    ]
}

fn prepare(dir: &Path, components: &Path, provider: &Provider) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("journeys"))?;
    std::fs::create_dir_all(dir.join("templates"))?;
    std::fs::create_dir_all(dir.join("components"))?;
    std::fs::create_dir_all(dir.join("data"))?;
    std::fs::write(dir.join("journeys/crash-drill.toml"), JOURNEY)?;
    std::fs::write(dir.join("templates/drill-hello.email.liquid"), TEMPLATE)?;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("drill");
    std::fs::write(
        dir.join("channels.toml"),
        format!(
            "[channels.email]\nkind = \"webhook\"\nurl = \"{}/{name}\"\ntimeout = \"5s\"\n",
            provider.url
        ),
    )?;
    for name in ["tag", "score", "send"] {
        let file = format!("{name}.wasm");
        std::fs::copy(components.join(&file), dir.join("components").join(&file))
            .with_context(|| format!("copying {file} from {}", components.display()))?;
    }
    Ok(())
}

/// The store of the deployment in `dir`: the drilled one's Redis if there
/// is one, else the SQLite file in its data directory.
fn store_url(drill: &Drill, dir: &Path) -> StoreUrl {
    match &drill.redis {
        Some(url) if dir.ends_with("drilled") => StoreUrl::Redis(url.clone()),
        _ => StoreUrl::Sqlite(dir.join("data/dripline.db")),
    }
}

fn open(drill: &Drill, dir: &Path) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    Ok(OpenStore::open(&store_url(drill, dir))?.store())
}

fn receive(drill: &Drill, dir: &Path, joining: &[usize], now: i64) -> anyhow::Result<()> {
    let store = open(drill, dir)?;
    let writes: Vec<Write> = joining
        .iter()
        .map(|i| {
            let id = format!("join-{i}");
            let event = json!({
                "id": id, "source": "api", "name": "member.joined",
                "identities": { "email": email(*i) },
                "properties": {}, "occurred_at": now, "received_at": now,
            });
            Write::inbox_put(now, &id, event.to_string().into_bytes())
        })
        .collect();
    store.apply(&writes)?;
    Ok(())
}

fn email(i: usize) -> String {
    format!("member{i}@example.com")
}

fn spawn(drill: &Drill, dir: &Path, now: i64) -> anyhow::Result<Child> {
    Command::new(&drill.binary)
        .arg("process")
        .arg("--store")
        .arg(store_url(drill, dir).to_url())
        .arg("--lease-ms")
        .arg(DRILL_LEASE_MS.to_string())
        .arg("--components")
        .arg(dir.join("components"))
        .arg("--data")
        .arg(dir.join("data"))
        .arg("--root")
        .arg(dir)
        .arg("--cache")
        .arg(drill.work_dir.join("cache"))
        .arg("--now-ms")
        .arg(now.to_string())
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", drill.binary.display()))
}

fn complete(drill: &Drill, dir: &Path, now: i64) -> anyhow::Result<()> {
    let status = spawn(drill, dir, now)?.wait()?;
    if !status.success() {
        bail!("`dripline process` failed in {}: {status}", dir.display());
    }
    Ok(())
}

/// One contact's observable state.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    score: i64,
    tags: Vec<String>,
    messages: usize,
    finished: usize,
    /// Of its messages, those recorded as sent whose idempotency key the
    /// provider received.
    delivered: usize,
}

fn observe(
    drill: &Drill,
    dir: &Path,
    contacts: usize,
    received: &HashMap<String, usize>,
) -> anyhow::Result<(Vec<Option<Observed>>, u64, usize)> {
    let store = open(drill, dir)?;
    let mut observed = Vec::with_capacity(contacts);
    for i in 0..contacts {
        let Some(contact) = store.contact_find_by_identity(&Identity::Email(email(i)))? else {
            observed.push(None);
            continue;
        };
        let record = dripline_runner::contacts::ContactRecord::from_stored(contact);
        let id = &record.contact.id;
        let finished = store
            .enrollments_of_contact(id)?
            .iter()
            .filter(|e| !e.active)
            .count();
        let messages = store.outbox_of_contact(id)?;
        let delivered = messages
            .iter()
            .filter(|m| {
                m.status == dripline_store::OutboxStatus::Sent
                    && received.contains_key(&m.idempotency_key)
            })
            .count();
        observed.push(Some(Observed {
            score: record.profile.score,
            tags: record.profile.tags.iter().cloned().collect(),
            messages: messages.len(),
            finished,
            delivered,
        }));
    }
    Ok((
        observed,
        store.timers_pending_count()?,
        store.inbox_peek(usize::MAX)?.len(),
    ))
}

fn compare(
    drill: &Drill,
    reference: &Path,
    drilled: &Path,
    contacts: usize,
    provider: &Provider,
    report: &mut DrillReport,
) -> anyhow::Result<()> {
    let (expected, expected_timers, _) =
        observe(drill, reference, contacts, &provider.received("reference"))?;
    for (i, contact) in expected.iter().enumerate() {
        let ok = contact.as_ref().is_some_and(|c| {
            c.score == EXPECTED_SCORE && c.messages == 1 && c.finished == 1 && c.delivered == 1
        });
        if !ok {
            bail!(
                "the reference itself is wrong for {}: {contact:?}",
                email(i)
            );
        }
    }
    let received = provider.received("drilled");
    report.redelivered = received.values().map(|n| n.saturating_sub(1)).sum();
    // A key the provider saw that no message of the drilled deployment has
    // would be a delivery made under a second key.
    let (actual, timers, inbox_left) = observe(drill, drilled, contacts, &received)?;
    report.lost += inbox_left;
    for (want, got) in expected.iter().zip(&actual) {
        match (want, got) {
            (Some(_), None) => report.lost += 1,
            (Some(want), Some(got)) => {
                if got.score > want.score || got.messages > want.messages {
                    report.duplicated += 1;
                } else if got != want {
                    report.missed += 1;
                }
            }
            (None, _) => {}
        }
    }
    report.missed += usize::try_from(timers.saturating_sub(expected_timers)).unwrap_or(usize::MAX);
    Ok(())
}

/// How long the provider takes to accept a message: long enough that kills
/// land while deliveries are in flight.
const PROVIDER_DELAY: Duration = Duration::from_millis(3);

/// A messaging provider on loopback, as the drill's webhook channel posts to
/// it: each deployment posts to its own path; it counts what each receives
/// by idempotency key, and how many deliveries it holds at the moment.
pub struct Provider {
    /// Its base URL.
    pub url: String,
    state: Arc<ProviderState>,
    _runtime: tokio::runtime::Runtime,
}

#[derive(Default)]
struct ProviderState {
    /// (deployment, idempotency key) -> deliveries received.
    received: Mutex<HashMap<(String, String), usize>>,
    /// Deliveries held now, by deployment.
    in_flight: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

impl Provider {
    /// Starts it on a free loopback port.
    pub fn start() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(ProviderState::default());
        let served = state.clone();
        runtime.spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let state = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(state.accept(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Ok(Self {
            url,
            state,
            _runtime: runtime,
        })
    }

    fn in_flight(&self, deployment: &str) -> usize {
        self.state.counter(deployment).load(Ordering::SeqCst)
    }

    /// What `deployment` delivered: idempotency key -> times received.
    fn received(&self, deployment: &str) -> HashMap<String, usize> {
        self.state
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|((d, _), _)| d == deployment)
            .map(|((_, key), n)| (key.clone(), *n))
            .collect()
    }
}

impl ProviderState {
    fn counter(&self, deployment: &str) -> Arc<AtomicUsize> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(deployment.to_string())
            .or_default()
            .clone()
    }

    async fn accept(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
        use http_body_util::BodyExt as _;
        let deployment = request.uri().path().trim_start_matches('/').to_string();
        let key = request
            .headers()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let counter = self.counter(&deployment);
        counter.fetch_add(1, Ordering::SeqCst);
        let _ = request.into_body().collect().await;
        tokio::time::sleep(PROVIDER_DELAY).await;
        *self
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((deployment, key))
            .or_default() += 1;
        counter.fetch_sub(1, Ordering::SeqCst);
        hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::from_static(
            b"{\"ok\":true}",
        )))
    }
}

/// xorshift64: kill moments need spread, not cryptographic quality.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
