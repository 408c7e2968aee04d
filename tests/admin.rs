//! The admin API through the front door: tokens made with `dripline token
//! new`, requests over loopback HTTP to the real `dripline up`, and a
//! population of signed Shopify checkouts and orders whose conversion rates,
//! revenue and uplift over the holdout the API must report as they happened.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use dripline_admin::auth::{Role, new_token};
use dripline_tests::process::{Up, http};
use dripline_tests::shop::{checkout, make_token, order, shopify};
use dripline_tests::{Deployment, SHIPPED_STEPS, component, deployment_root, repo_root};
use serde_json::{Value, json};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2026-11-18 09:06:40 in Shanghai.
const T0: i64 = 1_794_964_000_000;

/// A GET with `token` (none: no header); (status, body, content type).
fn get(address: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map_or(String::new(), |t| format!("\r\nAuthorization: Bearer {t}"));
    http(address, &format!("GET {path} HTTP/1.1{auth}"), b"")
}

fn post(address: &str, path: &str, token: &str) -> (u16, String) {
    http(
        address,
        &format!("POST {path} HTTP/1.1\r\nAuthorization: Bearer {token}"),
        b"",
    )
}

/// A raw GET, for the headers.
fn raw_get(address: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Every route the admin API must serve, as the OpenAPI document names them.
const ROUTES: [(&str, &str); 22] = [
    ("get", "/api/journeys"),
    ("get", "/api/journeys/{id}"),
    ("get", "/api/journeys/{id}/canvas"),
    ("get", "/api/journeys/{id}/analytics"),
    ("post", "/api/journeys/{id}/pause"),
    ("post", "/api/journeys/{id}/resume"),
    ("post", "/api/journeys/{id}/drain"),
    ("post", "/api/journeys/{id}/canary"),
    ("post", "/api/journeys/{id}/promote"),
    ("post", "/api/journeys/{id}/rollback"),
    ("get", "/api/contacts"),
    ("get", "/api/contacts/{id}"),
    ("get", "/api/contacts/{id}/timeline"),
    ("post", "/api/contacts/{id}/test"),
    ("delete", "/api/contacts/{id}"),
    ("get", "/api/contacts/{id}/export"),
    ("get", "/api/data-requests"),
    ("post", "/api/simulate"),
    ("get", "/api/outbox"),
    ("get", "/api/metrics"),
    ("get", "/metrics"),
    ("get", "/api/me"),
];

#[test]
fn each_token_opens_only_what_its_role_may_and_the_public_listener_serves_no_admin_route() {
    let dir = tempfile::tempdir().unwrap();
    deployment_root(dir.path());
    let marketing = make_token(dir.path(), "maya", "marketing");
    let engineering = make_token(dir.path(), "eli", "engineering");
    let up = Up::deployment(dir.path(), "3600");
    let gateway = up.gateway();
    let api = up.api();
    let public = up.admin();
    let (status, body) = shopify(&gateway, "checkouts/create", "evt-1", &checkout(1, T0));
    assert_eq!(status, 200, "{body}");

    // No token, or a wrong one: 401 as problem+json, logged without the token.
    let (status, body) = get(&api, "/api/journeys", None);
    assert_eq!(status, 401, "{body}");
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["status"], 401);
    let wrong = "dl_not-a-real-token-at-all";
    assert_eq!(
        get(
            &api,
            "/api/contacts?email=shopper1@example.com",
            Some(wrong)
        )
        .0,
        401
    );
    let answer = raw_get(&api, "/api/outbox");
    assert!(answer.contains("application/problem+json"), "{answer}");
    let logged = up.lines_until("refused a request without a valid token");
    assert!(logged.iter().all(|line| !line.contains(wrong)));

    // The contact shows up once the runner took the checkout.
    let deadline = Instant::now() + Duration::from_secs(30);
    let found = loop {
        let (status, body) = get(
            &api,
            "/api/contacts?email=Shopper1@example.com",
            Some(&engineering),
        );
        if status == 200 {
            break serde_json::from_str::<Value>(&body).unwrap();
        }
        assert!(Instant::now() < deadline, "no contact: {status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        found.to_string().contains("shopper1@example.com"),
        "{found}"
    );
    assert!(found.to_string().contains("+14155550001"), "{found}");

    // Marketing reads journeys and analytics, sees contacts masked, and may
    // not read the outbox or the counters.
    let (status, body) = get(&api, "/api/journeys", Some(&marketing));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"id\":\"abandoned-checkout\""), "{body}");
    let (status, body) = get(
        &api,
        "/api/journeys/abandoned-checkout/analytics",
        Some(&marketing),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(
        &api,
        "/api/contacts?email=shopper1@example.com",
        Some(&marketing),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("s***@example.com"), "{body}");
    assert!(
        !body.contains("shopper1@example.com") && !body.contains("+14155550001"),
        "{body}"
    );
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = get(&api, &format!("/api/contacts/{id}"), Some(&marketing));
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("shopper1@example.com") && !body.contains("\"Li\""),
        "{body}"
    );
    assert_eq!(get(&api, "/api/outbox", Some(&marketing)).0, 403);
    assert_eq!(get(&api, "/metrics", Some(&marketing)).0, 403);
    assert_eq!(
        post(&api, "/api/journeys/abandoned-checkout/pause", &marketing).0,
        403
    );

    // Engineering reads the outbox (the 30-minute SMS is there within a
    // second of the scaled clock) and the counters.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(&api, "/api/outbox", Some(&engineering));
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        if !page["messages"].as_array().unwrap().is_empty() {
            assert_eq!(
                page["messages"][0]["content"]["journey"],
                "abandoned-checkout"
            );
            break;
        }
        assert!(Instant::now() < deadline, "nothing in the outbox");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = get(&api, "/metrics", Some(&engineering));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#"dripline_value{name="events.checkout.created"} 1"#),
        "{body}"
    );
    assert!(
        body.contains(r#"dripline_journey_total{journey="abandoned-checkout""#),
        "{body}"
    );
    let (status, body) = get(&api, "/api/outbox?status=bogus", Some(&engineering));
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["field"],
        "query"
    );
    let (status, body) = get(&api, "/api/contacts?phone=123", Some(&engineering));
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap()["field"].clone()
        ),
        (400, json!("phone"))
    );

    // Marketing may rehearse a journey for a test contact; nothing is sent.
    let request = json!({
        "journey": "abandoned-checkout",
        "contact": { "email": "test@acme.example", "phone": "+14155550199" },
        "script": { "until": "2d", "events": [
            { "after": "0m", "name": "checkout.created", "source": "shopify", "properties": { "token": "sim-1" } },
        ] },
    });
    let (status, body) = post_json(&api, "/api/simulate", &marketing, &request);
    assert_eq!(status, 200, "{body}");
    let simulated: Value = serde_json::from_str(&body).unwrap();
    let kinds: Vec<&str> = simulated["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"entered") && kinds.contains(&"message"),
        "{body}"
    );
    let (status, body) = post_json(
        &api,
        "/api/simulate",
        &marketing,
        &json!({ "journey": "nope", "contact": {} }),
    );
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap()["field"].clone()
        ),
        (400, json!("journey"))
    );

    // The public listener serves health and tracking only.
    for path in [
        "/api/journeys",
        "/api/outbox",
        "/admin/outbox",
        "/openapi.json",
        "/metrics",
    ] {
        assert_eq!(get(&public, path, Some(&engineering)).0, 404, "{path}");
    }
    assert_eq!(get(&public, "/health/live", None).0, 200);

    // The OpenAPI document parses and lists every route, each behind a token.
    let (status, body) = get(&api, "/openapi.json", None);
    assert_eq!(status, 200);
    let document: Value = serde_json::from_str(&body).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    for (method, path) in ROUTES {
        let operation = &document["paths"][path][method];
        assert!(
            operation.is_object(),
            "{method} {path} missing from the document"
        );
    }
    assert_eq!(document["security"][0]["token"], json!([]));
    let listed: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(
        listed,
        ROUTES.len(),
        "the document lists routes this test does not know"
    );
}

