//! `dripline up`: one process serving a deployment. The database is opened,
//! each component loaded and each configuration file read once
//! ([`Parts::open`]); the worker thread runs the journeys and the dispatcher,
//! the gateway serves the webhook routes of `spin.toml` on its listener, and
//! the admin server health, the outbox and tracking links on another.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use dripline::owner::DataLock;
use dripline::{Deployment, Parts};
use dripline_admin::{Readiness, ServerState, TrackingState};
use dripline_clock::{Clock, ScaledClock, SystemClock};
use dripline_delivery::Lane;
use dripline_gateway_host::{
    DEFAULT_REQUEST_DEADLINE, Gateway, GatewayStore, SpinApp, VariableSource,
};
use dripline_runner::worker::{run_dispatcher, run_worker, supervise};
use dripline_sandbox::{Sandbox, SandboxConfig};

use crate::cli::UpArgs;

/// How long the worker and the dispatchers get to finish what they hold once
/// a stop is asked for; supervisors send SIGKILL some time after SIGTERM
/// (Kubernetes: 30 s by default).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs `dripline up` until Ctrl-C or SIGTERM.
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let UpArgs {
        deployment,
        listen,
        deadline_ms,
        memory_mib,
        gateway_listen,
        spin,
        variables_file,
        clock_speed,
    } = args;
    // The signal handlers are in place before anything starts, so a SIGTERM
    // that comes early (a supervisor that changed its mind) still stops the
    // process cleanly instead of killing it.
    let runtime = tokio::runtime::Runtime::new()?;
    let stopping = {
        let _entered = runtime.enter();
        stop_on_signals()?
    };
    let config = SandboxConfig {
        deadline: Duration::from_millis(deadline_ms),
        memory_limit: memory_mib << 20,
        cache_dir: Some(deployment.data.join("cache")),
        ..SandboxConfig::default()
    };
    let _owner = DataLock::acquire(&deployment.data)?;
    // The gateway has an instance pool of its own: a flood of webhooks can
    // then use up only the gateway's instances, never the ones the journey
    // steps run in (nor the other way round).
    let gateway_sandbox = Arc::new(Sandbox::new(SandboxConfig {
        cache_dir: config.cache_dir.clone(),
        ..SandboxConfig::default()
    })?);
    let sandbox = Arc::new(Sandbox::new(config)?);
    let clock: Arc<dyn Clock> = if (clock_speed - 1.0).abs() < f64::EPSILON {
        Arc::new(SystemClock)
    } else {
        tracing::warn!(
            "the clock runs {clock_speed} times faster than the wall clock (a demonstration, not a deployment)"
        );
        Arc::new(ScaledClock::new(clock_speed))
    };
    let components = deployment.components.clone();
    let paths = Deployment::at(&deployment.root, deployment.components, &deployment.data);
    let parts = Arc::new(Parts::open(&paths, &sandbox)?);
    // The first worker is built here, so that a deployment that does not
    // open stops `dripline up` at once; restarts build theirs in the thread.
    let runner = parts.runner(clock.clone())?;
    let dispatcher = parts.dispatcher(clock.clone(), runner.journeys())?;
    let heartbeat = Arc::new(AtomicI64::new(0));
    let restarts = Arc::new(AtomicU64::new(0));
    let stop_worker = Arc::new(AtomicBool::new(false));
    let store = parts.store();

    // The gateway loads before anything listens, so a bad manifest stops
    // `dripline up` at once; a missing one only leaves webhooks unserved.
    let webhooks = if spin.exists() {
        let variables = match &variables_file {
            Some(path) => VariableSource::with_file(path)?,
            None => VariableSource::default(),
        };
        let app = SpinApp::load(&spin, Some(&components), &variables)?;
        let store: Arc<dyn GatewayStore> = parts.store.clone();
        let gateway = Gateway::load(gateway_sandbox, &app, store, DEFAULT_REQUEST_DEADLINE)?
            .with_clock(clock.clone());
        Some(Arc::new(gateway))
    } else {
        tracing::warn!(
            "no {} here: the webhook gateway is not served",
            spin.display()
        );
        None
    };

    let state = Arc::new(ServerState {
        steps: parts.plugins.steps.keys().cloned().collect(),
        triggers: parts.plugins.triggers.keys().cloned().collect(),
        store: Some(parts.store.clone()),
        tracking: parts.tracker.clone().map(|tracker| TrackingState {
            store: parts.store(),
            tracker,
            clock: clock.clone(),
        }),
        readiness: Some(Readiness {
            store: parts.store(),
            clock: clock.clone(),
            worker_beat_ms: heartbeat.clone(),
            worker_restarts: restarts.clone(),
            stopping: stop_worker.clone(),
        }),
    });
    tracing::info!(steps = ?state.steps, triggers = ?state.triggers, "components loaded");

    let mut threads = Vec::new();
    // Without channels.toml every channel is the embedded outbox, which
    // cannot hang: one lane does.
    let lanes = match &parts.channels {
        Some(_) => dispatcher.lanes(),
        None => vec![Lane::All],
    };
    for lane in lanes {
        let lane_dispatcher = parts.lane_dispatcher(clock.clone(), lane.clone())?;
        let (stop, restarts, parts, clock) = (
            stop_worker.clone(),
            restarts.clone(),
            parts.clone(),
            clock.clone(),
        );
        let mut first = Some(lane_dispatcher);
        let name = match &lane {
            Lane::Channel(channel) => format!("dripline-send-{channel}"),
            Lane::Unconfigured | Lane::All => "dripline-send".to_string(),
        };
        threads.push(std::thread::Builder::new().name(name).spawn(move || {
            supervise(&stop, &restarts, || {
                let built = match first.take() {
                    Some(built) => Ok(built),
                    None => parts.lane_dispatcher(clock.clone(), lane.clone()),
                };
                match built {
                    Ok(dispatcher) => run_dispatcher(dispatcher, stop.clone()),
                    Err(e) => tracing::error!("a dispatcher could not start: {e:#}"),
                }
            })
        })?);
    }
    drop(dispatcher);
    {
        let stop = stop_worker.clone();
        let mut first = Some(runner);
        threads.push(
            std::thread::Builder::new()
                .name("dripline-worker".into())
                .spawn(move || {
                    supervise(&stop, &restarts, || {
                        let built = match first.take() {
                            Some(built) => Ok(built),
                            None => parts.runner(clock.clone()),
                        };
                        match built {
                            Ok(runner) => {
                                run_worker(runner.with_heartbeat(heartbeat.clone()), stop.clone())
                            }
                            Err(e) => tracing::error!("the worker could not start: {e:#}"),
                        }
                    })
                })?,
        );
    }

    let gateway = match &webhooks {
        Some(webhooks) => {
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind(gateway_listen))
                .with_context(|| format!("binding the gateway to {gateway_listen}"))?;
            tracing::info!(routes = ?webhooks.routes(), "the webhook gateway is up on http://{}", listener.local_addr()?);
            Some(listener)
        }
        None => None,
    };
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        tracing::info!("dripline is up on http://{}", listener.local_addr()?);
        // The listeners stay open until the worker is done, so that what
        // comes meanwhile gets an answer: 503 with Retry-After from the
        // gateway (providers deliver it again later), "not ready" from the
        // readiness probe.
        let (drained, drained_rx) = tokio::sync::watch::channel(false);
        let admin = tokio::spawn(dripline_admin::serve(
            listener,
            state,
            stopped(drained_rx.clone()),
        ));
        let served_webhooks = match (&webhooks, gateway) {
            (Some(webhooks), Some(listener)) => Some(tokio::spawn(
                webhooks.clone().serve(listener, stopped(drained_rx)),
            )),
            _ => None,
        };
        stopped(stopping).await;
        tracing::info!("stopping: webhooks are refused from now on; finishing the work in hand");
        if let Some(webhooks) = &webhooks {
            webhooks.refuse_requests();
        }
        stop_worker.store(true, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || finish(threads, store.as_ref())).await?;
        let _ = drained.send(true);
        admin.await??;
        if let Some(served) = served_webhooks {
            served.await??;
        }
        anyhow::Ok(())
    })
}

