//! The store on Redis, shared by any number of workers and by Spin's gateway.
//!
//! # Layout
//!
//! The key-value store `default`, where the gateway writes the inbox and its
//! dedupe marks, is the Redis keys themselves: exactly what Spin's Redis
//! key-value backend (`[key_value_store.default] type = "redis"`) writes, so
//! a gateway under Spin, SpinKube or `dripline up` and the workers meet in one
//! database. Everything else lives in a few keys under `dl:` (hashes and
//! sorted sets, listed in `apply.lua`), never one key per record, so that
//! reading the inbox, which has to scan the keyspace, scans little besides
//! the inbox. A key of `default` under `dl:` is refused: a component cannot
//! write over the runtime's records.
//!
//! # Atomicity
//!
//! A batch ([`Apply::apply`]) is one Lua script (`apply.lua`), which Redis
//! runs with nothing in between; it undoes its own changes when a write
//! fails, so a batch is all or nothing as in SQLite. Claiming timers is
//! another script (`claim.lua`). Reads are plain commands, each atomic on its
//! own, as SQLite's reads outside a transaction are.
//!
//! Runs against one Redis (or its primary); Redis Cluster is not supported,
//! since a script may touch keys in every slot.

mod inbox_index;
mod server;

pub use server::RedisServer;

use std::collections::BTreeMap;
use std::time::Duration;

use redis::{Commands as _, ConnectionLike as _, Script};
use serde::{Deserialize, Serialize};

use crate::{
    Apply, Contact, Contacts, DEFAULT_KV_STORE, Dedupe, Enrollment, Enrollments, Identity,
    KeyValue, Metrics, Millis, Outbox, OutboxMessage, OutboxStatus, Result, StoreError, Timer,
    Timers, Write, WriteResult, dedup_identities,
};

/// A value as Redis returns it.
type Bytes = Vec<u8>;

/// The prefix of every key the runtime keeps for itself.
const INTERNAL: &str = "dl:";

/// Connections kept open per process: a worker's threads (the runner, one
/// dispatcher per channel, each delivering a few messages at once) rarely
/// hold more at a time.
const POOL_SIZE: u32 = 16;

/// How long a command may take before the call fails (and is retried by the
/// caller, as a SQLite busy timeout would be).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Keys asked for per SCAN round trip.
const SCAN_COUNT: usize = 1_000;

/// A [`Store`](crate::Store) on a Redis server; see the module documentation.
pub struct RedisStore {
    pool: r2d2::Pool<redis::Client>,
    /// For the inbox notifications' own connection.
    client: redis::Client,
    /// The database number, whose keyspace events the inbox index hears.
    db: i64,
    apply: Script,
    claim: Script,
    url: String,
    inbox: inbox_index::InboxIndex,
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://[user:password@]host:port[/db]`,
    /// `rediss://` for TLS, `redis+unix:///path`), failing at once if it does
    /// not answer.
    pub fn open(url: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(redis_error)?;
        let db = client.get_connection_info().redis_settings().db();
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(COMMAND_TIMEOUT)
            .connection_customizer(Box::new(Timeouts))
            .build(client.clone())
            .map_err(|e| StoreError::Redis(format!("connecting to {}: {e}", redacted(url))))?;
        let store = Self {
            pool,
            client,
            db,
            inbox: inbox_index::InboxIndex::default(),
            apply: Script::new(include_str!("apply.lua")),
            claim: Script::new(include_str!("claim.lua")),
            url: redacted(url),
        };
        let mut con = store.connection()?;
        redis::cmd("PING")
            .query::<String>(&mut *con)
            .map_err(redis_error)?;
        Ok(store)
    }

    /// A section of the server's `INFO` (`cpu`, `memory`, ...), as text.
    pub fn info(&self, section: &str) -> Result<String> {
        redis::cmd("INFO")
            .arg(section)
            .query(&mut *self.connection()?)
            .map_err(redis_error)
    }

    /// Deletes every key of the database (FLUSHDB): for benchmarks and tests
    /// that reuse one.
    pub fn flush_database(&self) -> Result<()> {
        redis::cmd("FLUSHDB")
            .query::<()>(&mut *self.connection()?)
            .map_err(redis_error)
    }

