//! The JSON Patch (RFC 6902) that moves a VirtualService to the desired managed route.
//!
//! The patch is conditional and minimal:
//! 1. `test` of `/metadata/resourceVersion` (when the object has one) and of every value
//!    it replaces or removes, so a concurrent edit makes the whole patch fail;
//! 2. `replace` (or `add`, when absent) of the stable and canary weights that change —
//!    an unchanged weight is not written;
//! 3. the test route: `add` in front of the first managed route, `replace` when its
//!    content is stale, `remove` by index.
//!
//! Weight operations use the indices of the object as read and come before the one
//! operation that shifts `spec.http` (adding or removing the test route).

use json_patch::jsonptr::PointerBuf;
use json_patch::{
    AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation, TestOperation,
};
use serde_json::{json, Value};

use super::{live_route, locate, test_route, IstioError, IstioTarget, LocatedDestination};
use crate::router::ManagedRoute;

/// The patch that turns `vs` into `desired`. An empty patch means nothing to write.
pub fn plan(vs: &Value, target: &IstioTarget, desired: ManagedRoute) -> Result<Patch, IstioError> {
    if desired.canary_weight > 100 {
        return Err(IstioError::WeightOverHundred {
            policy: format!("{}/{}", target.policy_namespace, target.policy_name),
            weight: desired.canary_weight,
        });
    }
    let location = locate(vs, target)?;
    let canary = u64::from(desired.canary_weight);
    let stable = 100 - canary;

    let mut tests = Vec::new();
    let mut changes = Vec::new();
    for route in &location.routes {
        for (destination, weight) in [(&route.stable, stable), (&route.canary, canary)] {
            set_weight(route.index, destination, weight, &mut tests, &mut changes);
        }
    }

    let test_route_name = Value::String(target.test_route_name());
    match (location.test_route_index, desired.test_route) {
        (None, true) => {
            let entry = test_route::build(vs, &location, target)?;
            let before = location.routes.first().map_or(0, |route| route.index);
            changes.push(PatchOperation::Add(AddOperation {
                path: pointer(&["spec", "http", &before.to_string()]),
                value: entry,
            }));
        }
        (Some(index), true) => {
            let entry = test_route::build(vs, &location, target)?;
            let path = pointer(&["spec", "http", &index.to_string()]);
            if vs.pointer(path.as_str()) != Some(&entry) {
                tests.push(test(
                    &["spec", "http", &index.to_string(), "name"],
                    test_route_name,
                ));
                changes.push(PatchOperation::Replace(ReplaceOperation {
                    path,
                    value: entry,
                }));
            }
        }
        (Some(index), false) => {
            tests.push(test(
                &["spec", "http", &index.to_string(), "name"],
                test_route_name,
            ));
            changes.push(PatchOperation::Remove(RemoveOperation {
                path: pointer(&["spec", "http", &index.to_string()]),
            }));
        }
        (None, false) => {}
    }

    if changes.is_empty() {
        return Ok(Patch(Vec::new()));
    }
    let mut operations = Vec::with_capacity(tests.len() + changes.len() + 1);
    if let Some(version) = vs.pointer("/metadata/resourceVersion") {
        operations.push(test(&["metadata", "resourceVersion"], version.clone()));
    }
    operations.extend(tests);
    operations.extend(changes);
    Ok(Patch(operations))
}

/// What the VirtualService serves now, read the same way `plan` reads it.
pub fn read(vs: &Value, target: &IstioTarget) -> Result<ManagedRoute, IstioError> {
    live_route(&locate(vs, target)?, target)
}

fn set_weight(
    route: usize,
    destination: &LocatedDestination,
    weight: u64,
    tests: &mut Vec<PatchOperation>,
    changes: &mut Vec<PatchOperation>,
) {
    let tokens = [
        "spec",
        "http",
        &route.to_string(),
        "route",
        &destination.index.to_string(),
        "weight",
    ];
    match destination.weight {
        Some(current) if current == weight => {}
        Some(current) => {
            tests.push(test(&tokens, json!(current)));
            changes.push(PatchOperation::Replace(ReplaceOperation {
                path: pointer(&tokens),
                value: json!(weight),
            }));
        }
        // Absent is what Istio reads as 0 here: writing 0 would change nothing.
        None if weight == 0 => {}
        None => changes.push(PatchOperation::Add(AddOperation {
            path: pointer(&tokens),
            value: json!(weight),
        })),
    }
}

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

fn test(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Test(TestOperation {
        path: pointer(tokens),
        value,
    })
}
