//! The gateway: the Spin HTTP component in front of every webhook route.
//!
//! One instance of this component serves one route, composed with that route's
//! trigger component (through Spin component dependencies under Spin, and
//! composed the same way at load under `dripline up`). For each request it
//! checks, in this order and before anything is stored:
//!
//! 1. the method (`POST`, else 405) and the path (the track API's four calls,
//!    else 404),
//! 2. the content type (415),
//! 3. the body size, 1 MiB, refused as soon as the stream passes it (413),
//! 4. the signature or write key against the route's secret, in constant time
//!    (401; secrets are never logged or echoed),
//! 5. the delivery id: a delivery already accepted is answered 200 and nothing
//!    new is stored,
//!
//! then hands the request to the trigger, writes the events to the inbox in the
//! Spin key-value store `default`, marks the delivery as accepted, and only then
//! answers 2xx. The decisions are plain functions over the [`Backend`] trait,
//! tested natively; the Spin glue at the bottom only moves bytes.
//!
//! Keys written (the record shapes the runtime reads; see
//! `dripline_store::inbox_key`):
//!
//! | key | value |
//! |---|---|
//! | `inbox/{received_at_ms:013}/{event_id}` | the canonical event as JSON |
//! | `dedupe/{source}/{delivery_id}` | the receipt time in ms, as text; holds for [`DEDUPE_TTL_MS`] |
//! | `metric/skipped/{source}` | the count of skipped deliveries, as text |
//!
//! The skip counter is a read-modify-write through the key-value interface,
//! which has no atomic increment: two skipped deliveries of one source at the
//! same instant can count once. It is a diagnostic, not a ledger.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The largest body a route accepts: 1 MiB. One byte more is a 413.
pub const MAX_BODY: usize = 1 << 20;

/// The key-value store the inbox lives in.
pub const STORE: &str = "default";

// Shopify retries a delivery for up to 48 hours (Typeform and Tally for less),
// so every retry still meets its mark, with a day to spare for clocks and slow
// retries; past that a mark is treated as absent, and `dripline up` sweeps such
// marks away (`dripline_gateway_host::dedupe_sweep`) so that the store does not
// grow without end.
pub use dedupe_mark::{DEDUPE_TTL_MS, mark_holds};

pub mod abuse;
pub use abuse::{FormGuard, Verdict};

/// Who sent a route's webhooks: decides the content types, the signature
/// scheme, where the delivery id is and how errors are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Shopify webhooks: JSON, `X-Shopify-Hmac-Sha256`.
    Shopify,
    /// Typeform webhooks: JSON, `Typeform-Signature: sha256=...`.
    Typeform,
    /// Tally webhooks: JSON, `Tally-Signature`.
    Tally,
    /// Plain HTML form posts from browsers: unsigned; may redirect.
    Form,
    /// The track API (Segment's identify, track, page, batch): JSON, a write key.
    Track,
}

impl Source {
    /// The source named by the route's `source` variable.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.trim() {
            "shopify" => Source::Shopify,
            "typeform" => Source::Typeform,
            "tally" => Source::Tally,
            "form" | "forms" => Source::Form,
            "track" | "api" => Source::Track,
            _ => return None,
        })
    }

    /// The name used in keys and passed to the trigger.
    pub fn name(self) -> &'static str {
        match self {
            Source::Shopify => "shopify",
            Source::Typeform => "typeform",
            Source::Tally => "tally",
            Source::Form => "form",
            Source::Track => "track",
        }
    }

    /// The `source` of the events the route's trigger returns: its name, but
    /// `api` for the track API (Segment's word for server-side calls).
    pub fn event_source(self) -> &'static str {
        match self {
            Source::Track => "api",
            other => other.name(),
        }
    }

    fn content_types(self) -> &'static [&'static str] {
        match self {
            Source::Form => &["application/x-www-form-urlencoded", "multipart/form-data"],
            _ => &["application/json"],
        }
    }
}

