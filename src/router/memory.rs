//! An in-memory router: the live route as a value with a version. Production code for
//! `simulate` and tests, with faults that can be switched on: conflicts (a concurrent
//! edit), an unreachable router, a write that lands but is never confirmed, and an
//! unreadable route.

use std::sync::Mutex;

use async_trait::async_trait;

use super::{LiveRoute, ManagedRoute, RouterError, TrafficRouter, Version};

/// Faults injected into the next calls, until changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterFaults {
    /// Every write meets a concurrent edit (the version moves; nothing is written).
    pub conflict: bool,
    /// Every write fails before reaching the router.
    pub unavailable: bool,
    /// Writes land but the confirmation is lost (the caller sees an error).
    pub lose_confirmation: bool,
    /// Reads fail.
    pub unreadable: bool,
}

#[derive(Debug)]
struct Inner {
    route: ManagedRoute,
    version: u64,
    faults: RouterFaults,
    writes: u64,
}

#[derive(Debug)]
pub struct MemoryRouter {
    inner: Mutex<Inner>,
}

impl MemoryRouter {
    pub fn new(initial: ManagedRoute) -> Self {
        MemoryRouter {
            inner: Mutex::new(Inner {
                route: initial,
                version: 1,
                faults: RouterFaults::default(),
                writes: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The route being served, whatever the faults.
    pub fn route(&self) -> ManagedRoute {
        self.lock().route
    }

    /// Writes landed so far (including those whose confirmation was lost).
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    pub fn set_faults(&self, faults: RouterFaults) {
        self.lock().faults = faults;
    }

    /// Someone else edits the managed weights (drift).
    pub fn set_external(&self, route: ManagedRoute) {
        let mut inner = self.lock();
        inner.route = route;
        inner.version += 1;
    }
}

#[async_trait]
impl TrafficRouter for MemoryRouter {
    async fn read(&self) -> Result<LiveRoute, RouterError> {
        let inner = self.lock();
        if inner.faults.unreadable {
            return Err(RouterError::Unavailable {
                message: "memory router: reads fail (injected fault)".to_owned(),
                source: None,
            });
        }
        Ok(LiveRoute {
            route: inner.route,
            version: Version(inner.version.to_string()),
        })
    }

    async fn apply(&self, expect: &Version, desired: ManagedRoute) -> Result<Version, RouterError> {
        let mut inner = self.lock();
        if inner.faults.unavailable {
            return Err(RouterError::Unavailable {
                message: "memory router: unreachable (injected fault)".to_owned(),
                source: None,
            });
        }
        if inner.faults.conflict {
            inner.version += 1;
        }
        if expect.0 != inner.version.to_string() {
            return Err(RouterError::Conflict {
                what: format!("version {} expected, {} found", expect.0, inner.version),
            });
        }
        inner.route = desired;
        inner.version += 1;
        inner.writes += 1;
        if inner.faults.lose_confirmation {
            return Err(RouterError::Unavailable {
                message: "memory router: written, but the confirmation was lost (injected fault)"
                    .to_owned(),
                source: None,
            });
        }
        Ok(Version(inner.version.to_string()))
    }
}
