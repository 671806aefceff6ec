//! Evaluations timed to new data: each rollout in analysis wakes just after a scrape
//! of its canary's requests rather than wherever its interval happens to fall. The
//! scrape phase is learned with one query when a rollout is first seen in analysis and
//! again every [`RELEARN`] (not per evaluation: a healthy rollout costs Prometheus the
//! same queries per interval); the decision itself is the pure
//! [`scheduler::after_fresh_data`]. Used by `run` and by the daemon.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::metrics::freshness::ScrapePhase;
use crate::metrics::{MetricSource, PolicyRef};
use crate::policy::{Phase, RolloutSpec, RolloutStatus, Timestamp};
use crate::runtime::scheduler;

/// How long a learned phase (or the failure to learn one) is kept. Prometheus keeps a
/// target's scrape offset for as long as it runs, so this only catches restarts.
pub const RELEARN: chrono::Duration = chrono::Duration::minutes(5);

/// The phases learned so far, per policy.
#[derive(Debug, Default)]
pub struct FreshData {
    learned: Mutex<HashMap<PolicyRef, (Timestamp, Option<ScrapePhase>)>>,
}

impl FreshData {
    /// `wake_at` moved to just after the scrape around it when the rollout is being
    /// analysed; otherwise `wake_at` unchanged.
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
        Some(scheduler::after_fresh_data(wake, phase.as_ref(), interval))
    }

    /// What is known of `policy`'s phase at `now`: `None` when it must be (re)learned.
    fn known(&self, policy: &PolicyRef, now: Timestamp) -> Option<Option<ScrapePhase>> {
        let learned = self.learned.lock().ok()?;
        let (at, phase) = learned.get(policy)?;
        let fresh = now.signed_duration_since(*at).abs().lt(&RELEARN);
        fresh.then_some(*phase)
    }

    pub fn forget(&self, policy: &PolicyRef) {
        if let Ok(mut learned) = self.learned.lock() {
            learned.remove(policy);
        }
    }
}
