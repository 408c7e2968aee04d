//! The journey state machine: pure functions from an input (an event, a due
//! timer, a step's outcome) and the current state to the actions the runtime
//! carries out. No I/O, no clock (`now` is an argument), no randomness: the same
//! input and state always give the same actions, so inputs can be replayed after
//! a crash.
//!
//! Every input lands in `Walker::advance`, which walks the journey's graph
//! through the steps that decide on the spot (branch, split, a `wait_until`
//! already due) until it must stop: a step component to run, a timer or an event
//! to wait for, or the end.

use crate::action::{Action, MetricName, StepOutcome, WaitRequest};
use crate::condition::{Bindings, CelExpr, eval_bool, eval_key};
use crate::enrollment::{
    AfterTimer, Enrollment, EnrollmentStatus, Pending, Timer, TimerKind, enrollment_id,
};
use crate::event::{ContactView, Event, Timestamp};
use crate::journey::{COMPLETED, Journey, OneActivePer, Reentry, StepKind};
use crate::local_time::{next_local_time, zone_for};
use crate::split;

/// How many times a step runs at most (the first run included) when it keeps
/// asking to be retried.
pub const MAX_ATTEMPTS: u32 = 5;

/// The first retry's delay when the step names none; each later one doubles.
pub const RETRY_BASE_MS: u64 = 60_000;

/// The exit reason when a goal ends the journey.
pub const GOAL_REACHED: &str = "goal reached";

/// The exit reason of contacts a split puts in its holdout group.
pub const HOLDOUT: &str = "holdout";

/// A journey whose steps loop without ever waiting would spin forever; this many
/// steps in one call ends the enrollment instead.
const MAX_STEPS_PER_CALL: usize = 100;

/// A mistake by the caller, not by the journey or the contact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The enrollment is on another journey or version than the one passed in:
    /// load the version the enrollment entered on.
    #[error(
        "enrollment {enrollment} is on journey {enrolled} v{enrolled_version}, not {given} v{given_version}"
    )]
    WrongJourney {
        /// The enrollment.
        enrollment: String,
        /// Its journey.
        enrolled: String,
        /// Its journey version.
        enrolled_version: u32,
        /// The journey passed in.
        given: String,
        /// The version passed in.
        given_version: u32,
    },
}

/// Handles an event for one contact and one journey: checks the goal and event
/// waits of the contact's active enrollments in it, then whether the event
/// enrolls the contact anew.
///
/// `enrollments` are the contact's enrollments, done ones included (the entry
/// rules look at them); those of other journeys are ignored. Enrollments on
/// another version of `journey` are only counted for the entry rules: resume them
/// with [`on_enrollment_event`] and the version they are on, before this call.
pub fn on_event(
    journey: &Journey,
    contact: &ContactView,
    event: &Event,
    enrollments: &[Enrollment],
    now: Timestamp,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut after: Vec<Enrollment> = Vec::new();
    for enrollment in enrollments.iter().filter(|e| e.journey == journey.id) {
        if enrollment.journey_version == journey.version && !enrollment.is_done() {
            let (state, more) = resume_on_event(journey, enrollment, contact, event, now);
            actions.extend(more);
            after.push(state);
        } else {
            after.push(enrollment.clone());
        }
    }
    actions.extend(enroll_on_trigger(journey, contact, event, &after, now));
    actions
}

/// Handles an event for one enrollment: the goal, then an event wait. `journey`
/// must be the version the enrollment is on.
pub fn on_enrollment_event(
    journey: &Journey,
    enrollment: &Enrollment,
    contact: &ContactView,
    event: &Event,
    now: Timestamp,
) -> Result<Vec<Action>, EngineError> {
    check_journey(journey, enrollment)?;
    if enrollment.is_done() {
        return Ok(Vec::new());
    }
    Ok(resume_on_event(journey, enrollment, contact, event, now).1)
}

