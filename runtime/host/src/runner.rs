//! The runtime's worker: it consumes the inbox and fires due timers, asks the
//! journey engine what each input means, runs the step components the engine
//! asks for, and makes all of one input's consequences durable in one store
//! transaction, together with the removal of the input itself.
//!
//! That transaction is the whole crash story. Execution is at-least-once: a
//! crash before the commit loses nothing (the inbox record or the claimed timer
//! is still there and is processed again) and a crash after it repeats nothing
//! (the input is gone). A repeated run produces the same result because the
//! engine is deterministic (enrollment ids, timer keys and idempotency keys are
//! derived from the input) and steps do not act while they run: they return
//! effects, which are applied here, in the same transaction.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use dripline_engine::{
    Action, Enrollment, Event, Journey, StepOutcome, Timer, WaitRequest, enroll_by_hand_off,
    on_enrollment_event, on_event, on_step_outcome, on_timer,
};
use dripline_store::{
    DEFAULT_KV_STORE, NewOutboxMessage, OUTBOX_PENDING, OUTBOX_SUPPRESSED, Store, StoreError, Write,
};
use serde_json::{Value, json};

use crate::bindings::{self, Outcome, StepContext, WaitFor, messaging};
use crate::channels::config::AlertConfig;
use crate::clock::Clock;
use crate::contacts::{self, ContactRecord};
use crate::dispatch::Alerts;
use crate::journeys::{Journeys, Templates};
use crate::plugins::Plugins;
use crate::policy::{
    DeliveryPolicy, PREFERRED, PastSend, PolicyCall, SendContext, StoredHistory, fingerprint,
    past_send,
};
use crate::sandbox::PluginError;
use crate::step_plugin::Effect;
use crate::tracking::Tracker;

/// How long a claimed timer stays ours before another worker may take it.
const TIMER_LEASE_MS: i64 = 60_000;

/// Why the runner could not go on. An input that cannot be processed is not
/// one of these: it is set aside (dead-lettered) so the rest keeps flowing.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The worker and everything it needs.
pub struct Runner {
    store: Arc<dyn Store>,
    plugins: Arc<Plugins>,
    journeys: Journeys,
    templates: Templates,
    clock: Arc<dyn Clock>,
    policy: Arc<DeliveryPolicy>,
    tracker: Option<Tracker>,
    /// Hosts every step may post to (`[http_out] allowed_hosts`).
    allowed_hosts: Vec<String>,
    /// Failure rates of each journey's step runs (the dispatcher keeps its
    /// own for deliveries).
    alerts: std::sync::Mutex<Alerts>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Inbox events processed.
    pub events: usize,
    /// Timers fired.
    pub timers: usize,
}

impl Runner {
    /// A runner over `store`, with the given plugins and journeys.
    pub fn new(
        store: Arc<dyn Store>,
        plugins: Arc<Plugins>,
        journeys: Journeys,
        templates: Templates,
        clock: Arc<dyn Clock>,
        policy: Arc<DeliveryPolicy>,
    ) -> Self {
        Self {
            store,
            plugins,
            journeys,
            templates,
            clock,
            policy,
            tracker: None,
            allowed_hosts: Vec::new(),
            alerts: std::sync::Mutex::new(Alerts::new(AlertConfig::default())),
        }
    }

    /// Alerts on a journey's failing step runs by `config` (`[alerts]` in
    /// channels.toml), as the dispatcher does on its failing deliveries.
    pub fn with_alerts(mut self, config: AlertConfig) -> Self {
        self.alerts = std::sync::Mutex::new(Alerts::new(config));
        self
    }

    /// Grants every step's outbound posts these hosts, besides what each step's
    /// own config grants.
    pub fn with_allowed_hosts(mut self, hosts: Vec<String>) -> Self {
        self.allowed_hosts = hosts;
        self
    }

    /// Rewrites the links of outgoing emails into signed tracking links and adds
    /// the open pixel (see [`crate::tracking`]).
    pub fn with_tracker(mut self, tracker: Tracker) -> Self {
        self.tracker = Some(tracker);
        self
    }

    /// The tracker emails are instrumented with, if tracking is on.
    pub fn tracker(&self) -> Option<&Tracker> {
        self.tracker.as_ref()
    }

