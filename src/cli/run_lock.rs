//! Whether a `shiftgate run` is driving a local rollout right now, so `pause` & co.
//! and `status` never promise that "the running `shiftgate run`" will act when none
//! runs.
//!
//! Every `run` holds a shared lock on `<state dir>/<namespace>/<name>.run.lock` while
//! it runs. The OS drops the lock when the process ends, however it ends (`kill -9`
//! included), so the marker is never stale. Shared: two runs of one policy are the
//! store's business (its versioned saves), not this marker's.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

use crate::metrics::PolicyRef;
use crate::store::file::FileStore;

/// Held by a running `shiftgate run`; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

fn lock_path(store: &FileStore, policy: &PolicyRef) -> PathBuf {
    let mut path = store.policy_stem(policy).into_os_string();
    path.push(".run.lock");
    PathBuf::from(path)
}

/// Marks the policy's rollout as driven by this process until the lock is dropped.
pub fn hold(store: &FileStore, policy: &PolicyRef) -> std::io::Result<RunLock> {
    let path = lock_path(store, policy);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    file.lock_shared()?;
    Ok(RunLock { _file: file })
}

/// Whether some process holds the policy's run lock now. `None`: it cannot be told
/// (the lock file is unreadable), and the caller says nothing either way.
pub fn is_held(store: &FileStore, policy: &PolicyRef) -> Option<bool> {
    let file = match OpenOptions::new()
        .write(true)
        .open(lock_path(store, policy))
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    match file.try_lock() {
        // Nobody holds it; dropping the file releases this probe's lock at once.
        Ok(()) => Some(false),
        Err(TryLockError::WouldBlock) => Some(true),
        Err(TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_lock_marks_a_run_until_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let policy = PolicyRef {
            namespace: "shop".into(),
            name: "checkout".into(),
        };
        assert_eq!(is_held(&store, &policy), Some(false), "never run");
        let held = hold(&store, &policy).unwrap();
        assert_eq!(is_held(&store, &policy), Some(true));
        let second = hold(&store, &policy).unwrap();
        drop(held);
        assert_eq!(
            is_held(&store, &policy),
            Some(true),
            "one run still holds it"
        );
        drop(second);
        assert_eq!(is_held(&store, &policy), Some(false));
        assert!(dir.path().join("shop/checkout.run.lock").is_file());
    }
}
