//! The `track` trigger: the Segment spec's HTTP tracking API, so that a product
//! already instrumented with a Segment library (or anything speaking the same
//! JSON) sends its events to Dripline by changing the endpoint.
//!
//! The call is the path's last segment: `POST /v1/identify`, `/v1/track`,
//! `/v1/page` and `/v1/batch` (a `batch` list of calls, each with its `type`;
//! at most [`MAX_BATCH`]). The body is `application/json`. The gateway has
//! already checked the write key.
//!
//! | call       | event                                   | properties                                   |
//! |------------|-----------------------------------------|----------------------------------------------|
//! | `identify` | `contact.identified`                    | `traits` (the call's traits)                 |
//! | `track`    | `event` in the one scheme, see [`event_name`] | the call's `properties`, flat          |
//! | `page`     | `page.viewed`                           | the call's `properties` (`url`, `path`, `title`, ...), flat |
//!
//! Every event's properties also hold `segment`: `{"type", "event"` (track's
//! original name)`, "name", "category"` (page's)`, "user_id", "anonymous_id",
//! "context"}` where the call had them.
//!
//! - **Who**: `userId` → `("segment", id)`, `anonymousId` → `("anonymous",
//!   id)`, `traits.email` / `traits.phone` (or `context.traits` on track and
//!   page calls) → email and phone. A phone must be international (`+...` or
//!   `00...`): the API has no country to assume. A call naming nobody is
//!   `missing-identity`, which the gateway answers with 422.
//! - **Id**: stable from `messageId` (Segment's libraries set one per call
//!   and resend it on retry), else from the call's JSON text.
//! - **When**: `timestamp`, else `originalTimestamp`, else the receipt time;
//!   a timestamp that is not RFC 3339 is `malformed`.
//! - In a batch, calls of types that are not events here (`screen`, `group`,
//!   `alias`) are skipped; any invalid call fails the whole batch with its
//!   index (`batch[3]: ...`), so a client never half-delivers a batch.

use canonical::{
    Event, Identities, Request, TriggerError, id_text, normalize_email, normalize_phone,
    parse_json_object, parse_timestamp, require_media_type, stable_id, str_of,
};
use serde_json::{Map, Value, json};

canonical::export_trigger!(handle);

/// Segment's own limit on calls per batch request is larger, but a batch is
/// written to the inbox in one request's time; larger batches must be split.
pub const MAX_BATCH: usize = 100;

/// Event names longer than this are refused: a name is an identifier a
/// journey file matches on, not a payload.
const MAX_NAME: usize = 200;

/// The calls this trigger reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Call {
    Identify,
    Track,
    Page,
}

/// Turns one track API request into its events.
pub fn handle(request: &Request<'_>) -> Result<Vec<Event>, TriggerError> {
    require_media_type(request.headers, "application/json")?;
    let call = request
        .path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let body = parse_json_object(request.body)?;
    match call {
        "identify" => event(Call::Identify, &body, request.received_at).map(|e| vec![e]),
        "track" => event(Call::Track, &body, request.received_at).map(|e| vec![e]),
        "page" => event(Call::Page, &body, request.received_at).map(|e| vec![e]),
        "batch" => batch(&body, request.received_at),
        other => Err(TriggerError::UnsupportedTopic(format!(
            "call {other:?}: expected identify, track, page or batch"
        ))),
    }
}

fn batch(body: &Map<String, Value>, received_at: i64) -> Result<Vec<Event>, TriggerError> {
    let calls = match body.get("batch") {
        Some(Value::Array(calls)) => calls,
        Some(_) => return Err(TriggerError::Malformed("batch: not a list".into())),
        None => return Err(TriggerError::Malformed("batch: missing".into())),
    };
    if calls.len() > MAX_BATCH {
        return Err(TriggerError::Malformed(format!(
            "batch: {} calls, more than {MAX_BATCH}",
            calls.len()
        )));
    }
    let mut events = Vec::with_capacity(calls.len());
    for (index, call) in calls.iter().enumerate() {
        let place = format!("batch[{index}]");
        let call = call
            .as_object()
            .ok_or_else(|| TriggerError::Malformed(format!("{place}: not an object")))?;
        let kind = match str_of(call.get("type")) {
            Some("identify") => Call::Identify,
            Some("track") => Call::Track,
            Some("page") => Call::Page,
            Some("screen" | "group" | "alias") => continue,
            Some(other) => {
                return Err(TriggerError::UnsupportedTopic(format!(
                    "{place}: type {other:?}"
                )));
            }
            None => return Err(TriggerError::Malformed(format!("{place}: type: missing"))),
        };
        events.push(event(kind, call, received_at).map_err(|e| e.at(&place))?);
    }
    Ok(events)
}

