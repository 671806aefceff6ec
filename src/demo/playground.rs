//! The local playground (`shiftgate local up`): the demo's real stack — two demo app
//! instances, Envoy, Prometheus, steady user traffic — kept running for the user's own
//! `shiftgate run`, with a policy written for it.
//!
//! By default Envoy's admin and Prometheus get the well-known ports that
//! `policies/envoy-local.yaml` names, and the routes file lives in [`DEFAULT_DIR`], so
//! that policy runs as written; when a port is taken (or with `--free-ports`, or another
//! `--dir`) free ports are used and only the written policy matches.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::app::{
    remote_version, set_remote_faults, set_remote_version, AppVersion, Faults, FaultsUpdate,
};
use super::load::{run_load, LoadConfig, LoadCounters};
use super::playground_state::{
    Endpoints, PlaygroundError, PlaygroundState, RecordedProcess, DIR_MARKER,
};
use super::processes::{self, ProcessError, Supervisor};
use crate::policy::EnvoyRouter as EnvoyRouterSpec;
use crate::router::envoy::EnvoyRouter;
use crate::router::{ManagedRoute, TrafficRouter};

/// The playground's dir unless `--dir` says otherwise; `policies/envoy-local.yaml`
/// names the routes file in it.
pub const DEFAULT_DIR: &str = "/tmp/shiftgate-local";
/// The ports `policies/envoy-local.yaml` names.
pub const WELL_KNOWN_ENVOY_ADMIN: u16 = 9901;
pub const WELL_KNOWN_PROMETHEUS: u16 = 9090;
/// Users' requests per second through Envoy while the playground runs.
pub const USER_LOAD_PER_SECOND: u32 = 60;
/// A release without faults: no errors, 5 ms per request (the demo app's default).
pub const HEALTHY: Faults = Faults {
    error_rate: 0.0,
    latency_ms: 5,
};

/// The repository's playground policy; the written policy is this text with the
/// playground's own addresses, so both always agree.
pub const REPO_POLICY: &str = include_str!("../../policies/envoy-local.yaml");
const REPO_ROUTES_FILE: &str = "/tmp/shiftgate-local/routes/routes.json";
const REPO_ENVOY_ADMIN: &str = "127.0.0.1:9901";
const REPO_PROMETHEUS: &str = "http://127.0.0.1:9090";

/// How to start it.
#[derive(Clone, Debug)]
pub struct PlaygroundOptions {
    pub dir: PathBuf,
    /// Never try the well-known ports.
    pub free_ports: bool,
    /// The shiftgate binary that serves the demo app.
    pub app_binary: PathBuf,
}

/// A running playground. Dropping it stops the load and every process and removes
/// the dir.
pub struct Playground {
    pub endpoints: Endpoints,
    load_stop: CancellationToken,
    load: Option<JoinHandle<Result<super::load::LoadReport, String>>>,
    // Last: dropped (processes killed, dir removed) after the load stopped.
    supervisor: Supervisor,
}

impl Playground {
    /// The state to record for `local down` and `local fault`.
    pub fn state(&self) -> PlaygroundState {
        PlaygroundState {
            pid: std::process::id(),
            dir: self.supervisor.dir().to_owned(),
            processes: self
                .supervisor
                .pids()
                .into_iter()
                .map(|(name, pid)| RecordedProcess { name, pid })
                .collect(),
            endpoints: Some(self.endpoints.clone()),
        }
    }

    pub fn dir(&self) -> &Path {
        self.supervisor.dir()
    }

    /// The name of a process that exited on its own, if any.
    pub fn exited_process(&mut self) -> Option<String> {
        let names: Vec<String> = self.supervisor.pids().into_iter().map(|(n, _)| n).collect();
        names
            .into_iter()
            .find(|name| !self.supervisor.is_running(name))
    }

    /// Stops the load, then every process, and removes the dir.
    pub async fn shut_down(mut self) {
        self.load_stop.cancel();
        if let Some(load) = self.load.take() {
            let _ = load.await;
        }
    }
}

impl Drop for Playground {
    fn drop(&mut self) {
        self.load_stop.cancel();
    }
}

