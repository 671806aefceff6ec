//! Pre-traffic checks (smoke tests through the test route). The HTTP runner lives
//! elsewhere; this is the seam and the in-memory runners.

use std::sync::Mutex;

use async_trait::async_trait;

use crate::engine::ChecksOutcome;
use crate::metrics::PolicyRef;
use crate::policy::status::CheckResult;
use crate::policy::RolloutSpec;

/// Runs every check of `spec.checks` and reports each. Never fails as a whole: a check
/// that cannot run is a failed check with its reason in the message.
#[async_trait]
pub trait CheckRunner: Send + Sync {
    async fn run(&self, policy: &PolicyRef, spec: &RolloutSpec) -> ChecksOutcome;
}

/// The display name of `spec.checks[index]`.
pub fn check_name(spec: &RolloutSpec, index: usize) -> String {
    spec.checks
        .get(index)
        .and_then(|c| c.name.clone())
        .unwrap_or_else(|| format!("checks[{index}]"))
}

/// Answers every check with a fixed result, changeable at run time (simulation, tests).
#[derive(Debug)]
pub struct ScriptedChecks {
    failing: Mutex<Option<String>>,
}

impl ScriptedChecks {
    pub fn passing() -> Self {
        ScriptedChecks {
            failing: Mutex::new(None),
        }
    }

    /// From now on every check fails with `message`; `None` makes them pass again.
    pub fn set_failing(&self, message: Option<String>) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = message;
    }
}

#[async_trait]
impl CheckRunner for ScriptedChecks {
    async fn run(&self, _policy: &PolicyRef, spec: &RolloutSpec) -> ChecksOutcome {
        let failing = self
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let results = (0..spec.checks.len())
            .map(|index| CheckResult {
                name: check_name(spec, index),
                passed: failing.is_none(),
                message: failing.clone().unwrap_or_else(|| "passed".to_owned()),
            })
            .collect();
        ChecksOutcome { results }
    }
}
