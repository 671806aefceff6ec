//! Local rollouts: one policy file, driven in the foreground to its end with the real
//! reconciler, the Envoy router (or a cluster's router, see [`super::cluster_run`]), Prometheus, the file state store, HTTP checks and
//! file commands. Used by `shiftgate run`, `status`, `promote`, `pause`, `resume`,
//! `abort` (local mode) and by `shiftgate demo`.
//!
//! Nothing is kept in memory between ticks: a run that is interrupted (or killed) and
//! started again continues from the state file and what Envoy serves.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::checks_http::HttpChecks;
use super::clock::{Clock, SystemClock};
use super::cluster_run::{is_cluster_policy, kubeconfig_namespace};
use super::commands::NoCommands;
use super::commands_file::FileCommands;
use super::hooks::{HeaderSecrets, Hooks, ScriptedHooks, WebhookHooks};
use super::notify::{LogReport, Notifier};
use super::reconcile::{ReconcileError, Reconciler, Seams, TickOutcome};
use crate::engine::Plan;
use crate::metrics::prometheus::PrometheusSource;
use crate::metrics::PolicyRef;
use crate::policy::parse::parse_file;
use crate::policy::status::{AnalysisSummary, MetricSummary, VerdictKind};
use crate::policy::{Phase, RolloutSpec, RolloutStatus, Timestamp};
use crate::router::envoy::EnvoyRouter;
use crate::router::{LiveRoute, ManagedRoute, RouterError, TrafficRouter, Version};
use crate::store::file::FileStore;
use crate::store::memory::MemoryStore;
use crate::store::{StateStore, StoreError};

/// The longest a local run sleeps between ticks, so commands and Ctrl-C are seen quickly.
const MAX_TICK_GAP: Duration = Duration::from_secs(1);
/// The state directory when `--state-dir` is not given.
pub const DEFAULT_STATE_DIR: &str = ".shiftgate";

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The policy file is invalid; each line is one located diagnostic.
    #[error("{file} is not a valid policy:\n{}", diagnostics.join("\n"))]
    InvalidPolicy {
        file: String,
        diagnostics: Vec<String>,
    },
    /// The policy is valid but cannot run locally.
    #[error("{0}")]
    Unsupported(String),
    /// A cluster run could not reach, or may not drive, the cluster.
    #[error(transparent)]
    Cluster(Box<super::cluster_run::ClusterRunError>),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the rollout of {policy}: {message}")]
    CannotRun { policy: String, message: String },
    /// The canary already serves more than the first step: nothing was written.
    #[error("refusing to start the rollout of {policy}: {message}")]
    CanaryIsLive { policy: String, message: String },
}

impl From<super::cluster_run::ClusterRunError> for LocalError {
    fn from(error: super::cluster_run::ClusterRunError) -> Self {
        LocalError::Cluster(Box::new(error))
    }
}

impl LocalError {
    /// Whether the input (not the world) is at fault: exit code 2 rather than 3.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            LocalError::InvalidPolicy { .. }
            | LocalError::Unsupported(_)
            | LocalError::CanaryIsLive { .. } => true,
            LocalError::Reconcile(e) => {
                !e.is_transient() && matches!(e, ReconcileError::Plan { .. })
            }
            LocalError::Store(_) | LocalError::CannotRun { .. } | LocalError::Cluster(_) => false,
        }
    }
}

/// A policy read from a file, with the identity its state is stored under.
#[derive(Clone, Debug)]
pub struct LocalPolicy {
    pub policy: PolicyRef,
    pub spec: RolloutSpec,
    pub file: PathBuf,
    /// Whether the file names `metadata.namespace` (else the default was used).
    pub namespace_from_file: bool,
}

/// What a local command acts on: a policy file (or `[namespace/]name`) and the state dir.
#[derive(Clone, Debug)]
pub struct LocalTarget {
    pub policy: PolicyRef,
    pub state_dir: PathBuf,
}

