//! The cluster side of `status`, `promote`, `pause`, `resume` and `abort`: the
//! RolloutPolicy NAME in namespace NS, reached through kubeconfig (kube's
//! `Config::infer`: `$KUBECONFIG`, `~/.kube/config`, then in-cluster), like
//! `kubectl argo rollouts`. Commands are written as annotations the daemon consumes
//! (see `runtime::commands_kube`). Also the `kubectl shiftgate` plugin.

use std::path::Path;

use anyhow::Context as _;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

use crate::cli::exit;
use crate::cli::output::{out, say};
use crate::cli::status_view::{
    encode, grafana_link, phase_exit_code, with_grafana_link, ReadOutput,
};
use crate::engine::Command;
use crate::metrics::PolicyRef;
use crate::policy::{GrafanaSpec, RolloutPolicy, RolloutSpec, RolloutStatus};
use crate::runtime::commands_kube::{
    last_handled_command, pending_command, submit_command, CommandAnnotation, SubmitError,
};
use crate::store::file::FileStore;

/// Set by the `kubectl-shiftgate` plugin: every policy argument names a cluster object.
pub const CLUSTER_ENV: &str = "SHIFTGATE_CLUSTER";

/// A RolloutPolicy in a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterTarget {
    pub name: String,
    /// `None`: the kubeconfig context's namespace (or `default`).
    pub namespace: Option<String>,
    /// kubeconfig context; `None`: the current one.
    pub context: Option<String>,
}

impl ClusterTarget {
    /// From the CLI argument: `NAME` or `NAMESPACE/NAME`; `-n` wins over the prefix.
    pub fn from_arg(arg: &str, namespace: Option<&str>, context: Option<&str>) -> Self {
        let (prefix, name) = match arg.split_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, arg),
        };
        Self {
            name: name.to_owned(),
            namespace: namespace.or(prefix).map(str::to_owned),
            context: context.map(str::to_owned),
        }
    }
}

/// Whether a `status`/`promote`/… argument means a cluster object: when asked for
/// (`--cluster`, or the kubectl plugin), or when it is neither a policy file (nor a
/// `.yaml`/`.yml`/`.json` path) nor a rollout with local state under `state_dir`.
pub fn wants_cluster(arg: &str, namespace: Option<&str>, state_dir: &Path, forced: bool) -> bool {
    if forced || std::env::var_os(CLUSTER_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
        return true;
    }
    // A file, or what looks like one (a typo in a path is reported as a missing file).
    let looks_like_file = [".yaml", ".yml", ".json"]
        .iter()
        .any(|ext| arg.ends_with(ext));
    if looks_like_file || Path::new(arg).is_file() {
        return false;
    }
    let target = ClusterTarget::from_arg(arg, namespace, None);
    let local = PolicyRef {
        namespace: target.namespace.unwrap_or_else(|| "default".to_owned()),
        name: target.name,
    };
    !FileStore::new(state_dir).path(&local).exists()
}

/// The cluster object a `status`/`promote`/… argument names, when it names one.
pub fn cluster_target(args: &crate::cli::status::LocalPolicyArgs) -> Option<ClusterTarget> {
    let namespace = args.namespace.as_deref();
    wants_cluster(&args.policy, namespace, &args.state_dir, args.cluster)
        .then(|| ClusterTarget::from_arg(&args.policy, namespace, args.context.as_deref()))
}

/// Connects through kubeconfig; returns the client and the namespace to use.
async fn connect(target: &ClusterTarget) -> anyhow::Result<(kube::Client, String)> {
    let config = match &target.context {
        Some(context) => {
            let options = KubeConfigOptions {
                context: Some(context.clone()),
                ..KubeConfigOptions::default()
            };
            let kubeconfig = Kubeconfig::read()
                .context("cannot read the kubeconfig ($KUBECONFIG or ~/.kube/config)")?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .with_context(|| format!("cannot use kubeconfig context {context:?}"))?
        }
        None => kube::Config::infer().await.context(
            "cannot find a cluster: no kubeconfig ($KUBECONFIG or ~/.kube/config) and not \
             running in a pod",
        )?,
    };
    let namespace = target
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).context("cannot build a Kubernetes client")?;
    Ok((client, namespace))
}

