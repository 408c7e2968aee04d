//! The trigger components (`shopify`, `forms`, `track`) run for real: built for
//! wasm32-wasip2 by `build.rs` and called through the host's sandbox.
//!
//! - Conformance: every case in `tests/cases/webhooks/<source>/` (a body and a
//!   TOML expectation beside it, see that folder's README) yields exactly its
//!   expected events or error; a body without an expectation fails the suite.
//! - Properties: random bytes and random mutations of those samples (byte
//!   flips, truncations, deleted fields, values of the wrong type) only ever
//!   yield typed errors or well-formed events, never a trap.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dripline_sandbox::bindings::{Event, InboundRequest, TriggerError};
use dripline_sandbox::{Sandbox, TriggerPlugin};
use dripline_tests::{repo_root, sandbox, trigger};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

/// Generous: a trigger call takes well under a millisecond, but the suite
/// shares two cores with a build.
const DEADLINE: Duration = Duration::from_secs(2);
const MEMORY: usize = 64 << 20;
const RECEIVED_AT: i64 = 1_709_300_000_000;

/// Each case folder's trigger component and the path a case gets when its
/// TOML names none.
const SOURCES: &[(&str, &str, &str)] = &[
    ("shopify", "shopify", "/webhooks/shopify"),
    ("typeform", "forms", "/forms/typeform"),
    ("tally", "forms", "/forms/tally"),
    ("html", "forms", "/forms/contact"),
    ("track", "track", "/v1/track"),
];

/// One stored case: a request and what it must yield.
struct Case {
    /// `<source>/<name>`, for messages.
    label: String,
    /// The trigger component it goes to.
    trigger: &'static str,
    request: InboundRequest,
    expect: toml::Table,
}

fn cases_dir() -> PathBuf {
    repo_root().join("tests/cases/webhooks")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Loads every case, failing on a body without an expectation, an
/// expectation without a body, or a folder no trigger reads.
fn load_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    for dir in files_in(&cases_dir()).into_iter().filter(|p| p.is_dir()) {
        let source = dir.file_name().unwrap().to_string_lossy().into_owned();
        let Some(&(_, trigger, default_path)) = SOURCES.iter().find(|(s, ..)| *s == source) else {
            problems.push(format!(
                "{source}/: no trigger reads this folder (see SOURCES)"
            ));
            continue;
        };
        let mut by_stem: BTreeMap<String, (Option<PathBuf>, Option<PathBuf>)> = BTreeMap::new();
        for file in files_in(&dir) {
            let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
            let slot = by_stem.entry(stem).or_default();
            match file.extension().and_then(|e| e.to_str()) {
                Some("toml") => slot.1 = Some(file),
                Some("json" | "body") => slot.0 = Some(file),
                _ => problems.push(format!("{}: neither a body nor a .toml", file.display())),
            }
        }
        for (stem, files) in by_stem {
            let label = format!("{source}/{stem}");
            let (Some(body), Some(spec)) = files else {
                problems.push(format!(
                    "{label}: needs both a body (.json/.body) and a .toml"
                ));
                continue;
            };
            let spec: toml::Table = toml::from_str(&std::fs::read_to_string(&spec).unwrap())
                .unwrap_or_else(|e| panic!("{label}.toml: {e}"));
            let Some(expect) = spec.get("expect").and_then(|e| e.as_table()).cloned() else {
                problems.push(format!("{label}: the .toml has no [expect]"));
                continue;
            };
            if expect.contains_key("events") == expect.contains_key("error") {
                problems.push(format!(
                    "{label}: [expect] needs `events` or `error`, not both"
                ));
                continue;
            }
            let mut body = std::fs::read(&body).unwrap();
            if spec.get("crlf").and_then(|v| v.as_bool()) == Some(true) {
                body = String::from_utf8(body)
                    .unwrap()
                    .replace('\n', "\r\n")
                    .into_bytes();
            }
            let headers = spec
                .get("headers")
                .and_then(|h| h.as_table())
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let path = spec
                .get("path")
                .and_then(|p| p.as_str())
                .unwrap_or(default_path);
            cases.push(Case {
                label,
                trigger,
                request: InboundRequest {
                    source: trigger.to_string(),
                    method: "POST".into(),
                    path: path.to_string(),
                    query: String::new(),
                    headers,
                    body,
                    received_at: RECEIVED_AT,
                },
                expect,
            });
        }
    }
    assert!(problems.is_empty(), "case files:\n{}", problems.join("\n"));
    cases
}

