//! The file state store for local rollouts: one JSON document per policy at
//! `<state dir>/<namespace>/<name>.json`, holding a generation counter and the status.
//!
//! A save writes a temp file in the same directory, fsyncs it, renames it over the old
//! file and fsyncs the directory, so a crash at any instant leaves either the old or the
//! new document, never a mix. Saves are conditional on the generation read, under an
//! exclusive lock on `<name>.lock`, so concurrent writers with a stale version conflict
//! instead of overwriting each other. A process killed in the middle of a save leaves
//! its temp file behind; [`FileStore::remove_leftover_temp_files`] removes those at the
//! start of a run, under the same lock, so it never takes a live writer's file.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{StateStore, StoreError};
use crate::metrics::PolicyRef;
use crate::policy::RolloutStatus;
use crate::router::Version;

/// Stores rollout state in a directory tree.
#[derive(Clone, Debug)]
pub struct FileStore {
    dir: PathBuf,
}

/// The document on disk.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoredState {
    /// Grows by one on every save; the store's `Version`.
    generation: u64,
    status: RolloutStatus,
}

impl FileStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileStore { dir: dir.into() }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<namespace>/<name>`: the stem of the policy's state file, lock file and
    /// command directory.
    pub fn policy_stem(&self, policy: &PolicyRef) -> PathBuf {
        self.dir.join(&policy.namespace).join(&policy.name)
    }

    /// Where the policy's state lives.
    pub fn path(&self, policy: &PolicyRef) -> PathBuf {
        self.dir
            .join(&policy.namespace)
            .join(format!("{}.json", policy.name))
    }

    fn lock_path(&self, policy: &PolicyRef) -> PathBuf {
        self.dir
            .join(&policy.namespace)
            .join(format!("{}.lock", policy.name))
    }

    /// Removes the temp files a save killed half-way left beside the policy's state
    /// file; returns how many. Takes the policy's lock, so a save in flight in another
    /// process keeps its file.
    pub async fn remove_leftover_temp_files(
        &self,
        policy: &PolicyRef,
    ) -> Result<usize, StoreError> {
        check_ref(policy, &self.dir)?;
        let store = self.clone();
        let owned = policy.clone();
        tokio::task::spawn_blocking(move || remove_leftovers_blocking(&store, &owned))
            .await
            .map_err(|e| StoreError::Io {
                policy: policy_name(policy),
                location: self.dir.display().to_string(),
                message: format!("the temp file cleanup stopped: {e}"),
                source: Some(Box::new(e)),
            })?
    }
}

/// Whether `file_name` is a temp file of `save_blocking` for the policy named `name`:
/// `.<name>.` + tempfile's 6 random alphanumerics + `.tmp`, and nothing else (a policy
/// named `a.b` has temp files that start with `.a.` too).
fn is_temp_file_of(file_name: &str, name: &str) -> bool {
    file_name
        .strip_prefix('.')
        .and_then(|rest| rest.strip_prefix(name))
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX))
        .is_some_and(|random| {
            random.len() == TEMP_RANDOM_CHARS && random.chars().all(|c| c.is_ascii_alphanumeric())
        })
}

const TEMP_SUFFIX: &str = ".tmp";
const TEMP_RANDOM_CHARS: usize = 6;

fn remove_leftovers_blocking(store: &FileStore, policy: &PolicyRef) -> Result<usize, StoreError> {
    let path = store.path(policy);
    let dir = path.parent().unwrap_or(&store.dir).to_owned();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_error(policy, &dir, "cannot list the state directory", e)),
    };
    let _lock = lock_policy(store, policy)?;
    let mut removed = 0;
    for entry in entries {
        let entry =
            entry.map_err(|e| io_error(policy, &dir, "cannot list the state directory", e))?;
        let is_leftover = entry
            .file_name()
            .to_str()
            .is_some_and(|n| is_temp_file_of(n, &policy.name));
        if !is_leftover {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io_error(
                    policy,
                    &entry.path(),
                    "cannot remove a leftover temp file",
                    e,
                ))
            }
        }
    }
    Ok(removed)
}

/// The policy's exclusive lock, held until the file is dropped.
fn lock_policy(store: &FileStore, policy: &PolicyRef) -> Result<std::fs::File, StoreError> {
    let lock_path = store.lock_path(policy);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io_error(policy, &lock_path, "cannot open the lock file", e))?;
    lock.lock()
        .map_err(|e| io_error(policy, &lock_path, "cannot lock the state", e))?;
    Ok(lock)
}

fn policy_name(policy: &PolicyRef) -> String {
    format!("{}/{}", policy.namespace, policy.name)
}

fn io_error(policy: &PolicyRef, location: &Path, what: &str, e: std::io::Error) -> StoreError {
    let hint = "; make the state directory readable and writable, or pass --state-dir DIR";
    StoreError::Io {
        policy: policy_name(policy),
        location: location.display().to_string(),
        message: format!("{what}: {e}{hint}"),
        source: Some(Box::new(e)),
    }
}

/// Validates the path parts so a policy named `../x` cannot escape the state dir.
fn check_ref(policy: &PolicyRef, dir: &Path) -> Result<(), StoreError> {
    for part in [&policy.namespace, &policy.name] {
        let bad = part.is_empty()
            || part == "."
            || part == ".."
            || part.contains('/')
            || part.contains('\\')
            || part.contains('\0');
        if bad {
            return Err(StoreError::Io {
                policy: policy_name(policy),
                location: dir.display().to_string(),
                message: format!(
                    "{part:?} cannot name a state file; namespace and name must be non-empty \
                     and contain no '/'"
                ),
                source: None,
            });
        }
    }
    Ok(())
}

fn read_state(policy: &PolicyRef, path: &Path) -> Result<Option<StoredState>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(policy, path, "cannot read the state file", e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            policy: policy_name(policy),
            location: format!("{}:{}:{}", path.display(), e.line(), e.column()),
            message: format!("{e}; move the file away to start this policy's rollout from scratch"),
        })
}

fn save_blocking(
    store: &FileStore,
    policy: &PolicyRef,
    status: &RolloutStatus,
    expect: Option<&Version>,
) -> Result<Version, StoreError> {
    check_ref(policy, &store.dir)?;
    let path = store.path(policy);
    let dir = path.parent().unwrap_or(&store.dir).to_owned();
    std::fs::create_dir_all(&dir)
        .map_err(|e| io_error(policy, &dir, "cannot create the state directory", e))?;
    let _lock = lock_policy(store, policy)?;

    let current = read_state(policy, &path)?.map(|state| state.generation);
    let expected = match expect {
        None => None,
        Some(version) => Some(version.0.parse::<u64>().map_err(|_| StoreError::Conflict {
            policy: policy_name(policy),
        })?),
    };
    if current != expected {
        return Err(StoreError::Conflict {
            policy: policy_name(policy),
        });
    }
    let generation = current.unwrap_or(0) + 1;
    let document = StoredState {
        generation,
        status: status.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&document).map_err(|e| StoreError::Io {
        policy: policy_name(policy),
        location: path.display().to_string(),
        message: format!("cannot encode the status: {e}"),
        source: Some(Box::new(e)),
    })?;
    let write = || -> std::io::Result<()> {
        let mut temp = tempfile::Builder::new()
            .prefix(&format!(".{}.", policy.name))
            .rand_bytes(TEMP_RANDOM_CHARS)
            .suffix(TEMP_SUFFIX)
            .tempfile_in(&dir)?;
        temp.write_all(&bytes)?;
        temp.write_all(b"\n")?;
        temp.as_file().sync_all()?;
        temp.persist(&path).map_err(|e| e.error)?;
        std::fs::File::open(&dir)?.sync_all()
    };
    write().map_err(|e| io_error(policy, &path, "cannot write the state file", e))?;
    Ok(Version(generation.to_string()))
}

#[async_trait]
impl StateStore for FileStore {
    async fn load(
        &self,
        policy: &PolicyRef,
    ) -> Result<Option<(RolloutStatus, Version)>, StoreError> {
        check_ref(policy, &self.dir)?;
        let path = self.path(policy);
        let policy = policy.clone();
        let state = tokio::task::spawn_blocking(move || read_state(&policy, &path))
            .await
            .map_err(|e| StoreError::Io {
                policy: "?".into(),
                location: self.dir.display().to_string(),
                message: format!("the state reader stopped: {e}"),
                source: Some(Box::new(e)),
            })??;
        Ok(state.map(|s| (s.status, Version(s.generation.to_string()))))
    }

    async fn save(
        &self,
        policy: &PolicyRef,
        status: &RolloutStatus,
        expect: Option<&Version>,
    ) -> Result<Version, StoreError> {
        let store = self.clone();
        let owned_policy = policy.clone();
        let status = status.clone();
        let expect = expect.cloned();
        tokio::task::spawn_blocking(move || {
            save_blocking(&store, &owned_policy, &status, expect.as_ref())
        })
        .await
        .map_err(|e| StoreError::Io {
            policy: policy_name(policy),
            location: self.dir.display().to_string(),
            message: format!("the state writer stopped: {e}"),
            source: Some(Box::new(e)),
        })?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn path_traversal_in_a_name_is_refused() {
        let policy = PolicyRef {
            namespace: "..".into(),
            name: "x".into(),
        };
        assert!(check_ref(&policy, Path::new("/tmp")).is_err());
        let policy = PolicyRef {
            namespace: "shop".into(),
            name: "a/b".into(),
        };
        assert!(check_ref(&policy, Path::new("/tmp")).is_err());
    }

    #[test]
    fn only_this_policys_temp_files_count_as_leftovers() {
        assert!(is_temp_file_of(".checkout.a1B2c3.tmp", "checkout"));
        assert!(!is_temp_file_of(".checkout.b.a1B2c3.tmp", "checkout"));
        assert!(!is_temp_file_of(".checkout.a1B2c3.tmp", "checkout.b"));
        assert!(is_temp_file_of(".checkout.b.a1B2c3.tmp", "checkout.b"));
        assert!(!is_temp_file_of("checkout.json", "checkout"));
        assert!(!is_temp_file_of(".checkout.a1B2c3.json", "checkout"));
    }

    #[test]
    fn state_file_sits_under_namespace() {
        let store = FileStore::new("/state");
        let policy = PolicyRef {
            namespace: "shop".into(),
            name: "checkout".into(),
        };
        assert_eq!(
            store.path(&policy),
            PathBuf::from("/state/shop/checkout.json")
        );
    }
}
