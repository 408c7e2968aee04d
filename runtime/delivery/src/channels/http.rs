//! The HTTP providers: an SMS gateway, the WeCom group robot and a generic
//! webhook (which also carries the `webhook` step's posts). One blocking
//! client with a timeout per channel; one classification of answers:
//! 2xx delivered, 429 and 5xx and network failures transient, other 4xx
//! permanent. Every request carries the outbox row's idempotency key as
//! `Idempotency-Key`, so a provider that honours it drops the duplicate that a
//! crash between delivery and bookkeeping can cause.
//!
//! Credentials (auth headers, the robot's key in its URL, signing secrets)
//! appear in no error text and no log line.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use dripline_store::{Contact, OutboxMessage};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use super::config::Redacted;
use super::{Channel, DeliveryError, Receipt, email_of, phone_of};
use crate::outbox_record::OutboxRecord;

/// The header that carries the HMAC-SHA256 of the body.
pub const SIGNATURE_HEADER: &str = "X-Dripline-Signature";

/// An HTTP client with the channel's timeout.
#[derive(Clone)]
pub struct HttpConfig {
    agent: ureq::Agent,
}

impl HttpConfig {
    /// A client whose every request, connection included, ends within
    /// `timeout`, and which reaches a host by name only at a public address
    /// (see [`OutboundResolver`]).
    pub fn new(timeout: Duration) -> Self {
        Self::granting(timeout, Vec::new())
    }

    /// [`HttpConfig::new`] that may also reach the non-public addresses in
    /// `granted` by name (`[http_out] allowed_addresses`).
    pub fn granting(timeout: Duration, granted: Vec<IpAddr>) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // Statuses are classified here, not turned into errors by ureq.
            .http_status_as_error(false)
            // A redirect is never followed: it would carry the body and the
            // signature to a host nobody granted (loopback, the cloud's
            // metadata address). A 3xx is the target's answer, a failure.
            .max_redirects(0)
            .user_agent("dripline")
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::new(),
            OutboundResolver { granted },
        );
        Self { agent }
    }

    /// POSTs `body` with `content_type` and `headers` and classifies the answer.
    /// `what` names the target in errors instead of the URL, which may hold a
    /// credential.
    pub fn post(
        &self,
        what: &str,
        url: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Receipt, DeliveryError> {
        let (status, text) = self.post_raw(what, url, content_type, headers, body)?;
        classify_status(what, status, &text)
    }

    /// [`HttpConfig::post`] without the classification of the status: the
    /// status and up to 64 KiB of the answer.
    pub fn post_raw(
        &self,
        what: &str,
        url: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, String), DeliveryError> {
        let mut request = self.agent.post(url).header("Content-Type", content_type);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = request.send(body).map_err(|e| classify_error(what, &e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 10)
            .read_to_string()
            .unwrap_or_default();
        Ok((status, text))
    }
}

/// Resolves a host for an outbound request and keeps only the addresses it
/// may reach: a host named by its address (`http://10.0.0.5/`) is what the
/// file that names it granted; a host named by a name is reached only at its
/// public addresses, or at a non-public one listed in `granted`. So a name
/// that resolves (or is made to resolve, by whoever runs its DNS) to
/// loopback, a private network, a link-local address or the cloud's metadata
/// service (`169.254.169.254`) is refused after resolution, where the check
/// of the name alone could not see it.
#[derive(Debug)]
pub struct OutboundResolver {
    granted: Vec<IpAddr>,
}

impl ureq::unversioned::resolver::Resolver for OutboundResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let resolved = ureq::unversioned::resolver::DefaultResolver::default()
            .resolve(uri, config, timeout)?;
        let host = uri.host().unwrap_or_default();
        let literal = host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok();
        if literal {
            return Ok(resolved);
        }
        let mut kept = self.empty();
        for address in resolved.iter() {
            if is_public(address.ip()) || self.granted.contains(&address.ip()) {
                kept.push(*address);
            }
        }
        if kept.is_empty() {
            return Err(ureq::Error::Other(Box::new(NotPublic(host.to_owned()))));
        }
        Ok(kept)
    }
}

/// A host that resolves to no address it may reach: a permanent failure.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves to no public address (grant one in [http_out] allowed_addresses)")]
struct NotPublic(String);

/// Whether `ip` is on the public internet: not loopback, private, shared
/// (carrier NAT), link-local (the metadata service among them), unique-local,
/// unspecified, broadcast, documentation or multicast.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80)
            }
        },
    }
}

