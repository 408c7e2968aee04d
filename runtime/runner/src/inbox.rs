//! The inbox consumer: each canonical event the gateway wrote updates its
//! contact's profile, ends marketing on a channel it unsubscribes, and is
//! shown to every journey, in one transaction with its removal from the inbox.

use std::sync::Arc;

use dripline_delivery::analytics;
use dripline_engine::{
    ContactView, Enrollment, Event, Journey, attribute, on_enrollment_event, on_event,
};
use dripline_store::control::TEST_MARKED;
use dripline_store::{OutboxStatus, Store, StoreError, Write};

use crate::contacts;
use crate::error::InputError;
use crate::retries::Verdict;
use crate::unit::Unit;
use crate::{Runner, RunnerError};

/// How many times in a row one input is processed again after losing a race
/// with another worker, before the pass gives up on it (it stays in the
/// inbox, or its timer claimed, for a later pass).
pub(crate) const MAX_CONFLICTS: u32 = 8;

impl Runner {
    /// Processes up to `limit` inbox events, oldest first, one transaction each:
    /// the event's consequences and its removal from the inbox commit together.
    /// A store failure stops the pass and leaves the event in the inbox, to be
    /// processed again. An event that cannot be processed is tried again after
    /// a backoff ([`crate::retries`]), and set aside as a dead letter after the
    /// last attempt; the events behind it go on meanwhile.
    pub fn process_inbox(&mut self, limit: usize) -> Result<usize, RunnerError> {
        // Events waiting out a backoff sit at the head of the inbox; reading
        // past them keeps the pass's share of the others.
        let waiting = self.retries.waiting(self.store.as_ref())?.min(10_000);
        // Sharing the store, the head of the inbox may be other workers':
        // reading further finds records of this one's own.
        let window = match self.inbox_claims {
            Some(_) => limit * 4,
            None => limit,
        };
        let records = self.store.inbox_peek(window + waiting)?;
        let mut processed = 0;
        for (key, bytes) in &records {
            if self.stopping() || processed == limit {
                break;
            }
            let now = self.clock.now_ms();
            let name = crate::dead_letters::inbox_name(key);
            if self.retries.backing_off(self.store.as_ref(), name, now)? {
                continue;
            }
            if let Some(claims) = &mut self.inbox_claims
                && !claims.take(self.store.as_ref(), key, now)?
            {
                continue;
            }
            processed += 1;
            let mut conflicts = 0;
            loop {
                let mut unit = Unit::new(self.store.as_ref(), now);
                unit.writes.push(Write::inbox_consume(key.clone()));
                let outcome = caught(|| match serde_json::from_slice::<Event>(bytes) {
                    Ok(event) => self.on_inbox_event(&mut unit, &event),
                    Err(e) => Err(InputError::bad(format!("not a canonical event: {e}"))),
                });
                match outcome {
                    Ok(()) => {
                        let retried = self.retries.succeeded(self.store.as_ref(), name)?;
                        unit.writes.extend(retried);
                        match unit.commit() {
                            // Another worker consumed it first: its result stands.
                            Err(StoreError::Gone { .. }) => {}
                            // Another worker changed the contact or an
                            // enrollment meanwhile: the event is processed
                            // again on what is stored now.
                            Err(e) if e.is_conflict() && conflicts < MAX_CONFLICTS => {
                                conflicts += 1;
                                continue;
                            }
                            other => other?,
                        }
                        self.retries.forget(name);
                        if let Some(claims) = &mut self.inbox_claims {
                            claims.done(key);
                        }
                    }
                    Err(InputError::Store(e)) => return Err(e.into()),
                    Err(InputError::Bad(problem)) => self.failed_event(key, bytes, &problem)?,
                }
                break;
            }
        }
        if let Some(claims) = &mut self.inbox_claims {
            claims.tidy(self.store.as_ref(), self.clock.now_ms())?;
        }
        Ok(processed)
    }

    /// Counts a failed attempt at inbox record `key`: a retry later, or the
    /// dead letter after the last attempt.
    fn failed_event(&mut self, key: &str, bytes: &[u8], problem: &str) -> Result<(), RunnerError> {
        let now = self.clock.now_ms();
        let name = crate::dead_letters::inbox_name(key);
        let verdict = self
            .retries
            .failed(self.store.as_ref(), name, problem, now)?;
        match &verdict {
            Verdict::Later { retry, writes } => {
                tracing::warn!(inbox = %key, retry_at = retry.next_at, "not processed, to be tried again: {problem}");
                self.store.apply(writes)?;
            }
            Verdict::GiveUp { attempts, writes } => {
                let mut writes = writes.clone();
                writes.extend(crate::dead_letters::set_aside(
                    key, bytes, problem, *attempts, now,
                ));
                match self.store.apply(&writes) {
                    // Another worker consumed it first.
                    Err(StoreError::Gone { .. }) => {}
                    other => drop(other?),
                }
                self.raise_dead_letter(name, problem, *attempts);
            }
        }
        self.retries.committed(name, &verdict);
        Ok(())
    }

