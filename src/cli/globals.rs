//! The flags every command takes, before or after the subcommand, in both binaries
//! (`shiftgate -n shop status checkout` and `kubectl shiftgate status checkout -n shop`
//! alike), as kubectl's own `-n`, `--context` and `--kubeconfig`.

use std::path::PathBuf;

use crate::cli::exit;
use crate::cli::output::say;
use crate::cli::status::LocalPolicyArgs;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Namespace of the rollout (a bare policy name, `list`); `daemon`: watch only this
    /// namespace ($SHIFTGATE_NAMESPACE; default: all).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// kubeconfig context for the cluster (default: the current context).
    #[arg(long, global = true, value_name = "CONTEXT")]
    pub context: Option<String>,
    /// kubeconfig file for the cluster (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

impl GlobalArgs {
    /// Makes `--kubeconfig` the kubeconfig every Kubernetes client of this process reads
    /// (as `$KUBECONFIG` would). Called before any thread starts.
    pub fn apply(&self) -> Result<(), i32> {
        let Some(file) = &self.kubeconfig else {
            return Ok(());
        };
        if !file.is_file() {
            say!(
                "error: --kubeconfig {}: no such file; pass the path of a kubeconfig file",
                file.display()
            );
            return Err(exit::INVALID_INPUT);
        }
        std::env::set_var("KUBECONFIG", file);
        Ok(())
    }

    /// Gives a command's rollout argument the global namespace and context.
    pub fn fill(&self, target: &mut LocalPolicyArgs) {
        target.namespace.clone_from(&self.namespace);
        target.context.clone_from(&self.context);
    }

    /// The daemon's namespace: `-n`, else $SHIFTGATE_NAMESPACE.
    pub fn daemon_namespace(&self) -> Option<String> {
        self.namespace.clone().or_else(|| {
            std::env::var("SHIFTGATE_NAMESPACE")
                .ok()
                .filter(|namespace| !namespace.is_empty())
        })
    }
}
