//! The VirtualService corpus: real-world shapes (tests/fixtures/virtualservices), each
//! walked through every step weight with and without the test route, then rolled back.
//! After every patch (applied with the `json-patch` crate, as the API server does) the
//! object differs from the original only at the managed weights and the test route entry;
//! after rollback only the weights differ. Proptest adds unknown fields anywhere and checks
//! they survive byte for byte. The `refuse-*` fixtures must be refused with a clear error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use shiftgate::policy::{Destination, IstioApiVersion, IstioRouter as IstioRouterSpec, TestRoute};
use shiftgate::router::istio::{locate, plan, plan::read, IstioTarget, Location};
use shiftgate::router::ManagedRoute;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FixturePolicy {
    name: String,
    namespace: String,
    #[serde(default)]
    vs_namespace: Option<String>,
    #[serde(default)]
    routes: Vec<String>,
    stable: Destination,
    canary: Destination,
    #[serde(default)]
    test_route: Option<TestRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Refusal {
    /// `read`: read and every plan refuse; `read-only`: read refuses, a plan may repair;
    /// `test-route`: only adding the test route refuses.
    on: String,
    error: String,
}

struct Fixture {
    file: String,
    vs: Value,
    target: IstioTarget,
    refusal: Option<Refusal>,
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/virtualservices")
}

fn header<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# "))
        .find_map(|line| line.strip_prefix(key))
}

fn load(path: &Path) -> Fixture {
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).unwrap();
    let policy_text = header(&text, "policy:")
        .unwrap_or_else(|| panic!("{file}: no `# policy:` header naming stable/canary/routes"));
    let policy: FixturePolicy = serde_yaml_ng::from_str(policy_text)
        .unwrap_or_else(|e| panic!("{file}: bad `# policy:` header: {e}"));
    let refusal = header(&text, "refuse:").map(|refuse| {
        serde_yaml_ng::from_str::<Refusal>(refuse)
            .unwrap_or_else(|e| panic!("{file}: bad `# refuse:` header: {e}"))
    });
    let mut vs: Value = serde_yaml_ng::from_str(&text).unwrap();
    // What the API server adds; the plan tests it.
    if vs.pointer("/metadata/resourceVersion").is_none() {
        vs["metadata"]["resourceVersion"] = json!("1");
    }
    let vs_name = vs["metadata"]["name"].as_str().unwrap().to_owned();
    let virtual_service = match &policy.vs_namespace {
        Some(namespace) => format!("{namespace}/{vs_name}"),
        None => vs_name,
    };
    let spec = IstioRouterSpec {
        virtual_service,
        colors: Default::default(),
        routes: policy.routes,
        stable: policy.stable,
        canary: policy.canary,
        api_version: IstioApiVersion::V1,
    };
    let test_route = policy.test_route.unwrap_or(TestRoute {
        cookie: Some("test=true".to_owned()),
        header: None,
    });
    let target =
        IstioTarget::from_policy(&policy.name, &policy.namespace, &spec, Some(&test_route));
    Fixture {
        file,
        vs,
        target,
        refusal,
    }
}

fn corpus() -> Vec<Fixture> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    paths.iter().map(|path| load(path)).collect()
}

fn accepted() -> Vec<Fixture> {
    corpus()
        .into_iter()
        .filter(|fixture| fixture.refusal.is_none())
        .collect()
}

