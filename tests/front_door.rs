//! SCENARIOS.md 1 through the front door: a signed Shopify checkout over
//! loopback HTTP into the real `dripline up` binary, through the composed
//! gateway and Shopify trigger, the inbox, the runner, the real `send` step
//! and the delivery policy, to a real SMTP server. The clock runs an hour a
//! second, so the 3-hour email arrives in seconds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use dripline_tests::smtp::smtp_server;
use dripline_tests::{SHIPPED_STEPS, component, dripline_binary, repo_root};

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

fn up(dir: &Path) -> (Child, Receiver<String>) {
    let mut child = Command::new(dripline_binary())
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--clock-speed",
            "3600",
            "--data",
            "data",
            "--components",
            "components",
        ])
        .arg("--spin")
        .arg(repo_root().join("spin.toml"))
        .args(["--root", "."])
        .env("SPIN_VARIABLE_SHOPIFY_SECRET", SECRET)
        .env("RUST_LOG", "info")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (child, received)
}

/// The address after `marker` in the first log line that has it.
fn address_after(lines: &Receiver<String>, marker: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let line = lines
            .recv_timeout(left)
            .expect("dripline up stopped logging");
        if let Some((_, rest)) = line.split_once(marker) {
            return rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
        }
    }
    panic!("no `{marker}` in the log");
}

/// A signed `checkouts/create` POSTed as Shopify sends it: (status, body).
fn post_checkout(gateway: &str) -> (u16, String) {
    let body =
        std::fs::read(repo_root().join("tests/cases/webhooks/shopify/checkouts-create.json"))
            .unwrap();
    let signature = webhook_auth::sign(SECRET.as_bytes(), &body);
    let mut stream = std::net::TcpStream::connect(gateway).unwrap();
    write!(
        stream,
        "POST /webhooks/shopify HTTP/1.1\r\nHost: {gateway}\r\nContent-Type: application/json\r\n\
         X-Shopify-Topic: checkouts/create\r\nX-Shopify-Shop-Domain: acme-mugs.myshopify.com\r\n\
         X-Shopify-Event-Id: 98880550-7158-44d4-b7cd-2c97c8a091b5\r\n\
         X-Shopify-Hmac-Sha256: {signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

#[test]
fn a_signed_shopify_checkout_reaches_the_shoppers_inbox_as_the_three_hour_email() {
    let (smtp_port, mails) = smtp_server();
    let dir = tempfile::tempdir().unwrap();
    deployment(dir.path(), smtp_port);
    let (mut child, lines) = up(dir.path());
    let gateway = address_after(&lines, "the webhook gateway is up on http://");
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
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(mail.to, ["li.wei@example.com"]);
    assert_eq!(mail.from, "shop@acme.example");
    assert!(
        mail.data
            .contains("Subject: Li, you left something in your cart"),
        "{}",
        mail.data
    );
}
