//! An in-memory state store. It keeps each status as JSON, so whatever survives a
//! round trip through it would survive a real store and a restart.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{StateStore, StoreError};
use crate::metrics::PolicyRef;
use crate::policy::RolloutStatus;
use crate::router::Version;

#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    documents: HashMap<PolicyRef, (String, u64)>,
    failing: bool,
    saves: u64,
}

fn label(policy: &PolicyRef) -> String {
    format!("{}/{}", policy.namespace, policy.name)
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// While set, every save fails (a crash before the state was persisted).
    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }

    /// Successful saves so far.
    pub fn saves(&self) -> u64 {
        self.lock().saves
    }

    /// The stored JSON document, as a restart would find it.
    pub fn document(&self, policy: &PolicyRef) -> Option<String> {
        self.lock()
            .documents
            .get(policy)
            .map(|(doc, _)| doc.clone())
    }

    /// Replaces the stored document (restoring a snapshot).
    pub fn restore(&self, policy: &PolicyRef, document: String) {
        let mut inner = self.lock();
        let version = inner.documents.get(policy).map_or(1, |(_, v)| v + 1);
        inner.documents.insert(policy.clone(), (document, version));
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn load(
        &self,
        policy: &PolicyRef,
    ) -> Result<Option<(RolloutStatus, Version)>, StoreError> {
        let inner = self.lock();
        let Some((document, version)) = inner.documents.get(policy) else {
            return Ok(None);
        };
        let status = serde_json::from_str(document).map_err(|e| StoreError::Corrupt {
            policy: label(policy),
            location: "memory".to_owned(),
            message: e.to_string(),
        })?;
        Ok(Some((status, Version(version.to_string()))))
    }

    async fn save(
        &self,
        policy: &PolicyRef,
        status: &RolloutStatus,
        expect: Option<&Version>,
    ) -> Result<Version, StoreError> {
        let mut inner = self.lock();
        if inner.failing {
            return Err(StoreError::Io {
                policy: label(policy),
                location: "memory".to_owned(),
                message: "saves fail (injected fault)".to_owned(),
                source: None,
            });
        }
        let current = inner.documents.get(policy).map(|(_, v)| *v);
        if current.map(|v| v.to_string()) != expect.map(|v| v.0.clone()) {
            return Err(StoreError::Conflict {
                policy: label(policy),
            });
        }
        let document = serde_json::to_string(status).map_err(|e| StoreError::Io {
            policy: label(policy),
            location: "memory".to_owned(),
            message: format!("cannot encode the status: {e}"),
            source: Some(Box::new(e)),
        })?;
        let version = current.map_or(1, |v| v + 1);
        inner.documents.insert(policy.clone(), (document, version));
        inner.saves += 1;
        Ok(Version(version.to_string()))
    }
}
