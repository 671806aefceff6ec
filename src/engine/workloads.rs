//! The Deployments behind a rollout (`spec.workloads`), decided purely: the canary must
//! be available before any traffic moves (the test of `kubectl rollout status`), and the
//! previous stable is scaled to zero only after the promotion's `scaleDown.after`, only
//! while every request is on the canary, with its replicas stored first so `undo` can
//! put them back. The shell reads the Deployments into [`WorkloadsObservation`] and runs
//! [`Action::ScaleWorkload`].

use crate::engine::plan::{later, to_chrono, Plan};
use crate::engine::step::Tick;
use crate::engine::types::{Action, Observation};
use crate::policy::status::{Phase, RolloutStatus, RouteTarget, TargetPurpose};
use crate::policy::workloads::{IdleBaseline, ScaledDown, WorkloadsStatus};

/// Waiting for the canary Deployment to be available.
pub const WAITING_FOR_CANARY: &str = "WaitingForCanaryDeployment";
/// The canary Deployment exceeded its progress deadline.
pub const CANARY_DEPLOYMENT_FAILED: &str = "CanaryDeploymentFailed";
/// The previous stable Deployment was scaled to zero.
pub const SCALED_DOWN: &str = "PreviousStableScaledDown";
/// The scale-down is due but the live route does not send every request to the canary.
pub const SCALE_DOWN_HELD: &str = "ScaleDownHeld";
/// The previous stable's replicas are being put back before an undo.
pub const RESTORING_STABLE: &str = "RestoringPreviousStable";

/// A Deployment as the shell read it: what `kubectl rollout status` looks at, and the
/// images for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentState {
    pub name: String,
    pub generation: i64,
    pub observed_generation: i64,
    /// `spec.replicas` (1 when unset, as the API server defaults it).
    pub replicas: i32,
    /// `status.replicas`: every pod, old ones included.
    pub status_replicas: i32,
    pub updated_replicas: i32,
    pub available_replicas: i32,
    /// The `Progressing` condition's message when its reason is
    /// `ProgressDeadlineExceeded`.
    pub deadline_exceeded: Option<String>,
    /// The pod template's container images, in order.
    pub images: Vec<String>,
    /// The revision its pod template gives (`images@hash`), when it has one.
    pub revision: Option<String>,
}

/// Both Deployments, or why each could not be read (never a guess).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadsObservation {
    pub stable: Result<DeploymentState, String>,
    pub canary: Result<DeploymentState, String>,
}

/// Whether a Deployment's rollout is complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    Available,
    /// Still rolling out; why, with numbers.
    Waiting(String),
    /// `ProgressDeadlineExceeded`, with the Deployment's own message.
    Failed(String),
}

/// The test of `kubectl rollout status`, plus one of ours: a Deployment with no
/// replicas serves nothing, so traffic must not move to it.
pub fn availability(d: &DeploymentState) -> Availability {
    if d.observed_generation < d.generation {
        return Availability::Waiting(format!(
            "generation {} not observed yet by the Deployment controller (observed {})",
            d.generation, d.observed_generation
        ));
    }
    if let Some(message) = &d.deadline_exceeded {
        return Availability::Failed(format!(
            "Deployment {} exceeded its progress deadline: {message}",
            d.name
        ));
    }
    if d.replicas <= 0 {
        return Availability::Waiting(format!("Deployment {} has 0 replicas; scale it up", d.name));
    }
    if d.updated_replicas < d.replicas {
        return Availability::Waiting(format!(
            "{} of {} new replicas updated",
            d.updated_replicas, d.replicas
        ));
    }
    if d.status_replicas > d.updated_replicas {
        return Availability::Waiting(format!(
            "{} old replicas pending termination",
            d.status_replicas - d.updated_replicas
        ));
    }
    if d.available_replicas < d.replicas {
        return Availability::Waiting(format!(
            "{} of {} updated replicas available",
            d.available_replicas, d.replicas
        ));
    }
    Availability::Available
}