/// Handles a due timer. A timer the enrollment no longer waits on (it moved on,
/// or the timer fired twice) gives no actions; one handed over before it is due
/// is scheduled again.
pub fn on_timer(
    journey: &Journey,
    enrollment: &Enrollment,
    contact: &ContactView,
    timer: &Timer,
    now: Timestamp,
) -> Result<Vec<Action>, EngineError> {
    check_journey(journey, enrollment)?;
    let Some(pending_timer) = enrollment.pending_timer() else {
        return Ok(Vec::new());
    };
    if enrollment.is_done() || pending_timer.key != timer.key {
        return Ok(Vec::new());
    }
    if now < pending_timer.due_at {
        return Ok(vec![Action::ScheduleTimer(pending_timer.clone())]);
    }
    let mut walker = Walker::new(journey, contact, enrollment.clone(), now);
    match &enrollment.pending {
        Some(Pending::Timer {
            then: AfterTimer::Go { from, next },
            ..
        }) => {
            walker.enrollment.pending = None;
            walker.go(from, next.clone());
        }
        Some(Pending::Timer {
            then: AfterTimer::Retry { step, attempt },
            ..
        }) => {
            walker.enrollment.pending = None;
            walker.rerun(step, *attempt);
        }
        Some(Pending::Event {
            step, on_timeout, ..
        }) => {
            walker.enrollment.pending = None;
            walker.metric(Some(step), MetricName::WaitTimedOut);
            walker.go(step, on_timeout.clone());
        }
        Some(Pending::Step { .. }) | None => return Ok(Vec::new()),
    }
    Ok(walker.finish(false))
}

/// Handles what a step component answered for `step_id`. An outcome for a step
/// the enrollment is not running (a duplicate, or one that arrives after a goal
/// ended the journey) gives no actions.
pub fn on_step_outcome(
    journey: &Journey,
    enrollment: &Enrollment,
    contact: &ContactView,
    step_id: &str,
    outcome: &StepOutcome,
    now: Timestamp,
) -> Result<Vec<Action>, EngineError> {
    check_journey(journey, enrollment)?;
    let attempt = match &enrollment.pending {
        Some(Pending::Step { step, attempt, .. }) if step == step_id && !enrollment.is_done() => {
            *attempt
        }
        _ => return Ok(Vec::new()),
    };
    let mut walker = Walker::new(journey, contact, enrollment.clone(), now);
    walker.enrollment.pending = None;
    let (next, branches) = match journey.step(step_id).map(|step| &step.kind) {
        Some(StepKind::Run { next, branches, .. }) => (next.clone(), branches),
        _ => {
            walker.exit(format!("journey has no component step {step_id:?}"));
            return Ok(walker.finish(false));
        }
    };
    match outcome {
        StepOutcome::Continue => walker.go(step_id, next),
        StepOutcome::Branch { name } => match branches.get(name) {
            Some(target) => walker.go(step_id, Some(target.clone())),
            None => {
                walker.metric(Some(step_id), MetricName::StepFailed);
                walker.exit(format!("step failed: {step_id:?} answered branch {name:?}, which the journey does not name"));
            }
        },
        StepOutcome::Wait { wait } => walker.wait_as_asked(step_id, wait, next),
        StepOutcome::Exit { reason } => walker.exit(reason.clone()),
        StepOutcome::Retry { reason, after_ms } => {
            if attempt >= MAX_ATTEMPTS {
                walker.metric(Some(step_id), MetricName::StepFailed);
                walker.exit(format!("step failed: {reason}"));
            } else {
                let delay = after_ms.unwrap_or_else(|| backoff_ms(attempt));
                let due_at = now.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX));
                let next_attempt = attempt + 1;
                walker.metric(Some(step_id), MetricName::Retried);
                let timer = walker.schedule(
                    step_id,
                    &format!("retry-{next_attempt}"),
                    due_at,
                    TimerKind::Retry {
                        step: step_id.to_owned(),
                        attempt: next_attempt,
                    },
                );
                walker.wait_on(Pending::Timer {
                    timer,
                    then: AfterTimer::Retry {
                        step: step_id.to_owned(),
                        attempt: next_attempt,
                    },
                });
            }
        }
        StepOutcome::Failed { reason } => {
            walker.metric(Some(step_id), MetricName::StepFailed);
            walker.exit(format!("step failed: {reason}"));
        }
    }
    Ok(walker.finish(false))
}

