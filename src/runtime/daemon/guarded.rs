//! The guarded watch (linkerd2's `guarded_watch`): RolloutPolicies are watched as
//! `DynamicObject`s and decoded one by one, so one object the API server accepted but
//! the Rust types cannot read (`steps: ["abc"]`, `interval: "5 parsecs"`: the CRD
//! schema cannot express every rule) is skipped instead of failing the typed list on
//! every retry and stalling every policy in the cluster.
//!
//! An undecodable object is logged once per resourceVersion, kept in
//! [`InvalidPolicies`], and refused by one writer task ([`write_refusals`], the leader
//! only): `Accepted=False` `InvalidPolicy` naming the field, one Warning Event. It never
//! reaches the reflector, so no router is ever built for it. A policy that was valid
//! and becomes undecodable is removed from the reflector (a `Delete`): nothing keeps
//! driving a spec that can no longer be read, and its route stays at the live weights.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock, PoisonError};

use kube::api::{ApiResource, DynamicObject};
use kube::runtime::reflector::ObjectRef;
use serde_json::Value;
use tokio::sync::Notify;

use super::*;
use crate::policy::diagnostic::Severity;
use crate::policy::schema::document_schema;
use crate::policy::structure::check_structure;

/// How long one refusal (status read, status write, Event) may take.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);
/// When a refusal failed (API server down, a conflicting status write), the next try.
const REFUSAL_RETRY: Duration = Duration::from_secs(5);

/// A RolloutPolicy that does not decode into [`RolloutPolicy`].
#[derive(Clone, Debug)]
pub(super) struct Undecodable {
    pub(super) policy: PolicyRef,
    pub(super) resource_version: Option<String>,
    pub(super) generation: Option<i64>,
    pub(super) reference: ObjectReference,
    /// The field path serde stopped at, like `spec.steps[0]`.
    pub(super) path: String,
    pub(super) cause: String,
    /// Every structural problem of the spec (`path: message (hint: ..)`), as
    /// `shiftgate validate` reports them; empty when only serde saw one.
    pub(super) problems: Vec<String>,
}

impl Undecodable {
    /// The same spec generation with the same problem: nothing new to log or write.
    fn same_problem(&self, other: &Undecodable) -> bool {
        self.generation == other.generation
            && self.path == other.path
            && self.cause == other.cause
            && self.problems == other.problems
    }

    /// The condition message: the field, why, and what to do.
    pub(super) fn message(&self) -> String {
        let problems = if self.problems.is_empty() {
            format!("{}: {}", self.path, self.cause)
        } else {
            self.problems.join("; ")
        };
        let what = if self.problems.len() > 1 {
            "these fields"
        } else {
            &self.path
        };
        format!(
            "{problems}; the daemon cannot read this policy and drives nothing for it (a \
             rollout in progress stays at its live weights): fix {what} (`shiftgate validate` \
             lists every problem) and apply it again"
        )
    }
}

/// Decodes one watched object; the error names the field path and the cause.
pub(super) fn decode(
    object: &DynamicObject,
    resource: &ApiResource,
) -> Result<RolloutPolicy, Box<Undecodable>> {
    let undecodable = |path: String, cause: String, problems: Vec<String>| {
        Box::new(Undecodable {
            policy: PolicyRef {
                namespace: object.metadata.namespace.clone().unwrap_or_default(),
                name: object.metadata.name.clone().unwrap_or_default(),
            },
            resource_version: object.metadata.resource_version.clone(),
            generation: object.metadata.generation,
            reference: object.object_ref(resource),
            path,
            cause,
            problems,
        })
    };
    // Spec and status are read straight from the watched JSON: each watch event of a
    // status write is decoded once, not re-serialized and decoded again.
    let spec = object.data.get("spec").ok_or_else(|| {
        undecodable(
            ".".to_owned(),
            "missing field `spec`".to_owned(),
            spec_problems(object),
        )
    })?;
    let spec: RolloutSpec = serde_path_to_error::deserialize(spec).map_err(|e| {
        undecodable(
            field_path("spec", e.path()),
            e.inner().to_string(),
            spec_problems(object),
        )
    })?;
    let status = match object.data.get("status").filter(|s| !s.is_null()) {
        None => None,
        Some(status) => Some(serde_path_to_error::deserialize(status).map_err(|e| {
            undecodable(
                field_path("status", e.path()),
                e.inner().to_string(),
                Vec::new(),
            )
        })?),
    };
    Ok(RolloutPolicy {
        metadata: crate::router::watch_cache::without_bookkeeping(object.metadata.clone()),
        spec,
        status,
    })
}

