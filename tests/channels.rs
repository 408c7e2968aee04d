//! Delivery, end to end: the real `send` and `webhook` components queue
//! messages, the dispatcher delivers them to real servers on loopback (an SMTP
//! server, HTTP receivers standing in for an SMS provider, a WeCom robot, a CRM
//! and an alert hook), and the outbox, the metrics and the receivers show what
//! happened. Time is a manual clock; retries are due when the test moves it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dripline_clock::Clock as _;
use dripline_delivery::Dispatcher;
use dripline_delivery::OutboxRecord;
use dripline_delivery::channels::{
    Channel, Channels, ChannelsConfig, Configured, DeliveryError, Receipt,
};
use dripline_store::{Contact, OutboxMessage};
use dripline_tests::Deployment;
use dripline_tests::http_sink::Receiver;
use dripline_tests::smtp::smtp_server;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const T0: i64 = 1_795_000_000_000;

// ----- the deployment -----

/// A journey that sends one message on `channel` to whoever pings.
fn send_journey(channel: &str) -> String {
    format!(
        r#"
name = "Ping"
version = 1

[trigger]
event = "test.ping"

[[steps]]
id = "say"
uses = "send"
config = {{ channel = "{channel}", template = "ping", category = "transactional" }}
"#
    )
}

/// A journey whose one step posts to `url` through the `webhook` step.
fn post_journey(url: &str, grant: &[&str]) -> String {
    format!(
        r#"
name = "Ping"
version = 1

[trigger]
event = "test.ping"

[[steps]]
id = "tell-crm"
uses = "webhook"

[steps.config]
url = "{url}"
allowed_hosts = {grant:?}
body = {{ lead = "{{{{ contact.email }}}}", score = "{{{{ contact.score }}}}", form = "{{{{ trigger.properties.form }}}}" }}
"#
    )
}

/// A deployment of `journey` (as `ping.toml`) with `channels` as its
/// channels.toml, and the `ping` templates.
fn deployment(journey: &str, channels: Option<&str>) -> (tempfile::TempDir, Deployment) {
    let files = tempfile::tempdir().unwrap();
    let journeys = files.path().join("journeys");
    let templates = files.path().join("templates");
    std::fs::create_dir_all(&journeys).unwrap();
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(journeys.join("ping.toml"), journey).unwrap();
    std::fs::write(
        templates.join("ping.email.liquid"),
        "---\nsubject: Your order shipped, {{ trigger.properties.first_name }}\n---\n\
         Hi {{ trigger.properties.first_name }}, your order is on its way.\n\
         --- html\n<p>Hi {{ trigger.properties.first_name }}, your order is on its way.</p>\n",
    )
    .unwrap();
    std::fs::write(
        templates.join("ping.liquid"),
        "Hi {{ trigger.properties.first_name }}, your order is on its way.",
    )
    .unwrap();
    let deployment = Deployment::with_files(&journeys, &templates, channels, T0);
    (files, deployment)
}

fn ping(deployment: &mut Deployment, n: usize, email: &str, phone: Option<&str>) {
    let mut identities = json!({ "email": email });
    if let Some(phone) = phone {
        identities["phone"] = json!(phone);
    }
    deployment.receive(json!({
        "id": format!("ping-{n}"), "source": "api", "name": "test.ping",
        "identities": identities,
        "properties": { "first_name": "Li", "form": "whitepaper" },
        "occurred_at": T0, "received_at": T0
    }));
    let now = deployment.clock.now_ms();
    deployment.run_at(now);
}

/// A deployment of the one-send journey on `sms`, whose provider is a
/// loopback receiver answering `statuses` first (then 200); `extra` is
/// appended to the `[channels.sms]` table.
fn sms_deployment(statuses: &[u16], extra: &str) -> (Receiver, tempfile::TempDir, Deployment) {
    let provider = Receiver::start();
    provider.answer_with(statuses);
    let channels = format!(
        "[channels.sms]\nkind = \"sms\"\nurl = \"{}/send\"\n{extra}",
        provider.url
    );
    let (files, deployment) = deployment(&send_journey("sms"), Some(&channels));
    (provider, files, deployment)
}

