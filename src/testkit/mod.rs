//! Test infrastructure shipped inside the library, so integration tests, benches and
//! other helpers' tests share one implementation. Not a stable API.

pub mod apiserver;
