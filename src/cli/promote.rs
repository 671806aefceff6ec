//! `shiftgate promote [--full] POLICY`: skip the rest of the current step's analysis
//! (or, with `--full`, go straight to 100%) in a running rollout. Also what `pause`,
//! `resume` and `abort` share: every command is sent for one revision (the running one,
//! or `--revision`), and the engine refuses it for any other.

use crate::cli::exit;
use crate::cli::output::say;
use crate::cli::status::LocalPolicyArgs;
use crate::engine::Command;
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
    let running = match runtime.block_on(target_ref.store().load(&target_ref.policy)) {
        Ok(state) => state.and_then(|(status, _)| status.revision),
        Err(e) => {
            say!("error: {e}");
            return exit::COULD_NOT_RUN;
        }
    };
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
    let submitted = runtime.block_on(target_ref.commands().submit(
        &target_ref.policy,
        command,
        &revision,
    ));
    match submitted {
        Ok(path) => {
            say!(
                "shiftgate: `{command}` for revision {revision} queued for {label} ({}); the \
                 running `shiftgate run` applies it within a second, or refuses it if another \
                 revision runs by then (see `shiftgate status`)",
                path.display()
            );
            exit::OK
        }
        Err(e) => {
            say!("error: {e}");
            exit::COULD_NOT_RUN
        }
    }
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
}