/// Reads the RolloutPolicy `target` names: the namespace used, and the object (`None`:
/// there is none).
pub async fn fetch_policy(
    target: &ClusterTarget,
) -> anyhow::Result<(String, Option<DynamicObject>)> {
    let (client, namespace) = connect(target).await?;
    let resource = ApiResource::erase::<RolloutPolicy>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource);
    let object = api.get_opt(&target.name).await.with_context(|| {
        format!(
            "cannot read rolloutpolicies.shiftgate.dev {namespace}/{}",
            target.name
        )
    })?;
    Ok((namespace, object))
}

/// Lists the RolloutPolicies of `namespace` (`None`: the context's namespace) or, with
/// `all`, of every namespace.
pub async fn list_policies(
    target: &ClusterTarget,
    all: bool,
) -> anyhow::Result<Vec<DynamicObject>> {
    let (client, namespace) = connect(target).await?;
    let resource = ApiResource::erase::<RolloutPolicy>(&());
    let api: Api<DynamicObject> = if all {
        Api::all_with(client, &resource)
    } else {
        Api::namespaced_with(client, &namespace, &resource)
    };
    let listed = api
        .list(&kube::api::ListParams::default())
        .await
        .with_context(|| {
            if all {
                "cannot list rolloutpolicies.shiftgate.dev in all namespaces".to_owned()
            } else {
                format!("cannot list rolloutpolicies.shiftgate.dev in namespace {namespace}")
            }
        })?;
    Ok(listed.items)
}

/// `spec.grafana` of a RolloutPolicy object, read on its own (so a spec this CLI
/// cannot read whole still gets its link).
pub fn grafana_of(object: &DynamicObject) -> Option<GrafanaSpec> {
    let grafana = object.data.pointer("/spec/grafana")?;
    serde_json::from_value(grafana.clone()).ok()
}

/// The spec and status of a RolloutPolicy object, when they can be read.
pub fn spec_and_status(object: &DynamicObject) -> (Option<RolloutSpec>, Option<RolloutStatus>) {
    let read = |field: &str| object.data.get(field).filter(|v| !v.is_null()).cloned();
    (
        read("spec").and_then(|v| serde_json::from_value(v).ok()),
        read("status").and_then(|v| serde_json::from_value(v).ok()),
    )
}

/// `shiftgate status NAME -n NS`: text on stderr, or the status object as JSON or YAML
/// on stdout; the exit code says how the rollout stands.
pub fn cluster_status(target: &ClusterTarget, output: ReadOutput) -> i32 {
    let runtime = match crate::cli::current_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let (namespace, object) = match runtime.block_on(fetch_policy(target)) {
        Ok((namespace, Some(object))) => (namespace, object),
        Ok((namespace, None)) => {
            say!(
                "error: rolloutpolicies.shiftgate.dev {namespace}/{} not found; check the name \
                 and -n NAMESPACE (kubectl get rolloutpolicies -A)",
                target.name
            );
            return exit::COULD_NOT_RUN;
        }
        Err(e) => {
            say!("error: {e:#}");
            return exit::COULD_NOT_RUN;
        }
    };
    let policy = PolicyRef {
        namespace: namespace.clone(),
        name: target.name.clone(),
    };
    let (_, status) = spec_and_status(&object);
    let link = status
        .as_ref()
        .and_then(|status| grafana_link(grafana_of(&object).as_ref(), &policy, status));
    let code = status.as_ref().map_or(exit::OK, phase_exit_code);
    if output != ReadOutput::Text {
        let raw_status = object.data.get("status").cloned().unwrap_or(Value::Null);
        match encode(&with_grafana_link(raw_status, link.as_deref()), output) {
            Ok(text) => out!("{}", text.trim_end()),
            Err(e) => {
                say!("error: cannot encode the status: {e:#}");
                return exit::COULD_NOT_RUN;
            }
        }
        return code;
    }
    for line in describe(&namespace, &object) {
        say!("{line}");
    }
    if let Some(link) = &link {
        say!("  grafana: {link}");
    }
    code
}

