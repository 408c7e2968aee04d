//! The `forms` trigger: turns an HTML form post into one `form.submitted`
//! event. The form is named by the last path segment (`/forms/whitepaper`) or a
//! `form` field; `email` and `phone` (in any of their usual spellings) become
//! the contact's identities; every other field lands in `properties.fields`.
//!
//! The logic is [`parse`], a plain function tested natively; the WIT glue only
//! converts types.

use canonical::{canonical_field, normalize_email, normalize_phone, stable_id};
use serde_json::{Map, Value, json};

/// The parts of an inbound request the parser reads.
pub struct Request<'a> {
    /// The request path, such as `/forms/whitepaper`.
    pub path: &'a str,
    /// Header pairs; names lower case.
    pub headers: &'a [(String, String)],
    /// The raw body.
    pub body: &'a [u8],
    /// When the gateway received it, in ms since the epoch.
    pub received_at: i64,
}

/// A canonical event as this trigger produces it.
#[derive(Debug, PartialEq)]
pub struct Event {
    /// Stable id: the same post at the same instant gives the same id.
    pub id: String,
    /// Always `form.submitted`.
    pub name: String,
    /// Lower-cased email, if the form had a valid one.
    pub email: Option<String>,
    /// E.164 phone, if the form had a valid one.
    pub phone: Option<String>,
    /// `{"form": ..., "fields": {...}}` as JSON text.
    pub properties: String,
    /// When the form was submitted (the receipt time: a browser sends no other).
    pub occurred_at: i64,
}

/// Why a post yields no event.
#[derive(Debug, PartialEq)]
pub enum Error {
    /// The body or a field is unusable; the text names it.
    Malformed(String),
    /// Not a urlencoded form post.
    UnsupportedContentType(String),
    /// Neither a usable email nor a usable phone.
    MissingIdentity(String),
}

/// Bodies arrive already size-limited by the gateway; fields past this many are
/// a bot, not a person filling in a form.
const MAX_FIELDS: usize = 200;

