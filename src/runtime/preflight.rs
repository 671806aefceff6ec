//! Before a local rollout moves any traffic: every query of the policy is asked once.
//! An unreachable (or silent) Prometheus, a query Prometheus rejects (syntax error,
//! unknown function) and a query answering with several series are reported with the
//! policy and metric they belong to, and the run stops before any route is written.
//!
//! No data is fine here (the canary has had no traffic yet): only what cannot fix
//! itself, or what means the analysis could never see anything, stops a run. Once a
//! rollout runs, the same failures are Inconclusive evaluations, as the design says.

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
/// data; the first unreachable answer or invalid query otherwise.
pub async fn probe_queries(
    source: &PrometheusSource,
    policy: &PolicyRef,
    spec: &RolloutSpec,
    at: Timestamp,
) -> Result<(), PreflightError> {
    let label = format!("{}/{}", policy.namespace, policy.name);
    if spec.analysis.metrics.is_empty() {
        return Ok(());
    }
    let connection = source
        .connect_for(policy, spec.analysis.prometheus.as_ref())
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
        let (value, requests, errors) = match queries_of_side {
            SideQueries::Failed(message) => return Err(invalid(message.clone())),
            SideQueries::Ready {
                value,
                requests,
                errors,
                ..
            } => (value, requests, errors),
        };
        // Histogram (`buckets`) queries answer one series per `le`: not asked here.
        let asked = std::iter::once(value).chain(requests).chain(errors);
        for query in asked {
            match connection.query(query, at).await {
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
    Ok(())
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
