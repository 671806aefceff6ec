//! The routers and metric source a reconcile drives, and the wrappers that count and
//! time what they do.

use super::*;

/// Builds the router a policy's `spec.router` names.
pub trait RouterFactory: Send + Sync {
    fn build(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
    ) -> Result<Arc<dyn TrafficRouter>, RouterError>;
}

/// Istio VirtualServices and Services through the cluster's API server. Envoy is a
/// local router: a policy naming it is refused with a clear condition.
pub struct KubeRouters {
    client: Client,
    /// The routed objects, watched per namespace in use (docs/architecture.md).
    cache: Arc<crate::router::watch_cache::ObjectCache>,
}

impl KubeRouters {
    pub fn new(client: Client) -> Self {
        KubeRouters {
            cache: Arc::new(crate::router::watch_cache::ObjectCache::new(client.clone())),
            client,
        }
    }
}

impl RouterFactory for KubeRouters {
    fn build(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
    ) -> Result<Arc<dyn TrafficRouter>, RouterError> {
        if let Some(istio) = &spec.router.istio {
            let target = IstioTarget::from_policy(
                &policy.name,
                &policy.namespace,
                istio,
                spec.test_route.as_deref(),
            );
            return Ok(Arc::new(
                IstioRouter::new(self.client.clone(), target).with_cache(self.cache.clone()),
            ));
        }
        if let Some(service) = &spec.router.service {
            let target = ServiceTarget::from_policy(&policy.namespace, service);
            return Ok(Arc::new(
                ServiceRouter::new(self.client.clone(), target).with_cache(self.cache.clone()),
            ));
        }
        Err(RouterError::Invalid(format!(
            "policy {}/{}: spec.router.envoy drives a local Envoy and is not supported in a \
             cluster; use spec.router.istio or spec.router.service, or run it with `shiftgate run`",
            policy.namespace, policy.name
        )))
    }
}

/// Counts router writes by result.
pub(super) struct CountingRouter {
    pub(super) inner: Arc<dyn TrafficRouter>,
    pub(super) metrics: Arc<Metrics>,
}

#[async_trait]
impl TrafficRouter for CountingRouter {
    async fn read(&self) -> Result<LiveRoute, RouterError> {
        self.inner.read().await
    }

    async fn read_fresh(&self) -> Result<LiveRoute, RouterError> {
        self.inner.read_fresh().await
    }

    async fn apply(&self, expect: &Version, desired: ManagedRoute) -> Result<Version, RouterError> {
        let result = self.inner.apply(expect, desired).await;
        self.metrics.router_write(WriteResult::from_router(&result));
        result
    }
}

/// Times the metric queries of one evaluation.
pub(super) struct TimedMetrics {
    pub(super) inner: Arc<dyn MetricSource>,
    pub(super) metrics: Arc<Metrics>,
}

#[async_trait]
impl MetricSource for TimedMetrics {
    fn admit(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
    ) -> Result<(), crate::metrics::providers::AccessError> {
        self.inner.admit(policy, spec)
    }

    async fn observe(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
        at: Timestamp,
        counts_since: Option<Timestamp>,
    ) -> AnalysisInput {
        let started = Instant::now();
        let input = self.inner.observe(policy, spec, at, counts_since).await;
        self.metrics
            .observe_prometheus_query(started.elapsed().as_secs_f64());
        input
    }

    async fn scrape_phase(
        &self,
        policy: &PolicyRef,
        spec: &RolloutSpec,
        at: Timestamp,
    ) -> Option<crate::metrics::freshness::ScrapePhase> {
        self.inner.scrape_phase(policy, spec, at).await
    }

    fn forget(&self, policy: &PolicyRef) {
        self.inner.forget(policy);
    }
}
