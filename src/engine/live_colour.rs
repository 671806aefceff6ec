//! The live colour: a new rollout never starts by taking users off a canary that
//! already serves more than the first step's weight. That canary is live (a blue/green
//! policy naming the serving colour as its canary, or a route someone else moved);
//! writing the first step would move those users to stable with nobody having judged
//! anything. The rollout stays Pending, writes nothing, and says why; it starts by
//! itself once the live route is at or below the first step.

use crate::engine::reasons;
use crate::engine::step::Tick;
use crate::policy::status::{Phase, RolloutStatus};
use crate::policy::RolloutSpec;

/// The stable and canary destinations as a person reads them in a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DestinationNames {
    pub(crate) stable: String,
    pub(crate) canary: String,
}

impl DestinationNames {
    pub(crate) fn of(spec: &RolloutSpec) -> Self {
        let names = Self::of_destinations(spec);
        match crate::policy::colours::oriented_colours(&spec.router) {
            Some((stable, canary)) => DestinationNames {
                stable: format!("{stable} ({})", names.stable),
                canary: format!("{canary} ({})", names.canary),
            },
            None => names,
        }
    }

    fn of_destinations(spec: &RolloutSpec) -> Self {
        let router = &spec.router;
        if let Some(istio) = &router.istio {
            let name = |d: &crate::policy::Destination| match &d.subset {
                Some(subset) => format!("{} subset {subset}", d.host),
                None => d.host.clone(),
            };
            return DestinationNames {
                stable: name(&istio.stable),
                canary: name(&istio.canary),
            };
        }
        if let Some(service) = &router.service {
            return DestinationNames {
                stable: format!("{}={}", service.selector_key, service.stable_value),
                canary: format!("{}={}", service.selector_key, service.canary_value),
            };
        }
        if let Some(envoy) = &router.envoy {
            return DestinationNames {
                stable: format!("cluster {}", envoy.stable_cluster),
                canary: format!("cluster {}", envoy.canary_cluster),
            };
        }
        DestinationNames {
            stable: "stable".to_owned(),
            canary: "canary".to_owned(),
        }
    }
}

/// Whether `status` is a new rollout refused because its canary is live: nothing was
/// written, and nothing will be until the live route is at or below the first step.
pub fn refused_live_canary(status: &RolloutStatus) -> bool {
    matches!(status.phase, Phase::Pending | Phase::Waiting)
        && status.reason.as_deref() == Some(reasons::CANARY_IS_LIVE)
}

impl Tick<'_> {
    /// Refuses to start while the live canary weight exceeds the first step's weight.
    /// Returns whether the start was refused. Recorded once, so a refused rollout that
    /// is looked at again does not rewrite its status.
    pub(crate) fn refuse_live_canary(&mut self) -> bool {
        let first = self.plan.step(0).weight;
        let live = self.s.canary_weight;
        if live <= first {
            return false;
        }
        self.s.phase = Phase::Pending;
        if refused_live_canary(&self.s) {
            return true;
        }
        let names = self.plan.destination_names();
        let (canary, stable) = (&names.canary, &names.stable);
        let message = if let (100, Some((stable_colour, canary_colour))) =
            (live, self.plan.colours())
        {
            format!(
                "{canary} is the live colour: it already serves 100%, and deploying revision {}                  into it would take it from every user, unjudged. Nothing was written. Deploy                  into {stable_colour}, the idle colour (spec.canaryColor: {stable_colour}, or                  leave canaryColor out and shiftgate picks the idle colour); {canary_colour}                  stays live",
                self.plan.revision()
            )
        } else if live == 100 {
            format!(
                "canary {canary} already serves 100%: that is the live colour; deploying into \
                 it would move every user to {stable}, unjudged. Nothing was written. Swap \
                 stable and canary in the policy (deploy the new revision into {stable}), or set \
                 the live route to at most {first}% canary yourself: the rollout starts once it is"
            )
        } else {
            format!(
                "canary {canary} already serves {live}%, more than the first step's {first}%: \
                 starting would move {}% of users to {stable}, unjudged. Nothing was written. \
                 Set the live route to at most {first}% canary yourself (or let whatever moved \
                 it finish): the rollout starts once it is",
                live - first
            )
        };
        self.record(reasons::CANARY_IS_LIVE, message);
        true
    }
}
