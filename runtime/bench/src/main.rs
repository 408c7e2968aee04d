//! `dripline-bench`: the benchmarks and the crash drill (`./dev bench NAME`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Benchmarks of a Dripline build; run them from a release build.
#[derive(Parser)]
#[command(name = "dripline-bench", version)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
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
        /// The `dripline` binary to kill; by default the one beside this one.
        #[arg(long)]
        dripline: Option<PathBuf>,
        /// How many times to kill the child.
        #[arg(long, default_value_t = 100)]
        kills: usize,
        /// Contacts in the event stream.
        #[arg(long, default_value_t = 400)]
        contacts: usize,
        /// Seed of the kill moments.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// The drilled deployment's store: `sqlite` (one process) or `redis`
        /// (a redis-server of the drill's own, with `--workers` at once).
        #[arg(long, default_value = "sqlite")]
        store: StoreKind,
        /// Workers at once on a Redis store.
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
    /// Timers: peak memory with many pending, fire rate, lateness, restart time.
    Timers {
        /// How many timers to have pending.
        #[arg(long, default_value_t = 1_000_000)]
        pending: usize,
        /// The store: `sqlite` (one runner) or `redis` (a redis-server of the
        /// benchmark's own, shared by `--workers` runners).
        #[arg(long, default_value = "sqlite")]
        store: StoreKind,
        /// Runners sharing the Redis store; its capacity is measured with one
        /// and with this many.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// On Redis: timers coming due per second in the lateness run.
        #[arg(long, default_value_t = 10_000)]
        due_rate: usize,
        /// On Redis: seconds of due timers the lateness run fires.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// On Redis: a server of your own (databases 1 to 3 are flushed)
        /// instead of one the benchmark starts.
        #[arg(long)]
        redis_url: Option<String>,
        /// Accepted for symmetry with the other benchmarks; timers need none.
        #[arg(
            long,
            env = "DRIPLINE_COMPONENTS",
            default_value = "target/dripline/components"
        )]
        components: PathBuf,
    },
    /// Mutated inputs through every trigger, the signature checks, the
    /// journey parser, CEL compilation and evaluation and template
    /// rendering; fails if any input panics.
    Fuzz {
        /// Inputs per target (there are 10 targets).
        #[arg(long, default_value_t = 1_000_000)]
        inputs: u64,
        /// Seed of the mutations; a run repeats exactly.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Accepted for symmetry with the other benchmarks; fuzzing needs none.
        #[arg(
            long,
            env = "DRIPLINE_COMPONENTS",
            default_value = "target/dripline/components"
        )]
        components: PathBuf,
    },
    /// Importing a customer list, a segment's full re-evaluation and
    /// time-driven segment entries, at a million contacts.
    Audience {
        /// Rows in the imported list, and contacts re-evaluated.
        #[arg(long, default_value_t = 1_000_000)]
        contacts: usize,
        /// Contacts whose segment entry comes due within the same minute.
        #[arg(long, default_value_t = 100_000)]
        due: usize,
        /// Accepted for symmetry with the other benchmarks; it runs no step.
        #[arg(
            long,
            env = "DRIPLINE_COMPONENTS",
            default_value = "target/dripline/components"
        )]
        components: PathBuf,
    },
    /// A week of the abandoned-checkout journey for a population of shoppers
    /// on a virtual clock, every count checked against the journey.
    Week {
        /// Shoppers, each leaving one checkout.
        #[arg(long, default_value_t = 1_000_000)]
        contacts: usize,
        /// Directory of the shipped components.
        #[arg(
            long,
            env = "DRIPLINE_COMPONENTS",
            default_value = "target/dripline/components"
        )]
        components: PathBuf,
        /// Where `journeys/` and `templates/` are.
        #[arg(long, default_value = ".")]
        root: PathBuf,
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

