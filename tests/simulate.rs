//! `dripline simulate` and `dripline preview` through the binary: each
//! shipped journey run for the test contact of `tests/cases/simulate/` on a
//! virtual clock, with the real components and delivery policy; one
//! timeline compared with the one stored beside its script; and `dripline
//! validate` checking what a journey names against the real components.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use dripline_tests::{SHIPPED_STEPS, component, dripline_binary, repo_root};

fn cases() -> &'static Path {
    Box::leak(repo_root().join("tests/cases/simulate").into_boxed_path())
}

/// A directory of the shipped step components, as a deployment has them.
fn components_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        for name in SHIPPED_STEPS {
            std::fs::copy(component(name), dir.path().join(format!("{name}.wasm"))).unwrap();
        }
        dir
    })
    .path()
}

/// `dripline simulate <journey> --contact ... --script <script>`: its output.
fn simulate(journey: &str, script: &str, json: bool) -> String {
    let mut command = Command::new(dripline_binary());
    command
        .arg("simulate")
        .arg(repo_root().join("journeys").join(format!("{journey}.toml")))
        .arg("--contact")
        .arg(cases().join("contact.json"))
        .arg("--script")
        .arg(cases().join(format!("{script}.toml")))
        .arg("--root")
        .arg(repo_root())
        .arg("--components")
        .arg(components_dir());
    if json {
        command.arg("--json");
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{journey}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_abandoned_checkout_simulation_prints_the_timeline_stored_beside_its_script() {
    let printed = simulate("abandoned-checkout", "abandoned-checkout", false);
    let stored = cases().join("abandoned-checkout.expected");
    // DRIPLINE_BLESS=1 writes what was printed as the new expectation, to be
    // read and committed by whoever changed the journey.
    if std::env::var_os("DRIPLINE_BLESS").is_some() {
        std::fs::write(&stored, &printed).unwrap();
    }
    let expected = std::fs::read_to_string(&stored).unwrap();
    assert_eq!(
        printed,
        expected,
        "the timeline changed; see {}",
        stored.display()
    );
}

#[test]
fn every_shipped_journey_simulates_to_a_timeline_in_which_the_contact_enters_and_hears_from_it() {
    for entry in std::fs::read_dir(repo_root().join("journeys"))
        .unwrap()
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let journey = path.file_stem().unwrap().to_str().unwrap().to_owned();
        // A journey that only takes hand-offs is reached through the one
        // that hands over.
        let run = match journey.as_str() {
            "new-customer-care" => "abandoned-checkout",
            other => other,
        };
        let printed = simulate(run, &journey, true);
        let moments: Vec<serde_json::Value> = serde_json::from_str(&printed).unwrap();
        let entered = moments.iter().any(|m| {
            m["kind"] == "entered"
                && m["what"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{journey} "))
        });
        assert!(entered, "{journey}: nobody entered:\n{printed}");
        let heard = moments
            .iter()
            .any(|m| m["kind"] == "message" && m["what"].as_str().unwrap().ends_with(": sent"));
        assert!(heard, "{journey}: no message went:\n{printed}");
        let failed = moments.iter().find(|m| {
            m["kind"] == "exited" && m["what"].as_str().unwrap().starts_with("step failed")
        });
        assert!(failed.is_none(), "{journey}: {failed:?}");
    }
}

#[test]
fn a_preview_renders_one_template_for_the_test_contact() {
    let properties = tempfile::NamedTempFile::with_suffix(".json").unwrap();
    std::fs::write(
        properties.path(),
        r#"{ "abandoned_checkout_url": "https://shop.example.com/recover/1",
             "currency": "CNY",
             "line_items": [{ "title": "Ceramic mug", "quantity": 1, "price": "64.00" }] }"#,
    )
    .unwrap();
    let out = Command::new(dripline_binary())
        .args([
            "preview",
            "checkout-items",
            "--channel",
            "email",
            "--contact",
        ])
        .arg(cases().join("contact.json"))
        .arg("--properties")
        .arg(properties.path())
        .arg("--root")
        .arg(repo_root())
        .arg("--components")
        .arg(components_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.contains("subject: You left something in your cart"),
        "{printed}"
    );
    assert!(printed.contains("Ceramic mug: 64.00 CNY"), "{printed}");
    assert!(
        printed.contains("https://shop.example.com/recover/1"),
        "{printed}"
    );

    let missing = Command::new(dripline_binary())
        .args(["preview", "no-such-template", "--contact"])
        .arg(cases().join("contact.json"))
        .arg("--root")
        .arg(repo_root())
        .arg("--components")
        .arg(components_dir())
        .output()
        .unwrap();
    assert!(!missing.status.success());
}

#[test]
fn validate_catches_a_missing_component_template_and_hand_off_target_and_a_bad_step_config() {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["journeys", "templates"] {
        std::fs::create_dir_all(dir.path().join(folder)).unwrap();
    }
    std::fs::copy(
        repo_root().join("templates/checkout-reminder.sms.liquid"),
        dir.path().join("templates/checkout-reminder.sms.liquid"),
    )
    .unwrap();
    let journey = r##"name = "Broken"
version = 1

[trigger]
event = "checkout.created"

[goal]
event = "order.paid"
hand_off = "thank-you"

[[steps]]
id = "remind"
uses = "send"
config = { channel = "sms", template = "checkout-reminder" }
next = "mail"

[[steps]]
id = "mail"
uses = "send"
config = { channel = "email", template = "no-such-template" }
next = "tag-it"

[[steps]]
id = "tag-it"
uses = "tag"
config = { tag = "" }
next = "notify"

[[steps]]
id = "notify"
uses = "slack"
config = { channel = "#sales" }
"##;
    std::fs::write(dir.path().join("journeys/broken.toml"), journey).unwrap();
    let out = Command::new(dripline_binary())
        .args(["validate", "journeys/broken.toml", "--components"])
        .arg(components_dir())
        .current_dir(dir.path())
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{printed}");
    let line = |needle: &str| {
        printed
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{printed}"))
            .to_owned()
    };
    let hand_off = line("goal.hand_off");
    assert!(
        hand_off.starts_with("journeys/broken.toml:9: goal.hand_off: no journey \"thank-you\""),
        "{printed}"
    );
    let template = line("steps.mail.config");
    assert!(
        template.starts_with("journeys/broken.toml:18:") && template.contains("no-such-template"),
        "{template}"
    );
    let config = line("steps.tag-it.config");
    assert!(config.starts_with("journeys/broken.toml:24:"), "{config}");
    let component = line("steps.notify.uses");
    assert!(
        component.starts_with("journeys/broken.toml:30: steps.notify.uses: no component \"slack\"")
            && component.contains("send"),
        "{component}"
    );
    let sms = line("steps.remind: SMS");
    assert!(sms.contains("GSM-7") && sms.contains("1 segment"), "{sms}");
    assert!(!printed.contains("steps.remind.config"), "{printed}");
}
