//! The dispatcher: delivers due outbox messages through their channels and
//! records what happened.
//!
//! Delivery is at-least-once. A message is delivered first and its result
//! recorded after, so a crash in between leaves it pending and it is delivered
//! again (with the same idempotency key, which HTTP providers receive as
//! `Idempotency-Key`); a message recorded as sent is never taken again, because
//! only pending messages are due and recording only changes pending ones.
//!
//! A transient failure puts the message back in the queue for later, with
//! exponential backoff, until the channel's retries are used up; a permanent
//! failure, or the last transient one, fails it for good. A failed message is
//! recorded on the message (`failed`, the error, the attempts), beside its
//! enrollment (a `failed-sends/<enrollment>/<message>` record in the
//! runtime's own key-value store, `RUNTIME_KV_STORE`, which admin tools list by prefix),
//! and in the metrics (`sends.<journey>.failed`). Every attempt also feeds the
//! failure-rate [`Alerts`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use dripline_clock::Clock;
use dripline_store::{
    OutboxMessage, OutboxStatus, RUNTIME_KV_STORE, Store, StoreError, Write, WriteResult,
};
use serde_json::json;

use crate::alerts::{Alerts, Failing};
use crate::channels::{Channels, DeliveryError};
use crate::outbox_record::OutboxRecord;

/// What a pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DispatchReport {
    /// Messages delivered.
    pub sent: usize,
    /// Messages that failed transiently and wait for a retry.
    pub retried: usize,
    /// Messages that failed for good.
    pub failed: usize,
}

impl DispatchReport {
    /// How many messages the pass handled.
    pub fn handled(&self) -> usize {
        self.sent + self.retried + self.failed
    }
}

/// Which messages a dispatcher takes. `dripline up` runs one dispatcher per
/// configured channel and one for the rest, each on its own thread, so that
/// a provider that hangs (every call waits out its timeout) delays only its
/// own channel's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lane {
    /// Every due message (tests and `dripline process`).
    All,
    /// The due messages of one channel.
    Channel(String),
    /// The due messages of channels the deployment does not configure, which
    /// fail at once with the reason.
    Unconfigured,
}

/// See the module documentation.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    channels: Channels,
    clock: Arc<dyn Clock>,
    alerts: Mutex<Alerts>,
    lane: Lane,
    /// Set when the process is stopping: a pass ends after the message in
    /// hand, recorded, rather than working through the whole queue.
    stop: Arc<AtomicBool>,
    /// When other dispatchers share the store: how long a claim on a message
    /// holds (see [`Dispatcher::with_claims`]).
    claim_ms: Option<i64>,
}

impl Dispatcher {
    /// A dispatcher of `store`'s outbox through `channels`.
    pub fn new(store: Arc<dyn Store>, channels: Channels, clock: Arc<dyn Clock>) -> Self {
        let alerts = Alerts::new(Failing::Sends, channels.config.alerts.clone());
        Self {
            store,
            channels,
            clock,
            alerts: Mutex::new(alerts),
            lane: Lane::All,
            stop: Arc::new(AtomicBool::new(false)),
            claim_ms: None,
        }
    }

    /// Claims each message for `claim_ms` before delivering it
    /// ([`Write::OutboxClaim`]), for dispatchers in several processes on one
    /// store: each message is then taken by one of them. One that dies with
    /// a message claimed leaves it due again when the claim ends, so the
    /// claim must outlast a delivery's timeout.
    pub fn with_claims(mut self, claim_ms: i64) -> Self {
        self.claim_ms = Some(claim_ms.max(1));
        self
    }

    /// Ends each pass early once `stop` is set; what is left stays pending
    /// for the next start.
    pub fn with_stop(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = stop;
        self
    }

    /// Takes only the messages of `lane`.
    pub fn on_lane(mut self, lane: Lane) -> Self {
        self.lane = lane;
        self
    }

    /// The lanes that together take every message: one per configured
    /// channel, and the rest.
    pub fn lanes(&self) -> Vec<Lane> {
        let mut lanes: Vec<Lane> = self
            .channels
            .names()
            .map(|name| Lane::Channel(name.to_string()))
            .collect();
        lanes.push(Lane::Unconfigured);
        lanes
    }

