//! Policies that vanished while the policy watch was down. A watch that cannot resume
//! (410 Gone: the API server's history moved on) lists everything again, and a policy
//! deleted in the gap gets no `Delete` event: the reflector just leaves it out of the
//! new list at `InitDone`. Everything the daemon keeps per policy besides the store (its
//! metric series, the DestinationRule selection, recent writes, fresh-data marks) must
//! still be forgotten, or a deleted rollout stays on the dashboards for good.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use crate::metrics::PolicyRef;

/// What the store held when a (re-)list began.
#[derive(Debug, Default)]
pub struct Relisting {
    held: Mutex<Option<HashSet<PolicyRef>>>,
}

impl Relisting {
    /// At `Init`: the policies the store holds before the list replaces them.
    pub fn begin(&self, held: impl IntoIterator<Item = PolicyRef>) {
        let mut slot = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        *slot = Some(held.into_iter().collect());
    }

    /// At `InitDone`: the policies held when the list began that it did not list.
    pub fn end(&self, listed: impl IntoIterator<Item = PolicyRef>) -> Vec<PolicyRef> {
        let held = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut gone) = held else {
            return Vec::new();
        };
        for policy in listed {
            gone.remove(&policy);
        }
        let mut gone: Vec<PolicyRef> = gone.into_iter().collect();
        gone.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str) -> PolicyRef {
        PolicyRef {
            namespace: "shop".to_owned(),
            name: name.to_owned(),
        }
    }

    #[test]
    fn a_policy_missing_from_the_new_list_is_gone() {
        let relisting = Relisting::default();
        relisting.begin([policy("a"), policy("b"), policy("c")]);
        assert_eq!(
            relisting.end([policy("b"), policy("d")]),
            [policy("a"), policy("c")]
        );
        // Said once per list.
        assert!(relisting.end([]).is_empty());
    }

    #[test]
    fn the_first_list_forgets_nothing() {
        let relisting = Relisting::default();
        relisting.begin([]);
        assert!(relisting.end([policy("a")]).is_empty());
        assert!(Relisting::default().end([policy("a")]).is_empty());
    }
}
