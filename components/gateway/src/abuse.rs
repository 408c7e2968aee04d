//! Limits on the unsigned HTML form route, which anyone can post to with any
//! address: a honeypot field, and a count of accepted posts per address and
//! per client in each hour.
//!
//! A post whose honeypot field (hidden from people by the site's CSS, filled
//! in by bots that fill in everything) holds anything is answered as if it
//! were accepted, so the bot learns nothing, and stores nothing. A post over
//! a limit is answered 429 with `Retry-After`, naming the field (`email`,
//! `phone`) or the client; nothing of it is stored.
//!
//! The counts are marks in the `default` store,
//! `dedupe/limit/{address|client}/{digest}/{hour}`, whose value lapses when
//! the hour ends (see [`dedupe_mark`]), so the host's sweep of dedupe marks
//! deletes them within the next sweep. The digest is a truncated SHA-256 of
//! the address, not the address; a client is its IP address, an IPv6 one
//! its /64 (one host can take any address in it).

use std::net::{IpAddr, SocketAddr};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{Backend, Event, Reply, header};

/// The field a form's honeypot is, unless the route names another.
pub const DEFAULT_HONEYPOT: &str = "_gotcha";

/// Accepted posts per address in an hour, unless the route says otherwise.
pub const DEFAULT_PER_ADDRESS: u32 = 5;

/// Accepted posts per client in an hour, unless the route says otherwise.
pub const DEFAULT_PER_CLIENT: u32 = 30;

const HOUR_MS: i64 = 3_600_000;

/// The header the platform gives the client's address in (Spin, and
/// `dripline up` as Spin does).
const CLIENT_ADDR: &str = "spin-client-addr";

/// The form route's limits; `Default` is none, as signed routes have.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FormGuard {
    /// The honeypot field's name; `None`: no honeypot.
    pub honeypot: Option<String>,
    /// Accepted posts per address (email or phone) an hour; 0: no limit.
    pub per_address: u32,
    /// Accepted posts per client an hour; 0: no limit.
    pub per_client: u32,
}

/// What the guard makes of a post.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Store its events.
    Pass,
    /// A bot filled in the honeypot: answer as if accepted, store nothing.
    Trap,
    /// Over a limit: this answer, nothing stored.
    Refuse(Reply),
}

impl FormGuard {
    /// The guard from the route's `honeypot_field`, `limit_per_address` and
    /// `limit_per_client` variables: empty takes the defaults, `0` (or an
    /// empty honeypot written as `-`) turns one off.
    pub fn from_variables(honeypot: &str, per_address: &str, per_client: &str) -> Self {
        let limit = |text: &str, default: u32| match text.trim() {
            "" => default,
            other => other.parse().unwrap_or(default),
        };
        Self {
            honeypot: match honeypot.trim() {
                "" => Some(DEFAULT_HONEYPOT.to_string()),
                "-" => None,
                field => Some(field.to_string()),
            },
            per_address: limit(per_address, DEFAULT_PER_ADDRESS),
            per_client: limit(per_client, DEFAULT_PER_CLIENT),
        }
    }

