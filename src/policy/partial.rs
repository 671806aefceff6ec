//! The semantic rules for a document whose structure has errors. Every node the
//! structural walk rejected is taken out (nothing is filled in for it), then each part of
//! the spec is read on its own (`spec.router.istio`, `spec.steps[i]`, `spec.analysis`,
//! `spec.analysis.metrics[i]`, `spec.windows[i]` field by field, …) and the rules run on
//! the parts that could be read. So one pass reports a wrong type *and* the steps that do
//! not increase, the duplicate metric name and the bad cron next to it.
//!
//! Two promises: no path is reported twice, and no issue is about a value the user did
//! not write. An issue is therefore dropped when its path is, contains or lies inside a
//! node that was rejected or is missing, or when its rule reads such a node (see
//! [`READS`]): a rejected `interval` falls back to its default, and "failureLimit 120 at
//! interval 30s" would be about a 30s the user never wrote.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::diagnostic::{index, Issue};
use super::duration::Duration;
use super::hooks::HookSpec;
use super::notify::NotifySpec;
use super::step::StepSpec;
use super::structure::Structure;
use super::types::*;
use super::validate::{validate_metadata, validate_parts, SpecParts, WindowFields};

/// Lists whose items are read one by one: a rejected item leaves a hole (the other items
/// keep their indices); a rejected item of any other list takes the whole list out.
const ITEM_LISTS: [&str; 6] = [
    "spec.steps",
    "spec.checks",
    "spec.analysis.metrics",
    "spec.windows",
    "spec.notify",
    "spec.hooks",
];

/// Rules whose verdict reads another field than the one they are reported at (`[]` is
/// the issue's own index). When that field was rejected or is missing, it is absent or
/// defaulted, and the verdict would be about a value the user did not write.
const READS: &[(&str, &[&str])] = &[
    ("spec.analysis.failureLimit", &["spec.analysis.interval"]),
    (
        "spec.analysis.inconclusiveLimit",
        &["spec.analysis.interval", "spec.analysis.onInconclusive"],
    ),
    (
        "spec.analysis.prometheus.timeout",
        &["spec.analysis.interval"],
    ),
    (
        "spec.analysis.metrics[].compare",
        &[
            "spec.analysis.metrics[].query",
            "spec.analysis.metrics[].stableQuery",
            "spec.analysis.metrics[].judge",
        ],
    ),
    (
        "spec.analysis.metrics[].stableQuery",
        &[
            "spec.analysis.metrics[].compare",
            "spec.analysis.metrics[].query",
        ],
    ),
    (
        "spec.analysis.metrics[].max",
        &["spec.analysis.metrics[].template"],
    ),
    (
        "spec.analysis.metrics[].compare.maxIncrease",
        &["spec.analysis.metrics[].judge"],
    ),
    (
        "spec.analysis.metrics[].compare.maxRatio",
        &["spec.analysis.metrics[].judge"],
    ),
    (
        "spec.analysis.metrics[].counts",
        &[
            "spec.analysis.metrics[].compare",
            "spec.analysis.metrics[].judge",
            "spec.analysis.metrics[].query",
        ],
    ),
    ("spec.router.istio.canary", &["spec.router.istio.stable"]),
    (
        "spec.router.service.canaryValue",
        &["spec.router.service.stableValue"],
    ),
    (
        "spec.router.envoy.canaryCluster",
        &["spec.router.envoy.stableCluster"],
    ),
];

/// Where the document already has an issue, and so where the rules must not look.
#[derive(Clone, Debug, Default)]
pub(super) struct Reported {
    /// Nodes taken out of the value (rejected or unknown) and required fields that are
    /// missing: nothing at, above or below them is judged.
    gone: Vec<String>,
    /// Nodes with an issue that stay in the value (YAML conversion problems, turned into
    /// null): nothing at or above them is judged.
    flagged: Vec<String>,
}

impl Reported {
    /// Whether an issue at `path` must be dropped.
    pub fn suppresses(&self, path: &str) -> bool {
        self.near_gone(path)
            || self
                .flagged
                .iter()
                .any(|f| path == f || is_ancestor(path, f))
            || reads(path).iter().any(|read| self.near_gone(read))
    }

    /// Whether anything at, above or below `path` has an issue.
    fn touches(&self, path: &str) -> bool {
        self.gone
            .iter()
            .chain(&self.flagged)
            .any(|r| related(path, r))
    }

    fn near_gone(&self, path: &str) -> bool {
        self.gone.iter().any(|g| related(path, g))
    }
}

/// `a` is `b`, or one contains the other.
fn related(a: &str, b: &str) -> bool {
    a == b || is_ancestor(a, b) || is_ancestor(b, a)
}

