//! The structural check: a walk over a plain policy value against the JSON Schema from
//! `policy::schema`, collecting every unknown field (with the nearest known name), wrong
//! type, missing field, value out of range and unknown enum value at once, each at its
//! field path. serde would stop at the first of them; this reports them all.
//!
//! It understands the subset of JSON Schema that schemars emits for the policy types:
//! `$ref`, `allOf`, `anyOf`/`oneOf`, `type`, `const`, `enum`, `properties`, `required`,
//! `additionalProperties`, `items`, `minimum`/`maximum` and integer `format`s.

use serde_json::Value;

use super::diagnostic::{index, join, Issue};
use super::duration::Duration;

/// Checks `value` against `schema` (a root schema holding its `definitions`).
pub fn check_structure(value: &Value, schema: &Value) -> Vec<Issue> {
    check_structure_detailed(value, schema).issues
}

/// The structural issues, and which of them are unknown fields.
#[derive(Clone, Debug, Default)]
pub struct Structure {
    pub issues: Vec<Issue>,
    /// `(parent path, key)` of every unknown field; each also has an issue.
    pub unknown_fields: Vec<(String, String)>,
    /// Every other node the walk rejected (wrong type, value, range, duration), by path.
    pub rejected: Vec<String>,
    /// Every required field that is not written, by path (`spec.revision`).
    pub missing: Vec<String>,
}

/// Like [`check_structure`], also telling which nodes were rejected or are missing, so
/// the rest of the document can still be judged (see `policy::partial`).
pub fn check_structure_detailed(value: &Value, schema: &Value) -> Structure {
    let mut walker = Walker::new(schema);
    walker.walk(value, schema, "");
    Structure {
        issues: walker.issues,
        unknown_fields: walker.unknown_fields,
        rejected: walker.rejected,
        missing: walker.missing,
    }
}

/// The schema definition that gets a dedicated check: durations are parsed for real, so
/// the message is the parser's and not a regular expression.
const DURATION_REF: &str = "#/definitions/Duration";

struct Walker<'a> {
    root: &'a Value,
    issues: Vec<Issue>,
    unknown_fields: Vec<(String, String)>,
    rejected: Vec<String>,
    missing: Vec<String>,
}

impl<'a> Walker<'a> {
    fn new(root: &'a Value) -> Self {
        Walker {
            root,
            issues: Vec::new(),
            unknown_fields: Vec::new(),
            rejected: Vec::new(),
            missing: Vec::new(),
        }
    }

    /// Reports the node at `path` as unusable: later checks must not read it.
    fn reject(&mut self, issue: Issue) {
        self.rejected.push(issue.path.clone());
        self.issues.push(issue);
    }

