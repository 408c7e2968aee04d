//! The `webhook` step: posts a JSON document about the contact to another
//! system, such as a task for the assigned sales rep in a CRM. Config, from
//! the journey file:
//!
//! ```toml
//! [[steps]]
//! id = "notify-sales"
//! uses = "webhook"
//! [steps.config]
//! url = "https://crm.example.com/api/tasks"
//! allowed_hosts = ["crm.example.com"]   # the journey's grant; or channels.toml's
//! body = { task = "Follow up: {{ contact.email }}", score = "{{ contact.score }}" }
//! ```
//!
//! Strings in `body` may hold `{{ path }}` placeholders over `contact` (`id`,
//! `email`, `phone`, `score`, `tags`, `attributes`), `trigger` (`id`, `name`,
//! `source`, `properties`, `occurred_at`), `data` (the enrollment's data),
//! `journey`, `step` and `enrollment`. A string that is one placeholder alone
//! becomes the value itself (a number stays a number; a missing value is
//! `null`); placeholders inside longer text are replaced by the value's text
//! (a missing value by nothing). Without `body` the step posts the whole scope.
//!
//! The component has no network: it renders the body and asks the host to
//! queue the post (WIT `http-out`), which refuses an ungranted host and
//! delivers it after the step completes, signed, at least once. The rendering
//! lives in [`render`], a plain function tested natively.

use serde::Deserialize;
use serde_json::{Map, Value};

/// The step's config as written in the journey file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to post.
    pub url: String,
    /// Hosts this step may reach; read by the host, not by the component.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The body's template; the whole scope when absent.
    #[serde(default)]
    pub body: Option<Value>,
}

/// Reads and checks a config.
pub fn parse_config(config_json: &str) -> Result<Config, String> {
    let config: Config = serde_json::from_str(config_json).map_err(|e| format!("config: {e}"))?;
    if !(config.url.starts_with("https://") || config.url.starts_with("http://")) {
        return Err(format!(
            "config: url {:?} must start with https:// or http://",
            config.url
        ));
    }
    if let Some(body) = &config.body {
        check_placeholders(body)?;
    }
    Ok(config)
}

/// Renders `template` (the config's `body`, or the scope when `None`) against
/// `scope`.
pub fn render(template: Option<&Value>, scope: &Value) -> Value {
    match template {
        None => scope.clone(),
        Some(template) => render_value(template, scope),
    }
}

