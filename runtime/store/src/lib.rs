//! Dripline's durable store: everything the gateway and the runtime keep between
//! one step and the next.
//!
//! One [`Store`] holds the Spin-style key-value stores (and in them the inbox the
//! gateway writes), dedupe marks, contacts and their identities, enrollments, the
//! timer index, the outbox and metric counters. [`SqliteStore`] keeps them in one
//! SQLite file; [`MemoryStore`] keeps them in memory with the same semantics, for
//! unit tests.
//!
//! Every mutation is a [`Write`], and [`Apply::apply`] makes a batch of them durable
//! in one transaction or not at all. That is how the runtime gets exactly-once
//! effects under at-least-once execution: a step's outbox rows, the enrollment's
//! new state, its next timers and the removal of the inbox record or the ack of the
//! timer that caused it commit together, guarded by the enrollment's version.
//!
//! The store never interprets enrollment state, contact profiles, timer payloads or
//! inbox records: they are opaque JSON or bytes, so the store does not depend on the
//! journey engine. Enrollment state is kept as JSON text, not as a parsed value,
//! because the runtime reads and writes one per fired timer: it decodes the text
//! straight into its own type instead of through a generic tree. Times are milliseconds since the Unix epoch as `i64`, the type
//! chrono's `timestamp_millis` gives and SQLite stores natively; the store never
//! reads a clock, so tests drive time explicitly.
//!
//! Calls block on I/O: call them from a blocking context (`spawn_blocking`), not
//! directly on an async executor's worker.

pub mod control;
mod memory;
pub mod redis;
pub mod seal;
mod sqlite;

#[cfg(test)]
mod behaviour_tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use memory::MemoryStore;

/// Every trait of the store, for code that holds a concrete store (a
/// `SqliteStore` rather than a `dyn Store`) and calls across concerns.
pub mod prelude {
    pub use crate::{
        Apply, Contacts, Dedupe, Enrollments, Inbox, KeyValue, Metrics, Outbox, Store, Timers,
    };
}
pub use redis::RedisStore;
pub use sqlite::SqliteStore;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The result type of every store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The key-value store the Spin gateway writes into; the inbox lives in it.
pub const DEFAULT_KV_STORE: &str = "default";

/// The key prefix of inbox records in [`DEFAULT_KV_STORE`].
pub const INBOX_PREFIX: &str = "inbox/";

/// The key-value store of the runtime's own records: the tracking secret,
/// the stored journey versions, dead letters and failed sends. No component
/// is ever granted it (the gateway host refuses a manifest that names it),
/// so nothing a webhook's component writes can pose as one of them.
pub const RUNTIME_KV_STORE: &str = "dripline";

/// A deployment's secret named `name`: 32 random bytes made the first time
/// one is asked for and kept in [`RUNTIME_KV_STORE`] (sealed, on a sealed
/// store), so every process of the deployment and every restart uses the same.
/// When two processes make one at once, both end up with whichever was stored.
pub fn deployment_secret(store: &dyn KeyValue, name: &str) -> Result<Vec<u8>> {
    if let Some(secret) = store.kv_get(RUNTIME_KV_STORE, name)? {
        return Ok(secret);
    }
    let mut secret = vec![0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| StoreError::Key(format!("no randomness: {e}")))?;
    store.apply(&[Write::KvSet {
        store: RUNTIME_KV_STORE.into(),
        key: name.into(),
        value: secret.clone(),
    }])?;
    Ok(store.kv_get(RUNTIME_KV_STORE, name)?.unwrap_or(secret))
}

/// Where an outbox message is in its life. Stored as its lower-case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxStatus {
    /// Not handed to a channel yet: due at its delivery time. The only status
    /// the store interprets ([`Outbox::outbox_due`]).
    Pending,
    /// Its channel accepted it.
    Sent,
    /// Failed for good: a permanent error, or a transient one that outlasted
    /// its retries.
    Failed,
    /// Held back by the delivery policy (or withdrawn by an unsubscribe); kept
    /// for the record and never delivered.
    Suppressed,
}

impl OutboxStatus {
    /// Every status, in the order a message can reach them.
    pub const ALL: [OutboxStatus; 4] = [
        OutboxStatus::Pending,
        OutboxStatus::Sent,
        OutboxStatus::Failed,
        OutboxStatus::Suppressed,
    ];

