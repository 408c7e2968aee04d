//! Plain HTML form posts, `application/x-www-form-urlencoded` or
//! `multipart/form-data`, as a browser sends them.
//!
//! - `email` and `phone` (in any of their usual spellings, see
//!   `canonical::canonical_field`) are the identities; a national phone takes
//!   a `country_code` field (`86` or `+86`).
//! - `form` names the form when the path does not.
//! - `redirect` is the thank-you page the gateway sends a browser to with a
//!   303; it lands in `properties.redirect` only if it is a path on the same
//!   site (`/thanks`, not `//evil.example`) or an `https://` URL, so the form
//!   cannot be made into an open redirect to a `javascript:` or plain-http
//!   page. Any other value is dropped.
//! - Every other field lands in `properties.fields`; a name given several
//!   times (checkboxes) becomes a list. Uploaded files are not kept: their
//!   field names and file names land in `properties.files`.
//! - There is no delivery id: the id is stable from the path, the body and
//!   the receipt time, so a gateway retry of the same request is one event
//!   while a person submitting twice is two.

use std::future::Future as _;
use std::task::{Context, Poll, Waker};

use canonical::{
    Event, Identities, Request, TriggerError, canonical_field, header, media_type, normalize_email,
    normalize_phone, stable_id,
};
use serde_json::{Map, Value, json};

use crate::MAX_FIELDS;

/// A redirect longer than this is not a thank-you page.
const MAX_REDIRECT: usize = 2048;

/// Parses one HTML form post.
pub fn parse(request: &Request<'_>, path_name: Option<&str>) -> Result<Event, TriggerError> {
    let mut form = Collected::default();
    match media_type(request.headers).as_str() {
        "application/x-www-form-urlencoded" => {
            if std::str::from_utf8(request.body).is_err() {
                return Err(TriggerError::Malformed("body: not UTF-8".into()));
            }
            for (name, value) in form_urlencoded::parse(request.body) {
                form.add(&name, value.into_owned())?;
            }
        }
        "multipart/form-data" => {
            let content_type = header(request.headers, "content-type").unwrap_or_default();
            multipart(request.body, content_type, &mut form)?;
        }
        other => {
            return Err(TriggerError::UnsupportedContentType(format!(
                "expected application/x-www-form-urlencoded or multipart/form-data, got {}",
                if other.is_empty() { "nothing" } else { other }
            )));
        }
    }

    let name = path_name
        .map(str::to_string)
        .or(form.form.take())
        .ok_or_else(|| {
            TriggerError::Malformed("form: name it in the path or a `form` field".into())
        })?;
    let email = form.email.as_deref().and_then(normalize_email);
    let phone = form
        .phone
        .as_deref()
        .and_then(|p| normalize_phone(p, form.country.as_deref()));
    if email.is_none() && phone.is_none() {
        let why = match (&form.email, &form.phone) {
            (None, None) => "no email or phone field",
            _ => "email or phone is not valid",
        };
        return Err(TriggerError::MissingIdentity(why.into()));
    }

    let mut properties = Map::new();
    properties.insert("form".into(), json!(name));
    properties.insert("fields".into(), Value::Object(form.fields));
    if !form.files.is_empty() {
        properties.insert("files".into(), Value::Object(form.files));
    }
    if let Some(redirect) = form.redirect.filter(|r| safe_redirect(r)) {
        properties.insert("redirect".into(), json!(redirect));
    }
    let received = request.received_at.to_be_bytes();
    Ok(Event {
        id: stable_id("form", &[request.path.as_bytes(), request.body, &received]),
        source: "form".into(),
        name: "form.submitted".into(),
        identities: Identities {
            email,
            phone,
            ..Identities::default()
        },
        properties: Value::Object(properties),
        occurred_at: request.received_at,
        received_at: request.received_at,
    })
}

/// Whether a redirect target is safe to send a browser to: a path on this
/// site or an `https://` URL with a host, without spaces or control
/// characters (which browsers strip, turning `/\evil` into `//evil`).
pub fn safe_redirect(target: &str) -> bool {
    if target.len() > MAX_REDIRECT
        || target
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return false;
    }
    if let Some(rest) = target.strip_prefix("https://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        return !host.is_empty() && !host.contains('@');
    }
    target.starts_with('/') && !target.starts_with("//")
}

/// The fields of one post as they are read.
#[derive(Default)]
struct Collected {
    fields: Map<String, Value>,
    files: Map<String, Value>,
    email: Option<String>,
    phone: Option<String>,
    country: Option<String>,
    form: Option<String>,
    redirect: Option<String>,
    count: usize,
}

