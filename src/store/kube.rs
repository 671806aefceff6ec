//! Rollout state in a cluster: the RolloutPolicy's `status` subresource.
//!
//! The `Version` is the object's resourceVersion. A save is one JSON Patch of
//! `/status`: `test` the resourceVersion read, then `add` the whole status, so a
//! concurrent write is detected (409, or 422 for the failed `test`) and reported as
//! `StoreError::Conflict`, never overwritten.
//!
//! `status.lastCommandId` (the id of the last operator command the engine handled, see
//! `runtime::commands_kube`) is part of the state, so it is saved in the same
//! conditional write as the state the command led to.

use ::kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use async_trait::async_trait;
use serde_json::Value;

use super::{StateStore, StoreError};
use crate::metrics::PolicyRef;
use crate::policy::{RolloutPolicy, RolloutStatus};
use crate::router::Version;

/// Annotation the CLI writes: `promote`, `promote-full`, `pause`, `resume`, `abort`.
pub const COMMAND_ANNOTATION: &str = "shiftgate.dev/command";
/// Annotation the CLI writes with every command: a new value is a new command.
pub const COMMAND_ID_ANNOTATION: &str = "shiftgate.dev/command-id";
/// Annotation the CLI writes with every command: the revision it is given for.
pub const COMMAND_REVISION_ANNOTATION: &str = "shiftgate.dev/command-revision";
/// Field manager of every write shiftgate makes.
pub const FIELD_MANAGER: &str = "shiftgate";

/// [`StateStore`] on the RolloutPolicy status subresource.
#[derive(Clone)]
pub struct KubeStatusStore {
    client: ::kube::Client,
    resource: ApiResource,
}

impl KubeStatusStore {
    pub fn new(client: ::kube::Client) -> Self {
        Self {
            client,
            resource: ApiResource::erase::<RolloutPolicy>(&()),
        }
    }

    fn api(&self, policy: &PolicyRef) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &policy.namespace, &self.resource)
    }

    async fn read(&self, policy: &PolicyRef) -> Result<DynamicObject, StoreError> {
        self.api(policy)
            .get(&policy.name)
            .await
            .map_err(|e| io_error(policy, "read", e))
    }
}

fn name_of(policy: &PolicyRef) -> String {
    format!("{}/{}", policy.namespace, policy.name)
}

fn location(policy: &PolicyRef) -> String {
    format!(
        "rolloutpolicies.shiftgate.dev {}/{} status",
        policy.namespace, policy.name
    )
}

fn io_error(policy: &PolicyRef, doing: &str, error: ::kube::Error) -> StoreError {
    let message = match &error {
        ::kube::Error::Api(s) if s.code == 404 => format!(
            "cannot {doing} it: the RolloutPolicy does not exist (deleted?); nothing to store"
        ),
        ::kube::Error::Api(s) => format!(
            "cannot {doing} it: the API server answered {} {}: {}; check the daemon's RBAC \
             (deploy/clusterrole.yaml) and the API server",
            s.code, s.reason, s.message
        ),
        other => format!("cannot {doing} it: the API server is unreachable ({other}); retrying"),
    };
    StoreError::Io {
        policy: name_of(policy),
        location: location(policy),
        message,
        source: Some(Box::new(error)),
    }
}

fn resource_version(object: &DynamicObject) -> Option<String> {
    object.metadata.resource_version.clone()
}

/// One operation of the status patch.
#[derive(serde::Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum PatchOp<'a> {
    Test {
        path: &'static str,
        value: &'a str,
    },
    Add {
        path: &'static str,
        value: &'a RolloutStatus,
    },
}

