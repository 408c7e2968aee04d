//! SCENARIOS.md 3, 6 and 7 end to end: canonical events into the inbox, the
//! real `send` and `tag` components run by the runner on a manual clock and a
//! real SQLite file, under the repository's `delivery.toml` (3 marketing
//! messages a day, quiet hours 21:00-08:00, 24 h dedupe, priority window 1 h).
//! The outbox shows who got what, on which channel, when, and for every message
//! that did not go, why.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dripline_tests::{Deployment, repo_root};
use serde_json::{Value, json};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// 2026-11-18 09:06:40 in Shanghai, where these contacts live.
const T0: i64 = 1_794_964_000_000;

fn scenario_deployment() -> Deployment {
    let cases = repo_root().join("tests/cases/scenarios");
    Deployment::with_dirs(&cases.join("journeys"), &cases.join("templates"), T0)
}

/// A phone number of the contact's own (one shared number would make two
/// contacts one).
fn phone_of(email: &str) -> String {
    let n = email
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    format!("+86139{:08}", n % 100_000_000)
}

/// A member reachable on every channel, who said yes to all of them.
fn member_event(id: &str, name: &str, email: &str, properties: Value, at: i64) -> Value {
    let mut properties = properties;
    properties["consent"] =
        json!({ "email": "granted", "sms": "granted", "push": "granted", "wecom": "granted" });
    properties["time_zone"] = json!("Asia/Shanghai");
    json!({
        "id": id, "source": dripline_tests::source_of(name), "name": name,
        "identities": { "email": email, "phone": phone_of(email) },
        "properties": properties, "occurred_at": at, "received_at": at
    })
}

fn plain_event(id: &str, name: &str, email: &str, properties: Value, at: i64) -> Value {
    json!({
        "id": id, "source": dripline_tests::source_of(name), "name": name, "identities": { "email": email },
        "properties": properties, "occurred_at": at, "received_at": at
    })
}

/// One outbox row as the assertions read it.
#[derive(Debug)]
struct Sent {
    journey: String,
    step: String,
    channel: String,
    at: i64,
    status: String,
    /// The suppression reason, or for a deferred message when it goes.
    detail: Value,
    text: String,
}

fn outbox_of(deployment: &Deployment, email: &str) -> Vec<Sent> {
    let contact = deployment.contact_by_email(email).contact.id;
    deployment
        .outbox()
        .into_iter()
        .filter(|m| m.contact_id == contact)
        .map(|m| {
            let c = &m.content;
            let delivery = &c["delivery"];
            Sent {
                journey: c["journey"].as_str().unwrap_or_default().into(),
                step: c["step"].as_str().unwrap_or_default().into(),
                channel: m.channel.clone(),
                at: m.created_at_ms,
                status: delivery["status"].as_str().unwrap_or_default().into(),
                detail: delivery
                    .get("reason")
                    .or_else(|| delivery.get("until"))
                    .cloned()
                    .unwrap_or(Value::Null),
                text: format!(
                    "{} {}",
                    c["subject"].as_str().unwrap_or(""),
                    c["body"].as_str().unwrap_or("")
                ),
            }
        })
        .collect()
}

// ----- SCENARIOS.md 3: dormant member wake-up (journeys/dormant-wake-up.toml) -----
// The shipped journey starts on entering the `dormant` segment (tests/audience.rs
// shows it through the front door); its steps are walked here by its
// event-triggered version 1, whose entry the tests set directly.

fn dormant_by_event_dir() -> std::path::PathBuf {
    repo_root().join("tests/cases/dormant-by-event")
}

fn dormant_by_event() -> Deployment {
    Deployment::with_journeys(&dormant_by_event_dir(), T0)
}

fn dormant(id: &str, email: &str, orders_6m: i64, days_since_signup: i64) -> Value {
    member_event(
        id,
        "member.dormant",
        email,
        json!({ "days_since_signup": days_since_signup, "days_since_order": 120, "orders_6m": orders_6m }),
        T0,
    )
}

