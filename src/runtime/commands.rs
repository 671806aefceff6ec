//! Where operator commands come from (a command file, the custom resource's
//! annotations, the status API). `take` hands each command over exactly once.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::engine::Command;
use crate::metrics::PolicyRef;

#[derive(Debug, thiserror::Error)]
pub enum CommandSourceError {
    /// The source could not be read; no command was taken, so none is lost.
    #[error("cannot read commands for {policy} from {location}: {message}")]
    Unavailable {
        policy: String,
        location: String,
        message: String,
    },
    /// A command was malformed; it is reported and dropped.
    #[error("invalid command for {policy} at {location}: {message}")]
    Invalid {
        policy: String,
        location: String,
        message: String,
    },
}

impl CommandSourceError {
    pub fn reason(&self) -> &'static str {
        match self {
            CommandSourceError::Unavailable { .. } => "CommandsUnreadable",
            CommandSourceError::Invalid { .. } => "CommandInvalid",
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, CommandSourceError::Unavailable { .. })
    }
}

/// Hands over the commands received for a policy since the last call, in order.
#[async_trait]
pub trait CommandSource: Send + Sync {
    async fn take(&self, policy: &PolicyRef) -> Result<Vec<Command>, CommandSourceError>;
}

/// No commands ever (CI runs without an operator).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCommands;

#[async_trait]
impl CommandSource for NoCommands {
    async fn take(&self, _policy: &PolicyRef) -> Result<Vec<Command>, CommandSourceError> {
        Ok(Vec::new())
    }
}

/// An in-memory queue per policy; `push` from anywhere, `take` drains.
#[derive(Debug, Default)]
pub struct QueuedCommands {
    queues: Mutex<HashMap<PolicyRef, VecDeque<Command>>>,
}

impl QueuedCommands {
    pub fn push(&self, policy: &PolicyRef, command: Command) {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues.entry(policy.clone()).or_default().push_back(command);
    }
}

#[async_trait]
impl CommandSource for QueuedCommands {
    async fn take(&self, policy: &PolicyRef) -> Result<Vec<Command>, CommandSourceError> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        Ok(queues
            .get_mut(policy)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default())
    }
}
