//! One reconcile tick for one policy: load the state, read the live route, step the
//! engine, run its actions in order, persist only what changed, and say when to wake.
//! Level-triggered: a tick never asks why it runs, and keeps nothing in memory between
//! ticks, so a restart at any instant continues exactly where the store and the router
//! say it is.

use std::sync::Arc;

use tracing::{info, warn};

use crate::engine::hooks::HookCall;
use crate::engine::{self, Action, Observation, Plan, PlanError, Transition, TransitionKind};
use crate::metrics::{MetricSource, PolicyRef};
use crate::policy::status::{RouteTarget, TargetPurpose, UnconfirmedWrite};
use crate::policy::{RolloutSpec, RolloutStatus, Timestamp};
use crate::router::{LiveRoute, ManagedRoute, RouterError, TrafficRouter};
use crate::runtime::checks::CheckRunner;
use crate::runtime::clock::Clock;
use crate::runtime::commands::CommandSource;
use crate::runtime::faults::{CrashPoint, FaultHook};
use crate::runtime::hooks::{default_hooks, Hooks};
use crate::runtime::release_presence::PreviousReleaseProbe;
use crate::runtime::workloads::Workloads;
use crate::store::{StateStore, StoreError};

/// Engine rounds per tick: metrics, checks, a write, its confirmation, a conflict or two.
const MAX_ROUNDS: usize = 8;

/// The seams one policy's reconciler drives.
#[derive(Clone)]
pub struct Seams {
    pub router: Arc<dyn TrafficRouter>,
    pub metrics: Arc<dyn MetricSource>,
    pub store: Arc<dyn StateStore>,
    pub checks: Arc<dyn CheckRunner>,
    pub commands: Arc<dyn CommandSource>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("policy {policy} cannot be run: {source}")]
    Plan {
        policy: String,
        #[source]
        source: PlanError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `spec.workloads` cannot be served: no cluster to read Deployments from
    /// (`transient: false`), or the canary's revision cannot be derived yet.
    #[error("policy {policy}: {message}")]
    Workloads {
        policy: String,
        message: String,
        transient: bool,
    },
    /// A fault hook ended the tick here, as a kill would (tests only).
    #[error("tick of {policy} crashed at {point:?} (injected fault)")]
    Crashed { policy: String, point: CrashPoint },
}

impl ReconcileError {
    pub fn reason(&self) -> &'static str {
        match self {
            ReconcileError::Plan { source, .. } => source.reason(),
            ReconcileError::Store(e) => e.reason(),
            ReconcileError::Workloads { .. } => "WorkloadsUnavailable",
            ReconcileError::Crashed { .. } => "InjectedCrash",
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            ReconcileError::Plan { .. } => false,
            ReconcileError::Store(e) => e.is_transient(),
            ReconcileError::Workloads { transient, .. } => *transient,
            ReconcileError::Crashed { .. } => true,
        }
    }
}

/// Something that went wrong in a tick without stopping it (the engine already knows
/// what to do about it: retry, or wait).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase constant.
    pub reason: &'static str,
    pub message: String,
}

/// What one tick did.
#[derive(Clone, Debug, PartialEq)]
pub struct TickOutcome {
    pub status: RolloutStatus,
    /// When to tick again; `None`: only a command or a spec change can change anything.
    pub wake_at: Option<Timestamp>,
    pub transitions: Vec<Transition>,
    /// Route writes the router confirmed, in order.
    pub writes: Vec<ManagedRoute>,
    /// Whether metrics were queried (and judged) in this tick.
    pub evaluated: bool,
    /// Whether the pre-traffic checks ran in this tick.
    pub checked: bool,
    pub problems: Vec<Problem>,
}

/// Drives one policy through its seams.
#[derive(Clone)]
pub struct Reconciler {
    seams: Seams,
    faults: Option<Arc<dyn FaultHook>>,
    /// `None`: the process-wide webhook caller (`hooks::default_hooks`).
    hooks: Option<Arc<Hooks>>,
    /// Reads and scales the Deployments of `spec.workloads` (a cluster only).
    workloads: Option<Arc<dyn Workloads>>,
    /// Looks at the previous stable release while an `undo` is pending.
    release_probe: Option<Arc<dyn PreviousReleaseProbe>>,
}

