//! The webhook gateway over real HTTP on loopback: the repository's
//! `spin.toml`, the real gateway and trigger components, the embedded SQLite
//! store; each request answered with its exact status and the store holding
//! exactly what it should.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use dripline_gateway_host::{Gateway, SpinApp, VariableSource};
use dripline_store::SqliteStore;
use dripline_store::prelude::*;
use dripline_tests::gateway::{
    SHOPIFY_SECRET, Served, TALLY_SECRET, TRACK_KEY, TYPEFORM_SECRET, serve, serve_with,
    stored_case as case,
};
use dripline_tests::{components_dir, repo_root, sandbox};
use serde_json::Value;
use wasmtime::component::types::ComponentItem;

/// An HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum Framing {
    Length,
    Chunked,
}

/// Sends one request on a fresh connection, writing from another thread so
/// that an early answer (a 413 before the body is read) is read as it comes.
fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
    framing: Framing,
) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let mut wire = Vec::new();
    match framing {
        Framing::Length => {
            head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            wire.extend_from_slice(head.as_bytes());
            wire.extend_from_slice(body);
        }
        Framing::Chunked => {
            head.push_str("transfer-encoding: chunked\r\n\r\n");
            wire.extend_from_slice(head.as_bytes());
            for chunk in body.chunks(64 << 10) {
                wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                wire.extend_from_slice(chunk);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
        }
    }
    let mut writer = stream.try_clone().unwrap();
    let writing = std::thread::spawn(move || {
        // The server may answer and close before it reads everything.
        let _ = writer.write_all(&wire);
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) if !raw.is_empty() => break,
            Err(e) => panic!("reading the answer: {e}"),
        }
        if complete(&raw) {
            break;
        }
    }
    drop(stream);
    let _ = writing.join();
    parse(&raw)
}

fn split_head(raw: &[u8]) -> Option<(String, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((
        String::from_utf8_lossy(&raw[..end]).into_owned(),
        &raw[end + 4..],
    ))
}

fn complete(raw: &[u8]) -> bool {
    let Some((head, body)) = split_head(raw) else {
        return false;
    };
    let head = head.to_ascii_lowercase();
    if let Some(line) = head.lines().find(|l| l.starts_with("content-length:")) {
        let n: usize = line["content-length:".len()..].trim().parse().unwrap_or(0);
        return body.len() >= n;
    }
    head.contains("transfer-encoding: chunked") && body.ends_with(b"0\r\n\r\n")
}

fn parse(raw: &[u8]) -> Answer {
    let (head, body) = split_head(raw)
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(raw)));
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&body[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&body[start..start + size]);
        body = &body[(start + size + 2).min(body.len())..];
    }
    out
}

fn shopify_headers(
    headers: &[(String, String)],
    body: &[u8],
    secret: &str,
) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = headers
        .iter()
        .map(|(n, v)| (&*Box::leak(n.clone().into_boxed_str()), v.clone()))
        .collect();
    out.push((
        "x-shopify-hmac-sha256",
        webhook_auth::sign(secret.as_bytes(), body),
    ));
    out
}

fn post_shopify(served: &Served, name: &str, secret: &str) -> Answer {
    let (body, headers) = case("shopify", name);
    send(
        served.addr,
        "POST",
        "/webhooks/shopify",
        &shopify_headers(&headers, &body, secret),
        &body,
        Framing::Length,
    )
}

fn keys(served: &Served, prefix: &str) -> Vec<String> {
    served
        .store
        .kv_keys("default")
        .unwrap()
        .into_iter()
        .filter(|k| k.starts_with(prefix))
        .collect()
}

fn inbox(served: &Served) -> Vec<Value> {
    served
        .store
        .inbox_peek(1000)
        .unwrap()
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v).unwrap())
        .collect()
}

#[test]
fn a_signed_checkout_lands_in_the_inbox_once_and_its_replay_adds_nothing() {
    let served = serve();
    let answer = post_shopify(&served, "checkouts-create", SHOPIFY_SECRET);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["accepted"], 1);

    let events = inbox(&served);
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["name"], "checkout.created");
    assert_eq!(event["source"], "shopify");
    assert_eq!(event["identities"]["email"], "li.wei@example.com");
    assert!(event["properties"].is_object(), "{event}");
    // The record is the canonical event in the runtime's own serde shape.
    let typed: dripline_engine::Event = serde_json::from_value(event.clone()).unwrap();
    let key = &served.store.inbox_peek(1).unwrap()[0].0;
    assert_eq!(
        key,
        &dripline_store::inbox_key(typed.received_at, &typed.id)
    );
    assert_eq!(
        keys(&served, "dedupe/"),
        ["dedupe/shopify/98880550-7158-44d4-b7cd-2c97c8a091b5"]
    );

    let replay = post_shopify(&served, "checkouts-create", SHOPIFY_SECRET);
    assert_eq!(replay.status, 200, "{replay:?}");
    assert_eq!(replay.json()["duplicate"], true);
    assert_eq!(inbox(&served).len(), 1);
    assert_eq!(served.store.kv_keys("default").unwrap().len(), 2);
}