/// `spec.steps[0]` from `spec` and serde's path inside it (`.` for the field itself).
fn field_path(field: &str, inside: &serde_path_to_error::Path) -> String {
    let inside = inside.to_string();
    match inside.as_str() {
        "." => field.to_owned(),
        _ if inside.starts_with('[') => format!("{field}{inside}"),
        _ => format!("{field}.{inside}"),
    }
}

/// The spec's structural errors, with the messages and hints of `shiftgate validate`
/// (serde alone says "data did not match any variant of untagged enum StepRepr").
fn spec_problems(object: &DynamicObject) -> Vec<String> {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    let schema = SCHEMA.get_or_init(document_schema);
    // Only the spec is judged: the server's metadata and the status are not the user's.
    let types = object.types.as_ref();
    let document = serde_json::json!({
        "apiVersion": types.map(|t| &t.api_version),
        "kind": types.map(|t| &t.kind),
        "metadata": {
            "name": object.metadata.name,
            "namespace": object.metadata.namespace,
        },
        "spec": object.data.get("spec"),
    });
    check_structure(&document, schema)
        .into_iter()
        .filter(|issue| issue.severity == Severity::Error)
        .map(|issue| issue.to_string())
        .collect()
}

#[derive(Debug)]
struct Entry {
    invalid: Undecodable,
    /// Its refusal is written (for this resourceVersion).
    handled: bool,
}

#[derive(Debug, Default)]
struct Entries {
    by_policy: HashMap<PolicyRef, Entry>,
    /// During a (re-)list: the undecodable objects listed so far; at the end, every
    /// other entry is gone from the cluster.
    listing: Option<HashSet<PolicyRef>>,
}

/// The undecodable policies the watch has seen, and a wake-up for their writer.
#[derive(Debug, Default)]
pub(super) struct InvalidPolicies {
    entries: Mutex<Entries>,
    wake: Notify,
}

