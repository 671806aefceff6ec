//! kill -9 at every await point of the command path: a fault hook ends a tick at each
//! [`CrashPoint`] (nothing after it runs, as when the process dies there), then a fresh
//! reconciler takes over on the same store, router and command source. Every command
//! must be applied exactly once: 0 lost, 0 doubled. Locally (file store, command
//! files) and in the daemon's path (status store, annotations, on the test API server).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use shiftgate::engine::{reasons, Command};
use shiftgate::policy::status::PauseReason;
use shiftgate::policy::{Phase, RolloutPolicy, RolloutStatus};
use shiftgate::runtime::commands_file::FileCommands;
use shiftgate::runtime::commands_kube::{submit_command, KubeCommandSource};
use shiftgate::runtime::{CommandSource, CrashAt, CrashPoint, Reconciler};
use shiftgate::store::file::FileStore;
use shiftgate::store::kube::KubeStatusStore;
use shiftgate::store::StateStore;
use shiftgate::testkit::apiserver::{ResourceRef, TestApiServer};

use support::command_world::{policy, spec, tick_until_weight, World};

/// Where the state and the commands live: a state dir, or a (test) API server.
enum Place {
    Local(tempfile::TempDir),
    Cluster(TestApiServer),
}

impl Place {
    async fn local() -> Place {
        Place::Local(tempfile::tempdir().unwrap())
    }

    async fn cluster() -> Place {
        let server = TestApiServer::start().await.unwrap();
        server
            .put_object(
                &ResourceRef::of::<RolloutPolicy>(),
                json!({
                    "apiVersion": "shiftgate.dev/v1alpha1", "kind": "RolloutPolicy",
                    "metadata": { "name": "checkout", "namespace": "shop" },
                    "spec": { "revision": "v1", "steps": [0, 20, 50, 80, 100] },
                }),
            )
            .unwrap();
        Place::Cluster(server)
    }

    /// A store and a command source as a newly started process builds them.
    fn seams(&self) -> (Arc<dyn StateStore>, Arc<dyn CommandSource>) {
        match self {
            Place::Local(dir) => (
                Arc::new(FileStore::new(dir.path())),
                Arc::new(FileCommands::new(dir.path())),
            ),
            Place::Cluster(server) => {
                let client = server.client().unwrap();
                (
                    Arc::new(KubeStatusStore::new(client.clone())),
                    Arc::new(KubeCommandSource::new(client)),
                )
            }
        }
    }

    async fn submit(&self, command: Command) {
        match self {
            Place::Local(dir) => {
                FileCommands::new(dir.path())
                    .submit(&policy(), command, "v1")
                    .await
                    .unwrap();
            }
            Place::Cluster(server) => {
                let client = server.client().unwrap();
                submit_command(client, "shop", "checkout", command, "v1")
                    .await
                    .unwrap();
            }
        }
    }

    /// Commands still waiting to be handled (local command files).
    fn queued(&self) -> usize {
        match self {
            Place::Local(dir) => std::fs::read_dir(dir.path().join("shop/checkout.commands"))
                .map_or(0, |entries| {
                    entries
                        .filter(|e| {
                            e.as_ref()
                                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".cmd"))
                        })
                        .count()
                }),
            Place::Cluster(_) => 0,
        }
    }
}

fn reconciler(world: &World, place: &Place) -> Reconciler {
    let (store, commands) = place.seams();
    world.reconciler(store, commands)
}

/// Runs `command` against a rollout at 20% with a crash at `point` in the first tick
/// that reaches it, then restarts; returns the final status, or `None` when no tick
/// reached `point` for this command.
async fn crash_then_restart(
    place: &Place,
    command: Command,
    point: CrashPoint,
) -> Option<RolloutStatus> {
    let world = World::new();
    let v1 = spec("v1");
    tick_until_weight(&world, &reconciler(&world, place), &v1, 20).await;
    place.submit(command).await;
    let hook = Arc::new(CrashAt::new(point, 1));
    let doomed = reconciler(&world, place).with_fault_hook(hook.clone());
    for _ in 0..4 {
        world.clock.advance(chrono::Duration::seconds(1));
        if doomed.tick(&policy(), &v1).await.is_err() {
            break;
        }
    }
    if !hook.crashed() {
        return None;
    }
    drop(doomed);
    let restarted = reconciler(&world, place);
    for _ in 0..6 {
        world.clock.advance(chrono::Duration::seconds(1));
        restarted.tick(&policy(), &v1).await.unwrap();
    }
    let (store, _) = place.seams();
    let (status, _) = store.load(&policy()).await.unwrap().unwrap();
    assert_eq!(
        world.weight(),
        status.canary_weight,
        "router and state agree after {point:?}"
    );
    Some(status)
}