/// The human-readable status of a cluster RolloutPolicy, one line per entry.
pub fn describe(namespace: &str, object: &DynamicObject) -> Vec<String> {
    let name = object.metadata.name.clone().unwrap_or_default();
    let revision = object
        .data
        .pointer("/spec/revision")
        .and_then(Value::as_str)
        .unwrap_or("-");
    let steps = object
        .data
        .pointer("/spec/steps")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let mut lines = vec![format!("{namespace}/{name} revision {revision}")];
    let status = match object.data.get("status") {
        None | Some(Value::Null) => {
            lines.push("  not started: the daemon has not recorded a status yet".into());
            None
        }
        Some(raw) => match serde_json::from_value::<RolloutStatus>(raw.clone()) {
            Ok(status) => Some(status),
            Err(e) => {
                lines.push(format!("  unreadable status: {e}"));
                None
            }
        },
    };
    if let Some(status) = &status {
        lines.extend(describe_status(status, steps, object.metadata.generation));
    }
    if let Some(CommandAnnotation {
        command,
        id,
        revision,
    }) = pending_command(object)
    {
        let id = id.unwrap_or_default();
        if last_handled_command(object).as_deref() != Some(id.as_str()) {
            let revision = revision.as_deref().unwrap_or("no revision");
            lines.push(format!(
                "  command `{command}` for {revision} (id {id}) requested, not yet handled by \
                 the daemon"
            ));
        }
    }
    lines
}

fn describe_status(status: &RolloutStatus, steps: usize, generation: Option<i64>) -> Vec<String> {
    let mut lines = Vec::new();
    let mut headline = format!(
        "  {} · step {}/{} · canary {}%",
        status.phase,
        (status.step as usize + 1).min(steps.max(1)),
        steps,
        status.canary_weight
    );
    if status.test_route {
        headline.push_str(" + test route");
    }
    if let Some(target) = &status.target {
        headline.push_str(&format!(" → {}%", target.canary_weight));
    }
    lines.push(headline);
    if let Some(colours) = crate::engine::colours::describe(status) {
        lines.push(format!("  {colours}"));
    }
    if let (Some(observed), Some(generation)) = (status.observed_generation, generation) {
        if observed != generation {
            lines.push(format!(
                "  the spec changed (generation {generation}); the daemon last saw generation {observed}"
            ));
        }
    }
    if let Some(message) = &status.message {
        lines.push(format!(
            "  {}: {message}",
            status.reason.as_deref().unwrap_or("-")
        ));
    }
    for result in &status.last_hooks {
        lines.push(format!(
            "  {}",
            crate::runtime::hooks::describe_hook(result)
        ));
    }
    if let Some(analysis) = &status.last_analysis {
        // After a step change the last analysis judged the step before: say so.
        let of_an_earlier_step = crate::runtime::local::current_analysis(status).is_none();
        let mut line = format!(
            "  {} {} at {}",
            if of_an_earlier_step {
                "analysis of an earlier step"
            } else {
                "analysis"
            },
            analysis.verdict.as_str(),
            analysis.at
        );
        if let Some(requests) = analysis.canary_requests {
            line.push_str(&format!(" ({requests:.0} canary reqs)"));
        }
        if analysis.verdict != crate::policy::status::VerdictKind::Pass {
            line.push_str(&format!(": {}: {}", analysis.reason, analysis.message));
        }
        lines.push(line);
        for metric in &analysis.metrics {
            lines.push(format!(
                "    {}",
                crate::runtime::local::describe_metric(metric)
            ));
        }
    }
    for condition in &status.conditions {
        lines.push(format!(
            "  {}={} {}: {}",
            condition.type_, condition.status, condition.reason, condition.message
        ));
    }
    lines
}

/// Why a cluster command was not sent.
enum NotSent {
    /// The revision is not the running one (or not clear): exit 2.
    Revision(String),
    /// No rollout of that revision is in progress: exit 6.
    NotInProgress(String),
    Submit(SubmitError),
}