impl LocalTarget {
    /// `policy` is a policy file when one exists at that path, else `[namespace/]name`
    /// (namespace `default`).
    pub fn resolve(policy: &str, state_dir: &Path) -> Result<LocalTarget, LocalError> {
        let policy = if Path::new(policy).is_file() {
            let local = load_policy(Path::new(policy))?;
            if local.namespace_from_file || !is_cluster_policy(&local.spec) {
                local.policy
            } else {
                // `shiftgate run` put a cluster policy without a namespace in the
                // kubeconfig context's namespace; its state is stored under that one.
                PolicyRef {
                    namespace: kubeconfig_namespace(),
                    name: local.policy.name,
                }
            }
        } else {
            let (namespace, name) = policy.split_once('/').unwrap_or(("default", policy));
            if name.is_empty() || namespace.is_empty() || name.contains('/') {
                return Err(LocalError::Unsupported(format!(
                    "{policy:?} is neither a policy file nor `[namespace/]name`"
                )));
            }
            PolicyRef {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }
        };
        Ok(LocalTarget {
            policy,
            state_dir: state_dir.to_owned(),
        })
    }

    pub fn store(&self) -> FileStore {
        FileStore::new(&self.state_dir)
    }

    pub fn commands(&self) -> FileCommands {
        FileCommands::new(&self.state_dir)
    }
}

/// Reads one policy from `file`; every problem is reported at once. A policy without
/// `metadata.namespace` is in namespace `default`.
pub fn load_policy(file: &Path) -> Result<LocalPolicy, LocalError> {
    load_policy_in(file, "default")
}

/// Reads one policy from `file`, in `default_namespace` when it names none (a cluster
/// run passes the kubeconfig context's namespace, as kubectl would).
pub fn load_policy_in(file: &Path, default_namespace: &str) -> Result<LocalPolicy, LocalError> {
    let shown = file.display().to_string();
    let mut policies = parse_file(file).map_err(|diagnostics| LocalError::InvalidPolicy {
        file: shown.clone(),
        diagnostics: diagnostics.iter().map(ToString::to_string).collect(),
    })?;
    if policies.len() != 1 {
        return Err(LocalError::Unsupported(format!(
            "{shown} holds {} policies; a local run takes a file with exactly one",
            policies.len()
        )));
    }
    let loaded = policies.remove(0);
    let metadata = &loaded.policy.metadata;
    let name = metadata.name.clone().ok_or_else(|| {
        LocalError::Unsupported(format!("{shown}: the policy has no metadata.name; add one"))
    })?;
    let namespace_from_file = metadata.namespace.is_some();
    Ok(LocalPolicy {
        namespace_from_file,
        policy: PolicyRef {
            namespace: metadata
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_owned()),
            name,
        },
        spec: loaded.policy.spec,
        file: file.to_owned(),
    })
}

/// How a local run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEnd {
    /// A terminal phase (Promoted, RolledBack, Aborted, Held) with no write in flight.
    Settled(RolloutStatus),
    /// Paused; a `resume` and another run continue it.
    Paused(RolloutStatus),
    /// Stopped by a signal between ticks; the state is persisted.
    Interrupted(RolloutStatus),
}

impl RunEnd {
    pub fn status(&self) -> &RolloutStatus {
        match self {
            RunEnd::Settled(s) | RunEnd::Paused(s) | RunEnd::Interrupted(s) => s,
        }
    }
}

/// One tick as the progress display sees it.
pub struct TickReport<'a> {
    pub now: Timestamp,
    pub spec: &'a RolloutSpec,
    pub outcome: &'a TickOutcome,
}

/// `--dry-run` and friends.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Evaluate for real but never write a route (nor the state file).
    pub dry_run: bool,
}

