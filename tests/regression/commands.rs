//! Regression tests: see tests/regression.rs. Operator commands belong to a revision
//! and are applied exactly once, across kills.

use std::path::Path;
use std::process::{Command as Process, Output, Stdio};
use std::sync::Arc;

use serde_json::json;
use shiftgate::engine::{reasons, Command};
use shiftgate::policy::status::PauseReason;
use shiftgate::policy::{Phase, RolloutPolicy, RolloutStatus};
use shiftgate::runtime::commands_file::FileCommands;
use shiftgate::runtime::commands_kube::{submit_command, KubeCommandSource};
use shiftgate::store::file::FileStore;
use shiftgate::store::kube::KubeStatusStore;
use shiftgate::store::StateStore;
use shiftgate::testkit::apiserver::{ResourceRef, TestApiServer};

use super::support::command_world::{kill_tick_at_router, policy, spec, tick_until_weight, World};
use super::support::envoy::shiftgate_binary;

/// `shiftgate ARGS --state-dir DIR`, as an operator types it.
fn shiftgate(state_dir: &Path, args: &[&str]) -> Output {
    Process::new(shiftgate_binary())
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .env_remove("SHIFTGATE_LOG")
        .env_remove("SHIFTGATE_CLUSTER")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn history_with(status: &RolloutStatus, reason: &str) -> Vec<String> {
    status
        .history
        .iter()
        .filter(|e| e.reason == reason)
        .map(|e| e.message.to_string())
        .collect()
}

/// Command files still waiting in the policy's command directory.
fn queued_files(state_dir: &Path) -> usize {
    let dir = state_dir.join("shop/checkout.commands");
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".cmd"))
            })
            .count()
    })
}

/// A local rollout of `spec("v1")` at 20%, driven through the file store and file
/// commands under a temp state dir.
async fn local_rollout_at_20() -> (tempfile::TempDir, World, Arc<FileStore>, Arc<FileCommands>) {
    let dir = tempfile::tempdir().unwrap();
    let world = World::new();
    let store = Arc::new(FileStore::new(dir.path()));
    let commands = Arc::new(FileCommands::new(dir.path()));
    let reconciler = world.reconciler(store.clone(), commands.clone());
    tick_until_weight(&world, &reconciler, &spec("v1"), 20).await;
    (dir, world, store, commands)
}

#[tokio::test]
async fn promote_full_for_old_revision_is_not_applied_to_new_revision() {
    let (dir, world, store, commands) = local_rollout_at_20().await;
    // The operator means the rollout of v1 they are looking at.
    let sent = shiftgate(dir.path(), &["promote", "--full", "shop/checkout"]);
    assert_eq!(sent.status.code(), Some(0), "{}", stderr(&sent));
    // Before any tick sees it, v2 is deployed.
    let v2 = spec("v2");
    let reconciler = world.reconciler(store.clone(), commands);
    for _ in 0..3 {
        world.clock.advance(chrono::Duration::seconds(1));
        reconciler.tick(&policy(), &v2).await.unwrap();
    }
    let (status, _) = store.load(&policy()).await.unwrap().unwrap();
    assert_eq!(status.revision.as_deref(), Some("v2"));
    assert_ne!(status.phase, Phase::Promoted, "{:#?}", status.history);
    assert!(
        world.weight() < 100,
        "v2 went to {}% unjudged",
        world.weight()
    );
    let refused = history_with(&status, "CommandRefused");
    assert!(
        refused.len() == 1 && refused[0].contains("given for revision v1"),
        "{refused:?}"
    );
    assert_eq!(queued_files(dir.path()), 0, "a refused command is consumed");
}

#[tokio::test]
async fn command_without_revision_is_refused() {
    let (dir, world, store, commands) = local_rollout_at_20().await;
    // A command file as an older shiftgate wrote it: one word, no revision.
    let queue = dir.path().join("shop/checkout.commands");
    std::fs::create_dir_all(&queue).unwrap();
    std::fs::write(queue.join("000000000001.cmd"), "abort\n").unwrap();
    let reconciler = world.reconciler(store.clone(), commands);
    world.clock.advance(chrono::Duration::seconds(1));
    reconciler.tick(&policy(), &spec("v1")).await.unwrap();
    let (status, _) = store.load(&policy()).await.unwrap().unwrap();
    assert_eq!(status.phase, Phase::Progressing, "{:#?}", status.history);
    assert_eq!(world.weight(), 20);
    let refused = history_with(&status, "CommandRefused");
    assert!(
        refused.len() == 1 && refused[0].contains("names no revision"),
        "{refused:?}"
    );
    assert_eq!(queued_files(dir.path()), 0);
}

