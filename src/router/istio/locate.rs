//! Finds the managed http routes of a VirtualService and, in each, the stable and canary
//! destinations; refuses shapes where moving two weights would not mean what the policy
//! says. Works on plain JSON so nothing the types do not know about is lost.

use serde_json::Value;

use super::{IstioError, IstioTarget};
use crate::policy::Destination;
use crate::router::ManagedRoute;

/// A destination entry (`spec.http[route].route[index]`) and its weight as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocatedDestination {
    /// Index in the route's `route` list.
    pub index: usize,
    /// The `weight` field as written; `None` when absent.
    pub weight: Option<u64>,
}

impl LocatedDestination {
    /// The weight Istio applies. A managed route always has at least two destinations
    /// (stable and canary), and Istio reads a missing weight as 0 then (a missing weight
    /// means 100 only for a route's single destination).
    pub fn effective_weight(&self) -> u64 {
        self.weight.unwrap_or(0)
    }
}

/// One managed http route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocatedRoute {
    /// Index in `spec.http`.
    pub index: usize,
    pub name: Option<String>,
    pub stable: LocatedDestination,
    pub canary: LocatedDestination,
}

impl LocatedRoute {
    /// `"primary" (spec.http[1])`, for messages.
    pub fn label(&self) -> String {
        route_label(self.name.as_deref(), self.index)
    }
}

/// Where the managed parts of a VirtualService are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// In `spec.http` order.
    pub routes: Vec<LocatedRoute>,
    /// Index in `spec.http` of shiftgate's test route, when it is there.
    pub test_route_index: Option<usize>,
}

fn route_label(name: Option<&str>, index: usize) -> String {
    match name {
        Some(name) => format!("\"{name}\" (spec.http[{index}])"),
        None => format!("spec.http[{index}] (unnamed)"),
    }
}

/// Finds the managed routes and their destinations, or says what to change.
pub fn locate(vs: &Value, target: &IstioTarget) -> Result<Location, IstioError> {
    let vs_ref = target.object_ref();
    let malformed = |path: &str, problem: &str| IstioError::Malformed {
        vs: vs_ref.clone(),
        path: path.to_owned(),
        problem: problem.to_owned(),
    };
    let http = match vs.pointer("/spec/http") {
        None | Some(Value::Null) => return Err(IstioError::NoHttpRoutes { vs: vs_ref }),
        Some(Value::Array(http)) => http,
        Some(_) => return Err(malformed("spec.http", "is not a list")),
    };
    let test_route_name = target.test_route_name();
    let mut test_route_index = None;
    // (index in spec.http, name) of every route that is not shiftgate's test route.
    let mut candidates: Vec<(usize, Option<&str>)> = Vec::new();
    for (index, route) in http.iter().enumerate() {
        let name = match route.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => Some(name.as_str()),
            Some(_) => {
                return Err(malformed(
                    &format!("spec.http[{index}].name"),
                    "is not a string",
                ))
            }
        };
        if name == Some(test_route_name.as_str()) {
            test_route_index = Some(index);
        } else {
            candidates.push((index, name));
        }
    }
    let chosen = choose_routes(&candidates, target)?;
    let routes = chosen
        .into_iter()
        .map(|(index, name)| locate_destinations(&http[index], index, name, target))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Location {
        routes,
        test_route_index,
    })
}

