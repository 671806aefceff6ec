//! Bounds on what a policy may hold, so that no input can make shiftgate allocate
//! without limit, spend seconds on one field, or overflow a time computation: the size
//! of a file, the nesting of its YAML, the number of items in each list, the length of
//! strings, and the largest value of every duration. docs/policy.md ("Limits") lists
//! them; every one is reported with its field path (and so at file:line:col).
//!
//! The checks run twice on purpose: [`text_issues`] and [`document_issues`] on the raw
//! file before the schema walk (whose cost grows with the input), and
//! [`spec_issues`] on the typed spec, which is all the daemon sees of a custom resource.

use std::io::Read as _;
use std::path::Path;

use serde_json::Value;

use super::diagnostic::{index, join, Issue};
use super::duration::Duration;
use super::validate::SpecParts;

/// Largest policy or scenario file, in bytes (checked before parsing).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Deepest indentation (spaces, `-`, `?`, `:` before the first other character of a line),
/// which bounds how deeply block YAML nests (flow nesting is bounded by the parser).
pub const MAX_INDENT_COLUMNS: usize = 256;
/// Deepest running nesting of `[`/`{` (closing brackets subtract). Counted on the raw
/// text, so brackets inside strings count too; a PromQL query nests a few levels.
/// Without it a deeply nested flow collection makes a YAML parser crawl.
pub const MAX_BRACKET_DEPTH: usize = 128;
/// Longest string value; queries and URLs are far shorter.
pub const MAX_STRING_CHARS: usize = 16 * 1024;
/// Longest mapping key (`vars`, `headers`, and every field name).
pub const MAX_KEY_CHARS: usize = 256;
/// Longest time zone name (the longest IANA name has 32 characters).
pub const MAX_TIME_ZONE_CHARS: usize = 64;
/// Longest cron schedule.
pub const MAX_SCHEDULE_CHARS: usize = 256;
/// Longest annotation value (Kubernetes's limit for all of them together).
pub const MAX_ANNOTATION_CHARS: usize = 256 * 1024;
/// Longest revision (it is shown in statuses and events).
pub const MAX_REVISION_CHARS: usize = 253;
/// Most attempts of one pre-traffic check.
pub const MAX_CHECK_ATTEMPTS: u32 = 100;

/// Most items of each list (or entries of each map) of a spec.
pub const LISTS: &[(&str, usize)] = &[
    ("spec.steps", 100),
    ("spec.analysis.metrics", 50),
    ("spec.windows", 20),
    ("spec.checks", 20),
    ("spec.checks[].http.headers", 50),
    ("spec.analysis.vars", 100),
    ("spec.notify", 20),
    ("spec.hooks", 20),
    ("spec.router.istio.routes", 50),
    ("spec.router.envoy.domains", 50),
];
/// Most items of any other list or map (e.g. metadata labels).
pub const MAX_OTHER_ITEMS: usize = 200;

const DAY: u64 = 86_400;

/// The largest value of each duration field.
pub const DURATIONS: &[(&str, Duration)] = &[
    ("spec.steps[].hold", Duration::from_secs(30 * DAY)),
    ("spec.windows[].duration", Duration::from_secs(30 * DAY)),
    ("spec.analysis.interval", Duration::from_secs(3600)),
    ("spec.analysis.window", Duration::from_secs(DAY)),
    ("spec.analysis.prometheus.timeout", Duration::from_secs(300)),
    ("spec.checks[].http.timeout", Duration::from_secs(300)),
    ("spec.hooks[].timeout", Duration::from_secs(300)),
    ("spec.hooks[].backoff", Duration::from_secs(300)),
];

/// The largest value of a duration field, by its generic path (`spec.steps[].hold`).
pub fn max_duration(generic_path: &str) -> Option<Duration> {
    DURATIONS
        .iter()
        .find(|(path, _)| *path == generic_path)
        .map(|(_, max)| *max)
}

