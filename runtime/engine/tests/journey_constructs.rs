//! The engine, construct by construct: each test loads a small journey and
//! drives it with events, timers and step outcomes on a manual clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{DAY, HOUR, MINUTE, Runtime, T0, effects, event, journey, metrics};
use dripline_engine::{
    Action, ContactView, EngineError, EnrollmentStatus, StepOutcome, WaitRequest,
    enroll_by_hand_off, on_step_outcome,
};
use serde_json::json;

const ONE_SEND: &str = r#"
name = "One send"
version = 1
[trigger]
event = "checkout.created"
filter = "trigger.properties.total >= 100"
[[steps]]
id = "nudge"
uses = "send"
config = { channel = "sms", template = "checkout-reminder" }
"#;

fn checkout(id: &str, total: i64, at: i64) -> dripline_engine::Event {
    event(
        id,
        "checkout.created",
        json!({"token": format!("tok-{id}"), "total": total}),
        at,
    )
}

#[test]
fn a_trigger_event_whose_filter_holds_enrolls_the_contact_at_the_first_step() {
    let mut runtime = Runtime::new(journey(ONE_SEND));
    let actions = runtime.event(checkout("e1", 150, T0));
    assert_eq!(
        effects(&actions),
        ["enroll at nudge", "run nudge (send) attempt 1"]
    );
    assert_eq!(metrics(&actions), ["-:entered", "nudge:entered"]);
    let Action::RunStep {
        config,
        idempotency_key,
        ..
    } = &actions[3]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(
        config,
        &json!({"channel": "sms", "template": "checkout-reminder"})
    );
    let enrollment = runtime.active();
    assert_eq!(idempotency_key, &format!("{}/nudge/1/1", enrollment.id));
    assert_eq!(enrollment.status, EnrollmentStatus::Active);
}

#[test]
fn events_of_another_name_or_failing_the_filter_enroll_nobody() {
    let mut runtime = Runtime::new(journey(ONE_SEND));
    assert!(runtime.event(checkout("e1", 50, T0)).is_empty());
    assert!(
        runtime
            .event(event("e2", "order.paid", json!({}), T0))
            .is_empty()
    );
    assert!(runtime.enrollments.is_empty());
}

#[test]
fn a_filter_that_cannot_be_evaluated_enrolls_nobody_and_says_why() {
    let mut runtime = Runtime::new(journey(ONE_SEND));
    let actions = runtime.event(event("e1", "checkout.created", json!({}), T0));
    assert_eq!(effects(&actions), ["condition failed: trigger.filter"]);
}

#[test]
fn processing_the_same_event_twice_enrolls_once_with_the_same_id() {
    let journey =
        journey(&ONE_SEND.replace("[trigger]", "[entry]\nreentry = \"always\"\n[trigger]"));
    let mut runtime = Runtime::new(journey.clone());
    runtime.event(checkout("e1", 150, T0));
    let first = runtime.active();
    runtime.answer(StepOutcome::Continue);
    assert!(runtime.event(checkout("e1", 150, T0)).is_empty());
    assert_eq!(runtime.enrollments.len(), 1);
    // A fresh runtime (a crash before the enrollment was stored) derives the same id.
    let mut again = Runtime::new(journey);
    again.event(checkout("e1", 150, T0));
    assert_eq!(again.active().id, first.id);
}

#[test]
fn reentry_never_lets_a_contact_in_only_once() {
    let mut runtime = Runtime::new(journey(ONE_SEND));
    runtime.event(checkout("e1", 150, T0));
    runtime.answer(StepOutcome::Continue);
    assert!(runtime.active().is_done());
    assert!(runtime.event(checkout("e2", 150, T0 + DAY)).is_empty());
}

