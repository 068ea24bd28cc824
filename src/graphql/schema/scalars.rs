//! Custom scalars.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{Datelike as _, SecondsFormat, Utc};

/// A point in time, as an RFC 3339 string. taskql answers in UTC with microsecond precision
/// (`2026-11-22T09:30:00.000000Z`, the precision it stores) and accepts any offset
/// (`2026-11-22T10:30:00+01:00` is the same instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime(pub chrono::DateTime<Utc>);

/// A point in time, as an RFC 3339 string between years 0001 and 9999. taskql answers in UTC
/// with microsecond precision (`2026-11-22T09:30:00.000000Z`) and accepts any offset.
#[Scalar(
    name = "DateTime",
    specified_by_url = "https://datatracker.ietf.org/doc/html/rfc3339"
)]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        let Value::String(text) = &value else {
            return Err(InputValueError::expected_type(value));
        };
        parse_time(text).map(Self).map_err(InputValueError::custom)
    }

    /// Validation calls this for literals and variables alike, so a bad time is refused as a
    /// request error before anything runs, not as a field error while resolving.
    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::String(text) if parse_time(text).is_ok())
    }

    fn to_value(&self) -> Value {
        Value::String(format_time(self.0))
    }
}

/// Parses an RFC 3339 time that taskql can also write back. RFC 3339 has four-digit years,
/// so an instant whose UTC year leaves 0001–9999 (`9999-12-31T23:59:59-23:59` is in 10000)
/// could be stored but never returned as RFC 3339; it is refused instead.
pub fn parse_time(text: &str) -> Result<chrono::DateTime<Utc>, &'static str> {
    const EXPECTED: &str = "expected an RFC 3339 date-time between years 0001 and 9999 \
                            (UTC), such as 2026-11-22T09:30:00Z";
    let time = chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|_| EXPECTED)?
        .with_timezone(&Utc);
    if (1..=9999).contains(&time.year()) {
        Ok(time)
    } else {
        Err(EXPECTED)
    }
}

/// The one way taskql writes a time: UTC, microseconds, `Z`.
pub fn format_time(time: chrono::DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl From<chrono::DateTime<Utc>> for DateTime {
    fn from(time: chrono::DateTime<Utc>) -> Self {
        Self(time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_times_that_can_be_written_back_are_accepted() {
        for ok in [
            "2026-11-22T09:30:00Z",
            "2026-11-22T10:30:00+01:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
        ] {
            let time = parse_time(ok).expect(ok);
            assert_eq!(parse_time(&format_time(time)), Ok(time), "{ok} round-trips");
        }
        for bad in [
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+01:00",
            "yesterday",
            "2026-11-22",
            "",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