/// Enrolls the contact in `journey` because another enrollment handed them over
/// ([`Action::HandOff`]). The trigger filter does not apply; the entry rules do.
/// The new enrollment keeps the original trigger event, so conditions on
/// `trigger` still make sense.
pub fn enroll_by_hand_off(
    journey: &Journey,
    contact: &ContactView,
    from: &Enrollment,
    enrollments: &[Enrollment],
    now: Timestamp,
) -> Vec<Action> {
    let cause = format!("handoff:{}", from.id);
    let mut actions = Vec::new();
    let Some(mut walker) = admit(
        journey,
        contact,
        &from.trigger,
        &cause,
        enrollments,
        now,
        &mut actions,
    ) else {
        return actions;
    };
    walker.enrollment.handed_off_from = Some(from.id.clone());
    walker.start();
    actions.extend(walker.finish(true));
    actions
}

/// The delay before attempt `failed_attempt + 1`: 1, 2, 4, 8 minutes.
pub fn backoff_ms(failed_attempt: u32) -> u64 {
    RETRY_BASE_MS.saturating_mul(1u64 << failed_attempt.saturating_sub(1).min(20))
}

fn check_journey(journey: &Journey, enrollment: &Enrollment) -> Result<(), EngineError> {
    if enrollment.journey == journey.id && enrollment.journey_version == journey.version {
        Ok(())
    } else {
        Err(EngineError::WrongJourney {
            enrollment: enrollment.id.clone(),
            enrolled: enrollment.journey.clone(),
            enrolled_version: enrollment.journey_version,
            given: journey.id.clone(),
            given_version: journey.version,
        })
    }
}

/// The goal, then an event wait; the enrollment's state afterwards and the
/// actions (none if the event meant nothing to it).
fn resume_on_event(
    journey: &Journey,
    enrollment: &Enrollment,
    contact: &ContactView,
    event: &Event,
    now: Timestamp,
) -> (Enrollment, Vec<Action>) {
    // The event that enrolled the contact is not also its goal or awaited event,
    // however often it is processed.
    if event.id == enrollment.trigger.id {
        return (enrollment.clone(), Vec::new());
    }
    let mut walker = Walker::new(journey, contact, enrollment.clone(), now);
    if let Some(goal) = &journey.goal
        && !enrollment.goal_reached
        && goal.matches(event)
        && walker.holds(goal.condition.as_ref(), event, "goal.condition")
    {
        walker.metric(None, MetricName::GoalReached);
        walker.cancel_pending_timer();
        walker.enrollment.pending = None;
        if let Some(next) = &goal.next {
            walker.enrollment.goal_reached = true;
            walker.advance(Some(next.clone()));
        } else {
            walker.exit(GOAL_REACHED);
            if let Some(target) = &goal.hand_off {
                walker.hand_off(target);
            }
        }
        return walker.finish_with_state(false);
    }
    if let Some(Pending::Event {
        step,
        event: awaited,
        condition,
        timeout,
        on_event,
        ..
    }) = &enrollment.pending
        && *awaited == event.name
        && walker.holds(
            condition.as_ref(),
            event,
            &format!("steps.{step}.wait_for.condition"),
        )
    {
        walker.effects.push(Action::CancelTimer {
            key: timeout.key.clone(),
        });
        walker.enrollment.pending = None;
        walker.enrollment.data.insert(
            step.clone(),
            serde_json::to_value(event).unwrap_or_default(),
        );
        walker.metric(Some(step), MetricName::WaitMatched);
        walker.go(step, on_event.clone());
        return walker.finish_with_state(false);
    }
    (enrollment.clone(), Vec::new())
}

/// How long before its trigger an event may have happened and still meet an
/// unconditioned goal: the spread of webhook deliveries, not a history.
pub const GOAL_SLACK_MS: i64 = 3_600_000;

/// Enrolls the contact if the event is the journey's trigger, its filter holds
/// and the entry rules allow.
fn enroll_on_trigger(
    journey: &Journey,
    contact: &ContactView,
    event: &Event,
    enrollments: &[Enrollment],
    now: Timestamp,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let Some(trigger) = &journey.trigger else {
        return actions;
    };
    if !trigger.starts_on(&journey.id, event) {
        return actions;
    }
    if let Some(filter) = &trigger.filter {
        let empty = serde_json::Map::new();
        let bindings = Bindings {
            trigger: event,
            event,
            contact,
            data: &empty,
            now,
        };
        match eval_bool(filter, bindings) {
            Ok(true) => {}
            Ok(false) => return actions,
            Err(message) => {
                actions.push(Action::ConditionFailed {
                    journey: journey.id.clone(),
                    enrollment_id: None,
                    field: "trigger.filter".into(),
                    message,
                });
                return actions;
            }
        }
    }
    if goal_already_met(journey, contact, event, &mut actions) {
        return actions;
    }
    let Some(mut walker) = admit(
        journey,
        contact,
        event,
        &event.id,
        enrollments,
        now,
        &mut actions,
    ) else {
        return actions;
    };
    walker.start();
    actions.extend(walker.finish(true));
    actions
}

