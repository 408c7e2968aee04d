//! What the `dripline` subcommands that concern journeys do: validate journey
//! files, print their schema, open a deployment's runner, and run the worker
//! loop of `dripline up`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use dripline_store::{SqliteStore, Store};

use crate::channels::{Channels, ChannelsConfig};
use crate::clock::Clock;
use crate::dispatch::Dispatcher;
use crate::journeys::{Journeys, Templates};
use crate::policy::DeliveryPolicy;
use crate::runner::Runner;
use crate::tracking::Tracker;
use crate::{Plugins, Sandbox, SandboxConfig};

/// Checks journey files and prints every error with its file, line and field.
/// Returns whether all were valid.
pub fn validate(files: &[PathBuf]) -> anyhow::Result<bool> {
    let mut valid = true;
    for file in files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {name}"))?;
        match dripline_engine::parse_journey(&name, &text) {
            Ok(journey) => println!(
                "{name}: ok ({} v{}, {} steps)",
                journey.id,
                journey.version,
                journey.steps.len()
            ),
            Err(errors) => {
                valid = false;
                for error in errors {
                    println!("{error}");
                }
            }
        }
    }
    Ok(valid)
}

/// Where a deployment's parts are.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The component files.
    pub components: PathBuf,
    /// The journey files.
    pub journeys: PathBuf,
    /// The message templates.
    pub templates: PathBuf,
    /// The delivery rules (`delivery.toml`); the defaults if the file is absent.
    pub delivery: PathBuf,
    /// The database file.
    pub database: PathBuf,
    /// The channels file (`channels.toml`); absent means the embedded default,
    /// where every message stays in the outbox.
    pub channels: PathBuf,
}

/// Opens the store, loads plugins, journeys and templates, and builds a runner.
pub fn open_runner(
    deployment: &Deployment,
    sandbox: &Arc<Sandbox>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Runner, Arc<dyn Store>)> {
    if let Some(dir) = deployment.database.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&deployment.database)
            .with_context(|| format!("opening {}", deployment.database.display()))?,
    );
    // The embedded deployment has one scheduler: claims left by a predecessor
    // that crashed are released, so its timers fire now, not a lease later.
    store.apply(&[dripline_store::Write::TimerReleaseClaims])?;
    let plugins = Arc::new(Plugins::load_dir(sandbox, &deployment.components)?);
    let (journeys, problems) = Journeys::load(&deployment.journeys, store.as_ref())?;
    for problem in problems {
        tracing::error!("journey not loaded: {problem}");
    }
    let templates = Templates::load(&deployment.templates);
    let policy = DeliveryPolicy::load(&deployment.delivery)?;
    let tracker = match &policy.tracking.base_url {
        Some(base) => Some(Tracker::for_deployment(base, store.as_ref())?),
        None => None,
    };
    let channels = ChannelsConfig::load(&deployment.channels)?;
    let allowed_hosts = channels
        .as_ref()
        .map(|c| c.http_out.allowed_hosts.clone())
        .unwrap_or_default();
    let alerts = channels.map(|c| c.alerts).unwrap_or_default();
    let runner = Runner::new(
        store.clone(),
        plugins,
        journeys,
        templates,
        clock,
        Arc::new(policy),
    )
    .with_allowed_hosts(allowed_hosts)
    .with_alerts(alerts);
    let runner = match tracker {
        Some(tracker) => runner.with_tracker(tracker),
        None => runner,
    };
    Ok((runner, store))
}