/// `port` on 127.0.0.1 when nothing listens there, else 0 (a free port).
fn well_known_or_free(port: u16, free_ports: bool) -> u16 {
    if free_ports {
        return 0;
    }
    // Bound and released at once: a process taking it meanwhile makes the start
    // fail with its log, and the user can pass --free-ports.
    match TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => port,
        Err(_) => 0,
    }
}

/// Starts the stack in `options.dir` (which must not exist yet).
pub async fn start(options: &PlaygroundOptions) -> Result<Playground, ProcessError> {
    let mut supervisor = Supervisor::at(&options.dir)?;
    let marker = supervisor.dir().join(DIR_MARKER);
    std::fs::write(
        &marker,
        "created by `shiftgate local up`; removed by `local down`\n",
    )
    .map_err(|source| ProcessError::Io {
        what: "the playground marker".into(),
        path: marker.display().to_string(),
        source,
    })?;
    let app = &options.app_binary;
    let stable_app =
        processes::start_app(&mut supervisor, app, "stable-app", "v1", HEALTHY, 1).await?;
    let canary_app =
        processes::start_app(&mut supervisor, app, "canary-app", "v2", HEALTHY, 2).await?;
    let admin_port = well_known_or_free(WELL_KNOWN_ENVOY_ADMIN, options.free_ports);
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let envoy =
        processes::start_envoy_with_admin(&mut supervisor, stable_app, canary_app, admin).await?;
    let prometheus_port = well_known_or_free(WELL_KNOWN_PROMETHEUS, options.free_ports);
    let preferred = (prometheus_port != 0).then_some(prometheus_port);
    let prometheus =
        processes::start_prometheus_on(&mut supervisor, envoy.admin, preferred).await?;

    let policy_path = supervisor.dir().join("policy.yaml");
    let policy = format!(
        "# Written by `shiftgate local up` for the playground in {}: policies/envoy-local.yaml\n\
         # with this playground's routes file, Envoy admin and Prometheus addresses.\n{}",
        supervisor.dir().display(),
        render_policy(
            Path::new(&envoy.router.routes_file),
            envoy.admin,
            prometheus
        )
    );
    std::fs::write(&policy_path, policy).map_err(|source| ProcessError::Io {
        what: "the playground policy".into(),
        path: policy_path.display().to_string(),
        source,
    })?;

    let load_stop = CancellationToken::new();
    let config = LoadConfig {
        target: envoy.listener,
        requests_per_second: USER_LOAD_PER_SECOND,
        // The load runs until the playground stops.
        duration: Duration::from_secs(u64::from(u32::MAX)),
        headers: Vec::new(),
    };
    let load = {
        let stop = load_stop.clone();
        tokio::spawn(async move { run_load(&config, &LoadCounters::default(), &stop).await })
    };
    Ok(Playground {
        endpoints: Endpoints {
            envoy_listener: envoy.listener,
            envoy_admin: envoy.admin,
            prometheus,
            stable_app,
            canary_app,
            policy: policy_path,
            routes_file: PathBuf::from(&envoy.router.routes_file),
        },
        load_stop,
        load: Some(load),
        supervisor,
    })
}

/// Whether `policies/envoy-local.yaml` runs against this playground as written.
pub fn matches_repo_policy(endpoints: &Endpoints) -> bool {
    endpoints.routes_file == Path::new(REPO_ROUTES_FILE)
        && endpoints.envoy_admin.to_string() == REPO_ENVOY_ADMIN
        && format!("http://{}", endpoints.prometheus) == REPO_PROMETHEUS
}

