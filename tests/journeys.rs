//! The shipped journeys, end to end: canonical events go into the inbox, the
//! runner drives the real `send` and `tag` components on a manual clock and a
//! real SQLite file, and the outbox shows who got what, on which channel, when.
//! (SCENARIOS.md 1 and 2.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dripline_tests::Deployment;
use serde_json::{Value, json};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// 2026-11-18 09:06:40 in Shanghai: the journeys' messages fall in the day,
/// outside `delivery.toml`'s quiet hours.
const T0: i64 = 1_794_964_000_000;

fn checkout(id: &str, email: &str, token: &str, at: i64) -> Value {
    json!({
        "id": id, "source": "shopify", "name": "checkout.created",
        "identities": { "email": email, "phone": "+8613800138000" },
        "properties": {
            "shop": "shop.example.com", "topic": "checkouts/create",
            "token": token, "checkout_token": token, "currency": "CNY", "total_price": "398.00",
            "first_name": "Li",
            "abandoned_checkout_url": format!("https://shop.example.com/checkouts/{token}/recover"),
            "consent": { "email": "granted", "sms": "granted" },
            "line_items": [
                { "title": "Oxford shirt", "quantity": 1, "price": "299.00", "product_type": "shirt", "image": "https://cdn.example.com/shirt.jpg" },
                { "title": "Linen pocket square", "quantity": 1, "price": "99.00", "product_type": "accessory" }
            ]
        },
        "occurred_at": at, "received_at": at
    })
}

fn event(id: &str, name: &str, email: &str, properties: Value, at: i64) -> Value {
    json!({
        "id": id, "source": dripline_tests::source_of(name), "name": name, "identities": { "email": email },
        "properties": properties, "occurred_at": at, "received_at": at
    })
}

/// (channel, time, body or subject) of each outbox message for a contact.
fn messages_to(deployment: &Deployment, email: &str) -> Vec<(String, i64, Value)> {
    let contact = deployment.contact_by_email(email).contact.id;
    deployment
        .outbox()
        .into_iter()
        .filter(|m| m.contact_id == contact)
        .map(|m| (m.channel, m.created_at_ms, m.content))
        .collect()
}

#[test]
fn an_abandoned_checkout_gets_the_sms_at_30_minutes_the_items_at_3_hours_and_a_coupon_at_24_hours()
{
    let mut deployment = Deployment::new(T0);
    deployment.receive(checkout("chk-1", "li@example.com", "tok-1", T0));
    deployment.run_at(T0);
    assert!(
        deployment.outbox().is_empty(),
        "nothing is sent before 30 minutes"
    );

    deployment.run_at(T0 + 29 * MINUTE);
    assert!(deployment.outbox().is_empty());
    deployment.run_at(T0 + 30 * MINUTE);
    let sent = messages_to(&deployment, "li@example.com");
    assert_eq!(sent.len(), 1);
    let (channel, at, sms) = &sent[0];
    assert_eq!((channel.as_str(), *at), ("sms", T0 + 30 * MINUTE));
    let body = sms["body"].as_str().unwrap();
    assert!(
        body.contains("still in your cart") && body.chars().count() <= 70,
        "{body}"
    );
    assert_eq!(sms["delivery"]["status"], "sent");

    deployment.run_at(T0 + 3 * HOUR);
    let sent = messages_to(&deployment, "li@example.com");
    assert_eq!(sent.len(), 2);
    let (channel, at, email) = &sent[1];
    assert_eq!((channel.as_str(), *at), ("email", T0 + 3 * HOUR));
    let html =
        email["html"].as_str().unwrap_or_default().to_string() + email["body"].as_str().unwrap();
    assert!(
        html.contains("Oxford shirt") && html.contains("299.00"),
        "{html}"
    );
    assert!(
        html.contains("https://shop.example.com/checkouts/tok-1/recover"),
        "{html}"
    );
    assert!(
        html.to_lowercase().contains("tie"),
        "a shirt suggests ties: {html}"
    );

    deployment.run_at(T0 + DAY);
    let sent = messages_to(&deployment, "li@example.com");
    assert_eq!(sent.len(), 3);
    let (channel, at, coupon) = &sent[2];
    assert_eq!(*at, T0 + DAY);
    let text = coupon.to_string();
    match channel.as_str() {
        "email" => assert!(text.contains("BACK10") && text.contains("10%"), "{text}"),
        "sms" => assert!(text.contains("BACK30"), "{text}"),
        other => panic!("coupon on {other}"),
    }

    deployment.run_at(T0 + 10 * DAY);
    assert_eq!(
        messages_to(&deployment, "li@example.com").len(),
        3,
        "the journey is over"
    );
    assert_eq!(deployment.store.timers_pending_count().unwrap(), 0);
}

