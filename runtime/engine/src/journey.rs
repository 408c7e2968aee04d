//! The journey file model: what `journeys/*.toml` may say, as Rust types that
//! serde reads and schemars describes (`dripline schema`).
//!
//! A journey file looks like this:
//!
//! ```toml
//! name = "Abandoned checkout"
//! version = 1                      # bump it when you change the steps
//! priority = 10                    # optional, default 0
//! time_zone = "Asia/Shanghai"      # optional: for contacts without a zone
//!
//! [trigger]                        # optional: without it, only hand-offs enter
//! event = "checkout.created"
//! filter = "has(trigger.identities.email)"   # optional CEL
//!
//! [entry]                          # optional
//! reentry = "always"               # "never" (default) | "always" | "after:30d"
//! one_active_per = "trigger.properties.token"   # "contact" (default) | CEL key
//!
//! [goal]                           # optional: checked on every event, at any step
//! event = "order.paid"
//! condition = "event.properties.checkout_token == trigger.properties.token"
//! hand_off = "new-customer-care"   # or next = "<step id>", not both
//!
//! [delivery]                       # optional: tighter than delivery.toml
//! max_per_day = 2
//!
//! [[steps]]                        # the first step is where contacts start
//! id = "nudge"
//! uses = "send"                    # run a step component...
//! config = { channel = "sms", template = "checkout-reminder" }
//! next = "later"                   # a missing next ends the journey: "completed"
//! ```
//!
//! The other step kinds are `wait = "30m"`, `wait_until = "08:00"`,
//! `wait_until_at = "<CEL timestamp>"`,
//! `wait_for = { event, condition, timeout }` with `on_event` / `on_timeout`,
//! `branch = [{ when, next }, ..., { next }]`,
//! `split = [{ percent, next }, ..., { percent, holdout = true }]`,
//! `hand_off = "journey-id"` and `exit = "reason"`; see [`StepFields`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::CelExpr;
use crate::duration::Duration;
use crate::local_time::{LocalTime, TimeZoneName};

/// The exit reason when a step has no `next`.
pub const COMPLETED: &str = "completed";

/// One journey, as written in its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Journey {
    /// The journey's id; defaults to the file name without `.toml`.
    #[serde(default)]
    pub id: String,
    /// A name for people.
    pub name: String,
    /// A positive integer the author bumps on every change: contacts in flight
    /// stay on the version they entered.
    pub version: u32,
    /// When a contact could enter several journeys on one event, the highest
    /// priority wins (the host decides across journeys).
    #[serde(default)]
    pub priority: i32,
    /// Start this version as a canary: it takes this percentage (1 to 99) of
    /// new enrollments, chosen by contact, and the previous version the rest,
    /// until it is promoted or rolled back through the admin API. Contacts
    /// stay on the version they entered either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<u32>,
    /// The zone for local-time waits when the contact's zone is unknown; UTC if
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<TimeZoneName>,
    /// What enrolls a contact. Without a trigger, contacts only enter by hand-off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// Who may enter, and how often.
    #[serde(default)]
    pub entry: Entry,
    /// What ends the journey early, at any step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
    /// This journey's own limits on top of the deployment's delivery policy.
    #[serde(default, skip_serializing_if = "JourneyDelivery::is_default")]
    pub delivery: JourneyDelivery,
    /// The steps; contacts start at the first.
    pub steps: Vec<Step>,
}

impl Journey {
    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|step| step.id == id)
    }
}

/// A journey's own delivery limits. The deployment's policy (`delivery.toml`)
/// applies to every journey; these only tighten it for one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JourneyDelivery {
    /// At most this many marketing messages per contact per day (the contact's
    /// day) from this journey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_day: Option<u32>,
}

impl JourneyDelivery {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// What enrolls a contact: an event, entering or leaving a segment, or a date
/// of the contact's; exactly one of `event`, `segment` and `date`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The event name, such as `checkout.created`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event: String,
    /// A CEL condition on `trigger` (= `event`) and `contact`; absent matches all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<CelExpr>,
    /// The segment (`segments/<id>.toml`) whose entry (or exit, with `on`)
    /// enrolls the contact, the moment it happens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// With `segment`: `entry` (the default) or `exit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<SegmentEdge>,
    /// A date of the contact's (see [`crate::dates`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<crate::dates::DateTrigger>,
    /// With `event`: the sources the event must come from (`["shopify"]`);
    /// empty takes it from any source allowed to emit the name. A journey
    /// that acts on a store's order says so, and an `order.paid` from a
    /// track call (whose key may sit in a browser) does not start it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
}

