//! The variables a query template can use, derived from a policy and its router.
//!
//! `canary.*` and `stable.*` name the two releases; `target.*` is whichever side is being
//! queried, so one template serves both sides of a comparison.

use std::collections::BTreeMap;

use crate::metrics::PolicyRef;
use crate::policy::RolloutSpec;

/// The release a query is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Canary,
    Stable,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Canary => "canary",
            Side::Stable => "stable",
        }
    }
}

/// What identifies one release in metrics. A field is `None` when the router cannot tell
/// it (e.g. an Envoy router has clusters, not Kubernetes hosts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// Fully qualified host (`checkout.shop.svc.cluster.local`): Istio's `destination_service`.
    pub host: Option<String>,
    /// DestinationRule subset (Istio) or selector value (Service router).
    pub subset: Option<String>,
    pub port: Option<u16>,
    /// Envoy cluster name.
    pub cluster: Option<String>,
    /// The Prometheus labels that select this release in the built-in templates
    /// (`{{ target.label.NAME }}`): `analysis.targetLabels`, or those derived from the
    /// DestinationRule. Empty: the router's default (see `queries::matchers`).
    pub labels: BTreeMap<String, String>,
}

/// Why a variable has no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariableError {
    #[error("unknown variable `{name}`; known variables: namespace, name, interval, canary.host|subset|port|cluster|label.NAME, stable.*, target.*, vars.NAME")]
    Unknown { name: String },
    #[error("variable `{name}` is not defined for this policy: {why}")]
    NotDefined { name: String, why: String },
}

/// The variables of one policy, as seen from one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variables {
    pub namespace: String,
    pub name: String,
    /// The analysis interval as a PromQL range, e.g. `30s`.
    pub interval: String,
    pub canary: Target,
    pub stable: Target,
    /// The side `target.*` refers to.
    pub side: Side,
    /// `analysis.vars`.
    pub vars: BTreeMap<String, String>,
    /// Which router the targets come from, for error messages.
    pub router: &'static str,
    /// The Service router's selector key (the pod label whose value tells the releases
    /// apart).
    pub selector_key: Option<String>,
}

impl Variables {
    /// The variables of `spec`, with `target.*` on the canary.
    pub fn new(policy: &PolicyRef, spec: &RolloutSpec) -> Variables {
        let (router, mut canary, mut stable) = targets(policy, spec);
        if let Some(labels) = &spec.analysis.target_labels {
            canary.labels = labels.canary.clone();
            stable.labels = labels.stable.clone();
        }
        Variables {
            selector_key: spec.router.service.as_ref().map(|s| s.selector_key.clone()),
            namespace: policy.namespace.clone(),
            name: policy.name.clone(),
            interval: spec.analysis.query_window().to_promql(),
            canary,
            stable,
            side: Side::Canary,
            vars: spec.analysis.vars.clone(),
            router,
        }
    }

    /// The same variables with `target.*` on `side`.
    pub fn with_side(&self, side: Side) -> Variables {
        Variables {
            side,
            ..self.clone()
        }
    }

    pub fn target(&self) -> &Target {
        match self.side {
            Side::Canary => &self.canary,
            Side::Stable => &self.stable,
        }
    }

    /// The value of variable `name` (as written between `{{ }}`, trimmed).
    pub fn lookup(&self, name: &str) -> Result<String, VariableError> {
        match name {
            "namespace" => return Ok(self.namespace.clone()),
            "name" => return Ok(self.name.clone()),
            "interval" => return Ok(self.interval.clone()),
            _ => {}
        }
        if let Some(var) = name.strip_prefix("vars.") {
            return self
                .vars
                .get(var)
                .cloned()
                .ok_or_else(|| VariableError::NotDefined {
                    name: name.to_owned(),
                    why: format!("add `{var}` to spec.analysis.vars"),
                });
        }
        let Some((side, field)) = name.split_once('.') else {
            return Err(VariableError::Unknown {
                name: name.to_owned(),
            });
        };
        let target = match side {
            "canary" => &self.canary,
            "stable" => &self.stable,
            "target" => self.target(),
            _ => {
                return Err(VariableError::Unknown {
                    name: name.to_owned(),
                })
            }
        };
        let value = match field {
            "host" => target.host.clone(),
            "subset" => target.subset.clone(),
            "port" => target.port.map(|p| p.to_string()),
            "cluster" => target.cluster.clone(),
            field if field.starts_with("label.") => {
                let label = &field["label.".len()..];
                return target.labels.get(label).cloned().ok_or_else(|| {
                    VariableError::NotDefined {
                        name: name.to_owned(),
                        why: format!(
                            "add `{label}` to spec.analysis.targetLabels.{}",
                            match (side, self.side) {
                                ("stable", _) | ("target", Side::Stable) => "stable",
                                _ => "canary",
                            }
                        ),
                    }
                });
            }
            _ => {
                return Err(VariableError::Unknown {
                    name: name.to_owned(),
                })
            }
        };
        value.ok_or_else(|| VariableError::NotDefined {
            name: name.to_owned(),
            why: format!("the {} router does not give the {field}", self.router),
        })
    }
}

