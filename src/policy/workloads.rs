//! `spec.workloads`: the stable and canary Deployments (apps/v1) behind the routed
//! destinations, in the policy's own namespace. With them the rollout waits for the
//! canary to be available, may take its revision from the canary's pod template, and
//! may scale the previous stable down after a promotion. With the router's `colors` the
//! policy names one Deployment per colour instead (`colors: {blue: web-blue, …}`), and
//! orienting the spec for the live colour fills `stable`/`canary` (policy::colours), so
//! the engine and the shell only ever read an oriented pair. The types here are the
//! policy format and the status; the rules are pure.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::diagnostic::Issue;
use super::duration::Duration;
use super::names::dns_subdomain;
use super::status::Timestamp;

/// The Deployments of the two releases. Names only: a policy can only name
/// Deployments in its own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadsSpec {
    /// Name of the stable release's Deployment (without the router's `colors`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stable: String,
    /// Name of the canary release's Deployment (without the router's `colors`). No
    /// traffic moves until it is available (the test of `kubectl rollout status`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub canary: String,
    /// With the router's `colors`: the Deployment of each colour, keyed by the router's
    /// colour names (`{blue: web-blue, green: web-green}`). The live colour's is the
    /// stable Deployment, the idle colour's the canary one, decided per revision.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub colors: BTreeMap<String, String>,
    /// `canaryDeployment`: the revision is derived from the canary Deployment's pod
    /// template (a change of image starts a new rollout); `spec.revision` is then absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_from: Option<RevisionFrom>,
    /// Scale the previous stable Deployment to zero this long after a promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScaleDownSpec>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RevisionFrom {
    /// A hash of the canary Deployment's `spec.template`, with its images.
    CanaryDeployment,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleDownSpec {
    /// How long after the promotion the previous stable keeps its replicas (an `undo`
    /// within it is one route write); e.g. `10m`.
    pub after: Duration,
}

/// What shiftgate knows and did about the workloads of the current revision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadsStatus {
    /// The canary's images, for people (`web:1.4.2`), when read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_images: Option<String>,
    /// When the previous stable will be scaled down (`status.promotedAt` + `after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_at: Option<Timestamp>,
    /// The previous stable scaled to zero, with the replicas it had (restored by
    /// `undo`). Stored before the scale is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaled_down: Option<ScaledDown>,
    /// With colours and `revisionFrom`: the revision the idle colour's Deployment had
    /// when it became idle (at the promotion, or when first seen). A rollout starts
    /// only when that Deployment's revision differs from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_baseline: Option<IdleBaseline>,
}

/// The revision derived from one colour's Deployment when that colour became idle.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdleBaseline {
    /// The idle colour.
    pub color: String,
    /// Its Deployment's derived revision then (`images@hash`).
    pub revision: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaledDown {
    /// The Deployment scaled to 0 (the previous stable).
    pub deployment: String,
    /// `spec.replicas` before the scale-down.
    pub replicas: i32,
    /// When the scale-down was decided (and stored, before it was sent).
    pub at: Timestamp,
    /// The Deployment was seen at 0 replicas: the scale-down is done.
    #[serde(default)]
    pub confirmed: bool,
}

/// `workloads` with colour `stable`'s Deployment as stable and colour `canary`'s as
/// canary; unchanged without `colors` (or for a colour it does not name: validation
/// refuses that).
pub fn orient_workloads(workloads: &WorkloadsSpec, stable: &str, canary: &str) -> WorkloadsSpec {
    let mut oriented = workloads.clone();
    if let (Some(s), Some(c)) = (workloads.colors.get(stable), workloads.colors.get(canary)) {
        oriented.stable = s.clone();
        oriented.canary = c.clone();
    }
    oriented
}

/// Every issue of `spec.workloads` together with `spec.revision`. `colours` are the
/// router's colour names (empty without `colors`).
pub(super) fn workloads_issues(
    workloads: Option<&WorkloadsSpec>,
    revision: Option<&str>,
    colours: &[String],
    issues: &mut Vec<Issue>,
) {
    let revision_written = revision.is_some_and(|r| !r.trim().is_empty());
    let derived = workloads.is_some_and(|w| w.revision_from.is_some());
    if derived && revision_written {
        issues.push(
            Issue::error(
                "spec.revision",
                "spec.revision is set, but spec.workloads.revisionFrom derives the revision \
                 from the canary Deployment",
            )
            .with_hint("remove spec.revision, or remove spec.workloads.revisionFrom"),
        );
    }
    if !derived && !revision_written {
        // Worded as the schema's own missing-field error was when `revision` was required.
        issues.push(match revision {
            None => Issue::error("spec.revision", "missing required field `revision`")
                .with_hint("add `revision:`"),
            Some(_) => Issue::error("spec.revision", "revision is empty").with_hint(
                "write the release being rolled out, e.g. `\"v2\"` or an image tag, or derive it \
                 with `workloads: {revisionFrom: canaryDeployment, …}`",
            ),
        });
    }
    let Some(w) = workloads else {
        return;
    };
    if colours.is_empty() {
        fixed_issues(w, issues);
    } else {
        colour_issues(w, colours, issues);
    }
    if let Some(scale) = &w.scale_down {
        if scale.after == Duration::ZERO {
            issues.push(
                Issue::error(
                    "spec.workloads.scaleDown.after",
                    "0s leaves no time to undo a promotion before the previous stable is gone",
                )
                .with_hint("give the time an undo stays one route write, e.g. `10m`"),
            );
        }
    }
}

