//! Checking a set of policy files at once (`shiftgate check`): every file's diagnostics,
//! plus the rules that span files: two policies must not drive the same route (one
//! rollout per route), and two policies must not share a name.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::diagnostic::{index, Diagnostic, Issue, Severity};
use super::parse::{check_file, CheckedPolicy, LoadedPolicy};

/// The outcome of checking files.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Files read.
    pub files: usize,
    /// Policy documents found (valid or not).
    pub documents: usize,
    /// The valid policies.
    #[serde(skip)]
    pub policies: Vec<LoadedPolicy>,
    /// Every error and warning, by file (in the order given) then line.
    pub diagnostics: Vec<Diagnostic>,
    /// Documents of other kinds, skipped.
    pub skipped: Vec<super::parse::SkippedDocument>,
}

/// How `check -` names standard input in its diagnostics.
pub const STDIN_LABEL: &str = "<stdin>";

impl Report {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    }

    /// No errors (and, when `deny_warnings`, no warnings either).
    pub fn is_valid(&self, deny_warnings: bool) -> bool {
        self.errors() == 0 && (!deny_warnings || self.warnings() == 0)
    }
}

/// Checks files and directories (recursively: `*.yaml` and `*.yml`, sorted by path).
pub fn check_paths(paths: &[PathBuf]) -> Report {
    let mut report = Report::default();
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let before = files.len();
            collect_yaml_files(path, &mut files, &mut report.diagnostics);
            if files.len() == before {
                report.diagnostics.push(
                    Issue::error("", "no policy files (*.yaml, *.yml) in this directory")
                        .with_hint("pass policy files or a directory holding them")
                        .located(path, 0, 0),
                );
            }
        } else if path.as_os_str() == "-" {
            files.push(PathBuf::from(STDIN_LABEL));
        } else {
            files.push(path.clone());
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.clone()));
    let mut checked: Vec<CheckedPolicy> = Vec::new();
    for file in &files {
        let check = if file.as_os_str() == STDIN_LABEL {
            check_stdin()
        } else {
            check_file(file)
        };
        report.files += 1;
        report.documents += check.documents;
        report.skipped.extend(check.skipped);
        report.diagnostics.extend(check.diagnostics);
        checked.extend(check.policies);
    }
    let cross = cross_file_issues(&checked);
    let rejected: std::collections::HashSet<usize> = cross
        .iter()
        .filter(|(_, issue)| issue.is_error())
        .map(|(i, _)| *i)
        .collect();
    for (i, issue) in cross {
        let policy = &checked[i];
        let at = policy.document.position(&issue.path);
        report
            .diagnostics
            .push(issue.located(&policy.loaded.file, at.line, at.column));
    }
    report.policies = checked
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !rejected.contains(i))
        .map(|(_, c)| c.loaded)
        .collect();
    let order: BTreeMap<&Path, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.as_path(), i))
        .collect();
    let position = |d: &Diagnostic| {
        (
            order.get(d.file.as_path()).copied().unwrap_or(usize::MAX),
            d.line,
            d.column,
        )
    };
    report.diagnostics.sort_by_key(position);
    report
}

/// Reads and checks standard input (`check -`): a kustomize output, a pipe.
fn check_stdin() -> super::parse::FileCheck {
    let label = Path::new(STDIN_LABEL);
    match super::limits::read_bounded_from(std::io::stdin().lock()) {
        Ok(text) => super::parse::check_str(label, &text),
        Err(e) => super::parse::FileCheck {
            diagnostics: vec![Issue::error("", format!("cannot read standard input: {e}"))
                .with_hint("pipe UTF-8 YAML of at most 1 MiB into `shiftgate check -`")
                .located(label, 0, 0)],
            ..super::parse::FileCheck::default()
        },
    }
}

fn collect_yaml_files(dir: &Path, files: &mut Vec<PathBuf>, diagnostics: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            diagnostics.push(
                Issue::error("", format!("cannot read the directory: {e}"))
                    .with_hint("check the path and its permissions")
                    .located(dir, 0, 0),
            );
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect_yaml_files(&path, files, diagnostics);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
}

/// A route one policy drives.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RouteClaim {
    /// `route: None` claims every http route of the VirtualService (the only one).
    Istio {
        namespace: String,
        name: String,
        route: Option<String>,
    },
    Service {
        namespace: String,
        name: String,
    },
    EnvoyFile(PathBuf),
}

impl RouteClaim {
    fn overlaps(&self, other: &RouteClaim) -> bool {
        match (self, other) {
            (
                RouteClaim::Istio {
                    namespace: a_ns,
                    name: a,
                    route: a_route,
                },
                RouteClaim::Istio {
                    namespace: b_ns,
                    name: b,
                    route: b_route,
                },
            ) => {
                a_ns == b_ns
                    && a == b
                    && (a_route.is_none() || b_route.is_none() || a_route == b_route)
            }
            _ => self == other,
        }
    }

