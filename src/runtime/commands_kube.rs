//! Operator commands for policies in a cluster, as annotations on the RolloutPolicy:
//! `shiftgate.dev/command: promote|promote-full|pause|resume|abort`,
//! `shiftgate.dev/command-revision: <the revision it is for>` and
//! `shiftgate.dev/command-id: <unique>`, written by `shiftgate promote NAME -n NS`
//! (and the kubectl plugin), or by hand with `kubectl annotate`.
//!
//! The daemon reads them on every tick. A command is handed to the engine when its id
//! differs from `status.lastCommandId`; the engine records the id in the state, and the
//! status store saves it in the same conditional write as the state the command led
//! to. So a command is applied once: a restart after that write never replays it, and
//! a command whose state was never written is handed over again. The annotations stay
//! as the record of what was asked last.

use async_trait::async_trait;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{json, Value};

use super::commands::{CommandSource, CommandSourceError};
use crate::engine::{Command, OperatorCommand};
use crate::metrics::PolicyRef;
use crate::policy::RolloutPolicy;
use crate::store::kube::{
    COMMAND_ANNOTATION, COMMAND_ID_ANNOTATION, COMMAND_REVISION_ANNOTATION, FIELD_MANAGER,
};

/// The status field holding the id of the last handled operator command.
pub const LAST_COMMAND_ID_FIELD: &str = "lastCommandId";

/// Reads operator commands from RolloutPolicy annotations.
pub struct KubeCommandSource {
    client: kube::Client,
    resource: ApiResource,
}

impl KubeCommandSource {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            resource: ApiResource::erase::<RolloutPolicy>(&()),
        }
    }
}

fn location(policy: &PolicyRef) -> String {
    format!(
        "rolloutpolicies.shiftgate.dev {}/{} annotation {COMMAND_ANNOTATION}",
        policy.namespace, policy.name
    )
}

/// A command annotation of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandAnnotation {
    pub command: String,
    pub id: Option<String>,
    pub revision: Option<String>,
}

/// The command annotations of an object, if a command is set.
pub fn pending_command(object: &DynamicObject) -> Option<CommandAnnotation> {
    command_in(&object.metadata)
}

fn command_in(metadata: &kube::api::ObjectMeta) -> Option<CommandAnnotation> {
    let annotations = metadata.annotations.as_ref()?;
    Some(CommandAnnotation {
        command: annotations.get(COMMAND_ANNOTATION)?.clone(),
        id: annotations.get(COMMAND_ID_ANNOTATION).cloned(),
        revision: annotations.get(COMMAND_REVISION_ANNOTATION).cloned(),
    })
}

/// `status.lastCommandId` of an object.
pub fn last_handled_command(object: &DynamicObject) -> Option<String> {
    object
        .data
        .pointer(&format!("/status/{LAST_COMMAND_ID_FIELD}"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[async_trait]
impl CommandSource for KubeCommandSource {
    async fn pending(
        &self,
        policy: &PolicyRef,
        handled: Option<&str>,
    ) -> Result<Vec<OperatorCommand>, CommandSourceError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &policy.namespace, &self.resource);
        let object = match api.get_opt(&policy.name).await {
            Ok(Some(object)) => object,
            Ok(None) => return Ok(Vec::new()),
            Err(e) => {
                return Err(CommandSourceError::Unavailable {
                    policy: format!("{}/{}", policy.namespace, policy.name),
                    location: location(policy),
                    message: format!("cannot read the RolloutPolicy: {e}; retrying"),
                })
            }
        };
        commands_after(policy, command_in(&object.metadata), handled)
    }

    fn pending_in_object(
        &self,
        object: &RolloutPolicy,
        handled: Option<&str>,
    ) -> Option<Result<Vec<OperatorCommand>, CommandSourceError>> {
        let policy = PolicyRef {
            namespace: object.metadata.namespace.clone()?,
            name: object.metadata.name.clone()?,
        };
        Some(commands_after(
            &policy,
            command_in(&object.metadata),
            handled,
        ))
    }
}

/// The command `annotation` names, unless it is `handled` already.
fn commands_after(
    policy: &PolicyRef,
    annotation: Option<CommandAnnotation>,
    handled: Option<&str>,
) -> Result<Vec<OperatorCommand>, CommandSourceError> {
    let Some(annotation) = annotation else {
        return Ok(Vec::new());
    };
    let Some(id) = annotation.id else {
        // Without an id a command cannot be told apart from the one before it.
        return Err(CommandSourceError::Invalid {
            policy: format!("{}/{}", policy.namespace, policy.name),
            location: location(policy),
            message: format!(
                "command `{}` has no {COMMAND_ID_ANNOTATION} annotation; use `shiftgate \
                 {} {} -n {}` or set the command, its revision and a new id",
                annotation.command, annotation.command, policy.name, policy.namespace
            ),
        });
    };
    if handled == Some(id.as_str()) {
        return Ok(Vec::new());
    }
    // An unknown word or a missing revision is refused by the engine, once: its id
    // is then handled like any other.
    Ok(vec![OperatorCommand {
        command: annotation.command.parse::<Command>(),
        revision: annotation.revision,
        id,
    }])
}

/// What `submit_command` wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmittedCommand {
    pub id: String,
    /// A command written earlier that the daemon had not handled yet, now replaced.
    pub replaced_unhandled: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("rolloutpolicies.shiftgate.dev {namespace}/{name} not found; check the name and `-n NAMESPACE` (kubectl get rolloutpolicies -A)")]
    NotFound { namespace: String, name: String },
    #[error(
        "cannot write the command to rolloutpolicies.shiftgate.dev {namespace}/{name}: {source}"
    )]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("rolloutpolicies.shiftgate.dev {namespace}/{name} kept changing while the command was written ({attempts} attempts); try again")]
    Contended {
        namespace: String,
        name: String,
        attempts: u32,
    },
}

/// Writes `command`, given for `revision`, as annotations, conditionally on the
/// resourceVersion read (so a concurrent command is never silently overwritten: the
/// write is retried on the new version). The id is `<resourceVersion read>-<command>`,
/// unique per object history.
pub async fn submit_command(
    client: kube::Client,
    namespace: &str,
    name: &str,
    command: Command,
    revision: &str,
) -> Result<SubmittedCommand, SubmitError> {
    const ATTEMPTS: u32 = 5;
    let resource = ApiResource::erase::<RolloutPolicy>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &resource);
    let api_error = |source| SubmitError::Api {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source,
    };
    for _ in 0..ATTEMPTS {
        let object =
            api.get_opt(name)
                .await
                .map_err(api_error)?
                .ok_or_else(|| SubmitError::NotFound {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })?;
        let version = object.metadata.resource_version.clone().unwrap_or_default();
        let replaced_unhandled = match pending_command(&object) {
            Some(CommandAnnotation {
                command,
                id: Some(id),
                ..
            }) if Some(&id) != last_handled_command(&object).as_ref() => {
                Some(format!("{command} ({id})"))
            }
            _ => None,
        };
        let id = format!("{version}-{}", command.as_str());
        let patch = json!({
            "metadata": {
                "resourceVersion": version,
                "annotations": {
                    COMMAND_ANNOTATION: command.as_str(),
                    COMMAND_ID_ANNOTATION: id,
                    COMMAND_REVISION_ANNOTATION: revision,
                },
            }
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        match api.patch(name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {
                return Ok(SubmittedCommand {
                    id,
                    replaced_unhandled,
                })
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(api_error(e)),
        }
    }
    Err(SubmitError::Contended {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        attempts: ATTEMPTS,
    })
}
