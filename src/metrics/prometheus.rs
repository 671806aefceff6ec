//! The Prometheus metric source: renders each metric's query for the canary (and stable,
//! when the metric compares), runs the queries concurrently against the Prometheus HTTP
//! API, and turns every answer into a [`Sample`]. Nothing becomes a number unless
//! Prometheus returned exactly one number: no data, NaN, an outage, a slow answer and a
//! broken query each keep their own kind, so the analysis can call them Inconclusive.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::{self, StreamExt};

use super::auth::{self, AuthError, CaBundle, Credentials};
use super::batch::{Batcher, Kind, Member};
use super::escape;
use super::providers::{self, AccessError, PrometheusAccess, Target};
use super::queries::{assemble, counts_range, PolicyQueries};
use super::secrets::SecretReader;
use super::{MetricSource, PolicyRef};
use crate::analysis::sample::{AnalysisInput, MetricObservation, Sample};
use crate::policy::{PrometheusSpec, RolloutSpec, Timestamp};
use crate::redact;

pub use super::prometheus_answer::interpret;
pub(crate) use super::prometheus_answer::{list_series, result_data};

/// Queries of one evaluation in flight at once.
const MAX_CONCURRENT_QUERIES: usize = 16;

/// Why a connection to Prometheus cannot be set up from a policy.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `address` is shown redacted (no userinfo).
    #[error("spec.analysis.prometheus.address `{address}` is not a usable URL: {message}; write e.g. `http://prometheus:9090`")]
    Address { address: String, message: String },
    #[error("no prometheus to query: set spec.analysis.prometheus.address (or give the daemon a default address)")]
    NoAddress,
    #[error("spec.analysis.prometheus.provider `{0}`: providers are configured on the daemon; with `shiftgate run` write spec.analysis.prometheus.address")]
    ProviderOutsideDaemon(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Access(#[from] AccessError),
}

impl ConnectError {
    pub fn reason(&self) -> &'static str {
        match self {
            ConnectError::Address { .. }
            | ConnectError::NoAddress
            | ConnectError::ProviderOutsideDaemon(_) => "PrometheusAddressInvalid",
            ConnectError::Auth(e) => e.reason(),
            ConnectError::Access(e) => e.reason(),
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, ConnectError::Auth(e) if e.is_transient())
    }
}

/// A ready client for one Prometheus (address, credentials, CA, timeout).
pub struct Connection {
    client: prometheus_http_query::Client,
    /// For messages and logs: the address with any userinfo hidden.
    address: String,
    timeout: std::time::Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("address", &self.address)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Connections kept at most; past it the cache starts over (rotated Secrets make new
/// keys).
const MAX_CONNECTIONS: usize = 1024;

/// Whose process the source runs in, which decides where credentials may come from.
// One value per metric source, built once: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Access {
    /// `shiftgate run`: the user's own process, so the files and environment variables a
    /// policy names are the user's.
    Local { default: Option<PrometheusSpec> },
    /// The daemon: a policy's credentials come from Secrets in its own namespace, or it
    /// uses an operator's provider; its address must be allowed (see
    /// [`PrometheusAccess`]). Only providers read the daemon's files and environment.
    Daemon {
        access: PrometheusAccess,
        secrets: Option<Arc<dyn SecretReader>>,
    },
}

/// Queries Prometheus for a policy's metrics. Connections (with their credentials) are
/// built on first use and kept.
pub struct PrometheusSource {
    access: Access,
    env: Arc<EnvLookup>,
    connections: Mutex<HashMap<String, Arc<Connection>>>,
    /// Scrape phases, learned per group of rollouts (`prometheus_freshness`).
    phases: freshness::SharedPhases,
    /// The daemon's: evaluations at about the same instant share queries (see
    /// [`super::batch`]). `None`: every evaluation asks alone (`shiftgate run`).
    batcher: Option<Batcher>,
}

impl Default for PrometheusSource {
    fn default() -> Self {
        PrometheusSource::new(None)
    }
}

impl PrometheusSource {
    /// For `shiftgate run`: uses each policy's `analysis.prometheus`, or `default` when a
    /// policy has none. Secrets named `…File`/`…Env` are read from the user's files and
    /// the process environment.
    pub fn new(default: Option<PrometheusSpec>) -> PrometheusSource {
        PrometheusSource::with_access(Access::Local { default })
    }

    /// For the daemon: policies are admitted by `access`; their `…SecretRef`s are read
    /// through `secrets` in their own namespace (`None`: Secrets are never read).
    pub fn for_daemon(
        access: PrometheusAccess,
        secrets: Option<Arc<dyn SecretReader>>,
    ) -> PrometheusSource {
        let mut source = PrometheusSource::with_access(Access::Daemon { access, secrets });
        source.batcher = Some(Batcher::new(super::batch::DEFAULT_WINDOW));
        source
    }