    /// Re-reads journey files that changed; returns the problems found.
    pub fn reload_journeys(&mut self) -> Result<Vec<String>, StoreError> {
        self.journeys.reload(self.store.as_ref())
    }

    /// The store the runner works on.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Processes inbox events and due timers until neither is left.
    pub fn run_until_idle(&mut self) -> Result<Progress, RunnerError> {
        let mut total = Progress::default();
        loop {
            let events = self.process_inbox(256)?;
            let timers = self.fire_due_timers(1024)?;
            total.events += events;
            total.timers += timers;
            if events == 0 && timers == 0 {
                return Ok(total);
            }
        }
    }

    /// Processes up to `limit` inbox events, oldest first, one transaction each:
    /// the event's consequences and its removal from the inbox commit together.
    pub fn process_inbox(&mut self, limit: usize) -> Result<usize, RunnerError> {
        let records = self.store.inbox_peek(limit)?;
        for (key, bytes) in &records {
            let now = self.clock.now_ms();
            let mut unit = Unit::new(self.store.as_ref(), now);
            unit.writes.push(Write::inbox_consume(key.clone()));
            let outcome = match serde_json::from_slice::<Event>(bytes) {
                Ok(event) => self.on_inbox_event(&mut unit, &event),
                Err(e) => Err(format!("not a canonical event: {e}")),
            };
            match outcome {
                Ok(()) => match unit.commit() {
                    // Another worker consumed it first: its result stands.
                    Err(StoreError::Gone { .. }) => {}
                    other => other?,
                },
                Err(problem) => self.dead_letter(key, bytes, &problem)?,
            }
        }
        Ok(records.len())
    }

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
        let claimed = self.store.claim_due_timers(now, limit, TIMER_LEASE_MS)?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let mut unit = Unit::new(self.store.as_ref(), now);
        let timers: Vec<Option<Timer>> = claimed
            .iter()
            .map(|stored| match serde_json::from_slice(&stored.payload) {
                Ok(timer) => Some(timer),
                Err(e) => {
                    tracing::error!(timer = %stored.key, "dropping a timer that does not parse: {e}");
                    None
                }
            })
            .collect();
        let enrollment_ids: Vec<&str> = timers
            .iter()
            .flatten()
            .map(|t| t.enrollment_id.as_str())
            .collect();
        if let Err(problem) = unit.prefetch(&enrollment_ids) {
            // Each timer reads what it needs again, and fails on its own.
            tracing::warn!("reading a batch of fired timers' enrollments: {problem}");
        }
        for (stored, timer) in claimed.iter().zip(&timers) {
            unit.writes.push(Write::TimerAck {
                key: stored.key.clone(),
            });
            let Some(timer) = timer else {
                continue;
            };
            if let Err(problem) = self.on_timer(&mut unit, timer) {
                tracing::error!(timer = %stored.key, "timer not processed: {problem}");
                unit.metric("runtime.timer_failed".into());
            }
        }
        unit.commit()?;
        claimed.iter().for_each(|timer| fired(timer.due_at_ms));
        Ok(claimed.len())
    }

    fn on_inbox_event(&self, unit: &mut Unit<'_>, event: &Event) -> Result<(), String> {
        let store = self.store.as_ref();
        let mut contact =
            match contacts::find(store, &event.identities).map_err(|e| e.to_string())? {
                Some(contact) => contact,
                None => contacts::new_for(&event.identities),
            };
        contact.absorb(event, store).map_err(|e| e.to_string())?;
        let engagement = contact.engage(event, &self.policy);
        let contact_id = contact.contact.id.clone();
        for channel in &engagement.unsubscribed {
            tracing::info!(contact = %contact_id, %channel, "unsubscribed");
            unit.metric(format!("contacts.unsubscribed.{channel}"));
        }
        if !engagement.unsubscribed.is_empty() {
            withdraw_queued(unit, &contact_id, &engagement.unsubscribed)?;
        }
        unit.put_contact(contact);
        unit.metric(format!("events.{}", event.name));

        let view = unit.contact(&contact_id)?.view();
        let enrollments = unit.enrollments_of(&contact_id)?;
        let mut actions = Vec::new();
        // Contacts on an older version are resumed on that version; the current
        // version's own enrollments are resumed by `on_event` below.
        for enrollment in enrollments.iter().filter(|e| !e.is_done()) {
            let current = self
                .journeys
                .current_of(&enrollment.journey)
                .map(|j| j.version);
            if current == Some(enrollment.journey_version) {
                continue;
            }
            if let Some(journey) = self
                .journeys
                .version(&enrollment.journey, enrollment.journey_version)
            {
                actions.extend(
                    on_enrollment_event(journey, enrollment, &view, event, unit.now)
                        .map_err(|e| e.to_string())?,
                );
            }
        }
        // Higher priority first: when two journeys react to one event, the
        // higher one's sends are in the unit before the lower one decides.
        let mut current: Vec<&Arc<Journey>> = self.journeys.current().collect();
        current.sort_by_key(|j| std::cmp::Reverse(j.priority));
        for journey in current {
            let of_journey: Vec<Enrollment> = enrollments
                .iter()
                .filter(|e| e.journey == journey.id)
                .cloned()
                .collect();
            actions.extend(on_event(journey, &view, event, &of_journey, unit.now));
        }
        self.drive(unit, actions)
    }

    fn on_timer(&self, unit: &mut Unit<'_>, timer: &Timer) -> Result<(), String> {
        let Some(enrollment) = unit.enrollment(&timer.enrollment_id)? else {
            return Ok(());
        };
        let journey = self.journey_of(&enrollment)?;
        let view = unit.contact(&enrollment.contact_id)?.view();
        let actions =
            on_timer(journey, &enrollment, &view, timer, unit.now).map_err(|e| e.to_string())?;
        self.drive(unit, actions)
    }

    fn journey_of(&self, enrollment: &Enrollment) -> Result<&Arc<Journey>, String> {
        self.journeys
            .version(&enrollment.journey, enrollment.journey_version)
            .ok_or_else(|| {
                format!(
                    "journey {} v{} is not known",
                    enrollment.journey, enrollment.journey_version
                )
            })
    }

    /// Carries out the engine's actions, feeding step outcomes back to it, until
    /// every enrollment touched is waiting, done, or scheduled.
    fn drive(&self, unit: &mut Unit<'_>, actions: Vec<Action>) -> Result<(), String> {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Enroll(enrollment) | Action::UpdateEnrollment(enrollment) => {
                    unit.put_enrollment(enrollment)
                }
                Action::RunStep {
                    enrollment_id,
                    step_id,
                    uses,
                    config,
                    attempt,
                    idempotency_key: _,
                } => {
                    let Some(enrollment) = unit.enrollment(&enrollment_id)? else {
                        return Err(format!(
                            "step {step_id} for unknown enrollment {enrollment_id}"
                        ));
                    };
                    let journey = self.journey_of(&enrollment)?;
                    let outcome =
                        self.run_step(unit, &enrollment, &step_id, &uses, config, attempt)?;
                    let view = unit.contact(&enrollment.contact_id)?.view();
                    let next =
                        on_step_outcome(journey, &enrollment, &view, &step_id, &outcome, unit.now)
                            .map_err(|e| e.to_string())?;
                    queue.extend(next);
                }
                Action::ScheduleTimer(timer) => {
                    let payload = serde_json::to_vec(&timer).map_err(|e| e.to_string())?;
                    unit.writes.push(Write::TimerSet {
                        key: timer.key,
                        due_at_ms: timer.due_at,
                        payload,
                    });
                }
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
                    let Some(target) = self.journeys.current_of(&to_journey) else {
                        tracing::warn!(journey = %to_journey, "hand-off to a journey that is not loaded");
                        unit.metric(format!("journey.{to_journey}.handoff_missing"));
                        continue;
                    };
                    let Some(from) = unit.enrollment(&from_enrollment)? else {
                        continue;
                    };
                    let view = unit.contact(&contact_id)?.view();
                    let existing: Vec<Enrollment> = unit
                        .enrollments_of(&contact_id)?
                        .into_iter()
                        .filter(|e| e.journey == target.id)
                        .collect();
                    queue.extend(enroll_by_hand_off(
                        target, &view, &from, &existing, unit.now,
                    ));
                }
                Action::Metric {
                    journey,
                    step,
                    name,
                } => {
                    let name = serde_json::to_value(name)
                        .map(|v| metric_label(&v))
                        .unwrap_or_default();
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

    /// Runs one step component and applies its effects to the unit of work. A
    /// step that fails or asks to be retried takes no effect.
    fn run_step(
        &self,
        unit: &mut Unit<'_>,
        enrollment: &Enrollment,
        step_id: &str,
        uses: &str,
        mut config: Value,
        attempt: u32,
    ) -> Result<StepOutcome, String> {
        let Some(plugin) = self.plugins.steps.get(uses) else {
            return Ok(StepOutcome::Failed {
                reason: format!("no step component named `{uses}` is loaded"),
            });
        };
        if let Some(template) = config
            .get("template")
            .and_then(Value::as_str)
            .map(str::to_string)
            && let Some(map) = config.as_object_mut()
        {
            map.insert(
                "template_files".into(),
                Value::Object(self.templates.files_of(&template)),
            );
        }
        let journey = self.journey_of(enrollment)?.clone();
        // `preferred` is settled before the step renders, so it picks the
        // template and the length limits of the channel it will really use.
        if config.get("channel").and_then(Value::as_str) == Some(PREFERRED) {
            let marketing = config.get("category").and_then(Value::as_str) != Some("transactional");
            let contact = unit.contact(&enrollment.contact_id)?.wit();
            if let (Some(channel), Some(map)) = (
                self.policy.resolve_preferred(&contact, marketing),
                config.as_object_mut(),
            ) {
                map.insert("channel".into(), Value::String(channel));
            }
        }
        let template = config
            .get("template")
            .and_then(Value::as_str)
            .map(str::to_string);
        let history = pending_sends(unit, &enrollment.contact_id, self.policy.as_ref());
        let now = unit.now;
        let contact = unit.contact(&enrollment.contact_id)?;
        let send_context = SendContext {
            journey: journey.id.clone(),
            priority: journey.priority,
            journey_max_per_day: journey.delivery.max_per_day,
            zone: dripline_engine::local_time::zone_for(
                contact.profile.time_zone.as_deref(),
                journey.time_zone.as_ref(),
            ),
            now,
            history,
        };
        let messenger = Arc::new(
            PolicyCall::new(self.policy.clone(), send_context)
                .with_stored_history(StoredHistory {
                    store: self.store.clone(),
                    contact_id: enrollment.contact_id.clone(),
                })
                .with_allowed_hosts(self.allowed_hosts.clone()),
        );
        let context = StepContext {
            journey: enrollment.journey.clone(),
            journey_version: enrollment.journey_version,
            enrollment_id: enrollment.id.clone(),
            step_id: step_id.to_string(),
            attempt,
            contact: contact.wit(),
            trigger_event: contacts::wit_event(&enrollment.trigger),
            data: Value::Object(enrollment.data.clone()).to_string(),
            config: config.to_string(),
            now,
        };
        let run = match plugin.run(&context, messenger) {
            Ok(run) => run,
            Err(
                error @ (PluginError::DeadlineExceeded { .. } | PluginError::Instantiate { .. }),
            ) => {
                return Ok(StepOutcome::Retry {
                    reason: error.to_string(),
                    after_ms: None,
                });
            }
            Err(error) => {
                return Ok(StepOutcome::Failed {
                    reason: error.to_string(),
                });
            }
        };
        let outcome = match run.result {
            Ok(outcome) => step_outcome(outcome),
            Err(bindings::StepError::InvalidConfig(m)) => StepOutcome::Failed {
                reason: format!("invalid config: {m}"),
            },
            Err(bindings::StepError::Other(m)) => StepOutcome::Failed { reason: m },
        };
        if !matches!(outcome, StepOutcome::Retry { .. }) {
            let failed = matches!(outcome, StepOutcome::Failed { .. });
            self.count_for_alerts(unit, &journey.id, failed);
        }
        if matches!(
            outcome,
            StepOutcome::Failed { .. } | StepOutcome::Retry { .. }
        ) {
            return Ok(outcome);
        }
        for effect in &run.effects {
            if let Effect::Send {
                idempotency_key,
                message,
                delivery,
            } = effect
            {
                let mut row = outbox_row(
                    enrollment,
                    &journey,
                    step_id,
                    template.as_deref(),
                    idempotency_key,
                    message,
                    delivery,
                    unit.now,
                );
                if let Some(tracker) = &self.tracker {
                    tracker.instrument(&mut row);
                }
                unit.writes.push(Write::OutboxInsert(row));
            } else if let Some(row) =
                crate::dispatch::post_row(enrollment, step_id, effect, unit.now)
            {
                unit.writes.push(Write::OutboxInsert(row));
            }
        }
        let contact = unit.contact_mut(&enrollment.contact_id)?;
        for effect in &run.effects {
            contact.apply(effect);
        }
        Ok(outcome)
    }

    /// Counts a step run for the journey's failure rate; past the threshold, an
    /// error line and the `alerts.<journey>.steps` metric, once per window. A
    /// journey whose steps fail for many contacts (a template missing a value,
    /// a broken config) shows here before anyone reads the outbox.
    fn count_for_alerts(&self, unit: &mut Unit<'_>, journey: &str, failed: bool) {
        let alert = match self.alerts.lock() {
            Ok(mut alerts) => alerts.record(journey, failed, unit.now),
            Err(_) => None,
        };
        if let Some(alert) = alert {
            tracing::error!(
                journey = %alert.journey,
                runs = alert.sends,
                failures = alert.failures,
                "alert: {:.1}% of the journey's step runs failed in this window",
                alert.rate * 100.0
            );
            unit.metric(format!("alerts.{journey}.steps"));
        }
    }

    fn dead_letter(&self, key: &str, bytes: &[u8], problem: &str) -> Result<(), RunnerError> {
        tracing::error!(inbox = %key, "set aside: {problem}");
        let record = json!({ "problem": problem, "record": String::from_utf8_lossy(bytes) });
        self.store.apply(&[
            Write::KvSet {
                store: DEFAULT_KV_STORE.into(),
                key: format!("deadletter/{}", key.trim_start_matches("inbox/")),
                value: record.to_string().into_bytes(),
            },
            Write::inbox_consume(key.to_string()),
            Write::MetricAdd {
                name: "runtime.dead_lettered".into(),
                delta: 1,
            },
        ])?;
        Ok(())
    }
}

