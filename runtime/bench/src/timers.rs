//! `./dev bench timers --pending N`: the scheduler at scale. It fills a
//! fresh SQLite store with N waiting enrollments (and their contacts and
//! timers), due evenly over a window, then: restarts (a new store handle,
//! runner and journey catalog) and times how long until it is ready; fires
//! every timer in real time, printing the fire rate and the lateness of each
//! fire (the runner's clock at the commit minus the due time stored with the
//! timer) at p50 and p99; and prints the process's peak RSS.
//!
//! How long the fill takes depends on the machine and its load, so the window
//! is not placed in wall-clock time beforehand. The timers are stored due from
//! a fixed base, and once the fill and the restart are done the runner gets a
//! clock that reads [`LEAD_MS`] before that base and runs at wall-clock speed:
//! the same as having filled the store at a moment chosen afterwards. Every
//! timer is then measured against the due time it really has in the store.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use dripline_engine::{AfterTimer, Enrollment, EnrollmentStatus, Event, Pending, Timer, TimerKind};
use dripline_store::prelude::*;
use dripline_store::{Contact, Identity, RedisStore, Write};

use dripline_clock::{Clock, SystemClock};
use dripline_delivery::DeliveryPolicy;
use dripline_runner::{Journeys, Runner, Templates};
use dripline_sandbox::Plugins;

const JOURNEY: &str = r#"
name = "Timer benchmark"
version = 1

[[steps]]
id = "wait"
wait = "1h"
next = "done"

[[steps]]
id = "done"
exit = "done"
"#;

/// Timers come due at this rate, above the 20,000/s the scheduler must sustain,
/// so lateness shows whether it keeps up.
const ARRIVALS_PER_SECOND: usize = 25_000;

/// How long before the first timer is due the runner starts: enough to show
/// that nothing fires early, short enough not to pad the run.
const LEAD_MS: i64 = 2_000;

/// Where the stored due times start. Any fixed time does: the runner's clock is
/// aligned to it after the fill.
const FIRST_DUE: i64 = 1_795_000_000_000;

/// Wall-clock time moved by a fixed offset, chosen when the runner starts.
pub(crate) struct OffsetClock {
    pub(crate) offset_ms: i64,
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms().saturating_add(self.offset_ms)
    }
}