#[test]
fn a_bad_or_missing_signature_is_refused_with_401_and_nothing_is_stored() {
    let served = serve();
    let answer = post_shopify(&served, "checkouts-create", "not-the-secret");
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(answer.json()["field"], "x-shopify-hmac-sha256");
    assert!(!answer.body.contains(SHOPIFY_SECRET));

    let (body, headers) = case("shopify", "checkouts-create");
    let unsigned: Vec<(&str, String)> = shopify_headers(&headers, &body, SHOPIFY_SECRET)
        .into_iter()
        .filter(|(n, _)| *n != "x-shopify-hmac-sha256")
        .collect();
    let answer = send(
        served.addr,
        "POST",
        "/webhooks/shopify",
        &unsigned,
        &body,
        Framing::Length,
    );
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(served.store.kv_keys("default").unwrap().is_empty());
}

#[test]
fn a_body_over_one_mebibyte_is_refused_with_413_whether_declared_or_streamed() {
    let served = serve();
    let body = vec![b' '; (1 << 20) + 1];
    let headers = vec![("content-type", "application/json".to_string())];
    for framing in [Framing::Length, Framing::Chunked] {
        let answer = send(
            served.addr,
            "POST",
            "/webhooks/shopify",
            &headers,
            &body,
            framing,
        );
        assert_eq!(answer.status, 413, "{answer:?}");
    }
    // Exactly the limit is read, and then refused for its signature.
    let body = vec![b' '; 1 << 20];
    let answer = send(
        served.addr,
        "POST",
        "/webhooks/shopify",
        &headers,
        &body,
        Framing::Chunked,
    );
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(served.store.kv_keys("default").unwrap().is_empty());
}

#[test]
fn a_malformed_payload_is_refused_with_400_naming_the_reason() {
    let served = serve();
    let body = br#"{"id": 1, "email": "li@example.com""#.to_vec();
    let headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        (
            "x-shopify-topic".to_string(),
            "checkouts/create".to_string(),
        ),
        (
            "x-shopify-event-id".to_string(),
            "evt-malformed".to_string(),
        ),
    ];
    let answer = send(
        served.addr,
        "POST",
        "/webhooks/shopify",
        &shopify_headers(&headers, &body, SHOPIFY_SECRET),
        &body,
        Framing::Length,
    );
    assert_eq!(answer.status, 400, "{answer:?}");
    let reason = answer.json();
    assert!(
        reason["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{reason}"
    );
    assert!(reason.get("field").is_some(), "{reason}");
    assert!(served.store.kv_keys("default").unwrap().is_empty());
}

#[test]
fn a_wrong_content_type_is_refused_with_415_and_a_wrong_method_with_405() {
    let served = serve();
    let headers = vec![("content-type", "text/xml".to_string())];
    let answer = send(
        served.addr,
        "POST",
        "/webhooks/shopify",
        &headers,
        b"<x/>",
        Framing::Length,
    );
    assert_eq!(answer.status, 415, "{answer:?}");
    assert_eq!(answer.json()["field"], "content-type");

    let answer = send(
        served.addr,
        "GET",
        "/webhooks/shopify",
        &[],
        b"",
        Framing::Length,
    );
    assert_eq!(answer.status, 405, "{answer:?}");
    assert_eq!(answer.header("allow"), Some("POST"));

    let answer = send(
        served.addr,
        "POST",
        "/nowhere",
        &headers,
        b"",
        Framing::Length,
    );
    assert_eq!(answer.status, 404, "{answer:?}");
    assert!(served.store.kv_keys("default").unwrap().is_empty());
}

