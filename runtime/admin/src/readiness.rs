//! `/health/ready`: whether this process is doing its job, with the figures
//! an operator or an orchestrator needs to tell why not. `/health/live` only
//! says the process answers; readiness also says whether the worker is alive
//! (its last heartbeat), how far behind the inbox and the timers are, how many
//! dead letters wait, and how many messages are due and not yet delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use dripline_clock::{Clock, SystemClock};
use dripline_store::{INBOX_PREFIX, RUNTIME_KV_STORE, Store, StoreError};
use serde::Serialize;

/// How long the worker may go without a heartbeat before it counts as dead.
/// A pass over a large backlog beats once per batch, well within this.
pub const WORKER_SILENCE_MS: i64 = 60_000;

/// Counts stop at this, so that a probe (an orchestrator asks every few
/// seconds) reads at most this many records of a backlog, not all of it.
const COUNT_CAP: usize = 1_000;

/// What the readiness probe reads.
pub struct Readiness {
    /// The deployment's store.
    pub store: Arc<dyn Store>,
    /// The time the figures are taken at.
    pub clock: Arc<dyn Clock>,
    /// When the worker last beat, in wall-clock ms since the epoch (0: never).
    pub worker_beat_ms: Arc<AtomicI64>,
    /// How many times the worker was restarted after it died.
    pub worker_restarts: Arc<AtomicU64>,
    /// Set once the process is stopping: it is then not ready, so that a
    /// load balancer sends webhooks elsewhere while it drains.
    pub stopping: Arc<AtomicBool>,
}

/// The figures, as `/health/ready` answers them.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `ready` or `not ready`.
    pub status: &'static str,
    /// What makes it not ready, if anything.
    pub problems: Vec<String>,
    /// Whether the worker beat within [`WORKER_SILENCE_MS`].
    pub worker_alive: bool,
    /// Milliseconds since the worker's last heartbeat.
    pub worker_silent_ms: Option<i64>,
    /// Restarts of the worker since the process started.
    pub worker_restarts: u64,
    /// Events waiting in the inbox (capped).
    pub inbox_depth: usize,
    /// How long the oldest of them has waited, in ms.
    pub inbox_oldest_age_ms: Option<i64>,
    /// How late the most overdue timer is, in ms (0 when none is overdue).
    pub timer_lag_ms: i64,
    /// Dead letters waiting for an operator (capped).
    pub dead_letters: usize,
    /// Outbox messages due and not yet delivered (capped).
    pub dispatch_backlog: usize,
}

impl Readiness {
    /// Takes the figures now. A store that fails is itself the problem.
    pub fn report(&self) -> Report {
        let now = self.clock.now_ms();
        // The heartbeat is wall-clock time (see `Runner::beat`); the backlog
        // figures are in the deployment's time, as its timers are.
        let wall = SystemClock.now_ms();
        let beat = self.worker_beat_ms.load(Ordering::Relaxed);
        let worker_silent_ms = (beat > 0).then(|| wall.saturating_sub(beat));
        let worker_alive = worker_silent_ms.is_some_and(|silent| silent <= WORKER_SILENCE_MS);
        let mut problems = Vec::new();
        if self.stopping.load(Ordering::Relaxed) {
            problems.push("stopping: finishing the work in hand".to_string());
        }
        if !worker_alive {
            problems.push(match worker_silent_ms {
                Some(silent) => format!("the worker has been silent for {silent} ms"),
                None => "the worker has not finished a pass yet".to_string(),
            });
        }
        let figures = self.figures(now).unwrap_or_else(|e| {
            problems.push(format!("the store failed: {e}"));
            Figures::default()
        });
        Report {
            status: if problems.is_empty() {
                "ready"
            } else {
                "not ready"
            },
            problems,
            worker_alive,
            worker_silent_ms,
            worker_restarts: self.worker_restarts.load(Ordering::Relaxed),
            inbox_depth: figures.inbox_depth,
            inbox_oldest_age_ms: figures.inbox_oldest_age_ms,
            timer_lag_ms: figures.timer_lag_ms,
            dead_letters: figures.dead_letters,
            dispatch_backlog: figures.dispatch_backlog,
        }
    }

    fn figures(&self, now: i64) -> Result<Figures, StoreError> {
        let store = self.store.as_ref();
        let inbox = store.inbox_peek(COUNT_CAP)?;
        // `inbox/{received_at_ms:013}/{event_id}`: the time is in the key.
        let oldest = inbox.first().and_then(|(key, _)| {
            key.strip_prefix(INBOX_PREFIX)?
                .split('/')
                .next()?
                .parse::<i64>()
                .ok()
        });
        let timer_lag_ms = store
            .next_due_at()?
            .map_or(0, |due| now.saturating_sub(due).max(0));
        let dead_letters = store
            .kv_scan_prefix(RUNTIME_KV_STORE, "deadletter/", None, COUNT_CAP)?
            .len();
        Ok(Figures {
            inbox_depth: inbox.len(),
            inbox_oldest_age_ms: oldest.map(|at| now.saturating_sub(at).max(0)),
            timer_lag_ms,
            dead_letters,
            dispatch_backlog: store.outbox_due(now, COUNT_CAP)?.len(),
        })
    }
}

#[derive(Default)]
struct Figures {
    inbox_depth: usize,
    inbox_oldest_age_ms: Option<i64>,
    timer_lag_ms: i64,
    dead_letters: usize,
    dispatch_backlog: usize,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use dripline_clock::ManualClock;
    use dripline_store::prelude::*;
    use dripline_store::{MemoryStore, Write};

    use super::*;

    /// A probe at deployment time `now`, the worker last heard from `silent`
    /// wall-clock ms ago.
    fn readiness(store: Arc<MemoryStore>, silent: i64, now: i64) -> Readiness {
        let beat = SystemClock.now_ms() - silent;
        Readiness {
            store,
            clock: Arc::new(ManualClock::new(now)),
            worker_beat_ms: Arc::new(AtomicI64::new(beat)),
            worker_restarts: Arc::new(AtomicU64::new(0)),
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    #[test]
    fn a_silent_worker_is_not_ready_and_the_backlog_is_measured() {
        let store = Arc::new(MemoryStore::new());
        store
            .apply(&[
                Write::inbox_put(1_000, "e1", b"{}".to_vec()),
                Write::inbox_put(2_000, "e2", b"{}".to_vec()),
                Write::TimerSet {
                    key: "t".into(),
                    due_at_ms: 4_000,
                    payload: Vec::new(),
                },
            ])
            .unwrap();
        let alive = readiness(store.clone(), 1_000, 10_000).report();
        assert_eq!(alive.status, "ready", "{:?}", alive.problems);
        assert_eq!(
            (
                alive.inbox_depth,
                alive.inbox_oldest_age_ms,
                alive.timer_lag_ms
            ),
            (2, Some(9_000), 6_000)
        );
        let silent = readiness(store, WORKER_SILENCE_MS + 1_000, 10_000).report();
        assert_eq!(silent.status, "not ready");
        assert!(!silent.worker_alive);
        assert!(
            silent.problems[0].contains("silent"),
            "{:?}",
            silent.problems
        );
    }
}
