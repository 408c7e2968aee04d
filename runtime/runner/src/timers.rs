//! The scheduler's side of the runner: due timers are claimed with a lease,
//! each is shown to the engine, and the batch's consequences commit in one
//! transaction with the timers' acks. A store failure acknowledges nothing:
//! the claims lapse after their lease and the timers fire again.

use dripline_engine::{Timer, on_timer};
use dripline_store::Write;

use crate::error::InputError;
use crate::unit::Unit;
use crate::{Runner, RunnerError};

/// How long a claimed timer stays ours before another worker may take it.
const TIMER_LEASE_MS: i64 = 60_000;

impl Runner {
    /// Fires up to `limit` due timers, in one transaction.
    pub fn fire_due_timers(&mut self, limit: usize) -> Result<usize, RunnerError> {
        self.fire_due_timers_observed(limit, &mut |_| {})
    }

    /// [`Runner::fire_due_timers`], telling `fired` the due time of each timer
    /// once the transaction that fired it has committed (the benchmark measures
    /// lateness with it).
    pub fn fire_due_timers_observed(
        &mut self,
        limit: usize,
        fired: &mut dyn FnMut(i64),
    ) -> Result<usize, RunnerError> {
        let now = self.clock.now_ms();
        let claimed = self.store.claim_due_timers(now, limit, TIMER_LEASE_MS)?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let mut unit = Unit::new(self.store.as_ref(), now);
        let timers: Vec<Option<Timer>> = claimed
            .iter()
            .map(|stored| match serde_json::from_slice(&stored.payload) {
                Ok(timer) => Some(timer),
                Err(e) => {
                    tracing::error!(timer = %stored.key, "dropping a timer that does not parse: {e}");
                    None
                }
            })
            .collect();
        let enrollment_ids: Vec<&str> = timers
            .iter()
            .flatten()
            .map(|t| t.enrollment_id.as_str())
            .collect();
        match unit.prefetch(&enrollment_ids) {
            Ok(()) => {}
            Err(InputError::Store(e)) => return Err(e.into()),
            // Each timer reads what it needs again, and fails on its own.
            Err(InputError::Bad(problem)) => {
                tracing::warn!("reading a batch of fired timers' enrollments: {problem}")
            }
        }
        for (stored, timer) in claimed.iter().zip(&timers) {
            unit.writes.push(Write::TimerAck {
                key: stored.key.clone(),
            });
            let Some(timer) = timer else {
                continue;
            };
            match self.on_timer(&mut unit, timer) {
                Ok(()) => {}
                // Nothing of this batch is committed or acknowledged.
                Err(InputError::Store(e)) => return Err(e.into()),
                Err(InputError::Bad(problem)) => {
                    tracing::error!(timer = %stored.key, "timer not processed: {problem}");
                    unit.metric("runtime.timer_failed".into());
                }
            }
        }
        unit.commit()?;
        claimed.iter().for_each(|timer| fired(timer.due_at_ms));
        Ok(claimed.len())
    }

    fn on_timer(&self, unit: &mut Unit<'_>, timer: &Timer) -> Result<(), InputError> {
        let Some(enrollment) = unit.enrollment(&timer.enrollment_id)? else {
            return Ok(());
        };
        let journey = self.journey_of(&enrollment)?;
        let view = unit.contact(&enrollment.contact_id)?.view();
        let actions = on_timer(journey, &enrollment, &view, timer, unit.now)?;
        self.drive(unit, actions)
    }
}
