//! Policy files: YAML with one or more `---`-separated RolloutPolicy documents. Every
//! problem of every document is reported at once, located at file, line, column and
//! field path: first the structure (unknown fields, types, ranges) against the JSON
//! Schema, then the typed rules of `policy::validate`: on the whole policy when the
//! structure is clean, else on the parts that can still be read (`policy::partial`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use super::diagnostic::{Diagnostic, Issue};
use super::partial::{readable_issues, type_mismatch};
use super::schema::document_schema;
use super::structure::check_structure_detailed;
use super::types::RolloutPolicy;
use super::validate::{validate_metadata, validate_spec};
use super::yaml::{load_documents, PositionedDocument};

/// A valid policy and where it was read.
#[derive(Clone, Debug)]
pub struct LoadedPolicy {
    pub policy: RolloutPolicy,
    pub file: PathBuf,
    /// Line where the policy's document starts.
    pub line: usize,
}

impl RolloutPolicy {
    /// The policy's namespace and name as a file names them: a file may leave the
    /// namespace out (`default`, as kubectl does).
    pub fn file_reference(&self) -> crate::metrics::PolicyRef {
        crate::metrics::PolicyRef {
            namespace: self
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            name: self.metadata.name.clone().unwrap_or_default(),
        }
    }
}

/// A valid policy with the positions of its fields (for cross-file diagnostics).
#[derive(Clone, Debug)]
pub struct CheckedPolicy {
    pub loaded: LoadedPolicy,
    pub document: PositionedDocument,
}

/// Everything found in one file: its valid policies and all diagnostics (errors and
/// warnings) of all its documents, in line order.
#[derive(Clone, Debug, Default)]
pub struct FileCheck {
    pub policies: Vec<CheckedPolicy>,
    pub diagnostics: Vec<Diagnostic>,
    /// How many policy documents the file holds (valid or not).
    pub documents: usize,
    /// Documents of other kinds (a Deployment in a kustomize output): not policies,
    /// skipped (`check --strict` fails on them).
    pub skipped: Vec<SkippedDocument>,
}

/// A document of another kind than RolloutPolicy, skipped.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SkippedDocument {
    pub file: PathBuf,
    pub line: usize,
    pub kind: String,
    /// `metadata.name`, when it has one.
    pub name: Option<String>,
}

/// The kind of a document of another API (a Deployment of `apps/v1`): its `kind` is
/// not RolloutPolicy and its `apiVersion` is some other group's. A document that names
/// shiftgate in its apiVersion, spells RolloutPolicy in another case, or has no
/// apiVersion stays a policy document, so its mistakes are reported.
fn other_kind(document: &PositionedDocument) -> Option<String> {
    let kind = document.value.get("kind")?.as_str()?;
    let api = document.value.get("apiVersion")?.as_str()?;
    let ours = api.to_ascii_lowercase().contains("shiftgate");
    (!ours && !kind.eq_ignore_ascii_case("RolloutPolicy")).then(|| kind.to_owned())
}

