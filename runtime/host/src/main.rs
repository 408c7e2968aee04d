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

/// Where a deployment is: what `up` and `process` both read.
#[derive(clap::Args)]
struct DeploymentArgs {
    /// Directory of component files (`*.wasm`) to load.
    #[arg(
        long,
        env = "DRIPLINE_COMPONENTS",
        default_value = "target/dripline/components"
    )]
    components: PathBuf,
    /// Directory for the database and the compiled-component cache.
    #[arg(long, env = "DRIPLINE_DATA", default_value = ".dripline")]
    data: PathBuf,
    /// The deployment's root: `journeys/`, `templates/`, `delivery.toml` and
    /// `channels.toml` are read from it.
    #[arg(long, env = "DRIPLINE_ROOT", default_value = ".")]
    root: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Load the components and serve: webhooks in, journeys run, messages out.
    Up {
        #[command(flatten)]
        deployment: DeploymentArgs,
        /// Address to listen on.
        #[arg(long, env = "DRIPLINE_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Most wall-clock time one plugin call may take, in milliseconds.
        #[arg(long, default_value_t = 100)]
        deadline_ms: u64,
        /// Most memory one plugin instance may use, in MiB.
        #[arg(long, default_value_t = 64)]
        memory_mib: usize,
        /// Address the webhook gateway (the HTTP routes of `spin.toml`) listens on.
        #[arg(
            long,
            env = "DRIPLINE_GATEWAY_LISTEN",
            default_value = "127.0.0.1:3000"
        )]
        gateway_listen: SocketAddr,
        /// The Spin manifest whose HTTP routes the gateway serves.
        #[arg(long, env = "DRIPLINE_SPIN", default_value = "spin.toml")]
        spin: PathBuf,
        /// A TOML file of Spin variable values (`shopify_secret = "..."`);
        /// `SPIN_VARIABLE_<NAME>` in the environment wins over it.
        #[arg(long, env = "DRIPLINE_VARIABLES_FILE")]
        variables_file: Option<PathBuf>,
        /// Run the clock this many times faster than the wall clock, for
        /// demonstrations (3600: an hour a second). Deployments leave it at 1.
        #[arg(long, default_value_t = 1.0)]
        clock_speed: f64,
    },
    /// Process the inbox and the due timers until nothing is left, then exit.
    Process {
        #[command(flatten)]
        deployment: DeploymentArgs,
        /// Process as if the time were this (ms since the epoch); default: now.
        #[arg(long)]
        now_ms: Option<i64>,
        /// Directory of compiled components; default: `<data>/cache`.
        #[arg(long)]
        cache: Option<PathBuf>,
    },
    /// Check journey files; every error is printed with its file, line and field.
    Validate {
        /// The journey files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the JSON Schema of journey files.
    Schema,
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
    /// Kill `dripline process` with SIGKILL at random points and compare the
    /// result with a run that was never killed.
    Crash {
        /// Directory holding `tag.wasm`, `score.wasm` and `send.wasm`.
        #[arg(
            long,
            env = "DRIPLINE_COMPONENTS",
            default_value = "target/dripline/components"
        )]
        components: PathBuf,
        /// How many times to kill the child.
        #[arg(long, default_value_t = 100)]
        kills: usize,
        /// Contacts in the event stream.
        #[arg(long, default_value_t = 400)]
        contacts: usize,
        /// Seed of the kill moments.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Timers: peak memory with many pending, fire rate, lateness, restart time.
    Timers {
        /// How many timers to have pending.
        #[arg(long, default_value_t = 1_000_000)]
        pending: usize,
        /// Accepted for symmetry with the other benchmarks; timers need none.
        #[arg(
            long,
            env = "DRIPLINE_COMPONENTS",
            default_value = "target/dripline/components"
        )]
        components: PathBuf,
    },
    /// Signed Shopify webhooks over HTTP on loopback (from `wrk`) into the
    /// inbox, and the same path natively.
    Ingest {
        /// Directory holding the gateway and trigger components.
        #[arg(
            long,
            env = "DRIPLINE_COMPONENTS",
            default_value = "target/dripline/components"
        )]
        components: PathBuf,
        /// The Spin manifest whose Shopify route is measured.
        #[arg(long, default_value = "spin.toml")]
        spin: PathBuf,
        /// Seconds per round of each measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Rounds: the components and the native baseline take turns, so
        /// that what else the machine does falls on both alike.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Concurrent HTTP connections.
        #[arg(long, default_value_t = 32)]
        connections: u32,
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
            deployment:
                DeploymentArgs {
                    components,
                    data,
                    root,
                },
            listen,
            deadline_ms,
            memory_mib,
            gateway_listen,
            spin,
            variables_file,
            clock_speed,
        } => {
            let config = SandboxConfig {
                deadline: Duration::from_millis(deadline_ms),
                memory_limit: memory_mib << 20,
                cache_dir: Some(data.join("cache")),
                ..SandboxConfig::default()
            };
            let gateway = GatewayArgs {
                listen: gateway_listen,
                manifest: spin,
                variables_file,
                database: data.join("dripline.db"),
            };
            let worker = dripline::commands::deployment_at(&root, components.clone(), &data);
            up(config, &components, listen, gateway, worker, clock_speed)
        }
        Command::Process {
            deployment:
                DeploymentArgs {
                    components,
                    data,
                    root,
                },
            now_ms,
            cache,
        } => {
            let clock: Arc<dyn dripline::clock::Clock> = match now_ms {
                Some(now) => Arc::new(dripline::clock::ManualClock::new(now)),
                None => Arc::new(dripline::clock::SystemClock),
            };
            let config = SandboxConfig {
                cache_dir: Some(cache.unwrap_or_else(|| data.join("cache"))),
                ..SandboxConfig::default()
            };
            dripline::commands::process(
                &dripline::commands::deployment_at(&root, components, &data),
                clock,
                config,
            )
        }
        Command::Validate { files } => {
            if !dripline::commands::validate(&files)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Schema => {
            println!("{}", dripline_engine::json_schema());
            Ok(())
        }
        Command::Bench {
            bench:
                Bench::Steps {
                    components,
                    iterations,
                },
        } => dripline::bench::steps(&components, iterations),
        Command::Bench {
            bench:
                Bench::Crash {
                    components,
                    kills,
                    contacts,
                    seed,
                },
        } => {
            let work_dir = tempfile::tempdir()?;
            let drill = dripline::crash::Drill {
                binary: std::env::current_exe()?,
                components,
                work_dir: work_dir.path().to_path_buf(),
                contacts,
                kills,
                seed,
            };
            let started = std::time::Instant::now();
            let report = dripline::crash::run(&drill)?;
            println!("kills: {} (of {} child runs)", report.kills, report.runs);
            println!("contacts: {contacts}");
            println!("lost: {}", report.lost);
            println!("duplicated: {}", report.duplicated);
            println!("missed: {}", report.missed);
            println!("elapsed: {:.1} s", started.elapsed().as_secs_f64());
            if report.lost + report.duplicated + report.missed > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Bench {
            bench:
                Bench::Timers {
                    pending,
                    components: _,
                },
        } => dripline::bench_timers::run(pending),
        Command::Bench {
            bench:
                Bench::Ingest {
                    components,
                    spin,
                    seconds,
                    rounds,
                    connections,
                },
        } => dripline::gateway::bench::ingest(&dripline::gateway::bench::IngestOptions {
            manifest: &spin,
            components: &components,
            duration: Duration::from_secs(seconds),
            rounds,
            connections,
        }),
    }
}

