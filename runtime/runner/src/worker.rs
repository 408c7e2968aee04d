//! The worker loop of `dripline up`: runs the journeys and delivers the
//! outbox on one thread, re-reading changed journey files as it goes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dripline_delivery::{Dispatcher, OutboxRecord};
use dripline_store::Outbox;

use crate::Runner;

/// How often `[retention]` is applied.
const RETENTION_EVERY: Duration = Duration::from_secs(3_600);

/// The worker loop of `dripline up`: processes whatever is due, re-reads
/// changed journey files every second, prints each new outbox message, and
/// rests when idle. Stops when `stop` is set. Delivery runs apart, in
/// [`run_dispatcher`] loops, so that a slow provider never holds up a
/// journey.
pub fn run_worker(runner: Runner, stop: Arc<AtomicBool>) {
    let mut runner = runner.with_stop(stop.clone());
    let mut last_reload = Instant::now();
    let mut printed = None;
    // A new or edited segment is evaluated for every contact in the
    // background, a page between passes, so that webhooks keep flowing.
    let mut pass: Option<crate::audience::Reevaluation> = None;
    let mut looked_for_stale = false;
    let mut last_retention: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        if last_retention.is_none_or(|at| at.elapsed() > RETENTION_EVERY) {
            last_retention = Some(Instant::now());
            runner.apply_retention();
        }
        runner.beat();
        let mut busy = match runner.run_until_idle() {
            Ok(progress) => progress.events + progress.timers > 0,
            Err(e) => {
                tracing::error!("worker: {e}");
                false
            }
        };
        if pass.is_none() && !looked_for_stale {
            looked_for_stale = true;
            match runner.segments_to_reevaluate() {
                Ok(stale) if !stale.is_empty() => {
                    tracing::info!(reasons = ?stale, "evaluating every contact's segments and dates in the background");
                    match crate::audience::Reevaluation::start(&runner) {
                        Ok(started) => pass = Some(started),
                        Err(e) => tracing::error!("segments: {e}"),
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!("segments: {e}"),
            }
        }
        if let Some(current) = &mut pass {
            busy = true;
            let before = current.contacts / 10_000;
            match runner.reevaluate_page(current, 500) {
                Ok(true) => {
                    if current.contacts / 10_000 > before {
                        tracing::info!(
                            contacts = current.contacts,
                            changed = current.changed,
                            "segments: re-evaluating"
                        );
                    }
                }
                Ok(false) => {
                    tracing::info!(
                        contacts = current.contacts,
                        changed = current.changed,
                        "segments: every contact evaluated"
                    );
                    if let Err(e) = runner.segments_evaluated(current) {
                        tracing::error!("segments: {e}");
                    }
                    pass = None;
                }
                Err(e) => tracing::error!("segments: {e}"),
            }
        }
        if busy {
            printed = print_outbox(runner.store().as_ref(), printed);
        }
        if last_reload.elapsed() > Duration::from_secs(1) {
            last_reload = Instant::now();
            match runner.reload_journeys() {
                Ok(problems) => problems
                    .iter()
                    .for_each(|p| tracing::error!("journey not loaded: {p}")),
                Err(e) => tracing::error!("reloading journeys: {e}"),
            }
            // An edited segment file is seen on the next look.
            looked_for_stale = false;
        }
        if !busy {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One dispatcher lane's loop: delivers what is due on its lane and rests
/// when nothing is. Stops when `stop` is set.
pub fn run_dispatcher(dispatcher: Dispatcher, stop: Arc<AtomicBool>) {
    let mut dispatcher = dispatcher.with_stop(stop.clone());
    while !stop.load(Ordering::Relaxed) {
        let busy = match dispatcher.run_until_idle() {
            Ok(report) => report.handled() > 0,
            Err(e) => {
                tracing::error!("dispatcher: {e}");
                false
            }
        };
        if !busy {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs `worker` until `stop` is set, starting it again when it dies (a
/// panic, or a return before the stop): the restart is logged and counted in
/// `restarts`, which the readiness probe reports. Waits a second between
/// restarts so that a worker that dies at once does not spin.
pub fn supervise(stop: &AtomicBool, restarts: &AtomicU64, mut worker: impl FnMut()) {
    loop {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut worker));
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let why = match &outcome {
            Ok(()) => "it returned".to_string(),
            Err(panic) => panic_message(panic.as_ref()),
        };
        let count = restarts.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::error!(
            restarts = count,
            "the worker died ({why}); starting it again"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// What a caught panic said, as far as it said anything.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|m| (*m).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string())
}

fn print_outbox(store: &dyn Outbox, after: Option<i64>) -> Option<i64> {
    let Ok(messages) = store.outbox_list(after, 1000) else {
        return after;
    };
    let mut last = after;
    for message in messages {
        let record = OutboxRecord::read(&message).ok();
        // The policy's word where there is one (a post has none).
        let status = record
            .as_ref()
            .and_then(|r| r.delivery.as_ref())
            .map_or(message.status.as_str(), |d| d.status());
        let (journey, text) = match &record {
            Some(r) => (r.journey.as_str(), r.subject.as_deref().unwrap_or(&r.body)),
            None => ("-", ""),
        };
        println!(
            "outbox #{} [{journey}] {} -> {} ({status}): {text}",
            message.id, message.channel, message.contact_id,
        );
        last = Some(message.id);
    }
    last
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use super::*;

    #[test]
    fn a_worker_that_panics_is_started_again_and_the_restart_counted() {
        let stop = AtomicBool::new(false);
        let restarts = AtomicU64::new(0);
        let mut runs = 0;
        supervise(&stop, &restarts, || {
            runs += 1;
            if runs == 1 {
                panic!("a bug in a step's effects");
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert_eq!((runs, restarts.load(Ordering::Relaxed)), (2, 1));
    }
}
