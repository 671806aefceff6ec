//! A reconcile reads its policy's state and operator commands from the watched copy
//! of the policy the controller hands it (the reflector's object), not with GETs.
//!
//! The watch lags our own writes by milliseconds: a reconcile that starts before the
//! watch has shown the status this daemon just wrote would decide from the state
//! before it. So the last status written per policy is kept ([`RecentWrites`]) until
//! the watch shows that very resourceVersion, and read instead of the watched one.
//! Every save stays conditional on the resourceVersion read, so a stale read can never
//! overwrite anything: it fails with a conflict, and the next reconcile of that policy
//! reads once from the API server.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::*;
use crate::engine::OperatorCommand;
use crate::runtime::commands::CommandSourceError;

/// Our own status writes the watch has not shown yet: read instead of the watched copy
/// for at most this long (after that the watch is trusted again, whatever it shows).
const TRUST_OWN_WRITE_FOR: Duration = Duration::from_secs(30);

struct OwnWrite {
    version: Version,
    status: RolloutStatus,
    at: Instant,
}

/// The statuses this daemon wrote that the watch has not shown yet, and the policies
/// whose next read must go to the API server (their last save met a conflict).
#[derive(Default)]
pub(super) struct RecentWrites {
    /// Boxed: the map keeps the capacity of its busiest moment (many rollouts' writes
    /// unseen at once, at start), and a slot holding the write inline is 768 bytes (up
    /// to 12 MiB at 10,000 rollouts); a slot with a box is 56 bytes.
    written: Mutex<HashMap<PolicyRef, Box<OwnWrite>>>,
    reread: Mutex<HashSet<PolicyRef>>,
}

impl RecentWrites {
    /// The watch delivered `object`: once it shows our last write, forget the write.
    pub(super) fn observed(&self, object: &RolloutPolicy) {
        let Some(policy) = policy_ref(object) else {
            return;
        };
        let mut written = lock(&self.written);
        let shown = written.get(&policy).is_some_and(|own| {
            object.metadata.resource_version.as_deref() == Some(own.version.0.as_str())
        });
        if shown {
            written.remove(&policy);
        }
    }

    /// We wrote `status` at `version`: read it until the watch shows it.
    pub(super) fn wrote(&self, policy: &PolicyRef, version: Version, status: RolloutStatus) {
        lock(&self.written).insert(
            policy.clone(),
            Box::new(OwnWrite {
                version,
                status,
                at: Instant::now(),
            }),
        );
    }

    pub(super) fn forget(&self, policy: &PolicyRef) {
        lock(&self.written).remove(policy);
        lock(&self.reread).remove(policy);
    }

    /// The state to start from, given what the watch shows.
    fn current(
        &self,
        policy: &PolicyRef,
        watched: (RolloutStatus, Version),
    ) -> (RolloutStatus, Version) {
        let mut written = lock(&self.written);
        match written.get(policy) {
            Some(own) if own.version == watched.1 => {
                written.remove(policy);
                watched
            }
            Some(own) if own.at.elapsed() < TRUST_OWN_WRITE_FOR => {
                (own.status.clone(), own.version.clone())
            }
            Some(_) => {
                written.remove(policy);
                watched
            }
            None => watched,
        }
    }
}

/// The spec errors each policy's spec had when it was validated, by the object's uid
/// and `metadata.generation` (which moves only when the spec does): validation is a
/// pure function of the spec, which every evaluation would otherwise run again.
#[derive(Default)]
pub(super) struct ValidatedSpecs {
    seen: Mutex<HashMap<PolicyRef, Validated>>,
}

struct Validated {
    uid: String,
    generation: i64,
    errors: Arc<[String]>,
}

impl ValidatedSpecs {
    /// `validate(spec)` of this object, run again only for a new uid or generation (and
    /// always for an object without them).
    pub(super) fn errors(
        &self,
        policy: &PolicyRef,
        object: &RolloutPolicy,
        validate: impl FnOnce(&RolloutSpec) -> Vec<String>,
    ) -> Arc<[String]> {
        let (Some(uid), Some(generation)) =
            (object.metadata.uid.as_deref(), object.metadata.generation)
        else {
            return validate(&object.spec).into();
        };
        if let Some(seen) = lock(&self.seen).get(policy) {
            if seen.uid == uid && seen.generation == generation {
                return seen.errors.clone();
            }
        }
        let errors: Arc<[String]> = validate(&object.spec).into();
        lock(&self.seen).insert(
            policy.clone(),
            Validated {
                uid: uid.to_owned(),
                generation,
                errors: errors.clone(),
            },
        );
        errors
    }

