//! `./dev bench audience`: who contacts are, at a million of them.
//!
//! - **import**: `contacts` rows of a CSV customer list through
//!   `dripline import`'s reader into a SQLite store, in rows a second; the
//!   baseline is the store writing the same contacts, already built, in
//!   batches of the same size (what the import adds: reading, matching by
//!   identity, building profiles, consent, the audience timer);
//! - **full re-evaluation** of the shipped `dormant` segment over every
//!   contact, as `dripline up` runs it for a new or edited segment; the
//!   baseline is a scan of every contact that evaluates nothing;
//! - **time-driven entries**: `due` contacts whose 180 days since sign-up
//!   run out within the same minute, entering the segment in real time; the
//!   lateness of each entry at p50 and p99;
//! - the peak resident memory of the process over all of it.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use dripline_clock::{Clock, ManualClock, SystemClock};
use dripline_delivery::DeliveryPolicy;
use dripline_runner::audience::Reevaluation;
use dripline_runner::import::{Importer, Mapping, read_into};
use dripline_runner::{Journeys, Runner, Templates};
use dripline_sandbox::Plugins;
use dripline_store::prelude::*;
use dripline_store::{Contact, Identity, SqliteStore, Write};

use crate::timers::{OffsetClock, peak_rss_mib, percentile};

const DAY: i64 = 86_400_000;

/// The shipped dormant segment's condition, as the benchmark's segment.
const DORMANT: &str = r#"name = "Dormant members"
condition = """
has(contact.attributes.registered_at)
&& timestamp(contact.attributes.registered_at) < now - days(180)
&& contact.facts['order.paid'].last < now - days(90)
"""
"#;

