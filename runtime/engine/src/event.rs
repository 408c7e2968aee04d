//! The canonical event and the contact snapshot the engine decides on.
//!
//! The event and its identities are `dripline-event`'s, the one definition the
//! trigger components build too; the contact snapshot mirrors `contact` in
//! `wit/types.wit`. Plain serde types: the store keeps them as JSON.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::facts::Facts;

// One definition of the canonical event, shared with the trigger components.
pub use dripline_event::{Event, Identities, Timestamp};

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
    /// The contact's latest events of the names journeys' goals wait for,
    /// oldest first, as the host keeps them (a few): a goal that already
    /// holds when the trigger comes (webhooks are not ordered, and an order
    /// may arrive before its checkout) keeps the contact out. Not part of
    /// `contact` in conditions.
    #[serde(skip)]
    pub recent: Vec<Event>,
    /// What the contact's events add up to, by event name: `contact.facts`
    /// in conditions, built there from this (see [`crate::facts`]).
    #[serde(skip)]
    pub facts: Facts,
    /// The segments the contact is in.
    #[serde(default)]
    pub segments: BTreeSet<String>,
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
