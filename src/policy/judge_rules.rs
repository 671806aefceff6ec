//! The rules of a metric's `judge:` and `counts:`. Part of `policy::validate`; pure.
//!
//! The sequential judge decides from counts: an error metric needs requests and errors
//! per target, a latency metric its histogram buckets. Built-in error-rate and latency
//! templates have their count queries; a raw `query` declares them in `counts:`.

use super::diagnostic::Issue;
use super::judge::{CountsSpec, JudgeSpec, MannWhitneySpec};
use super::types::MetricSpec;

/// Whether a built-in template counts what a sequential judge needs: errors (error
/// rates) or histogram buckets (latencies). Request rates count neither.
fn builtin_has_counts(template: &str) -> bool {
    template.ends_with("-error-rate") || template.contains("-latency-")
}

pub(super) fn metric(m: &MetricSpec, path: &str, issues: &mut Vec<Issue>) {
    let jpath = format!("{path}.judge");
    if m.judge.is_some() && m.compare.is_none() {
        issues.push(
            Issue::error(
                &jpath,
                "judge decides how `compare` is judged, and this metric does not compare",
            )
            .with_hint("add `compare: {}` to judge it against stable, or remove `judge`"),
        );
    }
    if let Some(JudgeSpec::Sequential(s)) = m.judge.as_deref() {
        let spath = format!("{jpath}.sequential");
        if let Some(alpha) = s.alpha.filter(|a| !(a.is_finite() && *a > 0.0 && *a < 1.0)) {
            issues.push(
                Issue::error(
                    format!("{spath}.alpha"),
                    format!("alpha {alpha} is not a rate between 0 and 1"),
                )
                .with_hint("write e.g. `0.01`: at most 1 in 100 healthy canaries rolled back"),
            );
        }
        if let Some(t) = s.tolerance.filter(|t| !(t.is_finite() && *t >= 0.0)) {
            issues.push(
                Issue::error(
                    format!("{spath}.tolerance"),
                    format!("tolerance {t} is not a share of 0 or more"),
                )
                .with_hint("write e.g. `0.2` to tolerate 20% more errors than stable, or `0`"),
            );
        }
    }
    if let Some(JudgeSpec::MannWhitney(mw)) = m.judge.as_deref() {
        mann_whitney(mw, &format!("{jpath}.mannWhitney"), issues);
        if let Some(compare) = &m.compare {
            limits_of_threshold(
                compare,
                "judged by `mannWhitney`",
                "",
                &format!("{path}.compare"),
                issues,
            );
        }
    }
    let sequential = m.sequential().is_some();
    if let (true, Some(compare)) = (sequential, &m.compare) {
        limits_of_threshold(
            compare,
            "judged sequentially (the default with `compare`), which tests `judge.sequential.tolerance`",
            " (and set `judge: {sequential: {tolerance: …}}`)",
            &format!("{path}.compare"),
            issues,
        );
        match (&m.template, &m.query) {
            (Some(template), _)
                if super::templates::builtin(template).is_some()
                    && !builtin_has_counts(template) =>
            {
                issues.push(
                    Issue::error(
                        format!("{path}.template"),
                        format!("template `{template}` has no error or latency counts for the sequential judge"),
                    )
                    .with_hint("write `judge: threshold` with `compare: {maxRatio: …}`, or compare an error-rate or latency template"),
                );
            }
            (None, Some(_)) => counts_of_query(m.counts.as_deref(), path, issues),
            _ => {}
        }
    } else if m.counts.is_some() {
        issues.push(
            Issue::warning(
                format!("{path}.counts"),
                "counts are only used by the sequential judge of `compare`",
            )
            .with_hint("add `compare: {}`, or remove `counts`"),
        );
    }
    if m.counts.is_some() && m.template.is_some() {
        issues.push(
            Issue::error(
                format!("{path}.counts"),
                "built-in templates have their own count queries",
            )
            .with_hint("remove `counts`"),
        );
    }
}

/// `maxIncrease`/`maxRatio` belong to the threshold judge; under another judge they
/// would be silently ignored. The error says how the metric is `judged` and what to
/// write `instead` (after "remove it").
fn limits_of_threshold(
    compare: &super::types::CompareSpec,
    judged: &str,
    instead: &str,
    cpath: &str,
    issues: &mut Vec<Issue>,
) {
    for (field, set) in [
        ("maxIncrease", compare.max_increase.is_some()),
        ("maxRatio", compare.max_ratio.is_some()),
    ] {
        if set {
            issues.push(
                Issue::error(
                    format!("{cpath}.{field}"),
                    format!("`{field}` is a limit of the threshold judge; this metric is {judged}"),
                )
                .with_hint(format!(
                    "write `judge: threshold` to keep `{field}`, or remove it{instead}"
                )),
            );
        }
    }
}

