//! The `send` step: renders a Liquid template for the contact and sends it on
//! one channel through the host's `messaging` interface, which applies the
//! delivery policy (consent, caps, quiet hours, dedupe, priority).
//!
//! Config, from the journey file:
//!
//! ```toml
//! config = { channel = "email", template = "checkout-coupon", coupon = { percent_off = 10 } }
//! config = { channel = "email", template = "whitepaper-delivery", category = "transactional" }
//! ```
//!
//! - `channel` (required): a channel the runtime knows (`email`, `sms`,
//!   `wecom`, `outbox`) or `preferred`.
//! - `template` (required): the template's name; the files are in
//!   `templates/` (see `templates/README.md` and [`template`]).
//! - `category`: `marketing` (the default) or `transactional`.
//! - `max_segments`: the most segments an SMS may take (default 3; GSM-7
//!   when every character has one, else UCS-2).
//! - `template_files`: added by the runtime, never written in a journey: every
//!   file in `templates/` whose name starts with `<template>.`, by file name.
//! - Any other key is the template's to read as `config.<key>`.
//!
//! A template reads `contact`, `trigger`, `data`, `config` and `step` (see
//! [`globals`]). `validate` refuses a template that reads anything else, a
//! `config` key the step lacks, bad Liquid, an email without a subject, or a
//! fixed SMS over its segment limit; `run` refuses (as a step error) a value
//! that is missing for this contact, and an SMS that renders over the limit.
//!
//! Outcomes: `sent`, `suppressed` and `deferred` deliveries all go on
//! (`continue`); the runtime records why a message was held back. A host
//! error `unavailable` asks for a `retry`; any other host error is a step
//! error.

pub mod template;
pub mod variables;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The step's config, as the runtime passes it.
#[derive(Debug, Deserialize)]
pub struct Config {
    /// The channel to send on.
    pub channel: String,
    /// The template's name.
    pub template: String,
    /// `marketing` or `transactional`.
    #[serde(default)]
    pub category: Category,
    /// The template's files by name, added by the runtime.
    #[serde(default)]
    pub template_files: BTreeMap<String, String>,
    /// The most segments an SMS may take (default
    /// [`template::DEFAULT_SMS_SEGMENTS`]).
    #[serde(default)]
    pub max_segments: Option<usize>,
}

/// Whether a message needs marketing consent.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Promotional: consent, caps and quiet hours apply.
    #[default]
    Marketing,
    /// Asked for by the contact (a download confirmation).
    Transactional,
}

/// A config, checked: the parsed fields and the raw object templates read.
#[derive(Debug)]
pub struct Checked {
    /// The parsed config.
    pub config: Config,
    /// The config as templates see it (`config.*`): without `template_files`.
    pub visible: Map<String, Value>,
}

/// Parses and checks a config: everything `validate` can know without a
/// contact. Errors name the field or the template file.
pub fn check_config(config_json: &str) -> Result<Checked, String> {
    let checked = parse_config(config_json)?;
    let config = &checked.config;
    let (file, source) =
        template::select(&config.template_files, &config.template, &config.channel)?;
    template::split(file, source)?
        .with_sms_segments(config.max_segments)
        .check(&config.channel, &checked.visible)?;
    Ok(checked)
}

/// Parses a config and checks its own fields, not its template: a run does
/// not parse the template twice (Liquid parsing is most of a run's cost, and
/// the render is as strict as the check).
pub fn parse_config(config_json: &str) -> Result<Checked, String> {
    let mut visible: Map<String, Value> =
        serde_json::from_str(config_json).map_err(|e| format!("config: {e}"))?;
    let config: Config = serde_json::from_value(Value::Object(visible.clone()))
        .map_err(|e| format!("config: {e}"))?;
    visible.remove("template_files");
    if config.channel.trim().is_empty() {
        return Err("config: `channel` is empty".into());
    }
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    };
    if !name_ok(&config.template) {
        return Err(format!(
            "config: template {:?} must be lower-case letters, digits, `-` and `_` (its files are `<template>.<channel>.liquid`)",
            config.template
        ));
    }
    Ok(Checked { config, visible })
}

/// The contact, as the template sees it (see [`globals`]).
#[derive(Debug, Clone, Default)]
pub struct Contact {
    /// Dripline's id for the contact.
    pub id: String,
    /// The email address.
    pub email: Option<String>,
    /// The phone number in E.164.
    pub phone: Option<String>,
    /// (system, id) pairs.
    pub external_ids: Vec<(String, String)>,
    /// Attributes as JSON object text.
    pub attributes: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Lead score.
    pub score: i64,
    /// IANA time zone.
    pub time_zone: Option<String>,
}