/// Whether one of the contact's recent events already meets the journey's
/// goal for `trigger` (the order for this checkout came first): then the
/// contact is not enrolled, and that is counted.
fn goal_already_met(
    journey: &Journey,
    contact: &ContactView,
    trigger: &Event,
    actions: &mut Vec<Action>,
) -> bool {
    let Some(goal) = &journey.goal else {
        return false;
    };
    let empty = serde_json::Map::new();
    for past in contact
        .recent
        .iter()
        // A goal with a condition names what it waits for (the order of this
        // checkout), whenever it came; one without waits for any such event
        // from the trigger on, so only those around the trigger count
        // (webhooks are not ordered): a member's order from months before
        // they went dormant does not meet the wake-up's goal.
        .filter(|e| {
            e.id != trigger.id
                && goal.matches(e)
                && (goal.condition.is_some()
                    || e.occurred_at >= trigger.occurred_at.saturating_sub(GOAL_SLACK_MS))
        })
    {
        let holds = match &goal.condition {
            None => Ok(true),
            Some(condition) => eval_bool(
                condition,
                Bindings {
                    trigger,
                    event: past,
                    contact,
                    data: &empty,
                    now: trigger.received_at,
                },
            ),
        };
        match holds {
            Ok(true) => {
                actions.push(Action::Metric {
                    journey: journey.id.clone(),
                    version: journey.version,
                    step: None,
                    name: MetricName::GoalAlreadyMet,
                });
                return true;
            }
            Ok(false) => {}
            Err(message) => actions.push(Action::ConditionFailed {
                journey: journey.id.clone(),
                enrollment_id: None,
                field: "goal.condition".into(),
                message,
            }),
        }
    }
    false
}

/// Applies the entry rules; a walker over the new enrollment if they allow it.
fn admit<'a>(
    journey: &'a Journey,
    contact: &'a ContactView,
    trigger: &Event,
    cause: &str,
    enrollments: &[Enrollment],
    now: Timestamp,
    actions: &mut Vec<Action>,
) -> Option<Walker<'a>> {
    let id = enrollment_id(&journey.id, &contact.id, cause);
    let mine: Vec<&Enrollment> = enrollments
        .iter()
        .filter(|e| e.journey == journey.id && e.contact_id == contact.id)
        .collect();
    // Already enrolled by this very cause: a replay.
    if mine.iter().any(|e| e.id == id) {
        return None;
    }
    let allowed = match journey.entry.reentry {
        Reentry::Never => mine.is_empty(),
        Reentry::Always => true,
        Reentry::After(gap) => mine
            .iter()
            .map(|e| e.entered_at)
            .max()
            .is_none_or(|last| now.saturating_sub(last) >= gap.as_offset()),
    };
    if !allowed {
        return None;
    }
    let key = match &journey.entry.one_active_per {
        OneActivePer::Contact => String::new(),
        OneActivePer::Key(expr) => {
            let empty = serde_json::Map::new();
            let bindings = Bindings {
                trigger,
                event: trigger,
                contact,
                data: &empty,
                now,
            };
            match eval_key(expr, bindings) {
                Ok(key) => key,
                Err(message) => {
                    actions.push(Action::ConditionFailed {
                        journey: journey.id.clone(),
                        enrollment_id: None,
                        field: "entry.one_active_per".into(),
                        message,
                    });
                    return None;
                }
            }
        }
    };
    if mine.iter().any(|e| !e.is_done() && e.key == key) {
        return None;
    }
    let enrollment = Enrollment {
        id,
        journey: journey.id.clone(),
        journey_version: journey.version,
        contact_id: contact.id.clone(),
        key,
        trigger: trigger.clone(),
        data: serde_json::Map::new(),
        status: EnrollmentStatus::Active,
        step: None,
        pending: None,
        visits: Default::default(),
        goal_reached: false,
        handed_off_from: None,
        entered_at: now,
        exited_at: None,
        exit_reason: None,
        arm: None,
        converted_at: None,
    };
    Some(Walker::new(journey, contact, enrollment, now))
}

