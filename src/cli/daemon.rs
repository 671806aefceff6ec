//! `shiftgate daemon`: the in-cluster controller. Every flag can also be set through
//! the environment (`SHIFTGATE_…`), as a Deployment does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use crate::cli::exit;
use crate::cli::output::say;
use crate::metrics::prometheus::PrometheusSource;
use crate::metrics::providers::{
    parse_providers, AllowedAddress, PrometheusAccess, DEFAULT_PROVIDER,
};
use crate::metrics::secrets::{KubeSecrets, SecretReader};
use crate::observe::http;
use crate::policy::{BasicAuth, PrometheusAuth, PrometheusSpec};
use crate::runtime::checks_http::HttpChecks;
use crate::runtime::clock::SystemClock;
use crate::runtime::daemon::{Daemon, DaemonOptions, DaemonSeams, KubeRouters};
use crate::runtime::leader::LeaseConfig;
use crate::store::kube::KubeStatusStore;

#[derive(Args, Debug, Clone)]
pub struct DaemonArgs {
    /// Watch RolloutPolicies in this namespace only (default: all namespaces): the
    /// global `-n`/`--namespace`, else $SHIFTGATE_NAMESPACE.
    #[arg(skip)]
    pub namespace: Option<String>,
    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(long, default_value = "0.0.0.0:8080", env = "SHIFTGATE_LISTEN")]
    pub listen: SocketAddr,
    /// Address of the read-only status page (docs/web.md); unset: no page is served.
    #[arg(long, env = "SHIFTGATE_WEB_LISTEN")]
    pub web_listen: Option<SocketAddr>,
    /// Prometheus for policies without `spec.analysis.prometheus`: the provider `default`.
    #[arg(long, env = "SHIFTGATE_PROMETHEUS")]
    pub prometheus: Option<String>,
    /// Timeout of each Prometheus query (with --prometheus).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, env = "SHIFTGATE_PROMETHEUS_TIMEOUT")]
    pub prometheus_timeout: Duration,
    /// File holding a bearer token for Prometheus (read at start, never logged).
    #[arg(long, env = "SHIFTGATE_PROMETHEUS_BEARER_TOKEN_FILE")]
    pub prometheus_bearer_token_file: Option<PathBuf>,
    /// Name of an environment variable holding a bearer token for Prometheus.
    #[arg(long, env = "SHIFTGATE_PROMETHEUS_BEARER_TOKEN_ENV")]
    pub prometheus_bearer_token_env: Option<String>,
    /// Basic-auth user for Prometheus; the password comes from
    /// --prometheus-password-file or --prometheus-password-env.
    #[arg(long, env = "SHIFTGATE_PROMETHEUS_USERNAME")]
    pub prometheus_username: Option<String>,
    #[arg(long, env = "SHIFTGATE_PROMETHEUS_PASSWORD_FILE")]
    pub prometheus_password_file: Option<PathBuf>,
    #[arg(long, env = "SHIFTGATE_PROMETHEUS_PASSWORD_ENV")]
    pub prometheus_password_env: Option<String>,
    /// PEM file of the CA that signs Prometheus' certificate.
    #[arg(long, env = "SHIFTGATE_PROMETHEUS_CA_FILE")]
    pub prometheus_ca_file: Option<PathBuf>,
    /// YAML file of named Prometheus providers policies may use by name
    /// (`spec.analysis.prometheus.provider`): `providers: [{name, address, timeout,
    /// auth, caFile}]`, credentials from the daemon's own files or environment. Read at
    /// start (mount it from a ConfigMap).
    #[arg(long, env = "SHIFTGATE_PROMETHEUS_PROVIDERS")]
    pub prometheus_providers: Option<PathBuf>,
    /// Comma-separated URL prefixes a policy's own `spec.analysis.prometheus.address` may
    /// use (`*`: any). Default: with any provider (or --prometheus) configured, only the
    /// providers' addresses; with none, any address.
    #[arg(
        long,
        value_delimiter = ',',
        env = "SHIFTGATE_PROMETHEUS_ALLOWED_ADDRESSES"
    )]
    pub prometheus_allowed_addresses: Option<Vec<String>>,
    /// Whether policies may name Secrets of their own namespace for Prometheus
    /// credentials (`…SecretRef`; needs `get` on secrets). `false`: providers only.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "SHIFTGATE_ALLOW_POLICY_SECRETS")]
    pub allow_policy_secrets: bool,
    /// Name of the leader-election Lease; empty: no election (run one replica only).
    #[arg(long, default_value = "shiftgate", env = "SHIFTGATE_LEASE_NAME")]
    pub lease_name: String,
    /// Namespace of the Lease (default: the namespace of the daemon's service account).
    #[arg(long, env = "SHIFTGATE_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a leader's Lease stays valid without renewal.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration, env = "SHIFTGATE_LEASE_DURATION")]
    pub lease_duration: Duration,
    /// Split the policies into this many shards, one Lease each
    /// (`<lease-name>-shard-<i>`), shared out among the replicas; 1: one leader Lease.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024), env = "SHIFTGATE_SHARDS")]
    pub shards: u32,
    /// This replica's name: the Lease holder and the Events' reporting instance.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Policies reconciled at once. A slot mostly waits (for its Prometheus batch, the
    /// query, the API server), so thousands of rollouts need about a hundred.
    #[arg(long, default_value_t = 128, env = "SHIFTGATE_CONCURRENCY")]
    pub concurrency: u16,
    /// Every policy is looked at at least this often.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration, env = "SHIFTGATE_RESYNC")]
    pub resync: Duration,
    /// On SIGTERM, how long in-flight reconciles may take to finish their writes.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration, env = "SHIFTGATE_SHUTDOWN_DEADLINE")]
    pub shutdown_deadline: Duration,
}

