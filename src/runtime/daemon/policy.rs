//! One reconcile of one RolloutPolicy: validate, refuse a taken route, build the
//! router, tick the engine, publish metrics and Events, and say when to look again.

use super::*;
use crate::metrics::providers::refuse_local_credentials;
use crate::runtime::release_presence::KubeReleaseProbe;
use crate::runtime::workloads::{FencedWorkloads, KubeWorkloads};

/// Shared by every reconcile.
pub(super) struct Context {
    pub(super) options: DaemonOptions,
    pub(super) seams: DaemonSeams,
    pub(super) metrics: Arc<Metrics>,
    pub(super) events: EventPublisher,
    pub(super) leadership: Leadership,
    pub(super) store: Store<RolloutPolicy>,
    /// Which policy owns which route, kept from the policy watch.
    pub(super) routes: Arc<RouteIndex>,
    /// Our own status writes the watch has not shown yet.
    pub(super) recent: Arc<super::watched::RecentWrites>,
    /// Each policy's spec errors, validated once per generation.
    pub(super) validated: super::watched::ValidatedSpecs,
    /// Long-lived: keeps the background hooks' answers between ticks.
    pub(super) hooks: Arc<crate::runtime::hooks::Hooks>,
    /// When each rollout's new data lands (evaluations wake just after it).
    pub(super) fresh_data: Arc<crate::runtime::fresh_data::FreshData>,
    /// The status page's read model, fed from each tick's outcome.
    pub(super) web: Option<crate::web::Board>,
    /// Long-lived: the process's notification queue (never awaited by a tick).
    pub(super) notifier: Arc<crate::runtime::notify::Notifier>,
}

