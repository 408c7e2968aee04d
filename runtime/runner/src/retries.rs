//! Bounded retries of inputs that could not be processed. An inbox event or a
//! timer that fails for a reason of its own (it names a journey version that
//! is not loaded, a stored enrollment does not decode, a bug panicked) is
//! tried again after a backoff, in case the cause goes away (a journey file
//! restored, a deployment rolled back); after the last attempt it is set
//! aside as a dead letter, and everything behind it goes on all the while.
//!
//! The attempts are kept in the runtime's own key-value store, so a restart
//! does not give a poison input a fresh set of tries, and mirrored in memory,
//! so that an input without a retry record costs no read.

use std::collections::HashMap;

use dripline_store::{KeyValue, Millis, RUNTIME_KV_STORE, StoreError, Write};
use serde::{Deserialize, Serialize};

/// The key prefix of retry records in the runtime's store; the rest is the
/// input's name (as [`crate::dead_letters`] names it).
const PREFIX: &str = "retry/";

/// How often, and how far apart, an input is tried before it is set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; the last failure sets it aside.
    pub attempts: u32,
    /// The wait after the first failure; each later wait is four times the
    /// one before (1 s, 4 s, 16 s by default).
    pub first_backoff_ms: Millis,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            first_backoff_ms: 1_000,
        }
    }
}

impl RetryPolicy {
    /// The wait after failure number `failures` (1-based).
    fn backoff_ms(&self, failures: u32) -> Millis {
        let exponent = failures.saturating_sub(1).min(16);
        self.first_backoff_ms.saturating_mul(4_i64.pow(exponent))
    }
}

/// One input's failed attempts so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Retry {
    /// Failed attempts.
    pub attempts: u32,
    /// Not to be tried before this time.
    pub next_at: Millis,
    /// The last failure's problem.
    pub problem: String,
}

/// What to do with an input that just failed.
pub(crate) enum Verdict {
    /// Try it again at `retry.next_at`; these writes record the attempt.
    Later { retry: Retry, writes: Vec<Write> },
    /// Set it aside after `attempts` attempts; these writes drop the retry
    /// record (the caller adds the dead letter's).
    GiveUp { attempts: u32, writes: Vec<Write> },
}

/// The retry records, mirrored in memory once read.
#[derive(Debug, Default)]
pub(crate) struct Retries {
    policy: RetryPolicy,
    loaded: Option<HashMap<String, Retry>>,
}

impl Retries {
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            loaded: None,
        }
    }

    fn records(&mut self, store: &dyn KeyValue) -> Result<&mut HashMap<String, Retry>, StoreError> {
        if self.loaded.is_none() {
            let stored = store.kv_scan_prefix(RUNTIME_KV_STORE, PREFIX, None, usize::MAX)?;
            let records = stored
                .into_iter()
                .filter_map(|(key, value)| {
                    let retry = serde_json::from_slice(&value).ok()?;
                    Some((key.trim_start_matches(PREFIX).to_string(), retry))
                })
                .collect();
            self.loaded = Some(records);
        }
        Ok(self.loaded.get_or_insert_with(HashMap::new))
    }

    /// How many inputs wait for a retry.
    pub(crate) fn waiting(&mut self, store: &dyn KeyValue) -> Result<usize, StoreError> {
        Ok(self.records(store)?.len())
    }

    /// Whether input `name` waits out a backoff at `now`.
    pub(crate) fn backing_off(
        &mut self,
        store: &dyn KeyValue,
        name: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        Ok(self
            .records(store)?
            .get(name)
            .is_some_and(|retry| retry.next_at > now))
    }

    /// The write that drops input `name`'s retry record once it succeeded,
    /// if it has one.
    pub(crate) fn succeeded(
        &mut self,
        store: &dyn KeyValue,
        name: &str,
    ) -> Result<Option<Write>, StoreError> {
        Ok(self
            .records(store)?
            .contains_key(name)
            .then(|| consume(name)))
    }

    /// Forgets input `name` once the writes that ended it committed.
    pub(crate) fn forget(&mut self, name: &str) {
        if let Some(records) = &mut self.loaded {
            records.remove(name);
        }
    }

    /// Counts a failure of input `name` at `now`; the caller commits the
    /// verdict's writes and then calls [`Retries::committed`].
    pub(crate) fn failed(
        &mut self,
        store: &dyn KeyValue,
        name: &str,
        problem: &str,
        now: Millis,
    ) -> Result<Verdict, StoreError> {
        let policy = self.policy;
        let attempts = self.records(store)?.get(name).map_or(0, |r| r.attempts) + 1;
        if attempts >= policy.attempts {
            let writes = if attempts > 1 {
                vec![consume(name)]
            } else {
                Vec::new()
            };
            return Ok(Verdict::GiveUp { attempts, writes });
        }
        let at = now.saturating_add(policy.backoff_ms(attempts));
        let retry = Retry {
            attempts,
            next_at: at,
            problem: problem.to_string(),
        };
        let writes = vec![Write::KvSet {
            store: RUNTIME_KV_STORE.into(),
            key: format!("{PREFIX}{name}"),
            // A struct of a string and numbers always serializes.
            value: serde_json::to_vec(&retry).unwrap_or_default(),
        }];
        Ok(Verdict::Later { retry, writes })
    }

    /// Mirrors a committed verdict of [`Retries::failed`] in memory.
    pub(crate) fn committed(&mut self, name: &str, verdict: &Verdict) {
        let Some(records) = &mut self.loaded else {
            return;
        };
        match verdict {
            Verdict::Later { retry, .. } => {
                records.insert(name.to_string(), retry.clone());
            }
            Verdict::GiveUp { .. } => {
                records.remove(name);
            }
        }
    }
}

