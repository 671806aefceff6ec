//! `shiftgate demo`: real Envoy in front of two app versions, real Prometheus, user
//! load, and two rollouts driven by the real local runtime: a good release promoted,
//! a bad one rolled back by itself. Everything is cleaned up, also on Ctrl-C.

use crate::cli::output::say;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::cli::exit;
use crate::cli::run::{cancel_on_signal, Progress};
use crate::demo::scenario::{demo_policy, demo_succeeded, describe_summary, run_demo, DemoError};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// The shiftgate binary that serves the demo app (default: this one).
    #[arg(long, hide = true)]
    pub app_binary: Option<PathBuf>,
    /// Where the status page is served (docs/web.md); its URL is the demo's first line.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub web: std::net::SocketAddr,
    /// Serve no status page.
    #[arg(long)]
    pub no_web: bool,
}

/// How long the demo waits at its end for an open page to fetch the final state.
const PAGE_LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// What to try after the demo (docs/demo.md walks through it).
pub const NEXT_STEPS: &str = "\nnext things to try (`cargo install --locked --path .` puts shiftgate on PATH; docs/demo.md walks through them):
  shiftgate local up                               # keep this stack running for your own rollouts (Ctrl-C or `local down` stops it)
  shiftgate run policies/envoy-local.yaml          # in another terminal: a rollout against it, promoted
  shiftgate local release v3                       # the next release, then make it fail:
  shiftgate local fault canary --error-rate 0.3    #   and `shiftgate run /tmp/shiftgate-local/policy.yaml` rolls it back
  shiftgate simulate policies/istio-host-canary.yaml --scenario scenarios/istio-host-canary-error-regression.yaml
                                                   # a rollout on a virtual clock, no Envoy needed
  shiftgate check policies/                        # every problem of every policy, with file:line:col
";

pub fn run(args: DemoArgs) -> i32 {
    let app_binary = match args.app_binary.map_or_else(std::env::current_exe, Ok) {
        Ok(path) => path,
        Err(e) => {
            say!("error: cannot find the shiftgate binary to start the demo app: {e}");
            return exit::COULD_NOT_RUN;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            say!("error: cannot start the async runtime: {e}");
            return exit::COULD_NOT_RUN;
        }
    };
    runtime.block_on(async move {
        let board = crate::web::Board::new();
        if !args.no_web {
            match crate::web::page::spawn(args.web, board.clone()).await {
                Ok(bound) => say!(
                    "demo: watch it in a browser: {} (the weight moving, each metric against its limit)",
                    crate::web::page::url(bound)
                ),
                Err(e) => {
                    say!("error: cannot serve the status page on {} (--web; --no-web serves none): {e}", args.web);
                    return exit::COULD_NOT_RUN;
                }
            }
        }
        let policy = demo_policy();
        let stop = CancellationToken::new();
        tokio::spawn(cancel_on_signal(stop.clone()));
        let mut progress = Progress::default();
        let mut last_revision = None;
        let mut observe = |tick: &crate::runtime::local::TickReport<'_>| {
            // Each rollout's clock starts at its own first tick.
            let revision = tick.spec.revision.clone();
            if last_revision.as_ref() != Some(&revision) {
                progress = Progress::default();
                last_revision = Some(revision);
            }
            progress.show(tick);
            board.record_tick(&policy, tick);
        };
        let result = run_demo(&app_binary, &mut observe, &stop).await;
        // The page shows the rollback only once it has fetched it.
        board.linger(PAGE_LINGER).await;
        match result {
            Ok(summary) => {
                eprint!("{}", describe_summary(&summary));
                if summary.interrupted {
                    exit::INTERRUPTED
                } else if demo_succeeded(&summary) {
                    say!("demo: v2 was promoted and v3 was rolled back by itself, as expected");
                    eprint!("{NEXT_STEPS}");
                    exit::OK
                } else {
                    say!("demo: the rollouts did not end as expected (see above)");
                    exit::ROLLED_BACK
                }
            }
            Err(e @ DemoError::Local(_)) | Err(e @ DemoError::Step { .. }) => {
                say!("error: {e}");
                exit::COULD_NOT_RUN
            }
            Err(e @ DemoError::Process(_)) => {
                say!("error: {e}");
                exit::COULD_NOT_RUN
            }
        }
    })
}
