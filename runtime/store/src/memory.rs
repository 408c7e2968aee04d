//! An in-memory [`Store`](crate::Store) with the same semantics as the SQLite one, for unit tests
//! of the code that uses a store. Nothing survives the process.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use crate::{
    Apply, Contact, Contacts, Dedupe, Enrollment, Enrollments, Identity, KeyValue, Metrics, Millis,
    NewOutboxMessage, Outbox, OutboxMessage, OutboxStatus, Result, StoreError, Timer, Timers,
    Write, WriteResult, dedup_identities, prefix_upper_bound,
};

/// A [`Store`](crate::Store) in memory. Cheap to create; every instance is empty and separate.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| StoreError::Poisoned)
    }
}

#[derive(Default)]
struct State {
    kv: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    dedupe: HashMap<String, Millis>,
    contacts: HashMap<String, Contact>,
    identities: HashMap<Identity, String>,
    enrollments: BTreeMap<String, Enrollment>,
    timers: HashMap<String, TimerRow>,
    /// (due_at, key) of every timer, the order in which claims take them.
    timers_by_due: BTreeSet<(Millis, String)>,
    /// (claimed_until, key) of every claimed timer.
    timers_by_lease: BTreeSet<(Millis, String)>,
    outbox: BTreeMap<i64, OutboxMessage>,
    outbox_by_key: HashMap<String, i64>,
    outbox_last_id: i64,
    metrics: BTreeMap<String, i64>,
}

#[derive(Clone)]
struct TimerRow {
    due_at_ms: Millis,
    payload: Vec<u8>,
    claimed_until_ms: Option<Millis>,
}

impl TimerRow {
    fn claimable_at(&self, now_ms: Millis) -> bool {
        self.due_at_ms <= now_ms && self.claimed_until_ms.is_none_or(|until| until <= now_ms)
    }
}

/// The previous value of one record a batch changed, to put back if a later write
/// of the batch fails. Copying the whole state per batch would make a batch cost
/// as much as the store is large.
enum Undo {
    Kv(String, String, Option<Vec<u8>>),
    Dedupe(String, Option<Millis>),
    Contact(String, Option<Contact>),
    Enrollment(String, Option<Enrollment>),
    Timer(String, Option<TimerRow>),
    Outbox(i64, Option<OutboxMessage>),
    Metric(String, Option<i64>),
}

impl State {
    // Every change goes through one of these setters, which keep the secondary
    // indexes in step and return the old value for the undo log.

    fn set_kv(&mut self, store: &str, key: &str, value: Option<Vec<u8>>) -> Option<Vec<u8>> {
        match value {
            Some(v) => self
                .kv
                .entry(store.to_owned())
                .or_default()
                .insert(key.to_owned(), v),
            None => self.kv.get_mut(store).and_then(|m| m.remove(key)),
        }
    }

    fn set_dedupe(&mut self, key: &str, expires: Option<Millis>) -> Option<Millis> {
        match expires {
            Some(e) => self.dedupe.insert(key.to_owned(), e),
            None => self.dedupe.remove(key),
        }
    }

    fn set_contact(&mut self, id: &str, contact: Option<Contact>) -> Option<Contact> {
        let old = self.contacts.remove(id);
        if let Some(old) = &old {
            for identity in &old.identities {
                self.identities.remove(identity);
            }
        }
        if let Some(new) = contact {
            for identity in &new.identities {
                self.identities.insert(identity.clone(), id.to_owned());
            }
            self.contacts.insert(id.to_owned(), new);
        }
        old
    }

    fn set_enrollment(&mut self, id: &str, e: Option<Enrollment>) -> Option<Enrollment> {
        match e {
            Some(e) => self.enrollments.insert(id.to_owned(), e),
            None => self.enrollments.remove(id),
        }
    }

