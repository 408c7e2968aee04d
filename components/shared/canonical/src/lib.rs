//! Normalization every trigger applies before an event leaves it, so that the
//! rest of Dripline compares identities byte for byte: emails lower-cased,
//! phones in E.164, field names in one spelling, ids derived the same way,
//! timestamps in ms since the epoch. Also the [`Request`] a trigger's logic
//! reads, the [`TriggerError`] it may return, the small request and JSON
//! helpers the triggers share, and the WIT glue (`export_trigger!`). The
//! canonical [`Event`] a trigger returns is `dripline-event`'s, re-exported
//! here: one definition, shared with the host runtime.

pub mod calling_codes;
pub mod event;
mod export;

pub use calling_codes::calling_code;
pub use event::{Event, Identities, Request, Timestamp, TriggerError, trust};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Lower-cases and trims an email; `None` if it is not plausibly an address.
/// Deliverability is the channel's business: this only refuses what cannot be
/// an address at all, so that a typo does not become a contact's identity.
pub fn normalize_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let plausible = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    plausible.then_some(email)
}

/// Brings a phone number to E.164 (`+8613800138000`). A number without an
/// international prefix takes `default_country_code` (digits, such as `"86"`);
/// without one it is refused, since guessing a country sends SMS to strangers.
pub fn normalize_phone(raw: &str, default_country_code: Option<&str>) -> Option<String> {
    let trimmed = raw.trim();
    let mut digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    let allowed = |c: char| c.is_ascii_digit() || " -().+".contains(c);
    if digits.is_empty() || !trimmed.chars().all(allowed) {
        return None;
    }
    if trimmed.starts_with('+') {
        // already international
    } else if let Some(rest) = digits.strip_prefix("00") {
        digits = rest.to_string();
    } else {
        // The default may come from the submitter (a form's country field),
        // so it is checked like the number: one to three digits, no more.
        let country = default_country_code?.trim();
        if !(1..=3).contains(&country.len()) || !country.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let national = digits.trim_start_matches('0');
        digits = format!("{country}{national}");
    }
    // E.164 allows at most 15 digits; fewer than 8 is no reachable number.
    (8..=15)
        .contains(&digits.len())
        .then(|| format!("+{digits}"))
}

/// The one spelling of a form or payload field name that carries an identity:
/// `mobile`, `tel` and `phone_number` are all `phone`; `e-mail` is `email`.
pub fn canonical_field(name: &str) -> &str {
    match name.trim().to_ascii_lowercase().as_str() {
        "email" | "e-mail" | "email_address" | "mail" => "email",
        "phone" | "mobile" | "tel" | "telephone" | "phone_number" | "mobile_phone" => "phone",
        _ => name,
    }
}

