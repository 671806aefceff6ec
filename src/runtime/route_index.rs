//! One rollout per route: which policy owns which route. The oldest policy (by
//! creation time, then namespace/name) keeps a route; any later policy naming the same
//! route is refused. Derived from the watched policies only (no state of its own), so
//! it agrees across restarts and replicas.
//!
//! [`RouteIndex`] keeps the watched policies grouped by the object their routes live
//! in, maintained from the watch events (apply, delete, and a restart's re-list), so a
//! reconcile looks only at the few policies on its own object: its cost does not grow
//! with the number of policies.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::metrics::PolicyRef;
use crate::policy::{RolloutPolicy, RolloutSpec};

/// A route a policy drives: a managed http route of a VirtualService, a Service's
/// selector, or an Envoy routes file.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey(String);

impl std::fmt::Display for RouteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The routes `spec` manages, for a policy in `namespace`.
pub fn route_keys(namespace: &str, spec: &RolloutSpec) -> Vec<RouteKey> {
    let mut keys = Vec::new();
    if let Some(istio) = &spec.router.istio {
        let (vs_namespace, vs_name) = match istio.virtual_service.split_once('/') {
            Some((ns, name)) => (ns, name),
            None => (namespace, istio.virtual_service.as_str()),
        };
        if istio.routes.is_empty() {
            // The only http route: any other policy on this VirtualService may name it.
            keys.push(RouteKey(format!("VirtualService {vs_namespace}/{vs_name}")));
        } else {
            for route in &istio.routes {
                keys.push(RouteKey(format!(
                    "VirtualService {vs_namespace}/{vs_name} route {route}"
                )));
            }
        }
    }
    if let Some(service) = &spec.router.service {
        let (ns, name) = match service.service.split_once('/') {
            Some((ns, name)) => (ns, name),
            None => (namespace, service.service.as_str()),
        };
        keys.push(RouteKey(format!("Service {ns}/{name}")));
    }
    if let Some(envoy) = &spec.router.envoy {
        keys.push(RouteKey(format!("Envoy routes file {}", envoy.routes_file)));
    }
    keys
}

/// Whether two key sets overlap. A whole-VirtualService key (no route named) overlaps
/// every route of that VirtualService.
fn overlaps(a: &[RouteKey], b: &[RouteKey]) -> Option<RouteKey> {
    for x in a {
        for y in b {
            let same = x == y
                || y.0.starts_with(&format!("{} route ", x.0))
                || x.0.starts_with(&format!("{} route ", y.0));
            if same {
                return Some(x.clone());
            }
        }
    }
    None
}

/// The object a spec's routes live in, borrowed: `(kind, namespace, name)`. Two specs
/// can only share a route when they name the same object, so this cheap comparison
/// (no allocation) filters the watch cache before route keys are built.
fn target<'a>(
    namespace: &'a str,
    spec: &'a RolloutSpec,
) -> Option<(&'static str, &'a str, &'a str)> {
    let split = |reference: &'a str| match reference.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => (namespace, reference),
    };
    if let Some(istio) = &spec.router.istio {
        let (ns, name) = split(&istio.virtual_service);
        return Some(("VirtualService", ns, name));
    }
    if let Some(service) = &spec.router.service {
        let (ns, name) = split(&service.service);
        return Some(("Service", ns, name));
    }
    spec.router
        .envoy
        .as_ref()
        .map(|envoy| ("Envoy", "", envoy.routes_file.as_str()))
}

/// Whether a policy may own routes at all: one the daemon refuses as invalid never
/// runs, so it must not keep a valid policy off its route. The same rules as the
/// daemon's refusal (`validate_spec` errors); run only for the few policies on the same
/// object, after the cheap filters.
fn can_own_routes(spec: &RolloutSpec) -> bool {
    !crate::policy::validate::validate_spec(spec)
        .iter()
        .any(|issue| issue.severity == crate::policy::diagnostic::Severity::Error)
}

