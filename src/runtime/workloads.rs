//! The shell's side of `spec.workloads`: reads the stable and canary Deployments (apps/v1,
//! the policy's own namespace) for the engine, derives a revision from the canary's pod
//! template, and sets replicas through the `scale` subresource. Only `get` on
//! deployments and `patch` on deployments/scale are used (see docs/security.md).

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;

use crate::engine::workloads::{DeploymentState, WorkloadsObservation};
use crate::policy::workloads::{RevisionFrom, WorkloadsSpec};
use crate::runtime::leader::Leadership;

/// Longest derived revision: images beyond it are cut (the hash still tells revisions
/// apart).
const REVISION_IMAGES_MAX: usize = 80;

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("cannot read Deployment {namespace}/{name}: {source}; check that it exists and that shiftgate may `get` deployments in {namespace}")]
    Read {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot scale Deployment {namespace}/{name} to {replicas}: {source}; check that shiftgate may `patch` deployments/scale in {namespace}")]
    Scale {
        namespace: String,
        name: String,
        replicas: i32,
        #[source]
        source: kube::Error,
    },
    #[error("Deployment {namespace}/{name} has no pod template spec to derive a revision from")]
    NoTemplate { namespace: String, name: String },
    #[error("this replica does not hold the leader lease; it does not scale Deployments")]
    NotLeading,
    #[error("this run does not hold its route Lease (lost, or not taken yet); it does not scale Deployments")]
    RouteLeaseNotHeld,
}

impl WorkloadError {
    pub fn reason(&self) -> &'static str {
        match self {
            WorkloadError::Read { .. } => "DeploymentUnreadable",
            WorkloadError::Scale { .. } => "DeploymentScaleFailed",
            WorkloadError::NoTemplate { .. } => "DeploymentInvalid",
            WorkloadError::NotLeading => "NotLeading",
            WorkloadError::RouteLeaseNotHeld => "RouteLeaseNotHeld",
        }
    }
}

/// A Deployment as read: the engine's view and the revision its template gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadDeployment {
    pub state: DeploymentState,
    /// `images@hash` of the pod template (see [`template_revision`]).
    pub revision: String,
}

/// Reads and scales the Deployments of one policy's namespace.
#[async_trait]
pub trait Workloads: Send + Sync {
    async fn read(&self, name: &str) -> Result<ReadDeployment, WorkloadError>;
    async fn scale(&self, name: &str, replicas: i32) -> Result<(), WorkloadError>;
}

/// Deployments through the API server, in one namespace.
pub struct KubeWorkloads {
    api: Api<Deployment>,
    namespace: String,
}

impl KubeWorkloads {
    pub fn new(client: Client, namespace: &str) -> Self {
        KubeWorkloads {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
        }
    }
}

#[async_trait]
impl Workloads for KubeWorkloads {
    async fn read(&self, name: &str) -> Result<ReadDeployment, WorkloadError> {
        let deployment = self
            .api
            .get(name)
            .await
            .map_err(|source| WorkloadError::Read {
                namespace: self.namespace.clone(),
                name: name.to_owned(),
                source,
            })?;
        let revision = template_revision(&deployment).ok_or_else(|| WorkloadError::NoTemplate {
            namespace: self.namespace.clone(),
            name: name.to_owned(),
        })?;
        Ok(ReadDeployment {
            state: deployment_state(name, &deployment),
            revision,
        })
    }

    async fn scale(&self, name: &str, replicas: i32) -> Result<(), WorkloadError> {
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        self.api
            .patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|source| WorkloadError::Scale {
                namespace: self.namespace.clone(),
                name: name.to_owned(),
                replicas,
                source,
            })
    }
}

/// Scales only while this replica leads; reads always.
pub struct FencedWorkloads {
    inner: Arc<dyn Workloads>,
    leadership: Leadership,
}

impl FencedWorkloads {
    pub fn new(inner: Arc<dyn Workloads>, leadership: Leadership) -> Self {
        FencedWorkloads { inner, leadership }
    }
}

#[async_trait]
impl Workloads for FencedWorkloads {
    async fn read(&self, name: &str) -> Result<ReadDeployment, WorkloadError> {
        self.inner.read(name).await
    }

    async fn scale(&self, name: &str, replicas: i32) -> Result<(), WorkloadError> {
        if !self.leadership.is_leading() {
            return Err(WorkloadError::NotLeading);
        }
        self.inner.scale(name, replicas).await
    }
}

/// Reads without scaling: a dry run writes nothing, and says what it would have done.
pub struct DryRunWorkloads {
    inner: Arc<dyn Workloads>,
}

#[async_trait]
impl Workloads for DryRunWorkloads {
    async fn read(&self, name: &str) -> Result<ReadDeployment, WorkloadError> {
        self.inner.read(name).await
    }

    async fn scale(&self, name: &str, replicas: i32) -> Result<(), WorkloadError> {
        tracing::info!(deployment = %name, replicas, "dry run: deployment not scaled");
        Ok(())
    }
}

/// The Deployments of `namespace` for `shiftgate run` against a cluster.
pub fn cluster_workloads(client: Client, namespace: &str, dry_run: bool) -> Arc<dyn Workloads> {
    let real: Arc<dyn Workloads> = Arc::new(KubeWorkloads::new(client, namespace));
    if dry_run {
        Arc::new(DryRunWorkloads { inner: real })
    } else {
        real
    }
}

