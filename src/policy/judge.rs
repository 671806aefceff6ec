//! How a metric's comparison with stable is judged (`judge:`), and the count queries a
//! raw `query` gives the sequential judge (`counts:`).
//!
//! `judge: threshold` compares the window's two values against `compare.maxIncrease` /
//! `compare.maxRatio` at every evaluation. `judge: sequential` (the default for a metric
//! with `compare`) adds up per-target counts since the comparison began and rolls back
//! once the evidence that the canary is worse than stable by more than `tolerance`
//! reaches `1/alpha`: a known false-rollback rate however often it looks.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The false-rollback rate of a rollout when no metric says otherwise.
pub const DEFAULT_ALPHA: f64 = 0.01;
/// How much worse than stable the canary may be before it counts as a regression, as a
/// share (0.2 = 20 % more errors or slow requests); 0 from the benchmark in
/// docs/benchmarks.md (any regression is one).
pub const DEFAULT_TOLERANCE: f64 = 0.0;

/// How a metric's `compare` is judged.
#[derive(Clone, Debug, PartialEq)]
pub enum JudgeSpec {
    /// The window's canary and stable values against `compare`'s limits.
    Threshold,
    /// An anytime-valid test on counts (see docs/analysis.md).
    Sequential(SequentialSpec),
}

/// The parameters of the sequential judge; absent ones take the defaults.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SequentialSpec {
    /// The false-rollback rate this metric may add (0 < alpha < 1), divided across the
    /// policy's sequential metrics (Bonferroni). Default 0.01.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// The canary may have up to `1 + tolerance` times stable's rate of errors (or of
    /// slow requests) without it being a regression. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
}

impl SequentialSpec {
    pub fn alpha(&self) -> f64 {
        self.alpha.unwrap_or(DEFAULT_ALPHA)
    }

    pub fn tolerance(&self) -> f64 {
        self.tolerance.unwrap_or(DEFAULT_TOLERANCE)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum JudgeName {
    Threshold,
    Sequential,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JudgeObject {
    #[serde(default)]
    sequential: Option<SequentialSpec>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JudgeRepr {
    Name(JudgeName),
    Object(JudgeObject),
}

impl<'de> Deserialize<'de> for JudgeSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match JudgeRepr::deserialize(deserializer)? {
            JudgeRepr::Name(JudgeName::Threshold) => Ok(JudgeSpec::Threshold),
            JudgeRepr::Name(JudgeName::Sequential) => {
                Ok(JudgeSpec::Sequential(SequentialSpec::default()))
            }
            JudgeRepr::Object(JudgeObject {
                sequential: Some(s),
            }) => Ok(JudgeSpec::Sequential(s)),
            JudgeRepr::Object(JudgeObject { sequential: None }) => Err(serde::de::Error::custom(
                "judge names no judge; write `threshold`, `sequential` or `{sequential: {alpha: …, tolerance: …}}`",
            )),
        }
    }
}

impl Serialize for JudgeSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Object<'a> {
            sequential: &'a SequentialSpec,
        }
        match self {
            JudgeSpec::Threshold => serializer.serialize_str("threshold"),
            JudgeSpec::Sequential(s) if *s == SequentialSpec::default() => {
                serializer.serialize_str("sequential")
            }
            JudgeSpec::Sequential(s) => Object { sequential: s }.serialize(serializer),
        }
    }
}

impl JsonSchema for JudgeSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Judge".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "How `compare` is judged: `sequential` (default with `compare`: an anytime-valid test on counts since the comparison began) or `threshold` (the window's values against `compare`'s limits); `{sequential: {alpha, tolerance}}` sets the sequential judge's parameters.",
            "anyOf": [
                { "type": "string", "enum": ["threshold", "sequential"] },
                {
                    "type": "object",
                    "required": ["sequential"],
                    "additionalProperties": false,
                    "properties": {
                        "sequential": {
                            "type": "object",
                            "additionalProperties": false,
                            "description": "The sequential judge's parameters.",
                            "properties": {
                                "alpha": { "type": "number", "description": "False-rollback rate (0 < alpha < 1), divided across the sequential metrics. Default 0.01." },
                                "tolerance": { "type": "number", "description": "The canary may be up to `1 + tolerance` times worse than stable (0 ≤ tolerance). Default 0." }
                            }
                        }
                    }
                }
            ]
        })
    }
}

/// The count queries of a raw `query`, for the sequential judge. In these queries
/// `{{ interval }}` is the range being counted (the time since the evidence was last
/// counted), so write `increase(…[{{ interval }}])`. Give `requests` and `errors` for
/// an error rate, or `buckets` (one series per `le`, e.g. `sum by (le) (increase(…))`)
/// for a latency histogram.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CountsSpec {
    /// Requests the target served in the range (one number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<String>,
    /// Failed requests the target served in the range (one number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<String>,
    /// Cumulative histogram bucket counts in the range, one series per `le` label
    /// (including `+Inf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_and_objects_read_and_write_back() {
        for (yaml, expected) in [
            ("threshold", JudgeSpec::Threshold),
            (
                "sequential",
                JudgeSpec::Sequential(SequentialSpec::default()),
            ),
            (
                "{sequential: {alpha: 0.02, tolerance: 0.2}}",
                JudgeSpec::Sequential(SequentialSpec {
                    alpha: Some(0.02),
                    tolerance: Some(0.2),
                }),
            ),
        ] {
            let read: JudgeSpec = serde_yaml_ng::from_str(yaml).unwrap();
            assert_eq!(read, expected, "{yaml}");
            let json = serde_json::to_value(&read).unwrap();
            let back: JudgeSpec = serde_json::from_value(json).unwrap();
            assert_eq!(back, expected);
        }
        assert!(serde_yaml_ng::from_str::<JudgeSpec>("mannWhitney").is_err());
        assert!(serde_yaml_ng::from_str::<JudgeSpec>("{}").is_err());
    }
}