fn count(status: &RolloutStatus, reason: &str, prefix: &str) -> usize {
    status
        .history
        .iter()
        .filter(|e| e.reason == reason && e.message.starts_with(prefix))
        .count()
}

/// Checks that `command` was applied exactly once.
fn assert_applied_once(command: Command, point: CrashPoint, status: &RolloutStatus) {
    let context = format!("{command} crashed at {point:?}: {:#?}", status.history);
    match command {
        // Not idempotent: twice would be 80%, lost would stay at 20%.
        Command::Promote => {
            assert_eq!((status.step, status.canary_weight), (2, 50), "{context}");
            assert_eq!(status.phase, Phase::Progressing, "{context}");
        }
        Command::Pause => {
            assert_eq!(status.phase, Phase::Paused, "{context}");
            assert_eq!(
                status.pause_reason,
                Some(PauseReason::Operator),
                "{context}"
            );
            assert_eq!(status.canary_weight, 20, "{context}");
            assert_eq!(
                count(status, reasons::PAUSED_BY_OPERATOR, "paused by an operator"),
                1,
                "{context}"
            );
        }
        Command::Abort => {
            assert_eq!(status.phase, Phase::Aborted, "{context}");
            assert_eq!(status.canary_weight, 0, "{context}");
            assert_eq!(
                count(status, reasons::ABORTED, "aborted by an operator at"),
                1,
                "{context}"
            );
        }
        Command::PromoteFull => {
            assert_eq!(status.phase, Phase::Promoted, "{context}");
            assert_eq!(status.canary_weight, 100, "{context}");
        }
        Command::Resume | Command::Undo | Command::Retry => unreachable!("not swept"),
    }
    assert!(status.last_command_id.is_some(), "{context}");
}

async fn sweep(place: impl Fn() -> futures::future::BoxFuture<'static, Place>) {
    let mut reached = BTreeSet::new();
    for command in [
        Command::Promote,
        Command::Pause,
        Command::Abort,
        Command::PromoteFull,
    ] {
        for point in CrashPoint::ALL {
            let place = place().await;
            let Some(status) = crash_then_restart(&place, command, point).await else {
                continue;
            };
            reached.insert(format!("{point:?}"));
            assert_applied_once(command, point, &status);
            assert_eq!(place.queued(), 0, "{command} at {point:?}: consumed");
        }
    }
    // Every point of the command path was crashed at by some command.
    for point in [
        CrashPoint::StateLoaded,
        CrashPoint::CommandsRead,
        CrashPoint::RouteRead,
        CrashPoint::SavedBeforeWrite,
        CrashPoint::RouteWritten,
        CrashPoint::StateSaved,
        CrashPoint::CommandsAcknowledged,
    ] {
        assert!(
            reached.contains(&format!("{point:?}")),
            "no tick reached {point:?}: {reached:?}"
        );
    }
}

#[tokio::test]
async fn a_kill_at_any_point_of_a_local_tick_neither_loses_nor_repeats_a_command() {
    sweep(|| Box::pin(Place::local())).await;
}

#[tokio::test]
async fn a_kill_at_any_point_of_a_daemon_tick_neither_loses_nor_repeats_a_command() {
    sweep(|| Box::pin(Place::cluster())).await;
}

/// Two commands queued together, with a crash between handling them and storing the
/// state: after the restart both are applied, in order, once.
#[tokio::test]
async fn queued_commands_survive_a_crash_in_order() {
    let place = Place::local().await;
    let world = World::new();
    let v1 = spec("v1");
    tick_until_weight(&world, &reconciler(&world, &place), &v1, 20).await;
    place.submit(Command::Promote).await;
    place.submit(Command::Pause).await;
    let hook = Arc::new(CrashAt::new(CrashPoint::SavedBeforeWrite, 1));
    let doomed = reconciler(&world, &place).with_fault_hook(hook.clone());
    world.clock.advance(chrono::Duration::seconds(1));
    assert!(doomed.tick(&policy(), &v1).await.is_err());
    assert!(hook.crashed());
    let restarted = reconciler(&world, &place);
    for _ in 0..4 {
        world.clock.advance(chrono::Duration::seconds(1));
        restarted.tick(&policy(), &v1).await.unwrap();
    }
    let (store, _) = place.seams();
    let (status, _) = store.load(&policy()).await.unwrap().unwrap();
    assert_eq!((status.step, status.canary_weight), (2, 50));
    assert_eq!(status.phase, Phase::Paused);
    assert_eq!(status.last_command_id.as_deref(), Some("2"));
    assert_eq!(place.queued(), 0);
}
