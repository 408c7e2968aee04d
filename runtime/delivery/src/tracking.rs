//! Open and click tracking, and the unsubscribe link, for outgoing email.
//!
//! When a step's email goes into the outbox, its HTML links are rewritten to
//! `{base}/t/c/{message}/{signature}/{url}`, an open pixel
//! `{base}/t/o/{message}/{signature}.gif` is appended, and an unsubscribe link
//! `{base}/u/{message}/{signature}` is added (and kept with the row for the
//! `List-Unsubscribe` header). `dripline up` answers those addresses
//! (the `dripline-admin` crate) by putting `email.opened`, `email.clicked` and
//! `contact.unsubscribed` events in the inbox, where waits and branches see
//! them like any other event.
//!
//! Every link carries an HMAC-SHA256 over what it stands for, so nobody can
//! forge an open for someone else, and a click link redirects only to the URL
//! it was signed for: the server is never an open redirect.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dripline_engine::Event;
use dripline_store::{Contacts, Dedupe, KeyValue, Outbox, StoreError, Write};
use hmac::{Hmac, Mac};
use lol_html::html_content::ContentType;
use lol_html::{RewriteStrSettings, element, rewrite_str};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use dripline_engine::trust::{CONFIRM_LINK, CONFIRMED};

use crate::names::UNSUBSCRIBED;
use crate::outbox_record::OutboxEntry;
use crate::recipient::identities_of;

/// Why tracking cannot start or record.
#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    /// The store failed; try again.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the deployment keeps its tracking key when none is configured: in the
/// runtime's own key-value store, which no component can read or write.
const SECRET_KEY: &str = "tracking-secret";

/// Signatures are HMAC-SHA256 cut to 128 bits: unguessable, and short enough
/// for a link.
const SIGNATURE_BYTES: usize = 16;

/// What a tracking link stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The open pixel.
    Open,
    /// A click on a link to a URL.
    Click,
    /// The unsubscribe link.
    Unsubscribe,
    /// The link by which the address confirms it wants the emails (double
    /// opt-in): where a template put `step.confirm_url`.
    Confirm,
}

impl Link {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Open => b"open",
            Self::Click => b"click",
            Self::Unsubscribe => b"unsubscribe",
            Self::Confirm => b"confirm",
        }
    }
}

