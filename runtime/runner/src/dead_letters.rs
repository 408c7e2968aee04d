//! Dead letters: inbox events and timers the runner set aside because they
//! could not be processed as they are (they do not parse, name a journey
//! version that is not loaded, or a bug panicked on them), after the bounded
//! attempts of [`crate::retries`]. Each keeps the input as it was (the inbox
//! record, or the timer's key, due time and payload), the last problem, the
//! attempts and when it was set aside, in the runtime's own key-value store,
//! so an operator can list and read them and, once the cause is fixed (a
//! journey file restored, a component updated), replay them: an event into
//! the inbox, a timer into the timer index, due at once.

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
    /// How many times it was tried.
    #[serde(default = "one")]
    pub attempts: u32,
    /// Set when the input was a timer rather than an inbox event; `record`
    /// is then the timer's payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer: Option<TimerOrigin>,
}

/// Where a dead timer was in the timer index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerOrigin {
    /// The timer's key.
    pub key: String,
    /// When it was due, in ms since the epoch.
    pub due_at: Millis,
}

fn one() -> u32 {
    1
}

/// The name of inbox record `inbox_key` among dead letters and retries.
pub(crate) fn inbox_name(inbox_key: &str) -> &str {
    inbox_key.trim_start_matches(INBOX_PREFIX)
}

/// The name of timer `key` among dead letters and retries; inbox names start
/// with a 13-digit time, so the two never meet.
pub(crate) fn timer_name(key: &str) -> String {
    format!("timer/{key}")
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

/// The writes that set an inbox record aside after `attempts` attempts: the
/// dead letter, the record's removal from the inbox, and the count.
pub(crate) fn set_aside(
    inbox_key: &str,
    bytes: &[u8],
    problem: &str,
    attempts: u32,
    now: Millis,
) -> Vec<Write> {
    let letter = DeadLetter {
        problem: problem.to_string(),
        record: String::from_utf8_lossy(bytes).into_owned(),
        at: now,
        attempts,
        timer: None,
    };
    vec![
        letter_write(inbox_name(inbox_key), &letter),
        Write::inbox_consume(inbox_key.to_string()),
        count(),
    ]
}

/// The writes that set a claimed timer aside after `attempts` attempts: the
/// dead letter, the timer's acknowledgement, and the count.
pub(crate) fn set_aside_timer(
    timer: &dripline_store::Timer,
    problem: &str,
    attempts: u32,
    now: Millis,
) -> Vec<Write> {
    let letter = DeadLetter {
        problem: problem.to_string(),
        record: String::from_utf8_lossy(&timer.payload).into_owned(),
        at: now,
        attempts,
        timer: Some(TimerOrigin {
            key: timer.key.clone(),
            due_at: timer.due_at_ms,
        }),
    };
    vec![
        letter_write(&timer_name(&timer.key), &letter),
        Write::TimerAck {
            key: timer.key.clone(),
        },
        count(),
    ]
}

fn letter_write(name: &str, letter: &DeadLetter) -> Write {
    Write::KvSet {
        store: RUNTIME_KV_STORE.into(),
        key: format!("{PREFIX}{name}"),
        // A struct of strings and numbers always serializes.
        value: serde_json::to_vec(letter).unwrap_or_default(),
    }
}

fn count() -> Write {
    Write::MetricAdd {
        name: "runtime.dead_lettered".into(),
        delta: 1,
    }
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
                attempts: 0,
                timer: None,
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

/// Puts dead letter `key` back where the runner takes it again (an event
/// into the inbox under its old key, a timer into the timer index due at
/// `now`) and removes the dead letter, in one transaction. The replayed input
/// gets a fresh set of attempts.
pub fn replay(store: &dyn KeyValue, key: &str, now: Millis) -> Result<(), ReplayError> {
    let key = key.trim_start_matches(PREFIX);
    let Some(letter) = get(store, key)? else {
        return Err(ReplayError::NotFound(key.to_string()));
    };
    let stored_key = format!("{PREFIX}{key}");
    let back = match &letter.timer {
        Some(origin) => Write::TimerSet {
            key: origin.key.clone(),
            due_at_ms: now,
            payload: letter.record.into_bytes(),
        },
        None => Write::KvSet {
            store: dripline_store::DEFAULT_KV_STORE.into(),
            key: format!("{INBOX_PREFIX}{key}"),
            value: letter.record.into_bytes(),
        },
    };
    store.apply(&[
        back,
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
            .apply(&set_aside(
                &inbox_key,
                b"{oops",
                "not a canonical event",
                4,
                9,
            ))
            .unwrap();
        let listed = list(&store).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].1.problem, "not a canonical event");
        assert_eq!(listed[0].1.attempts, 4);
        assert!(store.inbox_peek(10).unwrap().is_empty());

        replay(&store, &listed[0].0, 10).unwrap();
        assert_eq!(
            store.inbox_peek(10).unwrap(),
            [(inbox_key, b"{oops".to_vec())]
        );
        assert!(list(&store).unwrap().is_empty());
        assert!(matches!(
            replay(&store, &listed[0].0, 10),
            Err(ReplayError::NotFound(_))
        ));
    }

    #[test]
    fn a_dead_timer_replays_into_the_timer_index_due_at_once() {
        let store = MemoryStore::new();
        store.timer_set("t1", 5, b"{\"timer\":1}").unwrap();
        let claimed = store.claim_due_timers(5, 10, 60_000).unwrap();
        store
            .apply(&set_aside_timer(
                &claimed[0],
                "journey j v9 is not known",
                4,
                6,
            ))
            .unwrap();
        assert_eq!(store.timers_pending_count().unwrap(), 0);
        let listed = list(&store).unwrap();
        assert_eq!(listed[0].0, "timer/t1");
        assert_eq!(listed[0].1.timer.as_ref().unwrap().due_at, 5);

        replay(&store, "timer/t1", 100).unwrap();
        let due = store.claim_due_timers(100, 10, 60_000).unwrap();
        assert_eq!((due[0].key.as_str(), due[0].due_at_ms), ("t1", 100));
        assert_eq!(due[0].payload, b"{\"timer\":1}");
        assert!(list(&store).unwrap().is_empty());
    }
}
