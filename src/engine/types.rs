//! What goes into the engine (an observation) and what comes out (a decision).

use serde::{Deserialize, Serialize};

use crate::analysis::sample::AnalysisInput;
use crate::policy::status::{CheckResult, Phase, RolloutStatus, Timestamp};
use crate::router::ManagedRoute;

/// An operator's command. Applied in order, before anything else in the tick.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Command {
    /// Skip the rest of the current step's analysis or manual gate: go to the next step.
    Promote,
    /// Go straight to 100 and Promoted.
    PromoteFull,
    /// Stop moving traffic at the current weight.
    Pause,
    /// Continue after `pause`, an inconclusive pause, a hold, or drift (writes the
    /// weights back).
    Resume,
    /// Every request back on stable, now; the rollout ends as Aborted.
    Abort,
    /// After a promotion: every request back on the previous stable in one write; the
    /// rollout ends as RolledBack (reason `Undone`).
    Undo,
    /// After a rollback or an abort: the same revision again from step 0.
    Retry,
}

impl Command {
    pub const ALL: [Command; 7] = [
        Command::Promote,
        Command::PromoteFull,
        Command::Pause,
        Command::Resume,
        Command::Abort,
        Command::Undo,
        Command::Retry,
    ];

    /// The word used on the command line and in command files.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Promote => "promote",
            Command::PromoteFull => "promote-full",
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Abort => "abort",
            Command::Undo => "undo",
            Command::Retry => "retry",
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a command; use one of promote, promote-full, pause, resume, abort, undo")]
pub struct UnknownCommand(pub String);

impl std::str::FromStr for Command {
    type Err = UnknownCommand;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let word = s.trim();
        Command::ALL
            .into_iter()
            .find(|c| {
                c.as_str().eq_ignore_ascii_case(word)
                    || (c.as_str().replace('-', "")).eq_ignore_ascii_case(word)
            })
            .ok_or_else(|| UnknownCommand(word.to_owned()))
    }
}

/// An operator's command as it reaches the engine: what was asked, for which revision,
/// and the id that makes handling it idempotent (saved in the state once handled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorCommand {
    /// Unique per policy within its source: a command file's number, or the
    /// `shiftgate.dev/command-id` annotation.
    pub id: String,
    /// What was asked; an unknown word is refused with its reason.
    pub command: Result<Command, UnknownCommand>,
    /// The revision it was given for. `None`: a command in the old format (no
    /// revision), refused rather than applied to whatever revision runs now.
    pub revision: Option<String>,
}

impl OperatorCommand {
    /// A well-formed command for `revision`.
    pub fn new(id: impl Into<String>, command: Command, revision: impl Into<String>) -> Self {
        OperatorCommand {
            id: id.into(),
            command: Ok(command),
            revision: Some(revision.into()),
        }
    }
}

/// What the pre-traffic checks found.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ChecksOutcome {
    pub results: Vec<CheckResult>,
}

impl ChecksOutcome {
    /// Every check passed (no checks pass trivially).
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.passed)
    }
}

/// Everything the shell observed for one engine step.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub now: Timestamp,
    /// The live managed route, or why it could not be read. A read failure is never
    /// replaced by a guess.
    pub live: Result<ManagedRoute, String>,
    /// Metric results, when the engine asked for them (`Action::QueryMetrics`).
    pub analysis: Option<AnalysisInput>,
    /// Check results, when the engine asked for them (`Action::RunChecks`).
    pub checks: Option<ChecksOutcome>,
    /// Operator commands not handled yet (their ids come after the state's
    /// `last_command_id`), in order.
    pub commands: Vec<OperatorCommand>,
    /// Hook answers: of the gates the engine asked for (`Action::CallHooks`), and of
    /// informational hooks that finished since the last tick.
    pub hooks: Vec<crate::engine::hooks::HookOutcome>,
    /// The stable and canary Deployments, read when the policy names them.
    pub workloads: Option<crate::engine::workloads::WorkloadsObservation>,
    /// Whether the previous stable release still runs, looked at only while an `undo`
    /// is pending (`None`: not looked at).
    pub previous_release: Option<crate::engine::previous_release::PreviousRelease>,
}