#[tokio::test]
async fn abort_survives_kill_before_state_is_saved() {
    let (dir, world, store, commands) = local_rollout_at_20().await;
    let sent = shiftgate(dir.path(), &["abort", "shop/checkout"]);
    assert_eq!(sent.status.code(), Some(0), "{}", stderr(&sent));
    // Killed after it read the command, before it stored anything.
    let doomed = world.reconciler(store.clone(), commands.clone());
    world.clock.advance(chrono::Duration::seconds(1));
    kill_tick_at_router(&world, &doomed, &spec("v1")).await;
    drop(doomed);
    // Started again on the same state dir.
    let restarted = world.reconciler(store.clone(), commands);
    for _ in 0..3 {
        world.clock.advance(chrono::Duration::seconds(1));
        restarted.tick(&policy(), &spec("v1")).await.unwrap();
    }
    let (status, _) = store.load(&policy()).await.unwrap().unwrap();
    assert_eq!(status.phase, Phase::Aborted, "{:#?}", status.history);
    assert_eq!(world.weight(), 0);
    let applied: Vec<String> = history_with(&status, reasons::ABORTED)
        .into_iter()
        .filter(|m| m.starts_with("aborted by an operator at"))
        .collect();
    assert_eq!(applied.len(), 1, "{applied:?}");
    assert_eq!(queued_files(dir.path()), 0);
}

#[tokio::test]
async fn command_applied_once_after_restart_in_daemon() {
    const NS: &str = "shop";
    let server = TestApiServer::start().await.unwrap();
    server
        .put_object(
            &ResourceRef::of::<RolloutPolicy>(),
            json!({
                "apiVersion": "shiftgate.dev/v1alpha1", "kind": "RolloutPolicy",
                "metadata": { "name": "checkout", "namespace": NS },
                "spec": { "revision": "v1", "steps": [0, 20, 50, 80, 100] },
            }),
        )
        .unwrap();
    let client = server.client().unwrap();
    let world = World::new();
    let v1 = spec("v1");
    let store = Arc::new(KubeStatusStore::new(client.clone()));
    let commands = Arc::new(KubeCommandSource::new(client.clone()));
    let first = world.reconciler(store.clone(), commands.clone());
    tick_until_weight(&world, &first, &v1, 20).await;
    // `promote` is not idempotent: applied twice it would skip 50% for 80%.
    let submitted = submit_command(client.clone(), NS, "checkout", Command::Promote, "v1")
        .await
        .unwrap();
    world.clock.advance(chrono::Duration::seconds(1));
    kill_tick_at_router(&world, &first, &v1).await;
    // The reconcile is retried on the same store and command source (the controller
    // runs it again), then the process restarts with fresh ones.
    let retried = world.reconciler(store.clone(), commands.clone());
    tick_until_weight(&world, &retried, &v1, 50).await;
    let restarted = world.reconciler(
        Arc::new(KubeStatusStore::new(client.clone())),
        Arc::new(KubeCommandSource::new(client.clone())),
    );
    for _ in 0..3 {
        world.clock.advance(chrono::Duration::seconds(1));
        restarted.tick(&policy(), &v1).await.unwrap();
    }
    let (status, _) = store.load(&policy()).await.unwrap().unwrap();
    assert_eq!(world.weight(), 50, "{:#?}", status.history);
    assert_eq!(status.step, 2);
    assert_eq!(
        status.last_command_id.as_deref(),
        Some(submitted.id.as_str())
    );
}

