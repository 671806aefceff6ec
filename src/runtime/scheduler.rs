//! When to look at a policy again. The daemon never keeps a task or a timer per
//! rollout: each reconcile returns a requeue delay and the controller's single
//! scheduler (one `DelayQueue` for every object) wakes it.

use std::time::Duration;

use crate::policy::Timestamp;

/// Never requeue sooner than this: a wake time in the past (a tick that ran late)
/// still leaves the API server room.
pub const MIN_REQUEUE: Duration = Duration::from_millis(100);

/// Delay after a transient error (API server or store unavailable, conflict).
pub const TRANSIENT_RETRY: Duration = Duration::from_secs(5);

/// The delay until `wake_at`, clamped to `[MIN_REQUEUE, resync]`. With no wake time
/// (only a command or a spec change can change anything) the policy is still looked at
/// every `resync`, so a missed watch event cannot stall a rollout.
pub fn requeue_after(now: Timestamp, wake_at: Option<Timestamp>, resync: Duration) -> Duration {
    let Some(wake_at) = wake_at else {
        return resync;
    };
    let delay = (wake_at - now).to_std().unwrap_or(Duration::ZERO);
    delay.clamp(MIN_REQUEUE, resync.max(MIN_REQUEUE))
}

/// The delay after a failed reconcile: transient errors retry soon, permanent ones
/// wait for the resync (or a change of the object, which requeues at once).
pub fn after_error(transient: bool, resync: Duration) -> Duration {
    if transient {
        TRANSIENT_RETRY.min(resync)
    } else {
        resync
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(seconds: i64) -> Timestamp {
        chrono::Utc
            .timestamp_opt(seconds, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn requeue_is_clamped_between_the_minimum_and_the_resync() {
        let resync = Duration::from_secs(300);
        assert_eq!(
            requeue_after(at(100), Some(at(130)), resync),
            Duration::from_secs(30)
        );
        assert_eq!(requeue_after(at(100), Some(at(90)), resync), MIN_REQUEUE);
        assert_eq!(requeue_after(at(100), Some(at(10_000)), resync), resync);
        assert_eq!(requeue_after(at(100), None, resync), resync);
        assert_eq!(after_error(true, resync), TRANSIENT_RETRY);
        assert_eq!(after_error(false, resync), resync);
    }
}