fn only_message(deployment: &Deployment) -> OutboxMessage {
    let outbox = deployment.outbox();
    assert_eq!(outbox.len(), 1, "{outbox:#?}");
    outbox.into_iter().next().unwrap()
}

// ----- the tests -----

#[test]
fn an_email_reaches_a_real_smtp_server_with_its_recipient_subject_and_both_bodies() {
    let (port, mails) = smtp_server();
    let channels = format!(
        r#"
[channels.email]
kind = "smtp"
host = "127.0.0.1"
port = {port}
from = "Example Shop <shop@example.com>"
timeout = "10s"
"#
    );
    let (_files, mut deployment) = deployment(&send_journey("email"), Some(&channels));
    ping(&mut deployment, 1, "li@example.com", None);
    let report = deployment.dispatch_at(T0);
    assert_eq!(report.sent, 1, "{report:?} {:#?}", deployment.outbox());

    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.from, "shop@example.com");
    assert_eq!(mail.to, ["li@example.com"]);
    assert!(
        mail.data.contains("Subject: Your order shipped, Li"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("To: li@example.com"), "{}", mail.data);
    assert!(mail.data.contains("multipart/alternative"), "{}", mail.data);
    assert!(
        mail.data.contains("Hi Li, your order is on its way."),
        "{}",
        mail.data
    );
    assert!(
        mail.data
            .contains("<p>Hi Li, your order is on its way.</p>"),
        "{}",
        mail.data
    );

    let message = only_message(&deployment);
    assert_eq!((message.status.as_str(), message.attempts), ("sent", 1));
    assert_eq!(deployment.store.metric_get("sends.ping.sent").unwrap(), 1);
}

#[test]
fn an_email_to_a_contact_without_an_address_is_suppressed_with_the_reason_and_never_dispatched() {
    let (port, mails) = smtp_server();
    let channels = format!(
        "[channels.email]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\nfrom = \"shop@example.com\"\n"
    );
    let (_files, mut deployment) = deployment(&send_journey("email"), Some(&channels));
    // Known by phone only: the policy sees there is nobody to write to.
    deployment.receive(json!({
        "id": "ping-phone", "source": "api", "name": "test.ping",
        "identities": { "phone": "+8613800138000" },
        "properties": { "first_name": "Li" }, "occurred_at": T0, "received_at": T0
    }));
    deployment.run_at(T0);
    let report = deployment.dispatch_at(T0);
    assert_eq!((report.sent, report.failed), (0, 0), "{report:?}");
    assert!(mails.lock().unwrap().is_empty());
    let message = only_message(&deployment);
    assert_eq!(
        (message.status.as_str(), message.attempts),
        ("suppressed", 0)
    );
    assert_eq!(
        message.content["delivery"],
        json!({ "status": "suppressed", "reason": "no email address for email" })
    );
}

#[test]
fn an_sms_is_posted_to_the_provider_with_the_phone_in_e164_the_text_and_the_auth_header() {
    let provider = Receiver::start();
    let channels = format!(
        r#"
[channels.sms]
kind = "sms"
url = "{}/v1/send"
auth_header = "X-Api-Key"
auth = "sms-token-123"
phone_field = "to"
body_field = "text"
fields = {{ sender = "EXSHOP" }}
"#,
        provider.url
    );
    let (_files, mut deployment) = deployment(&send_journey("sms"), Some(&channels));
    ping(&mut deployment, 1, "li@example.com", Some("+8613800138000"));
    assert_eq!(deployment.dispatch_at(T0).sent, 1);

    let hits = provider.hits();
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit.path, "/v1/send");
    assert_eq!(hit.headers["x-api-key"], "sms-token-123");
    assert_eq!(hit.headers["content-type"], "application/json");
    let message = only_message(&deployment);
    assert_eq!(hit.headers["idempotency-key"], message.idempotency_key);
    let body: Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(
        body,
        json!({ "to": "+8613800138000", "text": "Hi Li, your order is on its way.", "sender": "EXSHOP" })
    );
}

