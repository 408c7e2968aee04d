//! Durations as journey authors write them: `90s`, `30m`, `3h`, `2d`, `1w`, or
//! several at once (`2h30m`).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A length of time written in a journey file, kept in milliseconds.
///
/// Written as one or more `<whole number><unit>` parts, largest unit first or
/// not, with units `ms`, `s`, `m`, `h`, `d` (24 hours) and `w` (7 days):
/// `30m`, `3h`, `2d`, `90s`, `2h30m`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(
    with = "String",
    description = "A duration: one or more <number><unit> parts, units ms, s, m, h, d, w: `30m`, `3h`, `2d`, `2h30m`."
)]
pub struct Duration {
    millis: u64,
}

const UNITS: [(&str, u64); 6] = [
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl Duration {
    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }

    /// The length in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    /// The length in milliseconds as a signed offset to add to a timestamp,
    /// saturating for lengths no journey can mean.
    pub fn as_offset(self) -> i64 {
        i64::try_from(self.millis).unwrap_or(i64::MAX)
    }
}

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {why}")]
pub struct DurationError {
    text: String,
    why: &'static str,
}

impl std::str::FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |why| DurationError {
            text: text.to_owned(),
            why,
        };
        if text.is_empty() {
            return Err(fail("expected a number and a unit such as 30m, 3h or 2d"));
        }
        let mut millis: u64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(fail("expected a number and a unit such as 30m, 3h or 2d"));
            }
            let (number, after) = rest.split_at(digits);
            let number: u64 = number.parse().map_err(|_| fail("number too large"))?;
            let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
            let (unit, after) = after.split_at(unit_len);
            let Some((_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
                return Err(fail("units are ms, s, m, h, d and w"));
            };
            millis = number
                .checked_mul(*scale)
                .and_then(|part| millis.checked_add(part))
                .ok_or_else(|| fail("too long"))?;
            rest = after;
        }
        Ok(Self { millis })
    }
}

impl TryFrom<String> for Duration {
    type Error = DurationError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Duration> for String {
    fn from(duration: Duration) -> Self {
        duration.to_string()
    }
}

impl fmt::Display for Duration {
    /// Writes the canonical form, largest units first: `2h30m`, `0s` for zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.millis;
        for (name, scale) in UNITS {
            if rest >= scale {
                write!(f, "{}{name}", rest / scale)?;
                rest %= scale;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn single_units_read_as_their_length() {
        assert_eq!("90s".parse::<Duration>().unwrap().as_millis(), 90_000);
        assert_eq!("30m".parse::<Duration>().unwrap().as_millis(), 1_800_000);
        assert_eq!("3h".parse::<Duration>().unwrap().as_millis(), 10_800_000);
        assert_eq!("2d".parse::<Duration>().unwrap().as_millis(), 172_800_000);
        assert_eq!("250ms".parse::<Duration>().unwrap().as_millis(), 250);
    }

    #[test]
    fn compound_durations_add_up_and_print_canonically() {
        let duration: Duration = "30m2h".parse().unwrap();
        assert_eq!(duration.as_millis(), 9_000_000);
        assert_eq!(duration.to_string(), "2h30m");
    }

    #[test]
    fn unknown_units_and_missing_numbers_are_refused() {
        assert_eq!(
            "3x".parse::<Duration>().unwrap_err().to_string(),
            "invalid duration \"3x\": units are ms, s, m, h, d and w"
        );
        assert!("h".parse::<Duration>().is_err());
        assert!("".parse::<Duration>().is_err());
        assert!("3".parse::<Duration>().is_err());
        assert!("-3h".parse::<Duration>().is_err());
    }
}
