//! The RolloutPolicy types: one set of Rust types serves the policy file format, the
//! JSON Schema printed by `shiftgate schema`, and the Kubernetes custom resource.
//!
//! Every struct denies unknown fields so a misspelt key is an error, never silently
//! ignored. Field names are camelCase on the wire.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::Duration;
use super::notify::NotifySpec;
use super::step::StepSpec;

pub const API_GROUP: &str = "shiftgate.dev";
pub const API_VERSION: &str = "shiftgate.dev/v1alpha1";
pub const KIND: &str = "RolloutPolicy";

/// What a rollout should do: which route to move, in which steps, judged by which
/// metrics, and what to do when the canary is judged bad.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "shiftgate.dev",
    version = "v1alpha1",
    kind = "RolloutPolicy",
    plural = "rolloutpolicies",
    shortname = "rpol",
    namespaced,
    status = "crate::policy::status::RolloutStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".status.canaryWeight"}"#,
    printcolumn = r#"{"name":"Step","type":"string","jsonPath":".status.currentStep"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".spec.revision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.reason"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.message"}"#,
    printcolumn = r#"{"name":"Last Transition","type":"date","priority":1,"jsonPath":".status.history[-1:].at"}"#,
    category = "all",
    category = "shiftgate"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutSpec {
    /// The release being rolled out. A new value starts a new rollout. Absent when
    /// `workloads.revisionFrom` derives it from the canary Deployment.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// Which traffic router shiftgate drives. Exactly one of `istio`, `service`, `envoy`.
    pub router: RouterSpec,
    /// With `router.*.colors`: the colour this revision is deployed into. A rollout into
    /// the live colour is refused (nothing is written). Default: the idle colour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_color: Option<String>,
    /// Canary weights in percent, in increasing order; each is held and analysed
    /// before the next. `[0, 30, 60, 100]` or `[{weight: 30, hold: 5m}, …]`.
    pub steps: Vec<StepSpec>,
    /// A route that sends matching requests (cookie or header) to the canary while
    /// every other request stays on stable. Installed at the start, removed at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_route: Option<Box<TestRoute>>,
    /// Checks that must pass before any user traffic moves (run at weight 0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckSpec>,
    /// How every step is judged.
    pub analysis: AnalysisSpec,
    /// Deployment windows: when traffic may move.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowSpec>,
    /// What to do when the analysis fails.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// What to do when someone else changed the managed weights.
    #[serde(default)]
    pub on_drift: OnDrift,
    /// Links the status and events to a Grafana dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana: Option<Box<GrafanaSpec>>,
    /// Where transitions are announced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifySpec>,
    /// Webhooks called at the rollout's phases (docs/hooks.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<super::hooks::HookSpec>,
    /// The stable and canary Deployments (apps/v1) in the policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<Box<super::workloads::WorkloadsSpec>>,
}

/// Exactly one of the three routers must be set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouterSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<Box<IstioRouter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Box<ServiceRouter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy: Option<Box<EnvoyRouter>>,
}

/// An Istio VirtualService whose named http routes split traffic between a stable and
/// a canary destination (host-level, or subset-level with a DestinationRule).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioRouter {
    /// `[namespace/]name` of the VirtualService; the namespace defaults to the policy's.
    pub virtual_service: String,
    /// Names of the http routes to manage. Empty: the VirtualService's only http route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// Where the stable release's share of traffic goes. Not with `colors`.
    #[serde(default, skip_serializing_if = "Destination::is_unset")]
    pub stable: Destination,
    /// Where the canary's share of traffic goes; must differ from `stable`. Not with
    /// `colors`.
    #[serde(default, skip_serializing_if = "Destination::is_unset")]
    pub canary: Destination,
    /// Blue/green with alternating colours, instead of `stable` and `canary`: two named
    /// destinations; the one the live route serves is stable, the other the canary.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub colors: BTreeMap<String, Destination>,
    /// VirtualService API version: v1 (default), v1beta1 or v1alpha3.
    #[serde(default)]
    pub api_version: IstioApiVersion,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum IstioApiVersion {
    #[default]
    #[serde(rename = "v1")]
    V1,
    #[serde(rename = "v1beta1")]
    V1beta1,
    #[serde(rename = "v1alpha3")]
    V1alpha3,
}

impl IstioApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            IstioApiVersion::V1 => "v1",
            IstioApiVersion::V1beta1 => "v1beta1",
            IstioApiVersion::V1alpha3 => "v1alpha3",
        }
    }
}

/// A route destination: a host, optionally narrowed to a DestinationRule subset and port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// Destination host, e.g. `checkout.prod.svc.cluster.local`.
    pub host: String,
    /// DestinationRule subset, e.g. `v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Destination port number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Destination {
    /// Not written (a policy with `colors` leaves `stable` and `canary` out).
    pub fn is_unset(&self) -> bool {
        self.host.is_empty() && self.subset.is_none() && self.port.is_none()
    }
}