#[test]
fn reentry_always_lets_a_contact_in_again_once_the_last_pass_is_done() {
    let text = ONE_SEND.replace("[trigger]", "[entry]\nreentry = \"always\"\n[trigger]");
    let mut runtime = Runtime::new(journey(&text));
    runtime.event(checkout("e1", 150, T0));
    // Still running: one active per contact keeps the second out.
    assert!(runtime.event(checkout("e2", 150, T0 + MINUTE)).is_empty());
    runtime.answer(StepOutcome::Continue);
    let actions = runtime.event(checkout("e3", 150, T0 + HOUR));
    assert_eq!(effects(&actions)[0], "enroll at nudge");
    assert_eq!(runtime.enrollments.len(), 2);
}

#[test]
fn reentry_after_a_duration_counts_from_the_last_entry() {
    let text = ONE_SEND.replace("[trigger]", "[entry]\nreentry = \"after:7d\"\n[trigger]");
    let mut runtime = Runtime::new(journey(&text));
    runtime.event(checkout("e1", 150, T0));
    runtime.answer(StepOutcome::Continue);
    assert!(runtime.event(checkout("e2", 150, T0 + 6 * DAY)).is_empty());
    assert_eq!(
        effects(&runtime.event(checkout("e3", 150, T0 + 7 * DAY)))[0],
        "enroll at nudge"
    );
}

#[test]
fn one_active_per_key_runs_one_enrollment_per_checkout_token() {
    let text = ONE_SEND.replace(
        "[trigger]",
        "[entry]\nreentry = \"always\"\none_active_per = \"trigger.properties.token\"\n[trigger]",
    );
    let mut runtime = Runtime::new(journey(&text));
    runtime.event(event(
        "e1",
        "checkout.created",
        json!({"token": "A", "total": 150}),
        T0,
    ));
    // Another checkout runs beside the first; the same checkout again does not.
    let other = runtime.event(event(
        "e2",
        "checkout.created",
        json!({"token": "B", "total": 150}),
        T0,
    ));
    assert_eq!(effects(&other)[0], "enroll at nudge");
    let same = runtime.event(event(
        "e3",
        "checkout.created",
        json!({"token": "A", "total": 150}),
        T0,
    ));
    assert!(same.is_empty());
    let keys: Vec<&str> = runtime.enrollments.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["A", "B"]);
}

const WAITS: &str = r#"
name = "Waits"
version = 1
[trigger]
event = "checkout.created"
[goal]
event = "order.paid"
condition = "event.properties.token == trigger.properties.token"
hand_off = "new-customer-care"
[[steps]]
id = "pause"
wait = "30m"
next = "nudge"
[[steps]]
id = "nudge"
uses = "send"
config = { channel = "sms", template = "reminder" }
next = "morning"
[[steps]]
id = "morning"
wait_until = "08:00"
next = "email"
[[steps]]
id = "email"
uses = "send"
config = { channel = "email", template = "reminder" }
"#;

#[test]
fn a_wait_schedules_a_timer_and_goes_on_when_it_fires() {
    let mut runtime = Runtime::new(journey(WAITS));
    let actions = runtime.event(checkout("e1", 1, T0));
    assert_eq!(
        effects(&actions),
        ["enroll at pause", "timer pause/1/wait at +30m"]
    );
    assert_eq!(runtime.active().status, EnrollmentStatus::Waiting);
    assert!(runtime.run_until(T0 + 29 * MINUTE).is_empty());
    let actions = runtime.run_until(T0 + 30 * MINUTE);
    assert_eq!(effects(&actions), ["run nudge (send) attempt 1"]);
    assert_eq!(metrics(&actions), ["pause:passed", "nudge:entered"]);
}

#[test]
fn a_timer_delivered_early_is_scheduled_again_and_a_stale_one_does_nothing() {
    let mut runtime = Runtime::new(journey(WAITS));
    runtime.event(checkout("e1", 1, T0));
    let enrollment = runtime.active();
    let timer = runtime.timers.values().next().unwrap().clone();
    let early =
        dripline_engine::on_timer(&runtime.journey, &enrollment, &runtime.contact, &timer, T0)
            .unwrap();
    assert_eq!(early, [Action::ScheduleTimer(timer.clone())]);
    runtime.run_until(T0 + 30 * MINUTE);
    let moved_on = runtime.active();
    let stale = dripline_engine::on_timer(
        &runtime.journey,
        &moved_on,
        &runtime.contact,
        &timer,
        T0 + HOUR,
    )
    .unwrap();
    assert!(stale.is_empty());
}