/// What entering a step leads to.
enum Flow {
    /// Go straight on to this step (`None`: the journey is completed).
    Next(Option<String>),
    /// The enrollment waits, runs a component, or is done.
    Stop,
}

/// One engine call's work on one enrollment: its state as it changes, and the
/// actions gathered along the way.
struct Walker<'a> {
    journey: &'a Journey,
    contact: &'a ContactView,
    now: Timestamp,
    enrollment: Enrollment,
    effects: Vec<Action>,
    steps_entered: usize,
}

impl<'a> Walker<'a> {
    fn new(
        journey: &'a Journey,
        contact: &'a ContactView,
        enrollment: Enrollment,
        now: Timestamp,
    ) -> Self {
        Self {
            journey,
            contact,
            now,
            enrollment,
            effects: Vec::new(),
            steps_entered: 0,
        }
    }

    /// The state action first, then the effects.
    fn finish(self, new: bool) -> Vec<Action> {
        self.finish_with_state(new).1
    }

    fn finish_with_state(self, new: bool) -> (Enrollment, Vec<Action>) {
        let mut actions = Vec::with_capacity(self.effects.len() + 1);
        actions.push(if new {
            Action::Enroll(self.enrollment.clone())
        } else {
            Action::UpdateEnrollment(self.enrollment.clone())
        });
        actions.extend(self.effects);
        (self.enrollment, actions)
    }

    fn metric(&mut self, step: Option<&str>, name: MetricName) {
        self.effects.push(Action::Metric {
            journey: self.journey.id.clone(),
            version: self.journey.version,
            step: step.map(str::to_owned),
            name,
        });
    }

    /// Whether `condition` holds for `event` (an absent condition holds). A
    /// condition that fails to evaluate counts as false and is reported.
    fn holds(&mut self, condition: Option<&CelExpr>, event: &Event, field: &str) -> bool {
        let Some(condition) = condition else {
            return true;
        };
        let bindings = Bindings {
            trigger: &self.enrollment.trigger,
            event,
            contact: self.contact,
            data: &self.enrollment.data,
            now: self.now,
        };
        match eval_bool(condition, bindings) {
            Ok(holds) => holds,
            Err(message) => {
                self.effects.push(Action::ConditionFailed {
                    journey: self.journey.id.clone(),
                    enrollment_id: Some(self.enrollment.id.clone()),
                    field: field.to_owned(),
                    message,
                });
                false
            }
        }
    }

    /// A new enrollment: count it and walk from the first step.
    fn start(&mut self) {
        self.metric(None, MetricName::Entered);
        let first = self.journey.steps.first().map(|step| step.id.clone());
        self.advance(first);
    }

    /// Leaves `from` for `next`.
    fn go(&mut self, from: &str, next: Option<String>) {
        self.metric(Some(from), MetricName::Passed);
        self.advance(next);
    }

    /// Walks from `target` until something must be waited for, or the end.
    fn advance(&mut self, mut target: Option<String>) {
        loop {
            let Some(step_id) = target else {
                self.exit(COMPLETED);
                return;
            };
            self.steps_entered += 1;
            if self.steps_entered > MAX_STEPS_PER_CALL {
                self.exit(format!(
                    "stopped: over {MAX_STEPS_PER_CALL} steps without waiting; does the journey loop?"
                ));
                return;
            }
            match self.enter(&step_id) {
                Flow::Next(next) => {
                    self.metric(Some(&step_id), MetricName::Passed);
                    target = next;
                }
                Flow::Stop => return,
            }
        }
    }

