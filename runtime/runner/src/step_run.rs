//! One step run, in three parts: prepare (the config the step sees, with its
//! template files and `preferred` settled, and the policy that will weigh its
//! sends), invoke (the component, in a fresh sandboxed instance), and apply
//! (its sends and posts become outbox rows, its profile changes the contact's,
//! in the input's unit of work). A step that fails or asks to be retried
//! takes no effect.

use std::sync::Arc;

use dripline_delivery::names::PREFERRED;
use dripline_delivery::outbox_record::{Origin, OutboxEntry};
use dripline_delivery::policy::{PolicyCall, SendContext, StoredHistory};
use dripline_engine::{Enrollment, Journey, StepOutcome, WaitRequest};
use dripline_sandbox::bindings::{Outcome, StepContext, StepError, WaitFor, messaging};
use dripline_sandbox::{Effect, PluginError, StepPlugin, StepRun};
use serde_json::Value;

use crate::Runner;
use crate::contacts;
use crate::error::InputError;
use crate::unit::Unit;

/// What the engine asked to run.
pub(crate) struct StepCall<'a> {
    /// The step's id in the journey.
    pub(crate) step_id: &'a str,
    /// The component (`uses = "send"`).
    pub(crate) uses: &'a str,
    /// Its config from the journey file.
    pub(crate) config: Value,
    /// Which attempt this is (retries count up).
    pub(crate) attempt: u32,
    /// The engine's key of this run: it counts the step's visits as well as
    /// its attempts, so a loop back to a send sends again.
    pub(crate) idempotency_key: &'a str,
}

/// A step ready to invoke: the component, what it is told, and the policy its
/// sends pass.
struct Prepared<'p> {
    plugin: &'p StepPlugin,
    journey: Arc<Journey>,
    context: StepContext,
    template: Option<String>,
    messenger: Arc<PolicyCall>,
    /// What the step's config says its messages are.
    category: dripline_delivery::Category,
}

impl Runner {
    /// Runs one step component and applies its effects to the unit of work.
    pub(crate) fn run_step(
        &self,
        unit: &mut Unit<'_>,
        enrollment: &Enrollment,
        call: StepCall<'_>,
    ) -> Result<StepOutcome, InputError> {
        let Some(plugin) = self.plugins.steps.get(call.uses) else {
            return Ok(StepOutcome::Failed {
                reason: format!("no step component named `{}` is loaded", call.uses),
            });
        };
        let key = call.idempotency_key;
        let step_id = call.step_id;
        if let Some(outcome) = self.unreachable(unit, enrollment, &call)? {
            return Ok(outcome);
        }
        let prepared = self.prepare(unit, enrollment, plugin, call)?;
        let (outcome, run) = invoke(&prepared, key);
        if let StepOutcome::Failed { reason } = &outcome {
            // The enrollment ends with this reason; say so where an operator
            // looks, not only in the engine's exit.
            tracing::warn!(
                journey = %enrollment.journey,
                enrollment = %enrollment.id,
                contact = %enrollment.contact_id,
                step = %step_id,
                "step failed: {reason}"
            );
        }
        if !matches!(outcome, StepOutcome::Retry { .. }) {
            let failed = matches!(outcome, StepOutcome::Failed { .. });
            self.count_for_alerts(unit, &prepared.journey.id, failed);
        }
        if let (Some(run), false) = (
            run,
            matches!(
                outcome,
                StepOutcome::Failed { .. } | StepOutcome::Retry { .. }
            ),
        ) {
            self.apply(unit, enrollment, &prepared, step_id, &run)?;
        }
        Ok(outcome)
    }

    /// A send to `preferred` for a contact no channel can reach (no consent,
    /// no address) is not run: the step would look for a template of a
    /// channel that does not exist and fail without a word. It is kept as a
    /// suppressed outbox row with the policy's reason, like any send the
    /// policy holds back, and the journey goes on.
    fn unreachable(
        &self,
        unit: &mut Unit<'_>,
        enrollment: &Enrollment,
        call: &StepCall<'_>,
    ) -> Result<Option<StepOutcome>, InputError> {
        let config = &call.config;
        if config.get("channel").and_then(Value::as_str) != Some(PREFERRED) {
            return Ok(None);
        }
        let category = declared_category(config);
        let marketing = category == messaging::Category::Marketing;
        let contact = unit.contact(&enrollment.contact_id)?.wit();
        if self.policy.resolve_preferred(&contact, marketing).is_some() {
            return Ok(None);
        }
        let message = messaging::Message {
            channel: PREFERRED.to_string(),
            subject: None,
            body: String::new(),
            html: None,
            category,
        };
        let journey = self.journey_of(enrollment)?.clone();
        let origin = Origin {
            enrollment,
            priority: journey.priority,
            step: call.step_id,
            now: unit.now,
        };
        let template = config.get("template").and_then(Value::as_str);
        let delivery = messaging::Delivery::Suppressed(self.policy.no_preferred_channel(&contact));
        let key = format!("{}/send-0", call.idempotency_key);
        unit.queue_outbox(OutboxEntry::send(
            origin, template, &key, &message, &delivery,
        ));
        self.count_for_alerts(unit, &journey.id, false);
        Ok(Some(StepOutcome::Continue))
    }

