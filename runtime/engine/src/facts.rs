//! Facts about a contact, kept as its events arrive: per event name how many
//! were seen, the first and the last time, and the latest few with their
//! amounts, so that conditions can ask for rolling windows ("3 orders in 180
//! days", "revenue in 365 days") without a history of every event.
//!
//! Storage is bounded: at most [`MAX_NAMES`] event names per contact (the
//! name seen longest ago goes first) and [`MAX_RECENT`] events per name within
//! [`RECENT_HORIZON_MS`]. A window therefore counts at most the latest
//! [`MAX_RECENT`] events of a name; `count` and `first` count every one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::{Event, Timestamp};

/// How many event names a contact keeps facts for.
pub const MAX_NAMES: usize = 32;

/// How many of a name's latest events a contact keeps for windows.
pub const MAX_RECENT: usize = 32;

/// How far back the kept events reach: windows up to 400 days are exact.
pub const RECENT_HORIZON_MS: i64 = 400 * DAY_MS;

const DAY_MS: i64 = 86_400_000;

/// What is known about one event name of a contact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    /// How many events of the name were seen, ever.
    pub count: u64,
    /// When the first one happened (ms since the epoch).
    pub first: Timestamp,
    /// When the latest one happened.
    pub last: Timestamp,
    /// The latest events, oldest first: when, and the amount (`total`,
    /// `value` or `amount` of its properties, 0 without one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<(Timestamp, f64)>,
}

impl Fact {
    /// Events within `window_ms` before `now` (an event exactly `window_ms`
    /// old no longer counts).
    pub fn count_within(&self, window_ms: i64, now: Timestamp) -> u64 {
        self.within(window_ms, now).count() as u64
    }

    /// The amounts of the events within `window_ms` before `now`, added.
    pub fn sum_within(&self, window_ms: i64, now: Timestamp) -> f64 {
        self.within(window_ms, now).map(|(_, amount)| amount).sum()
    }

    fn within(&self, window_ms: i64, now: Timestamp) -> impl Iterator<Item = &(Timestamp, f64)> {
        let since = now.saturating_sub(window_ms);
        self.recent
            .iter()
            .filter(move |(at, _)| *at > since && *at <= now)
    }
}

/// A contact's facts, by event name.
pub type Facts = BTreeMap<String, Fact>;

/// The amount an event carries for windows' sums and revenue: an order's
/// `total` (`total_price` from Shopify), or a `value` or `amount`, as a
/// number or numeric text.
pub fn amount_of(event: &Event) -> f64 {
    ["total", "total_price", "value", "amount"]
        .iter()
        .find_map(|name| {
            let value = event.properties.get(*name)?;
            value
                .as_f64()
                .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
        })
        .unwrap_or(0.0)
}

/// Counts `event` in `facts`. An event older than the name's last one (webhooks
/// are not ordered) still counts and takes its place among the recent ones.
pub fn record(facts: &mut Facts, event: &Event) {
    let at = event.occurred_at;
    let fact = facts.entry(event.name.clone()).or_default();
    if fact.count == 0 {
        fact.first = at;
        fact.last = at;
    } else {
        fact.first = fact.first.min(at);
        fact.last = fact.last.max(at);
    }
    fact.count = fact.count.saturating_add(1);
    let place = fact.recent.partition_point(|(t, _)| *t <= at);
    fact.recent.insert(place, (at, amount_of(event)));
    let horizon = fact.last.saturating_sub(RECENT_HORIZON_MS);
    fact.recent.retain(|(t, _)| *t > horizon);
    let over = fact.recent.len().saturating_sub(MAX_RECENT);
    fact.recent.drain(..over);
    if facts.len() > MAX_NAMES
        && let Some(stalest) = facts
            .iter()
            .min_by_key(|(_, fact)| fact.last)
            .map(|(name, _)| name.clone())
    {
        facts.remove(&stalest);
    }
}

impl Fact {
    /// Every time at which a condition over this fact may change its answer,
    /// given the windows it uses: each kept time plus each window. A
    /// condition compares a fact's times against `now` shifted by durations,
    /// so its answer can only flip when `now` crosses one of these.
    pub fn crossings<'a>(&'a self, windows_ms: &'a [i64]) -> impl Iterator<Item = Timestamp> + 'a {
        [self.first, self.last]
            .into_iter()
            .chain(self.recent.iter().map(|(at, _)| *at))
            .flat_map(move |at| windows_ms.iter().map(move |w| at.saturating_add(*w)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn order(at: i64, total: f64) -> Event {
        Event {
            id: format!("o-{at}"),
            source: "shopify".into(),
            name: "order.paid".into(),
            identities: Default::default(),
            properties: json!({ "total": total }),
            occurred_at: at,
            received_at: at,
        }
    }

    #[test]
    fn windows_count_and_add_only_the_events_inside_them() {
        let mut facts = Facts::new();
        for (at, total) in [(DAY_MS, 10.0), (10 * DAY_MS, 20.0), (20 * DAY_MS, 30.0)] {
            record(&mut facts, &order(at, total));
        }
        let fact = &facts["order.paid"];
        assert_eq!(
            (fact.count, fact.first, fact.last),
            (3, DAY_MS, 20 * DAY_MS)
        );
        let now = 25 * DAY_MS;
        assert_eq!(fact.count_within(20 * DAY_MS, now), 2);
        assert_eq!(fact.sum_within(20 * DAY_MS, now), 50.0);
        // Exactly 24 days old: out of a 24-day window.
        assert_eq!(fact.count_within(24 * DAY_MS, now), 2);
        assert_eq!(fact.count_within(30 * DAY_MS, now), 3);
    }

    #[test]
    fn an_event_that_arrives_late_takes_its_place_in_time() {
        let mut facts = Facts::new();
        record(&mut facts, &order(5 * DAY_MS, 1.0));
        record(&mut facts, &order(2 * DAY_MS, 2.0));
        let fact = &facts["order.paid"];
        assert_eq!((fact.first, fact.last), (2 * DAY_MS, 5 * DAY_MS));
        assert_eq!(fact.recent[0], (2 * DAY_MS, 2.0));
    }

    #[test]
    fn storage_stays_bounded_per_name_and_per_contact() {
        let mut facts = Facts::new();
        for i in 0..100 {
            record(&mut facts, &order(i * 1000, 1.0));
        }
        assert_eq!(facts["order.paid"].recent.len(), MAX_RECENT);
        assert_eq!(facts["order.paid"].count, 100);
        for i in 0..(MAX_NAMES as i64 + 5) {
            let mut event = order(200_000 + i, 0.0);
            event.name = format!("page.{i}");
            record(&mut facts, &event);
        }
        assert_eq!(facts.len(), MAX_NAMES);
        // The name seen longest ago went first.
        assert!(!facts.contains_key("order.paid"));
    }
}
