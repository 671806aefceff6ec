//! Leader election on a coordination.k8s.io/v1 Lease, against the in-repo test API
//! server through the real kube client. Short real durations (a 2 s lease); every wait
//! polls a condition with a timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use shiftgate::runtime::clock::SystemClock;
use shiftgate::runtime::leader::{LeaderElector, Leadership, LeaseConfig};
use shiftgate::testkit::apiserver::{Fault, FaultKind, TestApiServer};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const LEASE: Duration = Duration::from_secs(2);

struct Candidate {
    leadership: Leadership,
    task: JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Candidate {
    /// Crash: the task is aborted, nothing is released.
    fn kill(mut self) {
        self.stop.take();
        self.task.abort();
    }

    /// Graceful stop: releases the Lease.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn start(server: &TestApiServer, identity: &str) -> Candidate {
    let client = server.client().unwrap();
    let config = LeaseConfig::new("shiftgate", "shiftgate-system", identity, LEASE);
    let (elector, leadership) =
        LeaderElector::new(client, config, Arc::new(SystemClock), None).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(elector.run(async move {
        let _ = stop_rx.await;
    }));
    Candidate {
        leadership,
        task,
        stop: Some(stop_tx),
    }
}

async fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Samples both candidates every few milliseconds and records whether they ever led
/// at the same moment.
fn watch_for_split_brain(a: Leadership, b: Leadership) -> (Arc<AtomicBool>, JoinHandle<()>) {
    let seen = Arc::new(AtomicBool::new(false));
    let flag = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            if a.is_leading() && b.is_leading() {
                flag.store(true, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    (seen, task)
}

async fn lease(server: &TestApiServer) -> Lease {
    let api: Api<Lease> = Api::namespaced(server.client().unwrap(), "shiftgate-system");
    api.get("shiftgate").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_candidates_exactly_one_leads_and_the_lease_records_it() {
    let server = TestApiServer::start().await.unwrap();
    let a = start(&server, "pod-a");
    wait_for("pod-a to lead", LEASE * 3, || a.leadership.is_leading()).await;
    let b = start(&server, "pod-b");
    wait_for("pod-b to settle", LEASE * 3, || b.leadership.is_settled()).await;
    let (split, sampler) = watch_for_split_brain(a.leadership.clone(), b.leadership.clone());
    // Several renewal periods: a keeps leading, b keeps following.
    tokio::time::sleep(LEASE * 2).await;
    assert!(a.leadership.is_leading());
    assert!(!b.leadership.is_leading());
    sampler.abort();
    assert!(!split.load(Ordering::SeqCst), "both candidates led at once");

    let spec = lease(&server).await.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("pod-a"));
    assert_eq!(spec.lease_duration_seconds, Some(2));
    assert_eq!(spec.lease_transitions, Some(0));
    assert!(spec.acquire_time.is_some());
    assert!(
        spec.renew_time.unwrap() > spec.acquire_time.unwrap(),
        "renewals move renewTime"
    );
    // Every write to the Lease after its creation was a conditional replace.
    for put in server.requests_matching("PUT", "/leases/shiftgate") {
        let body = put.json().unwrap();
        assert!(
            body["metadata"]["resourceVersion"].is_string(),
            "unconditional lease write: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_within_the_lease_duration() {
    let server = TestApiServer::start().await.unwrap();
    let a = start(&server, "pod-a");
    wait_for("pod-a to lead", LEASE * 3, || a.leadership.is_leading()).await;
    let b = start(&server, "pod-b");
    wait_for("pod-b to settle", LEASE * 3, || b.leadership.is_settled()).await;
    assert!(!b.leadership.is_leading());

    a.kill();
    let config = LeaseConfig::new("", "", "", LEASE);
    // b must see the record unchanged for a lease duration, then acquire at its next
    // attempt: lease duration + one retry period, plus scheduling slack.
    let limit = LEASE + config.retry_period * 2 + Duration::from_millis(500);
    let took = wait_for("pod-b to take over", LEASE * 4, || {
        b.leadership.is_leading()
    })
    .await;
    assert!(took <= limit, "takeover took {took:?}, more than {limit:?}");
    let spec = lease(&server).await.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("pod-b"));
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gracefully_stopped_leader_releases_and_the_other_takes_over_at_once() {
    let server = TestApiServer::start().await.unwrap();
    let a = start(&server, "pod-a");
    wait_for("pod-a to lead", LEASE * 3, || a.leadership.is_leading()).await;
    let b = start(&server, "pod-b");
    wait_for("pod-b to settle", LEASE * 3, || b.leadership.is_settled()).await;
    let leadership_a = a.leadership.clone();
    a.stop().await;
    assert!(!leadership_a.is_leading());
    let took = wait_for("pod-b to take over", LEASE * 3, || {
        b.leadership.is_leading()
    })
    .await;
    assert!(took < LEASE, "takeover after a release took {took:?}");
}

/// While every Lease write fails (`kind`), the leader stops leading within the renew
/// deadline, before the lease duration after which another could acquire; nobody ever
/// leads at the same time as another; once writes work again, one leads.
async fn renewals_fail_then_recover(kind: FaultKind) {
    let server = TestApiServer::start().await.unwrap();
    let a = start(&server, "pod-a");
    wait_for("pod-a to lead", LEASE * 3, || a.leadership.is_leading()).await;
    let b = start(&server, "pod-b");
    wait_for("pod-b to settle", LEASE * 3, || b.leadership.is_settled()).await;
    let (split, sampler) = watch_for_split_brain(a.leadership.clone(), b.leadership.clone());

    server.inject(Fault::new("PUT", "/leases/shiftgate", kind, 1_000));
    let injected = Instant::now();
    wait_for("pod-a to stop leading", LEASE * 3, || {
        !a.leadership.is_leading()
    })
    .await;
    let stopped = injected.elapsed();
    let config = LeaseConfig::new("", "", "", LEASE);
    assert!(
        stopped <= config.renew_deadline + Duration::from_millis(300),
        "pod-a kept leading {stopped:?} without a renewal (renew deadline {:?})",
        config.renew_deadline
    );
    // Past the lease duration nobody leads while the writes fail.
    tokio::time::sleep(LEASE + config.retry_period).await;
    assert!(!a.leadership.is_leading() && !b.leadership.is_leading());
    server.clear_faults();
    wait_for("someone to lead again", LEASE * 4, || {
        a.leadership.is_leading() || b.leadership.is_leading()
    })
    .await;
    tokio::time::sleep(LEASE).await;
    sampler.abort();
    assert!(!split.load(Ordering::SeqCst), "both candidates led at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_whose_renewals_fail_stops_before_another_could_acquire() {
    renewals_fail_then_recover(FaultKind::Status(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_whose_renewals_hang_stops_at_the_deadline() {
    renewals_fail_then_recover(FaultKind::Delay(LEASE * 2)).await;
}

#[test]
fn unsafe_timing_is_refused() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = TestApiServer::start().await.unwrap();
        let mut config = LeaseConfig::new("l", "ns", "me", LEASE);
        config.renew_deadline = LEASE;
        let error = LeaderElector::new(
            server.client().unwrap(),
            config,
            Arc::new(SystemClock),
            None,
        )
        .err()
        .unwrap();
        assert!(error.to_string().contains("renew deadline"), "{error}");
    });
}