#[test]
fn wait_until_waits_for_the_local_time_in_the_contacts_zone() {
    let mut runtime = Runtime::new(journey(WAITS));
    // 10:00 UTC is 18:00 in Shanghai: 08:00 there is tomorrow 00:00 UTC, 14 h on.
    runtime.contact.time_zone = Some("Asia/Shanghai".into());
    runtime.event(checkout("e1", 1, T0));
    runtime.run_until(T0 + 30 * MINUTE);
    let actions = runtime.answer(StepOutcome::Continue);
    assert_eq!(effects(&actions), ["timer morning/1/wait at +14h"]);
    let actions = runtime.run_until(T0 + 14 * HOUR);
    assert_eq!(effects(&actions), ["run email (send) attempt 1"]);
}

#[test]
fn wait_until_falls_back_to_the_journeys_zone_then_utc() {
    let with_zone = WAITS.replace(
        "version = 1",
        "version = 1\ntime_zone = \"America/New_York\"",
    );
    let mut runtime = Runtime::new(journey(&with_zone));
    // 10:30 UTC is 06:30 in New York (EDT): 08:00 there is 12:00 UTC, 2 h on.
    runtime.event(checkout("e1", 1, T0));
    runtime.run_until(T0 + 30 * MINUTE);
    assert_eq!(
        effects(&runtime.answer(StepOutcome::Continue)),
        ["timer morning/1/wait at +2h"]
    );

    let mut utc = Runtime::new(journey(WAITS));
    utc.event(checkout("e1", 1, T0));
    utc.run_until(T0 + 30 * MINUTE);
    assert_eq!(
        effects(&utc.answer(StepOutcome::Continue)),
        ["timer morning/1/wait at +22h"]
    );
}

#[test]
fn goal_event_exits_the_contact_while_waiting_and_cancels_the_timer() {
    let mut runtime = Runtime::new(journey(WAITS));
    runtime.event(checkout("e1", 1, T0));
    let actions = runtime.event(event(
        "e2",
        "order.paid",
        json!({"token": "tok-e1"}),
        T0 + 10 * MINUTE,
    ));
    assert_eq!(
        effects(&actions),
        [
            "cancel pause/1/wait",
            "exit: goal reached",
            "hand off to new-customer-care"
        ]
    );
    assert_eq!(
        metrics(&actions),
        ["-:goal_reached", "pause:exited", "pause:handed_off"]
    );
    assert!(runtime.timers.is_empty());
    let done = runtime.active();
    assert_eq!(done.exit_reason.as_deref(), Some("goal reached"));
    assert_eq!(done.exited_at, Some(T0 + 10 * MINUTE));
}

#[test]
fn goal_event_exits_the_contact_while_a_step_runs_and_its_late_outcome_is_ignored() {
    let mut runtime = Runtime::new(journey(WAITS));
    runtime.event(checkout("e1", 1, T0));
    runtime.run_until(T0 + 30 * MINUTE);
    let running = runtime.active();
    let actions = runtime.event(event(
        "e2",
        "order.paid",
        json!({"token": "tok-e1"}),
        T0 + 31 * MINUTE,
    ));
    assert_eq!(
        effects(&actions),
        ["exit: goal reached", "hand off to new-customer-care"]
    );
    let done = runtime.active();
    assert!(done.is_done());
    let late = on_step_outcome(
        &runtime.journey,
        &done,
        &runtime.contact,
        "nudge",
        &StepOutcome::Continue,
        T0,
    )
    .unwrap();
    assert!(late.is_empty());
    assert_eq!(running.step.as_deref(), Some("nudge"));
}

