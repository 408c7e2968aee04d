//! A person's right to be forgotten, and to see what is kept of them.
//!
//! An erasure is an inbox event like any other ([`ERASE_REQUESTED`]), so it
//! takes its turn behind the events already accepted and commits in one batch:
//! `dripline contacts erase`, the admin API's `DELETE /api/contacts/{id}` and
//! Shopify's `customers/redact` all write one. The runner removes the
//! contact's enrollments, their timers and failed-send records, its audience
//! timers, its messages, the dead letters and waiting inbox records that name
//! it, and its profile. What is left is an anonymous tombstone: the contact id
//! and, for each identity it had, a keyed hash ([`ContactIds::erased`]) that
//! lets the runner recognize the same address in a replayed webhook or a
//! re-imported list and drop it, without keeping the address. Shopify's
//! `shop/redact` erases every contact that came from the shop
//! ([`SHOP_ERASE_REQUESTED`]).
//!
//! [`DATA_REQUESTED`] (Shopify's `customers/data_request`) writes what is kept
//! of the person as JSON ([`export`]) into the runtime's store under
//! [`DATA_REQUESTS_PREFIX`], for the admin API to hand over.

use std::collections::BTreeSet;

use dripline_engine::Event;
use dripline_store::{
    DEFAULT_KV_STORE, INBOX_PREFIX, Identity, RUNTIME_KV_STORE, Store, StoreError, Write,
};
use serde_json::{Value, json};

use crate::Runner;
use crate::contacts::{ContactIds, ContactRecord, event_identities};
use crate::error::InputError;
use crate::unit::Unit;

pub use dripline_store::control::{
    DATA_REQUESTED, DATA_REQUESTS_PREFIX, ERASE_REQUESTED, SHOP_ERASE_REQUESTED, export,
};

/// The external id system of a Shopify customer.
const SHOPIFY_SYSTEMS: &[&str] = &["shopify", "shopify_cart"];

/// Whether `event` is an erasure or data request. Only the runtime's own
/// commands and Shopify's signed compliance webhooks get this far with one:
/// the runner holds every event to the trust table first.
pub(crate) fn is_compliance(event: &Event) -> bool {
    [ERASE_REQUESTED, SHOP_ERASE_REQUESTED, DATA_REQUESTED].contains(&event.name.as_str())
}

impl Runner {
    /// Carries out an erasure or data request ([`is_compliance`]).
    pub(crate) fn on_compliance(
        &self,
        unit: &mut Unit<'_>,
        event: &Event,
    ) -> Result<(), InputError> {
        let ids = self.contact_ids()?;
        match event.name.as_str() {
            DATA_REQUESTED => {
                let mut contacts = Vec::new();
                for id in self.named_contacts(unit.store, event)? {
                    contacts.push(export(unit.store, &id)?);
                }
                let answer = json!({
                    "request": event.id,
                    "source": event.source,
                    "requested_at": event.received_at,
                    "properties": event.properties,
                    "contacts": contacts,
                });
                unit.writes.push(Write::KvSet {
                    store: RUNTIME_KV_STORE.into(),
                    key: format!("{DATA_REQUESTS_PREFIX}{}", event.id),
                    value: answer.to_string().into_bytes(),
                });
                unit.metric("contacts.data_requested".into());
                Ok(())
            }
            SHOP_ERASE_REQUESTED => {
                let mut cursor = None;
                loop {
                    let (page, next) = unit.store.contacts_scan(cursor.as_deref(), 500)?;
                    for contact in page {
                        let from_shopify = contact.identities.iter().any(|i| {
                            matches!(i, Identity::External { system, .. }
                                if SHOPIFY_SYSTEMS.contains(&system.as_str()))
                        });
                        if from_shopify {
                            self.erase(unit, ids, &contact.id)?;
                        }
                    }
                    match next {
                        Some(next) => cursor = Some(next),
                        None => return Ok(()),
                    }
                }
            }
            _ => {
                let named = self.named_contacts(unit.store, event)?;
                for id in &named {
                    self.erase(unit, ids, id)?;
                }
                if named.is_empty() {
                    // Nobody known: the identities are still recorded as
                    // erased, so a later replay of this person's data stops.
                    let identities = event_identities(&event.identities);
                    if !identities.is_empty() {
                        let tombstone = ids.new_for(&event.identities).contact;
                        unit.writes.push(Write::ContactPut(ids.tombstone(
                            &tombstone.id,
                            &identities,
                            unit.now,
                        )));
                    }
                }
                Ok(())
            }
        }
    }