/// Kayenta's parameters, in their ranges.
fn mann_whitney(mw: &MannWhitneySpec, mpath: &str, issues: &mut Vec<Issue>) {
    if let Some(c) = mw
        .confidence
        .filter(|c| !(c.is_finite() && *c > 0.0 && *c < 1.0))
    {
        issues.push(
            Issue::error(
                format!("{mpath}.confidence"),
                format!("confidence {c} is not a level between 0 and 1"),
            )
            .with_hint("write e.g. `0.95` (Kayenta's default)"),
        );
    }
    for (field, value, hint) in [
        (
            "tolerance",
            mw.tolerance,
            "write e.g. `0.25` (Kayenta's default)",
        ),
        (
            "allowedIncrease",
            mw.allowed_increase,
            "write e.g. `1.1`: High only when the canary's mean is 10% above stable's",
        ),
        (
            "allowedDecrease",
            mw.allowed_decrease,
            "write e.g. `0.9`: Low only when the canary's mean is 10% below stable's",
        ),
    ] {
        if let Some(v) = value.filter(|v| !(v.is_finite() && *v >= 0.0)) {
            issues.push(
                Issue::error(
                    format!("{mpath}.{field}"),
                    format!("{field} {v} is not a number of 0 or more"),
                )
                .with_hint(hint),
            );
        }
    }
    for (field, value) in [("pass", mw.pass), ("marginal", mw.marginal)] {
        if let Some(v) = value.filter(|v| !(v.is_finite() && (0.0..=100.0).contains(v))) {
            issues.push(
                Issue::error(
                    format!("{mpath}.{field}"),
                    format!("{field} {v} is not a score between 0 and 100"),
                )
                .with_hint("scores are the share of mannWhitney metrics that passed, 0–100"),
            );
        }
    }
    if mw.marginal() > mw.pass() {
        issues.push(
            Issue::error(
                format!("{mpath}.marginal"),
                format!(
                    "marginal {} is above pass {}: no score could be marginal",
                    mw.marginal(),
                    mw.pass()
                ),
            )
            .with_hint("keep marginal at or below pass (Kayenta: pass 95, marginal 75)"),
        );
    }
}

fn counts_of_query(counts: Option<&CountsSpec>, path: &str, issues: &mut Vec<Issue>) {
    let cpath = format!("{path}.counts");
    let Some(c) = counts else {
        issues.push(
            Issue::error(
                path,
                "a raw query judged sequentially needs count queries",
            )
            .with_hint("add `counts: {requests: …, errors: …}` (or `counts: {buckets: …}` for a latency histogram) with `[{{ interval }}]` as the counted range, or write `judge: threshold`"),
        );
        return;
    };
    let rates = c.requests.is_some() || c.errors.is_some();
    if rates && c.buckets.is_some() {
        issues.push(
            Issue::error(&cpath, "counts has both requests/errors and buckets").with_hint(
                "keep `requests` and `errors` for an error rate, or `buckets` for latency",
            ),
        );
    } else if c.requests.is_some() != c.errors.is_some() {
        let missing = if c.requests.is_none() {
            "requests"
        } else {
            "errors"
        };
        issues.push(
            Issue::error(&cpath, format!("counts has no `{missing}` query"))
                .with_hint("an error rate is judged from both requests and errors"),
        );
    } else if !rates && c.buckets.is_none() {
        issues.push(
            Issue::error(&cpath, "counts names no query")
                .with_hint("add `requests` and `errors`, or `buckets`"),
        );
    }
    for (field, text) in [
        ("requests", &c.requests),
        ("errors", &c.errors),
        ("buckets", &c.buckets),
    ] {
        if let Some(text) = text {
            if text.trim().is_empty() {
                issues.push(
                    Issue::error(format!("{cpath}.{field}"), "query is empty")
                        .with_hint("write a PromQL expression"),
                );
            } else if text.matches("{{").count() != text.matches("}}").count() {
                issues.push(
                    Issue::error(
                        format!("{cpath}.{field}"),
                        "unbalanced `{{ … }}` template braces",
                    )
                    .with_hint("close every `{{ variable` with `}}`"),
                );
            }
        }
    }
}
