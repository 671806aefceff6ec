//! State stores: where rollout state survives a restart.

pub mod file;
pub mod kube;
pub mod memory;

use async_trait::async_trait;

use crate::metrics::PolicyRef;
use crate::policy::{RolloutPolicy, RolloutStatus};
use crate::router::Version;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the stored state of {policy} changed since it was read; re-reading")]
    Conflict { policy: String },
    #[error("cannot read or write the state of {policy} at {location}: {message}")]
    Io {
        policy: String,
        location: String,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error("the stored state of {policy} at {location} is corrupt: {message}")]
    Corrupt {
        policy: String,
        location: String,
        message: String,
    },
}

impl StoreError {
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::Conflict { .. } => "StatusConflict",
            StoreError::Io { .. } => "StatusUnwritable",
            StoreError::Corrupt { .. } => "StatusCorrupt",
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}

/// Loads and saves one policy's rollout state, conditionally on the version read.
#[async_trait]
pub trait StateStore: Send + Sync {
    async fn load(
        &self,
        policy: &PolicyRef,
    ) -> Result<Option<(RolloutStatus, Version)>, StoreError>;
    async fn save(
        &self,
        policy: &PolicyRef,
        status: &RolloutStatus,
        expect: Option<&Version>,
    ) -> Result<Version, StoreError>;

    /// The state as `object` (a watched copy of the policy) shows it, when this store
    /// keeps the state in the policy object itself: what [`StateStore::load`] would
    /// read, without a request. `None`: this store keeps it elsewhere; call `load`.
    fn load_from_object(&self, _object: &RolloutPolicy) -> Option<(RolloutStatus, Version)> {
        None
    }
}