fn step_outcome(outcome: Outcome) -> StepOutcome {
    match outcome {
        Outcome::Continue => StepOutcome::Continue,
        Outcome::Branch(name) => StepOutcome::Branch { name },
        Outcome::Wait(WaitFor::Duration(ms)) => StepOutcome::Wait {
            wait: WaitRequest::Duration { ms },
        },
        Outcome::Wait(WaitFor::Until(at)) => StepOutcome::Wait {
            wait: WaitRequest::Until { at },
        },
        Outcome::Wait(WaitFor::Event(wait)) => StepOutcome::Wait {
            wait: WaitRequest::Event {
                name: wait.name,
                condition: wait.condition,
                timeout_ms: wait.timeout,
            },
        },
        Outcome::Exit(reason) => StepOutcome::Exit { reason },
        Outcome::Retry(retry) => StepOutcome::Retry {
            reason: retry.reason,
            after_ms: retry.after,
        },
    }
}

#[allow(clippy::too_many_arguments)] // one row's facts, each from its own place
fn outbox_row(
    enrollment: &Enrollment,
    journey: &Journey,
    step_id: &str,
    template: Option<&str>,
    idempotency_key: &str,
    message: &messaging::Message,
    delivery: &messaging::Delivery,
    now: i64,
) -> NewOutboxMessage {
    // A suppressed send is kept for the record but never delivered; a deferred
    // one waits in the outbox until the policy's time.
    let (status, deliver_at_ms) = match delivery {
        messaging::Delivery::Sent(_) => (OUTBOX_PENDING, now),
        messaging::Delivery::Suppressed(_) => (OUTBOX_SUPPRESSED, now),
        messaging::Delivery::Deferred(until) => (OUTBOX_PENDING, (*until).max(now)),
    };
    let delivery = match delivery {
        messaging::Delivery::Sent(id) => json!({ "status": "sent", "id": id }),
        messaging::Delivery::Suppressed(reason) => {
            json!({ "status": "suppressed", "reason": reason })
        }
        messaging::Delivery::Deferred(until) => json!({ "status": "deferred", "until": until }),
    };
    NewOutboxMessage {
        status: status.to_string(),
        deliver_at_ms,
        idempotency_key: idempotency_key.to_string(),
        contact_id: enrollment.contact_id.clone(),
        channel: message.channel.clone(),
        content: json!({
            "journey": enrollment.journey,
            "journey_version": enrollment.journey_version,
            "priority": journey.priority,
            "enrollment": enrollment.id,
            "step": step_id,
            "template": template,
            "fingerprint": fingerprint(message),
            "subject": message.subject,
            "body": message.body,
            "html": message.html,
            "category": match message.category { messaging::Category::Marketing => "marketing", messaging::Category::Transactional => "transactional" },
            "delivery": delivery,
        }),
        created_at_ms: now,
    }
}