    /// The server's URL with any password masked, for logs.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn connection(&self) -> Result<r2d2::PooledConnection<redis::Client>> {
        let con = self
            .pool
            .get()
            .map_err(|e| StoreError::Redis(format!("{}: {e}", self.url)))?;
        if !con.is_open() {
            return Err(StoreError::Redis(format!(
                "{}: connection closed",
                self.url
            )));
        }
        Ok(con)
    }

    /// Every key of `default` that starts with `prefix`, in no order.
    fn scan_default(&self, prefix: &str) -> Result<Vec<String>> {
        let mut con = self.connection()?;
        let pattern = format!("{}*", glob_escape(prefix));
        let mut found = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query(&mut *con)
                .map_err(redis_error)?;
            found.extend(
                keys.into_iter()
                    .filter_map(|k| String::from_utf8(k).ok())
                    .filter(|k| !k.starts_with(INTERNAL) && k.starts_with(prefix)),
            );
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    fn outbox_many(&self, ids: &[String]) -> Result<Vec<OutboxMessage>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut con = self.connection()?;
        let (msgs, states): (Vec<Option<Bytes>>, Vec<Option<Bytes>>) = redis::pipe()
            .cmd("HMGET")
            .arg("dl:ob:msg")
            .arg(ids)
            .cmd("HMGET")
            .arg("dl:ob:state")
            .arg(ids)
            .query(&mut *con)
            .map_err(redis_error)?;
        let mut found = Vec::with_capacity(ids.len());
        for ((id, msg), state) in ids.iter().zip(msgs).zip(states) {
            if let (Some(msg), Some(state)) = (msg, state) {
                found.push(outbox_message(id, &msg, &state)?);
            }
        }
        Ok(found)
    }

    fn enrollments_many(&self, ids: &[&str]) -> Result<Vec<Option<Enrollment>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut con = self.connection()?;
        let (metas, states): (Vec<Option<Vec<u8>>>, Vec<Option<String>>) = redis::pipe()
            .cmd("HMGET")
            .arg("dl:enr")
            .arg(ids)
            .cmd("HMGET")
            .arg("dl:enr:state")
            .arg(ids)
            .query(&mut *con)
            .map_err(redis_error)?;
        ids.iter()
            .zip(metas)
            .zip(states)
            .map(|((id, meta), state)| match (meta, state) {
                (Some(meta), Some(state)) => enrollment(id, &meta, state).map(Some),
                _ => Ok(None),
            })
            .collect()
    }
}

/// Gives each pooled connection its command timeout once, when it is made.
#[derive(Debug)]
struct Timeouts;

impl r2d2::CustomizeConnection<redis::Connection, redis::RedisError> for Timeouts {
    fn on_acquire(
        &self,
        con: &mut redis::Connection,
    ) -> std::result::Result<(), redis::RedisError> {
        con.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        con.set_write_timeout(Some(COMMAND_TIMEOUT))
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .finish()
    }
}

/// `url` with the password, if any, replaced by `***`.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn redis_error(e: redis::RedisError) -> StoreError {
    StoreError::Redis(e.to_string())
}