/// The three trigger components, loaded once.
fn triggers(sandbox: &Arc<Sandbox>) -> BTreeMap<&'static str, TriggerPlugin> {
    ["shopify", "forms", "track"]
        .into_iter()
        .map(|name| (name, trigger(sandbox, name)))
        .collect()
}

fn error_case(error: &TriggerError) -> (&'static str, &str) {
    match error {
        TriggerError::Malformed(m) => ("malformed", m),
        TriggerError::UnsupportedContentType(m) => ("unsupported-content-type", m),
        TriggerError::UnsupportedTopic(m) => ("unsupported-topic", m),
        TriggerError::MissingIdentity(m) => ("missing-identity", m),
        TriggerError::Other(m) => ("other", m),
    }
}

/// A value inside the properties by dotted path (`line_items.0.title`).
fn at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| match v {
        Value::Array(items) => items.get(key.parse::<usize>().ok()?),
        _ => v.get(key),
    })
}

/// What is wrong with an event against its expectation, if anything.
fn check_event(event: &Event, expected: &toml::Table) -> Vec<String> {
    let mut wrong = Vec::new();
    let text = |key: &str| expected.get(key).and_then(|v| v.as_str());
    for (key, actual) in [("name", Some(&event.name)), ("source", Some(&event.source))] {
        if let Some(want) = text(key)
            && actual.map(String::as_str) != Some(want)
        {
            wrong.push(format!("{key}: {actual:?}, expected {want:?}"));
        }
    }
    for (key, actual) in [
        ("email", &event.identities.email),
        ("phone", &event.identities.phone),
    ] {
        // An empty expectation means "none".
        if let Some(want) = text(key) {
            let want = (!want.is_empty()).then(|| want.to_string());
            if *actual != want {
                wrong.push(format!("{key}: {actual:?}, expected {want:?}"));
            }
        }
    }
    if let Some(ids) = expected.get("external_ids") {
        let want: Vec<(String, String)> = ids.clone().try_into().unwrap();
        if event.identities.external_ids != want {
            wrong.push(format!(
                "external_ids: {:?}, expected {want:?}",
                event.identities.external_ids
            ));
        }
    }
    if let Some(want) = expected.get("occurred_at").and_then(|v| v.as_integer())
        && event.occurred_at != want
    {
        wrong.push(format!(
            "occurred_at: {}, expected {want}",
            event.occurred_at
        ));
    }
    let properties: Value = match serde_json::from_str(&event.properties) {
        Ok(p) => p,
        Err(e) => return vec![format!("properties are not JSON: {e}")],
    };
    if let Some(table) = expected.get("properties").and_then(|p| p.as_table()) {
        for (path, want) in table {
            let want = serde_json::to_value(want).unwrap();
            let actual = at(&properties, path);
            if actual != Some(&want) {
                wrong.push(format!("properties.{path}: {actual:?}, expected {want}"));
            }
        }
    }
    for path in expected
        .get("absent")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
    {
        let path = path.as_str().unwrap();
        if let Some(actual) = at(&properties, path) {
            wrong.push(format!("properties.{path}: {actual}, expected none"));
        }
    }
    wrong
}

/// What is wrong with a case's result, if anything.
fn check_case(case: &Case, result: &Result<Vec<Event>, TriggerError>) -> Vec<String> {
    match (result, case.expect.get("events"), case.expect.get("error")) {
        (Ok(events), Some(expected), _) => {
            let expected = expected.as_array().unwrap();
            if events.len() != expected.len() {
                let names: Vec<_> = events.iter().map(|e| &e.name).collect();
                return vec![format!(
                    "{} events {names:?}, expected {}",
                    events.len(),
                    expected.len()
                )];
            }
            events
                .iter()
                .zip(expected)
                .enumerate()
                .flat_map(|(i, (event, want))| {
                    check_event(event, want.as_table().unwrap())
                        .into_iter()
                        .map(move |w| format!("event {i}: {w}"))
                })
                .collect()
        }
        (Err(error), _, Some(want)) => {
            let (kind, message) = error_case(error);
            let mut wrong = Vec::new();
            if Some(kind) != want.as_str() {
                wrong.push(format!("error {kind}({message:?}), expected {want}"));
            }
            if let Some(part) = case.expect.get("contains").and_then(|c| c.as_str())
                && !message.contains(part)
            {
                wrong.push(format!("error text {message:?} lacks {part:?}"));
            }
            wrong
        }
        (Ok(events), None, Some(want)) => {
            let names: Vec<_> = events.iter().map(|e| &e.name).collect();
            vec![format!("events {names:?}, expected error {want}")]
        }
        (Err(error), _, None) => vec![format!("error {error:?}, expected events")],
        (Ok(_), None, None) => vec!["no expectation".into()],
    }
}

