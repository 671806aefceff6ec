//! The previous release of a local Envoy policy: its cluster must have at least one
//! healthy host in Envoy's admin `/clusters?format=json` (active health checks, outlier
//! detection and EDS health as Envoy itself sees them).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::engine::previous_release::PreviousRelease;
use crate::policy::RolloutSpec;
use crate::runtime::release_presence::PreviousReleaseProbe;

/// How long the admin request may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Host flags under `health_status` that take a host out of load balancing.
const FAILED_FLAGS: [&str; 6] = [
    "failed_active_health_check",
    "failed_outlier_check",
    "failed_eds_health",
    "pending_dynamic_removal",
    "pending_active_hc",
    "excluded_via_immediate_hc_fail",
];

/// Looks at the previous cluster through Envoy's admin endpoint.
pub struct EnvoyReleaseProbe;

#[async_trait]
impl PreviousReleaseProbe for EnvoyReleaseProbe {
    async fn look(&self, spec: &RolloutSpec) -> PreviousRelease {
        let Some(envoy) = &spec.router.envoy else {
            return PreviousRelease::Unchecked("not an Envoy policy".into());
        };
        let admin = envoy.admin_address.trim_end_matches('/');
        let base = if admin.starts_with("http://") || admin.starts_with("https://") {
            admin.to_owned()
        } else {
            format!("http://{admin}")
        };
        let url = format!("{base}/clusters?format=json");
        let shown = crate::redact::urls(&url).into_owned();
        match fetch(&url).await {
            Ok(doc) => cluster_health(&doc, &envoy.stable_cluster, &shown),
            Err(why) => PreviousRelease::Unknown(format!(
                "cannot read envoy's clusters at {shown}: {}; is envoy running?",
                crate::redact::urls(&why)
            )),
        }
    }
}

async fn fetch(url: &str) -> Result<Value, String> {
    let http = reqwest::Client::builder()
        .timeout(ADMIN_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let response = http.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    response.json().await.map_err(|e| e.to_string())
}

/// What `/clusters?format=json` says of `cluster`.
pub fn cluster_health(doc: &Value, cluster: &str, shown: &str) -> PreviousRelease {
    let statuses = doc["cluster_statuses"].as_array();
    let Some(found) = statuses
        .into_iter()
        .flatten()
        .find(|c| c["name"].as_str() == Some(cluster))
    else {
        return PreviousRelease::Gone(format!("envoy ({shown}) has no cluster `{cluster}`"));
    };
    let hosts = found["host_statuses"].as_array().map_or(&[][..], |h| h);
    let healthy = hosts.iter().filter(|h| host_healthy(h)).count();
    if healthy > 0 {
        return PreviousRelease::Serving(format!(
            "{healthy} of {} hosts of envoy cluster `{cluster}` healthy",
            hosts.len()
        ));
    }
    let seen: Vec<String> = hosts.iter().map(describe_host).collect();
    PreviousRelease::NotServing(format!(
        "no healthy host in envoy cluster `{cluster}` ({shown}): {}",
        if seen.is_empty() {
            "it has no host".to_owned()
        } else {
            seen.join("; ")
        }
    ))
}

fn host_healthy(host: &Value) -> bool {
    let health = &host["health_status"];
    let eds_ok = health["eds_health_status"]
        .as_str()
        .is_none_or(|s| s == "HEALTHY" || s == "DEGRADED");
    eds_ok && !FAILED_FLAGS.iter().any(|f| health[f] == Value::Bool(true))
}

fn describe_host(host: &Value) -> String {
    let address = &host["address"]["socket_address"];
    let at = format!(
        "{}:{}",
        address["address"].as_str().unwrap_or("?"),
        address["port_value"].as_u64().unwrap_or(0)
    );
    let health = &host["health_status"];
    let mut why: Vec<String> = FAILED_FLAGS
        .iter()
        .filter(|f| health[**f] == Value::Bool(true))
        .map(|f| f.replace('_', " "))
        .collect();
    if let Some(eds) = health["eds_health_status"].as_str() {
        if eds != "HEALTHY" {
            why.push(format!("eds {eds}"));
        }
    }
    format!("{at} {}", why.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(hosts: Value) -> Value {
        json!({"cluster_statuses": [
            {"name": "canary", "host_statuses": [{"health_status": {"eds_health_status": "HEALTHY"}}]},
            {"name": "stable", "host_statuses": hosts}
        ]})
    }

    #[test]
    fn a_cluster_serves_with_one_healthy_host() {
        let one = doc(json!([
            {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}},
             "health_status": {"eds_health_status": "HEALTHY", "failed_active_health_check": true}},
            {"health_status": {"eds_health_status": "HEALTHY"}}
        ]));
        assert!(matches!(
            cluster_health(&one, "stable", "admin"),
            PreviousRelease::Serving(_)
        ));
    }

    #[test]
    fn failed_hosts_an_empty_cluster_and_a_missing_one_do_not_serve() {
        let failed = doc(json!([
            {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 8081}},
             "health_status": {"eds_health_status": "HEALTHY", "failed_active_health_check": true}}
        ]));
        match cluster_health(&failed, "stable", "admin") {
            PreviousRelease::NotServing(why) => assert!(
                why.contains("127.0.0.1:8081 failed active health check"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            cluster_health(&doc(json!(null)), "stable", "admin"),
            PreviousRelease::NotServing(_)
        ));
        assert!(matches!(
            cluster_health(&doc(json!([])), "blue", "admin"),
            PreviousRelease::Gone(_)
        ));
    }
}