/// `s` with the characters SCAN's MATCH treats as a pattern escaped.
fn glob_escape(s: &str) -> String {
    let mut escaped = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The index name of an identity: its kind and value, NUL-separated.
fn identity_name(identity: &Identity) -> String {
    format!("{}\0{}", identity.index_kind(), identity.index_value())
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn text(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|e| corrupt(format!("not UTF-8: {e}")))
}

fn number<T: std::str::FromStr>(s: &str, what: &str) -> Result<T> {
    s.parse()
        .map_err(|_| corrupt(format!("{what} `{s}` is not a number")))
}

/// An enrollment from its `dl:enr` meta record (see `apply.lua`) and state.
fn enrollment(id: &str, meta: &[u8], state: String) -> Result<Enrollment> {
    let meta = text(meta)?;
    let parts: Vec<&str> = meta.splitn(6, '\0').collect();
    let [version, active, journey, contact, has_key, key] = parts[..] else {
        return Err(corrupt(format!("enrollment {id}: a short record")));
    };
    Ok(Enrollment {
        id: id.to_owned(),
        journey: journey.to_owned(),
        contact_id: contact.to_owned(),
        active: active == "1",
        key: (has_key == "1").then(|| key.to_owned()),
        version: number(version, "a version")?,
        state,
    })
}

/// What of an outbox message never changes, as `dl:ob:msg` keeps it.
#[derive(Serialize, Deserialize)]
struct OutboxBody {
    idempotency_key: String,
    contact_id: String,
    channel: String,
    content: serde_json::Value,
    created_at_ms: Millis,
}

fn outbox_message(id: &str, msg: &[u8], state: &[u8]) -> Result<OutboxMessage> {
    let body: OutboxBody =
        serde_json::from_slice(msg).map_err(|e| corrupt(format!("outbox message {id}: {e}")))?;
    let state = text(state)?;
    let parts: Vec<&str> = state.splitn(6, '\0').collect();
    let [status, deliver_at, attempts, updated_at, has_error, error] = parts[..] else {
        return Err(corrupt(format!("outbox message {id}: a short state")));
    };
    Ok(OutboxMessage {
        id: number(id, "an outbox id")?,
        idempotency_key: body.idempotency_key,
        contact_id: body.contact_id,
        channel: body.channel,
        content: body.content,
        status: status.parse().map_err(corrupt)?,
        created_at_ms: body.created_at_ms,
        updated_at_ms: number(updated_at, "a time")?,
        deliver_at_ms: number(deliver_at, "a time")?,
        attempts: number(attempts, "an attempt count")?,
        last_error: (has_error == "1").then(|| error.to_owned()),
    })
}

fn contact_json(contact: &Contact) -> Result<Vec<u8>> {
    serde_json::to_vec(contact).map_err(|e| corrupt(format!("contact {}: {e}", contact.id)))
}

fn flag(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

/// The batch as `apply.lua` reads it: the fields it reads that are known in
/// advance (a fired timer's claim, an enrollment's record), by hash, so that
/// the script reads each hash once; then each write, its op name and
/// arguments.
fn encode(batch: &[Write]) -> Result<Vec<Vec<u8>>> {
    let mut claims: Vec<&str> = Vec::new();
    let mut enrollments: Vec<&str> = Vec::new();
    for write in batch {
        match write {
            Write::TimerAck { key } => claims.push(key),
            Write::EnrollmentPut { enrollment, .. } => enrollments.push(&enrollment.id),
            Write::EnrollmentDelete { id } => enrollments.push(id),
            _ => {}
        }
    }
    let groups = [("dl:timer", claims), ("dl:enr", enrollments)];
    let groups: Vec<_> = groups.iter().filter(|(_, f)| !f.is_empty()).collect();
    let mut args: Vec<Vec<u8>> = vec![groups.len().to_string().into_bytes()];
    for (hash, fields) in groups {
        args.push(hash.as_bytes().to_vec());
        args.push(fields.len().to_string().into_bytes());
        args.extend(fields.iter().map(|f| f.as_bytes().to_vec()));
    }
    let mut push = |parts: Vec<Vec<u8>>| args.extend(parts);
    let s = |v: &str| v.as_bytes().to_vec();
    let n = |v: i64| v.to_string().into_bytes();
    for write in batch {
        match write {
            Write::KvSet { store, key, value } => {
                refuse_internal(store, key)?;
                push(vec![s("kv_set"), s(store), s(key), value.clone()]);
            }
            Write::KvDelete { store, key } => {
                refuse_internal(store, key)?;
                push(vec![s("kv_delete"), s(store), s(key)]);
            }
            Write::KvConsume { store, key } => {
                refuse_internal(store, key)?;
                push(vec![s("kv_consume"), s(store), s(key)]);
            }
            Write::DedupeMark {
                key,
                now_ms,
                expires_at_ms,
            } => push(vec![
                s("dedupe_mark"),
                s(key),
                n(*now_ms),
                n(*expires_at_ms),
            ]),
            Write::DedupePurge { now_ms } => push(vec![s("dedupe_purge"), n(*now_ms)]),
            Write::ContactPut(contact) => {
                let mut contact = contact.clone();
                dedup_identities(&mut contact.identities);
                let mut parts = vec![
                    s("contact_put"),
                    s(&contact.id),
                    contact_json(&contact)?,
                    n(contact.identities.len() as i64),
                ];
                parts.extend(contact.identities.iter().map(|i| s(&identity_name(i))));
                push(parts);
            }
            Write::ContactUnchanged { id, as_read } => {
                let json = match as_read {
                    Some(contact) => contact_json(contact)?,
                    None => Vec::new(),
                };
                push(vec![
                    s("contact_unchanged"),
                    s(id),
                    s(flag(as_read.is_some())),
                    json,
                ]);
            }
            Write::EnrollmentPut {
                enrollment,
                if_version,
            } => {
                let expected = i64::try_from(if_version.unwrap_or(0))
                    .map_err(|_| StoreError::Internal("a version past i64"))?;
                push(vec![
                    s("enrollment_put"),
                    s(&enrollment.id),
                    s(&enrollment.journey),
                    s(&enrollment.contact_id),
                    s(flag(enrollment.active)),
                    s(flag(enrollment.key.is_some())),
                    s(enrollment.key.as_deref().unwrap_or_default()),
                    s(flag(if_version.is_some())),
                    n(expected),
                    s(&enrollment.state),
                ]);
            }
            Write::EnrollmentDelete { id } => push(vec![s("enrollment_delete"), s(id)]),
            Write::TimerSet {
                key,
                due_at_ms,
                payload,
            } => push(vec![s("timer_set"), s(key), n(*due_at_ms), payload.clone()]),
            Write::TimerAck { key } => push(vec![s("timer_ack"), s(key)]),
            Write::TimerCancel { key } => push(vec![s("timer_cancel"), s(key)]),
            Write::TimerReleaseClaims => push(vec![s("timer_release_claims")]),
            Write::TimerRelease {
                key,
                claimed_until_ms,
            } => push(vec![s("timer_release"), s(key), n(*claimed_until_ms)]),
            Write::OutboxInsert(m) => {
                let body = OutboxBody {
                    idempotency_key: m.idempotency_key.clone(),
                    contact_id: m.contact_id.clone(),
                    channel: m.channel.clone(),
                    content: m.content.clone(),
                    created_at_ms: m.created_at_ms,
                };
                let body = serde_json::to_vec(&body)
                    .map_err(|e| corrupt(format!("outbox message: {e}")))?;
                push(vec![
                    s("outbox_insert"),
                    s(&m.idempotency_key),
                    s(&m.contact_id),
                    s(&m.channel),
                    s(m.status.as_str()),
                    n(m.created_at_ms),
                    n(m.deliver_at_ms),
                    body,
                ]);
            }
            Write::OutboxDelete { id } => push(vec![s("outbox_delete"), n(*id)]),
            Write::OutboxSetStatus { id, status, at_ms } => push(vec![
                s("outbox_set_status"),
                n(*id),
                s(status.as_str()),
                n(*at_ms),
            ]),
            Write::OutboxRecordAttempt {
                id,
                status,
                deliver_at_ms,
                attempts,
                last_error,
                at_ms,
            } => push(vec![
                s("outbox_record_attempt"),
                n(*id),
                s(status.as_str()),
                n(*deliver_at_ms),
                n(i64::from(*attempts)),
                s(flag(last_error.is_some())),
                s(last_error.as_deref().unwrap_or_default()),
                n(*at_ms),
            ]),
            Write::OutboxClaim {
                id,
                now_ms,
                until_ms,
            } => push(vec![s("outbox_claim"), n(*id), n(*now_ms), n(*until_ms)]),
            Write::MetricAdd { name, delta } => push(vec![s("metric_add"), s(name), n(*delta)]),
        }
    }
    Ok(args)
}

/// A write to `default` under the runtime's own prefix would change the
/// runtime's records; no gateway key looks like that, so it is refused.
fn refuse_internal(store: &str, key: &str) -> Result<()> {
    if store == DEFAULT_KV_STORE && key.starts_with(INTERNAL) {
        return Err(StoreError::Corrupt(format!(
            "key `{key}` of key-value store `default` is reserved (the prefix {INTERNAL} is the runtime's)"
        )));
    }
    Ok(())
}

/// The error a failed batch reports, from `apply.lua`'s `{"err", kind, ...}`.
fn batch_error(parts: &[String], batch: &[Write]) -> StoreError {
    let part = |i: usize| parts.get(i).cloned().unwrap_or_default();
    match part(1).as_str() {
        "gone" => StoreError::Gone {
            store: part(2),
            key: part(3),
        },
        "identity" => {
            let name = part(2);
            let identity = batch
                .iter()
                .filter_map(|w| match w {
                    Write::ContactPut(c) => Some(c.identities.iter()),
                    _ => None,
                })
                .flatten()
                .find(|i| identity_name(i) == name)
                .cloned();
            match identity {
                Some(identity) => StoreError::IdentityTaken {
                    identity,
                    contact_id: part(3),
                },
                None => StoreError::Internal("a taken identity that no write of the batch has"),
            }
        }
        "version" => StoreError::VersionConflict {
            id: part(2),
            expected: part(3).parse().unwrap_or_default(),
            actual: part(4).parse().unwrap_or_default(),
        },
        "active_key" => StoreError::ActiveKeyTaken {
            journey: part(2),
            key: part(3),
            enrollment_id: part(4),
        },
        "contact_changed" => StoreError::ContactChanged { id: part(2) },
        _ => StoreError::Redis(format!("the batch failed: {}", parts.join(" "))),
    }
}

fn write_result(r: &str) -> Result<WriteResult> {
    let (kind, rest) = r.split_at(r.len().min(1));
    Ok(match kind {
        "D" => WriteResult::Done,
        "F" => WriteResult::Flag(rest == "1"),
        "C" => WriteResult::Count(number(rest, "a count")?),
        "V" => WriteResult::Version(number(rest, "a version")?),
        "N" => WriteResult::Counter(number(rest, "a counter")?),
        "O" => {
            let (id, inserted) = rest
                .split_once(':')
                .ok_or_else(|| corrupt(format!("an outbox result `{r}`")))?;
            WriteResult::Outbox {
                id: number(id, "an outbox id")?,
                inserted: inserted == "1",
            }
        }
        _ => return Err(corrupt(format!("a write result `{r}`"))),
    })
}

impl Apply for RedisStore {
    fn apply(&self, batch: &[Write]) -> Result<Vec<WriteResult>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let args = encode(batch)?;
        let mut con = self.connection()?;
        let mut invocation = self.apply.prepare_invoke();
        for arg in &args {
            invocation.arg(arg.as_slice());
        }
        let reply: Vec<String> = invocation.invoke(&mut *con).map_err(redis_error)?;
        match reply.first().map(String::as_str) {
            Some("ok") => {
                for write in batch {
                    match write {
                        Write::KvSet { store, key, .. } if store == DEFAULT_KV_STORE => {
                            self.inbox.written(key, true)
                        }
                        Write::KvDelete { store, key } | Write::KvConsume { store, key }
                            if store == DEFAULT_KV_STORE =>
                        {
                            self.inbox.written(key, false)
                        }
                        _ => {}
                    }
                }
                reply[1..].iter().map(|r| write_result(r)).collect()
            }
            Some("err") => Err(batch_error(&reply, batch)),
            _ => Err(StoreError::Internal("the batch script answered nothing")),
        }
    }
}

impl KeyValue for RedisStore {
    fn kv_get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let mut con = self.connection()?;
        if store == DEFAULT_KV_STORE {
            if key.starts_with(INTERNAL) {
                return Ok(None);
            }
            return con.get(key).map_err(redis_error);
        }
        con.hget(format!("dl:kv:{store}"), key).map_err(redis_error)
    }

    fn kv_exists(&self, store: &str, key: &str) -> Result<bool> {
        let mut con = self.connection()?;
        if store == DEFAULT_KV_STORE {
            if key.starts_with(INTERNAL) {
                return Ok(false);
            }
            return con.exists(key).map_err(redis_error);
        }
        con.hexists(format!("dl:kv:{store}"), key)
            .map_err(redis_error)
    }

    fn kv_keys(&self, store: &str) -> Result<Vec<String>> {
        let mut keys = if store == DEFAULT_KV_STORE {
            self.scan_default("")?
        } else {
            self.connection()?
                .hkeys(format!("dl:kv:{store}"))
                .map_err(redis_error)?
        };
        keys.sort_unstable();
        Ok(keys)
    }

    fn kv_scan_prefix(
        &self,
        store: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        if store == DEFAULT_KV_STORE && prefix.starts_with(crate::INBOX_PREFIX) {
            return self.inbox_scan(prefix, after, limit);
        }
        let mut keys = if store == DEFAULT_KV_STORE {
            self.scan_default(prefix)?
        } else {
            let all: Vec<String> = self
                .connection()?
                .hkeys(format!("dl:kv:{store}"))
                .map_err(redis_error)?;
            all.into_iter().filter(|k| k.starts_with(prefix)).collect()
        };
        keys.retain(|k| after.is_none_or(|a| k.as_str() > a));
        keys.sort_unstable();
        keys.truncate(limit);
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<Vec<u8>>> = if store == DEFAULT_KV_STORE {
            redis::cmd("MGET")
                .arg(&keys)
                .query(&mut *self.connection()?)
        } else {
            redis::cmd("HMGET")
                .arg(format!("dl:kv:{store}"))
                .arg(&keys)
                .query(&mut *self.connection()?)
        }
        .map_err(redis_error)?;
        // A key deleted between the scan and the read is simply not there.
        Ok(keys
            .into_iter()
            .zip(values)
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }
}

impl RedisStore {
    /// [`KeyValue::kv_scan_prefix`] of the inbox, from the inbox index
    /// (`inbox_index.rs`) rather than a scan of the whole keyspace.
    fn inbox_scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        if self.inbox.stale(&self.client, self.db) {
            self.inbox.rebuilt(self.scan_default(crate::INBOX_PREFIX)?);
        }
        let keys = self.inbox.page(prefix, after, limit);
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&keys)
            .query(&mut *self.connection()?)
            .map_err(redis_error)?;
        let mut found = Vec::with_capacity(keys.len());
        let mut gone = Vec::new();
        for (key, value) in keys.into_iter().zip(values) {
            match value {
                Some(value) => found.push((key, value)),
                None => gone.push(key),
            }
        }
        self.inbox.gone(&gone);
        Ok(found)
    }
}