/// Applies the patch like the API server, bumping the resourceVersion.
fn apply(vs: &Value, patch: &json_patch::Patch) -> Value {
    let mut next = vs.clone();
    json_patch::patch(&mut next, patch).unwrap();
    let version: u64 = vs["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    next["metadata"]["resourceVersion"] = json!((version + 1).to_string());
    next
}

/// The object without the test route entry, the resourceVersion, and the managed weights
/// (as located in the original).
fn masked(vs: &Value, original: &Location, target: &IstioTarget) -> Value {
    let mut vs = without_test_route(vs, target);
    vs["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    for route in &original.routes {
        for destination in [&route.stable, &route.canary] {
            vs["spec"]["http"][route.index]["route"][destination.index]
                .as_object_mut()
                .unwrap()
                .remove("weight");
        }
    }
    vs
}

fn without_test_route(vs: &Value, target: &IstioTarget) -> Value {
    let mut vs = vs.clone();
    let name = target.test_route_name();
    if let Some(http) = vs.pointer_mut("/spec/http").and_then(Value::as_array_mut) {
        http.retain(|route| route.get("name").and_then(Value::as_str) != Some(name.as_str()));
    }
    vs
}

/// Checks everything that must hold after moving to `desired`.
fn check_state(
    file: &str,
    original: &Value,
    location: &Location,
    target: &IstioTarget,
    now: &Value,
    desired: ManagedRoute,
) {
    assert_eq!(
        masked(now, location, target),
        masked(original, location, target),
        "{file}: something besides the managed weights and the test route changed at {desired:?}"
    );
    assert_eq!(read(now, target).unwrap(), desired, "{file}: read back");
    let bare = without_test_route(now, target);
    for route in &location.routes {
        let canary = u64::from(desired.canary_weight);
        for (destination, weight) in [(&route.stable, 100 - canary), (&route.canary, canary)] {
            let written = &bare["spec"]["http"][route.index]["route"][destination.index]["weight"];
            assert!(
                written == &json!(weight) || (written.is_null() && weight == 0),
                "{file}: route {} destination {} has {written}, wanted {weight}",
                route.index,
                destination.index
            );
        }
    }
    let test_route_at = now["spec"]["http"]
        .as_array()
        .unwrap()
        .iter()
        .position(|r| r["name"] == json!(target.test_route_name()));
    if desired.test_route {
        let first = location.routes[0].index;
        assert_eq!(
            test_route_at,
            Some(first),
            "{file}: the test route goes in front of the first managed route"
        );
        let entry = &now["spec"]["http"][first];
        assert_eq!(entry["route"].as_array().unwrap().len(), 1);
        assert_eq!(entry["route"][0]["weight"], json!(100));
    } else {
        assert_eq!(test_route_at, None, "{file}: test route left behind");
    }
    let again = plan(now, target, desired).unwrap();
    assert!(
        again.0.is_empty(),
        "{file}: a second plan for the same state must write nothing, got {again}"
    );
}

/// Walks 0,10,30,60,100 then rolls back; returns the final object.
fn walk(file: &str, original: &Value, target: &IstioTarget, with_test_route: bool) -> Value {
    let location = locate(original, target).unwrap();
    let mut now = original.clone();
    for weight in [0, 10, 30, 60, 100] {
        let desired = ManagedRoute {
            canary_weight: weight,
            test_route: with_test_route,
        };
        let patch = plan(&now, target, desired).unwrap();
        check_patch_shape(file, &now, &patch);
        now = apply(&now, &patch);
        check_state(file, original, &location, target, &now, desired);
    }
    let rollback = ManagedRoute {
        canary_weight: 0,
        test_route: false,
    };
    let patch = plan(&now, target, rollback).unwrap();
    check_patch_shape(file, &now, &patch);
    now = apply(&now, &patch);
    check_state(file, original, &location, target, &now, rollback);
    now
}

/// A non-empty patch starts with the resourceVersion test, tests every value it replaces,
/// and fails as a whole on an object that changed in between.
fn check_patch_shape(file: &str, vs: &Value, patch: &json_patch::Patch) {
    if patch.0.is_empty() {
        return;
    }
    let first = serde_json::to_value(&patch.0[0]).unwrap();
    assert_eq!(
        first,
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": vs["metadata"]["resourceVersion"]}),
        "{file}"
    );
    let ops = serde_json::to_value(patch).unwrap();
    for op in ops.as_array().unwrap() {
        let path = op["path"].as_str().unwrap();
        match op["op"].as_str().unwrap() {
            "replace" | "remove" => {
                let tested = ops.as_array().unwrap().iter().any(|other| {
                    other["op"] == "test"
                        && (other["path"] == op["path"]
                            || other["path"].as_str() == Some(&format!("{path}/name")))
                });
                assert!(tested, "{file}: {op} is not guarded by a test op");
            }
            "add" | "test" => {}
            other => panic!("{file}: unexpected op {other}"),
        }
    }
    let mut stale = vs.clone();
    stale["metadata"]["resourceVersion"] = json!("999999");
    assert!(
        json_patch::patch(&mut stale, patch).is_err(),
        "{file}: a patch must not apply to a changed object"
    );
}

#[test]
fn corpus_has_at_least_fifteen_accepted_shapes_and_its_refusals() {
    let corpus = corpus();
    let accepted = corpus.iter().filter(|f| f.refusal.is_none()).count();
    assert!(accepted >= 15, "only {accepted} accepted fixtures");
    assert!(corpus.len() - accepted >= 8);
}

#[test]
fn every_step_changes_only_managed_weights_without_test_route() {
    for fixture in accepted() {
        let end = walk(&fixture.file, &fixture.vs, &fixture.target, false);
        assert_rolled_back(&fixture, &end);
    }
}

#[test]
fn every_step_changes_only_managed_weights_and_test_route() {
    for fixture in accepted() {
        let end = walk(&fixture.file, &fixture.vs, &fixture.target, true);
        assert_rolled_back(&fixture, &end);
    }
}

fn assert_rolled_back(fixture: &Fixture, end: &Value) {
    let location = locate(&fixture.vs, &fixture.target).unwrap();
    assert_eq!(
        end["spec"]["http"].as_array().unwrap().len(),
        fixture.vs["spec"]["http"].as_array().unwrap().len(),
        "{}: rollback must remove the test route",
        fixture.file
    );
    assert_eq!(
        masked(end, &location, &fixture.target),
        masked(&fixture.vs, &location, &fixture.target),
        "{}",
        fixture.file
    );
}

#[test]
fn refusals_name_the_virtual_service_and_write_nothing() {
    let refusals: Vec<Fixture> = corpus()
        .into_iter()
        .filter(|f| f.refusal.is_some())
        .collect();
    for fixture in &refusals {
        let refusal = fixture.refusal.as_ref().unwrap();
        let file = &fixture.file;
        let vs_ref = fixture.target.object_ref();
        let check = |error: String| {
            assert!(
                error.contains(&refusal.error),
                "{file}: error {error:?} does not say {:?}",
                refusal.error
            );
            assert!(
                error.contains(&vs_ref),
                "{file}: {error:?} does not name {vs_ref}"
            );
        };
        let step = ManagedRoute {
            canary_weight: 30,
            test_route: false,
        };
        match refusal.on.as_str() {
            "read" => {
                check(read(&fixture.vs, &fixture.target).unwrap_err().to_string());
                check(
                    plan(&fixture.vs, &fixture.target, step)
                        .unwrap_err()
                        .to_string(),
                );
            }
            "read-only" => {
                check(read(&fixture.vs, &fixture.target).unwrap_err().to_string());
                // One write at a consistent weight repairs it (rollback stays possible).
                let patch = plan(&fixture.vs, &fixture.target, step).unwrap();
                let repaired = apply(&fixture.vs, &patch);
                assert_eq!(read(&repaired, &fixture.target).unwrap(), step, "{file}");
            }
            "test-route" => {
                read(&fixture.vs, &fixture.target).unwrap();
                plan(&fixture.vs, &fixture.target, step).unwrap();
                let with_test_route = ManagedRoute {
                    test_route: true,
                    ..step
                };
                check(
                    plan(&fixture.vs, &fixture.target, with_test_route)
                        .unwrap_err()
                        .to_string(),
                );
            }
            other => panic!("{file}: unknown refusal kind {other}"),
        }
    }
}

#[test]
fn an_absent_weight_is_added_not_replaced() {
    let fixture = load(&fixture_dir().join("missing-weights.yaml"));
    let patch = plan(
        &fixture.vs,
        &fixture.target,
        ManagedRoute {
            canary_weight: 10,
            test_route: false,
        },
    )
    .unwrap();
    let ops = serde_json::to_value(&patch).unwrap();
    assert!(ops
        .as_array()
        .unwrap()
        .contains(&json!({"op": "add", "path": "/spec/http/0/route/1/weight", "value": 10})));
}

#[test]
fn test_route_is_scoped_to_the_managed_matches_and_keeps_the_rewrite() {
    let fixture = load(&fixture_dir().join("cors-rewrite.yaml"));
    let desired = ManagedRoute {
        canary_weight: 0,
        test_route: true,
    };
    let now = apply(
        &fixture.vs,
        &plan(&fixture.vs, &fixture.target, desired).unwrap(),
    );
    assert_eq!(
        now["spec"]["http"][0],
        json!({
            "name": "shiftgate-test-api",
            "match": [{
                "uri": {"prefix": "/v1"},
                "headers": {"cookie": {"regex": "^(.*?; ?)?(test=true)(;.*)?$"}}
            }],
            "rewrite": {"uri": "/"},
            "route": [{"destination": {"host": "api-canary", "port": {"number": 8080}}, "weight": 100}]
        })
    );
}

#[test]
fn header_test_route_uses_a_lowercase_header_match() {
    let fixture = load(&fixture_dir().join("short-hosts-policy-namespace-forms.yaml"));
    let desired = ManagedRoute {
        canary_weight: 60,
        test_route: true,
    };
    let now = apply(
        &fixture.vs,
        &plan(&fixture.vs, &fixture.target, desired).unwrap(),
    );
    assert_eq!(
        now["spec"]["http"][0]["match"],
        json!([
            {"uri": {"prefix": "/orders"}, "headers": {"x-version": {"regex": "^v2$"}}},
            {"uri": {"prefix": "/order-history"}, "headers": {"x-version": {"regex": "^v2$"}}}
        ])
    );
}

// ---------------------------------------------------------------------------------------
// Property: unknown fields anywhere survive every step and the rollback byte for byte.

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1.0e6f64..1.0e6).prop_map(|f| json!(f)),
        "[a-zA-Z0-9 /:._-]{0,16}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// JSON pointers of every object in `value`.
