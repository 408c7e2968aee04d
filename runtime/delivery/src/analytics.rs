//! The names of the analytics counters: one metric per journey, version, day,
//! step, channel and what happened, kept in the store's metrics beside the
//! running totals, so that every store backend has them with no table of its
//! own and one batch commits a step's outcome and its counts together.
//!
//! `a/<journey>/<version>/<day>/<step>/<channel>/<what>`, with `-` for "no
//! step" or "no channel" and the day in UTC (`2026-12-01`). `what` is one of
//! [`What`]'s names, such as `sent`, `suppressed.quiet-hours` or
//! `converted.coupon-email`. The runner counts the journey's side (entered,
//! passed, conversions), the dispatcher delivery, tracking opens and clicks.

use chrono::DateTime;

/// The prefix of every analytics counter.
pub const PREFIX: &str = "a/";

/// Where a count belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key<'a> {
    /// The journey's id.
    pub journey: &'a str,
    /// Its version.
    pub version: u32,
    /// The step, or `None` for the journey as a whole.
    pub step: Option<&'a str>,
    /// The channel of a message, if the count is about one.
    pub channel: Option<&'a str>,
}

impl<'a> Key<'a> {
    /// Where the counts of a message belong: its journey, version and step,
    /// on `channel`.
    pub fn of_message(record: &'a crate::OutboxRecord, channel: &'a str) -> Self {
        Self {
            journey: &record.journey,
            version: record.journey_version,
            step: Some(&record.step),
            channel: Some(channel),
        }
    }
}

/// A counter's name for `what` under `key`, on the UTC day of `at_ms`.
pub fn counter(key: &Key<'_>, at_ms: i64, what: &str) -> String {
    format!(
        "{PREFIX}{}/{}/{}/{}/{}/{}",
        key.journey,
        key.version,
        day(at_ms),
        key.step.unwrap_or("-"),
        key.channel.unwrap_or("-"),
        slug(what)
    )
}

/// A counter name read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter<'a> {
    /// The journey's id.
    pub journey: &'a str,
    /// Its version.
    pub version: u32,
    /// The UTC day, `YYYY-MM-DD`.
    pub day: &'a str,
    /// The step, or `None`.
    pub step: Option<&'a str>,
    /// The channel, or `None`.
    pub channel: Option<&'a str>,
    /// What happened.
    pub what: &'a str,
}

/// Reads a counter's name; `None` for any other metric.
pub fn parse(name: &str) -> Option<Counter<'_>> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(6, '/');
    let journey = parts.next()?;
    let version = parts.next()?.parse().ok()?;
    let day = parts.next()?;
    let step = dash(parts.next()?);
    let channel = dash(parts.next()?);
    let what = parts.next()?;
    Some(Counter {
        journey,
        version,
        day,
        step,
        channel,
        what,
    })
}

fn dash(part: &str) -> Option<&str> {
    (part != "-").then_some(part)
}

/// The UTC day of a timestamp.
pub fn day(at_ms: i64) -> String {
    DateTime::from_timestamp_millis(at_ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

/// A reason as a counter name's last part: lower case, words joined by `-`,
/// no `/` (which separates the parts), at most 60 characters.
pub fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(60));
    let mut dash = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
        if out.len() >= 60 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_counter_name_reads_back_into_its_parts() {
        let key = Key {
            journey: "abandoned-checkout",
            version: 2,
            step: Some("coupon-email"),
            channel: Some("email"),
        };
        let name = counter(&key, 1_764_547_200_000, "suppressed.Quiet hours / night");
        assert_eq!(
            name,
            "a/abandoned-checkout/2/2025-12-01/coupon-email/email/suppressed.quiet-hours-night"
        );
        let read = parse(&name).unwrap();
        assert_eq!(read.journey, "abandoned-checkout");
        assert_eq!(read.version, 2);
        assert_eq!(read.step, Some("coupon-email"));
        assert_eq!(read.what, "suppressed.quiet-hours-night");
        let whole = Key {
            step: None,
            channel: None,
            ..key
        };
        assert_eq!(parse(&counter(&whole, 0, "entered")).unwrap().step, None);
        assert_eq!(parse("events.order.paid"), None);
    }
}