/// An HTTP answer, as the gateway decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
    /// Extra headers (`allow`, `location`).
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            body,
            headers: Vec::new(),
        }
    }

    fn error(status: u16, error: impl Into<String>, field: Option<&str>) -> Self {
        Self::json(status, json!({ "error": error.into(), "field": field }))
    }

    /// The body as bytes.
    pub fn body_bytes(&self) -> Vec<u8> {
        self.body.to_string().into_bytes()
    }
}

/// What the gateway knows about a request before reading its body.
pub struct Head<'a> {
    /// The method, upper case.
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// Headers; names lower case.
    pub headers: &'a [(String, String)],
}

/// The first value of a header (names are lower case).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The media type of the `content-type` header, lower case, without parameters.
fn media_type(headers: &[(String, String)]) -> String {
    header(headers, "content-type")
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The checks made before the body is read: method, path, content type and a
/// declared length over the limit.
pub fn check_head(source: Source, head: &Head<'_>) -> Result<(), Reply> {
    if head.method != "POST" {
        let mut reply = Reply::error(
            405,
            format!("{} is not allowed; use POST", head.method),
            None,
        );
        reply.headers.push(("allow", "POST".into()));
        return Err(reply);
    }
    if source == Source::Track {
        let call = head
            .path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default();
        if !matches!(call, "identify" | "track" | "page" | "batch") {
            return Err(Reply::error(
                404,
                "no such call; use /v1/identify, /v1/track, /v1/page or /v1/batch",
                None,
            ));
        }
    }
    let media = media_type(head.headers);
    if !source.content_types().contains(&media.as_str()) {
        let got = if media.is_empty() { "nothing" } else { &media };
        return Err(Reply::error(
            415,
            format!(
                "expected {}, got {got}",
                source.content_types().join(" or ")
            ),
            Some("content-type"),
        ));
    }
    let declared =
        header(head.headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    Ok(())
}

/// The answer to a body over [`MAX_BODY`].
pub fn too_large() -> Reply {
    Reply::error(
        413,
        format!("the body is larger than {MAX_BODY} bytes"),
        Some("body"),
    )
}

/// Checks the request's signature (or the track API's write key) against the
/// route's secret, in constant time. HTML forms are not signed.
pub fn verify(
    source: Source,
    secret: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), Reply> {
    use webhook_auth::headers as h;
    let secret_bytes = secret.as_bytes();
    let verdict = match source {
        Source::Shopify => {
            webhook_auth::verify_shopify(secret_bytes, body, header(headers, h::SHOPIFY))
        }
        Source::Typeform => {
            webhook_auth::verify_typeform(secret_bytes, body, header(headers, h::TYPEFORM))
        }
        Source::Tally => webhook_auth::verify_tally(secret_bytes, body, header(headers, h::TALLY)),
        Source::Track => webhook_auth::verify_write_key(secret, header(headers, h::AUTHORIZATION)),
        Source::Form => Ok(()),
    };
    verdict.map_err(|rejection| {
        let field = match source {
            Source::Shopify => "x-shopify-hmac-sha256",
            Source::Typeform => "typeform-signature",
            Source::Tally => "tally-signature",
            Source::Track | Source::Form => "authorization",
        };
        // The rejection names what was wrong, never the secret or the digest.
        Reply::error(401, rejection.to_string(), Some(field))
    })
}

/// The source's own id of a delivery, which stays the same when the provider
/// retries it; `None` when the source gives none (an HTML form, a track batch),
/// in which case each event is deduplicated by its own id instead.
pub fn delivery_id(source: Source, headers: &[(String, String)], body: &[u8]) -> Option<String> {
    let from_body = |field: &str| -> Option<String> {
        let value: Value = serde_json::from_slice(body).ok()?;
        match value.get(field)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let id = match source {
        Source::Shopify => header(headers, "x-shopify-event-id")
            .or_else(|| header(headers, "x-shopify-webhook-id"))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
        Source::Typeform => from_body("event_id"),
        Source::Tally => from_body("eventId"),
        Source::Track => from_body("messageId"),
        Source::Form => header(headers, "idempotency-key")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
    }?;
    Some(key_safe(&id))
}

/// An id as it appears in a key: kept as it is when short and printable, else
/// replaced by its hash so that a hostile id cannot make keys huge or odd.
fn key_safe(id: &str) -> String {
    if id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic()) {
        id.to_string()
    } else {
        format!("sha256-{}", hex(&Sha256::digest(id.as_bytes())[..16]))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `dedupe/{source}/{delivery_id}`: present once a delivery was accepted.
pub fn dedupe_key(source: Source, delivery_id: &str) -> String {
    format!("dedupe/{}/{delivery_id}", source.name())
}

/// `inbox/{received_at_ms:013}/{event_id}`: lexical order is arrival order.
pub fn inbox_key(received_at_ms: i64, event_id: &str) -> String {
    format!("inbox/{received_at_ms:013}/{event_id}")
}

/// `metric/skipped/{source}`: how many authentic deliveries had nothing to act on.
pub fn skipped_key(source: Source) -> String {
    format!("metric/skipped/{}", source.name())
}

/// The request as the trigger receives it (`inbound-request` in the WIT).
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// The route's source name.
    pub source: String,
    /// The method, upper case.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query, without `?`.
    pub query: String,
    /// Headers; names lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
    /// When the gateway received it, ms since the epoch.
    pub received_at: i64,
}

/// A canonical event as the trigger returned it (`event` in the WIT).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Stable id.
    pub id: String,
    /// The event's source (`shopify`, `form`, `api`, ...).
    pub source: String,
    /// `checkout.created`, `form.submitted`, ...
    pub name: String,
    /// Lower-cased email.
    pub email: Option<String>,
    /// E.164 phone.
    pub phone: Option<String>,
    /// `(system, id)` pairs.
    pub external_ids: Vec<(String, String)>,
    /// A JSON object, as text.
    pub properties: String,
    /// When it happened, ms since the epoch.
    pub occurred_at: i64,
    /// When it was received, ms since the epoch.
    pub received_at: i64,
}

/// Why the trigger produced no events (`trigger-error` in the WIT).
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerError {
    /// Unparseable or missing a required field; the text names the field.
    Malformed(String),
    /// A content type the trigger does not read.
    UnsupportedContentType(String),
    /// A topic the trigger does not handle.
    UnsupportedTopic(String),
    /// Nobody named.
    MissingIdentity(String),
    /// Anything else.
    Other(String),
}

/// The canonical event as the inbox stores it: the serde shape of
/// `dripline_engine::Event` (properties as a JSON object; absent identities
/// left out). `None` if the trigger's properties are not a JSON object.
///
/// The properties are checked as JSON and copied into the record as they
/// are, not parsed into a tree and written out again: on the webhook path
/// that round trip was the gateway's largest cost after the HMAC.
pub fn inbox_record(event: &Event, received_at: i64) -> Option<Vec<u8>> {
    let properties: &RawValue = serde_json::from_str(&event.properties).ok()?;
    if !properties.get().starts_with('{') {
        return None;
    }
    // A system named twice keeps its last id, as a JSON object would.
    let external_ids: BTreeMap<&str, &str> = event
        .external_ids
        .iter()
        .map(|(system, id)| (system.as_str(), id.as_str()))
        .collect();
    let record = Record {
        id: &event.id,
        source: &event.source,
        name: &event.name,
        identities: RecordIdentities {
            email: event.email.as_deref(),
            phone: event.phone.as_deref(),
            external_ids,
        },
        properties,
        occurred_at: event.occurred_at,
        received_at,
    };
    serde_json::to_vec(&record).ok()
}

/// An inbox record as it is written (see [`inbox_record`]).
#[derive(Serialize)]
struct Record<'a> {
    id: &'a str,
    source: &'a str,
    name: &'a str,
    identities: RecordIdentities<'a>,
    properties: &'a RawValue,
    occurred_at: i64,
    received_at: i64,
}

#[derive(Serialize)]
struct RecordIdentities<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    external_ids: BTreeMap<&'a str, &'a str>,
}

