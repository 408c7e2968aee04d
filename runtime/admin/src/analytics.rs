//! A journey's figures, added up from its analytics counters (see
//! `dripline_delivery::analytics`): per version, step, channel and split way,
//! and per day; rates, and each way's uplift over the holdout with a 95%
//! confidence interval.

use std::collections::BTreeMap;

use dripline_delivery::analytics::{self, Counter};
use serde::Serialize;
use utoipa::ToSchema;

/// A journey's figures over a range of days.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JourneyAnalytics {
    /// The journey.
    pub journey: String,
    /// The first day counted (UTC, `YYYY-MM-DD`), if limited.
    pub from: Option<String>,
    /// The last day counted, if limited.
    pub to: Option<String>,
    /// Per version, newest first.
    pub versions: Vec<VersionFigures>,
    /// Per day, all versions together, oldest first.
    pub days: Vec<DayFigures>,
}

/// One version's figures.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct VersionFigures {
    /// The version.
    pub version: u32,
    /// Contacts who entered.
    pub entered: i64,
    /// Contacts who reached the goal while in the journey.
    pub goal_reached: i64,
    /// Enrollments that converted within the attribution window (held-out
    /// ones included).
    pub converted: i64,
    /// The converting orders' revenue, in the store's currency units.
    pub revenue: f64,
    /// `converted / entered`.
    pub conversion_rate: Option<f64>,
    /// Per step, in the order their counters sort.
    pub steps: Vec<StepFigures>,
    /// Per split way, with the holdout's uplift comparison.
    pub arms: Vec<ArmFigures>,
}

/// One step's figures.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct StepFigures {
    /// The step's id.
    pub step: String,
    /// Contacts who reached it.
    pub entered: i64,
    /// Contacts who went on from it.
    pub passed: i64,
    /// Contacts whose journey ended at it.
    pub exited: i64,
    /// Its other counts (`split_way_0`, `holdout`, `retried`, ...).
    pub other: BTreeMap<String, i64>,
    /// Messages it queued, per channel.
    pub channels: Vec<ChannelFigures>,
}

/// The messages of one step on one channel.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ChannelFigures {
    /// The channel.
    pub channel: String,
    /// Messages the policy let go (now or after quiet hours).
    pub sent: i64,
    /// Messages the provider took.
    pub delivered: i64,
    /// Messages that failed for good.
    pub failed: i64,
    /// Messages the policy held back, by reason.
    pub suppressed: BTreeMap<String, i64>,
    /// Messages opened at least once.
    pub opened: i64,
    /// Messages clicked at least once.
    pub clicked: i64,
    /// Messages whose unsubscribe link was used.
    pub unsubscribed: i64,
    /// `opened / delivered`.
    pub open_rate: Option<f64>,
    /// `clicked / delivered`.
    pub click_rate: Option<f64>,
}

/// One way of a split.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ArmFigures {
    /// The split step.
    pub split: String,
    /// The way: the step it leads to, or `holdout`.
    pub arm: String,
    /// Contacts the split put on it.
    pub contacts: i64,
    /// Of those, how many converted after the split.
    pub converted: i64,
    /// Their revenue.
    pub revenue: f64,
    /// `converted / contacts`.
    pub conversion_rate: Option<f64>,
    /// Against the same split's holdout, if it has one (not for the holdout).
    pub uplift: Option<Uplift>,
}

/// A way's conversion rate against the holdout's.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Uplift {
    /// The rate's difference, in absolute terms (0.05: five points).
    pub difference: f64,
    /// The difference relative to the holdout's rate, when that is not 0.
    pub relative: Option<f64>,
    /// The 95% confidence interval of `difference` (normal approximation of
    /// the difference of two proportions): lower bound.
    pub ci95_low: f64,
    /// Upper bound.
    pub ci95_high: f64,
}

/// One day's figures.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct DayFigures {
    /// The UTC day.
    pub day: String,
    /// Contacts who entered.
    pub entered: i64,
    /// Conversions.
    pub converted: i64,
    /// Their revenue.
    pub revenue: f64,
    /// Messages sent.
    pub sent: i64,
    /// Messages opened.
    pub opened: i64,
    /// Messages clicked.
    pub clicked: i64,
}

/// The ways of a version's splits: split step → way names by index.
pub type Splits = BTreeMap<String, Vec<String>>;

