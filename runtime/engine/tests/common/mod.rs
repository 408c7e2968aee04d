//! A make-believe runtime for driving the engine in tests: it keeps the
//! enrollments and timers the actions ask for, fires timers when the manual
//! clock passes them, and writes the effects as short lines to assert on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::BTreeMap;

use dripline_engine::{
    Action, ContactView, Enrollment, Event, Journey, MetricName, Pending, StepOutcome, Timer,
    Timestamp,
};

/// 2024-06-01 10:00:00 UTC, the start of every test's clock.
pub const T0: Timestamp = 1_717_236_000_000;
pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

pub fn journey(text: &str) -> Journey {
    dripline_engine::parse_journey("journeys/test.toml", text).unwrap_or_else(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("journey does not load:\n{}", lines.join("\n"))
    })
}

pub fn journey_file(name: &str) -> Journey {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../journeys")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    dripline_engine::parse_journey(&format!("journeys/{name}"), &text).unwrap_or_else(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("{}", lines.join("\n"))
    })
}

pub fn event(id: &str, name: &str, properties: serde_json::Value, at: Timestamp) -> Event {
    // As a deployment would stamp it: orders from the store, whose the cart
    // journey's goal asks for; other names from their owner or the track API.
    let source = match dripline_engine::trust::usual_source(name) {
        Some(source) => source,
        None if name.starts_with("order.") => "shopify",
        None => "api",
    };
    Event {
        id: id.into(),
        source: source.into(),
        name: name.into(),
        identities: dripline_engine::Identities {
            email: Some("li@example.com".into()),
            ..Default::default()
        },
        properties,
        occurred_at: at,
        received_at: at,
    }
}

/// One journey, one contact, and what the engine told the runtime to keep.
pub struct Runtime {
    pub journey: Journey,
    pub contact: ContactView,
    pub enrollments: Vec<Enrollment>,
    pub timers: BTreeMap<String, Timer>,
    pub now: Timestamp,
}

impl Runtime {
    pub fn new(journey: Journey) -> Self {
        Self {
            journey,
            contact: ContactView::new("contact-1"),
            enrollments: Vec::new(),
            timers: BTreeMap::new(),
            now: T0,
        }
    }

    /// Keeps what the actions ask to keep; returns them.
    pub fn apply(&mut self, actions: Vec<Action>) -> Vec<Action> {
        for action in &actions {
            match action {
                Action::Enroll(enrollment) | Action::UpdateEnrollment(enrollment) => {
                    match self.enrollments.iter_mut().find(|e| e.id == enrollment.id) {
                        Some(slot) => *slot = enrollment.clone(),
                        None => self.enrollments.push(enrollment.clone()),
                    }
                }
                Action::ScheduleTimer(timer) => {
                    self.timers.insert(timer.key.clone(), timer.clone());
                }
                Action::CancelTimer { key } => {
                    self.timers.remove(key);
                }
                _ => {}
            }
        }
        actions
    }

    pub fn event(&mut self, event: Event) -> Vec<Action> {
        self.now = self.now.max(event.received_at);
        let actions = dripline_engine::on_event(
            &self.journey,
            &self.contact,
            &event,
            &self.enrollments,
            self.now,
        );
        self.apply(actions)
    }

    /// Moves the clock to `until`, firing every timer due by then at its own time.
    pub fn run_until(&mut self, until: Timestamp) -> Vec<Action> {
        let mut all = Vec::new();
        loop {
            let due = self
                .timers
                .values()
                .filter(|timer| timer.due_at <= until)
                .min_by_key(|timer| (timer.due_at, timer.key.clone()))
                .cloned();
            let Some(timer) = due else { break };
            self.timers.remove(&timer.key);
            self.now = self.now.max(timer.due_at);
            let enrollment = self
                .enrollments
                .iter()
                .find(|e| e.id == timer.enrollment_id)
                .unwrap()
                .clone();
            let actions = dripline_engine::on_timer(
                &self.journey,
                &enrollment,
                &self.contact,
                &timer,
                self.now,
            )
            .unwrap();
            all.extend(self.apply(actions));
        }
        self.now = self.now.max(until);
        all
    }

    /// Answers the step the (only active) enrollment runs.
    pub fn answer(&mut self, outcome: StepOutcome) -> Vec<Action> {
        let enrollment = self.active();
        let Some(Pending::Step { step, .. }) = &enrollment.pending else {
            panic!("no step runs; pending: {:?}", enrollment.pending);
        };
        let actions = dripline_engine::on_step_outcome(
            &self.journey,
            &enrollment,
            &self.contact,
            step,
            &outcome,
            self.now,
        )
        .unwrap();
        self.apply(actions)
    }

    /// The one enrollment not done, or the last one.
    pub fn active(&self) -> Enrollment {
        self.enrollments
            .iter()
            .find(|e| !e.is_done())
            .or(self.enrollments.last())
            .expect("no enrollment")
            .clone()
    }
}

/// The effects as short lines, leaving out state updates and metrics.
pub fn effects(actions: &[Action]) -> Vec<String> {
    actions.iter().filter_map(describe).collect()
}

fn describe(action: &Action) -> Option<String> {
    Some(match action {
        Action::Enroll(enrollment) => {
            format!("enroll at {}", enrollment.step.as_deref().unwrap_or("-"))
        }
        Action::UpdateEnrollment(_) | Action::Metric { .. } => return None,
        Action::RunStep {
            step_id,
            uses,
            attempt,
            ..
        } => format!("run {step_id} ({uses}) attempt {attempt}"),
        Action::ScheduleTimer(timer) => {
            format!("timer {} at {}", short_key(&timer.key), clock(timer.due_at))
        }
        Action::CancelTimer { key } => format!("cancel {}", short_key(key)),
        Action::Exit { reason, .. } => format!("exit: {reason}"),
        Action::HandOff { to_journey, .. } => format!("hand off to {to_journey}"),
        Action::ConditionFailed { field, .. } => format!("condition failed: {field}"),
    })
}

/// `enr_.../wait-30m/1/wait` → `wait-30m/1/wait`.
fn short_key(key: &str) -> &str {
    key.split_once('/').map_or(key, |(_, rest)| rest)
}

/// Time since T0 as `+1d 2h30m`.
pub fn clock(at: Timestamp) -> String {
    let offset = at - T0;
    let (days, rest) = (offset / DAY, offset % DAY);
    let (hours, rest) = (rest / HOUR, rest % HOUR);
    let minutes = rest / MINUTE;
    let mut text = String::from("+");
    if days > 0 {
        text.push_str(&format!("{days}d"));
    }
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 || text == "+" {
        text.push_str(&format!("{minutes}m"));
    }
    text
}

/// The metrics as `step:name` lines (`-` for the journey itself).
pub fn metrics(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Metric { step, name, .. } => Some(format!(
                "{}:{}",
                step.as_deref().unwrap_or("-"),
                metric_name(*name)
            )),
            _ => None,
        })
        .collect()
}

fn metric_name(name: MetricName) -> String {
    serde_json::to_value(name)
        .map(|value| match value {
            serde_json::Value::String(text) => text,
            other => other.to_string(),
        })
        .unwrap()
}