/// What the gateway needs from its platform: the key-value store the route
/// was granted and the route's trigger. Errors are text for the log.
pub trait Backend {
    /// The value of a key in the `default` store.
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Sets a key in the `default` store.
    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String>;
    /// Runs the route's trigger on the request, which it takes: the
    /// component hands it on without a copy.
    fn trigger(&mut self, request: Inbound) -> Result<Vec<Event>, TriggerError>;
}

/// The route's settings, from its Spin variables.
#[derive(Debug, Clone)]
pub struct Route {
    /// Who sends to it.
    pub source: Source,
    /// The signing secret or write key; empty when not configured, which
    /// refuses every signed request.
    pub secret: String,
    /// Hosts an HTML form may redirect to besides this site's own paths.
    pub redirect_hosts: Vec<String>,
    /// For form sources: which answer carries consent to which channel
    /// (`newsletter=email`), from the `consent_fields` variable.
    pub consent_fields: Vec<(String, String)>,
    /// For the unsigned HTML form route: its honeypot and limits.
    pub guard: FormGuard,
}

/// Everything after the body is read: signature, dedupe, trigger, inbox.
pub fn handle_body<B: Backend>(backend: &mut B, route: &Route, request: Inbound) -> Reply {
    let source = route.source;
    if let Err(reply) = verify(source, &route.secret, &request.headers, &request.body) {
        return reply;
    }
    let received_at = request.received_at;
    let delivery = delivery_id(source, &request.headers, &request.body);
    if let Some(id) = &delivery {
        match backend.get(&dedupe_key(source, id)) {
            Ok(Some(mark)) if mark_holds(&mark, received_at) => {
                return Reply::json(200, json!({ "duplicate": true, "accepted": 0 }));
            }
            Ok(_) => {}
            Err(e) => return store_failed(&e),
        }
    }
    let redirect = match source {
        Source::Form => redirect_target(&request, &route.redirect_hosts),
        _ => None,
    };

    // The trigger takes the request; the guard reads its headers after.
    let headers = if route.guard == FormGuard::default() {
        Vec::new()
    } else {
        request.headers.clone()
    };
    let mut events = match backend.trigger(request) {
        Ok(events) => events,
        Err(error) => {
            return trigger_failed(backend, source, delivery.as_deref(), received_at, error);
        }
    };
    // The route says where events come from, not the trigger: a trigger is
    // a plugin, and one naming another source (Shopify, whose compliance
    // webhooks erase contacts, or the runtime's own `admin`) would borrow
    // that source's trust.
    for event in &mut events {
        source.event_source().clone_into(&mut event.source);
    }
    match route
        .guard
        .judge(backend, &headers, &mut events, received_at)
    {
        Ok(Verdict::Pass) => {}
        // Answered as an accepted post would be: a bot that learns it was
        // caught tries again without the field.
        Ok(Verdict::Trap) => {
            return match redirect {
                Some(location) => Reply {
                    status: 303,
                    body: json!({ "accepted": 0 }),
                    headers: vec![("location", location)],
                },
                None => Reply::json(200, json!({ "accepted": 0 })),
            };
        }
        Ok(Verdict::Refuse(reply)) => return reply,
        Err(e) => return store_failed(&e),
    }
    if !route.consent_fields.is_empty() {
        for event in &mut events {
            take_consent(event, &route.consent_fields);
        }
    }

    // Render every record before writing any, so that a bad event stores nothing.
    let mut records = Vec::with_capacity(events.len());
    for event in &events {
        match inbox_record(event, received_at) {
            Some(record) => records.push((event.id.as_str(), record)),
            None => {
                return Reply::error(
                    500,
                    format!(
                        "the trigger returned event {} whose properties are not a JSON object",
                        event.id
                    ),
                    None,
                );
            }
        }
    }
    let mark = received_at.to_string();
    let mut accepted = 0;
    for (event_id, record) in &records {
        // Without a delivery id, each event's own (stable) id is the dedupe key.
        let event_mark = match delivery {
            Some(_) => None,
            None => Some(dedupe_key(source, &key_safe(event_id))),
        };
        if let Some(key) = &event_mark {
            match backend.get(key) {
                Ok(Some(mark)) if mark_holds(&mark, received_at) => continue,
                Ok(_) => {}
                Err(e) => return store_failed(&e),
            }
        }
        if let Err(e) = backend.set(&inbox_key(received_at, event_id), record) {
            return store_failed(&e);
        }
        if let Some(key) = &event_mark
            && let Err(e) = backend.set(key, mark.as_bytes())
        {
            return store_failed(&e);
        }
        accepted += 1;
    }
    // The delivery is marked last: a crash before this line makes the provider
    // retry and the events land again under a later receipt time; the
    // runtime's consumer drops them by their (stable) event ids.
    if let Some(id) = &delivery
        && let Err(e) = backend.set(&dedupe_key(source, id), mark.as_bytes())
    {
        return store_failed(&e);
    }
    match redirect {
        Some(location) => Reply {
            status: 303,
            body: json!({ "accepted": accepted }),
            headers: vec![("location", location)],
        },
        _ => Reply::json(200, json!({ "accepted": accepted })),
    }
}