/// Signs and checks tracking links for one deployment.
#[derive(Clone)]
pub struct Tracker {
    base_url: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for Tracker {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// A tracker whose links point at `base_url`, signed with `key`.
    pub fn new(base_url: &str, key: Vec<u8>) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            key,
        }
    }

    /// The deployment's tracker: the key from `DRIPLINE_TRACKING_SECRET` if set,
    /// else one made at first start and kept in the store, so links in emails
    /// already sent keep working after a restart.
    pub fn for_deployment(base_url: &str, store: &dyn KeyValue) -> Result<Self, TrackingError> {
        if let Ok(secret) = std::env::var("DRIPLINE_TRACKING_SECRET")
            && !secret.is_empty()
        {
            return Ok(Self::new(base_url, secret.into_bytes()));
        }
        let key = dripline_store::deployment_secret(store, SECRET_KEY)?;
        Ok(Self::new(base_url, key))
    }

    fn mac(&self, link: Link, message: &str, url: &str) -> Hmac<Sha256> {
        // Infallible: HMAC takes a key of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        for part in [link.label(), message.as_bytes(), url.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    fn signature(&self, link: Link, message: &str, url: &str) -> String {
        let tag = self.mac(link, message, url).finalize().into_bytes();
        URL_SAFE_NO_PAD.encode(&tag[..SIGNATURE_BYTES])
    }

    /// Checks a link's signature in constant time; `Some(message key)` if it is
    /// the one this deployment made for that message (and URL, for a click).
    pub fn verify(&self, link: Link, token: &str, signature: &str, url: &str) -> Option<String> {
        let message = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
        let given = URL_SAFE_NO_PAD.decode(signature).ok()?;
        if given.len() != SIGNATURE_BYTES {
            return None;
        }
        self.mac(link, &message, url)
            .verify_truncated_left(&given)
            .ok()
            .map(|()| message)
    }

    /// The address of a tracking link for the message with this idempotency key.
    pub fn url(&self, link: Link, message: &str, url: &str) -> String {
        let token = URL_SAFE_NO_PAD.encode(message);
        let signature = self.signature(link, message, url);
        let base = &self.base_url;
        match link {
            Link::Open => format!("{base}/t/o/{token}/{signature}.gif"),
            Link::Click => format!(
                "{base}/t/c/{token}/{signature}/{}",
                URL_SAFE_NO_PAD.encode(url)
            ),
            Link::Unsubscribe => format!("{base}/u/{token}/{signature}"),
            Link::Confirm => format!("{base}/y/{token}/{signature}"),
        }
    }

    /// Instruments an email about to go into the outbox: tracked links, the
    /// open pixel and the unsubscribe link in its HTML, the unsubscribe link in
    /// its text, and `unsubscribe_url` in the row for the mail header. Other
    /// channels, and emails the policy suppressed, are left as they are.
    pub fn instrument(&self, entry: &mut OutboxEntry) {
        if entry.channel != "email" || entry.record.is_suppressed() {
            return;
        }
        let key = &entry.idempotency_key;
        let unsubscribe = self.url(Link::Unsubscribe, key, "");
        let confirm = self.url(Link::Confirm, key, "");
        let record = &mut entry.record;
        if let Some(html) = &record.html {
            match self.rewrite_html(html, key, &unsubscribe, &confirm) {
                Ok(html) => record.html = Some(html),
                // Untracked is better than unsent: the original goes out.
                Err(e) => tracing::warn!(message = %key, "email HTML not instrumented: {e}"),
            }
        }
        let body = record.body.replace(CONFIRM_LINK, &confirm);
        record.body = format!("{body}\n\nUnsubscribe: {unsubscribe}");
        record.unsubscribe_url = Some(unsubscribe);
    }

    fn rewrite_html(
        &self,
        html: &str,
        key: &str,
        unsubscribe: &str,
        confirm: &str,
    ) -> Result<String, String> {
        let footer = format!(
            r#"<p style="font-size:12px;color:#888"><a href="{unsubscribe}">Unsubscribe</a></p><img src="{}" width="1" height="1" alt="" style="display:none">"#,
            self.url(Link::Open, key, "")
        );
        let mut placed = false;
        let rewritten = rewrite_str(
            html,
            RewriteStrSettings::new()
                .append_element_content_handler(element!("a[href]", |el| {
                    if let Some(href) = el.get_attribute("href") {
                        // Attribute values come as written; `&amp;` in a query
                        // string is the `&` the browser would follow.
                        let target = href.trim().replace("&amp;", "&");
                        if target == CONFIRM_LINK {
                            // Its own signed page, not a click to count.
                            el.set_attribute("href", confirm)?;
                        } else if target.starts_with("https://") || target.starts_with("http://") {
                            el.set_attribute("href", &self.url(Link::Click, key, &target))?;
                        }
                    }
                    Ok(())
                }))
                .append_element_content_handler(element!("body", |el| {
                    el.append(&footer, ContentType::Html);
                    placed = true;
                    Ok(())
                })),
        )
        .map_err(|e| e.to_string())?;
        Ok(if placed {
            rewritten
        } else {
            rewritten + &footer
        })
    }
}

/// Mail clients' image proxies that fetch a pixel when a person opens the
/// email (Gmail, Yahoo): real opens, though bot lists name them.
const MAIL_PROXIES: &[&str] = &["googleimageproxy", "yahoomailproxy"];

/// Mail security gateways that open every message and follow every link
/// before (or instead of) the person, as their agents name them.
const LINK_SCANNERS: &[&str] = &[
    "barracuda",
    "mimecast",
    "proofpoint",
    "safelinks",
    "symantec",
    "trendmicro",
    "ironport",
    "messagelabs",
    "forcepoint",
];

/// Whether a request for a tracking link came from a machine (a crawler, a
/// script, a mail link scanner: `isbot`'s list and [`LINK_SCANNERS`]) rather
/// than from the person, by its `User-Agent`. Its open or click is not
/// recorded, so it moves no journey and adds no score; a request with no
/// agent at all is taken as a machine's.
pub fn from_machine(user_agent: Option<&str>) -> bool {
    static BOTS: std::sync::LazyLock<isbot::Bots> = std::sync::LazyLock::new(|| {
        let mut bots = isbot::Bots::default();
        bots.remove(MAIL_PROXIES);
        bots.append(LINK_SCANNERS);
        bots
    });
    match user_agent.map(str::trim) {
        None | Some("") => true,
        Some(agent) => {
            let agent = agent.to_ascii_lowercase();
            !MAIL_PROXIES.iter().any(|p| agent.contains(p)) && BOTS.is_bot(&agent)
        }
    }
}

