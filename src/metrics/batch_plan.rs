//! Which of an evaluation's queries may join a batch (see [`super::batch`]): those of
//! the built-in templates (instant vectors with no label of their own but `le`), and
//! the canary's request count when it comes from a built-in. Custom `query:` metrics
//! and `spec.analysis.requests` are the user's PromQL and run per rollout. Pure.

use std::collections::HashSet;

use super::queries::{PolicyQueries, SideQueries};
use crate::policy::RolloutSpec;

/// Whether an evaluation of `spec` may have a query to batch (a superset of
/// [`batchable`] being non-empty, known before the queries are written: they need the
/// batch's instant). Only such evaluations take an instant of the connection's
/// ([`super::batch::Batcher::reserve`]); the others query alone at their own.
pub fn may_batch(spec: &RolloutSpec) -> bool {
    spec.analysis.requests.is_none()
        || spec
            .analysis
            .metrics
            .iter()
            .any(|m| m.template.is_some() && m.query.is_none())
}

/// The queries of `queries` (planned from `spec`) that may be batched.
pub fn batchable(spec: &RolloutSpec, queries: &PolicyQueries) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut add = |side: &SideQueries| {
        if let SideQueries::Ready {
            value,
            requests,
            errors,
            buckets,
            ..
        } = side
        {
            for q in std::iter::once(value)
                .chain(requests)
                .chain(errors)
                .chain(buckets)
            {
                out.insert(q.clone());
            }
        }
    };
    // `plan_counting` keeps the metrics in the spec's order.
    for (metric, planned) in spec.analysis.metrics.iter().zip(&queries.metrics) {
        if metric.template.is_some() && metric.query.is_none() && metric.name == planned.name {
            add(&planned.canary);
            if let Some(stable) = &planned.stable {
                add(stable);
            }
        }
    }
    if spec.analysis.requests.is_none() {
        add(&queries.canary_requests);
    }
    out
}
