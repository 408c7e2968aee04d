//! `dripline up`: one process serving a deployment. The database is opened,
//! each component loaded and each configuration file read once
//! ([`Parts::open`]); the worker thread runs the journeys and the dispatcher,
//! the gateway serves the webhook routes of `spin.toml` on its listener, and
//! the public listener health and tracking links, and the admin API a
//! listener of its own.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use dripline::owner::DataLock;
use dripline::{Deployment, Parts};
use dripline_admin::api::AdminState;
use dripline_admin::auth::Tokens;
use dripline_admin::{Readiness, ServerState, TrackingState};
use dripline_clock::{Clock, ScaledClock, SystemClock};
use dripline_gateway_host::{
    DEFAULT_REQUEST_DEADLINE, Gateway, GatewayStore, SpinApp, VariableSource,
};
use dripline_sandbox::{Sandbox, SandboxConfig};

use crate::cli::UpArgs;
use crate::commands::crew::{Crew, runtime_stopped_by_signals, stopped};

/// Runs `dripline up` until Ctrl-C or SIGTERM.
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let UpArgs {
        deployment,
        listen,
        admin_listen,
        deadline_ms,
        memory_mib,
        gateway_listen,
        spin,
        variables_file,
        clock_speed,
    } = args;
    let (runtime, stopping) = runtime_stopped_by_signals()?;
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
    let paths = Deployment::at(
        &deployment.root,
        deployment.components,
        &deployment.data,
        deployment.store,
    );
    let parts = Arc::new(Parts::open(&paths, &sandbox)?);
    let store = parts.store();
    // The journeys start before the gateway loads: a deployment that does not
    // open stops `dripline up` at once.
    let crew = Crew::start(&parts, &clock)?;
    let release_claims = !paths.shared;

    // The gateway loads before anything listens, so a bad manifest stops
    // `dripline up` at once; a missing one only leaves webhooks unserved.
    let webhooks = if spin.exists() {
        let variables = match &variables_file {
            Some(path) => VariableSource::with_file(path)?,
            None => VariableSource::default(),
        };
        let app = SpinApp::load(&spin, Some(&components), &variables)?;
        let store: Arc<dyn GatewayStore> = parts.store.gateway();
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
        tracking: parts.tracker.clone().map(|tracker| TrackingState {
            store: parts.store(),
            tracker,
            clock: clock.clone(),
        }),
        readiness: Some(Readiness {
            store: parts.store(),
            clock: clock.clone(),
            worker_beat_ms: crew.heartbeat.clone(),
            worker_restarts: crew.restarts.clone(),
            stopping: crew.stop.clone(),
        }),
    });
    tracing::info!(steps = ?state.steps, triggers = ?state.triggers, "components loaded");

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
    let tokens_file = deployment.data.join(dripline_admin::auth::TOKENS_FILE);
    let simulator = dripline::simulate::Simulator::with_parts(
        parts.plugins.clone(),
        paths.templates.clone(),
        parts.policy.clone(),
    )
    .with_segments_of(&paths.journeys.with_file_name("segments"))?;
    let api = Arc::new(AdminState {
        store: parts.store(),
        tokens: Tokens::at(&tokens_file),
        clock: clock.clone(),
        simulator: Some(Arc::new(simulator)),
    });
    if api.tokens.count() == 0 {
        tracing::warn!(
            "no admin tokens in {}: the admin API refuses every request; make one with `dripline token new --name <who> --role engineering`",
            tokens_file.display()
        );
    }
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let admin_listener = tokio::net::TcpListener::bind(admin_listen)
            .await
            .with_context(|| format!("binding the admin API to {admin_listen}"))?;
        tracing::info!(
            "the admin API is up on http://{}",
            admin_listener.local_addr()?
        );
        tracing::info!("dripline is up on http://{}", listener.local_addr()?);
        // The listeners stay open until the worker is done, so that what
        // comes meanwhile gets an answer: 503 with Retry-After from the
        // gateway (providers deliver it again later), "not ready" from the
        // readiness probe.
        let (drained, drained_rx) = tokio::sync::watch::channel(false);
        let public = tokio::spawn(dripline_admin::serve(
            listener,
            state,
            stopped(drained_rx.clone()),
        ));
        let admin = tokio::spawn(dripline_admin::serve_admin(
            admin_listener,
            api,
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
        tokio::task::spawn_blocking(move || crew.finish(store.as_ref(), release_claims)).await?;
        let _ = drained.send(true);
        public.await??;
        admin.await??;
        if let Some(served) = served_webhooks {
            served.await??;
        }
        anyhow::Ok(())
    })
}
