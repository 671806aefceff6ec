//! Target `locate`: the VirtualService locator and planner. Inputs are the corpus of
//! real-world VirtualService shapes (tests/fixtures/virtualservices) mutated field by
//! field, with targets whose hosts, subsets, ports and route names come from the same
//! vocabulary. What must hold: nothing panics, and every patch that `plan` returns
//! applies to the object it was planned for (its `test` operations hold).

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use shiftgate::policy::{Destination, IstioApiVersion, IstioRouter as IstioRouterSpec, TestRoute};
use shiftgate::router::istio::{drift, live_route, locate, plan, IstioTarget};
use shiftgate::router::ManagedRoute;

use super::mutate;

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct LocateCase {
    pub virtual_service: Value,
    pub policy_namespace: String,
    pub virtual_service_ref: String,
    pub routes: Vec<String>,
    pub stable: Destination,
    pub canary: Destination,
    pub cookie: Option<String>,
    pub desired: Vec<(u8, bool)>,
}

const VS_FIELDS: &[&str] = &[
    "http",
    "route",
    "destination",
    "host",
    "subset",
    "port",
    "number",
    "weight",
    "name",
    "match",
    "headers",
    "cookie",
    "regex",
    "exact",
    "prefix",
    "uri",
    "tcp",
    "tls",
    "hosts",
    "gateways",
    "delegate",
    "mirror",
    "resourceVersion",
    "spec",
    "metadata",
    "namespace",
];

fn corpus() -> &'static Vec<Value> {
    static CORPUS: OnceLock<Vec<Value>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/virtualservices");
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        paths.sort();
        let corpus: Vec<Value> = paths
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter_map(|text| serde_yaml_ng::from_str(&text).ok())
            .collect();
        assert!(
            !corpus.is_empty(),
            "no VirtualServices in {}",
            dir.display()
        );
        corpus
    })
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["reviews", "reviews.default", "reviews.default.svc.cluster.local", "myapp", "flaskapp.prod.svc.cluster.local", "flaskapp.stage.svc.cluster.local", "httpbin", "productpage", "ratings", "*"]).prop_map(str::to_owned),
        1 => "[a-z.*-]{0,20}",
    ]
}

fn destination() -> impl Strategy<Value = Destination> {
    (
        host(),
        prop::option::of(
            prop::sample::select(vec!["v1", "v2", "v3", "blue", "green", ""])
                .prop_map(str::to_owned),
        ),
        prop::option::of(prop_oneof![Just(80u16), Just(9080u16), any::<u16>()]),
    )
        .prop_map(|(host, subset, port)| Destination { host, subset, port })
}

pub fn case() -> impl Strategy<Value = LocateCase> {
    (
        prop::sample::select(corpus().clone()),
        mutate::mutations(4),
        prop::sample::select(vec!["default", "prod", "bookinfo", "istio-system"])
            .prop_map(str::to_owned),
        prop_oneof![Just(String::new()), "[a-z]{1,6}/[a-z]{1,6}"],
        prop::collection::vec(
            prop::sample::select(vec![
                "primary",
                "reviews",
                "default",
                "canary-route",
                "shiftgate-test-fuzz",
                "",
            ])
            .prop_map(str::to_owned),
            0..3,
        ),
        destination(),
        destination(),
        prop::option::of(
            prop::sample::select(vec!["test=true", "x", "=", "a=b=c"]).prop_map(str::to_owned),
        ),
        prop::collection::vec((0u8..=100, any::<bool>()), 1..4),
    )
        .prop_map(
            |(
                mut vs,
                mutations,
                policy_namespace,
                vs_ref,
                routes,
                stable,
                canary,
                cookie,
                desired,
            )| {
                mutate::apply(
                    &mut vs,
                    &mutations,
                    &VS_FIELDS
                        .iter()
                        .map(|f| (*f).to_owned())
                        .collect::<Vec<_>>(),
                );
                let name = vs
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("vs")
                    .to_owned();
                LocateCase {
                    virtual_service: vs,
                    policy_namespace,
                    virtual_service_ref: if vs_ref.is_empty() { name } else { vs_ref },
                    routes,
                    stable,
                    canary,
                    cookie,
                    desired,
                }
            },
        )
}

pub fn run(case: &LocateCase) {
    let spec = IstioRouterSpec {
        virtual_service: case.virtual_service_ref.clone(),
        colors: Default::default(),
        routes: case.routes.clone(),
        stable: case.stable.clone(),
        canary: case.canary.clone(),
        api_version: IstioApiVersion::V1,
    };
    let test_route = case.cookie.clone().map(|cookie| TestRoute {
        cookie: Some(cookie),
        header: None,
    });
    let target =
        IstioTarget::from_policy("fuzz", &case.policy_namespace, &spec, test_route.as_ref());
    let vs = &case.virtual_service;
    if let Ok(location) = locate(vs, &target) {
        let _ = live_route(&location, &target).map_err(|e| e.to_string());
        let _ = drift(&location, &target).map(|e| e.to_string());
    }
    for &(canary_weight, test_route) in &case.desired {
        let desired = ManagedRoute {
            canary_weight,
            test_route: test_route && case.cookie.is_some(),
        };
        match plan(vs, &target, desired) {
            Ok(patch) => {
                let mut patched = vs.clone();
                if let Err(e) = json_patch::patch(&mut patched, &patch) {
                    panic!("the planned patch does not apply to the object it was planned for: {e}\npatch: {patch:?}");
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}
