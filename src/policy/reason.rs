//! `Reason`: a history entry's CamelCase reason. The engine writes one of a few dozen
//! constants, and a daemon holds up to `HISTORY_LIMIT` entries for each of thousands of
//! policies: a known reason is kept as an index into the constants (no allocation), any
//! other text read from a stored status is kept as written. On the wire it is the
//! string, as before.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::engine::{colours, hooks, reasons, workloads};

/// Every reason the engine records in the history (`engine::record`).
const KNOWN: &[&str] = &[
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
];

/// A CamelCase reason: 16 bytes, and no allocation when it is one of the engine's.
#[derive(Clone)]
pub struct Reason(Repr);

#[derive(Clone)]
enum Repr {
    /// An index into `KNOWN`.
    Known(u8),
    Other(Box<str>),
}

impl Reason {
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // In bounds: only `known` makes this variant.
            Repr::Known(i) => KNOWN.get(usize::from(*i)).copied().unwrap_or_default(),
            Repr::Other(text) => text,
        }
    }

    fn known(text: &str) -> Option<Reason> {
        let index = KNOWN.iter().position(|k| *k == text)?;
        u8::try_from(index).ok().map(|i| Reason(Repr::Known(i)))
    }
}

impl From<&str> for Reason {
    fn from(text: &str) -> Self {
        Reason::known(text).unwrap_or_else(|| Reason(Repr::Other(text.into())))
    }
}

impl From<String> for Reason {
    fn from(text: String) -> Self {
        Reason::known(&text).unwrap_or_else(|| Reason(Repr::Other(text.into_boxed_str())))
    }
}

impl std::ops::Deref for Reason {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Reason {
    fn eq(&self, other: &Reason) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Reason {}

impl std::hash::Hash for Reason {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for Reason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Reason;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Reason, E> {
                Ok(Reason::from(text))
            }
            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Reason, E> {
                Ok(Reason::from(text))
            }
        }
        deserializer.deserialize_string(Visitor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn known_reasons_fit_an_index_and_are_distinct() {
        assert!(KNOWN.len() <= usize::from(u8::MAX));
        let distinct: std::collections::BTreeSet<_> = KNOWN.iter().collect();
        assert_eq!(distinct.len(), KNOWN.len());
        assert_eq!(std::mem::size_of::<Reason>(), 16);
    }

    #[test]
    fn a_reason_reads_and_writes_as_its_text_known_or_not() {
        for text in [
            reasons::STEP_ADVANCED,
            hooks::HOOK_FAILED,
            "SomethingElse",
            "",
        ] {
            let json = serde_json::to_value(text).unwrap();
            let reason: Reason = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(reason, text);
            assert_eq!(serde_json::to_value(&reason).unwrap(), json);
            let borrowed: Reason = serde_json::from_str(&json.to_string()).unwrap();
            assert_eq!(borrowed, reason);
            assert_eq!(Reason::from(text), reason);
            assert_eq!(format!("{reason}"), text);
        }
        assert!(matches!(Reason::from(reasons::STARTED).0, Repr::Known(_)));
        assert!(matches!(Reason::from("SomethingElse").0, Repr::Other(_)));
        let refused: Result<Reason, _> = serde_json::from_value(serde_json::json!(3));
        assert!(refused.is_err());
    }
}