/// An unsubscribe ends marketing at once: messages still queued for the
/// contact on those channels (deferred by quiet hours, or waiting for a retry)
/// are withdrawn with the reason, not delivered after the "no".
fn withdraw_queued(
    unit: &mut Unit<'_>,
    contact_id: &str,
    channels: &[String],
) -> Result<(), String> {
    let queued = unit
        .store
        .outbox_of_contact(contact_id)
        .map_err(|e| e.to_string())?;
    for message in queued {
        if message.status == OUTBOX_PENDING
            && channels.contains(&message.channel)
            && message.content["category"] == "marketing"
        {
            unit.writes.push(Write::OutboxRecordAttempt {
                id: message.id,
                status: OUTBOX_SUPPRESSED.into(),
                deliver_at_ms: message.deliver_at_ms,
                attempts: message.attempts,
                last_error: Some("unsubscribed before delivery".into()),
                at_ms: unit.now,
            });
        }
    }
    Ok(())
}

/// What this unit is about to send the contact (another journey may have
/// sent on the same event a moment ago); the stored outbox joins it when the
/// step's first send is decided ([`StoredHistory`]).
fn pending_sends(unit: &Unit<'_>, contact_id: &str, policy: &DeliveryPolicy) -> Vec<PastSend> {
    let since = unit.now - SendContext::lookback_ms(policy);
    unit.writes
        .iter()
        .filter_map(|w| match w {
            Write::OutboxInsert(row) if row.contact_id == contact_id => {
                past_send(&row.content, row.deliver_at_ms)
            }
            _ => None,
        })
        .filter(|p| p.deliver_at >= since)
        .collect()
}

