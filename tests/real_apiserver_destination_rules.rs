//! The DestinationRule read of subset-level policies against a real kube-apiserver (see
//! tests/support/kube_apiserver.rs), as the daemon's ServiceAccount: deploy/'s RBAC lets
//! it list the rules of a policy's namespace, and seed 003's subset labels become the
//! `destination_version` the built-in queries select.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use shiftgate::metrics::queries::{PolicyQueries, SideQueries};
use shiftgate::metrics::PolicyRef;
use shiftgate::policy::RolloutSpec;
use shiftgate::router::istio::destination_rule::with_subset_labels;
use support::kube_apiserver::KubeApiServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemons_account_reads_seed_003_subset_labels() {
    let server = KubeApiServer::shared();
    server.install();
    let namespace = server.create_namespace("labels-seed-003").await;
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1beta1", "DestinationRule");
    let rules: Api<DynamicObject> = Api::namespaced_with(
        server.admin_client().await,
        &namespace,
        &ApiResource::from_gvk_with_plural(&gvk, "destinationrules"),
    );
    let rule: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "DestinationRule",
        "metadata": { "name": "web-echo", "namespace": namespace },
        "spec": { "host": "web-echo", "subsets": [
            { "name": "v1", "labels": { "version": "blue-web-echo" } },
            { "name": "v2", "labels": { "version": "green-web-echo" } }
        ]}
    }))
    .unwrap();
    match rules.create(&PostParams::default(), &rule).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("cannot create the DestinationRule: {e}"),
    }
    let spec: RolloutSpec = serde_yaml_ng::from_str(
        "revision: v2\nrouter: {istio: {virtualService: web-echo, apiVersion: v1beta1, stable: {host: web-echo, subset: v1}, canary: {host: web-echo, subset: v2}}}\nsteps: [0, 100]\nanalysis:\n  metrics: [{name: e, template: istio-error-rate, max: 0.01}]\n",
    )
    .unwrap();
    let policy = PolicyRef {
        namespace: namespace.clone(),
        name: "web-echo".to_owned(),
    };
    let daemon = server
        .service_account_client("shiftgate", "shiftgate")
        .await;
    let (resolved, said) = with_subset_labels(&daemon, &policy, &spec).await;
    let SideQueries::Ready { value, .. } =
        &PolicyQueries::plan(&policy, &resolved).metrics[0].canary
    else {
        panic!("no query");
    };
    assert!(
        value.contains(r#"destination_version="green-web-echo""#),
        "{value} ({said:?})"
    );
}