    /// The stored name: `pending`, `sent`, `failed`, `suppressed`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Failed => "failed",
            OutboxStatus::Suppressed => "suppressed",
        }
    }
}

impl std::fmt::Display for OutboxStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for OutboxStatus {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        OutboxStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                format!("`{s}` is not an outbox status (pending, sent, failed, suppressed)")
            })
    }
}

/// The key under which the gateway writes an inbox record:
/// `inbox/{received_at_ms:013}/{event_id}`.
///
/// The time is zero-padded to 13 digits (enough until the year 2286) so that the
/// keys' lexical order, which is what [`KeyValue::kv_scan_prefix`] returns, is arrival
/// order.
pub fn inbox_key(received_at_ms: Millis, event_id: &str) -> String {
    format!("{INBOX_PREFIX}{received_at_ms:013}/{event_id}")
}

/// Why a store operation failed.
///
/// The first cases are outcomes a caller acts on (another worker got there first,
/// an identity is taken); the rest are failures of the store itself.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A contact was written with an identity that already belongs to another
    /// contact. Merging contacts is the caller's decision, so the store refuses.
    #[error("identity {identity} already belongs to contact {contact_id}")]
    IdentityTaken {
        /// The identity that is taken.
        identity: Identity,
        /// The contact that holds it.
        contact_id: String,
    },
    /// An active enrollment was written with a key that another active enrollment
    /// of the same journey already has.
    #[error("journey {journey} already has active enrollment {enrollment_id} for key {key}")]
    ActiveKeyTaken {
        /// The journey.
        journey: String,
        /// The key.
        key: String,
        /// The active enrollment that holds the key.
        enrollment_id: String,
    },
    /// An enrollment was not at the version the write expected: another worker
    /// wrote it since it was read. The batch did nothing; re-read and decide again.
    #[error("enrollment {id} is at version {actual}, the write expected {expected}")]
    VersionConflict {
        /// The enrollment.
        id: String,
        /// The version the write expected.
        expected: u64,
        /// The version found (0 when the enrollment does not exist).
        actual: u64,
    },
    /// [`Write::KvConsume`] found no record: another consumer took it first. The
    /// batch did nothing.
    #[error("key {key} in key-value store {store} is gone")]
    Gone {
        /// The key-value store.
        store: String,
        /// The key.
        key: String,
    },
    /// [`Write::ContactUnchanged`] found the contact changed since it was read:
    /// another worker wrote it meanwhile. The batch did nothing; re-read and
    /// decide again.
    #[error("contact {id} changed since it was read")]
    ContactChanged {
        /// The contact.
        id: String,
    },
    /// The file was written by a newer version of Dripline than this one.
    #[error("the store's schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The store's keyring is missing, malformed, or lacks the key a value
    /// was sealed with.
    #[error("store key: {0}")]
    Key(String),
    /// A stored record could not be decoded.
    #[error("corrupt record in the store: {0}")]
    Corrupt(String),
    /// SQLite failed (I/O, a lock held too long, a full disk).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Redis failed (the connection, a timeout, a server error).
    #[error("redis: {0}")]
    Redis(String),
    /// A thread panicked while holding the store's lock.
    #[error("the store's lock was poisoned by a panic")]
    Poisoned,
    /// A store returned a result of the wrong kind for a write: a bug in the store.
    #[error("internal store error: {0}")]
    Internal(&'static str),
}

impl StoreError {
    /// Whether the batch lost a race with another worker sharing the store
    /// (it read a record that the other changed before this batch
    /// committed): nothing was written, and doing the work again from fresh
    /// reads is the remedy.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            StoreError::VersionConflict { .. }
                | StoreError::ContactChanged { .. }
                | StoreError::IdentityTaken { .. }
                | StoreError::ActiveKeyTaken { .. }
        )
    }
}

/// One way to recognize a contact. Values are stored as given: the gateway
/// normalizes them (emails to lower case, phones to E.164) before they get here.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identity {
    /// An email address.
    Email(String),
    /// A phone number in E.164.
    Phone(String),
    /// An id in another system, such as a Shopify customer id.
    External {
        /// The system, such as `shopify`.
        system: String,
        /// The id in that system.
        id: String,
    },
}

