//! The threads that run a deployment's journeys and deliver its messages:
//! the journey worker and one dispatcher per delivery lane, each restarted by
//! a supervisor if it panics. `dripline up` runs them beside its gateway,
//! `dripline worker` alone; both stop them the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dripline::Parts;
use dripline_clock::Clock;
use dripline_delivery::Lane;
use dripline_runner::worker::{run_dispatcher, run_worker, supervise};
use dripline_store::{Store, Write};

/// How long the worker and the dispatchers get to finish what they hold once
/// a stop is asked for; supervisors send SIGKILL some time after SIGTERM
/// (Kubernetes: 30 s by default).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The running threads, and what they share with the health probes.
pub struct Crew {
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Set to stop them.
    pub stop: Arc<AtomicBool>,
    /// The journey worker's last beat (wall-clock ms).
    pub heartbeat: Arc<AtomicI64>,
    /// How many times a thread was restarted after a panic.
    pub restarts: Arc<AtomicU64>,
}

impl Crew {
    /// Builds the journey worker and the dispatchers (a deployment that does
    /// not open stops here, before anything runs) and starts them.
    pub fn start(parts: &Arc<Parts>, clock: &Arc<dyn Clock>) -> anyhow::Result<Self> {
        // The first worker is built here; restarts build theirs in the thread.
        let runner = parts.runner(clock.clone())?;
        let dispatcher = parts.dispatcher(clock.clone(), runner.journeys())?;
        let heartbeat = Arc::new(AtomicI64::new(0));
        let restarts = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        // Without channels.toml every channel is the embedded outbox, which
        // cannot hang: one lane does.
        let lanes = match &parts.channels {
            Some(_) => dispatcher.lanes(),
            None => vec![Lane::All],
        };
        drop(dispatcher);
        for lane in lanes {
            let mut first = Some(parts.lane_dispatcher(clock.clone(), lane.clone())?);
            let (stop, restarts, parts, clock) =
                (stop.clone(), restarts.clone(), parts.clone(), clock.clone());
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
        let mut first = Some(runner);
        let (stop_w, restarts_w, beat, parts, clock) = (
            stop.clone(),
            restarts.clone(),
            heartbeat.clone(),
            parts.clone(),
            clock.clone(),
        );
        threads.push(
            std::thread::Builder::new()
                .name("dripline-worker".into())
                .spawn(move || {
                    supervise(&stop_w, &restarts_w, || {
                        let built = match first.take() {
                            Some(built) => Ok(built),
                            None => parts.runner(clock.clone()),
                        };
                        match built {
                            Ok(runner) => {
                                run_worker(runner.with_heartbeat(beat.clone()), stop_w.clone())
                            }
                            Err(e) => tracing::error!("the worker could not start: {e:#}"),
                        }
                    })
                })?,
        );
        Ok(Self {
            threads,
            stop,
            heartbeat,
            restarts,
        })
    }

    /// Stops the threads: each finishes the input or the message in hand,
    /// recorded, within the grace period. A deployment that is the store's
    /// only scheduler (`release_claims`) then hands every timer claim back,
    /// so that the next process fires at once what this one claimed and did
    /// not finish; workers sharing a store leave theirs to lapse, since the
    /// claims in the store may be another worker's.
    pub fn finish(self, store: &dyn Store, release_claims: bool) {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while self.threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let (finished, running): (Vec<_>, Vec<_>) =
            self.threads.into_iter().partition(|t| t.is_finished());
        finished.into_iter().for_each(|t| drop(t.join()));
        if !running.is_empty() {
            // What they hold is not recorded as done, so the next start takes it
            // again under the same idempotency keys.
            tracing::warn!(
                threads = running.len(),
                "stopping with work in hand after the {SHUTDOWN_GRACE:?} grace period"
            );
        }
        if release_claims && let Err(e) = store.apply(&[Write::TimerReleaseClaims]) {
            tracing::warn!(
                "the timer claims could not be handed back (they lapse on their own): {e}"
            );
        }
        tracing::info!("stopped");
    }
}

/// The process's async runtime, with the signal handlers in place before
/// anything starts, so that a SIGTERM that comes early (a supervisor that
/// changed its mind) still stops the process cleanly instead of killing it.
pub fn runtime_stopped_by_signals()
-> anyhow::Result<(tokio::runtime::Runtime, tokio::sync::watch::Receiver<bool>)> {
    let runtime = tokio::runtime::Runtime::new()?;
    let stopping = {
        let _entered = runtime.enter();
        stop_on_signals()?
    };
    Ok((runtime, stopping))
}

/// Registers the handlers of SIGINT (Ctrl-C) and SIGTERM (what systemd,
/// Docker and Kubernetes send to stop a service) at once, and returns a flag
/// that turns true when either arrives: both stop the process the same way,
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
pub async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}
