//! Positioned YAML: every document of a file becomes a `serde_json::Value` plus a map
//! from field path (`spec.steps[2]`) to the line and column where it is written, so a
//! problem found later, on the plain value, can still be shown at its place in the file.
//!
//! saphyr (YAML 1.2, core schema: `yes`/`on` stay strings) gives every node a span.

use std::collections::HashMap;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::{Map, Number, Value};

use super::diagnostic::{index, join, Issue};

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    fn of(marker: &saphyr::Marker) -> Self {
        Position {
            line: marker.line(),
            column: marker.col() + 1,
        }
    }
}

/// Where a field is written: its key (absent for sequence items and the root) and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Located {
    key: Option<Position>,
    value: Position,
}

/// One YAML document (one policy) of a file.
#[derive(Clone, Debug)]
pub struct PositionedDocument {
    pub value: Value,
    /// Where the document's root node starts.
    pub start: Position,
    /// Problems found while turning YAML into a plain value (aliases, odd keys, NaN).
    pub issues: Vec<Issue>,
    positions: HashMap<String, Located>,
}

impl PositionedDocument {
    /// Where the field at `path` is written: its key if it has one, else its value. A path
    /// that is not in the file (a missing field) falls back to its nearest written parent.
    pub fn position(&self, path: &str) -> Position {
        let mut current = path;
        loop {
            if let Some(located) = self.positions.get(current) {
                return located.key.unwrap_or(located.value);
            }
            match parent(current) {
                Some(p) => current = p,
                None => return self.start,
            }
        }
    }

    /// Where the value of the field at `path` starts (or its nearest written parent's).
    pub fn value_position(&self, path: &str) -> Position {
        let mut current = path;
        loop {
            if let Some(located) = self.positions.get(current) {
                return located.value;
            }
            match parent(current) {
                Some(p) => current = p,
                None => return self.start,
            }
        }
    }

    /// Whether the field at `path` is written in the file (not defaulted).
    pub fn contains(&self, path: &str) -> bool {
        self.positions.contains_key(path)
    }
}

/// `spec.steps[2]` → `spec.steps`, `spec.steps` → `spec`, `spec` → ``, `` → none.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with(']') {
        if let Some(open) = path.rfind('[') {
            return Some(&path[..open]);
        }
    }
    Some(path.rfind('.').map_or("", |dot| &path[..dot]))
}

/// The file is not YAML: the parser's message and where it stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not valid YAML: {message}")]
pub struct YamlError {
    pub position: Position,
    pub message: String,
}

/// Parses every `---`-separated document of `text`. An empty file gives no documents.
pub fn load_documents(text: &str) -> Result<Vec<PositionedDocument>, YamlError> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| {
        let stopped = Position::of(e.marker());
        match super::yaml_brackets::unclosed_opener_before(text, stopped) {
            Some((bracket, opened)) => YamlError {
                position: opened,
                message: format!(
                    "`{bracket}` is never closed (the parser stopped at line {}, column {}: {})",
                    stopped.line,
                    stopped.column,
                    e.info()
                ),
            },
            None => YamlError {
                position: stopped,
                message: e.info().to_owned(),
            },
        }
    })?;
    Ok(docs
        .iter()
        .filter(|doc| !is_empty_document(doc))
        .map(|doc| {
            let mut converter = Converter::default();
            let value = converter.convert(doc, "", None);
            PositionedDocument {
                value,
                start: Position::of(&doc.span.start),
                issues: converter.issues,
                positions: converter.positions,
            }
        })
        .collect())
}

/// A document holding only comments (e.g. after a trailing `---`) parses as null.
fn is_empty_document(doc: &MarkedYaml<'_>) -> bool {
    matches!(doc.data, YamlData::Value(Scalar::Null) | YamlData::BadValue)
        && doc.span.start == doc.span.end
}

#[derive(Default)]
struct Converter {
    positions: HashMap<String, Located>,
    issues: Vec<Issue>,
}

