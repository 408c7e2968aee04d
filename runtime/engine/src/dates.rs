//! Date triggers: a journey that starts at an offset from a date the contact
//! carries (a birthday, a sign-up), at a local time in the contact's zone,
//! every year or once.
//!
//! ```toml
//! [trigger.date]
//! attribute = "birthday"   # "1990-02-14", or an RFC 3339 time (its date in the contact's zone)
//! offset_days = -7         # a week before
//! at = "08:00"             # in the contact's zone (else the journey's, else UTC)
//! every = "year"           # or "once"
//! ```
//!
//! A 29 February falls on 28 February in the years without one. The runtime
//! schedules each contact's next occurrence ([`next_occurrence`]) and, when it
//! comes, shows the contact a `date.reached` event naming the journey.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveDateTime};
use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::Timestamp;
use crate::local_time::LocalTime;

/// The event a date trigger's occurrence is shown to journeys as; its
/// properties name the `journey`, the `attribute` and the `date` it is for.
pub const DATE_REACHED: &str = "date.reached";

/// A journey's start at a date of the contact's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DateTrigger {
    /// The contact attribute holding the date.
    pub attribute: String,
    /// Days from the date (negative: before it).
    #[serde(default)]
    pub offset_days: i32,
    /// The time of day, in the contact's zone; midnight if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<LocalTime>,
    /// Every year (a birthday) or once (a date that happens once).
    #[serde(default)]
    pub every: Every,
}

/// How often a date trigger fires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Every {
    /// On the date's anniversary, every year.
    #[default]
    Year,
    /// On the date itself.
    Once,
}

/// One occurrence: the moment, and the anniversary it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    /// When the journey starts.
    pub at: Timestamp,
    /// The date (this year's birthday) the occurrence is offset from.
    pub date: NaiveDate,
}

/// Reads a date attribute: `YYYY-MM-DD`, or an RFC 3339 time (its date in
/// `zone`).
pub fn parse_date(value: &serde_json::Value, zone: Tz) -> Option<NaiveDate> {
    let text = value.as_str()?.trim();
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(date);
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&zone).date_naive())
}

/// The date's anniversary in `year`; 29 February is 28 February in a year
/// without one.
pub fn anniversary(date: NaiveDate, year: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(year, date.month(), date.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, date.month(), date.day().saturating_sub(1)))
}

/// The first occurrence of `trigger` for a contact whose date is `date`,
/// strictly after `after`; `None` if there is none (a one-off date passed).
pub fn next_occurrence(
    trigger: &DateTrigger,
    date: NaiveDate,
    zone: Tz,
    after: Timestamp,
) -> Option<Occurrence> {
    let moment = |day: NaiveDate| -> Option<Timestamp> {
        let shifted = if trigger.offset_days >= 0 {
            day.checked_add_days(Days::new(u64::from(trigger.offset_days.unsigned_abs())))
        } else {
            day.checked_sub_days(Days::new(u64::from(trigger.offset_days.unsigned_abs())))
        }?;
        let time = trigger.at.map(LocalTime::time).unwrap_or_default();
        crate::local_time::resolve_local(NaiveDateTime::new(shifted, time), zone)
    };
    match trigger.every {
        Every::Once => {
            let at = moment(date)?;
            (at > after).then_some(Occurrence { at, date })
        }
        Every::Year => {
            let year = DateTime::from_timestamp_millis(after)?
                .with_timezone(&zone)
                .year();
            // The offset may move an anniversary across a new year.
            (year - 1..=year + 2).find_map(|y| {
                let day = anniversary(date, y)?;
                let at = moment(day)?;
                (at > after).then_some(Occurrence { at, date: day })
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn birthday(offset_days: i32) -> DateTrigger {
        DateTrigger {
            attribute: "birthday".into(),
            offset_days,
            at: Some("08:00".parse().unwrap()),
            every: Every::Year,
        }
    }

    fn ms(y: i32, m: u32, d: u32, h: u32) -> Timestamp {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    }

    #[test]
    fn a_birthday_offer_comes_seven_days_before_at_eight_in_the_contacts_zone() {
        let date = NaiveDate::from_ymd_opt(1990, 6, 20).unwrap();
        let next = next_occurrence(
            &birthday(-7),
            date,
            chrono_tz::Asia::Shanghai,
            ms(2026, 1, 1, 0),
        );
        // 08:00 in Shanghai is 00:00 UTC.
        assert_eq!(next.unwrap().at, ms(2026, 6, 13, 0));
        // Once it passed, the next is a year on.
        let after = next_occurrence(
            &birthday(-7),
            date,
            chrono_tz::Asia::Shanghai,
            ms(2026, 6, 13, 0),
        );
        assert_eq!(after.unwrap().at, ms(2027, 6, 13, 0));
    }

    #[test]
    fn the_29th_of_february_falls_on_the_28th_in_other_years() {
        let date = NaiveDate::from_ymd_opt(2000, 2, 29).unwrap();
        let next = next_occurrence(&birthday(0), date, Tz::UTC, ms(2027, 1, 1, 0)).unwrap();
        assert_eq!(next.date, NaiveDate::from_ymd_opt(2027, 2, 28).unwrap());
        let leap = next_occurrence(&birthday(0), date, Tz::UTC, ms(2028, 1, 1, 0)).unwrap();
        assert_eq!(leap.date, NaiveDate::from_ymd_opt(2028, 2, 29).unwrap());
    }

    #[test]
    fn a_one_off_date_that_passed_never_comes_again() {
        let trigger = DateTrigger {
            every: Every::Once,
            ..birthday(30)
        };
        let date = NaiveDate::from_ymd_opt(2026, 1, 10).unwrap();
        assert!(next_occurrence(&trigger, date, Tz::UTC, ms(2026, 1, 1, 0)).is_some());
        assert!(next_occurrence(&trigger, date, Tz::UTC, ms(2026, 3, 1, 0)).is_none());
    }

    #[test]
    fn dates_read_as_days_or_as_times_in_the_zone() {
        let zone = chrono_tz::Asia::Shanghai;
        let day = parse_date(&serde_json::json!("1990-06-20"), zone).unwrap();
        assert_eq!(day, NaiveDate::from_ymd_opt(1990, 6, 20).unwrap());
        // 20:00 UTC on the 19th is the 20th in Shanghai.
        let time = parse_date(&serde_json::json!("2025-06-19T20:00:00Z"), zone).unwrap();
        assert_eq!(time, NaiveDate::from_ymd_opt(2025, 6, 20).unwrap());
        assert!(parse_date(&serde_json::json!(19900620), zone).is_none());
    }
}