#[test]
fn an_order_for_the_checkout_ends_recovery_and_hands_the_contact_to_new_customer_care() {
    let mut deployment = Deployment::new(T0);
    deployment.receive(checkout("chk-2", "wang@example.com", "tok-2", T0));
    deployment.run_at(T0);
    deployment.run_at(T0 + 30 * MINUTE);
    assert_eq!(messages_to(&deployment, "wang@example.com").len(), 1);

    // An order for another checkout does not count.
    deployment.receive(event(
        "ord-0",
        "order.created",
        "wang@example.com",
        json!({ "checkout_token": "tok-other" }),
        T0 + HOUR,
    ));
    deployment.run_at(T0 + HOUR);
    assert_eq!(messages_to(&deployment, "wang@example.com").len(), 1);

    deployment.receive(event(
        "ord-1",
        "order.created",
        "wang@example.com",
        json!({ "checkout_token": "tok-2" }),
        T0 + 2 * HOUR,
    ));
    deployment.run_at(T0 + 2 * HOUR);
    let sent = messages_to(&deployment, "wang@example.com");
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1].2["journey"], "new-customer-care");
    assert!(
        sent[1].2["subject"]
            .as_str()
            .unwrap()
            .starts_with("Thank you for your order")
    );
    assert!(
        deployment
            .contact_by_email("wang@example.com")
            .profile
            .tags
            .contains("customer")
    );

    deployment.run_at(T0 + 3 * DAY);
    assert_eq!(
        messages_to(&deployment, "wang@example.com").len(),
        2,
        "no reminder after the order"
    );
}

#[test]
fn a_checkout_without_marketing_consent_is_reminded_by_nobody_and_the_suppression_says_why() {
    let mut deployment = Deployment::new(T0);
    let mut no_consent = checkout("chk-3", "zhao@example.com", "tok-3", T0);
    no_consent["properties"]["consent"] = json!({ "email": "denied", "sms": "unknown" });
    deployment.receive(no_consent);
    deployment.run_at(T0);
    deployment.run_at(T0 + 30 * MINUTE);
    let sent = messages_to(&deployment, "zhao@example.com");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].2["delivery"],
        json!({ "status": "suppressed", "reason": "no consent for sms" })
    );
}

/// A lead from a signed form (Typeform), whose consent Dripline holds: the
/// journey sends the paper at once, without asking to confirm.
fn whitepaper(id: &str, email: &str, at: i64) -> Value {
    json!({
        "id": id, "source": "typeform", "name": "form.submitted", "identities": { "email": email },
        "properties": { "form": "whitepaper-download", "fields": { "company": "Acme" }, "consent": { "email": "granted" } },
        "occurred_at": at, "received_at": at
    })
}

#[test]
fn a_whitepaper_lead_gets_the_paper_now_the_trial_invite_at_two_days_and_case_studies_after_a_click()
 {
    let mut deployment = Deployment::new(T0);
    deployment.receive(whitepaper("wp-1", "chen@example.com", T0));
    deployment.run_at(T0);
    let sent = messages_to(&deployment, "chen@example.com");
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0.as_str(), sent[0].1), ("email", T0));
    // A signed form's consent is held: the paper at once, as marketing.
    assert_eq!(sent[0].2["step"], "send-whitepaper");
    assert_eq!(sent[0].2["category"], "marketing");

    deployment.run_at(T0 + 2 * DAY);
    let sent = messages_to(&deployment, "chen@example.com");
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].1, T0 + 2 * DAY);
    assert_eq!(sent[1].2["step"], "trial-invite");

    deployment.receive(event(
        "clk-1",
        "email.clicked",
        "chen@example.com",
        json!({ "template": "trial-invite" }),
        T0 + 2 * DAY + HOUR,
    ));
    deployment.run_at(T0 + 2 * DAY + HOUR);
    deployment.run_at(T0 + 3 * DAY + HOUR);
    let sent = messages_to(&deployment, "chen@example.com");
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(
        (sent[2].2["step"].as_str(), sent[2].1),
        (Some("case-studies"), T0 + 3 * DAY + HOUR)
    );
}