/// Runs the benchmark and prints `name: value unit` lines.
pub fn run(pending: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let journeys_dir = dir.path().join("journeys");
    std::fs::create_dir_all(&journeys_dir)?;
    std::fs::write(journeys_dir.join("timer-bench.toml"), JOURNEY)?;
    let database = dir.path().join("dripline.db");

    let window_ms = (pending * 1000 / ARRIVALS_PER_SECOND).max(1) as i64;
    let fill_started = Instant::now();
    let first_due = FIRST_DUE;
    {
        let store = crate::sealed_store(&database)?;
        let (_journeys, problems) = Journeys::load(&journeys_dir, &store)?;
        anyhow::ensure!(problems.is_empty(), "bench journey: {problems:?}");
        fill(&store, pending, first_due, window_ms)?;
    }
    let fill_s = fill_started.elapsed().as_secs_f64();

    // Restart: everything the runner needs, from the file alone.
    let restart = Instant::now();
    // The window opens after the fill and the restart, whatever they took.
    let clock = Arc::new(OffsetClock {
        offset_ms: first_due - LEAD_MS - SystemClock.now_ms(),
    });
    let store: Arc<dyn Store> = Arc::new(crate::sealed_store(&database)?);
    let (journeys, _) = Journeys::load(&journeys_dir, store.as_ref())?;
    let plugins = Arc::new(Plugins {
        steps: BTreeMap::new(),
        triggers: BTreeMap::new(),
    });
    let mut runner = Runner::new(
        store.clone(),
        plugins,
        journeys,
        Templates::default(),
        clock.clone(),
        Arc::new(DeliveryPolicy::default()),
    );
    let pending_now = store.timers_pending_count()?;
    // Ready means the scheduler can tell when to wake: its first query answered.
    store.next_due_at()?;
    let restart_ms = restart.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(
        pending_now as usize == pending,
        "{pending_now} timers pending, expected {pending}"
    );
    let rss_pending = peak_rss_mib();

    if clock.now_ms() > first_due {
        eprintln!(
            "warning: the restart took longer than the lead; the first timers are already late"
        );
    }
    let mut lateness = Vec::with_capacity(pending);
    let mut fired_total = 0;
    let mut first_fire: Option<Instant> = None;
    let cpu_before = cpu_seconds();
    while fired_total < pending {
        let fired = runner.fire_due_timers_observed(4096, &mut |due| {
            lateness.push(clock.now_ms() - due);
        })?;
        if fired == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        }
        first_fire.get_or_insert_with(Instant::now);
        fired_total += fired;
    }
    let firing_s = first_fire.map_or(0.0, |t| t.elapsed().as_secs_f64());
    // On a machine shared with other work the wall-clock rate says how much of
    // a core this process got as much as how fast it is; CPU time per fire
    // says the second alone. It includes the idle polls before the first fire
    // and between arrivals, so it is an upper bound.
    let cpu_s = match (cpu_before, cpu_seconds()) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    lateness.sort_unstable();
    let percentile = |p: f64| percentile(&lateness, p);

    println!("pending: {pending} timers");
    println!("fill: {fill_s:.1} s");
    println!("restart_ready: {restart_ms:.0} ms");
    println!("peak_rss_with_pending: {rss_pending:.0} MiB");
    println!("due_rate: {ARRIVALS_PER_SECOND} timers/s");
    println!(
        "fire_rate: {:.0} fires/s",
        fired_total as f64 / firing_s.max(1e-9)
    );
    if let Some(cpu_s) = cpu_s {
        println!(
            "fire_cpu: {:.1} us/fire ({:.0} fires per CPU second)",
            cpu_s * 1e6 / fired_total.max(1) as f64,
            fired_total as f64 / cpu_s.max(1e-9)
        );
    }
    println!("lateness_p50: {} ms", percentile(0.50));
    println!("lateness_p99: {} ms", percentile(0.99));
    println!("peak_rss: {:.0} MiB", peak_rss_mib());
    Ok(())
}

fn fill(store: &dyn Store, pending: usize, first_due: i64, window_ms: i64) -> anyhow::Result<()> {
    let trigger = Event {
        id: "bench".into(),
        source: "api".into(),
        name: "bench.started".into(),
        identities: Default::default(),
        properties: serde_json::json!({}),
        occurred_at: first_due,
        received_at: first_due,
    };
    let batch = 20_000;
    let mut writes = Vec::with_capacity(batch * 3);
    for i in 0..pending {
        let contact_id = format!("c{i:08}");
        let enrollment_id = format!("enr{i:08}");
        let due_at = first_due + (i as i64 * window_ms) / pending as i64;
        let timer = Timer {
            key: format!("{enrollment_id}/wait/1/wait"),
            enrollment_id: enrollment_id.clone(),
            due_at,
            kind: TimerKind::Resume {
                step: "wait".into(),
            },
        };
        let enrollment = Enrollment {
            id: enrollment_id.clone(),
            journey: "timer-bench".into(),
            journey_version: 1,
            contact_id: contact_id.clone(),
            key: format!("contact:{contact_id}"),
            trigger: trigger.clone(),
            data: Default::default(),
            status: EnrollmentStatus::Waiting,
            step: Some("wait".into()),
            pending: Some(Pending::Timer {
                timer: timer.clone(),
                then: AfterTimer::Go {
                    from: "wait".into(),
                    next: Some("done".into()),
                },
            }),
            visits: [("wait".to_string(), 1)].into(),
            goal_reached: false,
            handed_off_from: None,
            entered_at: due_at - 3_600_000,
            exited_at: None,
            exit_reason: None,
            arm: None,
            converted_at: None,
        };
        writes.push(Write::ContactPut(Contact {
            id: contact_id.clone(),
            identities: vec![Identity::Email(format!("{contact_id}@example.com"))],
            profile: serde_json::json!({}),
        }));
        writes.push(Write::EnrollmentPut {
            enrollment: dripline_store::Enrollment {
                id: enrollment_id,
                journey: "timer-bench".into(),
                contact_id,
                active: true,
                key: Some(enrollment.key.clone()),
                version: 0,
                state: serde_json::to_string(&enrollment)?,
            },
            if_version: None,
        });
        writes.push(Write::TimerSet {
            key: timer.key.clone(),
            due_at_ms: due_at,
            payload: serde_json::to_vec(&timer)?,
        });
        if writes.len() >= batch * 3 {
            store.apply(&writes)?;
            writes.clear();
        }
    }
    store.apply(&writes)?;
    Ok(())
}