impl InvalidPolicies {
    fn with<T>(&self, f: impl FnOnce(&mut Entries) -> T) -> T {
        f(&mut self.entries.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Records an undecodable object; logs it (and has its refusal written) once per
    /// change of what is wrong. Keyed on generation and problem, not resourceVersion:
    /// the refusal's own status write bumps the resourceVersion.
    fn record(&self, invalid: Undecodable) {
        let fresh = self.with(|entries| {
            if let Some(listing) = &mut entries.listing {
                listing.insert(invalid.policy.clone());
            }
            let known = match entries.by_policy.get_mut(&invalid.policy) {
                Some(entry) if entry.invalid.same_problem(&invalid) => {
                    // The newest reference, for the Event.
                    entry.invalid = invalid.clone();
                    true
                }
                _ => false,
            };
            if !known {
                tracing::warn!(
                    kind = "RolloutPolicy",
                    namespace = %invalid.policy.namespace,
                    name = %invalid.policy.name,
                    resource_version = invalid.resource_version.as_deref().unwrap_or(""),
                    field = %invalid.path,
                    error = %invalid.cause,
                    "undecodable policy skipped"
                );
                entries.by_policy.insert(
                    invalid.policy.clone(),
                    Entry {
                        invalid,
                        handled: false,
                    },
                );
            }
            !known
        });
        if fresh {
            self.wake.notify_one();
        }
    }

    fn forget(&self, policy: &PolicyRef) {
        self.with(|entries| entries.by_policy.remove(policy));
    }

    fn begin_listing(&self) {
        self.with(|entries| entries.listing = Some(HashSet::new()));
    }

    fn end_listing(&self) {
        self.with(|entries| {
            if let Some(listed) = entries.listing.take() {
                entries
                    .by_policy
                    .retain(|policy, _| listed.contains(policy));
            }
        });
    }

    /// The undecodable policies whose refusal is not written yet.
    fn pending(&self) -> Vec<Undecodable> {
        self.with(|entries| {
            entries
                .by_policy
                .values()
                .filter(|e| !e.handled)
                .map(|e| e.invalid.clone())
                .collect()
        })
    }

    /// The refusal of `invalid` is written, unless its problem changed meanwhile.
    fn handled(&self, invalid: &Undecodable) {
        self.with(|entries| {
            if let Some(entry) = entries.by_policy.get_mut(&invalid.policy) {
                if entry.invalid.same_problem(invalid) {
                    entry.handled = true;
                }
            }
        });
    }

    /// How many undecodable policies are known (tests, diagnostics).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.with(|entries| entries.by_policy.len())
    }
}

type DynamicEvent = Result<watcher::Event<DynamicObject>, watcher::Error>;
type PolicyEvent = Result<watcher::Event<RolloutPolicy>, watcher::Error>;

/// Turns the watch of `DynamicObject`s into the typed events the reflector and
/// controller read, skipping (and recording) what does not decode. `known` is the
/// reflector's store, read before each event reaches it: a policy that was valid and
/// is no longer becomes a `Delete`.
pub(super) fn guard(
    events: impl Stream<Item = DynamicEvent> + Send,
    known: Store<RolloutPolicy>,
    invalid: Arc<InvalidPolicies>,
) -> impl Stream<Item = PolicyEvent> + Send {
    let resource = ApiResource::erase::<RolloutPolicy>(&());
    events
        .filter_map(move |event| std::future::ready(translate(event, &resource, &known, &invalid)))
}

fn translate(
    event: DynamicEvent,
    resource: &ApiResource,
    known: &Store<RolloutPolicy>,
    invalid: &InvalidPolicies,
) -> Option<PolicyEvent> {
    let event = match event {
        Ok(event) => event,
        Err(error) => return Some(Err(error)),
    };
    let previously_known = |object: &DynamicObject| {
        let name = object.metadata.name.as_deref()?;
        let namespace = object.metadata.namespace.as_deref()?;
        known
            .get(&ObjectRef::new(name).within(namespace))
            .map(|policy| (*policy).clone())
    };
    let forget = |object: &DynamicObject| {
        if let (Some(namespace), Some(name)) = (&object.metadata.namespace, &object.metadata.name) {
            invalid.forget(&PolicyRef {
                namespace: namespace.clone(),
                name: name.clone(),
            });
        }
    };
    let typed = match event {
        watcher::Event::Init => {
            invalid.begin_listing();
            watcher::Event::Init
        }
        watcher::Event::InitDone => {
            invalid.end_listing();
            watcher::Event::InitDone
        }
        // During a (re-)list an undecodable object is not listed, so the reflector drops
        // a formerly valid version at `InitDone`; the `Delete` drops it now, and also
        // tells the metrics to forget it.
        watcher::Event::InitApply(object) => match decode(&object, resource) {
            Ok(policy) => {
                forget(&object);
                watcher::Event::InitApply(policy)
            }
            Err(undecodable) => {
                invalid.record(*undecodable);
                watcher::Event::Delete(previously_known(&object)?)
            }
        },
        watcher::Event::Apply(object) => match decode(&object, resource) {
            Ok(policy) => {
                forget(&object);
                watcher::Event::Apply(policy)
            }
            Err(undecodable) => {
                invalid.record(*undecodable);
                // Stop driving a spec that can no longer be read.
                watcher::Event::Delete(previously_known(&object)?)
            }
        },
        watcher::Event::Delete(object) => {
            forget(&object);
            match decode(&object, resource) {
                Ok(policy) => watcher::Event::Delete(policy),
                Err(_) => watcher::Event::Delete(previously_known(&object)?),
            }
        }
    };
    Some(Ok(typed))
}

/// The one writer of refusals for undecodable policies: while this replica leads,
/// writes `Accepted=False` `InvalidPolicy` (once per change, with one Warning Event),
/// retrying failed writes; wakes on new undecodable objects and on leadership changes.
pub(super) async fn write_refusals(
    invalid: Arc<InvalidPolicies>,
    contexts: Arc<super::ShardContexts>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut leaderships = contexts.leaderships();
    loop {
        let mut retry_soon = false;
        for undecodable in invalid.pending() {
            // Written only by the holder of the policy's shard.
            let ctx = contexts.for_policy(&undecodable.policy);
            if ctx.leadership.is_leading() {
                let written = tokio::time::timeout(
                    REFUSAL_TIMEOUT,
                    ctx.refuse_object(
                        &undecodable.policy,
                        undecodable.generation,
                        &undecodable.reference,
                        reasons::INVALID_POLICY,
                        &undecodable.message(),
                        RolloutEvent::InvalidPolicy {
                            messages: vec![undecodable.message()],
                        },
                    ),
                )
                .await;
                match written {
                    Ok(Ok(())) => invalid.handled(&undecodable),
                    Ok(Err(error)) => {
                        // A permanent error (a corrupt status) waits for the resync.
                        retry_soon |= error.is_transient();
                        tracing::warn!(namespace = %undecodable.policy.namespace, name = %undecodable.policy.name, reason = error.reason(), error = %error, "cannot write the refusal of an undecodable policy; retrying");
                    }
                    Err(_) => {
                        retry_soon = true;
                        tracing::warn!(namespace = %undecodable.policy.namespace, name = %undecodable.policy.name, timeout = ?REFUSAL_TIMEOUT, "writing the refusal of an undecodable policy timed out; retrying");
                    }
                }
            }
        }
        let wait = if retry_soon {
            REFUSAL_RETRY
        } else {
            contexts.any().options.resync
        };
        tokio::select! {
            () = invalid.wake.notified() => {}
            () = crate::runtime::shards::any_changed(&mut leaderships) => {}
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|done| *done) => return,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use futures::stream;
    use serde_json::json;

    fn object(name: &str, version: &str, steps: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "shiftgate.dev/v1alpha1",
            "kind": "RolloutPolicy",
            "metadata": { "name": name, "namespace": "shop", "resourceVersion": version, "generation": 1 },
            "spec": {
                "revision": "v2",
                "router": { "istio": {
                    "virtualService": "checkout",
                    "routes": ["primary"],
                    "stable": { "host": "checkout", "subset": "v1" },
                    "canary": { "host": "checkout", "subset": "v2" }
                }},
                "steps": steps,
                "analysis": {
                    "interval": "1s",
                    "prometheus": { "address": "http://127.0.0.1:1" },
                    "metrics": [ { "name": "error-rate", "query": "up", "max": 0.01 } ]
                }
            }
        }))
        .unwrap()
    }

    fn resource() -> ApiResource {
        ApiResource::erase::<RolloutPolicy>(&())
    }

    #[test]
    fn the_decoded_policy_leaves_out_managed_fields_and_the_last_applied_copy() {
        let mut watched = object("checkout", "1", json!([0, 50, 100]));
        watched.metadata.annotations = Some(
            [
                (
                    crate::router::watch_cache::LAST_APPLIED.to_owned(),
                    "{}".to_owned(),
                ),
                ("shiftgate.dev/command".to_owned(), "pause".to_owned()),
            ]
            .into(),
        );
        watched.metadata.managed_fields = Some(vec![Default::default()]);
        let policy = decode(&watched, &resource()).unwrap();
        assert_eq!(policy.metadata.managed_fields, None);
        assert_eq!(
            policy.metadata.annotations,
            Some([("shiftgate.dev/command".to_owned(), "pause".to_owned())].into())
        );
    }

    #[test]
    fn an_undecodable_object_names_the_field_path() {
        let error = decode(&object("bad", "1", json!([0, "abc"])), &resource()).unwrap_err();
        assert_eq!(error.path, "spec.steps[1]");
        assert_eq!(error.policy.name, "bad");
        let message = error.message();
        assert!(!message.contains("untagged enum"), "{message}");
        assert!(
            error.message().starts_with("spec.steps[1]: "),
            "{}",
            error.message()
        );
        assert!(decode(&object("good", "1", json!([0, 100])), &resource()).is_ok());
    }

    async fn run(
        events: Vec<watcher::Event<DynamicObject>>,
    ) -> (Vec<String>, Arc<InvalidPolicies>) {
        let (reader, writer) = reflector::store::<RolloutPolicy>();
        let invalid = Arc::new(InvalidPolicies::default());
        let out: Vec<String> = guard(
            stream::iter(events.into_iter().map(Ok)),
            reader,
            invalid.clone(),
        )
        .reflect(writer)
        .map(|event| match event.unwrap() {
            watcher::Event::Apply(p) => format!("apply {}", p.metadata.name.unwrap()),
            watcher::Event::InitApply(p) => format!("init-apply {}", p.metadata.name.unwrap()),
            watcher::Event::Delete(p) => format!("delete {}", p.metadata.name.unwrap()),
            watcher::Event::Init => "init".to_owned(),
            watcher::Event::InitDone => "init-done".to_owned(),
        })
        .collect()
        .await;
        (out, invalid)
    }

    #[tokio::test]
    async fn undecodable_objects_are_skipped_and_a_formerly_valid_one_is_deleted() {
        let (out, invalid) = run(vec![
            watcher::Event::Init,
            watcher::Event::InitApply(object("bad", "1", json!(["abc"]))),
            watcher::Event::InitApply(object("good", "2", json!([0, 100]))),
            watcher::Event::InitDone,
            watcher::Event::Apply(object("good", "3", json!([0, "x"]))),
            // Already gone from the reflector: nothing to delete twice.
            watcher::Event::Apply(object("good", "4", json!([0, "y"]))),
        ])
        .await;
        assert_eq!(out, ["init", "init-apply good", "init-done", "delete good"]);
        assert_eq!(invalid.len(), 2);
        assert_eq!(invalid.pending().len(), 2);
    }

    #[tokio::test]
    async fn a_fixed_or_deleted_object_is_forgotten_and_a_relist_drops_vanished_ones() {
        let (out, invalid) = run(vec![
            watcher::Event::Apply(object("a", "1", json!(["abc"]))),
            watcher::Event::Apply(object("b", "2", json!(["abc"]))),
            watcher::Event::Apply(object("c", "3", json!(["abc"]))),
            watcher::Event::Apply(object("a", "4", json!([0, 100]))),
            watcher::Event::Delete(object("b", "5", json!(["abc"]))),
            watcher::Event::Apply(object("d", "6", json!([0, 100]))),
            watcher::Event::Init,
            watcher::Event::InitApply(object("a", "4", json!([0, 100]))),
            // Edited into an undecodable one while the watch was down.
            watcher::Event::InitApply(object("d", "7", json!(["abc"]))),
            watcher::Event::InitDone,
        ])
        .await;
        assert_eq!(
            out,
            [
                "apply a",
                "apply d",
                "init",
                "init-apply a",
                "delete d",
                "init-done"
            ]
        );
        assert_eq!(invalid.len(), 1, "c vanished during the re-list; d is new");
        assert_eq!(invalid.pending()[0].policy.name, "d");
    }

    #[test]
    fn handled_holds_only_for_the_problem_it_was_written_for() {
        let invalid = InvalidPolicies::default();
        let first = *decode(&object("bad", "1", json!(["abc"])), &resource()).unwrap_err();
        invalid.record(first.clone());
        invalid.record(*decode(&object("bad", "2", json!(["abd"])), &resource()).unwrap_err());
        invalid.handled(&first);
        assert_eq!(
            invalid.pending().len(),
            1,
            "the changed problem still needs its refusal"
        );
        invalid.handled(&invalid.pending()[0].clone());
        assert!(invalid.pending().is_empty());
        // The same version again (a re-list) is not new, nor is the same spec at a new
        // resourceVersion (the refusal's own status write).
        invalid.record(*decode(&object("bad", "3", json!(["abd"])), &resource()).unwrap_err());
        assert!(invalid.pending().is_empty());
        invalid.record(*decode(&object("bad", "2", json!(["abd"])), &resource()).unwrap_err());
        assert!(invalid.pending().is_empty());
    }
}
