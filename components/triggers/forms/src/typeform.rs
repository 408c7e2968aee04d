//! Typeform webhooks: `{"event_id", "event_type": "form_response",
//! "form_response": {"form_id", "token", "submitted_at", "hidden",
//! "calculated", "definition": {"title", ...}, "answers": [...]}}`.
//!
//! - Each answer is keyed by its field's `ref` (else its `id`) in `fields`,
//!   its value read from the property its `type` names (`text`, `number`,
//!   `boolean`, `date`, `url`, `file_url`, `payment`, ...); a `choice` is its
//!   label, `choices` a list of labels.
//! - The first `email` answer is the email and the first `phone_number`
//!   answer the phone; failing those, hidden fields named like an email or
//!   phone (`email`, `phone`, `mobile`, ...).
//! - Properties: `form`, `form_id`, `form_title`, `response_id` (the
//!   response's `token`), `fields`, `hidden`, and `score` when the form
//!   calculates one.
//! - Id: stable from `event_id`, else the response `token`. When:
//!   `submitted_at`. Any `event_type` but `form_response` (such as partial
//!   responses) is `unsupported-topic`.

use canonical::{
    Event, Identities, Request, TriggerError, canonical_field, id_text, normalize_email,
    normalize_phone, parse_json_object, parse_timestamp, require_media_type, stable_id, str_of,
};
use serde_json::{Map, Value, json};

use crate::MAX_FIELDS;

/// Parses one Typeform webhook.
pub fn parse(request: &Request<'_>, path_name: Option<&str>) -> Result<Event, TriggerError> {
    require_media_type(request.headers, "application/json")?;
    let body = parse_json_object(request.body)?;
    match str_of(body.get("event_type")) {
        Some("form_response") => {}
        Some(other) => {
            return Err(TriggerError::UnsupportedTopic(format!(
                "event_type {other:?}"
            )));
        }
        None => return Err(TriggerError::Malformed("event_type: missing".into())),
    }
    let response = body
        .get("form_response")
        .and_then(Value::as_object)
        .ok_or_else(|| TriggerError::Malformed("form_response: missing or not an object".into()))?;
    let answers = match response.get("answers") {
        None | Some(Value::Null) => &Vec::new(),
        Some(Value::Array(answers)) => answers,
        Some(_) => {
            return Err(TriggerError::Malformed(
                "form_response.answers: not a list".into(),
            ));
        }
    };
    if answers.len() > MAX_FIELDS {
        return Err(TriggerError::Malformed(format!(
            "form_response.answers: more than {MAX_FIELDS}"
        )));
    }

    let mut fields = Map::new();
    let (mut email, mut phone) = (None, None);
    for (index, answer) in answers.iter().enumerate() {
        let answer = answer.as_object().ok_or_else(|| {
            TriggerError::Malformed(format!("form_response.answers[{index}]: not an object"))
        })?;
        let kind = str_of(answer.get("type")).unwrap_or_default();
        let value = answer_value(kind, answer);
        match kind {
            "email" if email.is_none() => {
                email = str_of(value.as_ref()).and_then(normalize_email);
                continue;
            }
            "phone_number" if phone.is_none() => {
                phone = str_of(value.as_ref()).and_then(|p| normalize_phone(p, None));
                continue;
            }
            _ => {}
        }
        let field = answer.get("field");
        let key = id_text(field.and_then(|f| f.get("ref")))
            .or_else(|| id_text(field.and_then(|f| f.get("id"))))
            .unwrap_or_else(|| format!("answer_{index}"));
        fields.insert(key, value.unwrap_or(Value::Null));
    }

    let hidden = response
        .get("hidden")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (name, value) in &hidden {
        match canonical_field(name) {
            "email" if email.is_none() => email = str_of(Some(value)).and_then(normalize_email),
            "phone" if phone.is_none() => {
                phone = str_of(Some(value)).and_then(|p| normalize_phone(p, None));
            }
            _ => {}
        }
    }
    if email.is_none() && phone.is_none() {
        return Err(TriggerError::MissingIdentity(
            "no email or phone answer or hidden field".into(),
        ));
    }

    let form_id = id_text(response.get("form_id"));
    let token = id_text(response.get("token"));
    let id = match (id_text(body.get("event_id")), &token) {
        (Some(event), _) => stable_id("typeform", &[event.as_bytes()]),
        (None, Some(token)) => stable_id("typeform", &[b"token", token.as_bytes()]),
        (None, None) => return Err(TriggerError::Malformed("event_id: missing".into())),
    };
    let name = path_name
        .map(str::to_string)
        .or_else(|| form_id.clone())
        .ok_or_else(|| TriggerError::Malformed("form_response.form_id: missing".into()))?;

    let mut properties = Map::new();
    properties.insert("form".into(), json!(name));
    properties.insert("fields".into(), Value::Object(fields));
    properties.insert("hidden".into(), Value::Object(hidden));
    if let Some(form_id) = form_id {
        properties.insert("form_id".into(), json!(form_id));
    }
    let title = response
        .get("definition")
        .and_then(|d| str_of(d.get("title")));
    if let Some(title) = title {
        properties.insert("form_title".into(), json!(title));
    }
    if let Some(token) = token {
        properties.insert("response_id".into(), json!(token));
    }
    if let Some(score) = response.get("calculated").and_then(|c| c.get("score")) {
        properties.insert("score".into(), score.clone());
    }

    Ok(Event {
        id,
        source: "typeform".into(),
        name: "form.submitted".into(),
        identities: Identities {
            email,
            phone,
            ..Identities::default()
        },
        properties: Value::Object(properties),
        occurred_at: str_of(response.get("submitted_at"))
            .and_then(parse_timestamp)
            .unwrap_or(request.received_at),
        received_at: request.received_at,
    })
}

