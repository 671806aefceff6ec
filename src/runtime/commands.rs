//! Where operator commands come from (a command file, the custom resource's
//! annotations, a queue in memory). Reading a command consumes nothing: the reconciler
//! hands it to the engine, saves the state that records its id, and only then
//! acknowledges it. A kill at any instant therefore neither loses a command (it is still
//! there after a restart) nor repeats one (the saved state names it as handled).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::engine::{Command, OperatorCommand};
use crate::metrics::PolicyRef;

#[derive(Debug, thiserror::Error)]
pub enum CommandSourceError {
    /// The source could not be read or cleaned up; no command was taken, so none is lost.
    #[error("cannot read commands for {policy} from {location}: {message}")]
    Unavailable {
        policy: String,
        location: String,
        message: String,
    },
    /// A command cannot be handed over at all (it has no id to record it by).
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

/// The operator commands of each policy.
#[async_trait]
pub trait CommandSource: Send + Sync {
    /// The commands after `handled` (the id of the last command the stored state
    /// handled; `None`: none yet), in order. Commands up to `handled` may be forgotten
    /// here: the state that handled them is stored.
    async fn pending(
        &self,
        policy: &PolicyRef,
        handled: Option<&str>,
    ) -> Result<Vec<OperatorCommand>, CommandSourceError>;

    /// [`CommandSource::pending`] as `object` (a watched copy of the policy) shows
    /// them, when this source keeps commands in the policy object itself. `None`: call
    /// `pending`.
    fn pending_in_object(
        &self,
        _object: &crate::policy::RolloutPolicy,
        _handled: Option<&str>,
    ) -> Option<Result<Vec<OperatorCommand>, CommandSourceError>> {
        None
    }

    /// The state that handled every command up to `handled` is stored: the source may
    /// forget them. Sources that keep only the latest command (annotations) keep it as
    /// the record of what was asked; `pending` already skips it.
    async fn acknowledge(
        &self,
        _policy: &PolicyRef,
        _handled: &str,
    ) -> Result<(), CommandSourceError> {
        Ok(())
    }
}

/// No commands ever (CI runs without an operator).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCommands;

#[async_trait]
impl CommandSource for NoCommands {
    async fn pending(
        &self,
        _policy: &PolicyRef,
        _handled: Option<&str>,
    ) -> Result<Vec<OperatorCommand>, CommandSourceError> {
        Ok(Vec::new())
    }
}

/// An in-memory queue per policy (the simulator, tests): `push` from anywhere; ids are
/// sequence numbers, so "after `handled`" is a comparison.
#[derive(Debug, Default)]
pub struct QueuedCommands {
    queues: Mutex<HashMap<PolicyRef, Queue>>,
}

#[derive(Debug, Default)]
struct Queue {
    last_sequence: u64,
    commands: VecDeque<(u64, OperatorCommand)>,
}

impl Queue {
    fn forget_up_to(&mut self, handled: Option<&str>) {
        let handled = sequence_of(handled);
        while self
            .commands
            .front()
            .is_some_and(|(seq, _)| *seq <= handled)
        {
            self.commands.pop_front();
        }
    }
}

/// The sequence number an id stands for; 0 (before every command) when it names none.
fn sequence_of(id: Option<&str>) -> u64 {
    id.and_then(|id| id.parse::<u64>().ok()).unwrap_or(0)
}

impl QueuedCommands {
    /// Queues `command` for `revision` (`None`: the old format without a revision);
    /// returns its id.
    pub fn push(&self, policy: &PolicyRef, command: Command, revision: Option<&str>) -> String {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let queue = queues.entry(policy.clone()).or_default();
        queue.last_sequence += 1;
        let id = queue.last_sequence.to_string();
        queue.commands.push_back((
            queue.last_sequence,
            OperatorCommand {
                id: id.clone(),
                command: Ok(command),
                revision: revision.map(str::to_owned),
            },
        ));
        id
    }

    /// Commands not acknowledged yet.
    pub fn queued(&self, policy: &PolicyRef) -> usize {
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues.get(policy).map_or(0, |q| q.commands.len())
    }
}

#[async_trait]
impl CommandSource for QueuedCommands {
    async fn pending(
        &self,
        policy: &PolicyRef,
        handled: Option<&str>,
    ) -> Result<Vec<OperatorCommand>, CommandSourceError> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let Some(queue) = queues.get_mut(policy) else {
            return Ok(Vec::new());
        };
        queue.forget_up_to(handled);
        Ok(queue.commands.iter().map(|(_, c)| c.clone()).collect())
    }

    async fn acknowledge(
        &self,
        policy: &PolicyRef,
        handled: &str,
    ) -> Result<(), CommandSourceError> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(queue) = queues.get_mut(policy) {
            queue.forget_up_to(Some(handled));
        }
        Ok(())
    }
}
