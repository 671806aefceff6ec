//! What this binary is: the crate version and the git commit it was built from (baked in
//! by build.rs; `unknown` when built without git). `shiftgate --version` prints them, and
//! they are the labels of the `shiftgate_build_info` metric.

/// The crate version (Cargo.toml), e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The first 12 hex digits of the commit built, or `unknown`.
pub const COMMIT: &str = env!("SHIFTGATE_GIT_COMMIT");

/// What `--version` prints after the program name: `0.1.0 (commit 6f1cef9a0b1c)`.
pub const VERSION_WITH_COMMIT: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SHIFTGATE_GIT_COMMIT"),
    ")"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_line_names_the_version_and_the_commit() {
        assert_eq!(VERSION_WITH_COMMIT, format!("{VERSION} (commit {COMMIT})"));
        assert!(
            COMMIT == "unknown" || COMMIT.bytes().all(|b| b.is_ascii_hexdigit()),
            "{COMMIT}"
        );
    }
}
