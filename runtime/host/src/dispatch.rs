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
//! [`DISPATCH_KV_STORE`] key-value store, which admin tools list by prefix),
//! and in the metrics (`sends.<journey>.failed`). Every attempt also feeds the
//! failure-rate [`Alerts`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dripline_store::{
    Millis, NewOutboxMessage, OUTBOX_FAILED, OUTBOX_PENDING, OUTBOX_SENT, OutboxMessage, Store,
    StoreError, Write,
};
use serde_json::json;

use crate::channels::http::HttpConfig;
use crate::channels::{AlertConfig, Channels, DeliveryError, content_str};
use crate::clock::Clock;
use crate::step_plugin::Effect;

/// The key-value store that holds the dispatcher's records of failed sends.
pub const DISPATCH_KV_STORE: &str = "dripline";

/// The channel name of the `webhook` step's posts.
pub const HTTP_OUT_CHANNEL: &str = "http-out";

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

/// See the module documentation.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    channels: Channels,
    clock: Arc<dyn Clock>,
    alerts: Alerts,
}

impl Dispatcher {
    /// A dispatcher of `store`'s outbox through `channels`.
    pub fn new(store: Arc<dyn Store>, channels: Channels, clock: Arc<dyn Clock>) -> Self {
        let alerts = Alerts::new(channels.config.alerts.clone());
        Self {
            store,
            channels,
            clock,
            alerts,
        }
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
        loop {
            let pass = self.dispatch_due(256)?;
            total.sent += pass.sent;
            total.retried += pass.retried;
            total.failed += pass.failed;
            if pass.handled() == 0 {
                return Ok(total);
            }
        }
    }

    /// Delivers up to `limit` due messages, earliest first.
    pub fn dispatch_due(&mut self, limit: usize) -> Result<DispatchReport, StoreError> {
        let due = self.store.outbox_due(self.clock.now_ms(), limit)?;
        let mut report = DispatchReport::default();
        for message in &due {
            match self.dispatch_one(message)? {
                Outcome::Sent => report.sent += 1,
                Outcome::Retry => report.retried += 1,
                Outcome::Failed => report.failed += 1,
            }
        }
        Ok(report)
    }

    fn dispatch_one(&mut self, message: &OutboxMessage) -> Result<Outcome, StoreError> {
        let result = self.deliver(message);
        let now = self.clock.now_ms();
        let attempts = message.attempts.saturating_add(1);
        let journey = content_str(message, "journey").unwrap_or("-").to_string();
        let retry = self
            .channels
            .get(&message.channel)
            .map(|c| c.retry)
            .unwrap_or(self.channels.config.retry);
        let (outcome, status, deliver_at, error) = match result {
            Ok(_) => (Outcome::Sent, OUTBOX_SENT, message.deliver_at_ms, None),
            Err(DeliveryError::Transient(e)) => match retry.next_delay_ms(attempts) {
                Some(delay) => (
                    Outcome::Retry,
                    OUTBOX_PENDING,
                    now.saturating_add(delay),
                    Some(e),
                ),
                None => (
                    Outcome::Failed,
                    OUTBOX_FAILED,
                    message.deliver_at_ms,
                    Some(format!("{e} (gave up after {attempts} attempts)")),
                ),
            },
            Err(DeliveryError::Permanent(e)) => (
                Outcome::Failed,
                OUTBOX_FAILED,
                message.deliver_at_ms,
                Some(e),
            ),
        };
        let mut writes = vec![Write::OutboxRecordAttempt {
            id: message.id,
            status: status.to_string(),
            deliver_at_ms: deliver_at,
            attempts,
            last_error: error.clone(),
            at_ms: now,
        }];
        let metric = |name: String| Write::MetricAdd { name, delta: 1 };
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
                if let Some(enrollment) = content_str(message, "enrollment") {
                    let record = json!({
                        "message": message.id,
                        "journey": journey,
                        "step": message.content.get("step"),
                        "channel": message.channel,
                        "attempts": attempts,
                        "error": reason,
                        "at": now,
                    });
                    writes.push(Write::KvSet {
                        store: DISPATCH_KV_STORE.to_string(),
                        key: format!("failed-sends/{enrollment}/{:012}", message.id),
                        value: record.to_string().into_bytes(),
                    });
                }
            }
        }
        let results = self.store.apply(&writes)?;
        // Another dispatcher recorded this message first: its record stands and
        // this attempt counts nowhere.
        if results.first() == Some(&dripline_store::WriteResult::Flag(false)) {
            return Ok(outcome);
        }
        let failed = !matches!(outcome, Outcome::Sent);
        if let Some(alert) = self.alerts.record(&journey, failed, now) {
            self.raise(&alert)?;
        }
        Ok(outcome)
    }

    fn deliver(&self, message: &OutboxMessage) -> Result<(), DeliveryError> {
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
        configured.channel.deliver(message, &contact).map(drop)
    }

    fn raise(&self, alert: &Alert) -> Result<(), StoreError> {
        tracing::error!(
            journey = %alert.journey,
            failed = alert.failures,
            sends = alert.sends,
            "ALERT: {:.1}% of journey {}'s sends failed since {} (threshold {:.1}%)",
            alert.rate * 100.0,
            alert.journey,
            alert.window_start_ms,
            self.alerts.config.threshold * 100.0
        );
        self.store
            .metric_add(&format!("alerts.{}", alert.journey), 1)?;
        if let Some(url) = &self.alerts.config.webhook {
            let body = json!({
                "alert": "send-failure-rate",
                "journey": alert.journey,
                "sends": alert.sends,
                "failures": alert.failures,
                "rate": alert.rate,
                "threshold": self.alerts.config.threshold,
                "window_start": alert.window_start_ms,
                "window_ms": self.alerts.config.window.as_millis(),
            });
            let key = format!("alert/{}/{}", alert.journey, alert.window_start_ms);
            if let Err(e) = self.alerts.http.post(
                "the alert webhook",
                url,
                "application/json",
                &[("Idempotency-Key", &key)],
                body.to_string().as_bytes(),
            ) {
                tracing::error!("the alert could not be posted: {e}");
            }
        }
        Ok(())
    }
}