/// Reads the deployment's channels file and builds the dispatcher of `store`'s
/// outbox. A channel a journey's send step names that the file does not
/// configure is reported here, at start, rather than at the first send.
pub fn open_dispatcher(
    deployment: &Deployment,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Dispatcher> {
    let channels = match ChannelsConfig::load(&deployment.channels)? {
        Some(config) => {
            tracing::info!(
                channels = ?config.channels.keys().collect::<Vec<_>>(),
                "channels from {}",
                deployment.channels.display()
            );
            Channels::from_config(config)?
        }
        None => Channels::embedded(),
    };
    for (file, channel) in channels_named_by_journeys(&deployment.journeys) {
        if channels.get(&channel).is_none() {
            tracing::error!(
                "{file}: channel `{channel}` is not configured in {}; its sends will fail",
                deployment.channels.display()
            );
        }
    }
    Ok(Dispatcher::new(store, channels, clock))
}

/// (journey file, channel) for every `channel = "..."` in a step's config.
fn channels_named_by_journeys(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(doc) = text.parse::<toml::Table>() else {
            continue;
        };
        let steps = doc.get("steps").and_then(|s| s.as_array());
        for step in steps.into_iter().flatten() {
            let channel = step
                .get("config")
                .and_then(|c| c.get("channel"))
                .and_then(|c| c.as_str());
            if let Some(channel) = channel.filter(|c| *c != "preferred") {
                found.push((path.display().to_string(), channel.to_string()));
            }
        }
    }
    found
}

/// `dripline process`: processes the inbox and the timers due at the clock's
/// time until nothing is left, then returns. The crash test runs it as a child
/// process and kills it at random points.
pub fn process(
    deployment: &Deployment,
    clock: Arc<dyn Clock>,
    config: SandboxConfig,
) -> anyhow::Result<()> {
    let sandbox = Arc::new(Sandbox::new(config)?);
    let (mut runner, _) = open_runner(deployment, &sandbox, clock)?;
    let progress = runner.run_until_idle()?;
    println!(
        "processed: {} events, {} timers",
        progress.events, progress.timers
    );
    Ok(())
}

/// The worker loop of `dripline up`: processes whatever is due, delivers the
/// outbox messages that are due, re-reads changed journey files every second,
/// prints each new outbox message, and rests when idle. Stops when `stop` is
/// set.
pub fn run_worker(mut runner: Runner, mut dispatcher: Dispatcher, stop: Arc<AtomicBool>) {
    let mut last_reload = Instant::now();
    let mut printed = None;
    while !stop.load(Ordering::Relaxed) {
        let busy = match runner.run_until_idle() {
            Ok(progress) => progress.events + progress.timers > 0,
            Err(e) => {
                tracing::error!("worker: {e}");
                false
            }
        };
        if busy {
            printed = print_outbox(runner.store().as_ref(), printed);
        }
        let busy = match dispatcher.run_until_idle() {
            Ok(report) => busy || report.handled() > 0,
            Err(e) => {
                tracing::error!("dispatcher: {e}");
                busy
            }
        };
        if last_reload.elapsed() > Duration::from_secs(1) {
            last_reload = Instant::now();
            match runner.reload_journeys() {
                Ok(problems) => problems
                    .iter()
                    .for_each(|p| tracing::error!("journey not loaded: {p}")),
                Err(e) => tracing::error!("reloading journeys: {e}"),
            }
        }
        if !busy {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn print_outbox(store: &dyn Store, after: Option<i64>) -> Option<i64> {
    let Ok(messages) = store.outbox_list(after, 1000) else {
        return after;
    };
    let mut last = after;
    for message in messages {
        let content = &message.content;
        // The policy's word where there is one (a post has none).
        let status = content
            .pointer("/delivery/status")
            .and_then(|s| s.as_str())
            .unwrap_or(&message.status);
        println!(
            "outbox #{} [{}] {} -> {} ({status}): {}",
            message.id,
            content["journey"].as_str().unwrap_or("-"),
            message.channel,
            message.contact_id,
            content["subject"]
                .as_str()
                .unwrap_or_else(|| content["body"].as_str().unwrap_or("")),
        );
        last = Some(message.id);
    }
    last
}

/// The default layout of a deployment rooted at `root`.
pub fn deployment_at(root: &Path, components: PathBuf, data: &Path) -> Deployment {
    Deployment {
        components,
        journeys: root.join("journeys"),
        templates: root.join("templates"),
        delivery: root.join(crate::policy::DELIVERY_FILE),
        database: data.join("dripline.db"),
        channels: root.join("channels.toml"),
    }
}
