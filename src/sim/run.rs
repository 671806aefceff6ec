//! Runs a policy against a scenario: the real engine and reconciler, the in-memory
//! router and store, scripted metrics and checks, on a virtual clock. Deterministic:
//! the same policy, scenario and seed give the same timeline.

use std::sync::Arc;

use serde::Serialize;

use crate::engine::plan::{later, to_chrono};
use crate::engine::{Plan, PlanError, Transition};
use crate::metrics::scripted::{MetricScript, ScriptedMetrics};
use crate::metrics::{MetricSource, PolicyRef};
use crate::policy::status::{AnalysisSummary, CheckResult, Phase};
use crate::policy::{Duration, RolloutSpec, RolloutStatus, Timestamp};
use crate::router::memory::{MemoryRouter, RouterFaults};
use crate::router::ManagedRoute;
use crate::runtime::checks::ScriptedChecks;
use crate::runtime::hooks::{Hooks, ScriptedHooks};
use crate::runtime::{QueuedCommands, Reconciler, Seams, VirtualClock};
use crate::sim::noisy_source::{DrawnScrape, NoisyMetrics, NoisyWorld};
use crate::sim::scenario::{Outcome, RouterFaultKind, Scenario};
use crate::store::memory::MemoryStore;

/// Smallest step of virtual time, so a tick that asks to run "now" again still moves on.
const MIN_ADVANCE: chrono::Duration = chrono::Duration::milliseconds(100);

/// One tick in which something happened.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    /// Offset from the start.
    pub at: Duration,
    pub phase: Phase,
    /// 1-based step number.
    pub step: u32,
    /// The live canary weight after the tick.
    pub canary_weight: u8,
    /// The live route as the tick found it (after the world's scripted changes), so a
    /// sweep can tell what each write moved; not part of the report.
    #[serde(skip)]
    pub live_before: WriteRecord,
    pub test_route: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<WriteRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSummary>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
    /// Hook answers new in this tick.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<crate::policy::HookResult>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// The status message when the phase changed without an announced transition
    /// (e.g. Waiting for a window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WriteRecord {
    pub canary_weight: u8,
    pub test_route: bool,
}

impl From<ManagedRoute> for WriteRecord {
    fn from(r: ManagedRoute) -> Self {
        WriteRecord {
            canary_weight: r.canary_weight,
            test_route: r.test_route,
        }
    }
}

/// The result of a simulation.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SimReport {
    pub policy: String,
    pub revision: String,
    pub scenario: String,
    pub seed: u64,
    pub outcome: Outcome,
    /// Offset at which the outcome was reached (or the simulation stopped).
    pub elapsed: Duration,
    pub ticks: u64,
    pub timeline: Vec<TimelineEntry>,
    pub status: RolloutStatus,
    /// Why the expectation was not met; empty when met or when there is none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expectation_failures: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// The simulation's metric source: scripted values, or a traffic model's draws.
#[derive(Clone)]
enum SimMetrics {
    Scripted(Arc<ScriptedMetrics>),
    Noisy(Arc<NoisyMetrics>),
    External(Arc<dyn MetricSource>),
}

impl SimMetrics {
    fn new(scenario: &Scenario, router: &Arc<MemoryRouter>, seed: u64) -> SimMetrics {
        match scenario.traffic.model() {
            Some(traffic) => SimMetrics::Noisy(Arc::new(NoisyMetrics::new(NoisyWorld::new(
                scenario.start,
                traffic,
                scenario.metrics.clone(),
                scenario.outages.clone(),
                router.clone(),
                seed,
            )))),
            None => {
                let script = MetricScript {
                    start: scenario.start,
                    traffic: scenario.traffic.scripted(),
                    metrics: scenario.metrics.clone(),
                    outages: scenario.outages.clone(),
                };
                SimMetrics::Scripted(Arc::new(ScriptedMetrics::new(script, router.clone(), seed)))
            }
        }
    }

