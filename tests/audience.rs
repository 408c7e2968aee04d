//! Who a contact is, through the front door: signed track calls, form posts
//! and Shopify webhooks over loopback HTTP into the gateway of a deployment
//! of the repository's `journeys/` and `segments/`, whose clock the test
//! moves. Segments and date triggers come from facts the events leave on the
//! contact; consent from what each source may say.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dripline_engine::ConsentState;
use dripline_tests::gateway::{SHOPIFY_SECRET, TRACK_KEY};
use dripline_tests::process::http;
use dripline_tests::{Deployment, repo_root};
use serde_json::{Value, json};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2026-11-18 09:06:40 in Shanghai.
const T0: i64 = 1_794_964_000_000;

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A signed track API call (identify or track), as Segment's libraries send it.
fn call(gateway: &str, path: &str, body: Value) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nAuthorization: Bearer {TRACK_KEY}"
    );
    let (status, answer) = http(gateway, &head, body.to_string().as_bytes());
    assert_eq!(status, 200, "{path}: {answer}");
}

/// A member who registered `registered_days` ago, reachable by SMS and email
/// with consent, as the shop's identify call says.
fn identify(gateway: &str, email: &str, phone: &str, registered_at: i64) {
    call(
        gateway,
        "/v1/identify",
        json!({
            "type": "identify", "messageId": format!("id-{email}"), "userId": email,
            "traits": {
                "email": email, "phone": phone, "timezone": "Asia/Shanghai",
                "registered_at": rfc3339(registered_at),
                "consent": { "email": "granted", "sms": "granted" },
            },
            "timestamp": rfc3339(registered_at),
        }),
    );
}

fn order_paid(gateway: &str, email: &str, n: u32, at: i64) {
    call(
        gateway,
        "/v1/track",
        json!({
            "type": "track", "messageId": format!("order-{email}-{n}"), "event": "Order Paid",
            "properties": { "total": 120 }, "context": { "traits": { "email": email } },
            "timestamp": rfc3339(at),
        }),
    );
}

/// Moves the clock and processes what is due; the timers fired.
fn fire_at(deployment: &mut Deployment, at: i64) -> usize {
    deployment.clock.set(at);
    deployment.runner.run_until_idle().unwrap().timers
}

fn sent_to(deployment: &Deployment, email: &str) -> Vec<dripline_store::OutboxMessage> {
    let id = deployment.contact_by_email(email).contact.id;
    deployment
        .outbox()
        .into_iter()
        .filter(|m| m.contact_id == id)
        .collect()
}

/// What `journey` queued for the contact with `email`.
fn sent_by(
    deployment: &Deployment,
    journey: &str,
    email: &str,
) -> Vec<dripline_store::OutboxMessage> {
    sent_to(deployment, email)
        .into_iter()
        .filter(|m| m.content["journey"] == journey)
        .collect()
}

#[test]
fn a_member_enters_the_dormant_segment_the_moment_their_ninety_days_run_out_and_nobody_else_is_looked_at()
 {
    let mut deployment = Deployment::new(T0);
    let front = deployment.serve_gateway();
    let gateway = front.addr.to_string();
    // Zhao last paid 80 days ago; fifty other members paid 10 days ago.
    // The shop sends the order history before the profiles: a member
    // whose orders are not known yet would count as never having ordered.
    let last_order = T0 - 80 * DAY;
    order_paid(&gateway, "zhao@example.com", 1, last_order);
    for i in 0..50 {
        order_paid(
            &gateway,
            &format!("member{i}@example.com"),
            1,
            T0 - 10 * DAY,
        );
    }
    fire_at(&mut deployment, T0);
    identify(
        &gateway,
        "zhao@example.com",
        "+8613900000001",
        T0 - 400 * DAY,
    );
    for i in 0..50 {
        let email = format!("member{i}@example.com");
        identify(
            &gateway,
            &email,
            &format!("+86139100{i:05}"),
            T0 - 400 * DAY,
        );
    }
    fire_at(&mut deployment, T0);
    let zhao = deployment.contact_by_email("zhao@example.com");
    // A low-value customer already (one order in six months, over 30 days
    // ago), not a dormant one yet.
    assert!(
        !zhao.profile.segments.contains("dormant"),
        "{:?}",
        zhao.profile.segments
    );
    assert!(sent_by(&deployment, "dormant-wake-up", "zhao@example.com").is_empty());
    // The orders' own journey (new customer care) has its timers; past them,
    // nothing is due until Zhao's 90 days run out.
    fire_at(&mut deployment, T0 + 5 * DAY);

    // Exactly 90 days after the order, "no order in 90 days" does not hold yet.
    let ninety = last_order + 90 * DAY;
    assert_eq!(fire_at(&mut deployment, ninety), 0);
    assert!(sent_by(&deployment, "dormant-wake-up", "zhao@example.com").is_empty());
    // A millisecond later it does: one timer fires, Zhao's, and nobody
    // else's record is read.
    assert_eq!(fire_at(&mut deployment, ninety + 1), 1);
    let zhao = deployment.contact_by_email("zhao@example.com");
    assert!(zhao.profile.segments.contains("dormant"));
    let sent = sent_by(&deployment, "dormant-wake-up", "zhao@example.com");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].channel, "sms");
    assert_eq!(sent[0].created_at_ms, ninety + 1);
    assert_eq!(sent[0].content["journey"], "dormant-wake-up");
    assert!(
        sent[0].content["body"]
            .as_str()
            .unwrap_or_default()
            .contains("double points"),
        "one order in six months is the standard gift: {}",
        sent[0].content
    );
    for i in [0, 49] {
        let other = deployment.contact_by_email(&format!("member{i}@example.com"));
        assert!(
            !other.profile.segments.contains("dormant"),
            "{:?}",
            other.profile
        );
    }
}