impl Observation {
    /// An observation with only a time and a live route.
    pub fn at(now: Timestamp, live: Result<ManagedRoute, String>) -> Self {
        Observation {
            now,
            live,
            analysis: None,
            checks: None,
            commands: Vec::new(),
            hooks: Vec::new(),
            workloads: None,
            previous_release: None,
        }
    }
}

/// The kinds of transitions announced to people (events, webhooks, logs).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum TransitionKind {
    Started,
    StepAdvanced,
    Paused,
    Resumed,
    /// A rollback started; the reason says why.
    RollingBack,
    /// Every request is back on stable.
    RolledBack,
    Promoted,
    Held,
    Aborted,
    InconclusiveLimit,
    Drift,
    /// An operator command was not applied: for another revision, without one, or unknown.
    CommandRefused,
    /// A `confirmPromotion` hook did not answer 2xx: the rollout holds at its last step.
    /// Announced once per wait, not at each refusal.
    PromotionNotConfirmed,
}

impl TransitionKind {
    /// Warnings are what on-call must look at.
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            TransitionKind::RollingBack
                | TransitionKind::RolledBack
                | TransitionKind::Held
                | TransitionKind::Aborted
                | TransitionKind::InconclusiveLimit
                | TransitionKind::Drift
                | TransitionKind::CommandRefused
                | TransitionKind::PromotionNotConfirmed
        )
    }
}

/// One announced transition, with the numbers that explain it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub kind: TransitionKind,
    pub at: Timestamp,
    pub revision: String,
    pub phase: Phase,
    pub step: u32,
    /// The canary weight the transition leads to (the target when a write is in flight).
    pub canary_weight: u8,
    /// CamelCase constant.
    pub reason: String,
    pub message: String,
}

/// What the shell must do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// One conditional write of the managed route (rollback is weight 0 and no test
    /// route in this one write). Persist the decision's state before sending it.
    ApplyRoute(ManagedRoute),
    /// Run the pre-traffic checks and step again with `Observation::checks`.
    RunChecks,
    /// Query the metrics and step again with `Observation::analysis`.
    QueryMetrics,
    /// Announce a transition.
    Notify(Transition),
    /// Call the hooks of a phase. A gate (`HookPhase::is_gate`): step again with their
    /// answers in `Observation::hooks`. Otherwise: call them in the background, after
    /// this decision's route write; never wait for them.
    CallHooks(crate::engine::hooks::HookCall),
    /// Set a Deployment's replicas through its scale subresource (`spec.workloads`).
    /// Persist the decision's state before sending it.
    ScaleWorkload { deployment: String, replicas: i32 },
}

/// The engine's answer: the next state, the actions to run, and when to look again
/// (`None`: only a command or a new revision can change anything).
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub state: RolloutStatus,
    pub actions: Vec<Action>,
    pub wake_at: Option<Timestamp>,
}

impl Decision {
    /// Whether the engine asked for metric or check results before it can decide.
    pub fn needs_input(&self) -> bool {
        self.actions.iter().any(|a| match a {
            Action::RunChecks | Action::QueryMetrics => true,
            Action::CallHooks(call) => call.phase.is_gate(),
            _ => false,
        })
    }

    pub fn route_write(&self) -> Option<ManagedRoute> {
        self.actions.iter().find_map(|a| match a {
            Action::ApplyRoute(r) => Some(*r),
            _ => None,
        })
    }

    /// The Deployments to scale (`Action::ScaleWorkload`), in order: (name, replicas).
    pub fn workload_scales(&self) -> Vec<(String, i32)> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::ScaleWorkload {
                    deployment,
                    replicas,
                } => Some((deployment.clone(), *replicas)),
                _ => None,
            })
            .collect()
    }

    pub fn transitions(&self) -> impl Iterator<Item = &Transition> {
        self.actions.iter().filter_map(|a| match a {
            Action::Notify(t) => Some(t),
            _ => None,
        })
    }
}