/// `shiftgate promote|pause|resume|abort NAME -n NS`: writes the command annotations,
/// for `revision` or the one running (`status.revision`, else `spec.revision`).
pub fn cluster_command(target: &ClusterTarget, command: Command, revision: Option<&str>) -> i32 {
    let runtime = match crate::cli::current_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let submitted = runtime.block_on(async {
        let (client, namespace) = connect(target).await?;
        let resource = ApiResource::erase::<RolloutPolicy>(&());
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
        let object = api.get_opt(&target.name).await.with_context(|| {
            format!(
                "cannot read rolloutpolicies.shiftgate.dev {namespace}/{}",
                target.name
            )
        })?;
        let Some(object) = object else {
            let missing = SubmitError::NotFound {
                namespace: namespace.clone(),
                name: target.name.clone(),
            };
            return anyhow::Ok((namespace, String::new(), Err(NotSent::Submit(missing))));
        };
        let text = |pointer: &str| {
            object
                .data
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (running, desired) = (text("/status/revision"), text("/spec/revision"));
        let revision = match crate::cli::promote::command_revision(
            revision,
            running.as_deref(),
            desired.as_deref(),
        ) {
            Ok(revision) => revision,
            Err(why) => return Ok((namespace, String::new(), Err(NotSent::Revision(why)))),
        };
        // A status this CLI cannot read is left for the daemon to judge.
        let status = match object.data.get("status").cloned() {
            None | Some(Value::Null) => Ok(None),
            Some(value) => serde_json::from_value::<RolloutStatus>(value).map(Some),
        };
        if let Ok(status) = status {
            let start = "the daemon starts it once spec.revision names it";
            let refusal = if command == Command::Undo {
                crate::cli::undo::nothing_to_undo(status.as_ref(), &revision)
            } else if command == Command::Retry {
                crate::cli::retry::nothing_to_retry(status.as_ref(), &revision)
            } else {
                crate::cli::promote::not_in_progress(status.as_ref(), &revision, start)
            };
            if let Some(why) = refusal {
                return Ok((namespace, revision, Err(NotSent::NotInProgress(why))));
            }
        }
        let submitted = submit_command(client, &namespace, &target.name, command, &revision)
            .await
            .map_err(NotSent::Submit);
        anyhow::Ok((namespace, revision, submitted))
    });
    match submitted {
        Ok((namespace, _, Err(NotSent::Revision(why)))) => {
            say!(
                "error: `{command}` not sent to {namespace}/{}: {why}",
                target.name
            );
            exit::INVALID_INPUT
        }
        Ok((namespace, _, Err(NotSent::NotInProgress(why)))) => {
            say!(
                "error: `{command}` not sent to {namespace}/{}: {why}",
                target.name
            );
            if command == Command::Undo {
                exit::NOTHING_TO_UNDO
            } else {
                exit::NOT_IN_PROGRESS
            }
        }
        Ok((namespace, revision, Ok(submitted))) => {
            if let Some(previous) = submitted.replaced_unhandled {
                say!(
                    "warning: the earlier command {previous} had not been handled yet; `{command}` replaces it"
                );
            }
            say!(
                "shiftgate: `{command}` for revision {revision} requested for {namespace}/{} \
                 (command id {}); the daemon applies it on its next tick, or refuses it if \
                 another revision runs by then (see `shiftgate status {} -n {namespace}`)",
                target.name,
                submitted.id,
                target.name
            );
            exit::OK
        }
        Ok((_, _, Err(NotSent::Submit(e @ SubmitError::NotFound { .. })))) => {
            say!("error: {e}");
            exit::COULD_NOT_RUN
        }
        Ok((_, _, Err(NotSent::Submit(e)))) => {
            say!("error: {:#}", anyhow::Error::from(e));
            exit::COULD_NOT_RUN
        }
        Err(e) => {
            say!("error: {e:#}");
            exit::COULD_NOT_RUN
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespace_comes_from_the_flag_then_the_prefix() {
        let t = ClusterTarget::from_arg("shop/checkout", None, Some("prod"));
        assert_eq!(t.namespace.as_deref(), Some("shop"));
        assert_eq!(t.name, "checkout");
        assert_eq!(t.context.as_deref(), Some("prod"));
        let t = ClusterTarget::from_arg("shop/checkout", Some("other"), None);
        assert_eq!(t.namespace.as_deref(), Some("other"));
        let t = ClusterTarget::from_arg("checkout", None, None);
        assert_eq!(t.namespace, None);
    }

    #[test]
    fn files_and_local_state_stay_local() {
        let dir = std::env::temp_dir().join("shiftgate-kube-target-unit-none");
        assert!(!wants_cluster("policies/checkout.yaml", None, &dir, false));
        assert!(!wants_cluster("checkout.json", None, &dir, false));
        assert!(wants_cluster("policies/checkout.yaml", None, &dir, true));
        if std::env::var_os(CLUSTER_ENV).is_none() {
            assert!(wants_cluster("checkout", Some("shop"), &dir, false));
        }
    }
}
