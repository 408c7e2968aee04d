//! The [`Store`](crate::Store) in one SQLite file: Dripline's embedded default, and the file in
//! which the Spin gateway's key-value writes and the runtime's reads meet.
//!
//! The key-value table is Spin's own (`spin_key_value`, as Spin's SQLite key-value
//! backend creates it), so a Spin whose runtime config points its default store at
//! this file writes the inbox straight into the table the runtime reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::Duration;

use std::borrow::Cow;

use rusqlite::types::{Type, Value as SqlValue, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde::de::DeserializeOwned;

use crate::seal::{self, Keyring};
use crate::{
    Apply, Contact, Contacts, DEFAULT_KV_STORE, Dedupe, Enrollment, Enrollments, INBOX_PREFIX,
    Identity, KeyValue, Metrics, Millis, Outbox, OutboxMessage, OutboxStatus, RUNTIME_KV_STORE,
    Result, StoreError, Timer, Timers, Write, WriteResult, dedup_identities, prefix_upper_bound,
};

/// The schema version this build writes, kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

/// How long a connection waits for another one (in this process or another) to
/// release the write lock before giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the checkpointer copies the write-ahead log into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// The log's length, in frames (pages), past which the checkpointer stops
/// being polite. A passive checkpoint copies what is in the log when it
/// starts; the log starts over only when a writer finds it all copied, so a
/// writer that commits faster than the copies go (an import, a segment's
/// full pass) kept it growing: 4 GB of log for a 230 MB database after 200k
/// imported contacts, and a third of the import's time went to the kernel
/// zeroing the log's fresh blocks. Past this length the checkpointer makes
/// writers wait while it copies everything and starts the log over.
const CHECKPOINT_RESTART_FRAMES: i64 = 16_384;

/// The size the log file is cut back to when it starts over, so a burst of
/// writes does not keep its disk space.
const LOG_SIZE_LIMIT: i64 = 64 << 20;

const SCHEMA_V1: &str = "
-- Exactly as Spin's SQLite key-value backend creates it, so both can share it.
CREATE TABLE IF NOT EXISTS spin_key_value (
    store TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (store, key)
);

CREATE TABLE IF NOT EXISTS dedupe (
    key        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedupe_by_expiry ON dedupe (expires_at);

-- identities is the contact's list as JSON, so a contact reads in one row;
-- contact_identities indexes it and makes each identity belong to one contact.
CREATE TABLE IF NOT EXISTS contacts (
    id         TEXT PRIMARY KEY,
    identities TEXT NOT NULL,
    profile    TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS contact_identities (
    kind       TEXT NOT NULL,
    value      TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS contact_identities_by_contact ON contact_identities (contact_id);

CREATE TABLE IF NOT EXISTS enrollments (
    id         TEXT PRIMARY KEY,
    journey    TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    active     INTEGER NOT NULL,
    key        TEXT,
    version    INTEGER NOT NULL,
    state      TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS enrollments_by_contact ON enrollments (contact_id, id);
CREATE UNIQUE INDEX IF NOT EXISTS enrollments_active_key
    ON enrollments (journey, key) WHERE active = 1 AND key IS NOT NULL;

-- Timers are stored in due order, so the timers that fire together sit on the
-- same pages: claiming and acknowledging a batch of them rewrites a few pages,
-- not one page per timer. Claims live in their own small table for the same
-- reason: a claim writes there instead of moving the timer.
CREATE TABLE IF NOT EXISTS timers (
    due_at  INTEGER NOT NULL,
    key     TEXT NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (due_at, key)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS timers_by_key ON timers (key);
CREATE TABLE IF NOT EXISTS timer_claims (
    key           TEXT PRIMARY KEY,
    claimed_until INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS timer_claims_by_until ON timer_claims (claimed_until);

CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    contact_id      TEXT NOT NULL,
    channel         TEXT NOT NULL,
    content         TEXT NOT NULL,
    status          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox (status, id);
CREATE INDEX IF NOT EXISTS outbox_by_contact ON outbox (contact_id, id);

CREATE TABLE IF NOT EXISTS metrics (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// A [`Store`](crate::Store) in a SQLite file.
///
/// Several `SqliteStore`s, in one process or several, may open the same file:
/// SQLite's locks serialize their writes and each batch is one transaction.
/// Writes go through one connection and reads through another, so a read does
/// not wait for a batch being written (WAL lets readers and a writer overlap).
pub struct SqliteStore {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    path: PathBuf,
    sealing: Sealing,
    /// Dropped with the store, which stops the checkpointer thread.
    _checkpointer: Option<mpsc::Sender<()>>,
}

impl SqliteStore {
    /// Opens the store in the file at `path`, creating the file and its schema if
    /// needed, and keeps everything in it plain: for tests and benchmarks. A
    /// file that was sealed is refused (its values would not read).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path.as_ref(), Sealing(None))
    }

    /// Opens the store in the file at `path` as [`SqliteStore::open`] does,
    /// sealing personal data under `keys` (see [`crate::seal`]): identities,
    /// profiles, enrollment states, timer payloads, message contents and
    /// errors, inbox records and the runtime's own records; identities are
    /// indexed by their blind index only.
    ///
    /// A file last sealed under another key (after a rotation, or one written
    /// plain before) is rewritten under the current key first, in one
    /// transaction, so that no value stays under a key that is to be retired.
    pub fn open_sealed(path: impl AsRef<Path>, keys: Keyring) -> Result<Self> {
        Self::open_with(path.as_ref(), Sealing(Some(keys)))
    }

    fn open_with(path: &Path, sealing: Sealing) -> Result<Self> {
        let path = path.to_path_buf();
        create_private(&path)?;
        let mut writer = connect(&path)?;
        // WAL persists in the file: readers do not block the writer nor the other
        // way round, and a commit is one append to the log rather than a rewrite
        // of pages.
        let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "cannot switch {} to WAL (journal mode is {mode})",
                path.display()
            )));
        }
        migrate(&mut writer)?;
        reseal(&mut writer, &sealing)?;
        // Checkpoints are the only writes that fsync under synchronous=NORMAL,
        // and SQLite runs them inside the commit that crosses the log's
        // threshold: every writer waiting on that commit waited for the disk
        // too (seen as p99 spikes of 0.3-0.6 s under `./dev bench ingest`
        // on a busy disk). A thread of the store's own checkpoints instead,
        // and the writer's automatic checkpoints are turned off only once it
        // runs.
        let checkpointer = start_checkpointer(&path);
        if checkpointer.is_some() {
            writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        }
        let reader = connect(&path)?;
        reader.pragma_update(None, "query_only", true)?;
        Ok(Self {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            path,
            sealing,
            _checkpointer: checkpointer,
        })
    }

    fn kv_row(&self, store: &str, row: &Row<'_>) -> rusqlite::Result<(String, Vec<u8>)> {
        let key: String = row.get(0)?;
        let value = self.sealing.col(row, 1, || kv_place(store, &key))?;
        Ok((key, value))
    }

    /// The file the store is in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writer(&self) -> Result<MutexGuard<'_, Connection>> {
        self.writer.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Runs a one-row query for each id inside one read transaction: outside
    /// one, every statement begins and ends its own, and each of those takes
    /// and releases the WAL's shared lock with system calls.
    fn read_many<T>(
        &self,
        sql: &str,
        ids: &[&str],
        from_row: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<Option<T>>> {
        let mut conn = self.reader()?;
        let tx = conn.transaction()?;
        let mut stmt = tx.prepare_cached(sql)?;
        let found = ids
            .iter()
            .map(|id| stmt.query_row(params![id], &from_row).optional())
            .collect::<rusqlite::Result<_>>()?;
        drop(stmt);
        tx.commit()?;
        Ok(found)
    }

    fn reader(&self) -> Result<MutexGuard<'_, Connection>> {
        self.reader.lock().map_err(|_| StoreError::Poisoned)
    }
}

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // NORMAL in WAL mode syncs at checkpoints, not at every commit: a commit
    // survives the process being killed (the log is in the OS's page cache), and
    // only a power cut or kernel crash can lose the last commits, never corrupt
    // the file. Process crashes are what at-least-once execution must survive;
    // FULL would cost an fsync per batch for the rest.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "journal_size_limit", LOG_SIZE_LIMIT)?;
    conn.set_prepared_statement_cache_capacity(64);
    // SQLite's default page cache is 2 MB: past a few hundred thousand
    // contacts the indexes no longer fit, and every lookup became a read
    // from the OS (an import of 1M contacts fell from 26k to 12k rows/s,
    // half its time in system calls). 64 MiB per connection keeps the hot
    // pages of millions of contacts.
    conn.pragma_update(None, "cache_size", -65_536)?;
    // The bundled SQLite is built with STAT4, under which a cached statement
    // that compares a parameter with an indexed column is compiled again
    // whenever its parameters change: every lookup by id or identity paid a
    // parse and a plan (seen as a sixth of `./dev bench audience`). Dripline's
    // queries have one right plan each; keep it.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(conn)
}

/// Starts a thread that checkpoints the log of the file at `path` every
/// [`CHECKPOINT_EVERY`] on a connection of its own, until the returned sender
/// is dropped; `None` if it cannot (then SQLite's automatic checkpoints stay).
fn start_checkpointer(path: &Path) -> Option<mpsc::Sender<()>> {
    let conn = connect(path).ok()?;
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("dripline-sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY)
            {
                // PASSIVE copies what it can without waiting for readers or the
                // writer; what it could not copy goes at the next round.
                let log =
                    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1));
                if log.is_ok_and(|frames| frames > CHECKPOINT_RESTART_FRAMES) {
                    let _ = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
                }
            }
        })
        .ok()?;
    Some(stop)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    // IMMEDIATE takes the write lock first, so two processes opening a new file
    // at once do not both try to create the schema.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION {
        tx.execute_batch(SCHEMA_V1)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    add_missing_columns(&tx, "outbox", OUTBOX_DELIVERY_COLUMNS)?;
    tx.execute_batch(OUTBOX_DELIVERY_INDEX)?;
    tx.commit()?;
    Ok(())
}

