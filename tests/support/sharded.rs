//! Several `shiftgate daemon --shards N` processes against the in-repo test API server:
//! many Istio rollouts (one VirtualService each), a Prometheus stand-in that always
//! answers healthy, the shard Leases read back, and each route's write history.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is the failure report

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use shiftgate::policy::{RolloutPolicy, RolloutSpec};
use shiftgate::testkit::apiserver::{ResourceRef, TestApiServer};
use tokio::time::Instant;

pub const NS: &str = "shop";
/// Short, so that a takeover fits a CI test: renewals every 0.4 s.
pub const LEASE: Duration = Duration::from_secs(2);

/// The shard of policy `namespace/name` as docs/sharding.md defines it:
/// FNV-1a 64 of `<namespace>/<name>`, mod `shards`. Written out here rather than taken
/// from the library, so the tests hold the library to the documented function.
pub fn shard_of(namespace: &str, name: &str, shards: u32) -> usize {
    let hash = format!("{namespace}/{name}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    usize::try_from(hash % u64::from(shards)).unwrap()
}

/// One daemon process; killed (SIGKILL) when dropped.
pub struct Replica {
    pub name: String,
    /// Where it serves /metrics.
    pub port: u16,
    child: Option<Child>,
}

impl Replica {
    /// `kill -9`: no release, no cleanup.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its /metrics response (empty when not served).
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return String::new();
        };
        let request = b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if stream.write_all(request).await.is_err() {
            return String::new();
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response).await;
        response
    }

    /// The value of gauge `metric` on its /metrics (`None`: not served).
    pub async fn gauge(&self, metric: &str) -> Option<f64> {
        self.metrics().await.lines().find_map(|line| {
            let (name, value) = line.split_once(' ')?;
            (name == metric)
                .then(|| value.trim().parse().ok())
                .flatten()
        })
    }

    /// SIGTERM, then waits for the exit; its exit code.
    pub async fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        super::process::terminate(&mut child, &self.name).await
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill_9();
    }
}

