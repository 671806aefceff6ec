//! `shiftgate completion bash|zsh|fish`: the shell completion script (clap_complete),
//! for `shiftgate`, or for `kubectl-shiftgate` when run as the kubectl plugin.

use crate::cli::exit;
use crate::cli::kube_target::CLUSTER_ENV;
use crate::cli::output::{say, stdout_all};

#[derive(clap::Args, Debug)]
pub struct CompletionArgs {
    /// The shell: `source <(shiftgate completion bash)`, `shiftgate completion zsh >
    /// "${fpath[1]}/_shiftgate"`, `shiftgate completion fish | source`.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

pub fn run(args: CompletionArgs) -> i32 {
    let plugin = std::env::var_os(CLUSTER_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    let (mut command, name) = if plugin {
        (
            crate::cli::plugin::plugin_command(crate::cli::command()),
            "kubectl-shiftgate",
        )
    } else {
        (crate::cli::command(), "shiftgate")
    };
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    match stdout_all(&String::from_utf8_lossy(&script)) {
        Ok(()) => exit::OK,
        Err(e) => {
            say!("error: cannot write the completion script: {e}");
            exit::COULD_NOT_RUN
        }
    }
}
