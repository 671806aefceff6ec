//! Looks at the previous stable release before an `undo` flips every user back onto
//! it (the engine decides: `engine::previous_release`). Only read while an `undo` is
//! pending, only in the policy's own namespace:
//!
//! - with `spec.workloads`: the stable Deployment (`get`, as every tick already does);
//! - Istio: the destination Service's EndpointSlices (`list` endpointslices, label
//!   `kubernetes.io/service-name`), and for a subset-level destination the ready pods
//!   carrying the subset's labels from the DestinationRule (`list` pods);
//! - Service router: the ready pods the previous selector selects (`get` the Service,
//!   `list` pods);
//! - Envoy (local): the previous cluster's hosts in Envoy's admin `/clusters`
//!   (`release_presence_envoy`).
//!
//! A denied read says which grant is missing: `undo` is then refused, never sent on a
//! guess.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::Client;
use serde_json::Value;

use crate::engine::previous_release::PreviousRelease;
use crate::metrics::variables::fqdn;
use crate::policy::{Destination, IstioRouter, RolloutSpec, ServiceRouter};
use crate::router::istio::destination_rule::{describe, subset_pod_labels};
use crate::router::service::ServiceTarget;

/// How long one read may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The label the EndpointSlice controller puts on a Service's slices.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Looks at the previous stable release of an (oriented) spec.
#[async_trait]
pub trait PreviousReleaseProbe: Send + Sync {
    async fn look(&self, spec: &RolloutSpec) -> PreviousRelease;
}

/// The previous release through the API server, in the policy's namespace.
pub struct KubeReleaseProbe {
    client: Client,
    namespace: String,
}

impl KubeReleaseProbe {
    pub fn new(client: Client, namespace: &str) -> Self {
        KubeReleaseProbe {
            client,
            namespace: namespace.to_owned(),
        }
    }
}

#[async_trait]
impl PreviousReleaseProbe for KubeReleaseProbe {
    async fn look(&self, spec: &RolloutSpec) -> PreviousRelease {
        if let Some(workloads) = &spec.workloads {
            return self.deployment(&workloads.stable).await;
        }
        if let Some(istio) = &spec.router.istio {
            return self.istio(istio).await;
        }
        if let Some(service) = &spec.router.service {
            return self.service(service).await;
        }
        PreviousRelease::Unchecked("the router has nothing in the cluster to look at".into())
    }
}

/// What a read became: the objects, or the observation to hand the engine.
type Read<T> = Result<T, PreviousRelease>;

impl KubeReleaseProbe {
    async fn deployment(&self, name: &str) -> PreviousRelease {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let what = format!("Deployment {}/{name}", self.namespace);
        let deployment = match call(api.get(name)).await {
            Ok(d) => d,
            Err(Failure::Api(e)) if status_code(&e) == Some(404) => {
                return PreviousRelease::Gone(format!("{what} does not exist (deleted)"));
            }
            Err(failure) => return failure.seen("get", "deployments", "apps", &self.namespace),
        };
        let available = deployment
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        let replicas = deployment.spec.replicas.unwrap_or(1);
        if available > 0 {
            PreviousRelease::Serving(format!("{what} has {available} available replicas"))
        } else {
            PreviousRelease::NotServing(format!(
                "{what} has no available replica (spec.replicas {replicas})"
            ))
        }
    }

    async fn istio(&self, istio: &IstioRouter) -> PreviousRelease {
        let vs_namespace = istio
            .virtual_service
            .split_once('/')
            .map_or(self.namespace.as_str(), |(ns, _)| ns);
        let destination = &istio.stable;
        let host = fqdn(&destination.host, vs_namespace);
        let Some((name, namespace)) = service_of_host(&host) else {
            return PreviousRelease::Unchecked(format!(
                "host {host} is not a Service of the cluster"
            ));
        };
        if namespace != self.namespace {
            return PreviousRelease::Unchecked(format!(
                "Service {namespace}/{name} is outside the policy's namespace; not read"
            ));
        }
        let what = format!("Service {namespace}/{name}");
        let endpoints = match self.ready_endpoints(name).await {
            Ok(endpoints) => endpoints,
            Err(seen) => return seen,
        };
        let Some(endpoints) = endpoints else {
            return PreviousRelease::Gone(format!(
                "{what} has no EndpointSlice: the Service is gone or selects no pod"
            ));
        };
        let Some(subset) = &destination.subset else {
            return match endpoints.ready.len() {
                0 => PreviousRelease::NotServing(format!(
                    "{what} has no ready endpoint ({} not ready)",
                    endpoints.not_ready
                )),
                n => PreviousRelease::Serving(format!("{what} has {n} ready endpoints")),
            };
        };
        self.subset(istio, destination, &host, subset, &what, &endpoints)
            .await
    }

