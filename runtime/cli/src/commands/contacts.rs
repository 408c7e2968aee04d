//! `dripline contacts merge INTO FROM`: queues a merge of two contacts for
//! the runner (see [`dripline_runner::merge`]), by id or email;
//! `dripline contacts erase WHO` queues an erasure (see
//! [`dripline_runner::erasure`]) and `dripline contacts export WHO` prints
//! what is kept of a contact.

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
        ContactAction::Erase { who } => {
            let id = resolve(store.as_ref(), &who)?;
            let now = dripline_clock::SystemClock.now_ms();
            let write = dripline_store::control::erase_request(&id, now, "dripline contacts erase");
            store.apply(&[write])?;
            println!("erasure of {id} queued; the runner carries it out");
            Ok(())
        }
        ContactAction::Retention { root, now_ms } => {
            let policy = dripline_delivery::DeliveryPolicy::load(
                &root.join(dripline_delivery::policy::DELIVERY_FILE),
            )?;
            let now = now_ms.unwrap_or_else(|| dripline_clock::SystemClock.now_ms());
            let report = dripline_runner::retention::run(store.as_ref(), &policy.retention, now)?;
            println!(
                "retention: {} inactive contacts queued for erasure, {} old messages deleted",
                report.contacts, report.messages
            );
            Ok(())
        }
        ContactAction::Export { who } => {
            let id = resolve(store.as_ref(), &who)?;
            let data = dripline_runner::erasure::export(store.as_ref(), &id)?;
            println!("{}", serde_json::to_string_pretty(&data)?);
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