/// `spec.steps` is an ancestor of `spec.steps[2]` and of `spec.steps.x`, not of `spec.stepsx`.
fn is_ancestor(ancestor: &str, path: &str) -> bool {
    path.len() > ancestor.len()
        && path.starts_with(ancestor)
        && (ancestor.is_empty() || matches!(path.as_bytes()[ancestor.len()], b'.' | b'['))
}

/// The fields the rule reported at `path` reads besides `path` itself.
fn reads(path: &str) -> Vec<String> {
    let (pattern, indices) = generalize(path);
    READS
        .iter()
        .filter(|(at, _)| *at == pattern)
        .flat_map(|(_, fields)| fields.iter())
        .map(|field| {
            let mut filled = String::new();
            let mut indices = indices.iter();
            for (i, part) in field.split("[]").enumerate() {
                if i > 0 {
                    filled.push_str(&format!("[{}]", indices.next().copied().unwrap_or(0)));
                }
                filled.push_str(part);
            }
            filled
        })
        .collect()
}

/// `spec.analysis.metrics[3].max` → (`spec.analysis.metrics[].max`, [3]).
fn generalize(path: &str) -> (String, Vec<usize>) {
    let mut pattern = String::with_capacity(path.len());
    let mut indices = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('[') {
        pattern.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        let close = after.find(']').unwrap_or(after.len());
        if let Ok(i) = after[..close].parse() {
            indices.push(i);
        } else {
            pattern.push_str(&after[..close]);
        }
        rest = &after[close..];
    }
    pattern.push_str(rest);
    (pattern, indices)
}

/// `spec.steps[2].hold` → `/spec/steps/2/hold`.
fn pointer(path: &str) -> String {
    let mut out = String::new();
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (name, indices) = match segment.find('[') {
            Some(open) => (&segment[..open], &segment[open..]),
            None => (segment, ""),
        };
        if !name.is_empty() {
            out.push('/');
            out.push_str(&name.replace('~', "~0").replace('/', "~1"));
        }
        for i in indices.split(['[', ']']).filter(|s| !s.is_empty()) {
            out.push('/');
            out.push_str(i);
        }
    }
    out
}

/// `spec.steps[2]` → (`spec.steps`, item 2); `spec.router` → (`spec`, key `router`).
fn split_last(path: &str) -> Option<(&str, Result<usize, &str>)> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with(']') {
        let open = path.rfind('[')?;
        let i = path[open + 1..path.len() - 1].parse().ok()?;
        return Some((&path[..open], Ok(i)));
    }
    Some(match path.rfind('.') {
        Some(dot) => (&path[..dot], Err(&path[dot + 1..])),
        None => ("", Err(path)),
    })
}

/// Takes the node at `path` out of `value`: a mapping field is removed, an item of an
/// [`ITEM_LISTS`] list becomes a hole (null), an item of another list takes that list
/// out. Returns the path actually taken out.
fn prune(value: &mut Value, path: &str) -> Option<String> {
    let (parent, last) = split_last(path)?;
    match last {
        Err(key) => {
            value
                .pointer_mut(&pointer(parent))?
                .as_object_mut()?
                .remove(key)?;
            Some(path.to_owned())
        }
        Ok(i) if ITEM_LISTS.contains(&parent) => {
            *value.pointer_mut(&pointer(parent))?.get_mut(i)? = Value::Null;
            Some(path.to_owned())
        }
        Ok(_) => prune(value, parent),
    }
}

/// The issue for a value that the schema accepts but the policy type does not.
pub(super) fn type_mismatch(
    path: &str,
    error: &serde_path_to_error::Error<serde_json::Error>,
) -> Issue {
    let inner = error.path().to_string();
    let path = match inner.as_str() {
        "." => path.to_owned(),
        _ if path.is_empty() => inner,
        _ if inner.starts_with('[') => format!("{path}{inner}"),
        _ => format!("{path}.{inner}"),
    };
    Issue::error(
        path,
        format!("does not match the RolloutPolicy type: {}", error.inner()),
    )
    .with_hint("compare it with `shiftgate schema` and docs/policy.md")
}

