//! Rollout state in a cluster: the RolloutPolicy's `status` subresource.
//!
//! The `Version` is the object's resourceVersion. A save is one JSON Patch of
//! `/status`: `test` the resourceVersion read, then `add` the whole status, so a
//! concurrent write is detected (409, or 422 for the failed `test`) and reported as
//! `StoreError::Conflict`, never overwritten.
//!
//! The store also persists `status.lastCommandId`, the id of the last operator command
//! the daemon handled (see `runtime::commands_kube`): commands are handed to the engine
//! through the shared [`CommandLedger`] and their id is written with the state the
//! engine computed from them, in the same conditional write. A command whose state was
//! never saved is handed over again; one whose state was saved never is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use ::kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use async_trait::async_trait;
use serde_json::{json, Value};

use super::{StateStore, StoreError};
use crate::metrics::PolicyRef;
use crate::policy::{RolloutPolicy, RolloutStatus};
use crate::router::Version;

/// The status field holding the id of the last handled operator command.
pub const LAST_COMMAND_ID_FIELD: &str = "lastCommandId";
/// Annotation the CLI writes: `promote`, `promote-full`, `pause`, `resume`, `abort`.
pub const COMMAND_ANNOTATION: &str = "shiftgate.dev/command";
/// Annotation the CLI writes with every command: a new value is a new command.
pub const COMMAND_ID_ANNOTATION: &str = "shiftgate.dev/command-id";
/// Field manager of every write shiftgate makes.
pub const FIELD_MANAGER: &str = "shiftgate";

/// What the daemon knows about a policy's operator commands.
#[derive(Clone, Debug, Default)]
struct LedgerEntry {
    /// `status.lastCommandId` as last read or written; `None` inside: no command yet.
    persisted: Option<Option<String>>,
    /// Handed to the engine, not yet saved.
    delivered: Option<String>,
}

/// Shared by [`KubeStatusStore`] and the Kubernetes command source: which command ids
/// were handed over and which are saved.
#[derive(Debug, Default)]
pub struct CommandLedger {
    entries: Mutex<HashMap<PolicyRef, LedgerEntry>>,
}

impl CommandLedger {
    fn with<T>(&self, policy: &PolicyRef, f: impl FnOnce(&mut LedgerEntry) -> T) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        f(entries.entry(policy.clone()).or_default())
    }

    /// Whether the command with `id` should be handed to the engine now: not the one
    /// saved in status (`persisted`), and not one already handed over and unsaved.
    /// Marks it handed over when so.
    pub fn deliver(&self, policy: &PolicyRef, persisted: Option<&str>, id: &str) -> bool {
        self.with(policy, |e| {
            e.persisted = Some(persisted.map(str::to_owned));
            let fresh = persisted != Some(id) && e.delivered.as_deref() != Some(id);
            if fresh {
                e.delivered = Some(id.to_owned());
            }
            fresh
        })
    }

    fn loaded(&self, policy: &PolicyRef, persisted: Option<String>) {
        self.with(policy, |e| e.persisted = Some(persisted));
    }

    /// The id to write with the next save; outer `None`: not known yet.
    fn to_write(&self, policy: &PolicyRef) -> Option<Option<String>> {
        self.with(policy, |e| match &e.delivered {
            Some(id) => Some(Some(id.clone())),
            None => e.persisted.clone(),
        })
    }

    fn saved(&self, policy: &PolicyRef, written: Option<String>) {
        self.with(policy, |e| {
            if e.delivered == written {
                e.delivered = None;
            }
            e.persisted = Some(written);
        });
    }

    /// The save carrying a delivered command failed: hand it over again next time.
    fn unsaved(&self, policy: &PolicyRef) {
        self.with(policy, |e| e.delivered = None);
    }
}

/// [`StateStore`] on the RolloutPolicy status subresource.
#[derive(Clone)]
pub struct KubeStatusStore {
    client: ::kube::Client,
    resource: ApiResource,
    ledger: Arc<CommandLedger>,
}

impl KubeStatusStore {
    pub fn new(client: ::kube::Client) -> Self {
        Self {
            client,
            resource: ApiResource::erase::<RolloutPolicy>(&()),
            ledger: Arc::new(CommandLedger::default()),
        }
    }