    fn source(&self) -> Arc<dyn MetricSource> {
        match self {
            SimMetrics::Scripted(s) => s.clone(),
            SimMetrics::Noisy(n) => n.clone(),
            SimMetrics::External(source) => source.clone(),
        }
    }
}

/// A running simulation. `tick` one at a time, or `run` to the end.
pub struct Simulation {
    policy: PolicyRef,
    spec: RolloutSpec,
    scenario: Scenario,
    seed: u64,
    clock: Arc<VirtualClock>,
    router: Arc<MemoryRouter>,
    store: Arc<MemoryStore>,
    checks: Arc<ScriptedChecks>,
    /// Scripted hook answers (`hookFailures`), called inline: deterministic.
    hooks: Arc<ScriptedHooks>,
    hook_calls: Arc<Hooks>,
    commands: Arc<QueuedCommands>,
    metrics: SimMetrics,
    reconciler: Reconciler,
    commands_sent: usize,
    drift_applied: usize,
    restarts_done: usize,
    ticks: u64,
    timeline: Vec<TimelineEntry>,
    status: RolloutStatus,
    done: bool,
}

impl Simulation {
    pub fn new(
        policy: PolicyRef,
        spec: RolloutSpec,
        scenario: Scenario,
        seed: u64,
    ) -> Result<Simulation, SimError> {
        Self::build(policy, spec, scenario, seed, None)
    }

    /// A simulation whose metrics come from `source` instead of the scenario (a
    /// backtest: a real Prometheus queried at each virtual instant). The scenario still
    /// scripts the rest of the world (start, maxDuration, commands, faults).
    pub fn with_source(
        policy: PolicyRef,
        spec: RolloutSpec,
        scenario: Scenario,
        source: Arc<dyn MetricSource>,
    ) -> Result<Simulation, SimError> {
        Self::build(policy, spec, scenario, 0, Some(source))
    }

    fn build(
        policy: PolicyRef,
        spec: RolloutSpec,
        scenario: Scenario,
        seed: u64,
        source: Option<Arc<dyn MetricSource>>,
    ) -> Result<Simulation, SimError> {
        let initial = ManagedRoute {
            canary_weight: scenario.initial.canary_weight,
            test_route: scenario.initial.test_route,
        };
        // With colours, `initial` is the share of the second colour (alphabetically):
        // the spec is oriented as a run would, and the live route with it.
        let (spec, initial) = match crate::engine::colours::resolve(&spec, None, Some(initial)) {
            Some(choice) => {
                let [first, _] =
                    crate::policy::colours::colour_names(&spec.router).unwrap_or_default();
                let oriented = crate::policy::colours::orient(&spec, &choice.stable);
                let route = if choice.stable == first {
                    initial
                } else {
                    ManagedRoute {
                        canary_weight: 100 - initial.canary_weight.min(100),
                        test_route: false,
                    }
                };
                (oriented.unwrap_or(spec), route)
            }
            None => (spec, initial),
        };
        Plan::new(&spec)?;
        let clock = Arc::new(VirtualClock::new(scenario.start));
        let router = Arc::new(MemoryRouter::new(initial));
        let store = Arc::new(MemoryStore::default());
        let checks = Arc::new(ScriptedChecks::passing());
        let commands = Arc::new(QueuedCommands::default());
        let metrics = match source {
            Some(source) => SimMetrics::External(source),
            None => SimMetrics::new(&scenario, &router, seed),
        };
        let hooks = Arc::new(ScriptedHooks::default());
        let hook_calls = Hooks::inline(hooks.clone());
        let reconciler = Self::reconciler(&clock, &router, &store, &checks, &commands, &metrics)
            .with_hooks(hook_calls.clone());
        Ok(Simulation {
            policy,
            spec,
            scenario,
            seed,
            clock,
            router,
            store,
            checks,
            hooks,
            hook_calls,
            commands,
            metrics,
            reconciler,
            commands_sent: 0,
            drift_applied: 0,
            restarts_done: 0,
            ticks: 0,
            timeline: Vec::new(),
            status: RolloutStatus::default(),
            done: false,
        })
    }