fn event(call: Call, body: &Map<String, Value>, received_at: i64) -> Result<Event, TriggerError> {
    let object = |key: &str| body.get(key).and_then(Value::as_object);
    let context = object("context");
    // identify carries traits at the top; track and page in the context.
    let traits = object("traits").or_else(|| context.and_then(|c| c.get("traits")?.as_object()));
    let trait_value = |key: &str| traits.and_then(|t| str_of(t.get(key)));

    let user_id = id_text(body.get("userId"));
    let anonymous_id = id_text(body.get("anonymousId"));
    let mut identities = Identities {
        email: trait_value("email").and_then(normalize_email),
        phone: trait_value("phone").and_then(|p| normalize_phone(p, None)),
        ..Identities::default()
    };
    if let Some(id) = &user_id {
        identities.add_external("segment", id.as_str());
    }
    if let Some(id) = &anonymous_id {
        identities.add_external("anonymous", id.as_str());
    }
    if identities.is_empty() {
        return Err(TriggerError::MissingIdentity(
            "the call names no userId, anonymousId, email or phone".into(),
        ));
    }

    let mut segment = Map::new();
    segment.insert(
        "type".into(),
        json!(match call {
            Call::Identify => "identify",
            Call::Track => "track",
            Call::Page => "page",
        }),
    );
    let (name, mut properties) = match call {
        Call::Identify => {
            let mut properties = Map::new();
            properties.insert(
                "traits".into(),
                json!(object("traits").cloned().unwrap_or_default()),
            );
            ("contact.identified".to_string(), properties)
        }
        Call::Track => {
            let original = str_of(body.get("event"))
                .ok_or_else(|| TriggerError::Malformed("event: missing".into()))?;
            let name = event_name(original)?;
            // A write key is often in a site's JavaScript, where anyone can
            // read it: a name of the store's, a form's or Dripline's would
            // start a checkout flow for any address or change a stranger's
            // consent or score.
            if let Err(owner) = canonical::trust::may_emit("api", &name) {
                return Err(TriggerError::Malformed(format!(
                    "event: {original:?} ({name}) is a name only {owner} emits"
                )));
            }
            segment.insert("event".into(), json!(original));
            (name, properties_of(body)?)
        }
        Call::Page => {
            for key in ["name", "category"] {
                if let Some(value) = str_of(body.get(key)) {
                    segment.insert(key.into(), json!(value));
                }
            }
            ("page.viewed".to_string(), properties_of(body)?)
        }
    };
    if let Some(id) = user_id {
        segment.insert("user_id".into(), json!(id));
    }
    if let Some(id) = anonymous_id {
        segment.insert("anonymous_id".into(), json!(id));
    }
    if let Some(context) = context {
        segment.insert("context".into(), Value::Object(context.clone()));
    }
    properties.insert("segment".into(), Value::Object(segment));

    let id = match id_text(body.get("messageId")) {
        Some(message) => stable_id("api", &[message.as_bytes()]),
        None => stable_id("api", &[Value::Object(body.clone()).to_string().as_bytes()]),
    };
    Ok(Event {
        id,
        source: "api".into(),
        name,
        identities,
        properties: Value::Object(properties),
        occurred_at: occurred_at(body)?.unwrap_or(received_at),
        received_at,
    })
}

fn properties_of(body: &Map<String, Value>) -> Result<Map<String, Value>, TriggerError> {
    match body.get("properties") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(properties)) => Ok(properties.clone()),
        Some(_) => Err(TriggerError::Malformed("properties: not an object".into())),
    }
}

fn occurred_at(body: &Map<String, Value>) -> Result<Option<i64>, TriggerError> {
    for key in ["timestamp", "originalTimestamp"] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => {
                return parse_timestamp(text).map(Some).ok_or_else(|| {
                    TriggerError::Malformed(format!("{key}: {text:?} is not RFC 3339"))
                });
            }
            Some(_) => return Err(TriggerError::Malformed(format!("{key}: not a string"))),
        }
    }
    Ok(None)
}

