//! The `set-attribute` step: sets attributes on the contact, either to fixed
//! values or to values the trigger event or the enrollment's data carry, so a
//! journey can remember what it learned (`tier`, `last_checkout_total`).
//!
//! ```toml
//! config = { set = { tier = "gold", vip = true } }
//! config = { copy = { last_checkout_total = "trigger.properties.total_price" } }
//! ```
//!
//! A `copy` path starts with `trigger.` (the event that enrolled the contact) or
//! `data.` (what earlier steps stored); a path that names nothing in this
//! contact's event is skipped with a warning rather than written as null, so a
//! value the contact had is not erased by an event that lacks it.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Attribute names are what a marketer filters on; a long or odd one is a
/// journey-file mistake worth reporting at `dripline validate`.
const MAX_NAME: usize = 64;

/// The step's config as written in the journey file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Attributes set to fixed JSON values.
    #[serde(default)]
    pub set: BTreeMap<String, Value>,
    /// Attributes set from a path into the trigger event or the data.
    #[serde(default)]
    pub copy: BTreeMap<String, String>,
}

/// Reads and checks a config.
pub fn parse(config_json: &str) -> Result<Config, String> {
    let config: Config = serde_json::from_str(config_json).map_err(|e| format!("config: {e}"))?;
    if config.set.is_empty() && config.copy.is_empty() {
        return Err("config: give `set` or `copy`".into());
    }
    for name in config.set.keys().chain(config.copy.keys()) {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(format!(
                "config: attribute {name:?} must be 1-{MAX_NAME} letters, digits, `_` or `-`"
            ));
        }
    }
    for (name, path) in &config.copy {
        if !(path.starts_with("trigger.") || path.starts_with("data.")) {
            return Err(format!(
                "config: copy.{name}: {path:?} must start with `trigger.` or `data.`"
            ));
        }
    }
    Ok(config)
}

/// The (attribute, value) pairs to write for one contact, and the copy paths
/// that found nothing. `trigger` is the trigger event as JSON (with
/// `properties` parsed), `data` the enrollment's data.
pub fn plan(config: &Config, trigger: &Value, data: &Value) -> (Vec<(String, Value)>, Vec<String>) {
    let mut writes: Vec<(String, Value)> = config
        .set
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let mut missing = Vec::new();
    for (name, path) in &config.copy {
        let (root, rest) = path.split_once('.').unwrap_or((path, ""));
        let source = if root == "trigger" { trigger } else { data };
        let pointer = format!("/{}", rest.replace('.', "/"));
        match source.pointer(&pointer) {
            Some(value) if !value.is_null() => writes.push((name.clone(), value.clone())),
            _ => missing.push(path.clone()),
        }
    }
    (writes, missing)
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "step", path: "../../../wit" });

    use dripline::journey::{contacts, log};
    use exports::dripline::journey::step_handler::{Guest, Outcome, StepContext, StepError};
    use serde_json::{Value, json};

    struct SetAttribute;

    impl Guest for SetAttribute {
        fn validate(config: String) -> Result<(), StepError> {
            super::parse(&config)
                .map(|_| ())
                .map_err(StepError::InvalidConfig)
        }

        fn run(context: StepContext) -> Result<Outcome, StepError> {
            let config = super::parse(&context.config).map_err(StepError::InvalidConfig)?;
            let event = &context.trigger_event;
            let trigger = json!({
                "id": event.id,
                "source": event.source,
                "name": event.name,
                "properties": serde_json::from_str::<Value>(&event.properties).unwrap_or(Value::Null),
            });
            let data = serde_json::from_str(&context.data).unwrap_or(Value::Null);
            let (writes, missing) = super::plan(&config, &trigger, &data);
            for path in missing {
                log::log(log::Level::Warn, &format!("{path} is absent: not copied"));
            }
            for (name, value) in writes {
                contacts::set_attribute(&name, &value.to_string())
                    .map_err(|e| StepError::Other(format!("set-attribute {name}: {e:?}")))?;
            }
            Ok(Outcome::Continue)
        }
    }

    export!(SetAttribute);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fixed_values_and_copied_values_are_both_written() {
        let config = parse(
            r#"{"set":{"tier":"gold"},"copy":{"total":"trigger.properties.total_price","seen":"data.seen"}}"#,
        )
        .unwrap();
        let trigger = json!({ "properties": { "total_price": "398.00" } });
        let (writes, missing) = plan(&config, &trigger, &json!({ "seen": 2 }));
        assert_eq!(
            writes,
            [
                ("tier".to_string(), json!("gold")),
                ("seen".to_string(), json!(2)),
                ("total".to_string(), json!("398.00")),
            ]
        );
        assert!(missing.is_empty());
    }

    #[test]
    fn a_path_that_names_nothing_is_skipped_not_written_as_null() {
        let config = parse(r#"{"copy":{"city":"trigger.properties.city"}}"#).unwrap();
        let (writes, missing) = plan(&config, &json!({ "properties": {} }), &json!({}));
        assert!(writes.is_empty());
        assert_eq!(missing, ["trigger.properties.city"]);
    }

    #[test]
    fn a_copy_from_outside_the_trigger_or_data_is_refused() {
        let e = parse(r#"{"copy":{"x":"contact.email"}}"#).unwrap_err();
        assert!(e.contains("copy.x"), "{e}");
    }

    #[test]
    fn an_empty_config_and_an_odd_name_are_refused() {
        assert!(parse("{}").unwrap_err().contains("give `set`"));
        assert!(
            parse(r#"{"set":{"a b":1}}"#)
                .unwrap_err()
                .contains("\"a b\"")
        );
    }
}