/// Without colours: a fixed stable and canary, and no `colors`.
fn fixed_issues(w: &WorkloadsSpec, issues: &mut Vec<Issue>) {
    if !w.colors.is_empty() {
        issues.push(
            Issue::error(
                "spec.workloads.colors",
                "spec.workloads.colors names a Deployment per colour, but the router names no \
                 `colors`",
            )
            .with_hint(
                "name the Deployments with `stable:` and `canary:`, or give the router `colors`",
            ),
        );
        return;
    }
    for (field, name) in [("stable", &w.stable), ("canary", &w.canary)] {
        if name.is_empty() {
            issues.push(
                Issue::error(
                    format!("spec.workloads.{field}"),
                    format!("missing required field `{field}`"),
                )
                .with_hint(format!("add `{field}:` with the name of a Deployment")),
            );
        } else if let Err(why) = dns_subdomain(name) {
            issues.push(
                Issue::error(format!("spec.workloads.{field}"), why)
                    .with_hint("the name of a Deployment in the policy's namespace"),
            );
        }
    }
    if w.stable == w.canary && !w.stable.is_empty() {
        issues.push(
            Issue::error(
                "spec.workloads.canary",
                format!("the canary Deployment is the stable one (`{}`)", w.canary),
            )
            .with_hint("name the two Deployments of the two releases"),
        );
    }
}

