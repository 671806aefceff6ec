//! `shiftgate run` on a cluster policy (`spec.router.istio` or `spec.router.service`):
//! the same foreground loop as a local Envoy run ([`super::local::LocalRun`]), with the
//! router reaching the cluster through kubeconfig. No daemon is needed: a CI job runs
//! the rollout as a pipeline step.
//!
//! The rollout's state and operator commands stay local, under `--state-dir` (the file
//! store and file commands), like an Envoy run: a CI job keeps its workspace, and a
//! second run resumes from the state file and the live weights. Nothing is written to
//! the cluster but the managed weights and the test route.
//!
//! Two drivers on one route would fight: a run is refused while a RolloutPolicy of the
//! same namespace/name exists in the cluster and the daemon has not finished it.

use std::path::Path;
use std::sync::Arc;

use kube::api::{Api, ApiResource, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

use super::local::{load_policy_in, LocalError, LocalPolicy, LocalRun, RunOptions};
use crate::metrics::PolicyRef;
use crate::policy::{RolloutPolicy, RolloutSpec, RolloutStatus};
use crate::router::istio::{IstioRouter, IstioTarget};
use crate::router::service::{ServiceRouter, ServiceTarget};
use crate::router::TrafficRouter;

#[derive(Debug, thiserror::Error)]
pub enum ClusterRunError {
    #[error("cannot read the kubeconfig ($KUBECONFIG or ~/.kube/config) for {policy}: {source}; point KUBECONFIG at the cluster's kubeconfig")]
    Kubeconfig {
        policy: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("cannot use kubeconfig context {context:?} for {policy}: {source}; check `kubectl config get-contexts`")]
    Context {
        policy: String,
        context: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("cannot find a cluster for {policy}: {source}; set KUBECONFIG (or ~/.kube/config), or run in a pod")]
    Infer {
        policy: String,
        #[source]
        source: kube::config::InferConfigError,
    },
    #[error("cannot build a Kubernetes client for {policy}: {source}")]
    Client {
        policy: String,
        #[source]
        source: kube::Error,
    },
    #[error("rolloutpolicies.shiftgate.dev {policy} exists in the cluster and the daemon is driving it ({state}); two drivers on one route would fight. Wait for it to finish, or `kubectl delete rolloutpolicy -n {namespace} {name}` first (nothing was changed)")]
    DaemonManaged {
        policy: String,
        namespace: String,
        name: String,
        state: String,
    },
}

/// Whether `spec` routes through the cluster (Istio or Service router).
pub fn is_cluster_policy(spec: &RolloutSpec) -> bool {
    spec.router.istio.is_some() || spec.router.service.is_some()
}

/// A connection to the cluster: the client and the kubeconfig context's namespace.
pub struct ClusterConnection {
    pub client: Client,
    pub default_namespace: String,
}

/// Connects through kubeconfig (`Config::infer`: `$KUBECONFIG`, `~/.kube/config`, then
/// in-cluster), or the named `context`. Reads files only; nothing is sent yet.
pub async fn connect(
    policy: &str,
    context: Option<&str>,
) -> Result<ClusterConnection, ClusterRunError> {
    let config = match context {
        Some(context) => {
            let kubeconfig = Kubeconfig::read().map_err(|source| ClusterRunError::Kubeconfig {
                policy: policy.to_owned(),
                source,
            })?;
            let options = KubeConfigOptions {
                context: Some(context.to_owned()),
                ..KubeConfigOptions::default()
            };
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|source| ClusterRunError::Context {
                    policy: policy.to_owned(),
                    context: context.to_owned(),
                    source,
                })?
        }
        None => kube::Config::infer()
            .await
            .map_err(|source| ClusterRunError::Infer {
                policy: policy.to_owned(),
                source,
            })?,
    };
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|source| ClusterRunError::Client {
        policy: policy.to_owned(),
        source,
    })?;
    Ok(ClusterConnection {
        client,
        default_namespace,
    })
}

/// The router of a cluster policy; `None` for an Envoy policy.
pub fn cluster_router(
    client: &Client,
    policy: &PolicyRef,
    spec: &RolloutSpec,
) -> Option<Arc<dyn TrafficRouter>> {
    if let Some(istio) = &spec.router.istio {
        let target = IstioTarget::from_policy(
            &policy.name,
            &policy.namespace,
            istio,
            spec.test_route.as_ref(),
        );
        return Some(Arc::new(IstioRouter::new(client.clone(), target)));
    }
    spec.router.service.as_ref().map(|service| {
        let target = ServiceTarget::from_policy(&policy.namespace, service);
        Arc::new(ServiceRouter::new(client.clone(), target)) as Arc<dyn TrafficRouter>
    })
}