#[test]
fn an_sms_provider_that_takes_forms_gets_a_form() {
    let provider = Receiver::start();
    let channels = format!(
        "[channels.sms]\nkind = \"sms\"\nformat = \"form\"\nurl = \"{}/send\"\n",
        provider.url
    );
    let (_files, mut deployment) = deployment(&send_journey("sms"), Some(&channels));
    ping(&mut deployment, 1, "li@example.com", Some("+8613800138000"));
    assert_eq!(deployment.dispatch_at(T0).sent, 1);
    let hit = &provider.hits()[0];
    assert_eq!(
        hit.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert!(
        hit.body.starts_with("body=Hi+Li%2C+your+order"),
        "{}",
        hit.body
    );
    assert!(
        hit.body.ends_with("&phone=%2B8613800138000"),
        "{}",
        hit.body
    );
}

#[test]
fn a_wecom_robot_gets_a_text_message_and_its_errcode_is_read() {
    let robot = Receiver::start();
    let channels = format!(
        "[channels.wecom]\nkind = \"wecom\"\nurl = \"{}/cgi-bin/webhook/send?key=robot-key\"\n",
        robot.url
    );
    let (_files, mut deployment) = deployment(&send_journey("wecom"), Some(&channels));
    ping(&mut deployment, 1, "li@example.com", None);
    robot.ok_body("{\"errcode\":0,\"errmsg\":\"ok\"}");
    assert_eq!(deployment.dispatch_at(T0).sent, 1);
    let hit = &robot.hits()[0];
    assert_eq!(hit.path, "/cgi-bin/webhook/send?key=robot-key");
    let body: Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(
        body,
        json!({ "msgtype": "text", "text": { "content": "Hi Li, your order is on its way." } })
    );

    // A bad key: HTTP 200 with an errcode, a permanent failure that does not
    // print the key.
    robot.ok_body("{\"errcode\":93000,\"errmsg\":\"invalid webhook url\"}");
    ping(&mut deployment, 2, "wang@example.com", None);
    assert_eq!(deployment.dispatch_at(T0).failed, 1);
    let failed = deployment.outbox().pop().unwrap();
    let error = failed.last_error.unwrap();
    assert!(
        error.contains("93000") && !error.contains("robot-key"),
        "{error}"
    );
}

#[test]
fn a_send_on_a_webhook_channel_posts_the_message_and_the_contact_signed() {
    let crm = Receiver::start();
    let channels = format!(
        "[channels.webhook]\nkind = \"webhook\"\nurl = \"{}/hooks/dripline\"\nsecret = \"whsec\"\n",
        crm.url
    );
    let (_files, mut deployment) = deployment(&send_journey("webhook"), Some(&channels));
    ping(&mut deployment, 1, "li@example.com", Some("+8613800138000"));
    assert_eq!(deployment.dispatch_at(T0).sent, 1);
    let hit = &crm.hits()[0];
    let body: Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(body["contact"]["email"], "li@example.com");
    assert_eq!(body["contact"]["phone"], "+8613800138000");
    assert_eq!(body["message"]["body"], "Hi Li, your order is on its way.");
    assert_eq!(body["journey"], "ping");
    assert_eq!(
        hit.headers["x-dripline-signature"],
        sign(b"whsec", hit.body.as_bytes())
    );
}

#[test]
fn a_failed_sms_is_retried_once_after_two_hours_then_sent() {
    let (provider, _files, mut deployment) =
        sms_deployment(&[503], "retry = { retries = 1, backoff = \"2h\" }\n");
    ping(&mut deployment, 1, "li@example.com", Some("+8613800138000"));

    assert_eq!(deployment.dispatch_at(T0).retried, 1);
    let waiting = only_message(&deployment);
    assert_eq!(
        (
            waiting.status.as_str(),
            waiting.attempts,
            waiting.deliver_at_ms
        ),
        ("pending", 1, T0 + 2 * HOUR)
    );
    assert!(waiting.last_error.unwrap().contains("503"));

    assert_eq!(
        deployment.dispatch_at(T0 + 2 * HOUR - 1).handled(),
        0,
        "not before 2 h"
    );
    assert_eq!(deployment.dispatch_at(T0 + 2 * HOUR).sent, 1);
    let sent = only_message(&deployment);
    assert_eq!(
        (
            sent.status.as_str(),
            sent.attempts,
            sent.last_error.as_deref()
        ),
        ("sent", 2, None)
    );
    let hits = provider.hits();
    assert_eq!(hits.len(), 2);
    assert_eq!(
        hits[0].headers["idempotency-key"],
        hits[1].headers["idempotency-key"]
    );
    assert_eq!(
        deployment.store.metric_get("sends.ping.retried").unwrap(),
        1
    );
}

#[test]
fn an_sms_whose_one_retry_also_fails_is_given_up_with_the_last_error() {
    let (provider, _files, mut deployment) =
        sms_deployment(&[503, 429], "retry = { retries = 1, backoff = \"2h\" }\n");
    ping(&mut deployment, 1, "li@example.com", Some("+8613800138000"));
    deployment.dispatch_at(T0);
    assert_eq!(deployment.dispatch_at(T0 + 2 * HOUR).failed, 1);
    assert_eq!(deployment.dispatch_at(T0 + 100 * HOUR).handled(), 0);
    let failed = only_message(&deployment);
    assert_eq!((failed.status.as_str(), failed.attempts), ("failed", 2));
    let error = failed.last_error.unwrap();
    assert!(
        error.contains("429") && error.contains("gave up after 2 attempts"),
        "{error}"
    );
    assert_eq!(provider.hits().len(), 2);
    assert_eq!(deployment.store.metric_get("sends.ping.failed").unwrap(), 1);
}

#[test]
fn a_rejected_request_is_a_permanent_failure_and_is_not_retried() {
    let (provider, _files, mut deployment) = sms_deployment(&[422], "");
    ping(&mut deployment, 1, "li@example.com", Some("+8613800138000"));
    assert_eq!(deployment.dispatch_at(T0).failed, 1);
    assert_eq!(deployment.dispatch_at(T0 + 100 * HOUR).handled(), 0);
    assert_eq!(provider.hits().len(), 1);
    let failed = only_message(&deployment);
    assert_eq!((failed.status.as_str(), failed.attempts), ("failed", 1));
    assert!(failed.last_error.as_deref().unwrap().contains("422"));
    assert_eq!(deployment.store.metric_get("sends.ping.failed").unwrap(), 1);
    // Beside the enrollment: a record a marketer's tools list by prefix.
    let enrollment = failed.content["enrollment"].as_str().unwrap();
    let records = deployment
        .store
        .kv_scan_prefix("dripline", &format!("failed-sends/{enrollment}/"), None, 10)
        .unwrap();
    assert_eq!(records.len(), 1);
    let record: Value = serde_json::from_slice(&records[0].1).unwrap();
    assert_eq!(
        (record["step"].as_str(), record["channel"].as_str()),
        (Some("say"), Some("sms"))
    );
}

#[test]
fn a_send_on_a_channel_the_file_does_not_configure_fails_with_the_reason() {
    let (_files, mut deployment) =
        deployment(&send_journey("wecom"), Some("[retry]\nretries = 0\n"));
    ping(&mut deployment, 1, "li@example.com", None);
    assert_eq!(deployment.dispatch_at(T0).failed, 1);
    let error = only_message(&deployment).last_error.unwrap();
    assert!(
        error.contains("channel `wecom` is not configured"),
        "{error}"
    );
}

#[test]
fn without_a_channels_file_messages_stay_on_the_machine_and_are_marked_delivered() {
    let (_files, mut deployment) = deployment(&send_journey("sms"), None);
    ping(&mut deployment, 1, "li@example.com", Some("+8613800138000"));
    assert_eq!(deployment.dispatch_at(T0).sent, 1);
    assert_eq!(only_message(&deployment).status.as_str(), "sent");
}

#[test]
fn an_alert_fires_once_when_over_five_percent_of_a_journeys_sends_fail() {
    let provider = Receiver::start();
    let ops = Receiver::start();
    let channels = format!(
        r#"
[alerts]
threshold = 0.05
window = "1h"
min_sample = 20
webhook = "{}/alerts"

[channels.sms]
kind = "sms"
url = "{}/send"
"#,
        ops.url, provider.url
    );
    let (_files, mut deployment) = deployment(&send_journey("sms"), Some(&channels));
    // The provider refuses 2 of 20 sends for good: 10% fail.
    let mut statuses = [200; 20];
    statuses[3] = 400;
    statuses[13] = 400;
    provider.answer_with(&statuses);
    for n in 0..20 {
        let phone = format!("+86138001380{n:02}");
        ping(
            &mut deployment,
            n,
            &format!("c{n}@example.com"),
            Some(&phone),
        );
    }
    let report = deployment.dispatch_at(T0);
    assert_eq!((report.sent, report.failed), (18, 2));
    assert_eq!(deployment.store.metric_get("alerts.ping").unwrap(), 1);
    let alerts = ops.hits();
    assert_eq!(alerts.len(), 1);
    let alert: Value = serde_json::from_str(&alerts[0].body).unwrap();
    assert_eq!(
        (
            alert["journey"].as_str(),
            alert["sends"].as_u64(),
            alert["failures"].as_u64()
        ),
        (Some("ping"), Some(20), Some(2))
    );

    // More failures in the same window raise nothing new.
    provider.answer_with(&[400]);
    ping(
        &mut deployment,
        20,
        "c20@example.com",
        Some("+8613800138020"),
    );
    deployment.dispatch_at(T0 + MINUTE);
    assert_eq!(deployment.store.metric_get("alerts.ping").unwrap(), 1);
    assert_eq!(ops.hits().len(), 1);
}

#[test]
fn no_alert_fires_when_failures_stay_at_five_percent() {
    let mut statuses = [200; 20];
    statuses[7] = 400;
    let (_provider, _files, mut deployment) = sms_deployment(&statuses, "");
    for n in 0..20 {
        let phone = format!("+86138001380{n:02}");
        ping(
            &mut deployment,
            n,
            &format!("c{n}@example.com"),
            Some(&phone),
        );
    }
    assert_eq!(deployment.dispatch_at(T0).failed, 1);
    assert_eq!(deployment.store.metric_get("alerts.ping").unwrap(), 0);
}

#[test]
fn the_webhook_step_is_refused_a_host_that_is_not_granted_and_the_error_names_it() {
    let (_files, mut deployment) = deployment(
        &post_journey("https://evil.example.net/steal", &["crm.example.com"]),
        Some("[http_out]\nallowed_hosts = [\"also-crm.example.com\"]\n"),
    );
    ping(&mut deployment, 1, "li@example.com", None);
    assert!(deployment.outbox().is_empty(), "{:#?}", deployment.outbox());
    let contact = deployment.contact_by_email("li@example.com").contact.id;
    let enrollments = deployment.store.enrollments_of_contact(&contact).unwrap();
    let history = enrollments[0].state.to_string();
    assert!(
        history.contains("access-denied") || history.contains("AccessDenied"),
        "{history}"
    );
    assert!(history.contains("evil.example.net"), "{history}");
}

#[test]
fn a_webhook_steps_post_is_signed_so_the_receiver_can_verify_it() {
    let crm = Receiver::start();
    let url = format!("{}/api/tasks", crm.url);
    // Granted by the deployment this time, not by the step.
    let channels = "[http_out]\nallowed_hosts = [\"127.0.0.1\"]\nsecret = \"whsec-test\"\n";
    let (_files, mut deployment) = deployment(&post_journey(&url, &[]), Some(channels));
    ping(&mut deployment, 1, "li@example.com", None);
    let queued = only_message(&deployment);
    assert_eq!(
        (queued.channel.as_str(), queued.content["url"].as_str()),
        ("http-out", Some(url.as_str()))
    );

    assert_eq!(deployment.dispatch_at(T0).sent, 1);
    let hits = crm.hits();
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit.path, "/api/tasks");
    assert_eq!(hit.headers["content-type"], "application/json");
    assert_eq!(hit.headers["idempotency-key"], queued.idempotency_key);
    // What a receiver does: HMAC the raw body with the shared secret, compare.
    let expected = sign(b"whsec-test", hit.body.as_bytes());
    assert_eq!(hit.headers["x-dripline-signature"], expected);
    assert_ne!(
        hit.headers["x-dripline-signature"],
        sign(b"wrong", hit.body.as_bytes())
    );
    let body: Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(
        body,
        json!({ "lead": "li@example.com", "score": 0, "form": "whitepaper" })
    );
}

