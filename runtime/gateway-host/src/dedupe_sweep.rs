//! Expiry of the gateway's dedupe marks. A mark (`dedupe/{source}/{id}`, its
//! value the receipt time in ms) holds for [`dedupe_mark::DEDUPE_TTL_MS`], 72 hours,
//! longer than any provider retries; the gateway already treats an older mark
//! as absent, and this sweep deletes such marks so that the key-value store
//! does not grow by one key per webhook forever. `dripline up`'s gateway runs
//! it at start and then every [`SWEEP_EVERY`].
//!
//! The sweep reads a page of marks and then deletes the expired ones. A mark
//! re-set in between (by a delivery first seen 72 hours earlier and sent
//! again at that very moment) would be deleted with them, and a retry of that
//! one delivery could then be stored twice; the runtime's consumer drops such
//! a duplicate by its event id.

use std::time::Duration;

use dripline_store::{DEFAULT_KV_STORE, StoreError, Write};

use crate::GatewayStore;

/// How often `dripline up` sweeps.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60 * 60);

/// Marks read (and deleted) per transaction, so that a sweep never holds the
/// write lock for long.
const PAGE: usize = 1_000;

/// Deletes every dedupe mark that no longer holds at `now_ms`; returns how many.
pub fn sweep_dedupe_marks(store: &dyn GatewayStore, now_ms: i64) -> Result<u64, StoreError> {
    let mut deleted = 0u64;
    let mut after: Option<String> = None;
    loop {
        let page = store.kv_scan_prefix(
            DEFAULT_KV_STORE,
            dedupe_mark::PREFIX,
            after.as_deref(),
            PAGE,
        )?;
        let Some((last, _)) = page.last() else {
            return Ok(deleted);
        };
        after = Some(last.clone());
        let expired: Vec<Write> = page
            .into_iter()
            .filter(|(_, mark)| !dedupe_mark::mark_holds(mark, now_ms))
            .map(|(key, _)| Write::KvDelete {
                store: DEFAULT_KV_STORE.to_string(),
                key,
            })
            .collect();
        deleted += expired.len() as u64;
        store.apply(&expired)?;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use dripline_store::MemoryStore;
    use dripline_store::prelude::*;

    use super::*;

    fn set(store: &dyn GatewayStore, key: &str, value: &str) {
        store
            .apply(&[Write::KvSet {
                store: DEFAULT_KV_STORE.to_string(),
                key: key.to_string(),
                value: value.as_bytes().to_vec(),
            }])
            .unwrap();
    }

    #[test]
    fn marks_older_than_72_hours_are_swept_and_nothing_else_is() {
        let store = MemoryStore::new();
        let now = 1_763_800_000_000_i64;
        let old = (now - dedupe_mark::DEDUPE_TTL_MS).to_string();
        let fresh = (now - 1_000).to_string();
        set(&store, "dedupe/shopify/old", &old);
        set(&store, "dedupe/shopify/fresh", &fresh);
        set(&store, "dedupe/form/garbled", "not a time");
        set(&store, "inbox/0000000000001/e1", "{}");
        set(&store, "metric/skipped/shopify", &old);

        assert_eq!(sweep_dedupe_marks(&store, now).unwrap(), 1);
        assert_eq!(
            store.kv_keys(DEFAULT_KV_STORE).unwrap(),
            vec![
                "dedupe/form/garbled",
                "dedupe/shopify/fresh",
                "inbox/0000000000001/e1",
                "metric/skipped/shopify",
            ]
        );
        assert_eq!(sweep_dedupe_marks(&store, now).unwrap(), 0);
    }
}