/// Plain Kubernetes blue/green: one key of a Service's selector is switched between
/// the stable and the canary value. Only weights 0 and 100 are possible.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRouter {
    /// `[namespace/]name` of the Service.
    pub service: String,
    /// The selector key that tells the releases apart, e.g. `version` or `color`.
    pub selector_key: String,
    /// The selector key's value for the stable pods, e.g. `blue`. Not with `colors`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stable_value: String,
    /// The selector key's value for the canary pods, e.g. `green`; must differ. Not
    /// with `colors`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub canary_value: String,
    /// Blue/green with alternating colours, instead of the two values: colour name →
    /// selector value; the value the Service selects is stable, the other the canary.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub colors: BTreeMap<String, String>,
}

/// A local Envoy whose routes shiftgate writes through file-based xDS.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyRouter {
    /// The RDS file Envoy watches (path-based xDS). shiftgate replaces it atomically.
    pub routes_file: String,
    /// Envoy's admin address, used to confirm the new route was applied.
    pub admin_address: String,
    /// Name of the route configuration in the file.
    #[serde(default = "default_route_config_name")]
    pub route_config_name: String,
    /// Virtual host domains served by the route (default `*`).
    #[serde(default = "default_domains")]
    pub domains: Vec<String>,
    /// Envoy cluster of the stable release. Not with `colors`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stable_cluster: String,
    /// Envoy cluster of the canary release. Not with `colors`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub canary_cluster: String,
    /// Blue/green with alternating colours, instead of the two clusters: colour name →
    /// Envoy cluster; the one the route serves is stable, the other the canary.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub colors: BTreeMap<String, String>,
}

fn default_route_config_name() -> String {
    "shiftgate".to_owned()
}

fn default_domains() -> Vec<String> {
    vec!["*".to_owned()]
}

/// Requests matching this go to the canary whatever the weights.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestRoute {
    /// `name=value`: requests carrying this cookie reach the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// Requests whose header matches go to the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name, e.g. `x-version`.
    pub name: String,
    /// The header value must equal this (exactly one of `exact` and `regex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The header value must match this RE2 regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A check run before traffic moves. Exactly one kind (only `http` today).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckSpec {
    /// Shown in status and events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An HTTP request that must answer as expected.
    pub http: HttpCheck,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCheck {
    /// What to request (through the test route: add its cookie or header in `headers`).
    pub url: String,
    /// HTTP method: `GET` (default), `HEAD`, `POST`, `PUT`, `DELETE`, `OPTIONS` or `PATCH`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers, e.g. `{ cookie: "test=true" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The response status must be this (default 200).
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// The request body, sent as written (set `content-type` in `headers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body must contain this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_body: Option<String>,
    /// The body must be JSON, and each JSONPath expectation must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_json: Vec<super::hooks::JsonExpectation>,
    #[serde(default = "default_check_timeout")]
    pub timeout: Duration,
    /// How many times the check is tried before it counts as failed.
    #[serde(default = "default_check_attempts")]
    pub attempts: u32,
}

fn default_method() -> String {
    "GET".to_owned()
}
fn default_expect_status() -> u16 {
    200
}
fn default_check_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_check_attempts() -> u32 {
    3
}

/// How each step is judged.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisSpec {
    /// Evaluation cadence inside every step; also the query window `{{ interval }}`
    /// unless `window` is set.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// How far back each query looks (`{{ interval }}` in templates); default: the
    /// interval. Prometheus's `rate()` needs two scrapes inside the window, so with an
    /// interval shorter than about three scrape intervals, set a longer window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<Box<PrometheusSpec>>,
    /// Fewer canary requests than this in the window: Inconclusive, not Pass.
    #[serde(default)]
    pub min_requests: u64,
    /// What is judged at every evaluation (at least one criterion each).
    pub metrics: Vec<MetricSpec>,
    /// Consecutive failed evaluations tolerated; the next one triggers `onFailure`.
    #[serde(default)]
    pub failure_limit: u32,
    /// Consecutive inconclusive evaluations tolerated; the next one triggers `onInconclusive`.
    #[serde(default = "default_inconclusive_limit")]
    pub inconclusive_limit: u32,
    /// What too many inconclusive evaluations do: `rollback` (default) or `pause`.
    #[serde(default)]
    pub on_inconclusive: OnInconclusive,
    /// A step whose sequential metrics all showed the canary no worse than stable (and
    /// whose other metrics passed) advances before its hold ends. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub advance_early: bool,
    /// Variables available to query templates as `{{ vars.NAME }}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// The Prometheus labels that tell stable's series from the canary's in the built-in
    /// templates, e.g. `{stable: {destination_workload: myapp-blue}, canary: {…}}`.
    /// Replaces the version matcher the router implies (see docs/metrics.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_labels: Option<Box<TargetLabels>>,
    /// A query template (`{{ target.* }}`, `{{ interval }}`) counting a target's requests
    /// in the window: the canary's count for `minRequests` when the metrics are custom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<String>,
    /// With a `testRoute`, a step at weight 0 is judged on the test route's traffic (the
    /// canary's requests all come from it; stable's are the rest) instead of passing on
    /// its hold alone. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub judge_test_route: bool,
}

