//! Tracking over real HTTP on loopback: the links in an email the runtime sent
//! are followed as a mail client would (the pixel loads, a link is clicked, the
//! unsubscribe page is used), `dripline up`'s server turns them into inbox
//! events, and the journeys react: a click moves the whitepaper lead on
//! (SCENARIOS.md 2), an unsubscribe stops the next marketing email at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dripline_tests::Deployment;
use serde_json::{Value, json};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2026-11-18 09:06:40 in Shanghai.
const T0: i64 = 1_794_964_000_000;

/// `dripline up`'s public server over the deployment's store.
type Served = dripline_tests::PublicDoor;

fn serve(deployment: &Deployment) -> Served {
    deployment.serve_public()
}

/// A client that shows redirects instead of following them, and statuses
/// instead of errors.
fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into()
}

/// The same link on the test server's port (emails name the configured
/// base URL, `http://127.0.0.1:8080`).
fn on(served: &Served, link: &str) -> String {
    served.on(link)
}

/// Every `href`/`src` value in an HTML body that starts with `prefix`.
fn links(html: &str, prefix: &str) -> Vec<String> {
    html.split('"')
        .filter(|part| part.starts_with(prefix))
        .map(String::from)
        .collect()
}

/// A lead from a signed form (Typeform), whose consent Dripline holds: the
/// journey sends the paper at once, without asking to confirm.
fn whitepaper(id: &str, email: &str, at: i64) -> Value {
    json!({
        "id": id, "source": "typeform", "name": "form.submitted", "identities": { "email": email },
        "properties": { "form": "whitepaper-download", "consent": { "email": "granted" } },
        "occurred_at": at, "received_at": at
    })
}

/// The outbox content of the contact's messages, oldest first.
fn emails_to(deployment: &Deployment, email: &str) -> Vec<Value> {
    let contact = deployment.contact_by_email(email).contact.id;
    deployment
        .outbox()
        .into_iter()
        .filter(|m| m.contact_id == contact)
        .map(|m| m.content)
        .collect()
}

#[test]
fn clicking_the_tracked_trial_link_redirects_to_it_and_moves_the_lead_to_the_case_studies() {
    let mut deployment = Deployment::new(T0);
    let served = serve(&deployment);
    deployment.receive(whitepaper("wp-1", "gao@example.com", T0));
    deployment.run_at(T0);
    deployment.run_at(T0 + 2 * DAY);
    let invite = emails_to(&deployment, "gao@example.com").pop().unwrap();
    assert_eq!(invite["step"], "trial-invite");
    let html = invite["html"].as_str().unwrap();
    let clicks = links(html, "http://127.0.0.1:8080/t/c/");
    assert!(!clicks.is_empty(), "the invite's links are tracked: {html}");
    let untracked = html
        .split("href=\"")
        .skip(1)
        .filter(|rest| !rest.starts_with("http://127.0.0.1:8080/"))
        .count();
    assert_eq!(untracked, 0, "every link is tracked: {html}");

    let answer = client().get(&on(&served, &clicks[0])).call().unwrap();
    assert!(answer.status().is_redirection(), "{}", answer.status());
    let target = answer.headers()["location"].to_str().unwrap().to_string();
    assert!(target.starts_with("https://"), "{target}");
    assert!(
        invite["body"].as_str().unwrap().contains(&target),
        "the redirect goes where the text link goes: {target}"
    );

    // The click is an `email.clicked` event: the journey waits a day after it,
    // then sends the case studies; the click adds 3 to the lead score.
    deployment.run_at(T0 + 2 * DAY + HOUR);
    assert_eq!(
        deployment.contact_by_email("gao@example.com").profile.score,
        3
    );
    deployment.run_at(T0 + 3 * DAY + HOUR);
    let last = emails_to(&deployment, "gao@example.com").pop().unwrap();
    assert_eq!(last["step"], "case-studies");
}

