//! The `score` step: adds points to the contact's lead score (SCENARIOS.md 2
//! and 5: opens, clicks, visits and downloads add up; at a threshold the lead
//! goes to sales). Config, from the journey file:
//!
//! ```toml
//! config = { points = 5 }                        # add 5 points, go on
//! config = { points = 1, threshold = 5 }         # and take the `qualified` branch at 5
//! ```
//!
//! With a `threshold`, the step answers `branch("qualified")` when this step's
//! points carry the score from below the threshold to at or above it, so a lead
//! is handed to sales once, not on every point after.

use serde::Deserialize;

/// The step's config as written in the journey file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Points to add; negative to subtract.
    pub points: i64,
    /// The score at which the lead is qualified.
    #[serde(default)]
    pub threshold: Option<i64>,
}

/// Parses and checks a config.
pub fn parse(config_json: &str) -> Result<Config, String> {
    let config: Config = serde_json::from_str(config_json).map_err(|e| format!("config: {e}"))?;
    if config.points == 0 {
        return Err("config: `points` must not be 0".into());
    }
    Ok(config)
}

/// Whether going from `before` to `after` crosses the threshold upwards.
pub fn crosses(threshold: Option<i64>, before: i64, after: i64) -> bool {
    threshold.is_some_and(|t| before < t && after >= t)
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "step", path: "../../../wit" });

    use dripline::journey::contacts;
    use exports::dripline::journey::step_handler::{Guest, Outcome, StepContext, StepError};

    struct Score;

    impl Guest for Score {
        fn validate(config: String) -> Result<(), StepError> {
            super::parse(&config)
                .map(|_| ())
                .map_err(StepError::InvalidConfig)
        }

        fn run(context: StepContext) -> Result<Outcome, StepError> {
            let config = super::parse(&context.config).map_err(StepError::InvalidConfig)?;
            let after = contacts::add_score(config.points)
                .map_err(|e| StepError::Other(format!("add-score: {e:?}")))?;
            let before = after - config.points;
            if super::crosses(config.threshold, before, after) {
                return Ok(Outcome::Branch("qualified".into()));
            }
            Ok(Outcome::Continue)
        }
    }

    export!(Score);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_required_and_not_zero() {
        assert!(parse("{}").unwrap_err().contains("points"));
        assert!(parse(r#"{"points":0}"#).is_err());
        assert_eq!(parse(r#"{"points":5}"#).unwrap().points, 5);
    }

    #[test]
    fn the_threshold_is_crossed_once_on_the_way_up() {
        assert!(crosses(Some(5), 4, 5));
        assert!(!crosses(Some(5), 5, 6));
        assert!(!crosses(Some(5), 6, 4));
        assert!(!crosses(None, 0, 100));
    }
}
