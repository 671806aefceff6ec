//! A duration written the way people write them in policy files: `30s`, `5m`, `1h30m`.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration, written as a string such as `500ms`, `30s`, `5m`, `1h30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{input}` is not a duration: {reason}; write a number and a unit, e.g. `30s`, `5m`, `1h30m`, `500ms`")]
pub struct DurationError {
    pub input: String,
    pub reason: String,
}

impl Duration {
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    pub const fn from_millis(millis: u64) -> Self {
        Duration(std::time::Duration::from_millis(millis))
    }

    pub const fn std(self) -> std::time::Duration {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }

    pub fn as_millis_u64(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    /// The duration as PromQL writes a range, e.g. `30s`, `1m30s`, `500ms`.
    pub fn to_promql(self) -> String {
        let ms = self.as_millis_u64();
        if !ms.is_multiple_of(1000) {
            return format!("{ms}ms");
        }
        let secs = ms / 1000;
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if m > 0 {
            out.push_str(&format!("{m}m"));
        }
        if s > 0 || out.is_empty() {
            out.push_str(&format!("{s}s"));
        }
        out
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(DurationError {
                input: input.to_owned(),
                reason: "it is empty".to_owned(),
            });
        }
        if trimmed.chars().all(|c| c.is_ascii_digit()) {
            return Err(DurationError {
                input: input.to_owned(),
                reason: "it has no unit".to_owned(),
            });
        }
        humantime::parse_duration(trimmed)
            .map(Duration)
            .map_err(|e| DurationError {
                input: input.to_owned(),
                reason: e.to_string(),
            })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_promql())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_promql())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration: a number and a unit (ms, s, m, h, d), e.g. `30s`, `5m`, `1h30m`.",
            "pattern": "^([0-9]+(ms|s|m|h|d) ?)+$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!("30s".parse::<Duration>(), Ok(Duration::from_secs(30)));
        assert_eq!("5m".parse::<Duration>(), Ok(Duration::from_secs(300)));
        assert_eq!("1h30m".parse::<Duration>(), Ok(Duration::from_secs(5400)));
        assert_eq!("500ms".parse::<Duration>(), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn rejects_missing_unit_and_garbage() {
        assert!("30".parse::<Duration>().is_err());
        assert!("soon".parse::<Duration>().is_err());
        assert!("".parse::<Duration>().is_err());
    }

    #[test]
    fn prints_as_promql_range() {
        assert_eq!(Duration::from_secs(30).to_promql(), "30s");
        assert_eq!(Duration::from_secs(90).to_promql(), "1m30s");
        assert_eq!(Duration::from_secs(3600).to_promql(), "1h");
        assert_eq!(Duration::from_millis(1500).to_promql(), "1500ms");
        assert_eq!(Duration::ZERO.to_promql(), "0s");
    }
}