/// One local rollout, ready to run.
pub struct LocalRun {
    local: LocalPolicy,
    reconciler: Reconciler,
    router: Arc<dyn TrafficRouter>,
    store: Arc<dyn StateStore>,
    /// The file store behind `store` (none in a dry run): cleaned up at the start.
    file_store: Option<FileStore>,
    clock: Arc<dyn Clock>,
    /// Gates in the tick, `postRollout`/`rollback` in the background (awaited, bounded,
    /// before the run ends).
    hooks: Arc<Hooks>,
    /// The metric source of the ticks, asked when new data lands.
    metrics: Arc<dyn crate::metrics::MetricSource>,
    fresh_data: super::fresh_data::FreshData,
    /// `spec.notify` and Grafana annotations, started with the first tick (none in a
    /// dry run: it calls no receiver).
    notify: bool,
    notifier: std::sync::OnceLock<Arc<Notifier>>,
}

impl LocalRun {
    pub fn new(
        local: LocalPolicy,
        state_dir: &Path,
        options: RunOptions,
    ) -> Result<Self, LocalError> {
        let label = format!("{}/{}", local.policy.namespace, local.policy.name);
        let Some(envoy) = &local.spec.router.envoy else {
            return Err(LocalError::Unsupported(format!(
                "{label}: `shiftgate run` drives a local Envoy (spec.router.envoy); istio and \
                 service routers run under `shiftgate daemon` in a cluster"
            )));
        };
        if local.spec.workloads.is_some() {
            return Err(LocalError::Unsupported(format!(
                "{label}: spec.workloads names Kubernetes Deployments, and a local Envoy run has \
                 no cluster to read them from; remove spec.workloads, or use an istio or service \
                 router with `shiftgate run` against a cluster or `shiftgate daemon`"
            )));
        }
        let envoy = EnvoyRouter::new(envoy, local.spec.test_route.as_deref()).map_err(|e| {
            LocalError::CannotRun {
                policy: label.clone(),
                message: e.to_string(),
            }
        })?;
        Ok(
            Self::with_router(local, Arc::new(envoy), state_dir, options)?
                .with_release_probe(Arc::new(super::release_presence_envoy::EnvoyReleaseProbe)),
        )
    }

    /// A run that drives `real_router` (Envoy, or a cluster's VirtualService/Service),
    /// with the file store and file commands under `state_dir`.
    pub fn with_router(
        local: LocalPolicy,
        real_router: Arc<dyn TrafficRouter>,
        state_dir: &Path,
        options: RunOptions,
    ) -> Result<Self, LocalError> {
        let label = format!("{}/{}", local.policy.namespace, local.policy.name);
        let checks = HttpChecks::new().map_err(|e| LocalError::CannotRun {
            policy: label.clone(),
            message: format!("cannot build the HTTP client for checks: {e}"),
        })?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (router, store, commands): (Arc<dyn TrafficRouter>, Arc<dyn StateStore>, Arc<_>) =
            if options.dry_run {
                let router: Arc<dyn TrafficRouter> =
                    Arc::new(DryRunRouter::new(Arc::clone(&real_router)));
                let commands: Arc<dyn super::commands::CommandSource> = Arc::new(NoCommands);
                (router, Arc::new(MemoryStore::default()), commands)
            } else {
                let commands: Arc<dyn super::commands::CommandSource> =
                    Arc::new(FileCommands::new(state_dir));
                (real_router, Arc::new(FileStore::new(state_dir)), commands)
            };
        let metrics: Arc<dyn crate::metrics::MetricSource> = Arc::new(PrometheusSource::new(None));
        let seams = Seams {
            router: Arc::clone(&router),
            metrics: Arc::clone(&metrics),
            store: Arc::clone(&store),
            checks: Arc::new(checks),
            commands,
            clock: Arc::clone(&clock),
        };
        // A dry run calls no receiver: every hook is taken as answering 2xx.
        let hooks = Hooks::new(if options.dry_run {
            Arc::new(ScriptedHooks::default())
        } else {
            Arc::new(WebhookHooks::new(HeaderSecrets::Environment))
        });
        Ok(LocalRun {
            local,
            reconciler: Reconciler::new(seams).with_hooks(Arc::clone(&hooks)),
            hooks,
            router,
            store,
            file_store: (!options.dry_run).then(|| FileStore::new(state_dir)),
            clock,
            metrics,
            fresh_data: super::fresh_data::FreshData::default(),
            notify: !options.dry_run,
            notifier: std::sync::OnceLock::new(),
        })
    }

