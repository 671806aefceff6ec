//! Which colour is which, for a blue/green policy with colours. Pure: decided from the
//! stored state and the live route read in the declared orientation (the first colour,
//! alphabetically, as stable). A running (or finished) rollout keeps its colours; a new
//! revision takes the colour the live route serves as stable and deploys into the idle
//! one, so after a promotion the next revision goes to the other colour with no edit.
//! `spec.canaryColor` pins the colour to deploy into; pinning the live colour is refused
//! by [`crate::engine::refused_live_canary`]'s rule (its canary serves every user).

use crate::policy::colours::colour_names;
use crate::policy::status::{Phase, RolloutStatus};
use crate::policy::RolloutSpec;
use crate::router::ManagedRoute;

use super::plan::Plan;

/// The colours of one revision's rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColourChoice {
    pub stable: String,
    pub canary: String,
}

/// Whether `stored` already decided the colours of `spec`'s revision (then no route
/// read is needed to decide them).
pub fn decided(spec: &RolloutSpec, stored: Option<&RolloutStatus>) -> Option<ColourChoice> {
    let s = stored?;
    if s.revision.as_deref() != Some(spec.revision.as_str()) || super::refused_live_canary(s) {
        return None;
    }
    let (stable, canary) = (s.stable_color.clone()?, s.canary_color.clone()?);
    let names = colour_names(&spec.router)?;
    let known = |c: &String| names.contains(c);
    let pinned_elsewhere = spec.canary_color.as_ref().is_some_and(|c| *c != canary);
    (known(&stable) && known(&canary) && stable != canary && !pinned_elsewhere)
        .then_some(ColourChoice { stable, canary })
}

/// The colours for `spec`: `None` without colours. `declared_live` is the live route
/// read with the first colour as stable (`None`: not readable).
pub fn resolve(
    spec: &RolloutSpec,
    stored: Option<&RolloutStatus>,
    declared_live: Option<ManagedRoute>,
) -> Option<ColourChoice> {
    let [first, second] = colour_names(&spec.router)?;
    if let Some(choice) = decided(spec, stored) {
        return Some(choice);
    }
    let other = |c: &str| {
        if c == first {
            second.clone()
        } else {
            first.clone()
        }
    };
    // The previous rollout's live colour, from its state.
    let previous = stored.and_then(|s| match s.phase {
        Phase::Promoted => s.canary_color.clone(),
        _ => s.stable_color.clone(),
    });
    let live = match declared_live {
        Some(route) if route.canary_weight == 0 => first.clone(),
        Some(route) if route.canary_weight == 100 => second.clone(),
        // Split between the colours: whoever drove it last knows which one is live.
        route => previous
            .filter(|p| *p == first || *p == second)
            .unwrap_or_else(|| match route {
                Some(r) if r.canary_weight > 50 => second.clone(),
                _ => first.clone(),
            }),
    };
    let canary = spec
        .canary_color
        .clone()
        .filter(|c| *c == first || *c == second)
        .unwrap_or_else(|| other(&live));
    Some(ColourChoice {
        stable: other(&canary),
        canary,
    })
}

/// The colours a policy that derives its revision from the idle colour
/// (`workloads.revisionFrom` with colours) reads now, before its revision is known: a
/// running rollout keeps its own (its canary colour may hold a replacing template);
/// otherwise the live colour is stable and the idle one is where a release would go.
pub fn next_colours(
    spec: &RolloutSpec,
    stored: Option<&RolloutStatus>,
    declared_live: Option<ManagedRoute>,
) -> Option<ColourChoice> {
    let names = colour_names(&spec.router)?;
    let running = stored.filter(|s| s.revision.is_some() && !s.is_settled());
    if let Some(s) = running {
        if let (Some(stable), Some(canary)) = (&s.stable_color, &s.canary_color) {
            if names.contains(stable) && names.contains(canary) && stable != canary {
                return Some(ColourChoice {
                    stable: stable.clone(),
                    canary: canary.clone(),
                });
            }
        }
    }
    let undecided = RolloutSpec {
        revision: String::new(),
        ..spec.clone()
    };
    resolve(&undecided, stored, declared_live)
}

/// What the idle colour's Deployment says, for a policy with colours and
/// `revisionFrom` (see [`idle_release`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdleRelease {
    /// A rollout of this revision into the idle colour: a new one, or the running one
    /// (whose canary colour's template may have replaced it, as without colours).
    Rollout(String),
    /// Nothing new in the idle colour: the stored rollout's revision stays, settled.
    Current(String),
    /// No rollout has run and the idle colour holds its baseline (or is seen for the
    /// first time, which makes its revision the baseline): nothing to roll out.
    NoRelease,
}

