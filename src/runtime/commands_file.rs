//! Operator commands for local rollouts, as files: `shiftgate pause POLICY` drops a file
//! into `<state dir>/<namespace>/<name>.commands/`, and the running `shiftgate run`
//! handles them in order, each exactly once.
//!
//! A command file is created atomically: written under a temp name, then hard-linked
//! to its final name `<sequence>.cmd` (which fails if another writer took that number,
//! and the writer tries the next one). It holds `{"command": "pause", "revision": "v2"}`;
//! a file with a bare word (the format before commands carried a revision) is read as a
//! command without a revision, which the engine refuses. The sequence number is the
//! command's id: the reader hands over the files after the one the stored state last
//! handled, and removes a file only once a state that handled it is stored (and writes
//! the high-water mark to `.consumed`, so numbers never repeat).

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::commands::{CommandSource, CommandSourceError};
use crate::engine::{Command, OperatorCommand};
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

    /// Queues `command`, given for `revision`, for the policy's running rollout; returns
    /// the file it wrote.
    pub async fn submit(
        &self,
        policy: &PolicyRef,
        command: Command,
        revision: &str,
    ) -> Result<PathBuf, CommandSourceError> {
        let dir = self.dir(policy);
        let policy_name = format!("{}/{}", policy.namespace, policy.name);
        let body = CommandFile {
            command: command.as_str().to_owned(),
            revision: Some(revision.to_owned()),
        };
        tokio::task::spawn_blocking(move || submit_blocking(&dir, &body))
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

    /// The commands queued after `handled` (the stored state's last command), in order
    /// (for `status`; nothing is removed).
    pub fn queued(
        &self,
        policy: &PolicyRef,
        handled: Option<&str>,
    ) -> std::io::Result<Vec<OperatorCommand>> {
        let handled = sequence_of(handled);
        pending(&self.dir(policy))?
            .into_iter()
            .filter(|(sequence, _)| *sequence > handled)
            .map(|(sequence, path)| read_command(sequence, &path))
            .collect::<std::io::Result<Vec<_>>>()
            .map(|commands| commands.into_iter().flatten().collect())
    }
}

/// What a command file holds.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandFile {
    command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revision: Option<String>,
}

/// Reads command file `sequence`; `None` when it is gone (handled meanwhile).
fn read_command(sequence: u64, path: &Path) -> std::io::Result<Option<OperatorCommand>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (word, revision) = match serde_json::from_str::<CommandFile>(&text) {
        Ok(file) => (file.command, file.revision),
        // The format before commands carried a revision: one word.
        Err(_) => (text.trim().to_owned(), None),
    };
    Ok(Some(OperatorCommand {
        id: sequence.to_string(),
        command: word.parse::<Command>(),
        revision,
    }))
}

fn submit_blocking(dir: &Path, body: &CommandFile) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".submit-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    serde_json::to_writer(&mut temp, body)?;
    writeln!(temp)?;
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

