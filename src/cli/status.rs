//! `shiftgate status POLICY`: where a rollout is, from its local state file or its
//! RolloutPolicy in the cluster; `--watch` follows it to its end (`status_watch`). The
//! exit code says how it stands (docs/cli.md): CI can branch on it.

use std::path::PathBuf;

use serde_json::Value;

use crate::cli::exit;
use crate::cli::output::{out, say};
use crate::cli::promote::who_applies;
use crate::cli::run::print_history;
use crate::cli::run_lock;
use crate::cli::status_view::{
    encode, grafana_link, phase_exit_code, with_grafana_link, ReadOutput,
};
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
    /// Namespace of a bare policy name (default `default`): the global `-n`.
    #[arg(skip)]
    pub namespace: Option<String>,
    /// Where local rollout state and operator commands live.
    #[arg(long, env = "SHIFTGATE_STATE_DIR", default_value = crate::runtime::local::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Address the RolloutPolicy in the cluster (kubeconfig) even when a local rollout of
    /// that name exists. Without it, a POLICY that is neither a file nor a local rollout
    /// is looked up in the cluster.
    #[arg(long)]
    pub cluster: bool,
    /// kubeconfig context for the cluster (default: the current context): the global
    /// `--context`.
    #[arg(skip)]
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
    /// `text` on stderr, or the stored status (with `grafanaUrl` and `pendingCommands`)
    /// as `json` or `yaml` on stdout.
    #[arg(short = 'o', long, value_enum, default_value_t = ReadOutput::Text)]
    pub output: ReadOutput,
    /// Follow the rollout until it is promoted, rolled back, aborted, held or paused: a
    /// redrawn view on a terminal, one line per change otherwise.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// With --watch: give up after this long (exit 8), e.g. `10m`. Default: no limit.
    #[arg(long, value_parser = humantime::parse_duration, requires = "watch")]
    pub timeout: Option<std::time::Duration>,
    /// With --watch: how often the state is read.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s", requires = "watch")]
    pub interval: std::time::Duration,
}

pub fn run(args: StatusArgs) -> i32 {
    if args.watch {
        return crate::cli::status_watch::run(&args);
    }
    if let Some(cluster) = crate::cli::kube_target::cluster_target(&args.target) {
        return crate::cli::kube_target::cluster_status(&cluster, args.output);
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
    let spec = crate::runtime::local::load_policy(std::path::Path::new(&args.target.policy))
        .ok()
        .map(|local| local.spec);
    let link = grafana_link(
        spec.as_ref().and_then(|spec| spec.grafana.as_deref()),
        &target.policy,
        &status,
    );
    let code = phase_exit_code(&status);
    if args.output != ReadOutput::Text {
        let pending = pending_commands(&target, Some(&status));
        let document = with_pending_commands(&status, &pending)
            .map_err(anyhow::Error::from)
            .and_then(|document| {
                encode(&with_grafana_link(document, link.as_deref()), args.output)
            });
        match document {
            Ok(text) => out!("{}", text.trim_end()),
            Err(e) => {
                say!("error: cannot encode the status: {e}");
                return exit::COULD_NOT_RUN;
            }
        }
        return code;
    }
    let revision = status.revision.as_deref().unwrap_or("-");
    say!("{label} revision {revision}");
    // Without the spec, the step count and hold are unknown: show what the status says.
    let line = match &spec {
        Some(spec) => describe_progress(spec, &status, SystemClock.now()),
        None => format!(
            "{} · step {} · canary {}%{}",
            status.phase,
            status.step + 1,
            status.canary_weight,
            if status.test_route {
                " + test route"
            } else {
                ""
            }
        ),
    };
    say!("  {line}");
    if let Some(colours) = crate::engine::colours::describe(&status) {
        say!("  {colours}");
    }
    if let Some(message) = &status.message {
        say!("  {}: {message}", status.reason.as_deref().unwrap_or("-"));
    }
    for result in &status.last_hooks {
        say!("  {}", crate::runtime::hooks::describe_hook(result));
    }
    if let Some(link) = &link {
        say!("  grafana: {link}");
    }
    print_history(&status, None);
    print_pending(&target, &args.target, Some(&status));
    code
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
