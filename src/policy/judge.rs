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
    /// Kayenta's Mann–Whitney classifier on the per-interval values (see
    /// docs/analysis.md).
    MannWhitney(MannWhitneySpec),
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

/// Kayenta's defaults for the `mannWhitney` judge.
pub const MW_DEFAULT_CONFIDENCE: f64 = 0.95;
pub const MW_DEFAULT_TOLERANCE: f64 = 0.25;
pub const MW_DEFAULT_ALLOWED_CHANGE: f64 = 1.0;
pub const MW_DEFAULT_PASS: f64 = 95.0;
pub const MW_DEFAULT_MARGINAL: f64 = 75.0;

/// In which direction a change of the metric is a regression (Kayenta's `direction`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum RegressionDirection {
    /// The canary is bad when higher (error rates, latencies). The default.
    #[default]
    Increase,
    /// The canary is bad when lower (throughput, success rates).
    Decrease,
    /// Either way.
    Either,
}

/// The parameters of the `mannWhitney` judge (Kayenta's names); absent ones take
/// Kayenta's defaults.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MannWhitneySpec {
    /// Confidence level of the shift's interval (0 < confidence < 1). Default 0.95.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// A shift counts when its interval clears `tolerance × |shift|`. Default 0.25.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// High only when canary's mean is at least this times stable's. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_increase: Option<f64>,
    /// Low only when canary's mean is at most this times stable's. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_decrease: Option<f64>,
    /// Which change is a regression. Default `increase`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<RegressionDirection>,
    /// A score (share of the policy's mannWhitney metrics that passed, 0–100) at or
    /// above this passes. Default 95.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<f64>,
    /// A score below this fails; between `marginal` and `pass` is Inconclusive.
    /// Default 75.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marginal: Option<f64>,
}

impl MannWhitneySpec {
    pub fn confidence(&self) -> f64 {
        self.confidence.unwrap_or(MW_DEFAULT_CONFIDENCE)
    }

    pub fn tolerance(&self) -> f64 {
        self.tolerance.unwrap_or(MW_DEFAULT_TOLERANCE)
    }

    pub fn allowed_increase(&self) -> f64 {
        self.allowed_increase.unwrap_or(MW_DEFAULT_ALLOWED_CHANGE)
    }

    pub fn allowed_decrease(&self) -> f64 {
        self.allowed_decrease.unwrap_or(MW_DEFAULT_ALLOWED_CHANGE)
    }

    pub fn direction(&self) -> RegressionDirection {
        self.direction.unwrap_or_default()
    }

    pub fn pass(&self) -> f64 {
        self.pass.unwrap_or(MW_DEFAULT_PASS)
    }

    pub fn marginal(&self) -> f64 {
        self.marginal.unwrap_or(MW_DEFAULT_MARGINAL)
    }
}

impl super::types::MetricSpec {
    /// The `mannWhitney` judge's parameters when this metric's comparison is judged by
    /// it (`compare` set, `judge: mannWhitney`).
    pub fn mann_whitney(&self) -> Option<MannWhitneySpec> {
        self.compare.as_ref()?;
        match self.judge.as_deref() {
            Some(JudgeSpec::MannWhitney(m)) => Some(*m),
            _ => None,
        }
    }