    fn reconciler(
        clock: &Arc<VirtualClock>,
        router: &Arc<MemoryRouter>,
        store: &Arc<MemoryStore>,
        checks: &Arc<ScriptedChecks>,
        commands: &Arc<QueuedCommands>,
        metrics: &SimMetrics,
    ) -> Reconciler {
        Reconciler::new(Seams {
            router: router.clone(),
            metrics: metrics.source(),
            store: store.clone(),
            checks: checks.clone(),
            commands: commands.clone(),
            clock: clock.clone(),
        })
    }

    pub fn now(&self) -> Timestamp {
        use crate::runtime::Clock;
        self.clock.now()
    }

    fn offset(&self) -> Duration {
        Duration::from(
            (self.now() - self.scenario.start)
                .to_std()
                .unwrap_or_default(),
        )
    }

    pub fn router(&self) -> &MemoryRouter {
        &self.router
    }

    pub fn status(&self) -> &RolloutStatus {
        &self.status
    }

    /// The state a restart would find in the store right now.
    pub fn stored_status(&self) -> Option<RolloutStatus> {
        self.store
            .document(&self.policy)
            .and_then(|doc| serde_json::from_str(&doc).ok())
    }

    pub fn timeline(&self) -> &[TimelineEntry] {
        &self.timeline
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Simulates a crash and restart: the stored document is all that survives. The
    /// store is rebuilt from its JSON and a fresh reconciler takes over.
    pub fn restart(&mut self) {
        let store = Arc::new(MemoryStore::default());
        if let Some(document) = self.store.document(&self.policy) {
            store.restore(&self.policy, document);
        }
        self.store = store;
        self.reconciler = Self::reconciler(
            &self.clock,
            &self.router,
            &self.store,
            &self.checks,
            &self.commands,
            &self.metrics,
        )
        .with_hooks(self.hook_calls.clone());
    }

    /// The traffic model's scrapes drawn so far (empty without a model), e.g. to write
    /// them as Prometheus history for a backtest.
    pub fn scrapes(&self) -> Vec<DrawnScrape> {
        match &self.metrics {
            SimMetrics::Noisy(n) => n.scrapes(),
            SimMetrics::Scripted(_) | SimMetrics::External(_) => Vec::new(),
        }
    }

    /// Applies what the scenario scripts for the current instant.
    fn apply_world(&mut self) {
        let offset = self.offset();
        // Scrapes up to now served the route as it was since the last tick: draw them
        // before anything scripted for this instant changes it.
        if let SimMetrics::Noisy(n) = &self.metrics {
            n.advance_to(self.now());
        }
        let mut faults = RouterFaults::default();
        for fault in self
            .scenario
            .router_faults
            .iter()
            .filter(|f| covers(f.from, f.until, offset))
        {
            match fault.kind {
                RouterFaultKind::Conflict => faults.conflict = true,
                RouterFaultKind::Unavailable => faults.unavailable = true,
                RouterFaultKind::LostConfirmation => faults.lose_confirmation = true,
                RouterFaultKind::Unreadable => faults.unreadable = true,
            }
        }
        self.router.set_faults(faults);
        let failing = self
            .scenario
            .check_failures
            .iter()
            .find(|p| p.covers(offset));
        self.checks.set_failing(failing.map(|p| {
            p.message
                .clone()
                .unwrap_or_else(|| "503 Service Unavailable, expected 200 (scripted)".to_owned())
        }));
        super::hook_failures::apply(&self.scenario.hook_failures, offset, &self.hooks);
        self.store.set_failing(
            self.scenario
                .store_failures
                .iter()
                .any(|p| p.covers(offset)),
        );
        while let Some(drift) = self.scenario.drift.get(self.drift_applied) {
            if drift.at > offset {
                break;
            }
            self.router.set_external(ManagedRoute {
                canary_weight: drift.canary_weight,
                test_route: drift.test_route,
            });
            self.drift_applied += 1;
        }
        while let Some(command) = self.scenario.commands.get(self.commands_sent) {
            if command.at > offset {
                break;
            }
            let revision = command.revision.as_deref().unwrap_or(&self.spec.revision);
            self.commands
                .push(&self.policy, command.command, Some(revision));
            self.commands_sent += 1;
        }
        while let Some(restart) = self.scenario.restarts.get(self.restarts_done) {
            if *restart > offset {
                break;
            }
            self.restart();
            self.restarts_done += 1;
        }
    }

    /// Runs one reconcile tick and moves the virtual clock to the next wake-up. Returns
    /// false when the simulation is over.
    pub fn tick(&mut self) -> bool {
        futures::executor::block_on(self.tick_async())
    }

    /// [`Self::tick`] for a metric source that needs an async runtime (a real
    /// Prometheus, in a backtest): awaits the reconciler instead of blocking on it.
    pub async fn tick_async(&mut self) -> bool {
        if self.done {
            return false;
        }
        self.apply_world();
        let at = self.offset();
        let live_before = WriteRecord::from(self.router.route());
        let result = self.reconciler.tick(&self.policy, &self.spec).await;
        self.ticks += 1;
        let live = self.router.route();
        let phase_before = self.status.phase;
        let refused_before = crate::engine::refused_live_canary(&self.status);
        let (wake_at, mut entry) = match result {
            Ok(outcome) => {
                let hooks_before = std::mem::take(&mut self.status.last_hooks);
                self.status = outcome.status.clone();
                let entry = TimelineEntry {
                    at,
                    phase: outcome.status.phase,
                    step: outcome.status.step.saturating_add(1),
                    canary_weight: live.canary_weight,
                    live_before,
                    test_route: live.test_route,
                    writes: outcome.writes.iter().map(|w| (*w).into()).collect(),
                    analysis: outcome
                        .evaluated
                        .then(|| outcome.status.last_analysis.clone())
                        .flatten(),
                    checks: if outcome.checked {
                        outcome.status.last_checks.clone()
                    } else {
                        Vec::new()
                    },
                    hooks: outcome
                        .status
                        .last_hooks
                        .iter()
                        .filter(|h| !hooks_before.contains(h))
                        .cloned()
                        .collect(),
                    transitions: outcome.transitions.clone(),
                    problems: outcome
                        .problems
                        .iter()
                        .map(|p| format!("{}: {}", p.reason, p.message))
                        .collect(),
                    note: None,
                };
                (outcome.wake_at, entry)
            }
            Err(e) => {
                let entry = TimelineEntry {
                    at,
                    phase: self.status.phase,
                    step: self.status.step.saturating_add(1),
                    canary_weight: live.canary_weight,
                    live_before,
                    test_route: live.test_route,
                    writes: Vec::new(),
                    analysis: None,
                    checks: Vec::new(),
                    hooks: Vec::new(),
                    transitions: Vec::new(),
                    problems: vec![format!("{}: {e}", e.reason())],
                    note: None,
                };
                let retry = crate::engine::plan::to_chrono(crate::engine::plan::RETRY_DELAY);
                (Some(crate::engine::plan::later(self.now(), retry)), entry)
            }
        };
        let refused = !refused_before && crate::engine::refused_live_canary(&self.status);
        if (entry.phase != phase_before || refused) && entry.transitions.is_empty() {
            entry.note = self
                .status
                .reason
                .as_ref()
                .map(|r| format!("{r}: {}", self.status.message.clone().unwrap_or_default()));
        }
        let interesting = entry.note.is_some()
            || !entry.writes.is_empty()
            || entry.analysis.is_some()
            || !entry.checks.is_empty()
            || !entry.hooks.is_empty()
            || !entry.transitions.is_empty()
            || !entry.problems.is_empty();
        if interesting {
            self.timeline.push(entry);
        }
        // Only `undo` (after a promotion) and `retry` (after a rollback or an abort) act
        // after the end: one still to come keeps the simulation going until it is sent.
        let to_come =
            &self.scenario.commands[self.commands_sent.min(self.scenario.commands.len())..];
        let acts_after_end = |c: &crate::sim::scenario::TimedCommand| match c.command {
            crate::engine::Command::Undo => self.status.phase == crate::policy::Phase::Promoted,
            crate::engine::Command::Retry => matches!(
                self.status.phase,
                crate::policy::Phase::RolledBack | crate::policy::Phase::Aborted
            ),
            _ => false,
        };
        let undo_to_come = to_come.iter().any(acts_after_end);
        if self.status.is_settled() && !undo_to_come {
            self.done = true;
            return false;
        }
        let now = self.now();
        let next_event = self
            .scenario
            .event_offsets()
            .into_iter()
            .map(|o| later(self.scenario.start, to_chrono(o)))
            .find(|t| *t > now);
        let next = match (wake_at, next_event) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => {
                    self.done = true;
                    return false;
                }
            },
        };
        let end = later(self.scenario.start, to_chrono(self.scenario.max_duration));
        let next = next.max(later(now, MIN_ADVANCE));
        if next > end {
            self.done = true;
            return false;
        }
        self.clock.set(next);
        true
    }

    /// Runs to the end and reports.
    pub fn run(mut self) -> SimReport {
        while self.tick() {}
        self.report()
    }

    pub fn report(&self) -> SimReport {
        let outcome = outcome_of(&self.status);
        let elapsed = self.offset();
        let mut failures = Vec::new();
        if let Some(expect) = &self.scenario.expect {
            if expect.outcome != outcome {
                failures.push(format!(
                    "expected outcome {}, got {}",
                    expect.outcome.as_str(),
                    outcome.as_str()
                ));
            }
            if let Some(within) = expect.within {
                if elapsed > within {
                    failures.push(format!("expected within {within}, took {elapsed}"));
                }
            }
            if let Some(reason) = &expect.reason {
                let reasons: Vec<&str> = self
                    .timeline
                    .iter()
                    .flat_map(|e| e.transitions.iter().map(|t| t.reason.as_str()))
                    .chain(self.status.history.iter().map(|h| h.reason.as_str()))
                    .collect();
                let mut reasons = reasons;
                reasons.dedup();
                if !reasons.contains(&reason.as_str()) {
                    failures.push(format!(
                        "expected reason {reason}, saw {}",
                        reasons.join(", ")
                    ));
                }
            }
        }
        SimReport {
            policy: format!("{}/{}", self.policy.namespace, self.policy.name),
            revision: self.spec.revision.clone(),
            scenario: self.scenario.metadata.name.clone(),
            seed: self.seed,
            outcome,
            elapsed,
            ticks: self.ticks,
            timeline: self.timeline.clone(),
            status: self.status.clone(),
            expectation_failures: failures,
        }
    }
}

fn covers(from: Duration, until: Option<Duration>, offset: Duration) -> bool {
    offset >= from && until.is_none_or(|u| offset < u)
}

/// How a status reads as an outcome.
pub fn outcome_of(status: &RolloutStatus) -> Outcome {
    match status.phase {
        Phase::Promoted if status.target.is_none() => Outcome::Promoted,
        Phase::RolledBack => Outcome::RolledBack,
        Phase::Aborted if status.target.is_none() => Outcome::Aborted,
        Phase::Held => Outcome::Held,
        Phase::Paused => Outcome::Paused,
        _ if crate::engine::refused_live_canary(status) => Outcome::Refused,
        _ => Outcome::Unfinished,
    }
}