/// The outbox row of a `webhook` step's post ([`Effect::Post`]), on the
/// [`HTTP_OUT_CHANNEL`]; `None` for any other effect. Written with the step's
/// completion, like a send's row.
pub fn post_row(
    enrollment: &dripline_engine::Enrollment,
    step_id: &str,
    effect: &Effect,
    now: Millis,
) -> Option<NewOutboxMessage> {
    let Effect::Post {
        idempotency_key,
        url,
        body,
    } = effect
    else {
        return None;
    };
    Some(NewOutboxMessage {
        idempotency_key: idempotency_key.clone(),
        contact_id: enrollment.contact_id.clone(),
        channel: HTTP_OUT_CHANNEL.to_string(),
        content: json!({
            "journey": enrollment.journey,
            "journey_version": enrollment.journey_version,
            "enrollment": enrollment.id,
            "step": step_id,
            "url": url,
            "body": body,
        }),
        status: OUTBOX_PENDING.to_string(),
        created_at_ms: now,
        deliver_at_ms: now,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Sent,
    Retry,
    Failed,
}

/// An alert to raise: a journey's failure rate in a window passed the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The journey.
    pub journey: String,
    /// Delivery attempts in the window so far.
    pub sends: u64,
    /// Failed attempts among them (transient ones included: an outage shows
    /// before the retries run out).
    pub failures: u64,
    /// failures / sends.
    pub rate: f64,
    /// Where the window starts.
    pub window_start_ms: Millis,
}

/// Failure rates per journey over fixed windows (aligned to the window's
/// length), raising at most one alert per journey and window. Kept in memory:
/// after a restart the window starts over, which can only delay an alert.
pub struct Alerts {
    config: AlertConfig,
    http: HttpConfig,
    windows: HashMap<String, Window>,
}

#[derive(Debug, Default)]
struct Window {
    start_ms: Millis,
    sends: u64,
    failures: u64,
    fired: bool,
}

impl Alerts {
    /// Alerts by `config`.
    pub fn new(config: AlertConfig) -> Self {
        Self {
            config,
            http: HttpConfig::new(Duration::from_secs(5)),
            windows: HashMap::new(),
        }
    }

    /// Counts one attempt of `journey` at `now`; returns the alert to raise, if
    /// this attempt tips the window over the threshold.
    pub fn record(&mut self, journey: &str, failed: bool, now: Millis) -> Option<Alert> {
        let length = self.config.window.as_offset().max(1);
        let start = now - now.rem_euclid(length);
        let window = self.windows.entry(journey.to_string()).or_default();
        if window.start_ms != start {
            *window = Window {
                start_ms: start,
                ..Window::default()
            };
        }
        window.sends += 1;
        window.failures += u64::from(failed);
        let rate = window.failures as f64 / window.sends as f64;
        if window.fired || window.sends < self.config.min_sample || rate <= self.config.threshold {
            return None;
        }
        window.fired = true;
        Some(Alert {
            journey: journey.to_string(),
            sends: window.sends,
            failures: window.failures,
            rate,
            window_start_ms: start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerts() -> Alerts {
        Alerts::new(AlertConfig {
            threshold: 0.05,
            window: dripline_engine::Duration::from_millis(1_000),
            min_sample: 20,
            webhook: None,
        })
    }

    #[test]
    fn no_alert_below_the_minimum_sample_even_if_everything_fails() {
        let mut alerts = alerts();
        assert!((0..19).all(|_| alerts.record("j", true, 0).is_none()));
    }

    #[test]
    fn an_alert_fires_once_per_window_when_over_five_percent_fail() {
        let mut alerts = alerts();
        let fired: Vec<bool> = (0..40)
            .map(|i| alerts.record("j", i % 10 == 0, 10).is_some())
            .collect();
        // 2 failures in 20 (10%) tips it at the 20th attempt; never again.
        assert_eq!(fired.iter().filter(|f| **f).count(), 1);
        assert!(fired[19]);
        // The next window starts over.
        assert!((0..19).all(|_| alerts.record("j", true, 1_000).is_none()));
        assert!(alerts.record("j", true, 1_999).is_some());
    }

    #[test]
    fn five_percent_exactly_does_not_alert() {
        let mut alerts = alerts();
        let fired = (0..20).any(|i| alerts.record("j", i == 0, 0).is_some());
        assert!(!fired);
    }
}