/// Kills the dispatcher (a panic unwinding out of it) right after the inner
/// channel delivered, before the result is recorded: a crash at the worst time.
struct CrashAfterDelivery {
    inner: Arc<dyn Channel>,
    crashed: AtomicBool,
}

impl Channel for CrashAfterDelivery {
    fn deliver(
        &self,
        message: &OutboxMessage,
        record: &OutboxRecord,
        contact: &Contact,
    ) -> Result<Receipt, DeliveryError> {
        let receipt = self.inner.deliver(message, record, contact)?;
        if !self.crashed.swap(true, Ordering::SeqCst) {
            panic!("crash between delivery and recording");
        }
        Ok(receipt)
    }
}

#[test]
fn a_crash_between_delivery_and_recording_delivers_again_with_the_same_idempotency_key() {
    let crm = Receiver::start();
    let channels = format!(
        "[channels.webhook]\nkind = \"webhook\"\nurl = \"{}/hook\"\n",
        crm.url
    );
    let (_files, mut deployment) = deployment(&send_journey("webhook"), Some(&channels));
    ping(&mut deployment, 1, "li@example.com", None);

    let config = ChannelsConfig::parse("channels.toml", &channels).unwrap();
    let mut crashing = Channels::from_config(config).unwrap();
    let real = crashing.get("webhook").unwrap().clone();
    crashing.insert(
        "webhook",
        Configured {
            channel: Arc::new(CrashAfterDelivery {
                inner: real.channel,
                crashed: AtomicBool::new(false),
            }),
            retry: real.retry,
        },
    );
    let store = deployment.store.clone();
    let clock = deployment.clock.clone();
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        Dispatcher::new(store, crashing, clock).run_until_idle()
    }));
    assert!(crashed.is_err(), "the dispatcher should have crashed");
    assert_eq!(crm.hits().len(), 1, "delivered once before the crash");
    assert_eq!(
        only_message(&deployment).status.as_str(),
        "pending",
        "the result was never recorded"
    );

    // The restarted worker delivers it again, under the same key, and records it.
    assert_eq!(deployment.dispatch_at(T0 + MINUTE).sent, 1);
    let hits = crm.hits();
    assert_eq!(hits.len(), 2);
    assert_eq!(
        hits[0].headers["idempotency-key"],
        hits[1].headers["idempotency-key"]
    );
    assert_eq!(hits[0].body, hits[1].body);
    // Once recorded as sent, never again.
    assert_eq!(deployment.dispatch_at(T0 + HOUR).handled(), 0);
    assert_eq!(crm.hits().len(), 2);
    assert_eq!(only_message(&deployment).status.as_str(), "sent");
}

