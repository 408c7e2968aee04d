//! The delivery policy every send passes, whatever plugin asks: the runtime's
//! [`Messenger`]. It decides; the send itself is an outbox row written with the
//! step's completion, so a step run twice still sends once.

use crate::bindings::{ConsentState, Contact, HostError, messaging};
use crate::step_plugin::Messenger;

/// Channels a deployment can send through.
pub const CHANNELS: &[&str] = &["email", "sms", "push", "wecom", "webhook", "outbox"];

/// Consent first: no marketing message without the contact's yes on that
/// channel; a transactional message stops only at an explicit no.
pub struct DeliveryPolicy;

impl Messenger for DeliveryPolicy {
    fn decide(
        &self,
        contact: &Contact,
        message: &messaging::Message,
        idempotency_key: &str,
    ) -> Result<messaging::Delivery, HostError> {
        let channel = message.channel.as_str();
        if !CHANNELS.contains(&channel) {
            return Err(HostError::InvalidInput(format!(
                "channel `{channel}` is not configured (known: {})",
                CHANNELS.join(", ")
            )));
        }
        let consent = contact
            .consent
            .iter()
            .find(|c| c.channel == channel)
            .map(|c| c.state)
            .unwrap_or(ConsentState::Unknown);
        let allowed = match message.category {
            messaging::Category::Marketing => consent == ConsentState::Granted,
            messaging::Category::Transactional => consent != ConsentState::Denied,
        };
        if !allowed {
            return Ok(messaging::Delivery::Suppressed(format!(
                "no consent for {channel}"
            )));
        }
        Ok(messaging::Delivery::Sent(idempotency_key.to_string()))
    }
}