impl Collected {
    fn count_one(&mut self) -> Result<(), TriggerError> {
        self.count += 1;
        if self.count > MAX_FIELDS {
            return Err(TriggerError::Malformed(format!(
                "body: more than {MAX_FIELDS} fields"
            )));
        }
        Ok(())
    }

    fn add(&mut self, name: &str, value: String) -> Result<(), TriggerError> {
        self.count_one()?;
        if name.is_empty() {
            return Err(TriggerError::Malformed("body: a field has no name".into()));
        }
        match canonical_field(name) {
            "email" => self.email = Some(value),
            "phone" => self.phone = Some(value),
            "form" if self.form.is_none() => self.form = Some(value),
            "redirect" => self.redirect = Some(value),
            "country_code" => self.country = Some(value.trim().trim_start_matches('+').to_string()),
            other => insert_repeated(&mut self.fields, other, Value::String(value)),
        }
        Ok(())
    }

    fn add_file(&mut self, name: &str, file_name: &str) -> Result<(), TriggerError> {
        self.count_one()?;
        insert_repeated(&mut self.files, name, json!(file_name));
        Ok(())
    }
}

/// Inserts a value; a name seen before collects its values in a list.
fn insert_repeated(map: &mut Map<String, Value>, name: &str, value: Value) {
    match map.get_mut(name) {
        Some(Value::Array(values)) => values.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            map.insert(name.to_string(), value);
        }
    }
}

fn multipart(body: &[u8], content_type: &str, form: &mut Collected) -> Result<(), TriggerError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| TriggerError::Malformed(format!("content-type: {e}")))?;
    let chunk: Result<Vec<u8>, std::convert::Infallible> = Ok(body.to_vec());
    let stream = futures_util::stream::once(std::future::ready(chunk));
    let mut parts = multer::Multipart::new(stream, boundary);
    let read_all = async {
        while let Some(field) = parts.next_field().await? {
            let name = field.name().unwrap_or_default().to_string();
            let file_name = field.file_name().map(str::to_string);
            let bytes = field.bytes().await?;
            match file_name {
                Some(file_name) => form.add_file(&name, &file_name)?,
                None => {
                    let value = String::from_utf8(bytes.to_vec()).map_err(|_| {
                        TriggerError::Malformed(format!("field {name:?}: not UTF-8"))
                    })?;
                    form.add(&name, value)?;
                }
            }
        }
        Ok::<(), MultipartError>(())
    };
    // The whole body is one ready chunk, so the parser never waits: one poll
    // runs it to the end. `Pending` would mean it wanted more input.
    let mut read_all = std::pin::pin!(read_all);
    match read_all
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(Ok(())) => Ok(()),
        Poll::Ready(Err(MultipartError::Trigger(e))) => Err(e),
        Poll::Ready(Err(MultipartError::Parse(e))) => {
            Err(TriggerError::Malformed(format!("body: {e}")))
        }
        Poll::Pending => Err(TriggerError::Malformed(
            "body: the multipart body ends early".into(),
        )),
    }
}

/// What can go wrong while reading the parts.
enum MultipartError {
    Parse(multer::Error),
    Trigger(TriggerError),
}

impl From<multer::Error> for MultipartError {
    fn from(e: multer::Error) -> Self {
        MultipartError::Parse(e)
    }
}