    /// The ready endpoints of the subset: ready endpoints of the Service whose pod is
    /// ready and carries the subset's labels.
    async fn subset(
        &self,
        istio: &IstioRouter,
        destination: &Destination,
        host: &str,
        subset: &str,
        what: &str,
        endpoints: &Endpoints,
    ) -> PreviousRelease {
        let labels = match self.subset_labels(istio, host, subset).await {
            Ok(Some(labels)) => labels,
            Ok(None) => {
                return PreviousRelease::Gone(format!(
                    "no DestinationRule subset `{subset}` of {} in namespace {}",
                    destination.host, self.namespace
                ))
            }
            Err(seen) => return seen,
        };
        let pods = match self.ready_pods(&labels).await {
            Ok(pods) => pods,
            Err(seen) => return seen,
        };
        let serving = endpoints.ready.intersection(&pods).count();
        let selects = describe(&labels);
        if serving == 0 {
            PreviousRelease::NotServing(format!(
                "no ready endpoint of {what} is a ready pod with subset `{subset}`'s labels \
                 {selects} ({} ready endpoints, {} such ready pods)",
                endpoints.ready.len(),
                pods.len()
            ))
        } else {
            PreviousRelease::Serving(format!(
                "{serving} ready endpoints of {what} in subset `{subset}` ({selects})"
            ))
        }
    }

    async fn service(&self, spec: &ServiceRouter) -> PreviousRelease {
        let target = ServiceTarget::from_policy(&self.namespace, spec);
        if target.namespace != self.namespace {
            return PreviousRelease::Unchecked(format!(
                "Service {}/{} is outside the policy's namespace; its pods are not read",
                target.namespace, target.name
            ));
        }
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
        let what = format!("Service {}/{}", target.namespace, target.name);
        let service = match call(api.get(&target.name)).await {
            Ok(service) => service,
            Err(Failure::Api(e)) if status_code(&e) == Some(404) => {
                return PreviousRelease::Gone(format!("{what} does not exist"));
            }
            Err(failure) => return failure.seen("get", "services", "", &self.namespace),
        };
        let mut selector: BTreeMap<String, String> = service
            .spec
            .and_then(|s| s.selector)
            .unwrap_or_default()
            .into_iter()
            .collect();
        selector.insert(target.selector_key.clone(), target.stable_value.clone());
        match self.ready_pods(&selector).await {
            Ok(pods) if pods.is_empty() => PreviousRelease::NotServing(format!(
                "no ready pod matches the previous selector {} of {what}",
                describe(&selector)
            )),
            Ok(pods) => PreviousRelease::Serving(format!(
                "{} ready pods match the previous selector {} of {what}",
                pods.len(),
                describe(&selector)
            )),
            Err(seen) => seen,
        }
    }

    /// The Service's endpoints, or `None` when it has no EndpointSlice at all.
    async fn ready_endpoints(&self, service: &str) -> Read<Option<Endpoints>> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={service}"));
        let slices = call(api.list(&params)).await.map_err(|failure| {
            failure.seen(
                "list",
                "endpointslices",
                "discovery.k8s.io",
                &self.namespace,
            )
        })?;
        if slices.items.is_empty() {
            return Ok(None);
        }
        Ok(Some(endpoints(&slices.items)))
    }

    /// Names of the ready pods `labels` select.
    async fn ready_pods(&self, labels: &BTreeMap<String, String>) -> Read<BTreeSet<String>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let params = ListParams::default().labels(&selector.join(","));
        let pods = call(api.list(&params))
            .await
            .map_err(|failure| failure.seen("list", "pods", "", &self.namespace))?;
        Ok(pods
            .items
            .iter()
            .filter(|pod| pod_ready(pod))
            .filter_map(|pod| pod.metadata.name.clone())
            .collect())
    }

    async fn subset_labels(
        &self,
        istio: &IstioRouter,
        host: &str,
        subset: &str,
    ) -> Read<Option<BTreeMap<String, String>>> {
        let gvk = GroupVersionKind::gvk(
            "networking.istio.io",
            istio.api_version.as_str(),
            "DestinationRule",
        );
        let resource = ApiResource::from_gvk_with_plural(&gvk, "destinationrules");
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource);
        let list = call(api.list(&ListParams::default()))
            .await
            .map_err(|failure| {
                failure.seen(
                    "list",
                    "destinationrules",
                    "networking.istio.io",
                    &self.namespace,
                )
            })?;
        let rules: Vec<Value> = list
            .items
            .iter()
            .filter_map(|item| serde_json::to_value(item).ok())
            .collect();
        Ok(subset_pod_labels(&rules, &self.namespace, host, subset))
    }
}