#[test]
fn a_dormant_high_value_member_gets_the_big_gift_then_best_sellers_then_an_agent_task_then_is_tagged_deep_dormant()
 {
    let mut deployment = dormant_by_event();
    deployment.receive(dormant("d-1", "zhao@example.com", 4, 400));
    deployment.run_at(T0);
    let sent = outbox_of(&deployment, "zhao@example.com");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (
            sent[0].channel.as_str(),
            sent[0].at,
            sent[0].status.as_str()
        ),
        ("sms", T0, "sent")
    );
    assert!(
        sent[0].text.contains("a 100 yuan voucher"),
        "{}",
        sent[0].text
    );

    deployment.run_at(T0 + 3 * DAY - MINUTE);
    assert_eq!(outbox_of(&deployment, "zhao@example.com").len(), 1);
    deployment.run_at(T0 + 3 * DAY);
    let sent = outbox_of(&deployment, "zhao@example.com");
    assert_eq!(sent.len(), 2);
    assert_eq!(
        (sent[1].channel.as_str(), sent[1].at, sent[1].step.as_str()),
        ("email", T0 + 3 * DAY, "best-sellers")
    );

    deployment.run_at(T0 + 10 * DAY);
    let sent = outbox_of(&deployment, "zhao@example.com");
    assert_eq!(sent.len(), 3);
    assert_eq!(
        (sent[2].channel.as_str(), sent[2].at),
        ("wecom", T0 + 10 * DAY)
    );
    assert!(
        sent[2].text.contains(&phone_of("zhao@example.com")) && sent[2].text.contains("120 days"),
        "{}",
        sent[2].text
    );

    let contact = deployment.contact_by_email("zhao@example.com");
    assert_eq!(contact.profile.attributes["wake_up"], "in progress");
    assert_eq!(contact.profile.attributes["dormant_days"], 120);

    deployment.run_at(T0 + 40 * DAY);
    let contact = deployment.contact_by_email("zhao@example.com");
    assert!(contact.profile.tags.contains("deep-dormant"));
    assert_eq!(contact.profile.attributes["wake_up"], "deep dormant");
    assert_eq!(outbox_of(&deployment, "zhao@example.com").len(), 3);
    assert_eq!(deployment.store.timers_pending_count().unwrap(), 0);
}

#[test]
fn a_low_value_member_who_orders_after_the_best_sellers_is_won_back_and_gets_no_agent_task() {
    let mut deployment = dormant_by_event();
    deployment.receive(dormant("d-2", "qian@example.com", 1, 300));
    deployment.run_at(T0);
    deployment.run_at(T0 + 3 * DAY);
    let sent = outbox_of(&deployment, "qian@example.com");
    assert!(sent[0].text.contains("double points"), "{}", sent[0].text);
    assert_eq!(sent.len(), 2);

    deployment.receive(plain_event(
        "o-2",
        "order.paid",
        "qian@example.com",
        json!({}),
        T0 + 5 * DAY,
    ));
    deployment.run_at(T0 + 5 * DAY);
    deployment.run_at(T0 + 45 * DAY);
    assert_eq!(outbox_of(&deployment, "qian@example.com").len(), 2);
    let contact = deployment.contact_by_email("qian@example.com");
    assert!(!contact.profile.tags.contains("deep-dormant"));
    assert_eq!(contact.profile.attributes["wake_up"], "won back");
}

#[test]
fn a_deep_dormant_member_who_is_woken_again_and_orders_loses_the_deep_dormant_tag() {
    let mut deployment = dormant_by_event();
    let mut earlier = dormant("d-4", "li4@example.com", 0, 500);
    earlier["properties"]["traits"] = json!({ "first_name": "Li" });
    deployment.receive(earlier);
    for day in [0, 3, 10, 40] {
        deployment.run_at(T0 + day * DAY);
    }
    assert!(
        deployment
            .contact_by_email("li4@example.com")
            .profile
            .tags
            .contains("deep-dormant")
    );
    // A quarter later they are reported dormant again, and this time order.
    let again = T0 + 130 * DAY;
    let mut second = dormant("d-5", "li4@example.com", 0, 630);
    second["occurred_at"] = json!(again);
    second["received_at"] = json!(again);
    deployment.receive(second);
    deployment.run_at(again);
    deployment.receive(plain_event(
        "o-5",
        "order.paid",
        "li4@example.com",
        json!({}),
        again + DAY,
    ));
    deployment.run_at(again + DAY);
    let contact = deployment.contact_by_email("li4@example.com");
    assert!(
        !contact.profile.tags.contains("deep-dormant"),
        "{:?}",
        contact.profile.tags
    );
    assert_eq!(contact.profile.attributes["wake_up"], "won back");
}

