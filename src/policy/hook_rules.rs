//! Rules for `spec.hooks` and for the JSONPath expectations of checks. Every issue
//! names its field path, so the report gives file:line:col.

use std::collections::BTreeSet;

use super::diagnostic::{index, Issue};
use super::hooks::{HookHeader, HookSpec, JsonExpectation};
use super::names::{http_url, is_token};

/// Most retries of one hook call.
pub const MAX_HOOK_RETRIES: u32 = 10;

/// Issues of `expectJson` at `path` (`spec.checks[0].http.expectJson`).
pub(super) fn json_expectations(list: &[JsonExpectation], path: &str, issues: &mut Vec<Issue>) {
    for (i, expectation) in list.iter().enumerate() {
        let field = format!("{}.path", index(path, i));
        if let Err(e) = jsonpath_rust::parser::parse_json_path(&expectation.path) {
            let reason = e.to_string().lines().next().unwrap_or_default().to_owned();
            issues.push(
                Issue::error(
                    field,
                    format!("`{}` is not a JSONPath: {reason}", expectation.path),
                )
                .with_hint("write a JSONPath from the root, e.g. `$.status` or `$.checks[0].ok`"),
            );
        }
    }
}

/// Issues of the readable hooks (`None`: an item that could not be read).
pub(super) fn hooks(list: &[Option<&HookSpec>], issues: &mut Vec<Issue>) {
    let mut names = BTreeSet::new();
    for (i, hook) in list.iter().enumerate() {
        let Some(hook) = hook else { continue };
        let path = index("spec.hooks", i);
        if hook.name.trim().is_empty() {
            issues.push(
                Issue::error(format!("{path}.name"), "hook name is empty")
                    .with_hint("name it, e.g. `load-test`"),
            );
        } else if !names.insert(hook.name.as_str()) {
            issues.push(
                Issue::error(
                    format!("{path}.name"),
                    format!("hook `{}` is named twice", hook.name),
                )
                .with_hint("give every hook its own name: status and events show it"),
            );
        }
        if hook.on.is_empty() {
            issues.push(
                Issue::error(
                    format!("{path}.on"),
                    "`on` is empty: the hook is never called",
                )
                .with_hint(
                    "list phases: preRollout, step, confirmPromotion, postRollout, rollback",
                ),
            );
        }
        let mut phases = BTreeSet::new();
        for phase in &hook.on {
            if !phases.insert(*phase) {
                issues.push(
                    Issue::error(format!("{path}.on"), format!("`{phase}` is listed twice"))
                        .with_hint("list each phase once"),
                );
            }
        }
        http_url(&hook.url, &format!("{path}.url"), issues);
        if hook.timeout.std().is_zero() {
            issues.push(
                Issue::error(
                    format!("{path}.timeout"),
                    "timeout is 0s: every call would fail",
                )
                .with_hint("write e.g. `10s`"),
            );
        }
        if hook.retries > MAX_HOOK_RETRIES {
            issues.push(
                Issue::error(
                    format!("{path}.retries"),
                    format!("{} retries is more than {MAX_HOOK_RETRIES}", hook.retries),
                )
                .with_hint("a hook that needs more is down: let `onFailure` decide"),
            );
        }
        for (h, header) in hook.headers.iter().enumerate() {
            header_rule(header, &index(&format!("{path}.headers"), h), issues);
        }
    }
}

pub(super) fn header_rule(header: &HookHeader, path: &str, issues: &mut Vec<Issue>) {
    if !is_token(&header.name) {
        issues.push(
            Issue::error(
                format!("{path}.name"),
                format!("`{}` is not a header name", header.name),
            )
            .with_hint("write a header name such as `authorization` or `x-token`"),
        );
    }
    let sources = [
        header.value.is_some(),
        header.value_env.is_some(),
        header.value_secret_ref.is_some(),
    ];
    match sources.iter().filter(|set| **set).count() {
        1 => {}
        0 => issues.push(Issue::error(path, "the header has no value").with_hint(
            "set one of `value`, `valueEnv` (shiftgate run) or `valueSecretRef` (daemon)",
        )),
        _ => issues.push(
            Issue::error(
                path,
                "more than one of `value`, `valueEnv`, `valueSecretRef` is set",
            )
            .with_hint("keep one of them"),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::policy::parse::parse_str;

    const POLICY: &str = r#"apiVersion: shiftgate.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: checkout, namespace: shop }
spec:
  revision: v2
  router:
    istio: { virtualService: checkout, stable: { host: a }, canary: { host: b } }
  steps: [0, 100]
  checks:
    - http: { url: "http://gw/ready", expectJson: [{ path: "$.status[", equals: ok }] }
  analysis:
    prometheus: { address: "http://127.0.0.1:9090" }
    metrics: [{ name: error-rate, template: istio-error-rate, max: 0.01 }]
  hooks:
    - name: audit
      on: [preRollout, preRollout]
      url: "ftp://hooks"
      timeout: 0s
      retries: 11
      headers:
        - { name: "bad header", value: x, valueEnv: Y }
    - name: audit
      on: []
      url: "http://hooks/b"
"#;

    #[test]
    fn every_hook_and_json_path_issue_is_reported_at_its_place() {
        let diagnostics = parse_str("policy.yaml", POLICY).unwrap_err();
        let at = |path: &str| {
            diagnostics
                .iter()
                .find(|d| d.path == path)
                .map(|d| (d.line, d.column, d.message.clone()))
                .unwrap_or_else(|| panic!("no diagnostic at {path}: {diagnostics:#?}"))
        };
        let (line, _, message) = at("spec.checks[0].http.expectJson[0].path");
        assert_eq!(line, 10);
        assert!(message.contains("is not a JSONPath"), "{message}");
        assert_eq!(at("spec.hooks[0].on").0, 16);
        assert_eq!(at("spec.hooks[0].url").0, 17);
        assert!(at("spec.hooks[0].timeout").2.contains("0s"));
        assert!(at("spec.hooks[0].retries").2.contains("more than 10"));
        assert!(at("spec.hooks[0].headers[0].name")
            .2
            .contains("not a header name"));
        assert!(at("spec.hooks[0].headers[0]").2.contains("more than one"));
        assert!(at("spec.hooks[1].name").2.contains("named twice"));
        assert!(at("spec.hooks[1].on").2.contains("never called"));
    }
}
