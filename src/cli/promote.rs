//! `shiftgate promote [--full] POLICY`: skip the rest of the current step's analysis
//! (or, with `--full`, go straight to 100%) in a running rollout. Also what `pause`,
//! `resume` and `abort` share: every command is sent for one revision (the running one,
//! or `--revision`), and the engine refuses it for any other.

use crate::cli::exit;
use crate::cli::output::say;
use crate::cli::run_lock;
use crate::cli::status::LocalPolicyArgs;
use crate::engine::Command;
use crate::policy::{Phase, RolloutStatus};
use crate::store::StateStore as _;

#[derive(clap::Args, Debug)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub target: LocalPolicyArgs,
    #[command(flatten)]
    pub revision: RevisionArg,
    /// Go straight to 100% and Promoted instead of to the next step.
    #[arg(long)]
    pub full: bool,
}

/// The revision an operator command is for.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RevisionArg {
    /// The revision the command is for; it is refused for any other. Default: the
    /// running revision (from the local state or the RolloutPolicy's status).
    #[arg(long, value_name = "REVISION")]
    pub revision: Option<String>,
}

pub fn run(args: PromoteArgs) -> i32 {
    let command = if args.full {
        Command::PromoteFull
    } else {
        Command::Promote
    };
    send(&args.target, &args.revision, command)
}

/// Which revision a command is for. `running`: the revision in the state or status;
/// `desired`: the one the policy (file or spec) names, which may not have started yet.
/// An explicit revision must be one of the two; without one, the running revision,
/// unless the policy already names another (then the operator must say which).
pub fn command_revision(
    explicit: Option<&str>,
    running: Option<&str>,
    desired: Option<&str>,
) -> Result<String, String> {
    let shown = |r: Option<&str>| r.map_or_else(|| "none".to_owned(), str::to_owned);
    match (explicit, running, desired) {
        (Some(asked), _, _) if Some(asked) == running || Some(asked) == desired => {
            Ok(asked.to_owned())
        }
        (Some(asked), _, _) => Err(format!(
            "revision {asked} is neither the running revision ({}) nor the policy's ({}); \
             a command for it would be refused, so it is not sent",
            shown(running),
            shown(desired)
        )),
        (None, Some(running), Some(desired)) if running != desired => Err(format!(
            "the policy names revision {desired} but revision {running} is the one running \
             (or last run); say which one the command is for: --revision {running} or \
             --revision {desired}"
        )),
        (None, Some(revision), _) | (None, None, Some(revision)) => Ok(revision.to_owned()),
        (None, None, None) => Err(
            "no rollout has started and no policy file names a revision; pass the policy \
             file or --revision REVISION"
                .to_owned(),
        ),
    }
}

/// Queues `command` for the rollout named by `target` (local, or a RolloutPolicy in a
/// cluster); the running `shiftgate run` or the daemon applies it if its revision still
/// runs then.
pub fn send(target: &LocalPolicyArgs, revision: &RevisionArg, command: Command) -> i32 {
    if let Some(cluster) = crate::cli::kube_target::cluster_target(target) {
        return crate::cli::kube_target::cluster_command(
            &cluster,
            command,
            revision.revision.as_deref(),
        );
    }
    let target_ref = match target.target() {
        Ok(target) => target,
        Err(code) => return code,
    };
    let runtime = match crate::cli::current_thread_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let label = format!("{}/{}", target_ref.policy.namespace, target_ref.policy.name);
    let store = target_ref.store();
    let stored = match runtime.block_on(store.load(&target_ref.policy)) {
        Ok(state) => state.map(|(status, _)| status),
        Err(e) => {
            say!("error: {e}");
            return exit::COULD_NOT_RUN;
        }
    };
    let running = stored.as_ref().and_then(|status| status.revision.clone());
    let file = std::path::Path::new(&target.policy);
    let desired = if file.is_file() {
        match crate::runtime::local::load_policy(file) {
            Ok(local) => Some(local.spec.revision),
            Err(e) => {
                say!("error: {e}");
                return exit::INVALID_INPUT;
            }
        }
    } else {
        None
    };
    let revision = match command_revision(
        revision.revision.as_deref(),
        running.as_deref(),
        desired.as_deref(),
    ) {
        Ok(revision) => revision,
        Err(why) => {
            say!("error: `{command}` not sent to {label}: {why}");
            return exit::INVALID_INPUT;
        }
    };
    let start = format!("`shiftgate run {}` starts it", run_argument(target));
    let refusal = if command == Command::Retry {
        crate::cli::retry::nothing_to_retry(stored.as_ref(), &revision)
    } else {
        not_in_progress(stored.as_ref(), &revision, &start)
    };
    if let Some(why) = refusal {
        say!("error: `{command}` not sent to {label}: {why}");
        return exit::NOT_IN_PROGRESS;
    }
    let submitted = runtime.block_on(target_ref.commands().submit(
        &target_ref.policy,
        command,
        &revision,
    ));
    match submitted {
        Ok(path) => {
            let driven = run_lock::is_held(&store, &target_ref.policy);
            say!(
                "shiftgate: `{command}` for revision {revision} queued for {label} ({}); {} (see \
                 `shiftgate status`)",
                path.display(),
                who_applies(driven, target, "it")
            );
            exit::OK
        }
        Err(e) => {
            say!("error: {e}");
            exit::COULD_NOT_RUN
        }
    }
}