/// The trigger event, as the template sees it.
#[derive(Debug, Clone, Default)]
pub struct Trigger {
    /// The event's id.
    pub id: String,
    /// Where it came from.
    pub source: String,
    /// Its name (`checkout.created`).
    pub name: String,
    /// The email it named.
    pub email: Option<String>,
    /// The phone it named.
    pub phone: Option<String>,
    /// (system, id) pairs.
    pub external_ids: Vec<(String, String)>,
    /// Properties as JSON object text.
    pub properties: String,
    /// When it happened (ms since the epoch).
    pub occurred_at: i64,
}

/// What a run knows, in plain Rust (the glue copies it from the WIT record).
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The journey's id.
    pub journey: String,
    /// The journey's version.
    pub journey_version: u32,
    /// The enrollment's id.
    pub enrollment_id: String,
    /// The step's id.
    pub step_id: String,
    /// 1, 2, ... on retries.
    pub attempt: u32,
    /// The contact.
    pub contact: Contact,
    /// The event that enrolled the contact.
    pub trigger: Trigger,
    /// Enrollment data as JSON object text.
    pub data: String,
    /// The step's config as JSON object text.
    pub config: String,
    /// The runtime's clock (ms since the epoch).
    pub now: i64,
}

/// A message ready for `messaging::send`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The channel.
    pub channel: String,
    /// The subject, where the template has one.
    pub subject: Option<String>,
    /// The plain-text body.
    pub body: String,
    /// The HTML body, where the template has one.
    pub html: Option<String>,
    /// Marketing or transactional.
    pub category: Category,
}

/// What went wrong in a run, split as the WIT `step-error` is.
#[derive(Debug, PartialEq)]
pub enum Failure {
    /// The config is not acceptable.
    InvalidConfig(String),
    /// Anything else, such as a value missing for this contact.
    Other(String),
}

/// Renders the message for one run.
pub fn compose(context: &Context) -> Result<Message, Failure> {
    let Checked { config, visible } =
        parse_config(&context.config).map_err(Failure::InvalidConfig)?;
    let globals = globals(context, visible).map_err(Failure::Other)?;
    let (file, source) =
        template::select(&config.template_files, &config.template, &config.channel)
            .map_err(Failure::InvalidConfig)?;
    let rendered = template::split(file, source)
        .and_then(|parts| {
            parts
                .with_sms_segments(config.max_segments)
                .render(&config.channel, &globals)
        })
        .map_err(Failure::Other)?;
    Ok(Message {
        channel: config.channel,
        subject: rendered.subject,
        body: rendered.text,
        html: rendered.html,
        category: config.category,
    })
}

/// What `step.confirm_url` renders as: an address that resolves nowhere
/// (`.invalid`, RFC 2606), which the runtime's tracking replaces with the
/// message's signed confirmation link. Shared with the runtime through
/// `dripline-event`, so the two cannot drift apart.
pub use dripline_event::trust::CONFIRM_LINK;

/// The variables a template reads:
///
/// - `contact`: `id`, `email`, `phone`, `external_ids` (by system:
///   `contact.external_ids.shopify`), `attributes`, `tags`, `score`,
///   `time_zone`;
/// - `trigger`: `id`, `source`, `name`, `email`, `phone`, `external_ids`,
///   `properties`, `occurred_at` (ms);
/// - `data`: the enrollment's data;
/// - `config`: the step's config without `template_files`;
/// - `step`: `journey`, `journey_version`, `enrollment_id`, `id`, `attempt`,
///   `now` (ms), and `confirm_url`: the link by which the address confirms
///   it wants these emails (double opt-in). The runtime's tracking makes it
///   a signed link of the message's own when the email goes out; it reads
///   [`CONFIRM_LINK`] until then.
///
/// Absent values and JSON nulls are left out, so `{{ }}` on them is an error
/// and `{% if %}` on them is false.
pub fn globals(context: &Context, config: Map<String, Value>) -> Result<liquid::Object, String> {
    let c = &context.contact;
    let t = &context.trigger;
    let ids = |pairs: &[(String, String)]| -> Map<String, Value> {
        pairs
            .iter()
            .map(|(system, id)| (system.clone(), json!(id)))
            .collect()
    };
    let object = |name: &str, text: &str| -> Result<Value, String> {
        match serde_json::from_str::<Value>(if text.trim().is_empty() { "{}" } else { text }) {
            Ok(value @ Value::Object(_)) => Ok(value),
            Ok(_) => Err(format!("{name}: not a JSON object")),
            Err(e) => Err(format!("{name}: {e}")),
        }
    };
    let values = [
        (
            "contact",
            json!({
                "id": c.id, "email": c.email, "phone": c.phone, "external_ids": ids(&c.external_ids),
                "attributes": object("contact attributes", &c.attributes)?,
                "tags": c.tags, "score": c.score, "time_zone": c.time_zone,
            }),
        ),
        (
            "trigger",
            json!({
                "id": t.id, "source": t.source, "name": t.name, "email": t.email, "phone": t.phone,
                "external_ids": ids(&t.external_ids),
                "properties": object("trigger properties", &t.properties)?,
                "occurred_at": t.occurred_at,
            }),
        ),
        ("data", object("enrollment data", &context.data)?),
        ("config", Value::Object(config)),
        (
            "step",
            json!({
                "journey": context.journey, "journey_version": context.journey_version,
                "enrollment_id": context.enrollment_id, "id": context.step_id,
                "attempt": context.attempt, "now": context.now,
                "confirm_url": CONFIRM_LINK,
            }),
        ),
    ];
    let mut globals = liquid::Object::new();
    for (name, value) in values {
        globals.insert(name.into(), template::to_liquid(&value)?);
    }
    Ok(globals)
}

