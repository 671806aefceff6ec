//! Series for `promtool test rules` taken from shiftgate's own exposition: the test
//! drives a real [`Metrics`] registry and "scrapes" it once a minute, so the alert rules
//! are tested against series shaped exactly as the daemon exports them (names, labels,
//! the 0 a counter starts at), plus the `job` and `instance` labels Prometheus adds.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use shiftgate::observe::exposition::Format;
use shiftgate::observe::metrics::Metrics;

/// The scrapes of one or more replicas, one column per minute.
#[derive(Default)]
pub struct Scrapes {
    /// series (as a PromQL selector) → its value at each scrape (`None`: absent).
    series: BTreeMap<String, Vec<Option<String>>>,
    scrapes: usize,
}

impl Scrapes {
    /// Records one scrape of each `(instance, registry)` at the next minute. Process
    /// metrics are left out (their values are this test process's, not a daemon's).
    pub fn scrape(&mut self, replicas: &[(&str, &Metrics)]) {
        for (instance, metrics) in replicas {
            let text = metrics.encode_as(Format::Text).unwrap();
            for line in text.lines() {
                if line.starts_with('#') || line.starts_with("process_") || line.is_empty() {
                    continue;
                }
                let (series, value) = line.rsplit_once(' ').unwrap();
                let series = with_target_labels(series, instance);
                let column = self.series.entry(series).or_default();
                column.resize(self.scrapes, None);
                column.push(Some(value.to_owned()));
            }
        }
        self.scrapes += 1;
        for column in self.series.values_mut() {
            column.resize(self.scrapes, None);
        }
    }

    /// `n` more scrapes of the same replicas (nothing changes in between).
    pub fn scrape_times(&mut self, n: usize, replicas: &[(&str, &Metrics)]) {
        for _ in 0..n {
            self.scrape(replicas);
        }
    }

    /// The `input_series` of a promtool test file (1m interval).
    pub fn input_series(&self) -> String {
        let mut yaml = String::new();
        for (series, values) in &self.series {
            let values: Vec<&str> = values.iter().map(|v| v.as_deref().unwrap_or("_")).collect();
            yaml.push_str(&format!(
                "      - series: '{series}'\n        values: '{}'\n",
                values.join(" ")
            ));
        }
        yaml
    }
}

fn with_target_labels(series: &str, instance: &str) -> String {
    let target = format!("instance=\"{instance}\",job=\"shiftgate\"");
    match series.strip_suffix('}') {
        Some(open) => format!("{open},{target}}}"),
        None => format!("{series}{{{target}}}"),
    }
}

/// The outcome of `promtool test rules` on `tests` (the body of one `tests:` entry
/// list, already indented) against `rules`.
pub struct RuleTest {
    pub passed: bool,
    pub output: String,
}

/// Runs `promtool test rules` with `scrapes` as the input series and `alert_tests` as
/// the `alert_rule_test` entries (YAML, indented by 6 spaces).
pub fn promtool_test_rules(rules: &Path, scrapes: &Scrapes, alert_tests: &str) -> RuleTest {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("test.yaml");
    let text = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{}    alert_rule_test:\n{}",
        rules.display(),
        scrapes.input_series(),
        alert_tests
    );
    std::fs::write(&file, &text).unwrap();
    let output = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool (scripts/install-deps installs it): {e}"));
    RuleTest {
        passed: output.status.success(),
        output: format!(
            "{}{}\n--- test file ---\n{text}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}
