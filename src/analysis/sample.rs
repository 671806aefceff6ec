//! What a metric source observed, per target. A sample is never a bare `f64`: missing
//! data, NaN and an unreachable source are values of their own, so none of them can be
//! mistaken for a healthy or a broken canary.

use serde::{Deserialize, Serialize};

use crate::policy::status::Timestamp;

/// One point of a time series: (instant, value).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub at: Timestamp,
    pub value: f64,
}

/// A value that was really measured, with what statistical judges need beside it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Measured {
    pub value: f64,
    /// Requests seen by this target in the window, when the query can tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<f64>,
    /// Failed requests seen by this target in the window, when the query can tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<f64>,
    /// The metric over the window, when a range query was run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<Point>,
    /// Latency histogram of the window, cumulative like Prometheus's `_bucket` series,
    /// finite edges only (the `+Inf` bucket is `requests`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<Bucket>,
}

/// Observations at or below `le` (a finite bucket edge, in the metric's unit).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    pub le: f64,
    pub count: f64,
}

/// The outcome of one query for one target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Sample {
    Value(Measured),
    /// The query returned an empty result.
    NoData,
    /// The query returned NaN (typically 0/0: no requests in the window).
    NotANumber,
    /// The source could not be reached or answered with an error.
    Unreachable {
        message: String,
    },
    /// The source did not answer within its timeout.
    TimedOut,
    /// The query itself is wrong (syntax error, several series, warnings). It will not
    /// fix itself; the message names the query.
    Invalid {
        message: String,
    },
}

impl Sample {
    pub fn value(value: f64) -> Self {
        Sample::Value(Measured {
            value,
            ..Measured::default()
        })
    }

    pub fn measured(&self) -> Option<&Measured> {
        match self {
            Sample::Value(m) => Some(m),
            _ => None,
        }
    }
}

/// One metric of the policy as observed for the canary and, when the metric compares,
/// for stable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MetricObservation {
    /// The metric's `name` in the policy.
    pub name: String,
    pub canary: Sample,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<Sample>,
}

/// Everything a metric source observed for one evaluation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AnalysisInput {
    /// End of the window the queries covered.
    pub at: Timestamp,
    /// Requests the canary served in the window (for `minRequests`).
    pub canary_requests: Sample,
    pub metrics: Vec<MetricObservation>,
}
