//! Where the inbox is in Redis, without scanning the keyspace at every look.
//!
//! The gateway (Spin's Redis key-value backend, or its outbound Redis) writes
//! each inbox record as a plain key, beside one dedupe mark per delivery, so
//! finding the inbox means a SCAN over every key: with 72 hours of marks that
//! is a million keys, and a worker looks every 50 ms when idle. So each store
//! handle keeps the inbox keys it knows, in order:
//!
//! - the keys it writes itself are added as it writes them;
//! - the keys others write arrive by Redis keyspace notifications (`SET`
//!   events, switched on with `notify-keyspace-events`), on a thread of the
//!   handle's own;
//! - a full SCAN rebuilds the set at the first look and every
//!   [`RESCAN_EVERY`] after (every [`RESCAN_BLIND`] when notifications are
//!   not available), so a notification lost while disconnected delays an
//!   event, never loses it;
//! - keys found gone when read (another worker consumed them) are dropped.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::INBOX_PREFIX;

/// How often the set is rebuilt from a full SCAN while notifications flow.
pub(super) const RESCAN_EVERY: Duration = Duration::from_secs(60);

/// How often without notifications (a Redis that refuses `CONFIG SET`).
pub(super) const RESCAN_BLIND: Duration = Duration::from_secs(1);

#[derive(Default)]
struct State {
    keys: BTreeSet<String>,
    scanned_at: Option<Instant>,
    /// Whether the notification thread is subscribed.
    listening: bool,
    started: bool,
}

/// The inbox keys a store handle knows of; see the module documentation.
#[derive(Default)]
pub(super) struct InboxIndex {
    state: Arc<Mutex<State>>,
}

impl InboxIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the set must be rebuilt by a full scan before it is read;
    /// starts the notification thread at the first look.
    pub(super) fn stale(&self, client: &redis::Client, db: i64) -> bool {
        let mut state = self.lock();
        if !state.started {
            state.started = true;
            listen(client.clone(), db, Arc::downgrade(&self.state));
        }
        let every = if state.listening {
            RESCAN_EVERY
        } else {
            RESCAN_BLIND
        };
        state.scanned_at.is_none_or(|at| at.elapsed() >= every)
    }

    /// Whether keyspace notifications are flowing.
    #[cfg(test)]
    pub(super) fn listening(&self) -> bool {
        self.lock().listening
    }

    /// Replaces the set with what a full scan found.
    pub(super) fn rebuilt(&self, keys: impl IntoIterator<Item = String>) {
        let mut state = self.lock();
        state.keys = keys.into_iter().collect();
        state.scanned_at = Some(Instant::now());
    }

    /// Up to `limit` known keys that start with `prefix` and come after
    /// `after`, in order.
    pub(super) fn page(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<String> {
        let state = self.lock();
        state
            .keys
            .range::<str, _>((
                match after {
                    Some(a) if a >= prefix => std::ops::Bound::Excluded(a),
                    _ => std::ops::Bound::Included(prefix),
                },
                std::ops::Bound::Unbounded,
            ))
            .take_while(|k| k.starts_with(prefix))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Records a key written (or deleted) through this handle.
    pub(super) fn written(&self, key: &str, present: bool) {
        if !key.starts_with(INBOX_PREFIX) {
            return;
        }
        let mut state = self.lock();
        if present {
            state.keys.insert(key.to_owned());
        } else {
            state.keys.remove(key);
        }
    }

    /// Drops keys that turned out to be gone.
    pub(super) fn gone(&self, keys: &[String]) {
        let mut state = self.lock();
        for key in keys {
            state.keys.remove(key);
        }
    }
}

/// Subscribes to the `SET` events of database `db` on a thread that lives as
/// long as the index does, adding the inbox keys it hears of.
fn listen(client: redis::Client, db: i64, index: Weak<Mutex<State>>) {
    let spawned = std::thread::Builder::new()
        .name("dripline-inbox-events".into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(100);
            while index.strong_count() > 0 {
                // Once the store is dropped, an error only means its Redis went too.
                if let Err(e) = subscribe(&client, db, &index)
                    && index.strong_count() > 0
                {
                    tracing::warn!(
                        "inbox notifications from Redis stopped ({e}); the inbox is scanned every {RESCAN_BLIND:?} meanwhile"
                    );
                }
                if let Some(state) = index.upgrade() {
                    state.lock().unwrap_or_else(PoisonError::into_inner).listening = false;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("no thread for inbox notifications ({e}); the inbox is scanned instead");
    }
}

fn subscribe(
    client: &redis::Client,
    db: i64,
    index: &Weak<Mutex<State>>,
) -> redis::RedisResult<()> {
    let mut con = client.get_connection()?;
    // Keyspace events of string commands (SET), by event: what Spin's
    // backend and the gateway's outbound Redis both send. A Redis that
    // refuses CONFIG (a managed one) may have them on already, or not at all.
    let events: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query(&mut con)
        .unwrap_or_default();
    let current = events.get(1).cloned().unwrap_or_default();
    let has = |c: char| current.contains(c) || (c == '$' && current.contains('A'));
    if !(has('E') && has('$')) {
        let wanted = format!("{current}E$");
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("notify-keyspace-events")
            .arg(&wanted)
            .query::<()>(&mut con)?;
    }
    let mut pubsub = con.as_pubsub();
    pubsub.subscribe(format!("__keyevent@{db}__:set"))?;
    pubsub.set_read_timeout(Some(Duration::from_secs(1)))?;
    match index.upgrade() {
        // Whatever was written before the subscription is found by the scan
        // that the next look makes.
        Some(state) => {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            state.listening = true;
            state.scanned_at = None;
        }
        None => return Ok(()),
    }
    loop {
        let message = match pubsub.get_message() {
            Ok(message) => message,
            Err(e) if e.is_timeout() => {
                if index.strong_count() == 0 {
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let Ok(key) = message.get_payload::<String>() else {
            continue;
        };
        if !key.starts_with(INBOX_PREFIX) {
            continue;
        }
        match index.upgrade() {
            Some(state) => {
                state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .keys
                    .insert(key);
            }
            None => return Ok(()),
        }
    }
}
