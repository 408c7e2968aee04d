//! The Dripline journey engine: journey files, and the pure state machine that
//! runs contacts through them.
//!
//! # The pieces
//!
//! - [`journey`]: what a journey file says (`journeys/*.toml`): a trigger, entry
//!   rules, a goal, and steps. [`loader`] reads a file into a [`Journey`],
//!   reporting every mistake with its line, column and field path, and writes the
//!   format's JSON Schema ([`json_schema`]).
//! - [`event`]: the canonical [`Event`] every source is normalized into, and the
//!   [`ContactView`] snapshot the engine decides on.
//! - [`enrollment`]: one contact's pass through one journey: where it is, what it
//!   waits for. The store keeps it as JSON.
//! - [`machine`]: the state machine. Each input is one function call, and each
//!   call returns [`Action`]s for the runtime to carry out:
//!   - [`on_event`]: an event for a contact: goals, event waits, new enrollments;
//!   - [`on_timer`]: a due timer: a wait ended, a wait for an event timed out, a
//!     retry is due;
//!   - [`on_step_outcome`]: a step component's answer;
//!   - [`enroll_by_hand_off`]: another journey handed the contact over.
//!
//! # What "pure" buys
//!
//! The engine does no I/O, reads no clock (`now` is an argument) and has no
//! randomness (splits hash the contact id). The same input on the same state
//! always yields the same actions, with the same enrollment ids, timer keys and
//! idempotency keys, so the runtime can replay an input after a crash, and tests
//! drive whole journeys with a hand-set `now`.
//!
//! # A contact's way through a journey
//!
//! An event whose name is the journey's trigger, whose filter holds and which the
//! entry rules allow creates an [`Enrollment`] ([`Action::Enroll`]) at the first
//! step. The engine then walks the steps that decide on the spot (branches,
//! splits) until one needs the outside world: a component step becomes
//! [`Action::RunStep`], a wait becomes [`Action::ScheduleTimer`]. When the
//! runtime reports back (an outcome, a due timer, an event), the walk goes on.
//! A step with no `next` ends the journey with reason `completed`. The goal is
//! checked on every event at any step, waiting or not.
//!
//! ```
//! use dripline_engine::{parse_journey, on_event, Action, ContactView, Event};
//!
//! let journey = parse_journey("journeys/hello.toml", r#"
//!     name = "Hello"
//!     version = 1
//!     [trigger]
//!     event = "form.submitted"
//!     [[steps]]
//!     id = "welcome"
//!     uses = "send"
//!     config = { channel = "email", template = "welcome" }
//! "#).map_err(|errors| errors[0].to_string())?;
//!
//! let event = Event {
//!     id: "evt-1".into(), source: "form".into(), name: "form.submitted".into(),
//!     identities: Default::default(), properties: serde_json::json!({}),
//!     occurred_at: 0, received_at: 0,
//! };
//! let actions = on_event(&journey, &ContactView::new("c-1"), &event, &[], 1_000);
//! assert!(matches!(&actions[0], Action::Enroll(e) if e.step.as_deref() == Some("welcome")));
//! assert!(actions.iter().any(|a| matches!(a, Action::RunStep { uses, .. } if uses == "send")));
//! # Ok::<(), String>(())
//! ```

pub mod action;
pub mod attribution;
pub mod condition;
pub mod dates;
pub mod duration;
pub mod enrollment;
pub mod event;
pub mod facts;
pub mod journey;
pub mod loader;
pub mod local_time;
pub mod machine;
pub mod segment;
pub mod split;

pub use action::{Action, MetricName, StepOutcome, WaitRequest};
pub use attribution::{Conversion, attribute};
pub use condition::CelExpr;
/// What each source may do (`dripline-event`'s table, shared with the
/// track trigger).
pub use dripline_event::trust;
pub use duration::Duration;
pub use enrollment::{
    AfterTimer, Enrollment, EnrollmentStatus, Pending, Timer, TimerKind, enrollment_id,
};
pub use event::{ConsentState, ContactView, Event, Identities, Timestamp};
pub use facts::{Fact, Facts};
pub use journey::{
    EventNames, Journey, JourneyDelivery, SEGMENT_ENTERED, SEGMENT_EXITED, SegmentEdge, Step,
    StepKind, Trigger,
};
pub use loader::{JourneyError, json_schema, parse_journey};
pub use machine::{
    EngineError, GOAL_REACHED, HOLDOUT, MAX_ATTEMPTS, RETRY_BASE_MS, backoff_ms,
    enroll_by_hand_off, on_enrollment_event, on_event, on_step_outcome, on_timer,
};
pub use segment::Segment;
