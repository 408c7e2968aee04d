//! Tally webhooks: `{"eventId", "eventType": "FORM_RESPONSE", "createdAt",
//! "data": {"responseId", "submissionId", "respondentId", "formId",
//! "formName", "createdAt", "fields": [{"key", "label", "type", "value",
//! "options"?}]}}`.
//!
//! - Each field is keyed by its `label` (else its `key`) in `fields`;
//!   choice fields (`MULTIPLE_CHOICE`, `DROPDOWN`, `CHECKBOXES`, ...) send
//!   option ids, which are replaced by the options' texts. `HIDDEN_FIELDS`
//!   go to `hidden` instead.
//! - The first `INPUT_EMAIL` field is the email and the first
//!   `INPUT_PHONE_NUMBER` field the phone; failing those, fields labelled like
//!   an email or phone (`Email`, `Mobile`, ...).
//! - Properties: `form`, `form_id`, `form_name`, `response_id`,
//!   `respondent_id`, `fields`, `hidden`.
//! - Id: stable from `eventId`, else `data.responseId`. When:
//!   `data.createdAt`, else `createdAt`. Any `eventType` but `FORM_RESPONSE`
//!   is `unsupported-topic`.

use canonical::{
    Event, Identities, Request, TriggerError, canonical_field, id_text, normalize_email,
    normalize_phone, parse_json_object, parse_timestamp, require_media_type, stable_id, str_of,
};
use serde_json::{Map, Value, json};

use crate::MAX_FIELDS;

/// Parses one Tally webhook.
pub fn parse(request: &Request<'_>, path_name: Option<&str>) -> Result<Event, TriggerError> {
    require_media_type(request.headers, "application/json")?;
    let body = parse_json_object(request.body)?;
    match str_of(body.get("eventType")) {
        Some("FORM_RESPONSE") => {}
        Some(other) => {
            return Err(TriggerError::UnsupportedTopic(format!(
                "eventType {other:?}"
            )));
        }
        None => return Err(TriggerError::Malformed("eventType: missing".into())),
    }
    let data = body
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| TriggerError::Malformed("data: missing or not an object".into()))?;
    let items = match data.get("fields") {
        None | Some(Value::Null) => &Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(TriggerError::Malformed("data.fields: not a list".into())),
    };
    if items.len() > MAX_FIELDS {
        return Err(TriggerError::Malformed(format!(
            "data.fields: more than {MAX_FIELDS}"
        )));
    }

    let (mut fields, mut hidden) = (Map::new(), Map::new());
    let (mut email, mut phone) = (None, None);
    let (mut labelled_email, mut labelled_phone) = (None, None);
    for (index, item) in items.iter().enumerate() {
        let item = item.as_object().ok_or_else(|| {
            TriggerError::Malformed(format!("data.fields[{index}]: not an object"))
        })?;
        let kind = str_of(item.get("type")).unwrap_or_default();
        let value = option_texts(item);
        let text = str_of(Some(&value));
        match kind {
            "INPUT_EMAIL" if email.is_none() => {
                email = text.and_then(normalize_email);
                continue;
            }
            "INPUT_PHONE_NUMBER" if phone.is_none() => {
                phone = text.and_then(|p| normalize_phone(p, None));
                continue;
            }
            _ => {}
        }
        let key = str_of(item.get("label"))
            .map(str::trim)
            .or_else(|| str_of(item.get("key")))
            .map(str::to_string)
            .unwrap_or_else(|| format!("field_{index}"));
        match canonical_field(&key) {
            "email" if labelled_email.is_none() => labelled_email = text.and_then(normalize_email),
            "phone" if labelled_phone.is_none() => {
                labelled_phone = text.and_then(|p| normalize_phone(p, None));
            }
            _ => {}
        }
        let target = if kind == "HIDDEN_FIELDS" {
            &mut hidden
        } else {
            &mut fields
        };
        target.insert(key, value);
    }
    let email = email.or(labelled_email);
    let phone = phone.or(labelled_phone);
    if email.is_none() && phone.is_none() {
        return Err(TriggerError::MissingIdentity(
            "no email or phone field".into(),
        ));
    }

    let response_id = id_text(data.get("responseId")).or_else(|| id_text(data.get("submissionId")));
    let id = match (id_text(body.get("eventId")), &response_id) {
        (Some(event), _) => stable_id("tally", &[event.as_bytes()]),
        (None, Some(response)) => stable_id("tally", &[b"response", response.as_bytes()]),
        (None, None) => return Err(TriggerError::Malformed("eventId: missing".into())),
    };
    let form_id = id_text(data.get("formId"));
    let form_name = str_of(data.get("formName"));
    let name = path_name
        .or(form_name)
        .map(str::to_string)
        .or_else(|| form_id.clone())
        .ok_or_else(|| TriggerError::Malformed("data.formId: missing".into()))?;

    let mut properties = Map::new();
    properties.insert("form".into(), json!(name));
    properties.insert("fields".into(), Value::Object(fields));
    properties.insert("hidden".into(), Value::Object(hidden));
    for (key, value) in [
        ("form_id", form_id),
        ("form_name", form_name.map(str::to_string)),
        ("response_id", response_id),
        ("respondent_id", id_text(data.get("respondentId"))),
    ] {
        if let Some(value) = value {
            properties.insert(key.into(), json!(value));
        }
    }

    let occurred_at = str_of(data.get("createdAt"))
        .or_else(|| str_of(body.get("createdAt")))
        .and_then(parse_timestamp)
        .unwrap_or(request.received_at);
    Ok(Event {
        id,
        source: "tally".into(),
        name: "form.submitted".into(),
        identities: Identities {
            email,
            phone,
            ..Identities::default()
        },
        properties: Value::Object(properties),
        occurred_at,
        received_at: request.received_at,
    })
}

