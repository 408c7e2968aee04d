//! `dripline deadletters list|show|replay`: what the runner set aside, and
//! the way back (an event into the inbox, a timer into the timer index). It takes no ownership of the data directory
//! (it runs no journeys and delivers nothing), so it works beside a running
//! `dripline up`.

use std::path::Path;

use dripline::{OpenStore, StoreUrl};
use dripline_clock::Clock as _;
use dripline_runner::dead_letters;
use serde_json::json;

use crate::cli::DeadLetterAction;

/// Runs one `deadletters` action on the store `store` (default: the
/// database in `data`).
pub fn run(data: &Path, store: Option<StoreUrl>, action: DeadLetterAction) -> anyhow::Result<()> {
    let url = match store {
        Some(url) => url,
        None => {
            let database = data.join("dripline.db");
            anyhow::ensure!(
                database.exists(),
                "no database at {} (give --data the deployment's data directory, or --store)",
                database.display()
            );
            StoreUrl::Sqlite(database)
        }
    };
    let store = OpenStore::open(&url)?.store();
    let store = store.as_ref();
    match action {
        DeadLetterAction::List => {
            for (key, letter) in dead_letters::list(store)? {
                println!("{key}\t{} attempts\t{}", letter.attempts, letter.problem);
            }
        }
        DeadLetterAction::Show { key } => {
            let key = key.trim_start_matches(dead_letters::PREFIX);
            let Some(letter) = dead_letters::get(store, key)? else {
                anyhow::bail!("no dead letter `{key}` (see `dripline deadletters list`)");
            };
            let shown = json!({
                "key": key,
                "problem": letter.problem,
                "at": letter.at,
                "attempts": letter.attempts,
                "timer": letter.timer,
                "record": letter.record,
            });
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        DeadLetterAction::Replay { key } => {
            let now = dripline_clock::SystemClock.now_ms();
            dead_letters::replay(store, &key, now)?;
            println!("{key}: back in the inbox");
        }
    }
    Ok(())
}
