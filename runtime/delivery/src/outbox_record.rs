//! The outbox record: what an outbox row carries besides its columns, as one
//! serde type. The store keeps it as opaque JSON; this module is the one place
//! that writes it ([`OutboxEntry::send`], [`OutboxEntry::post`]) and reads it
//! ([`OutboxRecord::read`]), so the policy, the dispatcher, the channels,
//! tracking, the runner and the admin API all agree on its fields.
//!
//! Two kinds of rows share it: a step's message (`send`, with the policy's
//! decision) and a `webhook` step's post (on the [`HTTP_OUT_CHANNEL`], with a
//! URL and a JSON body). Fields one kind lacks are left out of the JSON, so
//! rows written before this type existed read back as they were.

use dripline_engine::Enrollment;
use dripline_sandbox::bindings::messaging;
use dripline_store::{Millis, NewOutboxMessage, OutboxMessage, OutboxStatus};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::names::HTTP_OUT_CHANNEL;

/// An outbox row's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// The journey whose step made it.
    pub journey: String,
    /// The version of the journey the enrollment is on.
    pub journey_version: u32,
    /// The journey's priority when it sent (posts: 0).
    #[serde(default)]
    pub priority: i32,
    /// The enrollment.
    pub enrollment: String,
    /// The step.
    pub step: String,
    /// The template the step rendered, if it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The content's identity for dedupe ([`fingerprint`]); messages only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The subject line (email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The text of a message, or the JSON body of a post.
    #[serde(default)]
    pub body: String,
    /// The HTML of an email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Marketing or transactional; messages only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// What the delivery policy decided; messages only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryDecision>,
    /// The unsubscribe link tracking added, for the `List-Unsubscribe` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsubscribe_url: Option<String>,
    /// Where a post goes; posts only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Made for a test contact (see the admin API's `/api/contacts/{id}/test`):
    /// delivered like any other, its subject marked, left out of the analytics.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

/// Whether a message needs consent and counts against caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Needs a yes; capped, deferred by quiet hours.
    Marketing,
    /// A receipt, a password reset: stops only at a no.
    Transactional,
}

/// The delivery policy's decision on a message, as kept in its row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum DeliveryDecision {
    /// Goes now, under this idempotency key.
    Sent {
        /// The idempotency key the policy accepted it under.
        id: String,
    },
    /// Never goes, for this reason.
    Suppressed {
        /// Why, in words a marketer reads.
        reason: String,
    },
    /// Goes at this time (quiet hours).
    Deferred {
        /// When, in ms since the epoch.
        until: Millis,
    },
}

impl DeliveryDecision {
    /// `sent`, `suppressed` or `deferred`.
    pub fn status(&self) -> &'static str {
        match self {
            DeliveryDecision::Sent { .. } => "sent",
            DeliveryDecision::Suppressed { .. } => "suppressed",
            DeliveryDecision::Deferred { .. } => "deferred",
        }
    }
}

impl From<messaging::Category> for Category {
    fn from(category: messaging::Category) -> Self {
        match category {
            messaging::Category::Marketing => Category::Marketing,
            messaging::Category::Transactional => Category::Transactional,
        }
    }
}

impl From<&messaging::Delivery> for DeliveryDecision {
    fn from(delivery: &messaging::Delivery) -> Self {
        match delivery {
            messaging::Delivery::Sent(id) => DeliveryDecision::Sent { id: id.clone() },
            messaging::Delivery::Suppressed(reason) => DeliveryDecision::Suppressed {
                reason: reason.clone(),
            },
            messaging::Delivery::Deferred(until) => DeliveryDecision::Deferred { until: *until },
        }
    }
}

impl OutboxRecord {
    /// Marks a test contact's message: `[TEST]` before the subject (or the
    /// text, for channels without one), so that whoever receives it knows.
    pub fn mark_test(&mut self) {
        self.test = true;
        match &mut self.subject {
            Some(subject) => *subject = format!("[TEST] {subject}"),
            None if self.url.is_none() => self.body = format!("[TEST] {}", self.body),
            None => {}
        }
    }

    /// Reads a stored row's content; the error says what is wrong with it.
    pub fn read(message: &OutboxMessage) -> Result<Self, String> {
        Self::deserialize(&message.content)
            .map_err(|e| format!("outbox message {}: unreadable record: {e}", message.id))
    }

    /// Whether the policy held this message back (it never reached anyone).
    pub fn is_suppressed(&self) -> bool {
        matches!(self.delivery, Some(DeliveryDecision::Suppressed { .. }))
    }

    /// Whether it is a marketing message.
    pub fn is_marketing(&self) -> bool {
        self.category == Some(Category::Marketing)
    }
}

/// An outbox row about to be inserted: its columns and its record.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// Unique per effect: the step run's key and the send's place in it.
    pub idempotency_key: String,
    /// The recipient.
    pub contact_id: String,
    /// The channel it goes through.
    pub channel: String,
    /// Pending (to deliver) or suppressed (kept for the record).
    pub status: OutboxStatus,
    /// The earliest time it may be delivered.
    pub deliver_at_ms: Millis,
    /// When the step made it.
    pub created_at_ms: Millis,
    /// The content.
    pub record: OutboxRecord,
}

