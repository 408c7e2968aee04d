//! What goes into the engine besides events and timers (a step's outcome), and
//! what comes out: the actions the runtime carries out.

use serde::{Deserialize, Serialize};

use crate::enrollment::{Enrollment, Timer};
use crate::event::Timestamp;

/// Something the runtime must do. The actions of one engine call belong
/// together: the runtime stores the state action ([`Action::Enroll`] or
/// [`Action::UpdateEnrollment`], always first) together with the timers, and
/// only then runs steps, so that a crash in between replays rather than loses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Store a new enrollment (in the state it reached during this call).
    Enroll(Enrollment),
    /// Store the enrollment's new state.
    UpdateEnrollment(Enrollment),
    /// Run a step component, then hand its outcome to [`crate::on_step_outcome`].
    RunStep {
        /// The enrollment.
        enrollment_id: String,
        /// The step's id.
        step_id: String,
        /// The component to run.
        uses: String,
        /// The step's configuration, a JSON object.
        config: serde_json::Value,
        /// 1 on the first run, then 2, 3, ... on retries.
        attempt: u32,
        /// `<enrollment>/<step>/<visit>/<attempt>`: the same run always has the
        /// same key, so effects keyed by it happen once.
        idempotency_key: String,
    },
    /// Keep this timer and hand it to [`crate::on_timer`] when due. Scheduling
    /// a key again replaces the timer.
    ScheduleTimer(Timer),
    /// Drop the timer with this key, if it is still there.
    CancelTimer {
        /// The timer's key.
        key: String,
    },
    /// The enrollment left the journey.
    Exit {
        /// The enrollment.
        enrollment_id: String,
        /// Why.
        reason: String,
    },
    /// Enroll the contact in another journey: load it and call
    /// [`crate::enroll_by_hand_off`].
    HandOff {
        /// The enrollment that hands over (already exited).
        from_enrollment: String,
        /// The journey to enter.
        to_journey: String,
        /// The contact.
        contact_id: String,
    },
    /// Count one occurrence for the journey's statistics.
    Metric {
        /// The journey's id.
        journey: String,
        /// The journey version the count belongs to.
        version: u32,
        /// The step, or `None` for the journey as a whole.
        step: Option<String>,
        /// What happened.
        name: MetricName,
    },
    /// A condition could not be evaluated and counted as false; log it for the
    /// journey's author.
    ConditionFailed {
        /// The journey's id.
        journey: String,
        /// The enrollment, if there was one yet.
        enrollment_id: Option<String>,
        /// Where the condition is in the file: `trigger.filter`, `steps.<id>.branch`.
        field: String,
        /// What went wrong.
        message: String,
    },
}

/// What a [`Action::Metric`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricName {
    /// A contact entered the journey (no step) or a step.
    Entered,
    /// A contact went on from a step.
    Passed,
    /// A contact left the journey, at this step, before its end (the goal,
    /// a failed step, a refusal).
    Exited,
    /// A contact finished the journey: the step it was at has no next.
    Completed,
    /// The goal was reached.
    GoalReached,
    /// An entry was refused because the goal already held: the contact's
    /// order for this checkout came before the checkout.
    GoalAlreadyMet,
    /// A split put the contact in its holdout group.
    Holdout,
    /// A split sent the contact along way number `way` (from 0).
    SplitWay {
        /// The way's index in the split.
        way: usize,
    },
    /// A wait for an event saw its event.
    WaitMatched,
    /// A wait for an event timed out.
    WaitTimedOut,
    /// A step asked to be retried.
    Retried,
    /// A step failed for good.
    StepFailed,
    /// The contact was handed to another journey.
    HandedOff,
}

/// What a step component answered (WIT `outcome`), or that it could not run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StepOutcome {
    /// Go on to the step's `next`.
    Continue,
    /// Go on along the named branch (the step's `branches` table).
    Branch {
        /// The branch name.
        name: String,
    },
    /// Wait, then go on to the step's `next`.
    Wait {
        /// What to wait for.
        wait: WaitRequest,
    },
    /// End the enrollment.
    Exit {
        /// Why.
        reason: String,
    },
    /// Run the step again later; attempts are capped at [`crate::MAX_ATTEMPTS`].
    Retry {
        /// Why.
        reason: String,
        /// How long to wait, in ms; `None` uses the backoff: 1, 2, 4, 8 minutes.
        after_ms: Option<u64>,
    },
    /// The step could not run at all (WIT `step-error`): the enrollment exits
    /// with `step failed: <reason>`.
    Failed {
        /// Why.
        reason: String,
    },
}

/// What a step component asked to wait for (WIT `wait-for`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "for", rename_all = "snake_case")]
pub enum WaitRequest {
    /// A length of time in ms.
    Duration {
        /// How long.
        ms: u64,
    },
    /// A point in time.
    Until {
        /// When.
        at: Timestamp,
    },
    /// An event for the same contact, or a timeout.
    Event {
        /// The event name.
        name: String,
        /// A CEL condition on `event` and `trigger`.
        condition: Option<String>,
        /// How long before giving up, in ms.
        timeout_ms: u64,
    },
}
