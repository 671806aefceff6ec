//! The label sets of the daemon's metric families (prometheus-client encodes a struct
//! per family), and how a policy's are built.

use prometheus_client::encoding::EncodeLabelSet;

use super::labels::{RolloutResult, VerdictKind};
use crate::metrics::PolicyRef;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabel {
    pub(super) result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct NotifyLabels {
    pub(super) channel: &'static str,
    pub(super) result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct VerdictLabel {
    pub(super) verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PolicyLabels {
    pub(super) namespace: String,
    pub(super) name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PolicyResultLabels {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PolicyVerdictLabels {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BuildLabels {
    pub(super) version: &'static str,
    pub(super) commit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PhaseLabels {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ValueLabels {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) metric: String,
    pub(super) target: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MetricLabels {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) metric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ThresholdLabels {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) metric: String,
    pub(super) bound: &'static str,
}
pub(super) fn policy_result_labels(
    policy: &PolicyRef,
    result: RolloutResult,
) -> PolicyResultLabels {
    PolicyResultLabels {
        namespace: policy.namespace.clone(),
        name: policy.name.clone(),
        result: result.as_str(),
    }
}

pub(super) fn policy_verdict_labels(
    policy: &PolicyRef,
    verdict: VerdictKind,
) -> PolicyVerdictLabels {
    PolicyVerdictLabels {
        namespace: policy.namespace.clone(),
        name: policy.name.clone(),
        verdict: verdict.as_str(),
    }
}

pub(super) fn policy_labels(policy: &PolicyRef) -> PolicyLabels {
    PolicyLabels {
        namespace: policy.namespace.clone(),
        name: policy.name.clone(),
    }
}