/// Whether the idle colour's Deployment, whose template gives `idle_revision`, holds a
/// new release. After a promotion the idle colour still runs the release before last,
/// so its template alone says nothing: a release is new when it differs from the
/// baseline recorded when the colour became idle. After a rollback (or an abort, an
/// undo) the idle colour is the rolled-back release's, which is its baseline.
pub fn idle_release(
    stored: Option<&RolloutStatus>,
    idle: &str,
    idle_revision: &str,
) -> IdleRelease {
    let baseline = stored
        .and_then(|s| s.workloads.as_ref())
        .and_then(|w| w.idle_baseline.as_ref())
        .filter(|b| b.color == idle)
        .map(|b| b.revision.as_str());
    let new = IdleRelease::Rollout(idle_revision.to_owned());
    let Some((s, current)) = stored.and_then(|s| Some((s, s.revision.clone()?))) else {
        // Never rolled out: the first look takes the idle colour as it is.
        return match baseline {
            Some(b) if b != idle_revision => new,
            _ => IdleRelease::NoRelease,
        };
    };
    if !s.is_settled() || current == idle_revision {
        return if current == idle_revision {
            IdleRelease::Current(current)
        } else {
            new
        };
    }
    if s.canary_color.as_deref() == Some(idle) {
        // Rolled back, aborted or undone: the idle colour held `current`.
        return new;
    }
    match baseline {
        Some(b) if b != idle_revision => new,
        // Recorded at the promotion; not readable then: the first look records it.
        _ => IdleRelease::Current(current),
    }
}

/// The state stored while no rollout has run and the idle colour holds no new
/// release: its baseline (kept once recorded for that colour), the colours, and why
/// nothing moves.
pub fn idle_status(
    stored: Option<&RolloutStatus>,
    choice: &ColourChoice,
    deployment: &str,
    idle_revision: &str,
) -> RolloutStatus {
    let mut s = stored.cloned().unwrap_or_default();
    let workloads = s.workloads.get_or_insert_with(Default::default);
    let kept = workloads
        .idle_baseline
        .as_ref()
        .is_some_and(|b| b.color == choice.canary);
    if !kept {
        workloads.idle_baseline = Some(crate::policy::workloads::IdleBaseline {
            color: choice.canary.clone(),
            revision: idle_revision.to_owned(),
        });
    }
    let baseline = workloads
        .idle_baseline
        .as_ref()
        .map_or(idle_revision, |b| b.revision.as_str())
        .to_owned();
    s.stable_color = Some(choice.stable.clone());
    s.canary_color = Some(choice.canary.clone());
    s.live_color = Some(choice.stable.clone());
    s.reason = Some(WAITING_FOR_RELEASE.into());
    s.message = Some(format!(
        "no release to roll out: Deployment {deployment} of the idle colour {} runs {baseline},          its baseline; deploy the new release into it and the rollout starts",
        choice.canary
    ));
    s
}

/// No rollout has run and the idle colour's Deployment holds no new release.
pub const WAITING_FOR_RELEASE: &str = "WaitingForRelease";

/// Writes the colours into the state: which is stable, which the canary, and which one
/// serves (most) users now.
pub(crate) fn record_colours(plan: &Plan, s: &mut RolloutStatus) {
    let Some((stable, canary)) = plan.colours() else {
        return;
    };
    s.stable_color = Some(stable.to_owned());
    s.canary_color = Some(canary.to_owned());
    let live = if s.canary_weight > 50 { canary } else { stable };
    s.live_color = Some(live.to_owned());
}