#[test]
fn a_goal_event_whose_condition_fails_changes_nothing() {
    let mut runtime = Runtime::new(journey(WAITS));
    runtime.event(checkout("e1", 1, T0));
    let actions = runtime.event(event(
        "e2",
        "order.paid",
        json!({"token": "another"}),
        T0 + MINUTE,
    ));
    assert!(actions.is_empty());
    assert!(!runtime.active().is_done());
}

#[test]
fn a_goal_already_met_by_a_recent_event_keeps_the_contact_out_and_is_counted() {
    let journey = journey(WAITS);
    let mut contact = ContactView::new("c1");
    // The order for checkout e1 came first; one for another checkout too.
    contact.recent = vec![
        event("o1", "order.paid", json!({"token": "tok-e1"}), T0 - MINUTE),
        event(
            "o2",
            "order.paid",
            json!({"token": "tok-other"}),
            T0 - MINUTE,
        ),
    ];
    let actions = dripline_engine::on_event(&journey, &contact, &checkout("e1", 1, T0), &[], T0);
    assert_eq!(metrics(&actions), ["-:goal_already_met"]);
    assert!(!actions.iter().any(|a| matches!(a, Action::Enroll(_))));
    // A checkout whose order has not come enrolls as ever.
    let actions = dripline_engine::on_event(&journey, &contact, &checkout("e2", 1, T0), &[], T0);
    assert!(actions.iter().any(|a| matches!(a, Action::Enroll(_))));
}

#[test]
fn a_goal_naming_several_events_is_met_by_any_of_them() {
    let text = r#"
name = "Goal of several"
version = 1
[trigger]
event = "checkout.created"
[goal]
event = ["order.created", "order.paid"]
[[steps]]
id = "pause"
wait = "3h"
"#;
    for name in ["order.created", "order.paid"] {
        let mut runtime = Runtime::new(journey(text));
        runtime.event(event("e1", "checkout.created", json!({}), T0));
        runtime.event(event("e2", "order.refunded", json!({}), T0 + MINUTE));
        assert_eq!(
            runtime.active().exit_reason,
            None,
            "another event is no goal"
        );
        runtime.event(event("e3", name, json!({}), T0 + HOUR));
        let done = runtime.active();
        assert_eq!(done.exit_reason.as_deref(), Some("goal reached"), "{name}");
    }
    let empty = text.replace(r#"["order.created", "order.paid"]"#, "[]");
    let problems = dripline_engine::parse_journey("empty.toml", &empty).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.to_string().contains("goal.event")),
        "{problems:?}"
    );
}

#[test]
fn a_goal_with_next_goes_on_to_its_steps_instead_of_exiting() {
    let text = r#"
name = "Goal next"
version = 1
[trigger]
event = "form.submitted"
[goal]
event = "trial.started"
next = "tag"
[[steps]]
id = "pause"
wait = "2d"
[[steps]]
id = "tag"
uses = "tag"
config = { tag = "high-intent" }
"#;
    let mut runtime = Runtime::new(journey(text));
    runtime.event(event("e1", "form.submitted", json!({}), T0));
    let actions = runtime.event(event("e2", "trial.started", json!({}), T0 + HOUR));
    assert_eq!(
        effects(&actions),
        ["cancel pause/1/wait", "run tag (tag) attempt 1"]
    );
    assert!(runtime.active().goal_reached);
    // The goal counts once: a second sign-up does not start the steps again.
    assert!(
        runtime
            .event(event("e3", "trial.started", json!({}), T0 + 2 * HOUR))
            .is_empty()
    );
    assert_eq!(
        effects(&runtime.answer(StepOutcome::Continue)),
        ["exit: completed"]
    );
}

const WAIT_FOR: &str = r#"
name = "Wait for"
version = 1
[trigger]
event = "checkout.created"
[[steps]]
id = "watch"
wait_for = { event = "email.clicked", condition = "event.properties.link == trigger.properties.token", timeout = "2d" }
on_event = "clicked"
on_timeout = "gave-up"
[[steps]]
id = "clicked"
exit = "clicked"
[[steps]]
id = "gave-up"
exit = "no click"
"#;

