//! Regression tests: see tests/regression.rs.
