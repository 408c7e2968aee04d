//! What a step asks for while it runs. Nothing is applied then: the host
//! collects these and the runtime makes them durable with the step's
//! completion, in the same transaction as the enrollment's next state.

use crate::bindings::messaging;

/// One change a step asked for, in the order it asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Set an attribute to a JSON value.
    SetAttribute {
        /// The attribute's name.
        name: String,
        /// Its new value.
        value: serde_json::Value,
    },
    /// Add a tag.
    AddTag(String),
    /// Remove a tag.
    RemoveTag(String),
    /// Add points to the lead score.
    AddScore(i64),
    /// A message the delivery policy accepted, suppressed or deferred.
    Send {
        /// Unique per enrollment, step, attempt and send within the step.
        idempotency_key: String,
        /// The message as the step rendered it.
        message: messaging::Message,
        /// What the policy decided.
        delivery: messaging::Delivery,
    },
    /// A JSON POST to a granted host, queued for the dispatcher.
    Post {
        /// Unique per enrollment, step, attempt and post within the step.
        idempotency_key: String,
        /// Where to post.
        url: String,
        /// The JSON body.
        body: String,
    },
}
