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
//! - `data`: the enrollment's data (empty before enrollment).
//!
//! Absent optional fields are left out rather than null, so `has(x.y)` tells
//! whether they are there.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::{Context, Program, Value};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::{ContactView, Event};

/// A CEL expression from a journey file, known to compile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(
    with = "String",
    description = "A CEL expression over `trigger`, `event`, `contact` and `data`."
)]
pub struct CelExpr(String);

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
        compile(&source)?;
        Ok(Self(source))
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
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
        expr.0
    }
}

impl fmt::Display for CelExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
            },
        )
    }
}

/// What a condition is evaluated against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bindings<'a> {
    pub trigger: &'a Event,
    pub event: &'a Event,
    pub contact: &'a ContactView,
    pub data: &'a serde_json::Map<String, serde_json::Value>,
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

fn eval(expr: &CelExpr, bindings: Bindings<'_>) -> Result<Value, String> {
    let program = compile(expr.as_str()).map_err(|error| error.to_string())?;
    let mut context = Context::default();
    context.add_variable_from_value("trigger", event_value(bindings.trigger));
    context.add_variable_from_value("event", event_value(bindings.event));
    context.add_variable_from_value("contact", contact_value(bindings.contact));
    context.add_variable_from_value(
        "data",
        json_to_cel(&serde_json::Value::Object(bindings.data.clone())),
    );
    program
        .execute(&context)
        .map_err(|error| format!("condition {:?} failed: {error}", expr.as_str()))
}

fn event_value(event: &Event) -> Value {
    json_to_cel(&serde_json::to_value(event).unwrap_or(serde_json::Value::Null))
}

fn contact_value(contact: &ContactView) -> Value {
    json_to_cel(&serde_json::to_value(contact).unwrap_or(serde_json::Value::Null))
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
        };
        let error =
            eval_bool(&CelExpr::new("trigger.properties.total").unwrap(), bindings).unwrap_err();
        assert!(error.contains("not a bool"), "{error}");
    }

    #[test]
    fn expressions_that_do_not_compile_are_refused() {
        let error = CelExpr::new("trigger.properties.total >").unwrap_err();
        assert!(error.to_string().starts_with("invalid CEL"), "{error}");
    }
}
