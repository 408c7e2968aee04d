//! `dripline process`: processes the inbox and the timers due at the clock's
//! time until nothing is left, delivers the messages due, then returns. The
//! crash drill runs it as a child process and kills it at random points,
//! deliveries included.

use std::path::PathBuf;
use std::sync::Arc;

use dripline::owner::DataLock;
use dripline::{Deployment, Parts};
use dripline_clock::{Clock, ManualClock, SystemClock};
use dripline_sandbox::{Sandbox, SandboxConfig};

use crate::cli::DeploymentArgs;

/// Runs `dripline process`.
pub fn run(
    args: DeploymentArgs,
    now_ms: Option<i64>,
    cache: Option<PathBuf>,
    lease_ms: i64,
) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = match now_ms {
        Some(now) => Arc::new(ManualClock::new(now)),
        None => Arc::new(SystemClock),
    };
    let config = SandboxConfig {
        cache_dir: Some(cache.unwrap_or_else(|| args.data.join("cache"))),
        ..SandboxConfig::default()
    };
    let mut deployment = Deployment::at(&args.root, args.components, &args.data, args.store);
    // On Redis any number of processes may work at once, each claiming what
    // it takes; on SQLite one at a time.
    deployment.lease_ms = lease_ms;
    let _owner = match deployment.shared {
        true => None,
        false => Some(DataLock::acquire(&args.data)?),
    };
    let sandbox = Arc::new(Sandbox::new(config)?);
    let parts = Parts::open(&deployment, &sandbox)?;
    let mut runner = parts.runner(clock.clone())?;
    let progress = runner.run_until_idle()?;
    let delivered = parts
        .dispatcher(clock, runner.journeys())?
        .run_until_idle()?;
    println!(
        "processed: {} events, {} timers; delivered {}, to retry {}, failed {}",
        progress.events, progress.timers, delivered.sent, delivered.retried, delivered.failed
    );
    Ok(())
}
