//! `shiftgate local up|down|fault`: the local playground. `up` starts the demo's real
//! stack (two demo apps, Envoy, Prometheus, steady user traffic) and keeps it running
//! for the user's own `shiftgate run`; `down`, from another terminal, stops it; `fault`
//! makes one of the apps fail or slow down.

use crate::cli::output::say;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cli::exit;
use crate::demo::app::{set_remote_faults, AppVersion, Faults, FaultsUpdate};
use crate::demo::playground::{self, PlaygroundOptions, DEFAULT_DIR};
use crate::demo::playground_state::{self as state, Endpoints, PlaygroundError, PlaygroundState};

const EXIT_CODES_UP: &str = "Exit codes: 0 stopped by `shiftgate local down`, Ctrl-C or \
SIGTERM (every process stopped, the dir removed); 2 invalid flags; 3 could not start (a \
playground already runs, the dir exists, Envoy or Prometheus missing or not ready) or a \
process of the playground exited on its own.";
const EXIT_CODES_DOWN: &str = "Exit codes: 0 stopped (or nothing was running); 3 could not \
stop it (unreadable state file, a process that cannot be signalled).";
const EXIT_CODES_STATUS: &str = "Exit codes: 0 a playground runs (its addresses printed); 3 \
none runs, or it is still starting.";
const EXIT_CODES_FAULT: &str = "Exit codes: 0 the app's faults changed; 2 invalid flags \
(nothing to change, an error rate outside 0..1); 3 no playground runs, it is still \
starting, or the app did not accept the change.";
const EXIT_CODES_RELEASE: &str = "Exit codes: 0 released; 2 invalid version; 3 no \
playground runs, it is still starting, or an app or Envoy did not accept the change.";
/// How long `down` waits for `local up` to stop everything before killing it.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often `up` checks that its processes still run.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

// `local --help` ends with the exit codes of exit::BY_COMMAND (row "local"), like every command.
#[derive(clap::Args, Debug)]
pub struct LocalArgs {
    /// The playground's state file (its pid, processes, ports, dir), shared by every
    /// `local` command [default: <temp dir>/shiftgate-local.json].
    #[arg(
        long,
        global = true,
        env = "SHIFTGATE_LOCAL_STATE",
        value_name = "FILE"
    )]
    pub state_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: LocalCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum LocalCommand {
    /// Start the playground and keep it running until `shiftgate local down` or Ctrl-C.
    #[command(after_help = EXIT_CODES_UP)]
    Up(UpArgs),
    /// Stop the playground: every process, and its dir.
    #[command(after_help = EXIT_CODES_DOWN)]
    Down,
    /// Print the running playground's addresses, policy and what to try next (stdout).
    #[command(after_help = EXIT_CODES_STATUS)]
    Status,
    /// Make the stable or the canary app fail or slow down, or stop that (--clear).
    #[command(after_help = EXIT_CODES_FAULT)]
    Fault(FaultArgs),
    /// After a promotion, start the next release: stable now serves the promoted
    /// version, every request goes back to it, the canary serves VERSION (healthy), and
    /// the written policy's revision becomes VERSION.
    #[command(after_help = EXIT_CODES_RELEASE)]
    Release(ReleaseArgs),
}

#[derive(clap::Args, Debug)]
pub struct ReleaseArgs {
    /// The next version, e.g. v3.
    pub version: String,
}

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Where the playground keeps its configs, logs, routes file and written policy;
    /// it must not exist yet, and is removed when the playground stops.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Use free ports for Envoy's admin and Prometheus instead of 9901 and 9090 (then
    /// only the written policy matches the playground, not policies/envoy-local.yaml).
    #[arg(long)]
    pub free_ports: bool,
    /// The shiftgate binary that serves the demo app (default: this one).
    #[arg(long, hide = true)]
    pub app_binary: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    Stable,
    Canary,
}