/// CPU time (user and system) the process has used, in seconds; None where
/// /proc is absent. /proc/self/stat counts it in USER_HZ ticks, which Linux
/// fixes at 100 a second for user space.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name, in parentheses, may hold spaces: count fields after it.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// The value at fraction `p` (0.5, 0.99) of sorted `values`; 0 for none.
pub(crate) fn percentile(values: &[i64], p: f64) -> i64 {
    values
        .get(((values.len() as f64 - 1.0) * p) as usize)
        .copied()
        .unwrap_or(0)
}

/// The process's peak resident set (VmHWM), in MiB; 0 where /proc is absent.
pub(crate) fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Timers in each capacity run of the shared-store benchmark: a backlog, all
/// due at once, drained by one worker and then by `workers`.
const BACKLOG: usize = 200_000;

/// `./dev bench timers --store redis --workers N`: the scheduler on a shared
/// store. Two measurements, each on a fresh Redis database:
///
/// - capacity: a backlog of [`BACKLOG`] timers, all due, drained by one
///   worker and then by `workers` (each a runner with its own connections,
///   as separate `dripline worker` processes have): the fire rate of each
///   and the ratio;
/// - lateness at `pending` timers pending, due at `due_rate` a second:
///   `workers` fire the first `seconds` of them in real time while the rest
///   stay pending, and the lateness of each fire is printed at p50 and p99.
pub fn run_shared(
    redis: &str,
    pending: usize,
    workers: usize,
    due_rate: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let journeys_dir = dir.path().join("journeys");
    std::fs::create_dir_all(&journeys_dir)?;
    std::fs::write(journeys_dir.join("timer-bench.toml"), JOURNEY)?;
    let url = |db: u8| format!("{}/{db}", redis.trim_end_matches('/'));

    let mut rates = Vec::new();
    for (db, n) in [(1u8, 1usize), (2, workers)] {
        let store = RedisStore::open(&url(db))?;
        store.flush_database()?;
        let (_journeys, problems) = Journeys::load(&journeys_dir, &store)?;
        anyhow::ensure!(problems.is_empty(), "bench journey: {problems:?}");
        fill(&store, BACKLOG, FIRST_DUE, 1)?;
        // Every timer due, a minute ago.
        let clock = Arc::new(OffsetClock {
            offset_ms: FIRST_DUE + 60_000 - SystemClock.now_ms(),
        });
        let started = Instant::now();
        let (redis_before, cpu_before) = (redis_cpu_seconds(&store)?, cpu_seconds());
        let (fired, _) = fire_with(&url(db), &journeys_dir, &clock, n, BACKLOG)?;
        let rate = fired as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let redis_us = (redis_cpu_seconds(&store)? - redis_before) * 1e6 / fired.max(1) as f64;
        let worker_us = match (cpu_before, cpu_seconds()) {
            (Some(before), Some(after)) => (after - before) * 1e6 / fired.max(1) as f64,
            _ => 0.0,
        };
        println!(
            "capacity_workers_{n}: {rate:.0} fires/s ({fired} timers due at once; CPU per fire: redis {redis_us:.1} us, workers {worker_us:.1} us)"
        );
        rates.push(rate);
    }
    println!(
        "capacity_ratio: {:.2}x ({} workers against 1)",
        rates[1] / rates[0].max(1e-9),
        workers
    );

    let store = RedisStore::open(&url(3))?;
    store.flush_database()?;
    let (_journeys, problems) = Journeys::load(&journeys_dir, &store)?;
    anyhow::ensure!(problems.is_empty(), "bench journey: {problems:?}");
    let window_ms = (pending * 1000 / due_rate.max(1)).max(1) as i64;
    let fill_started = Instant::now();
    fill(&store, pending, FIRST_DUE, window_ms)?;
    println!(
        "pending: {} timers (filled in {:.1} s), due at {due_rate}/s",
        store.timers_pending_count()?,
        fill_started.elapsed().as_secs_f64()
    );
    let clock = Arc::new(OffsetClock {
        offset_ms: FIRST_DUE - LEAD_MS - SystemClock.now_ms(),
    });
    let to_fire = (due_rate * seconds as usize).min(pending);
    let started = Instant::now();
    let (fired, mut lateness) = fire_with(&url(3), &journeys_dir, &clock, workers, to_fire)?;
    let elapsed = started.elapsed().as_secs_f64() - LEAD_MS as f64 / 1000.0;
    lateness.sort_unstable();
    let percentile = |p: f64| percentile(&lateness, p);
    println!(
        "fired_in_real_time: {fired} timers in {elapsed:.1} s by {workers} workers, {} still pending",
        store.timers_pending_count()?
    );
    println!("lateness_p50: {} ms", percentile(0.50));
    println!("lateness_p99: {} ms", percentile(0.99));
    println!(
        "peak_rss: {:.0} MiB (this process; Redis apart)",
        peak_rss_mib()
    );
    Ok(())
}