impl Dedupe for RedisStore {
    fn dedupe_seen(&self, key: &str, now_ms: Millis) -> Result<bool> {
        let expires: Option<Millis> = self
            .connection()?
            .hget("dl:dedupe", key)
            .map_err(redis_error)?;
        Ok(expires.is_some_and(|e| e > now_ms))
    }
}

fn decode_contact(bytes: &[u8]) -> Result<Contact> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(format!("a contact: {e}")))
}

impl Contacts for RedisStore {
    fn contact_get(&self, id: &str) -> Result<Option<Contact>> {
        let found: Option<Vec<u8>> = self
            .connection()?
            .hget("dl:contact", id)
            .map_err(redis_error)?;
        found.as_deref().map(decode_contact).transpose()
    }

    fn contacts_get(&self, ids: &[&str]) -> Result<Vec<Option<Contact>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let found: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg("dl:contact")
            .arg(ids)
            .query(&mut *self.connection()?)
            .map_err(redis_error)?;
        found
            .iter()
            .map(|c| c.as_deref().map(decode_contact).transpose())
            .collect()
    }

    fn contacts_scan(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Contact>, Option<String>)> {
        // HSCAN's cursor: every field present throughout the scan is
        // returned at least once; one returned twice (a rehash) is dropped
        // by the caller's pass being idempotent, and COUNT is a hint.
        let (next, pairs): (String, Vec<Vec<u8>>) = redis::cmd("HSCAN")
            .arg("dl:contact")
            .arg(cursor.unwrap_or("0"))
            .arg("COUNT")
            .arg(limit.max(1))
            .query(&mut *self.connection()?)
            .map_err(redis_error)?;
        let page = pairs
            .chunks(2)
            .filter_map(|pair| pair.get(1))
            .map(|bytes| decode_contact(bytes))
            .collect::<Result<Vec<_>>>()?;
        Ok((page, (next != "0").then_some(next)))
    }

    fn contact_find_by_identity(&self, identity: &Identity) -> Result<Option<Contact>> {
        let owner: Option<String> = self
            .connection()?
            .hget("dl:identity", identity_name(identity))
            .map_err(redis_error)?;
        match owner {
            Some(id) => self.contact_get(&id),
            None => Ok(None),
        }
    }
}