/// Brings a track call's event name into Dripline's `noun.verb` scheme, so
/// that a journey matches one spelling whatever the client sent:
///
/// - a name that already has a dot is only lower-cased, with spaces as `_`
///   (`member.dormant`, `Member.Dormant` → `member.dormant`);
/// - otherwise its words (split at spaces, `_`, `-` and camelCase humps) are
///   lower-cased, the last word becomes the verb and the others the noun:
///   `Order Completed`, `order_completed`, `orderCompleted` →
///   `order.completed`; `Checkout Step Viewed` → `checkout_step.viewed`;
/// - a single word stays one word (`Purchase` → `purchase`).
///
/// Punctuation other than `.`, `_` and `-` is dropped. An empty result or a
/// name over 200 bytes is `malformed`.
pub fn event_name(original: &str) -> Result<String, TriggerError> {
    if original.len() > MAX_NAME {
        return Err(TriggerError::Malformed(format!(
            "event: longer than {MAX_NAME} bytes"
        )));
    }
    let name = if original.contains('.') {
        original
            .trim()
            .to_lowercase()
            .chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .filter(|c| c.is_alphanumeric() || "._-".contains(*c))
            .collect()
    } else {
        let words = words(original);
        match words.split_last() {
            Some((verb, noun)) if !noun.is_empty() => format!("{}.{verb}", noun.join("_")),
            Some((only, _)) => only.clone(),
            None => String::new(),
        }
    };
    if name.trim_matches(['.', '_', '-']).is_empty() {
        return Err(TriggerError::Malformed(format!(
            "event: {original:?} has no letters or digits"
        )));
    }
    Ok(name)
}

