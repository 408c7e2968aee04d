//! `./dev bench week`: a week of the abandoned-checkout journey for a
//! population of shoppers, on a virtual clock, with the SQLite store, the
//! shipped journeys and templates and the real step components.
//!
//! Every shopper leaves a checkout at the start. A tenth of them orders in
//! each stage of the journey: before the 30-minute SMS, before the 3-hour
//! email, before the 24-hour coupon, and a day after the coupon; the rest
//! never order. The runner works through it as `dripline up`'s worker
//! would, the clock jumping from one moment something is due to the next.
//! At the end every count is checked against what the journey must have
//! produced for this population (messages per step, each split way by the
//! contact's hash, conversions, hand-offs) and the benchmark fails on any
//! difference. It prints the wall time per phase, the messages, and the
//! peak resident memory; the baseline is the store writing the same number
//! of outbox rows in batches, measured in the same run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use dripline_clock::ManualClock;
use dripline_delivery::DeliveryPolicy;
use dripline_runner::{Journeys, Runner, Templates};
use dripline_sandbox::{Plugins, Sandbox, SandboxConfig};
use dripline_store::prelude::*;
use dripline_store::{NewOutboxMessage, OutboxStatus, SqliteStore, Write};
use serde_json::json;

use crate::timers::peak_rss_mib;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
/// Monday 2026-01-05 09:00 UTC.
const T0: i64 = 1_767_603_600_000;

/// When shopper `i` orders, if they do: a tenth in each stage.
fn order_at(i: usize) -> Option<i64> {
    match i % 10 {
        0 => Some(T0 + 20 * MINUTE),
        1 => Some(T0 + 2 * HOUR),
        2 => Some(T0 + 12 * HOUR),
        3 => Some(T0 + 30 * HOUR),
        _ => None,
    }
}

fn identities(i: usize) -> serde_json::Value {
    json!({ "email": format!("shopper{i}@bench.example"), "phone": format!("+1555{i:07}") })
}

fn checkout(i: usize) -> serde_json::Value {
    json!({
        "id": format!("checkout-{i}"), "source": "shopify", "name": "checkout.created",
        "identities": identities(i),
        "properties": {
            "token": format!("tok-{i}"), "currency": "USD", "total_price": "44.97",
            "abandoned_checkout_url": format!("https://shop.example.com/checkouts/tok-{i}/recover"),
            "line_items": [{ "title": "Ceramic mug", "quantity": 3, "price": "14.99", "product_type": "mugs" }],
            "consent": { "email": "granted", "sms": "granted" },
        },
        "occurred_at": T0, "received_at": T0,
    })
}

fn order(i: usize, at: i64) -> serde_json::Value {
    json!({
        "id": format!("order-{i}"), "source": "shopify", "name": "order.paid",
        "identities": identities(i),
        "properties": { "checkout_token": format!("tok-{i}"), "total_price": "44.97" },
        "occurred_at": at, "received_at": at,
    })
}

/// Puts `events` in the inbox, in batches.
fn receive(
    store: &SqliteStore,
    events: impl Iterator<Item = serde_json::Value>,
) -> anyhow::Result<()> {
    let mut batch = Vec::with_capacity(10_000);
    for event in events {
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        let at = event["received_at"].as_i64().unwrap_or(T0);
        batch.push(Write::inbox_put(at, &id, event.to_string().into_bytes()));
        if batch.len() == 10_000 {
            store.apply(&batch)?;
            batch.clear();
        }
    }
    store.apply(&batch)?;
    Ok(())
}

