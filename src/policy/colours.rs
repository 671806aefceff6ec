//! Blue/green colours: a router may name two colours (`colors: {blue: …, green: …}`)
//! instead of a fixed stable and canary. Which colour is which is decided per revision
//! from the live route (`engine::colours`); orienting the spec then fills `stable` and
//! `canary` from the colours, so every router, query and check reads an ordinary spec.

use std::collections::BTreeMap;

use super::diagnostic::Issue;
use super::types::{RolloutSpec, RouterSpec};

/// The two colours of a router in declared (alphabetical) order; `None` without
/// colours, or with a number other than two (an invalid policy).
pub fn colour_names(router: &RouterSpec) -> Option<[String; 2]> {
    let names: Vec<&String> = if let Some(istio) = &router.istio {
        istio.colors.keys().collect()
    } else if let Some(envoy) = &router.envoy {
        envoy.colors.keys().collect()
    } else if let Some(service) = &router.service {
        service.colors.keys().collect()
    } else {
        Vec::new()
    };
    match names.as_slice() {
        [a, b] => Some([(*a).clone(), (*b).clone()]),
        _ => None,
    }
}

/// Every colour the router names, in declared (alphabetical) order; empty without.
pub fn colour_keys(router: &RouterSpec) -> Vec<String> {
    if let Some(istio) = router.istio.as_ref().filter(|r| !r.colors.is_empty()) {
        return istio.colors.keys().cloned().collect();
    }
    if let Some(envoy) = router.envoy.as_ref().filter(|r| !r.colors.is_empty()) {
        return envoy.colors.keys().cloned().collect();
    }
    router
        .service
        .as_ref()
        .map(|r| r.colors.keys().cloned().collect())
        .unwrap_or_default()
}

/// Whether any router of `router` names colours.
pub fn has_colours(router: &RouterSpec) -> bool {
    router.istio.as_ref().is_some_and(|r| !r.colors.is_empty())
        || router.envoy.as_ref().is_some_and(|r| !r.colors.is_empty())
        || router
            .service
            .as_ref()
            .is_some_and(|r| !r.colors.is_empty())
}

/// `router` with colour `stable` as stable and the other colour as canary; `None`
/// without two colours or when `stable` is not one of them.
pub fn orient_router(router: &RouterSpec, stable: &str) -> Option<RouterSpec> {
    let [a, b] = colour_names(router)?;
    let canary = if stable == a {
        b
    } else if stable == b {
        a
    } else {
        return None;
    };
    let mut oriented = router.clone();
    if let Some(istio) = &mut oriented.istio {
        istio.stable = istio.colors.get(stable)?.clone();
        istio.canary = istio.colors.get(&canary)?.clone();
    }
    if let Some(envoy) = &mut oriented.envoy {
        envoy.stable_cluster = envoy.colors.get(stable)?.clone();
        envoy.canary_cluster = envoy.colors.get(&canary)?.clone();
    }
    if let Some(service) = &mut oriented.service {
        service.stable_value = service.colors.get(stable)?.clone();
        service.canary_value = service.colors.get(&canary)?.clone();
    }
    Some(oriented)
}

/// `spec` oriented with colour `stable` as stable (see [`orient_router`]); the
/// Deployments of `spec.workloads.colors` follow the same colours.
pub fn orient(spec: &RolloutSpec, stable: &str) -> Option<RolloutSpec> {
    let router = orient_router(&spec.router, stable)?;
    let [a, b] = colour_names(&spec.router)?;
    let canary = if stable == a { b } else { a };
    let workloads = spec
        .workloads
        .as_ref()
        .map(|w| Box::new(super::workloads::orient_workloads(w, stable, &canary)));
    Some(RolloutSpec {
        router,
        workloads,
        ..spec.clone()
    })
}

/// `(stable, canary)` colours of an oriented spec; `None` for a spec without colours
/// or not oriented yet.
pub fn oriented_colours(router: &RouterSpec) -> Option<(String, String)> {
    fn find<V: PartialEq>(colors: &BTreeMap<String, V>, value: &V) -> Option<String> {
        colors
            .iter()
            .find(|(_, v)| *v == value)
            .map(|(k, _)| k.clone())
    }
    let pair = |stable: Option<String>, canary: Option<String>| match (stable, canary) {
        (Some(s), Some(c)) if s != c => Some((s, c)),
        _ => None,
    };
    if let Some(istio) = router.istio.as_ref().filter(|r| !r.colors.is_empty()) {
        return pair(
            find(&istio.colors, &istio.stable),
            find(&istio.colors, &istio.canary),
        );
    }
    if let Some(envoy) = router.envoy.as_ref().filter(|r| !r.colors.is_empty()) {
        return pair(
            find(&envoy.colors, &envoy.stable_cluster),
            find(&envoy.colors, &envoy.canary_cluster),
        );
    }
    if let Some(service) = router.service.as_ref().filter(|r| !r.colors.is_empty()) {
        return pair(
            find(&service.colors, &service.stable_value),
            find(&service.colors, &service.canary_value),
        );
    }
    None
}