/// Parses one form post.
pub fn parse(request: &Request<'_>) -> Result<Event, Error> {
    let content_type = header(request.headers, "content-type").unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(Error::UnsupportedContentType(format!(
            "expected application/x-www-form-urlencoded, got {:?}",
            if media_type.is_empty() {
                "nothing"
            } else {
                media_type
            }
        )));
    }
    if std::str::from_utf8(request.body).is_err() {
        return Err(Error::Malformed("body: not UTF-8".into()));
    }

    let mut fields = Map::new();
    let (mut email_raw, mut phone_raw, mut country) = (None, None, None);
    let mut form = last_segment(request.path).map(str::to_string);
    for (count, (name, value)) in form_urlencoded::parse(request.body).enumerate() {
        if count >= MAX_FIELDS {
            return Err(Error::Malformed(format!(
                "body: more than {MAX_FIELDS} fields"
            )));
        }
        if name.is_empty() {
            return Err(Error::Malformed("body: a field has no name".into()));
        }
        match canonical_field(&name) {
            "email" => email_raw = Some(value.into_owned()),
            "phone" => phone_raw = Some(value.into_owned()),
            "form" if form.is_none() => form = Some(value.into_owned()),
            "country_code" => country = Some(value.trim_start_matches('+').to_string()),
            other => {
                fields.insert(other.to_string(), Value::String(value.into_owned()));
            }
        }
    }

    let form =
        form.ok_or_else(|| Error::Malformed("form: name it in the path or a `form` field".into()))?;
    let email = email_raw.as_deref().and_then(normalize_email);
    let phone = phone_raw
        .as_deref()
        .and_then(|p| normalize_phone(p, country.as_deref()));
    if email.is_none() && phone.is_none() {
        let why = match (&email_raw, &phone_raw) {
            (None, None) => "no email or phone field".to_string(),
            _ => "email or phone is not valid".to_string(),
        };
        return Err(Error::MissingIdentity(why));
    }

    let received = request.received_at.to_be_bytes();
    Ok(Event {
        id: stable_id("form", &[request.path.as_bytes(), request.body, &received]),
        name: "form.submitted".into(),
        email,
        phone,
        properties: json!({ "form": form, "fields": fields }).to_string(),
        occurred_at: request.received_at,
    })
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `/forms/whitepaper` names the form `whitepaper`; a bare `/forms` names none.
fn last_segment(path: &str) -> Option<&str> {
    let segment = path.trim_end_matches('/').rsplit('/').next()?;
    (!segment.is_empty() && segment != "forms").then_some(segment)
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "trigger", path: "../../wit" });

    use dripline::journey::types::{Event, Identities};
    use exports::dripline::journey::trigger_handler::{Guest, InboundRequest, TriggerError};

    struct Forms;

    impl Guest for Forms {
        fn handle(request: InboundRequest) -> Result<Vec<Event>, TriggerError> {
            let parsed = super::parse(&super::Request {
                path: &request.path,
                headers: &request.headers,
                body: &request.body,
                received_at: request.received_at,
            })
            .map_err(|e| match e {
                super::Error::Malformed(m) => TriggerError::Malformed(m),
                super::Error::UnsupportedContentType(m) => TriggerError::UnsupportedContentType(m),
                super::Error::MissingIdentity(m) => TriggerError::MissingIdentity(m),
            })?;
            Ok(vec![Event {
                id: parsed.id,
                source: "form".into(),
                name: parsed.name,
                identities: Identities {
                    email: parsed.email,
                    phone: parsed.phone,
                    external_ids: vec![],
                },
                properties: parsed.properties,
                occurred_at: parsed.occurred_at,
                received_at: request.received_at,
            }])
        }
    }

    export!(Forms);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(path: &str, body: &str) -> Result<Event, Error> {
        let headers = [(
            "content-type".to_string(),
            "application/x-www-form-urlencoded; charset=UTF-8".to_string(),
        )];
        parse(&Request {
            path,
            headers: &headers,
            body: body.as_bytes(),
            received_at: 1_700_000_000_000,
        })
    }

    #[test]
    fn a_whitepaper_download_becomes_one_form_submitted_event() {
        let event = post(
            "/forms/whitepaper",
            "email=Li%40Example.com&company=Acme&paper=wasm",
        )
        .unwrap();
        assert_eq!(event.name, "form.submitted");
        assert_eq!(event.email.as_deref(), Some("li@example.com"));
        let props: Value = serde_json::from_str(&event.properties).unwrap();
        assert_eq!(props["form"], "whitepaper");
        assert_eq!(props["fields"]["company"], "Acme");
        assert!(props["fields"].get("email").is_none());
    }

    #[test]
    fn a_mobile_field_with_a_country_code_becomes_an_e164_phone() {
        let event = post("/forms/signup", "mobile=138+0013+8000&country_code=%2B86").unwrap();
        assert_eq!(event.phone.as_deref(), Some("+8613800138000"));
    }

    #[test]
    fn the_same_post_at_the_same_instant_has_the_same_id() {
        let a = post("/forms/x", "email=a%40b.co").unwrap();
        let b = post("/forms/x", "email=a%40b.co").unwrap();
        assert_eq!(a.id, b.id);
    }

    #[test]
    fn a_post_without_email_or_phone_names_the_missing_identity() {
        assert_eq!(
            post("/forms/x", "name=Li"),
            Err(Error::MissingIdentity("no email or phone field".into()))
        );
    }

    #[test]
    fn an_invalid_email_is_not_an_identity() {
        assert!(matches!(
            post("/forms/x", "email=not-an-address"),
            Err(Error::MissingIdentity(_))
        ));
    }

    #[test]
    fn json_is_refused_with_the_content_type_it_sent() {
        let headers = [("content-type".to_string(), "application/json".to_string())];
        let err = parse(&Request {
            path: "/forms/x",
            headers: &headers,
            body: b"{}",
            received_at: 0,
        })
        .unwrap_err();
        assert_eq!(
            err,
            Error::UnsupportedContentType(
                "expected application/x-www-form-urlencoded, got \"application/json\"".into()
            )
        );
    }

    #[test]
    fn a_form_without_a_name_is_malformed() {
        assert!(
            matches!(post("/forms", "email=a%40b.co"), Err(Error::Malformed(m)) if m.starts_with("form:"))
        );
    }
}