fn store_failed(error: &str) -> Reply {
    // 503 makes a provider retry later, which is what a store outage needs.
    Reply::error(503, format!("the inbox is unavailable: {error}"), None)
}

fn trigger_failed<B: Backend>(
    backend: &mut B,
    source: Source,
    delivery: Option<&str>,
    received_at: i64,
    error: TriggerError,
) -> Reply {
    let reason = match error {
        TriggerError::Malformed(reason) => {
            let field = field_of(&reason);
            return Reply::error(400, reason.clone(), field.as_deref());
        }
        TriggerError::UnsupportedContentType(reason) => {
            return Reply::error(415, reason, Some("content-type"));
        }
        TriggerError::Other(reason) => return Reply::error(500, reason, None),
        TriggerError::MissingIdentity(reason) if source == Source::Track => {
            return Reply::error(422, reason, Some("userId"));
        }
        TriggerError::MissingIdentity(reason) => format!("missing identity: {reason}"),
        TriggerError::UnsupportedTopic(reason) => format!("unsupported topic: {reason}"),
    };
    // An authentic delivery with nothing to act on: acknowledged, so the
    // provider does not retry it for hours, and counted.
    let key = skipped_key(source);
    let count = match backend.get(&key) {
        Ok(value) => value
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0),
        Err(e) => return store_failed(&e),
    };
    if let Err(e) = backend.set(&key, (count + 1).to_string().as_bytes()) {
        return store_failed(&e);
    }
    if let Some(id) = delivery
        && let Err(e) = backend.set(&dedupe_key(source, id), received_at.to_string().as_bytes())
    {
        return store_failed(&e);
    }
    Reply::json(200, json!({ "skipped": reason }))
}