#[test]
fn pausing_a_journey_through_the_api_holds_new_entries_until_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    deployment_root(dir.path());
    let operations = make_token(dir.path(), "olga", "operations");
    let up = Up::deployment(dir.path(), "1");
    let gateway = up.gateway();
    let api = up.api();
    // The journey is stored once the runner loaded it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&api, "/api/journeys/abandoned-checkout", Some(&operations)).0 != 200 {
        assert!(Instant::now() < deadline, "the journey never showed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = post(&api, "/api/journeys/abandoned-checkout/pause", &operations);
    assert_eq!(status, 200, "{body}");
    let control: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (control["state"].as_str(), control["changed_by"].as_str()),
        (Some("paused"), Some("olga"))
    );
    assert_eq!(post(&api, "/api/journeys/nope/pause", &operations).0, 404);
    // Workers read the state within a second.
    std::thread::sleep(Duration::from_millis(1500));
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(
        shopify(&gateway, "checkouts/create", "evt-p1", &checkout(1, now)).0,
        200
    );
    let contact = |n: usize| loop {
        let (status, body) = get(
            &api,
            &format!("/api/contacts?email=shopper{n}@example.com"),
            Some(&operations),
        );
        if status == 200 {
            let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let (_, body) = get(&api, &format!("/api/contacts/{id}"), Some(&operations));
            break serde_json::from_str::<Value>(&body).unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let paused = contact(1);
    assert_eq!(paused["enrollments"], json!([]), "{paused}");
    let (_, body) = get(&api, "/api/journeys/abandoned-checkout", Some(&operations));
    assert!(body.contains("\"entry_paused\":1"), "{body}");

    assert_eq!(
        post(&api, "/api/journeys/abandoned-checkout/resume", &operations).0,
        200
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        shopify(&gateway, "checkouts/create", "evt-p2", &checkout(2, now)).0,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resumed = contact(2);
        if resumed["enrollments"]
            .as_array()
            .is_some_and(|e| e.len() == 1)
        {
            assert_eq!(resumed["enrollments"][0]["journey"], "abandoned-checkout");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not enrolled after resuming: {resumed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The shipped abandoned-checkout journey with a 10% holdout at its coupon
/// split, as a marketer measuring the coupons would run it.
fn journeys_with_holdout(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let shipped =
        std::fs::read_to_string(repo_root().join("journeys/abandoned-checkout.toml")).unwrap();
    let split = "split = [\n  { percent = 50, next = \"coupon-email\" },\n  { percent = 50, next = \"coupon-sms\" },\n]";
    assert!(
        shipped.contains(split),
        "the shipped split changed; update this test"
    );
    let with_holdout = shipped.replace(
        split,
        "split = [\n  { percent = 45, next = \"coupon-email\" },\n  { percent = 45, next = \"coupon-sms\" },\n  { percent = 10, holdout = true },\n]",
    );
    std::fs::write(dir.join("abandoned-checkout.toml"), with_holdout).unwrap();
    std::fs::copy(
        repo_root().join("journeys/new-customer-care.toml"),
        dir.join("new-customer-care.toml"),
    )
    .unwrap();
}

/// The rate and its Wald interval, computed here independently of the API.
fn expected_uplift(c1: f64, n1: f64, c0: f64, n0: f64) -> (f64, f64, f64) {
    let (p1, p0) = (c1 / n1, c0 / n0);
    let half = 1.959_964 * (p1 * (1.0 - p1) / n1 + p0 * (1.0 - p0) / n0).sqrt();
    (p1 - p0, p1 - p0 - half, p1 - p0 + half)
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn the_abandoned_checkout_analytics_report_each_ways_conversions_revenue_and_uplift_over_the_holdout()
 {
    let journeys = tempfile::tempdir().unwrap();
    journeys_with_holdout(journeys.path());
    let mut deployment = Deployment::with_journeys(journeys.path(), T0);
    let front = deployment.serve_gateway();
    let gateway = front.addr.to_string();
    let (token, stored) = new_token("maya", Role::Marketing).unwrap();
    let admin = deployment.serve_admin(vec![stored]);
    const SHOPPERS: usize = 240;
    for n in 0..SHOPPERS {
        let (status, body) = shopify(
            &gateway,
            "checkouts/create",
            &format!("c-{n}"),
            &checkout(n, T0),
        );
        assert_eq!(status, 200, "{body}");
    }
    // Through the 30-minute, 3-hour and 24-hour steps to the split.
    for at in [
        T0 + 1000,
        T0 + 31 * 60_000,
        T0 + 3 * HOUR + 60_000,
        T0 + 24 * HOUR + 120_000,
    ] {
        deployment.run_at(at);
    }

    // Each shopper's way, as the API shows their enrollment.
    let mut ways: BTreeMap<usize, String> = BTreeMap::new();
    for n in 0..SHOPPERS {
        let (status, body) = get(
            &admin.addr,
            &format!("/api/contacts?email=shopper{n}@example.com"),
            Some(&token),
        );
        assert_eq!(status, 200, "{body}");
        let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, body) = get(&admin.addr, &format!("/api/contacts/{id}"), Some(&token));
        let detail: Value = serde_json::from_str(&body).unwrap();
        let arm = detail["enrollments"][0]["arm"]
            .as_str()
            .unwrap_or_else(|| panic!("{detail}"));
        ways.insert(n, arm.to_owned());
    }
    // Every way converts at its own rate; each order's total is its own.
    let converts = |n: usize, arm: &str| match arm {
        "coupon-email" => n % 2 == 0,
        "coupon-sms" => n % 3 == 0,
        _ => n % 4 == 0,
    };
    let total = |n: usize| format!("{}.{:02}", 20 + n, n % 100);
    let mut expected: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
    for (n, arm) in &ways {
        let entry = expected.entry(arm.as_str()).or_default();
        entry.0 += 1;
        if converts(*n, arm) {
            let (status, body) = shopify(
                &gateway,
                "orders/paid",
                &format!("o-{n}"),
                &order(*n, 50_000 + n, T0 + 26 * HOUR, &total(*n)),
            );
            assert_eq!(status, 200, "{body}");
            entry.1 += 1;
            entry.2 += ((20 + n) * 100 + n % 100) as i64;
        }
    }
    deployment.run_at(T0 + 26 * HOUR + 60_000);
    // A second order of a converted shopper, and one a week and more after
    // the checkout, do not convert.
    let converted_one = ways
        .iter()
        .find(|(n, arm)| converts(**n, arm))
        .map(|(n, _)| *n)
        .unwrap();
    let late_one = ways
        .iter()
        .find(|(n, arm)| !converts(**n, arm))
        .map(|(n, _)| *n)
        .unwrap();
    shopify(
        &gateway,
        "orders/paid",
        "o-again",
        &order(converted_one, 90_001, T0 + 27 * HOUR, "99.00"),
    );
    deployment.run_at(T0 + 27 * HOUR + 60_000);
    shopify(
        &gateway,
        "orders/paid",
        "o-late",
        &order(late_one, 90_002, T0 + 8 * DAY, "99.00"),
    );
    deployment.run_at(T0 + 8 * DAY + 60_000);

    let (status, body) = get(
        &admin.addr,
        "/api/journeys/abandoned-checkout/analytics",
        Some(&token),
    );
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    let version = &report["versions"][0];
    assert_eq!(version["entered"], SHOPPERS as i64, "{version}");
    let all: i64 = expected.values().map(|e| e.1).sum();
    assert_eq!(version["converted"], all);
    assert!(close(
        &version["conversion_rate"],
        all as f64 / SHOPPERS as f64
    ));
    let arms: BTreeMap<String, Value> = version["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["arm"].as_str().unwrap().to_owned(), a.clone()))
        .collect();
    assert_eq!(arms.len(), 3, "{arms:?}");
    let holdout = expected["holdout"];
    assert!(holdout.0 > 5, "too few held out to compare: {holdout:?}");
    for (arm, (contacts, converted, revenue_cents)) in &expected {
        let figures = &arms[*arm];
        assert_eq!(figures["contacts"], *contacts, "{arm}: {figures}");
        assert_eq!(figures["converted"], *converted, "{arm}: {figures}");
        assert!(
            close(&figures["revenue"], *revenue_cents as f64 / 100.0),
            "{arm}: {figures}"
        );
        assert!(
            close(
                &figures["conversion_rate"],
                *converted as f64 / *contacts as f64
            ),
            "{arm}"
        );
        if *arm == "holdout" {
            assert!(figures["uplift"].is_null());
            continue;
        }
        let (difference, low, high) = expected_uplift(
            *converted as f64,
            *contacts as f64,
            holdout.1 as f64,
            holdout.0 as f64,
        );
        let uplift = &figures["uplift"];
        assert!(close(&uplift["difference"], difference), "{arm}: {uplift}");
        assert!(
            close(&uplift["ci95_low"], low) && close(&uplift["ci95_high"], high),
            "{arm}: {uplift}"
        );
    }

    // One shopper's timeline: the checkout, the entry, each message with the
    // policy's decision, the exit at the split or the goal.
    let (_, body) = get(
        &admin.addr,
        "/api/contacts?email=shopper0@example.com",
        Some(&token),
    );
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = get(
        &admin.addr,
        &format!("/api/contacts/{id}/timeline"),
        Some(&token),
    );
    assert_eq!(status, 200, "{body}");
    let timeline: Vec<Value> = serde_json::from_str(&body).unwrap();
    let kinds: Vec<&str> = timeline
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "event", "{body}");
    assert!(
        kinds.contains(&"entered") && kinds.contains(&"exited"),
        "{body}"
    );
    let sent = timeline
        .iter()
        .find(|e| e["kind"] == "message" && e["detail"]["decision"]["status"] != "suppressed")
        .unwrap_or_else(|| panic!("no message went: {body}"));
    assert_eq!(
        sent["detail"]["body"], "[withheld]",
        "marketing reads no message body"
    );
}

/// The API's answer to a POST with a JSON body.
fn post_json(address: &str, path: &str, token: &str, body: &Value) -> (u16, String) {
    http(
        address,
        &format!(
            "POST {path} HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json"
        ),
        body.to_string().as_bytes(),
    )
}

#[test]
fn a_canary_version_takes_its_share_of_new_checkouts_by_contact_until_promoted() {
    let journeys = tempfile::tempdir().unwrap();
    for file in ["abandoned-checkout.toml", "new-customer-care.toml"] {
        std::fs::copy(
            repo_root().join("journeys").join(file),
            journeys.path().join(file),
        )
        .unwrap();
    }
    let mut deployment = Deployment::with_journeys(journeys.path(), T0);
    let front = deployment.serve_gateway();
    let gateway = front.addr.to_string();
    let (token, stored) = new_token("olga", Role::Operations).unwrap();
    let admin = deployment.serve_admin(vec![stored]);
    // Version 3 ships as a canary of a fifth of new checkouts.
    let shipped = std::fs::read_to_string(journeys.path().join("abandoned-checkout.toml")).unwrap();
    assert!(shipped.contains("\nversion = 2\n"));
    let trial = shipped.replace("\nversion = 2\n", "\nversion = 3\ncanary = 20\n");
    std::fs::write(journeys.path().join("abandoned-checkout.toml"), trial).unwrap();
    deployment.restart();

    let version_of = |n: usize| -> (String, u64) {
        let (status, body) = get(
            &admin.addr,
            &format!("/api/contacts?email=shopper{n}@example.com"),
            Some(&token),
        );
        assert_eq!(status, 200, "{body}");
        let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, body) = get(&admin.addr, &format!("/api/contacts/{id}"), Some(&token));
        let detail: Value = serde_json::from_str(&body).unwrap();
        (
            id,
            detail["enrollments"][0]["version"]
                .as_u64()
                .unwrap_or_else(|| panic!("{detail}")),
        )
    };
    for n in 0..200 {
        assert_eq!(
            shopify(
                &gateway,
                "checkouts/create",
                &format!("c-{n}"),
                &checkout(n, T0)
            )
            .0,
            200
        );
    }
    deployment.run_at(T0 + 1000);
    let mut on_trial = 0;
    for n in 0..200 {
        let (id, version) = version_of(n);
        // The share is chosen by contact, the same way every time.
        let bucket = dripline_engine::split::bucket(&id, "abandoned-checkout", "canary");
        assert_eq!(version, if bucket < 20 { 3 } else { 2 }, "shopper {n}");
        on_trial += usize::from(version == 3);
    }
    assert!(
        (20..=60).contains(&on_trial),
        "{on_trial} of 200 on the canary"
    );

    let (_, body) = get(&admin.addr, "/api/journeys", Some(&token));
    let list: Vec<Value> = serde_json::from_str(&body).unwrap();
    let journey = list
        .iter()
        .find(|j| j["id"] == "abandoned-checkout")
        .unwrap();
    assert_eq!(
        journey["canary"],
        json!({ "version": 3, "stable": 2, "percent": 20 })
    );
    // The two versions side by side.
    let (_, body) = get(
        &admin.addr,
        "/api/journeys/abandoned-checkout/analytics",
        Some(&token),
    );
    let report: Value = serde_json::from_str(&body).unwrap();
    let entered: Vec<(u64, i64)> = report["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["entered"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(entered, [(3, on_trial as i64), (2, 200 - on_trial as i64)]);

    // Bad requests name their field.
    for (request, field) in [
        (json!({ "version": 3, "percent": 150 }), "percent"),
        (json!({ "version": 9, "percent": 5 }), "version"),
    ] {
        let (status, body) = post_json(
            &admin.addr,
            "/api/journeys/abandoned-checkout/canary",
            &token,
            &request,
        );
        assert_eq!(
            (
                status,
                serde_json::from_str::<Value>(&body).unwrap()["field"].clone()
            ),
            (400, json!(field))
        );
    }

    // Promoted, version 3 takes every new checkout; nothing is left to roll back.
    let (status, body) = post(
        &admin.addr,
        "/api/journeys/abandoned-checkout/promote",
        &token,
    );
    assert_eq!(status, 200, "{body}");
    deployment.runner.reload_journeys().unwrap();
    for n in 200..240 {
        assert_eq!(
            shopify(
                &gateway,
                "checkouts/create",
                &format!("c-{n}"),
                &checkout(n, T0)
            )
            .0,
            200
        );
    }
    deployment.run_at(T0 + 2000);
    for n in 200..240 {
        assert_eq!(version_of(n).1, 3, "shopper {n} after the promotion");
    }
    assert_eq!(
        post(
            &admin.addr,
            "/api/journeys/abandoned-checkout/rollback",
            &token
        )
        .0,
        409
    );
}

#[test]
fn a_test_contact_goes_through_the_live_journey_with_its_messages_marked_and_left_out_of_the_figures()
 {
    let mut deployment = Deployment::new(T0);
    let front = deployment.serve_gateway();
    let gateway = front.addr.to_string();
    let (token, stored) = new_token("eli", Role::Engineering).unwrap();
    let admin = deployment.serve_admin(vec![stored]);
    for n in [1, 2] {
        assert_eq!(
            shopify(
                &gateway,
                "checkouts/create",
                &format!("c-{n}"),
                &checkout(n, T0)
            )
            .0,
            200
        );
    }
    deployment.run_at(T0 + 1000);
    let (_, body) = get(
        &admin.addr,
        "/api/contacts?email=shopper1@example.com",
        Some(&token),
    );
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mark = |contact: &str, body: &str| {
        http(
            &admin.addr,
            &format!(
                "POST /api/contacts/{contact}/test HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json"
            ),
            body.as_bytes(),
        )
    };
    assert_eq!(mark("c_nobody", r#"{"test": true}"#).0, 404);
    assert_eq!(mark(&id, r#"{"test": "yes"}"#).0, 400);
    assert_eq!(mark(&id, r#"{"test": true}"#).0, 202);
    deployment.run_at(T0 + 2000);
    // The 30-minute SMS reminder, to both shoppers.
    deployment.run_at(T0 + 31 * 60_000);
    let (_, body) = get(&admin.addr, "/api/outbox", Some(&token));
    let page: Value = serde_json::from_str(&body).unwrap();
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{page}");
    for message in messages {
        let test = message["contact_id"] == id.as_str();
        assert_eq!(
            message["content"]["test"].as_bool().unwrap_or(false),
            test,
            "{message}"
        );
        assert_eq!(
            message["content"]["body"]
                .as_str()
                .unwrap()
                .starts_with("[TEST] "),
            test,
            "{message}"
        );
    }
    let (_, body) = get(
        &admin.addr,
        "/api/journeys/abandoned-checkout/analytics",
        Some(&token),
    );
    let report: Value = serde_json::from_str(&body).unwrap();
    let reminder = report["versions"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "cart-reminder")
        .unwrap()
        .clone();
    assert_eq!(
        reminder["channels"][0]["sent"], 1,
        "only the real shopper's counts: {reminder}"
    );
}

#[test]
fn a_simulated_week_of_checkouts_gives_every_count_the_journey_must() {
    // `./dev bench week` at a small population: the same run and checks.
    let components = tempfile::tempdir().unwrap();
    for name in SHIPPED_STEPS {
        std::fs::copy(
            component(name),
            components.path().join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    dripline_bench::week::run(components.path(), repo_root(), 400).unwrap();
}
