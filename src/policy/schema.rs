//! The JSON Schema of a whole policy document (apiVersion, kind, metadata, spec), built
//! from the Rust types with schemars. `shiftgate schema` prints it for editors' YAML
//! language servers, and `policy::structure` checks files against it.

use serde_json::{json, Value};

use super::types::{RolloutSpec, API_VERSION, KIND};

/// The JSON Schema (draft-07, which YAML language servers support best) of a policy file.
pub fn document_schema() -> Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut spec = generator.into_root_schema_for::<RolloutSpec>().to_value();
    standard_formats_only(&mut spec);
    let mut spec = match spec {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    let definitions = spec.remove("definitions").unwrap_or_else(|| json!({}));
    spec.remove("$schema");
    spec.remove("title");
    spec.insert(
        "description".to_owned(),
        json!("What a rollout should do: which route to move, in which steps, judged by which metrics, and what to do when the canary is judged bad."),
    );
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://shiftgate.dev/schemas/rolloutpolicy-v1alpha1.json",
        "title": "RolloutPolicy",
        "description": "A shiftgate rollout policy (file or Kubernetes custom resource).",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": false,
        "properties": {
            "apiVersion": {
                "description": "Always `shiftgate.dev/v1alpha1`.",
                "type": "string",
                "const": API_VERSION
            },
            "kind": {
                "description": "Always `RolloutPolicy`.",
                "type": "string",
                "const": KIND
            },
            "metadata": {
                "description": "Identifies the policy.",
                "type": "object",
                "required": ["name"],
                "additionalProperties": false,
                "properties": {
                    "name": {
                        "description": "Policy name: lowercase letters, digits, `-` and `.`, at most 253 characters (a Kubernetes object name).",
                        "type": "string"
                    },
                    "namespace": {
                        "description": "Kubernetes namespace; also the default namespace of the routed objects. Default `default`.",
                        "type": "string"
                    },
                    "labels": {
                        "description": "Kubernetes labels.",
                        "type": "object",
                        "additionalProperties": { "type": "string" }
                    },
                    "annotations": {
                        "description": "Kubernetes annotations.",
                        "type": "object",
                        "additionalProperties": { "type": "string" }
                    },
                    // Written by the API server: accepted (so `kubectl get -o yaml` output
                    // checks as is) and otherwise ignored.
                    "uid": { "description": "Set by Kubernetes; ignored.", "type": "string" },
                    "resourceVersion": { "description": "Set by Kubernetes; ignored.", "type": "string" },
                    "generation": { "description": "Set by Kubernetes; ignored.", "type": "integer" },
                    "creationTimestamp": { "description": "Set by Kubernetes; ignored.", "type": ["string", "null"] },
                    "deletionTimestamp": { "description": "Set by Kubernetes; ignored.", "type": "string" },
                    "deletionGracePeriodSeconds": { "description": "Set by Kubernetes; ignored.", "type": "integer" },
                    "generateName": { "description": "Set by Kubernetes; ignored.", "type": "string" },
                    "selfLink": { "description": "Set by Kubernetes; ignored.", "type": "string" },
                    "finalizers": { "description": "Set by Kubernetes; ignored.", "type": "array", "items": { "type": "string" } },
                    "ownerReferences": { "description": "Set by Kubernetes; ignored.", "type": "array" },
                    "managedFields": { "description": "Set by Kubernetes; ignored.", "type": "array" }
                }
            },
            "spec": Value::Object(spec),
            "status": {
                "description": "Written by shiftgate (the rollout's progress); ignored when checking files.",
                "type": "object"
            }
        },
        "definitions": definitions
    })
}

/// The `format`s JSON Schema (draft-07 and 2019-09) defines; strict validators such as
/// ajv refuse a schema with any other.
pub const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uri-template",
    "uuid",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// Replaces schemars' own `format`s (`uint32`, `uint16`, `double`, …) by what standard
/// JSON Schema says with them: an integer format becomes its `minimum`/`maximum` (which
/// `policy::structure` checks), a float format says nothing more than `type: number`.
fn standard_formats_only(node: &mut Value) {
    match node {
        Value::Object(map) => {
            let custom = map
                .get("format")
                .and_then(Value::as_str)
                .filter(|f| !STANDARD_FORMATS.contains(f))
                .map(str::to_owned);
            if let Some(format) = custom {
                map.remove("format");
                let (min, max): (Option<i64>, Option<u64>) = match format.as_str() {
                    "uint8" => (Some(0), Some(u8::MAX.into())),
                    "uint16" => (Some(0), Some(u16::MAX.into())),
                    "uint32" => (Some(0), Some(u32::MAX.into())),
                    "uint64" | "uint" => (Some(0), Some(u64::MAX)),
                    "int8" => (Some(i8::MIN.into()), Some(i8::MAX as u64)),
                    "int16" => (Some(i16::MIN.into()), Some(i16::MAX as u64)),
                    "int32" => (Some(i32::MIN.into()), Some(i32::MAX as u64)),
                    "int64" | "int" => (Some(i64::MIN), Some(i64::MAX as u64)),
                    _ => (None, None),
                };
                if let Some(min) = min {
                    map.entry("minimum").or_insert_with(|| json!(min));
                }
                if let Some(max) = max {
                    map.entry("maximum").or_insert_with(|| json!(max));
                }
            }
            map.values_mut().for_each(standard_formats_only);
        }
        Value::Array(items) => items.iter_mut().for_each(standard_formats_only),
        _ => {}
    }
}

/// Every `format` the schema uses, depth first.
pub fn formats(schema: &Value) -> std::collections::BTreeSet<String> {
    let mut found = std::collections::BTreeSet::new();
    collect_formats(schema, &mut found);
    found
}

fn collect_formats(node: &Value, found: &mut std::collections::BTreeSet<String>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(format)) = map.get("format") {
                found.insert(format.clone());
            }
            map.values().for_each(|v| collect_formats(v, found));
        }
        Value::Array(items) => items.iter().for_each(|i| collect_formats(i, found)),
        _ => {}
    }
}

/// Every property name the schema mentions, depth first (for docs completeness tests).
pub fn property_names(schema: &Value) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    collect_names(schema, &mut names);
    names
}

fn collect_names(node: &Value, names: &mut std::collections::BTreeSet<String>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "properties" {
                    if let Value::Object(props) = value {
                        names.extend(props.keys().cloned());
                    }
                }
                collect_names(value, names);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_names(i, names)),
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn covers_the_whole_document() {
        let schema = document_schema();
        let names = property_names(&schema);
        for name in [
            "apiVersion",
            "metadata",
            "steps",
            "virtualService",
            "maxIncrease",
            "timeZone",
        ] {
            assert!(names.contains(name), "{name} missing from the schema");
        }
        // `revision` may be derived (`workloads.revisionFrom`): validation requires it
        // otherwise.
        assert_eq!(schema["properties"]["spec"]["required"][0], json!("router"));
        if std::env::var_os("SHIFTGATE_DUMP_SCHEMA").is_some() {
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
        }
    }
}