/// Runs the benchmark and prints `name: value unit` lines.
pub fn run(contacts: usize, due: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::create_dir_all(root.join("journeys"))?;
    std::fs::create_dir_all(root.join("segments"))?;
    std::fs::write(root.join("segments/dormant.toml"), DORMANT)?;
    let now = SystemClock.now_ms();

    // ---- import ----
    let csv = root.join("customers.csv");
    write_list(&csv, contacts, now)?;
    let store = Arc::new(crate::sealed_store(root.join("import.db"))?);
    let started = Instant::now();
    let mut importer = Importer::new(store.as_ref(), mapping(), "customers.csv", now);
    read_into(&mut importer, "customers.csv", std::fs::File::open(&csv)?)?;
    let report = importer.finish()?;
    let import_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.created == contacts && report.failed.is_empty(),
        "import: {report:?}"
    );
    let baseline_store = crate::sealed_store(root.join("baseline.db"))?;
    let import_rss = peak_rss_mib();
    let started = Instant::now();
    // Built a batch at a time, as the import holds them.
    for from in (0..contacts).step_by(dripline_runner::import::BATCH) {
        let to = (from + dripline_runner::import::BATCH).min(contacts);
        let batch: Vec<Write> = (from..to)
            .map(|i| Write::ContactPut(contact_of(i, now)))
            .collect();
        baseline_store.apply(&batch)?;
    }
    let baseline_s = started.elapsed().as_secs_f64();
    println!(
        "import: {contacts} rows in {import_s:.1} s = {:.0} rows/s (target >= 50000); the store's own writes of the same contacts: {:.0} rows/s, ratio {:.2}",
        contacts as f64 / import_s,
        contacts as f64 / baseline_s,
        baseline_s / import_s
    );
    println!("peak_rss_after_import: {import_rss:.0} MiB");
    drop(baseline_store);

    // ---- full re-evaluation ----
    let clock = Arc::new(ManualClock::new(now));
    let mut runner = runner_on(store.clone(), root, clock.clone())?;
    let started = Instant::now();
    let mut pass = Reevaluation::start(&runner)?;
    while runner.reevaluate_page(&mut pass, 1000)? {}
    let pass_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let (mut scanned, mut cursor) = (0usize, None::<String>);
    loop {
        let (page, next) = store.contacts_scan(cursor.as_deref(), 1000)?;
        scanned += page.len();
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let scan_s = started.elapsed().as_secs_f64();
    println!("peak_rss_after_reevaluation: {:.0} MiB", peak_rss_mib());
    println!(
        "full_reevaluation: {} contacts in {pass_s:.1} s (target <= 10 s), {} changed; a scan of every contact alone: {scan_s:.1} s ({scanned}), ratio {:.1}",
        pass.contacts,
        pass.changed,
        pass_s / scan_s.max(1e-9)
    );
    drop(runner);
    drop(store);

    // ---- time-driven entries ----
    let store = Arc::new(crate::sealed_store(root.join("entries.db"))?);
    // Each contact's 180 days run out within one minute, starting in 5 s.
    let first = SystemClock.now_ms() + 5_000;
    let mut writes = Vec::new();
    for i in 0..due {
        let turns_at = first + (i as i64 * 60_000) / due.max(1) as i64;
        let mut contact = contact_of(i, now);
        contact.profile["attributes"]["registered_at"] =
            serde_json::json!(rfc3339(turns_at - 180 * DAY));
        writes.push(Write::ContactPut(contact));
        if writes.len() == 2000 {
            store.apply(&writes)?;
            writes.clear();
        }
    }
    store.apply(&writes)?;
    let clock = Arc::new(OffsetClock { offset_ms: 0 });
    let mut runner = runner_on(store.clone(), root, clock.clone())?;
    // The pass sets each contact's re-check for its own moment.
    let mut pass = Reevaluation::start(&runner)?;
    while runner.reevaluate_page(&mut pass, 1000)? {}
    anyhow::ensure!(
        SystemClock.now_ms() < first,
        "setting {due} re-checks took longer than the 5 s lead; run with fewer --due"
    );
    let mut lateness = Vec::with_capacity(due);
    let deadline = Instant::now() + std::time::Duration::from_secs(90);
    while lateness.len() < due && Instant::now() < deadline {
        let fired = runner.fire_due_timers_observed(1024, &mut |due_at| {
            lateness.push(clock.now_ms() - due_at);
        })?;
        if fired == 0 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    lateness.sort_unstable();
    let percentile = |p: f64| percentile(&lateness, p);
    let entered = members_of(store.as_ref(), "dormant")?;
    println!(
        "time_driven_entries: {} of {due} contacts entered within their minute; lateness p50 {} ms, p99 {} ms (target p99 <= 1000 ms)",
        entered,
        percentile(0.50),
        percentile(0.99)
    );
    println!("peak_rss: {:.0} MiB (target <= 1024)", peak_rss_mib());
    Ok(())
}

fn runner_on(
    store: Arc<SqliteStore>,
    root: &Path,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Runner> {
    let (journeys, problems) = Journeys::load(&root.join("journeys"), store.as_ref())?;
    anyhow::ensure!(problems.is_empty(), "bench segments: {problems:?}");
    let plugins = Arc::new(Plugins {
        steps: std::collections::BTreeMap::new(),
        triggers: std::collections::BTreeMap::new(),
    });
    Ok(Runner::new(
        store,
        plugins,
        journeys,
        Templates::default(),
        clock,
        Arc::new(DeliveryPolicy::default()),
    ))
}

fn members_of(store: &SqliteStore, segment: &str) -> anyhow::Result<usize> {
    let (mut members, mut cursor) = (0, None::<String>);
    loop {
        let (page, next) = store.contacts_scan(cursor.as_deref(), 5000)?;
        members += page
            .iter()
            .filter(|c| {
                c.profile["segments"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|m| m == segment))
            })
            .count();
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(members),
        }
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What the list's row `i` says: a member who signed up 100 to 500 days ago.
fn registered_at(i: usize, now: i64) -> i64 {
    now - (100 + (i as i64 * 7919) % 400) * DAY
}

fn write_list(path: &Path, contacts: usize, now: i64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        out,
        "Email,Mobile,First name,Signed up,Accepts email,Tags,Time zone"
    )?;
    for i in 0..contacts {
        writeln!(
            out,
            "member{i}@example.com,+86139{:08},Member {i},{},{},vip;newsletter,Asia/Shanghai",
            i,
            rfc3339(registered_at(i, now)),
            if i.is_multiple_of(3) { "no" } else { "yes" }
        )?;
    }
    out.flush()?;
    Ok(())
}

fn mapping() -> Mapping {
    Mapping::parse(
        r#"
tags = "Tags"
tag_separator = ";"
time_zone = "Time zone"
[identities]
email = "Email"
phone = "Mobile"
[attributes]
first_name = "First name"
registered_at = "Signed up"
[consent]
email = "Accepts email"
"#,
    )
    .unwrap_or_else(|e| unreachable!("the benchmark's mapping reads: {e}"))
}

/// The contact row `i` makes, built directly: the baseline's writes.
fn contact_of(i: usize, now: i64) -> Contact {
    Contact {
        id: format!("c_bench_{i:08}"),
        identities: vec![
            Identity::Email(format!("member{i}@example.com")),
            Identity::Phone(format!("+86139{i:08}")),
        ],
        profile: serde_json::json!({
            "attributes": { "first_name": format!("Member {i}"), "registered_at": rfc3339(registered_at(i, now)) },
            "tags": ["newsletter", "vip"],
            "consent": { "email": if i.is_multiple_of(3) { "denied" } else { "granted" } },
            "time_zone": "Asia/Shanghai",
        }),
    }
}