impl Reconciler {
    pub fn new(seams: Seams) -> Self {
        Reconciler {
            seams,
            faults: None,
            hooks: None,
            workloads: None,
            release_probe: None,
        }
    }

    /// Calls hooks through `hooks` (long-lived: it keeps the background hooks' answers
    /// for the next tick) instead of the process-wide webhook caller.
    pub fn with_hooks(mut self, hooks: Arc<Hooks>) -> Self {
        self.hooks = Some(hooks);
        self
    }

    /// Serves `spec.workloads` through these Deployments.
    pub fn with_workloads(mut self, workloads: Arc<dyn Workloads>) -> Self {
        self.workloads = Some(workloads);
        self
    }

    /// Looks at the previous stable release through `probe` before an `undo`.
    pub fn with_release_probe(mut self, probe: Arc<dyn PreviousReleaseProbe>) -> Self {
        self.release_probe = Some(probe);
        self
    }

    /// Installs a fault hook that may end a tick at any [`CrashPoint`] (crash tests).
    pub fn with_fault_hook(mut self, hook: Arc<dyn FaultHook>) -> Self {
        self.faults = Some(hook);
        self
    }

    /// Ends the tick here when the fault hook says so.
    fn reached(&self, policy: &PolicyRef, point: CrashPoint) -> Result<(), ReconcileError> {
        match &self.faults {
            Some(hook) if hook.crash_at(point) => Err(ReconcileError::Crashed {
                policy: format!("{}/{}", policy.namespace, policy.name),
                point,
            }),
            _ => Ok(()),
        }
    }

    pub fn seams(&self) -> &Seams {
        &self.seams
    }

