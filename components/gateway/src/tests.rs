#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::*;

const SECRET: &str = "hush";

#[derive(Default)]
struct Memory {
    kv: BTreeMap<String, Vec<u8>>,
    answer: Option<Result<Vec<Event>, TriggerError>>,
    calls: usize,
}

impl Backend for Memory {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(self.kv.get(key).cloned())
    }
    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        self.kv.insert(key.into(), value.into());
        Ok(())
    }
    fn trigger(&mut self, _request: Inbound) -> Result<Vec<Event>, TriggerError> {
        self.calls += 1;
        self.answer.clone().unwrap_or(Ok(Vec::new()))
    }
}

fn checkout_event() -> Event {
    Event {
        id: "shopify-e1".into(),
        source: "shopify".into(),
        name: "checkout.created".into(),
        email: Some("li@example.com".into()),
        phone: None,
        external_ids: vec![("shopify".into(), "42".into())],
        properties: r#"{"total":"9.90"}"#.into(),
        occurred_at: 1,
        received_at: 2,
    }
}

fn shopify(body: &[u8], signature: &str) -> Inbound {
    Inbound {
        source: "shopify".into(),
        method: "POST".into(),
        path: "/webhooks/shopify".into(),
        query: String::new(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-shopify-hmac-sha256".into(), signature.into()),
            ("x-shopify-event-id".into(), "evt-1".into()),
        ],
        body: body.to_vec(),
        received_at: 1_763_800_000_000,
    }
}

fn route(source: Source) -> Route {
    Route {
        source,
        secret: SECRET.into(),
        redirect_hosts: vec!["example.com".into()],
        consent_fields: Vec::new(),
        guard: crate::FormGuard::default(),
    }
}

#[test]
fn a_signed_delivery_lands_in_the_inbox_once_and_its_replay_adds_nothing() {
    let body = br#"{"id":1}"#;
    let signed = shopify(body, &webhook_auth::sign(SECRET.as_bytes(), body));
    let mut backend = Memory {
        answer: Some(Ok(vec![checkout_event()])),
        ..Memory::default()
    };
    let reply = handle_body(&mut backend, &route(Source::Shopify), signed.clone());
    assert_eq!(reply.status, 200, "{reply:?}");
    let record = &backend.kv["inbox/1763800000000/shopify-e1"];
    let record: Value = serde_json::from_slice(record).unwrap();
    assert_eq!(record["properties"]["total"], "9.90");
    assert_eq!(record["identities"]["external_ids"]["shopify"], "42");
    assert_eq!(record["received_at"], 1_763_800_000_000_i64);
    assert!(record["identities"].get("phone").is_none());
    assert!(backend.kv.contains_key("dedupe/shopify/evt-1"));

    let replay = handle_body(
        &mut backend,
        &route(Source::Shopify),
        Inbound {
            received_at: 5,
            ..signed
        },
    );
    assert_eq!(replay.status, 200);
    assert_eq!(backend.kv.len(), 2);
    assert_eq!(backend.calls, 1);
}

#[test]
fn an_inbox_record_carries_the_properties_object_and_refuses_anything_else() {
    let mut event = checkout_event();
    event.properties =
        " \n{\"items\":[{\"sku\":\"M-1\"}],\"note\":\"caf\\u00e9 \\\"ok\\\"\"} ".into();
    event.external_ids.push(("shopify".into(), "43".into()));
    let record: Value = serde_json::from_slice(&inbox_record(&event, 7).unwrap()).unwrap();
    assert_eq!(record["properties"]["items"][0]["sku"], "M-1");
    assert_eq!(record["properties"]["note"], "caf\u{e9} \"ok\"");
    assert_eq!(record["identities"]["external_ids"]["shopify"], "43");
    assert_eq!(record["received_at"], 7);
    assert_eq!(record["occurred_at"], 1);
    for not_an_object in [r#"[1]"#, r#""text""#, r#"{"open":"#, r#"{} {}"#, ""] {
        event.properties = not_an_object.into();
        assert_eq!(inbox_record(&event, 7), None, "{not_an_object:?}");
    }
}

#[test]
fn a_delivery_seen_more_than_72_hours_ago_is_accepted_again() {
    let body = br#"{"id":1}"#;
    let signed = shopify(body, &webhook_auth::sign(SECRET.as_bytes(), body));
    let mut backend = Memory {
        answer: Some(Ok(vec![checkout_event()])),
        ..Memory::default()
    };
    let marked_at = signed.received_at - DEDUPE_TTL_MS;
    backend.kv.insert(
        "dedupe/shopify/evt-1".into(),
        marked_at.to_string().into_bytes(),
    );
    let reply = handle_body(&mut backend, &route(Source::Shopify), signed.clone());
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(backend.calls, 1);
    assert!(backend.kv.contains_key("inbox/1763800000000/shopify-e1"));
    assert_eq!(
        backend.kv["dedupe/shopify/evt-1"],
        signed.received_at.to_string().into_bytes()
    );
}

