//! The scheduler's side of the runner: due timers are claimed with a lease,
//! each is shown to the engine, and the batch's consequences commit in one
//! transaction with the timers' acks. A store failure acknowledges nothing:
//! the claims lapse after their lease and the timers fire again. A timer that
//! cannot be processed is set again for after a backoff, and after its last
//! attempt set aside as a dead letter ([`crate::retries`]).

use dripline_engine::{Timer, on_timer};
use dripline_store::control::JourneyState;
use dripline_store::{Timer as StoredTimer, Write};

use crate::audience::{AUDIENCE_TIMERS, AudienceTimer};
use crate::error::InputError;
use crate::inbox::{MAX_CONFLICTS, caught};
use crate::retries::Verdict;
use crate::unit::Unit;
use crate::{Runner, RunnerError};

/// How long a claimed timer stays ours before another worker may take it,
/// unless the runner is given another ([`Runner::with_timer_lease`]).
pub const TIMER_LEASE_MS: i64 = 60_000;

/// The counter of timers fired (each counted in the transaction that fired it).
pub const TIMERS_FIRED: &str = "runtime.timers_fired";

/// How long a due wait of a paused journey is put off before it is looked
/// at again.
const PAUSED_RECHECK_MS: i64 = 60_000;

/// A claimed timer, read: a journey's, or one of the audience's
/// ([`crate::audience`]).
enum Due {
    Journey(Timer),
    Audience(AudienceTimer),
}

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
        let claimed = self
            .store
            .claim_due_timers(now, limit, self.timer_lease_ms)?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let mut conflicts = 0;
        loop {
            match self.fire_claimed(&claimed, now) {
                // Another worker changed an enrollment or a contact of the
                // batch meanwhile: the claims are still ours, so the batch is
                // done again at once on what is stored now.
                Err(RunnerError::Store(e)) if e.is_conflict() && conflicts < MAX_CONFLICTS => {
                    conflicts += 1;
                }
                Err(e) => return Err(e),
                Ok(()) => break,
            }
        }
        claimed.iter().for_each(|timer| fired(timer.due_at_ms));
        Ok(claimed.len())
    }

    /// One attempt at a batch of claimed timers, committed in one transaction.
    fn fire_claimed(&mut self, claimed: &[StoredTimer], now: i64) -> Result<(), RunnerError> {
        let timers: Vec<Result<Due, String>> = claimed
            .iter()
            .map(|stored| {
                let due = if stored.key.starts_with(AUDIENCE_TIMERS) {
                    serde_json::from_slice(&stored.payload).map(Due::Audience)
                } else {
                    serde_json::from_slice(&stored.payload).map(Due::Journey)
                };
                due.map_err(|e| format!("the timer does not parse: {e}"))
            })
            .collect();
        // A timer that fails leaves what it did half-way in the batch's unit,
        // so the batch is done again without it: the engine is deterministic
        // and steps act only through the unit, so the others come out the
        // same. Failures are rare, so the repeat costs little.
        let mut failed: Vec<(usize, String)> = timers
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().err().map(|e| (i, e.clone())))
            .collect();
        let mut unit = loop {
            let mut unit = Unit::new(self.store.as_ref(), now);
            let good = |i: &usize| !failed.iter().any(|(f, _)| f == i);
            let enrollment_ids: Vec<&str> = timers
                .iter()
                .enumerate()
                .filter(|(i, _)| good(i))
                .filter_map(|(_, t)| match t {
                    Ok(Due::Journey(t)) => Some(t.enrollment_id.as_str()),
                    _ => None,
                })
                .collect();
            match unit.prefetch(&enrollment_ids) {
                Ok(()) => {}
                Err(InputError::Store(e)) => return Err(e.into()),
                // Each timer reads what it needs again, and fails on its own.
                Err(InputError::Bad(problem)) => {
                    tracing::warn!("reading a batch of fired timers' enrollments: {problem}")
                }
            }
            let mut newly_failed = None;
            for (i, (stored, timer)) in claimed.iter().zip(&timers).enumerate() {
                let Ok(timer) = timer else { continue };
                if !good(&i) {
                    continue;
                }
                unit.writes.push(Write::TimerAck {
                    key: stored.key.clone(),
                });
                let name = crate::dead_letters::timer_name(&stored.key);
                unit.writes
                    .extend(self.retries.succeeded(self.store.as_ref(), &name)?);
                let fired = || match timer {
                    Due::Journey(timer) => self.on_timer(&mut unit, timer),
                    Due::Audience(timer) => self.on_audience_timer(&mut unit, timer),
                };
                match caught(fired) {
                    Ok(()) => {}
                    // Nothing of this batch is committed or acknowledged.
                    Err(InputError::Store(e)) => return Err(e.into()),
                    Err(InputError::Bad(problem)) => {
                        newly_failed = Some((i, problem));
                        break;
                    }
                }
            }
            match newly_failed {
                Some(failure) => failed.push(failure),
                None => break unit,
            }
        };
        // Counted with the batch's commit, so that a timer fired twice (two
        // workers, a lease that lapsed mid-batch) shows as two.
        let fired = claimed.len() - failed.len();
        unit.metric_by(
            TIMERS_FIRED.into(),
            i64::try_from(fired).unwrap_or(i64::MAX),
        );
        let mut verdicts = Vec::new();
        for (i, problem) in &failed {
            let stored = &claimed[*i];
            let name = crate::dead_letters::timer_name(&stored.key);
            let verdict = self
                .retries
                .failed(self.store.as_ref(), &name, problem, now)?;
            match &verdict {
                Verdict::Later { retry, writes } => {
                    let at = retry.next_at;
                    tracing::warn!(timer = %stored.key, retry_at = at, "timer not processed, to be tried again: {problem}");
                    unit.writes.extend(writes.iter().cloned());
                    // Set again for later, which also drops this claim.
                    unit.writes.push(Write::TimerSet {
                        key: stored.key.clone(),
                        due_at_ms: at,
                        payload: stored.payload.clone(),
                    });
                }
                Verdict::GiveUp { attempts, writes } => {
                    unit.writes.extend(writes.iter().cloned());
                    unit.writes.extend(crate::dead_letters::set_aside_timer(
                        stored, problem, *attempts, now,
                    ));
                }
            }
            unit.metric("runtime.timer_failed".into());
            verdicts.push((name, verdict, problem));
        }
        unit.commit()?;
        for (i, stored) in claimed.iter().enumerate() {
            if !failed.iter().any(|(f, _)| *f == i) {
                self.retries
                    .forget(&crate::dead_letters::timer_name(&stored.key));
            }
        }
        for (name, verdict, problem) in &verdicts {
            self.retries.committed(name, verdict);
            if let Verdict::GiveUp { attempts, .. } = verdict {
                self.raise_dead_letter(name, problem, *attempts);
            }
        }
        Ok(())
    }

    fn on_timer(&self, unit: &mut Unit<'_>, timer: &Timer) -> Result<(), InputError> {
        let Some(enrollment) = unit.enrollment(&timer.enrollment_id)? else {
            return Ok(());
        };
        let journey = self.journey_of(&enrollment)?;
        if self.journeys.state(&journey.id) == JourneyState::Paused {
            // Nobody moves on in a paused journey: the wait is put off, and
            // looked at again until the journey resumes.
            let payload = serde_json::to_vec(timer)
                .map_err(|e| InputError::bad(format!("timer {}: {e}", timer.key)))?;
            unit.writes.push(Write::TimerSet {
                key: timer.key.clone(),
                due_at_ms: unit.now.saturating_add(PAUSED_RECHECK_MS),
                payload,
            });
            unit.metric(format!("journey.{}.-.paused_wait", journey.id));
            return Ok(());
        }
        let view = unit.contact(&enrollment.contact_id)?.view();
        let actions = on_timer(journey, &enrollment, &view, timer, unit.now)?;
        self.drive(unit, actions)?;
        // A step that changed the contact may have moved it in or out of a
        // segment, or set a date a journey starts on.
        if unit.changed_contact(&enrollment.contact_id) {
            self.refresh_audience(unit, &enrollment.contact_id)?;
        }
        Ok(())
    }
}