/// The store enforces one active enrollment per (journey, key). The engine's
/// empty key means "one per contact", which is unique per contact, not global.
fn store_key(enrollment: &Enrollment) -> String {
    if enrollment.key.is_empty() {
        format!("contact:{}", enrollment.contact_id)
    } else {
        format!("key:{}", enrollment.key)
    }
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

fn decode_enrollment(stored: &dripline_store::Enrollment) -> Result<Enrollment, String> {
    serde_json::from_str(&stored.state).map_err(|e| format!("enrollment {}: {e}", stored.id))
}

/// One input's work: reads go through to the store, changes stay here until
/// [`Unit::commit`] writes them all in one transaction.
struct Unit<'a> {
    store: &'a dyn Store,
    now: i64,
    contacts: HashMap<String, ContactRecord>,
    enrollments: HashMap<String, Enrollment>,
    dirty_contacts: BTreeSet<String>,
    dirty_enrollments: BTreeSet<String>,
    metrics: HashMap<String, i64>,
    writes: Vec<Write>,
}

impl<'a> Unit<'a> {
    fn new(store: &'a dyn Store, now: i64) -> Self {
        Self {
            store,
            now,
            contacts: HashMap::new(),
            enrollments: HashMap::new(),
            dirty_contacts: BTreeSet::new(),
            dirty_enrollments: BTreeSet::new(),
            metrics: HashMap::new(),
            writes: Vec::new(),
        }
    }