#[derive(clap::Args, Debug)]
pub struct FaultArgs {
    /// Which app: the stable release (v1) or the canary (v2).
    #[arg(value_enum)]
    pub app: App,
    /// Share of its requests answered with 500, from 0 to 1.
    #[arg(long)]
    pub error_rate: Option<f64>,
    /// Latency added to each of its requests, in milliseconds.
    #[arg(long)]
    pub latency_ms: Option<u64>,
    /// Back to healthy: no errors, the default 5 ms.
    #[arg(long, conflicts_with_all = ["error_rate", "latency_ms"])]
    pub clear: bool,
}

pub fn run(args: LocalArgs) -> i32 {
    let state_file = args.state_file.unwrap_or_else(state::default_state_file);
    match args.command {
        LocalCommand::Up(up_args) => up(up_args, state_file),
        LocalCommand::Down => down(state_file),
        LocalCommand::Status => status(&state_file),
        LocalCommand::Fault(fault_args) => fault(fault_args, state_file),
        LocalCommand::Release(release_args) => release(release_args, state_file),
    }
}

/// Removes the state file when `local up` ends, however it ends.
struct StateFileGuard {
    path: PathBuf,
}

impl Drop for StateFileGuard {
    fn drop(&mut self) {
        if let Err(e) = state::remove_if_owned(&self.path, std::process::id()) {
            say!("local: {e}");
        }
    }
}

fn up(args: UpArgs, state_file: PathBuf) -> i32 {
    let app_binary = match args.app_binary.map_or_else(std::env::current_exe, Ok) {
        Ok(path) => path,
        Err(e) => {
            say!("error: cannot find the shiftgate binary to start the demo apps: {e}");
            return exit::COULD_NOT_RUN;
        }
    };
    let dir = match std::path::absolute(&args.dir) {
        Ok(dir) => dir,
        Err(e) => {
            say!("error: invalid --dir {}: {e}", args.dir.display());
            return exit::INVALID_INPUT;
        }
    };
    let claimed = PlaygroundState {
        pid: std::process::id(),
        dir: dir.clone(),
        processes: Vec::new(),
        endpoints: None,
    };
    match state::claim(&state_file, &claimed) {
        Ok(None) => {}
        Ok(Some(stale)) => say!(
            "local: cleaned up after a playground that is no longer running (pid {}, dir {})",
            stale.pid,
            stale.dir.display()
        ),
        Err(e) => {
            say!("error: {e}");
            return exit::COULD_NOT_RUN;
        }
    }
    let _guard = StateFileGuard {
        path: state_file.clone(),
    };
    if dir.exists() {
        say!(
            "error: {} already exists; a playground with another state file may be using it. \
             If none is, remove it (`rm -r {}`), or start with another --dir",
            dir.display(),
            dir.display()
        );
        return exit::COULD_NOT_RUN;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            say!("error: cannot start the async runtime: {e}");
            return exit::COULD_NOT_RUN;
        }
    };
    let options = PlaygroundOptions {
        dir,
        free_ports: args.free_ports,
        app_binary,
    };
    runtime.block_on(serve(options, state_file))
}

async fn serve(options: PlaygroundOptions, state_file: PathBuf) -> i32 {
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            crate::cli::demo_app::shutdown_signal().await;
            stop.cancel();
        });
    }
    say!(
        "local: starting two demo apps (v1 stable, v2 canary), Envoy and Prometheus on 127.0.0.1 in {}",
        options.dir.display()
    );
    let started = tokio::select! {
        started = playground::start(&options) => started,
        _ = stop.cancelled() => {
            say!("local: interrupted while starting; stopped what had started");
            return exit::OK;
        }
    };
    let mut playground = match started {
        Ok(playground) => playground,
        Err(e) => {
            say!("error: {e}");
            return exit::COULD_NOT_RUN;
        }
    };
    if let Err(e) = state::save(&state_file, &playground.state()) {
        say!("error: {e}");
        playground.shut_down().await;
        return exit::COULD_NOT_RUN;
    }
    let header =
        "local: the playground is up; stop it with `shiftgate local down` (or Ctrl-C here)";
    eprint!(
        "{}",
        describe(header, &playground.endpoints, playground.dir(), &state_file)
    );
    let code = loop {
        tokio::select! {
            _ = stop.cancelled() => break exit::OK,
            _ = tokio::time::sleep(WATCH_INTERVAL) => {}
        }
        if let Some(name) = playground.exited_process().filter(|_| !stop.is_cancelled()) {
            let log = playground.dir().join(format!("{name}.log"));
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(10).collect();
            say!(
                "error: {name} exited on its own; stopping the playground. Its log ended with:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
            break exit::COULD_NOT_RUN;
        }
    };
    let dir = playground.dir().to_owned();
    playground.shut_down().await;
    say!("local: stopped every process and removed {}", dir.display());
    code
}

