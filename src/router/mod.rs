//! Traffic routers: the one seam through which shiftgate moves traffic.

pub mod envoy;
pub mod envoy_config;
pub mod istio;
pub mod memory;
pub mod service;
pub mod watch_cache;

use async_trait::async_trait;

/// An opaque version of the routing object (a resourceVersion, a file generation):
/// writes are conditioned on it so a concurrent edit is re-read, never overwritten.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version(pub String);

/// The part of the routing configuration shiftgate manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ManagedRoute {
    /// Percent of requests sent to the canary; stable gets the rest.
    pub canary_weight: u8,
    /// Whether shiftgate's own test route (cookie/header match to the canary) is in place.
    pub test_route: bool,
}

/// What the router read: the managed part and the version it was read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveRoute {
    pub route: ManagedRoute,
    pub version: Version,
}

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The object changed since it was read; re-read and decide again.
    #[error("the route changed since it was read ({what}); re-reading")]
    Conflict { what: String },
    /// The routing object or a managed route/destination is missing or malformed.
    /// Will not fix itself: the message says what to change.
    #[error("{0}")]
    Invalid(String),
    /// The router could not be reached or did not confirm in time; nothing is assumed
    /// about the live weights.
    #[error("{message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl RouterError {
    pub fn reason(&self) -> &'static str {
        match self {
            RouterError::Conflict { .. } => "RouteConflict",
            RouterError::Invalid(_) => "RouteInvalid",
            RouterError::Unavailable { .. } => "RouterUnavailable",
        }
    }

    pub fn is_transient(&self) -> bool {
        !matches!(self, RouterError::Invalid(_))
    }
}

/// Reads and writes the managed part of one policy's route.
#[async_trait]
pub trait TrafficRouter: Send + Sync {
    /// Reads the live managed route. Never guesses: an unreadable route is an error.
    async fn read(&self) -> Result<LiveRoute, RouterError>;

    /// Reads the live managed route from the router itself, never from a cache. A
    /// decision taken on a read alone (drift pauses a rollout) is confirmed with it: a
    /// watch can lag our own write, by seconds when it re-lists.
    async fn read_fresh(&self) -> Result<LiveRoute, RouterError> {
        self.read().await
    }

    /// Writes `desired` in one conditional write against `expect`, and returns once the
    /// router confirms it is serving it. Rollback is one call: weight 0, no test route.
    async fn apply(&self, expect: &Version, desired: ManagedRoute) -> Result<Version, RouterError>;
}
