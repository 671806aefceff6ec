//! A Prometheus stand-in for daemon tests whose judgement is not the point: every
//! instant query gets one healthy sample.
#![allow(clippy::unwrap_used)] // test support: a panic is the failure report

use serde_json::json;

/// Serves on 127.0.0.1 (a free port) until the test's runtime ends; the address.
pub async fn healthy_prometheus_stand_in() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::any(|| async {
            axum::Json(json!({
                "status": "success",
                "data": { "resultType": "vector",
                          "result": [ { "metric": {}, "value": [1_700_000_000.0, "0.001"] } ] }
            }))
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}