/// Runs the week for `contacts` shoppers with the components in
/// `components` and the journeys and templates under `root`.
pub fn run(components: &Path, root: &Path, contacts: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let journeys_dir = dir.path().join("journeys");
    std::fs::create_dir_all(&journeys_dir)?;
    for file in ["abandoned-checkout.toml", "new-customer-care.toml"] {
        std::fs::copy(root.join("journeys").join(file), journeys_dir.join(file))?;
    }
    let store = Arc::new(crate::sealed_store(dir.path().join("dripline.db"))?);
    let clock = Arc::new(ManualClock::new(T0));
    let sandbox = Arc::new(Sandbox::new(SandboxConfig {
        cache_dir: Some(std::env::temp_dir().join("dripline-bench-cache")),
        ..SandboxConfig::default()
    })?);
    let plugins = Arc::new(Plugins::load_dir(&sandbox, components)?);
    let (journeys, problems) = Journeys::load(&journeys_dir, store.as_ref())?;
    anyhow::ensure!(problems.is_empty(), "journeys: {problems:?}");
    let mut runner = Runner::new(
        store.clone(),
        plugins,
        journeys,
        Templates::load(&root.join("templates")),
        clock.clone(),
        // No quiet hours: every message of the week goes when it is due.
        Arc::new(DeliveryPolicy::default()),
    );

    let started = Instant::now();
    receive(&store, (0..contacts).map(checkout))?;
    let mut orders: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for i in 0..contacts {
        if let Some(at) = order_at(i) {
            orders.entry(at).or_default().push(i);
        }
    }
    let mut phases = Vec::new();
    let end = T0 + 7 * 24 * HOUR;
    let mut now = T0;
    loop {
        let phase = Instant::now();
        clock.set(now);
        if let Some(due) = orders.remove(&now) {
            receive(&store, due.into_iter().map(|i| order(i, now)))?;
        }
        let progress = runner.run_until_idle()?;
        phases.push((now, progress, phase.elapsed().as_secs_f64()));
        let next_timer = store.next_due_at()?;
        let next_order = orders.keys().next().copied();
        let next = match (next_timer, next_order) {
            (Some(t), Some(o)) => t.min(o),
            (Some(t), None) => t,
            (None, Some(o)) => o,
            (None, None) => break,
        };
        if next > end {
            break;
        }
        now = next.max(now + 1);
    }
    let wall = started.elapsed().as_secs_f64();
    let rss = peak_rss_mib();

    let checked = check(store.as_ref(), contacts)?;
    let messages = checked.messages;
    for (at, progress, seconds) in phases.iter().filter(|(_, p, _)| p.events + p.timers > 0) {
        println!(
            "  +{:>6.2} h: {:>8} events, {:>8} timers in {seconds:.1} s",
            (*at - T0) as f64 / HOUR as f64,
            progress.events,
            progress.timers
        );
    }
    // The baseline: the store writing as many outbox rows, 1,000 a batch.
    let baseline_dir = tempfile::tempdir()?;
    let baseline = crate::sealed_store(baseline_dir.path().join("baseline.db"))?;
    let written = Instant::now();
    for from in (0..messages).step_by(1000) {
        let batch: Vec<Write> = (from..(from + 1000).min(messages))
            .map(|n| {
                Write::OutboxInsert(NewOutboxMessage {
                    idempotency_key: format!("k{n}"),
                    contact_id: format!("c{n}"),
                    channel: "email".into(),
                    content: json!({ "body": "Hello" }),
                    status: OutboxStatus::Pending,
                    created_at_ms: T0,
                    deliver_at_ms: T0,
                })
            })
            .collect();
        baseline.apply(&batch)?;
    }
    let baseline_s = written.elapsed().as_secs_f64();
    println!(
        "week: {contacts} contacts through abandoned-checkout in {wall:.1} s wall (target <= 60 s at 1M): {:.0} contacts/s; {messages} messages ({:.0}/s); every count as the journey must give",
        contacts as f64 / wall,
        messages as f64 / wall,
    );
    println!(
        "baseline: the store writing {messages} outbox rows alone: {baseline_s:.1} s; the week took {:.1} times as long",
        wall / baseline_s.max(1e-9)
    );
    println!("peak RSS: {rss:.0} MiB");
    Ok(())
}

/// What the check found.
struct Checked {
    messages: usize,
}

/// Compares every count with what the journey must produce for the
/// population; an error names the first that differs.
fn check(store: &SqliteStore, contacts: usize) -> anyhow::Result<Checked> {
    let stage = |k: usize| (0..contacts).filter(|i| i % 10 == k).count();
    let (a, b, c, d) = (stage(0), stage(1), stage(2), stage(3));
    let reminders = contacts - a;
    let emails = contacts - a - b;
    let coupons = contacts - a - b - c;
    // Each coupon's way is the contact's hash, so the expected split comes
    // from the contacts the store holds.
    let mut to_email = 0;
    let mut cursor = None::<String>;
    loop {
        let (page, next) = store.contacts_scan(cursor.as_deref(), 10_000)?;
        for contact in &page {
            let Some(dripline_store::Identity::Email(email)) = contact
                .identities
                .iter()
                .find(|i| matches!(i, dripline_store::Identity::Email(_)))
            else {
                continue;
            };
            let i: usize = email
                .trim_start_matches("shopper")
                .split('@')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            let got_coupon = i < contacts && !matches!(i % 10, 0..=2);
            let bucket =
                dripline_engine::split::bucket(&contact.id, "abandoned-checkout", "coupon-offer");
            if got_coupon && bucket < 50 {
                to_email += 1;
            }
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let metrics = store.metrics_all()?;
    let total = |journey: &str, step: &str, what: &str| -> i64 {
        metrics
            .iter()
            .filter_map(|(name, value)| {
                let counter = dripline_delivery::analytics::parse(name)?;
                (counter.journey == journey
                    && counter.step.unwrap_or("-") == step
                    && counter.what == what)
                    .then_some(*value)
            })
            .sum()
    };
    let expect = |what: &str, got: i64, want: usize| -> anyhow::Result<()> {
        anyhow::ensure!(
            got == want as i64,
            "{what}: {got}, the journey must give {want}"
        );
        Ok(())
    };
    let journey = "abandoned-checkout";
    expect("entered", total(journey, "-", "entered"), contacts)?;
    expect(
        "SMS reminders",
        total(journey, "cart-reminder", "sent"),
        reminders,
    )?;
    expect(
        "item emails",
        total(journey, "abandoned-items", "sent"),
        emails,
    )?;
    expect(
        "coupons by email",
        total(journey, "coupon-email", "sent"),
        to_email,
    )?;
    expect(
        "coupons by SMS",
        total(journey, "coupon-sms", "sent"),
        coupons - to_email,
    )?;
    expect(
        "goals reached",
        total(journey, "-", "goal_reached"),
        a + b + c,
    )?;
    expect(
        "conversions",
        total(journey, "-", "converted"),
        a + b + c + d,
    )?;
    expect(
        "revenue (cents)",
        total(journey, "-", "revenue_cents"),
        (a + b + c + d) * 4497,
    )?;
    expect(
        "hand-offs",
        total("new-customer-care", "-", "entered"),
        a + b + c,
    )?;
    expect(
        "thank-you emails",
        total("new-customer-care", "thank-you", "sent"),
        a + b + c,
    )?;
    let messages = reminders + emails + coupons + a + b + c;
    let (mut rows, mut after) = (0, None);
    loop {
        let page = store.outbox_list(after, 10_000)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        rows += page.len();
    }
    expect("outbox rows", rows as i64, messages)?;
    Ok(Checked { messages })
}
