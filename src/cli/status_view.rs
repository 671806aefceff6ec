//! What `status` shows of one rollout, whether it is local or in the cluster, once or
//! redrawn by `--watch`: the exit code its phase means, the Grafana link, and the
//! redrawn view (weight bar, step, each metric against its limit, time left, colour).

use serde_json::Value;

use crate::cli::exit;
use crate::metrics::PolicyRef;
use crate::policy::status::VerdictKind;
use crate::policy::{GrafanaSpec, Phase, RolloutSpec, RolloutStatus, Timestamp};

/// `-o` of the read commands (`status`, `list`, `check`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOutput {
    /// Lines for people (on stderr for `status`, on stdout for `list`).
    Text,
    /// One JSON document on stdout.
    Json,
    /// The same document as YAML on stdout.
    Yaml,
}

/// Renders `document` as `format` (JSON or YAML) for stdout.
pub fn encode(document: &Value, format: ReadOutput) -> anyhow::Result<String> {
    Ok(match format {
        ReadOutput::Yaml => serde_yaml_ng::to_string(document)?,
        _ => serde_json::to_string_pretty(document)? + "\n",
    })
}

/// The exit code a rollout's phase means to CI: 0 promoted (or still going, for a
/// one-off `status`), 1 rolled back or aborted, 4 held or paused.
pub fn phase_exit_code(status: &RolloutStatus) -> i32 {
    match status.phase {
        Phase::RolledBack | Phase::Aborted if status.target.is_none() => exit::ROLLED_BACK,
        Phase::Held | Phase::Paused => exit::HELD,
        _ => exit::OK,
    }
}

/// Whether `--watch` stops here: the rollout is over or waits for an operator.
pub fn watch_ends(status: &RolloutStatus) -> bool {
    status.is_settled() || status.phase == Phase::Paused
}

/// The Grafana dashboard of the rollout (`spec.grafana`), its time range pinned from a
/// minute before the start to a minute after the end once the rollout is over.
pub fn grafana_link(
    grafana: Option<&GrafanaSpec>,
    policy: &PolicyRef,
    status: &RolloutStatus,
) -> Option<String> {
    let grafana = grafana?;
    let (since, until) = crate::observe::grafana::rollout_range(status);
    crate::observe::grafana::dashboard_link(grafana, policy, since, until).ok()
}

/// Adds `grafanaUrl` to a status document (when there is a link).
pub fn with_grafana_link(mut document: Value, link: Option<&str>) -> Value {
    if let (Value::Object(fields), Some(link)) = (&mut document, link) {
        fields.insert("grafanaUrl".to_owned(), Value::String(link.to_owned()));
    }
    document
}

/// `[██████░░░░░░░░░░░░░░]  30%`: the canary's share of the traffic, 20 cells.
pub fn weight_bar(weight: u8) -> String {
    let cells = usize::from(weight.min(100)) / 5;
    format!(
        "[{}{}] {weight:>3}%",
        "█".repeat(cells),
        "░".repeat(20 - cells)
    )
}

/// ANSI colour of a phase or verdict (only on a terminal).
fn paint(text: &str, good: Option<bool>, colour: bool) -> String {
    match (colour, good) {
        (true, Some(true)) => format!("\x1b[32m{text}\x1b[0m"),
        (true, Some(false)) => format!("\x1b[31m{text}\x1b[0m"),
        (true, None) => format!("\x1b[33m{text}\x1b[0m"),
        (false, _) => text.to_owned(),
    }
}

fn phase_is_good(phase: Phase) -> Option<bool> {
    match phase {
        Phase::Promoted => Some(true),
        Phase::RolledBack | Phase::Aborted | Phase::RollingBack | Phase::Held => Some(false),
        Phase::Paused | Phase::Waiting => None,
        _ => Some(true),
    }
}

/// The redrawn view of `--watch` on a terminal (and its first frame elsewhere).
pub fn render(
    label: &str,
    spec: Option<&RolloutSpec>,
    status: &RolloutStatus,
    now: Timestamp,
    colour: bool,
) -> Vec<String> {
    let revision = status.revision.as_deref().unwrap_or("-");
    let steps = spec.map_or(0, |spec| spec.steps.len());
    let step = if steps == 0 {
        // Without the spec the status's own `2/3` (what the engine last wrote) says it.
        match &status.current_step {
            Some(step) => format!("step {step}"),
            None => format!("step {}", status.step.saturating_add(1)),
        }
    } else {
        format!(
            "step {}/{steps}",
            (status.step as usize + 1).min(steps.max(1))
        )
    };
    let mut lines = vec![
        format!("{label}  revision {revision}"),
        format!(
            "  {}  {step}",
            paint(status.phase.as_str(), phase_is_good(status.phase), colour)
        ),
    ];
    let mut weight = format!("  canary {}", weight_bar(status.canary_weight));
    if let Some(target) = status.target {
        weight.push_str(&format!(" → {}%", target.canary_weight));
    }
    if status.test_route {
        weight.push_str("  + test route");
    }
    lines.push(weight);
    if let Some(left) = spec.and_then(|spec| time_left(spec, status, now)) {
        lines.push(format!("  {left}s left in this step"));
    }
    if let Some(live) = &status.live_color {
        lines.push(format!("  live colour: {live}"));
    }
    if let Some(analysis) = crate::runtime::local::current_analysis(status) {
        let good = match analysis.verdict {
            VerdictKind::Pass => Some(true),
            VerdictKind::Fail => Some(false),
            VerdictKind::Inconclusive => None,
        };
        lines.push(format!(
            "  analysis {} at {}",
            paint(analysis.verdict.as_str(), good, colour),
            analysis.at.format("%H:%M:%S")
        ));
        for metric in &analysis.metrics {
            let good = match metric.verdict {
                VerdictKind::Pass => Some(true),
                VerdictKind::Fail => Some(false),
                VerdictKind::Inconclusive => None,
            };
            lines.push(format!(
                "    {} {}",
                paint(metric.verdict.as_str(), good, colour),
                crate::runtime::local::describe_metric(metric)
            ));
        }
    }
    if let Some(message) = &status.message {
        lines.push(format!(
            "  {}: {message}",
            status.reason.as_deref().unwrap_or("-")
        ));
    }
    lines
}