    fn walk(&mut self, value: &Value, schema: &'a Value, path: &str) {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            if reference == DURATION_REF {
                self.duration(value, path);
                return;
            }
            let pointer = reference.trim_start_matches('#');
            if let Some(target) = self.root.pointer(pointer) {
                self.walk(value, target, path);
            }
            return;
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for part in all {
                self.walk(value, part, path);
            }
        }
        if let Some(alternatives) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Value::as_array)
        {
            self.alternatives(value, alternatives, path);
            return;
        }
        if let Some(types) = schema.get("type") {
            if !type_matches(value, types) {
                self.reject(type_mismatch(path, value, types));
                return;
            }
        }
        if let Some(expected) = schema.get("const") {
            if value != expected {
                self.reject(
                    Issue::error(
                        path,
                        format!("must be `{}`, found {}", plain(expected), describe(value)),
                    )
                    .with_hint(format!("write `{}`", plain(expected))),
                );
                return;
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                self.reject(not_one_of(path, value, allowed));
                return;
            }
        }
        if value.is_string() && path.ends_with(".hold") {
            // Step objects come from a hand-written schema (step.rs) that types `hold` as a
            // plain string; it is a duration all the same.
            self.duration(value, path);
        }
        match value {
            Value::Number(_) => self.range(value, schema, path),
            Value::Object(map) => self.object(map, schema, path),
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.walk(item, item_schema, &index(path, i));
                    }
                }
            }
            _ => {}
        }
    }

    fn duration(&mut self, value: &Value, path: &str) {
        match value {
            Value::String(text) => {
                if let Err(e) = text.parse::<Duration>() {
                    self.reject(
                        Issue::error(
                            path,
                            format!("`{}` is not a duration: {}", e.input, e.reason),
                        )
                        .with_hint(super::duration::HINT),
                    );
                }
            }
            Value::Number(n) => self.reject(
                Issue::error(path, format!("expected a duration, found the number {n}"))
                    .with_hint(format!("add a unit, e.g. `{n}s` or `{n}m`")),
            ),
            other => self.reject(
                Issue::error(
                    path,
                    format!("expected a duration, found {}", describe(other)),
                )
                .with_hint(super::duration::HINT),
            ),
        }
    }

    fn alternatives(&mut self, value: &Value, alternatives: &'a [Value], path: &str) {
        // Enumerations (`oneOf` of `const`s, as schemars writes unit enums).
        let constants: Option<Vec<Value>> = alternatives
            .iter()
            .map(|alt| {
                alt.get("const").cloned().or_else(|| {
                    alt.get("enum")
                        .and_then(Value::as_array)
                        .filter(|values| values.len() == 1)
                        .map(|values| values[0].clone())
                })
            })
            .collect();
        if let Some(constants) = constants {
            if !constants.contains(value) {
                self.reject(not_one_of(path, value, &constants));
            }
            return;
        }
        let mut candidates = Vec::new();
        for alternative in alternatives {
            let mut trial = Walker::new(self.root);
            trial.walk(value, alternative, path);
            if trial.issues.is_empty() {
                return;
            }
            if self.kind_fits(value, alternative) {
                candidates.push(trial);
            }
        }
        if candidates.len() == 1 {
            self.issues.append(&mut candidates[0].issues);
            self.unknown_fields
                .append(&mut candidates[0].unknown_fields);
            self.rejected.append(&mut candidates[0].rejected);
            self.missing.append(&mut candidates[0].missing);
            return;
        }
        let expected: Vec<String> = alternatives
            .iter()
            .filter_map(|alt| self.kind_of_schema(alt))
            .collect();
        self.reject(Issue::error(
            path,
            format!(
                "expected {}, found {}",
                expected.join(" or "),
                describe(value)
            ),
        ));
    }

    /// Whether `value` is of the JSON kind an alternative describes (so its errors are
    /// the relevant ones).
    fn kind_fits(&self, value: &Value, schema: &'a Value) -> bool {
        let schema = self.resolve(schema);
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            if reference == DURATION_REF {
                return value.is_string();
            }
        }
        match schema.get("type") {
            Some(types) => type_matches(value, types),
            // A nested choice (an optional field whose type is itself a choice, such
            // as `judge`): it fits when one of its alternatives does.
            None if schema.get("anyOf").is_some() => schema
                .get("anyOf")
                .and_then(Value::as_array)
                .is_some_and(|alts| alts.iter().any(|alt| self.kind_fits(value, alt))),
            None => schema
                .get("allOf")
                .and_then(Value::as_array)
                .and_then(|all| all.first())
                .is_some_and(|first| self.kind_fits(value, first)),
        }
    }

    fn kind_of_schema(&self, schema: &'a Value) -> Option<String> {
        let schema = self.resolve(schema);
        if schema.get("$ref").and_then(Value::as_str) == Some(DURATION_REF) {
            return Some("a duration".to_owned());
        }
        match schema.get("type") {
            Some(Value::String(t)) => Some(kind_word(t).to_owned()),
            _ => None,
        }
    }

    fn resolve(&self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) if reference != DURATION_REF => self
                .root
                .pointer(reference.trim_start_matches('#'))
                .unwrap_or(schema),
            _ => schema,
        }
    }

    fn range(&mut self, value: &Value, schema: &Value, path: &str) {
        let Some(number) = value.as_f64() else {
            return;
        };
        let (format_min, format_max) = match schema.get("format").and_then(Value::as_str) {
            Some("uint8") => (Some(0.0), Some(f64::from(u8::MAX))),
            Some("uint16") => (Some(0.0), Some(f64::from(u16::MAX))),
            Some("uint32") => (Some(0.0), Some(f64::from(u32::MAX))),
            Some("uint64") | Some("uint") => (Some(0.0), None),
            _ => (None, None),
        };
        let min = schema.get("minimum").and_then(Value::as_f64).or(format_min);
        let max = schema.get("maximum").and_then(Value::as_f64).or(format_max);
        let below = min.is_some_and(|m| number < m);
        let above = max.is_some_and(|m| number > m);
        if !(below || above) {
            return;
        }
        let shown = value.to_string();
        let message = match (min, max) {
            (Some(lo), Some(hi)) => format!("{shown} is outside {lo}..={hi}"),
            (Some(lo), None) => format!("{shown} is below the minimum {lo}"),
            (None, Some(hi)) => format!("{shown} is above the maximum {hi}"),
            (None, None) => return,
        };
        let hint = match (min, max) {
            (Some(lo), Some(hi)) => format!("write a number from {lo} to {hi}"),
            (Some(lo), None) => format!("write {lo} or more"),
            (_, Some(hi)) => format!("write {hi} or less"),
            (None, None) => return,
        };
        self.reject(Issue::error(path, message).with_hint(hint));
    }

    fn object(&mut self, map: &serde_json::Map<String, Value>, schema: &'a Value, path: &str) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        for (key, child) in map {
            let child_path = join(path, key);
            if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
                self.walk(child, child_schema, &child_path);
                continue;
            }
            match additional {
                Some(Value::Bool(false)) => {
                    let known: Vec<&str> = properties
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let home = home_of(self.root, key);
                    self.issues
                        .push(unknown_field(&child_path, key, &known, home.as_deref()));
                    self.unknown_fields.push((path.to_owned(), key.clone()));
                }
                Some(extra @ Value::Object(_)) => self.walk(child, extra, &child_path),
                _ => {}
            }
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(name) {
                    let issue = Issue::error(path, format!("missing required field `{name}`"));
                    let issue = match misspelt_as(name, map.keys()) {
                        Some(found) => {
                            issue.with_hint(format!("`{found}` is written; did you mean `{name}`?"))
                        }
                        None => issue.with_hint(format!("add `{name}:`")),
                    };
                    self.issues.push(issue);
                    self.missing.push(join(path, name));
                }
            }
        }
    }
}