#[test]
fn a_bad_signature_is_refused_before_the_trigger_and_stores_nothing() {
    let mut backend = Memory::default();
    let reply = handle_body(
        &mut backend,
        &route(Source::Shopify),
        shopify(b"{}", "bm9wZQ=="),
    );
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body["field"], "x-shopify-hmac-sha256");
    assert!(!reply.body.to_string().contains(SECRET));
    assert_eq!(backend.calls, 0);
    assert!(backend.kv.is_empty());
}

#[test]
fn an_unconfigured_secret_refuses_every_signed_delivery() {
    let body = b"{}";
    let signed = shopify(body, &webhook_auth::sign(b"", body));
    let mut backend = Memory::default();
    let unconfigured = Route {
        secret: String::new(),
        ..route(Source::Shopify)
    };
    assert_eq!(handle_body(&mut backend, &unconfigured, signed).status, 401);
}

#[test]
fn trigger_errors_map_to_statuses_and_skips_are_counted_once() {
    let body = b"{}";
    let signed = shopify(body, &webhook_auth::sign(SECRET.as_bytes(), body));
    for (error, status) in [
        (
            TriggerError::Malformed("line_items[0].price: not a number".into()),
            400,
        ),
        (TriggerError::UnsupportedContentType("text/xml".into()), 415),
        (TriggerError::Other("boom".into()), 500),
    ] {
        let mut backend = Memory {
            answer: Some(Err(error)),
            ..Memory::default()
        };
        let reply = handle_body(&mut backend, &route(Source::Shopify), signed.clone());
        assert_eq!(reply.status, status);
        assert!(backend.kv.is_empty(), "{:?}", backend.kv);
        if status == 400 {
            assert_eq!(reply.body["field"], "line_items[0].price");
        }
    }
    let mut backend = Memory {
        answer: Some(Err(TriggerError::MissingIdentity(
            "no email or phone".into(),
        ))),
        ..Memory::default()
    };
    let reply = handle_body(&mut backend, &route(Source::Shopify), signed.clone());
    assert_eq!(reply.status, 200);
    assert!(reply.body["skipped"].as_str().unwrap().contains("no email"));
    handle_body(&mut backend, &route(Source::Shopify), signed);
    assert_eq!(backend.kv["metric/skipped/shopify"], b"1");
}

#[test]
fn a_track_call_naming_nobody_is_unprocessable() {
    let mut backend = Memory {
        answer: Some(Err(TriggerError::MissingIdentity(
            "userId or anonymousId".into(),
        ))),
        ..Memory::default()
    };
    let request = Inbound {
        source: "track".into(),
        method: "POST".into(),
        path: "/v1/track".into(),
        query: String::new(),
        headers: vec![("authorization".into(), format!("Bearer {SECRET}"))],
        body: b"{}".to_vec(),
        received_at: 1,
    };
    let reply = handle_body(&mut backend, &route(Source::Track), request);
    assert_eq!(reply.status, 422);
    assert!(backend.kv.is_empty());
}

#[test]
fn the_head_checks_method_path_content_type_and_declared_length() {
    let json = vec![(
        "content-type".to_string(),
        "application/json; charset=utf-8".to_string(),
    )];
    let head = |method, path, headers| Head {
        method,
        path,
        headers,
    };
    assert_eq!(
        check_head(Source::Shopify, &head("GET", "/webhooks/shopify", &json))
            .unwrap_err()
            .status,
        405
    );
    assert_eq!(
        check_head(Source::Track, &head("POST", "/v1/alias", &json))
            .unwrap_err()
            .status,
        404
    );
    assert!(check_head(Source::Track, &head("POST", "/v1/batch", &json)).is_ok());
    let xml = vec![("content-type".to_string(), "text/xml".to_string())];
    assert_eq!(
        check_head(Source::Shopify, &head("POST", "/", &xml))
            .unwrap_err()
            .status,
        415
    );
    assert_eq!(
        check_head(Source::Form, &head("POST", "/forms/x", &json))
            .unwrap_err()
            .status,
        415
    );
    let big = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("content-length".to_string(), (MAX_BODY + 1).to_string()),
    ];
    assert_eq!(
        check_head(Source::Shopify, &head("POST", "/", &big))
            .unwrap_err()
            .status,
        413
    );
}