/// Splits a name into lower-case words at separators and camelCase humps.
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if c.is_uppercase() && previous_lower && !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = c.is_lowercase() || c.is_ascii_digit();
            current.extend(c.to_lowercase());
        } else {
            previous_lower = false;
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::BTreeMap;

    fn ids<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
        pairs
            .into_iter()
            .map(|(system, id)| (system.to_string(), id.to_string()))
            .collect()
    }

    fn call(path: &str, body: Value) -> Result<Vec<Event>, TriggerError> {
        let headers = [("content-type".to_string(), "application/json".to_string())];
        let body = body.to_string();
        handle(&Request {
            path,
            headers: &headers,
            body: body.as_bytes(),
            received_at: 1_700_000_000_000,
        })
    }

    #[test]
    fn a_track_call_named_like_a_checkout_an_unsubscribe_or_an_email_click_is_refused() {
        for name in [
            "Checkout Created",
            "contact.unsubscribed",
            "Email Clicked",
            "form.submitted",
        ] {
            let refused = call("/v1/track", json!({"userId": "u", "event": name}));
            match refused {
                Err(TriggerError::Malformed(reason)) => {
                    assert!(
                        reason.starts_with("event:") && reason.contains("only"),
                        "{reason}"
                    )
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(call("/v1/track", json!({"userId": "u", "event": "Order Paid"})).is_ok());
        assert!(call("/v1/identify", json!({"userId": "u", "traits": {}})).is_ok());
    }

    #[test]
    fn event_names_follow_one_scheme() {
        for (original, expected) in [
            ("Order Completed", "order.completed"),
            ("order_completed", "order.completed"),
            ("orderCompleted", "order.completed"),
            ("Checkout Step Viewed", "checkout_step.viewed"),
            ("member.dormant", "member.dormant"),
            ("Member.Dormant", "member.dormant"),
            ("Purchase", "purchase"),
            ("Signed Up!", "signed.up"),
        ] {
            assert_eq!(event_name(original).unwrap(), expected, "{original}");
        }
        assert!(event_name("!!!").is_err());
        assert!(event_name(&"a".repeat(201)).is_err());
    }

    #[test]
    fn a_track_call_becomes_its_event_with_flat_properties() {
        let events = call(
            "/v1/track",
            json!({"type": "track", "userId": "user_42", "event": "Order Completed",
                   "properties": {"revenue": 39.98, "currency": "USD"},
                   "context": {"traits": {"email": "Li@Example.com"}},
                   "messageId": "msg-1", "timestamp": "2024-03-01T09:30:00Z"}),
        )
        .unwrap();
        let event = &events[0];
        assert_eq!(event.name, "order.completed");
        assert_eq!(event.source, "api");
        assert_eq!(event.identities.email.as_deref(), Some("li@example.com"));
        assert_eq!(event.identities.external_ids, ids([("segment", "user_42")]));
        assert_eq!(event.properties["revenue"], 39.98);
        assert_eq!(event.properties["segment"]["event"], "Order Completed");
        assert_eq!(event.occurred_at, 1_709_285_400_000);
        assert_eq!(event.received_at, 1_700_000_000_000);
        assert_eq!(event.id, stable_id("api", &[b"msg-1"]));
    }

    #[test]
    fn an_identify_call_keeps_its_traits() {
        let events = call(
            "/v1/identify",
            json!({"anonymousId": "anon-1", "traits": {"email": "a@b.co", "phone": "+86 138 0013 8000", "plan": "pro"}}),
        )
        .unwrap();
        assert_eq!(events[0].name, "contact.identified");
        assert_eq!(
            events[0].identities.phone.as_deref(),
            Some("+8613800138000")
        );
        assert_eq!(events[0].properties["traits"]["plan"], "pro");
        assert_eq!(
            events[0].identities.external_ids,
            ids([("anonymous", "anon-1")])
        );
    }

    #[test]
    fn a_call_with_a_user_id_and_an_anonymous_id_is_known_by_both() {
        let events = call(
            "/v1/track",
            json!({"userId": "user_42", "anonymousId": "anon-1", "event": "Signed Up"}),
        )
        .unwrap();
        assert_eq!(
            events[0].identities.external_ids,
            ids([("anonymous", "anon-1"), ("segment", "user_42")])
        );
    }

    #[test]
    fn a_page_call_becomes_page_viewed() {
        let events = call(
            "/v1/page",
            json!({"userId": 42, "name": "Pricing", "properties": {"path": "/pricing"}}),
        )
        .unwrap();
        assert_eq!(events[0].name, "page.viewed");
        assert_eq!(events[0].properties["path"], "/pricing");
        assert_eq!(events[0].properties["segment"]["name"], "Pricing");
        assert_eq!(events[0].identities.external_ids, ids([("segment", "42")]));
    }

    #[test]
    fn a_batch_yields_one_event_per_supported_call_and_skips_the_others() {
        let events = call(
            "/v1/batch",
            json!({"batch": [
                {"type": "identify", "userId": "u1", "traits": {"email": "u1@example.com"}},
                {"type": "group", "userId": "u1", "groupId": "g"},
                {"type": "track", "userId": "u1", "event": "Trial Started"}
            ]}),
        )
        .unwrap();
        let names: Vec<_> = events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["contact.identified", "trial.started"]);
    }

    #[test]
    fn one_bad_call_fails_the_batch_naming_its_index() {
        let err = call(
            "/v1/batch",
            json!({"batch": [{"type": "track", "userId": "u1", "event": "A B"}, {"type": "track", "event": "A B"}]}),
        );
        assert_eq!(
            err,
            Err(TriggerError::MissingIdentity(
                "batch[1]: the call names no userId, anonymousId, email or phone".into()
            ))
        );
    }

    #[test]
    fn a_batch_over_the_limit_is_refused() {
        let calls = vec![json!({"type": "track", "userId": "u", "event": "x"}); MAX_BATCH + 1];
        assert!(
            matches!(call("/v1/batch", json!({"batch": calls})), Err(TriggerError::Malformed(m)) if m.contains("more than"))
        );
    }

    #[test]
    fn a_call_naming_nobody_is_missing_identity() {
        assert!(matches!(
            call(
                "/v1/track",
                json!({"event": "Clicked", "traits": {"phone": "138 0013 8000"}})
            ),
            Err(TriggerError::MissingIdentity(_))
        ));
    }

    #[test]
    fn a_bad_timestamp_or_unknown_call_is_named() {
        assert_eq!(
            call(
                "/v1/track",
                json!({"userId": "u", "event": "x", "timestamp": "yesterday"})
            ),
            Err(TriggerError::Malformed(
                "timestamp: \"yesterday\" is not RFC 3339".into()
            ))
        );
        assert!(matches!(
            call("/v1/screen", json!({"userId": "u"})),
            Err(TriggerError::UnsupportedTopic(_))
        ));
    }

    #[test]
    fn a_call_without_a_message_id_gets_an_id_from_its_content() {
        let a = call("/v1/track", json!({"userId": "u", "event": "x"})).unwrap();
        let b = call("/v1/track", json!({"userId": "u", "event": "x"})).unwrap();
        let c = call("/v1/track", json!({"userId": "v", "event": "x"})).unwrap();
        assert_eq!(a[0].id, b[0].id);
        assert_ne!(a[0].id, c[0].id);
    }
}