/// Whether `source` is among `sources`, an empty list taking every source.
fn from_one_of(sources: &[String], source: &str) -> bool {
    sources.is_empty() || sources.iter().any(|s| s == source)
}

/// Which move across a segment's edge a trigger starts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SegmentEdge {
    /// The contact came into the segment.
    #[default]
    Entry,
    /// The contact left it.
    Exit,
}

/// The event a contact entering a segment is shown to journeys as; its
/// properties name the `segment`.
pub const SEGMENT_ENTERED: &str = "segment.entered";

/// The event a contact leaving a segment is shown to journeys as.
pub const SEGMENT_EXITED: &str = "segment.exited";

impl Trigger {
    /// Whether `event` is what this trigger of `journey` starts on (its
    /// filter aside).
    pub fn starts_on(&self, journey: &str, event: &crate::event::Event) -> bool {
        let property = |name: &str| {
            event
                .properties
                .get(name)
                .and_then(serde_json::Value::as_str)
        };
        if let Some(segment) = &self.segment {
            let name = match self.on.unwrap_or_default() {
                SegmentEdge::Entry => SEGMENT_ENTERED,
                SegmentEdge::Exit => SEGMENT_EXITED,
            };
            return event.name == name && property("segment") == Some(segment.as_str());
        }
        if self.date.is_some() {
            return event.name == crate::dates::DATE_REACHED
                && property("journey") == Some(journey);
        }
        self.event == event.name && from_one_of(&self.sources, &event.source)
    }

    /// What is wrong with the trigger's shape, if anything.
    pub(crate) fn problem(&self) -> Option<String> {
        let kinds = [
            !self.event.is_empty(),
            self.segment.is_some(),
            self.date.is_some(),
        ];
        match kinds.iter().filter(|k| **k).count() {
            1 if self.on.is_some() && self.segment.is_none() => {
                Some("`on` goes only with `segment`".into())
            }
            1 if !self.sources.is_empty() && self.event.is_empty() => {
                Some("`sources` goes only with `event`: segments and dates are Dripline's".into())
            }
            1 => None,
            0 => Some("give the trigger one of `event`, `segment` or `date`".into()),
            _ => Some("a trigger has one of `event`, `segment` or `date`, not several".into()),
        }
    }
}

/// Entry rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Whether a contact who was enrolled before may enter again.
    #[serde(default)]
    pub reentry: Reentry,
    /// At most one active enrollment per contact, or per key.
    #[serde(default)]
    pub one_active_per: OneActivePer,
}

/// Whether a contact may enter a journey they entered before. Written
/// `"never"`, `"always"` or `"after:<duration>"` (counted from the last entry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(
    with = "String",
    description = "\"never\" (default), \"always\", or \"after:<duration>\" since the last entry, such as \"after:30d\"."
)]
pub enum Reentry {
    /// Once per contact, ever.
    #[default]
    Never,
    /// Any time the trigger fires (subject to `one_active_per`).
    Always,
    /// Again once this long has passed since the last entry.
    After(Duration),
}

/// Why an entry rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid reentry {0:?}: expected \"never\", \"always\" or \"after:<duration>\" such as \"after:30d\""
)]
pub struct ReentryError(String);

impl TryFrom<String> for Reentry {
    type Error = ReentryError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        match text.as_str() {
            "never" => Ok(Self::Never),
            "always" => Ok(Self::Always),
            other => other
                .strip_prefix("after:")
                .and_then(|duration| duration.parse().ok())
                .map(Self::After)
                .ok_or(ReentryError(text)),
        }
    }
}

impl From<Reentry> for String {
    fn from(reentry: Reentry) -> Self {
        match reentry {
            Reentry::Never => "never".into(),
            Reentry::Always => "always".into(),
            Reentry::After(duration) => format!("after:{duration}"),
        }
    }
}

/// The scope of "one active enrollment": `"contact"`, or a CEL expression whose
/// value is the key (`trigger.properties.token`: one per checkout).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(
    with = "String",
    description = "\"contact\" (default): one active enrollment per contact; or a CEL expression over `trigger` and `contact` giving the key, such as `trigger.properties.token`."
)]
pub enum OneActivePer {
    /// One active enrollment per contact.
    #[default]
    Contact,
    /// One active enrollment per contact and value of this expression.
    Key(CelExpr),
}