    fn set_timer(&mut self, key: &str, row: Option<TimerRow>) -> Option<TimerRow> {
        let old = self.timers.remove(key);
        if let Some(old) = &old {
            self.timers_by_due.remove(&(old.due_at_ms, key.to_owned()));
            if let Some(until) = old.claimed_until_ms {
                self.timers_by_lease.remove(&(until, key.to_owned()));
            }
        }
        if let Some(row) = row {
            self.timers_by_due.insert((row.due_at_ms, key.to_owned()));
            if let Some(until) = row.claimed_until_ms {
                self.timers_by_lease.insert((until, key.to_owned()));
            }
            self.timers.insert(key.to_owned(), row);
        }
        old
    }

    fn set_outbox(&mut self, id: i64, m: Option<OutboxMessage>) -> Option<OutboxMessage> {
        let old = self.outbox.remove(&id);
        if let Some(old) = &old {
            self.outbox_by_key.remove(&old.idempotency_key);
        }
        if let Some(m) = m {
            self.outbox_by_key.insert(m.idempotency_key.clone(), id);
            self.outbox.insert(id, m);
        }
        old
    }

    fn set_metric(&mut self, name: &str, value: Option<i64>) -> Option<i64> {
        match value {
            Some(v) => self.metrics.insert(name.to_owned(), v),
            None => self.metrics.remove(name),
        }
    }

    fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Kv(store, key, v) => drop(self.set_kv(&store, &key, v)),
            Undo::Dedupe(key, v) => drop(self.set_dedupe(&key, v)),
            Undo::Contact(id, v) => drop(self.set_contact(&id, v)),
            Undo::Enrollment(id, v) => drop(self.set_enrollment(&id, v)),
            Undo::Timer(key, v) => drop(self.set_timer(&key, v)),
            Undo::Outbox(id, v) => drop(self.set_outbox(id, v)),
            Undo::Metric(name, v) => drop(self.set_metric(&name, v)),
        }
    }

    fn apply_one(&mut self, write: &Write, log: &mut Vec<Undo>) -> Result<WriteResult> {
        Ok(match write {
            Write::KvSet { store, key, value } => {
                let old = self.set_kv(store, key, Some(value.clone()));
                log.push(Undo::Kv(store.clone(), key.clone(), old));
                WriteResult::Done
            }
            Write::KvDelete { store, key } => {
                let old = self.set_kv(store, key, None);
                let existed = old.is_some();
                log.push(Undo::Kv(store.clone(), key.clone(), old));
                WriteResult::Flag(existed)
            }
            Write::KvConsume { store, key } => {
                let old = self.set_kv(store, key, None);
                if old.is_none() {
                    return Err(StoreError::Gone {
                        store: store.clone(),
                        key: key.clone(),
                    });
                }
                log.push(Undo::Kv(store.clone(), key.clone(), old));
                WriteResult::Done
            }
            Write::DedupeMark {
                key,
                now_ms,
                expires_at_ms,
            } => {
                let live = self.dedupe.get(key).is_some_and(|e| e > now_ms);
                if live {
                    WriteResult::Flag(false)
                } else {
                    let old = self.set_dedupe(key, Some(*expires_at_ms));
                    log.push(Undo::Dedupe(key.clone(), old));
                    WriteResult::Flag(true)
                }
            }
            Write::DedupePurge { now_ms } => {
                let expired: Vec<String> = self
                    .dedupe
                    .iter()
                    .filter(|(_, e)| *e <= now_ms)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in &expired {
                    let old = self.set_dedupe(key, None);
                    log.push(Undo::Dedupe(key.clone(), old));
                }
                WriteResult::Count(expired.len() as u64)
            }
            Write::ContactPut(contact) => {
                for identity in &contact.identities {
                    if let Some(owner) = self.identities.get(identity)
                        && *owner != contact.id
                    {
                        return Err(StoreError::IdentityTaken {
                            identity: identity.clone(),
                            contact_id: owner.clone(),
                        });
                    }
                }
                let mut contact = contact.clone();
                dedup_identities(&mut contact.identities);
                let id = contact.id.clone();
                let old = self.set_contact(&id, Some(contact));
                log.push(Undo::Contact(id, old));
                WriteResult::Done
            }
            Write::ContactUnchanged { id, as_read } => {
                if self.contacts.get(id) != as_read.as_ref() {
                    return Err(StoreError::ContactChanged { id: id.clone() });
                }
                WriteResult::Done
            }
            Write::EnrollmentPut {
                enrollment,
                if_version,
            } => {
                let current = self
                    .enrollments
                    .get(&enrollment.id)
                    .map_or(0, |e| e.version);
                if let Some(expected) = *if_version
                    && expected != current
                {
                    return Err(StoreError::VersionConflict {
                        id: enrollment.id.clone(),
                        expected,
                        actual: current,
                    });
                }
                if enrollment.active
                    && let Some(key) = &enrollment.key
                    && let Some(holder) = self.active_by_key(&enrollment.journey, key)
                    && holder.id != enrollment.id
                {
                    return Err(StoreError::ActiveKeyTaken {
                        journey: enrollment.journey.clone(),
                        key: key.clone(),
                        enrollment_id: holder.id.clone(),
                    });
                }
                let version = current + 1;
                let new = Enrollment {
                    version,
                    ..enrollment.clone()
                };
                let old = self.set_enrollment(&enrollment.id, Some(new));
                log.push(Undo::Enrollment(enrollment.id.clone(), old));
                WriteResult::Version(version)
            }
            Write::EnrollmentDelete { id } => {
                let old = self.set_enrollment(id, None);
                let existed = old.is_some();
                log.push(Undo::Enrollment(id.clone(), old));
                WriteResult::Flag(existed)
            }
            Write::TimerSet {
                key,
                due_at_ms,
                payload,
            } => {
                let row = TimerRow {
                    due_at_ms: *due_at_ms,
                    payload: payload.clone(),
                    claimed_until_ms: None,
                };
                let old = self.set_timer(key, Some(row));
                log.push(Undo::Timer(key.clone(), old));
                WriteResult::Done
            }
            Write::TimerAck { key } => {
                let claimed = self
                    .timers
                    .get(key)
                    .is_some_and(|t| t.claimed_until_ms.is_some());
                if claimed {
                    let old = self.set_timer(key, None);
                    log.push(Undo::Timer(key.clone(), old));
                }
                WriteResult::Flag(claimed)
            }
            Write::TimerReleaseClaims => {
                let claimed: Vec<String> = self
                    .timers_by_lease
                    .iter()
                    .map(|(_, key)| key.clone())
                    .collect();
                for key in &claimed {
                    let Some(mut row) = self.timers.get(key).cloned() else {
                        continue;
                    };
                    row.claimed_until_ms = None;
                    let old = self.set_timer(key, Some(row));
                    log.push(Undo::Timer(key.clone(), old));
                }
                WriteResult::Count(claimed.len() as u64)
            }
            Write::TimerRelease {
                key,
                claimed_until_ms,
            } => {
                let held = self
                    .timers
                    .get(key)
                    .filter(|t| t.claimed_until_ms == Some(*claimed_until_ms))
                    .cloned();
                if let Some(mut row) = held.clone() {
                    row.claimed_until_ms = None;
                    let old = self.set_timer(key, Some(row));
                    log.push(Undo::Timer(key.clone(), old));
                }
                WriteResult::Flag(held.is_some())
            }
            Write::TimerCancel { key } => {
                let old = self.set_timer(key, None);
                let existed = old.is_some();
                log.push(Undo::Timer(key.clone(), old));
                WriteResult::Flag(existed)
            }
            Write::OutboxInsert(message) => {
                if let Some(id) = self.outbox_by_key.get(&message.idempotency_key) {
                    WriteResult::Outbox {
                        id: *id,
                        inserted: false,
                    }
                } else {
                    // Ids of rolled-back inserts are not reused here, unlike in
                    // SQLite; callers must not rely on ids being dense.
                    self.outbox_last_id += 1;
                    let id = self.outbox_last_id;
                    let old = self.set_outbox(id, Some(new_outbox_message(id, message)));
                    log.push(Undo::Outbox(id, old));
                    WriteResult::Outbox { id, inserted: true }
                }
            }
            Write::OutboxDelete { id } => match self.outbox.contains_key(id) {
                true => {
                    let old = self.set_outbox(*id, None);
                    log.push(Undo::Outbox(*id, old));
                    WriteResult::Flag(true)
                }
                false => WriteResult::Flag(false),
            },
            Write::OutboxSetStatus { id, status, at_ms } => match self.outbox.get(id) {
                Some(m) => {
                    let new = OutboxMessage {
                        status: *status,
                        updated_at_ms: *at_ms,
                        ..m.clone()
                    };
                    let old = self.set_outbox(*id, Some(new));
                    log.push(Undo::Outbox(*id, old));
                    WriteResult::Flag(true)
                }
                None => WriteResult::Flag(false),
            },
            Write::OutboxRecordAttempt {
                id,
                status,
                deliver_at_ms,
                attempts,
                last_error,
                at_ms,
            } => match self.outbox.get(id) {
                Some(m) if m.status == OutboxStatus::Pending => {
                    let new = OutboxMessage {
                        status: *status,
                        deliver_at_ms: *deliver_at_ms,
                        attempts: *attempts,
                        last_error: last_error.clone(),
                        updated_at_ms: *at_ms,
                        ..m.clone()
                    };
                    let old = self.set_outbox(*id, Some(new));
                    log.push(Undo::Outbox(*id, old));
                    WriteResult::Flag(true)
                }
                _ => WriteResult::Flag(false),
            },
            Write::OutboxClaim {
                id,
                now_ms,
                until_ms,
            } => match self.outbox.get(id) {
                Some(m) if m.status == OutboxStatus::Pending && m.deliver_at_ms <= *now_ms => {
                    let new = OutboxMessage {
                        deliver_at_ms: *until_ms,
                        ..m.clone()
                    };
                    let old = self.set_outbox(*id, Some(new));
                    log.push(Undo::Outbox(*id, old));
                    WriteResult::Flag(true)
                }
                _ => WriteResult::Flag(false),
            },
            Write::MetricAdd { name, delta } => {
                let value = self
                    .metrics
                    .get(name)
                    .copied()
                    .unwrap_or(0)
                    .saturating_add(*delta);
                let old = self.set_metric(name, Some(value));
                log.push(Undo::Metric(name.clone(), old));
                WriteResult::Counter(value)
            }
        })
    }

    fn active_by_key(&self, journey: &str, key: &str) -> Option<&Enrollment> {
        self.enrollments
            .values()
            .find(|e| e.active && e.journey == journey && e.key.as_deref() == Some(key))
    }

    fn timer(&self, key: &str) -> Option<Timer> {
        self.timers.get(key).map(|row| Timer {
            key: key.to_owned(),
            due_at_ms: row.due_at_ms,
            payload: row.payload.clone(),
            claimed_until_ms: row.claimed_until_ms,
        })
    }
}

