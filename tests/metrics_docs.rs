//! docs/metrics.md `## Exported metrics` documents exactly the metrics the daemon's
//! registry exports: nothing undocumented, nothing documented that is not served.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::path::Path;

use shiftgate::observe::metrics::Metrics;

/// The metric names in the first column of the section's table.
fn documented() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text
        .find("\n## Exported metrics")
        .unwrap_or_else(|| panic!("{} has no `## Exported metrics` section", path.display()));
    let section = &text[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    section[..end]
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .collect()
}

#[test]
fn every_exported_metric_is_documented_and_vice_versa() {
    let exported: BTreeSet<String> = Metrics::new().exported_names().into_iter().collect();
    let documented = documented();
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    let not_exported: Vec<_> = documented.difference(&exported).collect();
    assert!(
        undocumented.is_empty(),
        "exported but not documented in docs/metrics.md ## Exported metrics: {undocumented:?}"
    );
    assert!(
        not_exported.is_empty(),
        "documented in docs/metrics.md ## Exported metrics but not exported: {not_exported:?}"
    );
    assert!(exported.len() >= 10);
}
