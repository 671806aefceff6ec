//! The rendered install (`kubectl kustomize deploy/`) passes the tools a platform team
//! runs on manifests: kubernetes-validate (the Kubernetes API's own schemas, strict:
//! no unknown field) and checkov (security and reliability checks), with no failure and
//! no skip other than the documented ones, each justified in an inline
//! `checkov.io/skipN` annotation. Both tools come from PyPI, installed by
//! scripts/install-deps into `target/lint-venv` (checkov pins library versions that
//! would otherwise clash with the machine's own Python packages).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The checkov checks deploy/ skips, and where the reason is written.
const DOCUMENTED_SKIPS: &[&str] = &["CKV_K8S_15", "CKV_K8S_38", "CKV_K8S_43"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool of the lint virtualenv (`SHIFTGATE_LINT_VENV`, default `target/lint-venv`).
fn tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("SHIFTGATE_LINT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/lint-venv"));
    let path = venv.join("bin").join(name);
    assert!(
        path.is_file(),
        "{} missing: run scripts/install-deps (it installs checkov and kubernetes-validate \
         from PyPI into target/lint-venv)",
        path.display()
    );
    path
}

fn output(command: &mut Command) -> Output {
    let shown = format!("{command:?}");
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

/// `kubectl kustomize DIR` written to `into`.
fn render(dir: &Path, into: &Path) {
    let out = output(Command::new("kubectl").arg("kustomize").arg(dir));
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed (kubectl: scripts/install-deps): {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(into, &out.stdout).unwrap();
}

#[test]
fn rendered_install_passes_kubernetes_validate_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let rendered = dir.path().join("install.yaml");
    render(&repo().join("deploy"), &rendered);
    let out = output(
        Command::new(tool("kubernetes-validate"))
            .args(["--strict", "--quiet"])
            .arg(&rendered),
    );
    assert!(
        out.status.success(),
        "kubernetes-validate --strict refused the install:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checked with the optional monitoring components and the sharding component, so the
/// ServiceMonitor, the PodMonitor and the shards' Role and replicas are checked too.
#[test]
fn rendered_install_passes_checkov_with_only_documented_skips() {
    let overlay = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let deploy = std::fs::canonicalize(repo().join("deploy")).unwrap();
    for component in ["monitoring", "podmonitor", "sharding"] {
        let path = deploy.join("components").join(component);
        assert!(path.is_dir(), "{} missing", path.display());
    }
    // kustomize refuses absolute paths.
    let root = std::fs::canonicalize(overlay.path()).unwrap();
    let relative = |to: &Path| -> String {
        let from: Vec<_> = root.components().collect();
        let to: Vec<_> = to.components().collect();
        let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
        let mut path = PathBuf::new();
        (common..from.len()).for_each(|_| path.push(".."));
        to[common..].iter().for_each(|c| path.push(c));
        path.display().to_string()
    };
    std::fs::write(
        root.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources: [\"{}\"]\ncomponents: [\"{}\", \"{}\", \"{}\"]\n",
            relative(&deploy),
            relative(&deploy.join("components/monitoring")),
            relative(&deploy.join("components/podmonitor")),
            relative(&deploy.join("components/sharding")),
        ),
    )
    .unwrap();
    // Not tempfile's default `.tmpXXXX`: checkov skips hidden directories.
    let scanned = tempfile::Builder::new()
        .prefix("shiftgate-checkov-")
        .tempdir()
        .unwrap();
    render(&root, &scanned.path().join("install.yaml"));
    let out = output(
        Command::new(tool("checkov"))
            .arg("--directory")
            .arg(scanned.path())
            .args([
                "--framework",
                "kubernetes",
                "--output",
                "json",
                "--skip-download",
            ])
            .env("BC_SKIP_MAPPING", "TRUE"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov gave no JSON report ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let report = match report {
        Value::Array(mut reports) => reports.remove(0),
        single => single,
    };
    let results = &report["results"];
    let failed: Vec<String> = results["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} {} ({})", c["check_id"], c["check_name"], c["resource"]))
        .collect();
    assert!(
        failed.is_empty(),
        "checkov failures:\n{}",
        failed.join("\n")
    );
    let passed = results["passed_checks"].as_array().map_or(0, Vec::len);
    assert!(
        passed > 50,
        "checkov checked almost nothing ({passed} passed)"
    );
    let skipped: BTreeMap<String, String> = results["skipped_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["check_id"].as_str().unwrap_or_default().to_owned(),
                c["check_result"]["suppress_comment"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        skipped.keys().map(String::as_str).collect::<Vec<_>>(),
        DOCUMENTED_SKIPS,
        "checkov skips: {skipped:?}"
    );
    for (id, reason) in &skipped {
        assert!(
            reason.len() > 40,
            "{id} is skipped without a reason: {reason:?}"
        );
    }
    assert!(out.status.success(), "checkov exited with {}", out.status);
}
