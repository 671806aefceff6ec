//! Fault injection for the reconciler (madsim's "buggify" points): a hook that ends a
//! tick at a named point, as a kill -9 there would. Nothing after the point runs; what
//! was stored, written or acknowledged before it stays. Off unless a test installs one
//! with [`Reconciler::with_fault_hook`](super::Reconciler::with_fault_hook).
//!
//! The points sit between the tick's awaits, so every instant a kill can land at
//! (before an await starts, or after it finished) is one of them: a write that was sent
//! and landed but whose answer was lost is `RouteWritten`.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Where a tick can be cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashPoint {
    /// The state was loaded; the commands were not read.
    StateLoaded,
    /// The commands were read; the live route was not.
    CommandsRead,
    /// The live route was read; nothing was decided yet.
    RouteRead,
    /// The metrics were queried.
    MetricsQueried,
    /// The pre-traffic checks ran.
    ChecksRun,
    /// The state (with the write in flight) was saved; the route write was not sent.
    SavedBeforeWrite,
    /// The router took the write; its answer was not used.
    RouteWritten,
    /// The live route was read again after a conflicting write.
    RouteReread,
    /// The final state was saved; the handled commands were not acknowledged.
    StateSaved,
    /// The handled commands were acknowledged: the end of the tick.
    CommandsAcknowledged,
}

impl CrashPoint {
    pub const ALL: [CrashPoint; 10] = [
        CrashPoint::StateLoaded,
        CrashPoint::CommandsRead,
        CrashPoint::RouteRead,
        CrashPoint::MetricsQueried,
        CrashPoint::ChecksRun,
        CrashPoint::SavedBeforeWrite,
        CrashPoint::RouteWritten,
        CrashPoint::RouteReread,
        CrashPoint::StateSaved,
        CrashPoint::CommandsAcknowledged,
    ];
}

/// Decides whether a tick crashes at a point it reaches.
pub trait FaultHook: Send + Sync {
    fn crash_at(&self, point: CrashPoint) -> bool;
}

/// Crashes the `nth` time (1-based) a tick reaches `point`, and never again.
#[derive(Debug)]
pub struct CrashAt {
    point: CrashPoint,
    remaining: AtomicUsize,
}

impl CrashAt {
    pub fn new(point: CrashPoint, nth: usize) -> Self {
        CrashAt {
            point,
            remaining: AtomicUsize::new(nth),
        }
    }

    /// Whether the crash happened.
    pub fn crashed(&self) -> bool {
        self.remaining.load(Ordering::SeqCst) == 0
    }
}

impl FaultHook for CrashAt {
    fn crash_at(&self, point: CrashPoint) -> bool {
        if point != self.point {
            return false;
        }
        self.remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok_and(|before| before == 1)
    }
}