impl Identity {
    /// The kind under which the identity is indexed: `email`, `phone` or
    /// `external:{system}`.
    pub fn index_kind(&self) -> String {
        match self {
            Identity::Email(_) => "email".to_owned(),
            Identity::Phone(_) => "phone".to_owned(),
            Identity::External { system, .. } => format!("external:{system}"),
        }
    }

    /// The value under which the identity is indexed.
    pub fn index_value(&self) -> &str {
        match self {
            Identity::Email(v) | Identity::Phone(v) => v,
            Identity::External { id, .. } => id,
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.index_kind(), self.index_value())
    }
}

/// A contact: who a journey is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    /// The contact's id, chosen by the caller.
    pub id: String,
    /// Every identity the contact is known by; each belongs to one contact only.
    pub identities: Vec<Identity>,
    /// The profile (traits, consent, time zone, tags, ...), opaque to the store.
    pub profile: serde_json::Value,
}

/// A contact's run through one journey.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    /// The enrollment's id, chosen by the caller.
    pub id: String,
    /// The journey (and, inside the state, its version).
    pub journey: String,
    /// The enrolled contact.
    pub contact_id: String,
    /// Whether the enrollment is still running.
    pub active: bool,
    /// For journeys that allow one active enrollment per key (per contact, per
    /// cart, ...): the key. At most one active enrollment of a journey has it.
    pub key: Option<String>,
    /// How many times the enrollment has been written. Set by the store on every
    /// write and ignored in what is written; guard a write with
    /// [`Write::EnrollmentPut::if_version`].
    pub version: u64,
    /// The engine's state for the enrollment as JSON text, opaque to the store.
    pub state: String,
}

/// A pending timer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// Unique key; setting a timer with the key of a pending one replaces it.
    pub key: String,
    /// When the timer is due.
    pub due_at_ms: Millis,
    /// What the timer carries, opaque to the store.
    pub payload: Vec<u8>,
    /// While claimed, until when the claim holds; after that the timer can be
    /// claimed again, so a worker that crashed does not lose it.
    pub claimed_until_ms: Option<Millis>,
}

/// A message to insert into the outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewOutboxMessage {
    /// Unique per effect (enrollment, step, attempt): a second insert with the
    /// same key inserts nothing and returns the first message's id.
    pub idempotency_key: String,
    /// The recipient.
    pub contact_id: String,
    /// The channel (`email`, `sms`, `webhook`, ...).
    pub channel: String,
    /// The rendered message, opaque to the store.
    pub content: serde_json::Value,
    /// What to insert it as: pending to be delivered, or suppressed to keep a
    /// record of a send the policy held back.
    pub status: OutboxStatus,
    /// When the message was created.
    pub created_at_ms: Millis,
    /// The earliest time a dispatcher may deliver it: the creation time, or the
    /// end of quiet hours for a deferred send.
    pub deliver_at_ms: Millis,
}

/// A message in the outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Assigned by the store, increasing in insertion order.
    pub id: i64,
    /// See [`NewOutboxMessage::idempotency_key`].
    pub idempotency_key: String,
    /// The recipient.
    pub contact_id: String,
    /// The channel.
    pub channel: String,
    /// The rendered message.
    pub content: serde_json::Value,
    /// As inserted (pending or suppressed); the dispatcher sets the rest (sent,
    /// failed). The store interprets only pending, in [`Outbox::outbox_due`].
    pub status: OutboxStatus,
    /// When the message was created.
    pub created_at_ms: Millis,
    /// When the status last changed (the creation time until then).
    pub updated_at_ms: Millis,
    /// While pending, the earliest time it may be delivered: the next attempt's
    /// time after a transient failure.
    pub deliver_at_ms: Millis,
    /// How many delivery attempts were recorded.
    pub attempts: u32,
    /// The last failed attempt's error, as the channel described it.
    pub last_error: Option<String>,
}

