//! The workload labels behind a subset-level Istio policy's subsets, read from the
//! DestinationRule (networking.istio.io), and the Prometheus labels they imply.
//!
//! Istio's metrics do not name subsets: the destination sidecar reports the pod's
//! `version` label as `destination_version`. A subset called `blue` whose pods carry
//! `version: blue-web-echo` is therefore selected by
//! `destination_version="blue-web-echo"`, never by the subset's name. A subset that
//! selects pods on another label (`color: blue`) has no label Istio reports per
//! release: the policy names one in `spec.analysis.targetLabels` (e.g.
//! `destination_workload`); without it the queries keep the subset's name and the
//! preflight warns when they find no series.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::Client;
use serde_json::Value;

use crate::analysis::sample::AnalysisInput;
use crate::metrics::variables::fqdn;
use crate::metrics::{MetricSource, PolicyRef};
use crate::policy::{IstioRouter as IstioRouterSpec, RolloutSpec, TargetLabels, Timestamp};
use crate::router::watch_cache::ObjectCache;

/// The pod label Istio reports as `destination_version`.
pub const VERSION_LABEL: &str = "version";

/// How long listing DestinationRules may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the DestinationRules say about one policy's two subsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubsetSelection {
    /// Both subsets' pods carry a `version` label: select by `destination_version`.
    Derived(TargetLabels),
    /// A subset was not found, or selects its pods without a `version` label: the
    /// message says which and what to do.
    Underived(String),
}

/// The pod labels of `subset` in the DestinationRule (among `rules`, the items of a
/// list in `namespace`) whose host is `host` (fully qualified).
pub fn subset_pod_labels<'a>(
    rules: impl IntoIterator<Item = &'a Value>,
    namespace: &str,
    host: &str,
    subset: &str,
) -> Option<BTreeMap<String, String>> {
    rules
        .into_iter()
        .filter(|rule| host_of(rule, namespace).is_some_and(|h| h == host))
        .filter_map(|rule| rule["spec"]["subsets"].as_array())
        .flatten()
        .find(|s| s["name"].as_str() == Some(subset))
        .map(|s| {
            s["labels"]
                .as_object()
                .map(|labels| {
                    labels
                        .iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                        .collect()
                })
                .unwrap_or_default()
        })
}

/// The selection the subsets' pod labels imply (`None`: the subset was not found).
pub fn selection(
    stable: (&str, Option<&BTreeMap<String, String>>),
    canary: (&str, Option<&BTreeMap<String, String>>),
) -> SubsetSelection {
    let mut derived = TargetLabels::default();
    for ((subset, labels), out) in [(stable, &mut derived.stable), (canary, &mut derived.canary)] {
        let Some(labels) = labels else {
            return SubsetSelection::Underived(format!(
                "no DestinationRule subset `{subset}` found for the host; the queries select destination_version=\"{subset}\""
            ));
        };
        let Some(version) = labels.get(VERSION_LABEL) else {
            let selects: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            return SubsetSelection::Underived(format!(
                "DestinationRule subset `{subset}` selects pods by {} without a `version` label, which Istio reports as destination_version=\"unknown\"; set spec.analysis.targetLabels (e.g. destination_workload per release)",
                if selects.is_empty() { "nothing".to_owned() } else { selects.join(",") }
            ));
        };
        out.insert("destination_version".to_owned(), version.clone());
    }
    if derived.stable == derived.canary {
        return SubsetSelection::Underived(format!(
            "both subsets select pods with version={:?}: their metrics cannot be told apart; set spec.analysis.targetLabels",
            derived.stable.get("destination_version")
        ));
    }
    SubsetSelection::Derived(derived)
}

/// What [`subset_pod_labels`] reads of a DestinationRule (its namespace, host and
/// subsets' names and labels): all the watch cache keeps of each.
fn subsets_only(rule: Value) -> Value {
    let subsets: Vec<Value> = rule["spec"]["subsets"]
        .as_array()
        .map(|subsets| {
            subsets
                .iter()
                .map(|s| serde_json::json!({ "name": s["name"], "labels": s["labels"] }))
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "metadata": { "namespace": rule["metadata"]["namespace"] },
        "spec": { "host": rule["spec"]["host"], "subsets": subsets },
    })
}

/// The host a DestinationRule applies to, fully qualified: what the watch cache groups
/// rules by, so an evaluation looks its host up instead of scanning every rule of the
/// namespace (one per service: thousands in a large namespace).
fn rule_host(rule: &Value) -> Option<String> {
    let namespace = rule["metadata"]["namespace"].as_str()?;
    host_of(rule, namespace)
}

/// The rule's host, fully qualified; `namespace` when the rule does not say its own.
fn host_of(rule: &Value, namespace: &str) -> Option<String> {
    let namespace = rule["metadata"]["namespace"].as_str().unwrap_or(namespace);
    rule["spec"]["host"]
        .as_str()
        .map(|host| fqdn(host, namespace))
}