impl Enrollments for RedisStore {
    fn enrollment_get(&self, id: &str) -> Result<Option<Enrollment>> {
        Ok(self.enrollments_many(&[id])?.pop().flatten())
    }

    fn enrollments_get(&self, ids: &[&str]) -> Result<Vec<Option<Enrollment>>> {
        self.enrollments_many(ids)
    }

    fn enrollments_of_contact(&self, contact_id: &str) -> Result<Vec<Enrollment>> {
        let members: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg("dl:enr:contact")
            .arg(format!("[{contact_id}\0"))
            .arg(format!("({contact_id}\u{1}"))
            .query(&mut *self.connection()?)
            .map_err(redis_error)?;
        let ids: Vec<&str> = members
            .iter()
            .filter_map(|m| m.split_once('\0').map(|(_, id)| id))
            .collect();
        Ok(self.enrollments_many(&ids)?.into_iter().flatten().collect())
    }

    fn active_enrollment_by_key(&self, journey: &str, key: &str) -> Result<Option<Enrollment>> {
        let holder: Option<String> = self
            .connection()?
            .hget("dl:enr:active", format!("{journey}\0{key}"))
            .map_err(redis_error)?;
        match holder {
            Some(id) => Ok(self.enrollment_get(&id)?.filter(|e| e.active)),
            None => Ok(None),
        }
    }
}

