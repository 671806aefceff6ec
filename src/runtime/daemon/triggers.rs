//! Which watch events make a policy due now: a change of its spec (generation), of its
//! annotations (an operator command) or its deletion starting; not our own status
//! writes, which change none of these.
//!
//! A policy listed by a (re-)list is due only once the list is complete. The reflector
//! stores the listed objects at `InitDone`, all at once; a policy triggered before that
//! is not in the store yet, and the driver would take it for one deleted since and drop
//! it, so a policy created while the watch was listing again was never reconciled until
//! its next change.

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::policy::RolloutPolicy;

/// The policies a watch event makes due, in the order they became due.
#[derive(Default)]
pub(super) struct Triggers {
    /// What was last seen of each policy that makes it due when it changes.
    seen: HashMap<ObjectRef<RolloutPolicy>, u64>,
    /// During a list: the policies it listed, and those of them that are due at its end.
    listed: HashSet<ObjectRef<RolloutPolicy>>,
    due_at_list_end: Vec<ObjectRef<RolloutPolicy>>,
}

impl Triggers {
    pub(super) fn on(
        &mut self,
        event: &watcher::Event<RolloutPolicy>,
    ) -> Vec<ObjectRef<RolloutPolicy>> {
        match event {
            watcher::Event::Apply(policy) => self
                .changed(ObjectRef::from_obj(policy), policy)
                .into_iter()
                .collect(),
            watcher::Event::Delete(policy) => {
                self.seen.remove(&ObjectRef::from_obj(policy));
                Vec::new()
            }
            watcher::Event::Init => {
                // A list cut short by a new one: what it would have made due is due at
                // the end of the new one, if that lists it.
                for cut_short in self.due_at_list_end.drain(..) {
                    self.seen.remove(&cut_short);
                }
                self.listed.clear();
                Vec::new()
            }
            watcher::Event::InitApply(policy) => {
                let key = ObjectRef::from_obj(policy);
                if let Some(due) = self.changed(key.clone(), policy) {
                    self.due_at_list_end.push(due);
                }
                self.listed.insert(key);
                Vec::new()
            }
            watcher::Event::InitDone => {
                // What the list no longer has is gone (no `Delete` came for it).
                let listed = std::mem::take(&mut self.listed);
                self.seen.retain(|policy, _| listed.contains(policy));
                std::mem::take(&mut self.due_at_list_end)
            }
        }
    }

    /// `key`, when what makes `policy` due differs from what was last seen of it.
    fn changed(
        &mut self,
        key: ObjectRef<RolloutPolicy>,
        policy: &RolloutPolicy,
    ) -> Option<ObjectRef<RolloutPolicy>> {
        let now = due_fingerprint(policy);
        match self.seen.entry(key) {
            Entry::Occupied(seen) if *seen.get() == now => None,
            Entry::Occupied(mut seen) => {
                seen.insert(now);
                Some(seen.key().clone())
            }
            Entry::Vacant(unseen) => {
                let key = unseen.key().clone();
                unseen.insert(now);
                Some(key)
            }
        }
    }
}

/// What makes a policy due when it changes: its uid (deleted and created again), spec
/// generation, annotations, and whether its deletion started.
fn due_fingerprint(policy: &RolloutPolicy) -> u64 {
    let mut hasher = DefaultHasher::new();
    policy.metadata.uid.hash(&mut hasher);
    policy.metadata.generation.hash(&mut hasher);
    let annotations: BTreeMap<_, _> = policy
        .metadata
        .annotations
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    annotations.hash(&mut hasher);
    policy
        .metadata
        .deletion_timestamp
        .is_some()
        .hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::policy::RolloutSpec;

    fn policy(name: &str, generation: i64) -> RolloutPolicy {
        let spec: RolloutSpec = serde_json::from_value(serde_json::json!({
            "revision": "v2",
            "router": { "istio": { "virtualService": "vs", "stable": { "host": "a" }, "canary": { "host": "b" } } },
            "steps": [0, 100],
            "analysis": { "metrics": [] }
        }))
        .unwrap();
        let mut policy = RolloutPolicy::new(name, spec);
        policy.metadata.namespace = Some("shop".to_owned());
        policy.metadata.generation = Some(generation);
        policy
    }

    fn names(due: Vec<ObjectRef<RolloutPolicy>>) -> Vec<String> {
        due.into_iter().map(|key| key.name).collect()
    }

    #[test]
    fn a_listed_policy_is_due_when_the_list_is_complete_not_before() {
        let mut triggers = Triggers::default();
        assert!(triggers.on(&watcher::Event::Init).is_empty());
        assert!(triggers
            .on(&watcher::Event::InitApply(policy("a", 1)))
            .is_empty());
        assert!(triggers
            .on(&watcher::Event::InitApply(policy("b", 1)))
            .is_empty());
        assert_eq!(names(triggers.on(&watcher::Event::InitDone)), ["a", "b"]);
    }

    #[test]
    fn only_spec_annotation_and_deletion_changes_make_a_policy_due() {
        let mut triggers = Triggers::default();
        let mut a = policy("a", 1);
        assert_eq!(names(triggers.on(&watcher::Event::Apply(a.clone()))), ["a"]);
        // A status write: nothing that makes it due changed.
        a.status = Some(Default::default());
        a.metadata.resource_version = Some("7".to_owned());
        assert!(triggers.on(&watcher::Event::Apply(a.clone())).is_empty());
        a.metadata.annotations =
            Some([("shiftgate.dev/command".to_owned(), "pause".to_owned())].into());
        assert_eq!(names(triggers.on(&watcher::Event::Apply(a.clone()))), ["a"]);
        a.metadata.generation = Some(2);
        assert_eq!(names(triggers.on(&watcher::Event::Apply(a.clone()))), ["a"]);
        // A re-list that shows it unchanged does not make it due again.
        triggers.on(&watcher::Event::Init);
        triggers.on(&watcher::Event::InitApply(a.clone()));
        assert!(triggers.on(&watcher::Event::InitDone).is_empty());
    }

    #[test]
    fn a_policy_gone_from_a_list_is_forgotten_and_due_when_it_comes_back() {
        let mut triggers = Triggers::default();
        triggers.on(&watcher::Event::Apply(policy("a", 1)));
        triggers.on(&watcher::Event::Init);
        assert!(triggers.on(&watcher::Event::InitDone).is_empty());
        assert_eq!(
            names(triggers.on(&watcher::Event::Apply(policy("a", 1)))),
            ["a"]
        );
        triggers.on(&watcher::Event::Delete(policy("a", 1)));
        assert_eq!(
            names(triggers.on(&watcher::Event::Apply(policy("a", 1)))),
            ["a"]
        );
    }

    #[test]
    fn a_list_cut_short_by_a_new_one_makes_due_what_the_new_one_lists() {
        let mut triggers = Triggers::default();
        triggers.on(&watcher::Event::Init);
        triggers.on(&watcher::Event::InitApply(policy("a", 1)));
        triggers.on(&watcher::Event::Init);
        triggers.on(&watcher::Event::InitApply(policy("b", 1)));
        triggers.on(&watcher::Event::InitApply(policy("a", 1)));
        assert_eq!(names(triggers.on(&watcher::Event::InitDone)), ["b", "a"]);
    }
}
