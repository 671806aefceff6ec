//! Regression tests of issue "first hour": the messages a newcomer meets in `check`.

use shiftgate::policy::diagnostic::{Diagnostic, Severity};
use shiftgate::policy::parse::check_str;

const POLICY: &str = include_str!("../../policies/envoy-local.yaml");

fn diagnostics(text: &str) -> Vec<Diagnostic> {
    check_str("policy.yaml", text).diagnostics
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line.contains(needle))
        .map(|index| index + 1)
        .expect("the needle is in the text")
}

#[test]
fn cron_hour_25_names_the_field_and_its_range() {
    let text = format!(
        "{POLICY}  windows:\n    - {{ kind: allow, schedule: \"0 25 * * Mon-Fri\", duration: 8h }}\n"
    );
    let found = diagnostics(&text);
    let schedule = found
        .iter()
        .find(|d| d.path == "spec.windows[0].schedule")
        .expect("the schedule is refused");
    assert!(
        schedule
            .message
            .contains("hour 25 is out of range (0 to 23)"),
        "{}",
        schedule.message
    );
    assert!(
        !schedule.message.contains("less than 23"),
        "{}",
        schedule.message
    );
}

#[test]
fn unclosed_bracket_is_reported_on_the_line_that_opens_it() {
    let text = POLICY.replace("steps: [0, 25, 50, 100]", "steps: [0, 25, 50, 100");
    let found = diagnostics(&text);
    let [error] = found.as_slice() else {
        panic!("one YAML error expected: {found:?}");
    };
    assert_eq!(error.line, line_of(&text, "steps: ["), "{error:?}");
    assert_eq!(error.column, "  steps: [".len(), "{error:?}");
    assert!(
        error.message.contains("`[` is never closed"),
        "{}",
        error.message
    );
}

#[test]
fn misspelt_min_requests_gives_no_spurious_zero_warning() {
    let text = POLICY.replace("minRequests: 20", "minRequest: 20");
    let found = diagnostics(&text);
    assert!(
        found
            .iter()
            .any(|d| d.path == "spec.analysis.minRequest" && d.severity == Severity::Error),
        "{found:?}"
    );
    let spurious: Vec<&Diagnostic> = found
        .iter()
        .filter(|d| d.severity == Severity::Warning && d.path == "spec.analysis.minRequests")
        .collect();
    assert!(spurious.is_empty(), "{spurious:?}");
}
