//! A policy compiled once for the engine: steps, analysis, windows, reactions. Compiling
//! checks the invariants the engine relies on, so `step` never has to.

use crate::engine::live_colour::DestinationNames;
use crate::policy::window::Windows;
use crate::policy::{
    AnalysisSpec, Duration, OnDrift, OnFailure, OnInconclusive, RolloutSpec, StepSpec, Timestamp,
};

/// How soon to look again when a write or a read is outstanding.
pub const RETRY_DELAY: Duration = Duration::from_secs(5);

/// How early an evaluation may run: 100 ms, or a tenth of a shorter interval. Lets the
/// runtime start it just after a scrape that lands a little before its due time, so
/// evaluations keep that phase instead of drifting later by each tick's latency
/// (`runtime::scheduler::after_fresh_data`). Waking is still asked for at the due time.
pub fn evaluation_slack(interval: chrono::Duration) -> chrono::Duration {
    (interval / 10).min(chrono::Duration::milliseconds(100))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("spec.steps is empty; list the canary weights, e.g. `steps: [0, 30, 60, 100]`")]
    NoSteps,
    #[error("spec.steps[{index}] is {weight}%: a weight is at most 100")]
    WeightAbove100 { index: usize, weight: u8 },
    #[error("spec.steps[{index}] is {weight}% after {previous}%: weights must increase")]
    NotIncreasing {
        index: usize,
        weight: u8,
        previous: u8,
    },
    #[error(
        "the last of spec.steps is {weight}%: a rollout ends at 100; add 100 as the last step"
    )]
    LastNotFull { weight: u8 },
    #[error("spec.checks run before traffic moves, but spec.steps[0] is {weight}%; start the steps at 0")]
    ChecksNeedZeroStep { weight: u8 },
    #[error("spec.analysis.interval is 0s; give an evaluation cadence such as `30s`")]
    ZeroInterval,
    #[error("spec.windows is invalid: {0}; run `shiftgate validate` for every problem")]
    Windows(String),
}

impl PlanError {
    pub fn reason(&self) -> &'static str {
        "InvalidPolicy"
    }

    pub fn is_transient(&self) -> bool {
        false
    }
}

/// The policy as the engine uses it.
#[derive(Clone, Debug)]
pub struct Plan {
    revision: String,
    steps: Vec<StepSpec>,
    analysis: AnalysisSpec,
    test_route: bool,
    has_checks: bool,
    windows: Windows,
    on_failure: OnFailure,
    on_drift: OnDrift,
    names: DestinationNames,
    workloads: Option<crate::policy::workloads::WorkloadsSpec>,
    /// `(stable, canary)` colours of a spec oriented by `runtime::colours`.
    colours: Option<(String, String)>,
    /// The phases at which at least one hook is called.
    hook_phases: std::collections::BTreeSet<crate::policy::HookPhase>,
}