    /// Batches evaluations within `window` (see [`super::batch`]); `None`: never.
    pub fn with_batch_window(mut self, window: Option<std::time::Duration>) -> PrometheusSource {
        self.batcher = window.map(Batcher::new);
        self
    }

    fn with_access(access: Access) -> PrometheusSource {
        PrometheusSource {
            access,
            env: Arc::new(|var| std::env::var(var).ok()),
            connections: Mutex::new(HashMap::new()),
            phases: freshness::SharedPhases::default(),
            batcher: None,
        }
    }

    /// Reads `…Env` secrets (of `run`, of the daemon's providers) through `env` instead
    /// of the process environment.
    pub fn with_env(
        mut self,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> PrometheusSource {
        self.env = Arc::new(env);
        self
    }

    /// `shiftgate run`'s connection for `spec` (or the default when `None`), built and
    /// cached on first use. The daemon's connections need the policy: see
    /// [`PrometheusSource::connect_for`].
    pub fn connect(&self, spec: Option<&PrometheusSpec>) -> Result<Arc<Connection>, ConnectError> {
        let default = match &self.access {
            Access::Local { default } => default.as_ref(),
            Access::Daemon { .. } => None,
        };
        let spec = spec.or(default).ok_or(ConnectError::NoAddress)?;
        if let Some(provider) = &spec.provider {
            return Err(ConnectError::ProviderOutsideDaemon(provider.clone()));
        }
        if let Access::Daemon { .. } = self.access {
            // Files and environment variables are the daemon's own: never for a policy.
            return Err(ConnectError::NoAddress);
        }
        // The spec names files and variables, never secrets, so it is a safe cache key.
        let key = format!("local:{spec:?}");
        self.cached(key, || {
            let credentials = auth::resolve(spec.auth.as_ref(), self.env.as_ref())?;
            let ca = spec
                .ca_file
                .as_deref()
                .map(|p| CaBundle::from_file(Path::new(p)))
                .transpose()?;
            build_connection(spec, &credentials, ca.as_ref(), spec.timeout)
        })
    }

    /// The connection for `policy`'s `spec`, in either mode.
    pub async fn connect_for(
        &self,
        policy: &PolicyRef,
        spec: Option<&PrometheusSpec>,
    ) -> Result<Arc<Connection>, ConnectError> {
        let (access, secrets) = match &self.access {
            Access::Local { .. } => return self.connect(spec),
            Access::Daemon { access, secrets } => (access, secrets),
        };
        match access.admit(spec, &policy.namespace)? {
            Target::Provider {
                name,
                spec: provider,
                timeout,
            } => {
                // The operator's provider: its files and environment are the daemon's,
                // chosen by the operator.
                let key = format!("provider:{name}:{timeout}");
                self.cached(key, || {
                    let credentials = auth::resolve(provider.auth.as_ref(), self.env.as_ref())?;
                    let ca = provider
                        .ca_file
                        .as_deref()
                        .map(|p| CaBundle::from_file(Path::new(p)))
                        .transpose()?;
                    build_connection(provider, &credentials, ca.as_ref(), timeout)
                })
            }
            Target::Policy { spec, .. } => {
                let fields = providers::secret_fields(spec);
                let (credentials, ca) = match secrets {
                    Some(secrets) => {
                        let credentials = auth::resolve_from_secrets(
                            spec.auth.as_ref(),
                            &policy.namespace,
                            secrets.as_ref(),
                        )
                        .await?;
                        let ca = match &spec.ca_secret_ref {
                            Some(reference) => Some(
                                CaBundle::from_secret(
                                    secrets.as_ref(),
                                    &policy.namespace,
                                    reference,
                                )
                                .await?,
                            ),
                            None => None,
                        };
                        (credentials, ca)
                    }
                    None if fields.is_empty() => (Credentials::None, None),
                    None => {
                        return Err(ConnectError::Access(AccessError::SecretsOff {
                            field: fields[0],
                            known: String::new(),
                        }))
                    }
                };
                // Keyed by what was read, so a rotated Secret makes a new client; the key
                // is a hash, never printed.
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                (&policy.namespace, format!("{spec:?}")).hash(&mut hasher);
                if let Some(header) = credentials.header()? {
                    header.as_bytes().hash(&mut hasher);
                }
                ca.as_ref().map(|c| &c.pem).hash(&mut hasher);
                let key = format!("policy:{:x}", hasher.finish());
                self.cached(key, || {
                    build_connection(spec, &credentials, ca.as_ref(), spec.timeout)
                })
            }
        }
    }

    fn cached(
        &self,
        key: String,
        build: impl FnOnce() -> Result<Connection, ConnectError>,
    ) -> Result<Arc<Connection>, ConnectError> {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(connection) = connections.get(&key) {
            return Ok(Arc::clone(connection));
        }
        let connection = Arc::new(build()?);
        if connections.len() >= MAX_CONNECTIONS {
            connections.clear();
        }
        connections.insert(key, Arc::clone(&connection));
        Ok(connection)
    }
}

#[async_trait]
impl MetricSource for PrometheusSource {
    fn admit(&self, policy: &PolicyRef, spec: &RolloutSpec) -> Result<(), AccessError> {
        match &self.access {
            Access::Local { .. } => Ok(()),
            // A policy without metrics and without `prometheus` asks nothing.
            Access::Daemon { .. }
                if spec.analysis.metrics.is_empty() && spec.analysis.prometheus.is_none() =>
            {
                Ok(())
            }
            Access::Daemon { access, .. } => access
                .admit(spec.analysis.prometheus.as_deref(), &policy.namespace)
                .map(|_| ()),
        }
    }