impl FileCheck {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Reads and checks a policy file. A file that cannot be read is one diagnostic.
pub fn check_file(path: &Path) -> FileCheck {
    match super::limits::read_bounded(path) {
        Ok(text) => check_str(path, &text),
        Err(e) => FileCheck {
            diagnostics: vec![
                Issue::error("", format!("cannot read the policy file: {e}"))
                    .with_hint(match e {
                        super::limits::ReadError::Io(_) => "check the path and its permissions",
                        _ => "a policy file is UTF-8 text of at most 1 MiB; split larger files",
                    })
                    .located(path, 0, 0),
            ],
            ..FileCheck::default()
        },
    }
}

/// Checks policy text; `file_label` names it in diagnostics.
pub fn check_str(file_label: impl AsRef<Path>, text: &str) -> FileCheck {
    let file = file_label.as_ref();
    if let Some((issue, line)) = super::limits::text_issue(text) {
        return FileCheck {
            diagnostics: vec![issue.located(file, line, 1)],
            ..FileCheck::default()
        };
    }
    let documents = match load_documents(text) {
        Ok(docs) => docs,
        Err(e) => {
            return FileCheck {
                diagnostics: vec![Issue::error("", e.to_string())
                    .with_hint(
                        "fix the YAML syntax at this position (indentation, quotes, brackets)",
                    )
                    .located(file, e.position.line, e.position.column)],
                ..FileCheck::default()
            }
        }
    };
    let (others, documents): (Vec<_>, Vec<_>) =
        documents.into_iter().partition(|d| other_kind(d).is_some());
    let mut check = FileCheck {
        documents: documents.len(),
        skipped: others
            .iter()
            .map(|d| SkippedDocument {
                file: file.to_path_buf(),
                line: d.start.line,
                kind: other_kind(d).unwrap_or_default(),
                name: d
                    .value
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })
            .collect(),
        ..FileCheck::default()
    };
    if documents.is_empty() && check.skipped.is_empty() {
        check.diagnostics.push(
            Issue::error("", "the file holds no policy")
                .with_hint("write a RolloutPolicy (`apiVersion: shiftgate.dev/v1alpha1`, `kind: RolloutPolicy`, …); see policies/ for examples")
                .located(file, 1, 1),
        );
        return check;
    }
    for document in documents {
        let (policy, issues) = check_document(&document);
        check.diagnostics.extend(locate(issues, &document, file));
        if let Some(policy) = policy {
            check.policies.push(CheckedPolicy {
                loaded: LoadedPolicy {
                    policy,
                    file: file.to_path_buf(),
                    line: document.start.line,
                },
                document,
            });
        }
    }
    check
}

/// Parses and validates a policy file; Err holds every diagnostic when any is an error.
pub fn parse_file(path: &Path) -> Result<Vec<LoadedPolicy>, Vec<Diagnostic>> {
    into_result(check_file(path))
}

/// Parses and validates policy text; `file_label` names it in diagnostics.
pub fn parse_str(
    file_label: impl AsRef<Path>,
    text: &str,
) -> Result<Vec<LoadedPolicy>, Vec<Diagnostic>> {
    into_result(check_str(file_label, text))
}

fn into_result(check: FileCheck) -> Result<Vec<LoadedPolicy>, Vec<Diagnostic>> {
    if check.has_errors() {
        Err(check.diagnostics)
    } else {
        Ok(check.policies.into_iter().map(|p| p.loaded).collect())
    }
}

/// Places issues at their positions in the document, in line order.
pub fn locate(issues: Vec<Issue>, document: &PositionedDocument, file: &Path) -> Vec<Diagnostic> {
    let mut located: Vec<Diagnostic> = issues
        .into_iter()
        .map(|issue| {
            let at = document.position(&issue.path);
            issue.located(file, at.line, at.column)
        })
        .collect();
    located.sort_by_key(|d| (d.line, d.column));
    located
}

fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(document_schema)
}

/// Drops a warning about a field's default (e.g. "minRequests is 0") when the same
/// mapping has an unknown field that the user evidently meant as that field
/// (`minRequest`, hint "did you mean `minRequests`?"): the value was written, only
/// misspelt, and the error already says so.
fn drop_warnings_about_misspelt_fields(issues: &mut Vec<Issue>) {
    let meant: Vec<String> = issues
        .iter()
        .filter(|issue| issue.is_error())
        .filter_map(|issue| {
            let hint = issue.hint.as_deref()?;
            let start = hint.find("did you mean `")? + "did you mean `".len();
            let len = hint.get(start..)?.find('`')?;
            let field = hint.get(start..start + len)?;
            let parent = issue.path.rsplit_once('.').map_or("", |(parent, _)| parent);
            Some(if parent.is_empty() {
                field.to_owned()
            } else {
                format!("{parent}.{field}")
            })
        })
        .collect();
    issues.retain(|issue| issue.is_error() || !meant.contains(&issue.path));
}

/// The policy (when it has no error) and every issue of one document.
fn check_document(document: &PositionedDocument) -> (Option<RolloutPolicy>, Vec<Issue>) {
    let mut issues = document.issues.clone();
    if !document.value.is_object() {
        issues.push(
            Issue::error(
                "",
                "a policy must be a mapping with `apiVersion`, `kind`, `metadata` and `spec`",
            )
            .with_hint("start the document with `apiVersion: shiftgate.dev/v1alpha1`"),
        );
        return (None, issues);
    }
    let too_large = super::limits::document_issues(&document.value);
    if !too_large.is_empty() {
        // Judging more of a document this large would cost time and memory in proportion.
        issues.extend(too_large);
        return (None, issues);
    }
    let structure = check_structure_detailed(&document.value, schema());
    issues.extend(structure.issues.iter().cloned());
    if issues.iter().any(Issue::is_error) {
        // Still judge what can be understood, so one pass shows every error.
        issues.extend(readable_issues(
            &document.value,
            &document.issues,
            &structure,
        ));
        drop_warnings_about_misspelt_fields(&mut issues);
        return (None, issues);
    }
    let mut value = document.value.clone();
    if let Value::Object(map) = &mut value {
        // Status is shiftgate's own record; a file's copy (e.g. from `kubectl get -o yaml`) is ignored.
        map.remove("status");
    }
    let policy: RolloutPolicy = match serde_path_to_error::deserialize(value) {
        Ok(policy) => policy,
        Err(e) => {
            // The schema walk should have caught it; if not, still say where.
            issues.push(type_mismatch("", &e));
            return (None, issues);
        }
    };
    issues.extend(validate_metadata(
        policy.metadata.name.as_deref(),
        policy.metadata.namespace.as_deref(),
    ));
    issues.extend(validate_spec(&policy.spec));
    let valid = !issues.iter().any(Issue::is_error);
    (valid.then_some(policy), issues)
}