/// What a release pipeline does after a promotion, for the next rollout: the stable
/// instance now answers with the promoted version, every request goes back to it, and
/// the canary instance gets `next` (healthy again); the written policy's revision
/// becomes `next`. Returns the promoted version.
pub async fn release(endpoints: &Endpoints, next: &str) -> Result<String, PlaygroundError> {
    let step = |what: &str| {
        let what = what.to_owned();
        move |message: String| PlaygroundError::Step { what, message }
    };
    AppVersion {
        version: next.to_owned(),
    }
    .validate()
    .map_err(step("release this version"))?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .map_err(|e| step("build an HTTP client")(e.to_string()))?;
    let promoted = remote_version(&http, endpoints.canary_app)
        .await
        .map_err(step("read the canary's version"))?;
    set_remote_version(&http, endpoints.stable_app, &promoted)
        .await
        .map_err(step("redeploy stable with the promoted version"))?;
    let spec = EnvoyRouterSpec {
        routes_file: endpoints.routes_file.display().to_string(),
        admin_address: endpoints.envoy_admin.to_string(),
        route_config_name: "shiftgate".into(),
        domains: vec!["*".into()],
        stable_cluster: "stable".into(),
        canary_cluster: "canary".into(),
        colors: Default::default(),
    };
    let router = EnvoyRouter::new(&spec, None).map_err(|e| step("reach Envoy")(e.to_string()))?;
    let live = router
        .read()
        .await
        .map_err(|e| step("read Envoy's route")(e.to_string()))?;
    let all_stable = ManagedRoute {
        canary_weight: 0,
        test_route: false,
    };
    router
        .apply(&live.version, all_stable)
        .await
        .map_err(|e| step("route every request to stable")(e.to_string()))?;
    set_remote_version(&http, endpoints.canary_app, next)
        .await
        .map_err(step("deploy the next version as the canary"))?;
    let healthy = FaultsUpdate {
        error_rate: Some(HEALTHY.error_rate),
        latency_ms: Some(HEALTHY.latency_ms),
    };
    set_remote_faults(&http, endpoints.canary_app, healthy)
        .await
        .map_err(step("clear the canary's faults"))?;
    let text = std::fs::read_to_string(&endpoints.policy)
        .map_err(|e| step("read the written policy")(e.to_string()))?;
    std::fs::write(&endpoints.policy, with_revision(&text, next))
        .map_err(|e| step("update the written policy's revision")(e.to_string()))?;
    Ok(promoted)
}

/// `policy` with its `spec.revision` line set to `revision`.
fn with_revision(policy: &str, revision: &str) -> String {
    policy
        .lines()
        .map(|line| match line.strip_prefix("  revision:") {
            Some(_) => format!("  revision: {revision}"),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// `policies/envoy-local.yaml` with this playground's routes file and addresses.
pub fn render_policy(
    routes_file: &Path,
    envoy_admin: SocketAddr,
    prometheus: SocketAddr,
) -> String {
    REPO_POLICY
        .replace(REPO_ROUTES_FILE, &routes_file.display().to_string())
        .replace(REPO_ENVOY_ADMIN, &envoy_admin.to_string())
        .replace(REPO_PROMETHEUS, &format!("http://{prometheus}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::policy::parse::check_str;

    #[test]
    fn the_repository_policy_names_the_playground_defaults_once_each() {
        for literal in [REPO_ROUTES_FILE, REPO_ENVOY_ADMIN, REPO_PROMETHEUS] {
            assert_eq!(REPO_POLICY.matches(literal).count(), 1, "{literal}");
        }
        assert_eq!(
            Path::new(REPO_ROUTES_FILE),
            Path::new(DEFAULT_DIR).join("routes").join("routes.json")
        );
        assert_eq!(
            REPO_ENVOY_ADMIN,
            format!("127.0.0.1:{WELL_KNOWN_ENVOY_ADMIN}")
        );
        assert_eq!(
            REPO_PROMETHEUS,
            format!("http://127.0.0.1:{WELL_KNOWN_PROMETHEUS}")
        );
    }

    #[test]
    fn the_written_policy_is_valid_and_names_the_playground() {
        let text = render_policy(
            Path::new("/tmp/elsewhere/routes/routes.json"),
            "127.0.0.1:41001".parse().unwrap(),
            "127.0.0.1:41002".parse().unwrap(),
        );
        let checked = check_str("policy.yaml", &text);
        assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
        assert!(text.contains("routesFile: /tmp/elsewhere/routes/routes.json"));
        assert!(text.contains("adminAddress: 127.0.0.1:41001"));
        assert!(text.contains("address: http://127.0.0.1:41002"));
        let next = with_revision(&text, "v3");
        assert!(next.contains("\n  revision: v3\n"), "{next}");
        assert_eq!(next.matches("revision:").count(), 1);
        assert!(check_str("policy.yaml", &next).diagnostics.is_empty());
    }
}
