//! Issue "scale": what one evaluation costs. The API requests are counted on the test
//! API server with the helpers of `scale.rs`; CPU and allocations per evaluation come
//! from `benches/runtime_scale.rs` (docs/benchmarks.md), never from a timed test.

use super::scale::{progressing, Window};

/// An evaluation that moves a weight sent four requests: the write-ahead status patch,
/// the VirtualService patch, a second status patch confirming the write, and the
/// StepAdvanced Event. The write-ahead status now says by when the write landed, so
/// the next evaluation confirms it in its own status patch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weight_moving_evaluation_costs_four_api_requests() {
    let window: Window = progressing().await;
    let requests = window
        .requests
        .iter()
        .filter(|r| !r.path.contains("watch=true"))
        .count();
    assert!(
        requests <= 3 * window.evaluations,
        "{requests} requests: {}",
        window.describe()
    );
    for (method, path) in [
        ("PATCH", "/rolloutpolicies/checkout/status"),
        ("PATCH", "/virtualservices/checkout"),
        ("POST", "/events"),
    ] {
        assert_eq!(
            window.count(method, path),
            window.evaluations,
            "{method} {path}: {}",
            window.describe()
        );
    }
}