/// The issue of a duration above its maximum, if it is.
pub fn duration_issue(path: &str, generic_path: &str, value: Duration) -> Option<Issue> {
    let max = max_duration(generic_path)?;
    (value > max).then(|| too_long_duration(path, value, max))
}

/// A duration above `max`, at `path`.
pub fn too_long_duration(path: &str, value: Duration, max: Duration) -> Issue {
    let max = max.to_human();
    Issue::error(
        path,
        format!("{value} is longer than the maximum {max} of this field"),
    )
    .with_hint(format!("write at most `{max}`"))
}

/// Reading a file with a size bound failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(
        "the file is larger than {} bytes (1 MiB), the largest accepted",
        MAX_FILE_BYTES
    )]
    TooLarge,
    #[error("the file is not UTF-8 text")]
    NotText,
}

/// Reads a whole file (or pipe, or `/dev/stdin`), refusing more than [`MAX_FILE_BYTES`]
/// without reading further: a huge input costs at most that much memory.
pub fn read_bounded(path: &Path) -> Result<String, ReadError> {
    let file = std::fs::File::open(path)?;
    if file
        .metadata()
        .is_ok_and(|m| m.is_file() && m.len() > MAX_FILE_BYTES)
    {
        return Err(ReadError::TooLarge);
    }
    read_bounded_from(file)
}

/// Like [`read_bounded`], from any reader (e.g. stdin).
pub fn read_bounded_from(reader: impl std::io::Read) -> Result<String, ReadError> {
    let mut bytes = Vec::new();
    reader.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge);
    }
    String::from_utf8(bytes).map_err(|_| ReadError::NotText)
}

