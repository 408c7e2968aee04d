//! SCENARIOS.md 1 through the front door: a signed Shopify checkout over
//! loopback HTTP into the real `dripline up` binary, through the composed
//! gateway and Shopify trigger, the inbox, the runner, the real `send` step
//! and the delivery policy, to a real SMTP server. The clock runs an hour a
//! second, so the 3-hour email arrives in seconds. SCENARIOS.md 2 the same
//! way, from an HTML form and a track call to the email and the sales CRM;
//! a delivery from every trigger the gateway serves to a real SMTP server
//! and a real HTTP SMS provider; and what a stop does to a delivery in
//! flight.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use dripline_tests::http_sink::Receiver;
use dripline_tests::process::{Up, http};
use dripline_tests::smtp::{Mail, slow_smtp_server, smtp_server};
use dripline_tests::{deployment_root, repo_root};
use serde_json::{Value, json};

use dripline_tests::gateway::{
    SHOPIFY_SECRET as SECRET, TRACK_KEY as WRITE_KEY, signed_deliveries,
};

/// A deployment root in `dir`: the shipped journeys and templates, a policy
/// without quiet hours (the scaled clock would put the send in them), and
/// email through the SMTP server on `smtp_port`; the shipped components.
fn deployment(dir: &Path, smtp_port: u16) {
    deployment_root(dir);
    std::fs::write(dir.join("delivery.toml"), "max_per_day = 3\n").unwrap();
    std::fs::write(
        dir.join("channels.toml"),
        format!(
            "[channels.email]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {smtp_port}\n\
             from = \"Acme Mugs <shop@acme.example>\"\ntimeout = \"10s\"\n"
        ),
    )
    .unwrap();
}

/// A signed `checkouts/create` POSTed as Shopify sends it: (status, body).
fn post_checkout(gateway: &str) -> (u16, String) {
    post_shopify(
        gateway,
        "checkouts/create",
        "checkouts-create",
        "98880550-7158-44d4-b7cd-2c97c8a091b5",
    )
}

/// The stored case `case` POSTed as Shopify sends topic `topic`, signed.
fn post_shopify(gateway: &str, topic: &str, case: &str, event_id: &str) -> (u16, String) {
    let body = std::fs::read(
        repo_root()
            .join("tests/cases/webhooks/shopify")
            .join(format!("{case}.json")),
    )
    .unwrap();
    let signature = webhook_auth::sign(SECRET.as_bytes(), &body);
    let head = format!(
        "POST /webhooks/shopify HTTP/1.1\r\nContent-Type: application/json\r\n\
         X-Shopify-Topic: {topic}\r\nX-Shopify-Shop-Domain: acme-mugs.myshopify.com\r\n\
         X-Shopify-Event-Id: {event_id}\r\n\
         X-Shopify-Hmac-Sha256: {signature}"
    );
    http(gateway, &head, &body)
}

/// `dripline up` on the deployment in `dir`, the clock running an hour a
/// second, the gateway serving the repository's `spin.toml`.
fn up(dir: &Path) -> Up {
    up_at(dir, "3600")
}

/// [`up`] with the clock `speed` times the wall clock's.
fn up_at(dir: &Path, speed: &str) -> Up {
    Up::deployment(dir, speed)
}

/// The 3-hour reminders among `mails`.
fn reminders(mails: &[Mail]) -> usize {
    mails
        .iter()
        .filter(|m| m.data.contains("you left something in your cart"))
        .count()
}