/// Puts the event a verified tracking link stands for into the inbox, about
/// the contact the message went to, and returns it; `None` if the message is
/// not in the outbox (a link from another deployment's database).
pub fn record<S: KeyValue + Outbox + Contacts + Dedupe + ?Sized>(
    store: &S,
    link: Link,
    message_key: &str,
    url: &str,
    now: i64,
) -> Result<Option<Event>, StoreError> {
    let Some(message) = store.outbox_get_by_key(message_key)? else {
        return Ok(None);
    };
    let Some(contact) = store.contact_get(&message.contact_id)? else {
        return Ok(None);
    };
    let identities = identities_of(&contact);
    let name = match link {
        Link::Open => format!("{}.opened", message.channel),
        Link::Click => format!("{}.clicked", message.channel),
        Link::Unsubscribe => UNSUBSCRIBED.to_string(),
        Link::Confirm => CONFIRMED.to_string(),
    };
    // A row whose record does not read still names its channel and message.
    let record = crate::outbox_record::OutboxRecord::read(&message).ok();
    let mut properties = json!({
        "channel": message.channel,
        "message": message_key,
        "journey": record.as_ref().map(|r| &r.journey),
        "step": record.as_ref().map(|r| &r.step),
        "template": record.as_ref().and_then(|r| r.template.as_ref()),
    });
    if link == Link::Click {
        properties["url"] = Value::String(url.to_string());
    }
    // Each open or click is its own event; two in the same millisecond are one.
    let digest = Sha256::digest(format!("{name}\0{message_key}\0{url}\0{now}"));
    let event = Event {
        id: format!("trk_{}", hex::encode(&digest[..12])),
        source: "dripline".into(),
        name,
        identities,
        properties,
        occurred_at: now,
        received_at: now,
    };
    // A message's engagement counts once: a pixel loaded eight times (a
    // mail client, a scanner, a forward) is one open, for the lead score
    // and the waits as for the rates. An unsubscribe or a confirmation
    // always goes through.
    // The mark comes first: a crash between the two loses an event rather
    // than counting one twice.
    let first = first_of(store, link, &message, now)?;
    let mut writes = Vec::new();
    if first || matches!(link, Link::Unsubscribe | Link::Confirm) {
        writes.push(Write::inbox_put(
            now,
            &event.id,
            serde_json::to_vec(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        ));
    }
    // The analytics count messages opened and clicked, once each.
    if let Some(record) = record.as_ref().filter(|_| first) {
        let key = crate::analytics::Key::of_message(record, &message.channel);
        writes.push(Write::MetricAdd {
            name: crate::analytics::counter(&key, now, link_name(link)),
            delta: 1,
        });
    }
    if !writes.is_empty() {
        store.apply(&writes)?;
    }
    Ok(Some(event))
}

/// Whether this is the message's first open, click or unsubscribe.
fn first_of<S: Dedupe + ?Sized>(
    store: &S,
    link: Link,
    message: &dripline_store::OutboxMessage,
    now: i64,
) -> Result<bool, StoreError> {
    const KEEP_MS: i64 = 400 * 86_400_000;
    let mark = format!("engaged/{}/{}", link_name(link), message.id);
    store.dedupe_mark(&mark, now, now.saturating_add(KEEP_MS))
}

fn link_name(link: Link) -> &'static str {
    match link {
        Link::Open => "opened",
        Link::Click => "clicked",
        Link::Unsubscribe => "unsubscribed",
        Link::Confirm => "confirmed",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tracker() -> Tracker {
        Tracker::new("https://t.example.com/", b"test key".to_vec())
    }

    fn email(html: &str) -> OutboxEntry {
        let record = json!({
            "journey": "j", "journey_version": 1, "enrollment": "e1", "step": "send",
            "body": "Hello", "html": html, "delivery": { "status": "sent", "id": "k" },
        });
        OutboxEntry {
            idempotency_key: "e1/send/0/send-0".into(),
            contact_id: "c1".into(),
            channel: "email".into(),
            status: dripline_store::OutboxStatus::Pending,
            created_at_ms: 0,
            deliver_at_ms: 0,
            record: serde_json::from_value(record).unwrap(),
        }
    }

    /// The path segments after `/t/c/`: token, signature, encoded URL.
    fn click_parts(link: &str) -> Vec<String> {
        link.split("/t/c/")
            .nth(1)
            .unwrap()
            .split('/')
            .map(String::from)
            .collect()
    }

    #[test]
    fn links_become_signed_click_links_that_verify_only_for_their_own_url() {
        let t = tracker();
        let mut row = email(
            r#"<html><body><a href="https://shop.example.com/c?a=1&amp;b=2">Back</a></body></html>"#,
        );
        t.instrument(&mut row);
        let html = row.record.html.as_deref().unwrap();
        let start = html.find("https://t.example.com/t/c/").unwrap();
        let link = &html[start..html[start..].find('"').unwrap() + start];
        let parts = click_parts(link);
        let url = String::from_utf8(URL_SAFE_NO_PAD.decode(&parts[2]).unwrap()).unwrap();
        assert_eq!(url, "https://shop.example.com/c?a=1&b=2");
        assert_eq!(
            t.verify(Link::Click, &parts[0], &parts[1], &url).as_deref(),
            Some("e1/send/0/send-0")
        );
        assert_eq!(
            t.verify(Link::Click, &parts[0], &parts[1], "https://evil.example"),
            None
        );
        assert_eq!(t.verify(Link::Open, &parts[0], &parts[1], &url), None);
    }

    #[test]
    fn an_email_gets_the_open_pixel_and_an_unsubscribe_link_in_html_and_text() {
        let mut row = email("<p>No body element</p>");
        tracker().instrument(&mut row);
        let html = row.record.html.as_deref().unwrap();
        assert!(html.contains("/t/o/") && html.contains(".gif"), "{html}");
        let unsubscribe = row.record.unsubscribe_url.as_deref().unwrap();
        assert!(unsubscribe.starts_with("https://t.example.com/u/"));
        assert!(html.contains(unsubscribe));
        assert!(row.record.body.ends_with(unsubscribe));
    }

    #[test]
    fn sms_and_suppressed_emails_are_left_alone() {
        let mut sms = email("<a href=\"https://x.example\">x</a>");
        sms.channel = "sms".into();
        let before = sms.clone();
        tracker().instrument(&mut sms);
        assert_eq!(sms, before);
        let mut suppressed = email("<a href=\"https://x.example\">x</a>");
        suppressed.record.delivery =
            Some(crate::DeliveryDecision::Suppressed { reason: "r".into() });
        let before = suppressed.clone();
        tracker().instrument(&mut suppressed);
        assert_eq!(suppressed, before);
    }

    #[test]
    fn the_confirmation_placeholder_becomes_the_messages_signed_confirmation_link() {
        let tracker = tracker();
        let mut entry = email(&format!(
            r#"<p><a href="{CONFIRM_LINK}">Confirm</a> <a href="https://shop.example/">Shop</a></p>"#
        ));
        entry.record.body = format!("Confirm: {CONFIRM_LINK}");
        tracker.instrument(&mut entry);
        let html = entry.record.html.unwrap();
        let confirm = tracker.url(Link::Confirm, &entry.idempotency_key, "");
        assert!(html.contains(&format!(r#"href="{confirm}""#)), "{html}");
        assert!(!html.contains(CONFIRM_LINK), "{html}");
        assert!(
            html.contains("/t/c/"),
            "other links are still tracked: {html}"
        );
        assert!(
            entry
                .record
                .body
                .starts_with(&format!("Confirm: {confirm}"))
        );
        let token = confirm.rsplit('/').nth(1).unwrap();
        let signature = confirm.rsplit('/').next().unwrap();
        assert!(
            tracker
                .verify(Link::Confirm, token, signature, "")
                .is_some()
        );
        assert!(
            tracker
                .verify(Link::Unsubscribe, token, signature, "")
                .is_none()
        );
    }

    #[test]
    fn crawlers_scanners_and_agentless_requests_are_machines_and_mail_clients_are_not() {
        for machine in [
            None,
            Some(""),
            Some("curl/8.5.0"),
            Some("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
            Some("Mozilla/5.0 (compatible; Barracuda Sentinel)"),
            Some("Mimecast URL Protect"),
        ] {
            assert!(from_machine(machine), "{machine:?}");
        }
        for person in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
            "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
        ] {
            assert!(!from_machine(Some(person)), "{person}");
        }
    }

    #[test]
    fn a_signature_made_with_another_key_does_not_verify() {
        let other = Tracker::new("https://t.example.com", b"other".to_vec());
        let link = other.url(Link::Unsubscribe, "m", "");
        let mut parts = link.rsplit('/');
        let signature = parts.next().unwrap();
        let token = parts.next().unwrap();
        assert_eq!(
            tracker().verify(Link::Unsubscribe, token, signature, ""),
            None
        );
        assert_eq!(
            other
                .verify(Link::Unsubscribe, token, signature, "")
                .as_deref(),
            Some("m")
        );
    }
}
