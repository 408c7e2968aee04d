//! `dripline simulate`: one journey, one test contact and a script of events
//! with times, run on a virtual clock through the real engine, the real step
//! components and the deployment's delivery policy, against a throwaway
//! store and no channel at all (every message stays in that store's outbox).
//! The timeline says what happened when: each event, each step, wait, split
//! way and exit, each message with its rendered subject and text and the
//! policy's decision with its reason.
//!
//! `dripline preview` is a simulation of a one-step journey that sends one
//! template ([`preview`]).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, anyhow, bail};
use dripline_clock::{Clock as _, ManualClock};
use dripline_delivery::{DeliveryPolicy, OutboxRecord};
use dripline_engine::{Action, Duration, Event, Identities, MetricName, TimerKind};
use dripline_runner::{Journeys, Runner, Templates};
use dripline_sandbox::{Plugins, Sandbox};
use dripline_store::{MemoryStore, Store, Write};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The test contact: who the events are about.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestContact {
    /// An email address.
    #[serde(default)]
    pub email: Option<String>,
    /// A phone number in E.164.
    #[serde(default)]
    pub phone: Option<String>,
    /// An IANA time zone.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Attributes, as identify calls set them.
    #[serde(default)]
    pub attributes: Map<String, Value>,
    /// Consent per channel: `granted`, `denied` (default: granted on the
    /// channels the contact has, so that a simulation shows the messages).
    #[serde(default)]
    pub consent: BTreeMap<String, String>,
}

/// What happens, and when.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// When the simulation starts (RFC 3339; default: 2026-01-05 09:00 UTC,
    /// a Monday morning, so that a timeline does not depend on the day it
    /// is run).
    #[serde(default)]
    pub start: Option<String>,
    /// How long after the last event the simulation goes on (default 30d).
    #[serde(default)]
    pub until: Option<Duration>,
    /// The events, in any order.
    #[serde(default)]
    pub events: Vec<ScriptEvent>,
}

/// One event of a script.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptEvent {
    /// How long after the start it happens (`0m`, `26h`).
    pub after: Duration,
    /// Its name: `checkout.created`, `order.paid`, ...
    pub name: String,
    /// Where it comes from; by default the source that owns the name
    /// (`shopify` for `checkout.created`, `form` for `form.submitted`, see
    /// `dripline_engine::trust`), else `api`. The runner refuses a name from
    /// a source that may not emit it, as it would in a deployment.
    #[serde(default)]
    pub source: Option<String>,
    /// Its properties.
    #[serde(default)]
    pub properties: Map<String, Value>,
}

/// One moment of a simulated timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Moment {
    /// When, ms since the epoch.
    pub at: i64,
    /// `event`, `entered`, `step`, `wait`, `split`, `goal`, `message`,
    /// `exited`, `handoff`, `condition`.
    pub kind: String,
    /// What, in a line.
    pub what: String,
    /// More lines: a message's subject and text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detail: Vec<String>,
}

/// What a simulation needs from the deployment.
pub struct Simulator {
    plugins: Arc<Plugins>,
    templates: PathBuf,
    policy: Arc<DeliveryPolicy>,
    /// Segment files (name, text) the journeys may start on.
    segments: Vec<(String, String)>,
}

/// When a script names no start: Monday 2026-01-05 09:00 UTC.
const DEFAULT_START_MS: i64 = 1_767_603_600_000;
const DAY_MS: i64 = 86_400_000;

impl Simulator {
    /// A simulator with the components in `components`, the templates in
    /// `root/templates` and the policy of `root/delivery.toml`.
    pub fn new(sandbox: &Arc<Sandbox>, components: &Path, root: &Path) -> anyhow::Result<Self> {
        let plugins = Arc::new(Plugins::load_dir(sandbox, components)?);
        let policy = DeliveryPolicy::load(&root.join(dripline_delivery::policy::DELIVERY_FILE))?;
        Ok(Self::with_parts(
            plugins,
            root.join("templates"),
            Arc::new(policy),
        ))
    }