    fn on_inbox_event(&self, unit: &mut Unit<'_>, event: &Event) -> Result<(), InputError> {
        // Whatever trigger made it, an event carries only names its source
        // may emit: a plugin's checkout or unsubscribe is not taken.
        if let Err(owner) = dripline_engine::trust::may_emit(&event.source, &event.name) {
            tracing::warn!(event = %event.id, source = %event.source, name = %event.name, "refused: only {owner} emits this name");
            unit.metric(format!("events.refused.{}", event.source));
            return Ok(());
        }
        // The trust table lets only `admin` ask for a merge or a test mark,
        // and only `admin` and `shopify` for an erasure or a data request.
        if event.name == crate::merge::MERGE_REQUESTED {
            return self.on_merge_request(unit, event);
        }
        if event.name == TEST_MARKED {
            return on_test_marked(unit, event);
        }
        if crate::erasure::is_compliance(event) {
            return self.on_compliance(unit, event);
        }
        let store = self.store.as_ref();
        let mut contact = match contacts::find(store, &event.identities)? {
            Some(contact) => contact,
            // Only an event about nobody known can be about an erased person:
            // their identities are no longer indexed as they were.
            None if self.of_erased(store, &event.identities)? => {
                unit.metric("events.of_erased_contact".into());
                return Ok(());
            }
            None => self.contact_ids()?.new_for(&event.identities),
        };
        let conflicts = contact.absorb(event, store)?;
        contact.touch(unit.now);
        let a_goal = self
            .journeys
            .current()
            .any(|j| j.goal.as_ref().is_some_and(|g| g.matches(event)));
        if a_goal {
            contact.remember(event);
        }
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
        self.resolve_conflicts(unit, &contact_id, &conflicts, event)?;
        self.show_event(unit, &contact_id, event)?;
        self.refresh_audience(unit, &contact_id)
    }

    /// Shows `event` about `contact_id` to every journey: goals, waits for
    /// events, and new enrollments.
    pub(crate) fn show_event(
        &self,
        unit: &mut Unit<'_>,
        contact_id: &str,
        event: &Event,
    ) -> Result<(), InputError> {
        let contact_id = contact_id.to_owned();
        let record = unit.contact(&contact_id)?;
        let (view, test) = (record.view(), record.profile.test);
        let mut enrollments = unit.enrollments_of(&contact_id)?;
        self.count_conversions(unit, &mut enrollments, &view, event, test);
        let mut actions = Vec::new();
        // Contacts on an older version are resumed on that version; the current
        // version's own enrollments are resumed by `on_event` below.
        for enrollment in enrollments.iter().filter(|e| !e.is_done()) {
            let current = self
                .journeys
                .for_contact(&enrollment.journey, &contact_id)
                .map(|j| j.version);
            if current == Some(enrollment.journey_version) {
                continue;
            }
            if let Some(journey) = self
                .journeys
                .version(&enrollment.journey, enrollment.journey_version)
            {
                actions.extend(on_enrollment_event(
                    journey, enrollment, &view, event, unit.now,
                )?);
            }
        }
        // Higher priority first: when two journeys react to one event, the
        // higher one's sends are in the unit before the lower one decides.
        let mut current: Vec<&Arc<Journey>> = self.journeys.current_for(&contact_id).collect();
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

    /// Counts `event` as the conversion of each of the contact's enrollments
    /// it converts (finished ones too: a holdout's order counts), and marks
    /// them in `enrollments`, so that what the journeys do next keeps the mark.
    fn count_conversions(
        &self,
        unit: &mut Unit<'_>,
        enrollments: &mut [Enrollment],
        view: &ContactView,
        event: &Event,
        test: bool,
    ) {
        for enrollment in enrollments.iter_mut() {
            let Some(journey) = self
                .journeys
                .version(&enrollment.journey, enrollment.journey_version)
            else {
                continue;
            };
            let Some(conversion) = attribute(journey, enrollment, view, event) else {
                continue;
            };
            unit.put_enrollment(enrollment.clone());
            // A test contact's order is no customer's.
            if test {
                continue;
            }
            let overall = analytics::Key {
                journey: &conversion.journey,
                version: conversion.journey_version,
                step: None,
                channel: None,
            };
            let mut counts = vec![
                (analytics::counter(&overall, unit.now, "converted"), 1),
                (
                    analytics::counter(&overall, unit.now, "revenue_cents"),
                    conversion.revenue_cents,
                ),
            ];
            if let Some(arm) = &conversion.arm {
                counts.push((
                    analytics::counter(&overall, unit.now, &format!("converted.{arm}")),
                    1,
                ));
                counts.push((
                    analytics::counter(&overall, unit.now, &format!("revenue_cents.{arm}")),
                    conversion.revenue_cents,
                ));
            }
            // Each step the contact went through counts the conversion too,
            // so that a message's node shows how many converted after it.
            for step in enrollment.visits.keys() {
                let at_step = analytics::Key {
                    step: Some(step),
                    ..overall
                };
                counts.push((analytics::counter(&at_step, unit.now, "converted"), 1));
            }
            for (name, delta) in counts {
                unit.metric_by(name, delta);
            }
        }
    }

    /// Alerts on a dead letter.
    pub(crate) fn raise_dead_letter(&self, name: &str, problem: &str, attempts: u32) {
        match self.alerts.lock() {
            Ok(alerts) => alerts.raise_dead_letter(name, problem, attempts),
            Err(poisoned) => poisoned
                .into_inner()
                .raise_dead_letter(name, problem, attempts),
        }
    }
}

/// The inbox records a worker that shares its store has claimed. A claim is
/// a mark in the store's dedupe table (`inbox-claim/<key>`, lapsing after the
/// lease), which only one worker can make while it holds; the worker keeps
/// its own claims in memory, so that taking a record again (a retry after a
/// backoff) does not need a new claim while the old one holds.
pub(crate) struct Claims {
    lease_ms: i64,
    held: std::collections::HashMap<String, i64>,
    purged_at: i64,
}

/// How often a worker deletes the lapsed claim marks of all workers.
const PURGE_EVERY_MS: i64 = 60_000;

impl Claims {
    pub(crate) fn new(lease_ms: i64) -> Self {
        Self {
            lease_ms: lease_ms.max(1),
            held: std::collections::HashMap::new(),
            purged_at: 0,
        }
    }

