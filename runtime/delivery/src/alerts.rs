//! Failure-rate alerts: over a threshold of a journey's sends or step runs
//! failing within a window (with a minimum sample), an error line, a metric,
//! and a post to the operator's webhook, once per journey and window. The
//! dispatcher keeps one for deliveries and the runner one for step runs; both
//! raise through [`Alerts::raise`].

use std::collections::HashMap;
use std::time::Duration;

use dripline_store::Millis;
use serde_json::json;

use crate::channels::AlertConfig;
use crate::channels::http::HttpConfig;

/// What is failing: a journey's deliveries, or its step runs (a template
/// missing a value, a broken config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failing {
    /// Delivery attempts through channels (the dispatcher's).
    Sends,
    /// Step component runs (the runner's).
    StepRuns,
}

/// An alert to raise: a journey's failure rate in a window passed the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// What is failing.
    pub failing: Failing,
    /// The journey.
    pub journey: String,
    /// Delivery attempts in the window so far.
    pub sends: u64,
    /// Failed attempts among them (transient ones included: an outage shows
    /// before the retries run out).
    pub failures: u64,
    /// failures / sends.
    pub rate: f64,
    /// Where the window starts.
    pub window_start_ms: Millis,
}

/// Failure rates per journey over fixed windows (aligned to the window's
/// length), raising at most one alert per journey and window. Kept in memory:
/// after a restart the window starts over, which can only delay an alert.
pub struct Alerts {
    failing: Failing,
    config: AlertConfig,
    http: HttpConfig,
    windows: HashMap<String, Window>,
}

#[derive(Debug, Default)]
struct Window {
    start_ms: Millis,
    sends: u64,
    failures: u64,
    fired: bool,
}

impl Alerts {
    /// Alerts on what is `failing`, by `config`.
    pub fn new(failing: Failing, config: AlertConfig) -> Self {
        Self {
            failing,
            config,
            http: HttpConfig::new(Duration::from_secs(5)),
            windows: HashMap::new(),
        }
    }

    /// Counts one attempt of `journey` at `now`; returns the alert to raise, if
    /// this attempt tips the window over the threshold.
    pub fn record(&mut self, journey: &str, failed: bool, now: Millis) -> Option<Alert> {
        let length = self.config.window.as_offset().max(1);
        let start = now - now.rem_euclid(length);
        let window = self.windows.entry(journey.to_string()).or_default();
        if window.start_ms != start {
            *window = Window {
                start_ms: start,
                ..Window::default()
            };
        }
        window.sends += 1;
        window.failures += u64::from(failed);
        let rate = window.failures as f64 / window.sends as f64;
        if window.fired || window.sends < self.config.min_sample || rate <= self.config.threshold {
            return None;
        }
        window.fired = true;
        Some(Alert {
            failing: self.failing,
            journey: journey.to_string(),
            sends: window.sends,
            failures: window.failures,
            rate,
            window_start_ms: start,
        })
    }

    /// Raises `alert`: an error line, and a post to `[alerts] webhook` if the
    /// deployment configures one (under an idempotency key per journey and
    /// window, so a receiver sees it once). The caller counts
    /// [`Alert::metric`] with its own writes.
    pub fn raise(&self, alert: &Alert) {
        let what = match alert.failing {
            Failing::Sends => "sends",
            Failing::StepRuns => "step runs",
        };
        tracing::error!(
            journey = %alert.journey,
            failed = alert.failures,
            attempts = alert.sends,
            "ALERT: {:.1}% of journey {}'s {what} failed since {} (threshold {:.1}%)",
            alert.rate * 100.0,
            alert.journey,
            alert.window_start_ms,
            self.config.threshold * 100.0
        );
        let body = json!({
            "alert": match alert.failing {
                Failing::Sends => "send-failure-rate",
                Failing::StepRuns => "step-failure-rate",
            },
            "journey": alert.journey,
            "sends": alert.sends,
            "failures": alert.failures,
            "rate": alert.rate,
            "threshold": self.config.threshold,
            "window_start": alert.window_start_ms,
            "window_ms": self.config.window.as_millis(),
        });
        let key = format!(
            "{}/{}/{}",
            alert.metric(),
            alert.journey,
            alert.window_start_ms
        );
        self.post(&key, &body);
    }

    /// Raises the alert that an input was set aside as a dead letter (named
    /// `name`, as `dripline deadletters list` shows it): an error line, and a
    /// post to `[alerts] webhook` under an idempotency key per dead letter.
    /// Every dead letter alerts: each is an input that needs a person.
    pub fn raise_dead_letter(&self, name: &str, problem: &str, attempts: u32) {
        tracing::error!(
            dead_letter = %name,
            attempts,
            "ALERT: an input was set aside after {attempts} attempts: {problem} (see `dripline deadletters show {name}`)"
        );
        let body = json!({
            "alert": "dead-letter",
            "dead_letter": name,
            "problem": problem,
            "attempts": attempts,
        });
        self.post(&format!("dead-letter/{name}"), &body);
    }

    /// Posts an alert to `[alerts] webhook`, if the deployment configures
    /// one, under `key` so that a receiver sees each alert once.
    fn post(&self, key: &str, body: &serde_json::Value) {
        let Some(url) = &self.config.webhook else {
            return;
        };
        if let Err(e) = self.http.post(
            "the alert webhook",
            url,
            "application/json",
            &[("Idempotency-Key", key)],
            body.to_string().as_bytes(),
        ) {
            tracing::error!("the alert could not be posted: {e}");
        }
    }
}

impl Alert {
    /// The metric the alert counts: `alerts.<journey>` for sends,
    /// `alerts.<journey>.steps` for step runs.
    pub fn metric(&self) -> String {
        match self.failing {
            Failing::Sends => format!("alerts.{}", self.journey),
            Failing::StepRuns => format!("alerts.{}.steps", self.journey),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerts() -> Alerts {
        Alerts::new(
            Failing::Sends,
            AlertConfig {
                threshold: 0.05,
                window: dripline_engine::Duration::from_millis(1_000),
                min_sample: 20,
                webhook: None,
            },
        )
    }

    #[test]
    fn no_alert_below_the_minimum_sample_even_if_everything_fails() {
        let mut alerts = alerts();
        assert!((0..19).all(|_| alerts.record("j", true, 0).is_none()));
    }

    #[test]
    fn an_alert_fires_once_per_window_when_over_five_percent_fail() {
        let mut alerts = alerts();
        let fired: Vec<bool> = (0..40)
            .map(|i| alerts.record("j", i % 10 == 0, 10).is_some())
            .collect();
        // 2 failures in 20 (10%) tips it at the 20th attempt; never again.
        assert_eq!(fired.iter().filter(|f| **f).count(), 1);
        assert!(fired[19]);
        // The next window starts over.
        assert!((0..19).all(|_| alerts.record("j", true, 1_000).is_none()));
        assert!(alerts.record("j", true, 1_999).is_some());
    }

    #[test]
    fn five_percent_exactly_does_not_alert() {
        let mut alerts = alerts();
        let fired = (0..20).any(|i| alerts.record("j", i == 0, 0).is_some());
        assert!(!fired);
    }
}
