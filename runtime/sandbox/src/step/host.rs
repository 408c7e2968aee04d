//! The host interfaces a step component imports (`log`, `contacts`,
//! `messaging`, `http-out`), over the state of one call. Each records an
//! [`Effect`] or asks the [`Messenger`]; none touches a store.

use std::sync::Arc;

use crate::bindings::{Contact, HostError, StepContext, contacts, http_out, log, messaging};
use crate::step::{Decision, Effect, Messenger};

/// The state the host interfaces work on during one step call.
pub struct StepCall {
    pub(crate) plugin: Arc<str>,
    pub(crate) contact: Contact,
    /// The engine's idempotency key of this step run
    /// (`{enrollment}/{step}/{visit}/{attempt}`): the prefix of every
    /// effect's key, so a step visited twice (a loop in the graph) sends twice
    /// and a step replayed after a crash sends once.
    pub(crate) call_key: String,
    pub(crate) messenger: Arc<dyn Messenger>,
    /// Hosts the step's own config grants (`allowed_hosts`): the journey
    /// author's grant, which the component cannot change.
    pub(crate) allowed_hosts: Vec<String>,
    pub(crate) effects: Vec<Effect>,
    /// Log lines written so far in this call.
    pub(crate) log_lines: usize,
}

impl StepCall {
    pub(crate) fn new(
        plugin: Arc<str>,
        context: &StepContext,
        call_key: &str,
        messenger: Arc<dyn Messenger>,
    ) -> Self {
        let allowed_hosts = serde_json::from_str::<serde_json::Value>(&context.config)
            .ok()
            .and_then(|c| c.get("allowed_hosts").cloned())
            .and_then(|h| serde_json::from_value(h).ok())
            .unwrap_or_default();
        Self {
            allowed_hosts,
            plugin,
            contact: context.contact.clone(),
            call_key: call_key.to_string(),
            messenger,
            effects: Vec::new(),
            log_lines: 0,
        }
    }

    /// The state of a `validate` call, which has no contact and may not send.
    pub(crate) fn placeholder(plugin: Arc<str>) -> Self {
        Self {
            plugin,
            contact: empty_contact(),
            call_key: "validate".into(),
            messenger: Arc::new(crate::step::AcceptAll),
            allowed_hosts: Vec::new(),
            effects: Vec::new(),
            log_lines: 0,
        }
    }

    fn attributes(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::from_str(&self.contact.attributes) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        }
    }
}

fn empty_contact() -> Contact {
    Contact {
        id: String::new(),
        identities: crate::bindings::Identities {
            email: None,
            phone: None,
            external_ids: Vec::new(),
        },
        attributes: "{}".into(),
        tags: Vec::new(),
        score: 0,
        consent: Vec::new(),
        time_zone: None,
    }
}

/// Names and values that a marketer will see and filter on; longer ones are a
/// plugin bug, refused before they reach the store.
const MAX_NAME: usize = 128;
const MAX_VALUE: usize = 64 << 10;

fn check_name(what: &str, name: &str) -> Result<(), HostError> {
    if name.trim().is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(HostError::InvalidInput(format!(
            "{what} must be 1 to {MAX_NAME} printable characters"
        )));
    }
    Ok(())
}

/// What one step call may do. A journey step sends a message or two, sets
/// a few attributes and tags, posts to one CRM: these bounds are far above
/// that, and keep a buggy or hostile plugin from turning one call into a
/// flood of messages, posts or profile writes. Past a bound the host answers
/// `access-denied`, naming it, and records nothing more of that kind.
pub const MAX_SENDS_PER_CALL: usize = 4;
/// Posts per call.
pub const MAX_POSTS_PER_CALL: usize = 4;
/// Attribute writes per call.
pub const MAX_ATTRIBUTE_WRITES_PER_CALL: usize = 64;
/// Bytes of attribute values per call, all writes together.
pub const MAX_ATTRIBUTE_BYTES_PER_CALL: usize = 256 << 10;
/// Tags added or removed per call.
pub const MAX_TAG_CHANGES_PER_CALL: usize = 64;
/// Log lines per call; the rest are dropped (`log` never fails), and the
/// drop is said once.
pub const MAX_LOG_LINES_PER_CALL: usize = 64;

impl StepCall {
    fn count(&self, of: impl Fn(&Effect) -> bool) -> usize {
        self.effects.iter().filter(|e| of(e)).count()
    }

    fn within(&self, what: &str, used: usize, limit: usize) -> Result<(), HostError> {
        if used >= limit {
            return Err(HostError::AccessDenied(format!(
                "a step call may make at most {limit} {what}"
            )));
        }
        Ok(())
    }
}

impl crate::bindings::step::dripline::journey::types::Host for StepCall {}

impl log::Host for StepCall {
    fn log(&mut self, level: log::Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            if self.log_lines == MAX_LOG_LINES_PER_CALL + 1 {
                let note = format!(
                    "over {MAX_LOG_LINES_PER_CALL} log lines in one call: the rest are dropped"
                );
                crate::link::log(&self.plugin, Some(&self.call_key), log::Level::Warn, &note);
            }
            return;
        }
        crate::link::log(&self.plugin, Some(&self.call_key), level, &message);
    }
}