#[test]
fn a_trial_sign_up_tags_the_lead_high_intent_hands_it_to_sales_and_ends_the_nurture() {
    let mut deployment = Deployment::new(T0);
    deployment.receive(whitepaper("wp-2", "zhou@example.com", T0));
    deployment.run_at(T0);
    deployment.receive(event(
        "trial-1",
        "trial.started",
        "zhou@example.com",
        json!({}),
        T0 + DAY,
    ));
    deployment.run_at(T0 + DAY);

    let contact = deployment.contact_by_email("zhou@example.com");
    assert!(contact.profile.tags.contains("high-intent"));
    let sent = messages_to(&deployment, "zhou@example.com");
    assert_eq!(sent.len(), 2, "{sent:?}");
    let (channel, at, task) = &sent[1];
    assert_eq!((channel.as_str(), *at), ("http-out", T0 + DAY));
    assert_eq!(task["url"], "https://crm.example.com/api/tasks");
    let body: Value = serde_json::from_str(task["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["lead"]["email"], "zhou@example.com");
    assert_eq!(body["task"], "Follow up: zhou@example.com started a trial");

    deployment.run_at(T0 + 10 * DAY);
    assert_eq!(
        messages_to(&deployment, "zhou@example.com").len(),
        2,
        "no trial invite after the sign-up"
    );
}

#[test]
fn a_lead_who_never_clicks_gets_no_case_studies() {
    let mut deployment = Deployment::new(T0);
    deployment.receive(whitepaper("wp-3", "sun@example.com", T0));
    deployment.run_at(T0);
    deployment.run_at(T0 + 2 * DAY);
    deployment.run_at(T0 + 10 * DAY);
    let steps: Vec<Value> = messages_to(&deployment, "sun@example.com")
        .into_iter()
        .map(|m| m.2["step"].clone())
        .collect();
    assert_eq!(steps, [json!("send-whitepaper"), json!("trial-invite")]);
}

/// A journey file at `version` whose contacts are tagged with the version they
/// finish on, an hour after they join.
fn versioned_journey(version: u32) -> String {
    format!(
        r#"
name = "Versioned welcome"
version = {version}

[trigger]
event = "member.joined"

[[steps]]
id = "wait"
wait = "1h"
next = "tag"

[[steps]]
id = "tag"
uses = "tag"
config = {{ tag = "finished-on-v{version}" }}
"#
    )
}

#[test]
fn a_contact_in_flight_stays_on_its_version_across_a_bump_and_a_restart_while_new_ones_get_the_new_version()
 {
    let journeys = tempfile::tempdir().unwrap();
    let file = journeys.path().join("versioned-welcome.toml");
    std::fs::write(&file, versioned_journey(1)).unwrap();
    let mut deployment = Deployment::with_journeys(journeys.path(), T0);
    deployment.receive(event(
        "join-1",
        "member.joined",
        "early@example.com",
        json!({}),
        T0,
    ));
    deployment.run_at(T0);

    std::fs::write(&file, versioned_journey(2)).unwrap();
    deployment.restart();
    deployment.receive(event(
        "join-2",
        "member.joined",
        "late@example.com",
        json!({}),
        T0 + 10 * MINUTE,
    ));
    deployment.run_at(T0 + 10 * MINUTE);
    deployment.run_at(T0 + 2 * HOUR);

    let tags = |email: &str| deployment.contact_by_email(email).profile.tags;
    assert_eq!(
        tags("early@example.com").into_iter().collect::<Vec<_>>(),
        ["finished-on-v1"]
    );
    assert_eq!(
        tags("late@example.com").into_iter().collect::<Vec<_>>(),
        ["finished-on-v2"]
    );
    let versions = |email: &str| -> Vec<Value> {
        let contact = deployment.contact_by_email(email).contact.id;
        deployment
            .store
            .enrollments_of_contact(&contact)
            .unwrap()
            .into_iter()
            .map(|e| serde_json::from_str::<Value>(&e.state).unwrap()["journey_version"].clone())
            .collect()
    };
    assert_eq!(versions("early@example.com"), [json!(1)]);
    assert_eq!(versions("late@example.com"), [json!(2)]);
    assert_eq!(deployment.store.timers_pending_count().unwrap(), 0);
}

#[test]
fn the_abandoned_items_email_reaches_the_shopper_through_a_real_smtp_server_at_three_hours() {
    let (port, mails) = dripline_tests::smtp::smtp_server();
    let channels = format!(
        "[channels.email]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\nfrom = \"Acme <shop@example.com>\"\n\n[channels.sms]\nkind = \"outbox\"\n"
    );
    let mut deployment = Deployment::with_channels(
        &dripline_tests::repo_root().join("journeys"),
        Some(&channels),
        T0,
    );
    deployment.receive(checkout("chk-smtp", "lu@example.com", "tok-smtp", T0));
    deployment.run_at(T0);
    deployment.run_at(T0 + 30 * MINUTE);
    deployment.dispatch_at(T0 + 30 * MINUTE);
    assert!(
        mails.lock().unwrap().is_empty(),
        "the 30-minute reminder is an SMS"
    );

    deployment.run_at(T0 + 3 * HOUR);
    let report = deployment.dispatch_at(T0 + 3 * HOUR);
    assert_eq!(report.sent, 1, "{report:?}");
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.to, ["lu@example.com"]);
    assert!(mail.data.contains("Subject:"), "{}", mail.data);
    assert!(
        mail.data.contains("Oxford shirt") && mail.data.contains("tok-smtp/recover"),
        "{}",
        mail.data
    );
    let sent = deployment
        .outbox()
        .into_iter()
        .find(|m| m.channel == "email")
        .unwrap();
    assert_eq!(
        (sent.status.as_str(), sent.deliver_at_ms),
        ("sent", T0 + 3 * HOUR)
    );
}

const HOURLY_RECEIPT: &str = r#"
name = "Hourly receipt"
version = 1

[trigger]
event = "order.created"

[[steps]]
id = "receipt"
uses = "send"
config = { channel = "email", template = "order-thank-you", category = "transactional" }
next = "wait"

[[steps]]
id = "wait"
wait = "1h"
next = "receipt"
"#;

#[test]
fn a_journey_that_loops_back_to_a_send_step_sends_again_on_its_second_visit() {
    let journeys = tempfile::tempdir().unwrap();
    std::fs::write(journeys.path().join("hourly-receipt.toml"), HOURLY_RECEIPT).unwrap();
    let mut deployment = Deployment::with_journeys(journeys.path(), T0);
    deployment.receive(event(
        "order-1",
        "order.created",
        "li@example.com",
        json!({}),
        T0,
    ));
    deployment.run_at(T0);
    deployment.run_at(T0 + HOUR);
    deployment.run_at(T0 + 2 * HOUR);
    let outbox = deployment.outbox();
    let at: Vec<i64> = outbox.iter().map(|m| m.created_at_ms).collect();
    assert_eq!(at, [T0, T0 + HOUR, T0 + 2 * HOUR], "one receipt per visit");
    let mut keys: Vec<&str> = outbox.iter().map(|m| m.idempotency_key.as_str()).collect();
    keys.dedup();
    assert_eq!(
        keys.len(),
        3,
        "each visit sends under its own key: {keys:?}"
    );
}

#[test]
fn a_journey_version_written_into_the_components_store_neither_blocks_nor_replaces_the_journey() {
    let journeys = tempfile::tempdir().unwrap();
    let file = journeys.path().join("versioned-welcome.toml");
    std::fs::write(&file, versioned_journey(1)).unwrap();
    let mut deployment = Deployment::with_journeys(journeys.path(), T0);
    // What a gateway component granted the `default` store could write: a
    // "stored version" of the journey that does something else.
    let forged = versioned_journey(1).replace("finished-on-v1", "forged");
    deployment
        .store
        .apply(&[dripline_store::Write::KvSet {
            store: dripline_store::DEFAULT_KV_STORE.into(),
            key: "journey/versioned-welcome/v0000000001".into(),
            value: forged.into_bytes(),
        }])
        .unwrap();
    deployment.restart();
    deployment.receive(event(
        "join-1",
        "member.joined",
        "li@example.com",
        json!({}),
        T0,
    ));
    deployment.run_at(T0);
    deployment.run_at(T0 + 2 * HOUR);
    let tags: Vec<String> = deployment
        .contact_by_email("li@example.com")
        .profile
        .tags
        .into_iter()
        .collect();
    assert_eq!(tags, ["finished-on-v1"]);
}

#[test]
fn two_shoppers_on_one_cart_token_enroll_once_and_the_events_behind_them_still_run() {
    let mut deployment = Deployment::new(T0);
    let shopper = |id: &str, email: &str, phone: &str, token: &str, at: i64| {
        let mut event = checkout(id, email, token, at);
        event["identities"]["phone"] = json!(phone);
        event
    };
    deployment.receive(shopper(
        "chk-a",
        "li@example.com",
        "+8613800138001",
        "tok-shared",
        T0,
    ));
    deployment.receive(shopper(
        "chk-b",
        "wang@example.com",
        "+8613800138002",
        "tok-shared",
        T0 + 1,
    ));
    deployment.receive(shopper(
        "chk-c",
        "zhao@example.com",
        "+8613800138003",
        "tok-own",
        T0 + 2,
    ));
    deployment.run_at(T0);
    deployment.run_at(T0 + 30 * MINUTE);
    assert!(
        deployment.store.inbox_peek(10).unwrap().is_empty(),
        "nothing is stuck"
    );
    let metric = |name: &str| deployment.store.metric_get(name).unwrap();
    assert_eq!(metric("journey.abandoned-checkout.-.entry_refused"), 1);
    assert_eq!(metric("runtime.dead_lettered"), 0);
    let reminded: Vec<usize> = ["li@example.com", "wang@example.com", "zhao@example.com"]
        .iter()
        .map(|email| messages_to(&deployment, email).len())
        .collect();
    assert_eq!(
        reminded,
        [1, 0, 1],
        "the first shopper and the third are reminded"
    );
}

const PREFERRED_GIFT: &str = r#"
name = "Welcome-back gift"
version = 1

[trigger]
event = "member.dormant"

[[steps]]
id = "gift"
uses = "send"
config = { channel = "preferred", template = "welcome-back-gift" }
next = "tag"

[[steps]]
id = "tag"
uses = "tag"
config = { tag = "gifted" }
"#;

#[test]
fn a_send_to_preferred_that_no_channel_can_reach_is_kept_with_the_reason_and_the_journey_goes_on() {
    let journeys = tempfile::tempdir().unwrap();
    std::fs::write(journeys.path().join("gift.toml"), PREFERRED_GIFT).unwrap();
    let mut deployment = Deployment::with_journeys(journeys.path(), T0);
    deployment.receive(event(
        "dormant-1",
        "member.dormant",
        "li@example.com",
        json!({}),
        T0,
    ));
    deployment.run_at(T0);
    let outbox = deployment.outbox();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0].status.as_str(), "suppressed");
    let reason = outbox[0].content["delivery"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("no channel with consent (tried "),
        "{reason}"
    );
    let tags = deployment.contact_by_email("li@example.com").profile.tags;
    assert!(tags.contains("gifted"), "the journey went on: {tags:?}");
}