    pub(super) fn forget(&self, policy: &PolicyRef) {
        lock(&self.seen).remove(policy);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain maps stay usable after a panic elsewhere.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The state store of one reconcile: its first load comes from the watched object
/// (or our own newer write); everything else goes to the daemon's store.
pub(super) struct WatchedStatus {
    pub(super) inner: Arc<dyn StateStore>,
    pub(super) object: Arc<RolloutPolicy>,
    pub(super) recent: Arc<RecentWrites>,
    pub(super) first_load: AtomicBool,
}

impl WatchedStatus {
    pub(super) fn new(
        inner: Arc<dyn StateStore>,
        object: Arc<RolloutPolicy>,
        recent: Arc<RecentWrites>,
    ) -> Self {
        WatchedStatus {
            inner,
            object,
            recent,
            first_load: AtomicBool::new(true),
        }
    }
}

#[async_trait]
impl StateStore for WatchedStatus {
    async fn load(
        &self,
        policy: &PolicyRef,
    ) -> Result<Option<(RolloutStatus, Version)>, StoreError> {
        let first = self.first_load.swap(false, Ordering::Relaxed);
        let reread = lock(&self.recent.reread).remove(policy);
        // A spec-only copy (a shard not held when it was listed) has no status to start
        // from; the driver never hands one over, and a read from the API server is
        // the safe answer if it ever did.
        let whole = !super::shard_cache::is_spec_only(&self.object);
        if first && !reread && whole {
            if let Some(watched) = self.inner.load_from_object(&self.object) {
                return Ok(Some(self.recent.current(policy, watched)));
            }
        }
        self.inner.load(policy).await
    }

    async fn save(
        &self,
        policy: &PolicyRef,
        status: &RolloutStatus,
        expect: Option<&Version>,
    ) -> Result<Version, StoreError> {
        let saved = self.inner.save(policy, status, expect).await;
        match &saved {
            Ok(version) => self.recent.wrote(policy, version.clone(), status.clone()),
            Err(StoreError::Conflict { .. }) => {
                // What we read was stale: read the next time from the API server.
                lock(&self.recent.written).remove(policy);
                lock(&self.recent.reread).insert(policy.clone());
            }
            Err(_) => {}
        }
        saved
    }
}

/// The operator commands of one reconcile, from the watched object's annotations.
pub(super) struct WatchedCommands {
    pub(super) inner: Arc<dyn CommandSource>,
    pub(super) object: Arc<RolloutPolicy>,
}

#[async_trait]
impl CommandSource for WatchedCommands {
    async fn pending(
        &self,
        policy: &PolicyRef,
        handled: Option<&str>,
    ) -> Result<Vec<OperatorCommand>, CommandSourceError> {
        // A spec-only copy carries no command annotations (see `WatchedStatus::load`).
        let whole = !super::shard_cache::is_spec_only(&self.object);
        match whole
            .then(|| self.inner.pending_in_object(&self.object, handled))
            .flatten()
        {
            Some(pending) => pending,
            None => self.inner.pending(policy, handled).await,
        }
    }

    async fn acknowledge(
        &self,
        policy: &PolicyRef,
        handled: &str,
    ) -> Result<(), CommandSourceError> {
        self.inner.acknowledge(policy, handled).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn object(uid: Option<&str>, generation: Option<i64>) -> RolloutPolicy {
        let spec: RolloutSpec = serde_json::from_value(serde_json::json!({
            "revision": "v1",
            "router": { "istio": { "virtualService": "vs", "stable": { "host": "s" }, "canary": { "host": "c" } } },
            "steps": [0, 50, 100],
            "analysis": { "metrics": [ { "name": "e", "query": "e", "max": 0.05 } ] },
        }))
        .unwrap();
        let mut object = RolloutPolicy::new("checkout", spec);
        object.metadata.uid = uid.map(str::to_owned);
        object.metadata.generation = generation;
        object
    }

    /// Keeps its state in the object (as the status store does) and counts the reads
    /// that go to the API server.
    #[derive(Default)]
    struct InObjectStore {
        requests: AtomicUsize,
    }

    #[async_trait]
    impl StateStore for InObjectStore {
        async fn load(
            &self,
            _policy: &PolicyRef,
        ) -> Result<Option<(RolloutStatus, Version)>, StoreError> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        }
        async fn save(
            &self,
            _policy: &PolicyRef,
            _status: &RolloutStatus,
            _expect: Option<&Version>,
        ) -> Result<Version, StoreError> {
            Ok(Version("2".to_owned()))
        }
        fn load_from_object(&self, _object: &RolloutPolicy) -> Option<(RolloutStatus, Version)> {
            Some((RolloutStatus::default(), Version("1".to_owned())))
        }
    }

    #[tokio::test]
    async fn a_spec_only_copy_is_never_read_as_the_policys_state() {
        let policy = PolicyRef {
            namespace: "shop".into(),
            name: "checkout".into(),
        };
        let whole = Arc::new(object(Some("a"), Some(1)));
        let cut = Arc::new(super::super::shard_cache::spec_only((*whole).clone()));
        for (object, requests) in [(whole, 0), (cut, 1)] {
            let inner = Arc::new(InObjectStore::default());
            let status = WatchedStatus::new(inner.clone(), object, Default::default());
            status.load(&policy).await.unwrap();
            assert_eq!(inner.requests.load(Ordering::SeqCst), requests);
        }
    }

    #[test]
    fn a_spec_is_validated_once_per_uid_and_generation() {
        let validated = ValidatedSpecs::default();
        let policy = PolicyRef {
            namespace: "shop".into(),
            name: "checkout".into(),
        };
        let calls = AtomicUsize::new(0);
        let validate = |_: &RolloutSpec| {
            calls.fetch_add(1, Ordering::SeqCst);
            vec!["spec.steps: wrong".to_owned()]
        };
        let seen = [
            object(Some("a"), Some(1)),
            object(Some("a"), Some(1)),
            object(Some("a"), Some(2)),
            object(Some("b"), Some(2)),
            object(None, Some(2)),
            object(Some("b"), None),
        ];
        for o in &seen {
            assert_eq!(
                &*validated.errors(&policy, o, validate),
                ["spec.steps: wrong"]
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        validated.forget(&policy);
        validated.errors(&policy, &seen[3], validate);
        assert_eq!(calls.load(Ordering::SeqCst), 6);
    }
}
