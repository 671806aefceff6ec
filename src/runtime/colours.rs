//! Orients a blue/green policy with colours for this tick (or this run): reads the
//! live route with the first colour as stable only when the stored state has not
//! decided the colours of this revision yet, lets the engine decide
//! (`engine::colours::resolve`), and fills `stable`/`canary` from the colours.

use std::sync::Arc;

use crate::engine::colours::{decided, resolve};
use crate::policy::colours::{colour_names, has_colours, orient};
use crate::policy::{RolloutSpec, RolloutStatus};
use crate::router::{RouterError, TrafficRouter};

/// The spec oriented for its colours; `None` for a spec without colours (use it as it
/// is). `build` makes the router for a spec (the daemon's factory, an Envoy router).
pub async fn oriented(
    spec: &RolloutSpec,
    stored: Option<&RolloutStatus>,
    build: impl Fn(&RolloutSpec) -> Result<Arc<dyn TrafficRouter>, RouterError>,
) -> Option<RolloutSpec> {
    if !has_colours(&spec.router) {
        return None;
    }
    // An invalid number of colours is refused by validation; until then, as written.
    let [first, _] = colour_names(&spec.router)?;
    let choice = match decided(spec, stored) {
        Some(choice) => choice,
        None => {
            let declared = orient(spec, &first)?;
            let live = match build(&declared) {
                Ok(router) => router.read().await.ok().map(|l| l.route),
                Err(_) => None,
            };
            resolve(spec, stored, live)?
        }
    };
    orient(spec, &choice.stable)
}

/// Orients a local run's policy (its state under `state_dir`) in place; `build` makes
/// its router (Envoy, or the cluster's). Does nothing for a policy without colours.
pub async fn orient_local(
    local: &mut super::local::LocalPolicy,
    state_dir: &std::path::Path,
    build: impl Fn(&RolloutSpec) -> Result<Arc<dyn TrafficRouter>, RouterError>,
) {
    use crate::store::StateStore as _;
    if !has_colours(&local.spec.router) {
        return;
    }
    let store = crate::store::file::FileStore::new(state_dir);
    let stored = store
        .load(&local.policy)
        .await
        .ok()
        .flatten()
        .map(|(s, _)| s);
    if let Some(spec) = oriented(&local.spec, stored.as_ref(), build).await {
        local.spec = spec;
    }
}

/// Builds the local Envoy router of `spec` (for [`orient_local`]).
pub fn envoy_router(spec: &RolloutSpec) -> Result<Arc<dyn TrafficRouter>, RouterError> {
    let Some(envoy) = &spec.router.envoy else {
        return Err(RouterError::Invalid("not an Envoy policy".to_owned()));
    };
    let router = crate::router::envoy::EnvoyRouter::new(envoy, spec.test_route.as_ref())
        .map_err(|e| RouterError::Invalid(e.to_string()))?;
    Ok(Arc::new(router))
}