#[test]
fn a_checkout_without_email_or_phone_is_acknowledged_skipped_and_counted() {
    let served = serve();
    let answer = post_shopify(&served, "checkouts-create-anonymous", SHOPIFY_SECRET);
    assert_eq!(answer.status, 200, "{answer:?}");
    let skipped = answer.json()["skipped"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(skipped.contains("no email or phone"), "{skipped}");
    assert!(inbox(&served).is_empty());
    let count = served
        .store
        .kv_get("default", "metric/skipped/shopify")
        .unwrap();
    assert_eq!(count.as_deref(), Some(&b"1"[..]));
}

#[test]
fn a_track_call_naming_no_user_is_unprocessable_and_a_good_one_is_accepted() {
    let served = serve();
    let (body, _) = case("track", "track-no-user");
    let headers = vec![
        ("content-type", "application/json".to_string()),
        ("authorization", format!("Bearer {TRACK_KEY}")),
    ];
    let answer = send(
        served.addr,
        "POST",
        "/v1/track",
        &headers,
        &body,
        Framing::Length,
    );
    assert_eq!(answer.status, 422, "{answer:?}");
    assert!(served.store.kv_keys("default").unwrap().is_empty());

    let (body, _) = case("track", "track");
    let wrong_key = vec![
        ("content-type", "application/json".to_string()),
        ("authorization", "Bearer nope".to_string()),
    ];
    let answer = send(
        served.addr,
        "POST",
        "/v1/track",
        &wrong_key,
        &body,
        Framing::Length,
    );
    assert_eq!(answer.status, 401, "{answer:?}");

    let basic = format!("Basic {}", base64_user(TRACK_KEY));
    let headers = vec![
        ("content-type", "application/json".to_string()),
        ("authorization", basic),
    ];
    let answer = send(
        served.addr,
        "POST",
        "/v1/track",
        &headers,
        &body,
        Framing::Length,
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(inbox(&served).len(), 1);
}

#[test]
fn an_html_form_post_redirects_to_its_thank_you_page() {
    let served = serve();
    let headers = vec![(
        "content-type",
        "application/x-www-form-urlencoded".to_string(),
    )];
    let body = b"email=Li.Wei%40Example.com&company=Acme&_redirect=%2Fthanks";
    let answer = send(
        served.addr,
        "POST",
        "/forms/whitepaper",
        &headers,
        body,
        Framing::Length,
    );
    assert_eq!(answer.status, 303, "{answer:?}");
    assert_eq!(answer.header("location"), Some("/thanks"));
    let events = inbox(&served);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["name"], "form.submitted");
    assert_eq!(events[0]["identities"]["email"], "li.wei@example.com");
}

#[test]
fn typeform_and_tally_responses_are_verified_with_their_own_secrets_and_deduped_on_their_event_ids()
{
    let served = serve();
    let typeform: fn(&[u8]) -> String = |body| {
        format!(
            "sha256={}",
            webhook_auth::sign(TYPEFORM_SECRET.as_bytes(), body)
        )
    };
    let tally: fn(&[u8]) -> String = |body| webhook_auth::sign(TALLY_SECRET.as_bytes(), body);
    for (source, path, header, signature) in [
        (
            "typeform",
            "/forms/typeform/wasm-report",
            "typeform-signature",
            typeform,
        ),
        ("tally", "/forms/tally/webinar", "tally-signature", tally),
    ] {
        let (body, _) = case(source, "form-response");
        let content_type = ("content-type", "application/json".to_string());
        let forged = vec![
            content_type.clone(),
            (header, webhook_auth::sign(b"guess", &body)),
        ];
        let answer = send(served.addr, "POST", path, &forged, &body, Framing::Length);
        assert_eq!(answer.status, 401, "{source}: {answer:?}");

        let signed = vec![content_type, (header, signature(&body))];
        let answer = send(served.addr, "POST", path, &signed, &body, Framing::Length);
        assert_eq!(answer.status, 200, "{source}: {answer:?}");
        assert_eq!(answer.json()["accepted"], 1, "{source}");
        let replay = send(served.addr, "POST", path, &signed, &body, Framing::Length);
        assert_eq!(replay.json()["duplicate"], true, "{source}: {replay:?}");
    }
    let events = inbox(&served);
    let sources: Vec<&str> = events.iter().filter_map(|e| e["source"].as_str()).collect();
    assert_eq!(sources.len(), 2, "{events:?}");
    assert!(
        sources.contains(&"typeform") && sources.contains(&"tally"),
        "{sources:?}"
    );
    assert_eq!(keys(&served, "dedupe/typeform/").len(), 1);
    assert_eq!(keys(&served, "dedupe/tally/").len(), 1);
}

#[test]
fn a_multipart_form_post_is_accepted_and_an_open_redirect_is_not_followed() {
    let served = serve();
    let (body, headers) = case("html", "careers-multipart");
    let body = String::from_utf8(body)
        .unwrap()
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    let headers: Vec<(&str, String)> = headers
        .iter()
        .filter(|(n, _)| n == "content-type")
        .map(|(_, v)| ("content-type", v.clone()))
        .collect();
    let answer = send(
        served.addr,
        "POST",
        "/forms/careers",
        &headers,
        body.as_bytes(),
        Framing::Length,
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(inbox(&served).len(), 1);

    let urlencoded = vec![(
        "content-type",
        "application/x-www-form-urlencoded".to_string(),
    )];
    let body = b"email=li%40example.com&_redirect=https%3A%2F%2Fevil.example%2Fphish";
    let answer = send(
        served.addr,
        "POST",
        "/forms/whitepaper",
        &urlencoded,
        body,
        Framing::Length,
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("location"), None);
}

/// `base64(key:)`, the Basic credentials Segment's libraries send.
fn base64_user(key: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{key}:").into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn every_trigger_in_spin_toml_imports_nothing_spin_cannot_give_it() {
    // Under Spin, a dependency's own imports become the composed component's;
    // Spin provides WASI but not `dripline:journey/log`, so a trigger used as
    // a dependency must not import it.
    let sandbox = sandbox(Duration::from_secs(2), 64 << 20);
    let app = SpinApp::load(
        &repo_root().join("spin.toml"),
        Some(components_dir()),
        &VariableSource {
            file: BTreeMap::new(),
            env: Some(BTreeMap::new()),
        },
    )
    .unwrap();
    for component in app.components.values() {
        let trigger = component.trigger.as_ref().unwrap();
        let compiled = sandbox.compile_file(&component.id, trigger).unwrap();
        let ty = compiled.component_type();
        for (import, item) in ty.imports(sandbox.engine()) {
            // An interface of types only (`dripline:journey/types`) needs no
            // implementation: wasmtime, and so Spin, links it with nothing.
            let types_only = match item.ty {
                ComponentItem::ComponentInstance(instance) => {
                    instance.exports(sandbox.engine()).all(|(_, export)| {
                        !matches!(
                            export.ty,
                            ComponentItem::ComponentFunc(_) | ComponentItem::Resource(_)
                        )
                    })
                }
                _ => false,
            };
            assert!(
                import.starts_with("wasi:") || types_only,
                "{} imports {import}, which Spin does not provide",
                trigger.display()
            );
        }
    }
}

#[test]
fn a_trigger_that_imports_more_than_wasi_is_refused_when_the_gateway_loads() {
    // The trigger runs inside the gateway's instance, composed with it; a
    // trigger that could import host interfaces would reach past its grants.
    // A step component (it imports the journey host's interfaces, and exports
    // no trigger-handler) stands in for such a trigger.
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        r#"
spin_manifest_version = 2
[application]
name = "hostile"
[[trigger.http]]
route = "/webhooks/shopify"
component = "shop"
[component.shop]
source = "gateway.wasm"
key_value_stores = ["default"]
[component.shop.variables]
source = "shopify"
[component.shop.dependencies]
"dripline:journey/trigger-handler@0.1.0" = { path = "tag.wasm" }
"#,
    )
    .unwrap();
    let app = SpinApp::load(
        &manifest,
        Some(components_dir()),
        &VariableSource {
            file: BTreeMap::new(),
            env: Some(BTreeMap::new()),
        },
    )
    .unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("dripline.db")).unwrap());
    let sandbox = sandbox(Duration::from_secs(2), 64 << 20);
    let error = Gateway::load(sandbox, &app, store, Duration::from_secs(10))
        .err()
        .expect("a trigger importing host interfaces must not load");
    let message = format!("{error:#}");
    assert!(
        message.contains("trigger `tag` imports `dripline:journey/"),
        "{message}"
    );
}

