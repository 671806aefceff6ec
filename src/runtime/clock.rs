//! The shell's clock. The engine never reads one; the reconciler asks this trait, so a
//! simulation can run on virtual time.

use std::sync::Mutex;

use crate::policy::Timestamp;

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;

    /// Whether time passes while a request is in flight. Virtual time moves only when
    /// told, so there a write lands at the instant it is sent.
    fn passes_during_requests(&self) -> bool {
        true
    }
}

/// The wall clock. The only place in shiftgate that reads it.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned wall-clock read
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

/// Virtual time: moves only when told. Used by `simulate` and tests.
#[derive(Debug)]
pub struct VirtualClock {
    now: Mutex<Timestamp>,
}

impl VirtualClock {
    pub fn new(start: Timestamp) -> Self {
        VirtualClock {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock to `at`; never backwards.
    pub fn set(&self, at: Timestamp) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if at > *now {
            *now = at;
        }
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now = crate::engine::plan::later(*now, by);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn passes_during_requests(&self) -> bool {
        false
    }
}