#[test]
fn wait_for_goes_to_on_event_when_a_matching_event_comes_and_keeps_it_in_data() {
    let mut runtime = Runtime::new(journey(WAIT_FOR));
    assert_eq!(
        effects(&runtime.event(checkout("e1", 1, T0))),
        ["enroll at watch", "timer watch/1/timeout at +2d"]
    );
    assert!(
        runtime
            .event(event(
                "e2",
                "email.clicked",
                json!({"link": "other"}),
                T0 + HOUR
            ))
            .is_empty()
    );
    let actions = runtime.event(event(
        "e3",
        "email.clicked",
        json!({"link": "tok-e1"}),
        T0 + 2 * HOUR,
    ));
    assert_eq!(
        effects(&actions),
        ["cancel watch/1/timeout", "exit: clicked"]
    );
    assert_eq!(metrics(&actions)[0], "watch:wait_matched");
    assert_eq!(runtime.active().data["watch"]["id"], json!("e3"));
}

#[test]
fn wait_for_goes_to_on_timeout_when_no_event_comes_in_time() {
    let mut runtime = Runtime::new(journey(WAIT_FOR));
    runtime.event(checkout("e1", 1, T0));
    let actions = runtime.run_until(T0 + 2 * DAY);
    assert_eq!(effects(&actions), ["exit: no click"]);
    assert_eq!(metrics(&actions)[0], "watch:wait_timed_out");
    // A click after the timeout finds no wait.
    assert!(
        runtime
            .event(event(
                "e3",
                "email.clicked",
                json!({"link": "tok-e1"}),
                T0 + 3 * DAY
            ))
            .is_empty()
    );
}

#[test]
fn branch_takes_the_first_way_whose_condition_holds_and_else_the_last() {
    let text = r#"
name = "Branch"
version = 1
[trigger]
event = "checkout.created"
[[steps]]
id = "fork"
branch = [
  { when = "trigger.properties.total > 500", next = "big" },
  { when = "'vip' in contact.tags", next = "vip" },
  { next = "small" },
]
[[steps]]
id = "big"
exit = "big"
[[steps]]
id = "vip"
exit = "vip"
[[steps]]
id = "small"
exit = "small"
"#;
    let journey = journey(text);
    let run = |total: i64, tags: &[&str]| {
        let mut runtime = Runtime::new(journey.clone());
        runtime.contact.tags = tags.iter().map(|tag| (*tag).to_owned()).collect();
        let actions = runtime.event(checkout("e1", total, T0));
        effects(&actions).last().cloned().unwrap()
    };
    assert_eq!(run(900, &["vip"]), "exit: big");
    assert_eq!(run(100, &["vip"]), "exit: vip");
    assert_eq!(run(100, &[]), "exit: small");
}

const SPLIT: &str = r#"
name = "Split"
version = 1
[trigger]
event = "checkout.created"
[[steps]]
id = "ab"
split = [
  { percent = 45, next = "a" },
  { percent = 45, next = "b" },
  { percent = 10, holdout = true },
]
[[steps]]
id = "a"
exit = "a"
[[steps]]
id = "b"
exit = "b"
"#;

fn split_way(journey: &dripline_engine::Journey, contact: &str) -> String {
    let mut runtime = Runtime::new(journey.clone());
    runtime.contact = ContactView::new(contact);
    let actions = runtime.event(checkout("e1", 1, T0));
    effects(&actions).last().cloned().unwrap()
}

#[test]
fn split_puts_a_contact_on_the_same_way_every_time() {
    let journey = journey(SPLIT);
    for contact in ["alice", "bob", "carol", "dave"] {
        let first = split_way(&journey, contact);
        for _ in 0..3 {
            assert_eq!(split_way(&journey, contact), first);
        }
    }
}

