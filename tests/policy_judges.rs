//! `judge:` and `counts:` are checked like every other field: every problem at once,
//! at file, line, column and field path.

use std::path::Path;

use shiftgate::policy::report::check_paths;

#[test]
fn judge_and_counts_problems_are_located() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policies/invalid/judges.yaml");
    let found: Vec<String> = check_paths(&[file])
        .diagnostics
        .iter()
        .map(|d| format!("{}:{}: {}: {}", d.line, d.column, d.path, d.message))
        .collect();
    let expected = [
        "18:67: spec.analysis.metrics[0].compare.maxIncrease: `maxIncrease` is a limit of the threshold judge",
        "19:23: spec.analysis.metrics[1].template: template `istio-request-rate` has no error or latency counts",
        "20:93: spec.analysis.metrics[2].judge.sequential.alpha: alpha 2 is not a rate between 0 and 1",
        "20:103: spec.analysis.metrics[2].judge.sequential.tolerance: tolerance -1 is not a share of 0 or more",
        "21:68: spec.analysis.metrics[3].judge: judge decides how `compare` is judged, and this metric does not compare",
        "22:9: spec.analysis.metrics[4]: a raw query judged sequentially needs count queries",
        "30:9: spec.analysis.metrics[5].counts: counts has no `errors` query",
        "31:73: spec.analysis.metrics[6].judge: the string `kayenta` is not one of `threshold`, `sequential`, `mannWhitney`",
        "32:94: spec.analysis.metrics[7].judge.mannWhitney.confidence: confidence 1.5 is not a level between 0 and 1",
        "32:111: spec.analysis.metrics[7].judge.mannWhitney.allowedIncrease: allowedIncrease -1 is not a number of 0 or more",
        "32:142: spec.analysis.metrics[7].judge.mannWhitney.marginal: marginal 80 is above pass 70",
        "33:67: spec.analysis.metrics[8].compare.maxRatio: `maxRatio` is a limit of the threshold judge; this metric is judged by `mannWhitney`",
        "34:97: spec.analysis.metrics[9].judge.mannWhitney.direction: the string `sideways` is not one of `increase`, `decrease`, `either`",
    ];
    for want in expected {
        assert!(
            found.iter().any(|f| f.starts_with(want)),
            "missing `{want}` in:\n{}",
            found.join("\n")
        );
    }
    assert_eq!(found.len(), expected.len(), "{}", found.join("\n"));
}
