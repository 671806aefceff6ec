//! `spec.workloads`: the stable and canary Deployments (apps/v1) behind the routed
//! destinations, in the policy's own namespace. With them the rollout waits for the
//! canary to be available, may take its revision from the canary's pod template, and
//! may scale the previous stable down after a promotion. The types here are the policy
//! format and the status; the rules are pure.

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
    /// Name of the stable release's Deployment.
    pub stable: String,
    /// Name of the canary release's Deployment. No traffic moves until it is available
    /// (the test of `kubectl rollout status`).
    pub canary: String,
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

/// Every issue of `spec.workloads` together with `spec.revision`.
pub(super) fn workloads_issues(
    workloads: Option<&WorkloadsSpec>,
    revision: Option<&str>,
    colours: bool,
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
    if colours {
        // The Deployments are named for fixed roles; with colours the roles alternate
        // per release, and a scale-down would hit the colour that now serves.
        issues.push(
            Issue::error(
                "spec.workloads",
                "spec.workloads names a fixed stable and canary Deployment, but the router's \
                 `colors` alternate which colour is stable",
            )
            .with_hint(
                "use `stable`/`canary` destinations with spec.workloads, or colours without it",
            ),
        );
    }
    for (field, name) in [("stable", &w.stable), ("canary", &w.canary)] {
        if let Err(why) = dns_subdomain(name) {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(revision_from: bool) -> WorkloadsSpec {
        WorkloadsSpec {
            stable: "web-blue".into(),
            canary: "web-green".into(),
            revision_from: revision_from.then_some(RevisionFrom::CanaryDeployment),
            scale_down: None,
        }
    }

    fn paths(w: Option<&WorkloadsSpec>, revision: Option<&str>) -> Vec<String> {
        let mut issues = Vec::new();
        workloads_issues(w, revision, false, &mut issues);
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
    fn fixed_deployments_are_refused_with_alternating_colours() {
        let mut issues = Vec::new();
        workloads_issues(Some(&spec(false)), Some("v2"), true, &mut issues);
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["spec.workloads"]);
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
    }
}