/// The field a `malformed` reason names: the text before its first `:` when
/// that looks like a field path (`line_items[0].price: not a number`).
fn field_of(reason: &str) -> Option<String> {
    let (field, _) = reason.split_once(':')?;
    let field = field.trim();
    let plausible = !field.is_empty()
        && field.len() <= 80
        && field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.[]/".contains(c));
    plausible.then(|| field.to_string())
}

/// Where a browser goes after an HTML form post: the form's `_redirect` field
/// (urlencoded bodies) or the `redirect` query parameter. Only this site's own
/// paths (`/thanks`) and the hosts in `redirect_hosts` are honoured, so that a
/// form cannot be made into an open redirect.
pub fn redirect_target(request: &Inbound, allowed_hosts: &[String]) -> Option<String> {
    let from_query = form_urlencoded::parse(request.query.as_bytes())
        .find(|(k, _)| k == "redirect")
        .map(|(_, v)| v.into_owned());
    let from_body = || {
        let urlencoded = media_type(&request.headers) == "application/x-www-form-urlencoded";
        urlencoded
            .then(|| {
                form_urlencoded::parse(&request.body)
                    .find(|(k, _)| k == "_redirect")
                    .map(|(_, v)| v.into_owned())
            })
            .flatten()
    };
    let target = from_query.or_else(from_body)?;
    let target = target.trim();
    // Browsers read a backslash as a slash (`https://evil.example\@shop/`
    // goes to evil.example) and drop control characters and spaces, so a
    // target with any of them could name a host other than the one read
    // here: refused, as is any user part before the host.
    if target
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return None;
    }
    if target.starts_with('/') && !target.starts_with("//") {
        return Some(target.to_string());
    }
    let rest = target
        .strip_prefix("https://")
        .or_else(|| target.strip_prefix("http://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.contains('@') {
        return None;
    }
    let host = host.to_ascii_lowercase();
    allowed_hosts
        .iter()
        .any(|allowed| allowed.trim().eq_ignore_ascii_case(&host))
        .then(|| target.to_string())
}

