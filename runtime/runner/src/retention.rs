//! Retention: personal data kept no longer than `[retention]` in
//! `delivery.toml` says. A contact with no event or import for
//! `contacts_inactive_for` is erased through the inbox, exactly as
//! `dripline contacts erase` would ([`crate::erasure`]); messages older than
//! `messages_older_than` leave the outbox once nothing is pending on them.

use dripline_delivery::policy::Retention;
use dripline_store::{OutboxStatus, Store, StoreError, Write};

use crate::contacts::ContactRecord;

/// What one retention pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetentionReport {
    /// Contacts past the limit, whose erasure was queued.
    pub contacts: usize,
    /// Messages deleted from the outbox.
    pub messages: usize,
}

/// How many contacts or messages one page of the pass reads.
const PAGE: usize = 500;

/// The last time contact `record` was seen active: its latest event or
/// import, else its latest timeline entry or consent change; `None` if
/// nothing says (such a contact is kept).
pub fn last_active(record: &ContactRecord) -> Option<i64> {
    let profile = &record.profile;
    profile
        .last_active_at
        .or_else(|| profile.timeline.iter().map(|e| e.at).max())
        .or_else(|| profile.consent_history.iter().map(|c| c.at).max())
}

/// One pass at `now`: queues the erasure of every contact inactive past the
/// limit, and deletes the messages past theirs.
pub fn run(store: &dyn Store, rules: &Retention, now: i64) -> Result<RetentionReport, StoreError> {
    let mut report = RetentionReport::default();
    if let Some(limit) = rules.contacts_inactive_for {
        let before = now.saturating_sub(limit.as_offset());
        let mut cursor: Option<String> = None;
        loop {
            let (page, next) = store.contacts_scan(cursor.as_deref(), PAGE)?;
            let mut writes = Vec::new();
            for contact in page {
                let record = ContactRecord::from_stored(contact);
                if record.is_tombstone() || crate::erasure::is_erased(&record) {
                    continue;
                }
                if last_active(&record).is_some_and(|at| at < before) {
                    writes.push(dripline_store::control::erase_request(
                        &record.contact.id,
                        now,
                        "retention",
                    ));
                    report.contacts += 1;
                }
            }
            store.apply(&writes)?;
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    if let Some(limit) = rules.messages_older_than {
        let before = now.saturating_sub(limit.as_offset());
        let mut after: Option<i64> = None;
        loop {
            let page = store.outbox_list(after, PAGE)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            // Ids grow with time: once a page starts past the limit, so do
            // all the pages after it.
            let past_all = page.first().is_some_and(|m| m.created_at_ms >= before);
            let old: Vec<Write> = page
                .iter()
                .filter(|m| m.created_at_ms < before && m.status != OutboxStatus::Pending)
                .map(|m| Write::OutboxDelete { id: m.id })
                .collect();
            report.messages += old.len();
            store.apply(&old)?;
            if past_all {
                break;
            }
        }
    }
    if report != RetentionReport::default() {
        tracing::info!(
            contacts = report.contacts,
            messages = report.messages,
            "retention: inactive contacts queued for erasure, old messages deleted"
        );
    }
    Ok(report)
}
