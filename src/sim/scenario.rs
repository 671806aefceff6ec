//! The scenario file (`kind: Scenario`): how the world behaves during a simulated
//! rollout. Documented field by field in docs/simulation.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::Command;
use crate::metrics::scripted::{MetricBehaviour, Outage};
use crate::policy::diagnostic::{Diagnostic, Issue};
use crate::policy::yaml::load_documents;
use crate::policy::{Duration, Timestamp};
use crate::sim::traffic_spec::TrafficSpec;

pub const SCENARIO_KIND: &str = "Scenario";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScenarioMetadata {
    #[serde(default)]
    pub name: String,
}

/// How the world behaves while the real engine and reconciler run on virtual time.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Must be `Scenario`.
    pub kind: String,
    #[serde(default)]
    pub metadata: ScenarioMetadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Virtual wall-clock time at the start (matters for deployment windows).
    #[serde(default = "default_start")]
    pub start: Timestamp,
    /// The simulation stops here if the rollout has not finished.
    #[serde(default = "default_max_duration")]
    pub max_duration: Duration,
    /// The live route before the rollout.
    #[serde(default)]
    pub initial: InitialRoute,
    /// The load, and optionally a traffic model with sampling noise.
    #[serde(default)]
    pub traffic: TrafficSpec,
    /// Metric name (as in the policy) → behaviour. A metric missing here has no data.
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricBehaviour>,
    /// Metric source outages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outages: Vec<Outage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub router_faults: Vec<RouterFault>,
    /// Periods in which every pre-traffic check fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub check_failures: Vec<Period>,
    /// Periods in which the hooks of one phase fail (`spec.hooks`; docs/hooks.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hook_failures: Vec<super::hook_failures::HookFailure>,
    /// Periods in which saving the state fails (a crash before persisting).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub store_failures: Vec<Period>,
    /// Someone else edits the managed weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftEvent>,
    /// Operator commands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<TimedCommand>,
    /// Restarts of shiftgate: the in-memory state is dropped and re-read from the store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarts: Vec<Duration>,
    /// What must happen; `simulate` exits 5 when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expectation>,
}

fn default_api_version() -> String {
    crate::policy::API_VERSION.to_owned()
}

fn default_start() -> Timestamp {
    // A Monday at 10:00 UTC: inside most working-hours windows.
    chrono::DateTime::from_timestamp(1_767_607_200, 0).unwrap_or_default()
}