    /// Judges a post by its events (after the trigger) and headers, and, when
    /// it passes, counts it. `now` is the receipt time.
    pub fn judge<B: Backend>(
        &self,
        backend: &mut B,
        headers: &[(String, String)],
        events: &mut [Event],
        now: i64,
    ) -> Result<Verdict, String> {
        if let Some(field) = &self.honeypot
            && strip_honeypot(events, field)
        {
            return Ok(Verdict::Trap);
        }
        let mut counters = Vec::new();
        if self.per_client > 0
            && let Some(client) = client_of(headers)
        {
            counters.push(("client", client, self.per_client, None));
        }
        if self.per_address > 0 {
            for event in events.iter() {
                let named = [
                    ("email", event.email.as_deref()),
                    ("phone", event.phone.as_deref()),
                ];
                for (field, address) in named {
                    if let Some(address) = address {
                        counters.push((
                            "address",
                            address.to_string(),
                            self.per_address,
                            Some(field),
                        ));
                    }
                }
            }
        }
        let window = now.div_euclid(HOUR_MS);
        let mut marks = Vec::with_capacity(counters.len());
        for (kind, who, limit, field) in counters {
            let key = format!(
                "{}limit/{kind}/{}/{window}",
                dedupe_mark::PREFIX,
                digest(kind, &who)
            );
            let count = backend.get(&key)?.map_or(0, |mark| count_of(&mark));
            if count >= limit {
                let retry_after = ((window + 1) * HOUR_MS - now + 999) / 1000;
                let what = field.map_or("this client".to_string(), |f| format!("this {f}"));
                return Ok(Verdict::Refuse(Reply {
                    status: 429,
                    body: json!({
                        "error": format!("too many posts from {what} this hour; try again later"),
                        "field": field,
                    }),
                    headers: vec![("retry-after", retry_after.to_string())],
                }));
            }
            marks.push((key, count + 1));
        }
        // The mark lapses when its hour ends: it reads as marked a dedupe
        // lifetime before that.
        let lapses = (window + 1) * HOUR_MS - dedupe_mark::DEDUPE_TTL_MS;
        for (key, count) in marks {
            backend.set(&key, format!("{lapses} {count}").as_bytes())?;
        }
        Ok(Verdict::Pass)
    }
}

/// Whether any event's honeypot field holds something; the (empty) field is
/// taken out of every event's fields, being nobody's answer.
fn strip_honeypot(events: &mut [Event], field: &str) -> bool {
    let mut filled = false;
    for event in events {
        let Ok(Value::Object(mut properties)) = serde_json::from_str::<Value>(&event.properties)
        else {
            continue;
        };
        let Some(fields) = properties.get_mut("fields").and_then(Value::as_object_mut) else {
            continue;
        };
        match fields.remove(field) {
            None => continue,
            Some(Value::String(text)) if text.trim().is_empty() => {}
            Some(Value::Null) => {}
            Some(_) => filled = true,
        }
        event.properties = Value::Object(properties).to_string();
    }
    filled
}

/// The client a post came from: its IP address, an IPv6 one cut to its /64.
fn client_of(headers: &[(String, String)]) -> Option<String> {
    let raw = header(headers, CLIENT_ADDR)?.trim();
    let ip = raw
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| raw.parse::<IpAddr>())
        .ok()?;
    Some(match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    })
}

fn digest(kind: &str, who: &str) -> String {
    let hash = Sha256::digest(format!("dripline form limit\0{kind}\0{who}"));
    crate::hex(&hash[..12])
}