/// Where a send or post came from: the enrollment and step that made it.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The enrollment.
    pub enrollment: &'a Enrollment,
    /// The journey's priority.
    pub priority: i32,
    /// The step.
    pub step: &'a str,
    /// When.
    pub now: Millis,
}

impl OutboxEntry {
    /// The row of a step's message with the policy's decision. A suppressed
    /// send is kept for the record but never delivered; a deferred one waits in
    /// the outbox until the policy's time.
    pub fn send(
        origin: Origin<'_>,
        template: Option<&str>,
        idempotency_key: &str,
        message: &messaging::Message,
        delivery: &messaging::Delivery,
    ) -> Self {
        let now = origin.now;
        let (status, deliver_at_ms) = match delivery {
            messaging::Delivery::Sent(_) => (OutboxStatus::Pending, now),
            messaging::Delivery::Suppressed(_) => (OutboxStatus::Suppressed, now),
            messaging::Delivery::Deferred(until) => (OutboxStatus::Pending, (*until).max(now)),
        };
        let enrollment = origin.enrollment;
        Self {
            idempotency_key: idempotency_key.to_string(),
            contact_id: enrollment.contact_id.clone(),
            channel: message.channel.clone(),
            status,
            deliver_at_ms,
            created_at_ms: now,
            record: OutboxRecord {
                journey: enrollment.journey.clone(),
                journey_version: enrollment.journey_version,
                priority: origin.priority,
                enrollment: enrollment.id.clone(),
                step: origin.step.to_string(),
                template: template.map(str::to_string),
                fingerprint: Some(fingerprint(message)),
                subject: message.subject.clone(),
                body: message.body.clone(),
                html: message.html.clone(),
                category: Some(message.category.into()),
                delivery: Some(delivery.into()),
                unsubscribe_url: None,
                url: None,
                test: false,
            },
        }
    }

    /// The row of a `webhook` step's post, on the [`HTTP_OUT_CHANNEL`],
    /// delivered at once like a send.
    pub fn post(origin: Origin<'_>, idempotency_key: &str, url: &str, body: &str) -> Self {
        let enrollment = origin.enrollment;
        Self {
            idempotency_key: idempotency_key.to_string(),
            contact_id: enrollment.contact_id.clone(),
            channel: HTTP_OUT_CHANNEL.to_string(),
            status: OutboxStatus::Pending,
            deliver_at_ms: origin.now,
            created_at_ms: origin.now,
            record: OutboxRecord {
                journey: enrollment.journey.clone(),
                journey_version: enrollment.journey_version,
                priority: 0,
                enrollment: enrollment.id.clone(),
                step: origin.step.to_string(),
                template: None,
                fingerprint: None,
                subject: None,
                body: body.to_string(),
                html: None,
                category: None,
                delivery: None,
                unsubscribe_url: None,
                url: Some(url.to_string()),
                test: false,
            },
        }
    }

    /// The row as the store inserts it.
    pub fn into_row(self) -> NewOutboxMessage {
        NewOutboxMessage {
            // A struct of strings, numbers and options always serializes.
            content: serde_json::to_value(&self.record).unwrap_or_default(),
            idempotency_key: self.idempotency_key,
            contact_id: self.contact_id,
            channel: self.channel,
            status: self.status,
            created_at_ms: self.created_at_ms,
            deliver_at_ms: self.deliver_at_ms,
        }
    }
}

/// The content's identity for dedupe: the same subject and text on any channel
/// is the same message to the person reading it.
pub fn fingerprint(message: &messaging::Message) -> String {
    let mut hash = Sha256::new();
    hash.update(message.subject.as_deref().unwrap_or("").as_bytes());
    hash.update([0]);
    hash.update(message.body.as_bytes());
    hex::encode(&hash.finalize()[..12])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn a_row_written_before_the_typed_record_reads_back_with_its_fields() {
        let content = json!({
            "journey": "abandoned-checkout", "journey_version": 1, "priority": 0,
            "enrollment": "e1", "step": "sms-reminder", "template": null,
            "fingerprint": "abc", "subject": null, "body": "Hi", "html": null,
            "category": "marketing",
            "delivery": { "status": "suppressed", "reason": "no consent for sms" },
        });
        let record = OutboxRecord::deserialize(&content).unwrap();
        assert!(record.is_suppressed() && record.is_marketing());
        assert_eq!(record.template, None);
        let post = json!({
            "journey": "j", "journey_version": 2, "enrollment": "e", "step": "notify",
            "url": "https://crm.example.com/t", "body": "{}",
        });
        let record = OutboxRecord::deserialize(&post).unwrap();
        assert_eq!(record.url.as_deref(), Some("https://crm.example.com/t"));
        assert_eq!(record.delivery, None);
    }

    #[test]
    fn the_policys_decision_is_kept_under_its_status() {
        let decision: DeliveryDecision = (&messaging::Delivery::Deferred(5)).into();
        assert_eq!(
            serde_json::to_value(&decision).unwrap(),
            json!({ "status": "deferred", "until": 5 })
        );
    }
}