/// What is wrong with a router's colours and `spec.canaryColor`.
pub fn issues(router: &RouterSpec, canary_color: Option<&str>, out: &mut Vec<Issue>) {
    let mut check = |path: &str, count: usize, fixed_set: bool, values: Vec<&str>| {
        if count == 0 {
            return;
        }
        if fixed_set {
            out.push(
                Issue::error(
                    format!("{path}.colors"),
                    "colors replaces the fixed stable and canary; both are set",
                )
                .with_hint("keep `colors` and remove stable/canary, or the other way round"),
            );
        }
        if count != 2 {
            out.push(
                Issue::error(
                    format!("{path}.colors"),
                    format!("{count} colours are named; blue/green alternates between exactly two"),
                )
                .with_hint("name two colours, e.g. `colors: {blue: …, green: …}`"),
            );
        }
        if values.iter().any(|v| v.trim().is_empty()) {
            out.push(
                Issue::error(format!("{path}.colors"), "a colour's destination is empty")
                    .with_hint("give each colour its own destination"),
            );
        }
        if values.len() == 2 && values[0] == values[1] {
            out.push(
                Issue::error(
                    format!("{path}.colors"),
                    "both colours name the same destination: flipping would change nothing",
                )
                .with_hint("point each colour at its own release"),
            );
        }
    };
    if let Some(istio) = &router.istio {
        let fixed = !istio.stable.is_unset() || !istio.canary.is_unset();
        let hosts: Vec<String> = istio
            .colors
            .values()
            .map(|d| format!("{}/{}", d.host, d.subset.as_deref().unwrap_or("")))
            .collect();
        let empty = istio.colors.values().any(|d| d.host.trim().is_empty());
        let mut values: Vec<&str> = hosts.iter().map(String::as_str).collect();
        if empty {
            values.push("");
        }
        check("spec.router.istio", istio.colors.len(), fixed, values);
    }
    if let Some(envoy) = &router.envoy {
        let fixed = !envoy.stable_cluster.is_empty() || !envoy.canary_cluster.is_empty();
        let values = envoy.colors.values().map(String::as_str).collect();
        check("spec.router.envoy", envoy.colors.len(), fixed, values);
    }
    if let Some(service) = &router.service {
        let fixed = !service.stable_value.is_empty() || !service.canary_value.is_empty();
        let values = service.colors.values().map(String::as_str).collect();
        check("spec.router.service", service.colors.len(), fixed, values);
    }
    let Some(colour) = canary_color else {
        return;
    };
    match colour_names(router) {
        None if !has_colours(router) => out.push(
            Issue::error(
                "spec.canaryColor",
                "canaryColor names a colour, but the router names no `colors`",
            )
            .with_hint("add `colors` to the router, or remove canaryColor"),
        ),
        Some(names) if !names.iter().any(|n| n == colour) => out.push(
            Issue::error(
                "spec.canaryColor",
                format!(
                    "`{colour}` is not a colour of the router (it names {} and {})",
                    names[0], names[1]
                ),
            )
            .with_hint(format!("write {} or {}", names[0], names[1])),
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn router(colors: serde_json::Value) -> RouterSpec {
        serde_json::from_value(serde_json::json!({
            "istio": { "virtualService": "vs", "colors": colors }
        }))
        .unwrap()
    }

    #[test]
    fn orienting_fills_stable_and_canary_from_the_colours() {
        let r = router(serde_json::json!({
            "blue": { "host": "app", "subset": "blue" },
            "green": { "host": "app", "subset": "green" }
        }));
        assert_eq!(
            colour_names(&r).unwrap(),
            ["blue".to_owned(), "green".to_owned()]
        );
        assert_eq!(oriented_colours(&r), None, "not oriented yet");
        let green = orient_router(&r, "green").unwrap();
        let istio = green.istio.as_ref().unwrap();
        assert_eq!(istio.stable.subset.as_deref(), Some("green"));
        assert_eq!(istio.canary.subset.as_deref(), Some("blue"));
        assert_eq!(
            oriented_colours(&green),
            Some(("green".to_owned(), "blue".to_owned()))
        );
        assert!(orient_router(&r, "red").is_none());
    }

    #[test]
    fn colour_mistakes_are_errors_with_a_hint() {
        let mut found = Vec::new();
        let one = router(serde_json::json!({ "blue": { "host": "app" } }));
        issues(&one, Some("green"), &mut found);
        assert!(
            found.iter().any(|i| i.message.contains("1 colours")),
            "{found:?}"
        );
        let mut found = Vec::new();
        let same = router(serde_json::json!({
            "blue": { "host": "app" }, "green": { "host": "app" }
        }));
        issues(&same, Some("red"), &mut found);
        assert!(found.iter().any(|i| i.message.contains("same destination")));
        assert!(found.iter().any(|i| i.path == "spec.canaryColor"));
    }
}
