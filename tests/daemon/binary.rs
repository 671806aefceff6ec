//! The `shiftgate daemon` binary: health, metrics, and a clean stop on SIGTERM.

use super::*;
use support::http::http_get;

fn status_code(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}

/// The built binary, configured by environment variables only, against the test API
/// server: it serves /readyz and /metrics, leads, promotes, and on SIGTERM stops with
/// exit code 0 after releasing its Lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_health_and_metrics_and_stops_cleanly_on_sigterm() {
    let cluster = Cluster::start().await;
    let prometheus = support::prometheus_stand_in::healthy_prometheus_stand_in().await;
    let mut spec = policy("checkout", json!([0, 50, 100]), "checkout", "primary", "v2");
    spec.spec.analysis.prometheus = None; // from --prometheus (SHIFTGATE_PROMETHEUS)
    spec.spec.analysis.metrics = serde_json::from_value(json!([
        { "name": "error-rate", "template": "istio-error-rate", "max": 0.01 }
    ]))
    .unwrap();
    cluster.create(&spec).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = cluster.server.write_kubeconfig(dir.path(), NS).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_shiftgate"))
        .arg("daemon")
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAME", "pod-cli")
        .env("SHIFTGATE_NAMESPACE", NS)
        .env("SHIFTGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("SHIFTGATE_PROMETHEUS", &prometheus)
        .env("SHIFTGATE_LEASE_NAMESPACE", NS)
        .env("SHIFTGATE_LEASE_DURATION", "3s")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = support::process::KillOnDrop(child);
    let started = Instant::now();
    loop {
        let response = http_get(port, "/readyz").await;
        if status_code(&response) == Some(200) {
            break;
        }
        let exited = child.0.try_wait().unwrap();
        assert!(
            exited.is_none() && started.elapsed() < Duration::from_secs(20),
            "the daemon never became ready (exit: {exited:?}); /readyz: {response:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status_code(&http_get(port, "/healthz").await), Some(200));
    cluster
        .wait_for_status("checkout", "Promoted", Duration::from_secs(40), |s| {
            s.phase == Phase::Promoted
        })
        .await;
    let metrics = http_get(port, "/metrics").await;
    assert!(metrics.contains("shiftgate_leader 1"), "{metrics}");
    assert!(
        metrics.contains(r#"shiftgate_rollouts_total{result="promoted"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"shiftgate_canary_weight_ratio{namespace="shop",name="checkout"} 1"#),
        "{metrics}"
    );
    // No Accept header: the text format 0.0.4, which promtool's linter accepts.
    let body = metrics.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    support::process::promtool_check_metrics(body, "the daemon's /metrics");

    let code = support::process::terminate(&mut child.0, "shiftgate daemon").await;
    assert_eq!(code, Some(0));
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(cluster.server.client().unwrap(), NS);
    let lease = leases.get("shiftgate").await.unwrap().spec.unwrap();
    assert_eq!(
        lease.holder_identity, None,
        "the Lease was not released on SIGTERM"
    );
}
