//! Regression tests: see tests/regression.rs.
//!
//! Issue "operate" §1 (image) and §2 (install): what `kubectl apply -k deploy/` gets a
//! platform team. The image itself is built and run by tests/image.rs; the rendered
//! install is linted with kubernetes-validate and checkov by tests/deploy_lint.rs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use serde_json::Value;
use shiftgate::build_info::{COMMIT, VERSION};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// `kubectl kustomize DIR` (kubectl from scripts/install-deps), as JSON documents.
fn kustomize(dir: &Path) -> Vec<Value> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("kubectl not found ({e}): run scripts/install-deps"));
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    yaml_documents(&String::from_utf8_lossy(&output.stdout))
}

fn rendered_install() -> Vec<Value> {
    kustomize(&repo().join("deploy"))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("kubectl kustomize deploy/ renders no {kind} {name}"))
}

fn crd_version() -> Value {
    let crd: Value = serde_yaml_ng::from_str(&read("deploy/crd.yaml")).unwrap();
    crd["spec"]["versions"][0].clone()
}

#[test]
fn an_image_is_built_by_a_dockerfile_or_by_scripts_image_without_docker() {
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("FROM ") && dockerfile.contains("USER 65532"));
    let script = repo().join("scripts/image");
    let mode = std::fs::metadata(&script)
        .unwrap_or_else(|e| panic!("no scripts/image: {e}"))
        .permissions();
    assert!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o111 != 0,
        "scripts/image is not executable"
    );
    let help = Command::new(&script).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--binary"));
}

#[test]
fn deploy_references_the_versioned_image_not_latest() {
    let deployment = find(&rendered_install(), "Deployment", "shiftgate").clone();
    let image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        image,
        format!("shiftgate:{VERSION}"),
        "the image scripts/image tags"
    );
}

#[test]
fn readme_says_how_to_build_push_and_point_kustomize_at_the_image() {
    let readme = read("README.md");
    for needle in [
        "scripts/image",
        "docker build",
        "skopeo copy",
        "kustomize edit set image shiftgate=",
    ] {
        assert!(
            readme.contains(needle),
            "README.md does not mention {needle}"
        );
    }
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let output = Command::new(env!("CARGO_BIN_EXE_shiftgate"))
        .arg("--version")
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(line, format!("shiftgate {VERSION} (commit {COMMIT})"));
    // Built in a git checkout, the commit is known.
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo())
        .output()
        .unwrap();
    if head.status.success() {
        let head = String::from_utf8_lossy(&head.stdout);
        assert!(
            head.starts_with(COMMIT),
            "--version says commit {COMMIT}, the checkout is at {head}"
        );
    }
}

#[test]
fn crd_is_in_the_all_and_shiftgate_categories() {
    let crd: Value = serde_yaml_ng::from_str(&read("deploy/crd.yaml")).unwrap();
    assert_eq!(
        crd["spec"]["names"]["categories"],
        serde_json::json!(["all", "shiftgate"])
    );
}

#[test]
fn crd_has_wide_columns_for_reason_message_and_last_transition() {
    let version = crd_version();
    let wide: Vec<(String, String)> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["priority"].as_i64().unwrap_or(0) > 0)
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["jsonPath"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("Reason", ".status.reason"),
        ("Message", ".status.message"),
        ("Last Transition", ".status.history[-1:].at"),
    ]
    .map(|(n, p)| (n.to_owned(), p.to_owned()));
    assert_eq!(wide, expected);
}

/// Every field's path without a description, depth first.
fn undescribed(node: &Value, path: &str, missing: &mut Vec<String>) {
    if let Some(Value::Object(properties)) = node.get("properties") {
        for (name, child) in properties {
            let at = format!("{path}.{name}");
            if child
                .get("description")
                .and_then(Value::as_str)
                .is_none_or(|d| d.trim().is_empty())
            {
                missing.push(at.clone());
            }
            undescribed(child, &at, missing);
        }
    }
    if let Some(items) = node.get("items") {
        undescribed(items, &format!("{path}[*]"), missing);
    }
    if let Some(extra @ Value::Object(_)) = node.get("additionalProperties") {
        undescribed(extra, &format!("{path}{{*}}"), missing);
    }
}

#[test]
fn every_crd_field_has_a_description_for_kubectl_explain() {
    let version = crd_version();
    let mut missing = Vec::new();
    undescribed(&version["schema"]["openAPIV3Schema"], "", &mut missing);
    assert!(
        missing.is_empty(),
        "`kubectl explain rolloutpolicy` shows nothing for these fields; add a doc comment \
         to the Rust field (src/policy/types.rs, src/policy/status.rs) and regenerate with \
         `cargo run -- crd > deploy/crd.yaml`:\n{}",
        missing.join("\n")
    );
}

