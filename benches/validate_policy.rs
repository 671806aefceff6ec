//! Parsing and validating one example policy (`policies/istio-host-canary.yaml`): the
//! positioned YAML load, the structural walk against the JSON Schema, deserialization
//! and the semantic rules, as `shiftgate check` and the daemon's file loader run them.
//! Results go in docs/benchmarks.md under "Policy validation".

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use shiftgate::policy::parse::{check_str, parse_str};
use shiftgate::policy::schema::document_schema;
use shiftgate::policy::structure::check_structure;
use shiftgate::policy::validate::validate_spec;
use shiftgate::policy::yaml::load_documents;

const EXAMPLE: &str = include_str!("../policies/istio-host-canary.yaml");

fn validate_policy(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_validation");
    group.bench_function("parse_and_validate_istio_host_canary", |b| {
        b.iter(|| {
            let check = check_str("istio-host-canary.yaml", black_box(EXAMPLE));
            assert!(!check.has_errors());
            check
        })
    });
    group.bench_function("load_positioned_yaml", |b| {
        b.iter(|| load_documents(black_box(EXAMPLE)))
    });
    let schema = document_schema();
    let documents = match load_documents(EXAMPLE) {
        Ok(documents) => documents,
        Err(e) => panic!("the example must be YAML: {e}"),
    };
    group.bench_function("structural_walk", |b| {
        b.iter(|| check_structure(black_box(&documents[0].value), &schema))
    });
    let policies = match parse_str("istio-host-canary.yaml", EXAMPLE) {
        Ok(policies) => policies,
        Err(diagnostics) => panic!("the example must be valid: {diagnostics:?}"),
    };
    let spec = &policies[0].policy.spec;
    group.bench_function("validate_spec_only", |b| {
        b.iter(|| validate_spec(black_box(spec)))
    });
    group.finish();
}

criterion_group!(benches, validate_policy);
criterion_main!(benches);
