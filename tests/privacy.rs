//! Personal data through the front door: what the database file gives away
//! to someone who has only the file, and a person erased mid-journey by each
//! of the three ways in (the command line, the admin API, Shopify's
//! `customers/redact`), then retention, all against the real `dripline`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dripline_store::prelude::*;
use dripline_store::{DEFAULT_KV_STORE, INBOX_PREFIX, Identity, RUNTIME_KV_STORE};
use dripline_tests::process::{Up, http};
use dripline_tests::shop::{checkout, make_token, shopify};
use dripline_tests::{deployment_root, deployment_store, dripline_binary};
use serde_json::{Value, json};

fn get(address: &str, path: &str, token: &str) -> (u16, String) {
    http(
        address,
        &format!("GET {path} HTTP/1.1\r\nAuthorization: Bearer {token}"),
        b"",
    )
}

/// Waits up to a minute for `check` to hold, naming `what` if it never does.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within a minute"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Shopper `n`'s checkout, with a name nobody else has and an address.
fn named_checkout(n: usize, at: i64) -> Value {
    let mut body = checkout(n, at);
    let first = format!("Anastasia{n}");
    body["customer"]["first_name"] = json!(first);
    body["customer"]["last_name"] = json!("Quixote-Wren");
    for address in ["billing_address", "shipping_address"] {
        if body[address].is_object() {
            body[address]["first_name"] = json!(first);
            body[address]["last_name"] = json!("Quixote-Wren");
            body[address]["address1"] = json!("17 Larkspur Crescent");
        }
    }
    body
}

