//! The `tag` step: adds tags to (or removes them from) the contact the journey
//! runs for. Config, from the journey file:
//!
//! ```toml
//! config = { tag = "high-intent" }                  # add one tag
//! config = { add = ["vip"], remove = ["dormant"] }  # add and remove several
//! ```
//!
//! The logic lives in [`plan`], a plain function tested natively; the WIT glue
//! below only carries its result to the host.

use serde::Deserialize;

/// The rules every tag must meet, shared with `untag` (see `tag-rules`).
pub use tag_rules::validate_tag;

/// The step's config as written in the journey file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// One tag to add.
    #[serde(default)]
    pub tag: Option<String>,
    /// Tags to add.
    #[serde(default)]
    pub add: Vec<String>,
    /// Tags to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// The tag changes a config asks for: (tags to add, tags to remove).
pub fn plan(config_json: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let config: Config = serde_json::from_str(config_json).map_err(|e| format!("config: {e}"))?;
    let mut add = config.add;
    add.extend(config.tag);
    if add.is_empty() && config.remove.is_empty() {
        return Err("config: give `tag`, `add` or `remove`".into());
    }
    for tag in add.iter().chain(&config.remove) {
        validate_tag(tag)?;
    }
    Ok((add, config.remove))
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "step", path: "../../../wit" });

    use dripline::journey::contacts;
    use exports::dripline::journey::step_handler::{Guest, Outcome, StepContext, StepError};

    struct Tag;

    impl Guest for Tag {
        fn validate(config: String) -> Result<(), StepError> {
            super::plan(&config)
                .map(|_| ())
                .map_err(StepError::InvalidConfig)
        }

        fn run(context: StepContext) -> Result<Outcome, StepError> {
            let (add, remove) = super::plan(&context.config).map_err(StepError::InvalidConfig)?;
            for tag in &add {
                contacts::add_tag(tag).map_err(|e| StepError::Other(format!("add-tag: {e:?}")))?;
            }
            for tag in &remove {
                contacts::remove_tag(tag)
                    .map_err(|e| StepError::Other(format!("remove-tag: {e:?}")))?;
            }
            Ok(Outcome::Continue)
        }
    }

    export!(Tag);
}

#[cfg(test)]
mod tests {
    use super::plan;

    #[test]
    fn a_single_tag_is_added() {
        assert_eq!(plan(r#"{"tag":"vip"}"#), Ok((vec!["vip".into()], vec![])));
    }

    #[test]
    fn add_and_remove_lists_are_both_applied() {
        let (add, remove) = plan(r#"{"add":["a","b"],"remove":["c"]}"#).unwrap();
        assert_eq!(add, ["a", "b"]);
        assert_eq!(remove, ["c"]);
    }

    #[test]
    fn an_empty_config_is_refused() {
        assert!(plan("{}").unwrap_err().contains("give `tag`"));
    }

    #[test]
    fn an_unknown_field_is_refused_by_name() {
        assert!(plan(r#"{"tags":"x"}"#).unwrap_err().contains("tags"));
    }

    #[test]
    fn a_control_character_in_a_tag_is_refused() {
        assert!(plan("{\"tag\":\"a\\nb\"}").is_err());
    }
}