#[test]
fn the_wake_up_rolls_out_to_test_members_first_then_to_everyone_with_the_next_version() {
    let shipped =
        std::fs::read_to_string(dormant_by_event_dir().join("dormant-wake-up.toml")).unwrap();
    let pilot = shipped.replace(
        "trigger.properties.days_since_order >= 90\"",
        "trigger.properties.days_since_order >= 90 && has(contact.attributes.test_member)\"",
    );
    assert_ne!(pilot, shipped, "the pilot narrows the filter");
    let journeys = tempfile::tempdir().unwrap();
    let file = journeys.path().join("dormant-wake-up.toml");
    std::fs::write(&file, &pilot).unwrap();
    let mut deployment = Deployment::with_journeys(journeys.path(), T0);

    let mut tester = dormant("r-1", "tester@example.com", 1, 400);
    tester["properties"]["traits"] = json!({ "test_member": true });
    deployment.receive(tester);
    deployment.receive(dormant("r-2", "member@example.com", 1, 400));
    deployment.run_at(T0);
    assert_eq!(outbox_of(&deployment, "tester@example.com").len(), 1);
    assert!(outbox_of(&deployment, "member@example.com").is_empty());

    // Everyone, from version 2 on; the tester in flight stays on version 1.
    std::fs::write(&file, shipped.replace("version = 1", "version = 2")).unwrap();
    deployment.restart();
    let later = T0 + HOUR;
    let mut again = dormant("r-3", "member@example.com", 1, 400);
    again["occurred_at"] = json!(later);
    again["received_at"] = json!(later);
    deployment.receive(again);
    deployment.run_at(later);
    let sent = outbox_of(&deployment, "member@example.com");
    assert_eq!(sent.len(), 1);
    assert!(sent[0].text.contains("double points"), "{}", sent[0].text);
    let version_of = |email: &str| {
        let contact = deployment.contact_by_email(email).contact.id;
        let enrollment = &deployment.store.enrollments_of_contact(&contact).unwrap()[0];
        serde_json::from_str::<Value>(&enrollment.state).unwrap()["journey_version"].clone()
    };
    assert_eq!(version_of("tester@example.com"), 1);
    assert_eq!(version_of("member@example.com"), 2);
}

#[test]
fn a_member_who_signed_up_less_than_180_days_ago_is_not_woken() {
    let mut deployment = dormant_by_event();
    deployment.receive(dormant("d-3", "sun@example.com", 5, 100));
    deployment.run_at(T0 + 4 * DAY);
    assert!(outbox_of(&deployment, "sun@example.com").is_empty());
}

// ----- SCENARIOS.md 6: channel fallback and preference -----

fn offer(id: &str, email: &str, at: i64) -> Value {
    member_event(id, "offer.started", email, json!({}), at)
}

#[test]
fn an_offer_nobody_opens_goes_by_push_push_sms_and_wecom_then_tags_lost_and_hands_off() {
    let mut deployment = scenario_deployment();
    deployment.receive(offer("of-1", "lin@example.com", T0));
    for day in [0, 2, 4, 6, 8] {
        deployment.run_at(T0 + day * DAY);
    }
    let sent = outbox_of(&deployment, "lin@example.com");
    let route: Vec<(&str, i64, &str)> = sent
        .iter()
        .map(|s| (s.channel.as_str(), (s.at - T0) / DAY, s.journey.as_str()))
        .collect();
    assert_eq!(
        route,
        [
            ("push", 0, "offer-fallback"),
            ("push", 2, "offer-fallback"),
            ("sms", 4, "offer-fallback"),
            ("wecom", 6, "offer-fallback"),
            // No preference known: the fallback order's first channel.
            ("push", 8, "reactivation"),
        ]
    );
    assert!(sent.iter().all(|s| s.status == "sent"), "{sent:?}");
    let contact = deployment.contact_by_email("lin@example.com");
    assert!(contact.profile.tags.contains("lost"));
}