/// What the host answered to a send, in plain Rust.
#[derive(Debug, Clone, PartialEq)]
pub enum SendResult {
    /// Sent; the outbox id.
    Sent(String),
    /// Held back by the policy; the reason.
    Suppressed(String),
    /// Queued for this time by the policy.
    Deferred(i64),
    /// A transient host failure.
    Unavailable(String),
    /// Any other host failure, described.
    Failed(String),
}

/// What the journey does after a send.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Go on.
    Continue,
    /// Try the step again later.
    Retry(String),
}

/// Maps the host's answer to what the journey does next. A suppressed or
/// deferred message still lets the journey go on: the runtime records the
/// reason, and a later step may reach the contact another way.
pub fn next(result: SendResult) -> Result<Next, Failure> {
    match result {
        SendResult::Sent(_) | SendResult::Suppressed(_) | SendResult::Deferred(_) => {
            Ok(Next::Continue)
        }
        SendResult::Unavailable(reason) => Ok(Next::Retry(format!("send: {reason}"))),
        SendResult::Failed(reason) => Err(Failure::Other(format!("send: {reason}"))),
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "step", path: "../../../wit" });

    use super::{Category, Failure, Next, SendResult};
    use dripline::journey::log;
    use dripline::journey::messaging::{self, Delivery};
    use dripline::journey::types::Error;
    use exports::dripline::journey::step_handler::{
        Guest, Outcome, RetryLater, StepContext, StepError,
    };

    struct Send;

    fn step_error(failure: Failure) -> StepError {
        match failure {
            Failure::InvalidConfig(m) => StepError::InvalidConfig(m),
            Failure::Other(m) => StepError::Other(m),
        }
    }

    impl Guest for Send {
        fn validate(config: String) -> Result<(), StepError> {
            super::check_config(&config)
                .map(|_| ())
                .map_err(StepError::InvalidConfig)
        }

        fn run(context: StepContext) -> Result<Outcome, StepError> {
            let c = context.contact;
            let t = context.trigger_event;
            let plain = super::Context {
                journey: context.journey,
                journey_version: context.journey_version,
                enrollment_id: context.enrollment_id,
                step_id: context.step_id,
                attempt: context.attempt,
                contact: super::Contact {
                    id: c.id,
                    email: c.identities.email,
                    phone: c.identities.phone,
                    external_ids: c.identities.external_ids,
                    attributes: c.attributes,
                    tags: c.tags,
                    score: c.score,
                    time_zone: c.time_zone,
                },
                trigger: super::Trigger {
                    id: t.id,
                    source: t.source,
                    name: t.name,
                    email: t.identities.email,
                    phone: t.identities.phone,
                    external_ids: t.identities.external_ids,
                    properties: t.properties,
                    occurred_at: t.occurred_at,
                },
                data: context.data,
                config: context.config,
                now: context.now,
            };
            let message = super::compose(&plain).map_err(step_error)?;
            let answer = messaging::send(&messaging::Message {
                channel: message.channel,
                subject: message.subject,
                body: message.body,
                html: message.html,
                category: match message.category {
                    Category::Marketing => messaging::Category::Marketing,
                    Category::Transactional => messaging::Category::Transactional,
                },
            });
            let result = match answer {
                Ok(Delivery::Sent(id)) => SendResult::Sent(id),
                Ok(Delivery::Suppressed(reason)) => {
                    log::log(log::Level::Info, &format!("suppressed: {reason}"));
                    SendResult::Suppressed(reason)
                }
                Ok(Delivery::Deferred(at)) => SendResult::Deferred(at),
                Err(Error::Unavailable(reason)) => SendResult::Unavailable(reason),
                Err(error) => SendResult::Failed(format!("{error:?}")),
            };
            match super::next(result).map_err(step_error)? {
                Next::Continue => Ok(Outcome::Continue),
                Next::Retry(reason) => Ok(Outcome::Retry(RetryLater {
                    reason,
                    after: None,
                })),
            }
        }
    }

    export!(Send);
}

#[cfg(test)]
mod tests;
