//! Scripted hook answers in a scenario (`hookFailures`): in a period, the hooks of one
//! phase answer 503 with a message; outside every period, every hook answers 2xx.

use serde::{Deserialize, Serialize};

use crate::policy::{Duration, HookPhase};
use crate::runtime::hooks::ScriptedHooks;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HookFailure {
    /// Which hooks fail: those called at this phase.
    pub phase: HookPhase,
    pub from: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Duration>,
    /// What the failing hooks report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl HookFailure {
    fn covers(&self, offset: Duration) -> bool {
        offset >= self.from && self.until.is_none_or(|u| offset < u)
    }
}

/// Sets `hooks` to answer as `failures` script it at `offset`.
pub fn apply(failures: &[HookFailure], offset: Duration, hooks: &ScriptedHooks) {
    for phase in HookPhase::ALL {
        let failing = failures
            .iter()
            .find(|f| f.phase == phase && f.covers(offset))
            .map(|f| {
                f.message
                    .clone()
                    .unwrap_or_else(|| format!("POST (scripted {phase} hook): 503"))
            });
        hooks.set_failing(phase, failing);
    }
}