impl From<TriggerError> for MultipartError {
    fn from(e: TriggerError) -> Self {
        MultipartError::Trigger(e)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn post(
        path_name: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Result<Event, TriggerError> {
        let headers = [("content-type".to_string(), content_type.to_string())];
        parse(
            &Request {
                path: "/forms/x",
                headers: &headers,
                body,
                received_at: 1_700_000_000_000,
            },
            path_name,
        )
    }

    fn urlencoded(body: &str) -> Result<Event, TriggerError> {
        post(
            Some("whitepaper"),
            "application/x-www-form-urlencoded; charset=UTF-8",
            body.as_bytes(),
        )
    }

    #[test]
    fn a_whitepaper_download_becomes_one_form_submitted_event() {
        let event = urlencoded("email=Li%40Example.com&company=Acme&paper=wasm").unwrap();
        assert_eq!(event.name, "form.submitted");
        assert_eq!(event.source, "form");
        assert_eq!(event.identities.email.as_deref(), Some("li@example.com"));
        assert_eq!(event.properties["form"], "whitepaper");
        assert_eq!(event.properties["fields"]["company"], "Acme");
        assert!(event.properties["fields"].get("email").is_none());
        assert!(event.identities.external_ids.is_empty());
        // A browser's post says nothing of when: both times are the receipt.
        assert_eq!(event.occurred_at, 1_700_000_000_000);
        assert_eq!(event.received_at, 1_700_000_000_000);
    }

    #[test]
    fn a_mobile_field_with_a_country_code_becomes_an_e164_phone() {
        let event = urlencoded("mobile=138+0013+8000&country_code=%2B86").unwrap();
        assert_eq!(event.identities.phone.as_deref(), Some("+8613800138000"));
    }

    #[test]
    fn repeated_fields_become_a_list() {
        let event = urlencoded("email=a%40b.co&topic=wasm&topic=rust").unwrap();
        assert_eq!(event.properties["fields"]["topic"], json!(["wasm", "rust"]));
    }

    #[test]
    fn the_same_post_at_the_same_instant_has_the_same_id() {
        assert_eq!(
            urlencoded("email=a%40b.co").unwrap().id,
            urlencoded("email=a%40b.co").unwrap().id
        );
    }

    #[test]
    fn a_post_without_email_or_phone_names_the_missing_identity() {
        assert_eq!(
            urlencoded("name=Li"),
            Err(TriggerError::MissingIdentity(
                "no email or phone field".into()
            ))
        );
        assert!(matches!(
            urlencoded("email=not-an-address"),
            Err(TriggerError::MissingIdentity(_))
        ));
    }

    #[test]
    fn a_form_without_a_name_is_malformed() {
        let err = post(None, "application/x-www-form-urlencoded", b"email=a%40b.co");
        assert!(matches!(err, Err(TriggerError::Malformed(m)) if m.starts_with("form:")));
        let named = post(
            None,
            "application/x-www-form-urlencoded",
            b"email=a%40b.co&form=demo",
        )
        .unwrap();
        assert_eq!(named.properties["form"], "demo");
    }

    #[test]
    fn json_is_refused_with_the_content_type_it_sent() {
        assert_eq!(
            post(Some("x"), "application/json", b"{}"),
            Err(TriggerError::UnsupportedContentType(
                "expected application/x-www-form-urlencoded or multipart/form-data, got application/json".into()
            ))
        );
    }

    #[test]
    fn only_same_site_paths_and_https_urls_are_passed_on_as_redirects() {
        let event = urlencoded("email=a%40b.co&redirect=%2Fthanks%3Fx%3D1").unwrap();
        assert_eq!(event.properties["redirect"], "/thanks?x=1");
        for good in ["/thanks", "https://acme.example/thanks"] {
            assert!(safe_redirect(good), "{good}");
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "http://acme.example",
            "javascript:alert(1)",
            "https://",
            "https://u@evil.example",
            "thanks",
            "/a b",
        ] {
            assert!(!safe_redirect(bad), "{bad}");
        }
        let event = urlencoded("email=a%40b.co&redirect=javascript%3Aalert(1)").unwrap();
        assert!(event.properties.get("redirect").is_none());
    }

    const MULTIPART: &str = "--XyZ\r\n\
        Content-Disposition: form-data; name=\"email\"\r\n\r\n\
        Ada@Example.com\r\n\
        --XyZ\r\n\
        Content-Disposition: form-data; name=\"company\"\r\n\r\n\
        Analytical Engines\r\n\
        --XyZ\r\n\
        Content-Disposition: form-data; name=\"cv\"; filename=\"ada.pdf\"\r\n\
        Content-Type: application/pdf\r\n\r\n\
        %PDF-1.4 ...\r\n\
        --XyZ--\r\n";

    #[test]
    fn a_multipart_post_reads_like_a_urlencoded_one_and_names_its_files() {
        let event = post(
            Some("careers"),
            "multipart/form-data; boundary=XyZ",
            MULTIPART.as_bytes(),
        )
        .unwrap();
        assert_eq!(event.identities.email.as_deref(), Some("ada@example.com"));
        assert_eq!(event.properties["fields"]["company"], "Analytical Engines");
        assert_eq!(event.properties["files"]["cv"], "ada.pdf");
    }

    #[test]
    fn a_broken_multipart_body_is_malformed_not_a_trap() {
        let truncated = &MULTIPART.as_bytes()[..60];
        assert!(matches!(
            post(Some("x"), "multipart/form-data; boundary=XyZ", truncated),
            Err(TriggerError::Malformed(_))
        ));
        assert!(
            matches!(post(Some("x"), "multipart/form-data", MULTIPART.as_bytes()), Err(TriggerError::Malformed(m)) if m.starts_with("content-type"))
        );
    }
}
