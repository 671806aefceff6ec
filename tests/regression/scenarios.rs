//! Issue "judges" §4 and issue "first hour" §4: what a scenario file scripts and how
//! its mistakes are reported.

use shiftgate::metrics::PolicyRef;
use shiftgate::policy::parse::parse_str;
use shiftgate::policy::Duration;
use shiftgate::sim::{Scenario, Simulation};

/// Interval 30s but a 2-minute window: every query, `minRequests`' count included,
/// looks back 2 minutes.
const POLICY: &str = "apiVersion: shiftgate.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: shop, namespace: prod }
spec:
  revision: v2
  router:
    istio:
      virtualService: prod/shop
      stable: { host: shop.prod.svc.cluster.local }
      canary: { host: shop.stage.svc.cluster.local }
  steps: [{ weight: 20, hold: 10m }, 100]
  analysis:
    interval: 30s
    window: 2m
    minRequests: 10
    metrics:
      - { name: error-rate, template: istio-error-rate, max: 0.5 }
";

fn simulation(scenario: &str) -> Simulation {
    let policy = parse_str("policy.yaml", POLICY).unwrap().remove(0).policy;
    let reference = PolicyRef {
        namespace: "prod".into(),
        name: "shop".into(),
    };
    let scenario = Scenario::parse(scenario, "scenario.yaml").unwrap();
    Simulation::new(reference, policy.spec, scenario, 7).unwrap()
}

/// (offset of the evaluation, canary requests `minRequests` was compared with).
fn min_request_counts(
    sim: &Simulation,
    start: shiftgate::policy::Timestamp,
) -> Vec<(Duration, f64)> {
    sim.timeline()
        .iter()
        .filter_map(|e| e.analysis.as_ref())
        .filter_map(|a| {
            let offset = Duration::from((a.at - start).to_std().ok()?);
            Some((offset, a.canary_requests?))
        })
        .collect()
}

/// The canary request count that `minRequests` sees was the load over `interval`, not
/// over `window`, and was the same noiseless number at every evaluation, whatever the
/// metrics' values did.
#[test]
fn min_requests_count_ignores_window_and_has_no_noise() {
    // Scripted load without noise: 50 requests/s, 20 % on the canary, over 2 minutes.
    let mut sim = simulation("kind: Scenario\nmaxDuration: 5m\ntraffic: { requestsPerSecond: 50 }\nmetrics:\n  error-rate: { canary: [{ value: 0.001 }] }\n");
    let start = sim.now();
    while sim.tick() {}
    let counts = min_request_counts(&sim, start);
    assert!(!counts.is_empty());
    for (at, count) in &counts {
        assert_eq!(*count, 50.0 * 0.2 * 120.0, "evaluation at {at}");
    }

    // A traffic model: the count is the sum of the canary's Poisson draws over the
    // same 2-minute window, so it varies from one evaluation to the next.
    let mut sim = simulation(
        "kind: Scenario\nmaxDuration: 8m\ntraffic:\n  requestsPerSecond: 50\n  scrapeInterval: 15s\n  stable: { errorRate: 0.01, latency: { medianMs: 100, sigma: 0.5 } }\n",
    );
    let start = sim.now();
    while sim.tick() {}
    let scrapes = sim.scrapes();
    let counts = min_request_counts(&sim, start);
    assert!(counts.len() >= 10, "{counts:?}");
    for (at, count) in &counts {
        let from = Duration::from(at.std().saturating_sub(std::time::Duration::from_secs(120)));
        let drawn: u64 = scrapes
            .iter()
            .filter(|s| s.end > from && s.end <= *at)
            .map(|s| s.canary.requests)
            .sum();
        assert_eq!(*count, drawn as f64, "evaluation at {at}");
    }
    let distinct: std::collections::BTreeSet<u64> = counts.iter().map(|(_, c)| *c as u64).collect();
    assert!(distinct.len() > 3, "no noise: {counts:?}");
}

/// A mistake in a scenario file was reported as "scenario X is invalid: …" without the
/// line, column and field path every policy error carries.
#[test]
fn scenario_errors_carry_file_line_column_and_field_path() {
    let wrong_kind = "kind: Scenario\noutages:\n  - { from: 1m, kind: bogus }\n";
    let e = Scenario::parse(wrong_kind, "s.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("s.yaml:3:17: outages[0].kind: unknown variant `bogus`"),
        "{e}"
    );

    let too_heavy = "kind: Scenario\ndrift:\n  - at: 1m\n    canaryWeight: 150\n";
    let e = Scenario::parse(too_heavy, "s.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("s.yaml:4:5: drift[0].canaryWeight: 150 is more than 100"),
        "{e}"
    );

    let misspelt = "kind: Scenario\nmetrics:\n  x:\n    canary: [{ from: 1m, vale: 2 }]\n";
    let e = Scenario::parse(misspelt, "s.yaml").unwrap_err().to_string();
    assert!(
        e.starts_with("s.yaml:4:26: metrics.x.canary[0].vale: unknown field `vale`"),
        "{e}"
    );
}
