//! Local times of day and time zones: `wait_until = "08:00"` in the contact's
//! zone, and the next moment that time comes, across daylight-saving changes.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, LocalResult, NaiveDateTime, NaiveTime, TimeZone, Timelike};
use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::Timestamp;

/// A time of day on the wall clock, written `HH:MM` or `HH:MM:SS` (24-hour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(
    with = "String",
    description = "A time of day on the contact's wall clock, 24-hour `HH:MM` or `HH:MM:SS`: `08:00`."
)]
pub struct LocalTime(NaiveTime);

/// Why a local time could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid local time {0:?}: expected HH:MM or HH:MM:SS, 24-hour")]
pub struct LocalTimeError(String);

impl LocalTime {
    /// The time of day.
    pub fn time(self) -> NaiveTime {
        self.0
    }
}

impl FromStr for LocalTime {
    type Err = LocalTimeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // Two digit hours only, so that "8:00" and "08:00:00.5" are rejected
        // rather than read in a way the author may not mean.
        let well_formed = matches!(text.len(), 5 | 8) && text.as_bytes()[2] == b':';
        let parsed = if text.len() == 5 {
            NaiveTime::parse_from_str(text, "%H:%M")
        } else {
            NaiveTime::parse_from_str(text, "%H:%M:%S")
        };
        match parsed {
            Ok(time) if well_formed => Ok(Self(time)),
            _ => Err(LocalTimeError(text.to_owned())),
        }
    }
}

impl TryFrom<String> for LocalTime {
    type Error = LocalTimeError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<LocalTime> for String {
    fn from(time: LocalTime) -> Self {
        time.to_string()
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.second() == 0 {
            write!(f, "{}", self.0.format("%H:%M"))
        } else {
            write!(f, "{}", self.0.format("%H:%M:%S"))
        }
    }
}

/// An IANA time zone name such as `Asia/Shanghai`, checked against the tz database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(
    with = "String",
    description = "An IANA time zone name: `Asia/Shanghai`, `Europe/Berlin`, `UTC`."
)]
pub struct TimeZoneName(String);

/// Why a time zone name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone {0:?}: expected an IANA name such as Asia/Shanghai")]
pub struct TimeZoneError(String);

impl TimeZoneName {
    /// The zone.
    pub fn tz(&self) -> Tz {
        Tz::from_str(&self.0).unwrap_or(Tz::UTC)
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TimeZoneName {
    type Error = TimeZoneError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        match Tz::from_str(&name) {
            Ok(_) => Ok(Self(name)),
            Err(_) => Err(TimeZoneError(name)),
        }
    }
}

impl From<TimeZoneName> for String {
    fn from(name: TimeZoneName) -> Self {
        name.0
    }
}

/// The zone to use for a contact: theirs if it is a known zone, else the
/// journey's, else UTC.
pub fn zone_for(contact_zone: Option<&str>, journey_zone: Option<&TimeZoneName>) -> Tz {
    contact_zone
        .and_then(|name| Tz::from_str(name).ok())
        .or_else(|| journey_zone.map(TimeZoneName::tz))
        .unwrap_or(Tz::UTC)
}

/// The first moment at or after `now` when the wall clock in `zone` shows `at`.
///
/// On a day when `at` falls in a daylight-saving gap (clocks jump from 02:00 to
/// 03:00 and `at` is 02:30), the moment the clocks jump is used, so the contact is
/// reached as soon as that time of day is passed. When `at` happens twice (clocks
/// go back), the first is used.
pub fn next_local_time(now: Timestamp, at: LocalTime, zone: Tz) -> Timestamp {
    let Some(now_utc) = DateTime::from_timestamp_millis(now) else {
        return now;
    };
    let today = now_utc.with_timezone(&zone).date_naive();
    for days in 0..3 {
        let Some(day) = today.checked_add_days(Days::new(days)) else {
            break;
        };
        let candidate = resolve_local(day.and_time(at.time()), zone);
        if let Some(candidate) = candidate
            && candidate >= now
        {
            return candidate;
        }
    }
    now
}

pub(crate) fn resolve_local(local: NaiveDateTime, zone: Tz) -> Option<Timestamp> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(moment) | LocalResult::Ambiguous(moment, _) => {
            Some(moment.timestamp_millis())
        }
        LocalResult::None => {
            // In a gap: walk forward a minute at a time to the first wall-clock
            // time that exists, which is the instant the clocks jumped.
            (1..=24 * 60).find_map(|minutes| {
                let later = local.checked_add_signed(chrono::Duration::minutes(minutes))?;
                zone.from_local_datetime(&later)
                    .earliest()
                    .map(|moment| moment.timestamp_millis())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::NaiveDate;

    fn utc_ms(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Timestamp {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    }

    #[test]
    fn eight_o_clock_later_today_is_today() {
        // 2024-03-01 06:00 in Shanghai is 2024-02-29 22:00 UTC.
        let now = utc_ms(2024, 2, 29, 22, 0);
        let due = next_local_time(now, "08:00".parse().unwrap(), chrono_tz::Asia::Shanghai);
        assert_eq!(due, utc_ms(2024, 3, 1, 0, 0));
    }

    #[test]
    fn eight_o_clock_already_passed_is_tomorrow() {
        let now = utc_ms(2024, 3, 1, 9, 0);
        let due = next_local_time(now, "08:00".parse().unwrap(), Tz::UTC);
        assert_eq!(due, utc_ms(2024, 3, 2, 8, 0));
    }

    #[test]
    fn a_time_in_the_spring_forward_gap_resolves_to_when_the_clocks_jump() {
        // New York skipped 02:00-03:00 on 2024-03-10; 03:00 EDT is 07:00 UTC.
        let now = utc_ms(2024, 3, 10, 5, 0);
        let due = next_local_time(now, "02:30".parse().unwrap(), chrono_tz::America::New_York);
        assert_eq!(due, utc_ms(2024, 3, 10, 7, 0));
    }

    #[test]
    fn a_time_that_happens_twice_in_the_fall_uses_the_first() {
        // New York repeated 01:00-02:00 on 2024-11-03; the first 01:30 is EDT, 05:30 UTC.
        let now = utc_ms(2024, 11, 3, 3, 0);
        let due = next_local_time(now, "01:30".parse().unwrap(), chrono_tz::America::New_York);
        assert_eq!(due, utc_ms(2024, 11, 3, 5, 30));
    }

    #[test]
    fn malformed_local_times_are_refused() {
        for text in ["8:00", "24:00", "08:60", "0800", "08:00:00.5", "noon"] {
            assert!(text.parse::<LocalTime>().is_err(), "{text}");
        }
        assert_eq!(
            "08:05:30".parse::<LocalTime>().unwrap().to_string(),
            "08:05:30"
        );
    }

    #[test]
    fn an_unknown_contact_zone_falls_back_to_the_journeys() {
        let journey_zone = TimeZoneName::try_from("Asia/Shanghai".to_owned()).unwrap();
        assert_eq!(
            zone_for(Some("Mars/Olympus"), Some(&journey_zone)),
            chrono_tz::Asia::Shanghai
        );
        assert_eq!(zone_for(None, None), Tz::UTC);
        assert!(TimeZoneName::try_from("Mars/Olympus".to_owned()).is_err());
    }
}