/// A store with one contact and one pending message on each of `channels`,
/// due in that order.
fn pending_messages(channels: &[&str]) -> (tempfile::TempDir, Arc<dyn dripline_store::Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn dripline_store::Store> =
        Arc::new(dripline_store::SqliteStore::open(dir.path().join("d.db")).unwrap());
    store
        .contact_put(Contact {
            id: "c1".into(),
            identities: vec![
                dripline_store::Identity::Email("li@example.com".into()),
                dripline_store::Identity::Phone("+8613800138000".into()),
            ],
            profile: json!({}),
        })
        .unwrap();
    for (n, channel) in channels.iter().copied().enumerate() {
        let record = json!({
            "journey": "j", "journey_version": 1, "enrollment": "e1", "step": channel,
            "body": "hello", "category": "marketing",
            "delivery": { "status": "sent", "id": format!("k{n}") },
        });
        store
            .outbox_insert(dripline_store::NewOutboxMessage {
                idempotency_key: format!("k{n}"),
                contact_id: "c1".into(),
                channel: channel.into(),
                content: record,
                status: dripline_store::OutboxStatus::Pending,
                created_at_ms: 0,
                deliver_at_ms: n as i64,
            })
            .unwrap();
    }
    (dir, store)
}

/// A provider that takes 200 ms per message and notes how many it holds at
/// once.
#[derive(Default)]
struct Slow {
    in_flight: AtomicUsize,
    most: AtomicUsize,
    delivered: Mutex<Vec<i64>>,
}

