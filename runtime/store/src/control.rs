//! What operators set through the admin API and the runner obeys: each
//! journey's operating state, kept in the runtime's key-value store under
//! `journey-state/<journey>` as JSON. The admin API writes it; every worker
//! reads it again within a second, whichever process or machine it is on.

use serde::{Deserialize, Serialize};

use crate::{KeyValue, RUNTIME_KV_STORE, Result, Store, StoreError, Write};
use serde_json::{Value, json};

/// The source of the inbox events operators' tools queue for the runner
/// (a merge, a test mark): no trigger may emit it.
pub const ADMIN_SOURCE: &str = "admin";

/// The admin event that makes a contact a test contact or an ordinary one
/// again (properties `contact`, `test`).
pub const TEST_MARKED: &str = "contact.test_marked";

/// Erase a contact: `properties.contact` (an id) or the event's identities.
pub const ERASE_REQUESTED: &str = "contact.erase_requested";

/// Erase every contact that came from a Shopify shop (`shop/redact`).
pub const SHOP_ERASE_REQUESTED: &str = "shop.erase_requested";

/// Write down what is kept of a person (`customers/data_request`).
pub const DATA_REQUESTED: &str = "contact.data_requested";

/// Where data requests' answers are kept in the runtime's store, by event id.
pub const DATA_REQUESTS_PREFIX: &str = "data-request/";

/// The inbox record that asks the runner to erase contact `id`, from the
/// runtime's own source, which only it and its commands write; `by` names who
/// asked, for the log.
pub fn erase_request(id: &str, now: crate::Millis, by: &str) -> Write {
    let event_id = format!("erase:{id}:{now}");
    let event = json!({
        "id": event_id,
        "source": ADMIN_SOURCE,
        "name": ERASE_REQUESTED,
        "identities": {},
        "properties": { "contact": id, "by": by },
        "occurred_at": now,
        "received_at": now,
    });
    Write::inbox_put(now, &event_id, event.to_string().into_bytes())
}

/// The prefix, in the runtime's key-value store, of the journey versions the
/// runner loaded (`journey/<id>/v<version, 10 digits>`, the file's text): a
/// contact in flight finishes its version from there, and the admin API
/// shows them.
pub const JOURNEY_VERSIONS_PREFIX: &str = "journey/";

/// The key of a stored journey version.
pub fn journey_version_key(journey: &str, version: u32) -> String {
    format!("{JOURNEY_VERSIONS_PREFIX}{journey}/v{version:010}")
}

/// The journey and version a stored version's key names.
pub fn journey_version_of(key: &str) -> Option<(&str, u32)> {
    let rest = key.strip_prefix(JOURNEY_VERSIONS_PREFIX)?;
    let (journey, version) = rest.split_once("/v")?;
    Some((journey, version.parse().ok()?))
}

/// The prefix of the records.
pub const JOURNEY_CONTROL_PREFIX: &str = "journey-state/";

/// Whether a journey takes new contacts and moves the ones it has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JourneyState {
    /// New contacts enter; contacts in it move on.
    #[default]
    Running,
    /// Nobody enters, and nobody moves on: due waits are put off until it
    /// resumes. For stopping a journey with a mistake in it.
    Paused,
    /// Nobody enters; contacts in it finish. For retiring a journey.
    Draining,
}

/// A journey's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneyControl {
    /// Its state.
    #[serde(default)]
    pub state: JourneyState,
    /// A version taking a share of new enrollments, set through the API
    /// (over the file's own `canary`, if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// A version whose file says `canary` that was promoted: it takes every
    /// new enrollment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<u32>,
    /// A version that was rolled back: new enrollments go to the version
    /// before it (contacts already on it finish it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<u32>,
    /// When it last changed, ms since the epoch.
    #[serde(default)]
    pub changed_at: i64,
    /// Who changed it (the admin token's name).
    #[serde(default)]
    pub changed_by: String,
}