/// The CPU time the Redis server has used, in seconds (`INFO cpu`).
fn redis_cpu_seconds(store: &RedisStore) -> anyhow::Result<f64> {
    let info = store.info("cpu")?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(field("used_cpu_user:") + field("used_cpu_sys:"))
}

/// Fires `total` timers with `workers` runners on the Redis at `url`, each
/// on a thread with a store of its own; the timers fired and the lateness of
/// each.
fn fire_with(
    url: &str,
    journeys_dir: &Path,
    clock: &Arc<OffsetClock>,
    workers: usize,
    total: usize,
) -> anyhow::Result<(usize, Vec<i64>)> {
    let fired = AtomicUsize::new(0);
    let results: Vec<anyhow::Result<Vec<i64>>> = std::thread::scope(|scope| {
        let running: Vec<_> = (0..workers.max(1))
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<Vec<i64>> {
                    let store: Arc<dyn Store> = Arc::new(RedisStore::open(url)?);
                    let (journeys, _) = Journeys::load(journeys_dir, store.as_ref())?;
                    let plugins = Arc::new(Plugins {
                        steps: BTreeMap::new(),
                        triggers: BTreeMap::new(),
                    });
                    let mut runner = Runner::new(
                        store,
                        plugins,
                        journeys,
                        Templates::default(),
                        clock.clone(),
                        Arc::new(DeliveryPolicy::default()),
                    );
                    let mut lateness = Vec::new();
                    while fired.load(Ordering::Relaxed) < total {
                        let n = runner.fire_due_timers_observed(1024, &mut |due| {
                            lateness.push(clock.now_ms() - due);
                        })?;
                        if n == 0 {
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                        fired.fetch_add(n, Ordering::Relaxed);
                    }
                    Ok(lateness)
                })
            })
            .collect();
        running
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker panicked")))
            })
            .collect()
    });
    let mut lateness = Vec::new();
    for result in results {
        lateness.extend(result?);
    }
    Ok((fired.into_inner(), lateness))
}
