//! Dead letters: inbox events the runner set aside because they could not be
//! processed as they are (they do not parse, or name a journey version that
//! is not loaded). Each keeps the record as it was in the inbox, the problem
//! and when it was set aside, in the runtime's own key-value store, so an
//! operator can list and read them and, once the cause is fixed (a journey
//! file restored, a component updated), replay them into the inbox.

use dripline_store::{INBOX_PREFIX, KeyValue, Millis, RUNTIME_KV_STORE, StoreError, Write};
use serde::{Deserialize, Serialize};

/// The key prefix of dead letters in the runtime's store; the rest of the key
/// is the inbox key's, so a replay puts the record back where it was.
pub const PREFIX: &str = "deadletter/";

/// One dead letter, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Why it was set aside.
    pub problem: String,
    /// The inbox record, as text (lossy where it was not UTF-8).
    pub record: String,
    /// When it was set aside, in ms since the epoch.
    #[serde(default)]
    pub at: Millis,
}

/// Why a dead letter cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// There is no dead letter with that key.
    #[error("no dead letter `{0}` (see `dripline deadletters list`)")]
    NotFound(String),
    /// The stored dead letter does not read.
    #[error("dead letter `{key}` does not read: {problem}")]
    Unreadable {
        /// Its key.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The writes that set an inbox record aside: the dead letter, the record's
/// removal from the inbox, and the count.
pub(crate) fn set_aside(inbox_key: &str, bytes: &[u8], problem: &str, now: Millis) -> Vec<Write> {
    let letter = DeadLetter {
        problem: problem.to_string(),
        record: String::from_utf8_lossy(bytes).into_owned(),
        at: now,
    };
    vec![
        Write::KvSet {
            store: RUNTIME_KV_STORE.into(),
            key: format!("{PREFIX}{}", inbox_key.trim_start_matches(INBOX_PREFIX)),
            // A struct of strings and a number always serializes.
            value: serde_json::to_vec(&letter).unwrap_or_default(),
        },
        Write::inbox_consume(inbox_key.to_string()),
        Write::MetricAdd {
            name: "runtime.dead_lettered".into(),
            delta: 1,
        },
    ]
}

/// Every dead letter, oldest first, by its key (without the prefix).
pub fn list(store: &dyn KeyValue) -> Result<Vec<(String, DeadLetter)>, StoreError> {
    let stored = store.kv_scan_prefix(RUNTIME_KV_STORE, PREFIX, None, usize::MAX)?;
    Ok(stored
        .into_iter()
        .map(|(key, value)| {
            let key = key.trim_start_matches(PREFIX).to_string();
            let letter = serde_json::from_slice(&value).unwrap_or_else(|e| DeadLetter {
                problem: format!("(this dead letter does not read: {e})"),
                record: String::from_utf8_lossy(&value).into_owned(),
                at: 0,
            });
            (key, letter)
        })
        .collect())
}

/// Dead letter `key` (as `list` names it), if there is one.
pub fn get(store: &dyn KeyValue, key: &str) -> Result<Option<DeadLetter>, ReplayError> {
    let key = key.trim_start_matches(PREFIX);
    let Some(value) = store.kv_get(RUNTIME_KV_STORE, &format!("{PREFIX}{key}"))? else {
        return Ok(None);
    };
    serde_json::from_slice(&value)
        .map(Some)
        .map_err(|e| ReplayError::Unreadable {
            key: key.to_string(),
            problem: e.to_string(),
        })
}

/// Puts dead letter `key` back into the inbox, where the runner takes it
/// again, and removes the dead letter, in one transaction.
pub fn replay(store: &dyn KeyValue, key: &str) -> Result<(), ReplayError> {
    let key = key.trim_start_matches(PREFIX);
    let Some(letter) = get(store, key)? else {
        return Err(ReplayError::NotFound(key.to_string()));
    };
    let stored_key = format!("{PREFIX}{key}");
    store.apply(&[
        Write::KvSet {
            store: dripline_store::DEFAULT_KV_STORE.into(),
            key: format!("{INBOX_PREFIX}{key}"),
            value: letter.record.into_bytes(),
        },
        Write::KvConsume {
            store: RUNTIME_KV_STORE.into(),
            key: stored_key,
        },
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use dripline_store::MemoryStore;
    use dripline_store::prelude::*;

    use super::*;

    #[test]
    fn a_dead_letter_replays_into_the_inbox_under_its_old_key_once() {
        let store = MemoryStore::new();
        let inbox_key = dripline_store::inbox_key(7, "e1");
        store
            .apply(&[Write::inbox_put(7, "e1", b"{oops".to_vec())])
            .unwrap();
        store
            .apply(&set_aside(&inbox_key, b"{oops", "not a canonical event", 9))
            .unwrap();
        let listed = list(&store).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].1.problem, "not a canonical event");
        assert!(store.inbox_peek(10).unwrap().is_empty());

        replay(&store, &listed[0].0).unwrap();
        assert_eq!(
            store.inbox_peek(10).unwrap(),
            [(inbox_key, b"{oops".to_vec())]
        );
        assert!(list(&store).unwrap().is_empty());
        assert!(matches!(
            replay(&store, &listed[0].0),
            Err(ReplayError::NotFound(_))
        ));
    }
}
