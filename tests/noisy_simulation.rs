//! Simulations on a scenario's traffic model: the same seed gives the same report, and
//! the shipped noisy scenario behaves as documented.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;

use shiftgate::metrics::PolicyRef;
use shiftgate::policy::parse::parse_file;
use shiftgate::sim::{Outcome, Scenario, SimReport, Simulation};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(policy: &str, scenario: &str, seed: u64) -> SimReport {
    let policy = parse_file(&root().join(policy)).unwrap().remove(0).policy;
    let reference = PolicyRef {
        namespace: policy.metadata.namespace.clone().unwrap_or_default(),
        name: policy.metadata.name.clone().unwrap_or_default(),
    };
    let scenario = Scenario::load(&root().join(scenario)).unwrap();
    Simulation::new(reference, policy.spec, scenario, seed)
        .unwrap()
        .run()
}

const POLICY: &str = "policies/istio-host-canary.yaml";
const NOISY: &str = "scenarios/istio-host-canary-noisy-error-regression.yaml";

#[test]
fn the_same_seed_gives_the_same_report_and_another_seed_other_draws() {
    let first = run(POLICY, NOISY, 11);
    assert_eq!(first, run(POLICY, NOISY, 11));
    let other = run(POLICY, NOISY, 12);
    let requests = |r: &SimReport| -> Vec<Option<f64>> {
        r.timeline
            .iter()
            .filter_map(|e| e.analysis.as_ref().map(|a| a.canary_requests))
            .collect()
    };
    assert_ne!(requests(&first), requests(&other));
}

/// The shipped scenario rolls back on the regression from minute 3 for every seed of a
/// small sweep, never before it starts.
#[test]
fn the_noisy_error_regression_rolls_back_after_its_onset() {
    for seed in 1..=20 {
        let report = run(POLICY, NOISY, seed);
        assert_eq!(report.outcome, Outcome::RolledBack, "seed {seed}");
        let elapsed = report.elapsed.std().as_secs();
        assert!((180..=300).contains(&elapsed), "seed {seed}: {elapsed}s");
    }
}