#[test]
fn a_dormant_member_with_three_orders_in_six_months_gets_the_high_value_gift() {
    let mut deployment = Deployment::new(T0);
    let front = deployment.serve_gateway();
    let gateway = front.addr.to_string();
    for (n, days_ago) in [(1, 150), (2, 120), (3, 95)] {
        order_paid(&gateway, "qian@example.com", n, T0 - days_ago * DAY);
    }
    fire_at(&mut deployment, T0);
    identify(
        &gateway,
        "qian@example.com",
        "+8613900000002",
        T0 - 300 * DAY,
    );
    fire_at(&mut deployment, T0);
    let sent = sent_by(&deployment, "dormant-wake-up", "qian@example.com");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].content["body"]
            .as_str()
            .unwrap_or_default()
            .contains("100 yuan"),
        "{}",
        sent[0].content
    );
}

#[test]
fn a_birthday_offer_comes_seven_days_before_at_eight_in_the_members_zone_every_year() {
    let mut deployment = Deployment::new(T0);
    let front = deployment.serve_gateway();
    let gateway = front.addr.to_string();
    call(
        &gateway,
        "/v1/identify",
        json!({
            "type": "identify", "messageId": "id-sun", "userId": "sun",
            "traits": {
                "email": "sun@example.com", "timezone": "Asia/Shanghai", "birthday": "1992-12-20",
                "consent": { "email": "granted" },
            },
        }),
    );
    fire_at(&mut deployment, T0);
    assert!(sent_to(&deployment, "sun@example.com").is_empty());
    // 2026-12-13 08:00 in Shanghai is 00:00 UTC.
    let due = chrono::NaiveDate::from_ymd_opt(2026, 12, 13)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    assert_eq!(fire_at(&mut deployment, due - 1), 0);
    assert_eq!(fire_at(&mut deployment, due), 1);
    let sent = sent_to(&deployment, "sun@example.com");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].content["journey"], "member-birthday");
    assert_eq!(sent[0].created_at_ms, due);
    // And a year later, again.
    let next_year = due + 365 * DAY;
    assert_eq!(fire_at(&mut deployment, next_year), 1);
    assert_eq!(sent_to(&deployment, "sun@example.com").len(), 2);
}

fn post_form(gateway: &str, email: &str, consent: bool) {
    let mut body = format!(
        "email={}&company=Acme&form=whitepaper-download",
        email.replace('@', "%40")
    );
    if consent {
        body.push_str("&email_consent=on");
    }
    let (status, answer) = http(
        gateway,
        "POST /forms/whitepaper-download HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        body.as_bytes(),
    );
    assert!(status == 200 || status == 303, "{status}: {answer}");
}

