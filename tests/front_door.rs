//! SCENARIOS.md 1 through the front door: a signed Shopify checkout over
//! loopback HTTP into the real `dripline up` binary, through the composed
//! gateway and Shopify trigger, the inbox, the runner, the real `send` step
//! and the delivery policy, to a real SMTP server. The clock runs an hour a
//! second, so the 3-hour email arrives in seconds. Also what a stop does to
//! a delivery in flight.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use dripline_tests::process::{Up, http};
use dripline_tests::smtp::{Mail, slow_smtp_server, smtp_server};
use dripline_tests::{SHIPPED_STEPS, component, repo_root};

const SECRET: &str = "shpss_front_door";

/// A deployment root in `dir`: the shipped journeys and templates, a policy
/// without quiet hours (the scaled clock would put the send in them), and
/// email through the SMTP server on `smtp_port`; the shipped components.
fn deployment(dir: &Path, smtp_port: u16) {
    for folder in ["journeys", "templates"] {
        std::fs::create_dir_all(dir.join(folder)).unwrap();
        for entry in std::fs::read_dir(repo_root().join(folder))
            .unwrap()
            .flatten()
        {
            std::fs::copy(entry.path(), dir.join(folder).join(entry.file_name())).unwrap();
        }
    }
    std::fs::write(dir.join("delivery.toml"), "max_per_day = 3\n").unwrap();
    std::fs::write(
        dir.join("channels.toml"),
        format!(
            "[channels.email]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {smtp_port}\n\
             from = \"Acme Mugs <shop@acme.example>\"\ntimeout = \"10s\"\n"
        ),
    )
    .unwrap();
    let components = dir.join("components");
    std::fs::create_dir_all(&components).unwrap();
    for name in ["gateway", "shopify", "forms", "track"]
        .iter()
        .chain(SHIPPED_STEPS)
    {
        let file = component(name);
        std::fs::copy(&file, components.join(file.file_name().unwrap())).unwrap();
    }
}

/// A signed `checkouts/create` POSTed as Shopify sends it: (status, body).
fn post_checkout(gateway: &str) -> (u16, String) {
    let body =
        std::fs::read(repo_root().join("tests/cases/webhooks/shopify/checkouts-create.json"))
            .unwrap();
    let signature = webhook_auth::sign(SECRET.as_bytes(), &body);
    let head = format!(
        "POST /webhooks/shopify HTTP/1.1\r\nContent-Type: application/json\r\n\
         X-Shopify-Topic: checkouts/create\r\nX-Shopify-Shop-Domain: acme-mugs.myshopify.com\r\n\
         X-Shopify-Event-Id: 98880550-7158-44d4-b7cd-2c97c8a091b5\r\n\
         X-Shopify-Hmac-Sha256: {signature}"
    );
    http(gateway, &head, &body)
}

/// `dripline up` on the deployment in `dir`, the clock running an hour a
/// second, the gateway serving the repository's `spin.toml`.
fn up(dir: &Path) -> Up {
    let spin = repo_root().join("spin.toml");
    Up::start(
        dir,
        &[
            "--clock-speed",
            "3600",
            "--data",
            "data",
            "--components",
            "components",
            "--spin",
            spin.to_str().unwrap(),
            "--root",
            ".",
        ],
        &[("SPIN_VARIABLE_SHOPIFY_SECRET", SECRET)],
    )
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
    // While it finishes the delivery, webhooks are refused so that the
    // provider retries them later.
    let (status, body) = post_checkout(&gateway);
    assert_eq!(status, 503, "{body}");
    let (status, body) = http(&admin, "GET /health/ready HTTP/1.1", b"");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("stopping"), "{body}");
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