fn render_value(template: &Value, scope: &Value) -> Value {
    match template {
        Value::String(text) => render_string(text, scope),
        Value::Array(items) => Value::Array(items.iter().map(|v| render_value(v, scope)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), render_value(v, scope)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn render_string(text: &str, scope: &Value) -> Value {
    let pieces = split(text);
    if let [Piece::Placeholder(path)] = pieces.as_slice() {
        return lookup(scope, path).cloned().unwrap_or(Value::Null);
    }
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Placeholder(path) => match lookup(scope, path) {
                Some(Value::String(s)) => out.push_str(s),
                Some(Value::Null) | None => {}
                Some(other) => out.push_str(&other.to_string()),
            },
        }
    }
    Value::String(out)
}

enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

fn split(mut text: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    while let Some(start) = text.find("{{") {
        let Some(len) = text[start..].find("}}") else {
            break;
        };
        if start > 0 {
            pieces.push(Piece::Text(&text[..start]));
        }
        pieces.push(Piece::Placeholder(text[start + 2..start + len].trim()));
        text = &text[start + len + 2..];
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

fn lookup<'a>(scope: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(scope, |value, key| match value {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

const ROOTS: &[&str] = &[
    "contact",
    "trigger",
    "data",
    "journey",
    "step",
    "enrollment",
];

/// A placeholder outside the scope is a typo worth reporting at validation.
fn check_placeholders(template: &Value) -> Result<(), String> {
    match template {
        Value::String(text) => {
            for piece in split(text) {
                if let Piece::Placeholder(path) = piece {
                    let root = path.split('.').next().unwrap_or_default();
                    if !ROOTS.contains(&root) {
                        return Err(format!(
                            "config: body: placeholder {{{{ {path} }}}} must start with one of {}",
                            ROOTS.join(", ")
                        ));
                    }
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_placeholders),
        Value::Object(map) => map.values().try_for_each(check_placeholders),
        _ => Ok(()),
    }
}

/// The parts of a step's context the scope is made of, as plain data.
pub struct Context<'a> {
    /// The journey's id.
    pub journey: &'a str,
    /// The step's id.
    pub step: &'a str,
    /// The enrollment's id.
    pub enrollment: &'a str,
    /// The contact: id, email, phone, score, tags, attributes.
    pub contact: Value,
    /// The trigger event.
    pub trigger: Value,
    /// The enrollment's data (JSON text).
    pub data: &'a str,
}

/// The scope placeholders are looked up in.
pub fn scope(context: Context<'_>) -> Value {
    let mut scope = Map::new();
    scope.insert("journey".into(), context.journey.into());
    scope.insert("step".into(), context.step.into());
    scope.insert("enrollment".into(), context.enrollment.into());
    scope.insert("contact".into(), context.contact);
    scope.insert("trigger".into(), context.trigger);
    scope.insert(
        "data".into(),
        serde_json::from_str(context.data).unwrap_or(Value::Object(Map::new())),
    );
    Value::Object(scope)
}

/// Parses JSON text, or an empty object if it is not JSON.
pub fn json_or_empty(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Object(Map::new()))
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "step", path: "../../../wit" });

    use dripline::journey::http_out::{self, Outbound};
    use exports::dripline::journey::step_handler::{Guest, Outcome, StepContext, StepError};
    use serde_json::json;

    struct Webhook;

    impl Guest for Webhook {
        fn validate(config: String) -> Result<(), StepError> {
            super::parse_config(&config)
                .map(drop)
                .map_err(StepError::InvalidConfig)
        }

        fn run(context: StepContext) -> Result<Outcome, StepError> {
            let config = super::parse_config(&context.config).map_err(StepError::InvalidConfig)?;
            let c = &context.contact;
            let event = &context.trigger_event;
            let scope = super::scope(super::Context {
                journey: &context.journey,
                step: &context.step_id,
                enrollment: &context.enrollment_id,
                contact: json!({
                    "id": c.id,
                    "email": c.identities.email,
                    "phone": c.identities.phone,
                    "score": c.score,
                    "tags": c.tags,
                    "attributes": super::json_or_empty(&c.attributes),
                }),
                trigger: json!({
                    "id": event.id,
                    "name": event.name,
                    "source": event.source,
                    "properties": super::json_or_empty(&event.properties),
                    "occurred_at": event.occurred_at,
                }),
                data: &context.data,
            });
            let body = super::render(config.body.as_ref(), &scope);
            http_out::post(&Outbound {
                url: config.url,
                body: body.to_string(),
            })
            .map_err(|e| StepError::Other(format!("http-out.post: {e:?}")))?;
            Ok(Outcome::Continue)
        }
    }

    export!(Webhook);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn scope_of_li() -> Value {
        scope(Context {
            journey: "lead-nurture",
            step: "notify-sales",
            enrollment: "e1",
            contact: json!({ "id": "c1", "email": "li@example.com", "score": 7,
                             "attributes": { "sales_rep": "wang" } }),
            trigger: json!({ "name": "form.submitted", "properties": { "form": "wp" } }),
            data: "{\"plan\":\"pro\"}",
        })
    }

    #[test]
    fn a_lone_placeholder_keeps_the_values_type_and_text_gets_its_text() {
        let template = json!({
            "task": "Follow up: {{ contact.email }} ({{data.plan}})",
            "score": "{{ contact.score }}",
            "assignee": "{{ contact.attributes.sales_rep }}",
            "missing": "{{ contact.phone }}",
            "list": ["{{ trigger.properties.form }}", 3],
        });
        assert_eq!(
            render(Some(&template), &scope_of_li()),
            json!({
                "task": "Follow up: li@example.com (pro)",
                "score": 7,
                "assignee": "wang",
                "missing": null,
                "list": ["wp", 3],
            })
        );
    }

    #[test]
    fn without_a_body_the_whole_scope_is_posted() {
        let body = render(None, &scope_of_li());
        assert_eq!(body["contact"]["email"], "li@example.com");
        assert_eq!(body["journey"], "lead-nurture");
    }

    #[test]
    fn a_config_needs_an_http_url_and_known_placeholders() {
        assert!(parse_config(r#"{"url":"https://crm.example.com/t"}"#).is_ok());
        assert!(
            parse_config(r#"{"url":"ftp://x"}"#)
                .unwrap_err()
                .contains("url")
        );
        let err =
            parse_config(r#"{"url":"https://x","body":{"a":"{{ secrets.key }}"}}"#).unwrap_err();
        assert!(err.contains("secrets.key"), "{err}");
        assert!(parse_config(r#"{"url":"https://x","method":"GET"}"#).is_err());
    }

    #[test]
    fn the_shipped_journeys_webhook_steps_have_valid_configs() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../journeys");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let doc: Value = serde_json::to_value(text.parse::<toml::Table>().unwrap()).unwrap();
            for step in doc["steps"].as_array().into_iter().flatten() {
                if step["uses"] == "webhook" {
                    parse_config(&step["config"].to_string()).unwrap();
                    checked += 1;
                }
            }
        }
        assert!(checked > 0, "no shipped journey uses the webhook step");
    }
}