/// A Service's endpoints: the pods behind the ready ones, and how many are not ready.
#[derive(Debug, Default, PartialEq)]
struct Endpoints {
    /// Pod names (`targetRef`) of the ready endpoints; an endpoint without one counts
    /// under its first address.
    ready: BTreeSet<String>,
    not_ready: usize,
}

fn endpoints(slices: &[EndpointSlice]) -> Endpoints {
    let mut out = Endpoints::default();
    for endpoint in slices.iter().flat_map(|s| s.endpoints.iter().flatten()) {
        // `ready` unset means ready (the API's own rule for consumers).
        let ready = endpoint
            .conditions
            .as_ref()
            .and_then(|c| c.ready)
            .unwrap_or(true);
        if !ready {
            out.not_ready += 1;
            continue;
        }
        let pod = endpoint
            .target_ref
            .as_ref()
            .filter(|r| r.kind.as_deref() == Some("Pod"))
            .and_then(|r| r.name.clone());
        if let Some(name) = pod.or_else(|| endpoint.addresses.first().cloned()) {
            out.ready.insert(name);
        }
    }
    out
}

/// Ready (the kubelet's `Ready` condition) and not being deleted.
fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
}

/// `(name, namespace)` of a cluster Service host (`name.namespace[.svc[.…]]`).
fn service_of_host(host: &str) -> Option<(&str, &str)> {
    let mut parts = host.split('.');
    let name = parts.next().filter(|p| !p.is_empty())?;
    let namespace = parts.next().filter(|p| !p.is_empty())?;
    match parts.next() {
        None | Some("svc") => Some((name, namespace)),
        Some(_) => None,
    }
}

/// Why a read gave nothing.
enum Failure {
    Api(kube::Error),
    TimedOut,
}

impl Failure {
    /// What the engine is told: a denied read names the grant to add.
    fn seen(self, verb: &str, resource: &str, group: &str, namespace: &str) -> PreviousRelease {
        let group = if group.is_empty() { "core" } else { group };
        PreviousRelease::Unknown(match self {
            Failure::Api(e) if status_code(&e) == Some(403) => format!(
                "shiftgate may not `{verb}` {resource} ({group}) in namespace {namespace}: grant \
                 it in shiftgate's ClusterRole (deploy/clusterrole.yaml; docs/kubernetes.md, \
                 Permissions), then run `undo` again"
            ),
            Failure::Api(e) if status_code(&e) == Some(404) => format!(
                "the cluster does not serve {resource} ({group}) to `{verb}` in namespace \
                 {namespace}: {e}"
            ),
            Failure::Api(e) => format!(
                "cannot `{verb}` {resource} ({group}) in namespace {namespace}: {e}; run `undo` \
                 again"
            ),
            Failure::TimedOut => format!(
                "`{verb}` of {resource} ({group}) in namespace {namespace} did not answer within \
                 {CALL_TIMEOUT:?}; run `undo` again"
            ),
        })
    }
}

async fn call<T>(request: impl Future<Output = Result<T, kube::Error>>) -> Result<T, Failure> {
    match tokio::time::timeout(CALL_TIMEOUT, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Failure::Api(e)),
        Err(_) => Err(Failure::TimedOut),
    }
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_cluster_host_names_its_service() {
        assert_eq!(
            service_of_host("web-blue.shop.svc.cluster.local"),
            Some(("web-blue", "shop"))
        );
        assert_eq!(service_of_host("web-blue.shop"), Some(("web-blue", "shop")));
        assert_eq!(service_of_host("api.example.com"), None);
        assert_eq!(service_of_host("web"), None);
    }

    #[test]
    fn only_ready_endpoints_count_and_unset_ready_means_ready() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-blue-x"}, "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true},
                 "targetRef": {"kind": "Pod", "name": "web-blue-1"}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false},
                 "targetRef": {"kind": "Pod", "name": "web-blue-2"}},
                {"addresses": ["10.0.0.3"]}
            ]
        }))
        .unwrap();
        let seen = endpoints(&[slice]);
        assert_eq!(
            seen.ready,
            BTreeSet::from(["web-blue-1".to_owned(), "10.0.0.3".to_owned()])
        );
        assert_eq!(seen.not_ready, 1);
    }

    #[test]
    fn a_pod_is_ready_by_its_ready_condition_unless_it_is_being_deleted() {
        let pod = |ready: &str, deleting: bool| -> Pod {
            let mut doc = serde_json::json!({
                "metadata": {"name": "p"},
                "status": {"conditions": [{"type": "Ready", "status": ready}]}
            });
            if deleting {
                doc["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
            }
            serde_json::from_value(doc).unwrap()
        };
        assert!(pod_ready(&pod("True", false)));
        assert!(!pod_ready(&pod("False", false)));
        assert!(!pod_ready(&pod("True", true)));
    }
}