    /// Serves `spec.workloads` through a cluster's Deployments (cluster runs only).
    pub fn with_workloads(mut self, workloads: Arc<dyn super::workloads::Workloads>) -> Self {
        self.reconciler = self.reconciler.with_workloads(workloads);
        self
    }

    /// Looks at the previous release through `probe` before an `undo` flips back.
    pub fn with_release_probe(
        mut self,
        probe: Arc<dyn super::release_presence::PreviousReleaseProbe>,
    ) -> Self {
        self.reconciler = self.reconciler.with_release_probe(probe);
        self
    }

    pub fn policy(&self) -> &LocalPolicy {
        &self.local
    }

    /// Checks the router answers before anything starts: a run that cannot see Envoy (or
    /// whose VirtualService, route, destination or Service is missing) fails fast,
    /// with nothing written, instead of waiting.
    /// Also the start of a run: the temp files a killed run left behind (the state's
    /// here, the routes file's in the Envoy router's first read) are removed.
    pub async fn preflight(&self) -> Result<LiveRoute, LocalError> {
        if let Some(file_store) = &self.file_store {
            match file_store
                .remove_leftover_temp_files(&self.local.policy)
                .await
            {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "removed temp files left by a killed save"),
                Err(e) => tracing::warn!(error = %e, "leftover temp files stay"),
            }
        }
        let live = self
            .router
            .read()
            .await
            .map_err(|e| LocalError::CannotRun {
                policy: format!("{}/{}", self.local.policy.namespace, self.local.policy.name),
                message: e.to_string(),
            })?;
        // Every query is asked once before anything moves: an unreachable Prometheus or
        // a broken query stops the run here, with nothing written.
        let source = PrometheusSource::new(None);
        let probed = super::preflight::probe_queries(
            &source,
            &self.local.policy,
            &self.local.spec,
            self.clock.now(),
        )
        .await;
        match probed {
            Ok(warnings) => {
                for warning in &warnings {
                    tracing::warn!(%warning, "count query without series");
                }
                Ok(live)
            }
            Err(e) if e.is_invalid_input() => Err(LocalError::Unsupported(e.to_string())),
            // Traffic already moved and nobody else is driving it: refusing to run would
            // leave the canary at its weight unattended. Going on, the outage is
            // Inconclusive and the policy's `onInconclusive` acts after its limit.
            Err(e) if self.resumes_moved_traffic().await => {
                tracing::warn!(
                    namespace = %self.local.policy.namespace,
                    name = %self.local.policy.name,
                    error = %e,
                    "resuming a rollout whose traffic already moved while Prometheus is unavailable: \
                     evaluations are inconclusive until it answers"
                );
                Ok(live)
            }
            Err(e) => Err(LocalError::CannotRun {
                policy: format!("{}/{}", self.local.policy.namespace, self.local.policy.name),
                message: e.to_string(),
            }),
        }
    }

    /// Whether the stored state is an unfinished rollout of this revision that already
    /// moved traffic (or installed its test route).
    async fn resumes_moved_traffic(&self) -> bool {
        match self.store.load(&self.local.policy).await {
            Ok(Some((status, _))) => {
                status.revision.as_deref() == Some(self.local.spec.revision.as_str())
                    && !status.is_settled()
                    && (status.canary_weight > 0 || status.test_route || status.target.is_some())
            }
            Ok(None) | Err(_) => false,
        }
    }

    /// Ticks until the rollout settles, pauses, or `stop` is cancelled (checked between
    /// ticks: a tick in flight finishes its write and persists first).
    pub async fn run(
        &self,
        observe: &mut (dyn FnMut(&TickReport<'_>) + Send),
        stop: &CancellationToken,
    ) -> Result<RunEnd, LocalError> {
        let notifier = self.notify.then(|| {
            let start = || Notifier::start(HeaderSecrets::Environment, Arc::new(LogReport));
            Arc::clone(self.notifier.get_or_init(start))
        });
        let end = self.ticks(observe, stop, notifier.as_deref()).await;
        if let Some(notifier) = notifier {
            notifier.finish(&self.local.spec).await;
        }
        end
    }

    async fn ticks(
        &self,
        observe: &mut (dyn FnMut(&TickReport<'_>) + Send),
        stop: &CancellationToken,
        notifier: Option<&Notifier>,
    ) -> Result<RunEnd, LocalError> {
        loop {
            let outcome = self
                .reconciler
                .tick(&self.local.policy, &self.local.spec)
                .await?;
            if let Some(notifier) = notifier {
                // Queued after the tick's writes, never awaited.
                notifier.announce(
                    &self.local.policy,
                    &self.local.spec,
                    &outcome.status,
                    &outcome.transitions,
                );
            }
            let now = self.clock.now();
            observe(&TickReport {
                now,
                spec: &self.local.spec,
                outcome: &outcome,
            });
            let status = outcome.status.clone();
            if crate::engine::refused_live_canary(&status) {
                return Err(LocalError::CanaryIsLive {
                    policy: format!("{}/{}", self.local.policy.namespace, self.local.policy.name),
                    message: status.message.unwrap_or_default(),
                });
            }
            if status.is_settled() {
                return Ok(RunEnd::Settled(self.after_background_hooks(status).await?));
            }
            if status.phase == Phase::Paused {
                return Ok(RunEnd::Paused(status));
            }
            if stop.is_cancelled() {
                return Ok(RunEnd::Interrupted(status));
            }
            // Just after the scrape that brings new data, when analysing.
            let wake_at = self
                .fresh_data
                .wake_at(
                    &*self.metrics,
                    &self.local.policy,
                    &self.local.spec,
                    &status,
                    outcome.wake_at,
                    now,
                )
                .await;
            // A wake within two gaps is kept whole: an evaluation timed to the scrape
            // after its due time (up to a scrape period later) cut short at one gap ran
            // at its due time instead, unaligned, in most runs.
            let gap = wake_at
                .and_then(|at| (at - now).to_std().ok())
                .filter(|gap| *gap <= MAX_TICK_GAP * 2)
                .unwrap_or(MAX_TICK_GAP);
            tokio::select! {
                _ = stop.cancelled() => return Ok(RunEnd::Interrupted(status)),
                _ = tokio::time::sleep(gap) => {}
            }
        }
    }
}

impl LocalRun {
    /// Waits for the `postRollout`/`rollback` hooks started after the last write (at
    /// most as long as they may take) and records their answers with one more tick.
    async fn after_background_hooks(
        &self,
        status: RolloutStatus,
    ) -> Result<RolloutStatus, LocalError> {
        if !self
            .local
            .spec
            .hooks
            .iter()
            .any(|h| h.on.iter().any(|p| !p.is_gate()))
        {
            return Ok(status);
        }
        let limit = Hooks::longest(&self.local.spec).saturating_add(Duration::from_secs(1));
        if !self.hooks.wait_idle(limit).await {
            tracing::warn!("a background hook did not finish within its timeouts");
        }
        let outcome = self
            .reconciler
            .tick(&self.local.policy, &self.local.spec)
            .await?;
        Ok(outcome.status)
    }
}

/// One line of progress: phase, step, weight, time left in the step, each metric
/// against its limit.
pub fn describe_progress(spec: &RolloutSpec, status: &RolloutStatus, now: Timestamp) -> String {
    let steps = spec.steps.len();
    let mut line = format!(
        "{} · step {}/{} · canary {}%",
        status.phase,
        (status.step as usize + 1).min(steps.max(1)),
        steps,
        status.canary_weight
    );
    if status.test_route {
        line.push_str(" + test route");
    }
    if let Some(target) = status.target {
        line.push_str(&format!(" → {}%", target.canary_weight));
    }
    if let (Ok(plan), Some(started), Phase::Progressing) =
        (Plan::new(spec), status.step_started_at, status.phase)
    {
        let left = crate::engine::plan::later(started, plan.hold(status.step)) - now;
        if left > chrono::Duration::zero() {
            line.push_str(&format!(" · {}s left in step", left.num_seconds() + 1));
        }
    }
    match current_analysis(status) {
        Some(analysis) => {
            line.push_str(&format!(" · analysis {}", analysis.verdict.as_str()));
            if let Some(requests) = analysis.canary_requests {
                line.push_str(&format!(" ({requests:.0} canary reqs)"));
            }
            // Why it did not pass (too few requests, no data, …), as `status` says it.
            if analysis.verdict != VerdictKind::Pass {
                line.push_str(&format!(": {}: {}", analysis.reason, analysis.message));
            }
            for metric in &analysis.metrics {
                line.push_str(&format!("\n    {}", describe_metric(metric)));
            }
        }
        None if status.last_analysis.is_some()
            && status.phase == Phase::Progressing
            && status.target.is_none() =>
        {
            line.push_str(" · no analysis of this step yet");
        }
        None => {}
    }
    line
}

/// The last analysis when it judged the current step: one made before the step's
/// weight was confirmed (the previous step's, shown after a `promote` or an
/// advance) is not this step's verdict.
pub fn current_analysis(status: &RolloutStatus) -> Option<&AnalysisSummary> {
    status.last_analysis.as_ref().filter(|analysis| {
        status
            .step_started_at
            .is_some_and(|started| analysis.at >= started)
    })
}

/// One metric of an analysis, as `run` and `status` show it.
pub fn describe_metric(metric: &MetricSummary) -> String {
    format!("{}: {}", metric.name, metric.message)
}

/// Pretends writes land, without touching the real router: `--dry-run`.
struct DryRunRouter {
    real: Arc<dyn TrafficRouter>,
    pretend: Mutex<Option<(ManagedRoute, u64)>>,
}

impl DryRunRouter {
    fn new(real: Arc<dyn TrafficRouter>) -> Self {
        DryRunRouter {
            real,
            pretend: Mutex::new(None),
        }
    }

    fn pretended(&self) -> Option<(ManagedRoute, u64)> {
        *self.pretend.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl TrafficRouter for DryRunRouter {
    async fn read(&self) -> Result<LiveRoute, RouterError> {
        match self.pretended() {
            Some((route, generation)) => Ok(LiveRoute {
                route,
                version: Version(format!("dry-run-{generation}")),
            }),
            None => self.real.read().await,
        }
    }

    async fn apply(&self, expect: &Version, desired: ManagedRoute) -> Result<Version, RouterError> {
        let current = self.read().await?;
        if &current.version != expect {
            return Err(RouterError::Conflict {
                what: format!(
                    "dry run at {:?}, expected {:?}",
                    current.version.0, expect.0
                ),
            });
        }
        let generation = self.pretended().map_or(1, |(_, g)| g + 1);
        *self.pretend.lock().unwrap_or_else(|p| p.into_inner()) = Some((desired, generation));
        tracing::info!(
            weight = desired.canary_weight,
            test_route = desired.test_route,
            "dry run: route not written"
        );
        Ok(Version(format!("dry-run-{generation}")))
    }
}