#[test]
fn delivery_ids_come_from_each_sources_own_place() {
    let none: Vec<(String, String)> = Vec::new();
    assert_eq!(
        delivery_id(Source::Typeform, &none, br#"{"event_id":"01H"}"#).as_deref(),
        Some("01H")
    );
    assert_eq!(
        delivery_id(Source::Tally, &none, br#"{"eventId":"t-1"}"#).as_deref(),
        Some("t-1")
    );
    assert_eq!(
        delivery_id(Source::Track, &none, br#"{"messageId":"m 1"}"#)
            .unwrap()
            .len(),
        39
    );
    assert_eq!(delivery_id(Source::Track, &none, br#"{"batch":[]}"#), None);
    assert_eq!(delivery_id(Source::Form, &none, b"email=a"), None);
}

#[test]
fn a_form_redirects_only_to_its_own_paths_and_allowed_hosts() {
    let post = |query: &str, body: &str| Inbound {
        source: "form".into(),
        method: "POST".into(),
        path: "/forms/x".into(),
        query: query.into(),
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: body.as_bytes().to_vec(),
        received_at: 0,
    };
    let allowed = vec!["example.com".to_string()];
    assert_eq!(
        redirect_target(&post("", "_redirect=%2Fthanks"), &allowed).as_deref(),
        Some("/thanks")
    );
    assert_eq!(
        redirect_target(
            &post("redirect=https%3A%2F%2Fexample.com%2Fty", ""),
            &allowed
        )
        .as_deref(),
        Some("https://example.com/ty")
    );
    assert_eq!(
        redirect_target(&post("redirect=%2F%2Fevil.com", ""), &allowed),
        None
    );
    assert_eq!(
        redirect_target(
            &post("redirect=https%3A%2F%2Fexample.com%40evil.com", ""),
            &allowed
        ),
        None
    );
    assert_eq!(
        redirect_target(&post("", "_redirect=https%3A%2F%2Fevil.com"), &allowed),
        None
    );
}

#[test]
fn a_backslash_or_a_user_part_in_a_form_redirect_cannot_smuggle_in_another_host() {
    let post = |body: &str| Inbound {
        source: "form".into(),
        method: "POST".into(),
        path: "/forms/x".into(),
        query: String::new(),
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: body.as_bytes().to_vec(),
        received_at: 0,
    };
    let allowed = vec!["shop.example.com".to_string()];
    for smuggled in [
        // A browser goes to evil.example: `\` reads as `/`.
        "_redirect=https%3A%2F%2Fevil.example%5C%40shop.example.com%2F",
        "_redirect=%2F%5Cevil.example",
        "_redirect=https%3A%2F%2Fuser%40shop.example.com%2F",
    ] {
        assert_eq!(
            redirect_target(&post(smuggled), &allowed),
            None,
            "{smuggled}"
        );
    }
    assert_eq!(
        redirect_target(
            &post("_redirect=https%3A%2F%2Fshop.example.com%2Fthanks"),
            &allowed
        )
        .as_deref(),
        Some("https://shop.example.com/thanks")
    );
}

#[test]
fn an_html_form_with_a_thank_you_page_answers_303() {
    let mut backend = Memory {
        answer: Some(Ok(vec![Event {
            source: "form".into(),
            name: "form.submitted".into(),
            id: "form-1".into(),
            ..checkout_event()
        }])),
        ..Memory::default()
    };
    let request = Inbound {
        source: "form".into(),
        method: "POST".into(),
        path: "/forms/x".into(),
        query: String::new(),
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: b"email=li%40example.com&_redirect=%2Fthanks".to_vec(),
        received_at: 7,
    };
    let reply = handle_body(&mut backend, &route(Source::Form), request);
    assert_eq!(reply.status, 303);
    assert_eq!(reply.headers, vec![("location", "/thanks".to_string())]);
    assert!(backend.kv.contains_key("inbox/0000000000007/form-1"));
    assert!(backend.kv.contains_key("dedupe/form/form-1"));
}

#[test]
fn a_ticked_consent_field_grants_its_channel_and_an_absent_one_says_nothing() {
    let route = crate::route_from(|name| match name {
        "source" => "form".into(),
        "consent_fields" => "email_consent=email, sms_consent=sms".into(),
        _ => String::new(),
    })
    .unwrap();
    let mut event = checkout_event();
    event.properties = serde_json::json!({
        "form": "whitepaper",
        "fields": { "email_consent": "on", "company": "Acme" }
    })
    .to_string();
    crate::take_consent(&mut event, &route.consent_fields);
    let properties: serde_json::Value = serde_json::from_str(&event.properties).unwrap();
    assert_eq!(
        properties["consent"],
        serde_json::json!({ "email": "granted" })
    );
    assert_eq!(properties["consent_source"], "form:whitepaper");

    let mut declined = checkout_event();
    declined.properties =
        serde_json::json!({ "form": "f", "fields": { "sms_consent": "no" } }).to_string();
    crate::take_consent(&mut declined, &route.consent_fields);
    let properties: serde_json::Value = serde_json::from_str(&declined.properties).unwrap();
    assert_eq!(
        properties["consent"],
        serde_json::json!({ "sms": "denied" })
    );
}