/// Whether `spec` is subset-level Istio with no `targetLabels`: its labels come from the
/// DestinationRule.
pub fn needs_subset_labels(spec: &RolloutSpec) -> Option<&IstioRouterSpec> {
    spec.router.istio.as_deref().filter(|istio| {
        spec.analysis.target_labels.is_none()
            && istio.stable.subset.is_some()
            && istio.canary.subset.is_some()
    })
}

/// Lists the DestinationRules of the hosts' namespaces and works out the selection.
pub async fn read_selection(
    client: &Client,
    cache: Option<&ObjectCache>,
    policy: &PolicyRef,
    istio: &IstioRouterSpec,
) -> Result<SubsetSelection, String> {
    let vs_namespace = istio
        .virtual_service
        .split_once('/')
        .map_or(policy.namespace.as_str(), |(ns, _)| ns);
    let gvk = GroupVersionKind::gvk(
        "networking.istio.io",
        istio.api_version.as_str(),
        "DestinationRule",
    );
    let resource = ApiResource::from_gvk_with_plural(&gvk, "destinationrules");
    let mut found: Vec<Option<BTreeMap<String, String>>> = Vec::new();
    for destination in [&istio.stable, &istio.canary] {
        let subset = destination.subset.as_deref().unwrap_or_default();
        let host = fqdn(&destination.host, vs_namespace);
        // `name.namespace.svc…`: the rule usually lives beside the Service. Only the
        // policy's own namespace is read: a policy never makes shiftgate read another
        // namespace's objects.
        let namespace = host.split('.').nth(1).unwrap_or(vs_namespace).to_owned();
        if namespace != policy.namespace {
            return Ok(SubsetSelection::Underived(format!(
                "the DestinationRule of {host} would be in namespace {namespace}, not the policy's ({}); it is not read: set spec.analysis.targetLabels",
                policy.namespace
            )));
        }
        let watched = match cache {
            Some(cache) if cache.wait_listed(&resource, &namespace, CALL_TIMEOUT).await => {
                cache.indexed(&resource, &namespace, rule_host)
            }
            _ => None,
        };
        let found_here = match watched {
            Some(by_host) => {
                // Our own projection's text: it parses (a rule that did not would be
                // left out, as an index leaves out a rule without a host).
                let rules: Vec<Value> = by_host
                    .get(&host)
                    .into_iter()
                    .flatten()
                    .filter_map(|text| text.parse().ok())
                    .collect();
                subset_pod_labels(&rules, &namespace, &host, subset)
            }
            None => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &namespace, &resource);
                let list = tokio::time::timeout(CALL_TIMEOUT, api.list(&ListParams::default()))
                    .await
                    .map_err(|_| format!("listing destinationrules in {namespace} timed out"))?
                    .map_err(|e| format!("cannot list destinationrules in {namespace}: {e}"))?;
                let rules: Vec<Value> = list
                    .items
                    .iter()
                    .filter_map(|item| serde_json::to_value(item).ok())
                    .collect();
                subset_pod_labels(&rules, &namespace, &host, subset)
            }
        };
        found.push(found_here);
    }
    let subset = |d: &crate::policy::Destination| d.subset.clone().unwrap_or_default();
    let (stable, canary) = (subset(&istio.stable), subset(&istio.canary));
    Ok(selection(
        (&stable, found.first().and_then(Option::as_ref)),
        (&canary, found.get(1).and_then(Option::as_ref)),
    ))
}

/// A metric source that gives a subset-level Istio policy (without `targetLabels`) the
/// labels its DestinationRule implies before querying. What it selects is logged when it
/// changes; a rule it cannot read leaves the router's default (the subset's name).
pub struct DestinationRuleLabels {
    inner: Arc<dyn MetricSource>,
    client: Client,
    /// The DestinationRules, watched per namespace in use (no LIST per evaluation).
    cache: Arc<ObjectCache>,
    last: Mutex<HashMap<PolicyRef, String>>,
}

impl DestinationRuleLabels {
    pub fn new(inner: Arc<dyn MetricSource>, client: Client) -> Self {
        DestinationRuleLabels {
            inner,
            cache: Arc::new(ObjectCache::new(client.clone()).keeping(subsets_only)),
            client,
            last: Mutex::new(HashMap::new()),
        }
    }

    async fn resolve(&self, policy: &PolicyRef, spec: &RolloutSpec) -> RolloutSpec {
        let (resolved, said) =
            subset_labels_through(&self.client, Some(&self.cache), policy, spec).await;
        let Some(said) = said else {
            return resolved;
        };
        let changed = {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            last.insert(policy.clone(), said.clone()).as_ref() != Some(&said)
        };
        if changed && resolved.analysis.target_labels.is_some() {
            tracing::info!(namespace = %policy.namespace, name = %policy.name, "{said}");
        } else if changed {
            // The queries keep the subset names, which match only pods labelled so.
            tracing::warn!(namespace = %policy.namespace, name = %policy.name, "{said}");
        }
        resolved
    }
}

