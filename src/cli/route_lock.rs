//! One `shiftgate run` per route. Two runs on the same route (two CI pipelines, a
//! forgotten terminal) would fight over its weights, each calling the other's writes
//! drift; the second is refused at its start instead, naming the first.
//!
//! Keyed by what is written, not by the policy: two policy files (or two state
//! directories) naming the same Envoy routes file, Envoy admin address, VirtualService
//! or Service are the same route. Each key is an exclusive OS lock on a file under
//! `$SHIFTGATE_LOCK_DIR` (default: `<temp dir>/shiftgate-locks`), so every run on this
//! machine sees it whatever its state directory; the OS drops it when the process ends,
//! however it ends, so it is never stale. The holder writes who it is into the file.
//! Across machines, a cluster run also holds a Lease (`runtime::route_lease`), and
//! writes only while it holds it: its writes are fenced, and the run stops when a
//! Lease is lost ([`run_while_held`]).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::PathBuf;

use kube::Client;

use crate::runtime::leader::Leadership;
use crate::runtime::local::LocalPolicy;
use crate::runtime::route_lease::{self, RouteFence, RouteLease, RouteLeaseError};

/// Where the lock files live; overridable for machines whose temp dir is per user.
pub const LOCK_DIR_ENV: &str = "SHIFTGATE_LOCK_DIR";

/// Held while a run drives its route; dropping it releases every key.
#[derive(Debug)]
pub struct RouteLock {
    _files: Vec<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteLockError {
    #[error(
        "{key} is already driven by another `shiftgate run` ({holder}); two runs on one route \
         would fight over its weights: wait for that run to end, or stop it, then run again"
    )]
    Held { key: String, holder: String },
    #[error(
        "cannot take the run lock for {key} at {path}: {source}; set {LOCK_DIR_ENV} to a \
         writable directory"
    )]
    Io {
        key: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The routes a run of `local` writes, as lock keys.
pub fn lock_keys(local: &LocalPolicy) -> Vec<String> {
    let spec = &local.spec;
    let namespace = &local.policy.namespace;
    let object = |reference: &str| match reference.split_once('/') {
        Some((ns, name)) => format!("{ns}/{name}"),
        None => format!("{namespace}/{reference}"),
    };
    let mut keys = Vec::new();
    if let Some(envoy) = &spec.router.envoy {
        let file = std::fs::canonicalize(&envoy.routes_file)
            .unwrap_or_else(|_| PathBuf::from(&envoy.routes_file));
        keys.push(format!("Envoy routes file {}", file.display()));
        keys.push(format!("Envoy admin {}", envoy.admin_address));
    }
    if let Some(istio) = &spec.router.istio {
        keys.push(format!("VirtualService {}", object(&istio.virtual_service)));
    }
    if let Some(service) = &spec.router.service {
        keys.push(format!("Service {}", object(&service.service)));
    }
    keys
}

fn lock_dir() -> PathBuf {
    match std::env::var_os(LOCK_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::temp_dir().join("shiftgate-locks"),
    }
}

/// A file name for `key`: its safe characters, and a hash so that keys differing
/// only in unsafe characters never share a file.
fn file_name(key: &str) -> String {
    let mut safe: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    safe.truncate(160);
    // FNV-1a: stable across builds and platforms (std's hasher is not).
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{safe}-{hash:016x}.lock")
}

/// Who this process is, as the next run's refusal names it.
pub fn holder_description(local: &LocalPolicy) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "an unknown host".to_owned());
    format!(
        "pid {} on {host}, started {}, policy {}/{} from {}",
        std::process::id(),
        crate::runtime::Clock::now(&crate::runtime::SystemClock)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        local.policy.namespace,
        local.policy.name,
        local.file.display()
    )
}