    /// A simulator on parts already loaded (`dripline up`'s).
    pub fn with_parts(
        plugins: Arc<Plugins>,
        templates: PathBuf,
        policy: Arc<DeliveryPolicy>,
    ) -> Self {
        Self {
            plugins,
            templates,
            policy,
            segments: Vec::new(),
        }
    }

    /// Also loads the segment files of `dir` (absent: none), for journeys
    /// that start on a segment.
    pub fn with_segments_of(mut self, dir: &Path) -> anyhow::Result<Self> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(self);
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                self.segments.push((path.display().to_string(), text));
            }
        }
        Ok(self)
    }

    /// Runs `journey` (the file's text, named `file`; `others` are journeys
    /// it may hand contacts to) for `contact` through `script`.
    pub fn run(
        &self,
        file: &str,
        journey: &str,
        others: &[(String, String)],
        contact: &TestContact,
        script: &Script,
    ) -> anyhow::Result<Vec<Moment>> {
        dripline_engine::parse_journey(file, journey).map_err(|errors| {
            anyhow!(
                "{}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
        let start = match &script.start {
            Some(text) => chrono::DateTime::parse_from_rfc3339(text)
                .with_context(|| format!("start: {text:?} is not an RFC 3339 time"))?
                .timestamp_millis(),
            None => DEFAULT_START_MS,
        };
        if contact.email.is_none() && contact.phone.is_none() {
            bail!("contact: give an email or a phone");
        }
        // The journey and those it hands to, in a directory of their own.
        let dir = tempfile::tempdir()?;
        let journeys_dir = dir.path().join("journeys");
        std::fs::create_dir_all(&journeys_dir)?;
        std::fs::write(journeys_dir.join(file_name(file)), journey)?;
        for (name, text) in others {
            std::fs::write(journeys_dir.join(file_name(name)), text)?;
        }
        let segments_dir = dir.path().join("segments");
        std::fs::create_dir_all(&segments_dir)?;
        for (name, text) in &self.segments {
            std::fs::write(segments_dir.join(file_name(name)), text)?;
        }
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        // A fixed key for the throwaway store's contact ids: they decide the
        // contact's split ways and canary share, so the same script must
        // meet the same ones at every run.
        store.apply(&[Write::KvSet {
            store: dripline_store::RUNTIME_KV_STORE.into(),
            key: dripline_runner::contacts::CONTACT_ID_KEY.into(),
            value: b"dripline simulate".to_vec(),
        }])?;
        let clock = Arc::new(ManualClock::new(start - 1));
        let (journeys, problems) = Journeys::load(&journeys_dir, store.as_ref())?;
        if let Some(problem) = problems.first() {
            bail!("{problem}");
        }
        let trace: dripline_runner::Trace = Arc::new(Mutex::new(Vec::new()));
        let mut runner = Runner::new(
            store.clone(),
            self.plugins.clone(),
            journeys,
            Templates::load(&self.templates),
            clock.clone(),
            self.policy.clone(),
        )
        .with_trace(trace.clone());

        let identities = Identities {
            email: contact.email.as_ref().map(|e| e.trim().to_lowercase()),
            phone: contact.phone.clone(),
            ..Identities::default()
        };
        let mut moments = Vec::new();
        let mut sequence = VecDeque::new();
        let setup = contact_event(contact, &identities, start - 1);
        sequence.push_back(setup);
        let mut scripted: Vec<Event> = script
            .events
            .iter()
            .enumerate()
            .map(|(n, e)| Event {
                id: format!("sim-{n}"),
                source: e.source.clone().unwrap_or_else(|| {
                    dripline_engine::trust::usual_source(&e.name)
                        .unwrap_or("api")
                        .into()
                }),
                name: e.name.clone(),
                identities: identities.clone(),
                properties: Value::Object(e.properties.clone()),
                occurred_at: start + e.after.as_offset(),
                received_at: start + e.after.as_offset(),
            })
            .collect();
        scripted.sort_by_key(|e| e.occurred_at);
        let last = scripted.last().map_or(start, |e| e.occurred_at);
        let until = last.saturating_add(script.until.map_or(30 * DAY_MS, |d| d.as_offset()));
        sequence.extend(scripted);

        let mut seen_messages = 0;
        let mut converted = std::collections::BTreeSet::new();
        let mut fired = 0;
        loop {
            let next_event = sequence.front().map(|e| e.occurred_at);
            let next_timer = store.next_due_at()?;
            let next = match (next_event, next_timer) {
                (Some(e), Some(t)) => e.min(t),
                (Some(e), None) => e,
                (None, Some(t)) => t,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            fired += 1;
            if fired > 10_000 {
                bail!("the simulation did not settle after 10,000 steps (a loop in the journey?)");
            }
            clock.set(next.max(clock.now_ms()));
            while let Some(event) = sequence.front().filter(|e| e.occurred_at <= next) {
                let event = event.clone();
                sequence.pop_front();
                if event.id != "sim-contact" {
                    moments.push(Moment {
                        at: event.occurred_at,
                        kind: "event".into(),
                        what: format!("{} ({})", event.name, event.source),
                        detail: Vec::new(),
                    });
                }
                store.apply(&[Write::inbox_put(
                    event.received_at,
                    &event.id,
                    serde_json::to_vec(&event)?,
                )])?;
            }
            runner.run_until_idle()?;
            let actions = std::mem::take(&mut *trace.lock().unwrap_or_else(|p| p.into_inner()));
            moments.extend(
                actions
                    .iter()
                    .filter_map(|(at, action)| moment_of(*at, action)),
            );
            let messages = store.outbox_list(None, usize::MAX)?;
            for message in messages.iter().skip(seen_messages) {
                moments.push(message_moment(message));
            }
            seen_messages = messages.len();
            moments.extend(conversions(store.as_ref(), &identities, &mut converted)?);
        }
        // Stable: what happened at one moment stays in the order it happened.
        moments.sort_by_key(|m| m.at);
        Ok(moments)
    }
}

/// The contact's enrollments that converted since the last look: the
/// analytics' conversions, which a finished enrollment (a holdout) has too.
fn conversions(
    store: &dyn Store,
    identities: &Identities,
    seen: &mut std::collections::BTreeSet<String>,
) -> anyhow::Result<Vec<Moment>> {
    let identity = match (&identities.email, &identities.phone) {
        (Some(email), _) => dripline_store::Identity::Email(email.clone()),
        (None, Some(phone)) => dripline_store::Identity::Phone(phone.clone()),
        (None, None) => return Ok(Vec::new()),
    };
    let Some(contact) = store.contact_find_by_identity(&identity)? else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for stored in store.enrollments_of_contact(&contact.id)? {
        let enrollment: dripline_engine::Enrollment = serde_json::from_str(&stored.state)?;
        let Some(at) = enrollment.converted_at else {
            continue;
        };
        if seen.insert(enrollment.id.clone()) {
            let arm = enrollment
                .arm
                .map_or_else(String::new, |arm| format!(" on the way to {arm}"));
            found.push(Moment {
                at,
                kind: "converted".into(),
                what: format!(
                    "{} v{}{arm}",
                    enrollment.journey, enrollment.journey_version
                ),
                detail: Vec::new(),
            });
        }
    }
    Ok(found)
}

fn file_name(file: &str) -> String {
    Path::new(file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "journey.toml".into())
}

/// The event that makes the test contact: its identities, attributes, zone
/// and consent, from the person (source `api`), under a name no journey
/// starts on.
fn contact_event(contact: &TestContact, identities: &Identities, at: i64) -> Event {
    let mut consent = Map::new();
    for (channel, has) in [
        ("email", identities.email.is_some()),
        ("sms", identities.phone.is_some()),
    ] {
        if has {
            consent.insert(channel.into(), json!("granted"));
        }
    }
    for (channel, state) in &contact.consent {
        consent.insert(channel.clone(), json!(state));
    }
    let mut traits = contact.attributes.clone();
    if let Some(zone) = &contact.time_zone {
        traits.insert("timezone".into(), json!(zone));
    }
    Event {
        id: "sim-contact".into(),
        source: "api".into(),
        name: "simulation.contact".into(),
        identities: identities.clone(),
        properties: json!({ "traits": traits, "consent": consent }),
        occurred_at: at,
        received_at: at,
    }
}

fn moment_of(at: i64, action: &Action) -> Option<Moment> {
    let moment = |kind: &str, what: String| Moment {
        at,
        kind: kind.into(),
        what,
        detail: Vec::new(),
    };
    Some(match action {
        Action::Enroll(e) => moment(
            "entered",
            format!("{} v{} on {}", e.journey, e.journey_version, e.trigger.name),
        ),
        Action::RunStep {
            step_id,
            uses,
            attempt,
            ..
        } => moment(
            "step",
            match attempt {
                1 => format!("{step_id}: runs {uses}"),
                n => format!("{step_id}: runs {uses}, attempt {n}"),
            },
        ),
        Action::ScheduleTimer(timer) => {
            let (step, why) = match &timer.kind {
                TimerKind::Resume { step } => (step, "waits"),
                TimerKind::Timeout { step } => (step, "waits for an event"),
                TimerKind::Retry { step, .. } => (step, "retries"),
            };
            let minutes = (timer.due_at - at) / 60_000;
            moment("wait", format!("{step}: {why}, {}", span(minutes)))
        }
        Action::Exit { reason, .. } => moment("exited", reason.clone()),
        Action::HandOff { to_journey, .. } => moment("handoff", format!("to {to_journey}")),
        Action::Metric { step, name, .. } => match (name, step) {
            (MetricName::SplitWay { way }, Some(step)) => {
                moment("split", format!("{step}: way {way}"))
            }
            (MetricName::Holdout, Some(step)) => moment("split", format!("{step}: held out")),
            (MetricName::GoalReached, _) => moment("goal", "reached".into()),
            (MetricName::GoalAlreadyMet, _) => moment("goal", "already met: not entered".into()),
            (MetricName::WaitMatched, Some(step)) => {
                moment("wait", format!("{step}: the event came"))
            }
            (MetricName::WaitTimedOut, Some(step)) => moment("wait", format!("{step}: timed out")),
            (MetricName::Entered, Some(step)) => moment("step", format!("{step}: entered")),
            _ => return None,
        },
        Action::ConditionFailed { field, message, .. } => {
            moment("condition", format!("{field} failed: {message}"))
        }
        Action::UpdateEnrollment(_) | Action::CancelTimer { .. } => return None,
    })
}

fn message_moment(message: &dripline_store::OutboxMessage) -> Moment {
    let record = OutboxRecord::read(message).ok();
    let template = record
        .as_ref()
        .and_then(|r| r.template.clone())
        .unwrap_or_default();
    let step = record.as_ref().map(|r| r.step.clone()).unwrap_or_default();
    let decision = match record.as_ref().and_then(|r| r.delivery.as_ref()) {
        Some(dripline_delivery::DeliveryDecision::Sent { .. }) => "sent".to_owned(),
        Some(dripline_delivery::DeliveryDecision::Suppressed { reason }) => {
            format!("suppressed: {reason}")
        }
        Some(dripline_delivery::DeliveryDecision::Deferred { until }) => {
            format!("deferred until {}", utc(*until))
        }
        None => "queued".to_owned(),
    };
    let mut detail = Vec::new();
    if let Some(record) = &record {
        if let Some(subject) = &record.subject {
            detail.push(format!("subject: {subject}"));
        }
        if let Some(url) = &record.url {
            detail.push(format!("post to: {url}"));
        }
        detail.extend(record.body.lines().map(|l| format!("| {l}")));
    }
    Moment {
        at: message.created_at_ms,
        kind: "message".into(),
        what: format!("{} {template} from {step}: {decision}", message.channel),
        detail,
    }
}

/// A time in UTC, to the second.
pub fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A time in `zone`, to the minute, with its offset.
fn local(ms: i64, zone: chrono_tz::Tz) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&zone)
                .format("%Y-%m-%d %H:%M %:z")
                .to_string()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn span(minutes: i64) -> String {
    match (minutes / 1440, minutes % 1440 / 60, minutes % 60) {
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, 0, 0) => format!("{d}d"),
        (d, h, m) => format!("{d}d{h}h{m}m"),
    }
}

/// The timeline as text, a moment a line, its times in `zone` (the
/// journey's, as a marketer reads it), details indented.
pub fn render(moments: &[Moment], zone: chrono_tz::Tz) -> String {
    let mut out = String::new();
    for moment in moments {
        let at = local(moment.at, zone);
        out.push_str(&format!("{at}  {:<9} {}\n", moment.kind, moment.what));
        for line in &moment.detail {
            out.push_str(&format!(
                "{:width$}  {:<9} {line}\n",
                "",
                "",
                width = at.len()
            ));
        }
    }
    out
}

/// The zone a journey's timeline is printed in: its own, or UTC.
pub fn zone_of(journey: &str) -> chrono_tz::Tz {
    dripline_engine::parse_journey("journey.toml", journey)
        .ok()
        .and_then(|j| j.time_zone.map(|z| z.tz()))
        .unwrap_or(chrono_tz::UTC)
}

/// The journey that previews `template` on `channel`: its trigger, one send.
pub fn preview_journey(template: &str, channel: &str) -> String {
    format!(
        "name = \"Preview\"\nversion = 1\n[trigger]\nevent = \"preview.requested\"\n\n\
         [[steps]]\nid = \"preview\"\nuses = \"send\"\nconfig = {{ channel = {channel:?}, template = {template:?} }}\n"
    )
}

/// Renders `template` on `channel` for `contact`, the trigger event carrying
/// `properties` (what the template reads as `trigger.properties`): the
/// message's moment, with its subject and text.
pub fn preview(
    simulator: &Simulator,
    template: &str,
    channel: &str,
    contact: &TestContact,
    properties: Map<String, Value>,
) -> anyhow::Result<Moment> {
    let script = Script {
        start: None,
        until: Some(Duration::from_millis(0)),
        events: vec![ScriptEvent {
            after: Duration::from_millis(0),
            name: "preview.requested".into(),
            source: Some("api".into()),
            properties,
        }],
    };
    let moments = simulator.run(
        "preview.toml",
        &preview_journey(template, channel),
        &[],
        contact,
        &script,
    )?;
    moments
        .into_iter()
        .find(|m| m.kind == "message")
        .ok_or_else(|| {
            anyhow!("the send step made no message (is the template {template:?} there?)")
        })
}

impl dripline_admin::api::simulate::Simulate for Simulator {
    fn simulate(
        &self,
        id: &str,
        journey: &str,
        others: &[(String, String)],
        contact: &Value,
        script: &Value,
    ) -> Result<Value, (String, String)> {
        let contact: TestContact = serde_json::from_value(contact.clone())
            .map_err(|e| ("contact".to_owned(), e.to_string()))?;
        let script: Script = serde_json::from_value(script.clone())
            .map_err(|e| ("script".to_owned(), e.to_string()))?;
        let moments = self
            .run(&format!("{id}.toml"), journey, others, &contact, &script)
            .map_err(|e| ("journey".to_owned(), format!("{e:#}")))?;
        serde_json::to_value(moments).map_err(|e| ("journey".to_owned(), e.to_string()))
    }
}
