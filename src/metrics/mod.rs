//! Metric sources: where analysis inputs come from.

pub mod auth;
pub mod batch;
mod batch_plan;
pub mod builtin;
pub mod escape;
pub mod freshness;
pub mod grouping;
pub mod histogram;
pub mod matchers;
pub mod prometheus;
mod prometheus_answer;
pub mod providers;
pub mod queries;
pub mod scripted;
pub mod secrets;
pub mod selection;
pub mod template;
pub mod variables;

use async_trait::async_trait;

use crate::analysis::sample::AnalysisInput;
use crate::policy::{RolloutSpec, Timestamp};

/// Identifies the policy whose metrics are queried (template variables `namespace`, `name`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PolicyRef {
    pub namespace: String,
    pub name: String,
}

/// Runs a policy's metric queries. Never fails as a whole: every failure is a `Sample`
/// (unreachable, timed out, invalid) so the analysis can call it Inconclusive.
#[async_trait]
pub trait MetricSource: Send + Sync {
    /// Whether this source may serve `spec` for `policy`, decided before anything is read
    /// or sent; the daemon refuses a policy that is not admitted (Accepted=False).
    /// Default: every policy.
    fn admit(
        &self,
        _policy: &PolicyRef,
        _spec: &RolloutSpec,
    ) -> Result<(), providers::AccessError> {
        Ok(())
    }

    /// Runs the queries at `at`. With `counts_since`, every compared metric's counts
    /// (`Measured.requests`/`errors`, `buckets`) are those of exactly
    /// [`counts_since`, `at`] per target, for the sequential judges; without it, those
    /// of the query window.
    async fn observe(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
        at: Timestamp,
        counts_since: Option<Timestamp>,
    ) -> AnalysisInput;

    /// When new samples of the canary's requests land (learned from their timestamps
    /// at `at`), so evaluations can run just after a scrape. One query, asked rarely
    /// (see `runtime::scheduler::after_fresh_data`). Default: unknown.
    async fn scrape_phase(
        &self,
        _policy: &PolicyRef,
        _spec: &RolloutSpec,
        _at: Timestamp,
    ) -> Option<freshness::ScrapePhase> {
        None
    }

    /// The policy was deleted: drop whatever is kept for it, so a daemon whose policies
    /// come and go holds only the living ones. Default: nothing is kept.
    fn forget(&self, _policy: &PolicyRef) {}
}