/// One mutation. A batch of them is applied by [`Apply::apply`] in one
/// transaction, in order, so a later write sees the effect of an earlier one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Write {
    /// Sets a key in a key-value store. Result: [`WriteResult::Done`].
    KvSet {
        /// The key-value store's name, such as [`DEFAULT_KV_STORE`].
        store: String,
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
    },
    /// Deletes a key if present. Result: [`WriteResult::Flag`], whether it was.
    KvDelete {
        /// The key-value store.
        store: String,
        /// The key.
        key: String,
    },
    /// Deletes a key that must be present, or fails the whole batch with
    /// [`StoreError::Gone`]: how the consumer of an inbox record makes sure that it
    /// alone acts on it. Result: [`WriteResult::Done`].
    KvConsume {
        /// The key-value store.
        store: String,
        /// The key.
        key: String,
    },
    /// Marks a dedupe key until `expires_at_ms`. A mark that expired by `now_ms`
    /// counts as absent. Result: [`WriteResult::Flag`], true if the key was newly
    /// marked, false if it was already marked (the expiry is left as it was).
    DedupeMark {
        /// The key.
        key: String,
        /// The current time.
        now_ms: Millis,
        /// When the mark lapses.
        expires_at_ms: Millis,
    },
    /// Removes every dedupe mark that expired by `now_ms`.
    /// Result: [`WriteResult::Count`], how many.
    DedupePurge {
        /// The current time.
        now_ms: Millis,
    },
    /// Creates or replaces a contact, its identities becoming exactly the given
    /// ones. Fails the batch with [`StoreError::IdentityTaken`] if one belongs to
    /// another contact. Result: [`WriteResult::Done`].
    ContactPut(Contact),
    /// Fails the batch with [`StoreError::ContactChanged`] unless the contact
    /// is exactly as `as_read` (None: it must not exist). Put before a
    /// [`Write::ContactPut`] of a contact changed from what was read, it makes
    /// the put safe when several workers share the store: two of them
    /// updating one contact at once cannot lose either's change. Result:
    /// [`WriteResult::Done`].
    ContactUnchanged {
        /// The contact's id.
        id: String,
        /// The contact as it was read.
        as_read: Option<Contact>,
    },
    /// Creates or replaces an enrollment and increments its version.
    /// Result: [`WriteResult::Version`], the new version.
    EnrollmentPut {
        /// The enrollment; its `version` is ignored.
        enrollment: Enrollment,
        /// If set, the batch fails with [`StoreError::VersionConflict`] unless the
        /// stored version is this one (0: the enrollment must not exist yet).
        if_version: Option<u64>,
    },
    /// Deletes an enrollment. Result: [`WriteResult::Flag`], whether it existed.
    EnrollmentDelete {
        /// The enrollment's id.
        id: String,
    },
    /// Sets a timer, replacing (and unclaiming) any pending timer with the same
    /// key. Result: [`WriteResult::Done`].
    TimerSet {
        /// The timer's key.
        key: String,
        /// When it is due.
        due_at_ms: Millis,
        /// What it carries.
        payload: Vec<u8>,
    },
    /// Acknowledges a claimed timer: deletes it if it is claimed (even if the
    /// claim has lapsed). A timer set again after the claim is a new timer and
    /// survives. Result: [`WriteResult::Flag`], whether one was deleted.
    TimerAck {
        /// The timer's key.
        key: String,
    },
    /// Deletes a timer, claimed or not. Result: [`WriteResult::Flag`], whether
    /// one was deleted.
    TimerCancel {
        /// The timer's key.
        key: String,
    },
    /// Lapses every claim at once. For a deployment with one scheduler (the
    /// embedded default), which calls it at start: whatever it had claimed
    /// before a crash fires now instead of after the lease. Result:
    /// [`WriteResult::Count`], the claims released.
    TimerReleaseClaims,
    /// Hands back one claim, if it is still the one that was taken (claimed
    /// until `claimed_until_ms`): a worker that stops with a timer claimed and
    /// not fired lets another fire it now rather than after the lease, without
    /// touching a claim another worker took since the lease lapsed. Result:
    /// [`WriteResult::Flag`], whether the claim was handed back.
    TimerRelease {
        /// The timer's key.
        key: String,
        /// The claim's end, as [`Timers::claim_due_timers`] returned it.
        claimed_until_ms: Millis,
    },
    /// Inserts a message unless one with its idempotency key exists.
    /// Result: [`WriteResult::Outbox`].
    OutboxInsert(NewOutboxMessage),
    /// Removes a message, its content and its indexes, whatever its status:
    /// for erasing a contact and for retention. Result: [`WriteResult::Flag`],
    /// whether it existed.
    OutboxDelete {
        /// The message's id.
        id: i64,
    },
    /// Sets a message's status. Result: [`WriteResult::Flag`], whether the message
    /// exists.
    OutboxSetStatus {
        /// The message's id.
        id: i64,
        /// The new status.
        status: OutboxStatus,
        /// When it changed.
        at_ms: Millis,
    },
    /// Records a delivery attempt on a message that is still pending: its new
    /// status (sent, failed, or pending again to
    /// retry at `deliver_at_ms`), the attempt count and the error. A message that
    /// is no longer pending is left alone, so a result recorded twice (two
    /// dispatchers, or one replaying after a crash) never turns a sent message
    /// back into a pending one. Result: [`WriteResult::Flag`], whether it was
    /// pending and is now updated.
    OutboxRecordAttempt {
        /// The message's id.
        id: i64,
        /// The status after this attempt.
        status: OutboxStatus,
        /// When to try again, for a message that stays pending; otherwise kept
        /// as a record of when the last attempt was due.
        deliver_at_ms: Millis,
        /// Attempts made so far, this one included.
        attempts: u32,
        /// The error of this attempt, none if it succeeded.
        last_error: Option<String>,
        /// When the attempt was made.
        at_ms: Millis,
    },
    /// Claims a pending message for delivery: if it is due by `now_ms`, its
    /// delivery time moves to `until_ms`, so that no other dispatcher sharing
    /// the store takes it meanwhile; a dispatcher that dies holding it leaves
    /// it due again at `until_ms`. Result: [`WriteResult::Flag`], whether
    /// this write claimed it (false: not pending, or not due, which is what
    /// another dispatcher's claim looks like).
    OutboxClaim {
        /// The message's id.
        id: i64,
        /// The current time.
        now_ms: Millis,
        /// Until when the claim holds.
        until_ms: Millis,
    },
    /// Adds to a counter (absent counters are 0). Result: [`WriteResult::Counter`],
    /// the new value.
    MetricAdd {
        /// The counter.
        name: String,
        /// How much to add; may be negative.
        delta: i64,
    },
}