/// Where the webhook gateway listens and what it serves.
struct GatewayArgs {
    listen: SocketAddr,
    manifest: PathBuf,
    variables_file: Option<PathBuf>,
    database: PathBuf,
}

fn up(
    config: SandboxConfig,
    components: &std::path::Path,
    listen: SocketAddr,
    gateway: GatewayArgs,
    worker: dripline::commands::Deployment,
    clock_speed: f64,
) -> anyhow::Result<()> {
    let sandbox = Arc::new(Sandbox::new(config)?);
    let clock: Arc<dyn dripline::clock::Clock> = if (clock_speed - 1.0).abs() < f64::EPSILON {
        Arc::new(dripline::clock::SystemClock)
    } else {
        tracing::warn!(
            "the clock runs {clock_speed} times faster than the wall clock (a demonstration, not a deployment)"
        );
        Arc::new(dripline::clock::ScaledClock::new(clock_speed))
    };
    let (runner, store) = dripline::commands::open_runner(&worker, &sandbox, clock.clone())?;
    let dispatcher = dripline::commands::open_dispatcher(&worker, store.clone(), clock.clone())?;
    let tracking = runner
        .tracker()
        .cloned()
        .map(|tracker| dripline::server::TrackingState {
            store: store.clone(),
            tracker,
            clock,
        });
    let stop_worker = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker_thread = {
        let stop = stop_worker.clone();
        std::thread::Builder::new()
            .name("dripline-worker".into())
            .spawn(move || dripline::commands::run_worker(runner, dispatcher, stop))?
    };
    let plugins = Plugins::load_dir(&sandbox, components)?;
    let state = Arc::new(ServerState {
        steps: plugins.steps.keys().cloned().collect(),
        triggers: plugins.triggers.keys().cloned().collect(),
        store: Some(store),
        tracking,
    });
    tracing::info!(steps = ?state.steps, triggers = ?state.triggers, "components loaded");
    let variables = match &gateway.variables_file {
        Some(path) => dripline::gateway::VariableSource::with_file(path)?,
        None => dripline::gateway::VariableSource::default(),
    };
    if let Some(dir) = gateway.database.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let store: Arc<dyn dripline_store::Store> = Arc::new(
        dripline_store::SqliteStore::open(&gateway.database)
            .with_context(|| format!("opening {}", gateway.database.display()))?,
    );
    // The gateway loads before anything listens, so a bad manifest stops
    // `dripline up` at once; a missing one only leaves webhooks unserved.
    let webhooks = if gateway.manifest.exists() {
        let app =
            dripline::gateway::SpinApp::load(&gateway.manifest, Some(components), &variables)?;
        Some(Arc::new(dripline::gateway::Gateway::load(
            sandbox.clone(),
            &app,
            store,
            dripline::gateway::DEFAULT_REQUEST_DEADLINE,
        )?))
    } else {
        tracing::warn!(
            "no {} here: the webhook gateway is not served",
            gateway.manifest.display()
        );
        None
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let webhooks = match webhooks {
        Some(webhooks) => {
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind(gateway.listen))
                .with_context(|| format!("binding the gateway to {}", gateway.listen))?;
            tracing::info!(routes = ?webhooks.routes(), "the webhook gateway is up on http://{}", listener.local_addr()?);
            Some(runtime.spawn(webhooks.serve(listener, async {
                let _ = tokio::signal::ctrl_c().await;
            })))
        }
        None => None,
    };
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        tracing::info!("dripline is up on http://{}", listener.local_addr()?);
        dripline::server::serve(listener, state, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        if let Some(webhooks) = webhooks {
            webhooks.await??;
        }
        anyhow::Ok(())
    })?;
    stop_worker.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = worker_thread.join();
    Ok(())
}