    fn enter(&mut self, step_id: &str) -> Flow {
        let journey = self.journey;
        let Some(step) = journey.step(step_id) else {
            self.exit(format!("journey has no step {step_id:?}"));
            return Flow::Stop;
        };
        *self
            .enrollment
            .visits
            .entry(step_id.to_owned())
            .or_insert(0) += 1;
        self.enrollment.step = Some(step_id.to_owned());
        self.enrollment.status = EnrollmentStatus::Active;
        self.enrollment.pending = None;
        self.metric(Some(step_id), MetricName::Entered);
        match &step.kind {
            StepKind::Run { .. } => {
                self.rerun(step_id, 1);
                Flow::Stop
            }
            StepKind::Wait { duration, next } => {
                let due_at = self.now.saturating_add(duration.as_offset());
                self.wait_until(step_id, due_at, next.clone());
                Flow::Stop
            }
            StepKind::WaitUntil { time, next } => {
                let zone = zone_for(
                    self.contact.time_zone.as_deref(),
                    journey.time_zone.as_ref(),
                );
                let due_at = next_local_time(self.now, *time, zone);
                if due_at <= self.now {
                    Flow::Next(next.clone())
                } else {
                    self.wait_until(step_id, due_at, next.clone());
                    Flow::Stop
                }
            }
            StepKind::WaitUntilAt { at, next } => {
                let bindings = Bindings {
                    trigger: &self.enrollment.trigger,
                    event: &self.enrollment.trigger,
                    contact: self.contact,
                    data: &self.enrollment.data,
                    now: self.now,
                };
                match at.eval_time(bindings) {
                    Ok(due_at) if due_at > self.now => {
                        self.wait_until(step_id, due_at, next.clone());
                        Flow::Stop
                    }
                    Ok(_) => Flow::Next(next.clone()),
                    Err(message) => {
                        self.effects.push(Action::ConditionFailed {
                            journey: journey.id.clone(),
                            enrollment_id: Some(self.enrollment.id.clone()),
                            field: format!("steps.{step_id}.wait_until_at"),
                            message: message.clone(),
                        });
                        self.metric(Some(step_id), MetricName::StepFailed);
                        self.exit(format!("step failed: {step_id:?}: {message}"));
                        Flow::Stop
                    }
                }
            }
            StepKind::WaitFor {
                wait,
                on_event,
                on_timeout,
            } => {
                let due_at = self.now.saturating_add(wait.timeout.as_offset());
                self.wait_for_event(
                    step_id,
                    wait.event.clone(),
                    wait.condition.clone(),
                    due_at,
                    on_event.clone(),
                    on_timeout.clone(),
                );
                Flow::Stop
            }
            StepKind::Branch { ways } => {
                for (index, way) in ways.iter().enumerate() {
                    let field = format!("steps.{step_id}.branch[{index}].when");
                    let trigger = self.enrollment.trigger.clone();
                    if self.holds(way.when.as_ref(), &trigger, &field) {
                        return Flow::Next(Some(way.next.clone()));
                    }
                }
                Flow::Next(None)
            }
            StepKind::Split { ways } => {
                let bucket = split::bucket(&self.contact.id, &journey.id, step_id);
                let Some(index) = split::way_for(bucket, ways) else {
                    return Flow::Next(None);
                };
                self.metric(Some(step_id), MetricName::SplitWay { way: index });
                self.enrollment.arm = Some(crate::attribution::arm_name(ways, index));
                match ways.get(index) {
                    Some(way) if !way.holdout => Flow::Next(way.next.clone()),
                    _ => {
                        self.metric(Some(step_id), MetricName::Holdout);
                        self.exit(HOLDOUT);
                        Flow::Stop
                    }
                }
            }
            StepKind::HandOff { journey: target } => {
                self.exit(format!("handed off to {target}"));
                self.hand_off(target);
                Flow::Stop
            }
            StepKind::Exit { reason } => {
                self.exit(reason.clone());
                Flow::Stop
            }
        }
    }

    /// Runs the component step `step_id`, attempt `attempt`.
    fn rerun(&mut self, step_id: &str, attempt: u32) {
        let Some(StepKind::Run { uses, config, .. }) =
            self.journey.step(step_id).map(|step| &step.kind)
        else {
            self.exit(format!("journey has no component step {step_id:?}"));
            return;
        };
        let visit = self.visit(step_id);
        let idempotency_key = format!("{}/{step_id}/{visit}/{attempt}", self.enrollment.id);
        self.enrollment.step = Some(step_id.to_owned());
        self.enrollment.status = EnrollmentStatus::Active;
        self.enrollment.pending = Some(Pending::Step {
            step: step_id.to_owned(),
            attempt,
            idempotency_key: idempotency_key.clone(),
        });
        self.effects.push(Action::RunStep {
            enrollment_id: self.enrollment.id.clone(),
            step_id: step_id.to_owned(),
            uses: uses.clone(),
            config: serde_json::Value::Object(config.clone()),
            attempt,
            idempotency_key,
        });
    }