    /// The ledger to give the Kubernetes command source, so command ids are saved with
    /// the state.
    pub fn ledger(&self) -> Arc<CommandLedger> {
        self.ledger.clone()
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

/// The status document without the store's own field, and that field.
fn split_status(object: &DynamicObject) -> (Option<Value>, Option<String>) {
    match object.data.get("status") {
        Some(Value::Object(map)) if !map.is_empty() => {
            let mut status = map.clone();
            let last_command = status
                .remove(LAST_COMMAND_ID_FIELD)
                .and_then(|v| v.as_str().map(str::to_owned));
            (Some(Value::Object(status)), last_command)
        }
        _ => (None, None),
    }
}

#[async_trait]
impl StateStore for KubeStatusStore {
    async fn load(
        &self,
        policy: &PolicyRef,
    ) -> Result<Option<(RolloutStatus, Version)>, StoreError> {
        let object = self.read(policy).await?;
        let (status, last_command) = split_status(&object);
        self.ledger.loaded(policy, last_command);
        let Some(status) = status else {
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
        // Without a version, or without knowing the persisted command id, read first.
        let (expect, last_command) = match (expect, self.ledger.to_write(policy)) {
            (Some(v), Some(last_command)) => (v.0.clone(), last_command),
            (expect, known) => {
                let object = self.read(policy).await?;
                let (stored, persisted) = split_status(&object);
                let current = resource_version(&object).unwrap_or_default();
                match expect {
                    None if stored.is_some() => return Err(conflict()),
                    Some(v) if v.0 != current => return Err(conflict()),
                    _ => {}
                }
                self.ledger.loaded(policy, persisted.clone());
                (current, known.unwrap_or(persisted))
            }
        };
        let mut document = serde_json::to_value(status).map_err(|e| StoreError::Io {
            policy: name_of(policy),
            location: location(policy),
            message: format!("cannot serialize the status: {e}"),
            source: None,
        })?;
        if let (Some(map), Some(id)) = (document.as_object_mut(), &last_command) {
            map.insert(LAST_COMMAND_ID_FIELD.into(), json!(id));
        }
        let ops: json_patch_for_kube::Patch = serde_json::from_value(json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": expect },
            { "op": "add", "path": "/status", "value": document },
        ]))
        .map_err(|e| StoreError::Io {
            policy: name_of(policy),
            location: location(policy),
            message: format!("cannot build the status patch: {e}"),
            source: None,
        })?;
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let written = self
            .api(policy)
            .patch_status(&policy.name, &params, &Patch::Json::<()>(ops))
            .await;
        match written {
            Ok(object) => {
                self.ledger.saved(policy, last_command);
                resource_version(&object)
                    .map(Version)
                    .ok_or_else(|| StoreError::Corrupt {
                        policy: name_of(policy),
                        location: location(policy),
                        message: "the API server answered without metadata.resourceVersion".into(),
                    })
            }
            Err(::kube::Error::Api(s)) if s.code == 409 => {
                self.ledger.unsaved(policy);
                Err(conflict())
            }
            Err(::kube::Error::Api(s)) if s.code == 422 => {
                self.ledger.unsaved(policy);
                // A failed `test` is a conflict; anything else the server refused is not.
                match self.read(policy).await {
                    Ok(now) if resource_version(&now).as_deref() != Some(expect.as_str()) => {
                        Err(conflict())
                    }
                    _ => Err(io_error(policy, "write", ::kube::Error::Api(s))),
                }
            }
            Err(e) => {
                self.ledger.unsaved(policy);
                Err(io_error(policy, "write", e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PolicyRef {
        PolicyRef {
            namespace: "shop".into(),
            name: "checkout".into(),
        }
    }

    #[test]
    fn a_command_is_delivered_until_saved_and_never_after() {
        let ledger = CommandLedger::default();
        let p = policy();
        assert_eq!(ledger.to_write(&p), None, "unknown before any read");
        assert!(ledger.deliver(&p, None, "7-pause"));
        assert!(!ledger.deliver(&p, None, "7-pause"), "handed over once");
        assert_eq!(ledger.to_write(&p), Some(Some("7-pause".into())));
        ledger.unsaved(&p);
        assert!(
            ledger.deliver(&p, None, "7-pause"),
            "again after a failed save"
        );
        ledger.saved(&p, Some("7-pause".into()));
        assert_eq!(ledger.to_write(&p), Some(Some("7-pause".into())));
        assert!(
            !ledger.deliver(&p, Some("7-pause"), "7-pause"),
            "saved: never again"
        );
        assert!(
            ledger.deliver(&p, Some("7-pause"), "9-resume"),
            "a new id is a new command"
        );
    }

    #[test]
    fn a_fresh_store_keeps_the_persisted_id() {
        let ledger = CommandLedger::default();
        let p = policy();
        ledger.loaded(&p, Some("3-abort".into()));
        assert_eq!(ledger.to_write(&p), Some(Some("3-abort".into())));
        ledger.loaded(&p, None);
        assert_eq!(ledger.to_write(&p), Some(None));
    }
}
