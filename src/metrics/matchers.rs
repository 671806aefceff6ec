//! Which series are a target's: the label matchers that tell stable's series from the
//! canary's in a template family (`spec.analysis.targetLabels`, the DestinationRule's
//! version labels, or the router's default), and the family whose requests
//! `minRequests` counts. Pure.

use super::builtin::{self, Family, Matcher};
use super::variables::Variables;
use crate::policy::RolloutSpec;

/// The label matchers (beside the family's own) that select the target `variables` is
/// on in `family`'s series: `spec.analysis.targetLabels` (or those derived from the
/// DestinationRule) when set, else the router's default: Istio subsets by
/// `destination_version`, the app's counters by the Service router's selector key.
pub fn matchers(family: Family, variables: &Variables) -> Result<Vec<Matcher>, String> {
    let target = variables.target();
    if !target.labels.is_empty() {
        return Ok(target
            .labels
            .keys()
            .map(|label| Matcher {
                label: label.clone(),
                variable: format!("target.label.{label}"),
            })
            .collect());
    }
    let subset = |label: &str| Matcher {
        label: label.to_owned(),
        variable: "target.subset".to_owned(),
    };
    match family {
        Family::Istio => Ok(target
            .subset
            .as_ref()
            .map(|_| subset("destination_version"))
            .into_iter()
            .collect()),
        Family::Envoy => Ok(Vec::new()),
        Family::App => match variables.selector_key.as_deref() {
            Some(key) if crate::policy::templates::is_label_name(key) => Ok(vec![subset(key)]),
            _ => Err(format!(
                "`app-*` templates need the label of your counters that tells the releases apart: set spec.analysis.targetLabels (e.g. `{{stable: {{version: blue}}, canary: {{version: green}}}}`){}",
                match variables.selector_key.as_deref() {
                    Some(key) => format!("; the selector key `{key}` is not a Prometheus label name"),
                    None => String::new(),
                }
            )),
        },
        Family::Nginx => Err(
            "`nginx-*` templates need the label that tells the releases apart (e.g. the canary Ingress's `ingress`): set spec.analysis.targetLabels".to_owned(),
        ),
    }
}

/// The family whose request count `minRequests` uses: that of the first built-in the
/// policy uses, else the router's own (Envoy for the Envoy router, Istio otherwise).
pub fn request_family(spec: &RolloutSpec) -> Family {
    spec.analysis
        .metrics
        .iter()
        .filter_map(|m| m.template.as_deref().and_then(builtin::lookup))
        .map(|b| b.family)
        .next()
        .unwrap_or(if spec.router.envoy.is_some() {
            Family::Envoy
        } else {
            Family::Istio
        })
}