fn default_max_duration() -> Duration {
    Duration::from_secs(4 * 3600)
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitialRoute {
    #[serde(default)]
    pub canary_weight: u8,
    #[serde(default)]
    pub test_route: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Period {
    pub from: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Duration>,
    /// What a failing check reports (check failures only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Period {
    pub fn covers(&self, offset: Duration) -> bool {
        offset >= self.from && self.until.is_none_or(|u| offset < u)
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RouterFaultKind {
    /// Every write meets a concurrent edit.
    Conflict,
    /// The router cannot be reached for writes.
    Unavailable,
    /// Writes land but their confirmation is lost.
    LostConfirmation,
    /// The live route cannot be read.
    Unreadable,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouterFault {
    pub from: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Duration>,
    pub kind: RouterFaultKind,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DriftEvent {
    pub at: Duration,
    pub canary_weight: u8,
    #[serde(default)]
    pub test_route: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimedCommand {
    pub at: Duration,
    /// `promote`, `promoteFull`, `pause`, `resume` or `abort`.
    pub command: Command,
    /// The revision the command is given for; default: the policy's. Another revision
    /// makes a stale command, which the engine refuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

/// How a simulated rollout ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Promoted,
    RolledBack,
    Aborted,
    Held,
    Paused,
    /// Still running at `maxDuration`.
    Unfinished,
    /// Never started: the canary already served more than the first step (the live
    /// colour), so nothing was written.
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Promoted => "promoted",
            Outcome::RolledBack => "rolledBack",
            Outcome::Aborted => "aborted",
            Outcome::Held => "held",
            Outcome::Paused => "paused",
            Outcome::Unfinished => "unfinished",
            Outcome::Refused => "refused",
        }
    }

    /// The process exit code documented in docs/cli.md.
    pub fn exit_code(self) -> i32 {
        use crate::cli::exit;
        match self {
            Outcome::Promoted => exit::OK,
            Outcome::RolledBack | Outcome::Aborted => exit::ROLLED_BACK,
            Outcome::Held | Outcome::Paused => exit::HELD,
            Outcome::Unfinished => exit::COULD_NOT_RUN,
            Outcome::Refused => exit::INVALID_INPUT,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expectation {
    pub outcome: Outcome,
    /// The outcome must be reached within this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Duration>,
    /// The final status reason (a CamelCase constant), e.g. `AnalysisFailed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Located like a policy's diagnostics: `file:line:col: field.path: message (hint: …)`.
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
}

/// The longest simulated time, and so the largest offset of any scripted event.
pub const MAX_SCENARIO_DURATION: Duration = Duration::from_secs(30 * 86_400);
/// Most items of any list of a scenario (segments, outages, faults, commands, …).
pub const MAX_SCENARIO_ITEMS: usize = 1000;

fn invalid(issue: Issue, path: &str, line: usize, column: usize) -> ScenarioError {
    ScenarioError::Invalid(Box::new(issue.located(path, line, column)))
}

impl Scenario {
    /// Parses a scenario document; `path` only names it in errors. The first problem
    /// is reported at its line and column with its field path.
    pub fn parse(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        // Size and nesting before the YAML parser, whose cost grows with both.
        if let Some((issue, line)) = crate::policy::limits::text_issue(text) {
            return Err(invalid(issue, path, line, 1));
        }
        let mut documents = load_documents(text).map_err(|e| {
            let issue = Issue::error("", e.to_string())
                .with_hint("fix the YAML syntax at this position (indentation, quotes, brackets)");
            invalid(issue, path, e.position.line, e.position.column)
        })?;
        if documents.len() > 1 {
            let second = documents[1].start;
            let issue = Issue::error("", "a scenario file holds one scenario, this is a second")
                .with_hint("put each scenario in its own file");
            return Err(invalid(issue, path, second.line, second.column));
        }
        let Some(document) = documents.pop() else {
            let issue = Issue::error("", "the file holds no scenario")
                .with_hint("start it with `kind: Scenario`; see scenarios/ for examples");
            return Err(invalid(issue, path, 1, 1));
        };
        let locate = |issue: Issue| {
            let at = document.position(&issue.path);
            invalid(issue, path, at.line, at.column)
        };
        if let Some(issue) = document.issues.iter().find(|i| i.is_error()) {
            return Err(locate(issue.clone()));
        }
        let scenario: Scenario =
            serde_path_to_error::deserialize(document.value.clone()).map_err(|e| {
                let field = e.path().to_string();
                let field = if field == "." { String::new() } else { field };
                locate(
                    Issue::error(field, e.inner().to_string())
                        .with_hint("see docs/simulation.md for every field of a scenario"),
                )
            })?;
        match scenario.first_issue() {
            Some(issue) => Err(locate(issue)),
            None => Ok(scenario),
        }
    }

    /// The first problem of a scenario that has the right shape.
    fn first_issue(&self) -> Option<Issue> {
        if self.kind != SCENARIO_KIND {
            return Some(
                Issue::error("kind", format!("is `{}`, not `{SCENARIO_KIND}`", self.kind))
                    .with_hint("a scenario has `kind: Scenario`"),
            );
        }
        if let Some((i, d)) = self
            .drift
            .iter()
            .enumerate()
            .find(|(_, d)| d.canary_weight > 100)
        {
            return Some(
                Issue::error(
                    format!("drift[{i}].canaryWeight"),
                    format!("{} is more than 100", d.canary_weight),
                )
                .with_hint("a weight is a percentage, 0 to 100"),
            );
        }
        self.limit_problem()
            .or_else(|| self.traffic.issues(self.max_duration).into_iter().next())
    }

    /// The first field beyond its limit: every offset and `maxDuration` at most
    /// [`MAX_SCENARIO_DURATION`], lists at most [`MAX_SCENARIO_ITEMS`], a start that
    /// plus the whole simulation is a date (years 1970 to 9000).
    fn limit_problem(&self) -> Option<Issue> {
        let earliest = chrono::DateTime::from_timestamp(0, 0)?;
        let latest = chrono::DateTime::from_timestamp(221_845_392_000, 0)?; // 9000-01-01
        if self.start < earliest || self.start > latest {
            return Some(Issue::error(
                "start",
                format!(
                    "{} is outside the years 1970 to 9000",
                    self.start.to_rfc3339()
                ),
            ));
        }
        let mut counts: Vec<(String, usize)> = vec![
            ("metrics".into(), self.metrics.len()),
            ("outages".into(), self.outages.len()),
            ("routerFaults".into(), self.router_faults.len()),
            ("checkFailures".into(), self.check_failures.len()),
            ("hookFailures".into(), self.hook_failures.len()),
            ("storeFailures".into(), self.store_failures.len()),
            ("drift".into(), self.drift.len()),
            ("commands".into(), self.commands.len()),
            ("restarts".into(), self.restarts.len()),
            ("traffic.changes".into(), self.traffic.changes.len()),
        ];
        for (name, behaviour) in &self.metrics {
            counts.push((format!("metrics.{name}.canary"), behaviour.canary.len()));
            counts.push((format!("metrics.{name}.stable"), behaviour.stable.len()));
        }
        if let Some((field, n)) = counts.iter().find(|(_, n)| *n > MAX_SCENARIO_ITEMS) {
            return Some(Issue::error(
                field.clone(),
                format!("has {n} items, more than the {MAX_SCENARIO_ITEMS} a scenario may hold"),
            ));
        }
        let mut durations: Vec<(String, Duration)> =
            vec![("maxDuration".into(), self.max_duration)];
        let periods = |name: &str,
                       list: &mut Vec<(String, Duration)>,
                       from: Duration,
                       until: Option<Duration>,
                       i: usize| {
            list.push((format!("{name}[{i}].from"), from));
            list.extend(until.map(|u| (format!("{name}[{i}].until"), u)));
        };
        for (i, f) in self.router_faults.iter().enumerate() {
            periods("routerFaults", &mut durations, f.from, f.until, i);
        }
        for (i, p) in self.check_failures.iter().enumerate() {
            periods("checkFailures", &mut durations, p.from, p.until, i);
        }
        for (i, p) in self.hook_failures.iter().enumerate() {
            periods("hookFailures", &mut durations, p.from, p.until, i);
        }
        for (i, p) in self.store_failures.iter().enumerate() {
            periods("storeFailures", &mut durations, p.from, p.until, i);
        }
        for (i, o) in self.outages.iter().enumerate() {
            periods("outages", &mut durations, o.from, o.until, i);
        }
        for (i, d) in self.drift.iter().enumerate() {
            durations.push((format!("drift[{i}].at"), d.at));
        }
        for (i, c) in self.commands.iter().enumerate() {
            durations.push((format!("commands[{i}].at"), c.at));
        }
        for (i, r) in self.restarts.iter().enumerate() {
            durations.push((format!("restarts[{i}]"), *r));
        }
        for (name, behaviour) in &self.metrics {
            for (side, segments) in [("canary", &behaviour.canary), ("stable", &behaviour.stable)] {
                for (i, s) in segments.iter().enumerate() {
                    durations.push((format!("metrics.{name}.{side}[{i}].from"), s.from));
                }
            }
        }
        if let Some(within) = self.expect.as_ref().and_then(|e| e.within) {
            durations.push(("expect.within".into(), within));
        }
        for (i, c) in self.traffic.changes.iter().enumerate() {
            durations.push((format!("traffic.changes[{i}].from"), c.from));
        }
        durations
            .into_iter()
            .find(|(_, d)| *d > MAX_SCENARIO_DURATION)
            .map(|(field, d)| {
                let max = MAX_SCENARIO_DURATION.to_human();
                Issue::error(
                    field,
                    format!("{d} is longer than the maximum {max} of a simulation"),
                )
                .with_hint(format!("write at most `{max}`"))
            })
    }

    pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let text = crate::policy::limits::read_bounded(path).map_err(|e| match e {
            crate::policy::limits::ReadError::Io(source) => ScenarioError::Read {
                path: shown.clone(),
                source,
            },
            other => invalid(
                Issue::error("", other.to_string())
                    .with_hint("a scenario file is UTF-8 text of at most 1 MiB"),
                &shown,
                0,
                0,
            ),
        })?;
        Scenario::parse(&text, &shown)
    }

    /// A scenario with healthy defaults, for code that builds scenarios (tests).
    pub fn healthy(name: &str) -> Scenario {
        Scenario {
            api_version: default_api_version(),
            kind: SCENARIO_KIND.to_owned(),
            metadata: ScenarioMetadata {
                name: name.to_owned(),
            },
            description: None,
            start: default_start(),
            max_duration: default_max_duration(),
            initial: InitialRoute::default(),
            traffic: TrafficSpec::default(),
            metrics: BTreeMap::new(),
            outages: Vec::new(),
            router_faults: Vec::new(),
            check_failures: Vec::new(),
            hook_failures: Vec::new(),
            store_failures: Vec::new(),
            drift: Vec::new(),
            commands: Vec::new(),
            restarts: Vec::new(),
            expect: None,
        }
    }

    /// Every offset at which something scripted starts or stops.
    pub fn event_offsets(&self) -> Vec<Duration> {
        let mut offsets = Vec::new();
        for f in &self.router_faults {
            offsets.push(f.from);
            offsets.extend(f.until);
        }
        for p in self.check_failures.iter().chain(&self.store_failures) {
            offsets.push(p.from);
            offsets.extend(p.until);
        }
        for f in &self.hook_failures {
            offsets.push(f.from);
            offsets.extend(f.until);
        }
        offsets.extend(self.drift.iter().map(|d| d.at));
        offsets.extend(self.commands.iter().map(|c| c.at));
        offsets.extend(self.restarts.iter().copied());
        offsets.sort();
        offsets.dedup();
        offsets
    }
}