fn new_outbox_message(id: i64, m: &NewOutboxMessage) -> OutboxMessage {
    OutboxMessage {
        id,
        idempotency_key: m.idempotency_key.clone(),
        contact_id: m.contact_id.clone(),
        channel: m.channel.clone(),
        content: m.content.clone(),
        status: m.status,
        created_at_ms: m.created_at_ms,
        updated_at_ms: m.created_at_ms,
        deliver_at_ms: m.deliver_at_ms,
        attempts: 0,
        last_error: None,
    }
}

impl Apply for MemoryStore {
    fn apply(&self, batch: &[Write]) -> Result<Vec<WriteResult>> {
        let mut state = self.lock()?;
        let mut log = Vec::new();
        let mut results = Vec::with_capacity(batch.len());
        for write in batch {
            match state.apply_one(write, &mut log) {
                Ok(r) => results.push(r),
                Err(e) => {
                    while let Some(undo) = log.pop() {
                        state.undo(undo);
                    }
                    return Err(e);
                }
            }
        }
        Ok(results)
    }
}

impl KeyValue for MemoryStore {
    fn kv_get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.lock()?.kv.get(store).and_then(|m| m.get(key)).cloned())
    }

    fn kv_exists(&self, store: &str, key: &str) -> Result<bool> {
        Ok(self
            .lock()?
            .kv
            .get(store)
            .is_some_and(|m| m.contains_key(key)))
    }

    fn kv_keys(&self, store: &str) -> Result<Vec<String>> {
        Ok(self
            .lock()?
            .kv
            .get(store)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default())
    }

    fn kv_scan_prefix(
        &self,
        store: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        use std::ops::Bound;
        let state = self.lock()?;
        let Some(map) = state.kv.get(store) else {
            return Ok(Vec::new());
        };
        let lower = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };
        let upper = prefix_upper_bound(prefix).map_or(Bound::Unbounded, Bound::Excluded);
        if let (Bound::Excluded(lo), Bound::Excluded(hi)) = (&lower, &upper)
            && lo >= hi
        {
            // BTreeMap::range panics on an empty range; the scan is simply over.
            return Ok(Vec::new());
        }
        Ok(map
            .range((lower, upper))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl Dedupe for MemoryStore {
    fn dedupe_seen(&self, key: &str, now_ms: Millis) -> Result<bool> {
        Ok(self.lock()?.dedupe.get(key).is_some_and(|e| *e > now_ms))
    }
}

impl Contacts for MemoryStore {
    fn contact_get(&self, id: &str) -> Result<Option<Contact>> {
        Ok(self.lock()?.contacts.get(id).cloned())
    }

    fn contacts_get(&self, ids: &[&str]) -> Result<Vec<Option<Contact>>> {
        let state = self.lock()?;
        Ok(ids
            .iter()
            .map(|id| state.contacts.get(*id).cloned())
            .collect())
    }

    fn contacts_scan(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Contact>, Option<String>)> {
        let state = self.lock()?;
        let mut ids: Vec<&String> = state
            .contacts
            .keys()
            .filter(|id| cursor.is_none_or(|after| id.as_str() > after))
            .collect();
        ids.sort();
        ids.truncate(limit);
        let next = (ids.len() == limit)
            .then(|| ids.last().map(|id| (*id).clone()))
            .flatten();
        let page = ids
            .iter()
            .filter_map(|id| state.contacts.get(*id).cloned())
            .collect();
        Ok((page, next))
    }

    fn contact_find_by_identity(&self, identity: &Identity) -> Result<Option<Contact>> {
        let state = self.lock()?;
        Ok(state
            .identities
            .get(identity)
            .and_then(|id| state.contacts.get(id))
            .cloned())
    }
}

impl Enrollments for MemoryStore {
    fn enrollment_get(&self, id: &str) -> Result<Option<Enrollment>> {
        Ok(self.lock()?.enrollments.get(id).cloned())
    }

    fn enrollments_get(&self, ids: &[&str]) -> Result<Vec<Option<Enrollment>>> {
        let state = self.lock()?;
        Ok(ids
            .iter()
            .map(|id| state.enrollments.get(*id).cloned())
            .collect())
    }

    fn enrollments_of_contact(&self, contact_id: &str) -> Result<Vec<Enrollment>> {
        Ok(self
            .lock()?
            .enrollments
            .values()
            .filter(|e| e.contact_id == contact_id)
            .cloned()
            .collect())
    }

    fn active_enrollment_by_key(&self, journey: &str, key: &str) -> Result<Option<Enrollment>> {
        Ok(self.lock()?.active_by_key(journey, key).cloned())
    }
}

impl Timers for MemoryStore {
    fn claim_due_timers(
        &self,
        now_ms: Millis,
        limit: usize,
        lease_ms: Millis,
    ) -> Result<Vec<Timer>> {
        let mut state = self.lock()?;
        // Walks the due order past claimed timers, as the SQLite store does.
        let keys: Vec<String> = state
            .timers_by_due
            .iter()
            .take_while(|(due_at, _)| *due_at <= now_ms)
            .filter(|(_, key)| {
                state
                    .timers
                    .get(key)
                    .is_some_and(|row| row.claimable_at(now_ms))
            })
            .take(limit)
            .map(|(_, key)| key.clone())
            .collect();
        let claimed_until = now_ms.saturating_add(lease_ms);
        let mut claimed = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(mut row) = state.timers.get(&key).cloned() {
                row.claimed_until_ms = Some(claimed_until);
                state.set_timer(&key, Some(row));
            }
            claimed.extend(state.timer(&key));
        }
        claimed.sort_by(|a, b| (a.due_at_ms, &a.key).cmp(&(b.due_at_ms, &b.key)));
        Ok(claimed)
    }

    fn timer_get(&self, key: &str) -> Result<Option<Timer>> {
        Ok(self.lock()?.timer(key))
    }

    fn next_due_at(&self) -> Result<Option<Millis>> {
        let state = self.lock()?;
        let first_unclaimed = state
            .timers_by_due
            .iter()
            .find(|(_, key)| {
                state
                    .timers
                    .get(key)
                    .is_some_and(|row| row.claimed_until_ms.is_none())
            })
            .map(|(due_at, _)| *due_at);
        let first_lapse = state.timers_by_lease.first().map(|(until, _)| *until);
        Ok(first_unclaimed.into_iter().chain(first_lapse).min())
    }

    fn timers_pending_count(&self) -> Result<u64> {
        Ok(self.lock()?.timers.len() as u64)
    }
}

