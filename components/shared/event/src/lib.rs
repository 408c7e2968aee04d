//! The canonical event: the one record every source is normalized into. A
//! Shopify webhook, a form post, a track call and an event Dripline raises
//! itself all become an [`Event`] of this shape, so that everything after the
//! trigger compares identities and reads properties one way.
//!
//! One definition, shared: the trigger components (through `canonical`) build
//! it in their plain-Rust logic, and the host runtime (the engine, the inbox,
//! the store) uses the same types, stored as JSON. It mirrors `event` and
//! `identities` in `wit/types.wit`; a trigger's WIT glue converts it field by
//! field (`external-ids` a list of pairs, `properties` JSON text).
//!
//! Only serde and serde_json, no WIT bindings, so it compiles for the guests
//! (`wasm32-wasip2`) and natively for the host alike.

#![warn(missing_docs)]

pub mod trust;

use std::collections::BTreeMap;

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

impl Identities {
    /// Whether the identities name nobody (no email, phone or external id). The
    /// WIT contract forbids an event that does; a trigger refuses it as
    /// `missing-identity`.
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.phone.is_none() && self.external_ids.is_empty()
    }

    /// Adds an external id unless the system already has one (the first
    /// source named wins) or the id is empty.
    pub fn add_external(&mut self, system: &str, id: impl Into<String>) {
        let id = id.into();
        if !id.is_empty() && !self.external_ids.contains_key(system) {
            self.external_ids.insert(system.to_string(), id);
        }
    }
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

impl Event {
    /// The properties as the JSON text the WIT record carries (`properties`
    /// in `wit/types.wit`).
    pub fn properties_json(&self) -> String {
        // A JSON value always serializes (its map keys are text); the fallback
        // is unreachable.
        serde_json::to_string(&self.properties).unwrap_or_else(|_| "{}".into())
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_id_a_system_is_given_wins_and_an_empty_id_is_ignored() {
        let mut identities = Identities::default();
        identities.add_external("segment", "");
        assert!(identities.is_empty());
        identities.add_external("segment", "user_42");
        identities.add_external("segment", "user_43");
        identities.add_external("anonymous", String::from("anon-1"));
        assert_eq!(
            identities.external_ids,
            BTreeMap::from([
                ("anonymous".to_string(), "anon-1".to_string()),
                ("segment".to_string(), "user_42".to_string()),
            ])
        );
        assert!(!identities.is_empty());
    }

    #[test]
    fn an_email_or_a_phone_alone_names_someone() {
        let email = Identities {
            email: Some("li@example.com".into()),
            ..Identities::default()
        };
        let phone = Identities {
            phone: Some("+8613800138000".into()),
            ..Identities::default()
        };
        assert!(!email.is_empty() && !phone.is_empty());
    }

    #[test]
    fn absent_identities_are_left_out_of_the_json() {
        let identities = Identities {
            email: Some("li@example.com".into()),
            ..Identities::default()
        };
        assert_eq!(
            serde_json::to_value(&identities).unwrap(),
            json!({"email": "li@example.com"})
        );
    }

    #[test]
    fn an_event_without_identities_or_properties_reads_as_empty_ones() {
        let event: Event = serde_json::from_value(json!({
            "id": "e-1", "source": "dripline", "name": "email.clicked",
            "occurred_at": 1, "received_at": 2
        }))
        .unwrap();
        assert_eq!(event.identities, Identities::default());
        assert_eq!(event.properties, json!({}));
        assert_eq!(event.properties_json(), "{}");
    }

    #[test]
    fn an_event_survives_its_json() {
        let event = Event {
            id: "shopify-1".into(),
            source: "shopify".into(),
            name: "checkout.created".into(),
            identities: Identities {
                email: Some("li@example.com".into()),
                phone: None,
                external_ids: BTreeMap::from([("shopify".into(), "7385439482".into())]),
            },
            properties: json!({"total_price": "39.98", "line_items": [{"sku": "MUG"}]}),
            occurred_at: 1_709_258_400_000,
            received_at: 1_709_258_401_000,
        };
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), event);
        let properties: serde_json::Value = serde_json::from_str(&event.properties_json()).unwrap();
        assert_eq!(properties, event.properties);
    }
}
