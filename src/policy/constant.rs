//! `Constant`: a CamelCase constant of the status (a reason, a condition's type or
//! status). shiftgate writes one of a few dozen, and a daemon holds a status (with up to
//! `HISTORY_LIMIT` history entries) for each of thousands of policies: a known constant
//! is kept as an index into the list below (no allocation), any other text read from a
//! stored status is kept as written. On the wire it is the string, as before.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The constants shiftgate writes into a status: the engine's reasons
/// (`engine::reasons`, `engine::{workloads, hooks, colours}`), condition types and
/// statuses, the daemon's refusals (`runtime::daemon::reasons`) and the analysis
/// verdicts' reasons. Literals, as `policy` depends on none of those modules; a test
/// keeps the list complete. One missing would still be read and written right, only
/// kept in its own allocation.
const KNOWN: &[&str] = &[
    "RevisionAccepted",
    "Started",
    "WindowClosed",
    "StepConfirmed",
    "StepAdvanced",
    "ChecksPassed",
    "ChecksFailed",
    "AnalysisPassed",
    "AnalysisFailed",
    "AnalysisInconclusive",
    "InconclusiveLimit",
    "AwaitingPromotion",
    "PausedByOperator",
    "Resumed",
    "PromotedByOperator",
    "Aborted",
    "RolledBack",
    "Promoted",
    "Held",
    "DriftDetected",
    "DriftReasserted",
    "RouteUnreadable",
    "CommandRefused",
    "UndoRequested",
    "Undone",
    "Retried",
    "CanaryIsLive",
    "WaitingForCanaryDeployment",
    "CanaryDeploymentFailed",
    "PreviousStableScaledDown",
    "ScaleDownHeld",
    "RestoringPreviousStable",
    "HooksPassed",
    "HookFailed",
    "PromotionNotConfirmed",
    "WaitingForRelease",
    // Condition types and statuses.
    "Accepted",
    "Progressing",
    "Healthy",
    "True",
    "False",
    "Unknown",
    // The daemon's own Accepted=False reasons.
    "InvalidPolicy",
    "RouteConflict",
    "RouteInvalid",
    "RouterNotSupported",
    "PolicyAccepted",
    "CredentialsNotAllowed",
    "PrometheusNotAllowed",
    // `analysis::verdict`'s reasons not above.
    "NoData",
    "NotANumber",
    "TooFewRequests",
    "SourceUnreachable",
    "SourceTimedOut",
    "InvalidQuery",
    "NotEnoughEvidence",
    "MarginalScore",
];

/// A CamelCase constant: 16 bytes, and no allocation when it is one of shiftgate's.
#[derive(Clone)]
pub struct Constant(Repr);

#[derive(Clone)]
enum Repr {
    /// An index into `KNOWN`.
    Known(u8),
    Other(Box<str>),
}

impl Constant {
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // In bounds: only `known` makes this variant.
            Repr::Known(i) => KNOWN.get(usize::from(*i)).copied().unwrap_or_default(),
            Repr::Other(text) => text,
        }
    }

    fn known(text: &str) -> Option<Constant> {
        let index = KNOWN.iter().position(|k| *k == text)?;
        u8::try_from(index).ok().map(|i| Constant(Repr::Known(i)))
    }
}

impl From<&str> for Constant {
    fn from(text: &str) -> Self {
        Constant::known(text).unwrap_or_else(|| Constant(Repr::Other(text.into())))
    }
}

impl From<String> for Constant {
    fn from(text: String) -> Self {
        Constant::known(&text).unwrap_or_else(|| Constant(Repr::Other(text.into_boxed_str())))
    }
}

