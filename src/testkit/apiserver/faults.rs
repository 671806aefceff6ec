//! Fault injection: a test says which requests misbehave, how, and how many times.

use std::time::Duration;

/// How a matching request misbehaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this HTTP code and a `Status` object with the real server's reason
    /// for it (404 NotFound, 409 Conflict, 422 Invalid, 500 InternalError, …). Nothing
    /// is stored.
    Status(u16),
    /// Wait this long, then handle the request normally.
    Delay(Duration),
    /// Close the connection without answering. Nothing is stored.
    DropConnection,
}

/// A fault for the next `times` requests that match `method` (any when `None`) and
/// whose path-and-query contains `path_contains`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub method: Option<String>,
    pub path_contains: String,
    pub kind: FaultKind,
    pub times: u32,
}

impl Fault {
    /// `Fault::new("PATCH", "/virtualservices/", FaultKind::Status(409), 1)`;
    /// `"*"` as the method matches every method.
    pub fn new(method: &str, path_contains: &str, kind: FaultKind, times: u32) -> Self {
        Self {
            method: (method != "*").then(|| method.to_ascii_uppercase()),
            path_contains: path_contains.to_owned(),
            kind,
            times,
        }
    }

    pub fn matches(&self, method: &str, path_and_query: &str) -> bool {
        self.times > 0
            && self.method.as_deref().is_none_or(|m| m == method)
            && path_and_query.contains(&self.path_contains)
    }
}

/// Faults in the order they were injected; the first match with uses left applies.
#[derive(Debug, Default)]
pub struct FaultList(Vec<Fault>);

impl FaultList {
    pub fn push(&mut self, fault: Fault) {
        self.0.push(fault);
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Uses left over all faults.
    pub fn remaining(&self) -> u32 {
        self.0.iter().map(|f| f.times).sum()
    }

    /// Takes one use of the first matching fault.
    pub fn take(&mut self, method: &str, path_and_query: &str) -> Option<FaultKind> {
        let fault = self
            .0
            .iter_mut()
            .find(|f| f.matches(method, path_and_query))?;
        fault.times -= 1;
        Some(fault.kind.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_applies_to_matching_requests_the_given_number_of_times() {
        let mut faults = FaultList::default();
        faults.push(Fault::new(
            "patch",
            "/virtualservices/",
            FaultKind::Status(409),
            2,
        ));
        assert_eq!(faults.take("GET", "/apis/x/v1/virtualservices/a"), None);
        assert_eq!(
            faults.take("PATCH", "/apis/x/v1/virtualservices/a"),
            Some(FaultKind::Status(409))
        );
        assert_eq!(faults.remaining(), 1);
        assert!(faults
            .take("PATCH", "/apis/x/v1/virtualservices/a")
            .is_some());
        assert_eq!(faults.take("PATCH", "/apis/x/v1/virtualservices/a"), None);
    }
}
