//! One cluster `shiftgate run` per route: the route Lease, against the in-repo test API
//! server through the real kube client.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use shiftgate::runtime::route_lease::{acquire, lease_name, RouteLeaseError};
use shiftgate::testkit::apiserver::TestApiServer;

const KEY: &str = "VirtualService shop/checkout";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_route_is_refused_naming_the_holder_until_it_releases() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client().unwrap();
    let first = acquire(client.clone(), "shop", KEY, "pid 1 on ci-a, started T1")
        .await
        .unwrap();
    assert!(first.is_held());
    let refused = acquire(client.clone(), "shop", KEY, "pid 2 on ci-b, started T2").await;
    match refused {
        Err(RouteLeaseError::Held { holder, key, .. }) => {
            assert_eq!(holder, "pid 1 on ci-a, started T1");
            assert_eq!(key, KEY);
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("two runs hold one route"),
    }
    // Another route is free.
    let other = acquire(client.clone(), "shop", "Service shop/cart", "pid 2 on ci-b")
        .await
        .unwrap();
    other.release().await;
    // Released at the end of the run: the next run takes it at once.
    first.release().await;
    let api: Api<Lease> = Api::namespaced(client.clone(), "shop");
    let lease = api.get(&lease_name(KEY)).await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity, None);
    let second = acquire(client.clone(), "shop", KEY, "pid 2 on ci-b, started T2")
        .await
        .unwrap();
    assert!(second.is_held());
    second.release().await;
}
