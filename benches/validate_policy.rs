//! Parsing and validating one example policy (filled in with the parser).
fn main() {}