fn choose_routes<'a>(
    candidates: &[(usize, Option<&'a str>)],
    target: &IstioTarget,
) -> Result<Vec<(usize, Option<&'a str>)>, IstioError> {
    let vs = target.object_ref();
    let names = || {
        candidates
            .iter()
            .map(|(index, name)| route_label(*name, *index))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if target.routes.is_empty() {
        return match candidates {
            [] => Err(IstioError::NoHttpRoutes { vs }),
            [only] => Ok(vec![*only]),
            _ => Err(IstioError::AmbiguousRoute {
                vs,
                count: candidates.len(),
                names: names(),
            }),
        };
    }
    let mut chosen = Vec::with_capacity(target.routes.len());
    for wanted in &target.routes {
        let same_name: Vec<usize> = candidates
            .iter()
            .filter(|(_, name)| *name == Some(wanted.as_str()))
            .map(|(index, _)| *index)
            .collect();
        if same_name.len() > 1 {
            // Istio applies the first match, yet a person may have meant either: moving
            // one of them silently is not what the policy says.
            return Err(IstioError::DuplicateRouteName {
                vs,
                route: wanted.clone(),
                count: same_name.len(),
                entries: same_name
                    .iter()
                    .map(|index| format!("spec.http[{index}]"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let found = candidates
            .iter()
            .find(|(_, name)| *name == Some(wanted.as_str()));
        match found {
            Some(found) => chosen.push(*found),
            None => {
                return Err(IstioError::RouteNotFound {
                    vs,
                    route: wanted.clone(),
                    available: if candidates.is_empty() {
                        "no routes".to_owned()
                    } else {
                        names()
                    },
                })
            }
        }
    }
    chosen.sort_by_key(|(index, _)| *index);
    chosen.dedup_by_key(|(index, _)| *index);
    Ok(chosen)
}

fn locate_destinations(
    route: &Value,
    index: usize,
    name: Option<&str>,
    target: &IstioTarget,
) -> Result<LocatedRoute, IstioError> {
    let vs = target.object_ref();
    let label = route_label(name, index);
    let destinations = match route.get("route") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(destinations)) => destinations.as_slice(),
        Some(_) => {
            return Err(IstioError::Malformed {
                vs,
                path: format!("spec.http[{index}].route"),
                problem: "is not a list".to_owned(),
            })
        }
    };
    let mut stable = Vec::new();
    let mut canary = Vec::new();
    let mut others = Vec::new();
    for (position, entry) in destinations.iter().enumerate() {
        let destination = entry.get("destination").unwrap_or(&Value::Null);
        let host = destination
            .get("host")
            .and_then(Value::as_str)
            .unwrap_or("");
        let is_stable = matches(destination, &target.stable, target);
        let is_canary = matches(destination, &target.canary, target);
        let weight = read_weight(entry, index, position, &vs)?;
        if is_stable && is_canary {
            return Err(IstioError::StableIsCanary {
                vs,
                route: label,
                entry: format!("route[{position}]"),
                host: host.to_owned(),
            });
        }
        let located = LocatedDestination {
            index: position,
            weight,
        };
        if is_stable {
            stable.push(located);
        } else if is_canary {
            canary.push(located);
        } else {
            others.push((position, host.to_owned(), weight));
        }
    }
    let found = || {
        let hosts: Vec<String> = destinations
            .iter()
            .map(|entry| describe_entry(entry.get("destination").unwrap_or(&Value::Null)))
            .collect();
        if hosts.is_empty() {
            "nothing".to_owned()
        } else {
            hosts.join(", ")
        }
    };
    let stable = pick_one(stable, "stable", &target.stable, &vs, &label, &found)?;
    let canary = pick_one(canary, "canary", &target.canary, &vs, &label, &found)?;
    if let Some((position, host, Some(weight))) = others
        .into_iter()
        .find(|(_, _, weight)| weight.unwrap_or(0) > 0)
    {
        return Err(IstioError::ForeignWeight {
            vs,
            route: label,
            entry: format!("route[{position}]"),
            host,
            weight,
        });
    }
    Ok(LocatedRoute {
        index,
        name: name.map(str::to_owned),
        stable,
        canary,
    })
}

fn pick_one(
    mut found: Vec<LocatedDestination>,
    side: &'static str,
    wanted: &Destination,
    vs: &str,
    label: &str,
    listing: &dyn Fn() -> String,
) -> Result<LocatedDestination, IstioError> {
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(IstioError::MissingDestination {
            vs: vs.to_owned(),
            route: label.to_owned(),
            side,
            wanted: describe_policy_destination(wanted),
            found: listing(),
        }),
        count => Err(IstioError::DuplicateDestination {
            vs: vs.to_owned(),
            route: label.to_owned(),
            side,
            wanted: describe_policy_destination(wanted),
            count,
            entries: found
                .iter()
                .map(|d| format!("route[{}]", d.index))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn read_weight(
    entry: &Value,
    route: usize,
    position: usize,
    vs: &str,
) -> Result<Option<u64>, IstioError> {
    match entry.get("weight") {
        None | Some(Value::Null) => Ok(None),
        Some(weight) => match weight.as_u64() {
            Some(weight) if weight <= 100 => Ok(Some(weight)),
            _ => Err(IstioError::BadWeight {
                vs: vs.to_owned(),
                path: format!("spec.http[{route}].route[{position}].weight"),
                value: weight.to_string(),
            }),
        },
    }
}

/// Whether a VirtualService destination is the policy's destination: same host once both
/// are made fully qualified (each in its own namespace), and the same subset and port when
/// the policy gives them.
fn matches(destination: &Value, wanted: &Destination, target: &IstioTarget) -> bool {
    let Some(host) = destination.get("host").and_then(Value::as_str) else {
        return false;
    };
    if !fully_qualified(host, &target.namespace)
        .eq_ignore_ascii_case(&fully_qualified(&wanted.host, &target.policy_namespace))
    {
        return false;
    }
    if let Some(subset) = &wanted.subset {
        if destination.get("subset").and_then(Value::as_str) != Some(subset.as_str()) {
            return false;
        }
    }
    if let Some(port) = wanted.port {
        if destination.pointer("/port/number").and_then(Value::as_u64) != Some(u64::from(port)) {
            return false;
        }
    }
    true
}

/// `checkout`, `checkout.shop`, `checkout.shop.svc` and `checkout.shop.svc.cluster.local`
/// are one service when read in namespace `shop`; other names are taken as written.
pub fn fully_qualified(host: &str, namespace: &str) -> String {
    let host = host.trim_end_matches('.');
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        [_] => format!("{host}.{namespace}.svc.cluster.local"),
        [_, _] => format!("{host}.svc.cluster.local"),
        [_, _, "svc"] => format!("{host}.cluster.local"),
        _ => host.to_owned(),
    }
}

fn describe_policy_destination(destination: &Destination) -> String {
    let mut text = format!("host {}", destination.host);
    if let Some(subset) = &destination.subset {
        text.push_str(&format!(" subset {subset}"));
    }
    if let Some(port) = destination.port {
        text.push_str(&format!(" port {port}"));
    }
    text
}

fn describe_entry(destination: &Value) -> String {
    let mut text = destination
        .get("host")
        .and_then(Value::as_str)
        .unwrap_or("(no host)")
        .to_owned();
    if let Some(subset) = destination.get("subset").and_then(Value::as_str) {
        text.push_str(&format!(" subset {subset}"));
    }
    if let Some(port) = destination.pointer("/port/number").and_then(Value::as_u64) {
        text.push_str(&format!(" port {port}"));
    }
    text
}

/// The managed route as Istio serves it, and whether the test route is in place.
///
/// When the managed routes disagree on the canary weight (someone edited one by hand),
/// the highest canary weight is reported: it is the most traffic any route sends to the
/// canary, so the rollout sees a weight other than the one it confirmed (drift, handled by
/// `onDrift`) and a rollback stays possible — its one write sets every route to 0. An
/// error here would leave the reconciler without a version to write against. [`drift`]
/// names the routes and weights for the log.
pub fn live_route(location: &Location, target: &IstioTarget) -> Result<ManagedRoute, IstioError> {
    let vs = target.object_ref();
    let mut highest: Option<u64> = None;
    for route in &location.routes {
        let stable = route.stable.effective_weight();
        let canary = route.canary.effective_weight();
        if stable + canary != 100 {
            return Err(IstioError::WeightsDoNotAddUp {
                vs,
                route: route.label(),
                stable,
                canary,
            });
        }
        highest = Some(highest.map_or(canary, |h| h.max(canary)));
    }
    let Some(highest) = highest else {
        return Err(IstioError::NoHttpRoutes { vs });
    };
    // Every canary weight was read as 0..=100.
    let canary_weight = u8::try_from(highest).unwrap_or(100);
    Ok(ManagedRoute {
        canary_weight,
        test_route: location.test_route_index.is_some(),
    })
}

/// The managed routes' canary weights when they disagree.
pub fn drift(location: &Location, target: &IstioTarget) -> Option<IstioError> {
    let weights: Vec<(String, u64)> = location
        .routes
        .iter()
        .map(|route| (route.label(), route.canary.effective_weight()))
        .collect();
    let (_, first) = weights.first()?;
    if weights.iter().all(|(_, weight)| weight == first) {
        return None;
    }
    Some(IstioError::Drift {
        vs: target.object_ref(),
        weights: weights
            .iter()
            .map(|(label, weight)| format!("{label} canary {weight}"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn short_and_long_host_forms_are_one_service() {
        let forms = [
            "checkout",
            "checkout.shop",
            "checkout.shop.svc",
            "checkout.shop.svc.cluster.local",
        ];
        for form in forms {
            assert_eq!(
                fully_qualified(form, "shop"),
                "checkout.shop.svc.cluster.local"
            );
        }
        assert_eq!(
            fully_qualified("checkout", "prod"),
            "checkout.prod.svc.cluster.local"
        );
        assert_eq!(
            fully_qualified("api.example.com", "shop"),
            "api.example.com"
        );
    }
}
