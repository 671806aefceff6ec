//! `shiftgate simulate` as a user runs it: the built binary on the shipped policies and
//! scenarios, its exit codes and its output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn simulate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shiftgate"))
        .current_dir(root())
        .arg("simulate")
        .args(args)
        .output()
        .expect("the shiftgate binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `scenarios/<policy-stem>-<case>.yaml` → `policies/<policy-stem>.yaml` (longest stem).
fn policy_for(scenario: &Path) -> PathBuf {
    let stem = scenario.file_stem().unwrap().to_string_lossy().into_owned();
    let mut best: Option<PathBuf> = None;
    for entry in std::fs::read_dir(root().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        let policy_stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        if stem.starts_with(&format!("{policy_stem}-"))
            && best
                .as_ref()
                .is_none_or(|b| b.file_stem().unwrap().len() < policy_stem.len())
        {
            best = Some(path);
        }
    }
    best.unwrap_or_else(|| panic!("no policy in policies/ for scenario {stem}"))
}

fn scenarios() -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(root().join("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    all.sort();
    all
}

fn expected_exit(scenario: &Path) -> i32 {
    let text = std::fs::read_to_string(scenario).unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    match doc["expect"]["outcome"].as_str() {
        Some("promoted") => 0,
        Some("rolledBack" | "aborted") => 1,
        Some("held" | "paused") => 4,
        Some("refused") => 2,
        other => panic!(
            "{}: every shipped scenario states its outcome, got {other:?}",
            scenario.display()
        ),
    }
}

#[test]
fn every_shipped_scenario_meets_its_expectation() {
    let all = scenarios();
    assert!(all.len() >= 5, "at least five scenarios ship");
    for scenario in all {
        let policy = policy_for(&scenario);
        let (code, stdout, stderr) = simulate(&[
            policy.to_str().unwrap(),
            "--scenario",
            scenario.to_str().unwrap(),
        ]);
        assert_eq!(
            code,
            expected_exit(&scenario),
            "{}:\n{stdout}\n{stderr}",
            scenario.display()
        );
        assert!(stdout.contains("outcome: "), "{stdout}");
    }
}

#[test]
fn the_timeline_shows_values_limits_verdicts_and_writes() {
    let (code, stdout, _) = simulate(&[
        "policies/istio-host-canary.yaml",
        "--scenario",
        "scenarios/istio-host-canary-error-regression.yaml",
    ]);
    assert_eq!(code, 1, "{stdout}");
    // The sequential judge's numbers: the ratio, its evidence against what rolls
    // back, and the requests it is based on.
    assert!(stdout.contains("errors-vs-stable"), "{stdout}");
    assert!(stdout.contains("canary errors 11× stable"), "{stdout}");
    assert!(stdout.contains(" of 200 needed to roll back"), "{stdout}");
    assert!(stdout.contains("FAIL"), "{stdout}");
    assert!(
        stdout.contains("write canary 0%, test route off"),
        "{stdout}"
    );
    assert!(stdout.contains("outcome: rolledBack"), "{stdout}");
}

#[test]
fn json_output_is_one_document_and_the_same_seed_gives_the_same_timeline() {
    let args = [
        "policies/istio-host-canary.yaml",
        "--scenario",
        "scenarios/istio-host-canary-good-release.yaml",
        "--seed",
        "42",
        "--output",
        "json",
    ];
    let (code, first, _) = simulate(&args);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(report["outcome"], "promoted");
    assert_eq!(report["seed"], 42);
    assert!(report["timeline"].as_array().is_some_and(|t| !t.is_empty()));
    let (_, second, _) = simulate(&args);
    assert_eq!(first, second);
    let (_, other_seed, _) = simulate(&[
        "policies/istio-host-canary.yaml",
        "--scenario",
        "scenarios/istio-host-canary-good-release.yaml",
        "--seed",
        "43",
        "--output",
        "json",
    ]);
    assert_ne!(first, other_seed, "the seed drives the noise");
}

#[test]
fn an_unmet_expectation_exits_5() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(root().join("scenarios/istio-host-canary-error-regression.yaml"))
            .unwrap()
            .replace("outcome: rolledBack", "outcome: promoted");
    let path = dir.path().join("wrong.yaml");
    std::fs::write(&path, text).unwrap();
    let (code, stdout, stderr) = simulate(&[
        "policies/istio-host-canary.yaml",
        "--scenario",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code, 5, "{stdout}{stderr}");
    assert!(
        stderr.contains("expected outcome promoted, got rolledBack"),
        "{stderr}"
    );
}

#[test]
fn a_bad_scenario_is_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "kind: Scenario\ntrafic: {}\n").unwrap();
    let (code, _, stderr) = simulate(&[
        "policies/istio-host-canary.yaml",
        "--scenario",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("trafic"), "{stderr}");
    let (code, _, stderr) = simulate(&[
        "policies/istio-host-canary.yaml",
        "--scenario",
        "scenarios/does-not-exist.yaml",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("does-not-exist"), "{stderr}");
}