/// Prometheus label matchers (label name to exact value) per target; both sides name
/// the same labels.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetLabels {
    /// The labels and values that select stable's series, e.g. `{version: blue}`.
    pub stable: BTreeMap<String, String>,
    /// The same labels with the canary's values, e.g. `{version: green}`.
    pub canary: BTreeMap<String, String>,
}

impl AnalysisSpec {
    /// The range every query looks back over: `window`, else `interval`.
    pub fn query_window(&self) -> Duration {
        self.window.unwrap_or(self.interval)
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_inconclusive_limit() -> u32 {
    4
}

/// Where the analysis queries go: a Prometheus `address`, or a `provider` the daemon's
/// operator configured by name. Set exactly one of the two.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusSpec {
    /// URL of the Prometheus to query, e.g. `http://prometheus.monitoring:9090`; no
    /// credentials in it (use `auth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Name of a Prometheus provider configured on the daemon (`--prometheus-providers`):
    /// its address, credentials and CA are the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default = "default_prometheus_timeout")]
    pub timeout: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<PrometheusAuth>,
    /// PEM file of a CA that signs the Prometheus server certificate (`shiftgate run`
    /// only: the daemon refuses files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// A CA bundle (PEM) from a Secret in the policy's own namespace (daemon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

fn default_prometheus_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Credentials for Prometheus, never written into the policy itself: from a Secret in
/// the policy's namespace (`…SecretRef`, the daemon), or from the user's own files and
/// environment (`…File`, `…Env`, `shiftgate run` only).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusAuth {
    /// Path of a file holding the bearer token (`shiftgate run` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<String>,
    /// Name of an environment variable holding the bearer token (`shiftgate run` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_env: Option<String>,
    /// The bearer token, from a key of a Secret in the policy's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeyRef>,
    /// HTTP basic authentication: `username` and exactly one password source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// Path of a file holding the password (`shiftgate run` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    /// Name of an environment variable holding the password (`shiftgate run` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// The password, from a key of a Secret in the policy's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
}

/// One key of a Secret in the policy's own namespace. There is no namespace field on
/// purpose: a policy can only name Secrets beside it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key in the Secret's `data`.
    pub key: String,
}

/// One metric: a built-in template or a raw PromQL query, with at least one criterion
/// (`min`, `max`, or `compare` against stable).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSpec {
    /// Unique within the policy; shown in status, events and metrics.
    pub name: String,
    /// A built-in query template, e.g. `istio-error-rate`, `envoy-latency-p99`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Raw PromQL with `{{ … }}` variables; evaluated for the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Raw PromQL for the stable side, needed by `compare` with a raw `query`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_query: Option<String>,
    /// The canary value must be at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The canary value must be at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The canary must not be worse than stable by more than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<CompareSpec>,
    /// How `compare` is judged: `sequential` (default with `compare`) or `threshold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<Box<super::judge::JudgeSpec>>,
    /// Count queries of a raw `query` for the sequential judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<Box<super::judge::CountsSpec>>,
}

impl MetricSpec {
    /// The sequential judge's parameters when this metric's comparison is judged
    /// sequentially (`compare` set, `judge` not `threshold`).
    pub fn sequential(&self) -> Option<super::judge::SequentialSpec> {
        self.compare.as_ref()?;
        match self.judge.as_deref() {
            Some(super::judge::JudgeSpec::Threshold | super::judge::JudgeSpec::MannWhitney(_)) => {
                None
            }
            Some(super::judge::JudgeSpec::Sequential(s)) => Some(*s),
            None => Some(super::judge::SequentialSpec::default()),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompareSpec {
    /// Fail when canary − stable > maxIncrease (absolute, in the metric's unit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_increase: Option<f64>,
    /// Fail when canary / stable > maxRatio (relative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ratio: Option<f64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub enum OnFailure {
    /// Put every request back on stable in one write.
    #[default]
    Rollback,
    /// Freeze at the current weight and alert.
    Hold,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub enum OnInconclusive {
    #[default]
    Rollback,
    /// Stay at the current weight until an operator decides.
    Pause,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub enum OnDrift {
    /// Stop moving traffic and report; an operator resumes.
    #[default]
    Pause,
    /// Write the managed weights back.
    Reassert,
}

/// A deployment window: `allow` windows say when traffic may move (if any is given,
/// traffic moves only inside one); `deny` windows say when it must not.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowSpec {
    /// `allow` (traffic moves only inside) or `deny` (traffic must not move inside).
    pub kind: WindowKind,
    /// Standard 5-field cron (minute hour day-of-month month day-of-week): when the
    /// window opens.
    pub schedule: String,
    /// How long the window stays open after each opening.
    pub duration: Duration,
    /// IANA time zone the schedule is read in (default UTC).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WindowKind {
    Allow,
    Deny,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrafanaSpec {
    /// Grafana's base URL, for the links to the rollout's dashboard.
    pub url: String,
    /// Dashboard uid.
    #[serde(default = "default_dashboard")]
    pub dashboard: String,
    /// Post annotations on each step, promotion and rollback (docs/notifications.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<super::notify::GrafanaAnnotations>,
}

fn default_dashboard() -> String {
    "shiftgate-rollout".to_owned()
}