#[test]
fn instances_serve_request_after_request_and_are_retired_without_losing_one() {
    // One connection at a time keeps reusing one instance, which is retired
    // after REQUESTS_PER_INSTANCE requests; interleaved refusals and replays
    // must store nothing, whichever instance served them.
    let served = serve();
    let (body, headers) = case("shopify", "checkouts-create");
    let total = dripline_gateway_host::REQUESTS_PER_INSTANCE as usize + 20;
    let mut accepted = 0;
    for n in 0..total {
        let mut headers = shopify_headers(&headers, &body, SHOPIFY_SECRET);
        headers.retain(|(name, _)| *name != "x-shopify-event-id");
        // Every third request replays the one before it; every seventh is forged.
        let id = if n % 3 == 2 { n - 1 } else { n };
        headers.push(("x-shopify-event-id", format!("reuse-{id}")));
        let forged = n % 7 == 6;
        if forged {
            headers.retain(|(name, _)| *name != "x-shopify-hmac-sha256");
            headers.push(("x-shopify-hmac-sha256", "Zm9yZ2Vk".into()));
        }
        let answer = send(
            served.addr,
            "POST",
            "/webhooks/shopify",
            &headers,
            &body,
            Framing::Length,
        );
        if forged {
            assert_eq!(answer.status, 401, "request {n}: {answer:?}");
            continue;
        }
        assert_eq!(answer.status, 200, "request {n}: {answer:?}");
        if answer.json()["accepted"] == 1 {
            accepted += 1;
        }
    }
    let distinct: std::collections::BTreeSet<usize> = (0..total)
        .filter(|n| n % 7 != 6)
        .map(|n| if n % 3 == 2 { n - 1 } else { n })
        .collect();
    // A replay whose original was forged is the first authentic delivery.
    assert_eq!(accepted, distinct.len());
    assert_eq!(keys(&served, "inbox/").len(), distinct.len());
    assert_eq!(keys(&served, "dedupe/shopify/").len(), distinct.len());
}