/// The addresses of a playground and what to try next, after `header`.
fn describe(header: &str, e: &Endpoints, dir: &Path, state_file: &Path) -> String {
    let matches_repo_policy = playground::matches_repo_policy(e);
    let policy = e.policy.display();
    let run_target = if matches_repo_policy {
        "policies/envoy-local.yaml".to_owned()
    } else {
        policy.to_string()
    };
    let mut text = format!(
        "{header}\n\
         \x20 users' app (through Envoy)  http://{listener}/   ({rps} requests/s flowing)\n\
         \x20 Envoy admin                 http://{admin}/\n\
         \x20 Prometheus                  http://{prometheus}/\n\
         \x20 stable app                  http://{stable}/\n\
         \x20 canary app                  http://{canary}/\n\
         \x20 policy written for it       {policy}\n\
         \x20 logs and configs            {dir}\n\
         \x20 state file                  {state}\n",
        listener = e.envoy_listener,
        rps = playground::USER_LOAD_PER_SECOND,
        admin = e.envoy_admin,
        prometheus = e.prometheus,
        stable = e.stable_app,
        canary = e.canary_app,
        dir = dir.display(),
        state = state_file.display(),
    );
    if !matches_repo_policy {
        text.push_str(
            "  (policies/envoy-local.yaml names Envoy admin :9901, Prometheus :9090 and the \
             routes file under /tmp/shiftgate-local, which this playground does not use: \
             run the written policy)\n",
        );
    }
    let next = [
        (
            format!("shiftgate run {run_target}"),
            "v2, a good release: promoted",
        ),
        (
            format!("shiftgate status {run_target}"),
            "where it is (from yet another terminal)",
        ),
        (
            "shiftgate local release v3".to_owned(),
            "users back on stable (now v2), v3 as canary",
        ),
        (
            "shiftgate local fault canary --error-rate 0.3".to_owned(),
            "v3 fails 30% of its requests",
        ),
        (
            format!("shiftgate run {policy}"),
            "revision v3: rolled back by itself",
        ),
        ("shiftgate local down".to_owned(), "stop everything"),
    ];
    let width = next
        .iter()
        .map(|(command, _)| command.len())
        .max()
        .unwrap_or(0);
    text.push_str("next, in another terminal (docs/demo.md walks through it):\n");
    for (command, what) in next {
        text.push_str(&format!("  {command:<width$}  # {what}\n"));
    }
    text
}

fn down(state_file: PathBuf) -> i32 {
    match state::stop(&state_file, STOP_TIMEOUT) {
        Ok(forced) => {
            for line in forced {
                say!("local: {line}");
            }
            say!("local: the playground is stopped");
            exit::OK
        }
        Err(e @ PlaygroundError::NotRunning { .. }) => {
            say!("local: {e}");
            exit::OK
        }
        Err(e) => {
            say!("error: {e}");
            exit::COULD_NOT_RUN
        }
    }
}