    async fn observe(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
        at: Timestamp,
        counts_since: Option<Timestamp>,
    ) -> AnalysisInput {
        // A batched evaluation queries (and tells the analysis) its batch's instant.
        let called_at = at;
        let connection = self
            .connect_for(policy, spec.analysis.prometheus.as_deref())
            .await;
        let at = match (&self.batcher, &connection) {
            (Some(b), Ok(c)) if super::batch_plan::may_batch(spec) => b.reserve(c, at),
            (Some(b), _) => b.align(at),
            (None, _) => at,
        };
        let range = counts_since.map(|since| counts_range(since, at));
        let mut queries = PolicyQueries::plan_counting(policy, spec, range.as_deref());
        let answers: HashMap<String, Sample> = match connection {
            Ok(connection) => {
                let histograms = queries.distinct_histograms();
                let all = queries
                    .distinct()
                    .into_iter()
                    .chain(histograms.iter().cloned());
                let batchable = match &self.batcher {
                    Some(_) => super::batch_plan::batchable(spec, &queries),
                    None => Default::default(),
                };
                let (together, alone): (Vec<String>, Vec<String>) =
                    all.partition(|q| batchable.contains(q));
                let kind = |q: &String| {
                    if histograms.contains(q) {
                        Kind::Histogram
                    } else {
                        Kind::Value
                    }
                };
                let mut groupings = std::mem::take(&mut queries.groupings);
                let mut members: Vec<Member> = Vec::with_capacity(together.len());
                for query in together {
                    let grouping = groupings
                        .iter()
                        .position(|(q, _)| *q == query)
                        .map(|i| groupings.swap_remove(i).1);
                    members.push(Member {
                        kind: kind(&query),
                        grouping,
                        query,
                    });
                }
                let together = members;
                let batched = async {
                    match &self.batcher {
                        Some(batcher) if !together.is_empty() => {
                            batcher.run(&connection, at, called_at, together).await
                        }
                        _ => HashMap::new(),
                    }
                };
                let single = run_alone(Arc::clone(&connection), alone.clone(), &histograms, at);
                let (mut answers, samples) = futures::join!(batched, single);
                answers.extend(alone.into_iter().zip(samples));
                answers
            }
            Err(error) => {
                // Every query gets the same reason; nothing is asked.
                let failed = Sample::Invalid {
                    message: error.to_string(),
                };
                queries
                    .distinct()
                    .into_iter()
                    .chain(queries.distinct_histograms())
                    .map(|q| (q, failed.clone()))
                    .collect()
            }
        };
        AnalysisInput {
            at,
            canary_requests: assemble(&queries.canary_requests, &answers),
            metrics: queries
                .metrics
                .iter()
                .map(|m| MetricObservation {
                    name: m.name.clone(),
                    canary: assemble(&m.canary, &answers),
                    stable: m.stable.as_ref().map(|s| assemble(s, &answers)),
                })
                .collect(),
        }
    }