impl TryFrom<String> for OneActivePer {
    type Error = crate::condition::CelError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        if text == "contact" {
            Ok(Self::Contact)
        } else {
            CelExpr::new(text).map(Self::Key)
        }
    }
}

impl From<OneActivePer> for String {
    fn from(scope: OneActivePer) -> Self {
        match scope {
            OneActivePer::Contact => "contact".into(),
            OneActivePer::Key(expr) => expr.into(),
        }
    }
}

/// One event name, or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum EventNames {
    /// One name.
    One(String),
    /// Any of these names.
    Any(Vec<String>),
}

impl EventNames {
    /// Whether `name` is one of them.
    pub fn contains(&self, name: &str) -> bool {
        match self {
            EventNames::One(one) => one == name,
            EventNames::Any(any) => any.iter().any(|n| n == name),
        }
    }
}

impl From<&str> for EventNames {
    fn from(name: &str) -> Self {
        EventNames::One(name.to_string())
    }
}

/// What counts as reaching the journey's goal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    /// The event name, such as `order.paid`, or several, any of which meets
    /// the goal (`["order.created", "order.paid"]`: a store may send either
    /// first, or only one).
    pub event: EventNames,
    /// A CEL condition on `event`, `trigger`, `contact` and `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<CelExpr>,
    /// A journey to hand the contact to when the goal ends this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand_off: Option<String>,
    /// Instead of exiting, go on at this step (once): for follow-up steps such as
    /// tagging and notifying sales. Not together with `hand_off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// How long after entering a goal event still counts as the journey's
    /// conversion (default 7 days). Held-out contacts are counted over the same
    /// window, so each split way and the holdout compare fairly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Duration>,
    /// The sources a goal event must come from (`["shopify"]`); empty takes
    /// any. A cart journey that ends on the store's order names the store, so
    /// that nobody ends a stranger's journey with a track call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
}

impl Goal {
    /// Whether `event` is one of the goal's events, from one of its sources
    /// (its condition aside).
    pub fn matches(&self, event: &crate::event::Event) -> bool {
        self.event.contains(&event.name) && from_one_of(&self.sources, &event.source)
    }
}

/// One step of a journey: an id and what it does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "StepFields", into = "StepFields")]
pub struct Step {
    /// Unique within the journey; used by `next` and in metrics.
    pub id: String,
    /// What the step does.
    pub kind: StepKind,
}

/// What a step does, and where contacts go after it.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// Runs a step component (`send`, `tag`, `score`, `webhook`, ...).
    Run {
        /// The component's name.
        uses: String,
        /// Its configuration, a JSON object.
        config: serde_json::Map<String, serde_json::Value>,
        /// Where each branch name the component may answer leads.
        branches: BTreeMap<String, String>,
        /// The next step.
        next: Option<String>,
    },
    /// Waits a fixed time.
    Wait {
        /// How long.
        duration: Duration,
        /// The next step.
        next: Option<String>,
    },
    /// Waits until a time of day in the contact's zone.
    WaitUntil {
        /// The time of day.
        time: LocalTime,
        /// The next step.
        next: Option<String>,
    },
    /// Waits until a moment a CEL expression gives (a coupon's expiry minus
    /// an hour); one already past goes on at once.
    WaitUntilAt {
        /// A CEL timestamp (or ms since the epoch) over `trigger`,
        /// `contact`, `data` and `now`.
        at: CelExpr,
        /// The next step.
        next: Option<String>,
    },
    /// Waits for an event or a timeout.
    WaitFor {
        /// The event and the timeout.
        wait: WaitFor,
        /// Where a matching event leads.
        on_event: Option<String>,
        /// Where the timeout leads.
        on_timeout: Option<String>,
    },
    /// Goes the first way whose condition holds; the last way has none.
    Branch {
        /// The ways, in order.
        ways: Vec<BranchWay>,
    },
    /// Assigns each contact, stably, to one way by percentage.
    Split {
        /// The ways; the percents add up to 100.
        ways: Vec<SplitWay>,
    },
    /// Moves the contact to another journey, ending this one.
    HandOff {
        /// The other journey's id.
        journey: String,
    },
    /// Ends the journey with a reason.
    Exit {
        /// Why, for the enrollment's history.
        reason: String,
    },
}