/// Splits `[namespace/]name`, defaulting the namespace.
fn split_ref<'a>(reference: &'a str, default_namespace: &'a str) -> (&'a str, &'a str) {
    match reference.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => (default_namespace, reference),
    }
}

/// A host as Istio reports it in `destination_service`: short names (no dot) are
/// expanded relative to the namespace of the VirtualService, as Istio does.
pub fn fqdn(host: &str, namespace: &str) -> String {
    if host.contains('.') {
        host.to_owned()
    } else {
        format!("{host}.{namespace}.svc.cluster.local")
    }
}

fn targets(policy: &PolicyRef, spec: &RolloutSpec) -> (&'static str, Target, Target) {
    let router = &spec.router;
    if let Some(istio) = &router.istio {
        let (vs_namespace, _) = split_ref(&istio.virtual_service, &policy.namespace);
        let target = |d: &crate::policy::Destination| {
            let host = fqdn(&d.host, vs_namespace);
            // Istio names the Envoy cluster of a destination `outbound|port|subset|host`.
            let cluster = d.port.map(|port| {
                format!(
                    "outbound|{port}|{}|{host}",
                    d.subset.as_deref().unwrap_or("")
                )
            });
            Target {
                host: Some(host),
                subset: d.subset.clone(),
                port: d.port,
                cluster,
                labels: BTreeMap::new(),
            }
        };
        return ("istio", target(&istio.canary), target(&istio.stable));
    }
    if let Some(service) = &router.service {
        let (ns, name) = split_ref(&service.service, &policy.namespace);
        let host = fqdn(name, ns);
        let target = |value: &str| Target {
            host: Some(host.clone()),
            subset: Some(value.to_owned()),
            port: None,
            cluster: None,
            labels: BTreeMap::new(),
        };
        return (
            "service",
            target(&service.canary_value),
            target(&service.stable_value),
        );
    }
    if let Some(envoy) = &router.envoy {
        let target = |cluster: &str| Target {
            cluster: Some(cluster.to_owned()),
            ..Target::default()
        };
        return (
            "envoy",
            target(&envoy.canary_cluster),
            target(&envoy.stable_cluster),
        );
    }
    ("unset", Target::default(), Target::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variables(router: &str) -> Variables {
        let yaml = format!(
            "revision: v2\nrouter: {router}\nsteps: [0, 100]\nanalysis:\n  interval: 1m30s\n  metrics: []\n"
        );
        let spec: RolloutSpec = serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("{e}"));
        let policy = PolicyRef {
            namespace: "shop".to_owned(),
            name: "checkout".to_owned(),
        };
        Variables::new(&policy, &spec)
    }

    #[test]
    fn istio_targets_use_the_virtual_service_namespace_and_name_clusters() {
        let vars = variables(
            "{istio: {virtualService: mesh/checkout, stable: {host: checkout, subset: v1, port: 8080}, canary: {host: checkout, subset: v2}}}",
        );
        assert_eq!(vars.interval, "1m30s");
        assert_eq!(
            vars.lookup("stable.host").as_deref(),
            Ok("checkout.mesh.svc.cluster.local")
        );
        assert_eq!(
            vars.lookup("stable.cluster").as_deref(),
            Ok("outbound|8080|v1|checkout.mesh.svc.cluster.local")
        );
        assert_eq!(vars.lookup("target.subset").as_deref(), Ok("v2"));
        assert_eq!(
            vars.with_side(Side::Stable)
                .lookup("target.port")
                .as_deref(),
            Ok("8080")
        );
        assert!(matches!(
            vars.lookup("canary.port"),
            Err(VariableError::NotDefined { .. })
        ));
    }

    #[test]
    fn service_and_envoy_routers_give_what_they_know() {
        let service = variables(
            "{service: {service: web, selectorKey: version, stableValue: blue, canaryValue: green}}",
        );
        assert_eq!(
            service.lookup("canary.host").as_deref(),
            Ok("web.shop.svc.cluster.local")
        );
        assert_eq!(service.lookup("canary.subset").as_deref(), Ok("green"));
        let envoy = variables(
            "{envoy: {routesFile: r.yaml, adminAddress: '127.0.0.1:9901', stableCluster: app_v1, canaryCluster: app_v2}}",
        );
        assert_eq!(envoy.lookup("canary.cluster").as_deref(), Ok("app_v2"));
        let missing = envoy.lookup("canary.host").err().map(|e| e.to_string());
        assert!(missing.unwrap_or_default().contains("envoy router"));
        assert!(matches!(
            envoy.lookup("canary.hostname"),
            Err(VariableError::Unknown { .. })
        ));
        assert!(matches!(
            envoy.lookup("release"),
            Err(VariableError::Unknown { .. })
        ));
    }

    #[test]
    fn short_hosts_are_expanded_with_the_namespace() {
        assert_eq!(fqdn("checkout", "shop"), "checkout.shop.svc.cluster.local");
        assert_eq!(
            fqdn("checkout.stage.svc.cluster.local", "shop"),
            "checkout.stage.svc.cluster.local"
        );
    }
}
