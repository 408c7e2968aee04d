//! The messaging port: how a step's send reaches the delivery policy while the
//! step runs. The sandbox defines the port and the runtime plugs the policy in,
//! so the sandbox knows nothing of stores, channels or journeys.

use crate::bindings::{Contact, HostError, messaging};

/// What the delivery policy made of one send.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The channel it goes through: the one asked for, or for `preferred` the
    /// one the policy chose.
    pub channel: String,
    /// Sent now, deferred, or suppressed with the reason.
    pub delivery: messaging::Delivery,
}

/// Decides what becomes of a message: the delivery policy's entry point. The
/// runtime supplies one per step call; it must not perform the send itself
/// (that happens when the step's effects are committed), only decide.
pub trait Messenger: Send + Sync {
    /// Decides the delivery of `message` to `contact`. `idempotency_key` is stable
    /// across retries of the same step attempt.
    fn decide(
        &self,
        contact: &Contact,
        message: &messaging::Message,
        idempotency_key: &str,
    ) -> Result<Decision, HostError>;

    /// Whether the deployment grants the `webhook` step's posts to `url`'s
    /// host; the error names the host. Grants nothing unless the runtime says
    /// otherwise: a step reaches only what its config or the deployment grants.
    fn grant_post(&self, url: &str) -> Result<(), String> {
        crate::egress::check_host(url, &[])
    }
}

/// A messenger that accepts everything: for tests and benchmarks of the sandbox.
pub struct AcceptAll;

impl Messenger for AcceptAll {
    fn decide(
        &self,
        _: &Contact,
        message: &messaging::Message,
        key: &str,
    ) -> Result<Decision, HostError> {
        Ok(Decision {
            channel: message.channel.clone(),
            delivery: messaging::Delivery::Sent(key.to_string()),
        })
    }
}