#[test]
fn split_shares_ten_thousand_contacts_roughly_by_percent_and_holds_out_the_rest() {
    let journey = journey(SPLIT);
    let mut counts = std::collections::BTreeMap::<String, u32>::new();
    for index in 0..10_000 {
        let bucket = dripline_engine::split::bucket(&format!("contact-{index}"), &journey.id, "ab");
        let way = dripline_engine::split::way_for(
            bucket,
            match &journey.steps[0].kind {
                dripline_engine::StepKind::Split { ways } => ways,
                _ => unreachable!(),
            },
        );
        *counts.entry(format!("{way:?}")).or_default() += 1;
    }
    let share = |way: &str| counts.get(way).copied().unwrap_or(0);
    for (way, expected) in [("Some(0)", 4_500), ("Some(1)", 4_500), ("Some(2)", 1_000)] {
        let got = share(way);
        assert!(
            got.abs_diff(expected) < 250,
            "{way}: {got} of 10000, expected about {expected}"
        );
    }
    // And the engine agrees with the buckets: a held-out contact exits as holdout.
    let held_out = (0..)
        .map(|index| format!("contact-{index}"))
        .find(|contact| dripline_engine::split::bucket(contact, &journey.id, "ab") >= 90)
        .unwrap();
    let mut runtime = Runtime::new(journey.clone());
    runtime.contact = ContactView::new(held_out);
    let actions = runtime.event(checkout("e1", 1, T0));
    assert_eq!(effects(&actions).last().unwrap(), "exit: holdout");
    assert!(metrics(&actions).contains(&"ab:holdout".to_owned()));
}

#[test]
fn a_hand_off_step_ends_the_journey_and_the_other_journey_enrolls_the_contact() {
    let text = r#"
name = "Hand off"
version = 1
[trigger]
event = "checkout.created"
[[steps]]
id = "pass"
hand_off = "care"
"#;
    let care = journey(
        r#"
id = "care"
name = "Care"
version = 3
[[steps]]
id = "thanks"
uses = "send"
config = { template = "thanks" }
"#,
    );
    let mut runtime = Runtime::new(journey(text));
    let actions = runtime.event(checkout("e1", 1, T0));
    assert_eq!(
        effects(&actions),
        [
            "enroll at pass",
            "exit: handed off to care",
            "hand off to care"
        ]
    );
    let from = runtime.active();
    let actions = enroll_by_hand_off(&care, &runtime.contact, &from, &[], T0);
    assert_eq!(
        effects(&actions),
        ["enroll at thanks", "run thanks (send) attempt 1"]
    );
    let Action::Enroll(enrolled) = &actions[0] else {
        panic!()
    };
    assert_eq!(enrolled.handed_off_from.as_deref(), Some(from.id.as_str()));
    assert_eq!(enrolled.trigger, from.trigger);
    assert_eq!(enrolled.journey_version, 3);
    // Handing the same enrollment over again enrolls nobody new.
    assert!(
        enroll_by_hand_off(
            &care,
            &runtime.contact,
            &from,
            std::slice::from_ref(enrolled),
            T0
        )
        .is_empty()
    );
}

#[test]
fn an_exit_step_ends_with_its_reason_and_a_missing_next_ends_as_completed() {
    let text = r#"
name = "Exit"
version = 1
[trigger]
event = "checkout.created"
[[steps]]
id = "fork"
branch = [{ when = "trigger.properties.total > 10", next = "stop" }, { next = "send" }]
[[steps]]
id = "stop"
exit = "too expensive"
[[steps]]
id = "send"
uses = "send"
"#;
    let journey = journey(text);
    let mut runtime = Runtime::new(journey.clone());
    assert_eq!(
        effects(&runtime.event(checkout("e1", 50, T0)))
            .last()
            .unwrap(),
        "exit: too expensive"
    );
    let mut runtime = Runtime::new(journey);
    runtime.event(checkout("e1", 5, T0));
    assert_eq!(
        effects(&runtime.answer(StepOutcome::Continue)),
        ["exit: completed"]
    );
    assert_eq!(runtime.active().exit_reason.as_deref(), Some("completed"));
}