    /// Whether `compare` is judged on the window's values against `maxIncrease` /
    /// `maxRatio` (`judge: threshold`).
    pub fn threshold_compare(&self) -> bool {
        self.compare.is_some() && matches!(self.judge.as_deref(), Some(JudgeSpec::Threshold))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum JudgeName {
    Threshold,
    Sequential,
    MannWhitney,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JudgeObject {
    #[serde(default)]
    sequential: Option<SequentialSpec>,
    #[serde(default)]
    mann_whitney: Option<MannWhitneySpec>,
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
            JudgeRepr::Name(JudgeName::MannWhitney) => {
                Ok(JudgeSpec::MannWhitney(MannWhitneySpec::default()))
            }
            JudgeRepr::Object(JudgeObject {
                sequential: Some(s),
                mann_whitney: None,
            }) => Ok(JudgeSpec::Sequential(s)),
            JudgeRepr::Object(JudgeObject {
                sequential: None,
                mann_whitney: Some(m),
            }) => Ok(JudgeSpec::MannWhitney(m)),
            JudgeRepr::Object(JudgeObject {
                sequential: Some(_),
                mann_whitney: Some(_),
            }) => Err(serde::de::Error::custom(
                "judge names two judges; keep `sequential` or `mannWhitney`",
            )),
            JudgeRepr::Object(JudgeObject { .. }) => Err(serde::de::Error::custom(
                "judge names no judge; write `threshold`, `sequential`, `mannWhitney`, `{sequential: {alpha: …, tolerance: …}}` or `{mannWhitney: {confidence: …, …}}`",
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
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct MannWhitneyObject<'a> {
            mann_whitney: &'a MannWhitneySpec,
        }
        match self {
            JudgeSpec::MannWhitney(m) if *m == MannWhitneySpec::default() => {
                serializer.serialize_str("mannWhitney")
            }
            JudgeSpec::MannWhitney(m) => {
                MannWhitneyObject { mann_whitney: m }.serialize(serializer)
            }
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
            "description": "How `compare` is judged: `sequential` (default with `compare`: an anytime-valid test on counts since the comparison began), `threshold` (the window's values against `compare`'s limits) or `mannWhitney` (Kayenta's Mann–Whitney classifier on the per-interval values); `{sequential: {alpha, tolerance}}` and `{mannWhitney: {…}}` set a judge's parameters.",
            "anyOf": [
                { "type": "string", "enum": ["threshold", "sequential", "mannWhitney"] },
                {
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": 1,
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
                        },
                        "mannWhitney": {
                            "type": "object",
                            "additionalProperties": false,
                            "description": "Kayenta's Mann–Whitney classifier's parameters.",
                            "properties": {
                                "confidence": { "type": "number", "description": "Confidence level of the shift's interval (0 < confidence < 1). Default 0.95." },
                                "tolerance": { "type": "number", "description": "A shift counts when its interval clears tolerance × |shift| (≥ 0). Default 0.25." },
                                "allowedIncrease": { "type": "number", "description": "High only when the canary's mean is at least this times stable's (≥ 0). Default 1." },
                                "allowedDecrease": { "type": "number", "description": "Low only when the canary's mean is at most this times stable's (≥ 0). Default 1." },
                                "direction": { "type": "string", "enum": ["increase", "decrease", "either"], "description": "Which change is a regression. Default increase." },
                                "pass": { "type": "number", "description": "Score (0–100, share of the mannWhitney metrics that passed) at or above which the run passes. Default 95." },
                                "marginal": { "type": "number", "description": "Score below which the run fails; between marginal and pass it is Inconclusive. Default 75." }
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
            (
                "mannWhitney",
                JudgeSpec::MannWhitney(MannWhitneySpec::default()),
            ),
            (
                "{mannWhitney: {confidence: 0.99, allowedIncrease: 1.1, direction: either, pass: 90, marginal: 50}}",
                JudgeSpec::MannWhitney(MannWhitneySpec {
                    confidence: Some(0.99),
                    allowed_increase: Some(1.1),
                    direction: Some(RegressionDirection::Either),
                    pass: Some(90.0),
                    marginal: Some(50.0),
                    ..MannWhitneySpec::default()
                }),
            ),
        ] {
            let read: JudgeSpec = serde_yaml_ng::from_str(yaml).unwrap();
            assert_eq!(read, expected, "{yaml}");
            let json = serde_json::to_value(&read).unwrap();
            let back: JudgeSpec = serde_json::from_value(json).unwrap();
            assert_eq!(back, expected);
        }
        assert!(serde_yaml_ng::from_str::<JudgeSpec>("mannwhitney").is_err());
        assert!(serde_yaml_ng::from_str::<JudgeSpec>("{}").is_err());
        assert!(serde_yaml_ng::from_str::<JudgeSpec>("{sequential: {}, mannWhitney: {}}").is_err());
        assert!(
            serde_yaml_ng::from_str::<JudgeSpec>("{mannWhitney: {direction: sideways}}").is_err()
        );
    }
}