/// Adds up `counters` (names and values of one journey's analytics
/// counters) for days within `from..=to`. `splits` names each version's ways.
pub fn report(
    journey: &str,
    counters: &BTreeMap<String, i64>,
    splits: &BTreeMap<u32, Splits>,
    from: Option<&str>,
    to: Option<&str>,
) -> JourneyAnalytics {
    let mut versions: BTreeMap<u32, VersionFigures> = BTreeMap::new();
    let mut steps: BTreeMap<(u32, String), StepFigures> = BTreeMap::new();
    let mut channels: BTreeMap<(u32, String, String), ChannelFigures> = BTreeMap::new();
    let mut days: BTreeMap<String, DayFigures> = BTreeMap::new();
    // Conversions and revenue by (version, arm).
    let mut by_arm: BTreeMap<(u32, String), (i64, i64)> = BTreeMap::new();
    for (name, value) in counters {
        let Some(counter) = analytics::parse(name) else {
            continue;
        };
        let in_range = counter.journey == journey
            && from.is_none_or(|f| counter.day >= f)
            && to.is_none_or(|t| counter.day <= t);
        if !in_range {
            continue;
        }
        let value = *value;
        let version = versions
            .entry(counter.version)
            .or_insert_with(|| VersionFigures {
                version: counter.version,
                ..VersionFigures::default()
            });
        let day = days
            .entry(counter.day.to_owned())
            .or_insert_with(|| DayFigures {
                day: counter.day.to_owned(),
                ..DayFigures::default()
            });
        let Counter {
            step,
            channel,
            what,
            ..
        } = counter;
        match (step, channel) {
            (None, _) => match what {
                "entered" => {
                    version.entered += value;
                    day.entered += value;
                }
                "goal_reached" => version.goal_reached += value,
                "converted" => {
                    version.converted += value;
                    day.converted += value;
                }
                "revenue_cents" => {
                    version.revenue += cents(value);
                    day.revenue += cents(value);
                }
                other => {
                    if let Some(arm) = other.strip_prefix("converted.") {
                        by_arm
                            .entry((counter.version, arm.to_owned()))
                            .or_default()
                            .0 += value;
                    } else if let Some(arm) = other.strip_prefix("revenue_cents.") {
                        by_arm
                            .entry((counter.version, arm.to_owned()))
                            .or_default()
                            .1 += value;
                    }
                }
            },
            (Some(step), None) => {
                let figures = steps
                    .entry((counter.version, step.to_owned()))
                    .or_insert_with(|| StepFigures {
                        step: step.to_owned(),
                        ..StepFigures::default()
                    });
                match what {
                    "entered" => figures.entered += value,
                    "passed" => figures.passed += value,
                    "exited" => figures.exited += value,
                    other => *figures.other.entry(other.to_owned()).or_default() += value,
                }
            }
            (Some(step), Some(channel)) => {
                steps
                    .entry((counter.version, step.to_owned()))
                    .or_insert_with(|| StepFigures {
                        step: step.to_owned(),
                        ..StepFigures::default()
                    });
                let figures = channels
                    .entry((counter.version, step.to_owned(), channel.to_owned()))
                    .or_insert_with(|| ChannelFigures {
                        channel: channel.to_owned(),
                        ..ChannelFigures::default()
                    });
                match what {
                    "sent" => {
                        figures.sent += value;
                        day.sent += value;
                    }
                    "delivered" => figures.delivered += value,
                    "failed" => figures.failed += value,
                    "opened" => {
                        figures.opened += value;
                        day.opened += value;
                    }
                    "clicked" => {
                        figures.clicked += value;
                        day.clicked += value;
                    }
                    "unsubscribed" => figures.unsubscribed += value,
                    other => {
                        let reason = other.strip_prefix("suppressed.").unwrap_or(other);
                        *figures.suppressed.entry(reason.to_owned()).or_default() += value;
                    }
                }
            }
        }
    }
    for ((version, step, _), mut figures) in channels {
        figures.open_rate = rate(figures.opened, figures.delivered);
        figures.click_rate = rate(figures.clicked, figures.delivered);
        if let Some(step) = steps.get_mut(&(version, step)) {
            step.channels.push(figures);
        }
    }
    for ((version, _), figures) in steps {
        if let Some(v) = versions.get_mut(&version) {
            v.steps.push(figures);
        }
    }
    for (number, version) in versions.iter_mut() {
        version.conversion_rate = rate(version.converted, version.entered);
        let Some(version_splits) = splits.get(number) else {
            continue;
        };
        for (split, ways) in version_splits {
            version
                .arms
                .extend(arms(version, split, ways, &by_arm, *number));
        }
    }
    JourneyAnalytics {
        journey: journey.to_owned(),
        from: from.map(str::to_owned),
        to: to.map(str::to_owned),
        versions: versions.into_values().rev().collect(),
        days: days.into_values().collect(),
    }
}