impl Tick<'_> {
    fn workloads_status(&mut self) -> &mut WorkloadsStatus {
        self.s.workloads.get_or_insert_with(Box::default)
    }

    /// Before the first write of a rollout: whether the canary Deployment is available.
    /// Waiting keeps the rollout in `Waiting` with the reason; a missed progress
    /// deadline follows `onFailure`.
    pub(crate) fn canary_workload_ready(&mut self) -> bool {
        let Some(spec) = self.plan.workloads() else {
            return true;
        };
        let canary = match self.obs.workloads.as_ref().map(|w| &w.canary) {
            None => Err("the Deployment has not been read".to_owned()),
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(d)) => Ok(d.clone()),
        };
        if let Ok(d) = &canary {
            self.workloads_status().canary_images = Some(d.images.join(", "));
        }
        let why = match canary.map(|d| availability(&d)) {
            Ok(Availability::Available) => return true,
            Ok(Availability::Failed(message)) => {
                self.on_failure(CANARY_DEPLOYMENT_FAILED, message);
                return false;
            }
            Ok(Availability::Waiting(why)) | Err(why) => why,
        };
        let message = format!(
            "waiting for the canary Deployment {} to be available before any traffic moves: {why}",
            spec.canary
        );
        if self.s.phase != Phase::Waiting || self.s.message.as_deref() != Some(&message) {
            self.s.phase = Phase::Waiting;
            self.record(WAITING_FOR_CANARY, message);
        }
        self.retry_soon();
        false
    }

    /// After a confirmed promotion: the scale-down of the previous stable, when due.
    pub(crate) fn workloads_after_promotion(&mut self) {
        let Some(spec) = self.plan.workloads() else {
            return;
        };
        let Some(scale_down) = spec.scale_down else {
            return;
        };
        if self.s.phase != Phase::Promoted || self.s.target.is_some() {
            return;
        }
        let now = self.now;
        // A status from before `promotedAt` existed counts from the first look.
        let promoted_at = *self.s.promoted_at.get_or_insert(now);
        let due = later(promoted_at, to_chrono(scale_down.after));
        let status = self.workloads_status();
        status.scale_down_at = Some(due);
        if let Some(done) = status.scaled_down.clone() {
            self.confirm_scale_down(&done);
            return;
        }
        if now < due {
            self.wake(due);
            return;
        }
        // Someone moved users back to the previous stable: it serves again, keep it.
        let live = match &self.obs.live {
            Ok(live) => *live,
            Err(_) => {
                self.retry_soon();
                return;
            }
        };
        if live.canary_weight < 100 {
            let message = format!(
                "scale-down of Deployment {} due, but the live route sends {}% to it; kept",
                spec.stable,
                100 - live.canary_weight
            );
            if self.s.reason.as_deref() != Some(SCALE_DOWN_HELD) {
                self.note(SCALE_DOWN_HELD, message);
            }
            self.retry_soon();
            return;
        }
        let stable = match self.obs.workloads.as_ref().map(|w| &w.stable) {
            Some(Ok(d)) => d.clone(),
            _ => {
                self.retry_soon();
                return;
            }
        };
        // Stored before the scale is sent: a restart finds the replicas to restore.
        self.workloads_status().scaled_down = Some(ScaledDown {
            deployment: stable.name.clone(),
            replicas: stable.replicas,
            at: now,
            confirmed: false,
        });
        self.actions.push(Action::ScaleWorkload {
            deployment: stable.name.clone(),
            replicas: 0,
        });
        let message = format!(
            "previous stable Deployment {} scaled from {} replicas to 0, {} after the promotion; \
             `undo` scales it back",
            stable.name, stable.replicas, scale_down.after
        );
        self.record(SCALED_DOWN, message);
        self.retry_soon();
    }

    /// A stored scale-down is sent again until the Deployment shows 0 replicas (the
    /// scale is idempotent); once seen there it is confirmed, and a person who scales
    /// the Deployment up again afterwards is not fought.
    fn confirm_scale_down(&mut self, done: &ScaledDown) {
        if done.confirmed {
            return;
        }
        let Some(Ok(d)) = self.obs.workloads.as_ref().map(|w| &w.stable) else {
            self.retry_soon();
            return;
        };
        if d.replicas == 0 {
            if let Some(stored) = self.workloads_status().scaled_down.as_mut() {
                stored.confirmed = true;
            }
            return;
        }
        self.actions.push(Action::ScaleWorkload {
            deployment: done.deployment.clone(),
            replicas: 0,
        });
        self.retry_soon();
    }

    /// Before an undo's route write: the previous stable gets its replicas back and the
    /// route write waits until it is available. Returns whether the write may go now.
    pub(crate) fn prepare_undo(&mut self) -> bool {
        let Some(done) = self
            .s
            .workloads
            .as_ref()
            .and_then(|w| w.scaled_down.clone())
        else {
            return true;
        };
        let stable = match self.obs.workloads.as_ref().map(|w| &w.stable) {
            Some(Ok(d)) => d.clone(),
            Some(Err(e)) => {
                let message = format!("undo waits for Deployment {}: {e}", done.deployment);
                self.note(RESTORING_STABLE, message);
                self.retry_soon();
                return false;
            }
            None => {
                self.retry_soon();
                return false;
            }
        };
        if stable.replicas < done.replicas {
            self.actions.push(Action::ScaleWorkload {
                deployment: done.deployment.clone(),
                replicas: done.replicas,
            });
            let message = format!(
                "undo: scaling Deployment {} back to {} replicas; the route moves once they are available",
                done.deployment, done.replicas
            );
            self.note(RESTORING_STABLE, message);
            self.retry_soon();
            return false;
        }
        match availability(&stable) {
            Availability::Available => {
                self.workloads_status().scaled_down = None;
                true
            }
            Availability::Waiting(why) | Availability::Failed(why) => {
                let message = format!(
                    "undo waits for Deployment {} to be available: {why}",
                    done.deployment
                );
                self.note(RESTORING_STABLE, message);
                self.retry_soon();
                false
            }
        }
    }
}

