//! Orients a blue/green policy with colours for this tick (or this run): reads the
//! live route with the first colour as stable only when the stored state has not
//! decided the colours of this revision yet, lets the engine decide
//! (`engine::colours::resolve`), and fills `stable`/`canary` from the colours. With
//! `workloads.revisionFrom` the revision itself comes from the idle colour's Deployment,
//! read against its baseline ([`release_in_idle_colour`]).

use std::sync::Arc;

use crate::engine::colours::{
    decided, idle_release, idle_status, next_colours, resolve, IdleRelease,
};
use crate::metrics::PolicyRef;
use crate::policy::colours::{colour_names, has_colours, orient};
use crate::policy::{RolloutSpec, RolloutStatus};
use crate::router::{RouterError, TrafficRouter};
use crate::runtime::workloads::{WorkloadError, Workloads};
use crate::store::{StateStore, StoreError};

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
    let router = crate::router::envoy::EnvoyRouter::new(envoy, spec.test_route.as_deref())
        .map_err(|e| RouterError::Invalid(e.to_string()))?;
    Ok(Arc::new(router))
}

/// Whether `spec` derives its revision from the idle colour's Deployment (colours and
/// `workloads.revisionFrom`): then [`release_in_idle_colour`] replaces [`oriented`].
pub fn derives_from_idle_colour(spec: &RolloutSpec) -> bool {
    has_colours(&spec.router)
        && spec
            .workloads
            .as_ref()
            .is_some_and(|w| w.revision_from.is_some())
}

/// What a policy that derives its revision from the idle colour does now.
#[derive(Clone, Debug)]
pub enum ColourRelease {
    /// Tick the engine with this spec: its revision decided, oriented for its colours.
    Tick(Box<RolloutSpec>),
    /// No rollout has run and the idle colour holds no new release: store this state
    /// (the idle colour's baseline, see [`store_idle`]) and look again later.
    Idle(Box<RolloutStatus>),
}

/// Reads the idle colour's Deployment (the colours from the stored state and the live
/// route, see `engine::colours::next_colours`), decides purely whether it holds a new
/// release (`engine::colours::idle_release`), and orients the spec with the revision.
pub async fn release_in_idle_colour(
    spec: &RolloutSpec,
    stored: Option<&RolloutStatus>,
    build: impl Fn(&RolloutSpec) -> Result<Arc<dyn TrafficRouter>, RouterError>,
    workloads: &dyn Workloads,
) -> Result<ColourRelease, WorkloadError> {
    let as_written = || Ok(ColourRelease::Tick(Box::new(spec.clone())));
    // Colours that do not fit are refused by validation; until then, as written.
    let Some([first, _]) = colour_names(&spec.router) else {
        return as_written();
    };
    let Some(declared) = orient(spec, &first) else {
        return as_written();
    };
    let live = match build(&declared) {
        Ok(router) => router.read().await.ok().map(|l| l.route),
        Err(_) => None,
    };
    let Some(next) = next_colours(spec, stored, live) else {
        return as_written();
    };
    let Some(deployment) = spec
        .workloads
        .as_ref()
        .and_then(|w| w.colors.get(&next.canary))
    else {
        return as_written();
    };
    let read = workloads.read(deployment).await?;
    let revision = match idle_release(stored, &next.canary, &read.revision) {
        IdleRelease::NoRelease => {
            let status = idle_status(stored, &next, deployment, &read.revision);
            return Ok(ColourRelease::Idle(Box::new(status)));
        }
        IdleRelease::Rollout(revision) | IdleRelease::Current(revision) => revision,
    };
    let with = RolloutSpec {
        revision,
        ..spec.clone()
    };
    let choice = decided(&with, stored).or_else(|| resolve(&with, stored, live));
    let oriented = choice.and_then(|c| orient(&with, &c.stable));
    Ok(ColourRelease::Tick(Box::new(oriented.unwrap_or(with))))
}

/// Stores `status` (from [`ColourRelease::Idle`]) unless it is stored already.
pub async fn store_idle(
    store: &dyn StateStore,
    policy: &PolicyRef,
    status: &RolloutStatus,
) -> Result<(), StoreError> {
    let (stored, version) = match store.load(policy).await? {
        Some((stored, version)) => (Some(stored), Some(version)),
        None => (None, None),
    };
    if stored.as_ref() != Some(status) {
        store.save(policy, status, version.as_ref()).await?;
    }
    Ok(())
}
