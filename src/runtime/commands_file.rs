//! Operator commands for local rollouts, as files: `shiftgate pause POLICY` drops a file
//! into `<state dir>/<namespace>/<name>.commands/`, and the running `shiftgate run`
//! takes them in order, each exactly once.
//!
//! A command file is created atomically: written under a temp name, then hard-linked
//! to its final name `<sequence>.cmd` (which fails if another writer took that number,
//! and the writer tries the next one). The reader sees whole files only, ordered by
//! sequence, and removes each after reading it.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::commands::{CommandSource, CommandSourceError};
use crate::engine::Command;
use crate::metrics::PolicyRef;

const SUFFIX: &str = ".cmd";
/// Digits of the zero-padded sequence, so names sort in submission order.
const SEQUENCE_DIGITS: usize = 12;
/// Gives up after this many lost races for a sequence number.
const MAX_SUBMIT_RACES: usize = 1000;

/// Commands as files under a state directory (the same one the file store uses).
#[derive(Clone, Debug)]
pub struct FileCommands {
    state_dir: PathBuf,
}

impl FileCommands {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        FileCommands {
            state_dir: state_dir.into(),
        }
    }

    /// `<state dir>/<namespace>/<name>.commands`.
    pub fn dir(&self, policy: &PolicyRef) -> PathBuf {
        self.state_dir
            .join(&policy.namespace)
            .join(format!("{}.commands", policy.name))
    }

    /// Queues `command` for the policy's running rollout; returns the file it wrote.
    pub async fn submit(
        &self,
        policy: &PolicyRef,
        command: Command,
    ) -> Result<PathBuf, CommandSourceError> {
        let dir = self.dir(policy);
        let policy_name = format!("{}/{}", policy.namespace, policy.name);
        tokio::task::spawn_blocking(move || submit_blocking(&dir, command))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| CommandSourceError::Unavailable {
                policy: policy_name,
                location: self.dir(policy).display().to_string(),
                message: format!(
                    "cannot queue `{command}`: {e}; make the state directory writable or pass \
                     --state-dir"
                ),
            })
    }
}

fn submit_blocking(dir: &Path, command: Command) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".submit-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    writeln!(temp, "{command}")?;
    temp.as_file().sync_all()?;
    for _ in 0..MAX_SUBMIT_RACES {
        let next = pending(dir)?
            .last()
            .and_then(|(sequence, _)| sequence.checked_add(1))
            .unwrap_or(1)
            .max(consumed_high_water(dir));
        let target = dir.join(format!("{next:0SEQUENCE_DIGITS$}{SUFFIX}"));
        match std::fs::hard_link(temp.path(), &target) {
            Ok(()) => {
                std::fs::File::open(dir)?.sync_all()?;
                return Ok(target);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "too many concurrent writers took the next command number",
    ))
}

/// The sequence after the last one consumed, so numbers never repeat even when the
/// directory is momentarily empty.
fn consumed_high_water(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join(".consumed"))
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map_or(1, |last| last.saturating_add(1))
}

/// Pending command files, ordered by sequence.
fn pending(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
            continue;
        };
        if let Ok(sequence) = stem.parse::<u64>() {
            files.push((sequence, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

enum Taken {
    Commands(Vec<Command>),
    Invalid { location: String, message: String },
}

/// Reads pending commands in order up to the first malformed one. A malformed file at
/// the head is renamed to `.rejected` and reported; one further back waits for the
/// next call, so valid commands before it are not lost.
fn take_blocking(dir: &Path) -> std::io::Result<Taken> {
    let mut commands = Vec::new();
    for (sequence, path) in pending(dir)? {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        match text.parse::<Command>() {
            Ok(command) => {
                std::fs::write(dir.join(".consumed"), format!("{sequence}\n"))?;
                std::fs::remove_file(&path)?;
                commands.push(command);
            }
            Err(e) if commands.is_empty() => {
                let rejected = path.with_extension("rejected");
                std::fs::rename(&path, &rejected)?;
                return Ok(Taken::Invalid {
                    location: rejected.display().to_string(),
                    message: e.to_string(),
                });
            }
            Err(_) => break,
        }
    }
    Ok(Taken::Commands(commands))
}

#[async_trait]
impl CommandSource for FileCommands {
    async fn take(&self, policy: &PolicyRef) -> Result<Vec<Command>, CommandSourceError> {
        let dir = self.dir(policy);
        let location = dir.display().to_string();
        let policy_name = format!("{}/{}", policy.namespace, policy.name);
        let taken = tokio::task::spawn_blocking(move || take_blocking(&dir))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| CommandSourceError::Unavailable {
                policy: policy_name.clone(),
                location,
                message: e.to_string(),
            })?;
        match taken {
            Taken::Commands(commands) => Ok(commands),
            Taken::Invalid { location, message } => Err(CommandSourceError::Invalid {
                policy: policy_name,
                location,
                message,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy() -> PolicyRef {
        PolicyRef {
            namespace: "shop".into(),
            name: "checkout".into(),
        }
    }

    #[tokio::test]
    async fn commands_come_out_in_order_exactly_once() {
        let state = tempfile::tempdir().unwrap();
        let commands = FileCommands::new(state.path());
        assert!(commands.take(&policy()).await.unwrap().is_empty());
        for command in [Command::Pause, Command::Resume, Command::PromoteFull] {
            commands.submit(&policy(), command).await.unwrap();
        }
        let taken = commands.take(&policy()).await.unwrap();
        assert_eq!(
            taken,
            vec![Command::Pause, Command::Resume, Command::PromoteFull]
        );
        assert!(commands.take(&policy()).await.unwrap().is_empty());
        // Numbers keep growing after the queue ran empty.
        let path = commands.submit(&policy(), Command::Abort).await.unwrap();
        assert!(path.ends_with("000000000004.cmd"), "{}", path.display());
        assert_eq!(
            commands.take(&policy()).await.unwrap(),
            vec![Command::Abort]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_submitters_lose_nothing() {
        let state = tempfile::tempdir().unwrap();
        let commands = FileCommands::new(state.path());
        let writers: Vec<_> = (0..20)
            .map(|_| {
                let commands = commands.clone();
                tokio::spawn(async move { commands.submit(&policy(), Command::Pause).await })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap().unwrap();
        }
        assert_eq!(commands.take(&policy()).await.unwrap().len(), 20);
    }

    #[tokio::test]
    async fn a_malformed_command_is_reported_once_and_nothing_else_is_lost() {
        let state = tempfile::tempdir().unwrap();
        let commands = FileCommands::new(state.path());
        commands.submit(&policy(), Command::Pause).await.unwrap();
        let dir = commands.dir(&policy());
        std::fs::write(dir.join("000000000002.cmd"), "explode\n").unwrap();
        std::fs::write(dir.join("000000000003.cmd"), "resume\n").unwrap();

        assert_eq!(
            commands.take(&policy()).await.unwrap(),
            vec![Command::Pause]
        );
        let err = commands.take(&policy()).await.unwrap_err();
        assert!(matches!(err, CommandSourceError::Invalid { .. }));
        assert!(err.to_string().contains("explode"), "{err}");
        assert_eq!(
            commands.take(&policy()).await.unwrap(),
            vec![Command::Resume]
        );
    }
}