fn status(state_file: &Path) -> i32 {
    let recorded = match state::read(state_file) {
        Ok(Some(recorded)) => recorded,
        Ok(None) => {
            say!("local: no playground is running (no state file {}); start one with `shiftgate local up`", state_file.display());
            return exit::COULD_NOT_RUN;
        }
        Err(e) => {
            say!("error: {e}");
            return exit::COULD_NOT_RUN;
        }
    };
    let endpoints = match running_endpoints(state_file) {
        Ok(endpoints) => endpoints,
        Err(e) => {
            say!("error: {e}");
            return exit::COULD_NOT_RUN;
        }
    };
    let header = format!(
        "local: a playground is running (pid {}); stop it with `shiftgate local down`",
        recorded.pid
    );
    // A closed stdout (`| head`) is a normal end, not an error.
    let _ = std::io::stdout()
        .write_all(describe(&header, &endpoints, &recorded.dir, state_file).as_bytes());
    exit::OK
}

fn fault(args: FaultArgs, state_file: PathBuf) -> i32 {
    let update = if args.clear {
        FaultsUpdate {
            error_rate: Some(playground::HEALTHY.error_rate),
            latency_ms: Some(playground::HEALTHY.latency_ms),
        }
    } else {
        FaultsUpdate {
            error_rate: args.error_rate,
            latency_ms: args.latency_ms,
        }
    };
    if update == FaultsUpdate::default() {
        say!("error: say what to change: --error-rate RATE, --latency-ms MS, or --clear");
        return exit::INVALID_INPUT;
    }
    let check = Faults {
        error_rate: update.error_rate.unwrap_or(0.0),
        latency_ms: update.latency_ms.unwrap_or(0),
    };
    if let Err(e) = check.validate() {
        say!("error: {e}");
        return exit::INVALID_INPUT;
    }
    let endpoints = match running_endpoints(&state_file) {
        Ok(endpoints) => endpoints,
        Err(e) => {
            say!("error: {e}");
            return exit::COULD_NOT_RUN;
        }
    };
    let (address, name) = match args.app {
        App::Stable => (endpoints.stable_app, "stable app"),
        App::Canary => (endpoints.canary_app, "canary app"),
    };
    let runtime = match crate::cli::current_thread_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let changed = runtime.block_on(async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        set_remote_faults(&http, address, update).await
    });
    match changed {
        Ok(faults) => {
            say!(
                "local: the {name} now fails {}% of its requests and adds {} ms to each",
                faults.error_rate * 100.0,
                faults.latency_ms
            );
            exit::OK
        }
        Err(e) => {
            say!("error: {e}");
            exit::COULD_NOT_RUN
        }
    }
}

fn release(args: ReleaseArgs, state_file: PathBuf) -> i32 {
    let version = AppVersion {
        version: args.version,
    };
    if let Err(e) = version.validate() {
        say!("error: {e}");
        return exit::INVALID_INPUT;
    }
    let endpoints = match running_endpoints(&state_file) {
        Ok(endpoints) => endpoints,
        Err(e) => {
            say!("error: {e}");
            return exit::COULD_NOT_RUN;
        }
    };
    let runtime = match crate::cli::current_thread_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(playground::release(&endpoints, &version.version)) {
        Ok(promoted) => {
            let policy = endpoints.policy.display();
            say!(
                "local: stable now serves {promoted} and every request is back on it; the canary \
                 serves {next} (healthy); {policy} now says revision {next}:\n  \
                 shiftgate run {policy}",
                next = version.version
            );
            exit::OK
        }
        Err(e) => {
            say!("error: {e}");
            exit::COULD_NOT_RUN
        }
    }
}

fn running_endpoints(state_file: &Path) -> Result<Endpoints, PlaygroundError> {
    let Some(recorded) = state::read(state_file)? else {
        return Err(PlaygroundError::NotRunning {
            state_file: state_file.display().to_string(),
        });
    };
    if !state::is_playground(recorded.pid) {
        return Err(PlaygroundError::Gone {
            pid: recorded.pid,
            state_file: state_file.display().to_string(),
        });
    }
    recorded
        .endpoints
        .ok_or(PlaygroundError::Starting { pid: recorded.pid })
}