/// Which store a benchmark runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A redis-server of the benchmark's own, on a free loopback port.
    Redis,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match Cli::parse().bench {
        Bench::Week {
            contacts,
            components,
            root,
        } => dripline_bench::week::run(&components, &root, contacts),
        Bench::Steps {
            components,
            iterations,
        } => dripline_bench::steps::steps(&components, iterations),
        Bench::Crash {
            components,
            dripline,
            kills,
            contacts,
            seed,
            store,
            workers,
        } => {
            let binary = match dripline {
                Some(binary) => binary,
                None => std::env::current_exe()?.with_file_name("dripline"),
            };
            anyhow::ensure!(
                binary.exists(),
                "{} is missing: build it with `cargo build --release -p dripline` (./dev bench does)",
                binary.display()
            );
            let work_dir = tempfile::tempdir()?;
            let redis = match store {
                StoreKind::Redis => {
                    Some(dripline_store::redis::RedisServer::start(work_dir.path())?)
                }
                StoreKind::Sqlite => None,
            };
            let drill = dripline_bench::crash::Drill {
                binary,
                components,
                work_dir: work_dir.path().to_path_buf(),
                contacts,
                kills,
                seed,
                redis: redis.as_ref().map(|r| r.url(0)),
                workers: if redis.is_some() { workers } else { 1 },
            };
            println!("store: {store:?}, workers: {}", drill.workers);
            let started = std::time::Instant::now();
            let report = dripline_bench::crash::run(&drill)?;
            println!("kills: {} (of {} child runs)", report.kills, report.runs);
            println!("contacts: {contacts}");
            println!("lost: {}", report.lost);
            println!("duplicated: {}", report.duplicated);
            println!("missed: {}", report.missed);
            println!(
                "kills during a delivery: {} (deliveries repeated under their idempotency key: {})",
                report.kills_during_delivery, report.redelivered
            );
            println!("elapsed: {:.1} s", started.elapsed().as_secs_f64());
            if report.lost + report.duplicated + report.missed > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Bench::Audience {
            contacts,
            due,
            components: _,
        } => dripline_bench::audience::run(contacts, due),
        Bench::Fuzz {
            inputs,
            seed,
            components: _,
        } => {
            let reports = dripline_bench::fuzz::run(std::path::Path::new("."), inputs, seed)?;
            let (mut total, mut panics) = (0, 0);
            for r in &reports {
                println!(
                    "{}: {} inputs, {} panics, slowest {} µs, {:.0} inputs/s",
                    r.name,
                    r.inputs,
                    r.panics,
                    r.slowest.as_micros(),
                    r.inputs as f64 / r.elapsed.as_secs_f64().max(1e-9)
                );
                for crash in &r.crashes {
                    println!("  kept: {}", crash.display());
                }
                total += r.inputs;
                panics += r.panics;
            }
            println!("total: {total} inputs, {panics} panics");
            if panics > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Bench::Timers {
            pending,
            store,
            workers,
            due_rate,
            seconds,
            redis_url,
            components: _,
        } => match (store, redis_url) {
            (StoreKind::Sqlite, _) => dripline_bench::timers::run(pending),
            (StoreKind::Redis, Some(url)) => {
                dripline_bench::timers::run_shared(&url, pending, workers, due_rate, seconds)
            }
            (StoreKind::Redis, None) => {
                let dir = tempfile::tempdir()?;
                let redis = dripline_store::redis::RedisServer::start(dir.path())?;
                let url = format!("redis://127.0.0.1:{}", redis.port());
                dripline_bench::timers::run_shared(&url, pending, workers, due_rate, seconds)
            }
        },
        Bench::Ingest {
            components,
            spin,
            seconds,
            rounds,
            connections,
        } => dripline_bench::ingest::ingest(&dripline_bench::ingest::IngestOptions {
            manifest: &spin,
            components: &components,
            duration: Duration::from_secs(seconds),
            rounds,
            connections,
        }),
    }
}
