//! One input's unit of work: reads go through to the store (and are kept, so
//! a step sees what an earlier step of the same input changed), changes stay
//! here until [`Unit::commit`] writes them all in one transaction, together
//! with the removal of the input itself.

use std::collections::{BTreeSet, HashMap};

use dripline_delivery::analytics;
use dripline_delivery::outbox_record::OutboxEntry;
use dripline_delivery::policy::{PastSend, past_send};
use dripline_engine::Enrollment;
use dripline_store::{Store, StoreError, Write};

use crate::contacts::ContactRecord;
use crate::error::InputError;

/// The store enforces one active enrollment per (journey, key). The engine's
/// empty key means "one per contact", which is unique per contact, not global.
pub(crate) fn store_key(enrollment: &Enrollment) -> String {
    if enrollment.key.is_empty() {
        format!("contact:{}", enrollment.contact_id)
    } else {
        format!("key:{}", enrollment.key)
    }
}

/// A stored enrollment's state; one that does not decode is bad input (a
/// retry reads the same bytes).
fn decode_enrollment(stored: &dripline_store::Enrollment) -> Result<Enrollment, InputError> {
    serde_json::from_str(&stored.state)
        .map_err(|e| InputError::bad(format!("enrollment {}: {e}", stored.id)))
}

/// One input's work: reads go through to the store, changes stay here until
/// [`Unit::commit`] writes them all in one transaction.
pub(crate) struct Unit<'a> {
    pub(crate) store: &'a dyn Store,
    pub(crate) now: i64,
    contacts: HashMap<String, ContactRecord>,
    enrollments: HashMap<String, Enrollment>,
    /// The stored version of each enrollment read, which its write expects:
    /// a worker that changed it meanwhile fails this unit's commit instead of
    /// having its change overwritten.
    versions: HashMap<String, u64>,
    dirty_contacts: BTreeSet<String>,
    dirty_enrollments: BTreeSet<String>,
    metrics: HashMap<String, i64>,
    /// The sends queued in `writes`, by contact, as the policy weighs them.
    sends: Vec<(String, PastSend)>,
    pub(crate) writes: Vec<Write>,
}

impl<'a> Unit<'a> {
    pub(crate) fn new(store: &'a dyn Store, now: i64) -> Self {
        Self {
            store,
            now,
            contacts: HashMap::new(),
            enrollments: HashMap::new(),
            versions: HashMap::new(),
            dirty_contacts: BTreeSet::new(),
            dirty_enrollments: BTreeSet::new(),
            metrics: HashMap::new(),
            sends: Vec::new(),
            writes: Vec::new(),
        }
    }

    pub(crate) fn put_contact(&mut self, contact: ContactRecord) {
        self.dirty_contacts.insert(contact.contact.id.clone());
        self.contacts.insert(contact.contact.id.clone(), contact);
    }

    /// Keeps a contact already read (a page of a scan) for this unit's reads,
    /// without marking it changed.
    pub(crate) fn preload(&mut self, contact: ContactRecord) {
        self.contacts
            .entry(contact.contact.id.clone())
            .or_insert(contact);
    }

    /// Drops a contact from this unit's reads and writes: one whose write is
    /// already in `writes` (a merged contact's tombstone).
    pub(crate) fn forget_contact(&mut self, id: &str) {
        self.contacts.remove(id);
        self.dirty_contacts.remove(id);
    }

    /// How many contacts this unit changed.
    pub(crate) fn changed_contacts(&self) -> usize {
        self.dirty_contacts.len()
    }

    /// Whether this unit changed the contact.
    pub(crate) fn changed_contact(&self, id: &str) -> bool {
        self.dirty_contacts.contains(id)
    }

    pub(crate) fn contact(&mut self, id: &str) -> Result<&ContactRecord, InputError> {
        self.load_contact(id)?;
        self.contacts
            .get(id)
            .ok_or_else(|| InputError::bad(format!("contact {id} is not known")))
    }

    pub(crate) fn contact_mut(&mut self, id: &str) -> Result<&mut ContactRecord, InputError> {
        self.load_contact(id)?;
        self.dirty_contacts.insert(id.to_string());
        self.contacts
            .get_mut(id)
            .ok_or_else(|| InputError::bad(format!("contact {id} is not known")))
    }

    fn load_contact(&mut self, id: &str) -> Result<(), InputError> {
        if !self.contacts.contains_key(id)
            && let Some(stored) = self.store.contact_get(id)?
        {
            self.contacts
                .insert(id.to_string(), ContactRecord::from_stored(stored));
        }
        Ok(())
    }

    pub(crate) fn put_enrollment(&mut self, enrollment: Enrollment) {
        self.dirty_enrollments.insert(enrollment.id.clone());
        self.enrollments.insert(enrollment.id.clone(), enrollment);
    }

    pub(crate) fn enrollment(&mut self, id: &str) -> Result<Option<Enrollment>, InputError> {
        if let Some(enrollment) = self.enrollments.get(id) {
            return Ok(Some(enrollment.clone()));
        }
        let Some(stored) = self.store.enrollment_get(id)? else {
            return Ok(None);
        };
        let enrollment = decode_enrollment(&stored)?;
        self.versions.insert(id.to_string(), stored.version);
        self.enrollments.insert(id.to_string(), enrollment.clone());
        Ok(Some(enrollment))
    }

