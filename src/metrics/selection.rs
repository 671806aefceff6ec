//! What a policy's built-in queries select, said in words for `shiftgate check` (which
//! cannot read the cluster) and the preflight: per template family, the label matchers
//! of stable and canary, where they come from, and what is assumed. Pure.

use super::builtin::{self, Family};
use super::matchers::{matchers, request_family};
use super::queries::{PolicyQueries, SideQueries};
use super::template::Template;
use super::variables::{Side, Variables};
use super::PolicyRef;
use crate::policy::RolloutSpec;

/// One line per template family the policy reads, then the request count.
pub fn describe(policy: &PolicyRef, spec: &RolloutSpec) -> Vec<String> {
    let variables = Variables::new(policy, spec);
    let mut families: Vec<Family> = Vec::new();
    let used = spec
        .analysis
        .metrics
        .iter()
        .filter_map(|m| m.template.as_deref().and_then(builtin::lookup))
        .map(|b| b.family);
    for family in used.chain(
        spec.analysis
            .requests
            .is_none()
            .then(|| request_family(spec)),
    ) {
        if !families.contains(&family) {
            families.push(family);
        }
    }
    let mut lines: Vec<String> = families
        .into_iter()
        .map(|family| family_line(family, spec, &variables))
        .collect();
    if !spec.analysis.metrics.is_empty() {
        let plan = PolicyQueries::plan(policy, spec);
        lines.push(match &plan.canary_requests {
            SideQueries::Ready { value, .. } => format!("minRequests counts `{value}`"),
            SideQueries::Failed(why) => format!("minRequests cannot be counted: {why}"),
        });
    }
    lines
}

fn family_line(family: Family, spec: &RolloutSpec, variables: &Variables) -> String {
    let side = |side: Side| {
        let variables = variables.with_side(side);
        matchers(family, &variables).and_then(|m| {
            let selector = family.selector(&m);
            Template::parse(family.as_str(), &selector)
                .and_then(|t| t.render(&variables))
                .map_err(|e| e.to_string())
        })
    };
    let (stable, canary) = match (side(Side::Stable), side(Side::Canary)) {
        (Ok(stable), Ok(canary)) => (stable, canary),
        (Err(why), _) | (_, Err(why)) => {
            return format!(
                "{}-* queries cannot select the releases: {why}",
                family.as_str()
            )
        }
    };
    let source = if spec.analysis.target_labels.is_some() {
        "spec.analysis.targetLabels".to_owned()
    } else {
        match (family, &spec.router) {
            (Family::Istio, r) if r.istio.as_ref().is_some_and(|i| i.canary.subset.is_some()) => {
                "assumed: Istio reports each subset's pod `version` label as destination_version, \
                 which the rollout reads from the subsets' DestinationRule; the subset names \
                 stand in here; a subset selecting pods without `version` needs \
                 spec.analysis.targetLabels"
                    .to_owned()
            }
            (Family::Istio, r) if r.service.is_some() => {
                "assumed: the pods run an Istio sidecar and carry the selector value as their `version` label"
                    .to_owned()
            }
            (Family::App, _) => {
                "assumed: the app's counters carry the Service selector's label and value".to_owned()
            }
            _ => "the router's targets".to_owned(),
        }
    };
    format!(
        "{}-* queries select stable {{{stable}}}, canary {{{canary}}} ({source})",
        family.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> RolloutSpec {
        serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn policy() -> PolicyRef {
        PolicyRef {
            namespace: "echo".to_owned(),
            name: "web".to_owned(),
        }
    }

    #[test]
    fn subset_level_istio_says_what_it_assumes_and_overrides_win() {
        let text = "revision: v2\nrouter: {istio: {virtualService: web, stable: {host: web, subset: blue}, canary: {host: web, subset: green}}}\nsteps: [0, 100]\nanalysis:\n  metrics: [{name: e, template: istio-error-rate, max: 0.01}]\n";
        let lines = describe(&policy(), &spec(text));
        assert!(
            lines[0].contains(r#"canary {reporter="destination",destination_service="web.echo.svc.cluster.local",destination_version="green"}"#)
                && lines[0].contains("DestinationRule"),
            "{lines:?}"
        );
        let with = text.replace(
            "  metrics:",
            "  targetLabels: {stable: {destination_workload: web-blue}, canary: {destination_workload: web-green}}\n  metrics:",
        );
        let lines = describe(&policy(), &spec(&with));
        assert!(
            lines[0].contains(r#"destination_workload="web-green""#)
                && lines[0].contains("spec.analysis.targetLabels"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("minRequests counts `sum(increase(istio_requests_total{"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_service_router_with_app_counters_selects_by_the_selector_key() {
        let text = "revision: v2\nrouter: {service: {service: nginx, selectorKey: version, stableValue: '1.10', canaryValue: '1.11'}}\nsteps: [0, 100]\nanalysis:\n  metrics: [{name: e, template: app-error-rate, max: 0.01}]\n";
        let lines = describe(&policy(), &spec(text));
        assert!(
            lines[0].starts_with(
                r#"app-* queries select stable {version="1.10"}, canary {version="1.11"}"#
            ),
            "{lines:?}"
        );
        assert_eq!(
            lines[1],
            r#"minRequests counts `sum(increase(http_requests_total{version="1.11"}[30s]))`"#
        );
    }
}
