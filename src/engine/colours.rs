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
}