/// Replaces `.consumed` atomically: a torn file would let numbers repeat, and a repeated
/// number at or below the stored state's last command would be skipped as handled.
fn write_high_water(dir: &Path, sequence: u64) -> std::io::Result<()> {
    let mut temp = tempfile::Builder::new()
        .prefix(".consumed-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    writeln!(temp, "{sequence}")?;
    temp.as_file().sync_all()?;
    temp.persist(dir.join(".consumed")).map_err(|e| e.error)?;
    Ok(())
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

/// The sequence number a command id stands for; 0 (before every command) when it is
/// no number (a state that never handled a file command).
fn sequence_of(id: Option<&str>) -> u64 {
    id.and_then(|id| id.parse::<u64>().ok()).unwrap_or(0)
}

/// Removes the files of commands up to `handled` (a stored state handled them) and
/// records the high-water mark, so their numbers are never given out again.
fn forget_blocking(dir: &Path, handled: u64) -> std::io::Result<()> {
    let mut removed = false;
    for (sequence, path) in pending(dir)? {
        if sequence > handled {
            break;
        }
        if consumed_high_water(dir) <= sequence {
            write_high_water(dir, sequence)?;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if removed {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Forgets what `handled` covers, then reads the commands after it, in order.
fn pending_blocking(dir: &Path, handled: u64) -> std::io::Result<Vec<OperatorCommand>> {
    forget_blocking(dir, handled)?;
    let mut commands = Vec::new();
    for (sequence, path) in pending(dir)? {
        if sequence > handled {
            commands.extend(read_command(sequence, &path)?);
        }
    }
    Ok(commands)
}

impl FileCommands {
    async fn blocking<T: Send + 'static>(
        &self,
        policy: &PolicyRef,
        work: impl FnOnce(&Path) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, CommandSourceError> {
        let dir = self.dir(policy);
        let location = dir.display().to_string();
        tokio::task::spawn_blocking(move || work(&dir))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| CommandSourceError::Unavailable {
                policy: format!("{}/{}", policy.namespace, policy.name),
                location,
                message: format!("{e}; make the state directory readable and writable"),
            })
    }
}

#[async_trait]
impl CommandSource for FileCommands {
    async fn pending(
        &self,
        policy: &PolicyRef,
        handled: Option<&str>,
    ) -> Result<Vec<OperatorCommand>, CommandSourceError> {
        let handled = sequence_of(handled);
        self.blocking(policy, move |dir| pending_blocking(dir, handled))
            .await
    }

    async fn acknowledge(
        &self,
        policy: &PolicyRef,
        handled: &str,
    ) -> Result<(), CommandSourceError> {
        let handled = sequence_of(Some(handled));
        self.blocking(policy, move |dir| forget_blocking(dir, handled))
            .await
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

    fn words(commands: &[OperatorCommand]) -> Vec<Command> {
        commands
            .iter()
            .map(|c| c.command.clone().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn commands_stay_until_a_stored_state_handled_them() {
        let state = tempfile::tempdir().unwrap();
        let commands = FileCommands::new(state.path());
        assert!(commands.pending(&policy(), None).await.unwrap().is_empty());
        for command in [Command::Pause, Command::Resume, Command::PromoteFull] {
            commands.submit(&policy(), command, "v2").await.unwrap();
        }
        let pending = commands.pending(&policy(), None).await.unwrap();
        assert_eq!(
            words(&pending),
            vec![Command::Pause, Command::Resume, Command::PromoteFull]
        );
        assert!(pending.iter().all(|c| c.revision.as_deref() == Some("v2")));
        // Reading again (a restart before the state was stored) finds them all again.
        assert_eq!(commands.pending(&policy(), None).await.unwrap(), pending);
        // A stored state handled the first two: only the third is left.
        let after = commands.pending(&policy(), Some("2")).await.unwrap();
        assert_eq!(words(&after), vec![Command::PromoteFull]);
        commands.acknowledge(&policy(), "3").await.unwrap();
        assert!(commands
            .pending(&policy(), Some("3"))
            .await
            .unwrap()
            .is_empty());
        // Numbers keep growing after the queue ran empty.
        let path = commands
            .submit(&policy(), Command::Abort, "v2")
            .await
            .unwrap();
        assert!(path.ends_with("000000000004.cmd"), "{}", path.display());
        let pending = commands.pending(&policy(), Some("3")).await.unwrap();
        assert_eq!(pending[0].id, "4");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_submitters_lose_nothing() {
        let state = tempfile::tempdir().unwrap();
        let commands = FileCommands::new(state.path());
        let writers: Vec<_> = (0..20)
            .map(|_| {
                let commands = commands.clone();
                tokio::spawn(async move { commands.submit(&policy(), Command::Pause, "v2").await })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap().unwrap();
        }
        assert_eq!(commands.pending(&policy(), None).await.unwrap().len(), 20);
    }

    #[tokio::test]
    async fn old_format_and_unknown_words_are_handed_over_to_be_refused() {
        let state = tempfile::tempdir().unwrap();
        let commands = FileCommands::new(state.path());
        commands
            .submit(&policy(), Command::Pause, "v2")
            .await
            .unwrap();
        let dir = commands.dir(&policy());
        std::fs::write(dir.join("000000000002.cmd"), "explode\n").unwrap();
        std::fs::write(dir.join("000000000003.cmd"), "resume\n").unwrap();
        let pending = commands.pending(&policy(), None).await.unwrap();
        assert_eq!(pending.len(), 3);
        assert_eq!(pending[0].command, Ok(Command::Pause));
        assert!(pending[1].command.is_err(), "{:?}", pending[1]);
        assert_eq!(pending[2].command, Ok(Command::Resume));
        assert_eq!(
            pending[2].revision, None,
            "the old format names no revision"
        );
    }
}
