//! Dripline's benchmarks and its crash drill, outside the production binary:
//! [`steps`] (a step call through the sandbox against the step natively),
//! [`timers`] (the scheduler with a million timers pending), [`ingest`]
//! (signed webhooks over loopback through the gateway, against the same path
//! natively), [`crash`] (SIGKILL at random points, then compare) and
//! [`fuzz`] (mutated inputs through every parser of outside input) and
//! [`audience`] (importing, segments and time-driven entries at a million
//! contacts) and [`week`] (a week of the abandoned-checkout journey for a
//! million shoppers, every count checked). Each
//! prints its figures with a baseline measured in the same run; run them from
//! a release build with `./dev bench NAME`.

pub mod audience;
pub mod crash;
pub mod fuzz;
pub mod ingest;
pub mod steps;
pub mod timers;
pub mod week;

/// A SQLite store as a deployment opens it: sealed (`dripline_store::seal`),
/// so the figures include what encryption at rest costs. One key for the
/// whole run, so a benchmark that opens a file again (a restart) reads it.
pub fn sealed_store(
    path: impl AsRef<std::path::Path>,
) -> Result<dripline_store::SqliteStore, dripline_store::StoreError> {
    use dripline_store::seal::Keyring;
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let line = match KEY.get() {
        Some(line) => line.clone(),
        None => KEY
            .get_or_init(|| Keyring::new_key_line().unwrap_or_default())
            .clone(),
    };
    dripline_store::SqliteStore::open_sealed(path, Keyring::parse(&line)?)
}