    /// Carries out a wait a component asked for, then goes on to `next`.
    fn wait_as_asked(&mut self, step_id: &str, wait: &WaitRequest, next: Option<String>) {
        match wait {
            WaitRequest::Duration { ms } => {
                let due_at = self
                    .now
                    .saturating_add(i64::try_from(*ms).unwrap_or(i64::MAX));
                self.wait_until(step_id, due_at, next);
            }
            WaitRequest::Until { at } => {
                if *at <= self.now {
                    self.go(step_id, next);
                } else {
                    self.wait_until(step_id, *at, next);
                }
            }
            WaitRequest::Event {
                name,
                condition,
                timeout_ms,
            } => {
                let condition = match condition.as_deref().map(CelExpr::new).transpose() {
                    Ok(condition) => condition,
                    Err(error) => {
                        self.metric(Some(step_id), MetricName::StepFailed);
                        self.exit(format!("step failed: {step_id:?} asked to wait on {error}"));
                        return;
                    }
                };
                let due_at = self
                    .now
                    .saturating_add(i64::try_from(*timeout_ms).unwrap_or(i64::MAX));
                self.wait_for_event(step_id, name.clone(), condition, due_at, next.clone(), next);
            }
        }
    }

    fn wait_until(&mut self, step_id: &str, due_at: Timestamp, next: Option<String>) {
        let timer = self.schedule(
            step_id,
            "wait",
            due_at,
            TimerKind::Resume {
                step: step_id.to_owned(),
            },
        );
        self.wait_on(Pending::Timer {
            timer,
            then: AfterTimer::Go {
                from: step_id.to_owned(),
                next,
            },
        });
    }

    fn wait_for_event(
        &mut self,
        step_id: &str,
        event: String,
        condition: Option<CelExpr>,
        due_at: Timestamp,
        on_event: Option<String>,
        on_timeout: Option<String>,
    ) {
        let timeout = self.schedule(
            step_id,
            "timeout",
            due_at,
            TimerKind::Timeout {
                step: step_id.to_owned(),
            },
        );
        self.wait_on(Pending::Event {
            step: step_id.to_owned(),
            event,
            condition,
            timeout,
            on_event,
            on_timeout,
        });
    }

    fn wait_on(&mut self, pending: Pending) {
        self.enrollment.status = EnrollmentStatus::Waiting;
        self.enrollment.pending = Some(pending);
    }

    fn visit(&self, step_id: &str) -> u32 {
        self.enrollment.visits.get(step_id).copied().unwrap_or(1)
    }

    /// Schedules a timer with a key unique to this visit of the step.
    fn schedule(
        &mut self,
        step_id: &str,
        purpose: &str,
        due_at: Timestamp,
        kind: TimerKind,
    ) -> Timer {
        let timer = Timer {
            key: format!(
                "{}/{step_id}/{}/{purpose}",
                self.enrollment.id,
                self.visit(step_id)
            ),
            enrollment_id: self.enrollment.id.clone(),
            due_at,
            kind,
        };
        self.effects.push(Action::ScheduleTimer(timer.clone()));
        timer
    }

    fn cancel_pending_timer(&mut self) {
        if let Some(timer) = self.enrollment.pending_timer() {
            let key = timer.key.clone();
            self.effects.push(Action::CancelTimer { key });
        }
    }

    fn exit(&mut self, reason: impl Into<String>) {
        let reason = reason.into();
        self.cancel_pending_timer();
        self.enrollment.pending = None;
        self.enrollment.status = EnrollmentStatus::Done;
        self.enrollment.exited_at = Some(self.now);
        self.enrollment.exit_reason = Some(reason.clone());
        // Told apart, so that a canvas can show who dropped out at a step
        // and who simply reached the end after it.
        let completed = reason == COMPLETED;
        self.effects.push(Action::Exit {
            enrollment_id: self.enrollment.id.clone(),
            reason,
        });
        let step = self.enrollment.step.clone();
        let name = if completed {
            MetricName::Completed
        } else {
            MetricName::Exited
        };
        self.metric(step.as_deref(), name);
    }

    fn hand_off(&mut self, target: &str) {
        let step = self.enrollment.step.clone();
        self.metric(step.as_deref(), MetricName::HandedOff);
        self.effects.push(Action::HandOff {
            from_enrollment: self.enrollment.id.clone(),
            to_journey: target.to_owned(),
            contact_id: self.enrollment.contact_id.clone(),
        });
    }
}