    /// Reads the enrollments with these ids, and their contacts, in two batched
    /// reads rather than two reads per id: what a batch of fired timers needs.
    pub(crate) fn prefetch(&mut self, enrollment_ids: &[&str]) -> Result<(), InputError> {
        let wanted: Vec<&str> = enrollment_ids
            .iter()
            .copied()
            .filter(|id| !self.enrollments.contains_key(*id))
            .collect();
        let found = self.store.enrollments_get(&wanted)?;
        for stored in found.into_iter().flatten() {
            let enrollment = decode_enrollment(&stored)?;
            self.versions.insert(stored.id.clone(), stored.version);
            self.enrollments.insert(stored.id, enrollment);
        }
        let contact_ids: BTreeSet<&str> = enrollment_ids
            .iter()
            .filter_map(|id| self.enrollments.get(*id))
            .map(|e| e.contact_id.as_str())
            .filter(|id| !self.contacts.contains_key(*id))
            .collect();
        let contact_ids: Vec<&str> = contact_ids.into_iter().collect();
        let found = self.store.contacts_get(&contact_ids)?;
        let records: Vec<ContactRecord> = found
            .into_iter()
            .flatten()
            .map(ContactRecord::from_stored)
            .collect();
        for record in records {
            self.contacts.insert(record.contact.id.clone(), record);
        }
        Ok(())
    }

    /// The contact's enrollments, this unit's changes included.
    pub(crate) fn enrollments_of(
        &mut self,
        contact_id: &str,
    ) -> Result<Vec<Enrollment>, InputError> {
        let stored = self.store.enrollments_of_contact(contact_id)?;
        let mut ids: BTreeSet<String> = stored.iter().map(|e| e.id.clone()).collect();
        ids.extend(
            self.enrollments
                .values()
                .filter(|e| e.contact_id == contact_id)
                .map(|e| e.id.clone()),
        );
        let mut list = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(enrollment) = self.enrollment(&id)? {
                list.push(enrollment);
            }
        }
        Ok(list)
    }

    /// Queues an outbox row, and remembers it for the policy's later
    /// decisions in this unit (a second journey sending on the same event).
    pub(crate) fn queue_outbox(&mut self, entry: OutboxEntry) {
        if let Some(what) = queued_as(&entry.record).filter(|_| !entry.record.test) {
            let key = analytics::Key::of_message(&entry.record, &entry.channel);
            let name = analytics::counter(&key, self.now, &what);
            self.metric(name);
        }
        if let Some(send) = past_send(&entry.record, entry.deliver_at_ms) {
            self.sends.push((entry.contact_id.clone(), send));
        }
        self.writes.push(Write::OutboxInsert(entry.into_row()));
    }

    /// The sends this unit has queued for `contact_id`, due from `since` on.
    pub(crate) fn sends_to(&self, contact_id: &str, since: i64) -> Vec<PastSend> {
        self.sends
            .iter()
            .filter(|(to, send)| to == contact_id && send.deliver_at >= since)
            .map(|(_, send)| send.clone())
            .collect()
    }

    pub(crate) fn metric(&mut self, name: String) {
        self.metric_by(name, 1);
    }

    pub(crate) fn metric_by(&mut self, name: String, delta: i64) {
        *self.metrics.entry(name).or_default() += delta;
    }

    pub(crate) fn commit(mut self) -> Result<(), StoreError> {
        let mut batch = std::mem::take(&mut self.writes);
        for id in &self.dirty_contacts {
            if let Some(contact) = self.contacts.get(id) {
                batch.push(Write::ContactUnchanged {
                    id: id.clone(),
                    as_read: contact.as_read.clone(),
                });
                batch.push(Write::ContactPut(contact.to_stored()));
            }
        }
        for id in &self.dirty_enrollments {
            if let Some(enrollment) = self.enrollments.get(id) {
                batch.push(Write::EnrollmentPut {
                    enrollment: dripline_store::Enrollment {
                        id: enrollment.id.clone(),
                        journey: enrollment.journey.clone(),
                        contact_id: enrollment.contact_id.clone(),
                        active: !enrollment.is_done(),
                        key: Some(store_key(enrollment)),
                        version: 0,
                        state: serde_json::to_string(enrollment)
                            .map_err(|e| StoreError::Corrupt(format!("enrollment {id}: {e}")))?,
                    },
                    if_version: self.versions.get(id).copied(),
                });
            }
        }
        for (name, delta) in self.metrics.drain() {
            batch.push(Write::MetricAdd { name, delta });
        }
        self.store.apply(&batch)?;
        Ok(())
    }
}

/// What a queued message counts as in the analytics: `sent` (it goes, now or
/// after quiet hours) or `suppressed.<reason>`, the reason cut at its first
/// `:` so that figures such as a cap's count do not make a counter each.
/// An HTTP post (no delivery decision) is not a message to a person.
fn queued_as(record: &dripline_delivery::OutboxRecord) -> Option<String> {
    use dripline_delivery::DeliveryDecision;
    match record.delivery.as_ref()? {
        DeliveryDecision::Sent { .. } | DeliveryDecision::Deferred { .. } => Some("sent".into()),
        DeliveryDecision::Suppressed { reason } => {
            let reason = reason.split(':').next().unwrap_or(reason);
            Some(format!("suppressed.{}", analytics::slug(reason)))
        }
    }
}