/// Problems of the text itself, found before the YAML parser sees it: its size and the
/// depth of its indentation. The issue carries the 1-based line it is about.
pub fn text_issue(text: &str) -> Option<(Issue, usize)> {
    if text.len() as u64 > MAX_FILE_BYTES {
        return Some((
            Issue::error("", ReadError::TooLarge.to_string())
                .with_hint("split it into several files"),
            1,
        ));
    }
    let mut depth: usize = 0;
    for (number, line) in text.lines().enumerate() {
        for c in line.chars() {
            match c {
                '[' | '{' => depth += 1,
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth > MAX_BRACKET_DEPTH {
                return Some((
                    Issue::error(
                        "",
                        format!("brackets are nested deeper than {MAX_BRACKET_DEPTH} levels here"),
                    )
                    .with_hint("a policy nests a few levels; close the extra `[` or `{`"),
                    number + 1,
                ));
            }
        }
        let indent = line
            .chars()
            .take_while(|c| matches!(c, ' ' | '\t' | '-' | '?' | ':'))
            .take(MAX_INDENT_COLUMNS + 1)
            .count();
        if indent > MAX_INDENT_COLUMNS {
            return Some((
                Issue::error(
                    "",
                    format!("this line is nested deeper than {MAX_INDENT_COLUMNS} columns"),
                )
                .with_hint("a policy nests a few levels; remove the extra `- ` or indentation"),
                number + 1,
            ));
        }
    }
    None
}

/// Count and length limits on a policy document as written, before the schema walk.
pub fn document_issues(document: &Value) -> Vec<Issue> {
    let mut issues = Vec::new();
    walk(document, "", "", &mut issues);
    issues
}

fn walk(value: &Value, path: &str, generic: &str, issues: &mut Vec<Issue>) {
    match value {
        Value::String(text) => {
            if let Some(issue) = string_issue(path, generic, text) {
                issues.push(issue);
            }
        }
        Value::Array(items) => {
            if let Some(issue) = count_issue(path, generic, items.len()) {
                issues.push(issue);
                return;
            }
            let item_generic = format!("{generic}[]");
            for (i, item) in items.iter().enumerate() {
                walk(item, &index(path, i), &item_generic, issues);
            }
        }
        Value::Object(map) => {
            if let Some(issue) = count_issue(path, generic, map.len()) {
                issues.push(issue);
                return;
            }
            for (key, item) in map {
                if key.chars().count() > MAX_KEY_CHARS {
                    issues.push(
                        Issue::error(
                            path,
                            format!(
                                "a key starting `{}…` is longer than {MAX_KEY_CHARS} characters",
                                key.chars().take(20).collect::<String>()
                            ),
                        )
                        .with_hint("use a short name"),
                    );
                    continue;
                }
                walk(item, &join(path, key), &join(generic, key), issues);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The most items the list or map at `generic` (`spec.checks[].http.headers`) may hold.
pub fn max_items(generic: &str) -> usize {
    LISTS
        .iter()
        .find(|(path, _)| *path == generic)
        .map_or(MAX_OTHER_ITEMS, |(_, max)| *max)
}

fn count_issue(path: &str, generic: &str, count: usize) -> Option<Issue> {
    let max = max_items(generic);
    (count > max).then(|| {
        Issue::error(
            path,
            format!("{count} items are more than the {max} this field may hold"),
        )
        .with_hint(format!("keep at most {max}"))
    })
}

/// The longest value of the string field at `generic`.
fn max_chars(generic: &str) -> usize {
    if generic.ends_with(".timeZone") {
        MAX_TIME_ZONE_CHARS
    } else if generic.ends_with(".schedule") {
        MAX_SCHEDULE_CHARS
    } else if generic == "spec.revision" {
        MAX_REVISION_CHARS
    } else if generic.starts_with("metadata.annotations.") {
        // Kubernetes allows 256 KiB of annotations (kubectl's last-applied copy is one).
        MAX_ANNOTATION_CHARS
    } else {
        MAX_STRING_CHARS
    }
}

fn string_issue(path: &str, generic: &str, text: &str) -> Option<Issue> {
    let max = max_chars(generic);
    // Counting stops at the bound: a huge value costs no more than a long one.
    let long = text.chars().take(max + 1).count() > max;
    long.then(|| {
        Issue::error(
            path,
            format!(
                "`{}…` is longer than {max} characters, the most this field may hold",
                text.chars().take(20).collect::<String>()
            ),
        )
        .with_hint(format!("write at most {max} characters"))
    })
}

/// Count, length and duration limits on a typed spec (all the daemon sees of a custom
/// resource; for files, [`document_issues`] has already checked counts and lengths).
pub(super) fn spec_issues(parts: &SpecParts<'_>) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut count = |path: &str, generic: &str, n: usize| {
        if let Some(issue) = count_issue(path, generic, n) {
            issues.push(issue);
        }
    };
    if let Some(steps) = &parts.steps {
        count("spec.steps", "spec.steps", steps.len());
    }
    count("spec.checks", "spec.checks", parts.checks.len());
    count(
        "spec.analysis.metrics",
        "spec.analysis.metrics",
        parts.metrics.len(),
    );
    count("spec.windows", "spec.windows", parts.windows.len());
    count("spec.notify", "spec.notify", parts.notify.len());
    count("spec.hooks", "spec.hooks", parts.hooks.len());
    if let Some(analysis) = parts.analysis {
        count(
            "spec.analysis.vars",
            "spec.analysis.vars",
            analysis.vars.len(),
        );
    }
    if let Some(router) = parts.router {
        if let Some(istio) = &router.istio {
            count(
                "spec.router.istio.routes",
                "spec.router.istio.routes",
                istio.routes.len(),
            );
        }
        if let Some(envoy) = &router.envoy {
            count(
                "spec.router.envoy.domains",
                "spec.router.envoy.domains",
                envoy.domains.len(),
            );
        }
    }
    if let Some(revision) = parts.revision {
        issues.extend(string_issue("spec.revision", "spec.revision", revision));
    }
    let mut duration = |path: String, generic: &str, value: Duration| {
        issues.extend(duration_issue(&path, generic, value));
    };
    for (i, step) in parts.steps.iter().flatten().enumerate() {
        if let Some(hold) = step.and_then(|s| s.hold) {
            duration(
                format!("{}.hold", index("spec.steps", i)),
                "spec.steps[].hold",
                hold,
            );
        }
    }
    for (i, window) in parts.windows.iter().enumerate() {
        if let Some(value) = window.duration {
            duration(
                format!("{}.duration", index("spec.windows", i)),
                "spec.windows[].duration",
                value,
            );
        }
    }
    if let Some(a) = parts.analysis {
        duration(
            "spec.analysis.interval".to_owned(),
            "spec.analysis.interval",
            a.interval,
        );
        if let Some(window) = a.window {
            duration(
                "spec.analysis.window".to_owned(),
                "spec.analysis.window",
                window,
            );
        }
        if let Some(p) = &a.prometheus {
            duration(
                "spec.analysis.prometheus.timeout".to_owned(),
                "spec.analysis.prometheus.timeout",
                p.timeout,
            );
        }
    }
    for (i, check) in parts.checks.iter().enumerate() {
        if let Some(check) = check {
            duration(
                format!("{}.http.timeout", index("spec.checks", i)),
                "spec.checks[].http.timeout",
                check.http.timeout,
            );
        }
    }
    for (i, check) in parts.checks.iter().enumerate() {
        let Some(check) = check else { continue };
        let path = format!("{}.http", index("spec.checks", i));
        if check.http.attempts > MAX_CHECK_ATTEMPTS {
            issues.push(
                Issue::error(
                    format!("{path}.attempts"),
                    format!(
                        "{} attempts are more than the maximum {MAX_CHECK_ATTEMPTS}",
                        check.http.attempts
                    ),
                )
                .with_hint("a check that fails 3 times in a row is failing; keep it small"),
            );
        }
        if let Some(issue) = count_issue(
            &format!("{path}.headers"),
            "spec.checks[].http.headers",
            check.http.headers.len(),
        ) {
            issues.push(issue);
        }
    }
    issues
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_maximum_is_printable_and_parses_back() {
        for (path, max) in DURATIONS {
            assert_eq!(max.to_human().parse::<Duration>(), Ok(*max), "{path}");
        }
    }

    #[test]
    fn long_lists_and_strings_are_refused_at_their_path() {
        let steps: Vec<Value> = (0..101).map(|_| Value::from(0)).collect();
        let document = serde_json::json!({
            "spec": {
                "steps": steps,
                "windows": [{ "timeZone": "x".repeat(65) }],
            }
        });
        let issues = document_issues(&document);
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["spec.steps", "spec.windows[0].timeZone"]);
    }

    #[test]
    fn bounded_reads_refuse_more_than_the_limit() {
        let big = vec![b'a'; (MAX_FILE_BYTES + 1) as usize];
        assert!(matches!(
            read_bounded_from(&big[..]),
            Err(ReadError::TooLarge)
        ));
        let ok = vec![b'a'; MAX_FILE_BYTES as usize];
        assert!(read_bounded_from(&ok[..]).is_ok());
    }

    #[test]
    fn deep_indentation_is_refused_with_its_line() {
        let text = format!("a: 1\n{}x\n", "- ".repeat(200));
        let (issue, line) = text_issue(&text).unwrap();
        assert_eq!(line, 2, "{issue:?}");
        assert!(text_issue("a:\n  - b: 1\n").is_none());
        let text = format!("a: 1\nb: 2\nc: {}\n", "[".repeat(129));
        let (issue, line) = text_issue(&text).unwrap();
        assert_eq!(line, 3, "{issue:?}");
        let balanced = format!("q: {}\n", "sum(rate(x{a=\"b\"}[5m])) ".repeat(1000));
        assert!(text_issue(&balanced).is_none());
    }
}
