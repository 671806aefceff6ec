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
//! Two drivers on one route would fight: a run is refused while the daemon drives a
//! RolloutPolicy of the same namespace/name, or one on the same route.

use std::path::Path;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

use super::local::{load_policy_in, LocalError, LocalPolicy, LocalRun, RunOptions};
use super::route_index::conflicting_owner;
use super::route_lease::{LeaseFencedRouter, LeaseFencedWorkloads, RouteFence};
use crate::metrics::PolicyRef;
use crate::policy::{RolloutPolicy, RolloutSpec, RolloutStatus};
use crate::router::istio::{IstioRouter, IstioTarget};
use crate::router::service::{ServiceRouter, ServiceTarget};
use crate::router::{RouterError, TrafficRouter};

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
    #[error("{policy}: {route} is driven by the daemon's rolloutpolicies.shiftgate.dev {owner} ({state}); two drivers on one route would fight. Wait for it to finish, or `kubectl delete rolloutpolicy -n {namespace} {name}` first (nothing was changed)")]
    RouteTaken {
        policy: String,
        owner: String,
        namespace: String,
        name: String,
        route: String,
        state: String,
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

/// The namespace of the kubeconfig's current context (`$KUBECONFIG` or
/// `~/.kube/config`), else `default`: where a cluster policy without
/// `metadata.namespace` runs when no `--context` is given. Reads the file only.
pub fn kubeconfig_namespace() -> String {
    let Ok(kubeconfig) = Kubeconfig::read() else {
        return "default".to_owned();
    };
    let current = kubeconfig.current_context.as_deref();
    kubeconfig
        .contexts
        .iter()
        .find(|named| Some(named.name.as_str()) == current)
        .and_then(|named| named.context.as_ref())
        .and_then(|context| context.namespace.clone())
        .unwrap_or_else(|| "default".to_owned())
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
            spec.test_route.as_deref(),
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

/// Refuses when the daemon drives a RolloutPolicy with the same namespace/name, or one
/// whose routes overlap this policy's (the daemon's own one-rollout-per-route rule,
/// `route_index::conflicting_owner`, with this run as the newest claimant). Driven means
/// it exists and its status is not settled for its own revision. RolloutPolicies are
/// listed in every namespace, else (no RBAC for that) in the policy's namespace only.
pub async fn check_daemon(
    client: &Client,
    policy: &PolicyRef,
    spec: &RolloutSpec,
) -> Result<DaemonCheck, ClusterRunError> {
    let resource = ApiResource::erase::<RolloutPolicy>(&());
    let params = ListParams::default();
    let everywhere: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let (objects, partial) = match everywhere.list(&params).await {
        Ok(list) => (list.items, None),
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(DaemonCheck::Clear),
        Err(all_error) => {
            let here: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &policy.namespace, &resource);
            match here.list(&params).await {
                Ok(list) => (
                    list.items,
                    Some(format!(
                        "rolloutpolicies.shiftgate.dev could only be listed in namespace {} \
                         ({all_error}); a daemon policy in another namespace on the same \
                         route would not be seen",
                        policy.namespace
                    )),
                ),
                Err(e) => {
                    return Ok(DaemonCheck::Unknown(format!(
                        "cannot list rolloutpolicies.shiftgate.dev in namespace {} to check \
                         whether the daemon drives {}/{} or its route: {e}",
                        policy.namespace, policy.namespace, policy.name
                    )))
                }
            }
        }
    };
    let mut driven: Vec<(Arc<RolloutPolicy>, String)> = Vec::new();
    for object in &objects {
        let Some(state) = daemon_state(object) else {
            continue;
        };
        let namespace = object.metadata.namespace.as_deref().unwrap_or_default();
        let name = object.metadata.name.as_deref().unwrap_or_default();
        if namespace == policy.namespace && name == policy.name {
            return Err(ClusterRunError::DaemonManaged {
                policy: format!("{namespace}/{name}"),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                state,
            });
        }
        // A policy the daemon cannot read drives nothing.
        if let Ok(parsed) = object.clone().try_parse::<RolloutPolicy>() {
            driven.push((Arc::new(parsed), state));
        }
    }
    let mine = newest_claimant(policy, spec);
    let all: Vec<Arc<RolloutPolicy>> = driven.iter().map(|(p, _)| Arc::clone(p)).collect();
    if let Some((owner, route)) = conflicting_owner(&mine, &all) {
        let state = driven
            .iter()
            .find(|(p, _)| {
                p.metadata.namespace.as_deref() == Some(owner.namespace.as_str())
                    && p.metadata.name.as_deref() == Some(owner.name.as_str())
            })
            .map_or_else(String::new, |(_, state)| state.clone());
        return Err(ClusterRunError::RouteTaken {
            policy: format!("{}/{}", policy.namespace, policy.name),
            owner: format!("{}/{}", owner.namespace, owner.name),
            namespace: owner.namespace,
            name: owner.name,
            route: route.to_string(),
            state,
        });
    }
    Ok(partial.map_or(DaemonCheck::Clear, DaemonCheck::Unknown))
}

/// This run as a RolloutPolicy created after every other: it never owns a route another
/// (driven) policy has.
fn newest_claimant(policy: &PolicyRef, spec: &RolloutSpec) -> RolloutPolicy {
    let mut mine = RolloutPolicy::new(&policy.name, spec.clone());
    mine.metadata.namespace = Some(policy.namespace.clone());
    mine.metadata.creation_timestamp = Some(Time(jiff::Timestamp::MAX));
    mine
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
    /// The client the run reaches the cluster with (its route Lease too).
    pub client: Client,
    /// Every route write and Deployment scale of the run goes through it: arm it with
    /// the route's Leases (`cli::route_lock::HeldRoute::arm`) once they are held.
    pub fence: RouteFence,
    /// Set when the daemon check could not be made.
    pub warning: Option<String>,
    /// Subset-level Istio: what the queries select, from the DestinationRule.
    pub selection: Option<String>,
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
    let mut local: LocalPolicy = load_policy_in(file, &connection.default_namespace)?;
    let policy = local.policy.clone();
    let build = |spec: &RolloutSpec| {
        cluster_router(&connection.client, &policy, spec)
            .ok_or_else(|| RouterError::Invalid("not a cluster policy".to_owned()))
    };
    if super::colours::derives_from_idle_colour(&local.spec) {
        revision_from_idle_colour(&mut local, state_dir, &connection.client, build).await?;
    } else {
        super::colours::orient_local(&mut local, state_dir, build).await;
    }
    // Subset-level Istio: the queries select the DestinationRule subsets' version labels.
    let (spec, said) = crate::router::istio::destination_rule::with_subset_labels(
        &connection.client,
        &local.policy,
        &local.spec,
    )
    .await;
    local.spec = spec;
    let Some(router) = cluster_router(&connection.client, &local.policy, &local.spec) else {
        return Err(LocalError::Unsupported(format!(
            "{shown}: not a cluster policy (spec.router.istio or spec.router.service)"
        )));
    };
    let warning = match check_daemon(&connection.client, &local.policy, &local.spec).await? {
        DaemonCheck::Clear => None,
        DaemonCheck::Unknown(message) => Some(message),
    };
    let namespace = local.policy.namespace.clone();
    let dry_run = options.dry_run;
    // Every write waits for the route Leases (armed by the caller once it holds them)
    // and stops the instant one is lost.
    let fence = RouteFence::default();
    let router = Arc::new(LeaseFencedRouter::new(router, fence.clone()));
    let workloads = crate::runtime::workloads::cluster_workloads(
        connection.client.clone(),
        &namespace,
        dry_run,
    );
    let workloads: Arc<dyn crate::runtime::workloads::Workloads> = if dry_run {
        workloads // scales nothing
    } else {
        Arc::new(LeaseFencedWorkloads::new(workloads, fence.clone()))
    };
    let run = LocalRun::with_router(local, router, state_dir, options)?
        .with_workloads(workloads)
        .with_release_probe(Arc::new(
            crate::runtime::release_presence::KubeReleaseProbe::new(
                connection.client.clone(),
                &namespace,
            ),
        ));
    Ok(ClusterRun {
        run,
        client: connection.client,
        fence,
        warning,
        selection: said,
    })
}

/// Colours with `revisionFrom`: the run's revision is the idle colour's Deployment's,
/// when it differs from its baseline (kept in the run's state, as the daemon keeps it
/// in the status). With no new release there, the baseline is stored and the run
/// stops with nothing written.
async fn revision_from_idle_colour(
    local: &mut LocalPolicy,
    state_dir: &Path,
    client: &Client,
    build: impl Fn(&RolloutSpec) -> Result<Arc<dyn TrafficRouter>, RouterError>,
) -> Result<(), LocalError> {
    use super::colours::{release_in_idle_colour, store_idle, ColourRelease};
    use crate::store::StateStore as _;
    let store = crate::store::file::FileStore::new(state_dir);
    let stored = store.load(&local.policy).await?.map(|(s, _)| s);
    let deployments = super::workloads::KubeWorkloads::new(client.clone(), &local.policy.namespace);
    let release = release_in_idle_colour(&local.spec, stored.as_ref(), build, &deployments)
        .await
        .map_err(|e| LocalError::CannotRun {
            policy: format!("{}/{}", local.policy.namespace, local.policy.name),
            message: format!(
                "the revision comes from the idle colour's Deployment (revisionFrom): {e}"
            ),
        })?;
    match release {
        ColourRelease::Tick(spec) => {
            local.spec = *spec;
            Ok(())
        }
        ColourRelease::Idle(status) => {
            store_idle(&store, &local.policy, &status).await?;
            Err(LocalError::CannotRun {
                policy: format!("{}/{}", local.policy.namespace, local.policy.name),
                message: status.message.unwrap_or_default(),
            })
        }
    }
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
