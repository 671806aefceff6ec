//! `shiftgate undo POLICY`: after a promotion, every user back on the previous stable in
//! one route write, while that release still runs. The rollout ends as RolledBack with
//! the reason `Undone`; refused (exit 7, nothing written) when there is nothing to undo.
//!
//! In a cluster the command travels as annotations and the daemon applies it. Locally
//! it is queued as a command file; the `shiftgate run` driving the rollout applies it,
//! and when none runs (the usual case: `run` ends at the promotion) this command, given
//! the policy file, drives the one write itself under the route's run lock.

use tokio_util::sync::CancellationToken;

use crate::cli::exit;
use crate::cli::output::say;
use crate::cli::promote::{command_revision, RevisionArg};
use crate::cli::run_lock;
use crate::cli::status::LocalPolicyArgs;
use crate::engine::{reasons, Command};
use crate::policy::{Phase, RolloutStatus};
use crate::runtime::cluster_run::{is_cluster_policy, prepare};
use crate::runtime::local::{load_policy, LocalRun, RunEnd, RunOptions};
use crate::store::StateStore as _;

#[derive(clap::Args, Debug)]
pub struct UndoArgs {
    #[command(flatten)]
    pub target: LocalPolicyArgs,
    #[command(flatten)]
    pub revision: RevisionArg,
}

/// Why `undo` for `revision` has nothing to act on, judged from the stored status: it
/// acts only on a Promoted rollout of that revision with no write in flight. The engine
/// judges again when it applies the command (the route may have changed, or the
/// previous release may be gone from it).
pub fn nothing_to_undo(status: Option<&RolloutStatus>, revision: &str) -> Option<String> {
    let Some(status) = status.filter(|s| s.revision.as_deref() == Some(revision)) else {
        return Some(format!(
            "nothing to undo: no rollout of revision {revision} was promoted here"
        ));
    };
    match status.phase {
        Phase::Promoted if status.target.is_none() => None,
        Phase::RolledBack if status.reason.as_deref() == Some(reasons::UNDONE) => Some(format!(
            "nothing to undo: revision {revision} was already undone"
        )),
        Phase::RollingBack | Phase::RolledBack | Phase::Aborted => Some(format!(
            "nothing to undo: revision {revision} is {}; every request is (or is going) back \
             on stable already",
            status.phase
        )),
        Phase::Promoted => Some(format!(
            "nothing to undo yet: the promotion of revision {revision} is still being written"
        )),
        phase => Some(format!(
            "nothing to undo: revision {revision} is {phase} at canary {}%, not promoted; \
             `undo` flips back after a promotion, `abort` puts every request back on stable now",
            status.canary_weight
        )),
    }
}

pub fn run(args: UndoArgs) -> i32 {
    if let Some(cluster) = crate::cli::kube_target::cluster_target(&args.target) {
        return crate::cli::kube_target::cluster_command(
            &cluster,
            Command::Undo,
            args.revision.revision.as_deref(),
        );
    }
    let target = match args.target.target() {
        Ok(target) => target,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            say!("error: cannot start the async runtime: {e}");
            return exit::COULD_NOT_RUN;
        }
    };
    let label = format!("{}/{}", target.policy.namespace, target.policy.name);
    let store = target.store();
    let stored = match runtime.block_on(store.load(&target.policy)) {
        Ok(state) => state.map(|(status, _)| status),
        Err(e) => {
            say!("error: {e}");
            return exit::COULD_NOT_RUN;
        }
    };
    let file = std::path::Path::new(&args.target.policy);
    let local = if file.is_file() {
        match load_policy(file) {
            Ok(local) => Some(local),
            Err(e) => {
                say!("error: {e}");
                return exit::INVALID_INPUT;
            }
        }
    } else {
        None
    };
    let running = stored.as_ref().and_then(|s| s.revision.clone());
    let desired = local.as_ref().map(|l| l.spec.revision.clone());
    let revision = match command_revision(
        args.revision.revision.as_deref(),
        running.as_deref(),
        desired.as_deref(),
    ) {
        Ok(revision) => revision,
        Err(why) => {
            say!("error: `undo` not sent to {label}: {why}");
            return exit::INVALID_INPUT;
        }
    };
    if let Some(why) = nothing_to_undo(stored.as_ref(), &revision) {
        say!("error: `undo` not sent to {label}: {why}; nothing was written");
        return exit::NOTHING_TO_UNDO;
    }
    let path = match runtime.block_on(target.commands().submit(
        &target.policy,
        Command::Undo,
        &revision,
    )) {
        Ok(path) => path,
        Err(e) => {
            say!("error: {e}");
            return exit::COULD_NOT_RUN;
        }
    };
    if run_lock::is_held(&store, &target.policy) == Some(true) {
        say!(
            "shiftgate: `undo` for revision {revision} queued for {label} ({}); the running \
             `shiftgate run` applies it within a second (see `shiftgate status`)",
            path.display()
        );
        return exit::OK;
    }
    let Some(local) = local else {
        say!(
            "shiftgate: `undo` for revision {revision} queued for {label} ({}); no `shiftgate \
             run` drives it now: `shiftgate undo POLICY-FILE` (or `shiftgate run POLICY-FILE`) \
             writes it",
            path.display()
        );
        return exit::OK;
    };
    let id = command_id(&path);
    runtime.block_on(apply(local, &args.target, &label, &id))
}