/// Network failures may pass on another try; a URL that cannot be used will not.
fn classify_error(what: &str, error: &ureq::Error) -> DeliveryError {
    match error {
        // Not the error's text: it quotes the URL, which may carry a key.
        ureq::Error::BadUri(_) | ureq::Error::RequireHttpsOnly(_) | ureq::Error::Http(_) => {
            DeliveryError::Permanent(format!("{what}: the URL or a header is not valid"))
        }
        // Its text names the host alone, never the URL's path or query.
        ureq::Error::Other(e) if e.is::<NotPublic>() => {
            DeliveryError::Permanent(format!("{what}: {e}"))
        }
        _ => DeliveryError::Transient(format!("{what}: {error}")),
    }
}

/// 2xx delivered; 408, 429 and 5xx transient; the rest permanent.
pub fn classify_status(what: &str, status: u16, body: &str) -> Result<Receipt, DeliveryError> {
    let snippet: String = body.chars().take(200).collect();
    match status {
        200..=299 => Ok(Receipt {
            provider_id: provider_id(body),
        }),
        408 | 429 | 500..=599 => Err(DeliveryError::Transient(format!(
            "{what} answered {status}: {snippet}"
        ))),
        _ => Err(DeliveryError::Permanent(format!(
            "{what} answered {status}: {snippet}"
        ))),
    }
}

