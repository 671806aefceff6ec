//! Before a local rollout moves any traffic: every query of the policy is asked once.
//! An unreachable (or silent) Prometheus, a query Prometheus rejects (syntax error,
//! unknown function) and a query answering with several series are reported with the
//! policy and metric they belong to, and the run stops before any route is written.
//!
//! No data is fine here (the canary has had no traffic yet): only what cannot fix
//! itself, or what means the analysis could never see anything, stops a run. Once a
//! rollout runs, the same failures are Inconclusive evaluations, as the design says.
//!
//! The count queries (requests, errors, histogram buckets) the sequential judges read
//! are asked too. One that answers with no series where there should be some — on
//! stable, which serves traffic, or on a canary whose value query already answers —
//! is a warning with the query and the target: the judges would stay Inconclusive
//! (labels that do not match, a histogram that is not exported), and the run still
//! starts, since the series may appear once traffic moves.

use crate::analysis::sample::Sample;
use crate::metrics::prometheus::PrometheusSource;
use crate::metrics::queries::{PolicyQueries, SideQueries};
use crate::metrics::PolicyRef;
use crate::policy::{RolloutSpec, Timestamp};

/// Why a policy's queries cannot start a rollout.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// Prometheus did not answer (refused, reset, timed out): the world is at fault.
    /// (Shown inside "cannot start the local rollout of {policy}: …", so the message
    /// does not repeat the policy.)
    #[error("{message}; start Prometheus or fix spec.analysis.prometheus.address, then run again (nothing was changed)")]
    PrometheusUnavailable { policy: String, message: String },
    /// A query can never give a number: the policy is at fault.
    #[error("{policy}: spec.analysis.metrics[{index}] `{metric}` ({side}): {message} (nothing was changed; run again once the query is fixed)")]
    InvalidQuery {
        policy: String,
        index: usize,
        metric: String,
        side: &'static str,
        message: String,
    },
    /// The connection itself cannot be set up from the policy (address, credentials).
    #[error("{policy}: {message} (nothing was changed)")]
    InvalidConnection { policy: String, message: String },
}

/// A count query that answered with no series where series were expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightWarning {
    pub policy: String,
    pub index: usize,
    pub metric: String,
    /// `canary` or `stable`.
    pub side: &'static str,
    /// `requests`, `errors` or `buckets`.
    pub counts: &'static str,
    pub query: String,
}

impl std::fmt::Display for PreflightWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: spec.analysis.metrics[{}] `{}` ({}): the {} count query returned no series: `{}`; its comparison stays Inconclusive until it does (check that the {} target's series carry these labels)",
            self.policy, self.index, self.metric, self.side, self.counts, self.query, self.side
        )
    }
}

impl PreflightError {
    /// Whether the policy (not the world) is at fault.
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, PreflightError::PrometheusUnavailable { .. })
    }

    pub fn reason(&self) -> &'static str {
        match self {
            PreflightError::PrometheusUnavailable { .. } => "PrometheusUnavailable",
            PreflightError::InvalidQuery { .. } => "InvalidQuery",
            PreflightError::InvalidConnection { .. } => "PrometheusAddressInvalid",
        }
    }
}