impl Write {
    /// Removes an inbox record, failing the batch if another consumer already has.
    pub fn inbox_consume(key: impl Into<String>) -> Write {
        Write::KvConsume {
            store: DEFAULT_KV_STORE.to_owned(),
            key: key.into(),
        }
    }

    /// Writes an inbox record, as the gateway does through the key-value interface.
    pub fn inbox_put(received_at_ms: Millis, event_id: &str, record: Vec<u8>) -> Write {
        Write::KvSet {
            store: DEFAULT_KV_STORE.to_owned(),
            key: inbox_key(received_at_ms, event_id),
            value: record,
        }
    }
}

/// What one [`Write`] did; each variant of [`Write`] documents which it returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteResult {
    /// The write has nothing to report.
    Done,
    /// A yes/no outcome, such as whether a deleted key existed.
    Flag(bool),
    /// How many records were affected.
    Count(u64),
    /// An enrollment's new version.
    Version(u64),
    /// The outbox message's id, and whether this write inserted it (false: it
    /// already existed with that idempotency key).
    Outbox {
        /// The message's id.
        id: i64,
        /// Whether this write inserted it.
        inserted: bool,
    },
    /// A counter's new value.
    Counter(i64),
}

impl WriteResult {
    fn flag(self) -> Result<bool> {
        match self {
            WriteResult::Flag(b) => Ok(b),
            _ => Err(StoreError::Internal("expected a flag result")),
        }
    }
}

/// Dripline's durable store. See the crate documentation.
///
/// Implementors provide [`Apply::apply`], [`Timers::claim_due_timers`] and the
/// reads; the single-write conveniences go through `apply`.
///
/// It is the sum of narrow traits, one per concern, so that code names only
/// what it touches (the gateway needs [`KeyValue`] and [`Dedupe`]; the
/// dispatcher [`Outbox`], [`Contacts`] and [`Metrics`]) and a second backend
/// implements only what its users need. Every type with all of them is a
/// `Store`.
pub trait Store:
    KeyValue + Inbox + Dedupe + Contacts + Enrollments + Timers + Outbox + Metrics
{
}

impl<T> Store for T where
    T: KeyValue + Inbox + Dedupe + Contacts + Enrollments + Timers + Outbox + Metrics + ?Sized
{
}

/// The one way to change a store: a batch of [`Write`]s in one transaction.
pub trait Apply: Send + Sync {
    /// Applies a batch of writes in one transaction, in order: all of them or, if
    /// any fails, none. Returns one result per write.
    fn apply(&self, batch: &[Write]) -> Result<Vec<WriteResult>>;
}

