//! A store that fails on demand: a real SQLite store behind it, and reads of
//! contacts or enrollments that fail with SQLite's "database is locked" while
//! armed, as a store under a long checkpoint or a competing writer does for a
//! moment. The tests of what the runner does with such a moment use it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dripline_store::prelude::*;
use dripline_store::{
    Contact, Enrollment, Identity, Millis, OutboxMessage, OutboxStatus, Result, SqliteStore,
    StoreError, Timer, Write, WriteResult,
};

/// See the module documentation.
pub struct FlakyStore {
    inner: Arc<SqliteStore>,
    /// How many of the next contact and enrollment reads fail.
    failing_reads: AtomicUsize,
}

impl FlakyStore {
    /// A store on `inner` that does not fail until [`FlakyStore::fail_reads`].
    pub fn new(inner: Arc<SqliteStore>) -> Self {
        Self {
            inner,
            failing_reads: AtomicUsize::new(0),
        }
    }

    /// The next `n` reads of contacts or enrollments fail.
    pub fn fail_reads(&self, n: usize) {
        self.failing_reads.store(n, Ordering::SeqCst);
    }

    fn read(&self) -> Result<()> {
        let failing = self
            .failing_reads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match failing {
            Ok(_) => Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                Some("database is locked".into()),
            ))),
            Err(_) => Ok(()),
        }
    }
}

impl Apply for FlakyStore {
    fn apply(&self, batch: &[Write]) -> Result<Vec<WriteResult>> {
        self.inner.apply(batch)
    }
}

impl KeyValue for FlakyStore {
    fn kv_get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>> {
        self.inner.kv_get(store, key)
    }
    fn kv_exists(&self, store: &str, key: &str) -> Result<bool> {
        self.inner.kv_exists(store, key)
    }
    fn kv_keys(&self, store: &str) -> Result<Vec<String>> {
        self.inner.kv_keys(store)
    }
    fn kv_scan_prefix(
        &self,
        store: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        self.inner.kv_scan_prefix(store, prefix, after, limit)
    }
}

impl Dedupe for FlakyStore {
    fn dedupe_seen(&self, key: &str, now_ms: Millis) -> Result<bool> {
        self.inner.dedupe_seen(key, now_ms)
    }
}

impl Contacts for FlakyStore {
    fn contact_get(&self, id: &str) -> Result<Option<Contact>> {
        self.read()?;
        self.inner.contact_get(id)
    }
    fn contacts_get(&self, ids: &[&str]) -> Result<Vec<Option<Contact>>> {
        self.read()?;
        self.inner.contacts_get(ids)
    }
    fn contact_find_by_identity(&self, identity: &Identity) -> Result<Option<Contact>> {
        self.read()?;
        self.inner.contact_find_by_identity(identity)
    }
    fn contacts_scan(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Contact>, Option<String>)> {
        self.read()?;
        self.inner.contacts_scan(cursor, limit)
    }
}

impl Enrollments for FlakyStore {
    fn enrollment_get(&self, id: &str) -> Result<Option<Enrollment>> {
        self.read()?;
        self.inner.enrollment_get(id)
    }
    fn enrollments_get(&self, ids: &[&str]) -> Result<Vec<Option<Enrollment>>> {
        self.read()?;
        self.inner.enrollments_get(ids)
    }
    fn enrollments_of_contact(&self, contact_id: &str) -> Result<Vec<Enrollment>> {
        self.read()?;
        self.inner.enrollments_of_contact(contact_id)
    }
    fn active_enrollment_by_key(&self, journey: &str, key: &str) -> Result<Option<Enrollment>> {
        self.read()?;
        self.inner.active_enrollment_by_key(journey, key)
    }
}

impl Timers for FlakyStore {
    fn claim_due_timers(
        &self,
        now_ms: Millis,
        limit: usize,
        lease_ms: Millis,
    ) -> Result<Vec<Timer>> {
        self.inner.claim_due_timers(now_ms, limit, lease_ms)
    }
    fn timer_get(&self, key: &str) -> Result<Option<Timer>> {
        self.inner.timer_get(key)
    }
    fn next_due_at(&self) -> Result<Option<Millis>> {
        self.inner.next_due_at()
    }
    fn timers_pending_count(&self) -> Result<u64> {
        self.inner.timers_pending_count()
    }
}

impl Outbox for FlakyStore {
    fn outbox_get(&self, id: i64) -> Result<Option<OutboxMessage>> {
        self.inner.outbox_get(id)
    }
    fn outbox_get_by_key(&self, idempotency_key: &str) -> Result<Option<OutboxMessage>> {
        self.inner.outbox_get_by_key(idempotency_key)
    }
    fn outbox_list(&self, after_id: Option<i64>, limit: usize) -> Result<Vec<OutboxMessage>> {
        self.inner.outbox_list(after_id, limit)
    }
    fn outbox_with_status(&self, status: OutboxStatus, limit: usize) -> Result<Vec<OutboxMessage>> {
        self.inner.outbox_with_status(status, limit)
    }
    fn outbox_due(&self, now_ms: Millis, limit: usize) -> Result<Vec<OutboxMessage>> {
        self.inner.outbox_due(now_ms, limit)
    }
    fn outbox_of_contact(&self, contact_id: &str) -> Result<Vec<OutboxMessage>> {
        self.inner.outbox_of_contact(contact_id)
    }
}

impl Metrics for FlakyStore {
    fn metric_get(&self, name: &str) -> Result<i64> {
        self.inner.metric_get(name)
    }
    fn metrics_all(&self) -> Result<BTreeMap<String, i64>> {
        self.inner.metrics_all()
    }
}
