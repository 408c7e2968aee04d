//! `dripline contacts merge INTO FROM`: queues a merge of two contacts for
//! the runner (see [`dripline_runner::merge`]), by id or email.

use std::path::Path;

use dripline::{OpenStore, StoreUrl};
use dripline_clock::Clock as _;
use dripline_runner::merge::{ADMIN, MERGE_REQUESTED};
use dripline_store::{Identity, Store, Write};
use serde_json::json;

use crate::cli::ContactAction;

/// Runs one `contacts` action.
pub fn run(data: &Path, store: Option<StoreUrl>, action: ContactAction) -> anyhow::Result<()> {
    let url = store.unwrap_or_else(|| StoreUrl::Sqlite(data.join("dripline.db")));
    let store = OpenStore::open(&url)?.store();
    match action {
        ContactAction::Merge { into, from } => {
            let into = resolve(store.as_ref(), &into)?;
            let from = resolve(store.as_ref(), &from)?;
            anyhow::ensure!(into != from, "{into} and {from} are the same contact");
            let now = dripline_clock::SystemClock.now_ms();
            let event = json!({
                "id": format!("merge:{into}:{from}"),
                "source": ADMIN,
                "name": MERGE_REQUESTED,
                "identities": {},
                "properties": { "into": into, "from": from },
                "occurred_at": now,
                "received_at": now,
            });
            let id = event["id"].as_str().unwrap_or_default().to_owned();
            store.apply(&[Write::inbox_put(now, &id, event.to_string().into_bytes())])?;
            println!("merge of {from} into {into} queued; the runner carries it out");
            Ok(())
        }
    }
}

/// A contact by id, or by email address.
fn resolve(store: &dyn Store, who: &str) -> anyhow::Result<String> {
    if who.contains('@') {
        let found = store.contact_find_by_identity(&Identity::Email(who.trim().to_lowercase()))?;
        return found
            .map(|c| c.id)
            .ok_or_else(|| anyhow::anyhow!("no contact has the email {who}"));
    }
    anyhow::ensure!(
        store.contact_get(who)?.is_some(),
        "no contact has the id {who}"
    );
    Ok(who.to_owned())
}