#[test]
fn a_click_link_with_another_url_is_refused_and_records_nothing() {
    let mut deployment = Deployment::new(T0);
    let served = serve(&deployment);
    deployment.receive(whitepaper("wp-2", "fan@example.com", T0));
    deployment.run_at(T0);
    deployment.run_at(T0 + 2 * DAY);
    let invite = emails_to(&deployment, "fan@example.com").pop().unwrap();
    let click = links(
        invite["html"].as_str().unwrap(),
        "http://127.0.0.1:8080/t/c/",
    )
    .pop()
    .unwrap();
    // Swap the signed URL for another: the phisher's open redirect.
    let (signed, _) = click.rsplit_once('/').unwrap();
    let evil = format!("{signed}/aHR0cHM6Ly9ldmlsLmV4YW1wbGUv"); // https://evil.example/
    let answer = client().get(&on(&served, &evil)).call().unwrap();
    assert_eq!(answer.status(), 404);
    assert!(answer.headers().get("location").is_none());
    assert!(
        deployment
            .store
            .kv_scan_prefix("default", "inbox/", None, 10)
            .unwrap()
            .is_empty(),
        "nothing reached the inbox"
    );
}

#[test]
fn the_open_pixel_is_a_gif_and_counts_an_open() {
    let mut deployment = Deployment::new(T0);
    let served = serve(&deployment);
    deployment.receive(whitepaper("wp-3", "guo@example.com", T0));
    deployment.run_at(T0);
    let paper = emails_to(&deployment, "guo@example.com").pop().unwrap();
    let pixel = links(
        paper["html"].as_str().unwrap(),
        "http://127.0.0.1:8080/t/o/",
    )
    .pop()
    .unwrap();
    let answer = client().get(&on(&served, &pixel)).call().unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "image/gif");
    deployment.run_at(T0 + HOUR);
    let contact = deployment.contact_by_email("guo@example.com");
    assert_eq!(contact.profile.score, 1);
    assert_eq!(contact.profile.attributes["preferred_channel"], "email");
}

#[test]
fn unsubscribing_from_the_link_stops_the_next_marketing_email_with_the_reason() {
    let mut deployment = Deployment::new(T0);
    let served = serve(&deployment);
    deployment.receive(whitepaper("wp-4", "ye@example.com", T0));
    deployment.run_at(T0);
    let paper = emails_to(&deployment, "ye@example.com").pop().unwrap();
    let unsubscribe = paper["unsubscribe_url"].as_str().unwrap().to_string();

    // A link scanner's GET changes nothing; it only shows the button.
    let page = client().get(&on(&served, &unsubscribe)).call().unwrap();
    assert_eq!(page.status(), 200);
    deployment.run_at(T0 + HOUR);
    let contact = deployment.contact_by_email("ye@example.com");
    assert_eq!(
        contact.profile.consent["email"],
        dripline_engine::ConsentState::Granted
    );

    let done = client()
        .post(&on(&served, &unsubscribe))
        .send_empty()
        .unwrap();
    assert_eq!(done.status(), 200);
    deployment.run_at(T0 + 2 * HOUR);
    let contact = deployment.contact_by_email("ye@example.com");
    assert_eq!(
        contact.profile.consent["email"],
        dripline_engine::ConsentState::Denied
    );

    deployment.run_at(T0 + 2 * DAY);
    let invite = emails_to(&deployment, "ye@example.com").pop().unwrap();
    assert_eq!(invite["step"], "trial-invite");
    assert_eq!(
        invite["delivery"],
        json!({ "status": "suppressed", "reason": "no consent for email" })
    );
}