/// Spin-style key-value stores by name: what a gateway component reaches
/// through `fermyon:spin/key-value`, and the runtime's own records.
pub trait KeyValue: Apply {
    /// The value of a key in a key-value store.
    fn kv_get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>>;

    /// Whether a key exists in a key-value store.
    fn kv_exists(&self, store: &str, key: &str) -> Result<bool>;

    /// Every key of a key-value store, in lexical (byte) order.
    fn kv_keys(&self, store: &str) -> Result<Vec<String>>;

    /// Up to `limit` entries of a key-value store whose keys start with `prefix`
    /// and, if `after` is given, come after it; in lexical (byte) order. Pass the
    /// last key returned as `after` to read the next page.
    fn kv_scan_prefix(
        &self,
        store: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>>;

    /// Sets a key in a key-value store.
    fn kv_set(&self, store: &str, key: &str, value: &[u8]) -> Result<()> {
        apply_one(
            self,
            Write::KvSet {
                store: store.to_owned(),
                key: key.to_owned(),
                value: value.to_vec(),
            },
        )
        .map(drop)
    }

    /// Deletes a key from a key-value store; true if it existed.
    fn kv_delete(&self, store: &str, key: &str) -> Result<bool> {
        apply_one(
            self,
            Write::KvDelete {
                store: store.to_owned(),
                key: key.to_owned(),
            },
        )?
        .flag()
    }
}

/// The inbox: canonical events the gateway wrote into [`DEFAULT_KV_STORE`],
/// oldest first. Every key-value store is one.
pub trait Inbox: KeyValue {
    /// Up to `limit` of the oldest inbox records, oldest first.
    fn inbox_peek(&self, limit: usize) -> Result<Vec<(String, Vec<u8>)>> {
        self.kv_scan_prefix(DEFAULT_KV_STORE, INBOX_PREFIX, None, limit)
    }
}

impl<T: KeyValue + ?Sized> Inbox for T {}

/// Dedupe marks of webhook deliveries, each until it lapses.
pub trait Dedupe: Apply {
    /// Whether a dedupe key is marked and its mark has not expired by `now_ms`.
    fn dedupe_seen(&self, key: &str, now_ms: Millis) -> Result<bool>;

    /// Marks a dedupe key until `expires_at_ms`; true if newly marked, false if it
    /// was already marked and not expired by `now_ms`.
    fn dedupe_mark(&self, key: &str, now_ms: Millis, expires_at_ms: Millis) -> Result<bool> {
        apply_one(
            self,
            Write::DedupeMark {
                key: key.to_owned(),
                now_ms,
                expires_at_ms,
            },
        )?
        .flag()
    }

    /// Removes the dedupe marks that expired by `now_ms`; returns how many.
    fn dedupe_purge(&self, now_ms: Millis) -> Result<u64> {
        match apply_one(self, Write::DedupePurge { now_ms })? {
            WriteResult::Count(n) => Ok(n),
            _ => Err(StoreError::Internal("expected a count result")),
        }
    }
}

/// Contacts and the identities they are found by.
pub trait Contacts: Apply {
    /// A contact by id.
    fn contact_get(&self, id: &str) -> Result<Option<Contact>>;

    /// Several contacts by id, read together (in SQLite, in one read
    /// transaction rather than one each): one answer per id, in order.
    fn contacts_get(&self, ids: &[&str]) -> Result<Vec<Option<Contact>>>;

    /// The contact that has an identity.
    fn contact_find_by_identity(&self, identity: &Identity) -> Result<Option<Contact>>;

    /// The contacts that have these identities, read together (in SQLite, in
    /// one read transaction): one answer per identity, in order.
    fn contacts_find_by_identities(&self, identities: &[Identity]) -> Result<Vec<Option<Contact>>> {
        identities
            .iter()
            .map(|identity| self.contact_find_by_identity(identity))
            .collect()
    }

    /// Every contact, a page at a time, for passes over all of them (a
    /// segment's full re-evaluation): up to `limit` contacts from `cursor`
    /// (`None` for the first page), and the cursor of the next page, `None`
    /// after the last. A contact written during the pass may be seen or not;
    /// none present throughout is missed or seen twice.
    fn contacts_scan(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Contact>, Option<String>)>;