/// `spec` with the labels its DestinationRule implies when it needs them and they can
/// be derived, and what the queries select (none when the spec needs no DestinationRule).
pub async fn with_subset_labels(
    client: &Client,
    policy: &PolicyRef,
    spec: &RolloutSpec,
) -> (RolloutSpec, Option<String>) {
    subset_labels_through(client, None, policy, spec).await
}

/// [`with_subset_labels`], reading the rules from `cache` once it has listed them.
async fn subset_labels_through(
    client: &Client,
    cache: Option<&ObjectCache>,
    policy: &PolicyRef,
    spec: &RolloutSpec,
) -> (RolloutSpec, Option<String>) {
    let Some(istio) = needs_subset_labels(spec) else {
        return (spec.clone(), None);
    };
    match read_selection(client, cache, policy, istio).await {
        Ok(SubsetSelection::Derived(labels)) => {
            let said = format!(
                "queries select stable {}, canary {} (the DestinationRule subsets' version labels)",
                describe(&labels.stable),
                describe(&labels.canary)
            );
            let mut resolved = spec.clone();
            resolved.analysis.target_labels = Some(Box::new(labels));
            (resolved, Some(said))
        }
        Ok(SubsetSelection::Underived(why)) | Err(why) => (spec.clone(), Some(why)),
    }
}

/// `{a="x",b="y"}`, as PromQL writes matchers.
pub fn describe(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

#[async_trait]
impl MetricSource for DestinationRuleLabels {
    fn admit(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
    ) -> Result<(), crate::metrics::providers::AccessError> {
        self.inner.admit(policy, spec)
    }

    async fn observe(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
        at: Timestamp,
        counts_since: Option<Timestamp>,
    ) -> AnalysisInput {
        let resolved = self.resolve(policy, spec).await;
        self.inner
            .observe(policy, &resolved, at, counts_since)
            .await
    }

    async fn scrape_phase(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
        at: Timestamp,
    ) -> Option<crate::metrics::freshness::ScrapePhase> {
        self.inner
            .scrape_phase(policy, &self.resolve(policy, spec).await, at)
            .await
    }

    fn forget(&self, policy: &PolicyRef) {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(policy);
        self.inner.forget(policy);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Seed 003's DestinationRule: subsets named v1/v2, pods labelled by release name.
    fn seed_003() -> Vec<Value> {
        vec![json!({
            "metadata": {"name": "web-echo", "namespace": "echo"},
            "spec": {"host": "web-echo", "subsets": [
                {"name": "v1", "labels": {"version": "blue-web-echo"}},
                {"name": "v2", "labels": {"version": "green-web-echo"}}
            ]}
        })]
    }

    #[test]
    fn version_labels_of_the_subsets_become_destination_version() {
        let rules = seed_003();
        let host = "web-echo.echo.svc.cluster.local";
        let v1 = subset_pod_labels(&rules, "echo", host, "v1");
        let v2 = subset_pod_labels(&rules, "echo", host, "v2");
        let SubsetSelection::Derived(labels) = selection(("v1", v1.as_ref()), ("v2", v2.as_ref()))
        else {
            panic!("not derived");
        };
        assert_eq!(labels.stable["destination_version"], "blue-web-echo");
        assert_eq!(labels.canary["destination_version"], "green-web-echo");
        // Another host's rule is never read.
        assert_eq!(
            subset_pod_labels(&rules, "echo", "other.echo.svc.cluster.local", "v1"),
            None
        );
    }

    #[test]
    fn a_subset_without_a_version_label_asks_for_target_labels() {
        let colour = BTreeMap::from([("color".to_owned(), "blue".to_owned())]);
        let green = BTreeMap::from([("color".to_owned(), "green".to_owned())]);
        let SubsetSelection::Underived(why) =
            selection(("blue", Some(&colour)), ("green", Some(&green)))
        else {
            panic!("derived without a version label");
        };
        assert!(
            why.contains("color=blue") && why.contains("targetLabels"),
            "{why}"
        );
        let SubsetSelection::Underived(why) = selection(("blue", None), ("green", Some(&green)))
        else {
            panic!("derived without a subset");
        };
        assert!(why.contains("no DestinationRule subset `blue`"), "{why}");
    }

    #[test]
    fn the_cache_keeps_what_the_subset_labels_are_read_from() {
        let full = json!({
            "metadata": {"name": "web-echo", "namespace": "echo", "uid": "1", "labels": {"team": "a"}},
            "spec": {"host": "web-echo",
                "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 100}}},
                "subsets": [
                    {"name": "v1", "labels": {"version": "blue"}, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
                    {"name": "v2", "labels": {"version": "green", "track": "canary"}}
                ]}
        });
        let kept = subsets_only(full.clone());
        assert!(kept["spec"].get("trafficPolicy").is_none());
        for subset in ["v1", "v2", "v3"] {
            assert_eq!(
                subset_pod_labels([&kept], "echo", "web-echo.echo.svc.cluster.local", subset),
                subset_pod_labels([&full], "echo", "web-echo.echo.svc.cluster.local", subset),
            );
        }
        assert_eq!(rule_host(&kept), rule_host(&full));
    }
}