impl Converter {
    fn convert(&mut self, node: &MarkedYaml<'_>, path: &str, key: Option<Position>) -> Value {
        self.positions.insert(
            path.to_owned(),
            Located {
                key,
                value: Position::of(&node.span.start),
            },
        );
        match &node.data {
            YamlData::Value(scalar) => self.scalar(scalar, path),
            YamlData::Representation(raw, _, _) => Value::String(raw.to_string()),
            YamlData::Sequence(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.convert(item, &index(path, i), None))
                    .collect(),
            ),
            YamlData::Mapping(entries) => {
                let mut map = Map::new();
                for (k, v) in entries {
                    let Some(name) = self.key_name(k, path) else {
                        continue;
                    };
                    let child = join(path, &name);
                    let converted = self.convert(v, &child, Some(Position::of(&k.span.start)));
                    map.insert(name, converted);
                }
                Value::Object(map)
            }
            // Tags are not part of the policy format; the tagged value is what counts.
            YamlData::Tagged(_, inner) => self.convert(inner, path, key),
            YamlData::Alias(_) => {
                self.issues.push(
                    Issue::error(path, "YAML aliases are not supported in policies")
                        .with_hint("write the value out instead of `*alias`"),
                );
                Value::Null
            }
            YamlData::BadValue => {
                self.issues.push(
                    Issue::error(path, "this value does not match its YAML tag")
                        .with_hint("remove the `!!tag` or fix the value"),
                );
                Value::Null
            }
        }
    }

    fn scalar(&mut self, scalar: &Scalar<'_>, path: &str) -> Value {
        match scalar {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::Number(Number::from(*i)),
            Scalar::FloatingPoint(f) => match Number::from_f64(f.into_inner()) {
                Some(n) => Value::Number(n),
                None => {
                    self.issues.push(
                        Issue::error(path, format!("{} is not a finite number", f.into_inner()))
                            .with_hint("write a finite number such as `0.01`"),
                    );
                    Value::Null
                }
            },
            Scalar::String(s) => Value::String(s.to_string()),
        }
    }

    /// Mapping keys must be scalars; numbers and booleans are read as their text.
    fn key_name(&mut self, key: &MarkedYaml<'_>, path: &str) -> Option<String> {
        let name = match &key.data {
            YamlData::Value(Scalar::String(s)) => s.to_string(),
            YamlData::Value(Scalar::Integer(i)) => i.to_string(),
            YamlData::Value(Scalar::Boolean(b)) => b.to_string(),
            YamlData::Value(Scalar::FloatingPoint(f)) => f.into_inner().to_string(),
            YamlData::Representation(raw, _, _) => raw.to_string(),
            YamlData::Tagged(_, inner) => return self.key_name(inner, path),
            _ => {
                self.issues.push(
                    Issue::error(path, "a mapping key must be a plain name")
                        .with_hint("write `name: value`"),
                );
                return None;
            }
        };
        Some(name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn maps_paths_to_lines_and_columns() {
        let text = "a: 1\nspec:\n  steps: [0, 30]\n  list:\n    - name: x\n      max: 2\n";
        let docs = load_documents(text).unwrap();
        assert_eq!(docs.len(), 1);
        let d = &docs[0];
        assert_eq!(d.position("a"), Position { line: 1, column: 1 });
        assert_eq!(d.position("spec.steps"), Position { line: 3, column: 3 });
        assert_eq!(
            d.position("spec.steps[1]"),
            Position {
                line: 3,
                column: 14
            }
        );
        assert_eq!(d.position("spec.list[0]"), Position { line: 5, column: 7 });
        assert_eq!(
            d.position("spec.list[0].max"),
            Position { line: 6, column: 7 }
        );
        // A missing field is shown at its nearest written parent.
        assert_eq!(
            d.position("spec.list[0].min"),
            Position { line: 5, column: 7 }
        );
        assert_eq!(d.value["spec"]["steps"][1], serde_json::json!(30));
    }

    #[test]
    fn splits_documents_and_skips_empty_ones() {
        let docs = load_documents("a: 1\n---\nb: 2\n---\n# only a comment\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].start.line, 3);
        assert!(load_documents("").unwrap().is_empty());
        assert!(load_documents("# nothing\n").unwrap().is_empty());
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let err = load_documents("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.position.line >= 1, "{err:?}");
        let dup = load_documents("a: 1\na: 2\n").unwrap_err();
        assert_eq!(dup.position.line, 2, "{dup:?}");
        assert!(dup.message.contains("duplicate"), "{dup:?}");
    }

    #[test]
    fn yaml_1_2_keeps_yes_as_a_string() {
        let docs = load_documents("a: yes\nb: true\nc: .nan\n").unwrap();
        assert_eq!(docs[0].value["a"], serde_json::json!("yes"));
        assert_eq!(docs[0].value["b"], serde_json::json!(true));
        assert_eq!(docs[0].issues.len(), 1);
        assert_eq!(docs[0].issues[0].path, "c");
    }
}