/// How to name the policy to `shiftgate run`: its file, when the operator gave one.
fn run_argument(target: &LocalPolicyArgs) -> String {
    if std::path::Path::new(&target.policy).is_file() {
        target.policy.clone()
    } else {
        "POLICY-FILE".to_owned()
    }
}

/// Who will handle queued local commands (`them`: "it" or "them"), from whether a
/// `run` holds the rollout's run lock (`None`: unknown).
pub fn who_applies(driven: Option<bool>, target: &LocalPolicyArgs, them: &str) -> String {
    match driven {
        Some(true) => format!(
            "the running `shiftgate run` applies {them} within a second, or refuses {them} if \
             another revision runs by then"
        ),
        Some(false) => format!(
            "no `shiftgate run` drives this rollout now: the next `shiftgate run {}` applies \
             {them} first",
            run_argument(target)
        ),
        None => format!(
            "the rollout's `shiftgate run` applies {them}, or refuses {them} if another \
             revision runs by then"
        ),
    }
}

/// Why a command for `revision` would have nothing to act on, if so: no rollout of the
/// policy has started, another revision is the one that started, or the rollout is
/// over (Promoted, RolledBack or Aborted, with no write in flight). Paused and Held
/// rollouts are in progress: they wait for an operator. `start` says how to start one.
pub fn not_in_progress(
    status: Option<&RolloutStatus>,
    revision: &str,
    start: &str,
) -> Option<String> {
    let started = status.filter(|s| s.phase != Phase::Pending);
    let Some(status) = started else {
        return Some(format!(
            "no rollout of it is in progress: none has started; {start}"
        ));
    };
    match status.revision.as_deref() {
        Some(running) if running == revision => {}
        Some(running) => {
            return Some(format!(
                "no rollout of revision {revision} is in progress: the last one started was \
                 revision {running} ({} at canary {}%); {start}",
                status.phase, status.canary_weight
            ))
        }
        None => {
            return Some(format!(
                "no rollout of it is in progress: none has started; {start}"
            ))
        }
    }
    let over = matches!(
        status.phase,
        Phase::Promoted | Phase::RolledBack | Phase::Aborted
    ) && status.target.is_none();
    over.then(|| {
        format!(
            "the rollout of revision {revision} is over: {} at canary {}%; nothing is left to \
             act on",
            status.phase, status.canary_weight
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_running_revision_is_the_default_and_anything_else_must_be_named() {
        assert_eq!(command_revision(None, Some("v1"), None), Ok("v1".into()));
        assert_eq!(
            command_revision(None, Some("v1"), Some("v1")),
            Ok("v1".into())
        );
        assert_eq!(command_revision(None, None, Some("v2")), Ok("v2".into()));
        let ambiguous = command_revision(None, Some("v1"), Some("v2")).unwrap_err();
        assert!(ambiguous.contains("--revision v1"), "{ambiguous}");
        assert_eq!(
            command_revision(Some("v2"), Some("v1"), Some("v2")),
            Ok("v2".into())
        );
        let other = command_revision(Some("v3"), Some("v1"), Some("v2")).unwrap_err();
        assert!(other.contains("v3"), "{other}");
        assert!(command_revision(None, None, None).is_err());
    }

    fn status(revision: &str, phase: Phase) -> RolloutStatus {
        RolloutStatus {
            revision: Some(revision.to_owned()),
            phase,
            ..RolloutStatus::default()
        }
    }

    #[test]
    fn only_a_started_unfinished_rollout_of_the_revision_takes_commands() {
        let never = not_in_progress(None, "v1", "run it").unwrap();
        assert!(never.contains("none has started; run it"), "{never}");
        for phase in [
            Phase::Progressing,
            Phase::Paused,
            Phase::Held,
            Phase::Waiting,
        ] {
            assert_eq!(not_in_progress(Some(&status("v1", phase)), "v1", "-"), None);
        }
        for phase in [Phase::Promoted, Phase::RolledBack, Phase::Aborted] {
            let over = not_in_progress(Some(&status("v1", phase)), "v1", "-").unwrap();
            assert!(over.contains("is over"), "{over}");
        }
        let other = not_in_progress(Some(&status("v1", Phase::Promoted)), "v2", "-").unwrap();
        assert!(
            other.contains("last one started was revision v1"),
            "{other}"
        );
        let refused = not_in_progress(Some(&status("v1", Phase::Pending)), "v1", "-");
        assert!(refused.is_some(), "a refused start is no rollout");
        let mut in_flight = status("v1", Phase::RolledBack);
        in_flight.target = Some(crate::policy::status::RouteTarget {
            canary_weight: 0,
            test_route: false,
            purpose: crate::policy::status::TargetPurpose::Rollback,
        });
        assert_eq!(not_in_progress(Some(&in_flight), "v1", "-"), None);
    }
}
