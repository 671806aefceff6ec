//! Whether the previous stable release still runs, which `undo` needs before it flips
//! every user back onto it. The shell looks (a Deployment, a Service's ready endpoints,
//! ready pods, an Envoy cluster's healthy hosts: `runtime::release_presence`) only when
//! an `undo` is pending, and hands the engine what it saw; the engine decides here.

use crate::policy::status::RolloutStatus;

/// What the shell saw of the previous stable release. Every message names the object
/// looked at, with numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreviousRelease {
    /// It serves: what was seen (e.g. "2 ready endpoints of Service shop/web-blue").
    Serving(String),
    /// It exists but nothing of it is ready.
    NotServing(String),
    /// It is gone (deleted, or nothing matches it any more).
    Gone(String),
    /// It could not be looked at (a denied or failed read): why, naming the missing
    /// grant when it was denied.
    Unknown(String),
    /// There is nothing shiftgate may look at (a host outside the cluster or outside
    /// the policy's namespace): why. The flip back goes as before.
    Unchecked(String),
}

/// Why `undo` must not flip back onto the previous release, or `None` when it may.
/// `None` for `seen`: nothing was looked at (no probe: simulation, in-memory worlds).
/// A previous stable that shiftgate itself scaled down (`workloads.scaleDown`) is not
/// serving by design: the undo scales it back first, so it is no reason to refuse.
pub fn undo_blocked_by(
    seen: Option<&PreviousRelease>,
    state: &RolloutStatus,
    stable: &str,
) -> Option<String> {
    let scaled_down_by_us = state
        .workloads
        .as_ref()
        .is_some_and(|w| w.scaled_down.is_some());
    match seen? {
        PreviousRelease::Serving(_) | PreviousRelease::Unchecked(_) => None,
        PreviousRelease::NotServing(_) if scaled_down_by_us => None,
        PreviousRelease::NotServing(why) | PreviousRelease::Gone(why) => Some(format!(
            "the previous release ({stable}) is gone, so there is nothing to flip back to: \
             {why}; redeploy it and run `undo` again, or roll forward with a new revision"
        )),
        PreviousRelease::Unknown(why) => Some(format!(
            "cannot tell whether the previous release ({stable}) still runs, and `undo` does \
             not flip every user onto it on a guess: {why}"
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::policy::workloads::{ScaledDown, WorkloadsStatus};

    #[test]
    fn only_a_release_seen_serving_or_not_checkable_may_be_flipped_back_to() {
        let state = RolloutStatus::default();
        let blocked = |seen: PreviousRelease| undo_blocked_by(Some(&seen), &state, "blue");
        assert_eq!(undo_blocked_by(None, &state, "blue"), None);
        assert_eq!(blocked(PreviousRelease::Serving("2 ready".into())), None);
        assert_eq!(blocked(PreviousRelease::Unchecked("external".into())), None);
        let gone = blocked(PreviousRelease::Gone("Deployment shop/web-blue".into())).unwrap();
        assert!(gone.contains("Deployment shop/web-blue"), "{gone}");
        assert!(gone.contains("redeploy it"), "{gone}");
        assert!(blocked(PreviousRelease::NotServing("0 ready".into())).is_some());
        let denied = blocked(PreviousRelease::Unknown("grant `list`".into())).unwrap();
        assert!(denied.contains("on a guess: grant `list`"), "{denied}");
    }

    #[test]
    fn a_stable_scaled_down_by_shiftgate_is_scaled_back_not_refused() {
        let state = RolloutStatus {
            workloads: Some(Box::new(WorkloadsStatus {
                scaled_down: Some(ScaledDown {
                    deployment: "web-blue".into(),
                    replicas: 3,
                    at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
                    confirmed: true,
                }),
                ..WorkloadsStatus::default()
            })),
            ..RolloutStatus::default()
        };
        let seen = PreviousRelease::NotServing("0 available".into());
        assert_eq!(undo_blocked_by(Some(&seen), &state, "blue"), None);
        let deleted = PreviousRelease::Gone("Deployment shop/web-blue does not exist".into());
        assert!(undo_blocked_by(Some(&deleted), &state, "blue").is_some());
    }
}