impl std::ops::Deref for Constant {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Constant {
    fn eq(&self, other: &Constant) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Constant {}

impl std::hash::Hash for Constant {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for Constant {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Constant {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Constant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Constant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Constant {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Constant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Constant;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Constant, E> {
                Ok(Constant::from(text))
            }
            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Constant, E> {
                Ok(Constant::from(text))
            }
        }
        deserializer.deserialize_string(Visitor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::engine::{colours, hooks, reasons, workloads};
    use crate::runtime::daemon::reasons as daemon;

    #[test]
    fn every_constant_shiftgate_writes_is_known() {
        let written = [
            reasons::REVISION_ACCEPTED,
            reasons::STARTED,
            reasons::WINDOW_CLOSED,
            reasons::STEP_CONFIRMED,
            reasons::STEP_ADVANCED,
            reasons::CHECKS_PASSED,
            reasons::CHECKS_FAILED,
            reasons::ANALYSIS_PASSED,
            reasons::ANALYSIS_FAILED,
            reasons::ANALYSIS_INCONCLUSIVE,
            reasons::INCONCLUSIVE_LIMIT,
            reasons::AWAITING_PROMOTION,
            reasons::PAUSED_BY_OPERATOR,
            reasons::RESUMED,
            reasons::PROMOTED_BY_OPERATOR,
            reasons::ABORTED,
            reasons::ROLLED_BACK,
            reasons::PROMOTED,
            reasons::HELD,
            reasons::DRIFT_DETECTED,
            reasons::DRIFT_REASSERTED,
            reasons::ROUTE_UNREADABLE,
            reasons::COMMAND_REFUSED,
            reasons::UNDO_REQUESTED,
            reasons::UNDONE,
            reasons::RETRIED,
            reasons::CANARY_IS_LIVE,
            workloads::WAITING_FOR_CANARY,
            workloads::CANARY_DEPLOYMENT_FAILED,
            workloads::SCALED_DOWN,
            workloads::SCALE_DOWN_HELD,
            workloads::RESTORING_STABLE,
            hooks::HOOKS_PASSED,
            hooks::HOOK_FAILED,
            hooks::PROMOTION_NOT_CONFIRMED,
            colours::WAITING_FOR_RELEASE,
            reasons::ACCEPTED,
            reasons::PROGRESSING,
            reasons::HEALTHY,
            daemon::INVALID_POLICY,
            daemon::ROUTE_CONFLICT,
            daemon::ROUTE_INVALID,
            daemon::ROUTER_NOT_SUPPORTED,
            daemon::POLICY_ACCEPTED,
            daemon::CREDENTIALS_NOT_ALLOWED,
            daemon::PROMETHEUS_NOT_ALLOWED,
        ];
        for text in written {
            assert!(matches!(Constant::from(text).0, Repr::Known(_)), "{text}");
        }
    }

    #[test]
    fn known_constants_fit_an_index_and_are_distinct() {
        assert!(KNOWN.len() <= usize::from(u8::MAX));
        let distinct: std::collections::BTreeSet<_> = KNOWN.iter().collect();
        assert_eq!(distinct.len(), KNOWN.len());
        for known in KNOWN {
            assert!(
                matches!(Constant::from(*known).0, Repr::Known(_)),
                "{known}"
            );
        }
        assert_eq!(std::mem::size_of::<Constant>(), 16);
    }

    #[test]
    fn a_constant_reads_and_writes_as_its_text_known_or_not() {
        for text in [
            reasons::STEP_ADVANCED,
            hooks::HOOK_FAILED,
            "SomethingElse",
            "",
        ] {
            let json = serde_json::to_value(text).unwrap();
            let constant: Constant = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(constant, text);
            assert_eq!(serde_json::to_value(&constant).unwrap(), json);
            let borrowed: Constant = serde_json::from_str(&json.to_string()).unwrap();
            assert_eq!(borrowed, constant);
            assert_eq!(Constant::from(text), constant);
            assert_eq!(format!("{constant}"), text);
        }
        assert!(matches!(Constant::from(reasons::STARTED).0, Repr::Known(_)));
        assert!(matches!(Constant::from("SomethingElse").0, Repr::Other(_)));
        let refused: Result<Constant, _> = serde_json::from_value(serde_json::json!(3));
        assert!(refused.is_err());
    }
}
