//! Why a VirtualService cannot be managed as the policy asks. Every message names the
//! VirtualService, the route (name and `spec.http[i]` index) and what to change.

use crate::router::RouterError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IstioError {
    #[error("virtualservice {vs}: {path} {problem}; fix the VirtualService")]
    Malformed {
        vs: String,
        path: String,
        problem: String,
    },

    #[error(
        "virtualservice {vs} has no http routes; add an http route with the stable and canary \
         destinations, or point spec.router.istio.virtualService at another VirtualService"
    )]
    NoHttpRoutes { vs: String },

    #[error(
        "virtualservice {vs} has {count} http routes ({names}) and the policy names none; list \
         the ones to manage in spec.router.istio.routes (unnamed routes need a `name` first)"
    )]
    AmbiguousRoute {
        vs: String,
        count: usize,
        names: String,
    },

    #[error(
        "virtualservice {vs} has no http route named \"{route}\" (it has: {available}); fix \
         spec.router.istio.routes or name the route in the VirtualService"
    )]
    RouteNotFound {
        vs: String,
        route: String,
        available: String,
    },

    #[error(
        "virtualservice {vs} has {count} http routes named \"{route}\" ({entries}), and the \
         policy manages that name: shiftgate cannot tell which one to move, so it writes \
         nothing; give each route a unique name in the VirtualService"
    )]
    DuplicateRouteName {
        vs: String,
        route: String,
        count: usize,
        entries: String,
    },

    #[error(
        "virtualservice {vs}: http route {route} has no {side} destination {wanted} (it routes \
         to: {found}); add `- destination: {{ host: ... }}` for it to the route (weight 0 for \
         the canary), or fix spec.router.istio.{side}"
    )]
    MissingDestination {
        vs: String,
        route: String,
        side: &'static str,
        wanted: String,
        found: String,
    },

    #[error(
        "virtualservice {vs}: http route {route} has {count} destinations matching the {side} \
         destination {wanted} (entries {entries}); give spec.router.istio.{side} a subset or \
         port that picks exactly one"
    )]
    DuplicateDestination {
        vs: String,
        route: String,
        side: &'static str,
        wanted: String,
        count: usize,
        entries: String,
    },

    #[error(
        "virtualservice {vs}: http route {route} destination {entry} ({host}) matches both the \
         stable and the canary destination; give them different hosts, subsets or ports"
    )]
    StableIsCanary {
        vs: String,
        route: String,
        entry: String,
        host: String,
    },

    #[error(
        "virtualservice {vs}: http route {route} sends weight {weight} to {host} ({entry}), \
         which is neither stable nor canary; shiftgate does not take traffic from destinations \
         it does not manage: set that weight to 0 or remove the destination"
    )]
    ForeignWeight {
        vs: String,
        route: String,
        entry: String,
        host: String,
        weight: u64,
    },

    #[error(
        "virtualservice {vs}: {path} is {value}, not a weight 0..=100; fix the VirtualService"
    )]
    BadWeight {
        vs: String,
        path: String,
        value: String,
    },

    #[error(
        "virtualservice {vs}: http route {route} gives stable {stable} and canary {canary}, \
         which do not add up to 100; set them to 100 and 0 (or the weight the rollout is at)"
    )]
    WeightsDoNotAddUp {
        vs: String,
        route: String,
        stable: u64,
        canary: u64,
    },

    #[error(
        "virtualservice {vs}: the managed routes disagree on the canary weight ({weights}); \
         someone changed them by hand. shiftgate reports the highest, so the rollout sees \
         drift, and its next write sets them all to one weight"
    )]
    Drift { vs: String, weights: String },

    #[error(
        "virtualservice {vs}: match block {path} already tests header \"{header}\", which the \
         test route needs; use a different testRoute header or cookie"
    )]
    TestRouteHeaderTaken {
        vs: String,
        path: String,
        header: String,
    },

    #[error(
        "policy {policy}: a test route was requested but spec.testRoute has neither `cookie` \
         nor `header`; add one"
    )]
    NoTestRouteSpec { policy: String },

    #[error(
        "policy {policy}: spec.testRoute.cookie \"{cookie}\" is not `name=value`; write it \
         like `test=true`"
    )]
    BadCookie { policy: String, cookie: String },

    #[error("policy {policy}: canary weight {weight} is over 100; steps must be 0..=100")]
    WeightOverHundred { policy: String, weight: u8 },
}

impl From<IstioError> for RouterError {
    /// Every planning error is about the object or the policy: it will not fix itself.
    fn from(error: IstioError) -> Self {
        RouterError::Invalid(error.to_string())
    }
}
