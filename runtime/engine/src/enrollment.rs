//! An enrollment: one contact's pass through one journey, and everything the
//! engine needs to pick it up again (where it is, what it waits for). It is
//! plain serde data, so the store keeps it as a JSON blob.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::condition::CelExpr;
use crate::event::{Event, Timestamp};

/// One contact's pass through one journey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    /// Derived from the journey, the contact and what enrolled them (see
    /// [`enrollment_id`]), so that processing the same event twice enrolls once.
    pub id: String,
    /// The journey's id.
    pub journey: String,
    /// The journey version the contact entered on and stays on.
    pub journey_version: u32,
    /// The contact.
    pub contact_id: String,
    /// The one-active-per key: empty for "one per contact", else the key's value
    /// (a checkout token, say).
    pub key: String,
    /// The event that enrolled the contact (for a hand-off, the one that enrolled
    /// them in the journey that handed them over).
    pub trigger: Event,
    /// Values stored along the way. A `wait_for` step that matched stores the
    /// matching event under the step's id.
    #[serde(default)]
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Running, waiting or done.
    pub status: EnrollmentStatus,
    /// The step the contact is at (the last one, once done).
    #[serde(default)]
    pub step: Option<String>,
    /// What the enrollment waits for; `None` once done.
    #[serde(default)]
    pub pending: Option<Pending>,
    /// How many times each step was entered. Part of idempotency and timer keys,
    /// so that the second pass through a step in a loop is a new effect, not a
    /// replay of the first.
    #[serde(default)]
    pub visits: BTreeMap<String, u32>,
    /// Whether the goal was reached (it is checked only once).
    #[serde(default)]
    pub goal_reached: bool,
    /// The enrollment that handed the contact over, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_off_from: Option<String>,
    /// When the contact entered.
    pub entered_at: Timestamp,
    /// When the contact left.
    #[serde(default)]
    pub exited_at: Option<Timestamp>,
    /// Why the contact left: `completed`, `goal reached`, `holdout`, a step's
    /// `exit` reason, `step failed: ...`.
    #[serde(default)]
    pub exit_reason: Option<String>,
    /// The way a split put the contact on (the step it leads to, or
    /// `holdout`): what its conversion is counted under. The last split wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm: Option<String>,
    /// When a goal event counted as this enrollment's conversion (see
    /// [`crate::attribute`]); once set, no later order counts again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted_at: Option<Timestamp>,
}

/// Where an enrollment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentStatus {
    /// A step component runs for it; its outcome is awaited.
    Active,
    /// It waits for a timer or an event.
    Waiting,
    /// It has left the journey.
    Done,
}

/// What an enrollment waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "for", rename_all = "snake_case")]
pub enum Pending {
    /// The outcome of a step component run.
    Step {
        /// The step.
        step: String,
        /// 1 on the first run, then 2, 3, ... on retries.
        attempt: u32,
        /// The run's idempotency key.
        idempotency_key: String,
    },
    /// A timer; then `then`.
    Timer {
        /// The timer.
        timer: Timer,
        /// What happens when it fires.
        then: AfterTimer,
    },
    /// An event, or the timeout timer, whichever comes first.
    Event {
        /// The waiting step.
        step: String,
        /// The event name.
        event: String,
        /// A CEL condition on the event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        condition: Option<CelExpr>,
        /// The timeout.
        timeout: Timer,
        /// Where a matching event leads; `None` ends the journey.
        on_event: Option<String>,
        /// Where the timeout leads; `None` ends the journey.
        on_timeout: Option<String>,
    },
}

/// What happens when a pending timer fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum AfterTimer {
    /// Go on from `from` to `next` (`None` ends the journey).
    Go {
        /// The step that waited.
        from: String,
        /// The step after it.
        next: Option<String>,
    },
    /// Run the step component again.
    Retry {
        /// The step.
        step: String,
        /// The attempt to run.
        attempt: u32,
    },
}

/// A durable timer the runtime keeps and hands back to [`crate::on_timer`] when due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// Unique and deterministic: `<enrollment>/<step>/<visit>/<purpose>`. A timer
    /// scheduled twice with one key is one timer.
    pub key: String,
    /// The enrollment it belongs to.
    pub enrollment_id: String,
    /// When it is due, ms since the epoch.
    pub due_at: Timestamp,
    /// What it is for.
    pub kind: TimerKind,
}

/// What a timer is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimerKind {
    /// The end of a wait (`wait`, `wait_until`, or a wait a component asked for).
    Resume {
        /// The waiting step.
        step: String,
    },
    /// The timeout of a wait for an event.
    Timeout {
        /// The waiting step.
        step: String,
    },
    /// The next attempt of a step that asked to be retried.
    Retry {
        /// The step.
        step: String,
        /// The attempt to run.
        attempt: u32,
    },
}

/// The id of the enrollment of `contact_id` in `journey_id` caused by `cause`
/// (the trigger event's id, or `handoff:<enrollment id>`): `enr_` and 24 hex
/// digits of a SHA-256.
pub fn enrollment_id(journey_id: &str, contact_id: &str, cause: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [journey_id, contact_id, cause] {
        hasher.update(part.as_bytes());
        hasher.update([0x1f]);
    }
    let digest = hasher.finalize();
    let hex: String = digest[..12]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("enr_{hex}")
}

impl Enrollment {
    /// Whether the enrollment has left its journey.
    pub fn is_done(&self) -> bool {
        self.status == EnrollmentStatus::Done
    }

    /// The timer the enrollment waits on, if any.
    pub fn pending_timer(&self) -> Option<&Timer> {
        match &self.pending {
            Some(Pending::Timer { timer, .. }) => Some(timer),
            Some(Pending::Event { timeout, .. }) => Some(timeout),
            Some(Pending::Step { .. }) | None => None,
        }
    }
}