/// What the cluster says about a RolloutPolicy of the same namespace/name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaemonCheck {
    /// None exists, or the daemon has finished its revision.
    Clear,
    /// The cluster could not be asked (RBAC, API down); the run goes on, with a warning.
    Unknown(String),
}

/// Refuses when the daemon drives a RolloutPolicy with the same namespace/name: one
/// exists and its status is not settled for its own revision.
pub async fn check_daemon(
    client: &Client,
    policy: &PolicyRef,
) -> Result<DaemonCheck, ClusterRunError> {
    let resource = ApiResource::erase::<RolloutPolicy>(&());
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &policy.namespace, &resource);
    let object = match api.get_opt(&policy.name).await {
        Ok(Some(object)) => object,
        Ok(None) => return Ok(DaemonCheck::Clear),
        Err(e) => {
            return Ok(DaemonCheck::Unknown(format!(
                "cannot check whether the daemon drives rolloutpolicies.shiftgate.dev {}/{}: {e}",
                policy.namespace, policy.name
            )))
        }
    };
    match daemon_state(&object) {
        None => Ok(DaemonCheck::Clear),
        Some(state) => Err(ClusterRunError::DaemonManaged {
            policy: format!("{}/{}", policy.namespace, policy.name),
            namespace: policy.namespace.clone(),
            name: policy.name.clone(),
            state,
        }),
    }
}

/// Why the daemon is (or will be) driving `object`; `None` when it is done with it.
fn daemon_state(object: &DynamicObject) -> Option<String> {
    let revision = object
        .data
        .pointer("/spec/revision")
        .and_then(serde_json::Value::as_str);
    let raw = match object.data.get("status") {
        None | Some(serde_json::Value::Null) => {
            return Some("no status yet: the daemon is about to start it".to_owned())
        }
        Some(raw) => raw,
    };
    let status: RolloutStatus = match serde_json::from_value(raw.clone()) {
        Ok(status) => status,
        Err(e) => return Some(format!("unreadable status: {e}")),
    };
    if status.revision.as_deref() != revision {
        return Some(format!(
            "revision {} is about to start",
            revision.unwrap_or("-")
        ));
    }
    (!status.is_settled()).then(|| {
        format!(
            "{} at canary {}%, revision {}",
            status.phase,
            status.canary_weight,
            revision.unwrap_or("-")
        )
    })
}

/// A cluster run, ready for its preflight.
pub struct ClusterRun {
    pub run: LocalRun,
    /// Set when the daemon check could not be made.
    pub warning: Option<String>,
}

/// Loads `local` again in the kubeconfig context's namespace (when the file names
/// none), connects, checks no daemon drives the same policy, and builds the run. The
/// policy file has already been validated by the caller.
pub async fn prepare(
    file: &Path,
    context: Option<&str>,
    state_dir: &Path,
    options: RunOptions,
) -> Result<ClusterRun, LocalError> {
    let shown = file.display().to_string();
    let connection = connect(&shown, context).await?;
    let local: LocalPolicy = load_policy_in(file, &connection.default_namespace)?;
    let Some(router) = cluster_router(&connection.client, &local.policy, &local.spec) else {
        return Err(LocalError::Unsupported(format!(
            "{shown}: not a cluster policy (spec.router.istio or spec.router.service)"
        )));
    };
    let warning = match check_daemon(&connection.client, &local.policy).await? {
        DaemonCheck::Clear => None,
        DaemonCheck::Unknown(message) => Some(message),
    };
    let run = LocalRun::with_router(local, router, state_dir, options)?;
    Ok(ClusterRun { run, warning })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(data: serde_json::Value) -> DynamicObject {
        let resource = ApiResource::erase::<RolloutPolicy>(&());
        let mut object = DynamicObject::new("checkout", &resource);
        object.data = data;
        object
    }

    #[test]
    fn a_policy_without_status_is_about_to_be_driven() {
        let state = daemon_state(&object(json!({ "spec": { "revision": "v2" } })));
        assert!(state.is_some_and(|s| s.contains("no status")));
    }

    #[test]
    fn a_settled_status_of_the_same_revision_is_done() {
        let done = object(json!({
            "spec": { "revision": "v2" },
            "status": { "phase": "Promoted", "revision": "v2", "canaryWeight": 100 }
        }));
        assert_eq!(daemon_state(&done), None);
    }

    #[test]
    fn a_progressing_or_new_revision_is_driven() {
        let progressing = object(json!({
            "spec": { "revision": "v2" },
            "status": { "phase": "Progressing", "revision": "v2", "canaryWeight": 30 }
        }));
        assert!(daemon_state(&progressing).is_some_and(|s| s.contains("Progressing")));
        let new_revision = object(json!({
            "spec": { "revision": "v3" },
            "status": { "phase": "Promoted", "revision": "v2", "canaryWeight": 100 }
        }));
        assert!(daemon_state(&new_revision).is_some_and(|s| s.contains("v3")));
    }
}