/// A stable event id from the parts that make a delivery unique: the same
/// parts always give the same id, so a replay is recognized downstream.
pub fn stable_id(source: &str, parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(source.as_bytes());
    for part in parts {
        // Length-prefix each part so ("ab","c") and ("a","bc") differ.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    format!("{source}-{}", hex::encode(&hasher.finalize()[..16]))
}

/// Parses an RFC 3339 timestamp (`2024-03-01T09:30:00.123Z`,
/// `2024-03-01T17:30:00+08:00`) into ms since the epoch. Also takes an offset
/// without a colon (`+0000`), which some analytics libraries send.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    chrono::DateTime::parse_from_rfc3339(text)
        .or_else(|_| chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The first value of a header; `name` is matched case-insensitively.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The media type of the `content-type` header, lower case, without
/// parameters (`application/json; charset=utf-8` → `application/json`);
/// empty if there is none.
pub fn media_type(headers: &[(String, String)]) -> String {
    header(headers, "content-type")
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Refuses a request whose media type is not `expected`, naming what came.
pub fn require_media_type(
    headers: &[(String, String)],
    expected: &str,
) -> Result<(), TriggerError> {
    let got = media_type(headers);
    if got == expected {
        Ok(())
    } else {
        Err(TriggerError::UnsupportedContentType(format!(
            "expected {expected}, got {}",
            if got.is_empty() {
                "nothing"
            } else {
                got.as_str()
            }
        )))
    }
}

/// Parses a JSON object body, naming the problem (`body: not JSON: ...`).
pub fn parse_json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, TriggerError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(TriggerError::Malformed("body: not a JSON object".into())),
        Err(e) => Err(TriggerError::Malformed(format!("body: not JSON: {e}"))),
    }
}

/// A JSON value as identifier text: strings trimmed, integers in decimal
/// (Shopify ids and some `userId`s are numbers); `None` for anything else or
/// for empty text.
pub fn id_text(value: Option<&Value>) -> Option<String> {
    let text = match value? {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// A JSON value as a string slice, if it is a non-empty string.
pub fn str_of(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            normalize_email("  Li.Wei@Example.COM "),
            Some("li.wei@example.com".into())
        );
    }

    #[test]
    fn text_without_an_at_sign_is_no_email() {
        assert_eq!(normalize_email("li.wei.example.com"), None);
        assert_eq!(normalize_email("li@localhost"), None);
    }

    #[test]
    fn an_international_phone_keeps_its_country_code() {
        assert_eq!(
            normalize_phone("+86 138-0013-8000", None),
            Some("+8613800138000".into())
        );
        assert_eq!(
            normalize_phone("0044 20 7946 0958", None),
            Some("+442079460958".into())
        );
    }

    #[test]
    fn a_country_code_that_is_not_one_to_three_digits_gives_no_phone() {
        for country in ["<4", "", "4444", "+44", "4 4"] {
            assert_eq!(
                normalize_phone("020 7946 0958", Some(country)),
                None,
                "{country:?}"
            );
        }
    }

    #[test]
    fn a_national_phone_takes_the_default_country_code() {
        assert_eq!(
            normalize_phone("(020) 7946 0958", Some("44")),
            Some("+442079460958".into())
        );
        assert_eq!(normalize_phone("13800138000", None), None);
    }

    #[test]
    fn letters_in_a_phone_number_are_refused() {
        assert_eq!(normalize_phone("+1 800 FLOWERS", None), None);
    }

    #[test]
    fn identity_field_names_have_one_spelling() {
        assert_eq!(canonical_field("Mobile"), "phone");
        assert_eq!(canonical_field("E-mail"), "email");
        assert_eq!(canonical_field("company"), "company");
    }

    #[test]
    fn timestamps_with_any_offset_become_utc_milliseconds() {
        assert_eq!(
            parse_timestamp("2024-03-01T09:30:00Z"),
            Some(1_709_285_400_000)
        );
        assert_eq!(
            parse_timestamp("2024-03-01T17:30:00.250+08:00"),
            Some(1_709_285_400_250)
        );
        assert_eq!(
            parse_timestamp("2024-03-01T09:30:00+0000"),
            Some(1_709_285_400_000)
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn a_content_type_other_than_the_expected_one_is_named() {
        let headers = [(
            "Content-Type".to_string(),
            "Text/Plain; charset=x".to_string(),
        )];
        assert_eq!(
            require_media_type(&headers, "application/json"),
            Err(TriggerError::UnsupportedContentType(
                "expected application/json, got text/plain".into()
            ))
        );
        assert_eq!(
            require_media_type(&[], "application/json"),
            Err(TriggerError::UnsupportedContentType(
                "expected application/json, got nothing".into()
            ))
        );
    }

    #[test]
    fn numeric_and_text_ids_read_alike() {
        assert_eq!(
            id_text(Some(&serde_json::json!(7385439482u64))),
            Some("7385439482".into())
        );
        assert_eq!(id_text(Some(&serde_json::json!(" u1 "))), Some("u1".into()));
        assert_eq!(id_text(Some(&serde_json::json!(""))), None);
        assert_eq!(id_text(Some(&serde_json::json!(1.5))), None);
    }

    #[test]
    fn stable_ids_depend_on_every_part_and_its_boundaries() {
        let a = stable_id("form", &[b"ab", b"c"]);
        assert_eq!(a, stable_id("form", &[b"ab", b"c"]));
        assert_ne!(a, stable_id("form", &[b"a", b"bc"]));
    }
}