/// Asks every query of `spec` once, at `at`. Ok when each answered with a number or no
/// data, with a warning per count query that had no series where it should; the first
/// unreachable answer or invalid query otherwise.
pub async fn probe_queries(
    source: &PrometheusSource,
    policy: &PolicyRef,
    spec: &RolloutSpec,
    at: Timestamp,
) -> Result<Vec<PreflightWarning>, PreflightError> {
    let label = format!("{}/{}", policy.namespace, policy.name);
    let mut warnings = Vec::new();
    if spec.analysis.metrics.is_empty() {
        return Ok(warnings);
    }
    let connection = source
        .connect_for(policy, spec.analysis.prometheus.as_deref())
        .await
        .map_err(|e| PreflightError::InvalidConnection {
            policy: label.clone(),
            message: e.to_string(),
        })?;
    let queries = PolicyQueries::plan(policy, spec);
    let mut sides: Vec<(usize, &str, &'static str, &SideQueries)> = Vec::new();
    for (index, metric) in queries.metrics.iter().enumerate() {
        sides.push((index, &metric.name, "canary", &metric.canary));
        if let Some(stable) = &metric.stable {
            sides.push((index, &metric.name, "stable", stable));
        }
    }
    for (index, metric, side, queries_of_side) in sides {
        let invalid = |message: String| PreflightError::InvalidQuery {
            policy: label.clone(),
            index,
            metric: metric.to_owned(),
            side,
            message,
        };
        let (value, requests, errors, buckets) = match queries_of_side {
            SideQueries::Failed(message) => return Err(invalid(message.clone())),
            SideQueries::Ready {
                value,
                requests,
                errors,
                buckets,
                ..
            } => (value, requests, errors, buckets),
        };
        let asked = [
            ("value", Some(value)),
            ("requests", requests.as_ref()),
            ("errors", errors.as_ref()),
            ("buckets", buckets.as_ref()),
        ];
        let mut side_serves = side == "stable";
        for (what, query) in asked {
            let Some(query) = query else { continue };
            // Histogram queries answer one series per `le`.
            let sample = match what {
                "buckets" => connection.query_histogram(query, at).await,
                _ => connection.query(query, at).await,
            };
            match sample {
                Sample::Value(_) | Sample::NotANumber if what == "value" => side_serves = true,
                // `say_what_is_selected` warns about request counts already.
                Sample::NoData if !matches!(what, "value" | "requests") && side_serves => warnings
                    .push(PreflightWarning {
                        policy: label.clone(),
                        index,
                        metric: metric.to_owned(),
                        side,
                        counts: what,
                        query: query.clone(),
                    }),
                Sample::Value(_) | Sample::NoData | Sample::NotANumber => {}
                Sample::Unreachable { message } => {
                    return Err(PreflightError::PrometheusUnavailable {
                        policy: label.clone(),
                        message,
                    })
                }
                Sample::TimedOut => {
                    return Err(PreflightError::PrometheusUnavailable {
                        policy: label.clone(),
                        message: format!(
                            "prometheus at {} did not answer query `{query}` within {}",
                            spec.analysis
                                .prometheus
                                .as_ref()
                                .and_then(|p| p.address.as_deref())
                                .map_or_else(|| "(default)".into(), crate::redact::urls),
                            spec.analysis.prometheus.as_ref().map_or_else(
                                || "its timeout".to_owned(),
                                |p| p.timeout.to_string()
                            )
                        ),
                    })
                }
                Sample::Invalid { message } => return Err(invalid(message)),
            }
        }
    }
    say_what_is_selected(&connection, policy, spec, &queries, at).await;
    Ok(warnings)
}

/// Logs which labels the queries select, and warns about each request count that finds
/// no series at all (a label that matches nothing: every evaluation would be
/// Inconclusive). Warnings only: the canary may have had no traffic yet.
async fn say_what_is_selected(
    connection: &crate::metrics::prometheus::Connection,
    policy: &PolicyRef,
    spec: &RolloutSpec,
    queries: &PolicyQueries,
    at: Timestamp,
) {
    let (namespace, name) = (&policy.namespace, &policy.name);
    for line in crate::metrics::selection::describe(policy, spec) {
        tracing::info!(%namespace, %name, "{line}");
    }
    let mut asked = std::collections::HashSet::new();
    for metric in &queries.metrics {
        let sides = [
            ("canary", Some(&metric.canary)),
            ("stable", metric.stable.as_ref()),
        ];
        for (side, queries_of_side) in sides {
            let Some(SideQueries::Ready {
                requests: Some(requests),
                ..
            }) = queries_of_side
            else {
                continue;
            };
            if !asked.insert(requests.clone()) {
                continue;
            }
            if matches!(connection.query(requests, at).await, Sample::NoData) {
                tracing::warn!(
                    %namespace, %name, metric = %metric.name, side,
                    "no series match `{requests}`: check the labels it selects (spec.analysis.targetLabels){}",
                    if side == "canary" { ", or the canary has had no traffic yet" } else { "" }
                );
            }
        }
    }
}