    /// The channels it delivers through.
    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    /// Delivers messages due at the clock's time, `limit` at a time, until none
    /// is due. A retry due at once (a zero backoff) is taken in the same call;
    /// one due later waits for a later call.
    pub fn run_until_idle(&mut self) -> Result<DispatchReport, StoreError> {
        let mut total = DispatchReport::default();
        while !self.stop.load(Ordering::Relaxed) {
            let pass = self.dispatch_due(256)?;
            total.sent += pass.sent;
            total.retried += pass.retried;
            total.failed += pass.failed;
            if pass.handled() == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// Delivers up to `limit` due messages, earliest first.
    pub fn dispatch_due(&mut self, limit: usize) -> Result<DispatchReport, StoreError> {
        let now = self.clock.now_ms();
        let due = match &self.lane {
            Lane::All => self.store.outbox_due(now, limit)?,
            Lane::Channel(channel) => self.store.outbox_due_on(channel, now, limit)?,
            Lane::Unconfigured => {
                let mut due = self.store.outbox_due(now, limit)?;
                due.retain(|m| self.channels.get(&m.channel).is_none());
                due
            }
        };
        let due = match self.claim_ms {
            Some(claim_ms) => self.claim(due, now, claim_ms)?,
            None => due,
        };
        // A channel's messages go out `concurrency` at a time, each message
        // taken by one delivering thread only; a slow provider then holds up
        // the channel by a factor, not by the length of its queue.
        let threads = match &self.lane {
            Lane::Channel(channel) => self.channels.concurrency(channel),
            Lane::All | Lane::Unconfigured => 1,
        }
        .min(due.len().max(1));
        let next = AtomicUsize::new(0);
        let deliver = || -> Result<DispatchReport, StoreError> {
            let mut report = DispatchReport::default();
            loop {
                if self.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Some(message) = due.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                match self.dispatch_one(message)? {
                    Outcome::Sent => report.sent += 1,
                    Outcome::Retry => report.retried += 1,
                    Outcome::Failed => report.failed += 1,
                }
            }
            Ok(report)
        };
        let report = if threads == 1 {
            deliver()?
        } else {
            let reports: Vec<Result<DispatchReport, StoreError>> = std::thread::scope(|scope| {
                let running: Vec<_> = (0..threads).map(|_| scope.spawn(deliver)).collect();
                running
                    .into_iter()
                    .map(|thread| {
                        thread.join().unwrap_or_else(|_| {
                            Err(StoreError::Internal("a delivering thread panicked"))
                        })
                    })
                    .collect()
            });
            let mut report = DispatchReport::default();
            for pass in reports {
                let pass = pass?;
                report.sent += pass.sent;
                report.retried += pass.retried;
                report.failed += pass.failed;
            }
            report
        };
        // Stopped half-way: what was claimed and not delivered is handed
        // back, due as it was, for another dispatcher to take at once.
        if let Some(claim_ms) = self.claim_ms {
            let rest = &due[next.load(Ordering::Relaxed).min(due.len())..];
            let release: Vec<Write> = rest
                .iter()
                .map(|m| Write::OutboxClaim {
                    id: m.id,
                    now_ms: now.saturating_add(claim_ms),
                    until_ms: m.deliver_at_ms,
                })
                .collect();
            if !release.is_empty() {
                self.store.apply(&release)?;
            }
        }
        Ok(report)
    }

    /// The messages of `due` this dispatcher claimed; the others are another
    /// dispatcher's. The claims are one batch, one round trip for the pass.
    fn claim(
        &self,
        due: Vec<OutboxMessage>,
        now: i64,
        claim_ms: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        if due.is_empty() {
            return Ok(due);
        }
        let claims: Vec<Write> = due
            .iter()
            .map(|m| Write::OutboxClaim {
                id: m.id,
                now_ms: now,
                until_ms: now.saturating_add(claim_ms),
            })
            .collect();
        let won = self.store.apply(&claims)?;
        Ok(due
            .into_iter()
            .zip(won)
            .filter(|(_, won)| *won == WriteResult::Flag(true))
            .map(|(m, _)| m)
            .collect())
    }

    fn dispatch_one(&self, message: &OutboxMessage) -> Result<Outcome, StoreError> {
        let record = OutboxRecord::read(message);
        let result = match &record {
            Ok(record) => self.deliver(message, record),
            Err(problem) => Err(DeliveryError::Permanent(problem.clone())),
        };
        let record = record.ok();
        let now = self.clock.now_ms();
        let attempts = message.attempts.saturating_add(1);
        let journey = record
            .as_ref()
            .map_or("-", |r| r.journey.as_str())
            .to_string();
        let retry = self
            .channels
            .get(&message.channel)
            .map(|c| c.retry)
            .unwrap_or(self.channels.config.retry);
        let (outcome, status, deliver_at, error) = match result {
            Ok(_) => (
                Outcome::Sent,
                OutboxStatus::Sent,
                message.deliver_at_ms,
                None,
            ),
            Err(DeliveryError::Transient(e)) => match retry.next_delay_ms(attempts) {
                Some(delay) => (
                    Outcome::Retry,
                    OutboxStatus::Pending,
                    now.saturating_add(delay),
                    Some(e),
                ),
                None => (
                    Outcome::Failed,
                    OutboxStatus::Failed,
                    message.deliver_at_ms,
                    Some(format!("{e} (gave up after {attempts} attempts)")),
                ),
            },
            Err(DeliveryError::Permanent(e)) => (
                Outcome::Failed,
                OutboxStatus::Failed,
                message.deliver_at_ms,
                Some(e),
            ),
        };
        let mut writes = vec![Write::OutboxRecordAttempt {
            id: message.id,
            status,
            deliver_at_ms: deliver_at,
            attempts,
            last_error: error.clone(),
            at_ms: now,
        }];
        let metric = |name: String| Write::MetricAdd { name, delta: 1 };
        let by_day = |what: &str| {
            record.as_ref().map(|r| {
                let key = crate::analytics::Key::of_message(r, &message.channel);
                metric(crate::analytics::counter(&key, now, what))
            })
        };
        match outcome {
            Outcome::Sent => writes.extend(by_day("delivered")),
            Outcome::Failed => writes.extend(by_day("failed")),
            Outcome::Retry => {}
        }
        match outcome {
            Outcome::Sent => {
                writes.push(metric(format!("sends.{journey}.sent")));
                writes.push(metric(format!("channels.{}.sent", message.channel)));
            }
            Outcome::Retry => {
                tracing::warn!(message = message.id, channel = %message.channel, attempts, "delivery will be retried: {}", error.as_deref().unwrap_or_default());
                writes.push(metric(format!("sends.{journey}.retried")));
            }
            Outcome::Failed => {
                let reason = error.clone().unwrap_or_default();
                tracing::warn!(message = message.id, channel = %message.channel, attempts, "delivery failed: {reason}");
                writes.push(metric(format!("sends.{journey}.failed")));
                writes.push(metric(format!("channels.{}.failed", message.channel)));
                if let Some(record) = &record {
                    let enrollment = &record.enrollment;
                    let failure = json!({
                        "message": message.id,
                        "journey": journey,
                        "step": record.step,
                        "channel": message.channel,
                        "attempts": attempts,
                        "error": reason,
                        "at": now,
                    });
                    writes.push(Write::KvSet {
                        store: RUNTIME_KV_STORE.to_string(),
                        key: format!("failed-sends/{enrollment}/{:012}", message.id),
                        value: failure.to_string().into_bytes(),
                    });
                }
            }
        }
        let results = self.store.apply(&writes)?;
        // Another dispatcher recorded this message first: its record stands and
        // this attempt counts nowhere.
        if results.first() == Some(&WriteResult::Flag(false)) {
            return Ok(outcome);
        }
        let failed = !matches!(outcome, Outcome::Sent);
        let alert = self
            .alerts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(&journey, failed, now);
        if let Some(alert) = alert {
            self.alerts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .raise(&alert);
            self.store.metric_add(&alert.metric(), 1)?;
        }
        Ok(outcome)
    }

    fn deliver(&self, message: &OutboxMessage, record: &OutboxRecord) -> Result<(), DeliveryError> {
        let Some(configured) = self.channels.get(&message.channel) else {
            let known: Vec<&str> = self.channels.names().collect();
            return Err(DeliveryError::Permanent(format!(
                "channel `{}` is not configured (channels.toml has: {})",
                message.channel,
                known.join(", ")
            )));
        };
        let contact = self
            .store
            .contact_get(&message.contact_id)
            .map_err(|e| DeliveryError::Transient(format!("reading the contact: {e}")))?
            .ok_or_else(|| {
                DeliveryError::Permanent(format!("contact {} no longer exists", message.contact_id))
            })?;
        configured
            .channel
            .deliver(message, record, &contact)
            .map(drop)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Sent,
    Retry,
    Failed,
}