fn object_pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            out.push(at.clone());
            for (key, child) in map {
                let token = key.replace('~', "~0").replace('/', "~1");
                object_pointers(child, format!("{at}/{token}"), out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                object_pointers(child, format!("{at}/{index}"), out);
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn unknown_fields_anywhere_survive_every_write(
        fixture_pick in any::<prop::sample::Index>(),
        extras in prop::collection::vec((any::<prop::sample::Index>(), "[a-z]{1,8}", json_value()), 1..8),
        steps in prop::collection::vec((0u8..=100, any::<bool>()), 1..6),
    ) {
        let fixtures = accepted();
        let fixture = &fixtures[fixture_pick.index(fixtures.len())];
        let mut original = fixture.vs.clone();
        let mut pointers = Vec::new();
        object_pointers(&original, String::new(), &mut pointers);
        for (pick, key, value) in &extras {
            let at = &pointers[pick.index(pointers.len())];
            // The `x-proptest-` prefix cannot collide with a field Istio or shiftgate reads.
            original
                .pointer_mut(at)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .insert(format!("x-proptest-{key}"), value.clone());
        }
        let location = locate(&original, &fixture.target).unwrap();
        let mut now = original.clone();
        let rollback = ManagedRoute { canary_weight: 0, test_route: false };
        let sequence = steps
            .iter()
            .map(|(weight, test_route)| ManagedRoute { canary_weight: *weight, test_route: *test_route })
            .chain(std::iter::once(rollback));
        for desired in sequence {
            let patch = plan(&now, &fixture.target, desired).unwrap();
            now = apply(&now, &patch);
            check_state(&fixture.file, &original, &location, &fixture.target, &now, desired);
        }
        prop_assert_eq!(
            serde_json::to_string(&masked(&now, &location, &fixture.target)).unwrap(),
            serde_json::to_string(&masked(&original, &location, &fixture.target)).unwrap()
        );
    }
}

#[test]
fn managed_routes_that_disagree_read_as_the_highest_canary_weight_and_name_the_drift() {
    let fixture = load(&fixture_dir().join("drift-between-routes.yaml"));
    let live = read(&fixture.vs, &fixture.target).unwrap();
    assert_eq!(
        live,
        ManagedRoute {
            canary_weight: 60,
            test_route: false
        }
    );
    let location = locate(&fixture.vs, &fixture.target).unwrap();
    let drift = shiftgate::router::istio::drift(&location, &fixture.target)
        .unwrap()
        .to_string();
    assert!(
        drift.contains("\"web\" (spec.http[0]) canary 30, \"mobile\" (spec.http[1]) canary 60"),
        "{drift}"
    );
    // Rollback stays one write that sets every managed route to 0.
    let rollback = ManagedRoute {
        canary_weight: 0,
        test_route: false,
    };
    let now = apply(
        &fixture.vs,
        &plan(&fixture.vs, &fixture.target, rollback).unwrap(),
    );
    assert_eq!(read(&now, &fixture.target).unwrap(), rollback);
    assert!(shiftgate::router::istio::drift(
        &locate(&now, &fixture.target).unwrap(),
        &fixture.target
    )
    .is_none());
}

#[test]
fn a_stale_test_route_is_replaced_after_a_test_of_its_name() {
    let fixture = load(&fixture_dir().join("seed-subset-blue-green.yaml"));
    let desired = ManagedRoute {
        canary_weight: 10,
        test_route: true,
    };
    let now = apply(
        &fixture.vs,
        &plan(&fixture.vs, &fixture.target, desired).unwrap(),
    );
    let mut changed = fixture.target.clone();
    changed.test_route = Some(TestRoute {
        cookie: Some("beta=1".to_owned()),
        header: None,
    });
    let patch = serde_json::to_value(plan(&now, &changed, desired).unwrap()).unwrap();
    assert_eq!(
        patch.as_array().unwrap()[1],
        json!({"op": "test", "path": "/spec/http/0/name", "value": "shiftgate-test-myapp"})
    );
    assert_eq!(patch.as_array().unwrap()[2]["op"], json!("replace"));
    let patch = plan(&now, &changed, desired).unwrap();
    let now = apply(&now, &patch);
    assert_eq!(
        now["spec"]["http"][0]["match"][0]["headers"]["cookie"]["regex"],
        json!("^(.*?; ?)?(beta=1)(;.*)?$")
    );
    assert_eq!(read(&now, &changed).unwrap(), desired);
}