    fn put_contact(&mut self, contact: ContactRecord) {
        self.dirty_contacts.insert(contact.contact.id.clone());
        self.contacts.insert(contact.contact.id.clone(), contact);
    }

    fn contact(&mut self, id: &str) -> Result<&ContactRecord, String> {
        self.load_contact(id)?;
        self.contacts
            .get(id)
            .ok_or_else(|| format!("contact {id} is not known"))
    }

    fn contact_mut(&mut self, id: &str) -> Result<&mut ContactRecord, String> {
        self.load_contact(id)?;
        self.dirty_contacts.insert(id.to_string());
        self.contacts
            .get_mut(id)
            .ok_or_else(|| format!("contact {id} is not known"))
    }

    fn load_contact(&mut self, id: &str) -> Result<(), String> {
        if !self.contacts.contains_key(id)
            && let Some(stored) = self.store.contact_get(id).map_err(|e| e.to_string())?
        {
            self.contacts
                .insert(id.to_string(), ContactRecord::from_stored(stored));
        }
        Ok(())
    }

    fn put_enrollment(&mut self, enrollment: Enrollment) {
        self.dirty_enrollments.insert(enrollment.id.clone());
        self.enrollments.insert(enrollment.id.clone(), enrollment);
    }

    fn enrollment(&mut self, id: &str) -> Result<Option<Enrollment>, String> {
        if let Some(enrollment) = self.enrollments.get(id) {
            return Ok(Some(enrollment.clone()));
        }
        let Some(stored) = self.store.enrollment_get(id).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let enrollment = decode_enrollment(&stored)?;
        self.enrollments.insert(id.to_string(), enrollment.clone());
        Ok(Some(enrollment))
    }