/// The semantic issues of the parts of `document` that can be understood, given its
/// YAML issues and structural walk; none at or near a place already reported.
pub(super) fn readable_issues(
    document: &Value,
    yaml_issues: &[Issue],
    structure: &Structure,
) -> Vec<Issue> {
    let mut value = document.clone();
    let mut reported = Reported {
        flagged: yaml_issues
            .iter()
            .filter(|i| i.is_error())
            .map(|i| i.path.clone())
            .collect(),
        gone: structure.missing.clone(),
    };
    let rejected = structure
        .rejected
        .iter()
        .cloned()
        .chain(structure.unknown_fields.iter().map(|(parent, key)| {
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }));
    for path in rejected {
        if let Some(pruned) = prune(&mut value, &path) {
            reported.gone.push(pruned);
        }
        reported.gone.push(path);
    }
    let mut reader = Reader {
        reported: &reported,
        issues: Vec::new(),
        unreadable: Vec::new(),
    };
    let mut judged = Vec::new();
    if let Some(metadata) = value.get("metadata").filter(|m| m.is_object()) {
        reader.read::<kube::api::ObjectMeta>(Some(metadata), "metadata");
        let text = |key: &str| metadata.get(key).and_then(Value::as_str);
        judged.extend(validate_metadata(text("name"), text("namespace")));
    }
    if let Some(spec) = value.get("spec").filter(|s| s.is_object()) {
        let sections = reader.sections(spec);
        judged.extend(validate_parts(&sections.parts()));
    }
    let Reader {
        issues: mut unreadable_issues,
        unreadable,
        ..
    } = reader;
    // A part that could not be read is as absent as a rejected one.
    reported.gone.extend(unreadable);
    judged.retain(|issue| !reported.suppresses(&issue.path));
    unreadable_issues.extend(judged);
    unreadable_issues
}

/// The parts of a spec that could be read, owned.
#[derive(Default)]
struct Sections {
    revision: Option<String>,
    router: Option<RouterSpec>,
    router_complete: bool,
    test_route_written: bool,
    steps: Option<Vec<Option<StepSpec>>>,
    test_route: Option<TestRoute>,
    checks: Vec<Option<CheckSpec>>,
    analysis: Option<AnalysisSpec>,
    metrics: Vec<Option<MetricSpec>>,
    windows: Vec<(Option<String>, Option<String>, Option<Duration>)>,
    grafana: Option<GrafanaSpec>,
    notify: Vec<Option<NotifySpec>>,
    hooks: Vec<Option<HookSpec>>,
    workloads: Option<super::workloads::WorkloadsSpec>,
}

impl Sections {
    fn parts(&self) -> SpecParts<'_> {
        SpecParts {
            revision: self.revision.as_deref(),
            router: self.router.as_ref(),
            canary_color: None,
            router_complete: self.router_complete,
            test_route_written: self.test_route_written,
            steps: self
                .steps
                .as_ref()
                .map(|steps| steps.iter().map(Option::as_ref).collect()),
            test_route: self.test_route.as_ref(),
            checks: self.checks.iter().map(Option::as_ref).collect(),
            analysis: self.analysis.as_ref(),
            metrics: self.metrics.iter().map(Option::as_ref).collect(),
            windows: self
                .windows
                .iter()
                .map(|(schedule, time_zone, duration)| WindowFields {
                    schedule: schedule.as_deref(),
                    time_zone: time_zone.as_deref(),
                    duration: *duration,
                })
                .collect(),
            grafana: self.grafana.as_ref(),
            notify: self.notify.iter().map(Option::as_ref).collect(),
            hooks: self.hooks.iter().map(Option::as_ref).collect(),
            workloads: self.workloads.as_ref(),
        }
    }
}

struct Reader<'r> {
    reported: &'r Reported,
    /// Parts that could not be read for a reason the walk did not see.
    issues: Vec<Issue>,
    /// The paths of those parts.
    unreadable: Vec<String>,
}

