//! The alert rules (deploy/prometheus/shiftgate-rules.yaml, and the same groups in the
//! PrometheusRule of deploy/components/alerts) pass `promtool check rules` and fire,
//! under `promtool test rules`, on series taken from a real shiftgate registry: the
//! first rollback after a daemon start, a hold or pause that lasts, an analysis that is
//! only inconclusive, no leader, reconcile errors. And they stay quiet when all is well.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;
use shiftgate::metrics::PolicyRef;
use shiftgate::observe::metrics::{Metrics, RolloutResult, VerdictKind};
use shiftgate::policy::Phase;
use support::scrapes::{promtool_test_rules, Scrapes};

fn rules_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/shiftgate-rules.yaml")
}

fn policy() -> PolicyRef {
    PolicyRef {
        namespace: "shop".to_owned(),
        name: "checkout".to_owned(),
    }
}

/// The `exp_alerts` entry of `alert` firing with `labels` (besides its own), its
/// annotations rendered from the rules file as Prometheus would.
fn firing(alert: &str, labels: &[(&str, &str)]) -> String {
    let rules: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(rules_file()).unwrap()).unwrap();
    let rule = rules["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["alert"].as_str() == Some(alert))
        .unwrap_or_else(|| panic!("no alert {alert}"));
    let mut all: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for (k, v) in rule["labels"].as_mapping().unwrap() {
        all.push((
            k.as_str().unwrap().to_owned(),
            v.as_str().unwrap().to_owned(),
        ));
    }
    let render = |text: &str| {
        labels.iter().fold(text.to_owned(), |text, (k, v)| {
            text.replace(&format!("{{{{ $labels.{k} }}}}"), v)
        })
    };
    let mut entry = String::from("          - exp_labels:\n");
    for (k, v) in &all {
        entry.push_str(&format!("              {k}: {v:?}\n"));
    }
    entry.push_str("            exp_annotations:\n");
    for (k, v) in rule["annotations"].as_mapping().unwrap() {
        entry.push_str(&format!(
            "              {}: {:?}\n",
            k.as_str().unwrap(),
            render(v.as_str().unwrap())
        ));
    }
    entry
}

fn at(minutes: u32, alert: &str, expected: &[String]) -> String {
    let alerts = if expected.is_empty() {
        "        exp_alerts: []\n".to_owned()
    } else {
        format!("        exp_alerts:\n{}", expected.concat())
    };
    format!("      - eval_time: {minutes}m\n        alertname: {alert}\n{alerts}")
}

fn assert_passes(scrapes: &Scrapes, tests: &[String]) {
    let result = promtool_test_rules(&rules_file(), scrapes, &tests.concat());
    assert!(result.passed, "{}", result.output);
}

fn policy_labels() -> [(&'static str, &'static str); 2] {
    [("namespace", "shop"), ("name", "checkout")]
}

#[test]
fn the_rules_pass_promtool_check_rules_and_the_prometheusrule_has_the_same_groups() {
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(rules_file())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let plain: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(rules_file()).unwrap()).unwrap();
    let operator =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/components/alerts/prometheusrule.yaml");
    let operator: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(operator).unwrap()).unwrap();
    assert_eq!(operator["kind"].as_str(), Some("PrometheusRule"));
    assert_eq!(plain["groups"], operator["spec"]["groups"]);
}

#[test]
fn the_first_rollback_after_a_start_fires_and_a_restart_rearms_it() {
    let mut scrapes = Scrapes::default();
    let daemon = Metrics::new();
    daemon.set_leader(true);
    daemon.set_rollout(&policy(), Phase::Progressing, 1, 10);
    scrapes.scrape_times(3, &[("pod-a", &daemon)]);
    daemon.rollout_finished(&policy(), RolloutResult::RolledBack, Some(120.0));
    daemon.set_rollout(&policy(), Phase::RolledBack, 1, 0);
    scrapes.scrape_times(20, &[("pod-a", &daemon)]);
    // The daemon restarts (a new registry, counters from 0) and the next revision rolls
    // back too.
    let restarted = Metrics::new();
    restarted.set_leader(true);
    restarted.set_rollout(&policy(), Phase::Progressing, 1, 10);
    scrapes.scrape_times(2, &[("pod-a", &restarted)]);
    restarted.rollout_finished(&policy(), RolloutResult::RolledBack, Some(60.0));
    scrapes.scrape_times(5, &[("pod-a", &restarted)]);
    let fired = vec![firing("ShiftgateRolloutRolledBack", &policy_labels())];
    assert_passes(
        &scrapes,
        &[
            at(2, "ShiftgateRolloutRolledBack", &[]),
            at(4, "ShiftgateRolloutRolledBack", &fired),
            at(20, "ShiftgateRolloutRolledBack", &[]),
            at(26, "ShiftgateRolloutRolledBack", &fired),
            // A rollback is no reason to page for a missing leader.
            at(26, "ShiftgateNoLeader", &[]),
        ],
    );
}

