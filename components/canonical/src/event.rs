//! The canonical event as a trigger's logic builds it, in plain Rust so that it
//! is tested natively; each trigger's WIT glue converts it field by field into
//! `dripline:journey/types.event`.

use serde_json::{Map, Value};

/// The ways an event names its contact (see `identities` in `wit/types.wit`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identities {
    /// Lower-cased email.
    pub email: Option<String>,
    /// E.164 phone.
    pub phone: Option<String>,
    /// `(system, id)` pairs; a system appears at most once.
    pub external_ids: Vec<(String, String)>,
}

impl Identities {
    /// Whether the event names nobody, which the WIT contract forbids.
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.phone.is_none() && self.external_ids.is_empty()
    }

    /// Adds an external id unless the system already has one (the first
    /// source named wins) or the id is empty.
    pub fn add_external(&mut self, system: &str, id: impl Into<String>) {
        let id = id.into();
        if !id.is_empty() && !self.external_ids.iter().any(|(s, _)| s == system) {
            self.external_ids.push((system.to_string(), id));
        }
    }
}

/// One canonical event (see `event` in `wit/types.wit`); `received_at` is the
/// request's and is added by the glue.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Stable id: the same delivery always yields the same id.
    pub id: String,
    /// `shopify`, `typeform`, `tally`, `form` or `api`.
    pub source: String,
    /// `noun.verb`, such as `checkout.created`.
    pub name: String,
    /// Who it happened to; never empty.
    pub identities: Identities,
    /// Everything else, as a JSON object.
    pub properties: Map<String, Value>,
    /// When it happened, in ms since the epoch.
    pub occurred_at: i64,
}

impl Event {
    /// The properties as the JSON text the WIT record carries.
    pub fn properties_json(&self) -> String {
        // A map with text keys always serializes; the fallback is unreachable.
        serde_json::to_string(&self.properties).unwrap_or_else(|_| "{}".into())
    }
}

/// Why a request yields no events; mirrors `trigger-error` in `wit/worlds.wit`.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerError {
    /// The body is unusable or lacks a required field; the text names it.
    Malformed(String),
    /// The content type is not one the trigger reads.
    UnsupportedContentType(String),
    /// An authentic delivery of a topic the trigger does not handle.
    UnsupportedTopic(String),
    /// The payload names nobody.
    MissingIdentity(String),
}

impl TriggerError {
    /// Prefixes the message with where in the request it happened
    /// (`batch[3]: ...`), keeping the case.
    pub fn at(self, place: &str) -> Self {
        match self {
            TriggerError::Malformed(m) => TriggerError::Malformed(format!("{place}: {m}")),
            TriggerError::UnsupportedContentType(m) => {
                TriggerError::UnsupportedContentType(format!("{place}: {m}"))
            }
            TriggerError::UnsupportedTopic(m) => {
                TriggerError::UnsupportedTopic(format!("{place}: {m}"))
            }
            TriggerError::MissingIdentity(m) => {
                TriggerError::MissingIdentity(format!("{place}: {m}"))
            }
        }
    }
}

/// The parts of `inbound-request` a trigger's logic reads.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The request path, without the query string.
    pub path: &'a str,
    /// Header pairs; names lower case.
    pub headers: &'a [(String, String)],
    /// The raw body.
    pub body: &'a [u8],
    /// When the gateway received it, in ms since the epoch.
    pub received_at: i64,
}