/// A field's value with option ids replaced by the options' texts, so that a
/// journey condition reads `"Enterprise"` rather than a generated id.
fn option_texts(item: &Map<String, Value>) -> Value {
    let value = item.get("value").cloned().unwrap_or(Value::Null);
    let Some(options) = item.get("options").and_then(Value::as_array) else {
        return value;
    };
    let text_of = |id: &Value| {
        options
            .iter()
            .find(|o| o.get("id") == Some(id))
            .and_then(|o| o.get("text"))
            .cloned()
            .unwrap_or_else(|| id.clone())
    };
    match value {
        Value::Array(ids) => Value::Array(ids.iter().map(text_of).collect()),
        Value::String(_) => text_of(&value),
        other => other,
    }
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
                path: "/forms/tally",
                headers: &headers,
                body: body.as_bytes(),
                received_at: 5,
            },
            None,
        )
    }

    fn sample() -> Value {
        json!({
            "eventId": "a4cb511e-d513-4fa5-baee-b815d718dfd1", "eventType": "FORM_RESPONSE",
            "createdAt": "2023-06-28T15:00:21.889Z",
            "data": {
                "responseId": "2wgx4n", "submissionId": "2wgx4n", "respondentId": "dwQKYm",
                "formId": "VwbNEw", "formName": "Webinar signup", "createdAt": "2023-06-28T15:00:21.000Z",
                "fields": [
                    {"key": "question_mVGEg3", "label": "Email", "type": "INPUT_EMAIL", "value": "Alice@Example.com"},
                    {"key": "question_nPl0ZP", "label": "Phone number", "type": "INPUT_PHONE_NUMBER", "value": "+44 20 7946 0958"},
                    {"key": "question_3y4Jv2", "label": "Company size", "type": "MULTIPLE_CHOICE", "value": ["o2"],
                     "options": [{"id": "o1", "text": "1-10"}, {"id": "o2", "text": "11-50"}]},
                    {"key": "question_w4Q5Ay", "label": "utm_source", "type": "HIDDEN_FIELDS", "value": "ads"}
                ]
            }
        })
    }

    #[test]
    fn a_tally_response_becomes_form_submitted_with_fields_by_label() {
        let event = deliver(sample()).unwrap();
        assert_eq!(event.source, "tally");
        assert_eq!(event.identities.email.as_deref(), Some("alice@example.com"));
        assert_eq!(event.identities.phone.as_deref(), Some("+442079460958"));
        assert_eq!(event.properties["form"], "Webinar signup");
        assert_eq!(
            event.properties["fields"],
            json!({"Company size": ["11-50"]})
        );
        assert_eq!(event.properties["hidden"], json!({"utm_source": "ads"}));
        assert_eq!(event.properties["response_id"], "2wgx4n");
        assert_eq!(event.occurred_at, 1_687_964_421_000);
        assert_eq!(event.received_at, 5);
    }

    #[test]
    fn a_field_labelled_email_identifies_a_form_without_an_email_input() {
        let mut body = sample();
        body["data"]["fields"] = json!([{"key": "q", "label": "E-mail", "type": "INPUT_TEXT", "value": "bob@example.com"}]);
        assert_eq!(
            deliver(body).unwrap().identities.email.as_deref(),
            Some("bob@example.com")
        );
    }

    #[test]
    fn other_event_types_are_unsupported_and_missing_data_is_malformed() {
        let mut body = sample();
        body["eventType"] = json!("FORM_DELETED");
        assert!(matches!(
            deliver(body),
            Err(TriggerError::UnsupportedTopic(_))
        ));
        let mut body = sample();
        body.as_object_mut().unwrap().remove("data");
        assert!(matches!(deliver(body), Err(TriggerError::Malformed(m)) if m.starts_with("data")));
    }
}
