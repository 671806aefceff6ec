//! What validation reports: an [`Issue`] (a field path, no position: the daemon finds
//! them in custom resources too) and a [`Diagnostic`] (an issue located in a file, printed
//! like rustc or ripgrep: `policies/x.yaml:12:7: spec.steps[2]: … (hint: …)`).

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// Errors make a policy invalid; warnings are accepted unless `--deny-warnings`.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A problem at a field path such as `spec.analysis.metrics[2].max`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// Field path from the document root, e.g. `spec.steps[2]`; empty for the whole document.
    pub path: String,
    pub message: String,
    /// What to write instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    pub severity: Severity,
}

impl Issue {
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            path: path.into(),
            message: message.into(),
            hint: None,
            severity: Severity::Error,
        }
    }

    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Warning,
            ..Issue::error(path, message)
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Places the issue in a file at a 1-based line and column.
    pub fn located(self, file: impl Into<PathBuf>, line: usize, column: usize) -> Diagnostic {
        Diagnostic {
            file: file.into(),
            line,
            column,
            path: self.path,
            message: self.message,
            hint: self.hint,
            severity: self.severity,
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// An issue located in a policy file. Lines and columns are 1-based; line 0 means the
/// file as a whole (it could not be read).
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Field path such as `spec.analysis.metrics[2].max`; empty when no field applies.
    pub path: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    pub severity: Severity,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: path: message (hint: …)`, with `warning: ` before the message of a
    /// warning, so editors and grep read it like a compiler's output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// Joins a field path and a key: `spec` + `steps` = `spec.steps`.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Joins a field path and a sequence index: `spec.steps` + 2 = `spec.steps[2]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_a_compiler() {
        let d = Issue::error("spec.steps[2]", "weight 150 is outside 0..=100")
            .with_hint("write a percentage")
            .located("policies/x.yaml", 12, 7);
        assert_eq!(
            d.to_string(),
            "policies/x.yaml:12:7: spec.steps[2]: weight 150 is outside 0..=100 (hint: write a percentage)"
        );
        let w = Issue::warning("", "no metrics").located("a.yaml", 1, 1);
        assert_eq!(w.to_string(), "a.yaml:1:1: warning: no metrics");
    }
}