#[test]
fn every_webhook_case_yields_exactly_its_expected_events_or_error() {
    let sandbox = sandbox(DEADLINE, MEMORY);
    let triggers = triggers(&sandbox);
    let cases = load_cases();
    let mut failures = Vec::new();
    for case in &cases {
        let result = triggers[case.trigger]
            .handle(&case.request)
            .unwrap_or_else(|e| panic!("{}: the component trapped: {e}", case.label));
        for problem in check_case(case, &result) {
            failures.push(format!("{}: {problem}", case.label));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    eprintln!("{} webhook cases passed", cases.len());
}

#[test]
fn every_supported_shopify_topic_and_every_provider_has_a_sample() {
    let cases = load_cases();
    let topics: Vec<&str> = cases
        .iter()
        .filter(|c| c.label.starts_with("shopify/") && c.expect.contains_key("events"))
        .flat_map(|c| &c.request.headers)
        .filter(|(name, _)| name == "x-shopify-topic")
        .map(|(_, topic)| topic.as_str())
        .collect();
    for topic in [
        "checkouts/create",
        "checkouts/update",
        "orders/create",
        "orders/paid",
        "customers/create",
        "customers/update",
        "carts/update",
    ] {
        assert!(topics.contains(&topic), "no sample delivers {topic}");
    }
    for (source, ..) in SOURCES {
        assert!(
            cases
                .iter()
                .any(|c| c.label.starts_with(&format!("{source}/"))
                    && c.expect.contains_key("events")),
            "no sample of {source} yields events"
        );
    }
}

#[test]
fn a_webhook_redelivered_later_yields_the_same_event_ids() {
    let sandbox = sandbox(DEADLINE, MEMORY);
    let triggers = triggers(&sandbox);
    // An HTML post has no delivery id, so its receipt time is part of its id.
    for case in load_cases()
        .iter()
        .filter(|c| !c.label.starts_with("html/"))
    {
        let first = triggers[case.trigger].handle(&case.request).unwrap();
        let mut later = case.request.clone();
        later.received_at += 3_600_000;
        let again = triggers[case.trigger].handle(&later).unwrap();
        let ids = |r: &Result<Vec<Event>, TriggerError>| {
            r.as_ref()
                .map(|events| events.iter().map(|e| e.id.clone()).collect::<Vec<_>>())
                .ok()
        };
        assert_eq!(ids(&first), ids(&again), "{}", case.label);
        if let Ok(events) = &again {
            for event in events {
                assert_eq!(event.received_at, later.received_at, "{}", case.label);
            }
        }
    }
}

#[test]
fn an_html_form_posted_twice_is_two_events_but_a_retry_of_one_post_is_one() {
    let sandbox = sandbox(DEADLINE, MEMORY);
    let forms = trigger(&sandbox, "forms");
    let case = load_cases()
        .into_iter()
        .find(|c| c.label == "html/whitepaper-urlencoded")
        .unwrap();
    let id = |received_at| {
        let mut request = case.request.clone();
        request.received_at = received_at;
        forms.handle(&request).unwrap().unwrap()[0].id.clone()
    };
    assert_eq!(id(RECEIVED_AT), id(RECEIVED_AT));
    assert_ne!(id(RECEIVED_AT), id(RECEIVED_AT + 60_000));
}

/// One way to damage a sample.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the body with random bytes.
    Random(Vec<u8>),
    /// XOR one byte (index taken modulo the length) with a mask.
    Flip(usize, u8),
    /// Cut the body (length taken modulo the length).
    Truncate(usize),
    /// Delete the n-th JSON object member (modulo the count), or for a body
    /// that is not JSON the n-th `&`-separated part.
    DeleteField(usize),
    /// Set the n-th JSON value to a value of another type.
    Retype(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048).prop_map(Mutation::Random),
        (any::<usize>(), 1..=255u8).prop_map(|(i, m)| Mutation::Flip(i, m)),
        any::<usize>().prop_map(Mutation::Truncate),
        any::<usize>().prop_map(Mutation::DeleteField),
        (any::<usize>(), any::<u8>()).prop_map(|(i, k)| Mutation::Retype(i, k)),
    ]
}

/// How many values a JSON document holds, itself included.
fn count_values(value: &Value) -> usize {
    1 + match value {
        Value::Object(map) => map.values().map(count_values).sum(),
        Value::Array(items) => items.iter().map(count_values).sum(),
        _ => 0,
    }
}