impl Timers for RedisStore {
    fn claim_due_timers(
        &self,
        now_ms: Millis,
        limit: usize,
        lease_ms: Millis,
    ) -> Result<Vec<Timer>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let reply: Vec<Vec<u8>> = self
            .claim
            .arg(now_ms)
            .arg(limit)
            .arg(lease_ms)
            .invoke(&mut *self.connection()?)
            .map_err(redis_error)?;
        let mut claimed = Vec::with_capacity(reply.len() / 4);
        for entry in reply.chunks_exact(4) {
            let [key, due, payload, until] = entry else {
                continue;
            };
            claimed.push(Timer {
                key: text(key)?.to_owned(),
                due_at_ms: number(text(due)?, "a due time")?,
                payload: payload.clone(),
                claimed_until_ms: Some(number(text(until)?, "a claim's end")?),
            });
        }
        claimed.sort_by(|a, b| (a.due_at_ms, &a.key).cmp(&(b.due_at_ms, &b.key)));
        Ok(claimed)
    }

    fn timer_get(&self, key: &str) -> Result<Option<Timer>> {
        let found: Option<Bytes> = self
            .connection()?
            .hget("dl:timer", key)
            .map_err(redis_error)?;
        let Some(found) = found else {
            return Ok(None);
        };
        // due \0 claimed until (empty when not claimed) \0 payload
        let mut parts = found.splitn(3, |b| *b == 0);
        let (Some(due), Some(claim), Some(payload)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(corrupt(format!("timer {key}: a short record")));
        };
        Ok(Some(Timer {
            key: key.to_owned(),
            due_at_ms: number(text(due)?, "a due time")?,
            payload: payload.to_vec(),
            claimed_until_ms: match claim {
                [] => None,
                claim => Some(number(text(claim)?, "a claim's end")?),
            },
        }))
    }

    fn next_due_at(&self) -> Result<Option<Millis>> {
        let first: Vec<(String, f64)> = self
            .connection()?
            .zrange_withscores("dl:timer:ready", 0, 0)
            .map_err(redis_error)?;
        // Scores are whole milliseconds, exact in a double below 2^53.
        #[allow(clippy::cast_possible_truncation)]
        Ok(first.first().map(|(_, score)| *score as Millis))
    }

    fn timers_pending_count(&self) -> Result<u64> {
        self.connection()?.hlen("dl:timer").map_err(redis_error)
    }
}