/// With colours: one Deployment per router colour, no fixed stable and canary (the
/// roles alternate per release). A derived revision is read from the idle colour's
/// Deployment against its baseline (`engine::colours::idle_release`).
fn colour_issues(w: &WorkloadsSpec, colours: &[String], issues: &mut Vec<Issue>) {
    let listed = colours.join(" and ");
    for (field, name) in [("stable", &w.stable), ("canary", &w.canary)] {
        if !name.is_empty() {
            issues.push(
                Issue::error(
                    format!("spec.workloads.{field}"),
                    format!(
                        "a fixed {field} Deployment with the router's `colors`: which colour is \
                         {field} alternates per release"
                    ),
                )
                .with_hint(format!(
                    "remove `stable`/`canary` and name one Deployment per colour: \
                     `colors: {{{}}}`",
                    colours
                        .iter()
                        .map(|c| format!("{c}: <deployment>"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
        }
    }
    if w.colors.is_empty() {
        if w.stable.is_empty() && w.canary.is_empty() {
            issues.push(
                Issue::error(
                    "spec.workloads.colors",
                    format!("missing the Deployment of each colour ({listed})"),
                )
                .with_hint("add `colors:` with one Deployment per router colour"),
            );
        }
        return;
    }
    for key in w.colors.keys() {
        if !colours.contains(key) {
            issues.push(
                Issue::error(
                    format!("spec.workloads.colors.{key}"),
                    format!("`{key}` is not a colour of the router (it names {listed})"),
                )
                .with_hint("key the Deployments by the router's colour names"),
            );
        }
    }
    for colour in colours {
        match w.colors.get(colour) {
            None => issues.push(
                Issue::error(
                    "spec.workloads.colors",
                    format!("no Deployment for the router's colour `{colour}`"),
                )
                .with_hint(format!("add `{colour}: <deployment>`")),
            ),
            Some(name) => {
                if let Err(why) = dns_subdomain(name) {
                    issues.push(
                        Issue::error(format!("spec.workloads.colors.{colour}"), why)
                            .with_hint("the name of a Deployment in the policy's namespace"),
                    );
                }
            }
        }
    }
    let names: Vec<&String> = w.colors.values().collect();
    if names.len() == 2 && names[0] == names[1] {
        issues.push(
            Issue::error(
                "spec.workloads.colors",
                format!("both colours name the Deployment `{}`", names[0]),
            )
            .with_hint("give each colour its own Deployment"),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(revision_from: bool) -> WorkloadsSpec {
        WorkloadsSpec {
            stable: "web-blue".into(),
            canary: "web-green".into(),
            colors: BTreeMap::new(),
            revision_from: revision_from.then_some(RevisionFrom::CanaryDeployment),
            scale_down: None,
        }
    }

    fn coloured() -> WorkloadsSpec {
        WorkloadsSpec {
            stable: String::new(),
            canary: String::new(),
            colors: [("blue", "web-blue"), ("green", "web-green")]
                .map(|(c, d)| (c.to_owned(), d.to_owned()))
                .into(),
            ..spec(false)
        }
    }

    fn issues_of(w: &WorkloadsSpec, colours: &[&str]) -> Vec<Issue> {
        let colours: Vec<String> = colours.iter().map(|c| (*c).to_owned()).collect();
        let mut issues = Vec::new();
        workloads_issues(Some(w), Some("v2"), &colours, &mut issues);
        issues
    }

    fn paths(w: Option<&WorkloadsSpec>, revision: Option<&str>) -> Vec<String> {
        let mut issues = Vec::new();
        workloads_issues(w, revision, &[], &mut issues);
        issues.into_iter().map(|i| i.path).collect()
    }

    #[test]
    fn a_derived_revision_refuses_a_written_one_and_needs_none() {
        assert_eq!(paths(Some(&spec(true)), Some("v2")), ["spec.revision"]);
        assert!(paths(Some(&spec(true)), None).is_empty());
        assert!(paths(Some(&spec(true)), Some("")).is_empty());
        assert_eq!(paths(Some(&spec(false)), None), ["spec.revision"]);
        assert_eq!(paths(None, Some(" ")), ["spec.revision"]);
        assert!(paths(None, Some("v2")).is_empty());
    }

    #[test]
    fn colours_take_one_deployment_per_colour_and_refuse_the_fixed_pair() {
        assert!(issues_of(&coloured(), &["blue", "green"]).is_empty());
        let fixed = issues_of(&spec(false), &["blue", "green"]);
        let paths: Vec<_> = fixed.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["spec.workloads.stable", "spec.workloads.canary"]);
        assert!(fixed[0].message.contains("alternates"), "{:?}", fixed[0]);
        let mixed = WorkloadsSpec {
            stable: "web-blue".into(),
            ..coloured()
        };
        let paths: Vec<_> = issues_of(&mixed, &["blue", "green"])
            .into_iter()
            .map(|i| i.path)
            .collect();
        assert_eq!(paths, ["spec.workloads.stable"]);
        // The colour keys are exactly the router's.
        let wrong = issues_of(&coloured(), &["blue", "red"]);
        let paths: Vec<_> = wrong.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            ["spec.workloads.colors.green", "spec.workloads.colors"]
        );
        assert!(wrong[1].message.contains("`red`"), "{:?}", wrong[1]);
        // Per-colour Deployments without router colours; a derived revision with them
        // is accepted (read from the idle colour against its baseline).
        assert_eq!(issues_of(&coloured(), &[])[0].path, "spec.workloads.colors");
        let derived = WorkloadsSpec {
            revision_from: Some(RevisionFrom::CanaryDeployment),
            ..coloured()
        };
        let mut issues = Vec::new();
        let colours = ["blue".to_owned(), "green".to_owned()];
        workloads_issues(Some(&derived), None, &colours, &mut issues);
        assert!(issues.is_empty(), "{issues:?}");
    }

    #[test]
    fn orienting_takes_the_deployments_of_the_decided_colours() {
        let green = orient_workloads(&coloured(), "green", "blue");
        assert_eq!(
            (green.stable.as_str(), green.canary.as_str()),
            ("web-green", "web-blue")
        );
        let blue = orient_workloads(&coloured(), "blue", "green");
        assert_eq!(
            (blue.stable.as_str(), blue.canary.as_str()),
            ("web-blue", "web-green")
        );
    }

    #[test]
    fn names_and_delay_are_checked() {
        let mut w = spec(false);
        w.canary = "web-blue".into();
        w.scale_down = Some(ScaleDownSpec {
            after: Duration::ZERO,
        });
        assert_eq!(
            paths(Some(&w), Some("v2")),
            ["spec.workloads.canary", "spec.workloads.scaleDown.after"]
        );
        w.stable = "Web_Blue".into();
        assert!(paths(Some(&w), Some("v2")).contains(&"spec.workloads.stable".to_owned()));
        w.stable = String::new();
        assert!(paths(Some(&w), Some("v2")).contains(&"spec.workloads.stable".to_owned()));
    }
}
