//! `shiftgate demo-app` (hidden): one instance of the demo HTTP app, started by the
//! demo and the integration tests as the stable or the canary release.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::cli::exit;
use crate::cli::output::say;
use crate::demo::app::{self, Faults};

#[derive(clap::Args, Debug)]
pub struct DemoAppArgs {
    /// Address to listen on; port 0 picks a free port (see --address-file).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The version this instance answers with.
    #[arg(long)]
    pub version: String,
    /// Share of requests answered with 500, from 0 to 1. Changeable at run time with
    /// `POST /admin/faults`.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub latency_ms: u64,
    /// Seed of the RNG that decides which requests fail.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Once listening, write the bound address to this file (atomically).
    #[arg(long)]
    pub address_file: Option<PathBuf>,
}

pub fn run(args: DemoAppArgs) -> i32 {
    let faults = Faults {
        error_rate: args.error_rate,
        latency_ms: args.latency_ms,
    };
    if let Err(e) = faults.validate() {
        say!("error: invalid --error-rate/--latency-ms: {e}");
        return exit::INVALID_INPUT;
    }
    let runtime = match crate::cli::current_thread_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(serve(args, faults)) {
        Ok(()) => exit::OK,
        Err(e) => {
            say!("error: {e:#}");
            exit::COULD_NOT_RUN
        }
    }
}

async fn serve(args: DemoAppArgs, faults: Faults) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    if let Some(path) = &args.address_file {
        let temp = path.with_extension("tmp");
        std::fs::write(&temp, format!("{bound}\n"))
            .and_then(|()| std::fs::rename(&temp, path))
            .with_context(|| format!("cannot write the address file {}", path.display()))?;
    }
    tracing::info!(%bound, version = %args.version, "demo app listening");
    axum::serve(listener, app::router(&args.version, faults, args.seed))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the demo app server failed")
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