impl Tick<'_> {
    /// Every tick's look at the workloads once the route is settled: an undo waiting
    /// for the previous stable, or the scale-down after a promotion.
    pub(crate) fn workloads_after_route(&mut self) {
        self.undo_waiting_for_stable();
        self.workloads_after_promotion();
        self.record_idle_baseline();
    }

    /// With colours and `revisionFrom`: once a promotion is confirmed, the colour users
    /// left is idle and still runs the release before; its Deployment's revision now is
    /// its baseline, so only a new template there starts the next rollout (see
    /// [`crate::engine::colours::idle_release`]). Recorded once per promotion (a new
    /// revision starts with no workloads status); unreadable now, on a later tick.
    fn record_idle_baseline(&mut self) {
        let derives = self
            .plan
            .workloads()
            .is_some_and(|w| w.revision_from.is_some());
        let Some((stable_colour, _)) = self.plan.colours() else {
            return;
        };
        if !derives || self.s.phase != Phase::Promoted || self.s.target.is_some() {
            return;
        }
        let recorded = self
            .s
            .workloads
            .as_ref()
            .and_then(|w| w.idle_baseline.as_ref())
            .is_some_and(|b| b.color == stable_colour);
        let revision = match self.obs.workloads.as_ref().map(|w| &w.stable) {
            Some(Ok(d)) => d.revision.clone(),
            _ => None,
        };
        if let (false, Some(revision)) = (recorded, revision) {
            let color = stable_colour.to_owned();
            self.workloads_status().idle_baseline = Some(IdleBaseline { color, revision });
        }
    }

    /// An undo whose route write waits for the previous stable's replicas (see
    /// `start_undo`): the write goes once they are available.
    fn undo_waiting_for_stable(&mut self) {
        let restoring = self
            .s
            .workloads
            .as_ref()
            .is_some_and(|w| w.scaled_down.is_some());
        // `start_undo` looked already in this tick when it asked for the replicas.
        let asked = self
            .actions
            .iter()
            .any(|a| matches!(a, Action::ScaleWorkload { .. }));
        if self.s.phase != Phase::RollingBack || self.s.target.is_some() || !restoring || asked {
            return;
        }
        if self.prepare_undo() {
            let target = RouteTarget {
                canary_weight: 0,
                test_route: false,
                purpose: TargetPurpose::Undo,
            };
            self.s.target = Some(target);
            self.actions.push(Action::ApplyRoute(target.route()));
            self.note(
                RESTORING_STABLE,
                format!(
                    "undo: the previous stable is available again; putting every request back                      on {} in one write",
                    self.plan.destination_names().stable
                ),
            );
            self.retry_soon();
        }
    }
}

/// What an undo needs from the workloads before its route write, as a pure function:
/// the next state, the scale actions to run, and whether the route write may go now.
/// `Command::Undo` calls [`Tick::prepare_undo`] with the same meaning.
pub fn on_undo(
    plan: &Plan,
    state: &RolloutStatus,
    obs: &Observation,
) -> (RolloutStatus, Vec<Action>, bool) {
    let mut tick = Tick::new(plan, state, obs);
    let ready = tick.prepare_undo();
    let decision = tick.finish();
    (decision.state, decision.actions, ready)
}