fn consume(name: &str) -> Write {
    // A delete, not a consume: a retry record already gone must not fail the
    // input's transaction (a consume's failure means "processed elsewhere").
    Write::KvDelete {
        store: RUNTIME_KV_STORE.into(),
        key: format!("{PREFIX}{name}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use dripline_store::MemoryStore;
    use dripline_store::prelude::*;

    use super::*;

    fn commit(store: &MemoryStore, retries: &mut Retries, verdict: Verdict) -> Verdict {
        let writes = match &verdict {
            Verdict::Later { writes, .. } | Verdict::GiveUp { writes, .. } => writes.clone(),
        };
        store.apply(&writes).unwrap();
        retries.committed("e1", &verdict);
        verdict
    }

    #[test]
    fn an_input_is_tried_four_times_one_four_and_sixteen_seconds_apart_then_given_up() {
        let store = MemoryStore::new();
        let mut retries = Retries::new(RetryPolicy::default());
        let mut now = 0;
        let mut waits = Vec::new();
        loop {
            let verdict = retries_failed(&store, &mut retries, now);
            match commit(&store, &mut retries, verdict) {
                Verdict::Later { retry, .. } => {
                    let at = retry.next_at;
                    assert!(retries.backing_off(&store, "e1", at - 1).unwrap());
                    assert!(!retries.backing_off(&store, "e1", at).unwrap());
                    waits.push(at - now);
                    now = at;
                }
                Verdict::GiveUp { attempts, .. } => {
                    assert_eq!(attempts, 4);
                    break;
                }
            }
        }
        assert_eq!(waits, [1_000, 4_000, 16_000]);
        assert_eq!(retries.waiting(&store).unwrap(), 0);
        assert!(
            store
                .kv_scan_prefix(RUNTIME_KV_STORE, PREFIX, None, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn attempts_survive_a_restart() {
        let store = MemoryStore::new();
        let mut retries = Retries::new(RetryPolicy::default());
        let verdict = retries_failed(&store, &mut retries, 0);
        commit(&store, &mut retries, verdict);
        let mut after_restart = Retries::new(RetryPolicy::default());
        assert!(after_restart.backing_off(&store, "e1", 10).unwrap());
        let Verdict::Later { retry, .. } = retries_failed(&store, &mut after_restart, 1_000) else {
            panic!("the second failure is not the last");
        };
        assert_eq!((retry.attempts, retry.next_at), (2, 5_000));
    }

    fn retries_failed(store: &MemoryStore, retries: &mut Retries, now: Millis) -> Verdict {
        retries.failed(store, "e1", "broken", now).unwrap()
    }
}