/// An answer's value: the property named by its type, with choices reduced
/// to their labels (and an "other" text where the respondent typed one).
fn answer_value(kind: &str, answer: &Map<String, Value>) -> Option<Value> {
    let raw = answer.get(kind)?;
    Some(match kind {
        "choice" => raw
            .get("label")
            .or_else(|| raw.get("other"))
            .cloned()
            .unwrap_or(Value::Null),
        "choices" => {
            let mut labels = raw
                .get("labels")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            labels.extend(raw.get("other").cloned());
            Value::Array(labels)
        }
        _ => raw.clone(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn deliver(body: Value) -> Result<Event, TriggerError> {
        let headers = [("content-type".to_string(), "application/json".to_string())];
        let body = body.to_string();
        parse(
            &Request {
                path: "/forms/typeform",
                headers: &headers,
                body: body.as_bytes(),
                received_at: 5,
            },
            None,
        )
    }

    fn sample() -> Value {
        json!({
            "event_id": "01HQ3Z", "event_type": "form_response",
            "form_response": {
                "form_id": "lT4Z3j", "token": "a3a12ec6", "submitted_at": "2024-03-01T09:30:00Z",
                "hidden": {"utm_source": "newsletter"}, "calculated": {"score": 9},
                "definition": {"id": "lT4Z3j", "title": "Lead magnet"},
                "answers": [
                    {"type": "text", "text": "Acme", "field": {"id": "f1", "type": "short_text", "ref": "company"}},
                    {"type": "email", "email": "Laura@Example.com", "field": {"id": "f2", "type": "email", "ref": "email"}},
                    {"type": "phone_number", "phone_number": "+15555550100", "field": {"id": "f3", "type": "phone_number"}},
                    {"type": "choice", "choice": {"label": "Barcelona"}, "field": {"id": "f4", "type": "multiple_choice", "ref": "city"}},
                    {"type": "choices", "choices": {"labels": ["London", "Sydney"]}, "field": {"id": "f5", "type": "multiple_choice", "ref": "cities"}},
                    {"type": "number", "number": 5, "field": {"id": "f6", "type": "rating"}}
                ]
            }
        })
    }

    #[test]
    fn a_typeform_response_becomes_form_submitted_with_answers_by_ref() {
        let event = deliver(sample()).unwrap();
        assert_eq!(event.source, "typeform");
        assert_eq!(event.identities.email.as_deref(), Some("laura@example.com"));
        assert_eq!(event.identities.phone.as_deref(), Some("+15555550100"));
        let p = &event.properties;
        assert_eq!(p["form"], "lT4Z3j");
        assert_eq!(p["form_title"], "Lead magnet");
        assert_eq!(
            p["fields"],
            json!({"company": "Acme", "city": "Barcelona", "cities": ["London", "Sydney"], "f6": 5})
        );
        assert_eq!(p["hidden"]["utm_source"], "newsletter");
        assert_eq!(p["score"], 9);
        assert_eq!(event.occurred_at, 1_709_285_400_000);
        assert_eq!(event.received_at, 5);
        assert_eq!(event.id, stable_id("typeform", &[b"01HQ3Z"]));
    }

    #[test]
    fn a_hidden_email_identifies_a_form_without_an_email_question() {
        let mut body = sample();
        body["form_response"]["answers"] = json!([]);
        body["form_response"]["hidden"] = json!({"email": "known@example.com"});
        assert_eq!(
            deliver(body).unwrap().identities.email.as_deref(),
            Some("known@example.com")
        );
    }

    #[test]
    fn partial_responses_are_an_unsupported_topic() {
        let mut body = sample();
        body["event_type"] = json!("form_response_partial");
        assert!(matches!(
            deliver(body),
            Err(TriggerError::UnsupportedTopic(_))
        ));
    }

    #[test]
    fn a_response_without_email_or_phone_is_missing_identity() {
        let mut body = sample();
        body["form_response"]["answers"] =
            json!([{"type": "text", "text": "hi", "field": {"ref": "q"}}]);
        assert!(matches!(
            deliver(body),
            Err(TriggerError::MissingIdentity(_))
        ));
    }
}