/// A wait for an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitFor {
    /// The event name, such as `order.paid`.
    pub event: String,
    /// A CEL condition on `event`, `trigger`, `contact` and `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<CelExpr>,
    /// How long to wait before giving up.
    pub timeout: Duration,
}

/// One way out of a branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BranchWay {
    /// A CEL condition; the last way has none and takes everyone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<CelExpr>,
    /// The step this way leads to.
    pub next: String,
}

/// One way out of a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitWay {
    /// The share of contacts, a whole percent; a split's ways add up to 100.
    pub percent: u32,
    /// The step this way leads to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Contacts on this way leave the journey (reason `holdout`) as a control
    /// group. Either this or `next`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub holdout: bool,
}

/// A step as written in the file: an `id`, exactly one of the kind keys (`uses`,
/// `wait`, `wait_until`, `wait_for`, `branch`, `split`, `hand_off`, `exit`), and
/// the keys that go with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepFields {
    /// Unique within the journey.
    pub id: String,
    /// Runs this step component: `send`, `tag`, `score`, `webhook`, or a custom one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    /// The component's configuration (with `uses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    /// Branch names the component may answer, and the step each leads to (with `uses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branches: Option<BTreeMap<String, String>>,
    /// Waits this long: `30m`, `3h`, `2d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Duration>,
    /// Waits until this time of day in the contact's zone: `08:00`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_until: Option<LocalTime>,
    /// Waits until the moment this CEL expression gives:
    /// `timestamp(trigger.properties.expires_at) - duration('1h')`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_until_at: Option<CelExpr>,
    /// Waits for an event, or gives up after a timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for: Option<WaitFor>,
    /// Where a matching event leads (with `wait_for`; default `next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_event: Option<String>,
    /// Where the timeout leads (with `wait_for`; default `next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<String>,
    /// Goes the first way whose `when` holds; the last way has no `when`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<Vec<BranchWay>>,
    /// Assigns each contact stably to a way by percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Vec<SplitWay>>,
    /// Ends this journey and enrolls the contact in that one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand_off: Option<String>,
    /// Ends the journey with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
    /// The next step; when absent the journey ends with reason `completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl TryFrom<StepFields> for Step {
    type Error = String;

    fn try_from(fields: StepFields) -> Result<Self, Self::Error> {
        let kinds: Vec<&str> = [
            ("uses", fields.uses.is_some()),
            ("wait", fields.wait.is_some()),
            ("wait_until", fields.wait_until.is_some()),
            ("wait_until_at", fields.wait_until_at.is_some()),
            ("wait_for", fields.wait_for.is_some()),
            ("branch", fields.branch.is_some()),
            ("split", fields.split.is_some()),
            ("hand_off", fields.hand_off.is_some()),
            ("exit", fields.exit.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect();
        let kind = match kinds.as_slice() {
            [] => {
                return Err(format!(
                    "step {:?} does nothing: give it one of uses, wait, wait_until, wait_until_at, wait_for, branch, split, hand_off or exit",
                    fields.id
                ));
            }
            [kind] => *kind,
            several => {
                return Err(format!(
                    "step {:?} has {}: a step does one thing",
                    fields.id,
                    several.join(" and ")
                ));
            }
        };
        let misplaced = |key: &str, allowed: &[&str]| {
            format!(
                "step {:?}: `{key}` goes only with {}, not with `{kind}`",
                fields.id,
                allowed
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )
        };
        if kind != "uses" {
            if fields.config.is_some() {
                return Err(misplaced("config", &["uses"]));
            }
            if fields.branches.is_some() {
                return Err(misplaced("branches", &["uses"]));
            }
        }
        if kind != "wait_for" {
            if fields.on_event.is_some() {
                return Err(misplaced("on_event", &["wait_for"]));
            }
            if fields.on_timeout.is_some() {
                return Err(misplaced("on_timeout", &["wait_for"]));
            }
        }
        if matches!(kind, "branch" | "split" | "hand_off" | "exit") && fields.next.is_some() {
            return Err(misplaced(
                "next",
                &["uses", "wait", "wait_until", "wait_until_at", "wait_for"],
            ));
        }
        let next = fields.next;
        let kind = match fields {
            StepFields {
                uses: Some(uses),
                config,
                branches,
                ..
            } => StepKind::Run {
                uses,
                config: config.unwrap_or_default(),
                branches: branches.unwrap_or_default(),
                next,
            },
            StepFields {
                wait: Some(duration),
                ..
            } => StepKind::Wait { duration, next },
            StepFields {
                wait_until: Some(time),
                ..
            } => StepKind::WaitUntil { time, next },
            StepFields {
                wait_until_at: Some(at),
                ..
            } => StepKind::WaitUntilAt { at, next },
            StepFields {
                wait_for: Some(wait),
                on_event,
                on_timeout,
                ..
            } => StepKind::WaitFor {
                wait,
                on_event: on_event.or_else(|| next.clone()),
                on_timeout: on_timeout.or(next),
            },
            StepFields {
                branch: Some(ways), ..
            } => StepKind::Branch { ways },
            StepFields {
                split: Some(ways), ..
            } => StepKind::Split { ways },
            StepFields {
                hand_off: Some(journey),
                ..
            } => StepKind::HandOff { journey },
            StepFields {
                exit: Some(reason), ..
            } => StepKind::Exit { reason },
            StepFields { .. } => return Err(format!("step {:?} does nothing", fields.id)),
        };
        Ok(Step {
            id: fields.id,
            kind,
        })
    }
}

impl From<Step> for StepFields {
    fn from(step: Step) -> Self {
        let mut fields = StepFields {
            id: step.id,
            ..StepFields::default()
        };
        match step.kind {
            StepKind::Run {
                uses,
                config,
                branches,
                next,
            } => {
                fields.uses = Some(uses);
                fields.config = (!config.is_empty()).then_some(config);
                fields.branches = (!branches.is_empty()).then_some(branches);
                fields.next = next;
            }
            StepKind::Wait { duration, next } => {
                fields.wait = Some(duration);
                fields.next = next;
            }
            StepKind::WaitUntil { time, next } => {
                fields.wait_until = Some(time);
                fields.next = next;
            }
            StepKind::WaitUntilAt { at, next } => {
                fields.wait_until_at = Some(at);
                fields.next = next;
            }
            StepKind::WaitFor {
                wait,
                on_event,
                on_timeout,
            } => {
                fields.wait_for = Some(wait);
                fields.on_event = on_event;
                fields.on_timeout = on_timeout;
            }
            StepKind::Branch { ways } => fields.branch = Some(ways),
            StepKind::Split { ways } => fields.split = Some(ways),
            StepKind::HandOff { journey } => fields.hand_off = Some(journey),
            StepKind::Exit { reason } => fields.exit = Some(reason),
        }
        fields
    }
}

impl StepKind {
    /// Every step id this step can lead to, with the file key that names it
    /// (`next`, `on_event`, `branch[1].next`, `branches.clicked`, ...).
    pub fn targets(&self) -> Vec<(String, &str)> {
        fn push<'a>(targets: &mut Vec<(String, &'a str)>, key: String, target: Option<&'a String>) {
            if let Some(target) = target {
                targets.push((key, target.as_str()));
            }
        }
        let mut targets = Vec::new();
        match self {
            StepKind::Run { branches, next, .. } => {
                push(&mut targets, "next".into(), next.as_ref());
                for (name, target) in branches {
                    push(&mut targets, format!("branches.{name}"), Some(target));
                }
            }
            StepKind::Wait { next, .. }
            | StepKind::WaitUntil { next, .. }
            | StepKind::WaitUntilAt { next, .. } => {
                push(&mut targets, "next".into(), next.as_ref());
            }
            StepKind::WaitFor {
                on_event,
                on_timeout,
                ..
            } => {
                push(&mut targets, "on_event".into(), on_event.as_ref());
                push(&mut targets, "on_timeout".into(), on_timeout.as_ref());
            }
            StepKind::Branch { ways } => {
                for (index, way) in ways.iter().enumerate() {
                    push(
                        &mut targets,
                        format!("branch[{index}].next"),
                        Some(&way.next),
                    );
                }
            }
            StepKind::Split { ways } => {
                for (index, way) in ways.iter().enumerate() {
                    push(
                        &mut targets,
                        format!("split[{index}].next"),
                        way.next.as_ref(),
                    );
                }
            }
            StepKind::HandOff { .. } | StepKind::Exit { .. } => {}
        }
        targets
    }
}
