//! A journey version as the console draws it: its steps as nodes of their
//! kind, the ways between them, and on each node the counts of the contacts
//! who went through it. The graph is built here, from the stored journey
//! file and the analytics counters; where each node goes on the page is the
//! console's graph layout library's business.
//!
//! Every count comes from the per-day counters the runner keeps
//! (`dripline_delivery::analytics`), so a canvas costs a range scan of one
//! journey's counters however many contacts went through it: "waiting now"
//! is what entered a step and has not left it (passed, exited or completed).

use std::collections::BTreeMap;

use dripline_delivery::analytics;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// The node every journey starts at: what enrolls a contact.
pub const TRIGGER: &str = "@trigger";
/// The node of the journey's goal, when it has one.
pub const GOAL: &str = "@goal";
/// The node a contact reaches when the journey runs out of steps.
pub const END: &str = "@end";

/// One version of a journey, drawn.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Canvas {
    /// The version.
    pub version: u32,
    /// The trigger, every step, the goal and the ends.
    pub nodes: Vec<Node>,
    /// The ways between them.
    pub edges: Vec<Edge>,
}

/// A node of the canvas.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Node {
    /// The step's id, or `@trigger`, `@goal`, `@end`, `@holdout`, or
    /// `@hand-off:<journey>`.
    pub id: String,
    /// What it is, which decides its shape: `trigger`, `send`, `run`,
    /// `wait`, `wait_for`, `branch`, `split`, `goal`, `hand_off`, `exit` or
    /// `end`.
    pub kind: String,
    /// A line for the node: the step's id or what it waits for.
    pub label: String,
    /// A second line: the component and channel, the duration, the event.
    pub detail: String,
    /// Who went through it.
    pub counts: NodeCounts,
    /// A message step's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageFigures>,
}

/// Who went through a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct NodeCounts {
    /// Contacts who reached it.
    pub entered: i64,
    /// Contacts at it now (a wait not yet over).
    pub waiting: i64,
    /// Contacts who went on from it.
    pub passed: i64,
    /// Contacts who left the journey at it before its end: the goal reached
    /// while waiting, a failed step, an unsubscribe.
    pub dropped: i64,
}

/// What a message step sent, and what came of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct MessageFigures {
    /// The channel the step asks for (`email`, `sms`, ...); the policy may
    /// have moved some messages to another.
    pub channel: String,
    /// Messages queued.
    pub sent: i64,
    /// Messages the provider accepted.
    pub delivered: i64,
    /// Messages that failed for good.
    pub failed: i64,
    /// Messages the policy held back (consent, caps, quiet hours, ...).
    pub suppressed: i64,
    /// Messages opened (the first open of each).
    pub opened: i64,
    /// Messages clicked (the first click of each).
    pub clicked: i64,
    /// Contacts who converted after this step.
    pub converted: i64,
    /// `opened / sent`.
    pub open_rate: Option<f64>,
    /// `clicked / sent`.
    pub click_rate: Option<f64>,
    /// `converted / entered`.
    pub conversion_rate: Option<f64>,
}

/// A way from one node to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Edge {
    /// The node it leaves.
    pub from: String,
    /// The node it leads to.
    pub to: String,
    /// What takes it: a branch's condition, a split's share, `timeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Contacts who went this way, where the counters tell (split ways).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
}

/// The counters of one version, summed over days: per step (`-` for the
/// journey's own) what → count, and per step and channel.
#[derive(Debug, Default)]
pub struct VersionCounts {
    by_step: BTreeMap<String, BTreeMap<String, i64>>,
    by_channel: BTreeMap<String, BTreeMap<String, i64>>,
}

impl VersionCounts {
    /// Adds counter `name` (an analytics counter of this version) of `value`.
    pub fn add(&mut self, counter: &analytics::Counter<'_>, value: i64) {
        let step = counter.step.unwrap_or("-").to_owned();
        let into = if counter.channel.is_some() {
            &mut self.by_channel
        } else {
            &mut self.by_step
        };
        *into
            .entry(step)
            .or_default()
            .entry(counter.what.to_owned())
            .or_default() += value;
    }

    /// Per step (`-` for the journey's own), what → count, channels aside.
    pub fn into_steps(self) -> BTreeMap<String, BTreeMap<String, i64>> {
        self.by_step
    }

    /// The journey's own count of `what` (`entered`, `converted`).
    pub fn total(&self, what: &str) -> i64 {
        self.step("-", what)
    }

    fn step(&self, step: &str, what: &str) -> i64 {
        self.by_step
            .get(step)
            .and_then(|m| m.get(what))
            .copied()
            .unwrap_or(0)
    }