#[test]
fn a_signed_checkout_with_1499_line_items_is_accepted_with_its_first_items_and_their_count() {
    let served = serve();
    let (body, headers) = case("shopify", "checkouts-create");
    let mut checkout: Value = serde_json::from_slice(&body).unwrap();
    let item = checkout["line_items"][0].clone();
    checkout["line_items"] = Value::Array(vec![item; 1_499]);
    let body = serde_json::to_vec(&checkout).unwrap();
    let answer = send(
        served.addr,
        "POST",
        "/webhooks/shopify",
        &shopify_headers(&headers, &body, SHOPIFY_SECRET),
        &body,
        Framing::Length,
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["accepted"], 1);
    let events = inbox(&served);
    let properties = &events[0]["properties"];
    assert_eq!(properties["line_items"].as_array().map(Vec::len), Some(500));
    assert_eq!(properties["line_items_count"], 1_499);
}

#[test]
fn two_hundred_slow_uploads_do_not_stop_a_normal_webhook() {
    let served = serve();
    // Each sends its headers and a little of its body, then waits: what a
    // slow or hostile sender does. None may hold one of the sandbox's
    // instances (the harness's pool has 32) while it trickles.
    let slow: Vec<TcpStream> = (0..200).map(|_| slow_upload(served.addr)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let answer = post_shopify(&served, "checkouts-create", SHOPIFY_SECRET);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["accepted"], 1);
    drop(slow);
}

/// A sender that opened a request on `/webhooks/shopify` and trickles its
/// body.
fn slow_upload(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /webhooks/shopify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-Shopify-Topic: checkouts/create\r\nContent-Length: 4000\r\n\r\n{{\"id\":"
    )
    .unwrap();
    stream
}

#[test]
fn a_route_at_its_cap_answers_503_with_retry_after_while_the_other_routes_are_served() {
    let served = serve_with(4);
    let slow: Vec<TcpStream> = (0..4).map(|_| slow_upload(served.addr)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let refused = post_shopify(&served, "checkouts-create", SHOPIFY_SECRET);
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert!(
        inbox(&served).is_empty(),
        "nothing of the refused one is kept"
    );

    let headers = vec![(
        "content-type",
        "application/x-www-form-urlencoded".to_string(),
    )];
    let form = send(
        served.addr,
        "POST",
        "/forms/whitepaper",
        &headers,
        b"email=li.wei%40example.com",
        Framing::Length,
    );
    assert_eq!(form.status, 200, "another route is served: {form:?}");

    // Once the slow senders are gone, the route takes requests again.
    drop(slow);
    std::thread::sleep(Duration::from_millis(300));
    let answer = post_shopify(&served, "checkouts-create", SHOPIFY_SECRET);
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[test]
fn a_connection_that_never_finishes_its_headers_is_closed_after_five_seconds() {
    let served = serve();
    let mut stream = TcpStream::connect(served.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(stream, "POST /webhooks/shopify HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    // Closed (0 bytes, or a reset), perhaps after a 408: never left open.
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => continue,
        }
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(15),
        "closed after {waited:?}"
    );
}
