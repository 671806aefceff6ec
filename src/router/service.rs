//! The Service router: plain Kubernetes blue/green, no mesh. One key of a core/v1
//! Service's selector points either at the stable release (`stableValue`, canary weight 0)
//! or at the canary (`canaryValue`, canary weight 100); there is nothing in between and
//! no test route.
//!
//! Writes are a JSON Patch that tests the resourceVersion and the current selector value
//! before replacing that one value, so the rest of the Service is never written.

use std::time::Duration;

use async_trait::async_trait;
use json_patch::jsonptr::PointerBuf;
use json_patch::{Patch as JsonPatch, PatchOperation, ReplaceOperation, TestOperation};
use kube::api::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::Value;

use super::istio::client::{RoutedObject, DEFAULT_CALL_TIMEOUT};
use super::{LiveRoute, ManagedRoute, RouterError, TrafficRouter, Version};
use crate::policy::ServiceRouter as ServiceRouterSpec;

/// Which Service, which selector key, and its two values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceTarget {
    pub namespace: String,
    pub name: String,
    pub selector_key: String,
    pub stable_value: String,
    pub canary_value: String,
}

impl ServiceTarget {
    /// `service` is `[namespace/]name`; the namespace defaults to the policy's.
    pub fn from_policy(policy_namespace: &str, spec: &ServiceRouterSpec) -> Self {
        let (namespace, name) = match spec.service.split_once('/') {
            Some((namespace, name)) => (namespace.to_owned(), name.to_owned()),
            None => (policy_namespace.to_owned(), spec.service.clone()),
        };
        ServiceTarget {
            namespace,
            name,
            selector_key: spec.selector_key.clone(),
            stable_value: spec.stable_value.clone(),
            canary_value: spec.canary_value.clone(),
        }
    }

    fn what(&self) -> String {
        format!("service {}/{}", self.namespace, self.name)
    }

    fn selector_path(&self) -> PointerBuf {
        PointerBuf::from_tokens(["spec", "selector", self.selector_key.as_str()])
    }
}

/// The canary weight a Service serves: 0 on the stable value, 100 on the canary value.
pub fn read_service(service: &Value, target: &ServiceTarget) -> Result<ManagedRoute, RouterError> {
    let current = service.pointer(target.selector_path().as_str());
    let canary_weight = match current.and_then(Value::as_str) {
        Some(value) if value == target.stable_value => 0,
        Some(value) if value == target.canary_value => 100,
        _ => {
            let found = current.map_or_else(|| "absent".to_owned(), Value::to_string);
            return Err(RouterError::Invalid(format!(
                "{}: spec.selector.{} is {found}, neither the stable value \"{}\" nor the \
                 canary value \"{}\"; set it to one of them (kubectl edit) or fix \
                 spec.router.service",
                target.what(),
                target.selector_key,
                target.stable_value,
                target.canary_value
            )));
        }
    };
    Ok(ManagedRoute {
        canary_weight,
        test_route: false,
    })
}

/// The patch that switches the selector to `desired`; empty when it is already there.
pub fn plan_service(
    service: &Value,
    target: &ServiceTarget,
    desired: ManagedRoute,
) -> Result<JsonPatch, RouterError> {
    if desired.test_route {
        return Err(RouterError::Invalid(format!(
            "{}: the service router cannot send test traffic to the canary (a selector points \
             at one release); remove spec.testRoute or use the istio router",
            target.what()
        )));
    }
    let wanted = match desired.canary_weight {
        0 => &target.stable_value,
        100 => &target.canary_value,
        weight => {
            return Err(RouterError::Invalid(format!(
                "{}: the service router switches all traffic at once, so canary weight {weight} \
                 is impossible; use steps [0, 100] or the istio router",
                target.what()
            )))
        }
    };
    let path = target.selector_path();
    let current = service.pointer(path.as_str()).cloned();
    // Refuses a selector that is neither value before writing anything.
    read_service(service, target)?;
    if current.as_ref().and_then(Value::as_str) == Some(wanted.as_str()) {
        return Ok(JsonPatch(Vec::new()));
    }
    let mut operations = Vec::with_capacity(3);
    if let Some(version) = service.pointer("/metadata/resourceVersion") {
        operations.push(PatchOperation::Test(TestOperation {
            path: PointerBuf::from_tokens(["metadata", "resourceVersion"]),
            value: version.clone(),
        }));
    }
    operations.push(PatchOperation::Test(TestOperation {
        path: path.clone(),
        value: current.unwrap_or(Value::Null),
    }));
    operations.push(PatchOperation::Replace(ReplaceOperation {
        path,
        value: Value::String(wanted.clone()),
    }));
    Ok(JsonPatch(operations))
}