/// An id from a JSON answer (`id`, `message_id`, `msgid`), if there is one.
fn provider_id(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    ["id", "message_id", "msgid"]
        .iter()
        .find_map(|k| value.get(*k))
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`, the value of
/// [`SIGNATURE_HEADER`].
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// How an SMS provider wants its fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsFormat {
    /// A JSON object.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// An SMS gateway: the phone (E.164) and the text in configurable fields, plus
/// fixed fields, with an optional auth header.
pub struct Sms {
    /// The client.
    pub http: HttpConfig,
    /// The send endpoint.
    pub url: String,
    /// JSON or form.
    pub format: SmsFormat,
    /// (header, value) carrying the credential.
    pub auth: Option<(String, Redacted)>,
    /// The phone's field.
    pub phone_field: String,
    /// The text's field.
    pub body_field: String,
    /// Fixed fields.
    pub fields: BTreeMap<String, String>,
}

impl Channel for Sms {
    fn deliver(
        &self,
        message: &OutboxMessage,
        record: &OutboxRecord,
        contact: &Contact,
    ) -> Result<Receipt, DeliveryError> {
        let phone = phone_of(contact).ok_or_else(|| {
            DeliveryError::Permanent(format!("contact {} has no phone number", contact.id))
        })?;
        let mut fields = self.fields.clone();
        fields.insert(self.phone_field.clone(), phone.to_string());
        fields.insert(self.body_field.clone(), record.body.clone());
        let (content_type, body) = match self.format {
            SmsFormat::Json => ("application/json", json!(fields).to_string()),
            SmsFormat::Form => (
                "application/x-www-form-urlencoded",
                form_encode(fields.iter()),
            ),
        };
        let mut headers = vec![("Idempotency-Key", message.idempotency_key.as_str())];
        if let Some((name, value)) = &self.auth {
            headers.push((name.as_str(), value.0.as_str()));
        }
        self.http.post(
            "the SMS provider",
            &self.url,
            content_type,
            &headers,
            body.as_bytes(),
        )
    }
}

fn form_encode<'a>(fields: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    fields
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The WeCom group robot: `{"msgtype":"text","text":{"content":...}}` or the
/// markdown form. It answers 200 with `errcode` in the body, so a non-zero
/// `errcode` is the failure (45009, the rate limit, is transient).
pub struct Wecom {
    /// The client.
    pub http: HttpConfig,
    /// The robot's URL, key included.
    pub url: Redacted,
    /// Markdown instead of text.
    pub markdown: bool,
}

impl Channel for Wecom {
    fn deliver(
        &self,
        message: &OutboxMessage,
        record: &OutboxRecord,
        _: &Contact,
    ) -> Result<Receipt, DeliveryError> {
        let text = record.body.as_str();
        let body = if self.markdown {
            json!({ "msgtype": "markdown", "markdown": { "content": text } })
        } else {
            json!({ "msgtype": "text", "text": { "content": text } })
        };
        let what = "the WeCom robot";
        let (status, answer) = self.http.post_raw(
            what,
            &self.url.0,
            "application/json",
            &[("Idempotency-Key", message.idempotency_key.as_str())],
            body.to_string().as_bytes(),
        )?;
        let receipt = classify_status(what, status, &answer)?;
        let answer: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        match answer.get("errcode").and_then(Value::as_i64).unwrap_or(0) {
            0 => Ok(receipt),
            // -1: system busy; 45009: the robot's rate limit (20 a minute).
            code @ (-1 | 45009) => Err(DeliveryError::Transient(format!(
                "{what} answered errcode {code}: {}",
                answer["errmsg"].as_str().unwrap_or_default()
            ))),
            code => Err(DeliveryError::Permanent(format!(
                "{what} answered errcode {code}: {}",
                answer["errmsg"].as_str().unwrap_or_default()
            ))),
        }
    }
}

/// A JSON POST, signed when a secret is configured. Two uses: a send on a
/// webhook channel posts `{"message": ..., "contact": ...}` to the configured
/// URL; a `webhook` step's post (its row has `url` and `body`) posts the step's
/// body to the step's URL, whose host was granted when the step ran.
pub struct Webhook {
    /// The client.
    pub http: HttpConfig,
    /// Where sends go; `None` for the channel of step posts.
    pub url: Option<String>,
    /// The signing key.
    pub secret: Option<Redacted>,
}

impl Channel for Webhook {
    fn deliver(
        &self,
        message: &OutboxMessage,
        record: &OutboxRecord,
        contact: &Contact,
    ) -> Result<Receipt, DeliveryError> {
        let (url, body) = match (&record.url, &self.url) {
            (Some(url), _) => (
                url.clone(),
                if record.body.is_empty() {
                    "{}".to_string()
                } else {
                    record.body.clone()
                },
            ),
            (None, Some(url)) => (
                url.clone(),
                send_payload(message, record, contact).to_string(),
            ),
            (None, None) => {
                return Err(DeliveryError::Permanent(
                    "the message names no URL to post to".into(),
                ));
            }
        };
        let mut headers = vec![("Idempotency-Key", message.idempotency_key.clone())];
        if let Some(secret) = &self.secret {
            headers.push((
                SIGNATURE_HEADER,
                signature(secret.0.as_bytes(), body.as_bytes()),
            ));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let host = dripline_sandbox::egress::host_of(&url).unwrap_or_default();
        self.http.post(
            &format!("the webhook at {host}"),
            &url,
            "application/json",
            &headers,
            body.as_bytes(),
        )
    }
}

/// What a send on a webhook channel posts.
fn send_payload(message: &OutboxMessage, record: &OutboxRecord, contact: &Contact) -> Value {
    json!({
        "id": message.idempotency_key,
        "channel": message.channel,
        "journey": record.journey,
        "enrollment": record.enrollment,
        "step": record.step,
        "message": {
            "subject": record.subject,
            "body": record.body,
            "html": record.html,
            "category": record.category,
        },
        "contact": {
            "id": contact.id,
            "email": email_of(contact),
            "phone": phone_of(contact),
            "profile": contact.profile,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A one-shot HTTP server on loopback that answers 200 to one request.
    fn answering_once() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            use std::io::{Read as _, Write as _};
            if let Ok((mut stream, _)) = listener.accept() {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            }
        });
        port
    }

    #[test]
    fn a_name_that_resolves_to_loopback_is_refused_unless_its_address_is_granted() {
        let port = answering_once();
        let by_name = format!("http://localhost:{port}/hook");
        let refused =
            HttpConfig::new(Duration::from_secs(5)).post("hook", &by_name, "text/plain", &[], b"x");
        match refused {
            Err(DeliveryError::Permanent(e)) => assert!(e.contains("no public address"), "{e}"),
            other => panic!("{other:?}"),
        }
        let granted =
            HttpConfig::granting(Duration::from_secs(5), vec!["127.0.0.1".parse().unwrap()]);
        assert!(
            granted
                .post("hook", &by_name, "text/plain", &[], b"x")
                .is_ok()
        );
        // An address written out is the grant of whoever wrote it.
        let port = answering_once();
        let by_address = format!("http://127.0.0.1:{port}/hook");
        assert!(
            HttpConfig::new(Duration::from_secs(5))
                .post("hook", &by_address, "text/plain", &[], b"x")
                .is_ok()
        );
    }

    #[test]
    fn loopback_private_link_local_and_metadata_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn statuses_are_classified_transient_or_permanent() {
        assert!(
            classify_status("p", 200, "{\"id\":\"m1\"}")
                .is_ok_and(|r| r.provider_id.as_deref() == Some("m1"))
        );
        for transient in [408, 429, 500, 503] {
            assert!(matches!(
                classify_status("p", transient, ""),
                Err(DeliveryError::Transient(_))
            ));
        }
        for permanent in [400, 401, 404, 422] {
            assert!(matches!(
                classify_status("p", permanent, ""),
                Err(DeliveryError::Permanent(_))
            ));
        }
    }

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn form_fields_are_percent_encoded() {
        let fields: BTreeMap<String, String> = [
            ("to".to_string(), "+86 138".to_string()),
            ("t".to_string(), "a&b=中".to_string()),
        ]
        .into();
        assert_eq!(
            form_encode(fields.iter()),
            "t=a%26b%3D%E4%B8%AD&to=%2B86+138"
        );
    }
}