pub(super) async fn reconcile(
    policy: Arc<RolloutPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, DaemonError> {
    let started = Instant::now();
    let result = ctx.reconcile(&policy).await;
    ctx.metrics
        .observe_reconcile(started.elapsed().as_secs_f64());
    result
}

pub(super) fn error_policy(
    policy: Arc<RolloutPolicy>,
    error: &DaemonError,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.reconcile_failed(error.reason());
    tracing::warn!(
        namespace = policy.metadata.namespace.as_deref().unwrap_or(""),
        name = policy.metadata.name.as_deref().unwrap_or(""),
        reason = error.reason(),
        error = %error,
        "reconcile failed"
    );
    Action::requeue(scheduler::after_error(
        error.is_transient(),
        ctx.options.resync,
    ))
}

impl Context {
    async fn reconcile(&self, policy: &Arc<RolloutPolicy>) -> Result<Action, DaemonError> {
        let policy_ref = policy_ref(policy).ok_or(DaemonError::MissingMetadata {
            field: "metadata.namespace or metadata.name",
        })?;
        self.metrics.set_policies(self.store.len());
        if policy.metadata.deletion_timestamp.is_some() {
            self.metrics.forget_policy(&policy_ref);
            self.fresh_data.forget(&policy_ref);
            self.validated.forget(&policy_ref);
            if let Some(web) = &self.web {
                web.forget(&policy_ref);
            }
            return Ok(Action::await_change());
        }
        if !self.leadership.is_leading() {
            // A follower exports the status it last saw (refreshed on spec changes);
            // the leader's gauges are the current ones.
            if let Some(status) = &policy.status {
                self.metrics.set_rollout(
                    &policy_ref,
                    status.phase,
                    status.step,
                    status.canary_weight,
                );
                if let Some(web) = &self.web {
                    let now = self.seams.clock.now();
                    web.record(&policy_ref, &policy.spec, status, false, now);
                }
            }
            // Followers keep the cache warm and reconcile everything when they lead.
            return Ok(Action::await_change());
        }
        let spec = &policy.spec;
        let errors = self.validated.errors(&policy_ref, policy, spec_errors);
        if !errors.is_empty() {
            let message = errors.join("; ");
            self.refuse(
                policy,
                &policy_ref,
                reasons::INVALID_POLICY,
                &message,
                RolloutEvent::InvalidPolicy {
                    messages: errors.to_vec(),
                },
            )
            .await?;
            return Ok(Action::await_change());
        }
        // A policy never lends the daemon's identity: no file or environment variable of
        // the daemon, only the Prometheus addresses and Secrets the operator allows.
        // Decided before anything is read or sent.
        let prometheus = spec.analysis.prometheus.as_deref();
        if let Err(refusal) = refuse_local_credentials(prometheus, &policy_ref.namespace)
            .and_then(|()| self.seams.metrics.admit(&policy_ref, spec))
        {
            let message = refusal.to_string();
            self.refuse(
                policy,
                &policy_ref,
                refusal.reason(),
                &message,
                RolloutEvent::InvalidPolicy {
                    messages: vec![message.clone()],
                },
            )
            .await?;
            return Ok(Action::await_change());
        }
        let env_refusal = crate::runtime::hooks::daemon_refusal(spec, &policy_ref.namespace)
            .or_else(|| crate::policy::notify::daemon_refusal(spec, &policy_ref.namespace));
        if let Some(message) = env_refusal {
            self.refuse(
                policy,
                &policy_ref,
                crate::metrics::providers::CREDENTIALS_NOT_ALLOWED,
                &message,
                RolloutEvent::InvalidPolicy {
                    messages: vec![message.clone()],
                },
            )
            .await?;
            return Ok(Action::await_change());
        }
        if let Some((owner, route)) = self.routes.conflicting_owner(policy) {
            let message = format!(
                "{route} is already managed by RolloutPolicy {}/{}; one rollout per route at a \
                 time: remove the route from one of the two policies",
                owner.namespace, owner.name
            );
            self.refuse(
                policy,
                &policy_ref,
                reasons::ROUTE_CONFLICT,
                &message,
                RolloutEvent::RouteConflict {
                    message: message.clone(),
                },
            )
            .await?;
            // The owner may go away: look again at the resync.
            return Ok(Action::requeue(self.options.resync));
        }
        // Blue/green with colours: the live colour is stable, the idle one the canary.
        let build = |s: &RolloutSpec| self.seams.routers.build(&policy_ref, s);
        let oriented = if crate::runtime::colours::derives_from_idle_colour(spec) {
            match self
                .release_in_idle_colour(policy, &policy_ref, build)
                .await?
            {
                Some(spec) => Some(spec),
                None => return Ok(Action::requeue(self.options.resync)),
            }
        } else {
            crate::runtime::colours::oriented(spec, policy.status.as_ref(), build).await
        };
        let spec = oriented.as_ref().unwrap_or(spec);
        let router = match self.seams.routers.build(&policy_ref, spec) {
            Ok(router) => router,
            Err(error) => {
                let message = error.to_string();
                self.refuse(
                    policy,
                    &policy_ref,
                    reasons::ROUTER_NOT_SUPPORTED,
                    &message,
                    RolloutEvent::InvalidPolicy {
                        messages: vec![message.clone()],
                    },
                )
                .await?;
                return Ok(Action::await_change());
            }
        };
        self.metrics.set_thresholds(&policy_ref, spec);
        let reconciler = Reconciler::new(Seams {
            router: Arc::new(FencedRouter::new(
                Arc::new(CountingRouter {
                    inner: router,
                    metrics: self.metrics.clone(),
                }),
                self.leadership.clone(),
            )),
            metrics: Arc::new(TimedMetrics {
                inner: self.seams.metrics.clone(),
                metrics: self.metrics.clone(),
            }),
            // The policy's state and commands as the watch shows them: no GET.
            store: Arc::new(FencedStore::new(
                Arc::new(super::watched::WatchedStatus::new(
                    self.seams.store.clone(),
                    policy.clone(),
                    self.recent.clone(),
                )),
                self.leadership.clone(),
            )),
            checks: self.seams.checks.clone(),
            commands: Arc::new(super::watched::WatchedCommands {
                inner: self.seams.commands.clone(),
                object: policy.clone(),
            }),
            clock: self.seams.clock.clone(),
        })
        .with_hooks(self.hooks.clone())
        .with_workloads(Arc::new(FencedWorkloads::new(
            Arc::new(KubeWorkloads::new(
                self.seams.client.clone(),
                &policy_ref.namespace,
            )),
            self.leadership.clone(),
        )))
        .with_release_probe(Arc::new(KubeReleaseProbe::new(
            self.seams.client.clone(),
            &policy_ref.namespace,
        )));
        let outcome = match reconciler.tick(&policy_ref, spec).await {
            // The Deployments a policy names cannot serve it yet (`revisionFrom` of a
            // canary that cannot be read): said in the status, retried.
            Err(crate::runtime::ReconcileError::Workloads {
                message, transient, ..
            }) => {
                let event = RolloutEvent::InvalidPolicy {
                    messages: vec![message.clone()],
                };
                self.refuse(
                    policy,
                    &policy_ref,
                    reasons::INVALID_POLICY,
                    &message,
                    event,
                )
                .await?;
                return Ok(Action::requeue(scheduler::after_error(
                    transient,
                    self.options.resync,
                )));
            }
            result => result?,
        };
        let status = &outcome.status;
        self.metrics
            .set_rollout(&policy_ref, status.phase, status.step, status.canary_weight);
        if outcome.evaluated {
            self.publish_analysis(&policy_ref, status);
        }
        if let Some(web) = &self.web {
            web.record(
                &policy_ref,
                spec,
                status,
                outcome.evaluated,
                self.seams.clock.now(),
            );
        }
        let link = spec.grafana.as_ref().and_then(|g| {
            let (since, until) = crate::observe::grafana::rollout_range(status);
            dashboard_link(g, &policy_ref, since, until).ok()
        });
        let reference = object_reference(policy);
        for transition in &outcome.transitions {
            self.metrics
                .transition_observed(&policy_ref, transition, status.started_at);
            if let Some(event) = event_for(transition) {
                self.events
                    .publish(&reference, &event, link.as_deref())
                    .await;
            }
        }
        // Queued, never awaited: a slow receiver cannot delay the next tick.
        self.notifier
            .announce(&policy_ref, spec, status, &outcome.transitions);
        let route_invalid = outcome
            .problems
            .iter()
            .find(|p| p.reason == RouterError::Invalid(String::new()).reason());
        match route_invalid {
            Some(problem) => {
                self.refuse(
                    policy,
                    &policy_ref,
                    reasons::ROUTE_INVALID,
                    &problem.message,
                    RolloutEvent::RouteInvalid {
                        message: problem.message.clone(),
                    },
                )
                .await?;
            }
            None => self.accept_if_refused(&policy_ref, status).await?,
        }
        let now = self.seams.clock.now();
        let wake_at = self
            .fresh_data
            .wake_at(
                &*self.seams.metrics,
                &policy_ref,
                spec,
                &outcome.status,
                outcome.wake_at,
                now,
            )
            .await;
        Ok(Action::requeue(scheduler::requeue_after(
            now,
            wake_at,
            self.options.resync,
        )))
    }

    /// Colours with `revisionFrom`: the spec to tick, with the revision the idle colour's
    /// Deployment gives against its baseline; `None` while it holds no release (its
    /// baseline stored, looked at again at the resync). An unreadable Deployment is
    /// said in `Accepted=False` and retried.
    async fn release_in_idle_colour(
        &self,
        policy: &RolloutPolicy,
        policy_ref: &PolicyRef,
        build: impl Fn(&RolloutSpec) -> Result<Arc<dyn TrafficRouter>, RouterError>,
    ) -> Result<Option<RolloutSpec>, DaemonError> {
        use crate::runtime::colours::{release_in_idle_colour, store_idle, ColourRelease};
        let deployments = KubeWorkloads::new(self.seams.client.clone(), &policy_ref.namespace);
        let stored = policy.status.as_ref();
        match release_in_idle_colour(&policy.spec, stored, build, &deployments).await {
            Ok(ColourRelease::Tick(spec)) => Ok(Some(*spec)),
            Ok(ColourRelease::Idle(status)) => {
                let store = FencedStore::new(self.seams.store.clone(), self.leadership.clone());
                store_idle(&store, policy_ref, &status).await?;
                // The idle colour's Deployment is readable again: no longer refused.
                self.accept_if_refused(policy_ref, &status).await?;
                Ok(None)
            }
            Err(e) => {
                let message = format!(
                    "the revision comes from the idle colour's Deployment (revisionFrom), \
                     which cannot be read: {e}"
                );
                let event = RolloutEvent::InvalidPolicy {
                    messages: vec![message.clone()],
                };
                self.refuse(policy, policy_ref, reasons::INVALID_POLICY, &message, event)
                    .await?;
                Ok(None)
            }
        }
    }

    /// Accepted=False with `reason`: written once, with one Warning Event; nothing is
    /// written to any router.
    async fn refuse(
        &self,
        policy: &RolloutPolicy,
        policy_ref: &PolicyRef,
        reason: &'static str,
        message: &str,
        event: RolloutEvent,
    ) -> Result<(), DaemonError> {
        self.refuse_object(
            policy_ref,
            policy.metadata.generation,
            &object_reference(policy),
            reason,
            message,
            event,
        )
        .await
    }

    /// [`Context::refuse`] for an object known by its reference only (one that does
    /// not decode into a [`RolloutPolicy`]).
    pub(super) async fn refuse_object(
        &self,
        policy_ref: &PolicyRef,
        generation: Option<i64>,
        reference: &ObjectReference,
        reason: &'static str,
        message: &str,
        event: RolloutEvent,
    ) -> Result<(), DaemonError> {
        let (mut status, version) = match self.seams.store.load(policy_ref).await? {
            Some((status, version)) => (status, Some(version)),
            None => (RolloutStatus::default(), None),
        };
        let already = status.conditions.iter().any(|c| {
            c.type_ == ACCEPTED && c.status == "False" && c.reason == reason && c.message == message
        });
        if already {
            return Ok(());
        }
        tracing::warn!(namespace = %policy_ref.namespace, name = %policy_ref.name, reason, detail = %message, "policy refused");
        crate::engine::set_condition(
            &mut status.conditions,
            ACCEPTED,
            "False",
            reason,
            message,
            self.seams.clock.now(),
        );
        if let Some(condition) = status.conditions.iter_mut().find(|c| c.type_ == ACCEPTED) {
            condition.observed_generation = generation;
        }
        let saved = FencedStore::new(self.seams.store.clone(), self.leadership.clone())
            .save(policy_ref, &status, version.as_ref())
            .await?;
        self.recent.wrote(policy_ref, saved, status);
        self.events.publish(reference, &event, None).await;
        Ok(())
    }

    /// Once a refused policy is fine again, Accepted goes back to True.
    async fn accept_if_refused(
        &self,
        policy_ref: &PolicyRef,
        status: &RolloutStatus,
    ) -> Result<(), DaemonError> {
        let refused = status.conditions.iter().any(|c| {
            c.type_ == ACCEPTED
                && c.status == "False"
                && reasons::REFUSALS.contains(&c.reason.as_str())
        });
        if !refused {
            return Ok(());
        }
        let Some((mut status, version)) = self.seams.store.load(policy_ref).await? else {
            return Ok(());
        };
        crate::engine::set_condition(
            &mut status.conditions,
            ACCEPTED,
            "True",
            reasons::POLICY_ACCEPTED,
            "the policy is valid and its route is free",
            self.seams.clock.now(),
        );
        let saved = FencedStore::new(self.seams.store.clone(), self.leadership.clone())
            .save(policy_ref, &status, Some(&version))
            .await?;
        self.recent.wrote(policy_ref, saved, status);
        Ok(())
    }

    fn publish_analysis(&self, policy: &PolicyRef, status: &RolloutStatus) {
        let Some(analysis) = &status.last_analysis else {
            return;
        };
        self.metrics.analysis_evaluated(
            policy,
            match analysis.verdict {
                StatusVerdict::Pass => VerdictKind::Pass,
                StatusVerdict::Fail => VerdictKind::Fail,
                StatusVerdict::Inconclusive => VerdictKind::Inconclusive,
            },
        );
        for metric in &analysis.metrics {
            let share = metric.evidence.filter(|e| e.is_finite());
            self.metrics.set_evidence(policy, &metric.name, share);
            for (target, value) in [
                (Target::Canary, metric.canary),
                (Target::Stable, metric.stable),
            ] {
                match value.filter(|v| v.is_finite()) {
                    Some(value) => {
                        self.metrics
                            .set_metric_value(policy, &metric.name, target, value)
                    }
                    None => self
                        .metrics
                        .clear_metric_value(policy, &metric.name, target),
                }
            }
        }
    }
}

/// The errors `validate_spec` finds, as the refusal says them.
fn spec_errors(spec: &RolloutSpec) -> Vec<String> {
    validate_spec(spec)
        .into_iter()
        .filter(|issue| issue.severity == crate::policy::diagnostic::Severity::Error)
        .map(|issue| issue.to_string())
        .collect()
}

fn object_reference(policy: &RolloutPolicy) -> ObjectReference {
    policy.object_ref(&())
}

/// The Event a transition is announced with; `None` for transitions that are not worth
/// a human's attention on their own.
fn event_for(t: &Transition) -> Option<RolloutEvent> {
    let message = t.message.clone();
    Some(match t.kind {
        TransitionKind::Started => RolloutEvent::RolloutStarted {
            revision: t.revision.clone(),
        },
        TransitionKind::StepAdvanced => RolloutEvent::StepAdvanced {
            step: t.step,
            weight: t.canary_weight,
            message,
        },
        TransitionKind::Promoted => RolloutEvent::Promoted {
            revision: t.revision.clone(),
        },
        TransitionKind::Paused => RolloutEvent::Paused { message },
        // One Event per rollback, sent when it starts: it carries the reason.
        TransitionKind::RollingBack => RolloutEvent::RolledBack {
            reason: t.reason.clone(),
            message,
        },
        TransitionKind::Held => RolloutEvent::Held { message },
        TransitionKind::Aborted => RolloutEvent::Aborted { message },
        TransitionKind::InconclusiveLimit => RolloutEvent::AnalysisInconclusive { message },
        TransitionKind::Drift => RolloutEvent::DriftDetected { message },
        TransitionKind::CommandRefused => RolloutEvent::CommandRefused { message },
        TransitionKind::PromotionNotConfirmed => RolloutEvent::PromotionNotConfirmed { message },
        TransitionKind::Resumed | TransitionKind::RolledBack => return None,
    })
}