/// Replaces the n-th value in depth-first order; true once done.
fn replace_nth(value: &mut Value, n: &mut usize, replacement: &Value) -> bool {
    if *n == 0 {
        *value = replacement.clone();
        return true;
    }
    *n -= 1;
    match value {
        Value::Object(map) => map
            .values_mut()
            .any(|child| replace_nth(child, n, replacement)),
        Value::Array(items) => items
            .iter_mut()
            .any(|child| replace_nth(child, n, replacement)),
        _ => false,
    }
}

/// Deletes the n-th object member (depth first); false if there are none.
fn delete_member(value: &mut Value, n: &mut usize) -> bool {
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if *n == 0 {
                    map.remove(&key);
                    return true;
                }
                *n -= 1;
                if delete_member(map.get_mut(&key).unwrap(), n) {
                    return true;
                }
            }
            false
        }
        Value::Array(items) => items.iter_mut().any(|item| delete_member(item, n)),
        _ => false,
    }
}

fn apply(mutation: &Mutation, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    match mutation {
        Mutation::Random(bytes) => return bytes.clone(),
        Mutation::Flip(index, mask) => {
            if !body.is_empty() {
                let index = index % body.len();
                body[index] ^= mask;
            }
        }
        Mutation::Truncate(length) => body.truncate(length % (body.len() + 1)),
        Mutation::DeleteField(n) => match serde_json::from_slice::<Value>(&body) {
            Ok(mut json) => {
                let members = count_values(&json);
                delete_member(&mut json, &mut (n % members));
                body = serde_json::to_vec(&json).unwrap();
            }
            Err(_) => {
                let mut parts: Vec<&[u8]> = body.split(|b| *b == b'&').collect();
                let index = n % parts.len();
                parts.remove(index);
                body = parts.join(&b'&');
            }
        },
        Mutation::Retype(n, kind) => {
            if let Ok(mut json) = serde_json::from_slice::<Value>(&body) {
                let replacement = match kind % 6 {
                    0 => Value::Null,
                    1 => Value::from(-1),
                    2 => Value::from(1e300),
                    3 => Value::from("\u{0}\u{202e}x"),
                    4 => Value::Array(vec![Value::Null; 3]),
                    _ => Value::Object(Default::default()),
                };
                let mut index = n % count_values(&json);
                replace_nth(&mut json, &mut index, &replacement);
                body = serde_json::to_vec(&json).unwrap();
            }
        }
    }
    body
}

/// Runs `cases` random requests against one trigger: samples of its sources,
/// damaged by a mutation, with the samples' own headers. Every answer must be
/// a typed error or events that keep the WIT contract.
fn never_traps(trigger_name: &str, cases: u32) {
    let sandbox = sandbox(DEADLINE, MEMORY);
    let plugin = trigger(&sandbox, trigger_name);
    let samples: Vec<InboundRequest> = load_cases()
        .into_iter()
        .filter(|c| c.trigger == trigger_name)
        .map(|c| c.request)
        .collect();
    assert!(!samples.is_empty());
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (0..samples.len(), mutation());
    let outcome = runner.run(&strategy, |(index, mutation)| {
        let mut request = samples[index].clone();
        request.body = apply(&mutation, &request.body);
        let result = plugin
            .handle(&request)
            .map_err(|e| TestCaseError::fail(format!("trapped: {e}")))?;
        if let Ok(events) = result {
            for event in events {
                let identities = &event.identities;
                prop_assert!(!event.id.is_empty() && !event.name.is_empty());
                prop_assert!(
                    identities.email.is_some()
                        || identities.phone.is_some()
                        || !identities.external_ids.is_empty(),
                    "an event naming nobody: {event:?}"
                );
                if let Some(email) = &identities.email {
                    prop_assert_eq!(email, &email.to_lowercase());
                }
                if let Some(phone) = &identities.phone {
                    prop_assert!(
                        phone.starts_with('+') && phone[1..].bytes().all(|b| b.is_ascii_digit())
                    );
                }
                let properties: Value = serde_json::from_str(&event.properties)
                    .map_err(|e| TestCaseError::fail(format!("properties: {e}")))?;
                prop_assert!(properties.is_object());
            }
        }
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{trigger_name}: {failure}");
    }
}

#[test]
fn the_shopify_trigger_answers_random_and_damaged_webhooks_without_trapping() {
    never_traps("shopify", 200);
}

#[test]
fn the_forms_trigger_answers_random_and_damaged_posts_without_trapping() {
    never_traps("forms", 200);
}

#[test]
fn the_track_trigger_answers_random_and_damaged_calls_without_trapping() {
    never_traps("track", 200);
}
