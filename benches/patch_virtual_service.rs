//! Planning and applying one step's JSON Patch on a 10-route VirtualService: the work the
//! Istio router does on every write, minus the network; and reading it from the watch
//! cache, which keeps it as JSON text (`watch_cache::JsonText`) and parses it on every read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use shiftgate::policy::{Destination, IstioApiVersion, IstioRouter as IstioRouterSpec, TestRoute};
use shiftgate::router::istio::{plan, IstioTarget};
use shiftgate::router::watch_cache::JsonText;
use shiftgate::router::ManagedRoute;

/// Ten http routes with matches, retries, timeouts and headers; routes `web` and `mobile`
/// are managed, the others route elsewhere.
fn ten_route_virtual_service() -> Value {
    let mut http = Vec::new();
    for index in 0..10 {
        let (name, destinations) = match index {
            3 => ("web", vec![("checkout", 100), ("checkout-canary", 0)]),
            7 => ("mobile", vec![("checkout", 100), ("checkout-canary", 0)]),
            _ => ("other", vec![("backend", 100)]),
        };
        let route: Vec<Value> = destinations
            .into_iter()
            .map(|(host, weight)| {
                json!({"destination": {"host": host, "port": {"number": 8080}}, "weight": weight})
            })
            .collect();
        http.push(json!({
            "name": if name == "other" { format!("other-{index}") } else { name.to_owned() },
            "match": [{"uri": {"prefix": format!("/path-{index}")}, "headers": {"x-tenant": {"exact": "a"}}}],
            "timeout": "3s",
            "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": "5xx"},
            "headers": {"request": {"set": {"x-route": format!("r{index}")}}},
            "route": route,
        }));
    }
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "checkout", "namespace": "shop", "resourceVersion": "42",
                     "labels": {"app": "checkout"}, "annotations": {"team": "payments"}},
        "spec": {"hosts": ["checkout.example.com"], "gateways": ["public"], "http": http}
    })
}

fn bench(c: &mut Criterion) {
    let vs = ten_route_virtual_service();
    let spec = IstioRouterSpec {
        virtual_service: "checkout".to_owned(),
        colors: Default::default(),
        routes: vec!["web".to_owned(), "mobile".to_owned()],
        stable: Destination {
            host: "checkout".to_owned(),
            subset: None,
            port: None,
        },
        canary: Destination {
            host: "checkout-canary".to_owned(),
            subset: None,
            port: None,
        },
        api_version: IstioApiVersion::V1,
    };
    let test_route = TestRoute {
        cookie: Some("test=true".to_owned()),
        header: None,
    };
    let target = IstioTarget::from_policy("checkout", "shop", &spec, Some(&test_route));
    let step = ManagedRoute {
        canary_weight: 30,
        test_route: true,
    };

    c.bench_function("patch_virtual_service/plan", |b| {
        b.iter(|| plan(std::hint::black_box(&vs), &target, step).unwrap())
    });
    c.bench_function("patch_virtual_service/plan_and_apply", |b| {
        b.iter(|| {
            let patch = plan(std::hint::black_box(&vs), &target, step).unwrap();
            let mut next = vs.clone();
            json_patch::patch(&mut next, &patch).unwrap();
            next
        })
    });
    let text = JsonText::of(&vs);
    c.bench_function("patch_virtual_service/read_cached_text", |b| {
        b.iter(|| std::hint::black_box(&text).parse().unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
