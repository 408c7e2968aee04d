//! The canonical event and the contact snapshot the engine decides on.
//!
//! These mirror `event`, `identities` and `contact` in `wit/types.wit`, in Rust
//! form, so that the store, the host and the engine share one definition. They are
//! plain serde types: the store keeps them as JSON.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A point in time: milliseconds since the Unix epoch, in UTC (WIT `timestamp`).
pub type Timestamp = i64;

/// The ways Dripline knows a person, normalized once at the trigger: emails lower
/// case, phones in E.164.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identities {
    /// The email address, lower-cased.
    // Absent fields are left out of the JSON so that CEL's `has()` tells whether
    // the contact has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The phone number in E.164 form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Identifiers in other systems, by system: `shopify` → `7385439482`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_ids: BTreeMap<String, String>,
}

/// One thing that happened, in the same shape whatever the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Stable identifier: the same delivery always yields the same id.
    pub id: String,
    /// Where it came from: `shopify`, `form`, `api`, `dripline`...
    pub source: String,
    /// What happened: `checkout.created`, `order.paid`, `email.clicked`...
    pub name: String,
    /// Who it happened to.
    #[serde(default)]
    pub identities: Identities,
    /// Everything else the source said, as a JSON object.
    #[serde(default = "empty_object")]
    pub properties: serde_json::Value,
    /// When it happened, as the source reports it.
    pub occurred_at: Timestamp,
    /// When Dripline received it.
    pub received_at: Timestamp,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// Whether a contact agreed to receive marketing on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    /// Opted in.
    Granted,
    /// Opted out or unsubscribed.
    Denied,
    /// Nothing known; treated as denied for marketing.
    Unknown,
}

/// What the engine may know about a contact when it decides: a read-only snapshot
/// the host loads before calling the engine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContactView {
    /// The contact's id in Dripline.
    pub id: String,
    /// How the contact is reached and recognized.
    #[serde(default)]
    pub identities: Identities,
    /// Attributes as a JSON object.
    #[serde(default = "empty_object")]
    pub attributes: serde_json::Value,
    /// Tags, sorted, without duplicates.
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// The lead score.
    #[serde(default)]
    pub score: i64,
    /// IANA time zone (`Asia/Shanghai`), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Consent per channel; an absent channel is unknown.
    #[serde(default)]
    pub consent: BTreeMap<String, ConsentState>,
}

impl ContactView {
    /// A contact with only an id, for tests and hand-written callers.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            attributes: empty_object(),
            ..Self::default()
        }
    }
}