#[test]
fn a_worker_sharing_the_store_leaves_records_another_claimed_until_the_claim_lapses() {
    let deployment = Deployment::new(T0);
    for i in 0..6 {
        let email = format!("reader{i}@example.com");
        deployment.receive(event(
            &format!("e{i}"),
            "page.viewed",
            &email,
            json!({}),
            T0,
        ));
    }
    // Another worker claimed the three oldest and died holding them.
    let inbox = deployment.store.inbox_peek(10).unwrap();
    for (key, _) in &inbox[..3] {
        assert!(
            deployment
                .store
                .dedupe_mark(&format!("inbox-claim/{key}"), T0, T0 + MINUTE)
                .unwrap()
        );
    }
    let mut worker = deployment.another_runner().with_inbox_claims(MINUTE);
    assert_eq!(worker.process_inbox(10).unwrap(), 3);
    let left: Vec<String> = deployment
        .store
        .inbox_peek(10)
        .unwrap()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let claimed: Vec<String> = inbox[..3].iter().map(|(key, _)| key.clone()).collect();
    assert_eq!(left, claimed, "the other worker's records stay");
    // Once their lease is over, they are anyone's.
    deployment.clock.set(T0 + MINUTE);
    assert_eq!(worker.process_inbox(10).unwrap(), 3);
    assert!(deployment.store.inbox_peek(10).unwrap().is_empty());
    assert_eq!(
        deployment.store.metric_get("events.page.viewed").unwrap(),
        6
    );
}