#[test]
fn a_step_asking_to_retry_backs_off_1_2_4_8_minutes_then_fails_on_the_fifth_attempt() {
    let mut runtime = Runtime::new(journey(ONE_SEND));
    runtime.event(checkout("e1", 150, T0));
    let mut lines = Vec::new();
    for _ in 0..5 {
        lines.extend(effects(&runtime.answer(StepOutcome::Retry {
            reason: "provider down".into(),
            after_ms: None,
        })));
        let now = runtime
            .timers
            .values()
            .map(|timer| timer.due_at)
            .min()
            .unwrap_or(runtime.now);
        lines.extend(effects(&runtime.run_until(now)));
    }
    assert_eq!(
        lines,
        [
            "timer nudge/1/retry-2 at +1m",
            "run nudge (send) attempt 2",
            "timer nudge/1/retry-3 at +3m",
            "run nudge (send) attempt 3",
            "timer nudge/1/retry-4 at +7m",
            "run nudge (send) attempt 4",
            "timer nudge/1/retry-5 at +15m",
            "run nudge (send) attempt 5",
            "exit: step failed: provider down",
        ]
    );
}

#[test]
fn a_retry_with_its_own_delay_waits_that_long_with_a_new_idempotency_key() {
    let mut runtime = Runtime::new(journey(ONE_SEND));
    runtime.event(checkout("e1", 150, T0));
    runtime.answer(StepOutcome::Retry {
        reason: "rate limited".into(),
        after_ms: Some(2 * HOUR as u64),
    });
    let actions = runtime.run_until(T0 + 2 * HOUR);
    let Some(Action::RunStep {
        attempt,
        idempotency_key,
        ..
    }) = actions
        .iter()
        .find(|action| matches!(action, Action::RunStep { .. }))
    else {
        panic!("{actions:?}")
    };
    assert_eq!(*attempt, 2);
    assert!(idempotency_key.ends_with("/nudge/1/2"));
}

#[test]
fn a_step_answering_a_named_branch_goes_where_the_branches_table_says() {
    let text = r#"
name = "Component branch"
version = 1
[trigger]
event = "checkout.created"
[[steps]]
id = "check"
uses = "custom-check"
branches = { yes = "yes", no = "no" }
[[steps]]
id = "yes"
exit = "said yes"
[[steps]]
id = "no"
exit = "said no"
"#;
    let journey = journey(text);
    let mut runtime = Runtime::new(journey.clone());
    runtime.event(checkout("e1", 1, T0));
    assert_eq!(
        effects(&runtime.answer(StepOutcome::Branch { name: "no".into() })),
        ["exit: said no"]
    );
    let mut runtime = Runtime::new(journey);
    runtime.event(checkout("e1", 1, T0));
    let actions = runtime.answer(StepOutcome::Branch {
        name: "maybe".into(),
    });
    assert!(
        effects(&actions)[0].starts_with("exit: step failed:"),
        "{actions:?}"
    );
}

#[test]
fn a_step_asking_to_wait_waits_then_goes_on_to_next() {
    let text =
        ONE_SEND.to_owned() + "next = \"after\"\n[[steps]]\nid = \"after\"\nexit = \"done\"\n";
    let journey = journey(&text);
    let mut runtime = Runtime::new(journey.clone());
    runtime.event(checkout("e1", 150, T0));
    let actions = runtime.answer(StepOutcome::Wait {
        wait: WaitRequest::Duration { ms: HOUR as u64 },
    });
    assert_eq!(effects(&actions), ["timer nudge/1/wait at +1h"]);
    assert_eq!(effects(&runtime.run_until(T0 + HOUR)), ["exit: done"]);

    let mut runtime = Runtime::new(journey);
    runtime.event(checkout("e1", 150, T0));
    runtime.answer(StepOutcome::Wait {
        wait: WaitRequest::Event {
            name: "sms.delivered".into(),
            condition: None,
            timeout_ms: DAY as u64,
        },
    });
    let actions = runtime.event(event("e2", "sms.delivered", json!({}), T0 + MINUTE));
    assert_eq!(effects(&actions), ["cancel nudge/1/timeout", "exit: done"]);
}

