//! Carrying out the engine's actions, one method per action, feeding step
//! outcomes back to the engine until every enrollment touched is waiting,
//! done, or scheduled. Each method names what of the unit it touches.

use std::collections::VecDeque;

use dripline_delivery::analytics;
use dripline_engine::{Action, Enrollment, Timer, enroll_by_hand_off, on_step_outcome};
use dripline_store::Write;
use dripline_store::control::JourneyState;
use serde_json::Value;

use crate::Runner;
use crate::error::InputError;
use crate::step_run::StepCall;
use crate::unit::{Unit, store_key};

impl Runner {
    /// Carries out `actions` and everything they lead to.
    pub(crate) fn drive(
        &self,
        unit: &mut Unit<'_>,
        actions: Vec<Action>,
    ) -> Result<(), InputError> {
        let mut queue: VecDeque<Action> = actions.into();
        // The engine emits each enrollment's actions as a group that starts
        // with its state; the group of a refused entry is skipped whole.
        let mut skipping = false;
        while let Some(action) = queue.pop_front() {
            if let Some(trace) = &self.trace {
                let mut trace = trace.lock().unwrap_or_else(|p| p.into_inner());
                trace.push((unit.now, action.clone()));
            }
            if matches!(action, Action::Enroll(_) | Action::UpdateEnrollment(_)) {
                skipping = false;
            }
            if skipping {
                continue;
            }
            match action {
                Action::Enroll(enrollment) => {
                    if self.closed_to_entry(unit, &enrollment)
                        || self.refuse_entry(unit, &enrollment)?
                    {
                        skipping = true;
                    } else {
                        unit.put_enrollment(enrollment)
                    }
                }
                Action::UpdateEnrollment(enrollment) => unit.put_enrollment(enrollment),
                Action::RunStep {
                    enrollment_id,
                    step_id,
                    uses,
                    config,
                    attempt,
                    idempotency_key,
                } => {
                    let call = StepCall {
                        step_id: &step_id,
                        uses: &uses,
                        config,
                        attempt,
                        idempotency_key: &idempotency_key,
                    };
                    queue.extend(self.run_step_action(unit, &enrollment_id, call)?);
                }
                Action::ScheduleTimer(timer) => schedule_timer(unit, timer)?,
                Action::CancelTimer { key } => unit.writes.push(Write::TimerCancel { key }),
                Action::Exit {
                    enrollment_id,
                    reason,
                } => {
                    tracing::debug!(enrollment = %enrollment_id, %reason, "enrollment ended");
                }
                Action::HandOff {
                    from_enrollment,
                    to_journey,
                    contact_id,
                } => {
                    queue.extend(self.hand_off(unit, &from_enrollment, &to_journey, &contact_id)?)
                }
                Action::Metric {
                    journey,
                    version,
                    step,
                    name,
                } => {
                    let name = serde_json::to_value(name)
                        .map(|v| metric_label(&v))
                        .unwrap_or_default();
                    let key = analytics::Key {
                        journey: &journey,
                        version,
                        step: step.as_deref(),
                        channel: None,
                    };
                    let by_day = analytics::counter(&key, unit.now, &name);
                    unit.metric(by_day);
                    unit.metric(format!(
                        "journey.{journey}.{}.{name}",
                        step.as_deref().unwrap_or("-")
                    ));
                }
                Action::ConditionFailed {
                    journey,
                    enrollment_id,
                    field,
                    message,
                } => {
                    tracing::warn!(%journey, enrollment = ?enrollment_id, %field, "condition failed: {message}");
                    unit.metric(format!("journey.{journey}.condition_failed"));
                }
            }
        }
        Ok(())
    }

    /// Whether the journey takes nobody new (paused or draining through the
    /// admin API); a refusal is counted, by state.
    fn closed_to_entry(&self, unit: &mut Unit<'_>, enrollment: &Enrollment) -> bool {
        let state = self.journeys.state(&enrollment.journey);
        let closed = match state {
            JourneyState::Running => return false,
            JourneyState::Paused => "entry_paused",
            JourneyState::Draining => "entry_draining",
        };
        unit.metric(format!("journey.{}.-.{closed}", enrollment.journey));
        let key = analytics::Key {
            journey: &enrollment.journey,
            version: enrollment.journey_version,
            step: None,
            channel: None,
        };
        unit.metric(analytics::counter(&key, unit.now, closed));
        true
    }

