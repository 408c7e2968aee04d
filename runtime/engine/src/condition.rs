//! CEL conditions in journey files: checked when the file is loaded, evaluated
//! against the trigger event, the current event, the contact and the enrollment's
//! data when the engine decides.
//!
//! The variables a condition sees:
//! - `trigger`: the event that enrolled the contact (`id`, `source`, `name`,
//!   `identities`, `properties`, `occurred_at`, `received_at`);
//! - `event`: the event being looked at (for a trigger filter, the trigger itself);
//! - `contact`: `id`, `identities`, `attributes`, `tags` (a list), `score`,
//!   `time_zone`, `consent`;
//! - `data`: the enrollment's data (empty before enrollment);
//! - `now`: the time of the decision, a CEL `timestamp`.
//!
//! Absent optional fields are left out rather than null, so `has(x.y)` tells
//! whether they are there.
//!
//! # Facts and time
//!
//! `contact.facts` holds, per event name, what the contact's events added up
//! to (see [`crate::facts`]): `count`, `first` and `last` (timestamps), and
//! two functions on a fact for rolling windows:
//!
//! - `fact.count_within(d)`: how many of its events happened within the
//!   duration `d` before `now`;
//! - `fact.sum_within(d)`: their amounts (an order's `total`) added.
//!
//! A name the contact has no event of reads as a fact with `count` 0 and
//! `first` and `last` at the epoch, as long as the condition names it in
//! quotes (`contact.facts['order.paid']`): "no order in 90 days" is then
//! simply `contact.facts['order.paid'].last < now - days(90)`.
//!
//! Durations are CEL's (`duration('36h')`) or `days(n)`; `contact.segments`
//! lists the segments the contact is in.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::{Context, ExecutionError, FunctionContext, Program, Value};
use chrono::{DateTime, FixedOffset, TimeZone as _};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::{ContactView, Event, Timestamp};
use crate::facts::Fact;

/// A CEL expression from a journey file, known to compile.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(
    with = "String",
    description = "A CEL expression over `trigger`, `event`, `contact` and `data`."
)]
pub struct CelExpr(Arc<Compiled>);

/// An expression with what evaluating it needs, worked out once.
#[derive(Debug)]
struct Compiled {
    source: String,
    program: Program,
    /// The quoted names in the expression: the facts it may read.
    names: Vec<String>,
    /// The durations written in it, in ms (with 0): the windows its answer
    /// can flip at ([`CelExpr::next_change`]).
    windows_ms: Vec<i64>,
}

impl PartialEq for CelExpr {
    fn eq(&self, other: &Self) -> bool {
        self.0.source == other.0.source
    }
}

impl Eq for CelExpr {}

/// Why a CEL expression does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CEL {source_text:?}: {message}")]
pub struct CelError {
    source_text: String,
    message: String,
}

impl CelExpr {
    /// Compiles `source`, refusing it if it is not valid CEL.
    pub fn new(source: impl Into<String>) -> Result<Self, CelError> {
        let source = source.into();
        let program = compile(&source)?;
        let names = quoted(&source);
        let mut windows_ms = vec![0];
        windows_ms.extend(durations_in(&source, &names));
        windows_ms.sort_unstable();
        windows_ms.dedup();
        Ok(Self(Arc::new(Compiled {
            source,
            program,
            names,
            windows_ms,
        })))
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.0.source
    }