/// Waits for the worker and the dispatchers to finish the input and the
/// message in hand, each recorded, within the grace period; then hands the
/// timer claims back, so that the next process fires at once what this one
/// claimed and did not finish.
fn finish(threads: Vec<std::thread::JoinHandle<()>>, store: &dyn dripline_store::Store) {
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (finished, running): (Vec<_>, Vec<_>) = threads.into_iter().partition(|t| t.is_finished());
    finished.into_iter().for_each(|t| drop(t.join()));
    if !running.is_empty() {
        // What they hold is not recorded as done, so the next start takes it
        // again under the same idempotency keys.
        tracing::warn!(
            threads = running.len(),
            "stopping with work in hand after the {SHUTDOWN_GRACE:?} grace period"
        );
    }
    if let Err(e) = store.apply(&[dripline_store::Write::TimerReleaseClaims]) {
        tracing::warn!("the timer claims could not be handed back (they lapse on their own): {e}");
    }
    tracing::info!("stopped");
}

/// Registers the handlers of SIGINT (Ctrl-C) and SIGTERM (what systemd,
/// Docker and Kubernetes send to stop a service) at once, and returns a flag
/// that turns true when either arrives: both stop `dripline up` the same way,
/// the listeners first, then the worker after the input in hand. Call it
/// inside the runtime.
fn stop_on_signals() -> anyhow::Result<tokio::sync::watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        let _ = stop.send(true);
    });
    Ok(stopping)
}

/// Resolves once a stop was asked for.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}
