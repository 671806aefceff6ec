//! Generated configuration for the local environment: Envoy's bootstrap (a listener
//! routed by the RDS file shiftgate writes, a stable and a canary cluster) and
//! Prometheus's config (Envoy's stats every second). Pure.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{json, Value};

use crate::policy::EnvoyRouter as EnvoyRouterSpec;

/// Envoy's v3 bootstrap. The listener binds port 0, and so does admin unless `admin`
/// names a port; the supervisor learns the ports from `--admin-address-path` and the
/// admin `/listeners` page.
pub fn envoy_bootstrap(
    router: &EnvoyRouterSpec,
    routes_dir: &Path,
    admin: SocketAddr,
    stable: SocketAddr,
    canary: SocketAddr,
) -> Value {
    json!({
        "node": { "id": "shiftgate-demo", "cluster": "shiftgate-demo" },
        // Histograms (latency quantiles) reach /stats/prometheus only at each flush:
        // the default 5s would leave a short analysis window without latency data.
        "stats_flush_interval": "1s",
        "admin": { "address": socket_address(admin) },
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": socket_address(([127, 0, 0, 1], 0).into()),
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress",
                        "rds": {
                            "route_config_name": router.route_config_name,
                            "config_source": {
                                "resource_api_version": "V3",
                                "path_config_source": {
                                    "path": router.routes_file,
                                    // Without it Envoy would miss the rename that replaces the file.
                                    "watched_directory": { "path": routes_dir.display().to_string() },
                                },
                            },
                        },
                        "http_filters": [{
                            "name": "envoy.filters.http.router",
                            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
                        }],
                    },
                }] }],
            }],
            "clusters": [
                static_cluster(&router.stable_cluster, stable),
                static_cluster(&router.canary_cluster, canary),
            ],
        },
    })
}

fn socket_address(addr: SocketAddr) -> Value {
    json!({ "socket_address": { "address": addr.ip().to_string(), "port_value": addr.port() } })
}

fn static_cluster(name: &str, endpoint: SocketAddr) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        // The app's `/healthz` every second, also without traffic (the previous stable
        // after a promotion gets none): a stopped release shows as unhealthy in admin
        // `/clusters`, which `undo` reads. With every host unhealthy Envoy still routes
        // (panic mode), so the check never drops user traffic.
        "health_checks": [{
            "timeout": "1s",
            "interval": "1s",
            "no_traffic_interval": "1s",
            "unhealthy_threshold": 2,
            "healthy_threshold": 1,
            "http_health_check": { "path": "/healthz" },
        }],
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(endpoint) } }] }],
        },
    })
}

/// Prometheus scraping Envoy's `/stats/prometheus` every second, so a step's analysis
/// sees fresh data within a couple of seconds.
pub fn prometheus_config(envoy_admin: SocketAddr) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: envoy\n    metrics_path: /stats/prometheus\n    static_configs:\n      - targets: ['{envoy_admin}']\n"
    )
}