    /// Whether this worker holds inbox record `key` (now, or by claiming it).
    fn take(&mut self, store: &dyn Store, key: &str, now: i64) -> Result<bool, StoreError> {
        if self.held.get(key).is_some_and(|until| *until > now) {
            return Ok(true);
        }
        let until = now.saturating_add(self.lease_ms);
        let won = store.dedupe_mark(&format!("inbox-claim/{key}"), now, until)?;
        if won {
            self.held.insert(key.to_owned(), until);
        }
        Ok(won)
    }

    /// Forgets a record that is consumed.
    fn done(&mut self, key: &str) {
        self.held.remove(key);
    }

    /// Forgets lapsed claims, and now and then deletes every worker's lapsed
    /// claim marks, so that the dedupe table holds one lease's worth.
    fn tidy(&mut self, store: &dyn Store, now: i64) -> Result<(), StoreError> {
        self.held.retain(|_, until| *until > now);
        if now.saturating_sub(self.purged_at) >= PURGE_EVERY_MS {
            store.dedupe_purge(now)?;
            self.purged_at = now;
        }
        Ok(())
    }
}

fn on_test_marked(unit: &mut Unit<'_>, event: &Event) -> Result<(), InputError> {
    let contact = event
        .properties
        .get("contact")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| InputError::bad("a test mark without `contact`"))?;
    let test = event
        .properties
        .get("test")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(true);
    let record = unit.contact_mut(contact)?;
    if record.is_tombstone() {
        return Ok(());
    }
    record.profile.test = test;
    tracing::info!(%contact, test, "test contact mark changed");
    Ok(())
}

/// Runs one input's processing, turning a panic (a bug the input provoked)
/// into a failure of that input alone: it is retried and set aside like any
/// input that cannot be processed, instead of killing the worker on every
/// restart and blocking everything behind it.
pub(crate) fn caught(process: impl FnOnce() -> Result<(), InputError>) -> Result<(), InputError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(process)).unwrap_or_else(|panic| {
        let message = crate::worker::panic_message(panic.as_ref());
        Err(InputError::bad(format!("the runtime panicked: {message}")))
    })
}

/// An unsubscribe ends marketing at once: messages still queued for the
/// contact on those channels (deferred by quiet hours, or waiting for a retry)
/// are withdrawn with the reason, not delivered after the "no".
fn withdraw_queued(
    unit: &mut Unit<'_>,
    contact_id: &str,
    channels: &[String],
) -> Result<(), InputError> {
    let queued = unit.store.outbox_of_contact(contact_id)?;
    for message in queued {
        if message.status != OutboxStatus::Pending || !channels.contains(&message.channel) {
            continue;
        }
        // A row whose record does not read is left to the dispatcher, which
        // fails it with the reason.
        let marketing = dripline_delivery::OutboxRecord::read(&message)
            .is_ok_and(|record| record.is_marketing());
        if marketing {
            unit.writes.push(Write::OutboxRecordAttempt {
                id: message.id,
                status: OutboxStatus::Suppressed,
                deliver_at_ms: message.deliver_at_ms,
                attempts: message.attempts,
                last_error: Some("unsubscribed before delivery".into()),
                at_ms: unit.now,
            });
        }
    }
    Ok(())
}
