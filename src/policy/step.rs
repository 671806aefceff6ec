//! A rollout step: a canary weight, written either as a bare number or as an object
//! with a weight, a hold time and an optional manual gate.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::duration::Duration;

/// One step of a rollout. `30` is short for `{weight: 30}`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StepSpec {
    /// Canary weight in percent, 0..=100.
    pub weight: u8,
    /// Minimum time at this weight before the step can pass, on top of the analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Duration>,
    /// A manual gate: after its analysis passes, the step waits for `promote`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pause: bool,
}

impl StepSpec {
    pub fn weight(weight: u8) -> Self {
        StepSpec {
            weight,
            hold: None,
            pause: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StepObject {
    weight: u8,
    #[serde(default)]
    hold: Option<Duration>,
    #[serde(default)]
    pause: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StepRepr {
    Bare(u8),
    Object(StepObject),
}

impl<'de> Deserialize<'de> for StepSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match StepRepr::deserialize(deserializer)? {
            StepRepr::Bare(weight) => Ok(StepSpec::weight(weight)),
            StepRepr::Object(o) => Ok(StepSpec {
                weight: o.weight,
                hold: o.hold,
                pause: o.pause,
            }),
        }
    }
}

impl JsonSchema for StepSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Step".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A canary weight in percent (0..=100), or an object with `weight`, optional `hold` (minimum time at this weight) and `pause` (wait for `promote` after the analysis passes).",
            "anyOf": [
                { "type": "integer", "minimum": 0, "maximum": 100 },
                {
                    "type": "object",
                    "required": ["weight"],
                    "additionalProperties": false,
                    "properties": {
                        "weight": { "type": "integer", "minimum": 0, "maximum": 100 },
                        "hold": { "type": "string", "pattern": super::duration::PATTERN, "description": "Minimum time at this weight, e.g. `5m`." },
                        "pause": { "type": "boolean", "description": "Wait for `promote` after the analysis passes." }
                    }
                }
            ]
        })
    }
}