    /// One tick. Errors only when the policy cannot run or the state cannot be stored;
    /// router and metric trouble is handled by the engine and reported in `problems`.
    pub async fn tick(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
    ) -> Result<TickOutcome, ReconcileError> {
        let (resolved, observed_workloads) = self.read_workloads(policy, spec).await?;
        let spec = resolved.as_ref().unwrap_or(spec);
        let plan = Plan::new(spec).map_err(|source| ReconcileError::Plan {
            policy: format!("{}/{}", policy.namespace, policy.name),
            source,
        })?;
        let seams = &self.seams;
        let (mut persisted, mut version) = match seams.store.load(policy).await? {
            Some((status, version)) => (status, Some(version)),
            None => (RolloutStatus::default(), None),
        };
        self.reached(policy, CrashPoint::StateLoaded)?;
        let mut problems = Vec::new();
        // Commands stay in their source until a state that handled them is stored.
        let handled_before = persisted.last_command_id.clone();
        let commands = match seams
            .commands
            .pending(policy, handled_before.as_deref())
            .await
        {
            Ok(commands) => commands,
            Err(e) => {
                problems.push(Problem {
                    reason: e.reason(),
                    message: e.to_string(),
                });
                Vec::new()
            }
        };
        self.reached(policy, CrashPoint::CommandsRead)?;
        let mut live = seams.router.read().await;
        // The first read may come from a watch cache; what a write answers or a
        // re-read after a conflict is the router's own.
        let mut live_may_lag = true;
        self.reached(policy, CrashPoint::RouteRead)?;
        let mut obs = Observation {
            now: seams.clock.now(),
            live: observed(&live),
            analysis: None,
            checks: None,
            commands,
            hooks: Vec::new(),
            workloads: observed_workloads,
            previous_release: None,
        };
        // Only an `undo` needs it: the previous release is looked at then, not each tick.
        let undo_pending = obs
            .commands
            .iter()
            .any(|c| c.command == Ok(engine::Command::Undo));
        if let (true, Some(probe)) = (undo_pending, &self.release_probe) {
            obs.previous_release = Some(probe.look(spec).await);
        }
        let hooks = self.hooks.clone().unwrap_or_else(default_hooks);
        obs.hooks = hooks.take_finished(policy);
        let mut background = Vec::new();
        note_router_error(&live, &mut problems);
        let mut state = persisted.clone();
        settle_unconfirmed_write(&mut state, &live);
        let mut outcome = TickOutcome {
            status: RolloutStatus::default(),
            wake_at: None,
            transitions: Vec::new(),
            writes: Vec::new(),
            evaluated: false,
            checked: false,
            problems: Vec::new(),
        };
        let mut rounds = 0;
        loop {
            rounds += 1;
            if rounds > MAX_ROUNDS {
                outcome.wake_at = Some(engine::plan::later(
                    obs.now,
                    engine::plan::to_chrono(engine::plan::RETRY_DELAY),
                ));
                break;
            }
            let decision = engine::step(&plan, &state, &obs);
            if decision.needs_input() {
                let wants_metrics = decision.actions.contains(&Action::QueryMetrics);
                if wants_metrics && obs.analysis.is_none() {
                    let since = engine::counts_since(&plan, &state);
                    let input = seams.metrics.observe(policy, spec, obs.now, since).await;
                    obs.analysis = Some(input);
                    self.reached(policy, CrashPoint::MetricsQueried)?;
                    outcome.evaluated = true;
                    continue;
                }
                if decision.actions.contains(&Action::RunChecks) && obs.checks.is_none() {
                    obs.checks = Some(seams.checks.run(policy, spec).await);
                    self.reached(policy, CrashPoint::ChecksRun)?;
                    outcome.checked = true;
                    continue;
                }
                if let Some(call) = unanswered_gate(&decision, &obs) {
                    let answer = hooks.gate(policy, spec, call).await;
                    obs.hooks.push(answer);
                    continue;
                }
            }
            if live_may_lag
                && decision
                    .transitions()
                    .any(|t| t.kind == TransitionKind::Drift)
            {
                // Drift pauses a rollout on a read alone, and a watch can lag our own
                // last write by seconds (a re-list): only the router's own answer may
                // call it drift. Decided again from the stored state on that answer.
                live_may_lag = false;
                live = seams.router.read_fresh().await;
                note_router_error(&live, &mut problems);
                state = persisted.clone();
                settle_unconfirmed_write(&mut state, &live);
                obs.live = observed(&live);
                continue;
            }
            for action in &decision.actions {
                match action {
                    // One delivery per phase and tick (an owed one is asked for again).
                    Action::CallHooks(call)
                        if !call.phase.is_gate()
                            && !background.iter().any(|b: &HookCall| b.phase == call.phase) =>
                    {
                        background.push(call.clone())
                    }
                    _ => {}
                }
            }
            for transition in decision.transitions() {
                log_transition(policy, transition);
            }
            outcome.transitions.extend(decision.transitions().cloned());
            let desired = decision.route_write();
            let wake_at = decision.wake_at;
            let scales = decision.workload_scales();
            state = decision.state;
            if !scales.is_empty() {
                // Write-ahead, as for routes: the replicas to restore are stored first.
                if state != persisted {
                    version = Some(seams.store.save(policy, &state, version.as_ref()).await?);
                    persisted = state.clone();
                }
                self.scale(policy, &scales, &mut problems).await;
            }
            obs.commands.clear();
            obs.analysis = None;
            obs.checks = None;
            obs.hooks.clear();
            let (Some(desired), Ok(current)) = (desired, &live) else {
                outcome.wake_at = wake_at;
                break;
            };
            // Write-ahead: the target is stored before it is sent, so a restart after
            // the write landed adopts it instead of calling it drift. A step's write is
            // stored as already confirmed, with the route it replaces: no confirming
            // write follows when it lands by `landed_by`.
            let landed_by = write_deadline(seams.clock.as_ref(), &plan, seams.clock.now());
            let confirmed = confirmed_in_advance(&plan, &state, &obs, desired, landed_by);
            let ahead = confirmed.as_ref().map_or(&state, |(c, _)| c);
            if *ahead != persisted {
                version = Some(seams.store.save(policy, ahead, version.as_ref()).await?);
                persisted = ahead.clone();
                self.reached(policy, CrashPoint::SavedBeforeWrite)?;
            }
            let applied = seams.router.apply(&current.version, desired).await;
            self.reached(policy, CrashPoint::RouteWritten)?;
            obs.now = seams.clock.now();
            match applied {
                Ok(new_version) => {
                    live_may_lag = false;
                    outcome.writes.push(desired);
                    live = Ok(LiveRoute {
                        route: desired,
                        version: new_version,
                    });
                    // Landed in time: the stored status says it all. Later than that,
                    // the engine confirms it now and the status is written again.
                    if let Some((confirmed, wake_at)) = confirmed.filter(|_| obs.now <= landed_by) {
                        state = confirmed;
                        outcome.wake_at = wake_at;
                        break;
                    }
                }
                Err(e @ RouterError::Conflict { .. }) => {
                    // Someone else wrote: re-read and decide again; never resend blindly.
                    problems.push(Problem {
                        reason: e.reason(),
                        message: e.to_string(),
                    });
                    live = seams.router.read_fresh().await;
                    live_may_lag = false;
                    self.reached(policy, CrashPoint::RouteReread)?;
                    note_router_error(&live, &mut problems);
                    obs.now = seams.clock.now();
                }
                Err(e) => {
                    warn!(namespace = %policy.namespace, name = %policy.name, error = %e, "route write failed");
                    problems.push(Problem {
                        reason: e.reason(),
                        message: e.to_string(),
                    });
                    outcome.wake_at = wake_at;
                    break;
                }
            }
            obs.live = observed(&live);
        }
        if state != persisted {
            seams.store.save(policy, &state, version.as_ref()).await?;
            self.reached(policy, CrashPoint::StateSaved)?;
        }
        // Only now, with the state that handled them stored, may the source forget them.
        if let Some(handled) = state.last_command_id.as_deref() {
            if state.last_command_id != handled_before {
                if let Err(e) = seams.commands.acknowledge(policy, handled).await {
                    problems.push(Problem {
                        reason: e.reason(),
                        message: e.to_string(),
                    });
                }
                self.reached(policy, CrashPoint::CommandsAcknowledged)?;
            }
        }
        // After the write they report and the state that records it: a slow receiver
        // never delays a rollback, nor the next tick.
        for call in background {
            hooks.dispatch(policy, spec, call).await;
        }
        outcome.status = state;
        outcome.problems = problems;
        Ok(outcome)
    }
}