impl Reader<'_> {
    /// Reads the node at `path` as a `T`. A failure near a reported place is expected (a
    /// required field was taken out); any other failure is reported, as it would be for a
    /// document without structural errors.
    fn read<T: DeserializeOwned>(&mut self, node: Option<&Value>, path: &str) -> Option<T> {
        match serde_path_to_error::deserialize(node?.clone()) {
            Ok(read) => Some(read),
            Err(e) => {
                if !self.reported.touches(path) {
                    self.issues.push(type_mismatch(path, &e));
                    self.unreadable.push(path.to_owned());
                }
                None
            }
        }
    }

    /// Each item of the list at `path` read on its own; `None` for an item that cannot be.
    fn items<T: DeserializeOwned>(&mut self, list: Option<&Value>, path: &str) -> Vec<Option<T>> {
        list.and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.read(Some(item), &index(path, i)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The optional field `key` of the mapping `parent` at `path`; `read_all` turns false
    /// when it is written but cannot be read.
    fn field<T: DeserializeOwned>(
        &mut self,
        parent: &Value,
        path: &str,
        key: &str,
        read_all: &mut bool,
    ) -> Option<T> {
        let written = parent.get(key)?;
        let read: Option<Option<T>> = self.read(Some(written), &format!("{path}.{key}"));
        *read_all &= read.is_some();
        read.flatten()
    }

    fn sections(&mut self, spec: &Value) -> Sections {
        let mut sections = Sections {
            revision: spec
                .get("revision")
                .and_then(Value::as_str)
                .map(str::to_owned),
            test_route_written: spec.get("testRoute").is_some_and(|t| !t.is_null()),
            ..Sections::default()
        };
        if let Some(router) = spec.get("router").filter(|r| r.is_object()) {
            let before = self.issues.len();
            let mut read_all = true;
            let istio: Option<IstioRouter> =
                self.field(router, "spec.router", "istio", &mut read_all);
            let service: Option<ServiceRouter> =
                self.field(router, "spec.router", "service", &mut read_all);
            let envoy: Option<EnvoyRouter> =
                self.field(router, "spec.router", "envoy", &mut read_all);
            sections.router_complete =
                read_all && self.issues.len() == before && !self.reported.touches("spec.router");
            sections.router = Some(RouterSpec {
                istio: istio.map(Box::new),
                service: service.map(Box::new),
                envoy: envoy.map(Box::new),
            });
        }
        if let Some(steps) = spec.get("steps").filter(|s| s.is_array()) {
            sections.steps = Some(self.items(Some(steps), "spec.steps"));
        }
        sections.test_route = self
            .read::<Option<TestRoute>>(spec.get("testRoute"), "spec.testRoute")
            .flatten();
        sections.checks = self.items(spec.get("checks"), "spec.checks");
        if let Some(analysis) = spec.get("analysis").and_then(Value::as_object) {
            // The metrics are read one by one below; the rest of the analysis without them.
            let mut settings = analysis.clone();
            settings.insert("metrics".to_owned(), Value::Array(Vec::new()));
            sections.analysis = self.read(Some(&Value::Object(settings)), "spec.analysis");
            sections.metrics = self.items(analysis.get("metrics"), "spec.analysis.metrics");
        }
        if let Some(windows) = spec.get("windows").and_then(Value::as_array) {
            sections.windows = windows
                .iter()
                .map(|window| {
                    let text =
                        |key: &str| window.get(key).and_then(Value::as_str).map(str::to_owned);
                    let duration = window
                        .get("duration")
                        .and_then(|d| serde_json::from_value::<Duration>(d.clone()).ok());
                    (text("schedule"), text("timeZone"), duration)
                })
                .collect();
        }
        sections.grafana = self
            .read::<Option<GrafanaSpec>>(spec.get("grafana"), "spec.grafana")
            .flatten();
        sections.notify = self.items(spec.get("notify"), "spec.notify");
        sections.hooks = self.items(spec.get("hooks"), "spec.hooks");
        sections.workloads = self
            .read::<Option<super::workloads::WorkloadsSpec>>(
                spec.get("workloads"),
                "spec.workloads",
            )
            .flatten();
        sections
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_relate_by_containment_only() {
        assert!(related("spec.steps", "spec.steps[2]"));
        assert!(related("spec.steps[2].hold", "spec.steps"));
        assert!(!related("spec.steps", "spec.stepsx"));
        assert!(!related("spec.steps[1]", "spec.steps[10]"));
        assert!(is_ancestor("", "spec"));
    }

    #[test]
    fn a_rule_reading_a_sibling_names_it_with_the_same_index() {
        assert_eq!(
            reads("spec.analysis.metrics[3].compare"),
            [
                "spec.analysis.metrics[3].query",
                "spec.analysis.metrics[3].stableQuery",
                "spec.analysis.metrics[3].judge"
            ]
        );
        assert_eq!(
            reads("spec.analysis.failureLimit"),
            ["spec.analysis.interval"]
        );
        assert!(reads("spec.steps[2]").is_empty());
    }

    #[test]
    fn pruning_leaves_holes_in_item_lists_and_drops_other_lists() {
        let mut value = serde_json::json!({
            "spec": {"steps": [0, "x", 100], "router": {"istio": {"routes": ["a", 5]}}}
        });
        assert_eq!(
            prune(&mut value, "spec.steps[1]").as_deref(),
            Some("spec.steps[1]")
        );
        assert_eq!(
            prune(&mut value, "spec.router.istio.routes[1]").as_deref(),
            Some("spec.router.istio.routes")
        );
        assert_eq!(
            value,
            serde_json::json!({"spec": {"steps": [0, null, 100], "router": {"istio": {}}}})
        );
    }
}