/// The figures of one split's ways, each against the split's holdout.
fn arms(
    version: &VersionFigures,
    split: &str,
    ways: &[String],
    by_arm: &BTreeMap<(u32, String), (i64, i64)>,
    number: u32,
) -> Vec<ArmFigures> {
    let step = version.steps.iter().find(|s| s.step == split);
    let mut figures: Vec<ArmFigures> = ways
        .iter()
        .enumerate()
        .map(|(index, arm)| {
            let contacts = step
                .and_then(|s| s.other.get(&format!("split_way_{index}")))
                .copied()
                .unwrap_or(0);
            let (converted, revenue) = by_arm
                .get(&(number, arm.clone()))
                .copied()
                .unwrap_or((0, 0));
            ArmFigures {
                split: split.to_owned(),
                arm: arm.clone(),
                contacts,
                converted,
                revenue: cents(revenue),
                conversion_rate: rate(converted, contacts),
                uplift: None,
            }
        })
        .collect();
    let holdout = figures
        .iter()
        .find(|a| a.arm == HOLDOUT)
        .map(|h| (h.converted, h.contacts));
    if let Some((converted, contacts)) = holdout {
        for arm in figures.iter_mut().filter(|a| a.arm != HOLDOUT) {
            arm.uplift = uplift(arm.converted, arm.contacts, converted, contacts);
        }
    }
    figures
}

/// The name of a split's control way (the engine's exit reason `holdout`).
const HOLDOUT: &str = "holdout";

/// The difference of two conversion rates with its 95% interval (Wald).
pub fn uplift(converted: i64, contacts: i64, held: i64, held_contacts: i64) -> Option<Uplift> {
    let p1 = rate(converted, contacts)?;
    let p0 = rate(held, held_contacts)?;
    let n1 = contacts as f64;
    let n0 = held_contacts as f64;
    let difference = p1 - p0;
    let error = (p1 * (1.0 - p1) / n1 + p0 * (1.0 - p0) / n0).sqrt();
    // 1.959964: the standard normal's 97.5th percentile.
    let half = 1.959_964 * error;
    Some(Uplift {
        difference,
        relative: (p0 > 0.0).then(|| difference / p0),
        ci95_low: difference - half,
        ci95_high: difference + half,
    })
}

fn rate(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn cents(value: i64) -> f64 {
    value as f64 / 100.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn name(step: Option<&str>, channel: Option<&str>, what: &str, day: i64) -> String {
        let key = analytics::Key {
            journey: "j",
            version: 1,
            step,
            channel,
        };
        analytics::counter(&key, day * 86_400_000, what)
    }

    #[test]
    fn ways_get_conversion_rates_and_an_uplift_over_the_holdout() {
        let mut counters = BTreeMap::new();
        counters.insert(name(None, None, "entered", 0), 1000);
        counters.insert(name(Some("offer"), None, "split_way_0", 0), 900);
        counters.insert(name(Some("offer"), None, "split_way_1", 0), 100);
        counters.insert(name(None, None, "converted", 1), 190);
        counters.insert(name(None, None, "converted.mail", 1), 180);
        counters.insert(name(None, None, "converted.holdout", 1), 10);
        counters.insert(name(None, None, "revenue_cents.mail", 1), 180_000);
        counters.insert(name(Some("mail"), Some("email"), "delivered", 0), 800);
        counters.insert(name(Some("mail"), Some("email"), "opened", 1), 200);
        counters.insert(
            name(Some("mail"), Some("email"), "suppressed.no-consent", 0),
            100,
        );
        let splits = BTreeMap::from([(
            1,
            BTreeMap::from([(
                "offer".to_owned(),
                vec!["mail".to_owned(), "holdout".to_owned()],
            )]),
        )]);
        let report = report("j", &counters, &splits, None, None);
        let version = &report.versions[0];
        assert_eq!(version.entered, 1000);
        assert_eq!(version.conversion_rate, Some(0.19));
        let mail = &version.arms[0];
        assert_eq!((mail.contacts, mail.converted), (900, 180));
        assert_eq!(mail.revenue, 1800.0);
        let uplift = mail.uplift.as_ref().unwrap();
        assert!((uplift.difference - 0.1).abs() < 1e-9);
        // 0.1 ± 1.96 × √(0.2·0.8/900 + 0.1·0.9/100)
        assert!((uplift.ci95_low - 0.035_655).abs() < 1e-5, "{uplift:?}");
        assert!((uplift.ci95_high - 0.164_345).abs() < 1e-5, "{uplift:?}");
        assert!(version.arms[1].uplift.is_none());
        let email = &version
            .steps
            .iter()
            .find(|s| s.step == "mail")
            .unwrap()
            .channels[0];
        assert_eq!(email.open_rate, Some(0.25));
        assert_eq!(email.suppressed["no-consent"], 100);
        assert_eq!(report.days.len(), 2);
        let second_day_only = super::report("j", &counters, &splits, Some("1970-01-02"), None);
        assert_eq!(second_day_only.versions[0].entered, 0);
        assert_eq!(second_day_only.versions[0].converted, 190);
    }
}