    fn describe(&self) -> String {
        match self {
            RouteClaim::Istio {
                namespace,
                name,
                route: Some(route),
            } => {
                format!("route `{route}` of VirtualService {namespace}/{name}")
            }
            RouteClaim::Istio {
                namespace,
                name,
                route: None,
            } => format!("VirtualService {namespace}/{name}"),
            RouteClaim::Service { namespace, name } => format!("Service {namespace}/{name}"),
            RouteClaim::EnvoyFile(file) => format!("Envoy routes file {}", file.display()),
        }
    }
}

fn namespace_of(policy: &LoadedPolicy) -> String {
    policy
        .policy
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned())
}

/// `[namespace/]name` with the policy's namespace as default.
fn split_ref(reference: &str, default_namespace: &str) -> (String, String) {
    match reference.split_once('/') {
        Some((ns, name)) => (ns.to_owned(), name.to_owned()),
        None => (default_namespace.to_owned(), reference.to_owned()),
    }
}

/// Each claimed route with the field path that names it.
fn claims(policy: &LoadedPolicy) -> Vec<(RouteClaim, String)> {
    let namespace = namespace_of(policy);
    let router = &policy.policy.spec.router;
    let mut out = Vec::new();
    if let Some(istio) = &router.istio {
        let (ns, name) = split_ref(&istio.virtual_service, &namespace);
        if istio.routes.is_empty() {
            out.push((
                RouteClaim::Istio {
                    namespace: ns,
                    name,
                    route: None,
                },
                "spec.router.istio.virtualService".to_owned(),
            ));
        } else {
            for (i, route) in istio.routes.iter().enumerate() {
                out.push((
                    RouteClaim::Istio {
                        namespace: ns.clone(),
                        name: name.clone(),
                        route: Some(route.clone()),
                    },
                    index("spec.router.istio.routes", i),
                ));
            }
        }
    }
    if let Some(service) = &router.service {
        let (ns, name) = split_ref(&service.service, &namespace);
        out.push((
            RouteClaim::Service {
                namespace: ns,
                name,
            },
            "spec.router.service.service".to_owned(),
        ));
    }
    if let Some(envoy) = &router.envoy {
        out.push((
            RouteClaim::EnvoyFile(normalize(Path::new(&envoy.routes_file))),
            "spec.router.envoy.routesFile".to_owned(),
        ));
    }
    out
}

/// Lexical normalization (`./a/../b` → `b`), so two spellings of one file match.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Issues that need several policies: each is reported on the later policy, naming the earlier.
fn cross_file_issues(policies: &[CheckedPolicy]) -> Vec<(usize, Issue)> {
    let mut issues = Vec::new();
    let mut names: BTreeMap<(String, String), usize> = BTreeMap::new();
    let all_claims: Vec<Vec<(RouteClaim, String)>> =
        policies.iter().map(|p| claims(&p.loaded)).collect();
    for (i, policy) in policies.iter().enumerate() {
        let loaded = &policy.loaded;
        let id = (
            namespace_of(loaded),
            loaded.policy.metadata.name.clone().unwrap_or_default(),
        );
        if let Some(first) = names.insert(id.clone(), i) {
            issues.push((
                i,
                Issue::error(
                    "metadata.name",
                    format!(
                        "policy {}/{} is also defined at {}",
                        id.0,
                        id.1,
                        where_is(&policies[first].loaded)
                    ),
                )
                .with_hint("give each policy its own name"),
            ));
        }
        'claims: for (claim, path) in &all_claims[i] {
            for (j, earlier) in all_claims.iter().enumerate().take(i) {
                if let Some((other, _)) = earlier.iter().find(|(c, _)| c.overlaps(claim)) {
                    let other_policy = &policies[j].loaded;
                    issues.push((
                        i,
                        Issue::error(
                            path.clone(),
                            format!(
                                "{} is also driven by policy {}/{} ({}): two rollouts on one route would fight over its weights",
                                claim.describe(),
                                namespace_of(other_policy),
                                other_policy.policy.metadata.name.as_deref().unwrap_or_default(),
                                where_is(other_policy),
                            ),
                        )
                        .with_hint(if matches!(other, RouteClaim::Istio { route: None, .. }) || matches!(claim, RouteClaim::Istio { route: None, .. }) {
                            "keep one policy per route; to split a VirtualService, name the routes each policy manages in `routes:`"
                        } else {
                            "keep one policy per route"
                        }),
                    ));
                    continue 'claims;
                }
            }
        }
    }
    issues
}

fn where_is(policy: &LoadedPolicy) -> String {
    format!("{}:{}", policy.file.display(), policy.line)
}