/// The route's settings from its variables (`variable` gives each, empty
/// when unset): `source`, `secret`, `redirect_hosts` (comma-separated),
/// `consent_fields` (comma-separated `field=channel` pairs) and, for the
/// unsigned HTML form route, `honeypot_field`, `limit_per_address` and
/// `limit_per_client` (see [`FormGuard::from_variables`]). `None` if
/// `source` names no source.
pub fn route_from(variable: impl Fn(&str) -> String) -> Option<Route> {
    let source = Source::from_name(&variable("source"))?;
    Some(Route {
        source,
        secret: variable("secret"),
        redirect_hosts: variable("redirect_hosts")
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect(),
        consent_fields: variable("consent_fields")
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(field, channel)| (field.trim().to_owned(), channel.trim().to_ascii_lowercase()))
            .filter(|(field, channel)| !field.is_empty() && !channel.is_empty())
            .collect(),
        guard: match source {
            Source::Form => FormGuard::from_variables(
                &variable("honeypot_field"),
                &variable("limit_per_address"),
                &variable("limit_per_client"),
            ),
            _ => FormGuard::default(),
        },
    })
}

/// A form's consent answers as the event's `consent`: a ticked box (`on`,
/// `yes`, `true`, `1`, or a checked Typeform/Tally boolean) grants the
/// channel; an explicit no (`no`, `false`, `0`, `off`) denies it; a field
/// that is absent (an unticked HTML checkbox is not sent) says nothing.
/// The answer stays among the fields; `consent_source` names the form.
fn take_consent(event: &mut Event, consent_fields: &[(String, String)]) {
    // A trigger's properties that are not an object are refused further on.
    let Ok(Value::Object(mut properties)) = serde_json::from_str::<Value>(&event.properties) else {
        return;
    };
    let fields = properties.get("fields").and_then(Value::as_object);
    let mut consent = serde_json::Map::new();
    for (field, channel) in consent_fields {
        let answer = fields.and_then(|f| f.get(field));
        let state = match answer {
            Some(Value::Bool(true)) => "granted",
            Some(Value::Bool(false)) => "denied",
            Some(Value::String(text)) => match text.trim().to_ascii_lowercase().as_str() {
                "on" | "yes" | "true" | "1" | "y" | "checked" => "granted",
                "no" | "false" | "0" | "off" | "n" => "denied",
                _ => continue,
            },
            Some(Value::Array(choices)) if !choices.is_empty() => "granted",
            _ => continue,
        };
        consent.insert(channel.clone(), json!(state));
    }
    if consent.is_empty() {
        return;
    }
    let form = properties
        .get("form")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let existing = properties
        .entry("consent")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if let Some(existing) = existing.as_object_mut() {
        existing.extend(consent);
    }
    properties.insert("consent_source".into(), json!(format!("form:{form}")));
    event.properties = Value::Object(properties).to_string();
}

#[cfg(target_arch = "wasm32")]
mod component;

#[cfg(test)]
mod tests;