/// Takes every route key of `local`, or says which run holds one.
pub fn hold_route(local: &LocalPolicy) -> Result<RouteLock, RouteLockError> {
    let dir = lock_dir();
    let me = holder_description(local);
    let mut files = Vec::new();
    // A VirtualService or Service name means nothing without its cluster: those routes
    // are held by a Lease in their cluster (`hold`), the files only key Envoy's.
    let local_keys = lock_keys(local)
        .into_iter()
        .filter(|k| k.starts_with("Envoy "));
    for key in local_keys {
        let path = dir.join(file_name(&key));
        let io = |source| RouteLockError::Io {
            key: key.clone(),
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(RouteLockError::Held {
                    key,
                    holder: if holder.is_empty() {
                        "a process that has not said who it is yet".to_owned()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{me}").map_err(io)?;
        file.flush().map_err(io)?;
        files.push(file);
    }
    Ok(RouteLock { _files: files })
}

/// The route held by one run: the local lock, and in a cluster its Leases (by key).
pub struct HeldRoute {
    _lock: RouteLock,
    leases: Vec<(String, RouteLease)>,
}

/// A cluster run lost a route Lease while it ran: it stopped, and wrote nothing after
/// the loss (its writes are fenced, `runtime::route_lease::RouteFence`).
#[derive(Debug, thiserror::Error)]
#[error(
    "lost the run Lease of {key} while the rollout ran (this process was paused or cut off \
     from the API server longer than {seconds}s, or another run took the route over); this \
     run stopped and wrote nothing after the loss. See who drives the route now (`kubectl get \
     lease -n {namespace}`) before running again: the state is saved and a new run resumes",
    seconds = route_lease::LEASE_DURATION.as_secs() * 2 / 3
)]
pub struct RouteLeaseLost {
    pub key: String,
    pub namespace: String,
}

impl HeldRoute {
    /// Lets the writes behind `fence` go while every Lease of this route is held (a
    /// local run holds none: its fence stays open with no Lease to lose).
    pub fn arm(&self, fence: &RouteFence) {
        fence.arm(self.leases.iter().map(|(_, l)| l.leadership()).collect());
    }

    /// Resolves with the key of the first Lease no longer held; never without Leases.
    pub async fn lost(&self) -> String {
        let mut watched: Vec<(String, Leadership)> = self
            .leases
            .iter()
            .map(|(key, lease)| (key.clone(), lease.leadership()))
            .collect();
        if watched.is_empty() {
            return std::future::pending().await;
        }
        loop {
            if let Some((key, _)) = watched.iter().find(|(_, l)| !l.is_leading()) {
                return key.clone();
            }
            // Every renewal, loss and passed deadline is a change (the elector wakes at
            // the deadline to say so).
            let changes = watched.iter_mut().map(|(_, l)| Box::pin(l.changed()));
            futures::future::select_all(changes).await;
        }
    }

    /// Gives the route up at once (the local lock goes with the process anyway).
    pub async fn release(self) {
        for (_, lease) in self.leases {
            lease.release().await;
        }
    }
}

/// Drives `run` while `held` keeps its Leases; stops it (dropping it between two
/// awaits: its writes were refused from the loss on) with the Lease that was lost.
pub async fn run_while_held<F: std::future::Future>(
    held: Option<&HeldRoute>,
    namespace: &str,
    run: F,
) -> Result<F::Output, RouteLeaseLost> {
    let Some(held) = held else {
        return Ok(run.await);
    };
    tokio::select! {
        out = run => Ok(out),
        key = held.lost() => Err(RouteLeaseLost { key, namespace: namespace.to_owned() }),
    }
}

/// Why a run may not drive its route.
#[derive(Debug, thiserror::Error)]
pub enum RouteTaken {
    #[error(transparent)]
    Local(#[from] RouteLockError),
    #[error(transparent)]
    Cluster(#[from] RouteLeaseError),
}

/// Takes the route of `local` for this process: the local lock, and with a cluster
/// client (a cluster policy) a Lease per route in the policy's namespace.
pub async fn hold(local: &LocalPolicy, client: Option<Client>) -> Result<HeldRoute, RouteTaken> {
    let lock = hold_route(local)?;
    let mut leases = Vec::new();
    if let Some(client) = client {
        let identity = holder_description(local);
        for key in lock_keys(local) {
            match route_lease::acquire(client.clone(), &local.policy.namespace, &key, &identity)
                .await
            {
                Ok(lease) => leases.push((key, lease)),
                Err(e) => {
                    for (_, lease) in leases {
                        lease.release().await;
                    }
                    return Err(e.into());
                }
            }
        }
    }
    Ok(HeldRoute {
        _lock: lock,
        leases,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_that_differ_only_in_unsafe_characters_get_different_files() {
        assert_ne!(file_name("Service a/b"), file_name("Service a_b"));
        assert_eq!(file_name("Service a/b"), file_name("Service a/b"));
        assert!(file_name(&"x".repeat(1000)).len() < 200);
    }
}