/// Which key the file's values are sealed under; no row means a plain file.
const SEALING_TABLE: &str = "
CREATE TABLE IF NOT EXISTS sealing (
    one    INTEGER PRIMARY KEY CHECK (one = 1),
    key_id TEXT NOT NULL
);";

/// The columns that hold personal data, with the column their sealed values
/// are bound to: `{table}.{column}:{key}`.
const SEALED_COLUMNS: &[(&str, &str, &str)] = &[
    ("contacts", "id", "identities"),
    ("contacts", "id", "profile"),
    ("enrollments", "id", "state"),
    ("timers", "key", "payload"),
    ("outbox", "idempotency_key", "content"),
    ("outbox", "id", "last_error"),
];

/// Brings the file's sealing in line with the keyring: a plain file opened
/// with one, or one sealed under a key that is no longer current, has every
/// sealed value and blind index rewritten under the current key. A sealed file
/// opened without a keyring is refused rather than half read.
fn reseal(conn: &mut Connection, sealing: &Sealing) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(SEALING_TABLE)?;
    let sealed_with: Option<String> = tx
        .query_row("SELECT key_id FROM sealing", [], |r| r.get(0))
        .optional()?;
    let keys = match (&sealing.0, sealed_with) {
        (None, None) => return Ok(()),
        (None, Some(id)) => {
            return Err(StoreError::Key(format!(
                "the file is sealed under key {id}: open it with its keyring"
            )));
        }
        (Some(keys), Some(id)) if id == keys.current_id() => return Ok(()),
        (Some(keys), _) => keys,
    };
    let started = std::time::Instant::now();
    for (table, key_column, column) in SEALED_COLUMNS {
        let rows: Vec<(SqlValue, Vec<u8>)> = tx
            .prepare(&format!(
                "SELECT {key_column}, {column} FROM {table} WHERE {column} IS NOT NULL"
            ))?
            .query_map([], |r| {
                let key: SqlValue = r.get(0)?;
                let place = format!("{table}.{column}:{}", sql_text(&key));
                Ok((key, sealing.col(r, 1, || place)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut update = tx.prepare(&format!(
            "UPDATE {table} SET {column} = ?2 WHERE {key_column} = ?1"
        ))?;
        for (key, plain) in rows {
            let place = format!("{table}.{column}:{}", sql_text(&key));
            update.execute(params![key, keys.seal(&place, &plain)?])?;
        }
    }
    let records: Vec<(String, String, Vec<u8>)> = tx
        .prepare(
            "SELECT store, key, value FROM spin_key_value
             WHERE store = ?1 OR (store = ?2 AND key >= ?3 AND key < ?4)",
        )?
        .query_map(
            params![
                RUNTIME_KV_STORE,
                DEFAULT_KV_STORE,
                INBOX_PREFIX,
                prefix_upper_bound(INBOX_PREFIX)
            ],
            |r| {
                let (store, key): (String, String) = (r.get(0)?, r.get(1)?);
                let value = sealing.col(r, 2, || kv_place(&store, &key))?;
                Ok((store, key, value))
            },
        )?
        .collect::<rusqlite::Result<_>>()?;
    for (store, key, value) in records {
        tx.prepare_cached("UPDATE spin_key_value SET value = ?3 WHERE store = ?1 AND key = ?2")?
            .execute(params![store, key, sealing.kv_value(&store, &key, &value)?])?;
    }
    // The blind indexes, from the identities each contact holds.
    let holders: Vec<(String, Vec<Identity>)> = tx
        .prepare("SELECT id, identities FROM contacts")?
        .query_map([], |r| {
            let id: String = r.get(0)?;
            let identities = sealing.json_col(r, 1, || format!("contacts.identities:{id}"))?;
            Ok((id, identities))
        })?
        .collect::<rusqlite::Result<_>>()?;
    tx.execute("DELETE FROM contact_identities", [])?;
    for (id, identities) in &holders {
        for identity in identities {
            tx.prepare_cached(
                "INSERT INTO contact_identities (kind, value, contact_id) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![identity.index_kind(), sealing.index(identity), id])?;
        }
    }
    tx.execute(
        "INSERT INTO sealing (one, key_id) VALUES (1, ?1)
         ON CONFLICT (one) DO UPDATE SET key_id = excluded.key_id",
        params![keys.current_id()],
    )?;
    tx.commit()?;
    tracing::info!(
        key = %keys.current_id(),
        contacts = holders.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "store sealed under the current key"
    );
    Ok(())
}

fn sql_text(value: &SqlValue) -> String {
    match value {
        SqlValue::Text(text) => text.clone(),
        SqlValue::Integer(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// The outbox's delivery bookkeeping, added to files written before it existed.
/// A column added with a default needs no rewrite of the table, and a pending
/// row from before becomes due at once, as it was meant to be.
const OUTBOX_DELIVERY_COLUMNS: &[(&str, &str)] = &[
    ("deliver_at", "INTEGER NOT NULL DEFAULT 0"),
    ("attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("last_error", "TEXT"),
];

const OUTBOX_DELIVERY_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, deliver_at, id);";

/// Adds each column the table lacks. Run at every open rather than behind a
/// version bump: it is idempotent, and an older file gains the columns without
/// the rest of its schema being touched.
fn add_missing_columns(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    columns: &[(&str, &str)],
) -> Result<()> {
    let present: Vec<String> = tx
        .prepare(&format!("PRAGMA table_info({table})"))?
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, definition) in columns {
        if !present.iter().any(|p| p == name) {
            tx.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {name} {definition};"
            ))?;
        }
    }
    Ok(())
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("encoding JSON: {e}")))
}

/// Creates the database file readable by its owner alone, and makes an
/// existing one so: SQLite gives its log and shared-memory files the
/// database's permissions.
fn create_private(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let io = |e: std::io::Error| StoreError::Corrupt(format!("opening {}: {e}", path.display()));
    let file = options.open(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = file.metadata().map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
    }
    Ok(())
}

/// Where a key-value record is stored, as its sealed value is bound to.
fn kv_place(store: &str, key: &str) -> String {
    format!("kv:{store}/{key}")
}

/// How a store writes personal data: sealed under a keyring, or plain.
struct Sealing(Option<Keyring>);

impl Sealing {
    /// Text for a column that holds personal data.
    fn text(&self, place: impl FnOnce() -> String, text: &str) -> Result<SqlValue> {
        Ok(match &self.0 {
            Some(keys) => SqlValue::Blob(keys.seal(&place(), text.as_bytes())?),
            None => SqlValue::Text(text.to_owned()),
        })
    }

    /// Bytes for a column that holds personal data.
    fn blob(&self, place: impl FnOnce() -> String, bytes: &[u8]) -> Result<SqlValue> {
        Ok(SqlValue::Blob(match &self.0 {
            Some(keys) => keys.seal(&place(), bytes)?,
            None => bytes.to_vec(),
        }))
    }

    /// A key-value record's value: sealed if it is an inbox record (the
    /// events people send, with their addresses) or one of the runtime's
    /// own (dead letters, failed sends, secrets). The gateway's dedupe marks
    /// and counters stay plain, as a Spin gateway sharing the file writes and
    /// reads them.
    fn kv_value(&self, store: &str, key: &str, value: &[u8]) -> Result<SqlValue> {
        if store == RUNTIME_KV_STORE || (store == DEFAULT_KV_STORE && key.starts_with(INBOX_PREFIX))
        {
            self.blob(|| kv_place(store, key), value)
        } else {
            Ok(SqlValue::Blob(value.to_vec()))
        }
    }

    /// The blind index of an identity, or its value in a plain store.
    fn index<'a>(&self, identity: &'a Identity) -> Cow<'a, str> {
        match &self.0 {
            Some(keys) => Cow::Owned(keys.blind(&identity.index_kind(), identity.index_value())),
            None => Cow::Borrowed(identity.index_value()),
        }
    }

    /// The bytes of a column that may be sealed.
    fn col(
        &self,
        row: &Row<'_>,
        idx: usize,
        place: impl FnOnce() -> String,
    ) -> rusqlite::Result<Vec<u8>> {
        let fail = |ty: Type, e: StoreError| {
            rusqlite::Error::FromSqlConversionFailure(idx, ty, Box::new(e))
        };
        match row.get_ref(idx)? {
            ValueRef::Text(text) => Ok(text.to_vec()),
            ValueRef::Blob(bytes) => match &self.0 {
                Some(keys) => keys
                    .open(&place(), bytes.to_vec())
                    .map_err(|e| fail(Type::Blob, e)),
                None if bytes.starts_with(seal::MAGIC) => Err(fail(
                    Type::Blob,
                    StoreError::Key(format!("{} is sealed and no keyring was given", place())),
                )),
                None => Ok(bytes.to_vec()),
            },
            other => Err(rusqlite::Error::InvalidColumnType(
                idx,
                place(),
                other.data_type(),
            )),
        }
    }

    fn text_col(
        &self,
        row: &Row<'_>,
        idx: usize,
        place: impl FnOnce() -> String,
    ) -> rusqlite::Result<String> {
        String::from_utf8(self.col(row, idx, place)?)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
    }

    fn optional_text_col(
        &self,
        row: &Row<'_>,
        idx: usize,
        place: impl FnOnce() -> String,
    ) -> rusqlite::Result<Option<String>> {
        match row.get_ref(idx)? {
            ValueRef::Null => Ok(None),
            _ => self.text_col(row, idx, place).map(Some),
        }
    }

    fn json_col<T: DeserializeOwned>(
        &self,
        row: &Row<'_>,
        idx: usize,
        place: impl FnOnce() -> String,
    ) -> rusqlite::Result<T> {
        let bytes = self.col(row, idx, place)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
    }
}

