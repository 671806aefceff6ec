//! The Envoy route configuration shiftgate writes and reads back: pure functions
//! between a [`ManagedRoute`] and Envoy's v3 JSON (the RDS file, and the admin
//! `/config_dump?resource=dynamic_route_configs` answer). No I/O here.
//!
//! The file is an xDS `DiscoveryResponse` with one `RouteConfiguration`: one virtual
//! host whose last route (named [`SPLIT_ROUTE_NAME`]) splits between the stable and
//! canary clusters with `weighted_clusters` (weights sum to 100; `total_weight` is
//! deprecated since Envoy 1.27), and, when the test route is on, a route before it
//! (named [`TEST_ROUTE_NAME`]) sending matching requests to the canary cluster.

use serde_json::{json, Value};

use crate::policy::{EnvoyRouter as EnvoyRouterSpec, HeaderMatch, TestRoute};
use crate::router::ManagedRoute;

/// Name of the route that splits traffic between stable and canary.
pub const SPLIT_ROUTE_NAME: &str = "shiftgate-split";
/// Name of shiftgate's test route (cookie/header match to the canary).
pub const TEST_ROUTE_NAME: &str = "shiftgate-test-route";
/// Type URL of a v3 RouteConfiguration inside a DiscoveryResponse.
pub const ROUTE_CONFIGURATION_TYPE: &str =
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

/// Renders the RDS file content for `route` at `generation` (the `version_info`).
///
/// Fails when the test route is requested but the policy has none.
pub fn render_routes_file(
    spec: &EnvoyRouterSpec,
    test_route: Option<&TestRoute>,
    route: ManagedRoute,
    generation: u64,
) -> Result<Value, String> {
    let canary = u32::from(route.canary_weight.min(100));
    let stable = 100 - canary;
    let mut routes = Vec::new();
    if route.test_route {
        let test_route = test_route.ok_or_else(|| {
            "the test route was requested but the policy has no spec.testRoute; add one or \
             leave the test route off"
                .to_owned()
        })?;
        routes.push(json!({
            "name": TEST_ROUTE_NAME,
            "match": { "prefix": "/", "headers": [test_route_header_matcher(test_route)?] },
            "route": { "cluster": spec.canary_cluster },
        }));
    }
    routes.push(json!({
        "name": SPLIT_ROUTE_NAME,
        "match": { "prefix": "/" },
        "route": { "weighted_clusters": { "clusters": [
            { "name": spec.stable_cluster, "weight": stable },
            { "name": spec.canary_cluster, "weight": canary },
        ] } },
    }));
    Ok(json!({
        "version_info": generation.to_string(),
        "resources": [{
            "@type": ROUTE_CONFIGURATION_TYPE,
            "name": spec.route_config_name,
            "virtual_hosts": [{
                "name": spec.route_config_name,
                "domains": spec.domains,
                "routes": routes,
            }],
        }],
    }))
}

/// The Envoy `HeaderMatcher` for the policy's test route: a cookie is matched as a
/// regex over the `cookie` header (the cookie may be anywhere in the list).
fn test_route_header_matcher(test_route: &TestRoute) -> Result<Value, String> {
    if let Some(cookie) = &test_route.cookie {
        let regex = format!(r"(^|.*;\s*){}(;.*|$)", escape_re2(cookie.trim()));
        return Ok(
            json!({ "name": "cookie", "string_match": { "safe_regex": { "regex": regex } } }),
        );
    }
    if let Some(header) = &test_route.header {
        return Ok(header_matcher(header));
    }
    Err("spec.testRoute sets neither `cookie` nor `header`; set one of them".to_owned())
}

fn header_matcher(header: &HeaderMatch) -> Value {
    let name = header.name.to_ascii_lowercase();
    match (&header.exact, &header.regex) {
        (Some(exact), _) => json!({ "name": name, "string_match": { "exact": exact } }),
        (None, Some(regex)) => {
            json!({ "name": name, "string_match": { "safe_regex": { "regex": regex } } })
        }
        (None, None) => json!({ "name": name, "present_match": true }),
    }
}

