//! A duration written the way people write them in policy files: `30s`, `5m`, `1h30m`.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration, written as a string such as `500ms`, `30s`, `5m`, `1h30m`.
///
/// The grammar is [`PATTERN`], the same regular expression the JSON Schema and the CRD
/// carry, so `shiftgate check`, editors and the API server accept exactly the same
/// strings: one or more `<digits><unit>` parts with unit `ms`, `s`, `m`, `h` or `d`, each
/// optionally followed by one space. Each field has its own maximum (policy::limits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

/// The duration grammar, as a JSON Schema / CRD `pattern`.
pub const PATTERN: &str = "^([0-9]+(ms|s|m|h|d) ?)+$";

/// What to write instead of a string that is not a duration.
pub const HINT: &str =
    "write numbers with a unit (ms, s, m, h or d), e.g. `30s`, `5m`, `1h30m`, `500ms`";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{input}` is not a duration: {reason}; {HINT}")]
pub struct DurationError {
    pub input: String,
    pub reason: String,
    /// The text follows the grammar but the sum does not fit (far beyond every maximum).
    pub too_large: bool,
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

    /// For people: whole days as `30d`, anything else as [`Duration::to_promql`].
    pub fn to_human(self) -> String {
        let ms = self.as_millis_u64();
        if ms > 0 && ms.is_multiple_of(86_400_000) {
            format!("{}d", ms / 86_400_000)
        } else {
            self.to_promql()
        }
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
        parse(input).map(|ms| Duration(std::time::Duration::from_millis(ms)))
    }
}

/// Milliseconds of a string of [`PATTERN`]. Hand-written rather than a regex so that the
/// reason names the first character that is wrong; `tests::grammar_is_the_pattern`
/// checks that both accept the same strings.
fn parse(input: &str) -> Result<u64, DurationError> {
    let fail = |reason: String| DurationError {
        input: shorten(input),
        reason,
        too_large: false,
    };
    if input.is_empty() {
        return Err(fail("it is empty".to_owned()));
    }
    let bytes = input.as_bytes();
    let mut total: u64 = 0;
    let mut overflow = false;
    let mut i = 0;
    while i < bytes.len() {
        let digits_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == digits_start {
            return Err(fail(format!(
                "expected a number at character {}, found `{}`",
                i + 1,
                char_at(input, i)
            )));
        }
        let number = &input[digits_start..i];
        let unit_ms: u64 = match (bytes.get(i), bytes.get(i + 1)) {
            (Some(b'm'), Some(b's')) => {
                i += 2;
                1
            }
            (Some(b's'), _) => {
                i += 1;
                1_000
            }
            (Some(b'm'), _) => {
                i += 1;
                60_000
            }
            (Some(b'h'), _) => {
                i += 1;
                3_600_000
            }
            (Some(b'd'), _) => {
                i += 1;
                86_400_000
            }
            (None, _) if digits_start == 0 => return Err(fail("it has no unit".to_owned())),
            (None, _) => return Err(fail(format!("`{number}` at the end has no unit"))),
            (Some(_), _) => {
                return Err(fail(format!(
                    "`{}` after `{number}` is not a unit (ms, s, m, h or d)",
                    unit_word(input, i)
                )))
            }
        };
        if bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        let part = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_ms))
            .and_then(|ms| total.checked_add(ms));
        match part {
            Some(sum) => total = sum,
            None => overflow = true,
        }
    }
    if overflow {
        return Err(DurationError {
            input: shorten(input),
            reason: "it is too large".to_owned(),
            too_large: true,
        });
    }
    Ok(total)
}

/// Inputs are echoed in errors; a huge one is cut so the error stays readable.
fn shorten(input: &str) -> String {
    const SHOWN: usize = 40;
    match input.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &input[..cut]),
        None => input.to_owned(),
    }
}

fn char_at(input: &str, byte: usize) -> String {
    input
        .get(byte..)
        .and_then(|rest| rest.chars().next())
        .map_or_else(String::new, |c| c.to_string())
}

/// The letters starting at `byte` (what the user meant as a unit), at most 10 characters.
fn unit_word(input: &str, byte: usize) -> String {
    let rest = input.get(byte..).unwrap_or("");
    let word: String = rest
        .chars()
        .take_while(|c| !c.is_ascii_digit() && *c != ' ')
        .take(10)
        .collect();
    if word.is_empty() {
        char_at(input, byte)
    } else {
        word
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
            "pattern": PATTERN
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
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
    fn accepts_only_the_crd_units() {
        for rejected in [
            "5min", "1 hour", "2w", "1y", "5sec", " 5m", "5m  ", "1.5h", "-5s",
        ] {
            let error = rejected.parse::<Duration>().unwrap_err();
            assert!(!error.too_large, "{rejected}: {error}");
            assert!(
                error.to_string().contains("ms, s, m, h or d"),
                "{rejected}: {error}"
            );
        }
        assert_eq!("1h 30m".parse::<Duration>(), Ok(Duration::from_secs(5400)));
        assert_eq!("2d".parse::<Duration>(), Ok(Duration::from_secs(172_800)));
        assert_eq!("5m ".parse::<Duration>(), Ok(Duration::from_secs(300)));
        assert_eq!("0s".parse::<Duration>(), Ok(Duration::ZERO));
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let error = "99999999999999999999999h".parse::<Duration>().unwrap_err();
        assert!(error.too_large, "{error}");
        let error = "5124095576030431h".parse::<Duration>().unwrap_err();
        assert!(error.too_large, "{error}");
        assert!("99999999999h".parse::<Duration>().is_ok());
    }

    fn pattern() -> regex::Regex {
        regex::Regex::new(PATTERN).unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// The parser accepts exactly the strings the schema's pattern matches (a match
        /// whose sum does not fit is refused as too large, never as ungrammatical).
        #[test]
        fn grammar_is_the_pattern(input in "([0-9]{0,3}(ms|s|m|h|d|min|sec|w|y|us|ns|M|µs|[ .+-])? ?){0,4}") {
            let matches = pattern().is_match(&input);
            match input.parse::<Duration>() {
                Ok(_) => proptest::prop_assert!(matches, "parser accepts `{}`, the pattern does not", input),
                Err(e) => proptest::prop_assert!(!matches || e.too_large, "pattern accepts `{}`, the parser says {}", input, e),
            }
        }

        #[test]
        fn grammar_is_the_pattern_on_any_text(input in "\\PC{0,12}") {
            proptest::prop_assert_eq!(pattern().is_match(&input), input.parse::<Duration>().is_ok());
        }

        #[test]
        fn printed_durations_parse_back(ms in 0u64..=(400 * 86_400_000)) {
            let d = Duration::from_millis(ms);
            proptest::prop_assert_eq!(d.to_promql().parse::<Duration>(), Ok(d));
            proptest::prop_assert!(pattern().is_match(&d.to_promql()));
        }
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