    /// Whether a new enrollment must be refused because another contact's
    /// active enrollment of the journey holds its key (`one_active_per`: two
    /// shoppers on one cart token). The engine sees only the contact's own
    /// enrollments; the store would refuse the whole input at commit, and the
    /// input would block the inbox. Refused here, the rest of the event (and
    /// everything behind it) goes on, and the refusal is counted.
    fn refuse_entry(
        &self,
        unit: &mut Unit<'_>,
        enrollment: &Enrollment,
    ) -> Result<bool, InputError> {
        if enrollment.key.is_empty() {
            return Ok(false);
        }
        let held = unit
            .store
            .active_enrollment_by_key(&enrollment.journey, &store_key(enrollment))?;
        let Some(holder) = held.filter(|h| h.contact_id != enrollment.contact_id) else {
            return Ok(false);
        };
        tracing::info!(
            journey = %enrollment.journey,
            contact = %enrollment.contact_id,
            key = %enrollment.key,
            holder = %holder.contact_id,
            "entry refused: another contact's enrollment holds this key"
        );
        unit.metric(format!("journey.{}.-.entry_refused", enrollment.journey));
        Ok(true)
    }

    /// Runs a step and asks the engine what its outcome means.
    fn run_step_action(
        &self,
        unit: &mut Unit<'_>,
        enrollment_id: &str,
        call: StepCall<'_>,
    ) -> Result<Vec<Action>, InputError> {
        let Some(enrollment) = unit.enrollment(enrollment_id)? else {
            return Err(InputError::bad(format!(
                "step {} for unknown enrollment {enrollment_id}",
                call.step_id
            )));
        };
        let journey = self.journey_of(&enrollment)?.clone();
        let step_id = call.step_id.to_string();
        let outcome = self.run_step(unit, &enrollment, call)?;
        let view = unit.contact(&enrollment.contact_id)?.view();
        Ok(on_step_outcome(
            &journey,
            &enrollment,
            &view,
            &step_id,
            &outcome,
            unit.now,
        )?)
    }

    /// Enrolls the contact in the current version of another journey.
    fn hand_off(
        &self,
        unit: &mut Unit<'_>,
        from_enrollment: &str,
        to_journey: &str,
        contact_id: &str,
    ) -> Result<Vec<Action>, InputError> {
        let Some(target) = self.journeys.for_contact(to_journey, contact_id) else {
            tracing::warn!(journey = %to_journey, "hand-off to a journey that is not loaded");
            unit.metric(format!("journey.{to_journey}.handoff_missing"));
            return Ok(Vec::new());
        };
        let Some(from) = unit.enrollment(from_enrollment)? else {
            return Ok(Vec::new());
        };
        let view = unit.contact(contact_id)?.view();
        let existing: Vec<Enrollment> = unit
            .enrollments_of(contact_id)?
            .into_iter()
            .filter(|e| e.journey == target.id)
            .collect();
        Ok(enroll_by_hand_off(
            target, &view, &from, &existing, unit.now,
        ))
    }
}

fn schedule_timer(unit: &mut Unit<'_>, timer: Timer) -> Result<(), InputError> {
    let payload = serde_json::to_vec(&timer)
        .map_err(|e| InputError::bad(format!("timer {}: {e}", timer.key)))?;
    unit.writes.push(Write::TimerSet {
        key: timer.key,
        due_at_ms: timer.due_at,
        payload,
    });
    Ok(())
}

/// `{"split_way":{"way":1}}` -> `split_way_1`; `"entered"` -> `entered`.
fn metric_label(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::Object(inner) => {
                    format!(
                        "{k}_{}",
                        inner
                            .values()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join("_")
                    )
                }
                other => format!("{k}_{other}"),
            })
            .collect(),
        other => other.to_string(),
    }
}