/// `live colour green (stable green, canary blue)` for people; `None` without colours.
pub fn describe(status: &RolloutStatus) -> Option<String> {
    let live = status.live_color.as_deref()?;
    let mut line = format!("live colour {live}");
    if let (Some(stable), Some(canary)) = (&status.stable_color, &status.canary_color) {
        line.push_str(&format!(" (stable {stable}, canary {canary})"));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(canary_color: Option<&str>) -> RolloutSpec {
        serde_json::from_value(serde_json::json!({
            "revision": "v3",
            "canaryColor": canary_color,
            "router": { "envoy": { "routesFile": "r.json", "adminAddress": "127.0.0.1:1",
                "colors": { "blue": "app-blue", "green": "app-green" } } },
            "steps": [0, 100],
            "analysis": { "metrics": [ { "name": "e", "query": "x", "max": 0.01 } ] },
        }))
        .unwrap()
    }

    fn route(canary_weight: u8) -> Option<ManagedRoute> {
        Some(ManagedRoute {
            canary_weight,
            test_route: false,
        })
    }

    fn choice(stable: &str, canary: &str) -> Option<ColourChoice> {
        Some(ColourChoice {
            stable: stable.into(),
            canary: canary.into(),
        })
    }

    #[test]
    fn the_live_colour_is_stable_and_the_idle_one_the_canary() {
        assert_eq!(
            resolve(&spec(None), None, route(0)),
            choice("blue", "green")
        );
        assert_eq!(
            resolve(&spec(None), None, route(100)),
            choice("green", "blue")
        );
        // Pinned into the live colour: the canary serves everyone, and the engine
        // refuses to start.
        assert_eq!(
            resolve(&spec(Some("blue")), None, route(0)),
            choice("green", "blue")
        );
    }

    #[test]
    fn a_running_rollout_keeps_its_colours_and_a_split_route_asks_the_state() {
        let running = RolloutStatus {
            revision: Some("v3".into()),
            phase: Phase::Progressing,
            stable_color: Some("green".into()),
            canary_color: Some("blue".into()),
            canary_weight: 40,
            ..RolloutStatus::default()
        };
        assert_eq!(
            resolve(&spec(None), Some(&running), route(60)),
            choice("green", "blue")
        );
        let older = RolloutStatus {
            revision: Some("v2".into()),
            ..running
        };
        // v2 stopped at 40% on blue: green is still live, so v3 goes to blue.
        assert_eq!(
            resolve(&spec(None), Some(&older), route(60)),
            choice("green", "blue")
        );
    }

    fn settled(phase: Phase, revision: &str, baseline: Option<(&str, &str)>) -> RolloutStatus {
        RolloutStatus {
            revision: Some(revision.into()),
            phase,
            stable_color: Some("blue".into()),
            canary_color: Some("green".into()),
            workloads: baseline.map(|(color, revision)| {
                Box::new(crate::policy::workloads::WorkloadsStatus {
                    idle_baseline: Some(crate::policy::workloads::IdleBaseline {
                        color: color.into(),
                        revision: revision.into(),
                    }),
                    ..Default::default()
                })
            }),
            ..RolloutStatus::default()
        }
    }

    #[test]
    fn the_idle_colour_starts_a_rollout_only_when_it_left_its_baseline() {
        let rollout = |r: &str| IdleRelease::Rollout(r.into());
        // First look: whatever the idle colour runs is its baseline.
        assert_eq!(idle_release(None, "green", "web:1"), IdleRelease::NoRelease);
        let waiting = idle_status(
            None,
            &choice("blue", "green").unwrap(),
            "web-green",
            "web:1",
        );
        assert_eq!(waiting.reason.as_deref(), Some(WAITING_FOR_RELEASE));
        assert_eq!(
            idle_release(Some(&waiting), "green", "web:1"),
            IdleRelease::NoRelease
        );
        assert_eq!(
            idle_release(Some(&waiting), "green", "web:2"),
            rollout("web:2")
        );
        // v2 promoted into green: blue runs the release before, its baseline.
        let promoted = settled(Phase::Promoted, "web:2", Some(("blue", "web:1")));
        assert_eq!(
            idle_release(Some(&promoted), "blue", "web:1"),
            IdleRelease::Current("web:2".into())
        );
        assert_eq!(
            idle_release(Some(&promoted), "blue", "web:3"),
            rollout("web:3")
        );
        // Promoted before the baseline could be read: the engine records it next.
        let unrecorded = settled(Phase::Promoted, "web:2", None);
        assert_eq!(
            idle_release(Some(&unrecorded), "blue", "web:1"),
            IdleRelease::Current("web:2".into())
        );
        // Rolled back: green is idle again and holds the rolled-back release.
        let back = settled(Phase::RolledBack, "web:2", Some(("blue", "web:1")));
        assert_eq!(
            idle_release(Some(&back), "green", "web:2"),
            IdleRelease::Current("web:2".into())
        );
        assert_eq!(
            idle_release(Some(&back), "green", "web:3"),
            rollout("web:3")
        );
        // Running: its canary colour's template, as without colours.
        let running = settled(Phase::Progressing, "web:2", None);
        assert_eq!(
            idle_release(Some(&running), "green", "web:4"),
            rollout("web:4")
        );
    }

    #[test]
    fn a_running_rollout_keeps_its_colours_before_its_revision_is_known() {
        let running = RolloutStatus {
            revision: Some("web:2".into()),
            phase: Phase::Progressing,
            stable_color: Some("green".into()),
            canary_color: Some("blue".into()),
            canary_weight: 100,
            ..RolloutStatus::default()
        };
        // Every request already on blue (declared: canary weight 0), still blue's rollout.
        assert_eq!(
            next_colours(&spec(None), Some(&running), route(0)),
            choice("green", "blue")
        );
        let promoted = RolloutStatus {
            phase: Phase::Promoted,
            ..running
        };
        assert_eq!(
            next_colours(&spec(None), Some(&promoted), route(0)),
            choice("blue", "green")
        );
    }
}
