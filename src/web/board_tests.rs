#![allow(clippy::unwrap_used)]

use super::*;
use crate::policy::status::AnalysisSummary;

fn spec() -> RolloutSpec {
    serde_json::from_value(serde_json::json!({
        "revision": "v2",
        "router": { "envoy": { "routesFile": "/r.yaml", "adminAddress": "127.0.0.1:1",
                               "stableCluster": "s", "canaryCluster": "c" } },
        "steps": [0, 50, 100],
        "analysis": {
            "interval": "1s",
            "metrics": [
                { "name": "error-rate", "query": "e", "max": 0.05 },
                { "name": "latency", "query": "l", "compare": { "maxIncrease": 10, "maxRatio": 1.5 } },
            ],
        },
    }))
    .unwrap()
}

fn at(second: i64) -> Timestamp {
    chrono::DateTime::from_timestamp(1_767_607_200 + second, 0).unwrap()
}

fn status(revision: &str, weight: u8, analysed_at: Option<i64>) -> RolloutStatus {
    RolloutStatus {
        revision: Some(revision.to_owned()),
        phase: Phase::Progressing,
        canary_weight: weight,
        last_analysis: analysed_at.map(|second| AnalysisSummary {
            at: at(second),
            verdict: VerdictKind::Pass,
            reason: "Pass".into(),
            message: "ok".to_owned(),
            canary_requests: None,
            metrics: vec![MetricSummary {
                name: "latency".to_owned(),
                canary: Some(12.0),
                stable: Some(10.0),
                verdict: VerdictKind::Pass,
                reason: "Pass".into(),
                message: "ok".to_owned(),
                evidence: None,
            }],
        }),
        ..RolloutStatus::default()
    }
}

fn policy(name: &str) -> PolicyRef {
    PolicyRef {
        namespace: "shop".to_owned(),
        name: name.to_owned(),
    }
}

#[test]
fn samples_are_moves_and_evaluations_and_capped() {
    let board = Board::new();
    let checkout = policy("checkout");
    // The same weight without an evaluation is no sample: a run ticks 4 times a second.
    board.record(&checkout, &spec(), &status("v2", 0, None), false, at(0));
    board.record(&checkout, &spec(), &status("v2", 0, None), false, at(1));
    board.record(&checkout, &spec(), &status("v2", 50, None), false, at(2));
    assert_eq!(board.detail("shop", "checkout").unwrap().samples.len(), 2);
    for second in 0..(MAX_SAMPLES as i64 + 10) {
        board.record(
            &checkout,
            &spec(),
            &status("v2", 50, Some(second)),
            true,
            at(second),
        );
    }
    let detail = board.detail("shop", "checkout").unwrap();
    assert_eq!(detail.samples.len(), MAX_SAMPLES);
    let last = detail.samples.last().unwrap();
    assert_eq!(last.at, at(MAX_SAMPLES as i64 + 9));
    // Stable 10: the tighter of 10 + 10 and 10 × 1.5.
    assert_eq!(last.metrics[0].upper, Some(15.0));
    assert_eq!(detail.row.last_verdict, Some(VerdictKind::Pass));
}

#[test]
fn a_new_revision_starts_a_new_timeline() {
    let board = Board::new();
    let checkout = policy("checkout");
    board.record(&checkout, &spec(), &status("v2", 50, Some(0)), true, at(0));
    board.record(&checkout, &spec(), &status("v3", 0, None), false, at(1));
    let detail = board.detail("shop", "checkout").unwrap();
    assert_eq!(detail.samples.len(), 1);
    assert_eq!(detail.row.revision.as_deref(), Some("v3"));
}

#[test]
fn the_least_recently_updated_rollout_makes_room() {
    let board = Board::new();
    for i in 0..MAX_ROLLOUTS {
        board.record(
            &policy(&format!("p{i}")),
            &spec(),
            &status("v2", 0, None),
            false,
            at(0),
        );
    }
    // p0 is updated again: p1 is now the least recent.
    board.record(
        &policy("p0"),
        &spec(),
        &status("v2", 20, None),
        false,
        at(1),
    );
    board.record(
        &policy("new"),
        &spec(),
        &status("v2", 0, None),
        false,
        at(2),
    );
    let rows = board.rows();
    assert_eq!(rows.len(), MAX_ROLLOUTS);
    assert!(rows.iter().any(|r| r.name == "p0"));
    assert!(rows.iter().any(|r| r.name == "new"));
    assert!(!rows.iter().any(|r| r.name == "p1"));
    board.forget(&policy("new"));
    assert!(board.detail("shop", "new").is_none());
}

#[tokio::test]
async fn linger_waits_for_a_watching_page_only() {
    let board = Board::new();
    let checkout = policy("checkout");
    board.record(&checkout, &spec(), &status("v2", 0, None), false, at(0));
    let limit = std::time::Duration::from_secs(5);
    // Nobody polls: no wait.
    let started = tokio::time::Instant::now();
    board.linger(limit).await;
    assert!(started.elapsed() < std::time::Duration::from_millis(100));
    // A page polled, then the rollout moved: the wait ends when the page fetches again.
    board.detail("shop", "checkout");
    board.record(&checkout, &spec(), &status("v2", 50, None), false, at(1));
    let page = board.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        page.detail("shop", "checkout");
    });
    let started = tokio::time::Instant::now();
    board.linger(limit).await;
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(300) && waited < limit,
        "{waited:?}"
    );
}