/// A journey version on trial: it takes `percent` of new enrollments (chosen
/// by contact, so that one contact always gets the same version), the rest
/// enter `stable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    /// The version on trial.
    pub version: u32,
    /// The version everyone else enters.
    pub stable: u32,
    /// The share of new enrollments it takes, 1 to 99.
    pub percent: u32,
}

impl JourneyControl {
    /// The canary in force for a journey whose newest version is `newest`,
    /// whose file asks for `file_canary` percent, and whose version before
    /// it is `before`: the one set through the API, else the file's unless
    /// that version was promoted or rolled back (or there is nothing before
    /// it to keep the rest on).
    pub fn canary_in_force(
        &self,
        newest: u32,
        file_canary: Option<u32>,
        before: Option<u32>,
    ) -> Option<Canary> {
        if let Some(set) = &self.canary {
            return Some(set.clone());
        }
        let decided = self.promoted == Some(newest) || self.rolled_back == Some(newest);
        match (file_canary, before) {
            (Some(percent), Some(stable)) if !decided => Some(Canary {
                version: newest,
                stable,
                percent,
            }),
            _ => None,
        }
    }

    /// The version new enrollments of a contact in `bucket` (0 to 99) get.
    pub fn version_for(
        &self,
        bucket: u32,
        newest: u32,
        file_canary: Option<u32>,
        before: Option<u32>,
    ) -> u32 {
        if let Some(canary) = self.canary_in_force(newest, file_canary, before) {
            return if bucket < canary.percent {
                canary.version
            } else {
                canary.stable
            };
        }
        match (self.rolled_back == Some(newest), before) {
            (true, Some(before)) => before,
            _ => newest,
        }
    }
}

/// The control record of `journey` (the default when none was set).
pub fn journey_control(store: &dyn KeyValue, journey: &str) -> Result<JourneyControl> {
    match store.kv_get(
        RUNTIME_KV_STORE,
        &format!("{JOURNEY_CONTROL_PREFIX}{journey}"),
    )? {
        None => Ok(JourneyControl::default()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("journey state of {journey}: {e}"))),
    }
}

/// Every journey's control record that was set, by journey.
pub fn journey_controls(
    store: &dyn KeyValue,
) -> Result<std::collections::BTreeMap<String, JourneyControl>> {
    let mut all = std::collections::BTreeMap::new();
    for (key, bytes) in
        store.kv_scan_prefix(RUNTIME_KV_STORE, JOURNEY_CONTROL_PREFIX, None, 10_000)?
    {
        let journey = key.trim_start_matches(JOURNEY_CONTROL_PREFIX).to_owned();
        let control = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("journey state of {journey}: {e}")))?;
        all.insert(journey, control);
    }
    Ok(all)
}

/// The write that sets `journey`'s record.
pub fn set_journey_control(journey: &str, control: &JourneyControl) -> Write {
    Write::KvSet {
        store: RUNTIME_KV_STORE.into(),
        key: format!("{JOURNEY_CONTROL_PREFIX}{journey}"),
        value: serde_json::to_vec(control).unwrap_or_default(),
    }
}

/// What is kept of contact `id`, as JSON: its identities and profile, its
/// enrollments and its messages.
pub fn export(store: &dyn Store, id: &str) -> Result<Value> {
    let Some(contact) = store.contact_get(id)? else {
        return Ok(Value::Null);
    };
    let enrollments: Vec<Value> = store
        .enrollments_of_contact(id)?
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "journey": e.journey,
                "active": e.active,
                "state": serde_json::from_str::<Value>(&e.state).unwrap_or(Value::Null),
            })
        })
        .collect();
    let messages: Vec<Value> = store
        .outbox_of_contact(id)?
        .into_iter()
        .map(|m| {
            json!({
                "id": m.id,
                "channel": m.channel,
                "status": m.status,
                "created_at": m.created_at_ms,
                "content": m.content,
            })
        })
        .collect();
    Ok(json!({
        "id": contact.id,
        "identities": contact.identities,
        "profile": contact.profile,
        "enrollments": enrollments,
        "messages": messages,
    }))
}