impl Plan {
    pub fn new(spec: &RolloutSpec) -> Result<Plan, PlanError> {
        let Some(last) = spec.steps.last() else {
            return Err(PlanError::NoSteps);
        };
        for (index, step) in spec.steps.iter().enumerate() {
            if step.weight > 100 {
                return Err(PlanError::WeightAbove100 {
                    index,
                    weight: step.weight,
                });
            }
            if index > 0 && step.weight <= spec.steps[index - 1].weight {
                return Err(PlanError::NotIncreasing {
                    index,
                    weight: step.weight,
                    previous: spec.steps[index - 1].weight,
                });
            }
        }
        if last.weight != 100 {
            return Err(PlanError::LastNotFull {
                weight: last.weight,
            });
        }
        if !spec.checks.is_empty() && spec.steps[0].weight != 0 {
            return Err(PlanError::ChecksNeedZeroStep {
                weight: spec.steps[0].weight,
            });
        }
        if spec.analysis.interval == Duration::ZERO {
            return Err(PlanError::ZeroInterval);
        }
        let windows = Windows::compile(&spec.windows).map_err(|issues| {
            PlanError::Windows(
                issues
                    .iter()
                    .map(|i| format!("{}: {}", i.path, i.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        Ok(Plan {
            revision: spec.revision.clone(),
            steps: spec.steps.clone(),
            analysis: spec.analysis.clone(),
            test_route: spec.test_route.is_some(),
            has_checks: !spec.checks.is_empty(),
            windows,
            on_failure: spec.on_failure,
            on_drift: spec.on_drift,
            names: DestinationNames::of(spec),
            workloads: spec.workloads.as_deref().cloned(),
            colours: crate::policy::colours::oriented_colours(&spec.router),
            hook_phases: spec
                .hooks
                .iter()
                .flat_map(|h| h.on.iter().copied())
                .collect(),
        })
    }

    pub fn revision(&self) -> &str {
        &self.revision
    }

    pub fn steps(&self) -> &[StepSpec] {
        &self.steps
    }

    /// The step at `index`, clamped to the last one (a stored index from an older spec
    /// with more steps must not panic).
    pub fn step(&self, index: u32) -> &StepSpec {
        let last = self.steps.len() - 1;
        &self.steps[(index as usize).min(last)]
    }

    pub fn last_index(&self) -> u32 {
        u32::try_from(self.steps.len() - 1).unwrap_or(u32::MAX)
    }

    pub fn analysis(&self) -> &AnalysisSpec {
        &self.analysis
    }

    pub fn interval(&self) -> chrono::Duration {
        to_chrono(self.analysis.interval)
    }

    pub fn hold(&self, index: u32) -> chrono::Duration {
        to_chrono(self.step(index).hold.unwrap_or(Duration::ZERO))
    }

    pub fn uses_test_route(&self) -> bool {
        self.test_route
    }

    /// Whether any hook is called at `phase`.
    pub fn has_hooks(&self, phase: crate::policy::HookPhase) -> bool {
        self.hook_phases.contains(&phase)
    }

    /// Whether a step at weight 0 is judged on the test route's traffic
    /// (`analysis.judgeTestRoute` with a test route): the canary's requests are all
    /// test-route requests, stable's are the rest.
    pub fn judges_test_route(&self) -> bool {
        self.test_route && self.analysis.judge_test_route
    }

    pub fn has_checks(&self) -> bool {
        self.has_checks
    }

    pub fn on_failure(&self) -> OnFailure {
        self.on_failure
    }

    pub fn on_inconclusive(&self) -> OnInconclusive {
        self.analysis.on_inconclusive
    }

    pub fn on_drift(&self) -> OnDrift {
        self.on_drift
    }

    /// The stable and canary destinations, for messages.
    pub(crate) fn destination_names(&self) -> &DestinationNames {
        &self.names
    }

    /// The Deployments behind the destinations (`spec.workloads`).
    pub fn workloads(&self) -> Option<&crate::policy::workloads::WorkloadsSpec> {
        self.workloads.as_ref()
    }

    /// `(stable, canary)` colours, for a policy with colours.
    pub fn colours(&self) -> Option<(&str, &str)> {
        self.colours.as_ref().map(|(s, c)| (s.as_str(), c.as_str()))
    }

    pub fn window_open(&self, now: Timestamp) -> bool {
        self.windows.is_open(now)
    }

    pub fn next_window_change(&self, now: Timestamp) -> Option<Timestamp> {
        self.windows.next_change(now)
    }
}

/// Policy durations are far below chrono's range; saturate instead of panicking.
pub fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d.std()).unwrap_or(chrono::Duration::MAX)
}

/// `at + by`, never panicking: a sum past the year 9999 (a corrupt stored time, or a
/// duration beyond every limit) is the last second of 9999, which RFC 3339 can still
/// write and which is never reached. All time arithmetic of rollouts goes through this.
pub fn later(at: Timestamp, by: chrono::Duration) -> Timestamp {
    let far_future = chrono::DateTime::from_timestamp(253_402_300_799, 0)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    at.checked_add_signed(by)
        .map_or(far_future, |sum| sum.min(far_future.max(at)))
}