fn type_matches(value: &Value, types: &Value) -> bool {
    match types {
        Value::String(t) => single_type_matches(value, t),
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|t| single_type_matches(value, t)),
        _ => true,
    }
}

fn single_type_matches(value: &Value, t: &str) -> bool {
    match t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

fn kind_word(t: &str) -> &'static str {
    match t {
        "null" => "nothing",
        "boolean" => "true or false",
        "integer" => "a whole number",
        "number" => "a number",
        "string" => "a string",
        "array" => "a list",
        "object" => "a mapping",
        _ => "a value",
    }
}

/// `a string `abc``, `a list`, `a mapping`, `the number 3.5`.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string `{s}`"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn type_mismatch(path: &str, value: &Value, types: &Value) -> Issue {
    let wanted: Vec<&str> = match types {
        Value::String(t) => vec![t.as_str()],
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => Vec::new(),
    };
    let words: Vec<&str> = wanted.iter().map(|t| kind_word(t)).collect();
    let issue = Issue::error(
        path,
        format!("expected {}, found {}", words.join(" or "), describe(value)),
    );
    let hint = match (wanted.first().copied(), value) {
        (Some("string"), Value::Number(_) | Value::Bool(_)) => {
            Some(format!("quote it: `\"{}\"`", plain(value)))
        }
        (Some("array"), Value::String(_) | Value::Number(_)) => {
            Some(format!("write a list: `[{}]`", plain(value)))
        }
        (Some("integer"), Value::Number(_)) => {
            Some("write a whole number, without a fraction".to_owned())
        }
        (Some("integer" | "number"), Value::String(s)) if s.trim().parse::<f64>().is_ok() => {
            Some(format!("remove the quotes: `{}`", s.trim()))
        }
        (Some("object"), Value::Null) => Some("add the fields below it, indented".to_owned()),
        _ => None,
    };
    match hint {
        Some(h) => issue.with_hint(h),
        None => issue,
    }
}

fn not_one_of(path: &str, value: &Value, allowed: &[Value]) -> Issue {
    let names: Vec<String> = allowed.iter().map(plain).collect();
    let listed = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let issue = Issue::error(path, format!("{} is not one of {listed}", describe(value)));
    let written = plain(value);
    match nearest(&written, names.iter().map(String::as_str)) {
        Some(best) => issue.with_hint(format!("did you mean `{best}`?")),
        None => issue.with_hint(format!("write one of {listed}")),
    }
}

fn unknown_field(path: &str, key: &str, known: &[&str], home: Option<&str>) -> Issue {
    let issue = Issue::error(path, format!("unknown field `{key}`"));
    match nearest(key, known.iter().copied()) {
        Some(best) => issue.with_hint(format!("did you mean `{best}`?")),
        None if home.is_some() => issue.with_hint(format!(
            "`{key}` belongs under `{}`; move it there",
            home.unwrap_or_default()
        )),
        None if known.is_empty() => issue.with_hint("remove it"),
        None => issue.with_hint(format!(
            "remove it; known fields here: {}",
            known.join(", ")
        )),
    }
}

