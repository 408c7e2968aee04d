//! `dripline deadletters list|show|replay`: what the runner set aside, and
//! the way back (an event into the inbox, a timer into the timer index). It takes no ownership of the data directory
//! (it runs no journeys and delivers nothing), so it works beside a running
//! `dripline up`.

use std::path::Path;

use anyhow::Context as _;
use dripline_clock::Clock as _;
use dripline_runner::dead_letters;
use dripline_store::SqliteStore;
use serde_json::json;

use crate::cli::DeadLetterAction;

/// Runs one `deadletters` action on the database in `data`.
pub fn run(data: &Path, action: DeadLetterAction) -> anyhow::Result<()> {
    let database = data.join("dripline.db");
    anyhow::ensure!(
        database.exists(),
        "no database at {} (give --data the deployment's data directory)",
        database.display()
    );
    let store =
        SqliteStore::open(&database).with_context(|| format!("opening {}", database.display()))?;
    match action {
        DeadLetterAction::List => {
            for (key, letter) in dead_letters::list(&store)? {
                println!("{key}\t{} attempts\t{}", letter.attempts, letter.problem);
            }
        }
        DeadLetterAction::Show { key } => {
            let key = key.trim_start_matches(dead_letters::PREFIX);
            let Some(letter) = dead_letters::get(&store, key)? else {
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
            dead_letters::replay(&store, &key, now)?;
            println!("{key}: back in the inbox");
        }
    }
    Ok(())
}