    /// The contacts a request names: `properties.contact`, and whoever holds
    /// one of its identities.
    fn named_contacts(&self, store: &dyn Store, event: &Event) -> Result<Vec<String>, StoreError> {
        let mut named = BTreeSet::new();
        if let Some(id) = event.properties.get("contact").and_then(Value::as_str)
            && store.contact_get(id)?.is_some()
        {
            named.insert(id.to_owned());
        }
        for identity in event_identities(&event.identities) {
            if let Some(contact) = store.contact_find_by_identity(&identity)? {
                named.insert(contact.id);
            }
        }
        Ok(named.into_iter().collect())
    }

    /// Erases contact `id` everywhere, in this unit, leaving its tombstone.
    fn erase(&self, unit: &mut Unit<'_>, ids: &ContactIds, id: &str) -> Result<(), InputError> {
        let record = unit.contact(id)?.clone();
        if is_erased(&record) {
            return Ok(());
        }
        let store = unit.store;
        for enrollment in unit.enrollments_of(id)? {
            if let Some(timer) = enrollment.pending_timer() {
                unit.writes.push(Write::TimerCancel {
                    key: timer.key.clone(),
                });
            }
            unit.writes.push(Write::EnrollmentDelete {
                id: enrollment.id.clone(),
            });
            let failed = format!("failed-sends/{}/", enrollment.id);
            delete_records(unit, RUNTIME_KV_STORE, &failed, |_| true)?;
        }
        unit.writes.push(Write::TimerCancel {
            key: crate::audience::AudienceTimer::Segments {
                contact_id: id.to_owned(),
            }
            .key(),
        });
        for journey in self.journeys.current() {
            unit.writes.push(Write::TimerCancel {
                key: format!(
                    "{}date/{}/{id}",
                    crate::audience::AUDIENCE_TIMERS,
                    journey.id
                ),
            });
        }
        for message in store.outbox_of_contact(id)? {
            unit.writes.push(Write::OutboxDelete { id: message.id });
        }
        // Dead letters and waiting events that name the person: their id or
        // an identity, as a JSON string.
        let mut names: Vec<String> = vec![json!(id).to_string()];
        names.extend(
            record
                .contact
                .identities
                .iter()
                .map(|i| json!(i.index_value()).to_string()),
        );
        let names_it = |value: &[u8]| {
            names
                .iter()
                .any(|n| value.windows(n.len()).any(|w| w == n.as_bytes()))
        };
        delete_records(
            unit,
            RUNTIME_KV_STORE,
            crate::dead_letters::PREFIX,
            &names_it,
        )?;
        delete_records(unit, DEFAULT_KV_STORE, INBOX_PREFIX, &names_it)?;
        unit.writes.push(Write::ContactUnchanged {
            id: id.to_owned(),
            as_read: record.as_read.clone(),
        });
        unit.writes.push(Write::ContactPut(ids.tombstone(
            id,
            &record.contact.identities,
            unit.now,
        )));
        unit.forget_contact(id);
        unit.metric("contacts.erased".into());
        tracing::info!(contact = %id, "contact erased");
        Ok(())
    }

    /// Whether an event about nobody known is about an erased person: then
    /// it is dropped rather than making them a contact again.
    pub(crate) fn of_erased(
        &self,
        store: &dyn Store,
        identities: &dripline_engine::Identities,
    ) -> Result<bool, StoreError> {
        let ids = self.contact_ids()?;
        let markers: Vec<Identity> = event_identities(identities)
            .iter()
            .map(|i| ids.erased(i))
            .collect();
        Ok(store
            .contacts_find_by_identities(&markers)?
            .iter()
            .any(Option::is_some))
    }
}

/// Whether a contact is what is left of an erasure.
pub fn is_erased(record: &ContactRecord) -> bool {
    record.contact.profile.get("erased_at").is_some()
}

/// Deletes the records under `prefix` of `store` whose value `matches`,
/// except those this unit consumes already.
fn delete_records(
    unit: &mut Unit<'_>,
    store: &str,
    prefix: &str,
    matches: impl Fn(&[u8]) -> bool,
) -> Result<(), StoreError> {
    let mut after: Option<String> = None;
    loop {
        let page = unit
            .store
            .kv_scan_prefix(store, prefix, after.as_deref(), 500)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = Some(last.clone());
        for (key, value) in page {
            let taken = unit.writes.iter().any(|w| {
                matches!(w, Write::KvConsume { store: s, key: k } | Write::KvDelete { store: s, key: k }
                    if s == store && *k == key)
            });
            if !taken && matches(&value) {
                unit.writes.push(Write::KvDelete {
                    store: store.into(),
                    key,
                });
            }
        }
    }
}