#[test]
fn a_tracking_key_written_into_the_components_store_signs_no_valid_link() {
    use dripline_delivery::tracking::{Link, Tracker};
    let mut deployment = Deployment::new(T0);
    // What a gateway component granted the `default` store could write, under
    // the name the key had there and under the name it has now.
    let forged = b"a key that a component chose".to_vec();
    for key in ["runtime/tracking-secret", "tracking-secret"] {
        deployment
            .store
            .apply(&[dripline_store::Write::KvSet {
                store: dripline_store::DEFAULT_KV_STORE.into(),
                key: key.into(),
                value: forged.clone(),
            }])
            .unwrap();
    }
    deployment.restart();
    let link = Tracker::new("http://127.0.0.1:8080", forged).url(
        Link::Unsubscribe,
        "e1/send/1/0/send-0",
        "",
    );
    let mut parts = link.rsplit('/');
    let (signature, token) = (parts.next().unwrap(), parts.next().unwrap());
    let tracker = deployment
        .runner
        .tracker()
        .expect("the shipped delivery.toml turns tracking on");
    assert_eq!(
        tracker.verify(Link::Unsubscribe, token, signature, ""),
        None
    );
}

#[test]
fn an_open_pixel_loaded_eight_times_adds_the_points_of_one_open() {
    let mut deployment = Deployment::new(T0);
    let served = serve(&deployment);
    deployment.receive(whitepaper("wp-1", "gao@example.com", T0));
    deployment.run_at(T0);
    let delivery = emails_to(&deployment, "gao@example.com").pop().unwrap();
    let html = delivery["html"].as_str().unwrap();
    let pixel = links(html, "http://127.0.0.1:8080/t/o/")
        .pop()
        .unwrap_or_else(|| panic!("no open pixel in {html}"));
    for load in 0..8 {
        // A mail client, a scanner, a forward: each load answers the pixel.
        deployment.clock.set(T0 + 1000 * (load + 1));
        let answer = client().get(&on(&served, &pixel)).call().unwrap();
        assert_eq!(answer.status(), 200);
    }
    deployment.run_at(T0 + 60_000);
    // `email.opened` is worth 1 in the shipped delivery.toml.
    assert_eq!(
        deployment.contact_by_email("gao@example.com").profile.score,
        1
    );
}

#[test]
fn a_link_scanners_open_and_click_are_sent_on_but_move_no_lead_and_add_no_score() {
    let mut deployment = Deployment::new(T0);
    let served = serve(&deployment);
    deployment.receive(whitepaper("wp-9", "scanned@example.com", T0));
    deployment.run_at(T0);
    deployment.run_at(T0 + 2 * DAY);
    let invite = emails_to(&deployment, "scanned@example.com").pop().unwrap();
    let html = invite["html"].as_str().unwrap();
    let click = links(html, "http://127.0.0.1:8080/t/c/").remove(0);
    let pixel = links(html, "http://127.0.0.1:8080/t/o/").remove(0);
    let scanners = [
        "Mozilla/5.0 (compatible; Barracuda Sentinel)",
        "Mimecast URL Protect",
        "Proofpoint URL Defense",
    ];
    for agent in scanners {
        let answer = client()
            .get(&on(&served, &click))
            .header("User-Agent", agent)
            .call()
            .unwrap();
        assert!(
            answer.status().is_redirection(),
            "{agent}: {}",
            answer.status()
        );
        let answer = client()
            .get(&on(&served, &pixel))
            .header("User-Agent", agent)
            .call()
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    deployment.run_at(T0 + 2 * DAY + HOUR);
    deployment.run_at(T0 + 3 * DAY + 2 * HOUR);
    let contact = deployment.contact_by_email("scanned@example.com");
    assert_eq!(contact.profile.score, 0, "a scanner scored");
    let last = emails_to(&deployment, "scanned@example.com").pop().unwrap();
    assert_eq!(
        last["step"], "trial-invite",
        "a scanner's click moved the lead on"
    );
    // The person's own click, from a mail client, still counts.
    let answer = client()
        .get(&on(&served, &click))
        .header(
            "User-Agent",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko)",
        )
        .call()
        .unwrap();
    assert!(answer.status().is_redirection());
    deployment.run_at(T0 + 3 * DAY + 3 * HOUR);
    assert_eq!(
        deployment
            .contact_by_email("scanned@example.com")
            .profile
            .score,
        3
    );
}