#[test]
fn a_contact_who_opens_on_wecom_is_tagged_and_reached_on_wecom_first_from_then_on() {
    let mut deployment = scenario_deployment();
    deployment.receive(offer("of-2", "chen@example.com", T0));
    for day in [0, 2, 4, 6] {
        deployment.run_at(T0 + day * DAY);
    }
    let opened_at = T0 + 6 * DAY + HOUR;
    deployment.receive(plain_event(
        "open-1",
        "message.opened",
        "chen@example.com",
        json!({ "channel": "wecom" }),
        opened_at,
    ));
    deployment.run_at(opened_at);
    let contact = deployment.contact_by_email("chen@example.com");
    assert!(contact.profile.tags.contains("prefers-wecom"));
    assert_eq!(contact.profile.attributes["preferred_channel"], "wecom");

    // The fallback journey ended at the open: nothing more from it.
    deployment.run_at(T0 + 10 * DAY);
    assert_eq!(outbox_of(&deployment, "chen@example.com").len(), 4);

    let picks_at = T0 + 11 * DAY;
    deployment.receive(member_event(
        "picks-1",
        "picks.ready",
        "chen@example.com",
        json!({}),
        picks_at,
    ));
    deployment.run_at(picks_at);
    let sent = outbox_of(&deployment, "chen@example.com");
    let last = sent.last().unwrap();
    assert_eq!(
        (last.journey.as_str(), last.channel.as_str(), last.at),
        ("weekly-picks", "wecom", picks_at)
    );
}

#[test]
fn preferred_skips_channels_without_consent_and_says_why_when_none_is_left() {
    let mut deployment = scenario_deployment();
    let mut only_sms = plain_event(
        "picks-2",
        "picks.ready",
        "wu@example.com",
        json!({ "consent": { "sms": "granted" } }),
        T0,
    );
    only_sms["identities"]["phone"] = json!("+8613700137000");
    deployment.receive(only_sms);
    deployment.receive(plain_event(
        "picks-3",
        "picks.ready",
        "xu@example.com",
        json!({}),
        T0,
    ));
    deployment.run_at(T0);
    let sent = outbox_of(&deployment, "wu@example.com");
    assert_eq!(
        (sent[0].channel.as_str(), sent[0].status.as_str()),
        ("sms", "sent")
    );
    let sent = outbox_of(&deployment, "xu@example.com");
    assert_eq!(sent[0].status, "suppressed");
    assert_eq!(
        sent[0].detail,
        "no channel with consent (tried push, sms, wecom, email)"
    );
}

// ----- SCENARIOS.md 7: rule conflict and pressure -----

#[test]
fn a_new_member_in_their_birthday_month_gets_the_birthday_offer_and_not_the_welcome_coupon() {
    let mut deployment = scenario_deployment();
    deployment.receive(member_event(
        "su-1",
        "member.signed_up",
        "he@example.com",
        json!({ "birthday_this_month": true }),
        T0,
    ));
    deployment.receive(member_event(
        "su-2",
        "member.signed_up",
        "lu@example.com",
        json!({ "birthday_this_month": false }),
        T0,
    ));
    deployment.run_at(T0);

    let sent = outbox_of(&deployment, "he@example.com");
    let by_journey = |journey: &str| sent.iter().find(|s| s.journey == journey).unwrap();
    let birthday = by_journey("birthday");
    assert_eq!(
        (birthday.channel.as_str(), birthday.status.as_str()),
        ("email", "sent")
    );
    assert!(birthday.text.contains("BDAY20"), "{}", birthday.text);
    let welcome = by_journey("welcome");
    assert_eq!(welcome.status, "suppressed");
    assert_eq!(
        welcome.detail,
        "priority: journey birthday (priority 10) reaches this contact within 1h"
    );

    // Without a birthday this month the welcome coupon goes as usual.
    let sent = outbox_of(&deployment, "lu@example.com");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (sent[0].journey.as_str(), sent[0].status.as_str()),
        ("welcome", "sent")
    );
}

