//! The Istio router: moves the canary weight of named http routes of a VirtualService,
//! and nothing else.
//!
//! Users of other tools complain that the tool takes over their VirtualService or deletes
//! destinations it does not know. shiftgate never writes the object whole: it reads it as
//! plain JSON, finds the managed routes and their stable/canary destinations
//! ([`locate`]), and computes an RFC 6902 JSON Patch ([`plan`]) that tests the
//! resourceVersion and every value it replaces, then replaces only those weights and adds
//! or removes its own test route ([`test_route`]). [`client`] does the Kubernetes I/O.

pub mod client;
pub mod destination_rule;
pub mod error;
pub mod locate;
pub mod plan;
pub mod test_route;

pub use client::IstioRouter;
pub use error::IstioError;
pub use locate::{drift, live_route, locate, LocatedDestination, LocatedRoute, Location};
pub use plan::plan;

use crate::policy::{Destination, IstioApiVersion, IstioRouter as IstioRouterSpec, TestRoute};

/// Everything the pure planner needs to know about one policy's Istio route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IstioTarget {
    /// Name of the RolloutPolicy; names the test route `shiftgate-test-<policy>`.
    pub policy_name: String,
    /// Namespace of the policy; short hosts in the policy are read relative to it.
    pub policy_namespace: String,
    /// Namespace of the VirtualService; short hosts in the VirtualService are read relative
    /// to it, as Istio does.
    pub namespace: String,
    /// Name of the VirtualService.
    pub name: String,
    /// Names of the managed http routes; empty means the only http route.
    pub routes: Vec<String>,
    pub stable: Destination,
    pub canary: Destination,
    pub api_version: IstioApiVersion,
    /// The test route the policy asks for, if any.
    pub test_route: Option<TestRoute>,
}

impl IstioTarget {
    /// Builds the target of a policy. `virtualService` is `[namespace/]name`; the namespace
    /// defaults to the policy's.
    pub fn from_policy(
        policy_name: &str,
        policy_namespace: &str,
        spec: &IstioRouterSpec,
        test_route: Option<&TestRoute>,
    ) -> Self {
        let (namespace, name) = match spec.virtual_service.split_once('/') {
            Some((namespace, name)) => (namespace.to_owned(), name.to_owned()),
            None => (policy_namespace.to_owned(), spec.virtual_service.clone()),
        };
        IstioTarget {
            policy_name: policy_name.to_owned(),
            policy_namespace: policy_namespace.to_owned(),
            namespace,
            name,
            routes: spec.routes.clone(),
            stable: spec.stable.clone(),
            canary: spec.canary.clone(),
            api_version: spec.api_version,
            test_route: test_route.cloned(),
        }
    }

    /// The name of shiftgate's own test route in the VirtualService.
    pub fn test_route_name(&self) -> String {
        format!("shiftgate-test-{}", self.policy_name)
    }

    /// `namespace/name` of the VirtualService, for messages.
    pub fn object_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}