    /// Reads the enrollments with these ids, and their contacts, in two batched
    /// reads rather than two reads per id: what a batch of fired timers needs.
    fn prefetch(&mut self, enrollment_ids: &[&str]) -> Result<(), String> {
        let wanted: Vec<&str> = enrollment_ids
            .iter()
            .copied()
            .filter(|id| !self.enrollments.contains_key(*id))
            .collect();
        let found = self
            .store
            .enrollments_get(&wanted)
            .map_err(|e| e.to_string())?;
        for stored in found.into_iter().flatten() {
            let enrollment = decode_enrollment(&stored)?;
            self.enrollments.insert(stored.id, enrollment);
        }
        let contact_ids: BTreeSet<&str> = enrollment_ids
            .iter()
            .filter_map(|id| self.enrollments.get(*id))
            .map(|e| e.contact_id.as_str())
            .filter(|id| !self.contacts.contains_key(*id))
            .collect();
        let contact_ids: Vec<&str> = contact_ids.into_iter().collect();
        let found = self
            .store
            .contacts_get(&contact_ids)
            .map_err(|e| e.to_string())?;
        let records: Vec<ContactRecord> = found
            .into_iter()
            .flatten()
            .map(ContactRecord::from_stored)
            .collect();
        for record in records {
            self.contacts.insert(record.contact.id.clone(), record);
        }
        Ok(())
    }

    /// The contact's enrollments, this unit's changes included.
    fn enrollments_of(&mut self, contact_id: &str) -> Result<Vec<Enrollment>, String> {
        let stored = self
            .store
            .enrollments_of_contact(contact_id)
            .map_err(|e| e.to_string())?;
        let mut ids: BTreeSet<String> = stored.iter().map(|e| e.id.clone()).collect();
        ids.extend(
            self.enrollments
                .values()
                .filter(|e| e.contact_id == contact_id)
                .map(|e| e.id.clone()),
        );
        let mut list = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(enrollment) = self.enrollment(&id)? {
                list.push(enrollment);
            }
        }
        Ok(list)
    }

    fn metric(&mut self, name: String) {
        *self.metrics.entry(name).or_default() += 1;
    }

    fn commit(mut self) -> Result<(), StoreError> {
        for id in &self.dirty_contacts {
            if let Some(contact) = self.contacts.get(id) {
                self.writes.push(Write::ContactPut(contact.to_stored()));
            }
        }
        for id in &self.dirty_enrollments {
            if let Some(enrollment) = self.enrollments.get(id) {
                self.writes.push(Write::EnrollmentPut {
                    enrollment: dripline_store::Enrollment {
                        id: enrollment.id.clone(),
                        journey: enrollment.journey.clone(),
                        contact_id: enrollment.contact_id.clone(),
                        active: !enrollment.is_done(),
                        key: Some(store_key(enrollment)),
                        version: 0,
                        state: serde_json::to_string(enrollment)
                            .map_err(|e| StoreError::Corrupt(format!("enrollment {id}: {e}")))?,
                    },
                    if_version: None,
                });
            }
        }
        for (name, delta) in self.metrics.drain() {
            self.writes.push(Write::MetricAdd { name, delta });
        }
        self.store.apply(&self.writes)?;
        Ok(())
    }
}
