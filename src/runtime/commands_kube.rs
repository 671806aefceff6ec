//! Operator commands for policies in a cluster, as annotations on the RolloutPolicy:
//! `shiftgate.dev/command: promote|promote-full|pause|resume|abort` and
//! `shiftgate.dev/command-id: <unique>`, written by `shiftgate promote NAME -n NS`
//! (and the kubectl plugin), or by hand with `kubectl annotate`.
//!
//! The daemon reads them on every tick. A command is handed to the engine when its id
//! differs from `status.lastCommandId`, and the id is saved in status together with the
//! state the engine computed from it (see `store::kube`). So a command is applied once:
//! a restart after the save never replays it, and a command whose state was never saved
//! is handed over again.

use std::sync::Arc;

use async_trait::async_trait;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{json, Value};

use super::commands::{CommandSource, CommandSourceError};
use crate::engine::Command;
use crate::metrics::PolicyRef;
use crate::policy::RolloutPolicy;
use crate::store::kube::{
    CommandLedger, COMMAND_ANNOTATION, COMMAND_ID_ANNOTATION, FIELD_MANAGER, LAST_COMMAND_ID_FIELD,
};

/// Reads operator commands from RolloutPolicy annotations.
pub struct KubeCommandSource {
    client: kube::Client,
    resource: ApiResource,
    ledger: Arc<CommandLedger>,
}

impl KubeCommandSource {
    /// `ledger` must be the one of the `KubeStatusStore` that saves these policies'
    /// state (`store.ledger()`), so handled command ids are saved with the state.
    pub fn new(client: kube::Client, ledger: Arc<CommandLedger>) -> Self {
        Self {
            client,
            resource: ApiResource::erase::<RolloutPolicy>(&()),
            ledger,
        }
    }
}

fn location(policy: &PolicyRef) -> String {
    format!(
        "rolloutpolicies.shiftgate.dev {}/{} annotation {COMMAND_ANNOTATION}",
        policy.namespace, policy.name
    )
}

/// The pending command annotation of an object: (command text, id), if both are set.
pub fn pending_command(object: &DynamicObject) -> Option<(String, Option<String>)> {
    let annotations = object.metadata.annotations.as_ref()?;
    let command = annotations.get(COMMAND_ANNOTATION)?.clone();
    Some((command, annotations.get(COMMAND_ID_ANNOTATION).cloned()))
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
    async fn take(&self, policy: &PolicyRef) -> Result<Vec<Command>, CommandSourceError> {
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
        let Some((text, id)) = pending_command(&object) else {
            return Ok(Vec::new());
        };
        let invalid = |message: String| CommandSourceError::Invalid {
            policy: format!("{}/{}", policy.namespace, policy.name),
            location: location(policy),
            message,
        };
        let Some(id) = id else {
            // Without an id a command cannot be told apart from the one before it.
            return Err(invalid(format!(
                "command `{text}` has no {COMMAND_ID_ANNOTATION} annotation; use `shiftgate \
                 {text} {} -n {}` or set both annotations",
                policy.name, policy.namespace
            )));
        };
        let persisted = last_handled_command(&object);
        if !self.ledger.deliver(policy, persisted.as_deref(), &id) {
            return Ok(Vec::new());
        }
        // An unknown word is reported once: its id is now handled like any other.
        text.parse::<Command>()
            .map(|command| vec![command])
            .map_err(|e| invalid(format!("{e} (command id {id})")))
    }
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

/// Writes `command` as annotations, conditionally on the resourceVersion read (so a
/// concurrent command is never silently overwritten: the write is retried on the new
/// version). The id is `<resourceVersion read>-<command>`, unique per object history.
pub async fn submit_command(
    client: kube::Client,
    namespace: &str,
    name: &str,
    command: Command,
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
            Some((text, Some(id))) if Some(&id) != last_handled_command(&object).as_ref() => {
                Some(format!("{text} ({id})"))
            }
            _ => None,
        };
        let id = format!("{version}-{}", command.as_str());
        let patch = json!({
            "metadata": {
                "resourceVersion": version,
                "annotations": { COMMAND_ANNOTATION: command.as_str(), COMMAND_ID_ANNOTATION: id },
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