impl DaemonArgs {
    /// The default Prometheus from the flags, with credentials by reference (files and
    /// variable names), so secrets are read by the source, never held in the args.
    fn prometheus_spec(&self) -> anyhow::Result<Option<PrometheusSpec>> {
        let Some(address) = &self.prometheus else {
            if self.prometheus_bearer_token_file.is_some() || self.prometheus_username.is_some() {
                anyhow::bail!(
                    "Prometheus credentials were given without --prometheus; add --prometheus URL"
                );
            }
            return Ok(None);
        };
        let shown = crate::redact::urls(address);
        reqwest::Url::parse(address).with_context(|| {
            format!("--prometheus {shown:?} is not a URL; write it as http://prometheus:9090")
        })?;
        if crate::redact::has_userinfo(address) {
            anyhow::bail!(
                "--prometheus {shown:?} carries credentials in the URL; remove them and use --prometheus-username with --prometheus-password-file, or --prometheus-bearer-token-file"
            );
        }
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let basic = self.prometheus_username.as_ref().map(|username| BasicAuth {
            username: username.clone(),
            password_file: path(&self.prometheus_password_file),
            password_env: self.prometheus_password_env.clone(),
            password_secret_ref: None,
        });
        let auth = (self.prometheus_bearer_token_file.is_some()
            || self.prometheus_bearer_token_env.is_some()
            || basic.is_some())
        .then(|| PrometheusAuth {
            bearer_token_file: path(&self.prometheus_bearer_token_file),
            bearer_token_env: self.prometheus_bearer_token_env.clone(),
            bearer_token_secret_ref: None,
            basic,
        });
        Ok(Some(PrometheusSpec {
            address: Some(address.clone()),
            provider: None,
            timeout: crate::policy::Duration::from_millis(
                u64::try_from(self.prometheus_timeout.as_millis()).unwrap_or(u64::MAX),
            ),
            auth,
            ca_file: path(&self.prometheus_ca_file),
            ca_secret_ref: None,
        }))
    }

    /// What policies may reach: the providers (the file's and `--prometheus` as
    /// `default`), the allow-list, and whether policy Secrets are read.
    fn prometheus_access(&self) -> anyhow::Result<PrometheusAccess> {
        let mut providers = match &self.prometheus_providers {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read --prometheus-providers {}", path.display())
                })?;
                parse_providers(&text, &path.display().to_string()).map_err(anyhow::Error::msg)?
            }
            None => BTreeMap::new(),
        };
        if let Some(default) = self.prometheus_spec()? {
            if providers
                .insert(DEFAULT_PROVIDER.to_owned(), default)
                .is_some()
            {
                anyhow::bail!(
                    "--prometheus-providers names a provider `{DEFAULT_PROVIDER}`, and --prometheus is that provider too; rename the file's or drop --prometheus"
                );
            }
        }
        let allowed = self
            .prometheus_allowed_addresses
            .as_ref()
            .map(|list| {
                list.iter()
                    .filter(|a| !a.trim().is_empty())
                    .map(|a| AllowedAddress::parse(a))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|why| anyhow::anyhow!("--prometheus-allowed-addresses: {why}"))?;
        Ok(PrometheusAccess::new(
            providers,
            allowed,
            self.allow_policy_secrets,
        ))
    }

    fn pod_name(&self) -> String {
        self.pod_name
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "shiftgate".to_owned())
    }
}

