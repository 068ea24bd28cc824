//! Custom scalars.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{SecondsFormat, Utc};

/// A point in time, as an RFC 3339 string. taskql answers in UTC with microsecond precision
/// (`2026-11-22T09:30:00.000000Z`, the precision it stores) and accepts any offset
/// (`2026-11-22T10:30:00+01:00` is the same instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime(pub chrono::DateTime<Utc>);

/// A point in time, as an RFC 3339 string. taskql answers in UTC with microsecond precision
/// (`2026-11-22T09:30:00.000000Z`) and accepts any offset.
#[Scalar(
    name = "DateTime",
    specified_by_url = "https://datatracker.ietf.org/doc/html/rfc3339"
)]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        let Value::String(text) = &value else {
            return Err(InputValueError::expected_type(value));
        };
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|time| Self(time.with_timezone(&Utc)))
            .map_err(|_| {
                InputValueError::custom(
                    "expected an RFC 3339 date-time such as 2026-11-22T09:30:00Z",
                )
            })
    }

    fn to_value(&self) -> Value {
        Value::String(format_time(self.0))
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