/// The id the engine knows a command file by: its sequence number.
fn command_id(path: &std::path::Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse::<u64>().ok())
        .map_or_else(String::new, |n| n.to_string())
}

/// Drives the queued undo to its end (one write, confirmed) and reports what the
/// engine decided.
async fn apply(
    mut local: crate::runtime::local::LocalPolicy,
    target: &LocalPolicyArgs,
    label: &str,
    id: &str,
) -> i32 {
    let options = RunOptions { dry_run: false };
    let mut client = None;
    // A cluster undo writes behind the route Leases it takes.
    let mut fence = None;
    let runner = if is_cluster_policy(&local.spec) {
        match prepare(
            std::path::Path::new(&target.policy),
            target.context.as_deref(),
            &target.state_dir,
            options,
        )
        .await
        {
            Ok(cluster) => {
                client = Some(cluster.client);
                fence = Some(cluster.fence);
                cluster.run
            }
            Err(e) => return report(&e),
        }
    } else {
        crate::runtime::colours::orient_local(
            &mut local,
            &target.state_dir,
            crate::runtime::colours::envoy_router,
        )
        .await;
        match LocalRun::new(local, &target.state_dir, options) {
            Ok(runner) => runner,
            Err(e) => return report(&e),
        }
    };
    let held = match crate::cli::route_lock::hold(runner.policy(), client).await {
        Ok(held) => {
            if let Some(fence) = &fence {
                held.arm(fence);
            }
            held
        }
        Err(refusal) => {
            say!("error: {label}: {refusal}");
            return exit::COULD_NOT_RUN;
        }
    };
    let stop = CancellationToken::new();
    let end = runner.run(&mut |_| {}, &stop).await;
    held.release().await;
    let end = match end {
        Ok(end) => end,
        Err(e) => return report(&e),
    };
    let status = match &end {
        RunEnd::Settled(s) | RunEnd::Paused(s) | RunEnd::Interrupted(s) => s,
    };
    let refused = format!("command {id} refused");
    if let Some(entry) = status
        .history
        .iter()
        .rev()
        .find(|e| e.reason == reasons::COMMAND_REFUSED && e.message.starts_with(&refused))
    {
        say!("error: {label}: {}", entry.message);
        return exit::NOTHING_TO_UNDO;
    }
    if status.phase == Phase::RolledBack && status.reason.as_deref() == Some(reasons::UNDONE) {
        say!(
            "shiftgate: {label}: {}",
            status.message.as_deref().unwrap_or("undone")
        );
        return exit::OK;
    }
    say!(
        "error: {label} is {} at canary {}% after the undo: {}",
        status.phase,
        status.canary_weight,
        status.message.as_deref().unwrap_or("-")
    );
    exit::COULD_NOT_RUN
}

fn report(e: &crate::runtime::local::LocalError) -> i32 {
    say!("error: {e}");
    if e.is_invalid_input() {
        exit::INVALID_INPUT
    } else {
        exit::COULD_NOT_RUN
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn status(phase: Phase) -> RolloutStatus {
        RolloutStatus {
            revision: Some("v2".into()),
            phase,
            canary_weight: 100,
            ..RolloutStatus::default()
        }
    }

    #[test]
    fn only_a_promoted_rollout_of_the_revision_can_be_undone() {
        assert_eq!(nothing_to_undo(Some(&status(Phase::Promoted)), "v2"), None);
        assert!(nothing_to_undo(Some(&status(Phase::Promoted)), "v3")
            .unwrap()
            .contains("no rollout of revision v3"));
        assert!(nothing_to_undo(None, "v2").is_some());
        let progressing = nothing_to_undo(Some(&status(Phase::Progressing)), "v2").unwrap();
        assert!(progressing.contains("not promoted"), "{progressing}");
        let mut undone = status(Phase::RolledBack);
        undone.reason = Some(reasons::UNDONE.into());
        assert!(nothing_to_undo(Some(&undone), "v2")
            .unwrap()
            .contains("already undone"));
    }
}