    /// The earliest time after `now` at which the expression's answer for
    /// `contact` may change with time alone (nothing about the contact
    /// changing meanwhile), or `None` if time alone cannot change it.
    ///
    /// The answer depends on time only through `now` compared with the
    /// contact's times (its facts' and its timestamp attributes') shifted by
    /// the durations written in the expression, so it can flip only when
    /// `now` passes one of those sums; the result is the first of them after
    /// `now`, plus 1 ms so that both `<` and `<=` have flipped by then.
    pub fn next_change(&self, contact: &ContactView, now: Timestamp) -> Option<Timestamp> {
        let windows = &self.0.windows_ms;
        // Only what the expression reads can change its answer: the facts
        // it names, and the attributes whose names it mentions.
        let from_facts = contact
            .facts
            .iter()
            .filter(|(name, _)| self.0.names.contains(name))
            .flat_map(|(_, fact)| fact.crossings(windows));
        let attribute_times: Vec<Timestamp> = timestamps_in(&contact.attributes, &self.0.source);
        let from_attributes = attribute_times.iter().flat_map(|at| {
            windows
                .iter()
                .flat_map(move |w| [at.saturating_add(*w), at.saturating_sub(*w)])
        });
        from_facts
            .chain(from_attributes)
            .filter(|at| *at >= now)
            .min()
            .map(|at| at.saturating_add(1))
    }
}

/// The text of every quoted string in a CEL source.
fn quoted(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        if c != '\'' && c != '"' {
            continue;
        }
        let mut text = String::new();
        while let Some(d) = chars.next() {
            match d {
                '\\' => text.extend(chars.next()),
                d if d == c => break,
                d => text.push(d),
            }
        }
        names.push(text);
    }
    names
}

/// The durations written as `days(n)` or `duration('...')`, in ms.
fn durations_in(source: &str, quoted: &[String]) -> Vec<i64> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("days(") {
        rest = &rest[at + 5..];
        let digits: String = rest
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(n) = digits.parse::<i64>() {
            found.push(n.saturating_mul(86_400_000));
        }
    }
    // A quoted text that reads as a CEL duration is taken as one: a name
    // that happens to (a fact called '1h') only adds a harmless re-check.
    found.extend(quoted.iter().filter_map(|text| cel_duration_ms(text)));
    found
}

/// A CEL duration literal (`90h`, `1h30m`, `2.5s`, `150ms`) in ms.
fn cel_duration_ms(text: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut rest = text.trim();
    let negative = rest.starts_with('-');
    rest = rest.trim_start_matches('-');
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        rest = &rest[number.len()..];
        let value: f64 = number.parse().ok()?;
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1.0, 2)
        } else if rest.starts_with("us") || rest.starts_with("ns") {
            (0.0, 2)
        } else if rest.starts_with('h') {
            (3_600_000.0, 1)
        } else if rest.starts_with('m') {
            (60_000.0, 1)
        } else if rest.starts_with('s') {
            (1_000.0, 1)
        } else {
            return None;
        };
        rest = &rest[len..];
        total += value * unit_ms;
    }
    let ms = total as i64;
    Some(if negative { -ms } else { ms })
}

/// The values of the attributes `source` mentions that are RFC 3339 times,
/// in ms.
fn timestamps_in(attributes: &serde_json::Value, source: &str) -> Vec<Timestamp> {
    let Some(fields) = attributes.as_object() else {
        return Vec::new();
    };
    fields
        .iter()
        .filter(|(name, _)| source.contains(name.as_str()))
        .filter_map(|(_, value)| value.as_str())
        .filter_map(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|at| at.timestamp_millis())
        .collect()
}

fn compile(source: &str) -> Result<Program, CelError> {
    Program::compile(source).map_err(|errors| CelError {
        source_text: source.to_owned(),
        message: errors
            .errors
            .iter()
            .map(|error| {
                // ANTLR lists every token it would have accepted; the column
                // says more to an author than that list.
                let message = error.msg.split(" expecting ").next().unwrap_or(&error.msg);
                let message = message.replace("'<EOF>'", "end of expression");
                format!("{message} at column {}", error.pos.1 + 1)
            })
            .collect::<Vec<_>>()
            .join("; "),
    })
}

impl TryFrom<String> for CelExpr {
    type Error = CelError;

    fn try_from(source: String) -> Result<Self, Self::Error> {
        Self::new(source)
    }
}

impl From<CelExpr> for String {
    fn from(expr: CelExpr) -> Self {
        expr.0.source.clone()
    }
}

impl fmt::Display for CelExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.source)
    }
}