/// What a save reads of the API server's answer; the rest is skipped unread.
#[derive(serde::Deserialize)]
struct Written {
    metadata: WrittenMetadata,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WrittenMetadata {
    #[serde(default)]
    resource_version: Option<String>,
}

/// The status document, when there is one.
fn status_of(object: &DynamicObject) -> Option<Value> {
    match object.data.get("status") {
        Some(Value::Object(map)) if !map.is_empty() => Some(Value::Object(map.clone())),
        _ => None,
    }
}

#[async_trait]
impl StateStore for KubeStatusStore {
    fn load_from_object(&self, object: &RolloutPolicy) -> Option<(RolloutStatus, Version)> {
        // Without a resourceVersion the conditional save cannot be built: read instead.
        let version = object.metadata.resource_version.clone()?;
        let status = object.status.clone().unwrap_or_default();
        Some((status, Version(version)))
    }

    async fn load(
        &self,
        policy: &PolicyRef,
    ) -> Result<Option<(RolloutStatus, Version)>, StoreError> {
        let object = self.read(policy).await?;
        let Some(status) = status_of(&object) else {
            return Ok(None);
        };
        let status: RolloutStatus =
            serde_json::from_value(status).map_err(|e| StoreError::Corrupt {
                policy: name_of(policy),
                location: location(policy),
                message: format!(
                    "{e}; fix or remove the status (kubectl edit --subresource=status) to restart the rollout"
                ),
            })?;
        let version = resource_version(&object).ok_or_else(|| StoreError::Corrupt {
            policy: name_of(policy),
            location: location(policy),
            message: "the object has no metadata.resourceVersion".into(),
        })?;
        Ok(Some((status, Version(version))))
    }

    async fn save(
        &self,
        policy: &PolicyRef,
        status: &RolloutStatus,
        expect: Option<&Version>,
    ) -> Result<Version, StoreError> {
        let conflict = || StoreError::Conflict {
            policy: name_of(policy),
        };
        // Without a version, read first: a save must never overwrite a stored status.
        let expect = match expect {
            Some(v) => v.0.clone(),
            None => {
                let object = self.read(policy).await?;
                if status_of(&object).is_some() {
                    return Err(conflict());
                }
                resource_version(&object).unwrap_or_default()
            }
        };
        let cannot_build = |e: String| StoreError::Io {
            policy: name_of(policy),
            location: location(policy),
            message: format!("cannot build the status patch: {e}"),
            source: None,
        };
        // Serialized straight from the status, and only the answer's resourceVersion is
        // read: a save is on every evaluation, so no JSON tree of the status or of the
        // whole object is built.
        let body = serde_json::to_vec(&[
            PatchOp::Test {
                path: "/metadata/resourceVersion",
                value: &expect,
            },
            PatchOp::Add {
                path: "/status",
                value: status,
            },
        ])
        .map_err(|e| cannot_build(e.to_string()))?;
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let url = <DynamicObject as ::kube::Resource>::url_path(
            &self.resource,
            Some(policy.namespace.as_str()),
        );
        let mut request = ::kube::core::Request::new(url)
            .patch_subresource(
                "status",
                &policy.name,
                &params,
                &Patch::Json::<()>(json_patch_for_kube::Patch(Vec::new())),
            )
            .map_err(|e| cannot_build(e.to_string()))?;
        *request.body_mut() = body;
        let written = self.client.request::<Written>(request).await;
        match written {
            Ok(object) => object
                .metadata
                .resource_version
                .map(Version)
                .ok_or_else(|| StoreError::Corrupt {
                    policy: name_of(policy),
                    location: location(policy),
                    message: "the API server answered without metadata.resourceVersion".into(),
                }),
            Err(::kube::Error::Api(s)) if s.code == 409 => Err(conflict()),
            Err(::kube::Error::Api(s)) if s.code == 422 => {
                // A failed `test` is a conflict; anything else the server refused is not.
                match self.read(policy).await {
                    Ok(now) if resource_version(&now).as_deref() != Some(expect.as_str()) => {
                        Err(conflict())
                    }
                    _ => Err(io_error(policy, "write", ::kube::Error::Api(s))),
                }
            }
            Err(e) => Err(io_error(policy, "write", e)),
        }
    }
}