pub fn run(args: Box<DaemonArgs>) -> i32 {
    let prometheus = match args.prometheus_access() {
        Ok(access) => access,
        Err(error) => {
            say!("error: {error:#}");
            return exit::INVALID_INPUT;
        }
    };
    if args.concurrency == 0 {
        say!("error: --concurrency must be at least 1");
        return exit::INVALID_INPUT;
    }
    if args.shards > 1 && args.lease_name.is_empty() {
        say!(
            "error: --shards {} needs Leases to share the shards out; set --lease-name (or use --shards 1)",
            args.shards
        );
        return exit::INVALID_INPUT;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            say!("error: cannot start the async runtime: {error}");
            return exit::COULD_NOT_RUN;
        }
    };
    match runtime.block_on(serve(*args, prometheus)) {
        Ok(()) => exit::OK,
        Err(error) => {
            say!("error: {error:#}");
            exit::COULD_NOT_RUN
        }
    }
}

async fn serve(args: DaemonArgs, prometheus: PrometheusAccess) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.context(
        "cannot configure a Kubernetes client (in-cluster service account or kubeconfig); \
         run the daemon in a pod with a service account, or set KUBECONFIG",
    )?;
    let pod_name = args.pod_name();
    let shards =
        crate::runtime::shards::Shards::new(args.shards).context("--shards must be at least 1")?;
    let lease = (!args.lease_name.is_empty()).then(|| {
        let namespace = args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        LeaseConfig::new(&args.lease_name, &namespace, &pod_name, args.lease_duration)
    });
    let options = DaemonOptions {
        namespace: args.namespace.clone(),
        pod_name,
        concurrency: args.concurrency,
        lease,
        resync: args.resync,
        shutdown_deadline: args.shutdown_deadline,
    };
    let store = KubeStatusStore::new(client.clone());
    // Operator commands from annotations; the engine records their ids in the state.
    let commands = crate::runtime::commands_kube::KubeCommandSource::new(client.clone());
    let seams = DaemonSeams {
        client: client.clone(),
        routers: Arc::new(KubeRouters::new(client.clone())),
        metrics: Arc::new(PrometheusSource::for_daemon(
            prometheus,
            args.allow_policy_secrets
                .then(|| Arc::new(KubeSecrets::new(client.clone())) as Arc<dyn SecretReader>),
        )),
        store: Arc::new(store),
        commands: Arc::new(commands),
        checks: Arc::new(HttpChecks::new().context("cannot build the HTTP client for checks")?),
        clock: Arc::new(SystemClock),
    };
    let hook_secrets = args
        .allow_policy_secrets
        .then(|| Arc::new(KubeSecrets::new(client.clone())) as Arc<dyn SecretReader>);
    let hooks =
        crate::runtime::hooks::Hooks::new(Arc::new(crate::runtime::hooks::WebhookHooks::new(
            crate::runtime::hooks::HeaderSecrets::PolicySecrets(hook_secrets.clone()),
        )));
    let mut daemon = Daemon::new(options, seams)
        .with_shards(shards)
        .with_hooks(hooks)
        .with_notify_secrets(crate::runtime::hooks::HeaderSecrets::PolicySecrets(
            hook_secrets,
        ));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut page = None;
    if let Some(address) = args.web_listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address} (--web-listen)"))?;
        let board = crate::web::Board::new();
        daemon = daemon.with_web(board.clone());
        let mut stop_rx = stop_rx.clone();
        let bound = listener.local_addr().unwrap_or(address);
        tracing::info!(url = %crate::web::page::url(bound), "status page served");
        page = Some(tokio::spawn(crate::web::page::serve(
            listener,
            board,
            async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            },
        )));
    }
    let app = http::router(daemon.metrics(), daemon.health());
    let server = tokio::spawn(http::serve(listener, app, async move {
        let mut stop_rx = stop_rx;
        let _ = stop_rx.wait_for(|stop| *stop).await;
    }));
    tracing::info!(listen = %args.listen, "shiftgate daemon started");
    let result = daemon.run(http::shutdown_signal()).await;
    // The endpoints stay up until the controller has stopped writing.
    let _ = stop_tx.send(true);
    let _ = server.await;
    if let Some(page) = page {
        let _ = page.await;
    }
    result.context("the daemon stopped")
}