    /// Creates or replaces a contact; see [`Write::ContactPut`].
    fn contact_put(&self, contact: Contact) -> Result<()> {
        apply_one(self, Write::ContactPut(contact)).map(drop)
    }
}

/// Enrollments: each contact's run through a journey.
pub trait Enrollments: Apply {
    /// An enrollment by id.
    fn enrollment_get(&self, id: &str) -> Result<Option<Enrollment>>;

    /// Several enrollments by id, read together (in SQLite, in one read
    /// transaction rather than one each): one answer per id, in order. The
    /// scheduler reads the enrollments of a batch of fired timers this way.
    fn enrollments_get(&self, ids: &[&str]) -> Result<Vec<Option<Enrollment>>>;

    /// Every enrollment of a contact, active or not, ordered by id.
    fn enrollments_of_contact(&self, contact_id: &str) -> Result<Vec<Enrollment>>;

    /// The active enrollment of a journey that has a key.
    fn active_enrollment_by_key(&self, journey: &str, key: &str) -> Result<Option<Enrollment>>;

    /// Creates or replaces an enrollment without a version check; returns its new
    /// version.
    fn enrollment_put(&self, enrollment: Enrollment) -> Result<u64> {
        match apply_one(
            self,
            Write::EnrollmentPut {
                enrollment,
                if_version: None,
            },
        )? {
            WriteResult::Version(v) => Ok(v),
            _ => Err(StoreError::Internal("expected a version result")),
        }
    }
}

/// The durable timer index: due times, claims with a lease, acks.
pub trait Timers: Apply {
    /// Claims up to `limit` timers that are due by `now_ms` and not under a claim,
    /// for `lease_ms`: until `now_ms + lease_ms` no other claimer gets them. Two
    /// claimers, in one process or two, never get the same timer while its claim
    /// holds; once it lapses the timer is claimable again, which is how a timer
    /// whose worker crashed still fires. Returned in due order.
    ///
    /// Timers are taken in due order from an index on the due time, stepping over
    /// the ones in flight (claimed, not yet acknowledged), so a claim costs the same
    /// with a million timers pending as with ten.
    fn claim_due_timers(
        &self,
        now_ms: Millis,
        limit: usize,
        lease_ms: Millis,
    ) -> Result<Vec<Timer>>;

    /// A pending timer by key.
    fn timer_get(&self, key: &str) -> Result<Option<Timer>>;

    /// The earliest time at which [`Timers::claim_due_timers`] would return a timer:
    /// the earliest due time among unclaimed timers, or the earliest lapse of a
    /// claim. None when no timer is pending. A scheduler sleeps until then.
    fn next_due_at(&self) -> Result<Option<Millis>>;

    /// How many timers are pending (not yet acknowledged or cancelled), claimed
    /// or not.
    fn timers_pending_count(&self) -> Result<u64>;

    /// Sets a timer; see [`Write::TimerSet`].
    fn timer_set(&self, key: &str, due_at_ms: Millis, payload: &[u8]) -> Result<()> {
        apply_one(
            self,
            Write::TimerSet {
                key: key.to_owned(),
                due_at_ms,
                payload: payload.to_vec(),
            },
        )
        .map(drop)
    }

    /// Acknowledges a claimed timer; see [`Write::TimerAck`].
    fn timer_ack(&self, key: &str) -> Result<bool> {
        apply_one(
            self,
            Write::TimerAck {
                key: key.to_owned(),
            },
        )?
        .flag()
    }

    /// Cancels a timer; see [`Write::TimerCancel`].
    fn timer_cancel(&self, key: &str) -> Result<bool> {
        apply_one(
            self,
            Write::TimerCancel {
                key: key.to_owned(),
            },
        )?
        .flag()
    }
}

/// The outbox: every message and post a step made, with its delivery record.
pub trait Outbox: Apply {
    /// A message by id.
    fn outbox_get(&self, id: i64) -> Result<Option<OutboxMessage>>;

    /// A message by idempotency key.
    fn outbox_get_by_key(&self, idempotency_key: &str) -> Result<Option<OutboxMessage>>;

    /// Up to `limit` messages with ids above `after_id`, in insertion order.
    fn outbox_list(&self, after_id: Option<i64>, limit: usize) -> Result<Vec<OutboxMessage>>;

    /// Up to `limit` messages with a status, in insertion order; with
    /// [`OutboxStatus::Pending`], the delivery queue.
    fn outbox_with_status(&self, status: OutboxStatus, limit: usize) -> Result<Vec<OutboxMessage>>;