impl RedisStore {
    /// Ids (as text) from a sorted set of outbox ids, by score.
    fn outbox_ids(&self, set: &str, min: String, max: String, limit: usize) -> Result<Vec<String>> {
        let limit = isize::try_from(limit).unwrap_or(isize::MAX);
        let ids: Vec<String> = self
            .connection()?
            .zrangebyscore_limit(set, min, max, 0, limit)
            .map_err(redis_error)?;
        Ok(ids
            .into_iter()
            .map(|id| id.trim_start_matches('0').to_owned())
            .collect())
    }
}

impl Outbox for RedisStore {
    fn outbox_get(&self, id: i64) -> Result<Option<OutboxMessage>> {
        Ok(self.outbox_many(&[id.to_string()])?.pop())
    }

    fn outbox_get_by_key(&self, idempotency_key: &str) -> Result<Option<OutboxMessage>> {
        let id: Option<String> = self
            .connection()?
            .hget("dl:ob:key", idempotency_key)
            .map_err(redis_error)?;
        match id {
            Some(id) => Ok(self.outbox_many(&[id])?.pop()),
            None => Ok(None),
        }
    }

    fn outbox_list(&self, after_id: Option<i64>, limit: usize) -> Result<Vec<OutboxMessage>> {
        let min = after_id.map_or("-inf".to_owned(), |a| format!("({a}"));
        let ids = self.outbox_ids("dl:ob:all", min, "+inf".into(), limit)?;
        self.outbox_many(&ids)
    }

    fn outbox_with_status(&self, status: OutboxStatus, limit: usize) -> Result<Vec<OutboxMessage>> {
        let set = format!("dl:ob:st:{status}");
        let ids = self.outbox_ids(&set, "-inf".into(), "+inf".into(), limit)?;
        self.outbox_many(&ids)
    }

    fn outbox_due(&self, now_ms: Millis, limit: usize) -> Result<Vec<OutboxMessage>> {
        let ids = self.outbox_ids("dl:ob:due", "-inf".into(), now_ms.to_string(), limit)?;
        self.outbox_many(&ids)
    }

    fn outbox_due_on(
        &self,
        channel: &str,
        now_ms: Millis,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>> {
        let set = format!("dl:ob:due:{channel}");
        let ids = self.outbox_ids(&set, "-inf".into(), now_ms.to_string(), limit)?;
        self.outbox_many(&ids)
    }

    fn outbox_of_contact(&self, contact_id: &str) -> Result<Vec<OutboxMessage>> {
        let members: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg("dl:ob:contact")
            .arg(format!("[{contact_id}\0"))
            .arg(format!("({contact_id}\u{1}"))
            .query(&mut *self.connection()?)
            .map_err(redis_error)?;
        let ids: Vec<String> = members
            .iter()
            .filter_map(|m| m.split_once('\0'))
            .map(|(_, id)| id.trim_start_matches('0').to_owned())
            .collect();
        self.outbox_many(&ids)
    }
}

impl Metrics for RedisStore {
    fn metric_get(&self, name: &str) -> Result<i64> {
        let value: Option<i64> = self
            .connection()?
            .hget("dl:metric", name)
            .map_err(redis_error)?;
        Ok(value.unwrap_or(0))
    }

