//! The `untag` step: removes tags from the contact the journey runs for, so a
//! journey reads as what it does (`uses = "untag"`). Config:
//!
//! ```toml
//! config = { tag = "cart-abandoner" }             # remove one tag
//! config = { tags = ["dormant", "deep-dormant"] } # remove several
//! ```
//!
//! Removing a tag the contact lacks is not an error.

use serde::Deserialize;
use tag_rules::validate_tag;

/// The step's config as written in the journey file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// One tag to remove.
    #[serde(default)]
    pub tag: Option<String>,
    /// Tags to remove.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The tags a config asks to remove, checked by the same rules as `tag`'s.
pub fn plan(config_json: &str) -> Result<Vec<String>, String> {
    let config: Config = serde_json::from_str(config_json).map_err(|e| format!("config: {e}"))?;
    let mut tags = config.tags;
    tags.extend(config.tag);
    if tags.is_empty() {
        return Err("config: give `tag` or `tags`".into());
    }
    for tag in &tags {
        validate_tag(tag)?;
    }
    Ok(tags)
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "step", path: "../../../wit" });

    use dripline::journey::contacts;
    use exports::dripline::journey::step_handler::{Guest, Outcome, StepContext, StepError};

    struct Untag;

    impl Guest for Untag {
        fn validate(config: String) -> Result<(), StepError> {
            super::plan(&config)
                .map(|_| ())
                .map_err(StepError::InvalidConfig)
        }

        fn run(context: StepContext) -> Result<Outcome, StepError> {
            for tag in super::plan(&context.config).map_err(StepError::InvalidConfig)? {
                contacts::remove_tag(&tag)
                    .map_err(|e| StepError::Other(format!("remove-tag: {e:?}")))?;
            }
            Ok(Outcome::Continue)
        }
    }

    export!(Untag);
}

#[cfg(test)]
mod tests {
    use super::plan;

    #[test]
    fn one_tag_and_a_list_are_both_removed() {
        assert_eq!(
            plan(r#"{"tag":"a","tags":["b","c"]}"#),
            Ok(vec!["b".into(), "c".into(), "a".into()])
        );
    }

    #[test]
    fn an_empty_config_is_refused() {
        assert!(plan("{}").unwrap_err().contains("give `tag`"));
    }

    #[test]
    fn a_tag_that_tag_would_refuse_is_refused_here_too() {
        assert!(plan(r#"{"tag":" "}"#).unwrap_err().contains("empty"));
    }
}