fn version_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Integer, Box::new(e)))
}

fn version_param(version: u64) -> Result<i64> {
    i64::try_from(version).map_err(|_| StoreError::Internal("enrollment version overflow"))
}

/// The timers a claim at `?1` takes, at most `?2` of them: due, and not claimed
/// or with a lapsed claim. The walk follows the primary key from the earliest due
/// time and steps over the timers claimed and not yet acknowledged, which are few:
/// those in flight.
const CLAIMABLE_TIMERS: &str = "
    SELECT key, due_at, payload FROM timers t
    WHERE due_at <= ?1
      AND NOT EXISTS (SELECT 1 FROM timer_claims c
                      WHERE c.key = t.key AND c.claimed_until > ?1)
    ORDER BY due_at, key
    LIMIT ?2";

const CONTACT_COLUMNS: &str = "c.id, c.identities, c.profile";

/// The contact holding identity (?1 kind, ?2 value).
fn find_by_identity() -> String {
    format!(
        "SELECT {CONTACT_COLUMNS} FROM contact_identities i
         JOIN contacts c ON c.id = i.contact_id
         WHERE i.kind = ?1 AND i.value = ?2"
    )
}

fn contact_from_row(seal: &Sealing, row: &Row<'_>) -> rusqlite::Result<Contact> {
    let id: String = row.get(0)?;
    Ok(Contact {
        identities: seal.json_col(row, 1, || format!("contacts.identities:{id}"))?,
        profile: seal.json_col(row, 2, || format!("contacts.profile:{id}"))?,
        id,
    })
}

const ENROLLMENT_COLUMNS: &str = "id, journey, contact_id, active, key, version, state";

fn enrollment_from_row(seal: &Sealing, row: &Row<'_>) -> rusqlite::Result<Enrollment> {
    let id: String = row.get(0)?;
    Ok(Enrollment {
        journey: row.get(1)?,
        contact_id: row.get(2)?,
        active: row.get(3)?,
        key: row.get(4)?,
        version: version_col(row, 5)?,
        state: seal.text_col(row, 6, || format!("enrollments.state:{id}"))?,
        id,
    })
}

const OUTBOX_COLUMNS: &str = "id, idempotency_key, contact_id, channel, content, status, \
     created_at, updated_at, deliver_at, attempts, last_error";

fn status_col(row: &Row<'_>, index: usize) -> rusqlite::Result<OutboxStatus> {
    let text: String = row.get(index)?;
    text.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, e.into())
    })
}

fn outbox_from_row(seal: &Sealing, row: &Row<'_>) -> rusqlite::Result<OutboxMessage> {
    let id: i64 = row.get(0)?;
    let idempotency_key: String = row.get(1)?;
    Ok(OutboxMessage {
        content: seal.json_col(row, 4, || format!("outbox.content:{idempotency_key}"))?,
        last_error: seal.optional_text_col(row, 10, || format!("outbox.last_error:{id}"))?,
        id,
        idempotency_key,
        contact_id: row.get(2)?,
        channel: row.get(3)?,
        status: status_col(row, 5)?,
        created_at_ms: row.get(6)?,
        updated_at_ms: row.get(7)?,
        deliver_at_ms: row.get(8)?,
        attempts: row.get(9)?,
    })
}

fn timer_from_row(seal: &Sealing, row: &Row<'_>) -> rusqlite::Result<Timer> {
    let key: String = row.get(0)?;
    Ok(Timer {
        payload: seal.col(row, 2, || format!("timers.payload:{key}"))?,
        key,
        due_at_ms: row.get(1)?,
        claimed_until_ms: row.get(3)?,
    })
}