/// Seconds left in the current step's hold, while it runs.
fn time_left(spec: &RolloutSpec, status: &RolloutStatus, now: Timestamp) -> Option<i64> {
    let plan = crate::engine::Plan::new(spec).ok()?;
    let started = status.step_started_at?;
    if status.phase != Phase::Progressing {
        return None;
    }
    let left = crate::engine::plan::later(started, plan.hold(status.step)) - now;
    (left > chrono::Duration::zero()).then(|| left.num_seconds().saturating_add(1))
}

/// One line per change when stdout is not a terminal (CI logs): what changed is the
/// phase, step, weight, verdict or message.
pub fn change_line(label: &str, status: &RolloutStatus) -> String {
    let mut line = format!(
        "{label} {} step {} canary {}%",
        status.phase,
        status.step.saturating_add(1),
        status.canary_weight
    );
    if let Some(analysis) = &status.last_analysis {
        line.push_str(&format!(" analysis {}", analysis.verdict.as_str()));
    }
    if let Some(message) = &status.message {
        line.push_str(&format!(
            " · {}: {message}",
            status.reason.as_deref().unwrap_or("-")
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_one_cell_per_five_percent() {
        assert_eq!(weight_bar(0), format!("[{}]   0%", "░".repeat(20)));
        assert_eq!(
            weight_bar(30),
            format!("[{}{}]  30%", "█".repeat(6), "░".repeat(14))
        );
        assert_eq!(weight_bar(100), format!("[{}] 100%", "█".repeat(20)));
    }

    #[test]
    fn the_view_shows_weight_step_time_left_and_each_metric_against_its_limit() {
        let at = |s| chrono::DateTime::from_timestamp(s, 0).unwrap_or_default();
        let spec: RolloutSpec = serde_json::from_value(serde_json::json!({
            "revision": "v2",
            "router": { "istio": { "virtualService": "vs", "stable": { "host": "s" }, "canary": { "host": "c" } } },
            "steps": [0, { "weight": 30, "hold": "60s" }, 100],
            "analysis": { "metrics": [ { "name": "error-rate", "query": "x", "max": 0.01 } ] },
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let status: RolloutStatus = serde_json::from_value(serde_json::json!({
            "revision": "v2", "phase": "Progressing", "step": 1, "canaryWeight": 30,
            "stepStartedAt": "1970-01-01T00:16:40Z", "liveColor": "blue",
            "lastAnalysis": { "at": "1970-01-01T00:17:00Z", "verdict": "Fail", "reason": "AboveMax",
                "message": "x", "metrics": [ { "name": "error-rate", "canary": 0.03,
                "verdict": "Fail", "reason": "AboveMax", "message": "0.03 > max 0.01" } ] },
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let lines = render("shop/checkout", Some(&spec), &status, at(1020), false);
        assert_eq!(lines[1], "  Progressing  step 2/3");
        assert_eq!(lines[2], format!("  canary {}", weight_bar(30)));
        assert_eq!(lines[3], "  41s left in this step");
        assert_eq!(lines[4], "  live colour: blue");
        assert_eq!(lines[6], "    Fail error-rate: 0.03 > max 0.01");
        let coloured = render("shop/checkout", Some(&spec), &status, at(1020), true);
        assert!(coloured[6].contains("\x1b[31mFail"), "{:?}", coloured[6]);
    }

    #[test]
    fn phases_map_to_the_documented_exit_codes() {
        let of = |phase| {
            phase_exit_code(&RolloutStatus {
                phase,
                ..RolloutStatus::default()
            })
        };
        assert_eq!(of(Phase::Promoted), exit::OK);
        assert_eq!(of(Phase::Progressing), exit::OK);
        assert_eq!(of(Phase::RolledBack), exit::ROLLED_BACK);
        assert_eq!(of(Phase::Aborted), exit::ROLLED_BACK);
        assert_eq!(of(Phase::Held), exit::HELD);
        assert_eq!(of(Phase::Paused), exit::HELD);
    }
}