/// Where a field called `key` lives in a policy (e.g. `failureLimit` → `spec.analysis`),
/// for a field written at the wrong level. Breadth first, so the shallowest home wins.
fn home_of(root: &Value, key: &str) -> Option<String> {
    let mut queue = std::collections::VecDeque::from([(root, String::new(), 0usize)]);
    while let Some((schema, path, depth)) = queue.pop_front() {
        if depth > 12 {
            continue;
        }
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            if let Some(target) = root.pointer(reference.trim_start_matches('#')) {
                queue.push_back((target, path, depth + 1));
            }
            continue;
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            if properties.contains_key(key) {
                return Some(if path.is_empty() {
                    "the top level".to_owned()
                } else {
                    path
                });
            }
            for (name, child) in properties {
                queue.push_back((child, join(&path, name), depth + 1));
            }
        }
        for combinator in ["allOf", "anyOf", "oneOf"] {
            for alternative in schema
                .get(combinator)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                queue.push_back((alternative, path.clone(), depth + 1));
            }
        }
        if let Some(items) = schema.get("items") {
            queue.push_back((items, format!("{path}[]"), depth + 1));
        }
    }
    None
}

/// The known name closest to `written`, if it is close enough to be a typo.
pub fn nearest<'n>(written: &str, known: impl Iterator<Item = &'n str>) -> Option<&'n str> {
    let lower = written.to_ascii_lowercase();
    known
        .map(|k| {
            (
                k,
                strsim::damerau_levenshtein(&lower, &k.to_ascii_lowercase()),
            )
        })
        .filter(|(k, distance)| *distance <= (k.len() / 3).max(1) + usize::from(k.len() > 8))
        .min_by_key(|(_, distance)| *distance)
        .map(|(k, _)| k)
}

/// A written key that is probably a misspelling of the missing `name`.
fn misspelt_as<'k>(name: &str, written: impl Iterator<Item = &'k String>) -> Option<&'k str> {
    nearest(name, written.map(String::as_str))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(value: Value) -> Vec<String> {
        check_structure(&value, &crate::policy::schema::document_schema())
            .into_iter()
            .map(|i| i.to_string())
            .collect()
    }

    #[test]
    fn suggests_the_nearest_field_and_enum_value() {
        let issues = check(json!({
            "apiVersion": "shiftgate.dev/v1alpha1", "kind": "RolloutPolicy",
            "metadata": {"name": "x"},
            "spec": {"revision": "1", "router": {}, "steps": [0, 100], "onFailure": "rollbak",
                     "analysis": {"metircs": []}}
        }));
        assert_eq!(
            issues,
            [
                "spec.analysis.metircs: unknown field `metircs` (hint: did you mean `metrics`?)",
                "spec.analysis: missing required field `metrics` (hint: `metircs` is written; did you mean `metrics`?)",
                "spec.onFailure: the string `rollbak` is not one of `rollback`, `hold` (hint: did you mean `rollback`?)",
            ]
        );
    }

    #[test]
    fn a_field_at_the_wrong_level_is_sent_home() {
        let issues = check(json!({
            "apiVersion": "shiftgate.dev/v1alpha1", "kind": "RolloutPolicy",
            "metadata": {"name": "x"},
            "spec": {"revision": "1", "router": {}, "steps": [0, 100], "failureLimit": 2,
                     "analysis": {"metrics": [{"name": "e", "maxIncrease": 0.1}]}}
        }));
        assert_eq!(
            issues,
            [
                "spec.analysis.metrics[0].maxIncrease: unknown field `maxIncrease` (hint: `maxIncrease` belongs under `spec.analysis.metrics[].compare`; move it there)",
                "spec.failureLimit: unknown field `failureLimit` (hint: `failureLimit` belongs under `spec.analysis`; move it there)",
            ]
        );
    }

    #[test]
    fn checks_types_ranges_durations_and_steps() {
        let issues = check(json!({
            "apiVersion": "v1", "kind": "RolloutPolicy",
            "metadata": {"name": "x"},
            "spec": {"revision": 2, "router": {}, "steps": [0, 150, {"weight": 30, "hold": "soon"}],
                     "analysis": {"metrics": [], "interval": "30", "failureLimit": -1}}
        }));
        assert_eq!(
            issues,
            [
                "apiVersion: must be `shiftgate.dev/v1alpha1`, found the string `v1` (hint: write `shiftgate.dev/v1alpha1`)",
                "spec.analysis.failureLimit: -1 is outside 0..=4294967295 (hint: write a number from 0 to 4294967295)",
                "spec.analysis.interval: `30` is not a duration: it has no unit (hint: write numbers with a unit (ms, s, m, h or d), e.g. `30s`, `5m`, `1h30m`, `500ms`)",
                "spec.revision: expected a string, found the number 2 (hint: quote it: `\"2\"`)",
                "spec.steps[1]: 150 is outside 0..=100 (hint: write a number from 0 to 100)",
                "spec.steps[2].hold: `soon` is not a duration: expected a number at character 1, found `s` (hint: write numbers with a unit (ms, s, m, h or d), e.g. `30s`, `5m`, `1h30m`, `500ms`)",
            ]
        );
    }
}