/// The count in a limit mark (`"{lapses} {count}"`); an unreadable one counts
/// as none, so a damaged mark never locks a client out.
fn count_of(mark: &[u8]) -> u32 {
    std::str::from_utf8(mark)
        .ok()
        .and_then(|text| text.split_whitespace().nth(1))
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{Inbound, TriggerError};

    #[derive(Default)]
    struct Kv(BTreeMap<String, Vec<u8>>);

    impl Backend for Kv {
        fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
            Ok(self.0.get(key).cloned())
        }
        fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
            self.0.insert(key.into(), value.to_vec());
            Ok(())
        }
        fn trigger(&mut self, _: Inbound) -> Result<Vec<Event>, TriggerError> {
            unreachable!("the guard runs no trigger")
        }
    }

    fn post(email: &str, fields: Value) -> Event {
        Event {
            id: "form-1".into(),
            source: "form".into(),
            name: "form.submitted".into(),
            email: Some(email.into()),
            phone: None,
            external_ids: Vec::new(),
            properties: json!({ "form": "whitepaper", "fields": fields }).to_string(),
            occurred_at: 0,
            received_at: 0,
        }
    }

    fn from(client: &str) -> Vec<(String, String)> {
        vec![(CLIENT_ADDR.into(), client.into())]
    }

    const NOW: i64 = 1_763_800_000_000;

    #[test]
    fn a_filled_honeypot_is_a_trap_and_an_empty_one_is_taken_out_of_the_fields() {
        let guard = FormGuard::from_variables("", "", "");
        let mut kv = Kv::default();
        let mut bot = [post(
            "a@example.com",
            json!({ "_gotcha": "http://spam.example" }),
        )];
        assert_eq!(guard.judge(&mut kv, &[], &mut bot, NOW), Ok(Verdict::Trap));
        let mut person = [post(
            "a@example.com",
            json!({ "_gotcha": "", "company": "Acme" }),
        )];
        assert_eq!(
            guard.judge(&mut kv, &[], &mut person, NOW),
            Ok(Verdict::Pass)
        );
        let properties: Value = serde_json::from_str(&person[0].properties).unwrap();
        assert_eq!(properties["fields"], json!({ "company": "Acme" }));
    }

    #[test]
    fn the_sixth_post_for_one_address_in_an_hour_is_refused_naming_email_until_the_hour_ends() {
        let guard = FormGuard::from_variables("", "5", "0");
        let mut kv = Kv::default();
        for n in 0..5 {
            let mut events = [post("victim@example.com", json!({}))];
            assert_eq!(
                guard.judge(&mut kv, &[], &mut events, NOW + n),
                Ok(Verdict::Pass)
            );
        }
        let mut events = [post("victim@example.com", json!({}))];
        let Ok(Verdict::Refuse(reply)) = guard.judge(&mut kv, &[], &mut events, NOW + 10) else {
            panic!("not refused");
        };
        assert_eq!(
            (reply.status, reply.body["field"].as_str()),
            (429, Some("email"))
        );
        let mut other = [post("someone@example.com", json!({}))];
        assert_eq!(
            guard.judge(&mut kv, &[], &mut other, NOW + 11),
            Ok(Verdict::Pass)
        );
        let next_hour = (NOW / HOUR_MS + 1) * HOUR_MS;
        let mut later = [post("victim@example.com", json!({}))];
        assert_eq!(
            guard.judge(&mut kv, &[], &mut later, next_hour),
            Ok(Verdict::Pass)
        );
        // No mark names the address itself.
        assert!(kv.0.keys().all(|k| !k.contains("example.com")));
    }

    #[test]
    fn one_client_is_limited_across_addresses_and_an_ipv6_client_by_its_64() {
        let guard = FormGuard::from_variables("", "0", "2");
        let mut kv = Kv::default();
        let clients = ["[2001:db8:1:2::1]:4000", "[2001:db8:1:2::ffff]:4001"];
        for (n, client) in clients.iter().enumerate() {
            let mut events = [post(&format!("p{n}@example.com"), json!({}))];
            assert_eq!(
                guard.judge(&mut kv, &from(client), &mut events, NOW),
                Ok(Verdict::Pass)
            );
        }
        let mut events = [post("p9@example.com", json!({}))];
        let verdict = guard.judge(&mut kv, &from("[2001:db8:1:2::9]:1"), &mut events, NOW);
        assert!(
            matches!(verdict, Ok(Verdict::Refuse(ref r)) if r.status == 429),
            "{verdict:?}"
        );
        let mut elsewhere = [post("p9@example.com", json!({}))];
        let verdict = guard.judge(&mut kv, &from("203.0.113.7:5000"), &mut elsewhere, NOW);
        assert_eq!(verdict, Ok(Verdict::Pass));
    }

    #[test]
    fn a_limit_mark_lapses_when_its_hour_ends_so_the_sweep_deletes_it() {
        let guard = FormGuard::from_variables("", "5", "0");
        let mut kv = Kv::default();
        let mut events = [post("a@example.com", json!({}))];
        guard.judge(&mut kv, &[], &mut events, NOW).unwrap();
        let mark = kv.0.values().next().unwrap().clone();
        let hour_end = (NOW / HOUR_MS + 1) * HOUR_MS;
        assert!(dedupe_mark::mark_holds(&mark, hour_end - 1));
        assert!(!dedupe_mark::mark_holds(&mark, hour_end));
    }
}