impl CelExpr {
    /// Evaluates the expression as a trigger filter is evaluated: `event` is
    /// both `trigger` and `event`, `contact` the contact, `data` empty. For
    /// tools that test a condition outside a journey (fuzzing, previews); the
    /// error says why it gave no bool.
    pub fn test(&self, event: &Event, contact: &ContactView) -> Result<bool, String> {
        let data = serde_json::Map::new();
        eval_bool(
            self,
            Bindings {
                trigger: event,
                event,
                contact,
                data: &data,
                now: event.received_at,
            },
        )
    }

    /// Evaluates the expression over a contact alone, as a segment's
    /// condition is: no trigger or event (both empty), `now` as given.
    pub fn test_contact(&self, contact: &ContactView, now: Timestamp) -> Result<bool, String> {
        let data = serde_json::Map::new();
        let nothing = Event {
            id: String::new(),
            source: String::new(),
            name: String::new(),
            identities: Default::default(),
            properties: serde_json::Value::Object(serde_json::Map::new()),
            occurred_at: now,
            received_at: now,
        };
        eval_bool(
            self,
            Bindings {
                trigger: &nothing,
                event: &nothing,
                contact,
                data: &data,
                now,
            },
        )
    }

    /// Evaluates the expression to a time (a CEL `timestamp`, or ms since the
    /// epoch as an int): what `wait_until_at` waits for.
    pub(crate) fn eval_time(&self, bindings: Bindings<'_>) -> Result<Timestamp, String> {
        match eval(self, bindings)? {
            Value::Timestamp(at) => Ok(at.timestamp_millis()),
            Value::Int(ms) => Ok(ms),
            Value::UInt(ms) => Ok(i64::try_from(ms).unwrap_or(i64::MAX)),
            other => Err(format!(
                "{:?} gave {}, not a timestamp",
                self.as_str(),
                other.type_of()
            )),
        }
    }
}

/// What a condition is evaluated against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bindings<'a> {
    pub trigger: &'a Event,
    pub event: &'a Event,
    pub contact: &'a ContactView,
    pub data: &'a serde_json::Map<String, serde_json::Value>,
    /// The time of the decision: `now` in the expression.
    pub now: Timestamp,
}

/// Evaluates `expr` and requires a boolean.
pub(crate) fn eval_bool(expr: &CelExpr, bindings: Bindings<'_>) -> Result<bool, String> {
    match eval(expr, bindings)? {
        Value::Bool(value) => Ok(value),
        other => Err(format!(
            "condition {:?} gave {}, not a bool",
            expr.as_str(),
            other.type_of()
        )),
    }
}

