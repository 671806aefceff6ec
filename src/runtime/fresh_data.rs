//! Evaluations timed to new data: each rollout in analysis wakes just after a scrape
//! of its canary's requests rather than wherever its interval happens to fall, and,
//! while its canary fails, at every new scrape. The scrape phase is asked of the metric
//! source when a rollout is first seen in analysis and again every [`RELEARN`] (not per
//! evaluation; the Prometheus source shares what it learns between the rollouts of a
//! group, see `metrics::freshness`); the decision itself is the pure
//! [`scheduler::wake_for_evaluation`]. Used by `run` and by the daemon.

use std::collections::HashMap;
use std::sync::Mutex;

pub use crate::metrics::freshness::RELEARN;
use crate::metrics::freshness::{ScrapePhase, JOIN_WAIT};
use crate::metrics::{MetricSource, PolicyRef};
use crate::policy::{Phase, RolloutSpec, RolloutStatus, Timestamp};
use crate::runtime::scheduler;

/// The phases learned so far, per policy.
#[derive(Debug, Default)]
pub struct FreshData {
    learned: Mutex<HashMap<PolicyRef, (Timestamp, Option<ScrapePhase>)>>,
}

impl FreshData {
    /// `wake_at` moved to just after the scrape around it when the rollout is being
    /// analysed (to the next scrape during a failing trend); otherwise `wake_at`
    /// unchanged.
    pub async fn wake_at(
        &self,
        source: &dyn MetricSource,
        policy: &PolicyRef,
        spec: &RolloutSpec,
        status: &RolloutStatus,
        wake_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Option<Timestamp> {
        let wake = wake_at?;
        if status.phase != Phase::Progressing || spec.analysis.metrics.is_empty() {
            return Some(wake);
        }
        let known = self.known(policy, now);
        let phase = match known {
            Some(phase) => phase,
            None => {
                let phase = source.scrape_phase(policy, spec, now).await;
                if let Ok(mut learned) = self.learned.lock() {
                    learned.insert(policy.clone(), (now, phase));
                }
                phase
            }
        };
        let interval = crate::engine::plan::to_chrono(spec.analysis.interval);
        let failing = status
            .last_evaluation_at
            .filter(|_| crate::engine::cadence::failing_trend(status));
        Some(scheduler::wake_for_evaluation(
            wake,
            phase.as_ref(),
            interval,
            failing,
        ))
    }

    /// What is known of `policy`'s phase at `now`: `None` when it must be (re)learned.
    /// A phase is kept for [`RELEARN`]; not knowing one only for [`JOIN_WAIT`] (the
    /// source may learn it with its group's next query).
    fn known(&self, policy: &PolicyRef, now: Timestamp) -> Option<Option<ScrapePhase>> {
        let learned = self.learned.lock().ok()?;
        let (at, phase) = learned.get(policy)?;
        let keep = if phase.is_some() { RELEARN } else { JOIN_WAIT };
        let fresh = now.signed_duration_since(*at).abs().lt(&keep);
        fresh.then_some(*phase)
    }

    pub fn forget(&self, policy: &PolicyRef) {
        if let Ok(mut learned) = self.learned.lock() {
            learned.remove(policy);
        }
    }
}