impl contacts::Host for StepCall {
    fn get_attribute(&mut self, name: String) -> Result<Option<String>, HostError> {
        check_name("attribute name", &name)?;
        // The step sees its own pending writes, as it would with a database.
        let pending = self.effects.iter().rev().find_map(|e| match e {
            Effect::SetAttribute { name: n, value } if *n == name => Some(value.to_string()),
            _ => None,
        });
        Ok(pending.or_else(|| self.attributes().get(&name).map(ToString::to_string)))
    }

    fn set_attribute(&mut self, name: String, value: String) -> Result<(), HostError> {
        check_name("attribute name", &name)?;
        if value.len() > MAX_VALUE {
            return Err(HostError::InvalidInput(format!(
                "value of `{name}` is over {MAX_VALUE} bytes"
            )));
        }
        let writes = self.count(|e| matches!(e, Effect::SetAttribute { .. }));
        self.within("attribute writes", writes, MAX_ATTRIBUTE_WRITES_PER_CALL)?;
        let bytes: usize = self
            .effects
            .iter()
            .map(|e| match e {
                Effect::SetAttribute { value, .. } => value.to_string().len(),
                _ => 0,
            })
            .sum();
        if bytes + value.len() > MAX_ATTRIBUTE_BYTES_PER_CALL {
            return Err(HostError::AccessDenied(format!(
                "a step call may write at most {MAX_ATTRIBUTE_BYTES_PER_CALL} bytes of attributes"
            )));
        }
        let value = serde_json::from_str(&value)
            .map_err(|e| HostError::InvalidInput(format!("value of `{name}` is not JSON: {e}")))?;
        self.effects.push(Effect::SetAttribute { name, value });
        Ok(())
    }

    fn add_tag(&mut self, tag: String) -> Result<(), HostError> {
        check_name("tag", &tag)?;
        let changes = self.count(|e| matches!(e, Effect::AddTag(_) | Effect::RemoveTag(_)));
        self.within("tag changes", changes, MAX_TAG_CHANGES_PER_CALL)?;
        self.effects.push(Effect::AddTag(tag));
        Ok(())
    }

    fn remove_tag(&mut self, tag: String) -> Result<(), HostError> {
        check_name("tag", &tag)?;
        let changes = self.count(|e| matches!(e, Effect::AddTag(_) | Effect::RemoveTag(_)));
        self.within("tag changes", changes, MAX_TAG_CHANGES_PER_CALL)?;
        self.effects.push(Effect::RemoveTag(tag));
        Ok(())
    }

    fn add_score(&mut self, points: i64) -> Result<i64, HostError> {
        let pending: i64 = self
            .effects
            .iter()
            .map(|e| if let Effect::AddScore(p) = e { *p } else { 0 })
            .sum();
        let score = self
            .contact
            .score
            .saturating_add(pending)
            .saturating_add(points);
        self.effects.push(Effect::AddScore(points));
        Ok(score)
    }
}

impl messaging::Host for StepCall {
    fn send(&mut self, message: messaging::Message) -> Result<messaging::Delivery, HostError> {
        if message.body.len() > MAX_VALUE
            || message
                .html
                .as_ref()
                .is_some_and(|h| h.len() > 4 * MAX_VALUE)
        {
            return Err(HostError::InvalidInput("message body is too large".into()));
        }
        let sends = self.count(|e| matches!(e, Effect::Send { .. }));
        self.within("sends", sends, MAX_SENDS_PER_CALL)?;
        let idempotency_key = format!("{}/send-{sends}", self.call_key);
        let Decision { channel, delivery } =
            self.messenger
                .decide(&self.contact, &message, &idempotency_key)?;
        // The outbox row names the channel the message really goes through.
        let message = messaging::Message { channel, ..message };
        self.effects.push(Effect::Send {
            idempotency_key,
            message,
            delivery: delivery.clone(),
        });
        Ok(delivery)
    }
}

impl http_out::Host for StepCall {
    fn post(&mut self, request: http_out::Outbound) -> Result<String, HostError> {
        if request.body.len() > MAX_VALUE {
            return Err(HostError::InvalidInput(format!(
                "body is over {MAX_VALUE} bytes"
            )));
        }
        serde_json::from_str::<serde_json::Value>(&request.body)
            .map_err(|e| HostError::InvalidInput(format!("body is not JSON: {e}")))?;
        crate::egress::host_of(&request.url).map_err(HostError::InvalidInput)?;
        if crate::egress::check_host(&request.url, &self.allowed_hosts).is_err() {
            self.messenger
                .grant_post(&request.url)
                .map_err(HostError::AccessDenied)?;
        }
        let posts = self.count(|e| matches!(e, Effect::Post { .. }));
        self.within("posts", posts, MAX_POSTS_PER_CALL)?;
        let idempotency_key = format!("{}/post-{posts}", self.call_key);
        self.effects.push(Effect::Post {
            idempotency_key: idempotency_key.clone(),
            url: request.url,
            body: request.body,
        });
        Ok(idempotency_key)
    }
}