#[test]
fn a_hold_alerts_after_30_minutes_and_a_pause_after_2_hours_on_the_leader_only() {
    let mut scrapes = Scrapes::default();
    let leader = Metrics::new();
    leader.set_leader(true);
    let held = PolicyRef {
        namespace: "shop".to_owned(),
        name: "cart".to_owned(),
    };
    leader.set_rollout(&held, Phase::Held, 2, 30);
    leader.set_rollout(&policy(), Phase::Paused, 1, 10);
    // A follower whose gauges still say what they said when it last led.
    let follower = Metrics::new();
    follower.set_leader(false);
    follower.set_rollout(&policy(), Phase::Held, 1, 10);
    scrapes.scrape_times(140, &[("pod-a", &leader), ("pod-b", &follower)]);
    let cart = [("namespace", "shop"), ("name", "cart")];
    assert_passes(
        &scrapes,
        &[
            at(20, "ShiftgateRolloutHeldTooLong", &[]),
            at(
                35,
                "ShiftgateRolloutHeldTooLong",
                &[firing("ShiftgateRolloutHeldTooLong", &cart)],
            ),
            at(100, "ShiftgateRolloutPausedTooLong", &[]),
            at(
                125,
                "ShiftgateRolloutPausedTooLong",
                &[firing("ShiftgateRolloutPausedTooLong", &policy_labels())],
            ),
        ],
    );
}

#[test]
fn only_inconclusive_evaluations_for_30_minutes_alert_and_one_pass_resets_it() {
    let mut scrapes = Scrapes::default();
    let daemon = Metrics::new();
    daemon.set_leader(true);
    let judged = PolicyRef {
        namespace: "shop".to_owned(),
        name: "cart".to_owned(),
    };
    daemon.set_rollout(&policy(), Phase::Progressing, 1, 10);
    daemon.set_rollout(&judged, Phase::Progressing, 1, 10);
    scrapes.scrape(&[("pod-a", &daemon)]);
    for minute in 1..60 {
        daemon.analysis_evaluated(&policy(), VerdictKind::Inconclusive);
        let verdict = if minute % 20 == 0 {
            VerdictKind::Pass
        } else {
            VerdictKind::Inconclusive
        };
        daemon.analysis_evaluated(&judged, verdict);
        scrapes.scrape(&[("pod-a", &daemon)]);
    }
    assert_passes(
        &scrapes,
        &[
            at(25, "ShiftgateAnalysisInconclusive", &[]),
            at(
                35,
                "ShiftgateAnalysisInconclusive",
                &[firing("ShiftgateAnalysisInconclusive", &policy_labels())],
            ),
        ],
    );
}

#[test]
fn no_leader_for_5_minutes_alerts() {
    let mut scrapes = Scrapes::default();
    let a = Metrics::new();
    let b = Metrics::new();
    a.set_leader(true);
    scrapes.scrape_times(10, &[("pod-a", &a), ("pod-b", &b)]);
    a.set_leader(false);
    scrapes.scrape_times(10, &[("pod-a", &a), ("pod-b", &b)]);
    assert_passes(
        &scrapes,
        &[
            at(9, "ShiftgateNoLeader", &[]),
            at(13, "ShiftgateNoLeader", &[]),
            at(17, "ShiftgateNoLeader", &[firing("ShiftgateNoLeader", &[])]),
        ],
    );
}

#[test]
fn reconcile_errors_for_15_minutes_alert() {
    let mut scrapes = Scrapes::default();
    let daemon = Metrics::new();
    daemon.set_leader(true);
    scrapes.scrape_times(5, &[("pod-a", &daemon)]);
    for _ in 0..30 {
        daemon.reconcile_failed("StatusConflict");
        scrapes.scrape(&[("pod-a", &daemon)]);
    }
    assert_passes(
        &scrapes,
        &[
            at(10, "ShiftgateReconcileErrors", &[]),
            at(
                30,
                "ShiftgateReconcileErrors",
                &[firing(
                    "ShiftgateReconcileErrors",
                    &[("result", "StatusConflict")],
                )],
            ),
        ],
    );
}