/// Evaluates `expr` to a key for one-active-per rules: a string, a number or a
/// bool, written out as text.
pub(crate) fn eval_key(expr: &CelExpr, bindings: Bindings<'_>) -> Result<String, String> {
    match eval(expr, bindings)? {
        Value::String(text) => Ok(text.as_ref().clone()),
        Value::Int(number) => Ok(number.to_string()),
        Value::UInt(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        other => Err(format!(
            "key {:?} gave {}, not a string or number",
            expr.as_str(),
            other.type_of()
        )),
    }
}

thread_local! {
    /// The standard library and Dripline's functions, built once per thread:
    /// each evaluation adds its variables in a scope of its own.
    static ROOT: Context<'static, 'static> = root_context();
}

fn root_context() -> Context<'static, 'static> {
    let mut context = Context::default();
    // None of these names is the standard library's, so none is refused;
    // were one ever, conditions calling it would fail with the reason.
    let _ = context.add_function("days", |n: i64| chrono::Duration::days(n));
    let _ = context.add_function("count_within", count_within);
    let _ = context.add_function("sum_within", sum_within);
    context
}

/// `fact.count_within(duration)`.
fn count_within(
    ftx: &FunctionContext,
    cel::extractors::This(fact): cel::extractors::This<Value>,
    window: chrono::Duration,
) -> Result<i64, ExecutionError> {
    let (fact, now) = fact_and_now(ftx, &fact)?;
    Ok(i64::try_from(fact.count_within(window.num_milliseconds(), now)).unwrap_or(i64::MAX))
}

/// `fact.sum_within(duration)`.
fn sum_within(
    ftx: &FunctionContext,
    cel::extractors::This(fact): cel::extractors::This<Value>,
    window: chrono::Duration,
) -> Result<f64, ExecutionError> {
    let (fact, now) = fact_and_now(ftx, &fact)?;
    Ok(fact.sum_within(window.num_milliseconds(), now))
}

/// The fact a window function is called on (its kept events travel in the
/// CEL map as `recent`), and `now`.
fn fact_and_now(ftx: &FunctionContext, value: &Value) -> Result<(Fact, Timestamp), ExecutionError> {
    let not_a_fact =
        || ftx.error("count_within and sum_within apply to a fact: contact.facts['name']");
    let Value::Map(map) = value else {
        return Err(not_a_fact());
    };
    let Some(Value::List(recent)) = map.map.get(&Key::String(Arc::new("recent".into()))) else {
        return Err(not_a_fact());
    };
    let recent = recent
        .iter()
        .filter_map(|pair| match pair {
            Value::List(pair) => match (pair.first(), pair.get(1)) {
                (Some(Value::Int(at)), Some(Value::Float(amount))) => Some((*at, *amount)),
                (Some(Value::Int(at)), Some(Value::Int(amount))) => Some((*at, *amount as f64)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let now = ftx
        .ptx
        .get_variable("now")
        .and_then(|v| match Value::try_from(v.as_ref()) {
            Ok(Value::Timestamp(at)) => Some(at.timestamp_millis()),
            _ => None,
        })
        .ok_or_else(|| ftx.error("`now` is not a timestamp"))?;
    Ok((
        Fact {
            recent,
            ..Fact::default()
        },
        now,
    ))
}

fn eval(expr: &CelExpr, bindings: Bindings<'_>) -> Result<Value, String> {
    let compiled = &expr.0;
    ROOT.with(|root| {
        let mut context = root.new_inner_scope();
        context.add_variable_from_value("trigger", event_value(bindings.trigger));
        context.add_variable_from_value("event", event_value(bindings.event));
        context.add_variable_from_value("contact", contact_value(bindings.contact, compiled));
        context.add_variable_from_value(
            "data",
            json_to_cel(&serde_json::Value::Object(bindings.data.clone())),
        );
        context.add_variable_from_value("now", Value::Timestamp(timestamp(bindings.now)));
        compiled
            .program
            .execute(&context)
            .map_err(|error| format!("condition {:?} failed: {error}", expr.as_str()))
    })
}

/// A time in ms as a CEL timestamp (UTC).
fn timestamp(ms: Timestamp) -> DateTime<FixedOffset> {
    let utc = FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!("0 is a valid offset"));
    utc.timestamp_millis_opt(ms).single().unwrap_or_else(|| {
        utc.timestamp_millis_opt(0)
            .single()
            .unwrap_or_else(|| unreachable!())
    })
}

fn event_value(event: &Event) -> Value {
    json_to_cel(&serde_json::to_value(event).unwrap_or(serde_json::Value::Null))
}

/// The contact as conditions see it: its facts with their times as CEL
/// timestamps, and a zero fact for each quoted name it has none of.
///
/// Only what the expression can read is converted: a field, attribute or
/// fact whose name does not occur in its text cannot be reached by it
/// (unless it indexes the contact with a computed key, `contact[...]` or
/// `attributes[...]`, which gets everything). Evaluating one segment over a
/// million contacts is mostly this conversion.
fn contact_value(contact: &ContactView, compiled: &Compiled) -> Value {
    let source = compiled.source.as_str();
    let everything = source.contains("contact[");
    let wants = |name: &str| everything || source.contains(name);
    let key = |name: &str| Key::String(Arc::new(name.to_owned()));
    let json = |value: serde_json::Value| json_to_cel(&value);
    let mut fields: HashMap<Key, Value> = HashMap::new();
    fields.insert(key("id"), Value::String(Arc::new(contact.id.clone())));
    if wants("identities") {
        fields.insert(
            key("identities"),
            json(serde_json::to_value(&contact.identities).unwrap_or_default()),
        );
    }
    if wants("attributes") {
        let all_attributes = everything || source.contains("attributes[");
        let attributes: HashMap<Key, Value> = contact
            .attributes
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(name, _)| all_attributes || source.contains(name.as_str()))
            .map(|(name, value)| (key(name), json_to_cel(value)))
            .collect();
        fields.insert(
            key("attributes"),
            Value::Map(Map {
                map: Arc::new(attributes),
            }),
        );
    }
    if wants("tags") {
        let tags = contact
            .tags
            .iter()
            .map(|t| Value::String(Arc::new(t.clone())))
            .collect();
        fields.insert(key("tags"), Value::List(Arc::new(tags)));
    }
    if wants("score") {
        fields.insert(key("score"), Value::Int(contact.score));
    }
    if let Some(zone) = contact.time_zone.as_ref().filter(|_| wants("time_zone")) {
        fields.insert(key("time_zone"), Value::String(Arc::new(zone.clone())));
    }
    if wants("consent") {
        fields.insert(
            key("consent"),
            json(serde_json::to_value(&contact.consent).unwrap_or_default()),
        );
    }
    if wants("segments") {
        let segments = contact
            .segments
            .iter()
            .map(|s| Value::String(Arc::new(s.clone())))
            .collect();
        fields.insert(key("segments"), Value::List(Arc::new(segments)));
    }
    if wants("facts") {
        let all_facts = everything || (source.contains("facts[") && compiled.names.is_empty());
        let mut facts: HashMap<Key, Value> = contact
            .facts
            .iter()
            .filter(|(name, _)| all_facts || source.contains(name.as_str()))
            .map(|(name, fact)| (key(name), fact_value(fact)))
            .collect();
        let zero = Fact::default();
        for name in &compiled.names {
            facts.entry(key(name)).or_insert_with(|| fact_value(&zero));
        }
        fields.insert(
            key("facts"),
            Value::Map(Map {
                map: Arc::new(facts),
            }),
        );
    }
    Value::Map(Map {
        map: Arc::new(fields),
    })
}

fn fact_value(fact: &Fact) -> Value {
    let key = |name: &str| Key::String(Arc::new(name.to_owned()));
    let recent = fact
        .recent
        .iter()
        .map(|(at, amount)| Value::List(Arc::new(vec![Value::Int(*at), Value::Float(*amount)])))
        .collect();
    let fields = HashMap::from([
        (
            key("count"),
            Value::Int(i64::try_from(fact.count).unwrap_or(i64::MAX)),
        ),
        (key("first"), Value::Timestamp(timestamp(fact.first))),
        (key("last"), Value::Timestamp(timestamp(fact.last))),
        (key("recent"), Value::List(Arc::new(recent))),
    ]);
    Value::Map(Map {
        map: Arc::new(fields),
    })
}

/// Converts JSON to CEL, with whole numbers as CEL `int` so that
/// `event.properties.total > 100` compares as the author expects.
fn json_to_cel(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(flag) => Value::Bool(*flag),
        serde_json::Value::Number(number) => {
            if let Some(int) = number.as_i64() {
                Value::Int(int)
            } else if let Some(uint) = number.as_u64() {
                Value::UInt(uint)
            } else {
                Value::Float(number.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(text) => Value::String(Arc::new(text.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(json_to_cel).collect()))
        }
        serde_json::Value::Object(fields) => {
            let map: HashMap<Key, Value> = fields
                .iter()
                .map(|(name, value)| (Key::String(Arc::new(name.clone())), json_to_cel(value)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn checkout() -> Event {
        Event {
            id: "evt-1".into(),
            source: "shopify".into(),
            name: "checkout.created".into(),
            identities: crate::event::Identities {
                email: Some("li@example.com".into()),
                ..Default::default()
            },
            properties: json!({"token": "tok-9", "total": 250, "items": [{"category": "shirts"}]}),
            occurred_at: 1,
            received_at: 2,
        }
    }

    #[test]
    fn conditions_see_trigger_event_contact_and_data() {
        let trigger = checkout();
        let mut contact = ContactView::new("c-1");
        contact.tags.insert("vip".into());
        contact.score = 7;
        let data = serde_json::Map::from_iter([("step".to_owned(), json!("a"))]);
        let bindings = Bindings {
            trigger: &trigger,
            event: &trigger,
            contact: &contact,
            data: &data,
            now: 0,
        };
        for source in [
            "trigger.properties.total > 200",
            "event.properties.items[0].category == 'shirts'",
            "'vip' in contact.tags && contact.score >= 5",
            "data.step == 'a'",
            "has(trigger.identities.email) && !has(trigger.identities.phone)",
        ] {
            assert!(
                eval_bool(&CelExpr::new(source).unwrap(), bindings).unwrap(),
                "{source}"
            );
        }
        let key = CelExpr::new("trigger.properties.token").unwrap();
        assert_eq!(eval_key(&key, bindings).unwrap(), "tok-9");
    }

    #[test]
    fn a_condition_that_is_not_a_bool_is_an_error() {
        let trigger = checkout();
        let contact = ContactView::new("c-1");
        let data = serde_json::Map::new();
        let bindings = Bindings {
            trigger: &trigger,
            event: &trigger,
            contact: &contact,
            data: &data,
            now: 0,
        };
        let error =
            eval_bool(&CelExpr::new("trigger.properties.total").unwrap(), bindings).unwrap_err();
        assert!(error.contains("not a bool"), "{error}");
    }

    const DAY: i64 = 86_400_000;

    fn with_orders(times: &[i64]) -> ContactView {
        let mut contact = ContactView::new("c-1");
        for at in times {
            let mut order = checkout();
            order.name = "order.paid".into();
            order.occurred_at = *at;
            crate::facts::record(&mut contact.facts, &order);
        }
        contact
    }

    #[test]
    fn conditions_read_facts_against_now() {
        let contact = with_orders(&[10 * DAY, 50 * DAY, 100 * DAY]);
        let now = 120 * DAY;
        let holds = |source: &str| CelExpr::new(source).unwrap().test_contact(&contact, now);
        assert_eq!(holds("contact.facts['order.paid'].count == 3"), Ok(true));
        assert_eq!(
            holds("contact.facts['order.paid'].last < now - days(90)"),
            Ok(false)
        );
        assert_eq!(
            holds("contact.facts['order.paid'].last < now - duration('24h')"),
            Ok(true)
        );
        assert_eq!(
            holds("contact.facts['order.paid'].count_within(days(80)) == 2"),
            Ok(true)
        );
        assert_eq!(
            holds("contact.facts['order.paid'].sum_within(days(365)) == 750.0"),
            Ok(true)
        );
        // A name the contact has no event of reads as a zero fact.
        assert_eq!(
            holds(
                "contact.facts['login'].count == 0 && contact.facts['login'].last < now - days(30)"
            ),
            Ok(true)
        );
    }

    #[test]
    fn the_next_change_is_when_the_last_event_grows_as_old_as_the_window() {
        let contact = with_orders(&[10 * DAY]);
        let dormant = CelExpr::new("contact.facts['order.paid'].last < now - days(90)").unwrap();
        let at = dormant.next_change(&contact, 20 * DAY).unwrap();
        assert_eq!(at, 100 * DAY + 1);
        assert_eq!(dormant.test_contact(&contact, at - 2), Ok(false));
        assert_eq!(dormant.test_contact(&contact, at), Ok(true));
        // Once it holds, time alone changes nothing more.
        assert_eq!(dormant.next_change(&contact, at), None);
        let plain = CelExpr::new("'vip' in contact.tags").unwrap();
        assert_eq!(plain.next_change(&contact, 20 * DAY), None);
    }

    #[test]
    fn expressions_that_do_not_compile_are_refused() {
        let error = CelExpr::new("trigger.properties.total >").unwrap_err();
        assert!(error.to_string().starts_with("invalid CEL"), "{error}");
    }
}
