//! `dripline worker`: the journeys and the deliveries of a deployment without
//! its gateway, for a store that other workers and a gateway (under Spin,
//! SpinKube or `dripline up`) share. Any number of workers may run on one
//! store: each timer and each message is claimed by one of them with a lease
//! (`--lease-ms`), and each inbox event is consumed by one, so none fires a
//! timer or delivers a message twice, and what a worker that dies held is
//! taken by another once its lease ends.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use dripline::{Deployment, Parts};
use dripline_admin::{Readiness, ServerState};
use dripline_clock::{Clock, SystemClock};
use dripline_sandbox::{Sandbox, SandboxConfig};

use crate::cli::WorkerArgs;
use crate::commands::crew::{Crew, runtime_stopped_by_signals, stopped};

/// Runs `dripline worker` until SIGTERM or Ctrl-C.
pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let WorkerArgs {
        deployment,
        listen,
        lease_ms,
        deadline_ms,
        memory_mib,
    } = args;
    let (runtime, stopping) = runtime_stopped_by_signals()?;
    let sandbox = Arc::new(Sandbox::new(SandboxConfig {
        deadline: Duration::from_millis(deadline_ms),
        memory_limit: memory_mib << 20,
        cache_dir: Some(deployment.data.join("cache")),
        ..SandboxConfig::default()
    })?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut paths = Deployment::at(
        &deployment.root,
        deployment.components,
        &deployment.data,
        deployment.store,
    );
    paths.shared = true;
    paths.lease_ms = lease_ms;
    let parts = Arc::new(Parts::open(&paths, &sandbox)?);
    let store = parts.store();
    let crew = Crew::start(&parts, &clock)?;
    tracing::info!(store = %paths.store, lease_ms, "the worker is up");
    runtime.block_on(async move {
        // Spin's gateway marks each delivery in the shared store and never
        // removes the marks; the workers sweep the lapsed ones, or the store
        // (and the scan that finds the inbox in Redis) grows by one key per
        // webhook forever.
        let sweep = tokio::spawn(dripline_gateway_host::sweep_forever(
            parts.store.gateway(),
            clock.clone(),
        ));
        let (drained, drained_rx) = tokio::sync::watch::channel(false);
        let probes = match listen {
            Some(address) => {
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding {address}"))?;
                tracing::info!("health probes on http://{}", listener.local_addr()?);
                let state = Arc::new(ServerState {
                    steps: parts.plugins.steps.keys().cloned().collect(),
                    triggers: parts.plugins.triggers.keys().cloned().collect(),
                    tracking: None,
                    readiness: Some(Readiness {
                        store: parts.store(),
                        clock: clock.clone(),
                        worker_beat_ms: crew.heartbeat.clone(),
                        worker_restarts: crew.restarts.clone(),
                        stopping: crew.stop.clone(),
                    }),
                });
                Some(tokio::spawn(dripline_admin::serve(
                    listener,
                    state,
                    stopped(drained_rx),
                )))
            }
            None => None,
        };
        stopped(stopping).await;
        tracing::info!("stopping: finishing the work in hand");
        tokio::task::spawn_blocking(move || crew.finish(store.as_ref(), false)).await?;
        sweep.abort();
        let _ = drained.send(true);
        if let Some(probes) = probes {
            probes.await??;
        }
        anyhow::Ok(())
    })
}
