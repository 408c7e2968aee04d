//! What the runner does when an input fails. When the store fails for a
//! moment, the input stays where it is and is processed once the store is
//! back: an inbox event is never dead-lettered and a timer never acknowledged
//! for a failure that was the store's, not the input's. An input that cannot
//! be processed is tried again with backoff and then set aside as a dead
//! letter, which replays. The real `tag` component runs on a real SQLite file
//! behind a store that fails on demand.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use dripline_clock::{Clock as _, ManualClock};
use dripline_delivery::DeliveryPolicy;
use dripline_runner::{Journeys, Runner, Templates};
use dripline_sandbox::Plugins;
use dripline_store::prelude::*;
use dripline_store::{Identity, RUNTIME_KV_STORE, SqliteStore, Write};
use dripline_tests::flaky::FlakyStore;
use dripline_tests::{component, sandbox};
use serde_json::json;

const T0: i64 = 1_794_964_000_000;
const HOUR: i64 = 3_600_000;

const JOURNEY: &str = r#"
name = "Welcome"
version = 1

[trigger]
event = "member.joined"

[[steps]]
id = "wait"
wait = "1h"
next = "tag"

[[steps]]
id = "tag"
uses = "tag"
config = { tag = "welcomed" }
"#;

struct Setup {
    _dir: tempfile::TempDir,
    store: Arc<FlakyStore>,
    runner: Runner,
    clock: Arc<ManualClock>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let journeys = dir.path().join("journeys");
    let components = dir.path().join("components");
    std::fs::create_dir_all(&journeys).unwrap();
    std::fs::create_dir_all(&components).unwrap();
    std::fs::write(journeys.join("welcome.toml"), JOURNEY).unwrap();
    std::fs::copy(component("tag"), components.join("tag.wasm")).unwrap();
    let sqlite = Arc::new(SqliteStore::open(dir.path().join("dripline.db")).unwrap());
    let store = Arc::new(FlakyStore::new(sqlite));
    let plugins =
        Plugins::load_dir(&sandbox(Duration::from_secs(1), 64 << 20), &components).unwrap();
    let (catalog, problems) = Journeys::load(&journeys, store.as_ref()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let clock = Arc::new(ManualClock::new(T0));
    let runner = Runner::new(
        store.clone(),
        Arc::new(plugins),
        catalog,
        Templates::default(),
        clock.clone(),
        Arc::new(DeliveryPolicy::default()),
    );
    Setup {
        _dir: dir,
        store,
        runner,
        clock,
    }
}

fn joined(store: &FlakyStore, at: i64) {
    let event = json!({
        "id": "join-1", "source": "api", "name": "member.joined",
        "identities": { "email": "li@example.com" }, "properties": {},
        "occurred_at": at, "received_at": at,
    });
    store
        .apply(&[Write::inbox_put(
            at,
            "join-1",
            event.to_string().into_bytes(),
        )])
        .unwrap();
}

fn tags(store: &FlakyStore) -> Vec<String> {
    let identity = Identity::Email("li@example.com".into());
    let Some(contact) = store.contact_find_by_identity(&identity).unwrap() else {
        return Vec::new();
    };
    let record = dripline_runner::contacts::ContactRecord::from_stored(contact);
    record.profile.tags.into_iter().collect()
}

#[test]
fn a_store_failure_while_an_inbox_event_is_processed_leaves_it_in_the_inbox_to_be_retried() {
    let mut setup = setup();
    joined(&setup.store, T0);
    setup.store.fail_reads(1);
    let failed = setup.runner.run_until_idle();
    assert!(failed.is_err(), "the pass reports the store's failure");
    setup.store.fail_reads(0);
    assert_eq!(
        setup.store.inbox_peek(10).unwrap().len(),
        1,
        "the event waits"
    );
    assert_eq!(setup.store.metric_get("runtime.dead_lettered").unwrap(), 0);
    assert!(
        setup
            .store
            .kv_keys(RUNTIME_KV_STORE)
            .unwrap()
            .iter()
            .all(|k| !k.starts_with("deadletter/"))
    );

    let progress = setup.runner.run_until_idle().unwrap();
    assert_eq!(progress.events, 1);
    assert!(setup.store.inbox_peek(10).unwrap().is_empty());
    assert_eq!(setup.store.metric_get("events.member.joined").unwrap(), 1);
    assert_eq!(
        setup.store.timers_pending_count().unwrap(),
        1,
        "enrolled once"
    );
}

#[test]
fn a_store_failure_while_a_timer_fires_leaves_it_unacknowledged_and_it_fires_after_its_lease() {
    let mut setup = setup();
    joined(&setup.store, T0);
    setup.runner.run_until_idle().unwrap();
    assert_eq!(setup.store.timers_pending_count().unwrap(), 1);

    setup.clock.set(T0 + HOUR);
    // Both the batch's read of the enrollments and the timer's own read.
    setup.store.fail_reads(2);
    assert!(setup.runner.run_until_idle().is_err());
    // The store is back.
    setup.store.fail_reads(0);
    assert_eq!(
        setup.store.timers_pending_count().unwrap(),
        1,
        "the timer is not acknowledged"
    );
    assert!(tags(&setup.store).is_empty());
    assert_eq!(setup.store.metric_get("runtime.timer_failed").unwrap(), 0);

    // The claim of the failed pass holds for its lease; then the timer fires.
    setup.clock.set(T0 + HOUR + 61_000);
    let progress = setup.runner.run_until_idle().unwrap();
    assert_eq!(progress.timers, 1);
    assert_eq!(tags(&setup.store), ["welcomed"]);
    assert_eq!(setup.store.timers_pending_count().unwrap(), 0);
    assert!(setup.clock.now_ms() > T0);
}

/// What an input that cannot be processed goes through: a retry after 1 s,
/// 4 s and 16 s, then the dead letter, and the events behind it processed all
/// the while.
fn run_through_the_backoff(setup: &mut Setup) {
    for wait in [1_000, 4_000, 16_000] {
        setup.runner.run_until_idle().unwrap();
        assert_eq!(setup.store.metric_get("runtime.dead_lettered").unwrap(), 0);
        setup.clock.advance(wait - 1);
        setup.runner.run_until_idle().unwrap();
        setup.clock.advance(1);
    }
    setup.runner.run_until_idle().unwrap();
}

#[test]
fn an_event_that_cannot_be_processed_is_tried_four_times_then_dead_lettered_while_the_events_behind_it_go_on()
 {
    let mut setup = setup();
    let ops = dripline_tests::http_sink::Receiver::start();
    setup.runner = setup
        .runner
        .with_alerts(dripline_delivery::channels::AlertConfig {
            webhook: Some(format!("{}/alerts", ops.url)),
            ..Default::default()
        });
    setup
        .store
        .apply(&[Write::inbox_put(T0 - 1, "garbled", b"{\"id\": ".to_vec())])
        .unwrap();
    joined(&setup.store, T0);
    let first = setup.runner.run_until_idle().unwrap();
    assert_eq!(
        first.events, 2,
        "the event behind the garbled one is processed"
    );
    assert_eq!(
        setup.store.timers_pending_count().unwrap(),
        1,
        "the member is enrolled and waits"
    );
    let head = setup.store.inbox_peek(10).unwrap();
    assert_eq!(head.len(), 1, "the garbled record waits for its retry");

    run_through_the_backoff(&mut setup);
    assert!(setup.store.inbox_peek(10).unwrap().is_empty());
    assert_eq!(setup.store.metric_get("runtime.dead_lettered").unwrap(), 1);
    let letters = dripline_runner::dead_letters::list(setup.store.as_ref()).unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let (name, letter) = &letters[0];
    assert_eq!(letter.attempts, 4);
    assert!(
        letter.problem.contains("not a canonical event"),
        "{letter:?}"
    );
    assert_eq!(letter.record, "{\"id\": ");
    let alerts = ops.hits();
    assert_eq!(alerts.len(), 1, "one alert for the dead letter: {alerts:?}");
    let alert: serde_json::Value = serde_json::from_str(&alerts[0].body).unwrap();
    assert_eq!(alert["alert"], "dead-letter");
    assert_eq!(alert["dead_letter"], name.as_str());
    assert_eq!(alert["attempts"], 4);

    // A replay puts it back with a fresh set of attempts.
    dripline_runner::dead_letters::replay(setup.store.as_ref(), name, setup.clock.now_ms())
        .unwrap();
    setup.runner.run_until_idle().unwrap();
    assert_eq!(setup.store.inbox_peek(10).unwrap().len(), 1);
    assert!(
        dripline_runner::dead_letters::list(setup.store.as_ref())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_timer_that_cannot_be_processed_is_set_again_with_backoff_then_dead_lettered_and_the_others_fire()
 {
    let mut setup = setup();
    joined(&setup.store, T0);
    setup.runner.run_until_idle().unwrap();
    setup
        .store
        .timer_set("garbled", T0 + HOUR, b"{\"enrollment_id\": 7")
        .unwrap();
    setup.clock.advance(HOUR);
    let fired = setup.runner.run_until_idle().unwrap();
    assert_eq!(fired.timers, 2);
    assert_eq!(tags(&setup.store), ["welcomed"], "the good timer fired");
    assert_eq!(
        setup.store.timers_pending_count().unwrap(),
        1,
        "the garbled one is set again for later"
    );

    run_through_the_backoff(&mut setup);
    assert_eq!(setup.store.timers_pending_count().unwrap(), 0);
    assert_eq!(setup.store.metric_get("runtime.timer_failed").unwrap(), 4);
    let letters = dripline_runner::dead_letters::list(setup.store.as_ref()).unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let (name, letter) = &letters[0];
    assert_eq!(name, "timer/garbled");
    assert_eq!(letter.attempts, 4);
    assert_eq!(letter.timer.as_ref().unwrap().due_at, T0 + HOUR + 21_000);

    dripline_runner::dead_letters::replay(setup.store.as_ref(), name, setup.clock.now_ms())
        .unwrap();
    assert_eq!(
        setup.store.timers_pending_count().unwrap(),
        1,
        "back, due now"
    );
    assert_eq!(setup.runner.run_until_idle().unwrap().timers, 1);
}