impl Outbox for MemoryStore {
    fn outbox_get(&self, id: i64) -> Result<Option<OutboxMessage>> {
        Ok(self.lock()?.outbox.get(&id).cloned())
    }

    fn outbox_get_by_key(&self, idempotency_key: &str) -> Result<Option<OutboxMessage>> {
        let state = self.lock()?;
        Ok(state
            .outbox_by_key
            .get(idempotency_key)
            .and_then(|id| state.outbox.get(id))
            .cloned())
    }

    fn outbox_list(&self, after_id: Option<i64>, limit: usize) -> Result<Vec<OutboxMessage>> {
        use std::ops::Bound;
        let lower = after_id.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .lock()?
            .outbox
            .range((lower, Bound::Unbounded))
            .take(limit)
            .map(|(_, m)| m.clone())
            .collect())
    }

    fn outbox_with_status(&self, status: OutboxStatus, limit: usize) -> Result<Vec<OutboxMessage>> {
        Ok(self
            .lock()?
            .outbox
            .values()
            .filter(|m| m.status == status)
            .take(limit)
            .cloned()
            .collect())
    }

    fn outbox_due(&self, now_ms: Millis, limit: usize) -> Result<Vec<OutboxMessage>> {
        // A scan: the memory store holds test-sized outboxes.
        let mut due: Vec<OutboxMessage> = self
            .lock()?
            .outbox
            .values()
            .filter(|m| m.status == OutboxStatus::Pending && m.deliver_at_ms <= now_ms)
            .cloned()
            .collect();
        due.sort_by_key(|m| (m.deliver_at_ms, m.id));
        due.truncate(limit);
        Ok(due)
    }

    fn outbox_of_contact(&self, contact_id: &str) -> Result<Vec<OutboxMessage>> {
        Ok(self
            .lock()?
            .outbox
            .values()
            .filter(|m| m.contact_id == contact_id)
            .cloned()
            .collect())
    }
}

impl Metrics for MemoryStore {
    fn metric_get(&self, name: &str) -> Result<i64> {
        Ok(self.lock()?.metrics.get(name).copied().unwrap_or(0))
    }

    fn metrics_all(&self) -> Result<BTreeMap<String, i64>> {
        Ok(self.lock()?.metrics.clone())
    }
}