#[test]
fn install_has_a_pod_disruption_budget_for_the_two_replicas() {
    let objects = rendered_install();
    let pdb = find(&objects, "PodDisruptionBudget", "shiftgate");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let deployment = find(&objects, "Deployment", "shiftgate");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(deployment["spec"]["replicas"], 2);
}

#[test]
fn the_two_replicas_are_spread_across_nodes() {
    let objects = rendered_install();
    let pod = &find(&objects, "Deployment", "shiftgate")["spec"]["template"]["spec"];
    let keys: BTreeSet<&str> = pod["topologySpreadConstraints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["topologyKey"].as_str().unwrap())
        .collect();
    assert!(keys.contains("kubernetes.io/hostname"), "{keys:?}");
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
            ["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
}

#[test]
fn namespace_enforces_the_restricted_pod_security_standard() {
    let objects = rendered_install();
    let labels = &find(&objects, "Namespace", "shiftgate")["metadata"]["labels"];
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(
            labels[format!("pod-security.kubernetes.io/{mode}")],
            "restricted",
            "{mode}"
        );
    }
}

#[test]
fn pods_carry_prometheus_scrape_annotations() {
    let objects = rendered_install();
    let deployment = find(&objects, "Deployment", "shiftgate");
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    let port = annotations["prometheus.io/port"].as_str().unwrap();
    let ports = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert_eq!(ports[0]["containerPort"].to_string(), port);
}

/// `to` relative to the directory `from` (both absolute): kustomize refuses absolute paths.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    to[common..].iter().for_each(|c| path.push(c));
    path
}

/// An overlay of deploy/ with one component, rendered by the real kustomize.
fn with_component(component: &str) -> Vec<Value> {
    let overlay = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = std::fs::canonicalize(overlay.path()).unwrap();
    let deploy = std::fs::canonicalize(repo().join("deploy")).unwrap();
    std::fs::write(
        root.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources: [\"{}\"]\ncomponents: [\"{}\"]\n",
            relative(&root, &deploy).display(),
            relative(&root, &deploy.join("components").join(component)).display()
        ),
    )
    .unwrap();
    kustomize(&root)
}

#[test]
fn optional_components_add_a_service_monitor_or_a_pod_monitor() {
    let plain = rendered_install();
    assert!(
        !plain
            .iter()
            .any(|o| o["apiVersion"] == "monitoring.coreos.com/v1"),
        "the base install needs no Prometheus Operator CRDs"
    );
    let service = find(&plain, "Service", "shiftgate").clone();
    let objects = with_component("monitoring");
    let monitor = find(&objects, "ServiceMonitor", "shiftgate");
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][k], v, "Service label {k}");
    }
    let objects = with_component("podmonitor");
    let monitor = find(&objects, "PodMonitor", "shiftgate");
    assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["port"], "http");
}

#[test]
fn rolloutpolicies_are_aggregated_into_view_edit_and_admin() {
    let objects = rendered_install();
    for (role, verbs) in [
        ("view", &["get", "list", "watch"][..]),
        (
            "edit",
            &[
                "get",
                "list",
                "watch",
                "create",
                "update",
                "patch",
                "delete",
                "deletecollection",
            ][..],
        ),
        (
            "admin",
            &[
                "get",
                "list",
                "watch",
                "create",
                "update",
                "patch",
                "delete",
                "deletecollection",
            ][..],
        ),
    ] {
        let aggregated = objects
            .iter()
            .find(|o| {
                o["kind"] == "ClusterRole"
                    && o["metadata"]["labels"]
                        [format!("rbac.authorization.k8s.io/aggregate-to-{role}")]
                        == "true"
            })
            .unwrap_or_else(|| panic!("no ClusterRole aggregated to {role}"));
        let granted: BTreeSet<&str> = aggregated["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x == "rolloutpolicies")
            })
            .flat_map(|r| {
                r["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
            })
            .collect();
        assert_eq!(granted, verbs.iter().copied().collect(), "{role}");
        // Only the daemon writes status.
        for rule in aggregated["rules"].as_array().unwrap() {
            if rule["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == "rolloutpolicies/status")
            {
                let verbs: Vec<&str> = rule["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                assert_eq!(verbs, ["get", "list", "watch"], "{role} on status");
            }
        }
    }
}

#[test]
fn the_daemon_logs_json_by_default_in_deploy() {
    let objects = rendered_install();
    let container =
        &find(&objects, "Deployment", "shiftgate")["spec"]["template"]["spec"]["containers"][0];
    let format = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SHIFTGATE_LOG_FORMAT")
        .map(|e| e["value"].clone());
    assert_eq!(format, Some(Value::from("json")));
}