/// The instant a route write decided at `now` must have landed by for the status
/// stored before it to count it as confirmed then: a tenth of the interval, at most
/// 100 ms (as early as an evaluation may start, `engine::plan::evaluation_slack`). In
/// virtual time a write takes no time at all.
fn write_deadline(clock: &dyn Clock, plan: &Plan, now: Timestamp) -> Timestamp {
    if !clock.passes_during_requests() {
        return now;
    }
    engine::plan::later(now, engine::plan::evaluation_slack(plan.interval()))
}

/// The status to store before a step's route write, when the engine's confirmation of
/// that write at `landed_by` decides nothing more (no metrics, no Event, no write): the
/// confirmed state, naming the route it replaces, and when to wake. `None` for any
/// other write: its target is stored and confirmed once it is seen live.
fn confirmed_in_advance(
    plan: &Plan,
    state: &RolloutStatus,
    obs: &Observation,
    desired: ManagedRoute,
    landed_by: Timestamp,
) -> Option<(RolloutStatus, Option<Timestamp>)> {
    let target = state.target?;
    if target.purpose != TargetPurpose::Step || target.route() != desired {
        return None;
    }
    let seen = Observation {
        now: landed_by,
        live: Ok(desired),
        previous_release: None,
        ..obs.clone()
    };
    let decision = engine::step(plan, state, &seen);
    let mut confirmed = decision.state;
    if !decision.actions.is_empty()
        || confirmed.target.is_some()
        || confirmed.confirmed_route() != desired
    {
        return None;
    }
    confirmed.unconfirmed_write = Some(UnconfirmedWrite {
        previous_canary_weight: state.canary_weight,
        previous_test_route: state.test_route,
    });
    Some((confirmed, decision.wake_at))
}