#[test]
fn a_signed_shopify_checkout_reaches_the_shoppers_inbox_as_the_three_hour_email() {
    let (smtp_port, mails) = smtp_server();
    let dir = tempfile::tempdir().unwrap();
    deployment(dir.path(), smtp_port);
    let up = up(dir.path());
    let gateway = up.gateway();
    let (status, body) = post_checkout(&gateway);
    assert_eq!((status, body.as_str()), (200, r#"{"accepted":1}"#));

    // Three hours of the scaled clock are three seconds; allow for a slow
    // machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mail = loop {
        let found = mails
            .lock()
            .unwrap()
            .iter()
            .find(|m| m.data.contains("you left something in your cart"))
            .cloned();
        if let Some(mail) = found {
            break mail;
        }
        assert!(Instant::now() < deadline, "no email within a minute");
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(up);
    assert_eq!(mail.to, ["li.wei@example.com"]);
    assert_eq!(mail.from, "shop@acme.example");
    assert!(
        mail.data
            .contains("Subject: Li, you left something in your cart"),
        "{}",
        mail.data
    );
}

#[test]
fn a_shopper_who_pays_gets_the_thank_you_and_never_the_cart_reminder() {
    let (smtp_port, mails) = smtp_server();
    let dir = tempfile::tempdir().unwrap();
    deployment(dir.path(), smtp_port);
    let up = up(dir.path());
    let gateway = up.gateway();
    assert_eq!(post_checkout(&gateway).0, 200);
    // Paid (`orders/paid`, with no `orders/create` before it) well within
    // the three hours.
    let (status, body) = post_shopify(&gateway, "orders/paid", "orders-paid", "paid-1");
    assert_eq!(status, 200, "{body}");
    within_a_minute("the thank-you email", || {
        mails
            .lock()
            .unwrap()
            .iter()
            .find(|m| m.data.contains("Thank you for your order"))
            .cloned()
    });
    // Five more hours of the scaled clock: the 3-hour reminder's time passes.
    std::thread::sleep(Duration::from_secs(5));
    drop(up);
    assert_eq!(reminders(&mails.lock().unwrap()), 0);
}

#[test]
fn a_track_call_claiming_the_order_does_not_end_a_shoppers_cart_recovery() {
    let (smtp_port, mails) = smtp_server();
    let dir = tempfile::tempdir().unwrap();
    deployment(dir.path(), smtp_port);
    let up = up(dir.path());
    let gateway = up.gateway();
    assert_eq!(post_checkout(&gateway).0, 200);
    // The track API's key can sit in a browser: an "order" from it names the
    // checkout, but the journey's goal asks for the store's order.
    let (status, body) = track_with(
        &gateway,
        "Order Paid",
        "li.wei@example.com",
        json!({ "checkout_token": "8a2f5c1e0b7d4e9f9c3a6b5d4e3f2a1b", "total_price": "1.00" }),
    );
    assert_eq!(status, 200, "{body}");
    within_a_minute("the 3-hour reminder", || {
        (reminders(&mails.lock().unwrap()) == 1).then_some(())
    });
    drop(up);
}

#[test]
fn an_order_that_arrives_before_its_checkout_keeps_the_shopper_out_of_the_cart_journey() {
    let (smtp_port, mails) = smtp_server();
    let dir = tempfile::tempdir().unwrap();
    deployment(dir.path(), smtp_port);
    let up = up(dir.path());
    let gateway = up.gateway();
    // Webhooks are not ordered: the order for the checkout comes first.
    let (status, body) = post_shopify(&gateway, "orders/paid", "orders-paid", "paid-1");
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(post_checkout(&gateway).0, 200);
    let store = dripline_tests::deployment_store(&dir.path().join("data/dripline.db"));
    within_a_minute("the refusal counted", || {
        use dripline_store::prelude::*;
        let refused = store
            .metric_get("journey.abandoned-checkout.-.goal_already_met")
            .unwrap();
        (refused == 1).then_some(())
    });
    // Five hours of the scaled clock: no reminder of any kind.
    std::thread::sleep(Duration::from_secs(5));
    drop(up);
    assert_eq!(reminders(&mails.lock().unwrap()), 0);
    use dripline_store::prelude::*;
    let shopper = store
        .contact_find_by_identity(&dripline_store::Identity::Email(
            "li.wei@example.com".into(),
        ))
        .unwrap()
        .unwrap();
    assert!(
        store
            .enrollments_of_contact(&shopper.id)
            .unwrap()
            .is_empty(),
        "never enrolled"
    );
}

#[test]
fn two_shoppers_whose_checkouts_share_a_cart_token_stay_two_contacts() {
    let (smtp_port, _mails) = smtp_server();
    let dir = tempfile::tempdir().unwrap();
    deployment(dir.path(), smtp_port);
    let up = up_at(dir.path(), "1");
    let gateway = up.gateway();
    let first: Value = serde_json::from_slice(
        &std::fs::read(repo_root().join("tests/cases/webhooks/shopify/checkouts-create.json"))
            .unwrap(),
    )
    .unwrap();
    // Another shopper on the same cart (a shared device): their own email,
    // phone, customer and checkout; the cart token is the same.
    let mut second = first.clone();
    second["email"] = json!("sam.jones@example.com");
    second["token"] = json!("b7c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5");
    second["id"] = json!(35550243635999_u64);
    second["customer"]["id"] = json!(7385439999_u64);
    second["customer"]["email"] = json!("sam.jones@example.com");
    second["shipping_address"]["phone"] = json!("+1 212 555 0199");
    second["billing_address"]["phone"] = json!("+1 212 555 0199");
    second["buyer_accepts_sms_marketing"] = json!(true);
    for (n, body) in [&first, &second].into_iter().enumerate() {
        let body = body.to_string().into_bytes();
        let head = format!(
            "POST /webhooks/shopify HTTP/1.1\r\nContent-Type: application/json\r\n\
             X-Shopify-Topic: checkouts/create\r\nX-Shopify-Event-Id: cart-{n}\r\n\
             X-Shopify-Hmac-Sha256: {}",
            webhook_auth::sign(SECRET.as_bytes(), &body)
        );
        assert_eq!(http(&gateway, &head, &body).0, 200);
    }
    use dripline_store::prelude::*;
    let store = dripline_tests::deployment_store(&dir.path().join("data/dripline.db"));
    let find = |email: &str| {
        store
            .contact_find_by_identity(&dripline_store::Identity::Email(email.into()))
            .unwrap()
    };
    let sam = within_a_minute("the second shopper's contact", || {
        find("sam.jones@example.com")
    });
    drop(up);
    let li = find("li.wei@example.com").unwrap();
    assert_ne!(sam.id, li.id, "two contacts");
    let phone = dripline_store::Identity::Phone("+12125550199".into());
    assert!(sam.identities.contains(&phone), "{sam:?}");
    assert!(!li.identities.contains(&phone), "{li:?}");
    assert_eq!(sam.profile["consent"]["sms"], "granted");
}

#[test]
fn a_later_checkout_that_says_nothing_about_consent_leaves_an_opt_out_in_place() {
    let (smtp_port, _mails) = smtp_server();
    let dir = tempfile::tempdir().unwrap();
    deployment(dir.path(), smtp_port);
    let up = up_at(dir.path(), "1");
    let gateway = up.gateway();
    let checkout: Value = serde_json::from_slice(
        &std::fs::read(repo_root().join("tests/cases/webhooks/shopify/checkouts-create.json"))
            .unwrap(),
    )
    .unwrap();
    let signed_post = |topic: &str, event_id: &str, body: &Value| {
        let body = body.to_string().into_bytes();
        let head = format!(
            "POST /webhooks/shopify HTTP/1.1\r\nContent-Type: application/json\r\n\
             X-Shopify-Topic: {topic}\r\nX-Shopify-Event-Id: {event_id}\r\n\
             X-Shopify-Hmac-Sha256: {}",
            webhook_auth::sign(SECRET.as_bytes(), &body)
        );
        http(&gateway, &head, &body)
    };
    // The shopper has unsubscribed from email in the store ...
    let mut opted_out = checkout.clone();
    opted_out["customer"]["email_marketing_consent"]["state"] = json!("unsubscribed");
    assert_eq!(signed_post("checkouts/create", "c-1", &opted_out).0, 200);
    let consent = |store: &dripline_store::SqliteStore| {
        use dripline_store::prelude::*;
        let identity = dripline_store::Identity::Email("li.wei@example.com".into());
        store
            .contact_find_by_identity(&identity)
            .unwrap()
            .map(|c| c.profile["consent"]["email"].clone())
    };
    let store = dripline_tests::deployment_store(&dir.path().join("data/dripline.db"));
    within_a_minute("the opt-out", || {
        consent(&store).filter(|state| state == "denied")
    });
    // ... and a later update of the checkout records nothing about consent.
    let mut silent = checkout.clone();
    silent["customer"]
        .as_object_mut()
        .unwrap()
        .remove("email_marketing_consent");
    silent["updated_at"] = json!("2024-03-01T10:30:00+08:00");
    assert_eq!(signed_post("checkouts/update", "c-2", &silent).0, 200);
    within_a_minute("the update processed", || {
        use dripline_store::prelude::*;
        store.inbox_peek(10).unwrap().is_empty().then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    drop(up);
    assert_eq!(consent(&store), Some(json!("denied")));
}

#[test]
fn sigterm_during_a_slow_delivery_finishes_it_within_the_grace_period_and_nothing_is_sent_twice() {
    // The provider takes three seconds to accept a message; the grace
    // period is ten.
    let (smtp_port, mails, started) = slow_smtp_server(Duration::from_secs(3));
    let dir = tempfile::tempdir().unwrap();
    deployment(dir.path(), smtp_port);
    let mut first = up(dir.path());
    let gateway = first.gateway();
    let admin = first.admin();
    let (status, _) = post_checkout(&gateway);
    assert_eq!(status, 200);

    let deadline = Instant::now() + Duration::from_secs(60);
    while started.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "no delivery began within a minute"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    first.terminate();
    let stopping = Instant::now();
    // The signal is handled a moment after `kill` returns; readiness says
    // so once the gateway refuses (it is told first).
    within_a_minute("readiness saying stopping", || {
        let (status, body) = http(&admin, "GET /health/ready HTTP/1.1", b"");
        (status == 503 && body.contains("stopping")).then_some(())
    });
    // While it finishes the delivery, webhooks are refused so that the
    // provider retries them later.
    let (status, body) = post_checkout(&gateway);
    assert_eq!(status, 503, "{body}");
    let exit = first.exited_within(Duration::from_secs(15));
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(11),
        "stopped after {:?}",
        stopping.elapsed()
    );
    assert_eq!(
        reminders(&mails.lock().unwrap()),
        1,
        "the delivery in flight was finished"
    );

    // The next process on the same data finds the message recorded as sent:
    // it does not deliver it again (two more hours of the scaled clock pass).
    let second = up(dir.path());
    let _ = second.admin();
    std::thread::sleep(Duration::from_secs(4));
    drop(second);
    assert_eq!(reminders(&mails.lock().unwrap()), 1, "sent once");
}

/// Waits up to a minute for `found` to give something.
fn within_a_minute<T>(what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: nothing within a minute");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A signed track call naming `email`, as Segment's libraries send it.
fn track(gateway: &str, event: &str, email: &str) -> (u16, String) {
    track_with(gateway, event, email, json!({}))
}

/// [`track`] with the event's `properties`.
fn track_with(gateway: &str, event: &str, email: &str, properties: Value) -> (u16, String) {
    let body = json!({
        "type": "track",
        "messageId": format!("msg-{event}-{email}"),
        "event": event,
        "properties": properties,
        "context": { "traits": { "email": email } },
    })
    .to_string();
    let head = format!(
        "POST /v1/track HTTP/1.1\r\nContent-Type: application/json\r\nAuthorization: Bearer {WRITE_KEY}"
    );
    http(gateway, &head, body.as_bytes())
}

/// The first link in `text` that starts with `prefix`, up to a space, a
/// quote or a line end.
fn link_in(text: &str, prefix: &str) -> Option<String> {
    let start = text.find(prefix)?;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

#[test]
fn a_whitepaper_download_from_an_html_form_gets_its_paper_once_the_address_confirms_and_a_trial_reaches_the_sales_crm()
 {
    let (smtp_port, mails) = smtp_server();
    let crm = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    deployment(dir.path(), smtp_port);
    let delivery = dir.path().join("delivery.toml");
    let mut text = std::fs::read_to_string(&delivery).unwrap();
    text.push_str(dripline_tests::LOCAL_TRACKING);
    std::fs::write(&delivery, text).unwrap();
    // The shipped journey's CRM, moved to the receiver on loopback.
    let journey = dir.path().join("journeys/lead-nurture.toml");
    let text = std::fs::read_to_string(&journey)
        .unwrap()
        .replace(
            "https://crm.example.com/api/tasks",
            &format!("{}/api/tasks", crm.url),
        )
        .replace("[\"crm.example.com\"]", "[\"127.0.0.1\"]");
    std::fs::write(&journey, text).unwrap();
    let channels = dir.path().join("channels.toml");
    let mut text = std::fs::read_to_string(&channels).unwrap();
    text.push_str("\n[http_out]\nsecret = \"the CRM's shared secret\"\n");
    std::fs::write(&channels, text).unwrap();
    let up = up_at(dir.path(), "1");
    let gateway = up.gateway();
    let public = up.admin();

    // The honeypot field is there, empty, as a person leaves it.
    let form = b"email=Li.Wei%40Example.com&company=Acme+Mugs&email_consent=on&_gotcha=";
    let (status, body) = http(
        &gateway,
        "POST /forms/whitepaper-download HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        form,
    );
    assert_eq!(status, 200, "{body}");
    let ask = within_a_minute("the confirmation email", || {
        mails
            .lock()
            .unwrap()
            .iter()
            .find(|m| m.data.contains("Confirm your address"))
            .cloned()
    });
    assert_eq!(ask.to, ["li.wei@example.com"]);
    assert!(!ask.data.contains("lifecycle-marketing-playbook.pdf"));
    // The body as the mail client shows it (lettre sends it quoted-printable).
    let shown = quoted_printable::decode(&ask.data, quoted_printable::ParseMode::Robust).unwrap();
    let shown = String::from_utf8_lossy(&shown);
    let link = link_in(&shown, "http://127.0.0.1:8080/y/").expect("a confirmation link");
    let link = link.replace("http://127.0.0.1:8080", &format!("http://{public}"));

    // A scanner's GET shows the button and confirms nothing.
    let client: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut page = client.get(&link).call().unwrap();
    assert_eq!(page.status(), 200, "{link}");
    assert!(
        page.body_mut()
            .read_to_string()
            .unwrap()
            .contains("<button")
    );
    std::thread::sleep(Duration::from_secs(2));
    let papers = || {
        mails
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.data.contains("Your whitepaper"))
            .cloned()
            .collect::<Vec<Mail>>()
    };
    assert!(papers().is_empty(), "a GET confirmed the address");

    assert_eq!(client.post(&link).send_empty().unwrap().status(), 200);
    let paper = within_a_minute("the whitepaper email", || papers().pop());
    assert_eq!(paper.to, ["li.wei@example.com"]);
    assert!(paper.data.contains("lifecycle-marketing-playbook.pdf"));

    let (status, body) = track(&gateway, "Trial Started", "li.wei@example.com");
    assert_eq!(status, 200, "{body}");
    let task = within_a_minute("the sales task", || crm.hits().into_iter().next());
    drop(up);
    assert_eq!(task.path, "/api/tasks");
    let posted: Value = serde_json::from_str(&task.body).unwrap();
    assert!(
        posted
            .to_string()
            .contains("li.wei@example.com started a trial"),
        "{posted}"
    );
    assert!(
        task.headers.contains_key("x-dripline-signature"),
        "{task:?}"
    );
}

/// Journeys that answer every trigger's event with a transactional message,
/// so that each delivery shows at the SMTP server or the SMS provider.
const ANSWERING_JOURNEYS: &[(&str, &str)] = &[
    (
        "form-thanks.toml",
        r#"name = "Form thanks"
version = 1
[trigger]
event = "form.submitted"
[entry]
reentry = "always"
[[steps]]
id = "thanks"
uses = "send"
config = { channel = "email", template = "thanks", category = "transactional" }
"#,
    ),
    (
        "form-text.toml",
        r#"name = "Form text"
version = 1
[trigger]
event = "form.submitted"
filter = "has(trigger.identities.phone)"
[entry]
reentry = "always"
[[steps]]
id = "text"
uses = "send"
config = { channel = "sms", template = "text", category = "transactional" }
"#,
    ),
    (
        "receipt.toml",
        r#"name = "Receipt"
version = 1
[trigger]
event = "order.completed"
[entry]
reentry = "always"
[[steps]]
id = "receipt"
uses = "send"
config = { channel = "email", template = "receipt", category = "transactional" }
"#,
    ),
];

#[test]
fn every_trigger_the_gateway_serves_turns_a_signed_delivery_into_a_message() {
    let (smtp_port, mails) = smtp_server();
    let sms = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    deployment(dir.path(), smtp_port);
    let journeys = dir.path().join("journeys");
    std::fs::remove_dir_all(&journeys).unwrap();
    std::fs::create_dir_all(&journeys).unwrap();
    for (file, text) in ANSWERING_JOURNEYS {
        std::fs::write(journeys.join(file), text).unwrap();
    }
    let templates = dir.path().join("templates");
    std::fs::write(
        templates.join("thanks.email.liquid"),
        "---\nsubject: Thanks for the {{ trigger.source }} form\n---\nWe have your answers.\n",
    )
    .unwrap();
    std::fs::write(
        templates.join("text.sms.liquid"),
        "Thanks, we have your answers.\n",
    )
    .unwrap();
    std::fs::write(
        templates.join("receipt.email.liquid"),
        "---\nsubject: Your receipt\n---\nThanks for your order.\n",
    )
    .unwrap();
    let channels = dir.path().join("channels.toml");
    let mut text = std::fs::read_to_string(&channels).unwrap();
    text.push_str(&format!(
        "\n[channels.sms]\nkind = \"sms\"\nurl = \"{}/send\"\n",
        sms.url
    ));
    std::fs::write(&channels, text).unwrap();
    let up = up_at(dir.path(), "1");
    let gateway = up.gateway();

    // The Shopify checkout goes through its own journey in the tests above.
    let deliveries: Vec<(String, Vec<u8>)> = signed_deliveries()
        .into_iter()
        .filter(|(head, _)| !head.starts_with("POST /webhooks/shopify"))
        .collect();
    for (head, body) in &deliveries {
        let (status, answer) = http(&gateway, head, body);
        assert!(status == 200 || status == 303, "{head}: {status} {answer}");
    }

    let mut received = within_a_minute("four emails", || {
        let mails = mails.lock().unwrap();
        (mails.len() >= 4).then(|| {
            mails
                .iter()
                .map(|m| (m.to.join(","), m.data.contains("Your receipt")))
                .collect::<Vec<_>>()
        })
    });
    let texts = within_a_minute("three SMS", || {
        let hits = sms.hits();
        (hits.len() >= 3).then_some(hits)
    });
    drop(up);
    received.sort();
    assert_eq!(
        received,
        [
            ("alice.martin@example.org".to_string(), false),
            ("laura.chen@acme.example".to_string(), false),
            ("li.wei@example.com".to_string(), false),
            ("peter.gibbons@initech.example".to_string(), true),
        ]
    );
    // The form posts that named a phone: Typeform's, Tally's and the HTML
    // form's.
    for phone in ["+15555550100", "+33612345678", "+8613800138000"] {
        let text = texts.iter().find(|t| t.body.contains(phone));
        let text = text.unwrap_or_else(|| panic!("no SMS to {phone}: {texts:?}"));
        assert!(
            text.body.contains("Thanks, we have your answers."),
            "{text:?}"
        );
    }
    assert_eq!(texts.len(), 3, "{texts:?}");
}