#[test]
fn an_unsigned_form_naming_someones_email_with_another_phone_links_no_phone_to_them() {
    let mut deployment = Deployment::new(T0);
    let front = deployment.serve_gateway();
    let gateway = front.addr.to_string();
    post_form(&gateway, "victim@example.com", true);
    fire_at(&mut deployment, T0);
    let before = deployment.contact_by_email("victim@example.com");
    let (status, answer) = http(
        &gateway,
        "POST /forms/whitepaper-download HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        b"email=victim%40example.com&phone=%2B14155550199&company=Acme&form=whitepaper-download",
    );
    assert!(status == 200 || status == 303, "{status}: {answer}");
    fire_at(&mut deployment, T0 + 1_000);
    let after = deployment.contact_by_email("victim@example.com");
    assert_eq!(after.contact.id, before.contact.id);
    assert!(
        !after
            .contact
            .identities
            .contains(&dripline_store::Identity::Phone("+14155550199".into())),
        "{:?}",
        after.contact.identities
    );
    // A new person's form still makes a contact with both.
    let (status, _) = http(
        &gateway,
        "POST /forms/whitepaper-download HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        b"email=newcomer%40example.com&phone=%2B14155550198&company=Acme&form=whitepaper-download",
    );
    assert!(status == 200 || status == 303);
    fire_at(&mut deployment, T0 + 2_000);
    let newcomer = deployment.contact_by_email("newcomer@example.com");
    assert!(
        newcomer
            .contact
            .identities
            .contains(&dripline_store::Identity::Phone("+14155550198".into()))
    );
}