/// What one tick read of the workloads: the engine's observation and, with
/// `revisionFrom`, the revision (or why it could not be derived).
pub struct WorkloadsRead {
    pub observation: WorkloadsObservation,
    pub revision: Option<Result<String, String>>,
}

/// Reads both Deployments of `spec`. With colours the revision is not derived here:
/// which colour holds a new release was decided against its baseline before the spec
/// was oriented (`runtime::colours::release_in_idle_colour`).
pub async fn read_workloads(workloads: &dyn Workloads, spec: &WorkloadsSpec) -> WorkloadsRead {
    let stable = workloads.read(&spec.stable).await;
    let canary = workloads.read(&spec.canary).await;
    let from = spec.revision_from.filter(|_| spec.colors.is_empty());
    let revision = from.map(|from| match from {
        RevisionFrom::CanaryDeployment => canary
            .as_ref()
            .map(|c| c.revision.clone())
            .map_err(ToString::to_string),
    });
    WorkloadsRead {
        observation: WorkloadsObservation {
            stable: stable.map(|d| d.state).map_err(|e| e.to_string()),
            canary: canary.map(|d| d.state).map_err(|e| e.to_string()),
        },
        revision,
    }
}

/// The engine's view of a Deployment: what `kubectl rollout status` reads.
pub fn deployment_state(name: &str, d: &Deployment) -> DeploymentState {
    let spec = &d.spec;
    let status = d.status.as_ref();
    let deadline_exceeded = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conditions| {
            conditions.iter().find(|c| {
                c.type_.as_deref() == Some("Progressing")
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            })
        })
        .map(|c| c.message.clone().unwrap_or_default());
    DeploymentState {
        name: name.to_owned(),
        generation: d.metadata.generation.unwrap_or(0),
        observed_generation: status.and_then(|s| s.observed_generation).unwrap_or(0),
        replicas: spec.replicas.unwrap_or(1),
        status_replicas: status.and_then(|s| s.replicas).unwrap_or(0),
        updated_replicas: status.and_then(|s| s.updated_replicas).unwrap_or(0),
        available_replicas: status.and_then(|s| s.available_replicas).unwrap_or(0),
        deadline_exceeded,
        images: images(d),
        revision: template_revision(d),
    }
}

fn images(d: &Deployment) -> Vec<String> {
    d.spec
        .template
        .spec
        .as_ref()
        .map(|pod| {
            pod.containers
                .iter()
                .filter_map(|c| c.image.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The revision a pod template gives: its images for people (the part after the last
/// `/`), then `@` and a 64-bit FNV-1a hash of the template's `spec` as JSON, so any
/// change of the pod spec (an image, an env var, a resource) is a new revision and the
/// same spec always gives the same one. `None` without a template spec.
pub fn template_revision(d: &Deployment) -> Option<String> {
    let pod = d.spec.template.spec.as_ref()?;
    // A typed struct serialises its fields in declaration order and its maps sorted:
    // the same spec gives the same bytes.
    let bytes = serde_json::to_vec(pod).ok()?;
    let mut words: String = images(d)
        .iter()
        .map(|image| image.rsplit('/').next().unwrap_or(image).to_owned())
        .collect::<Vec<_>>()
        .join(",");
    if words.len() > REVISION_IMAGES_MAX {
        let mut cut = REVISION_IMAGES_MAX;
        while !words.is_char_boundary(cut) {
            cut -= 1;
        }
        words.truncate(cut);
    }
    Some(format!("{words}@{:016x}", fnv1a64(&bytes)))
}

/// FNV-1a, 64 bits (the family Kubernetes hashes pod templates with): stable across
/// builds and platforms, unlike `std`'s hasher.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn deployment(image: &str, env: Option<&str>) -> Deployment {
        let mut container = serde_json::json!({"name": "web", "image": image});
        if let Some(value) = env {
            container["env"] = serde_json::json!([{"name": "MODE", "value": value}]);
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-green", "generation": 3},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}}
            },
            "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1,
                "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                    "message": "ReplicaSet \"web-green-5d\" has timed out progressing."}]}
        }))
        .unwrap()
    }

    #[test]
    fn the_revision_follows_the_template_and_names_the_image() {
        let one = template_revision(&deployment("registry.example/team/web:1.4.2", None)).unwrap();
        assert!(one.starts_with("web:1.4.2@"), "{one}");
        assert_eq!(
            one,
            template_revision(&deployment("registry.example/team/web:1.4.2", None)).unwrap()
        );
        let image = template_revision(&deployment("registry.example/team/web:1.4.3", None));
        let env = template_revision(&deployment("registry.example/team/web:1.4.2", Some("x")));
        assert_ne!(Some(one.clone()), image);
        assert_ne!(Some(one), env);
    }

    #[test]
    fn the_state_carries_what_rollout_status_reads() {
        let state = deployment_state("web-green", &deployment("web:1", None));
        assert_eq!((state.generation, state.observed_generation), (3, 3));
        assert_eq!(
            (
                state.replicas,
                state.updated_replicas,
                state.available_replicas
            ),
            (2, 2, 1)
        );
        assert_eq!(
            state.deadline_exceeded.as_deref(),
            Some("ReplicaSet \"web-green-5d\" has timed out progressing.")
        );
        assert_eq!(state.images, ["web:1"]);
    }
}