/// Escapes RE2 metacharacters so a literal (a cookie) matches only itself.
fn escape_re2(literal: &str) -> String {
    let mut escaped = String::with_capacity(literal.len() * 2);
    for c in literal.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The route configuration Envoy serves, as read from its admin config dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedRoute {
    /// `version_info` of the served configuration (the generation shiftgate wrote).
    pub version_info: String,
    pub route: ManagedRoute,
}

/// Finds the route configuration named `spec.route_config_name` in a
/// `/config_dump?resource=dynamic_route_configs` answer and reads the managed part.
///
/// `Ok(None)`: Envoy serves no such configuration (yet). `Err`: it serves one that
/// shiftgate cannot interpret (no split route, unknown clusters).
pub fn parse_config_dump(
    spec: &EnvoyRouterSpec,
    dump: &Value,
) -> Result<Option<ServedRoute>, String> {
    let configs = dump
        .get("configs")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let Some(entry) = configs.iter().find(|entry| {
        entry.pointer("/route_config/name").and_then(Value::as_str)
            == Some(spec.route_config_name.as_str())
    }) else {
        return Ok(None);
    };
    let version_info = entry
        .get("version_info")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let routes: Vec<&Value> = entry
        .pointer("/route_config/virtual_hosts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|host| host.get("routes").and_then(Value::as_array))
        .flatten()
        .collect();
    let named = |name: &str| {
        routes
            .iter()
            .find(|route| route.get("name").and_then(Value::as_str) == Some(name))
    };
    let split = named(SPLIT_ROUTE_NAME).ok_or_else(|| {
        format!(
            "route configuration {:?} (version {version_info:?}) has no route named \
             {SPLIT_ROUTE_NAME:?}; let shiftgate write the routes file",
            spec.route_config_name
        )
    })?;
    let canary_weight = split_canary_weight(spec, split)?;
    Ok(Some(ServedRoute {
        version_info,
        route: ManagedRoute {
            canary_weight,
            test_route: named(TEST_ROUTE_NAME).is_some(),
        },
    }))
}

/// The canary percentage of the split route: its weight share of the two clusters.
fn split_canary_weight(spec: &EnvoyRouterSpec, split: &Value) -> Result<u8, String> {
    if let Some(cluster) = split.pointer("/route/cluster").and_then(Value::as_str) {
        return match cluster {
            c if c == spec.canary_cluster => Ok(100),
            c if c == spec.stable_cluster => Ok(0),
            other => Err(format!(
                "route {SPLIT_ROUTE_NAME:?} sends traffic to cluster {other:?}, neither the \
                 stable ({:?}) nor the canary ({:?}) cluster",
                spec.stable_cluster, spec.canary_cluster
            )),
        };
    }
    let clusters = split
        .pointer("/route/weighted_clusters/clusters")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("route {SPLIT_ROUTE_NAME:?} has no weighted_clusters"))?;
    let weight_of = |name: &str| -> u64 {
        clusters
            .iter()
            .filter(|c| c.get("name").and_then(Value::as_str) == Some(name))
            .filter_map(|c| c.get("weight"))
            .filter_map(|w| {
                w.as_u64()
                    .or_else(|| w.as_str().and_then(|s| s.parse().ok()))
            })
            .sum()
    };
    let canary = weight_of(&spec.canary_cluster);
    let stable = weight_of(&spec.stable_cluster);
    let total = canary + stable;
    if total == 0 {
        return Err(format!(
            "route {SPLIT_ROUTE_NAME:?} gives no weight to the stable ({:?}) or canary ({:?}) \
             cluster",
            spec.stable_cluster, spec.canary_cluster
        ));
    }
    let percent = (canary * 100 + total / 2) / total;
    Ok(u8::try_from(percent).unwrap_or(100))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec() -> EnvoyRouterSpec {
        EnvoyRouterSpec {
            routes_file: "/tmp/routes.json".into(),
            admin_address: "127.0.0.1:9901".into(),
            route_config_name: "shiftgate".into(),
            domains: vec!["*".into()],
            stable_cluster: "stable".into(),
            canary_cluster: "canary".into(),
            colors: Default::default(),
        }
    }

    /// Wraps a rendered file the way the admin config dump shows it.
    fn as_dump(file: &Value) -> Value {
        json!({ "configs": [{
            "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump.DynamicRouteConfig",
            "version_info": file["version_info"],
            "route_config": file["resources"][0],
        }] })
    }

    #[test]
    fn rendered_route_reads_back_unchanged() {
        let cookie = TestRoute {
            cookie: Some("test=true".into()),
            header: None,
        };
        for weight in [0, 1, 30, 60, 99, 100] {
            for test_route in [false, true] {
                let route = ManagedRoute {
                    canary_weight: weight,
                    test_route,
                };
                let file = render_routes_file(&spec(), Some(&cookie), route, 7).unwrap();
                let served = parse_config_dump(&spec(), &as_dump(&file))
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    served,
                    ServedRoute {
                        version_info: "7".into(),
                        route
                    }
                );
            }
        }
    }

    #[test]
    fn weights_sum_to_one_hundred() {
        let route = ManagedRoute {
            canary_weight: 30,
            test_route: false,
        };
        let file = render_routes_file(&spec(), None, route, 1).unwrap();
        let clusters = &file["resources"][0]["virtual_hosts"][0]["routes"][0]["route"]
            ["weighted_clusters"]["clusters"];
        assert_eq!(clusters[0], json!({ "name": "stable", "weight": 70 }));
        assert_eq!(clusters[1], json!({ "name": "canary", "weight": 30 }));
    }

    #[test]
    fn cookie_is_escaped_and_matched_anywhere_in_the_header() {
        let cookie = TestRoute {
            cookie: Some("a.b=(x)".into()),
            header: None,
        };
        let matcher = test_route_header_matcher(&cookie).unwrap();
        assert_eq!(
            matcher["string_match"]["safe_regex"]["regex"],
            json!(r"(^|.*;\s*)a\.b=\(x\)(;.*|$)")
        );
    }

    #[test]
    fn header_test_route_uses_exact_or_regex() {
        let exact = TestRoute {
            cookie: None,
            header: Some(HeaderMatch {
                name: "X-Version".into(),
                exact: Some("v2".into()),
                regex: None,
            }),
        };
        assert_eq!(
            test_route_header_matcher(&exact).unwrap(),
            json!({ "name": "x-version", "string_match": { "exact": "v2" } })
        );
    }

    #[test]
    fn test_route_without_policy_test_route_is_refused() {
        let route = ManagedRoute {
            canary_weight: 0,
            test_route: true,
        };
        let err = render_routes_file(&spec(), None, route, 1).unwrap_err();
        assert!(err.contains("spec.testRoute"), "{err}");
    }

    #[test]
    fn unknown_route_configuration_reads_as_absent() {
        let dump =
            json!({ "configs": [{ "version_info": "1", "route_config": { "name": "other" } }] });
        assert_eq!(parse_config_dump(&spec(), &dump).unwrap(), None);
        assert_eq!(parse_config_dump(&spec(), &json!({})).unwrap(), None);
    }

    #[test]
    fn hand_written_config_without_split_route_is_an_error() {
        let dump = json!({ "configs": [{ "version_info": "1", "route_config": {
            "name": "shiftgate", "virtual_hosts": [{ "routes": [{ "match": {} }] }] } }] });
        let err = parse_config_dump(&spec(), &dump).unwrap_err();
        assert!(err.contains(SPLIT_ROUTE_NAME), "{err}");
    }
}
