//! The console in a real browser: Debian's headless Chromium, driven through
//! ChromeDriver (WebDriver), against the real `dripline up` on loopback. A
//! population of signed Shopify checkouts goes through the shipped
//! abandoned-checkout journey on a clock an hour a second fast, and the
//! counts the test expects of it are read off the canvas's nodes in the
//! page. Screenshots of the canvas and of a contact's page are written under
//! the build directory (`<target>/release/console-screenshots/`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dripline_tests::process::{Up, http};
use dripline_tests::shop::{make_token, order, shopify};
use dripline_tests::{deployment_root, dripline_binary, repo_root};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// ChromeDriver on a free loopback port, and a headless Chromium session
/// through it; both end when this is dropped.
struct Browser {
    driver: Child,
    client: Option<Client>,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn open(width: u32, height: u32) -> Self {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: install Debian's chromium and chromium-driver (`./dev test` does)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let address = format!("http://127.0.0.1:{port}");
        // Without the background-networking flags Chromium keeps calling
        // Google's hosts, which a closed network refuses.
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--lang=en-US",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&address)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no browser session through ChromeDriver: {e}"),
            }
        };
        Self {
            driver,
            client: Some(client),
            _profile: profile,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Shopper `n`'s checkout, now, through the front door.
fn checkout(gateway: &str, n: usize) {
    let now = chrono::Utc::now().timestamp_millis();
    let body = dripline_tests::shop::checkout(n, now);
    let (status, answer) = shopify(gateway, "checkouts/create", &format!("c-{n}"), &body);
    assert_eq!(status, 200, "{answer}");
}

fn api(address: &str, path: &str, token: &str) -> Value {
    let (status, body) = http(
        address,
        &format!("GET {path} HTTP/1.1\r\nAuthorization: Bearer {token}"),
        b"",
    );
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// A journey of fifty steps (waits, messages and branches), to be drawn.
fn long_journey() -> String {
    let mut text = String::from(
        "name = \"Long nurture\"\nversion = 1\n\n[trigger]\nevent = \"lead.long\"\n\n",
    );
    for i in 0..50 {
        let next = if i < 49 {
            format!("next = \"s{}\"\n", i + 1)
        } else {
            String::new()
        };
        text.push_str(&format!("[[steps]]\nid = \"s{i}\"\n"));
        if i % 10 == 9 && i < 49 {
            text.push_str(&format!(
                "branch = [{{ when = \"contact.score > {i}\", next = \"s{}\" }}, {{ next = \"s{}\" }}]\n\n",
                i + 1,
                i + 1
            ));
        } else if i % 5 == 2 {
            text.push_str(&format!(
                "uses = \"send\"\nconfig = {{ channel = \"sms\", template = \"checkout-reminder\" }}\n{next}\n"
            ));
        } else {
            text.push_str(&format!("wait = \"1d\"\n{next}\n"));
        }
    }
    text
}

/// A deployment of the shipped journeys (and the long one) under a policy
/// without quiet hours (the fast clock would put sends in them), up with
/// an hour a second.
fn deployment(dir: &Path) -> Up {
    deployment_root(dir);
    std::fs::write(dir.join("delivery.toml"), "max_per_day = 10\n").unwrap();
    std::fs::write(dir.join("journeys/long-nurture.toml"), long_journey()).unwrap();
    up_again(dir)
}

/// `dripline up` on the deployment in `dir`, made by [`deployment`].
fn up_again(dir: &Path) -> Up {
    Up::deployment(dir, "3600")
}

fn screenshots() -> PathBuf {
    let dir = dripline_binary()
        .parent()
        .unwrap()
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A screenshot of the page in a window tall enough for the whole canvas
/// (1280 wide), written to `file`; the window is 1280 by 800 again after.
async fn screenshot(client: &Client, file: &Path) {
    client.set_window_size(1280, 1700).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(file, client.screenshot().await.unwrap()).unwrap();
    client.set_window_size(1280, 800).await.unwrap();
    println!("screenshot: {}", file.display());
}

/// Polls `check` (true when done) every 100 ms for up to `within`.
async fn until(within: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sign_in(client: &Client, console: &str, token: &str) {
    client.goto(console).await.unwrap();
    let field = shown(client, Locator::Css("#token"), 10).await;
    field.send_keys(token).await.unwrap();
    click(client, Locator::Css(".login button[type=submit]")).await;
    shown(client, Locator::Css("table.journeys"), 10).await;
}

/// The element at `locator` once the page shows it, within `seconds`.
async fn shown(
    client: &Client,
    locator: Locator<'_>,
    seconds: u64,
) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(seconds))
        .for_element(locator)
        .await
        .unwrap_or_else(|e| panic!("nothing at {locator:?} within {seconds} s: {e}"))
}

/// Clicks the element at `locator`.
async fn click(client: &Client, locator: Locator<'_>) {
    client
        .find(locator)
        .await
        .unwrap_or_else(|e| panic!("nothing at {locator:?} to click: {e}"))
        .click()
        .await
        .unwrap();
}

/// The node `id`'s data attribute `name`, as a number.
async fn node_count(client: &Client, id: &str, name: &str) -> Option<i64> {
    let node = client
        .find(Locator::Css(&format!("[data-node=\"{id}\"]")))
        .await
        .ok()?;
    node.attr(&format!("data-{name}")).await.ok()??.parse().ok()
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// How long the page took to paint: the browser's first contentful paint,
/// and the console's mark once the named page is drawn, ms from navigation.
async fn paint_times(client: &Client, mark: &str) -> (f64, f64) {
    // Paint entries are queued after the paint itself: one not yet listed
    // is waited for (up to 3 s), through an observer that sees it either way.
    let times = client
        .execute_async(
            "const [mark, done] = arguments;
             const drawn = () => (performance.getEntriesByName(mark)[0] || { startTime: -1 }).startTime;
             const fcp = performance.getEntriesByName('first-contentful-paint')[0];
             if (fcp) return done([fcp.startTime, drawn()]);
             new PerformanceObserver((list, observer) => {
               const entry = list.getEntriesByName('first-contentful-paint')[0];
               if (entry) { observer.disconnect(); done([entry.startTime, drawn()]); }
             }).observe({ type: 'paint', buffered: true });
             setTimeout(() => done([-1, drawn()]), 3000);",
            vec![json!(mark)],
        )
        .await
        .unwrap();
    (
        times[0].as_f64().unwrap_or(-1.0),
        times[1].as_f64().unwrap_or(-1.0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reads_the_abandoned_checkout_counts_on_its_canvas_opens_a_timeline_and_simulates()
 {
    let dir = tempfile::tempdir().unwrap();
    let mut up = deployment(dir.path());
    let engineering = make_token(dir.path(), "eli", "engineering");
    let gateway = up.gateway();
    let admin = up.api();
    let console = format!("http://{admin}/");

    // The population: twelve shoppers leave a checkout; at an hour a second
    // each is through the whole journey (24 hours) in half a minute. Four
    // order afterwards, within the 7-day attribution window.
    const SHOPPERS: usize = 12;
    for n in 0..SHOPPERS {
        checkout(&gateway, n);
    }
    let canvas_of = || {
        api(
            &admin,
            "/api/journeys/abandoned-checkout/canvas",
            &engineering,
        )
    };
    let node_of = |canvas: &Value, id: &str| -> Value {
        canvas["versions"][0]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no node {id}"))
    };
    until(
        Duration::from_secs(120),
        "every shopper at the end",
        async || node_of(&canvas_of(), "@end")["counts"]["entered"] == SHOPPERS,
    )
    .await;
    // The orders are stamped on the deployment's fast clock: a day and an
    // hour after each shopper entered, as the enrollment says.
    for n in 0..4 {
        let found = api(
            &admin,
            &format!("/api/contacts?email=shopper{n}@example.com"),
            &engineering,
        );
        let id = found["id"].as_str().unwrap();
        let detail = api(&admin, &format!("/api/contacts/{id}"), &engineering);
        let entered = detail["enrollments"][0]["entered_at"]
            .as_i64()
            .unwrap_or_else(|| panic!("no entry time: {detail}"));
        let body = order(n, 50_000 + n, entered + 25 * 3_600_000, "42.00");
        let (status, answer) = shopify(&gateway, "orders/paid", &format!("o-{n}"), &body);
        assert_eq!(status, 200, "{answer}");
    }
    until(Duration::from_secs(60), "four conversions", async || {
        api(&admin, "/api/journeys", &engineering)
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == "abandoned-checkout" && j["converted"] == 4)
    })
    .await;
    let canvas = canvas_of();
    let email_way = node_of(&canvas, "coupon-email")["counts"]["entered"]
        .as_i64()
        .unwrap();

    let browser = Browser::open(1280, 800).await;
    let client = browser.client();

    // No token: the login form and nothing else.
    client.goto(&console).await.unwrap();
    shown(client, Locator::Css("#token"), 10).await;
    assert!(client.find(Locator::Css("table")).await.is_err());

    sign_in(client, &console, &engineering).await;
    // The first paint of the console with the shipped journeys, from a load
    // of the page (the token kept in the tab).
    client.refresh().await.unwrap();
    shown(
        client,
        Locator::Css("table.journeys tr[data-journey=\"abandoned-checkout\"]"),
        10,
    )
    .await;
    let (first_paint, journeys_drawn) = paint_times(client, "dripline:journeys").await;
    println!(
        "console first paint: {first_paint:.0} ms (first contentful paint); the journeys list drawn at {journeys_drawn:.0} ms"
    );

    click(client, Locator::LinkText("Abandoned checkout recovery")).await;
    shown(client, Locator::Css("[data-node=\"@trigger\"]"), 10).await;
    // The counts on the nodes, as the page shows them.
    let shoppers = SHOPPERS as i64;
    for (id, entered, passed) in [
        ("@trigger", shoppers, shoppers),
        ("wait-30m", shoppers, shoppers),
        ("cart-reminder", shoppers, shoppers),
        ("wait-3h", shoppers, shoppers),
        ("abandoned-items", shoppers, shoppers),
        ("wait-24h", shoppers, shoppers),
        ("coupon-offer", shoppers, shoppers),
        ("coupon-email", email_way, email_way),
        ("coupon-sms", shoppers - email_way, shoppers - email_way),
    ] {
        assert_eq!(
            node_count(client, id, "entered").await,
            Some(entered),
            "{id} entered"
        );
        assert_eq!(
            node_count(client, id, "passed").await,
            Some(passed),
            "{id} passed"
        );
        assert_eq!(
            node_count(client, id, "waiting").await,
            Some(0),
            "{id} waiting"
        );
        assert_eq!(
            node_count(client, id, "dropped").await,
            Some(0),
            "{id} dropped"
        );
    }
    assert_eq!(node_count(client, "@end", "entered").await, Some(shoppers));
    assert_eq!(
        node_count(client, "cart-reminder", "sent").await,
        Some(shoppers)
    );
    assert_eq!(
        node_count(client, "abandoned-items", "sent").await,
        Some(shoppers)
    );
    // Every message node carries its figures in words; four of twelve who
    // got the reminder converted.
    let reminder = client
        .find(Locator::Css("[data-node=\"cart-reminder\"]"))
        .await
        .unwrap();
    let words = reminder.attr("aria-label").await.unwrap().unwrap();
    assert!(
        words.contains("12 sent") && words.contains("33.3% converted"),
        "{words}"
    );
    // Distinct shapes: the split is a polygon, the waits rounded boxes.
    assert!(
        client
            .find(Locator::Css("[data-node=\"coupon-offer\"] polygon"))
            .await
            .is_ok()
    );
    client.refresh().await.unwrap();
    shown(client, Locator::Css("[data-node=\"@end\"]"), 10).await;
    let (first_paint, canvas_drawn) = paint_times(client, "dripline:canvas").await;
    println!(
        "the abandoned-checkout canvas, loaded: first paint {first_paint:.0} ms, drawn at {canvas_drawn:.0} ms"
    );
    assert_eq!(
        client
            .find(Locator::Css("[data-total-converted]"))
            .await
            .unwrap()
            .attr("data-total-converted")
            .await
            .unwrap()
            .as_deref(),
        Some("4")
    );
    let shots = screenshots();
    screenshot(client, &shots.join("canvas.png")).await;

    // The counts refresh while the page is open: two more checkouts show on
    // the trigger without a reload.
    checkout(&gateway, 100);
    checkout(&gateway, 101);
    until(
        Duration::from_secs(20),
        "the new checkouts on the canvas",
        async || node_count(client, "@trigger", "entered").await == Some(shoppers + 2),
    )
    .await;

    // Pause and resume from the page, as engineering may.
    click(client, Locator::XPath("//button[text()='Pause']")).await;
    until(Duration::from_secs(10), "the journey paused", async || {
        api(&admin, "/api/journeys/abandoned-checkout", &engineering)["control"]["state"]
            == "paused"
    })
    .await;
    shown(client, Locator::XPath("//button[text()='Resume']"), 10)
        .await
        .click()
        .await
        .unwrap();
    until(Duration::from_secs(10), "the journey resumed", async || {
        api(&admin, "/api/journeys/abandoned-checkout", &engineering)["control"]["state"]
            == "running"
    })
    .await;

    // A contact's page: found by email, with its timeline.
    click(client, Locator::LinkText("Contacts")).await;
    let value = shown(client, Locator::Css("#value"), 10).await;
    value.send_keys("shopper0@example.com").await.unwrap();
    click(client, Locator::Css("form.search button")).await;
    shown(client, Locator::Css("ol.timeline"), 10).await;
    assert_eq!(
        text_of(client, "h1.contact-name").await,
        "shopper0@example.com"
    );
    let kinds: Vec<String> = {
        let mut kinds = Vec::new();
        for moment in client
            .find_all(Locator::Css("ol.timeline li"))
            .await
            .unwrap()
        {
            kinds.push(moment.attr("data-kind").await.unwrap().unwrap_or_default());
        }
        kinds
    };
    for kind in ["event", "entered", "message", "exited"] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
    let consent = text_of(client, "table.consent").await;
    assert!(
        consent.contains("shopify"),
        "consent without its source: {consent}"
    );
    screenshot(client, &shots.join("contact.png")).await;

    // The outbox, filtered: the population's messages (the embedded
    // channels keep each in the outbox as sent), and no failure.
    click(client, Locator::LinkText("Outbox")).await;
    shown(client, Locator::Css("table.outbox"), 10).await;
    click(client, Locator::Css("#status option[value=\"sent\"]")).await;
    click(client, Locator::Css("form.search button")).await;
    until(
        Duration::from_secs(10),
        "the sent messages listed",
        async || {
            client
                .current_url()
                .await
                .unwrap()
                .as_str()
                .ends_with("status=sent")
                && client
                    .find_all(Locator::Css("table.outbox tbody tr"))
                    .await
                    .unwrap()
                    .len()
                    >= 3 * SHOPPERS
        },
    )
    .await;
    for row in client
        .find_all(Locator::Css("table.outbox tbody tr"))
        .await
        .unwrap()
    {
        assert_eq!(
            row.attr("data-status").await.unwrap().as_deref(),
            Some("sent")
        );
    }
    click(client, Locator::LinkText("Failures only")).await;
    shown(
        client,
        Locator::XPath("//p[text()='No message matches.']"),
        10,
    )
    .await;

    // A simulation from the page: the stored case's script, its timeline
    // with the rendered reminder.
    click(client, Locator::LinkText("Simulate")).await;
    let script_field = shown(client, Locator::Css("#sim-script"), 10).await;
    let case: Value = toml::from_str(
        &std::fs::read_to_string(repo_root().join("tests/cases/simulate/abandoned-checkout.toml"))
            .unwrap(),
    )
    .unwrap();
    click(
        client,
        Locator::Css("#journey option[value=\"abandoned-checkout\"]"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    script_field.clear().await.unwrap();
    script_field.send_keys(&case.to_string()).await.unwrap();
    click(client, Locator::Css("form.simulate button[type=submit]")).await;
    shown(client, Locator::Css(".sim-result ol.timeline"), 60).await;
    let timeline = text_of(client, ".sim-result").await;
    assert!(
        timeline.contains("Your items are still in your cart"),
        "{timeline}"
    );
    assert!(
        timeline.contains("sms checkout-reminder from cart-reminder: sent"),
        "{timeline}"
    );

    // A journey of fifty steps that a million contacts went through over
    // thirty days is drawn whole: its counters, written into the
    // deployment's store as the runner writes them, are what the canvas
    // reads, however many contacts they count.
    {
        use dripline_store::Metrics as _;
        let store = dripline_tests::deployment_store(&dir.path().join("data/dripline.db"));
        let day = 86_400_000;
        let now = chrono::Utc::now().timestamp_millis();
        let add = |step: Option<&str>, at: i64, what: &str, n: i64| {
            let key = dripline_delivery::analytics::Key {
                journey: "long-nurture",
                version: 1,
                step,
                channel: None,
            };
            store
                .metric_add(&dripline_delivery::analytics::counter(&key, at, what), n)
                .unwrap();
        };
        for d in 0..30 {
            let at = now - d * day;
            add(None, at, "entered", 1_000_000 / 30);
            for i in 0..50 {
                let step = format!("s{i}");
                let here = (1_000_000 - 10_000 * i) / 30;
                add(Some(&step), at, "entered", here);
                add(Some(&step), at, "passed", here - 10_000 / 30);
                add(Some(&step), at, "exited", 100);
            }
        }
    }
    // A load of the page (not a move within it), so that the marks are
    // this load's.
    let started = Instant::now();
    client
        .goto(&format!("{console}#/journeys/long-nurture"))
        .await
        .unwrap();
    client.refresh().await.unwrap();
    until(Duration::from_secs(10), "fifty steps drawn", async || {
        client
            .find_all(Locator::Css("[data-node]"))
            .await
            .unwrap()
            .len()
            >= 52
    })
    .await;
    let (_, drawn) = paint_times(client, "dripline:canvas").await;
    println!(
        "a journey of 50 steps and 1M contacts drawn at {drawn:.0} ms after the page load ({} ms as the test saw it)",
        started.elapsed().as_millis()
    );
    assert_eq!(
        node_count(client, "@trigger", "entered").await,
        Some(1_000_000 / 30 * 30)
    );
    let trigger = text_of(client, "[data-node=\"@trigger\"] .counts").await;
    assert_eq!(trigger, "1M entered");

    // A second version on trial: the journey file's version 3 with a
    // canary of 20%. Both versions are drawn side by side, and the canary is
    // promoted from the page.
    up.terminate();
    up.exited_within(Duration::from_secs(30));
    let file = dir.path().join("journeys/abandoned-checkout.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("version = 2\n", "version = 3\ncanary = 20\n"),
    )
    .unwrap();
    let up = up_again(dir.path());
    let admin = up.api();
    let console = format!("http://{admin}/");
    until(Duration::from_secs(30), "version 3 stored", async || {
        let (status, body) = http(
            &admin,
            &format!("GET /api/journeys/abandoned-checkout HTTP/1.1\r\nAuthorization: Bearer {engineering}"),
            b"",
        );
        status == 200 && body.contains("\"version\":3")
    })
    .await;
    sign_in(client, &console, &engineering).await;
    client
        .goto(&format!("{console}#/journeys/abandoned-checkout"))
        .await
        .unwrap();
    shown(
        client,
        Locator::Css("section.version [data-node=\"@end\"]"),
        10,
    )
    .await;
    let tops = client
        .execute(
            "return [...document.querySelectorAll('section.version')].map(v => v.getBoundingClientRect().top)",
            vec![],
        )
        .await
        .unwrap();
    let tops: Vec<f64> = tops
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert_eq!(tops.len(), 2, "two versions drawn");
    assert!((tops[0] - tops[1]).abs() < 1.0, "side by side: {tops:?}");
    let canary = text_of(client, ".badge.canary").await;
    assert_eq!(canary, "canary: v3 takes 20%, v2 the rest");
    click(
        client,
        Locator::XPath("//button[normalize-space(.)='Promote v3']"),
    )
    .await;
    until(Duration::from_secs(10), "the canary promoted", async || {
        api(&admin, "/api/journeys/abandoned-checkout", &engineering)["control"]["promoted"] == 3
    })
    .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marketing_token_sees_masked_identities_and_a_phone_sized_screen_reads_without_sideways_scroll()
 {
    let dir = tempfile::tempdir().unwrap();
    let up = deployment(dir.path());
    let marketing = make_token(dir.path(), "maya", "marketing");
    let gateway = up.gateway();
    let admin = up.api();
    let console = format!("http://{admin}/");
    checkout(&gateway, 7);
    until(Duration::from_secs(30), "the shopper stored", async || {
        http(
            &admin,
            &format!(
                "GET /api/contacts?email=shopper7@example.com HTTP/1.1\r\nAuthorization: Bearer {marketing}"
            ),
            b"",
        )
        .0 == 200
    })
    .await;

    let browser = Browser::open(390, 844).await;
    let client = browser.client();
    // A wrong token is refused and shows nothing.
    client.goto(&console).await.unwrap();
    let field = shown(client, Locator::Css("#token"), 10).await;
    field.send_keys("not-a-token").await.unwrap();
    click(client, Locator::Css(".login button[type=submit]")).await;
    shown(client, Locator::Css(".login .problem"), 10).await;
    assert!(client.find(Locator::Css("table")).await.is_err());
    // Without a token the API answers the page's requests with 401.
    let status = client
        .execute_async(
            "fetch('/api/journeys').then(r => arguments[0](r.status))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, 401);

    sign_in(client, &console, &marketing).await;
    // Marketing reads, but neither runs journeys nor reads the outbox.
    assert!(client.find(Locator::LinkText("Outbox")).await.is_err());
    client
        .goto(&format!("{console}#/journeys/abandoned-checkout"))
        .await
        .unwrap();
    shown(client, Locator::Css("[data-node=\"@trigger\"]"), 10).await;
    assert!(
        client
            .find(Locator::XPath("//button[text()='Pause']"))
            .await
            .is_err()
    );
    // With the keyboard: a node takes the focus, and Enter says its
    // figures in words.
    let node = client
        .find(Locator::Css("[data-node=\"wait-30m\"]"))
        .await
        .unwrap();
    client
        .execute(
            "arguments[0].focus()",
            vec![serde_json::to_value(&node).unwrap()],
        )
        .await
        .unwrap();
    node.send_keys(&fantoccini::key::Key::Enter).await.unwrap();
    let picked = shown(client, Locator::Css(".picked h2"), 5).await;
    assert_eq!(picked.text().await.unwrap(), "v2 · wait-30m");
    let words = text_of(client, ".picked p").await;
    assert!(
        words.starts_with("Wait wait-30m, wait 30m, 1 entered"),
        "{words}"
    );
    // On a phone-sized screen the page does not scroll sideways (the
    // canvas scrolls in its own box).
    let overflow = client
        .execute(
            "return document.documentElement.scrollWidth - window.innerWidth",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the page overflows by {overflow} px"
    );

    client.goto(&format!("{console}#/contacts")).await.unwrap();
    let value = shown(client, Locator::Css("#value"), 10).await;
    value.send_keys("shopper7@example.com").await.unwrap();
    click(client, Locator::Css("form.search button")).await;
    shown(client, Locator::Css("ol.timeline"), 10).await;
    let page = text_of(client, "main").await;
    assert!(page.contains("s***@example.com"), "{page}");
    assert!(!page.contains("shopper7@example.com"), "{page}");
    assert!(!page.contains("+14155550007"), "{page}");
    browser.close().await;
}