/// Everything SQLite keeps of the database on disk: the file and its log.
fn raw_database(data: &Path) -> Vec<u8> {
    ["dripline.db", "dripline.db-wal"]
        .iter()
        .flat_map(|name| std::fs::read(data.join(name)).unwrap_or_default())
        .collect()
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn dripline(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(dripline_binary())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dripline {args:?}: {said}");
    said
}

#[test]
fn the_database_file_holds_no_email_phone_name_or_message_text_while_the_api_reads_them_back() {
    let dir = tempfile::tempdir().unwrap();
    deployment_root(dir.path());
    let engineering = make_token(dir.path(), "eli", "engineering");
    let up = Up::deployment(dir.path(), "3600");
    let (gateway, api) = (up.gateway(), up.api());
    let now = chrono::Utc::now().timestamp_millis();
    let (status, body) = shopify(
        &gateway,
        "checkouts/create",
        "evt-1",
        &named_checkout(1, now),
    );
    assert_eq!(status, 200, "{body}");

    // Half an hour of the journey's clock later, the cart reminder is out.
    let mut contact = Value::Null;
    eventually("the contact", || {
        let (status, body) = get(
            &api,
            "/api/contacts?email=shopper1@example.com",
            &engineering,
        );
        contact = serde_json::from_str(&body).unwrap_or_default();
        status == 200
    });
    let id = contact["id"].as_str().unwrap().to_owned();
    let mut outbox = String::new();
    eventually("the cart reminder", || {
        outbox = get(&api, &format!("/api/outbox?contact={id}"), &engineering).1;
        outbox.contains("items are still in your cart")
    });
    let through_the_api = format!("{contact}{outbox}");
    for kept in ["shopper1@example.com", "+14155550001", "Anastasia1"] {
        assert!(
            through_the_api.contains(kept),
            "{kept} not read back: {through_the_api}"
        );
    }
    drop(up);

    let raw = raw_database(&dir.path().join("data"));
    assert!(raw.len() > 10_000, "the database is there");
    for secret in [
        "shopper1@example.com",
        "4155550001",
        "Anastasia1",
        "Quixote-Wren",
        "Larkspur",
        "items are still in your cart",
    ] {
        assert!(
            !holds(&raw, secret),
            "`{secret}` is readable in the database file"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("data/dripline.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the database is its owner's alone: {mode:o}"
        );
    }
}

/// What the store keeps that names `needles` (a contact's id first, then its
/// email, phone, name) once opened with the deployment's key: every contact,
/// identity, enrollment, timer, message and key-value record. An `erased`
/// contact must be left as a tombstone of keyed hashes.
fn traces(data: &Path, needles: &[String], erased: bool) -> Vec<String> {
    let store = deployment_store(&data.join("dripline.db"));
    let names = |text: &str| needles.iter().any(|n| text.contains(n.as_str()));
    let mut found = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = store.contacts_scan(cursor.as_deref(), 100).unwrap();
        for contact in page {
            let text = serde_json::to_string(&contact).unwrap();
            let tombstone = contact.profile.get("erased_at").is_some();
            if names(&text) && !(tombstone && needles.first() == Some(&contact.id)) {
                found.push(format!("contact {text}"));
            }
            if erased && needles.first() == Some(&contact.id) {
                assert!(
                    contact.profile.get("erased_at").is_some(),
                    "not a tombstone: {text}"
                );
                for identity in &contact.identities {
                    assert!(
                        matches!(identity, Identity::External { system, .. } if system == "erased"),
                        "the tombstone keeps {identity:?}"
                    );
                }
                for enrollment in store.enrollments_of_contact(&contact.id).unwrap() {
                    found.push(format!("enrollment {}", enrollment.id));
                }
                for message in store.outbox_of_contact(&contact.id).unwrap() {
                    found.push(format!("message {}", message.id));
                }
            }
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    for needle in &needles[1..] {
        let identity = if needle.contains('@') {
            Identity::Email(needle.clone())
        } else {
            Identity::Phone(needle.clone())
        };
        if store.contact_find_by_identity(&identity).unwrap().is_some() {
            found.push(format!("identity {needle}"));
        }
    }
    for message in store.outbox_list(None, 10_000).unwrap() {
        if names(&serde_json::to_string(&message.content).unwrap()) || names(&message.contact_id) {
            found.push(format!("message {}", message.id));
        }
    }
    for timer in store.claim_due_timers(i64::MAX, 100_000, 1).unwrap() {
        if names(&String::from_utf8_lossy(&timer.payload)) {
            found.push(format!("timer {}", timer.key));
        }
    }
    for (kv, prefix) in [(DEFAULT_KV_STORE, INBOX_PREFIX), (RUNTIME_KV_STORE, "")] {
        for (key, value) in store.kv_scan_prefix(kv, prefix, None, 100_000).unwrap() {
            if names(&String::from_utf8_lossy(&value)) || names(&key) {
                found.push(format!("{kv}/{key}"));
            }
        }
    }
    found
}

#[test]
fn a_contact_erased_mid_journey_by_the_command_line_the_api_or_shopify_leaves_nothing_of_it() {
    let dir = tempfile::tempdir().unwrap();
    deployment_root(dir.path());
    let operations = make_token(dir.path(), "olga", "operations");
    let marketing = make_token(dir.path(), "maya", "marketing");
    // A slow clock: the journeys wait, so each erasure catches its contact
    // mid-journey, with a timer set and a reminder queued or on its way.
    let up = Up::deployment(dir.path(), "600");
    let (gateway, api) = (up.gateway(), up.api());
    let now = chrono::Utc::now().timestamp_millis();
    for n in 1..=4 {
        let (status, body) = shopify(
            &gateway,
            "checkouts/create",
            &format!("evt-{n}"),
            &named_checkout(n, now),
        );
        assert_eq!(status, 200, "{body}");
    }
    let mut ids = Vec::new();
    for n in 1..=4 {
        let mut id = String::new();
        eventually(&format!("shopper {n}'s enrollment"), || {
            let (status, body) = get(
                &api,
                &format!("/api/contacts?email=shopper{n}@example.com"),
                &operations,
            );
            if status != 200 {
                return false;
            }
            id = serde_json::from_str::<Value>(&body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let detail = get(&api, &format!("/api/contacts/{id}"), &operations).1;
            detail.contains("abandoned-checkout")
        });
        ids.push(id);
    }

    // Shopper 1 by the command line, beside the running deployment.
    let said = dripline(
        dir.path(),
        &[
            "contacts",
            "--data",
            "data",
            "erase",
            "shopper1@example.com",
        ],
    );
    assert!(said.contains("queued"), "{said}");
    // Shopper 2 through the admin API: marketing may not, operations may.
    let delete = |token: &str| {
        http(
            &api,
            &format!(
                "DELETE /api/contacts/{} HTTP/1.1\r\nAuthorization: Bearer {token}",
                ids[1]
            ),
            b"",
        )
    };
    assert_eq!(delete(&marketing).0, 403);
    let (status, body) = delete(&operations);
    assert_eq!(status, 202, "{body}");
    // Shopper 3 by Shopify's mandatory webhook, signed like any other.
    let redact = json!({
        "shop_id": 954889,
        "shop_domain": "acme-mugs.myshopify.com",
        "customer": { "id": 20_003, "email": "shopper3@example.com", "phone": "+14155550003" },
        "orders_to_redact": [],
    });
    let (status, body) = shopify(&gateway, "customers/redact", "redact-3", &redact);
    assert_eq!(status, 200, "{body}");

    for (n, id) in ids.iter().enumerate().take(3) {
        eventually(&format!("shopper {}'s erasure", n + 1), || {
            let (status, _) = get(
                &api,
                &format!("/api/contacts?email=shopper{}@example.com", n + 1),
                &operations,
            );
            let detail = get(&api, &format!("/api/contacts/{id}"), &operations).1;
            status == 404 && detail.contains("erased_at")
        });
    }
    // A replay of shopper 1's checkout (a new delivery of the same data)
    // makes nobody again.
    let (status, body) = shopify(
        &gateway,
        "checkouts/create",
        "evt-1-again",
        &named_checkout(1, now),
    );
    assert_eq!(status, 200, "{body}");
    let store = deployment_store(&dir.path().join("data/dripline.db"));
    eventually("the replay to be dropped", || {
        store.metric_get("events.of_erased_contact").unwrap() >= 1
    });
    drop(store);
    // Shopper 4 is still there and still in the journey.
    let detail = get(&api, &format!("/api/contacts/{}", ids[3]), &operations).1;
    assert!(detail.contains("abandoned-checkout"), "{detail}");
    drop(up);

    for n in 1..=3 {
        let needles = vec![
            ids[n - 1].clone(),
            format!("shopper{n}@example.com"),
            format!("+1415555{n:04}"),
            format!("Anastasia{n}"),
        ];
        let found = traces(&dir.path().join("data"), &needles, true);
        assert!(
            found.is_empty(),
            "shopper {n} is still in the store: {found:#?}"
        );
    }
    let kept = traces(
        &dir.path().join("data"),
        &[ids[3].clone(), "shopper4@example.com".into()],
        false,
    );
    assert!(!kept.is_empty(), "shopper 4 was not erased");

    // A list with shopper 2 on it, imported again, does not bring them back.
    std::fs::write(
        dir.path().join("list.csv"),
        "email,first_name\nshopper2@example.com,Anastasia2\nnewcomer@example.com,Nia\n",
    )
    .unwrap();
    let said = dripline(
        dir.path(),
        &["import", "--quiet", "--data", "data", "list.csv"],
    );
    assert!(said.contains("1 contacts created"), "{said}");
    assert!(
        said.contains("1 rows skipped: they name people who were erased"),
        "{said}"
    );
    let store = deployment_store(&dir.path().join("data/dripline.db"));
    assert!(
        store
            .contact_find_by_identity(&Identity::Email("shopper2@example.com".into()))
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_shopify_data_request_is_answered_with_the_shoppers_data_for_operations_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    deployment_root(dir.path());
    let operations = make_token(dir.path(), "olga", "operations");
    let marketing = make_token(dir.path(), "maya", "marketing");
    let up = Up::deployment(dir.path(), "600");
    let (gateway, api) = (up.gateway(), up.api());
    let now = chrono::Utc::now().timestamp_millis();
    let (status, body) = shopify(
        &gateway,
        "checkouts/create",
        "evt-7",
        &named_checkout(7, now),
    );
    assert_eq!(status, 200, "{body}");
    eventually("shopper 7's contact", || {
        get(
            &api,
            "/api/contacts?email=shopper7@example.com",
            &operations,
        )
        .0 == 200
    });
    let request = json!({
        "shop_id": 954889,
        "shop_domain": "acme-mugs.myshopify.com",
        "orders_requested": [],
        "customer": { "id": 20_007, "email": "shopper7@example.com", "phone": "+14155550007" },
        "data_request": { "id": 9999 },
    });
    let (status, body) = shopify(&gateway, "customers/data_request", "request-7", &request);
    assert_eq!(status, 200, "{body}");
    let mut answers = Value::Null;
    eventually("the data request's answer", || {
        let (status, body) = get(&api, "/api/data-requests", &operations);
        answers = serde_json::from_str(&body).unwrap_or(Value::Null);
        status == 200 && answers.as_array().is_some_and(|a| !a.is_empty())
    });
    let answer = answers[0].to_string();
    assert!(answer.contains("shopper7@example.com"), "{answer}");
    assert!(
        answer.contains("abandoned-checkout"),
        "its journeys: {answer}"
    );
    // Personal data, so not for marketing.
    assert_eq!(get(&api, "/api/data-requests", &marketing).0, 403);
    drop(up);
}

#[test]
fn a_retention_run_erases_exactly_the_contacts_inactive_past_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    deployment_root(dir.path());
    let delivery =
        std::fs::read_to_string(dripline_tests::repo_root().join("delivery.toml")).unwrap();
    std::fs::write(
        dir.path().join("delivery.toml"),
        format!("{delivery}\n[retention]\ncontacts_inactive_for = \"30d\"\n"),
    )
    .unwrap();
    let day: i64 = 86_400_000;
    let t0: i64 = 1_790_000_000_000;
    let import = |name: &str, rows: &str, at: i64| {
        std::fs::write(dir.path().join(name), format!("email\n{rows}")).unwrap();
        dripline(
            dir.path(),
            &[
                "import",
                "--quiet",
                "--data",
                "data",
                "--now-ms",
                &at.to_string(),
                name,
            ],
        )
    };
    import("old.csv", "old1@example.com\nold2@example.com\n", t0);
    // Exactly at the limit on the day of the run: not past it.
    import("edge.csv", "edge@example.com\n", t0 + 15 * day);
    import("recent.csv", "recent@example.com\n", t0 + 40 * day);

    let run_at = (t0 + 45 * day).to_string();
    let said = dripline(
        dir.path(),
        &[
            "contacts",
            "--data",
            "data",
            "retention",
            "--root",
            ".",
            "--now-ms",
            &run_at,
        ],
    );
    assert!(
        said.contains("2 inactive contacts queued for erasure"),
        "{said}"
    );
    let components = dir.path().join("components");
    dripline(
        dir.path(),
        &[
            "process",
            "--data",
            "data",
            "--components",
            &components.to_string_lossy(),
            "--root",
            ".",
            "--now-ms",
            &run_at,
        ],
    );
    let store = deployment_store(&dir.path().join("data/dripline.db"));
    let present = |email: &str| {
        store
            .contact_find_by_identity(&Identity::Email(email.into()))
            .unwrap()
            .is_some()
    };
    assert!(!present("old1@example.com") && !present("old2@example.com"));
    assert!(present("edge@example.com") && present("recent@example.com"));
    assert_eq!(store.metric_get("contacts.erased").unwrap(), 2);
}

#[test]
fn a_tracking_base_url_that_is_not_a_public_https_address_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    deployment_root(dir.path());
    let components = dir.path().join("components");
    let process = |delivery: &str| {
        std::fs::write(dir.path().join("delivery.toml"), delivery).unwrap();
        Command::new(dripline_binary())
            .args(["process", "--data", "data", "--root", "."])
            .arg("--components")
            .arg(&components)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    for base in [
        "http://127.0.0.1:8080",
        "https://localhost",
        "https://10.0.0.5",
        "http://t.example.com",
    ] {
        let out = process(&format!("[tracking]\nbase_url = \"{base}\"\n"));
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{base} was taken");
        assert!(
            said.contains("must be a public https address"),
            "{base}: {said}"
        );
        assert!(said.contains("delivery.toml"), "{said}");
    }
    let out = process("[tracking]\nbase_url = \"https://t.example.com\"\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = process("[tracking]\nbase_url = \"http://127.0.0.1:8080\"\nlocal = true\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