    async fn scrape_phase(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
        at: Timestamp,
    ) -> Option<crate::metrics::freshness::ScrapePhase> {
        self.learn_scrape_phase(policy, spec, at).await
    }
}

/// Runs `queries` one by one, a few at a time: bounded, so a policy with many metrics
/// cannot flood Prometheus; each query's timeout starts when it is sent.
async fn run_alone(
    connection: Arc<Connection>,
    queries: Vec<String>,
    histograms: &[String],
    at: Timestamp,
) -> Vec<Sample> {
    stream::iter(queries)
        .map(|query| {
            let connection = Arc::clone(&connection);
            let histogram = histograms.contains(&query);
            async move {
                if histogram {
                    connection.query_histogram(&query, at).await
                } else {
                    connection.query(&query, at).await
                }
            }
        })
        .buffered(MAX_CONCURRENT_QUERIES)
        .collect()
        .await
}

#[path = "prometheus_freshness.rs"]
mod freshness;

fn build_connection(
    spec: &PrometheusSpec,
    credentials: &Credentials,
    ca: Option<&CaBundle>,
    timeout: crate::policy::Duration,
) -> Result<Connection, ConnectError> {
    let address = spec.address.as_deref().ok_or(ConnectError::NoAddress)?;
    let timeout = timeout.std();
    let http = auth::http_client(credentials, ca, timeout)?;
    let shown = redact::urls(address).into_owned();
    let address_error = |message: String| ConnectError::Address {
        address: shown.clone(),
        message: redact::urls(&message).into_owned(),
    };
    let parsed = reqwest::Url::parse(address).map_err(|e| address_error(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(address_error("the scheme must be http or https".to_owned()));
    }
    let client = prometheus_http_query::Client::from(http, address)
        .map_err(|e| address_error(e.to_string()))?;
    Ok(Connection {
        client,
        address: shown,
        timeout,
    })
}

impl Connection {
    /// Runs one instant query at `at` and classifies the answer. Never fails: every
    /// failure is a `Sample` kind.
    pub async fn query(&self, query: &str, at: Timestamp) -> Sample {
        self.run(query, at, interpret).await
    }

    /// Runs one histogram query (one series per `le`) at `at`; see
    /// [`super::histogram::interpret_histogram`].
    pub async fn query_histogram(&self, query: &str, at: Timestamp) -> Sample {
        self.run(query, at, super::histogram::interpret_histogram)
            .await
    }

    async fn run(
        &self,
        query: &str,
        at: Timestamp,
        interpret: fn(u16, &[u8], &str, &str) -> Sample,
    ) -> Sample {
        let sample = self.classify(&self.fetch(query, at).await, query, interpret);
        tracing::debug!(query, address = %self.address, outcome = sample_kind(&sample), "prometheus query");
        sample
    }

    /// Sends one instant query at `at`; the answer is classified by
    /// [`Connection::classify`] (a batch classifies one answer once per query in it).
    pub(crate) async fn fetch(&self, query: &str, at: Timestamp) -> RawAnswer {
        let time = format!("{}.{:03}", at.timestamp(), at.timestamp_subsec_millis());
        let timeout_ms = i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX);
        let request = self
            .client
            .query(query)
            .query("time", time)
            .timeout(timeout_ms);
        let answer = async {
            let response = request.post_raw().await.map_err(|e| error_chain(&e))?;
            let status = response.status().as_u16();
            let body = response.bytes().await.map_err(|e| error_chain(&e))?;
            Ok::<_, String>((status, body.to_vec()))
        };
        match tokio::time::timeout(self.timeout, answer).await {
            Err(_elapsed) => RawAnswer::TimedOut,
            Ok(Err(cause)) => RawAnswer::Unreachable(cause),
            Ok(Ok((status, body))) => RawAnswer::Http { status, body },
        }
    }

    /// The sample `answer` means for `query` (named in every message).
    pub(crate) fn classify(
        &self,
        answer: &RawAnswer,
        query: &str,
        interpret: fn(u16, &[u8], &str, &str) -> Sample,
    ) -> Sample {
        match answer {
            RawAnswer::TimedOut => Sample::TimedOut,
            RawAnswer::Unreachable(cause) => Sample::Unreachable {
                message: format!(
                    "prometheus at {} could not be reached for query `{query}`: {}",
                    self.address,
                    redact::urls(cause)
                ),
            },
            RawAnswer::Http { status, body } => interpret(*status, body, query, &self.address),
        }
    }

    /// For messages: the address with any userinfo hidden.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }
}

/// One HTTP exchange with Prometheus, before it is read as a sample.
pub(crate) enum RawAnswer {
    TimedOut,
    /// The cause, one line (may hold URLs: redacted when shown).
    Unreachable(String),
    Http {
        status: u16,
        body: Vec<u8>,
    },
}

fn sample_kind(sample: &Sample) -> &'static str {
    match sample {
        Sample::Value(_) => "value",
        Sample::NoData => "no_data",
        Sample::NotANumber => "not_a_number",
        Sample::Unreachable { .. } => "unreachable",
        Sample::TimedOut => "timed_out",
        Sample::Invalid { .. } => "invalid",
    }
}

/// An error and its causes on one line (`a: b: c`).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_addresses_are_refused_at_connect() {
        let source = PrometheusSource::new(None);
        assert!(matches!(source.connect(None), Err(ConnectError::NoAddress)));
        let spec: PrometheusSpec = serde_json::from_str(r#"{"address":"prometheus:9090"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let err = source.connect(Some(&spec)).err().map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("prometheus:9090"));
    }
}