impl Channel for Slow {
    fn deliver(
        &self,
        message: &OutboxMessage,
        _: &OutboxRecord,
        _: &Contact,
    ) -> Result<Receipt, DeliveryError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.delivered.lock().unwrap().push(message.id);
        Ok(Receipt { provider_id: None })
    }
}

#[test]
fn a_channel_delivers_as_many_messages_at_once_as_its_concurrency_and_each_once() {
    use dripline_delivery::Lane;

    let (_dir, store) = pending_messages(&["sms"; 10]);
    let provider = Arc::new(Slow::default());
    let mut channels = Channels::embedded();
    channels.insert(
        "sms",
        Configured {
            channel: provider.clone(),
            retry: ChannelsConfig::default().retry,
        },
    );
    channels.set_concurrency("sms", 4);
    let clock = Arc::new(dripline_clock::ManualClock::new(100));
    let mut sms =
        Dispatcher::new(store.clone(), channels, clock).on_lane(Lane::Channel("sms".into()));
    assert_eq!(sms.run_until_idle().unwrap().sent, 10);
    assert_eq!(provider.most.load(Ordering::SeqCst), 4);
    let mut delivered = provider.delivered.lock().unwrap().clone();
    delivered.sort_unstable();
    delivered.dedup();
    assert_eq!(delivered.len(), 10, "each message delivered once");
    assert!(
        store
            .outbox_list(None, 20)
            .unwrap()
            .iter()
            .all(|m| m.status.as_str() == "sent")
    );
}

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A provider that hangs: `deliver` waits until the test lets it go.
struct Hanging {
    entered: Mutex<std::sync::mpsc::Sender<()>>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Channel for Hanging {
    fn deliver(
        &self,
        message: &OutboxMessage,
        _: &OutboxRecord,
        _: &Contact,
    ) -> Result<Receipt, DeliveryError> {
        let _ = self.entered.lock().unwrap().send(());
        let _ = self.release.lock().unwrap().recv();
        Ok(Receipt {
            provider_id: Some(format!("hung-{}", message.id)),
        })
    }
}

#[test]
fn a_hanging_sms_provider_does_not_hold_up_email_on_its_own_lane() {
    use dripline_delivery::Lane;

    // The SMS is due first: one dispatcher for everything would wait on it.
    let (_dir, store) = pending_messages(&["sms", "email"]);
    let clock = Arc::new(dripline_clock::ManualClock::new(10));
    let (entered, in_sms) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel();
    let mut sms_channels = Channels::embedded();
    sms_channels.insert(
        "sms",
        Configured {
            channel: Arc::new(Hanging {
                entered: Mutex::new(entered),
                release: Mutex::new(released),
            }),
            retry: ChannelsConfig::default().retry,
        },
    );
    let mut sms = Dispatcher::new(store.clone(), sms_channels, clock.clone())
        .on_lane(Lane::Channel("sms".into()));
    let mut email = Dispatcher::new(store.clone(), Channels::embedded(), clock)
        .on_lane(Lane::Channel("email".into()));

    let sms_lane = std::thread::spawn(move || sms.run_until_idle().unwrap());
    in_sms.recv().unwrap();
    // The SMS provider hangs; the email lane goes on.
    let report = email.run_until_idle().unwrap();
    assert_eq!(report.sent, 1);
    let statuses: Vec<(String, &str)> = store
        .outbox_list(None, 10)
        .unwrap()
        .into_iter()
        .map(|m| (m.channel, m.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("sms".to_string(), "pending"),
            ("email".to_string(), "sent")
        ]
    );
    release.send(()).unwrap();
    assert_eq!(sms_lane.join().unwrap().sent, 1);
}

#[test]
fn a_marketing_email_carries_one_click_list_unsubscribe_headers_and_a_receipt_does_not() {
    let (port, mails) = smtp_server();
    let channels = format!(
        "[channels.email]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         from = \"Example Shop <shop@example.com>\"\ntimeout = \"10s\"\n"
    );
    let marketing =
        send_journey("email").replace("category = \"transactional\"", "category = \"marketing\"");
    let (_files, mut deployment) = deployment(&marketing, Some(&channels));
    deployment.receive(json!({
        "id": "consent-1", "source": "api", "name": "test.consent",
        "identities": { "email": "li@example.com" },
        "properties": { "consent": { "email": "granted" } },
        "occurred_at": T0, "received_at": T0
    }));
    ping(&mut deployment, 1, "li@example.com", None);
    let (_receipt_files, mut receipts) = deployment_pair(&channels);
    ping(&mut receipts, 2, "wu@example.com", None);
    for d in [&mut deployment, &mut receipts] {
        let report = d.dispatch_at(T0);
        assert_eq!(report.sent, 1, "{report:?} {:#?}", d.outbox());
    }
    let mails = mails.lock().unwrap().clone();
    let to = |who: &str| mails.iter().find(|m| m.to == [who]).unwrap().data.clone();
    let newsletter = to("li@example.com");
    let header = newsletter
        .lines()
        .find(|l| l.starts_with("List-Unsubscribe:"))
        .unwrap_or_else(|| panic!("no List-Unsubscribe in {newsletter}"));
    assert!(header.contains("<http://127.0.0.1:8080/u/"), "{header}");
    assert!(
        newsletter.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
        "{newsletter}"
    );
    assert!(!to("wu@example.com").contains("List-Unsubscribe"));
}

/// The transactional ping on the same channels, a deployment of its own.
fn deployment_pair(channels: &str) -> (tempfile::TempDir, Deployment) {
    deployment(&send_journey("email"), Some(channels))
}

#[test]
fn a_webhook_target_that_redirects_elsewhere_is_not_followed_and_the_post_fails() {
    use std::io::{Read as _, Write as _};
    // Where the redirect points: it must hear nothing.
    let elsewhere = Receiver::start();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let redirector = format!("http://{}/api/tasks", listener.local_addr().unwrap());
    let location = format!("{}/steal", elsewhere.url);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 8192];
            let _ = stream.read(&mut buffer);
            let _ = write!(
                stream,
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    let channels = "[http_out]\nallowed_hosts = [\"127.0.0.1\"]\nsecret = \"whsec-test\"\n";
    let (_files, mut deployment) = deployment(&post_journey(&redirector, &[]), Some(channels));
    ping(&mut deployment, 1, "li@example.com", None);
    let report = deployment.dispatch_at(T0);
    assert_eq!((report.sent, report.failed), (0, 1), "{report:?}");
    assert!(elsewhere.hits().is_empty(), "the redirect was followed");
    let message = only_message(&deployment);
    assert!(
        message
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("307"),
        "{message:?}"
    );
}

#[test]
fn a_step_that_calls_its_promotion_transactional_is_still_held_to_marketing_rules() {
    let journey = r#"
name = "Ping"
version = 1

[trigger]
event = "test.ping"

[[steps]]
id = "promote"
uses = "claims-transactional"
"#;
    let (_files, mut deployment) = deployment(journey, None);
    deployment.add_component("claims-transactional");
    // The contact never agreed to marketing email.
    ping(&mut deployment, 1, "li@example.com", None);
    let message = only_message(&deployment);
    assert_eq!(
        message.content["category"], "marketing",
        "{:#?}",
        message.content
    );
    assert_eq!(
        message.content["delivery"]["status"], "suppressed",
        "{:#?}",
        message.content
    );
}