pub struct ShardCluster {
    pub server: TestApiServer,
    prometheus: String,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl ShardCluster {
    pub async fn start() -> ShardCluster {
        let server = TestApiServer::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = server.write_kubeconfig(dir.path(), NS).unwrap();
        ShardCluster {
            server,
            prometheus: super::prometheus_stand_in::healthy_prometheus_stand_in().await,
            kubeconfig,
            _dir: dir,
        }
    }

    /// `shiftgate daemon --shards <shards>` as replica `name`.
    pub fn replica(&self, name: &str, shards: u32) -> Replica {
        let port = super::ports::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_shiftgate"))
            .args(["daemon", "--shards", &shards.to_string()])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAME", name)
            .env("SHIFTGATE_NAMESPACE", NS)
            .env("SHIFTGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("SHIFTGATE_PROMETHEUS", &self.prometheus)
            .env("SHIFTGATE_LEASE_NAMESPACE", NS)
            .env("SHIFTGATE_LEASE_DURATION", format!("{}s", LEASE.as_secs()))
            .env("SHIFTGATE_CONCURRENCY", "16")
            .env("SHIFTGATE_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Replica {
            name: name.to_owned(),
            port,
            child: Some(child),
        }
    }

    /// Rollout `name` on its own VirtualService `name`, through `steps` (1 s analysis).
    pub async fn rollout(&self, name: &str, steps: &[u8]) {
        let vs = ResourceRef::new("networking.istio.io", "v1", "virtualservices");
        self.server
            .put_object(
                &vs,
                json!({
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "VirtualService",
                    "metadata": { "name": name, "namespace": NS },
                    "spec": { "hosts": [name], "http": [{
                        "name": "primary",
                        "route": [
                            { "destination": { "host": name, "subset": "v1" }, "weight": 100 },
                            { "destination": { "host": name, "subset": "v2" }, "weight": 0 }
                        ]
                    }] }
                }),
            )
            .unwrap();
        let spec: RolloutSpec = serde_json::from_value(json!({
            "revision": "v2",
            "router": { "istio": {
                "virtualService": name,
                "routes": ["primary"],
                "stable": { "host": name, "subset": "v1" },
                "canary": { "host": name, "subset": "v2" }
            }},
            "steps": steps,
            "analysis": {
                "interval": "1s",
                "metrics": [ { "name": "error-rate", "template": "istio-error-rate", "max": 0.01 } ],
                "failureLimit": 0
            }
        }))
        .unwrap();
        let mut policy = RolloutPolicy::new(name, spec);
        policy.metadata.namespace = Some(NS.to_owned());
        let api: Api<RolloutPolicy> = Api::namespaced(self.server.client().unwrap(), NS);
        api.create(&PostParams::default(), &policy).await.unwrap();
    }

    /// The holder of each shard Lease (`shiftgate-shard-<i>`), `None` when free or absent.
    pub async fn shard_holders(&self, shards: u32) -> Vec<Option<String>> {
        let api: Api<Lease> = Api::namespaced(self.server.client().unwrap(), NS);
        let mut holders = Vec::new();
        for shard in 0..shards {
            let lease = api
                .get_opt(&format!("shiftgate-shard-{shard}"))
                .await
                .ok()
                .flatten();
            holders.push(
                lease
                    .and_then(|l| l.spec)
                    .and_then(|s| s.holder_identity)
                    .filter(|h| !h.is_empty()),
            );
        }
        holders
    }

    /// Polls until `condition` holds for the shard holders; how long it took.
    pub async fn wait_for_holders(
        &self,
        shards: u32,
        what: &str,
        limit: Duration,
        condition: impl Fn(&[Option<String>]) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let holders = self.shard_holders(shards).await;
            if condition(&holders) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}; holders: {holders:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Each rollout's canary weights as written to its VirtualService, in order.
    pub fn route_writes(&self) -> BTreeMap<String, Vec<u64>> {
        let mut writes: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for request in self.server.requests_matching("PATCH", "/virtualservices/") {
            let path = request.path.split('?').next().unwrap_or_default();
            let name = path.rsplit('/').next().unwrap_or_default().to_owned();
            let Some(body) = request.json() else { continue };
            if let Some(weight) = canary_weight(&body) {
                writes.entry(name).or_default().push(weight);
            }
        }
        writes
    }

    /// Which replicas (`reportingInstance`) published Events about each policy.
    pub async fn event_reporters(&self) -> BTreeMap<String, std::collections::BTreeSet<String>> {
        let events = kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("events.k8s.io", "v1", "Event"),
            "events",
        );
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(self.server.client().unwrap(), NS, &events);
        let mut out: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        for event in api.list(&Default::default()).await.unwrap().items {
            let event = serde_json::to_value(event).unwrap();
            if let (Some(name), Some(reporter)) = (
                event["regarding"]["name"].as_str(),
                event["reportingInstance"].as_str(),
            ) {
                out.entry(name.to_owned())
                    .or_default()
                    .insert(reporter.to_owned());
            }
        }
        out
    }

    /// The phase and step of each policy, by name.
    pub async fn phases(&self) -> BTreeMap<String, (String, u32)> {
        let api: Api<RolloutPolicy> = Api::namespaced(self.server.client().unwrap(), NS);
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| {
                let status = p.status.unwrap_or_default();
                (
                    p.metadata.name.unwrap_or_default(),
                    (format!("{:?}", status.phase), status.step),
                )
            })
            .collect()
    }
}

/// The canary weight a JSON patch of the VirtualService sets: the `replace` of the
/// second destination's weight (the canary, `v2`, in [`ShardCluster::rollout`]).
fn canary_weight(patch: &Value) -> Option<u64> {
    patch.as_array()?.iter().find_map(|op| {
        let replaces = op["op"] == "replace";
        let canary = op["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("/route/1/weight"));
        (replaces && canary).then(|| op["value"].as_u64()).flatten()
    })
}
