//! The `dripline` command: `dripline up` runs a deployment; `dripline bench`
//! measures it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use dripline::server::ServerState;
use dripline::{Plugins, Sandbox, SandboxConfig};

#[derive(Parser)]
#[command(
    name = "dripline",
    version,
    about = "Customer journeys as WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the components and serve: webhooks in, journeys run, messages out.
    Up {
        /// Directory of component files (`*.wasm`) to load.
        #[arg(
            long,
            env = "DRIPLINE_COMPONENTS",
            default_value = "target/dripline/components"
        )]
        components: PathBuf,
        /// Address to listen on.
        #[arg(long, env = "DRIPLINE_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Directory for the database and the compiled-component cache.
        #[arg(long, env = "DRIPLINE_DATA", default_value = ".dripline")]
        data: PathBuf,
        /// Most wall-clock time one plugin call may take, in milliseconds.
        #[arg(long, default_value_t = 100)]
        deadline_ms: u64,
        /// Most memory one plugin instance may use, in MiB.
        #[arg(long, default_value_t = 64)]
        memory_mib: usize,
    },
    /// Benchmarks; run them from a release build.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// The cost of running a step: fresh instance, reused instance, native.
    Steps {
        /// Directory holding `tag.wasm`.
        #[arg(
            long,
            env = "DRIPLINE_COMPONENTS",
            default_value = "target/dripline/components"
        )]
        components: PathBuf,
        /// Calls per measurement.
        #[arg(long, default_value_t = 20_000)]
        iterations: usize,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Up {
            components,
            listen,
            data,
            deadline_ms,
            memory_mib,
        } => {
            let config = SandboxConfig {
                deadline: Duration::from_millis(deadline_ms),
                memory_limit: memory_mib << 20,
                cache_dir: Some(data.join("cache")),
                ..SandboxConfig::default()
            };
            up(config, &components, listen)
        }
        Command::Bench {
            bench:
                Bench::Steps {
                    components,
                    iterations,
                },
        } => dripline::bench::steps(&components, iterations),
    }
}

fn up(
    config: SandboxConfig,
    components: &std::path::Path,
    listen: SocketAddr,
) -> anyhow::Result<()> {
    let sandbox = Arc::new(Sandbox::new(config)?);
    let plugins = Plugins::load_dir(&sandbox, components)?;
    let state = Arc::new(ServerState {
        steps: plugins.steps.keys().cloned().collect(),
        triggers: plugins.triggers.keys().cloned().collect(),
    });
    tracing::info!(steps = ?state.steps, triggers = ?state.triggers, "components loaded");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        tracing::info!("dripline is up on http://{}", listener.local_addr()?);
        axum::serve(listener, dripline::server::router(state))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        anyhow::Ok(())
    })
}