fn sale(id: &str, item: &str, at: i64) -> Value {
    member_event(
        id,
        "sale.announced",
        "ma@example.com",
        json!({ "item": item }),
        at,
    )
}

#[test]
fn the_same_sale_announced_twice_within_24_hours_reaches_the_contact_once() {
    let mut deployment = scenario_deployment();
    deployment.receive(sale("s-1", "tea set", T0));
    deployment.run_at(T0);
    deployment.receive(sale("s-2", "tea set", T0 + 2 * HOUR));
    deployment.run_at(T0 + 2 * HOUR);
    deployment.receive(sale("s-3", "tea set", T0 + 25 * HOUR));
    deployment.run_at(T0 + 25 * HOUR);

    let sent = outbox_of(&deployment, "ma@example.com");
    let statuses: Vec<(&str, i64)> = sent
        .iter()
        .map(|s| (s.status.as_str(), (s.at - T0) / HOUR))
        .collect();
    assert_eq!(
        statuses,
        [("sent", 0), ("suppressed", 2), ("sent", 25)],
        "{sent:?}"
    );
    assert_eq!(
        sent[1].detail,
        "same content already sent within 1d (journey flash-sale)"
    );
}

#[test]
fn no_contact_gets_more_than_three_marketing_messages_in_their_day() {
    let mut deployment = scenario_deployment();
    for (i, item) in ["tea set", "teapot", "cups", "kettle"].iter().enumerate() {
        let at = T0 + i as i64 * HOUR;
        deployment.receive(sale(&format!("c-{i}"), item, at));
        deployment.run_at(at);
    }
    // 23 h after 09:06 is 08:06 the next morning there: a new day, a new count.
    deployment.receive(sale("c-next", "tray", T0 + 23 * HOUR));
    deployment.run_at(T0 + 23 * HOUR);

    let sent = outbox_of(&deployment, "ma@example.com");
    let statuses: Vec<&str> = sent.iter().map(|s| s.status.as_str()).collect();
    assert_eq!(
        statuses,
        ["sent", "sent", "sent", "suppressed", "sent"],
        "{sent:?}"
    );
    assert_eq!(sent[3].detail, "frequency cap 3/day reached");
    assert!(sent[3].text.contains("kettle"));
}

#[test]
fn a_sale_announced_late_in_the_evening_is_deferred_to_eight_the_next_morning() {
    let mut deployment = scenario_deployment();
    // 22:36 in Shanghai.
    let late = T0 + 13 * HOUR + 30 * MINUTE;
    deployment.receive(sale("late-1", "lanterns", late));
    deployment.run_at(late);
    let sent = outbox_of(&deployment, "ma@example.com");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status, "deferred");
    // 08:00 the next morning in Shanghai is 00:00 UTC.
    let eight_next_morning = T0 - HOUR - 6 * MINUTE - 40_000 + DAY;
    assert_eq!(sent[0].detail, json!(eight_next_morning));
}

#[test]
fn replying_td_withdraws_a_message_deferred_by_quiet_hours_and_stops_the_next_one() {
    let mut deployment = scenario_deployment();
    let late = T0 + 13 * HOUR + 30 * MINUTE;
    deployment.receive(sale("late-2", "lanterns", late));
    deployment.run_at(late);
    assert_eq!(
        outbox_of(&deployment, "ma@example.com")[0].status,
        "deferred"
    );

    let reply_at = late + 20 * MINUTE;
    deployment.receive(plain_event(
        "reply-1",
        "sms.replied",
        "ma@example.com",
        json!({ "text": " td " }),
        reply_at,
    ));
    deployment.run_at(reply_at);
    let queued = deployment.outbox().pop().unwrap();
    assert_eq!(queued.status.as_str(), "suppressed");
    assert_eq!(
        queued.last_error.as_deref(),
        Some("unsubscribed before delivery")
    );
    let report = deployment.dispatch_at(T0 + DAY);
    assert_eq!(report.sent, 0, "{report:?}");

    // The next announcement (carrying no consent of its own) is not sent.
    deployment.receive(plain_event(
        "next-day",
        "sale.announced",
        "ma@example.com",
        json!({ "item": "kites" }),
        T0 + DAY + HOUR,
    ));
    deployment.run_at(T0 + DAY + HOUR);
    let sent = outbox_of(&deployment, "ma@example.com");
    assert_eq!(sent[1].detail, "no consent for sms");
}