fn apply_write(tx: &Transaction<'_>, seal: &Sealing, write: &Write) -> Result<WriteResult> {
    Ok(match write {
        Write::KvSet { store, key, value } => {
            let value = seal.kv_value(store, key, value)?;
            tx.prepare_cached(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![store, key, value])?;
            WriteResult::Done
        }
        Write::KvDelete { store, key } => {
            let n = kv_delete(tx, store, key)?;
            WriteResult::Flag(n > 0)
        }
        Write::KvConsume { store, key } => {
            if kv_delete(tx, store, key)? == 0 {
                return Err(StoreError::Gone {
                    store: store.clone(),
                    key: key.clone(),
                });
            }
            WriteResult::Done
        }
        Write::DedupeMark {
            key,
            now_ms,
            expires_at_ms,
        } => {
            // The upsert changes no row when a live mark exists, so the change
            // count says whether this call marked the key.
            let n = tx
                .prepare_cached(
                    "INSERT INTO dedupe (key, expires_at) VALUES (?1, ?3)
                     ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
                     WHERE dedupe.expires_at <= ?2",
                )?
                .execute(params![key, now_ms, expires_at_ms])?;
            WriteResult::Flag(n > 0)
        }
        Write::DedupePurge { now_ms } => {
            let n = tx
                .prepare_cached("DELETE FROM dedupe WHERE expires_at <= ?1")?
                .execute(params![now_ms])?;
            WriteResult::Count(n as u64)
        }
        Write::ContactPut(contact) => {
            contact_put(tx, seal, contact)?;
            WriteResult::Done
        }
        Write::ContactUnchanged { id, as_read } => {
            let stored = tx
                .prepare_cached(&format!(
                    "SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id = ?1"
                ))?
                .query_row(params![id], |r| contact_from_row(seal, r))
                .optional()?;
            if stored.as_ref() != as_read.as_ref() {
                return Err(StoreError::ContactChanged { id: id.clone() });
            }
            WriteResult::Done
        }
        Write::EnrollmentPut {
            enrollment,
            if_version,
        } => WriteResult::Version(enrollment_put(tx, seal, enrollment, *if_version)?),
        Write::EnrollmentDelete { id } => {
            let n = tx
                .prepare_cached("DELETE FROM enrollments WHERE id = ?1")?
                .execute(params![id])?;
            WriteResult::Flag(n > 0)
        }
        Write::TimerSet {
            key,
            due_at_ms,
            payload,
        } => {
            // Delete and insert rather than upsert: the due time is part of the
            // primary key, so a replaced timer moves.
            timer_delete(tx, key)?;
            let payload = seal.blob(|| format!("timers.payload:{key}"), payload)?;
            tx.prepare_cached("INSERT INTO timers (due_at, key, payload) VALUES (?1, ?2, ?3)")?
                .execute(params![due_at_ms, key, payload])?;
            WriteResult::Done
        }
        Write::TimerAck { key } => {
            // Removing the claim tells whether there was one: one statement
            // fewer per fired timer than asking first.
            let claimed = tx
                .prepare_cached("DELETE FROM timer_claims WHERE key = ?1")?
                .execute(params![key])?
                > 0;
            if claimed {
                tx.prepare_cached("DELETE FROM timers WHERE key = ?1")?
                    .execute(params![key])?;
            }
            WriteResult::Flag(claimed)
        }
        Write::TimerCancel { key } => WriteResult::Flag(timer_delete(tx, key)?),
        Write::TimerReleaseClaims => {
            WriteResult::Count(tx.prepare_cached("DELETE FROM timer_claims")?.execute([])? as u64)
        }
        Write::TimerRelease {
            key,
            claimed_until_ms,
        } => {
            let n = tx
                .prepare_cached("DELETE FROM timer_claims WHERE key = ?1 AND claimed_until = ?2")?
                .execute(params![key, claimed_until_ms])?;
            WriteResult::Flag(n > 0)
        }
        Write::OutboxClaim {
            id,
            now_ms,
            until_ms,
        } => {
            let n = tx
                .prepare_cached(
                    "UPDATE outbox SET deliver_at = ?3
                     WHERE id = ?1 AND status = ?4 AND deliver_at <= ?2",
                )?
                .execute(params![
                    id,
                    now_ms,
                    until_ms,
                    OutboxStatus::Pending.as_str()
                ])?;
            WriteResult::Flag(n > 0)
        }
        Write::OutboxInsert(m) => {
            let inserted: Option<i64> = tx
                .prepare_cached(
                    "INSERT INTO outbox (idempotency_key, contact_id, channel, content, status,
                         created_at, updated_at, deliver_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)
                     ON CONFLICT (idempotency_key) DO NOTHING
                     RETURNING id",
                )?
                .query_row(
                    params![
                        m.idempotency_key,
                        m.contact_id,
                        m.channel,
                        seal.text(
                            || format!("outbox.content:{}", m.idempotency_key),
                            &to_json(&m.content)?
                        )?,
                        m.status.as_str(),
                        m.created_at_ms,
                        m.deliver_at_ms
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            match inserted {
                Some(id) => WriteResult::Outbox { id, inserted: true },
                None => {
                    let id = tx
                        .prepare_cached("SELECT id FROM outbox WHERE idempotency_key = ?1")?
                        .query_row(params![m.idempotency_key], |r| r.get(0))?;
                    WriteResult::Outbox {
                        id,
                        inserted: false,
                    }
                }
            }
        }
        Write::OutboxDelete { id } => {
            let n = tx
                .prepare_cached("DELETE FROM outbox WHERE id = ?1")?
                .execute(params![id])?;
            WriteResult::Flag(n > 0)
        }
        Write::OutboxSetStatus { id, status, at_ms } => {
            let n = tx
                .prepare_cached("UPDATE outbox SET status = ?2, updated_at = ?3 WHERE id = ?1")?
                .execute(params![id, status.as_str(), at_ms])?;
            WriteResult::Flag(n > 0)
        }
        Write::OutboxRecordAttempt {
            id,
            status,
            deliver_at_ms,
            attempts,
            last_error,
            at_ms,
        } => {
            let n = tx
                .prepare_cached(
                    "UPDATE outbox SET status = ?2, deliver_at = ?3, attempts = ?4,
                         last_error = ?5, updated_at = ?6
                     WHERE id = ?1 AND status = ?7",
                )?
                .execute(params![
                    id,
                    status.as_str(),
                    deliver_at_ms,
                    attempts,
                    last_error
                        .as_deref()
                        .map(|e| seal.text(|| format!("outbox.last_error:{id}"), e))
                        .transpose()?,
                    at_ms,
                    OutboxStatus::Pending.as_str()
                ])?;
            WriteResult::Flag(n > 0)
        }
        Write::MetricAdd { name, delta } => {
            // Added here rather than in SQL: SQLite turns an overflowing integer
            // sum into a float, the memory store saturates.
            let current: i64 = tx
                .prepare_cached("SELECT value FROM metrics WHERE name = ?1")?
                .query_row(params![name], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let value = current.saturating_add(*delta);
            tx.prepare_cached(
                "INSERT INTO metrics (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![name, value])?;
            WriteResult::Counter(value)
        }
    })
}

/// Deletes a timer and its claim; true if the timer existed.
fn timer_delete(tx: &Transaction<'_>, key: &str) -> Result<bool> {
    tx.prepare_cached("DELETE FROM timer_claims WHERE key = ?1")?
        .execute(params![key])?;
    let n = tx
        .prepare_cached("DELETE FROM timers WHERE key = ?1")?
        .execute(params![key])?;
    Ok(n > 0)
}

fn kv_delete(tx: &Transaction<'_>, store: &str, key: &str) -> Result<usize> {
    Ok(tx
        .prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
        .execute(params![store, key])?)
}

fn contact_put(tx: &Transaction<'_>, seal: &Sealing, contact: &Contact) -> Result<()> {
    let mut identities = contact.identities.clone();
    dedup_identities(&mut identities);
    let id = &contact.id;
    let profile = seal.text(
        || format!("contacts.profile:{id}"),
        &to_json(&contact.profile)?,
    )?;
    // Most writes change the profile alone (an event's facts, a step's tag):
    // identities that stayed as they were need no checks and no rewrite.
    let identities_json = to_json(&identities)?;
    let stored: Option<String> = tx
        .prepare_cached("SELECT identities FROM contacts WHERE id = ?1")?
        .query_row(params![id], |r| {
            seal.text_col(r, 0, || format!("contacts.identities:{id}"))
        })
        .optional()?;
    if stored.as_deref() == Some(identities_json.as_str()) {
        tx.prepare_cached("UPDATE contacts SET profile = ?2 WHERE id = ?1")?
            .execute(params![id, profile])?;
        return Ok(());
    }
    // Each blind index is an HMAC: made once, for the check and the insert.
    let indexed: Vec<_> = identities
        .iter()
        .map(|identity| (identity, identity.index_kind(), seal.index(identity)))
        .collect();
    for (identity, kind, value) in &indexed {
        let owner: Option<String> = tx
            .prepare_cached(
                "SELECT contact_id FROM contact_identities WHERE kind = ?1 AND value = ?2",
            )?
            .query_row(params![kind, value], |r| r.get(0))
            .optional()?;
        if let Some(owner) = owner
            && owner != contact.id
        {
            return Err(StoreError::IdentityTaken {
                identity: (*identity).clone(),
                contact_id: owner,
            });
        }
    }
    tx.prepare_cached("DELETE FROM contact_identities WHERE contact_id = ?1")?
        .execute(params![contact.id])?;
    for (_, kind, value) in &indexed {
        tx.prepare_cached(
            "INSERT INTO contact_identities (kind, value, contact_id) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![kind, value, contact.id])?;
    }
    tx.prepare_cached(
        "INSERT INTO contacts (id, identities, profile) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET identities = excluded.identities,
             profile = excluded.profile",
    )?
    .execute(params![
        id,
        seal.text(|| format!("contacts.identities:{id}"), &identities_json)?,
        profile
    ])?;
    Ok(())
}

fn enrollment_put(
    tx: &Transaction<'_>,
    seal: &Sealing,
    e: &Enrollment,
    if_version: Option<u64>,
) -> Result<u64> {
    let stored: Option<(u64, String, String)> = tx
        .prepare_cached("SELECT version, journey, contact_id FROM enrollments WHERE id = ?1")?
        .query_row(params![e.id], |r| {
            Ok((version_col(r, 0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let current = stored.as_ref().map_or(0, |(version, _, _)| *version);
    if let Some(expected) = if_version
        && expected != current
    {
        return Err(StoreError::VersionConflict {
            id: e.id.clone(),
            expected,
            actual: current,
        });
    }
    if e.active
        && let Some(key) = &e.key
    {
        // Checked here, not left to the unique index, to name the holder.
        let holder: Option<String> = tx
            .prepare_cached(
                "SELECT id FROM enrollments
                 WHERE journey = ?1 AND key = ?2 AND active = 1 AND id <> ?3 LIMIT 1",
            )?
            .query_row(params![e.journey, key, e.id], |r| r.get(0))
            .optional()?;
        if let Some(holder) = holder {
            return Err(StoreError::ActiveKeyTaken {
                journey: e.journey.clone(),
                key: key.clone(),
                enrollment_id: holder,
            });
        }
    }
    let version = current + 1;
    let state = seal.text(|| format!("enrollments.state:{}", e.id), &e.state)?;
    let same_owner = stored
        .as_ref()
        .is_some_and(|(_, journey, contact)| *journey == e.journey && *contact == e.contact_id);
    if same_owner {
        // The usual case, an enrollment moving on: SQLite rewrites an index only
        // when its columns are assigned, so leaving out the journey and the
        // contact spares the by-contact index a delete and an insert.
        tx.prepare_cached(
            "UPDATE enrollments SET active = ?2, key = ?3, version = ?4, state = ?5
             WHERE id = ?1",
        )?
        .execute(params![
            e.id,
            e.active,
            e.key,
            version_param(version)?,
            state
        ])?;
    } else {
        tx.prepare_cached(
            "INSERT INTO enrollments (id, journey, contact_id, active, key, version, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET journey = excluded.journey,
                 contact_id = excluded.contact_id, active = excluded.active,
                 key = excluded.key, version = excluded.version, state = excluded.state",
        )?
        .execute(params![
            e.id,
            e.journey,
            e.contact_id,
            e.active,
            e.key,
            version_param(version)?,
            state
        ])?;
    }
    Ok(version)
}

impl Apply for SqliteStore {
    fn apply(&self, batch: &[Write]) -> Result<Vec<WriteResult>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.writer()?;
        // IMMEDIATE takes the write lock up front, where busy_timeout applies; a
        // deferred transaction that upgrades to a write after another process
        // committed fails at once with SQLITE_BUSY instead of waiting.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(batch.len());
        for write in batch {
            // An early return drops `tx`, which rolls the whole batch back.
            results.push(apply_write(&tx, &self.sealing, write)?);
        }
        tx.commit()?;
        Ok(results)
    }
}

impl KeyValue for SqliteStore {
    fn kv_get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .reader()?
            .prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
            .query_row(params![store, key], |r| {
                self.sealing.col(r, 0, || kv_place(store, key))
            })
            .optional()?)
    }

    fn kv_exists(&self, store: &str, key: &str) -> Result<bool> {
        Ok(self
            .reader()?
            .prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?
            .exists(params![store, key])?)
    }

    fn kv_keys(&self, store: &str) -> Result<Vec<String>> {
        let conn = self.reader()?;
        let mut stmt =
            conn.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key")?;
        let keys = stmt
            .query_map(params![store], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(keys)
    }

    fn kv_scan_prefix(
        &self,
        store: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        // The bounds are chosen here rather than with ORs in SQL so that SQLite
        // sees one plain range and walks the primary-key index from its start.
        let (lower_op, lower) = match after {
            Some(a) if a >= prefix => (">", a),
            _ => (">=", prefix),
        };
        let upper = prefix_upper_bound(prefix);
        let sql = match upper {
            Some(_) => format!(
                "SELECT key, value FROM spin_key_value
                 WHERE store = ?1 AND key {lower_op} ?2 AND key < ?4 ORDER BY key LIMIT ?3"
            ),
            None => format!(
                "SELECT key, value FROM spin_key_value
                 WHERE store = ?1 AND key {lower_op} ?2 ORDER BY key LIMIT ?3"
            ),
        };
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = match &upper {
            Some(upper) => stmt
                .query_map(params![store, lower, sql_limit(limit), upper], |r| {
                    self.kv_row(store, r)
                })?
                .collect::<rusqlite::Result<_>>()?,
            None => stmt
                .query_map(params![store, lower, sql_limit(limit)], |r| {
                    self.kv_row(store, r)
                })?
                .collect::<rusqlite::Result<_>>()?,
        };
        Ok(rows)
    }
}

impl Dedupe for SqliteStore {
    fn dedupe_seen(&self, key: &str, now_ms: Millis) -> Result<bool> {
        Ok(self
            .reader()?
            .prepare_cached("SELECT 1 FROM dedupe WHERE key = ?1 AND expires_at > ?2")?
            .exists(params![key, now_ms])?)
    }
}

impl Contacts for SqliteStore {
    fn contact_get(&self, id: &str) -> Result<Option<Contact>> {
        Ok(self
            .reader()?
            .prepare_cached(&format!(
                "SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id = ?1"
            ))?
            .query_row(params![id], |r| contact_from_row(&self.sealing, r))
            .optional()?)
    }

    fn contacts_get(&self, ids: &[&str]) -> Result<Vec<Option<Contact>>> {
        self.read_many(
            &format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id = ?1"),
            ids,
            |r| contact_from_row(&self.sealing, r),
        )
    }

    fn contacts_scan(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Contact>, Option<String>)> {
        let page: Vec<Contact> = self
            .reader()?
            .prepare_cached(&format!(
                "SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id > ?1 ORDER BY c.id LIMIT ?2"
            ))?
            .query_map(params![cursor.unwrap_or(""), sql_limit(limit)], |r| {
                contact_from_row(&self.sealing, r)
            })?
            .collect::<rusqlite::Result<_>>()?;
        let next = (page.len() == limit)
            .then(|| page.last().map(|c| c.id.clone()))
            .flatten();
        Ok((page, next))
    }

    fn contacts_find_by_identities(&self, identities: &[Identity]) -> Result<Vec<Option<Contact>>> {
        let mut conn = self.reader()?;
        let tx = conn.transaction()?;
        let mut stmt = tx.prepare_cached(&find_by_identity())?;
        let found = identities
            .iter()
            .map(|identity| {
                stmt.query_row(
                    params![identity.index_kind(), self.sealing.index(identity)],
                    |r| contact_from_row(&self.sealing, r),
                )
                .optional()
            })
            .collect::<rusqlite::Result<_>>()?;
        drop(stmt);
        tx.commit()?;
        Ok(found)
    }

    fn contact_find_by_identity(&self, identity: &Identity) -> Result<Option<Contact>> {
        Ok(self
            .reader()?
            .prepare_cached(&find_by_identity())?
            .query_row(
                params![identity.index_kind(), self.sealing.index(identity)],
                |r| contact_from_row(&self.sealing, r),
            )
            .optional()?)
    }
}

impl Enrollments for SqliteStore {
    fn enrollment_get(&self, id: &str) -> Result<Option<Enrollment>> {
        Ok(self
            .reader()?
            .prepare_cached(&format!(
                "SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE id = ?1"
            ))?
            .query_row(params![id], |r| enrollment_from_row(&self.sealing, r))
            .optional()?)
    }

    fn enrollments_get(&self, ids: &[&str]) -> Result<Vec<Option<Enrollment>>> {
        self.read_many(
            &format!("SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE id = ?1"),
            ids,
            |r| enrollment_from_row(&self.sealing, r),
        )
    }

    fn enrollments_of_contact(&self, contact_id: &str) -> Result<Vec<Enrollment>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE contact_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt
            .query_map(params![contact_id], |r| {
                enrollment_from_row(&self.sealing, r)
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn active_enrollment_by_key(&self, journey: &str, key: &str) -> Result<Option<Enrollment>> {
        Ok(self
            .reader()?
            .prepare_cached(&format!(
                "SELECT {ENROLLMENT_COLUMNS} FROM enrollments
                 WHERE journey = ?1 AND key = ?2 AND active = 1"
            ))?
            .query_row(params![journey, key], |r| {
                enrollment_from_row(&self.sealing, r)
            })
            .optional()?)
    }
}

impl Timers for SqliteStore {
    fn claim_due_timers(
        &self,
        now_ms: Millis,
        limit: usize,
        lease_ms: Millis,
    ) -> Result<Vec<Timer>> {
        let mut conn = self.writer()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let claimed_until = now_ms.saturating_add(lease_ms);
        let mut claimed: Vec<Timer> = tx
            .prepare_cached(CLAIMABLE_TIMERS)?
            .query_map(params![now_ms, sql_limit(limit)], |r| {
                let key: String = r.get(0)?;
                Ok(Timer {
                    payload: self.sealing.col(r, 2, || format!("timers.payload:{key}"))?,
                    key,
                    due_at_ms: r.get(1)?,
                    claimed_until_ms: Some(claimed_until),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        {
            let mut claim = tx.prepare_cached(
                "INSERT INTO timer_claims (key, claimed_until) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET claimed_until = excluded.claimed_until",
            )?;
            for timer in &claimed {
                claim.execute(params![timer.key, claimed_until])?;
            }
        }
        tx.commit()?;
        // Already in due order; sorted again so the promise does not hang on the
        // query plan.
        claimed.sort_by(|a, b| (a.due_at_ms, &a.key).cmp(&(b.due_at_ms, &b.key)));
        Ok(claimed)
    }

    fn timer_get(&self, key: &str) -> Result<Option<Timer>> {
        Ok(self
            .reader()?
            .prepare_cached(
                "SELECT t.key, t.due_at, t.payload, c.claimed_until
                 FROM timers t LEFT JOIN timer_claims c ON c.key = t.key
                 WHERE t.key = ?1",
            )?
            .query_row(params![key], |r| timer_from_row(&self.sealing, r))
            .optional()?)
    }

    fn next_due_at(&self) -> Result<Option<Millis>> {
        Ok(self
            .reader()?
            .prepare_cached(
                "SELECT MIN(at) FROM (
                     SELECT (SELECT due_at FROM timers t
                             WHERE NOT EXISTS (SELECT 1 FROM timer_claims c WHERE c.key = t.key)
                             ORDER BY due_at, key LIMIT 1) AS at
                     UNION ALL
                     SELECT MIN(claimed_until) FROM timer_claims)",
            )?
            .query_row([], |r| r.get(0))?)
    }

    fn timers_pending_count(&self) -> Result<u64> {
        let n: i64 = self
            .reader()?
            .prepare_cached("SELECT COUNT(*) FROM timers")?
            .query_row([], |r| r.get(0))?;
        Ok(n.unsigned_abs())
    }
}

impl Outbox for SqliteStore {
    fn outbox_get(&self, id: i64) -> Result<Option<OutboxMessage>> {
        Ok(self
            .reader()?
            .prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?1"
            ))?
            .query_row(params![id], |r| outbox_from_row(&self.sealing, r))
            .optional()?)
    }

    fn outbox_get_by_key(&self, idempotency_key: &str) -> Result<Option<OutboxMessage>> {
        Ok(self
            .reader()?
            .prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE idempotency_key = ?1"
            ))?
            .query_row(params![idempotency_key], |r| {
                outbox_from_row(&self.sealing, r)
            })
            .optional()?)
    }

    fn outbox_list(&self, after_id: Option<i64>, limit: usize) -> Result<Vec<OutboxMessage>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(
                params![after_id.unwrap_or(i64::MIN), sql_limit(limit)],
                |r| outbox_from_row(&self.sealing, r),
            )?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn outbox_with_status(&self, status: OutboxStatus, limit: usize) -> Result<Vec<OutboxMessage>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = ?1 ORDER BY id LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![status.as_str(), sql_limit(limit)], |r| {
                outbox_from_row(&self.sealing, r)
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn outbox_due_on(
        &self,
        channel: &str,
        now_ms: Millis,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox INDEXED BY outbox_due
             WHERE status = ?1 AND deliver_at <= ?2 AND channel = ?3
             ORDER BY deliver_at, id LIMIT ?4"
        ))?;
        let rows = stmt
            .query_map(
                params![
                    OutboxStatus::Pending.as_str(),
                    now_ms,
                    channel,
                    sql_limit(limit)
                ],
                |r| outbox_from_row(&self.sealing, r),
            )?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn outbox_due(&self, now_ms: Millis, limit: usize) -> Result<Vec<OutboxMessage>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox INDEXED BY outbox_due
             WHERE status = ?1 AND deliver_at <= ?2 ORDER BY deliver_at, id LIMIT ?3"
        ))?;
        let rows = stmt
            .query_map(
                params![OutboxStatus::Pending.as_str(), now_ms, sql_limit(limit)],
                |r| outbox_from_row(&self.sealing, r),
            )?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn outbox_of_contact(&self, contact_id: &str) -> Result<Vec<OutboxMessage>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE contact_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt
            .query_map(params![contact_id], |r| outbox_from_row(&self.sealing, r))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}

impl Metrics for SqliteStore {
    fn metric_get(&self, name: &str) -> Result<i64> {
        Ok(self
            .reader()?
            .prepare_cached("SELECT value FROM metrics WHERE name = ?1")?
            .query_row(params![name], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    fn metrics_all(&self) -> Result<BTreeMap<String, i64>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached("SELECT name, value FROM metrics ORDER BY name")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn metrics_with_prefix(&self, prefix: &str) -> Result<BTreeMap<String, i64>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT name, value FROM metrics WHERE name >= ?1 AND name < ?2 ORDER BY name",
        )?;
        let rows = stmt
            .query_map(
                rusqlite::params![
                    prefix,
                    crate::prefix_upper_bound(prefix).unwrap_or_else(|| char::MAX.to_string())
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use crate::Inbox as _;
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// Set in a child process started by a test: which role the child plays.
    const CHILD_ROLE: &str = "DRIPLINE_STORE_TEST_CHILD";
    /// Set in a child process: the store file.
    const CHILD_DB: &str = "DRIPLINE_STORE_TEST_DB";

    /// Starts this test binary again as a separate process that runs only
    /// `child_process`, in `role`, on the file at `db`.
    fn spawn_child(role: &str, db: &Path) -> std::io::Result<Child> {
        Command::new(std::env::current_exe()?)
            .args([
                "--exact",
                "sqlite::tests::child_process",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ROLE, role)
            .env(CHILD_DB, db)
            .stdout(Stdio::piped())
            .spawn()
    }

    /// The other side of `spawn_child`; does nothing in an ordinary test run.
    #[test]
    #[ignore = "run by other tests in a child process"]
    fn child_process() -> TestResult {
        let (Ok(role), Ok(db)) = (std::env::var(CHILD_ROLE), std::env::var(CHILD_DB)) else {
            return Ok(());
        };
        let store = SqliteStore::open(db)?;
        match role.as_str() {
            "claim" => loop {
                let claimed = store.claim_due_timers(0, 7, 1_000_000)?;
                if claimed.is_empty() {
                    return Ok(());
                }
                for t in &claimed {
                    println!("claimed {}", t.key);
                }
            },
            "write-until-killed" => {
                for n in 0_i64.. {
                    store.apply(&[
                        Write::KvSet {
                            store: "default".into(),
                            key: "n".into(),
                            value: n.to_string().into_bytes(),
                        },
                        Write::TimerSet {
                            key: format!("t{n}"),
                            due_at_ms: n,
                            payload: vec![0; 64],
                        },
                    ])?;
                    // Printed only after the commit returned: everything
                    // reported here must survive the kill.
                    println!("committed {n}");
                }
                Ok(())
            }
            other => Err(format!("unknown child role {other}").into()),
        }
    }

    /// What follows `prefix` in each line of a child's output that has it. Not only
    /// at the start of a line: the test harness prints the test's name and then
    /// its output on the same line.
    fn tagged_lines(child: &mut Child, prefix: &str) -> Vec<String> {
        let Some(stdout) = child.stdout.take() else {
            return Vec::new();
        };
        BufReader::new(stdout)
            .lines()
            .map_while(std::result::Result::ok)
            .filter_map(|l| l.split_once(prefix).map(|(_, rest)| rest.to_owned()))
            .collect()
    }

    #[test]
    fn what_a_batch_committed_is_there_after_reopening_the_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("d.db");
        {
            let store = SqliteStore::open(&path)?;
            store.apply(&[
                Write::inbox_put(1, "e", b"{}".to_vec()),
                Write::TimerSet {
                    key: "t".into(),
                    due_at_ms: 5,
                    payload: b"p".to_vec(),
                },
                Write::MetricAdd {
                    name: "m".into(),
                    delta: 2,
                },
            ])?;
        }
        let store = SqliteStore::open(&path)?;
        assert_eq!(store.inbox_peek(10)?.len(), 1);
        assert_eq!(store.next_due_at()?, Some(5));
        assert_eq!(store.metric_get("m")?, 2);
        assert_eq!(store.path(), path);
        Ok(())
    }

    #[test]
    fn an_outbox_written_before_delivery_bookkeeping_gains_its_columns_and_keeps_its_rows()
    -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("d.db");
        {
            // The outbox table as the first release created it, with one row.
            let conn = Connection::open(&path)?;
            conn.execute_batch(SCHEMA_V1)?;
            conn.execute_batch(
                "DROP TABLE outbox;
                 CREATE TABLE outbox (
                    id INTEGER PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE,
                    contact_id TEXT NOT NULL, channel TEXT NOT NULL, content TEXT NOT NULL,
                    status TEXT NOT NULL, created_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL);
                 INSERT INTO outbox VALUES (1, 'k', 'c1', 'sms', '{}', 'pending', 5, 5);",
            )?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        let store = SqliteStore::open(&path)?;
        let due = store.outbox_due(10, 10)?;
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].deliver_at_ms, due[0].attempts), (0, 0));
        drop(store);
        // Opening again finds the columns present and adds nothing.
        assert_eq!(SqliteStore::open(&path)?.outbox_due(10, 10)?.len(), 1);
        Ok(())
    }

    #[test]
    fn a_file_written_by_a_newer_schema_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("d.db");
        Connection::open(&path)?.pragma_update(None, "user_version", SCHEMA_VERSION + 1)?;
        let opened = SqliteStore::open(&path);
        assert!(matches!(
            opened,
            Err(StoreError::SchemaTooNew {
                found: 2,
                supported: 1
            })
        ));
        Ok(())
    }

    #[test]
    fn the_file_is_in_wal_mode_with_the_schema_version_set() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("d.db");
        drop(SqliteStore::open(&path)?);
        let conn = Connection::open(&path)?;
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        assert_eq!((mode.as_str(), version), ("wal", SCHEMA_VERSION));
        Ok(())
    }

    #[test]
    fn records_a_spin_app_writes_into_its_key_value_table_appear_in_the_inbox() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("d.db");
        let store = SqliteStore::open(&path)?;
        // What Spin's SQLite key-value backend executes for a `set`.
        Connection::open(&path)?.execute(
            "INSERT INTO spin_key_value (store, key, value) VALUES ($1, $2, $3)
             ON CONFLICT(store, key) DO UPDATE SET value=$3",
            params![
                "default",
                crate::inbox_key(7, "evt"),
                b"{\"id\":\"evt\"}".to_vec()
            ],
        )?;
        let peeked = store.inbox_peek(10)?;
        assert_eq!(
            peeked,
            vec![(crate::inbox_key(7, "evt"), b"{\"id\":\"evt\"}".to_vec())]
        );
        Ok(())
    }

    #[test]
    fn claiming_walks_the_timers_in_due_order_instead_of_scanning_and_sorting() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(dir.path().join("d.db"))?;
        let conn = store.writer()?;
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {CLAIMABLE_TIMERS}"))?;
        let plan: Vec<String> = stmt
            .query_map(params![1, 1], |r| r.get::<_, String>(3))?
            .collect::<rusqlite::Result<_>>()?;
        let plan = plan.join("\n");
        assert!(
            plan.contains("SEARCH t USING PRIMARY KEY (due_at<?)"),
            "{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        Ok(())
    }

    #[test]
    fn two_stores_on_one_file_see_each_others_writes() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("d.db");
        let gateway = SqliteStore::open(&path)?;
        let runtime = SqliteStore::open(&path)?;
        gateway.apply(&[Write::inbox_put(1, "e1", b"{}".to_vec())])?;
        let peeked = runtime.inbox_peek(10)?;
        assert_eq!(peeked.len(), 1);
        runtime.apply(&[Write::inbox_consume(peeked[0].0.clone())])?;
        assert!(gateway.inbox_peek(10)?.is_empty());
        Ok(())
    }

    #[test]
    fn concurrent_claimers_on_one_file_never_get_the_same_timer() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("d.db");
        let store = SqliteStore::open(&path)?;
        let writes: Vec<Write> = (0..2_000)
            .map(|i| Write::TimerSet {
                key: format!("t{i:04}"),
                due_at_ms: i,
                payload: vec![],
            })
            .collect();
        store.apply(&writes)?;
        let claimers: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || -> Result<Vec<String>> {
                    let store = SqliteStore::open(path)?;
                    let mut mine = Vec::new();
                    loop {
                        let claimed = store.claim_due_timers(10_000, 13, 60_000)?;
                        if claimed.is_empty() {
                            return Ok(mine);
                        }
                        mine.extend(claimed.into_iter().map(|t| t.key));
                    }
                })
            })
            .collect();
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for claimer in claimers {
            let keys = claimer.join().map_err(|_| "a claimer panicked")??;
            for key in keys {
                *counts.entry(key).or_default() += 1;
            }
        }
        assert_eq!(counts.len(), 2_000);
        assert!(counts.values().all(|n| *n == 1));
        Ok(())
    }

    #[test]
    fn claimers_in_two_processes_never_get_the_same_timer() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("d.db");
        let store = SqliteStore::open(&path)?;
        let writes: Vec<Write> = (0..3_000)
            .map(|i| Write::TimerSet {
                key: format!("t{i:04}"),
                due_at_ms: 0,
                payload: vec![],
            })
            .collect();
        store.apply(&writes)?;
        let mut children = vec![spawn_child("claim", &path)?, spawn_child("claim", &path)?];
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        // This process claims too, while the children run.
        loop {
            let claimed = store.claim_due_timers(0, 5, 1_000_000)?;
            if claimed.is_empty() {
                break;
            }
            for t in claimed {
                *counts.entry(t.key).or_default() += 1;
            }
        }
        for child in &mut children {
            for key in tagged_lines(child, "claimed ") {
                *counts.entry(key).or_default() += 1;
            }
            assert!(child.wait()?.success());
        }
        assert_eq!(counts.len(), 3_000);
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "claimed more than once: {twice:?}");
        Ok(())
    }

    #[test]
    fn every_batch_committed_before_a_sigkill_is_there_afterwards() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("d.db");
        drop(SqliteStore::open(&path)?);
        let mut child = spawn_child("write-until-killed", &path)?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut last_reported = None;
        for line in BufReader::new(stdout).lines() {
            if let Some((_, n)) = line?.split_once("committed ") {
                let n: i64 = n.parse()?;
                last_reported = Some(n);
                if n >= 200 {
                    break;
                }
            }
        }
        // Child::kill sends SIGKILL on Unix: no destructor, no flush, no checkpoint.
        child.kill()?;
        child.wait()?;
        let last_reported = last_reported.ok_or("the child reported no commit")?;
        let store = SqliteStore::open(&path)?;
        let n: i64 =
            String::from_utf8(store.kv_get("default", "n")?.ok_or("n is gone")?)?.parse()?;
        assert!(n >= last_reported, "{n} < {last_reported}");
        let pending = i64::try_from(store.timers_pending_count()?)?;
        assert_eq!(pending, n + 1, "the kv write and the timer commit together");
        Ok(())
    }

    /// Run with `cargo test --release -p dripline-store -- --ignored --nocapture
    /// a_million`.
    #[test]
    #[ignore = "a benchmark: a million timers take seconds and ~100 MB of disk"]
    fn a_million_timers_are_inserted_and_claimed_in_seconds() -> TestResult {
        const TIMERS: i64 = 1_000_000;
        const BATCH: i64 = 50_000;
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(dir.path().join("d.db"))?;

        let start = Instant::now();
        for first in (0..TIMERS).step_by(usize::try_from(BATCH)?) {
            let batch: Vec<Write> = (first..first + BATCH)
                .map(|i| Write::TimerSet {
                    key: format!("enrollment-{i:07}/wait"),
                    // Spread over ~11 days, out of key order.
                    due_at_ms: (i * 7_919) % TIMERS * 1_000,
                    payload: vec![0; 32],
                })
                .collect();
            store.apply(&batch)?;
        }
        let inserted = start.elapsed();
        let start = Instant::now();
        assert_eq!(store.timers_pending_count()?, 1_000_000);
        let counted = start.elapsed();
        let start = Instant::now();
        assert_eq!(store.next_due_at()?, Some(0));
        let next_due = start.elapsed();

        let start = Instant::now();
        let few = store.claim_due_timers(0, 100, 60_000)?;
        let first_claim = start.elapsed();
        assert_eq!(few.len(), 1);

        let start = Instant::now();
        let mut claimed = 0;
        let now = TIMERS * 1_000;
        loop {
            let timers = store.claim_due_timers(now, 1_000, 60_000)?;
            if timers.is_empty() {
                break;
            }
            claimed += timers.len();
            let acks: Vec<Write> = timers
                .into_iter()
                .map(|t| Write::TimerAck { key: t.key })
                .collect();
            store.apply(&acks)?;
        }
        let drained = start.elapsed();
        let peak_memory = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM"))
                    .map(str::to_owned)
            });
        println!(
            "1M timers: insert {inserted:?} ({BATCH} per batch); with 1M pending: count \
             {counted:?}, next_due_at {next_due:?}, first claim {first_claim:?}; claim+ack \
             all in batches of 1000 {drained:?}; {peak_memory:?}"
        );
        // The one claimed first came back: its lease lapsed long before `now`.
        assert_eq!(claimed, 1_000_000);
        Ok(())
    }

    fn new_keys() -> std::result::Result<Keyring, StoreError> {
        Keyring::parse(&Keyring::new_key_line()?)
    }

    /// Everything SQLite keeps of a store on disk, the log included.
    fn raw_files(path: &Path) -> Vec<u8> {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            bytes.extend(std::fs::read(Path::new(&name)).unwrap_or_default());
        }
        bytes
    }

    fn holds(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    fn personal_contact() -> Contact {
        Contact {
            id: "c_1".into(),
            identities: vec![
                Identity::Email("ana.sealed@example.com".into()),
                Identity::Phone("+14155550123".into()),
            ],
            profile: serde_json::json!({ "first_name": "Anastasia" }),
        }
    }

    #[test]
    fn a_sealed_file_holds_no_identity_profile_or_message_text_and_reads_them_back() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("d.db");
        let store = SqliteStore::open_sealed(&path, new_keys()?)?;
        store.apply(&[
            Write::ContactPut(personal_contact()),
            Write::inbox_put(1, "e1", b"{\"email\":\"ana.sealed@example.com\"}".to_vec()),
            Write::OutboxInsert(crate::NewOutboxMessage {
                idempotency_key: "k1".into(),
                contact_id: "c_1".into(),
                channel: "email".into(),
                content: serde_json::json!({ "body": "Your basket misses you, Anastasia" }),
                status: OutboxStatus::Pending,
                created_at_ms: 1,
                deliver_at_ms: 1,
            }),
        ])?;
        let raw = raw_files(&path);
        for secret in ["ana.sealed", "4155550123", "Anastasia", "basket misses"] {
            assert!(!holds(&raw, secret), "{secret} is in the file");
        }
        let found = store
            .contact_find_by_identity(&Identity::Email("ana.sealed@example.com".into()))?
            .ok_or("not found by its email")?;
        assert_eq!(found, personal_contact());
        assert_eq!(
            store.inbox_peek(1)?[0].1,
            b"{\"email\":\"ana.sealed@example.com\"}"
        );
        let message = store.outbox_get_by_key("k1")?.ok_or("no message")?;
        assert_eq!(message.content["body"], "Your basket misses you, Anastasia");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path)?.permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the file is its owner's alone");
        }
        Ok(())
    }

    #[test]
    fn a_plain_file_opened_with_a_key_is_sealed_and_then_refused_without_it() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("d.db");
        SqliteStore::open(&path)?.apply(&[Write::ContactPut(personal_contact())])?;
        let keys = Keyring::new_key_line()?;
        let store = SqliteStore::open_sealed(&path, Keyring::parse(&keys)?)?;
        assert_eq!(store.contact_get("c_1")?, Some(personal_contact()));
        assert!(
            store
                .contact_find_by_identity(&Identity::Phone("+14155550123".into()))?
                .is_some()
        );
        drop(store);
        let refused = SqliteStore::open(&path)
            .err()
            .ok_or("opened without its key")?;
        assert!(refused.to_string().contains("sealed"), "{refused}");
        Ok(())
    }

    #[test]
    fn after_a_key_rotation_the_file_is_resealed_and_the_old_key_can_be_retired() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("d.db");
        let old = Keyring::new_key_line()?;
        let new = Keyring::new_key_line()?;
        SqliteStore::open_sealed(&path, Keyring::parse(&old)?)?
            .apply(&[Write::ContactPut(personal_contact())])?;
        // The new key first, the old one kept until the file is resealed.
        drop(SqliteStore::open_sealed(
            &path,
            Keyring::parse(&format!("{new}\n{old}"))?,
        )?);
        let store = SqliteStore::open_sealed(&path, Keyring::parse(&new)?)?;
        assert_eq!(store.contact_get("c_1")?, Some(personal_contact()));
        assert!(
            store
                .contact_find_by_identity(&Identity::Email("ana.sealed@example.com".into()))?
                .is_some(),
            "the blind indexes were rebuilt under the new key"
        );
        drop(store);
        let stale = SqliteStore::open_sealed(&path, Keyring::parse(&old)?)
            .err()
            .ok_or("opened with a retired key")?;
        assert!(stale.to_string().contains("does not hold"), "{stale}");
        Ok(())
    }
}