/// The steps of the messages queued for `email`, oldest first.
fn steps_of(deployment: &Deployment, email: &str) -> Vec<String> {
    sent_to(deployment, email)
        .iter()
        .map(|m| m.content["step"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The confirmation link in a queued email's HTML.
fn confirm_link(message: &dripline_store::OutboxMessage) -> String {
    let html = message.content["html"].as_str().unwrap();
    html.split('"')
        .find(|part| part.starts_with("http://127.0.0.1:8080/y/"))
        .unwrap_or_else(|| panic!("no confirmation link: {html}"))
        .to_string()
}

/// An HTML form post: (status, body).
fn post_raw(gateway: &str, body: &str) -> (u16, String) {
    http(
        gateway,
        "POST /forms/whitepaper-download HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        body.as_bytes(),
    )
}

#[test]
fn a_form_post_whose_honeypot_is_filled_is_answered_as_accepted_and_reaches_nobody() {
    use dripline_store::prelude::*;
    let mut deployment = Deployment::new(T0);
    let front = deployment.serve_gateway();
    let gateway = front.addr.to_string();
    let (status, answer) = post_raw(
        &gateway,
        "email=target%40example.com&form=whitepaper-download&_gotcha=https%3A%2F%2Fspam.example",
    );
    assert_eq!(status, 200, "{answer}");
    fire_at(&mut deployment, T0);
    assert!(deployment.outbox().is_empty());
    assert!(
        deployment
            .store
            .contact_find_by_identity(&dripline_store::Identity::Email(
                "target@example.com".into()
            ))
            .unwrap()
            .is_none()
    );
}

#[test]
fn the_sixth_form_post_naming_one_address_in_an_hour_is_refused_naming_email_and_stores_nothing() {
    let mut deployment = Deployment::new(T0);
    let front = deployment.serve_gateway();
    let gateway = front.addr.to_string();
    for n in 0..5 {
        let body = format!("email=victim%40example.com&company=c{n}&form=whitepaper-download");
        assert_eq!(post_raw(&gateway, &body).0, 200);
    }
    let (status, answer) = post_raw(
        &gateway,
        "email=victim%40example.com&company=c5&form=whitepaper-download",
    );
    assert_eq!(status, 429, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["field"], "email");
    fire_at(&mut deployment, T0);
    let contact = deployment.contact_by_email("victim@example.com");
    let companies = contact.profile.facts["form.submitted"].count;
    assert_eq!(companies, 5, "the refused post stored nothing");
    // Other addresses are not held up (the next hour is the gateway's unit
    // tests': it reads the wall clock).
    assert_eq!(
        post_raw(
            &gateway,
            "email=other%40example.com&form=whitepaper-download"
        )
        .0,
        200
    );
}

#[test]
fn one_client_posting_for_thirty_one_addresses_in_an_hour_is_refused_the_last() {
    let deployment = Deployment::new(T0);
    let front = deployment.serve_gateway();
    let gateway = front.addr.to_string();
    for n in 0..30 {
        let body = format!("email=p{n}%40example.com&form=whitepaper-download");
        assert_eq!(post_raw(&gateway, &body).0, 200, "post {n}");
    }
    let (status, answer) = post_raw(&gateway, "email=p30%40example.com&form=whitepaper-download");
    assert_eq!(status, 429, "{answer}");
    assert!(answer.contains("this client"), "{answer}");
}

#[test]
fn an_unsigned_forms_consent_box_grants_nothing_until_the_address_confirms_and_then_the_nurture_follows()
 {
    let mut deployment = Deployment::new(T0);
    let front = deployment.serve_gateway();
    let public = deployment.serve_public();
    let gateway = front.addr.to_string();
    // Both tick the box; only one of the two addresses is the poster's own.
    post_form(&gateway, "lead-yes@example.com", true);
    post_form(&gateway, "lead-no@example.com", true);
    fire_at(&mut deployment, T0);
    for email in ["lead-yes@example.com", "lead-no@example.com"] {
        let contact = deployment.contact_by_email(email);
        assert_eq!(contact.profile.consent.get("email"), None, "{email}");
        // One email asking to confirm, and not the paper.
        assert_eq!(steps_of(&deployment, email), ["ask-to-confirm"]);
    }

    let ask = sent_to(&deployment, "lead-yes@example.com").remove(0);
    assert_eq!(ask.content["category"], "transactional");
    let link = public.on(&confirm_link(&ask));
    let client: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into();
    // A mail scanner's GET only shows the button.
    let mut page = client.get(&link).call().unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.body_mut()
            .read_to_string()
            .unwrap()
            .contains("<button")
    );
    fire_at(&mut deployment, T0 + 60_000);
    let yes = deployment.contact_by_email("lead-yes@example.com");
    assert_eq!(yes.profile.consent.get("email"), None);
    assert_eq!(steps_of(&deployment, "lead-yes@example.com").len(), 1);

    // The person presses it: consent, from Dripline, and the paper.
    let pressed = client.post(&link).send_empty().unwrap();
    assert_eq!(pressed.status(), 200);
    fire_at(&mut deployment, T0 + 120_000);
    let yes = deployment.contact_by_email("lead-yes@example.com");
    assert_eq!(
        yes.profile.consent.get("email"),
        Some(&ConsentState::Granted)
    );
    assert_eq!(yes.profile.consent_source["email"].source, "dripline");
    assert_eq!(
        steps_of(&deployment, "lead-yes@example.com"),
        ["ask-to-confirm", "send-whitepaper"]
    );

    fire_at(&mut deployment, T0 + 2 * DAY + HOUR);
    let invite = sent_to(&deployment, "lead-yes@example.com")
        .into_iter()
        .find(|m| m.content["step"] == "trial-invite")
        .map(|m| m.content["delivery"].clone())
        .unwrap_or(Value::Null);
    // Queued to go (deferred out of the lead's quiet hours), not suppressed.
    let status = invite["status"].clone();
    assert!(status == "pending" || status == "deferred", "{invite}");
    // The address that never confirmed got the one request and nothing more.
    assert_eq!(
        steps_of(&deployment, "lead-no@example.com"),
        ["ask-to-confirm"]
    );
}

#[test]
fn a_shopify_webhook_that_repeats_subscribed_after_an_unsubscribe_leaves_the_contact_unsubscribed()
{
    let mut deployment = Deployment::new(T0);
    let front = deployment.serve_gateway();
    let gateway = front.addr.to_string();
    let case =
        std::fs::read(repo_root().join("tests/cases/webhooks/shopify/checkouts-create.json"))
            .unwrap();
    let checkout: Value = serde_json::from_slice(&case).unwrap();
    let email = checkout["email"].as_str().unwrap().to_lowercase();
    let post = |topic: &str, event_id: &str, body: &Value| {
        let body = body.to_string();
        let signature = webhook_auth::sign(SHOPIFY_SECRET.as_bytes(), body.as_bytes());
        let head = format!(
            "POST /webhooks/shopify HTTP/1.1\r\nContent-Type: application/json\r\n\
             X-Shopify-Topic: {topic}\r\nX-Shopify-Shop-Domain: acme-mugs.myshopify.com\r\n\
             X-Shopify-Event-Id: {event_id}\r\nX-Shopify-Hmac-Sha256: {signature}"
        );
        http(&gateway, &head, body.as_bytes())
    };
    // The store says the customer is subscribed.
    assert_eq!(post("checkouts/create", "c-1", &checkout).0, 200);
    fire_at(&mut deployment, T0);
    let contact = deployment.contact_by_email(&email);
    assert_eq!(
        contact.profile.consent.get("email"),
        Some(&ConsentState::Granted)
    );

    // Three hours later the cart email is queued; they unsubscribe through
    // its link.
    fire_at(&mut deployment, T0 + 31 * 60_000);
    fire_at(&mut deployment, T0 + 3 * HOUR + 60_000);
    let message = deployment
        .outbox()
        .into_iter()
        .find(|m| m.channel == "email")
        .unwrap_or_else(|| panic!("the cart email: {:?}", deployment.outbox()));
    dripline_delivery::tracking::record(
        deployment.store.as_ref(),
        dripline_delivery::tracking::Link::Unsubscribe,
        &message.idempotency_key,
        "",
        T0 + 4 * HOUR,
    )
    .unwrap()
    .expect("the message is known");
    fire_at(&mut deployment, T0 + 4 * HOUR);
    let contact = deployment.contact_by_email(&email);
    assert_eq!(
        contact.profile.consent.get("email"),
        Some(&ConsentState::Denied)
    );

    // The store's next webhook repeats the "subscribed" it recorded before.
    let mut update = checkout.clone();
    update["updated_at"] = json!("2024-03-01T12:00:00+08:00");
    assert_eq!(post("checkouts/update", "c-2", &update).0, 200);
    // And so does a cart update carrying the customer's record.
    assert_eq!(post("carts/update", "c-3", &update).0, 200);
    fire_at(&mut deployment, T0 + 5 * HOUR);
    let contact = deployment.contact_by_email(&email);
    assert_eq!(
        contact.profile.consent.get("email"),
        Some(&ConsentState::Denied)
    );
    assert_eq!(contact.profile.consent_source["email"].source, "dripline");
    let history: Vec<(&str, ConsentState)> = contact
        .profile
        .consent_history
        .iter()
        .map(|c| (c.source.as_str(), c.state))
        .collect();
    assert_eq!(
        history,
        [
            ("shopify", ConsentState::Granted),
            ("dripline", ConsentState::Denied)
        ]
    );

    // The person subscribes again on the site: that is them acting now.
    call(
        &gateway,
        "/v1/identify",
        json!({
            "type": "identify", "messageId": "resubscribe", "userId": email,
            "traits": { "email": email, "consent": { "email": "granted" } },
        }),
    );
    fire_at(&mut deployment, T0 + 6 * HOUR);
    let contact = deployment.contact_by_email(&email);
    assert_eq!(
        contact.profile.consent.get("email"),
        Some(&ConsentState::Granted)
    );
    assert_eq!(contact.profile.consent_source["email"].source, "api");
}

#[test]
fn an_imported_list_reports_its_bad_rows_by_line_imports_the_rest_once_and_enters_segments() {
    let mut deployment = Deployment::new(T0);
    let list = deployment.dir.path().join("members.csv");
    let registered = rfc3339(T0 - 400 * DAY);
    std::fs::write(
        &list,
        format!(
            "Email,Mobile,First name,Signed up,Accepts email,Tags,Time zone\n\
             li@example.com,+86 138 0013 8000,Li,{registered},yes,vip;newsletter,Asia/Shanghai\n\
             ,,Nobody,{registered},yes,,Asia/Shanghai\n\
             wang@example.com,,Wang,{registered},maybe,,Asia/Shanghai\n\
             zhou@example.com,,Zhou,{registered},no,,Mars/Olympus\n\
             chen@example.com,+8613900001111,Chen,{registered},no,,Asia/Shanghai\n"
        ),
    )
    .unwrap();
    let mapping = deployment.dir.path().join("mapping.toml");
    std::fs::write(
        &mapping,
        r#"tags = "Tags"
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
    .unwrap();
    let database = deployment.dir.path().join("dripline.db");
    let import = || {
        std::process::Command::new(dripline_tests::dripline_binary())
            .args(["import", "--quiet", "--mapping"])
            .arg(&mapping)
            .arg("--store")
            .arg(format!("sqlite:{}", database.display()))
            .arg(&list)
            .output()
            .unwrap()
    };
    let first = import();
    let stderr = String::from_utf8_lossy(&first.stderr);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        !first.status.success(),
        "bad rows fail the command: {stdout}"
    );
    assert!(stderr.contains("members.csv:3: no identity"), "{stderr}");
    assert!(
        stderr.contains("members.csv:4: Accepts email: \"maybe\" is neither yes nor no"),
        "{stderr}"
    );
    assert!(
        stderr.contains("members.csv:5: Time zone: \"Mars/Olympus\""),
        "{stderr}"
    );
    assert!(
        stdout.contains("5 rows: 2 contacts created, 0 updated, 0 unchanged, 3 failed"),
        "{stdout}"
    );
    // The same file again changes nothing.
    let again = import();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("2 unchanged"), "{stdout}");

    let li = deployment.contact_by_email("li@example.com");
    assert_eq!(
        li.profile.consent.get("email"),
        Some(&ConsentState::Granted)
    );
    assert_eq!(
        li.profile.consent_source["email"].source,
        "import:members.csv"
    );
    assert_eq!(
        li.profile.consent_history.len(),
        1,
        "imported twice, recorded once"
    );
    assert!(li.profile.tags.contains("vip") && li.profile.tags.contains("newsletter"));
    assert_eq!(
        li.contact.identities.len(),
        2,
        "{:?}",
        li.contact.identities
    );

    // The runner evaluates everyone after an import: both members signed up
    // 400 days ago and never ordered, so both enter "dormant" and Li, who
    // has a phone and said yes, gets the wake-up gift by SMS.
    let mut pass = dripline_runner::audience::Reevaluation::start(&deployment.runner).unwrap();
    assert!(
        !deployment
            .runner
            .segments_to_reevaluate()
            .unwrap()
            .is_empty()
    );
    while deployment.runner.reevaluate_page(&mut pass, 100).unwrap() {}
    deployment.runner.segments_evaluated(&pass).unwrap();
    assert_eq!(pass.contacts, 2);
    assert_eq!(
        deployment
            .store
            .metric_get(dripline_runner::audience::PASS_PROGRESS)
            .unwrap(),
        2,
        "the pass's progress is counted"
    );
    assert!(
        deployment
            .runner
            .segments_to_reevaluate()
            .unwrap()
            .is_empty()
    );
    for email in ["li@example.com", "chen@example.com"] {
        let contact = deployment.contact_by_email(email);
        assert!(contact.profile.segments.contains("dormant"), "{email}");
    }
    fire_at(&mut deployment, T0);
    assert_eq!(
        sent_by(&deployment, "dormant-wake-up", "li@example.com").len(),
        1
    );
}

#[test]
fn an_event_naming_two_contacts_keeps_them_apart_and_records_it_until_a_person_merges_them() {
    let mut deployment = Deployment::new(T0);
    let front = deployment.serve_gateway();
    let gateway = front.addr.to_string();
    // One person known twice: by email from a form, by phone from the app.
    post_form(&gateway, "he@example.com", true);
    call(
        &gateway,
        "/v1/identify",
        json!({
            "type": "identify", "messageId": "id-app", "userId": "app-77",
            "traits": { "phone": "+8613700007777", "plan": "gold" },
        }),
    );
    fire_at(&mut deployment, T0);
    let by_email = deployment.contact_by_email("he@example.com");
    let nurture_enrollments = |d: &Deployment, id: &str| {
        d.store
            .enrollments_of_contact(id)
            .unwrap()
            .into_iter()
            .filter(|e| e.active)
            .map(|e| e.journey)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        nurture_enrollments(&deployment, &by_email.contact.id),
        ["lead-nurture"]
    );

    // The app now sends both: the event is the email's contact's (email is
    // looked up first), the phone stays with the app's contact, and the
    // conflict is recorded.
    call(
        &gateway,
        "/v1/identify",
        json!({
            "type": "identify", "messageId": "id-app-2", "userId": "app-77",
            "traits": { "phone": "+8613700007777", "email": "he@example.com" },
        }),
    );
    fire_at(&mut deployment, T0 + HOUR);
    let phone = dripline_store::Identity::Phone("+8613700007777".into());
    let by_phone = dripline_runner::contacts::ContactRecord::from_stored(
        deployment
            .store
            .contact_find_by_identity(&phone)
            .unwrap()
            .unwrap(),
    );
    assert_ne!(by_phone.contact.id, by_email.contact.id);
    let event_contact = deployment.contact_by_email("he@example.com");
    let conflicts = &event_contact.profile.attributes["identity_conflicts"];
    assert_eq!(
        conflicts[0]["contact"],
        by_phone.contact.id.as_str(),
        "{conflicts}"
    );

    // A person merges them by hand.
    let database = deployment.dir.path().join("dripline.db");
    let merge = std::process::Command::new(dripline_tests::dripline_binary())
        .args(["contacts", "--store"])
        .arg(format!("sqlite:{}", database.display()))
        .args(["merge", "he@example.com", &by_phone.contact.id])
        .output()
        .unwrap();
    assert!(
        merge.status.success(),
        "{}",
        String::from_utf8_lossy(&merge.stderr)
    );
    fire_at(&mut deployment, T0 + 2 * HOUR);
    let merged = deployment.contact_by_email("he@example.com");
    assert_eq!(merged.contact.id, by_email.contact.id);
    assert!(
        merged.contact.identities.contains(&phone),
        "{:?}",
        merged.contact.identities
    );
    assert_eq!(
        merged.profile.attributes["plan"], "gold",
        "the other's profile came along"
    );
    assert_eq!(
        merged.profile.attributes["merged_from"][0]["contact"],
        by_phone.contact.id.as_str()
    );
    // One enrollment in the nurture journey, not two; the other contact is
    // a pointer now.
    assert_eq!(
        nurture_enrollments(&deployment, &merged.contact.id),
        ["lead-nurture"]
    );
    let left = deployment
        .store
        .contact_get(&by_phone.contact.id)
        .unwrap()
        .unwrap();
    assert_eq!(left.profile["merged_into"], merged.contact.id.as_str());
    assert!(left.identities.is_empty());
}

/// A member the site identifies, reachable by email and SMS with consent, in
/// Shanghai.
fn member(gateway: &str, email: &str, phone: &str) {
    call(
        gateway,
        "/v1/identify",
        json!({
            "type": "identify", "messageId": format!("member-{email}"), "userId": email,
            "traits": {
                "email": email, "phone": phone, "timezone": "Asia/Shanghai", "first_name": "Mei",
                "consent": { "email": "granted", "sms": "granted" },
            },
        }),
    );
}

fn track_at(gateway: &str, id: &str, email: &str, event: &str, properties: Value, at: i64) {
    call(
        gateway,
        "/v1/track",
        json!({
            "type": "track", "messageId": id, "event": event, "properties": properties,
            "context": { "traits": { "email": email } }, "timestamp": rfc3339(at),
        }),
    );
}

fn steps_sent(deployment: &Deployment, journey: &str, email: &str) -> Vec<(String, i64)> {
    sent_by(deployment, journey, email)
        .into_iter()
        .map(|m| {
            (
                m.content["step"].as_str().unwrap_or_default().to_owned(),
                m.created_at_ms,
            )
        })
        .collect()
}

#[test]
fn a_member_gets_the_welcome_coupon_on_sign_up_and_the_miss_you_offer_the_moment_30_days_pass_without_a_login()
 {
    let mut deployment = Deployment::new(T0);
    let front = deployment.serve_gateway();
    let gateway = front.addr.to_string();
    member(&gateway, "mei@example.com", "+8613900005555");
    fire_at(&mut deployment, T0);
    track_at(
        &gateway,
        "signup-1",
        "mei@example.com",
        "member.signed_up",
        json!({}),
        T0,
    );
    let last_login = T0 - 10 * DAY;
    track_at(
        &gateway,
        "login-1",
        "mei@example.com",
        "user.logged_in",
        json!({}),
        last_login,
    );
    fire_at(&mut deployment, T0);
    assert_eq!(
        steps_sent(&deployment, "member-welcome", "mei@example.com"),
        [("welcome-coupon".to_owned(), T0)]
    );
    assert!(steps_sent(&deployment, "member-miss-you", "mei@example.com").is_empty());
    let lapsed = last_login + 30 * DAY + 1;
    fire_at(&mut deployment, lapsed - 2);
    assert!(steps_sent(&deployment, "member-miss-you", "mei@example.com").is_empty());
    fire_at(&mut deployment, lapsed);
    assert_eq!(
        steps_sent(&deployment, "member-miss-you", "mei@example.com"),
        [("miss-you-offer".to_owned(), lapsed)]
    );
}

#[test]
fn a_sale_coupon_is_announced_and_an_sms_goes_an_hour_before_it_expires_unless_an_order_came_first()
{
    let mut deployment = Deployment::new(T0);
    let front = deployment.serve_gateway();
    let gateway = front.addr.to_string();
    member(&gateway, "lan@example.com", "+8613900006666");
    member(&gateway, "bo@example.com", "+8613900007777");
    fire_at(&mut deployment, T0);
    let expires = T0 + 2 * DAY;
    for (email, code) in [
        ("lan@example.com", "SALE-LAN"),
        ("bo@example.com", "SALE-BO"),
    ] {
        track_at(
            &gateway,
            &format!("coupon-{code}"),
            email,
            "Coupon Issued",
            json!({ "code": code, "expires_at": rfc3339(expires), "phase": "peak" }),
            T0,
        );
    }
    fire_at(&mut deployment, T0);
    // Bo orders the next day.
    track_at(
        &gateway,
        "order-bo",
        "bo@example.com",
        "Order Paid",
        json!({ "total": 88 }),
        T0 + DAY,
    );
    fire_at(&mut deployment, T0 + DAY);
    fire_at(&mut deployment, expires - HOUR);
    assert_eq!(
        steps_sent(&deployment, "big-sale-coupon", "lan@example.com"),
        [
            ("announce".to_owned(), T0),
            ("expiring".to_owned(), expires - HOUR)
        ]
    );
    assert_eq!(
        steps_sent(&deployment, "big-sale-coupon", "bo@example.com"),
        [("announce".to_owned(), T0)]
    );
    let sms = sent_by(&deployment, "big-sale-coupon", "lan@example.com")
        .into_iter()
        .find(|m| m.channel == "sms")
        .unwrap();
    assert!(
        sms.content["body"]
            .as_str()
            .unwrap_or_default()
            .contains("SALE-LAN")
    );
}

#[test]
fn a_student_browsing_math_courses_is_tagged_and_gets_three_trial_lesson_emails_within_seven_days()
{
    let mut deployment = Deployment::new(T0);
    let front = deployment.serve_gateway();
    let gateway = front.addr.to_string();
    member(&gateway, "xiao@example.com", "+8613900008888");
    fire_at(&mut deployment, T0);
    call(
        &gateway,
        "/v1/page",
        json!({
            "type": "page", "messageId": "page-1", "name": "Algebra",
            "properties": { "path": "/courses/math/algebra" },
            "context": { "traits": { "email": "xiao@example.com" } },
        }),
    );
    call(
        &gateway,
        "/v1/page",
        json!({
            "type": "page", "messageId": "page-2", "name": "Geometry",
            "properties": { "path": "/courses/math/geometry" },
            "context": { "traits": { "email": "xiao@example.com" } },
        }),
    );
    fire_at(&mut deployment, T0);
    let student = deployment.contact_by_email("xiao@example.com");
    assert!(student.profile.tags.contains("interest:math"));
    for day in [2, 5, 7] {
        fire_at(&mut deployment, T0 + day * DAY);
    }
    assert_eq!(
        steps_sent(&deployment, "interest-math", "xiao@example.com"),
        [
            ("lesson-1".to_owned(), T0),
            ("lesson-2".to_owned(), T0 + 2 * DAY),
            ("lesson-3".to_owned(), T0 + 5 * DAY)
        ]
    );
}

#[test]
fn a_third_order_in_six_months_brings_an_advisor_call_and_one_order_a_points_offer_once_30_days_pass()
 {
    let mut deployment = Deployment::new(T0);
    let front = deployment.serve_gateway();
    let gateway = front.addr.to_string();
    member(&gateway, "gao@example.com", "+8613900009999");
    member(&gateway, "ma@example.com", "+8613900001234");
    fire_at(&mut deployment, T0);
    for (n, days_ago) in [(1, 60), (2, 40)] {
        track_at(
            &gateway,
            &format!("gao-{n}"),
            "gao@example.com",
            "Order Paid",
            json!({ "total": 300 }),
            T0 - days_ago * DAY,
        );
    }
    let ma_order = T0 - 10 * DAY;
    track_at(
        &gateway,
        "ma-1",
        "ma@example.com",
        "Order Paid",
        json!({ "total": 40 }),
        ma_order,
    );
    fire_at(&mut deployment, T0);
    assert!(steps_sent(&deployment, "value-high", "gao@example.com").is_empty());
    track_at(
        &gateway,
        "gao-3",
        "gao@example.com",
        "Order Paid",
        json!({ "total": 300 }),
        T0 + HOUR,
    );
    fire_at(&mut deployment, T0 + HOUR);
    let gao = steps_sent(&deployment, "value-high", "gao@example.com");
    assert_eq!(
        gao.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        ["advisor-call", "tailored-product"]
    );
    assert!(steps_sent(&deployment, "value-low", "ma@example.com").is_empty());
    let due = ma_order + 30 * DAY + 1;
    fire_at(&mut deployment, due);
    assert_eq!(
        steps_sent(&deployment, "value-low", "ma@example.com"),
        [("points-redemption".to_owned(), due)]
    );
}

#[test]
fn validate_checks_the_segments_and_that_a_journey_names_a_segment_that_exists() {
    let validate = |dir: &std::path::Path, files: &[&str]| {
        std::process::Command::new(dripline_tests::dripline_binary())
            .current_dir(dir)
            .arg("validate")
            .args(files)
            .output()
            .unwrap()
    };
    let shipped: Vec<String> = ["journeys", "segments"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(repo_root().join(dir)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.strip_prefix(repo_root()).unwrap().display().to_string())
        .collect();
    let files: Vec<&str> = shipped.iter().map(String::as_str).collect();
    let out = validate(repo_root(), &files);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("segments/dormant.toml: ok (segment dormant)"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("journeys")).unwrap();
    std::fs::create_dir_all(dir.path().join("segments")).unwrap();
    std::fs::write(
        dir.path().join("journeys/win-back.toml"),
        "name = \"Win back\"\nversion = 1\n[trigger]\nsegment = \"lapsed\"\n[[steps]]\nid = \"a\"\nexit = \"done\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("segments/bad.toml"),
        "name = \"Bad\"\ncondition = \"contact.facts[\"\n",
    )
    .unwrap();
    let out = validate(dir.path(), &["journeys/win-back.toml", "segments/bad.toml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("journeys/win-back.toml: trigger.segment: no segment \"lapsed\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("segments/bad.toml") && stdout.contains("invalid CEL"),
        "{stdout}"
    );
}