/// A sale announced to members `m{n}@example.com`; those for whom
/// `without_item` holds get an announcement that lacks the item.
fn announce_to_members(
    deployment: &Deployment,
    members: std::ops::Range<i64>,
    without_item: impl Fn(i64) -> bool,
    at: i64,
) {
    for n in members {
        let properties = if without_item(n) {
            json!({})
        } else {
            json!({ "item": format!("item {n}") })
        };
        deployment.receive(member_event(
            &format!("sale-{n}"),
            "sale.announced",
            &format!("m{n}@example.com"),
            properties,
            at,
        ));
    }
}

#[test]
fn an_alert_fires_when_over_five_percent_of_a_journeys_step_runs_fail() {
    let mut deployment = scenario_deployment();
    // Two of twenty announcements lack the item the template needs: the send
    // step fails for those contacts (10%), never a blank in their SMS.
    announce_to_members(&deployment, 0..20, |n| n % 10 == 4, T0);
    deployment.run_at(T0);
    let store = deployment.store.clone();
    let metric = |name: &str| store.metric_get(name).unwrap();
    assert_eq!(metric("alerts.flash-sale.steps"), 1);
    let sent = deployment.outbox();
    assert_eq!(sent.len(), 18, "the failed runs sent nothing");

    // At 5% (1 in 20) in the next window: no second alert.
    announce_to_members(&deployment, 20..40, |n| n == 25, T0 + 2 * HOUR);
    deployment.run_at(T0 + 2 * HOUR);
    assert_eq!(metric("alerts.flash-sale.steps"), 1);
}

// ----- SCENARIOS.md 5: lead scoring hand-off -----

#[test]
fn three_visits_and_a_download_make_five_points_and_hand_the_lead_to_sales_once() {
    let mut deployment = scenario_deployment();
    let visit = |n: i64| {
        plain_event(
            &format!("visit-{n}"),
            "page.viewed",
            "jin@example.com",
            json!({ "path": format!("/products/{n}") }),
            T0 + n * HOUR,
        )
    };
    for n in 0..3 {
        deployment.receive(visit(n));
        deployment.run_at(T0 + n * HOUR);
    }
    let contact = deployment.contact_by_email("jin@example.com");
    assert_eq!(contact.profile.score, 3);
    assert!(deployment.outbox().is_empty(), "not qualified at 3");

    deployment.receive(plain_event(
        "download-1",
        "form.submitted",
        "jin@example.com",
        json!({ "form": "whitepaper-download" }),
        T0 + 4 * HOUR,
    ));
    deployment.run_at(T0 + 4 * HOUR);
    let contact = deployment.contact_by_email("jin@example.com");
    assert_eq!(contact.profile.score, 5);
    assert!(contact.profile.tags.contains("sales-qualified"));
    let tasks = deployment.outbox();
    assert_eq!(tasks.len(), 1);
    let task = &tasks[0];
    assert_eq!(task.channel, "http-out");
    assert_eq!(task.content["url"], "https://crm.example.com/api/tasks");
    let body: Value = serde_json::from_str(task.content["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["score"], 5, "{body}");
    assert_eq!(body["task"], "Call jin@example.com: lead score reached 5");

    // A fourth visit adds a point but does not hand the lead over again.
    deployment.receive(visit(5));
    deployment.run_at(T0 + 5 * HOUR);
    assert_eq!(
        deployment.contact_by_email("jin@example.com").profile.score,
        6
    );
    assert_eq!(deployment.outbox().len(), 1);
}