    fn message(&self, step: &str, what: &str) -> i64 {
        self.by_channel
            .get(step)
            .map(|m| {
                m.iter()
                    .filter(|(name, _)| {
                        *name == what || name.strip_prefix(what).is_some_and(|r| r.starts_with('.'))
                    })
                    .map(|(_, v)| *v)
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// The counters of a journey (`counters`: name → value) per version.
pub fn counts_by_version(counters: &BTreeMap<String, i64>) -> BTreeMap<u32, VersionCounts> {
    let mut versions: BTreeMap<u32, VersionCounts> = BTreeMap::new();
    for (name, value) in counters {
        if let Some(counter) = analytics::parse(name) {
            versions
                .entry(counter.version)
                .or_default()
                .add(&counter, *value);
        }
    }
    versions
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn rate(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// A duration as the journey file writes it (`30m`, `2h30m`): the file's
/// own text, which the JSON of the stored file keeps.
fn duration(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Builds the canvas of one version from its journey file (as JSON) and its
/// counters.
pub fn canvas(version: u32, definition: &Value, counts: &VersionCounts) -> Canvas {
    let mut builder = Builder {
        nodes: Vec::new(),
        edges: Vec::new(),
        ends: BTreeMap::new(),
    };
    let steps: &[Value] = definition
        .get("steps")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);

    let trigger = definition.get("trigger").cloned().unwrap_or(Value::Null);
    let (label, detail) = if let Some(segment) = text(&trigger, "segment") {
        let edge = text(&trigger, "on").unwrap_or("entry");
        (format!("segment {segment}"), format!("on {edge}"))
    } else if let Some(date) = trigger.get("date") {
        (
            "a date".to_owned(),
            text(date, "attribute").unwrap_or_default().to_owned(),
        )
    } else {
        (
            text(&trigger, "event").unwrap_or("event").to_owned(),
            if trigger.get("filter").is_some() {
                "with a filter".to_owned()
            } else {
                String::new()
            },
        )
    };
    let entered = counts.step("-", "entered");
    builder.nodes.push(Node {
        id: TRIGGER.to_owned(),
        kind: "trigger".to_owned(),
        label,
        detail,
        counts: NodeCounts {
            entered,
            waiting: 0,
            passed: entered,
            dropped: 0,
        },
        message: None,
    });
    if let Some(first) = steps.first().and_then(|s| text(s, "id")) {
        builder.edge(TRIGGER, first, None, None);
    }

    for step in steps {
        let Some(id) = text(step, "id") else {
            continue;
        };
        let entered = counts.step(id, "entered");
        let passed = counts.step(id, "passed");
        let completed = counts.step(id, "completed");
        let dropped = counts.step(id, "exited");
        let node_counts = NodeCounts {
            entered,
            // A step a contact finishes the journey on counts it as passed
            // and completed: completed is not a second way out.
            waiting: (entered - passed - dropped).max(0),
            passed,
            dropped,
        };
        let next = text(step, "next");
        let (kind, detail) = if let Some(uses) = text(step, "uses") {
            let config = step.get("config");
            let channel = config.and_then(|c| text(c, "channel"));
            let template = config.and_then(|c| text(c, "template"));
            for (branch, to) in step
                .get("branches")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let Some(to) = to.as_str() {
                    builder.edge(id, to, Some(branch.clone()), None);
                }
            }
            builder.next(id, next, completed);
            match channel {
                Some(channel) => (
                    "send",
                    [Some(uses), Some(channel), template]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" · "),
                ),
                None => ("run", uses.to_owned()),
            }
        } else if let Some(wait) = step.get("wait") {
            builder.next(id, next, completed);
            ("wait", format!("wait {}", duration(Some(wait))))
        } else if let Some(time) = text(step, "wait_until") {
            builder.next(id, next, completed);
            ("wait", format!("until {time} local"))
        } else if step.get("wait_until_at").is_some() {
            builder.next(id, next, completed);
            ("wait", "until a moment".to_owned())
        } else if let Some(wait) = step.get("wait_for") {
            let event = text(wait, "event").unwrap_or_default();
            let on_event = text(step, "on_event").or(next);
            let on_timeout = text(step, "on_timeout").or(next);
            let matched = counts.step(id, "wait_matched");
            let timed_out = counts.step(id, "wait_timed_out");
            builder.way(id, on_event, Some(event.to_owned()), Some(matched));
            builder.way(id, on_timeout, Some("timeout".to_owned()), Some(timed_out));
            (
                "wait_for",
                format!("{event} or {}", duration(wait.get("timeout"))),
            )
        } else if let Some(ways) = step.get("branch").and_then(Value::as_array) {
            for way in ways {
                let label = text(way, "when").map_or_else(|| "otherwise".to_owned(), str::to_owned);
                if let Some(to) = text(way, "next") {
                    builder.edge(id, to, Some(label), None);
                }
            }
            ("branch", format!("{} ways", ways.len()))
        } else if let Some(ways) = step.get("split").and_then(Value::as_array) {
            for (index, way) in ways.iter().enumerate() {
                let percent = way.get("percent").and_then(Value::as_u64).unwrap_or(0);
                let label = Some(format!("{percent}%"));
                if let Some(to) = text(way, "next") {
                    let went = counts.step(id, &format!("split_way_{index}"));
                    builder.edge(id, to, label, Some(went));
                } else if way.get("holdout").and_then(Value::as_bool) == Some(true) {
                    let held = counts.step(id, "holdout");
                    builder.end("@holdout", "exit", "holdout", "control group", held);
                    builder.edge(id, "@holdout", label, Some(held));
                }
            }
            ("split", format!("{} ways", ways.len()))
        } else if let Some(to) = text(step, "hand_off") {
            let node = format!("@hand-off:{to}");
            let handed = counts.step(id, "handed_off");
            builder.end(&node, "hand_off", to, "hand-off", handed);
            builder.edge(id, &node, None, Some(handed));
            ("hand_off", format!("to {to}"))
        } else if let Some(reason) = text(step, "exit") {
            ("exit", format!("exit: {reason}"))
        } else {
            ("run", String::new())
        };
        let message = (kind == "send").then(|| {
            let sent = counts.message(id, "sent");
            let opened = counts.message(id, "opened");
            let clicked = counts.message(id, "clicked");
            let converted = counts.step(id, "converted");
            MessageFigures {
                channel: step
                    .get("config")
                    .and_then(|c| text(c, "channel"))
                    .unwrap_or_default()
                    .to_owned(),
                sent,
                delivered: counts.message(id, "delivered"),
                failed: counts.message(id, "failed"),
                suppressed: counts.message(id, "suppressed"),
                opened,
                clicked,
                converted,
                open_rate: rate(opened, sent),
                click_rate: rate(clicked, sent),
                conversion_rate: rate(converted, entered),
            }
        });
        builder.nodes.push(Node {
            id: id.to_owned(),
            kind: kind.to_owned(),
            label: id.to_owned(),
            detail,
            counts: node_counts,
            message,
        });
    }

    if let Some(goal) = definition.get("goal") {
        let events = match goal.get("event") {
            Some(Value::Array(names)) => names
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" or "),
            Some(Value::String(name)) => name.clone(),
            _ => String::new(),
        };
        let reached = counts.step("-", "goal_reached");
        builder.nodes.push(Node {
            id: GOAL.to_owned(),
            kind: "goal".to_owned(),
            label: format!("goal: {events}"),
            detail: format!("{} converted", counts.step("-", "converted")),
            counts: NodeCounts {
                entered: reached,
                waiting: 0,
                passed: reached,
                dropped: 0,
            },
            message: None,
        });
        if let Some(to) = text(goal, "hand_off") {
            let node = format!("@hand-off:{to}");
            builder.end(&node, "hand_off", to, "hand-off", reached);
            builder.edge(GOAL, &node, None, None);
        } else if let Some(to) = text(goal, "next") {
            builder.edge(GOAL, to, None, None);
        }
    }

    builder.finish(version)
}

struct Builder {
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    /// The end nodes, added once each: id → (kind, label, detail, count).
    ends: BTreeMap<String, (String, String, String, i64)>,
}

impl Builder {
    fn edge(&mut self, from: &str, to: &str, label: Option<String>, count: Option<i64>) {
        self.edges.push(Edge {
            from: from.to_owned(),
            to: to.to_owned(),
            label,
            count,
        });
    }

    /// A step's `next`, or the journey's end when it has none.
    fn next(&mut self, from: &str, next: Option<&str>, completed: i64) {
        self.way(from, next, None, (next.is_none()).then_some(completed));
    }

    fn way(&mut self, from: &str, to: Option<&str>, label: Option<String>, count: Option<i64>) {
        match to {
            Some(to) => self.edge(from, to, label, count),
            None => {
                let went = count.unwrap_or(0);
                self.end(END, "end", "end", "completed", went);
                self.edge(from, END, label, count);
            }
        }
    }

    fn end(&mut self, id: &str, kind: &str, label: &str, detail: &str, count: i64) {
        let entry = self
            .ends
            .entry(id.to_owned())
            .or_insert_with(|| (kind.to_owned(), label.to_owned(), detail.to_owned(), 0));
        entry.3 += count;
    }

    fn finish(mut self, version: u32) -> Canvas {
        let known: std::collections::BTreeSet<String> = self
            .nodes
            .iter()
            .map(|n| n.id.clone())
            .chain(self.ends.keys().cloned())
            .collect();
        for (id, (kind, label, detail, count)) in self.ends {
            self.nodes.push(Node {
                id,
                kind,
                label,
                detail,
                counts: NodeCounts {
                    entered: count,
                    waiting: 0,
                    passed: 0,
                    dropped: 0,
                },
                message: None,
            });
        }
        // A way to a step the file does not have cannot be drawn; the
        // runner refuses such a file, so this only guards an old one.
        self.edges.retain(|e| known.contains(&e.to));
        Canvas {
            version,
            nodes: self.nodes,
            edges: self.edges,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn counters(pairs: &[(&str, i64)]) -> VersionCounts {
        let map: BTreeMap<String, i64> = pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        counts_by_version(&map).remove(&2).unwrap_or_default()
    }

    fn abandoned_checkout() -> Value {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../journeys/abandoned-checkout.toml"
        ))
        .unwrap();
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn the_abandoned_checkout_canvas_has_every_step_the_goal_its_hand_off_and_the_end() {
        let canvas = canvas(2, &abandoned_checkout(), &VersionCounts::default());
        let kinds: Vec<(&str, &str)> = canvas
            .nodes
            .iter()
            .map(|n| (n.id.as_str(), n.kind.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("@trigger", "trigger"),
                ("wait-30m", "wait"),
                ("cart-reminder", "send"),
                ("wait-3h", "wait"),
                ("abandoned-items", "send"),
                ("wait-24h", "wait"),
                ("coupon-offer", "split"),
                ("coupon-email", "send"),
                ("coupon-sms", "send"),
                ("@goal", "goal"),
                ("@end", "end"),
                ("@hand-off:new-customer-care", "hand_off"),
            ]
        );
        let ways: Vec<(&str, &str, Option<&str>)> = canvas
            .edges
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str(), e.label.as_deref()))
            .collect();
        assert!(ways.contains(&("coupon-offer", "coupon-sms", Some("50%"))));
        assert!(ways.contains(&("coupon-email", "@end", None)));
        assert!(ways.contains(&("@goal", "@hand-off:new-customer-care", None)));
    }

    #[test]
    fn a_node_counts_who_waits_at_it_as_those_who_entered_and_have_not_left() {
        let counts = counters(&[
            ("a/j/2/2026-12-01/-/-/entered", 10),
            ("a/j/2/2026-12-01/wait-30m/-/entered", 10),
            ("a/j/2/2026-12-02/wait-30m/-/passed", 6),
            ("a/j/2/2026-12-02/wait-30m/-/exited", 3),
            ("a/j/2/2026-12-02/coupon-email/-/entered", 4),
            ("a/j/2/2026-12-02/coupon-email/-/passed", 4),
            ("a/j/2/2026-12-02/coupon-email/-/completed", 4),
            ("a/j/2/2026-12-02/coupon-email/-/converted", 1),
            ("a/j/2/2026-12-02/coupon-email/email/sent", 4),
            ("a/j/2/2026-12-02/coupon-email/email/opened", 2),
            ("a/j/2/2026-12-02/coupon-email/sms/sent", 1),
            (
                "a/j/2/2026-12-02/coupon-email/email/suppressed.quiet-hours",
                1,
            ),
        ]);
        let canvas = canvas(2, &abandoned_checkout(), &counts);
        let node = |id: &str| canvas.nodes.iter().find(|n| n.id == id).unwrap().clone();
        assert_eq!(
            node("wait-30m").counts,
            NodeCounts {
                entered: 10,
                waiting: 1,
                passed: 6,
                dropped: 3
            }
        );
        let email = node("coupon-email");
        assert_eq!(email.counts.waiting, 0);
        let message = email.message.unwrap();
        assert_eq!(
            (message.sent, message.opened, message.suppressed),
            (5, 2, 1)
        );
        assert_eq!(message.open_rate, Some(0.4));
        assert_eq!(message.conversion_rate, Some(0.25));
        assert_eq!(node("@end").counts.entered, 4);
    }

    #[test]
    fn a_way_to_a_step_the_file_lacks_is_left_off_the_canvas() {
        let definition = json!({
            "trigger": { "event": "x" },
            "steps": [{ "id": "a", "wait": "1h", "next": "missing" }]
        });
        let canvas = canvas(1, &definition, &VersionCounts::default());
        assert!(canvas.edges.iter().all(|e| e.to != "missing"));
    }
}