#[test]
fn a_step_that_cannot_run_ends_the_enrollment_as_failed() {
    let mut runtime = Runtime::new(journey(ONE_SEND));
    runtime.event(checkout("e1", 150, T0));
    let actions = runtime.answer(StepOutcome::Failed {
        reason: "invalid config: template".into(),
    });
    assert_eq!(
        effects(&actions),
        ["exit: step failed: invalid config: template"]
    );
    assert!(metrics(&actions).contains(&"nudge:step_failed".to_owned()));
}

#[test]
fn a_timer_or_outcome_handed_with_another_journey_version_is_refused() {
    let mut runtime = Runtime::new(journey(ONE_SEND));
    runtime.event(checkout("e1", 150, T0));
    let enrollment = runtime.active();
    let newer = journey(&ONE_SEND.replace("version = 1", "version = 2"));
    let error = on_step_outcome(
        &newer,
        &enrollment,
        &runtime.contact,
        "nudge",
        &StepOutcome::Continue,
        T0,
    )
    .unwrap_err();
    assert!(matches!(
        error,
        EngineError::WrongJourney {
            enrolled_version: 1,
            given_version: 2,
            ..
        }
    ));
}

#[test]
fn enrollments_on_an_older_version_keep_new_ones_out_but_are_not_resumed_by_the_new_version() {
    let text = WAITS.replace("[trigger]", "[entry]\nreentry = \"always\"\n[trigger]");
    let mut runtime = Runtime::new(journey(&text));
    runtime.event(checkout("e1", 1, T0));
    runtime.journey = journey(&text.replace("version = 1", "version = 2"));
    // The goal is for the v1 enrollment to see, through on_enrollment_event.
    let goal = event("e2", "order.paid", json!({"token": "tok-e1"}), T0 + MINUTE);
    assert!(runtime.event(goal).is_empty());
    assert!(runtime.event(checkout("e3", 1, T0 + 2 * MINUTE)).is_empty());
}

#[test]
fn a_journey_that_loops_without_waiting_is_stopped() {
    let text = r#"
name = "Loop"
version = 1
[trigger]
event = "checkout.created"
[[steps]]
id = "a"
branch = [{ when = "true", next = "b" }, { next = "b" }]
[[steps]]
id = "b"
branch = [{ when = "true", next = "a" }, { next = "a" }]
"#;
    let mut runtime = Runtime::new(journey(text));
    let actions = runtime.event(checkout("e1", 1, T0));
    assert!(
        effects(&actions)
            .last()
            .unwrap()
            .starts_with("exit: stopped: over 100 steps")
    );
}

#[test]
fn an_enrollment_survives_a_round_trip_through_json() {
    let mut runtime = Runtime::new(journey(WAIT_FOR));
    runtime.event(checkout("e1", 1, T0));
    let enrollment = runtime.active();
    let json = serde_json::to_string(&enrollment).unwrap();
    let back: dripline_engine::Enrollment = serde_json::from_str(&json).unwrap();
    assert_eq!(back, enrollment);
}

#[test]
fn the_json_schema_describes_journey_files() {
    let schema: serde_json::Value = serde_json::from_str(&dripline_engine::json_schema()).unwrap();
    assert_eq!(schema["title"], "Journey");
    assert_eq!(schema["additionalProperties"], false);
    let required = schema["required"].as_array().unwrap();
    assert!(required.contains(&json!("steps")) && required.contains(&json!("name")));
    let step = &schema["$defs"]["Step"]["properties"];
    for key in [
        "uses",
        "wait",
        "wait_until",
        "wait_for",
        "branch",
        "split",
        "hand_off",
        "exit",
        "next",
    ] {
        assert!(step.get(key).is_some(), "{key} missing from {step}");
    }
}
