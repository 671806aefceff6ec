//! `shiftgate status POLICY`: where a local rollout is, from its state file.

use std::path::PathBuf;

use serde_json::Value;

use crate::cli::exit;
use crate::cli::output::{out, say};
use crate::cli::promote::who_applies;
use crate::cli::run::print_history;
use crate::cli::run_lock;
use crate::engine::OperatorCommand;
use crate::policy::RolloutStatus;
use crate::runtime::local::{describe_progress, LocalTarget, DEFAULT_STATE_DIR};
use crate::runtime::Clock as _;
use crate::runtime::SystemClock;
use crate::store::StateStore as _;

/// Names a local rollout: a policy file or `[namespace/]name`, and the state dir.
#[derive(clap::Args, Debug, Clone)]
pub struct LocalPolicyArgs {
    /// A policy file, or `[namespace/]name` of a policy run before.
    #[arg(value_name = "POLICY")]
    pub policy: String,
    /// Namespace of a bare policy name (default `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Where local rollout state and operator commands live.
    #[arg(long, env = "SHIFTGATE_STATE_DIR", default_value = crate::runtime::local::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Address the RolloutPolicy in the cluster (kubeconfig) even when a local rollout of
    /// that name exists. Without it, a POLICY that is neither a file nor a local rollout
    /// is looked up in the cluster.
    #[arg(long)]
    pub cluster: bool,
    /// kubeconfig context for the cluster (default: the current context).
    #[arg(long, value_name = "CONTEXT")]
    pub context: Option<String>,
}

impl LocalPolicyArgs {
    pub fn target(&self) -> Result<LocalTarget, i32> {
        let policy = match (&self.namespace, self.policy.contains('/')) {
            (Some(namespace), false) if !std::path::Path::new(&self.policy).is_file() => {
                format!("{namespace}/{}", self.policy)
            }
            _ => self.policy.clone(),
        };
        LocalTarget::resolve(&policy, &self.state_dir).map_err(|e| {
            say!("error: {e}");
            if e.is_invalid_input() {
                exit::INVALID_INPUT
            } else {
                exit::COULD_NOT_RUN
            }
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: LocalPolicyArgs,
    /// `text` on stderr, or `json` (the stored status) on stdout.
    #[arg(long, value_enum, default_value_t = crate::cli::run::RunOutput::Text)]
    pub output: crate::cli::run::RunOutput,
}

pub fn run(args: StatusArgs) -> i32 {
    if let Some(cluster) = crate::cli::kube_target::cluster_target(&args.target) {
        let json = args.output == crate::cli::run::RunOutput::Json;
        return crate::cli::kube_target::cluster_status(&cluster, json);
    }
    let target = match args.target.target() {
        Ok(target) => target,
        Err(code) => return code,
    };
    let runtime = match crate::cli::current_thread_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let label = format!("{}/{}", target.policy.namespace, target.policy.name);
    let loaded = runtime.block_on(target.store().load(&target.policy));
    let status = match loaded {
        Ok(Some((status, _))) => status,
        Ok(None) => {
            say!(
                "error: no local rollout of {label} in {} (run it with `shiftgate run`, or pass \
                 the --state-dir it used; default {DEFAULT_STATE_DIR})",
                target.state_dir.display()
            );
            // Commands left for it (by an older shiftgate) are shown all the same.
            print_pending(&target, &args.target, None);
            return exit::COULD_NOT_RUN;
        }
        Err(e) => {
            say!("error: {e}");
            return exit::COULD_NOT_RUN;
        }
    };
    if args.output == crate::cli::run::RunOutput::Json {
        let pending = pending_commands(&target, Some(&status));
        let document = with_pending_commands(&status, &pending)
            .and_then(|document| serde_json::to_string_pretty(&document));
        match document {
            Ok(text) => out!("{text}"),
            Err(e) => {
                say!("error: cannot encode the status: {e}");
                return exit::COULD_NOT_RUN;
            }
        }
        return exit::OK;
    }
    let revision = status.revision.as_deref().unwrap_or("-");
    say!("{label} revision {revision}");
    // Without the spec, the step count and hold are unknown: show what the status says.
    let spec_free = format!(
        "{} · step {} · canary {}%{}",
        status.phase,
        status.step + 1,
        status.canary_weight,
        if status.test_route {
            " + test route"
        } else {
            ""
        }
    );
    let line = match crate::runtime::local::load_policy(std::path::Path::new(&args.target.policy)) {
        Ok(local) => describe_progress(&local.spec, &status, SystemClock.now()),
        Err(_) => spec_free,
    };
    say!("  {line}");
    if let Some(colours) = crate::engine::colours::describe(&status) {
        say!("  {colours}");
    }
    if let Some(message) = &status.message {
        say!("  {}: {message}", status.reason.as_deref().unwrap_or("-"));
    }
    print_history(&status, None);
    print_pending(&target, &args.target, Some(&status));
    exit::OK
}

/// The commands written for the rollout but not handled yet (after the stored state's
/// `lastCommandId`, if any), oldest first. Unreadable: none shown, the run reports it.
fn pending_commands(target: &LocalTarget, status: Option<&RolloutStatus>) -> Vec<OperatorCommand> {
    target
        .commands()
        .queued(
            &target.policy,
            status.and_then(|s| s.last_command_id.as_deref()),
        )
        .unwrap_or_default()
}

/// The stored status, with the pending commands as `pendingCommands` (when any).
fn with_pending_commands(
    status: &RolloutStatus,
    pending: &[OperatorCommand],
) -> serde_json::Result<Value> {
    let mut document = serde_json::to_value(status)?;
    if let (Value::Object(fields), false) = (&mut document, pending.is_empty()) {
        let listed = pending
            .iter()
            .map(|command| {
                serde_json::json!({
                    "id": command.id,
                    "command": command_word(command),
                    "revision": command.revision,
                })
            })
            .collect();
        fields.insert("pendingCommands".to_owned(), Value::Array(listed));
    }
    Ok(document)
}

fn command_word(command: &OperatorCommand) -> String {
    command
        .command
        .as_ref()
        .map_or_else(|e| e.0.clone(), |c| c.as_str().to_owned())
}

/// One line per command not handled yet, and who will handle them.
fn print_pending(target: &LocalTarget, args: &LocalPolicyArgs, status: Option<&RolloutStatus>) {
    let pending = pending_commands(target, status);
    if pending.is_empty() {
        return;
    }
    for command in &pending {
        let revision = command.revision.as_deref().unwrap_or("no revision");
        say!(
            "  pending: command `{}` for {revision} (id {}), not handled yet",
            command_word(command),
            command.id
        );
    }
    let driven = run_lock::is_held(&target.store(), &target.policy);
    say!("  {}", who_applies(driven, args, "them"));
}