    /// Up to `limit` pending messages whose delivery time has come by `now_ms`,
    /// earliest delivery time first (then insertion order): the dispatcher's
    /// queue. Taken from an index on (status, delivery time), so a backlog of
    /// sent messages costs nothing.
    fn outbox_due(&self, now_ms: Millis, limit: usize) -> Result<Vec<OutboxMessage>>;

    /// [`Outbox::outbox_due`] on one channel: the queue of a dispatcher lane
    /// that delivers only that channel, so a provider that hangs holds up
    /// its own messages and no others. The default filters the whole queue;
    /// a backend with an index does better.
    fn outbox_due_on(
        &self,
        channel: &str,
        now_ms: Millis,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>> {
        let mut due = self.outbox_due(now_ms, usize::MAX)?;
        due.retain(|m| m.channel == channel);
        due.truncate(limit);
        Ok(due)
    }

    /// Every message to a contact, in insertion order.
    fn outbox_of_contact(&self, contact_id: &str) -> Result<Vec<OutboxMessage>>;

    /// Inserts a message unless its idempotency key exists; returns the id of the
    /// message with that key and whether this call inserted it.
    fn outbox_insert(&self, message: NewOutboxMessage) -> Result<(i64, bool)> {
        match apply_one(self, Write::OutboxInsert(message))? {
            WriteResult::Outbox { id, inserted } => Ok((id, inserted)),
            _ => Err(StoreError::Internal("expected an outbox result")),
        }
    }

    /// Sets a message's status; false if there is no such message.
    fn outbox_set_status(&self, id: i64, status: OutboxStatus, at_ms: Millis) -> Result<bool> {
        apply_one(self, Write::OutboxSetStatus { id, status, at_ms })?.flag()
    }
}

/// Named counters.
pub trait Metrics: Apply {
    /// A counter's value (0 if never added to).
    fn metric_get(&self, name: &str) -> Result<i64>;

    /// Every counter.
    fn metrics_all(&self) -> Result<BTreeMap<String, i64>>;

    /// The counters whose names start with `prefix`.
    fn metrics_with_prefix(&self, prefix: &str) -> Result<BTreeMap<String, i64>> {
        let mut all = self.metrics_all()?;
        all.retain(|name, _| name.starts_with(prefix));
        Ok(all)
    }

    /// Adds to a counter; returns its new value.
    fn metric_add(&self, name: &str, delta: i64) -> Result<i64> {
        match apply_one(
            self,
            Write::MetricAdd {
                name: name.to_owned(),
                delta,
            },
        )? {
            WriteResult::Counter(v) => Ok(v),
            _ => Err(StoreError::Internal("expected a counter result")),
        }
    }
}

fn apply_one<S: Apply + ?Sized>(store: &S, write: Write) -> Result<WriteResult> {
    store
        .apply(std::slice::from_ref(&write))?
        .pop()
        .ok_or(StoreError::Internal("apply returned no result"))
}

/// The smallest string greater than every string that starts with `prefix`, or
/// None if there is none (an empty prefix, or one of only `char::MAX`).
///
/// Both backends compare keys as UTF-8 bytes, which orders them by code point, so
/// "starts with `prefix`" is the range `prefix..upper`; a range lets SQLite walk its
/// index instead of testing every key.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            // Surrogates are not chars; the next scalar value after them is U+E000.
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Identities listed twice would be one row in SQLite's index; keep one here too.
pub(crate) fn dedup_identities(identities: &mut Vec<Identity>) {
    let mut seen = BTreeSet::new();
    identities.retain(|i| seen.insert(i.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_keys_sort_in_arrival_order() {
        let early = inbox_key(999, "zzz");
        let late = inbox_key(1_000, "aaa");
        assert_eq!(early, "inbox/0000000000999/zzz");
        assert!(early < late);
    }

    #[test]
    fn a_prefix_upper_bound_is_above_every_key_with_the_prefix_and_below_the_next() {
        assert_eq!(prefix_upper_bound("inbox/").as_deref(), Some("inbox0"));
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        let upper = prefix_upper_bound("ab").unwrap_or_default();
        assert!("ab\u{10FFFF}\u{10FFFF}" < upper.as_str());
        assert!("ac" >= upper.as_str());
    }
}