/// Drives one Service's selector.
pub struct ServiceRouter {
    object: RoutedObject,
    target: ServiceTarget,
    call_timeout: Duration,
}

impl ServiceRouter {
    pub fn new(client: Client, target: ServiceTarget) -> Self {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("", "v1", "Service"),
            "services",
        );
        ServiceRouter {
            object: RoutedObject::new(client, resource, &target.namespace, &target.name),
            target,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }

    /// Reads the Service from `cache` (the daemon's namespace watches).
    pub fn with_cache(mut self, cache: std::sync::Arc<super::watch_cache::ObjectCache>) -> Self {
        self.object = self.object.with_cache(cache);
        self
    }

    /// Bounds every API call.
    pub fn with_call_timeout(mut self, call_timeout: Duration) -> Self {
        self.call_timeout = call_timeout;
        self
    }
}

#[async_trait]
impl TrafficRouter for ServiceRouter {
    async fn read(&self) -> Result<LiveRoute, RouterError> {
        let read = self
            .object
            .read(self.call_timeout, &self.target.what())
            .await?;
        self.live(read)
    }

    async fn read_fresh(&self) -> Result<LiveRoute, RouterError> {
        let read = self
            .object
            .read_from_server(self.call_timeout, &self.target.what())
            .await?;
        self.live(read)
    }

    async fn apply(&self, expect: &Version, desired: ManagedRoute) -> Result<Version, RouterError> {
        let what = self.target.what();
        let (value, version) = self
            .object
            .read_for_write(expect, self.call_timeout, &what)
            .await?;
        let patch = plan_service(&value, &self.target, desired)?;
        if patch.0.is_empty() {
            return Ok(version);
        }
        self.object.patch(&patch, self.call_timeout, &what).await
    }
}

impl ServiceRouter {
    /// The managed route in a read Service.
    fn live(
        &self,
        (value, version): (serde_json::Value, Version),
    ) -> Result<LiveRoute, RouterError> {
        let route = read_service(&value, &self.target)?;
        Ok(LiveRoute { route, version })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> ServiceTarget {
        ServiceTarget {
            namespace: "shop".to_owned(),
            name: "checkout".to_owned(),
            selector_key: "app.kubernetes.io/version".to_owned(),
            stable_value: "blue".to_owned(),
            canary_value: "green".to_owned(),
        }
    }

    fn service(value: &str) -> Value {
        json!({
            "metadata": {"name": "checkout", "namespace": "shop", "resourceVersion": "7"},
            "spec": {"selector": {"app": "checkout", "app.kubernetes.io/version": value},
                     "ports": [{"port": 80}]}
        })
    }

    fn route(canary_weight: u8) -> ManagedRoute {
        ManagedRoute {
            canary_weight,
            test_route: false,
        }
    }

    #[test]
    fn selector_value_reads_as_weight_0_or_100() {
        assert_eq!(read_service(&service("blue"), &target()).unwrap(), route(0));
        assert_eq!(
            read_service(&service("green"), &target()).unwrap(),
            route(100)
        );
        let error = read_service(&service("red"), &target()).unwrap_err();
        assert!(error
            .to_string()
            .contains("\"red\", neither the stable value"));
    }

    #[test]
    fn switch_tests_version_and_current_value_then_replaces_one_key() {
        let patch = plan_service(&service("blue"), &target(), route(100)).unwrap();
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
                {"op": "test", "path": "/spec/selector/app.kubernetes.io~1version", "value": "blue"},
                {"op": "replace", "path": "/spec/selector/app.kubernetes.io~1version", "value": "green"}
            ])
        );
        let mut switched = service("blue");
        json_patch::patch(&mut switched, &patch).unwrap();
        assert_eq!(switched, service("green"));
        assert!(plan_service(&switched, &target(), route(100))
            .unwrap()
            .0
            .is_empty());
    }

    #[test]
    fn weights_between_and_test_routes_are_refused() {
        let error = plan_service(&service("blue"), &target(), route(30)).unwrap_err();
        assert!(matches!(error, RouterError::Invalid(_)));
        assert!(error.to_string().contains("canary weight 30 is impossible"));
        let with_test_route = ManagedRoute {
            canary_weight: 0,
            test_route: true,
        };
        let error = plan_service(&service("blue"), &target(), with_test_route).unwrap_err();
        assert!(error.to_string().contains("cannot send test traffic"));
    }
}