/// The policy that already owns a route of `policy`, if any: an older policy (creation
/// time, then namespace/name) among `all` whose routes overlap. Policies being deleted
/// own nothing.
pub fn conflicting_owner(
    policy: &RolloutPolicy,
    all: &[Arc<RolloutPolicy>],
) -> Option<(PolicyRef, RouteKey)> {
    let namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
    let name = policy.metadata.name.as_deref().unwrap_or_default();
    let my_target = target(namespace, &policy.spec)?;
    let my_rank = (policy.metadata.creation_timestamp.as_ref(), namespace, name);
    let mut mine: Option<Vec<RouteKey>> = None;
    let mut best: Option<((Option<&_>, &str, &str), RouteKey)> = None;
    for other in all {
        if other.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let other_ns = other.metadata.namespace.as_deref().unwrap_or_default();
        let other_name = other.metadata.name.as_deref().unwrap_or_default();
        let rank = (
            other.metadata.creation_timestamp.as_ref(),
            other_ns,
            other_name,
        );
        if rank >= my_rank || target(other_ns, &other.spec) != Some(my_target) {
            continue;
        }
        if !can_own_routes(&other.spec) {
            continue;
        }
        let mine = mine.get_or_insert_with(|| route_keys(namespace, &policy.spec));
        let theirs = route_keys(other_ns, &other.spec);
        if let Some(route) = overlaps(mine, &theirs) {
            if best.as_ref().is_none_or(|(best_rank, _)| rank < *best_rank) {
                best = Some((rank, route));
            }
        }
    }
    best.map(|((_, namespace, name), route)| {
        (
            PolicyRef {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
            route,
        )
    })
}

/// The object a policy's routes live in, owned: the key of [`RouteIndex`].
type TargetKey = (&'static str, String, String);

fn target_key(policy: &RolloutPolicy) -> Option<TargetKey> {
    let namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
    target(namespace, &policy.spec).map(|(kind, ns, name)| (kind, ns.to_owned(), name.to_owned()))
}

fn identity(policy: &RolloutPolicy) -> (String, String) {
    (
        policy.metadata.namespace.clone().unwrap_or_default(),
        policy.metadata.name.clone().unwrap_or_default(),
    )
}

#[derive(Default)]
struct Grouped {
    by_target: HashMap<TargetKey, Vec<Arc<RolloutPolicy>>>,
    target_of: HashMap<(String, String), TargetKey>,
}

impl Grouped {
    fn remove(&mut self, id: &(String, String)) {
        let Some(key) = self.target_of.remove(id) else {
            return;
        };
        if let Some(group) = self.by_target.get_mut(&key) {
            group.retain(|p| identity(p) != *id);
            if group.is_empty() {
                self.by_target.remove(&key);
            }
        }
    }

    fn apply(&mut self, policy: Arc<RolloutPolicy>) {
        let id = identity(&policy);
        self.remove(&id);
        if let Some(key) = target_key(&policy) {
            self.target_of.insert(id, key.clone());
            self.by_target.entry(key).or_default().push(policy);
        }
    }
}

/// The watched policies grouped by the object their routes live in. Fed by the
/// policy watch ([`RouteIndex::apply`], [`RouteIndex::delete`], and at the end of a
/// (re-)list [`RouteIndex::replace_all`], which replaces the index whole).
///
/// It holds the reflector store's own `Arc`s, not copies: a copy of every policy
/// (status and its history included) was about 5 KiB per rollout, a fifth of the
/// daemon's memory at 10,000 rollouts (docs/benchmarks.md, "Memory per rollout").
#[derive(Default)]
pub struct RouteIndex {
    live: RwLock<Grouped>,
}

impl RouteIndex {
    /// `policy` was applied; pass the store's `Arc` of it, so that nothing is copied.
    pub fn apply(&self, policy: Arc<RolloutPolicy>) {
        write(&self.live).apply(policy);
    }

    pub fn delete(&self, policy: &RolloutPolicy) {
        write(&self.live).remove(&identity(policy));
    }

    /// A (re-)list is complete and `all` is what it listed: the index becomes that.
    /// (Until then reconciles keep checking against the index from before the list.)
    pub fn replace_all(&self, all: impl IntoIterator<Item = Arc<RolloutPolicy>>) {
        let mut grouped = Grouped::default();
        for policy in all {
            grouped.apply(policy);
        }
        *write(&self.live) = grouped;
    }

    /// [`conflicting_owner`] among the policies on the same object as `policy`.
    pub fn conflicting_owner(&self, policy: &RolloutPolicy) -> Option<(PolicyRef, RouteKey)> {
        let key = target_key(policy)?;
        let same_object = read(&self.live).by_target.get(&key)?.clone();
        conflicting_owner(policy, &same_object)
    }
}

// A poisoned lock only means another reconcile panicked mid-update of plain maps,
// which stay usable.
fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, created: i64, vs: &str, routes: &[&str]) -> Arc<RolloutPolicy> {
        let spec: RolloutSpec = serde_json::from_value(serde_json::json!({
            "revision": "v2",
            "router": { "istio": {
                "virtualService": vs,
                "routes": routes,
                "stable": { "host": "a" },
                "canary": { "host": "b" }
            }},
            "steps": [0, 100],
            "analysis": { "metrics": [] }
        }))
        .unwrap_or_else(|e| panic!("test spec: {e}"));
        let mut p = RolloutPolicy::new(name, spec);
        p.metadata.namespace = Some("shop".to_owned());
        p.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(created).unwrap_or_default(),
        ));
        Arc::new(p)
    }

    #[test]
    fn the_later_policy_on_a_route_is_refused_and_the_older_keeps_it() {
        let first = policy("first", 100, "checkout", &["primary"]);
        let second = policy("second", 200, "shop/checkout", &["primary", "other"]);
        let unrelated = policy("unrelated", 50, "checkout", &["other-route"]);
        let all = vec![first.clone(), second.clone(), unrelated.clone()];
        assert_eq!(conflicting_owner(&first, &all), None);
        let (owner, route) = conflicting_owner(&second, &all).unwrap_or_else(|| panic!("conflict"));
        assert_eq!(owner.name, "first");
        assert_eq!(
            route.to_string(),
            "VirtualService shop/checkout route primary"
        );
        assert_eq!(conflicting_owner(&unrelated, &all), None);
    }

    #[test]
    fn an_invalid_older_policy_owns_no_route() {
        let invalid = policy("invalid", 100, "checkout", &["primary"]);
        let mut spec = invalid.spec.clone();
        spec.steps.clear();
        let invalid = Arc::new(RolloutPolicy {
            spec,
            ..(*invalid).clone()
        });
        let valid = policy("valid", 200, "checkout", &["primary"]);
        let all = vec![invalid.clone(), valid.clone()];
        assert_eq!(conflicting_owner(&valid, &all), None);
    }

    #[test]
    fn the_index_follows_applies_deletes_and_relists() {
        let index = RouteIndex::default();
        let first = policy("first", 100, "checkout", &["primary"]);
        let second = policy("second", 200, "checkout", &["primary"]);
        let elsewhere = policy("elsewhere", 50, "payments", &["primary"]);
        for p in [&first, &second, &elsewhere] {
            index.apply(p.clone());
        }
        let owner = |p: &RolloutPolicy| index.conflicting_owner(p).map(|(o, _)| o.name);
        assert_eq!(owner(&second), Some("first".to_owned()));
        assert_eq!(owner(&first), None);
        // Moved to another VirtualService: no longer on checkout.
        let moved = policy("first", 100, "payments", &["other"]);
        index.apply(moved);
        assert_eq!(owner(&second), None);
        index.apply(first.clone());
        index.delete(&first);
        assert_eq!(owner(&second), None);
        // A re-list replaces everything at its end.
        index.replace_all([first.clone(), second.clone()]);
        assert_eq!(owner(&second), Some("first".to_owned()));
        index.replace_all([second.clone()]);
        assert_eq!(owner(&second), None, "first was not listed again");
        assert_eq!(owner(&elsewhere), None);
    }

    #[test]
    fn the_index_holds_the_stores_arcs_not_copies() {
        let index = RouteIndex::default();
        let stored = policy("first", 100, "checkout", &["primary"]);
        index.apply(stored.clone());
        assert_eq!(
            Arc::strong_count(&stored),
            2,
            "the store's Arc and the index's"
        );
        index.replace_all([stored.clone()]);
        assert_eq!(Arc::strong_count(&stored), 2);
        index.delete(&stored);
        assert_eq!(Arc::strong_count(&stored), 1);
    }

    #[test]
    fn whole_virtual_service_overlaps_its_named_routes() {
        let whole = policy("whole", 100, "checkout", &[]);
        let named = policy("named", 200, "checkout", &["primary"]);
        let all = vec![whole.clone(), named.clone()];
        assert_eq!(
            conflicting_owner(&named, &all).map(|(p, _)| p.name),
            Some("whole".to_owned())
        );
    }
}
