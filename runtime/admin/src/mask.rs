//! Personal data as a caller without the `personal_data` scope sees it:
//! enough to tell contacts apart and to support them (`j***@example.com`,
//! `+86*******78`), not enough to write to them. Message bodies and the
//! event payloads an enrollment keeps (a whole checkout) are withheld. What
//! is masked is decided here once, for every route.

use serde_json::{Map, Value};

/// What stands in for withheld text.
pub const WITHHELD: &str = "[withheld]";

/// Attribute names whose values are personal (matched as parts of the name).
const PERSONAL: [&str; 10] = [
    "name", "email", "phone", "address", "street", "city", "zip", "postal", "birth", "ip",
];

/// `jane.doe@example.com` as `j***@example.com`.
pub fn email(value: &str) -> String {
    match value.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => WITHHELD.to_owned(),
    }
}

/// `+8613800138000` as `+86*********00`: the country code and the last two
/// digits.
pub fn phone(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < 6 {
        return "***".to_owned();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 5))
}

/// An identity's value by its kind (`email`, `phone`, `external:<system>`).
pub fn identity(kind: &str, value: &str) -> String {
    match kind {
        "email" => email(value),
        "phone" => phone(value),
        // A store's customer id or a cart token is no way to reach anyone.
        _ => value.to_owned(),
    }
}

/// Masks, in place, every identity and personal attribute found in `value`:
/// objects under keys `email` and `phone` (and `identities`), attributes
/// whose names look personal, and message text (`body`, `html`, `subject`,
/// `text`, `to`).
pub fn personal(value: &mut Value) {
    match value {
        Value::Object(map) => mask_object(map),
        Value::Array(items) => items.iter_mut().for_each(personal),
        _ => {}
    }
}

fn mask_object(map: &mut Map<String, Value>) {
    for (key, value) in map.iter_mut() {
        let lower = key.to_ascii_lowercase();
        match (lower.as_str(), &*value) {
            // A consent map has `email` and `phone` keys too; only values
            // that are addresses or numbers are masked.
            ("email", Value::String(s)) if s.contains('@') => *value = Value::String(email(s)),
            ("phone", Value::String(s)) if s.chars().filter(char::is_ascii_digit).count() >= 6 => {
                *value = Value::String(phone(s))
            }
            // A consent map's `email: granted` is no address.
            ("email" | "phone", _) => personal(value),
            ("body" | "html" | "subject" | "text" | "to" | "url" | "properties", v)
                if !v.is_null() =>
            {
                *value = Value::String(WITHHELD.to_owned())
            }
            (_, Value::String(_)) if PERSONAL.iter().any(|p| lower.contains(p)) => {
                *value = Value::String(WITHHELD.to_owned())
            }
            _ => personal(value),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn identities_keep_only_what_tells_contacts_apart() {
        assert_eq!(email("jane.doe@example.com"), "j***@example.com");
        assert_eq!(phone("+8613800138000"), "+86*********00");
        assert_eq!(identity("external:shopify", "42"), "42");
    }

    #[test]
    fn nested_identities_attributes_and_message_text_are_masked() {
        let mut value = json!({
            "identities": { "email": "jane@example.com", "phone": "+14155550100" },
            "attributes": { "first_name": "Jane", "plan": "pro", "city": "Oslo" },
            "consent": { "email": "granted" },
            "messages": [{ "subject": "Your cart", "body": "Hi Jane", "status": "sent" }],
        });
        personal(&mut value);
        assert_eq!(value["identities"]["email"], "j***@example.com");
        assert_eq!(value["identities"]["phone"], "+14*******00");
        assert_eq!(value["attributes"]["first_name"], WITHHELD);
        assert_eq!(value["attributes"]["city"], WITHHELD);
        assert_eq!(value["attributes"]["plan"], "pro");
        assert_eq!(value["consent"]["email"], "granted");
        assert_eq!(value["messages"][0]["body"], WITHHELD);
        assert_eq!(value["messages"][0]["status"], "sent");
    }
}