    fn prepare<'p>(
        &self,
        unit: &mut Unit<'_>,
        enrollment: &Enrollment,
        plugin: &'p StepPlugin,
        call: StepCall<'_>,
    ) -> Result<Prepared<'p>, InputError> {
        let mut config = call.config;
        self.templates.add_to(&mut config);
        let journey = self.journey_of(enrollment)?.clone();
        let category = declared_category(&config);
        // `preferred` is settled before the step renders, so it picks the
        // template and the length limits of the channel it will really use.
        if config.get("channel").and_then(Value::as_str) == Some(PREFERRED) {
            let marketing = category == messaging::Category::Marketing;
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
        // What this unit is about to send the contact (another journey may
        // have sent on the same event a moment ago); the stored outbox joins
        // it when the step's first send is decided.
        let since = unit.now - SendContext::lookback_ms(&self.policy);
        let history = unit.sends_to(&enrollment.contact_id, since);
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
                .with_allowed_hosts(self.allowed_hosts.clone())
                .with_category(category),
        );
        let context = StepContext {
            journey: enrollment.journey.clone(),
            journey_version: enrollment.journey_version,
            enrollment_id: enrollment.id.clone(),
            step_id: call.step_id.to_string(),
            attempt: call.attempt,
            contact: contact.wit(),
            trigger_event: contacts::wit_event(&enrollment.trigger),
            data: Value::Object(enrollment.data.clone()).to_string(),
            config: config.to_string(),
            now,
        };
        Ok(Prepared {
            plugin,
            journey,
            context,
            template,
            messenger,
            category: category.into(),
        })
    }

    /// The step's sends and posts become outbox rows and its profile changes
    /// the contact's, all in the unit of work.
    fn apply(
        &self,
        unit: &mut Unit<'_>,
        enrollment: &Enrollment,
        prepared: &Prepared<'_>,
        step_id: &str,
        run: &StepRun,
    ) -> Result<(), InputError> {
        let origin = Origin {
            enrollment,
            priority: prepared.journey.priority,
            step: step_id,
            now: unit.now,
        };
        let test_contact = unit.contact(&enrollment.contact_id)?.profile.test;
        for effect in &run.effects {
            let mut entry = match effect {
                Effect::Send {
                    idempotency_key,
                    message,
                    delivery,
                } => {
                    let mut entry = OutboxEntry::send(
                        origin,
                        prepared.template.as_deref(),
                        idempotency_key,
                        message,
                        delivery,
                    );
                    entry.record.category = Some(prepared.category);
                    refuse_unsafe_links(&mut entry);
                    if let Some(tracker) = &self.tracker {
                        tracker.instrument(&mut entry);
                    }
                    entry
                }
                Effect::Post {
                    idempotency_key,
                    url,
                    body,
                } => OutboxEntry::post(origin, idempotency_key, url, body),
                _ => continue,
            };
            if test_contact {
                entry.record.mark_test();
            }
            unit.queue_outbox(entry);
        }
        let contact = unit.contact_mut(&enrollment.contact_id)?;
        for effect in &run.effects {
            contact.apply(effect);
        }
        Ok(())
    }

    /// Counts a step run for the journey's failure rate; past the threshold,
    /// the alert is raised and `alerts.<journey>.steps` counted, once per
    /// window. A journey whose steps fail for many contacts (a template
    /// missing a value, a broken config) shows here before anyone reads the
    /// outbox.
    fn count_for_alerts(&self, unit: &mut Unit<'_>, journey: &str, failed: bool) {
        let Ok(mut alerts) = self.alerts.lock() else {
            return;
        };
        if let Some(alert) = alerts.record(journey, failed, unit.now) {
            alerts.raise(&alert);
            unit.metric(alert.metric());
        }
    }
}

/// Runs the component in a fresh instance. A deadline or a full pool is worth
/// a retry; any other failure of the component fails the step.
fn invoke(prepared: &Prepared<'_>, key: &str) -> (StepOutcome, Option<StepRun>) {
    let messenger = prepared.messenger.clone();
    let run = match prepared.plugin.run(&prepared.context, key, messenger) {
        Ok(run) => run,
        Err(error @ (PluginError::DeadlineExceeded { .. } | PluginError::Instantiate { .. })) => {
            let outcome = StepOutcome::Retry {
                reason: error.to_string(),
                after_ms: None,
            };
            return (outcome, None);
        }
        Err(error) => {
            let outcome = StepOutcome::Failed {
                reason: error.to_string(),
            };
            return (outcome, None);
        }
    };
    let outcome = match &run.result {
        Ok(outcome) => step_outcome(outcome.clone()),
        Err(StepError::InvalidConfig(m)) => StepOutcome::Failed {
            reason: format!("invalid config: {m}"),
        },
        Err(StepError::Other(m)) => StepOutcome::Failed { reason: m.clone() },
    };
    (outcome, Some(run))
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

/// What a step's messages are, as its journey's config says: marketing
/// unless `category = "transactional"`. The plugin's own claim does not count
/// (it would skip consent, caps and quiet hours).
fn declared_category(config: &Value) -> messaging::Category {
    match config.get("category").and_then(Value::as_str) {
        Some("transactional") => messaging::Category::Transactional,
        _ => messaging::Category::Marketing,
    }
}

/// Takes the target off every link of an email's HTML whose scheme is not
/// http, https or mailto (`dripline_delivery::links`), before tracking signs
/// any of them.
fn refuse_unsafe_links(entry: &mut OutboxEntry) {
    let Some(html) = &entry.record.html else {
        return;
    };
    match dripline_delivery::links::refuse_unsafe_links(html) {
        Ok((safe, refused)) => {
            if refused > 0 {
                tracing::warn!(message = %entry.idempotency_key, refused, "links of other schemes than http, https and mailto taken out of an email");
            }
            entry.record.html = Some(safe);
        }
        Err(e) => {
            // HTML that cannot be read for its links is not sent as HTML.
            tracing::warn!(message = %entry.idempotency_key, "email HTML dropped, its links could not be checked: {e}");
            entry.record.html = None;
        }
    }
}