#[test]
fn leftover_route_temp_files_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("envoy");
    std::fs::create_dir_all(&routes).unwrap();
    let leftover = routes.join(".shiftgate-routes-Xy12ab.tmp");
    std::fs::write(&leftover, "{\"half\": ").unwrap();
    let unrelated = routes.join("notes.tmp");
    std::fs::write(&unrelated, "mine").unwrap();
    // Nothing listens on the admin port: the run starts, cleans up, and exits 3.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: shiftgate.dev/v1alpha1\nkind: RolloutPolicy\nmetadata: {{ name: x }}\n\
             spec:\n  revision: v2\n  router:\n    envoy: {{ routesFile: \"{}\", adminAddress: \
             \"127.0.0.1:{port}\", stableCluster: s, canaryCluster: c }}\n  steps: [0, 100]\n  \
             analysis:\n    prometheus: {{ address: \"http://127.0.0.1:{port}\" }}\n    \
             metrics: [{{ name: e, template: envoy-error-rate, max: 0.1 }}]\n",
            routes.join("routes.json").display()
        ),
    )
    .unwrap();
    let output = shiftgate(dir.path(), &["run", policy.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(!leftover.exists(), "the killed write's temp file stayed");
    assert!(unrelated.exists(), "only shiftgate's temp files go");
}

#[test]
fn leftover_state_temp_files_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("default");
    std::fs::create_dir_all(&state).unwrap();
    // What a save killed before its rename leaves: `.<name>.<6 random>.tmp`.
    let leftover = state.join(".x.Ab3dE9.tmp");
    std::fs::write(&leftover, "{\"generation\": 3, \"stat").unwrap();
    let other_policy = state.join(".x.y.Ab3dE9.tmp");
    std::fs::write(&other_policy, "{}").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: shiftgate.dev/v1alpha1\nkind: RolloutPolicy\nmetadata: {{ name: x }}\n\
             spec:\n  revision: v2\n  router:\n    envoy: {{ routesFile: \"{}\", adminAddress: \
             \"127.0.0.1:{port}\", stableCluster: s, canaryCluster: c }}\n  steps: [0, 100]\n  \
             analysis:\n    prometheus: {{ address: \"http://127.0.0.1:{port}\" }}\n    \
             metrics: [{{ name: e, template: envoy-error-rate, max: 0.1 }}]\n",
            dir.path().join("routes.json").display()
        ),
    )
    .unwrap();
    let output = shiftgate(dir.path(), &["run", policy.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(!leftover.exists(), "the killed save's temp file stayed");
    assert!(
        other_policy.exists(),
        "policy x.y's temp file is not policy x's"
    );
}

/// A TCP proxy in front of Envoy's admin API that can hold requests: a slow router.
/// While holding, every request chunk a client sends waits for its ticket to be
/// released; the response side is never touched.
struct SlowAdmin {
    address: std::net::SocketAddr,
    holding: Arc<std::sync::atomic::AtomicBool>,
    /// Tickets handed out to held requests so far.
    held: Arc<std::sync::atomic::AtomicU64>,
    released: tokio::sync::watch::Sender<u64>,
}

impl SlowAdmin {
    async fn start(upstream: std::net::SocketAddr) -> SlowAdmin {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let holding = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicU64::new(0));
        let (released, _) = tokio::sync::watch::channel(0u64);
        let (hold, count, release) = (holding.clone(), held.clone(), released.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                });
                let (hold, count) = (hold.clone(), count.clone());
                let mut released = release.subscribe();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 16 * 1024];
                    loop {
                        let n = match from_client.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if hold.load(Ordering::SeqCst) {
                            let ticket = count.fetch_add(1, Ordering::SeqCst) + 1;
                            if released.wait_for(|r| *r >= ticket).await.is_err() {
                                return;
                            }
                        }
                        if to_server.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SlowAdmin {
            address,
            holding,
            held,
            released,
        }
    }

    fn hold(&self) {
        self.holding
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn held(&self) -> u64 {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lets every request held so far through; later ones are still held.
    fn release_held(&self) {
        self.released.send_replace(self.held());
    }

    fn stop_holding(&self) {
        self.holding
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.released.send_replace(u64::MAX);
    }

    async fn wait_for_held(&self, at_least: u64) {
        let polled = async {
            while self.held() < at_least {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), polled)
            .await
            .expect("shiftgate run never called envoy admin again");
    }
}

/// The real process: `shiftgate run` in front of a real Envoy whose admin API turns
/// slow, SIGKILLed while it waits on the router with the operator's `pause` read, then
/// started again: the pause is applied, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_survives_kill_during_slow_router_write() {
    use super::support::rollout::{stderr as run_log, PolicyOptions, Stack};

    let stack = Stack::start().await;
    let admin: std::net::SocketAddr = stack.local.envoy.admin;
    let slow = SlowAdmin::start(admin).await;
    let text = stack
        .policy_text(&PolicyOptions {
            steps: "[0, {weight: 50, hold: 1h}, 100]".to_owned(),
            ..PolicyOptions::default()
        })
        .replace(
            &stack.local.envoy.router.admin_address,
            &slow.address.to_string(),
        );
    let policy = stack.state_dir.path().join("policy.yaml");
    std::fs::write(&policy, text).unwrap();
    let mut run = stack.spawn_run(&policy);
    stack
        .wait_for_state("50% confirmed", |doc| {
            doc["status"]["canaryWeight"] == 50 && doc["status"]["target"].is_null()
        })
        .await;

    // Envoy turns slow: the run's next call to it hangs (tick A, which read its
    // commands before the pause existed).
    slow.hold();
    slow.wait_for_held(1).await;
    let sent = stack
        .command(&["pause", policy.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(sent.status.code(), Some(0), "{}", stderr(&sent));
    // Tick A goes on; tick B reads the pause, then hangs on Envoy: kill -9 there.
    slow.release_held();
    slow.wait_for_held(2).await;
    run.kill_hard();
    slow.stop_holding();

    let restarted = stack.spawn_run(&policy);
    // Bounded: a lost pause would leave the run walking its hour-long step (the guard
    // kills it when the wait panics).
    stack
        .wait_for_state("the operator's pause", |doc| {
            doc["status"]["phase"] == "Paused"
        })
        .await;
    let output = restarted.finish().await;
    let log = run_log(&output);
    assert_eq!(output.status.code(), Some(4), "paused means exit 4:\n{log}");
    let state = stack.state().unwrap();
    let status: RolloutStatus = serde_json::from_value(state["status"].clone()).unwrap();
    assert_eq!(status.phase, Phase::Paused, "{log}");
    assert_eq!(status.pause_reason, Some(PauseReason::Operator));
    assert_eq!(
        history_with(&status, reasons::PAUSED_BY_OPERATOR).len(),
        1,
        "{:#?}",
        status.history
    );
    assert_eq!(stack.served().await.canary_weight, 50);
}