    fn metrics_all(&self) -> Result<BTreeMap<String, i64>> {
        self.connection()?.hgetall("dl:metric").map_err(redis_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_masked() {
        assert_eq!(
            redacted("redis://user:secret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redacted("redis://:secret@host"), "redis://:***@host");
        assert_eq!(redacted("redis://host:6379"), "redis://host:6379");
    }

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn server() -> std::result::Result<(tempfile::TempDir, RedisServer), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let server = RedisServer::start(dir.path())?;
        Ok((dir, server))
    }

    #[test]
    fn records_spins_redis_key_value_writes_appear_in_the_inbox() -> TestResult {
        use crate::Inbox as _;
        let (_dir, server) = server()?;
        let store = RedisStore::open(&server.url(0))?;
        // What Spin's Redis backend does for the gateway's `set`: a plain SET.
        let client = redis::Client::open(server.url(0))?;
        let mut con = client.get_connection()?;
        let key = crate::inbox_key(5, "evt-1");
        let () = con.set(&key, b"{}")?;
        let () = con.set("dedupe/shopify/d1", b"5")?;
        assert_eq!(store.inbox_peek(10)?, vec![(key.clone(), b"{}".to_vec())]);
        store.apply(&[Write::inbox_consume(key.clone())])?;
        assert!(!con.exists::<_, bool>(&key)?);
        assert!(store.kv_exists(DEFAULT_KV_STORE, "dedupe/shopify/d1")?);
        Ok(())
    }

    #[test]
    fn inbox_keys_another_client_writes_arrive_by_notification_not_by_rescanning() -> TestResult {
        use crate::Inbox as _;
        let (_dir, server) = server()?;
        let store = RedisStore::open(&server.url(0))?;
        let mut con = redis::Client::open(server.url(0))?.get_connection()?;
        // A keyspace of dedupe marks, as 72 hours of webhooks leave.
        let marks: Vec<(String, String)> = (0..5_000)
            .map(|i| (format!("dedupe/shopify/{i}"), "1".to_string()))
            .collect();
        let () = redis::cmd("MSET").arg(&marks).query(&mut con)?;
        assert!(store.inbox_peek(10)?.is_empty());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !store.inbox.listening() {
            assert!(
                std::time::Instant::now() < deadline,
                "no notifications within 5 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // The look after subscribing rescans once; from then on, only events.
        store.inbox_peek(10)?;
        let key = crate::inbox_key(7, "evt-7");
        let () = con.set(&key, b"{}")?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if store.inbox_peek(10)? == vec![(key.clone(), b"{}".to_vec())] {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the record never arrived"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Another worker consumes it: the next look finds it gone.
        let () = con.del(&key)?;
        assert!(store.inbox_peek(10)?.is_empty());
        Ok(())
    }

    #[test]
    fn the_runtimes_own_keys_are_out_of_reach_of_the_default_key_value_store() -> TestResult {
        let (_dir, server) = server()?;
        let store = RedisStore::open(&server.url(0))?;
        store.metric_add("sent", 1)?;
        assert!(matches!(
            store.kv_set(DEFAULT_KV_STORE, "dl:metric", b"x"),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(store.kv_get(DEFAULT_KV_STORE, "dl:metric")?, None);
        assert!(store.kv_keys(DEFAULT_KV_STORE)?.is_empty());
        assert_eq!(store.metric_get("sent")?, 1);
        Ok(())
    }

    #[test]
    fn concurrent_claimers_on_one_redis_never_get_the_same_timer() -> TestResult {
        let (_dir, server) = server()?;
        let url = server.url(0);
        let store = RedisStore::open(&url)?;
        let timers: Vec<Write> = (0..2_000)
            .map(|i| Write::TimerSet {
                key: format!("t{i:05}"),
                due_at_ms: i % 50,
                payload: Vec::new(),
            })
            .collect();
        store.apply(&timers)?;
        let claimed: Vec<Vec<String>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| -> Result<Vec<String>> {
                        let store = RedisStore::open(&url)?;
                        let mut mine = Vec::new();
                        loop {
                            let batch = store.claim_due_timers(100, 37, 60_000)?;
                            if batch.is_empty() {
                                return Ok(mine);
                            }
                            mine.extend(batch.into_iter().map(|t| t.key));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().map_err(|_| StoreError::Poisoned)?)
                .collect::<Result<_>>()
        })?;
        let mut all: Vec<String> = claimed.into_iter().flatten().collect();
        let total = all.len();
        all.sort();
        all.dedup();
        assert_eq!((total, all.len()), (2_000, 2_000));
        Ok(())
    }

    #[test]
    fn pattern_characters_are_escaped_for_scan() {
        assert_eq!(glob_escape("inbox/a*[b]?"), "inbox/a\\*\\[b\\]\\?");
    }
}