/// A step's write stored as confirmed before it was sent (`status.unconfirmedWrite`):
/// seen live, it is confirmed; the route it replaces still live, it is in flight again
/// (the process stopped between the two writes), so the engine gets the target back
/// and sends it; any other route is judged by the engine against the weights the status
/// shows (drift). An unreadable route decides nothing.
fn settle_unconfirmed_write(state: &mut RolloutStatus, live: &Result<LiveRoute, RouterError>) {
    let (Some(write), Ok(live)) = (state.unconfirmed_write, live) else {
        return;
    };
    state.unconfirmed_write = None;
    if live.route != write.previous_route() || live.route == state.confirmed_route() {
        return;
    }
    // Undo what the advance confirmation added: the step's clock and its history entry.
    let confirmed_at = state.step_started_at.take();
    let added = state.history.last().is_some_and(|last| {
        last.reason == engine::reasons::STEP_CONFIRMED && Some(last.at) == confirmed_at
    });
    if added {
        state.history.pop();
    }
    state.target = Some(RouteTarget {
        canary_weight: state.canary_weight,
        test_route: state.test_route,
        purpose: TargetPurpose::Step,
    });
    state.canary_weight = write.previous_canary_weight;
    state.test_route = write.previous_test_route;
}

/// A gate the decision asks for that this tick has not called yet.
fn unanswered_gate<'a>(decision: &'a engine::Decision, obs: &Observation) -> Option<&'a HookCall> {
    decision.actions.iter().find_map(|a| match a {
        Action::CallHooks(call)
            if call.phase.is_gate() && !obs.hooks.iter().any(|o| o.phase == call.phase) =>
        {
            Some(call)
        }
        _ => None,
    })
}

fn observed(live: &Result<LiveRoute, RouterError>) -> Result<ManagedRoute, String> {
    match live {
        Ok(l) => Ok(l.route),
        Err(e) => Err(e.to_string()),
    }
}

fn note_router_error(live: &Result<LiveRoute, RouterError>, problems: &mut Vec<Problem>) {
    if let Err(e) = live {
        problems.push(Problem {
            reason: e.reason(),
            message: format!("cannot read the live route: {e}"),
        });
    }
}

fn log_transition(policy: &PolicyRef, t: &Transition) {
    info!(
        namespace = %policy.namespace,
        name = %policy.name,
        revision = %t.revision,
        step = t.step,
        weight = t.canary_weight,
        reason = %t.reason,
        detail = %t.message,
        "rollout transition"
    );
}

impl Reconciler {
    /// With `spec.workloads`: both Deployments for the engine and, with `revisionFrom`,
    /// the spec with the derived revision. A policy naming workloads without a cluster
    /// is refused; a revision that cannot be derived yet retries.
    async fn read_workloads(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
    ) -> Result<
        (
            Option<RolloutSpec>,
            Option<crate::engine::workloads::WorkloadsObservation>,
        ),
        ReconcileError,
    > {
        let Some(wanted) = &spec.workloads else {
            return Ok((None, None));
        };
        let name = format!("{}/{}", policy.namespace, policy.name);
        let Some(workloads) = &self.workloads else {
            return Err(ReconcileError::Workloads {
                policy: name,
                message: "spec.workloads names Deployments, which only a cluster has; run the \
                          policy with the daemon or `shiftgate run --kubeconfig`, or remove \
                          spec.workloads"
                    .to_owned(),
                transient: false,
            });
        };
        let read = crate::runtime::workloads::read_workloads(workloads.as_ref(), wanted).await;
        let resolved = match read.revision {
            None => None,
            Some(Ok(revision)) => Some(RolloutSpec {
                revision,
                ..spec.clone()
            }),
            Some(Err(why)) => {
                return Err(ReconcileError::Workloads {
                    policy: name,
                    message: format!(
                        "the revision comes from the canary Deployment (revisionFrom), which \
                         cannot be read: {why}"
                    ),
                    transient: true,
                })
            }
        };
        Ok((resolved, Some(read.observation)))
    }

    async fn scale(
        &self,
        policy: &PolicyRef,
        scales: &[(String, i32)],
        problems: &mut Vec<Problem>,
    ) {
        let Some(workloads) = &self.workloads else {
            return;
        };
        for (deployment, replicas) in scales {
            match workloads.scale(deployment, *replicas).await {
                Ok(()) => info!(
                    namespace = %policy.namespace,
                    name = %policy.name,
                    deployment = %deployment,
                    replicas = *replicas,
                    "deployment scaled"
                ),
                Err(e) => {
                    warn!(namespace = %policy.namespace, name = %policy.name, error = %e, "deployment scale failed");
                    problems.push(Problem {
                        reason: e.reason(),
                        message: e.to_string(),
                    });
                }
            }
        }
    }
}
