//! The Kubernetes side of the Istio router: a read (from the daemon's watch cache, or
//! one GET), one conditional JSON Patch to write planned on the object read, each call
//! under a timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use json_patch::Patch as JsonPatch;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::Client;
use serde_json::Value;

use super::{drift, live_route, locate, plan, IstioTarget};
use crate::router::watch_cache::{into_json, JsonText, ObjectCache};
use crate::router::{LiveRoute, ManagedRoute, RouterError, TrafficRouter, Version};

/// The field manager shiftgate writes as.
pub const FIELD_MANAGER: &str = "shiftgate";

/// How long one API call may take unless configured otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Drives the managed routes of one policy's VirtualService.
pub struct IstioRouter {
    object: RoutedObject,
    target: IstioTarget,
    call_timeout: Duration,
}

impl IstioRouter {
    pub fn new(client: Client, target: IstioTarget) -> Self {
        let gvk = GroupVersionKind::gvk(
            "networking.istio.io",
            target.api_version.as_str(),
            "VirtualService",
        );
        let resource = ApiResource::from_gvk_with_plural(&gvk, "virtualservices");
        IstioRouter {
            object: RoutedObject::new(client, resource, &target.namespace, &target.name),
            target,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }

    /// Reads the VirtualService from `cache` (the daemon's namespace watches).
    pub fn with_cache(mut self, cache: Arc<ObjectCache>) -> Self {
        self.object = self.object.with_cache(cache);
        self
    }

    /// Bounds every API call (a slow API server is `Unavailable`, never waited on forever).
    pub fn with_call_timeout(mut self, call_timeout: Duration) -> Self {
        self.call_timeout = call_timeout;
        self
    }

    pub fn target(&self) -> &IstioTarget {
        &self.target
    }

    fn what(&self) -> String {
        format!(
            "virtualservice {} (networking.istio.io/{})",
            self.target.object_ref(),
            self.target.api_version.as_str()
        )
    }
}

#[async_trait]
impl TrafficRouter for IstioRouter {
    async fn read(&self) -> Result<LiveRoute, RouterError> {
        let read = self.object.read(self.call_timeout, &self.what()).await?;
        self.live(read)
    }

    async fn read_fresh(&self) -> Result<LiveRoute, RouterError> {
        let read = self
            .object
            .read_from_server(self.call_timeout, &self.what())
            .await?;
        self.live(read)
    }

    async fn apply(&self, expect: &Version, desired: ManagedRoute) -> Result<Version, RouterError> {
        let what = self.what();
        let (value, version) = self
            .object
            .read_for_write(expect, self.call_timeout, &what)
            .await?;
        let patch = plan(&value, &self.target, desired)?;
        if patch.0.is_empty() {
            return Ok(version);
        }
        self.object.patch(&patch, self.call_timeout, &what).await
    }
}

impl IstioRouter {
    /// The managed route in a read VirtualService.
    fn live(&self, (value, version): (Value, Version)) -> Result<LiveRoute, RouterError> {
        let location = locate(&value, &self.target)?;
        let route = live_route(&location, &self.target)?;
        if let Some(drift) = drift(&location, &self.target) {
            tracing::warn!(
                namespace = %self.target.namespace,
                name = %self.target.name,
                canary_weight = route.canary_weight,
                error = %drift,
                "managed routes disagree; reporting the highest canary weight"
            );
        }
        Ok(LiveRoute { route, version })
    }
}

/// kube-core 5 takes json-patch 4 values; the wire format is the same RFC 6902 document.
pub(crate) fn to_kube_patch(
    patch: &JsonPatch,
    what: &str,
) -> Result<json_patch_for_kube::Patch, RouterError> {
    serde_json::to_value(patch)
        .and_then(serde_json::from_value)
        .map_err(|error| {
            RouterError::Invalid(format!(
                "the patch for {what} could not be encoded: {error}; this is a bug in shiftgate"
            ))
        })
}

/// Reads one object as plain JSON (never a typed round-trip, so unknown fields survive)
/// with the resourceVersion its next conditional write must be tested against.
pub(crate) async fn get_json(
    api: &Api<DynamicObject>,
    name: &str,
    limit: Duration,
    what: &str,
) -> Result<(Value, Version), RouterError> {
    let object = call(limit, what, "read", api.get(name)).await?;
    let version =
        object
            .metadata
            .resource_version
            .clone()
            .ok_or_else(|| RouterError::Unavailable {
                message: format!("{what} came back without a resourceVersion; retrying"),
                source: None,
            })?;
    let value = into_json(object).map_err(|error| RouterError::Unavailable {
        message: format!("{what} could not be re-encoded as json"),
        source: Some(Box::new(error)),
    })?;
    Ok((value, Version(version)))
}

/// Sends one JSON Patch (its `test` ops make it conditional) as field manager `shiftgate`
/// and returns the object as written, with the resourceVersion the write produced.
pub(crate) async fn patch_json_object(
    api: &Api<DynamicObject>,
    name: &str,
    patch: &JsonPatch,
    limit: Duration,
    what: &str,
) -> Result<(Value, Version), RouterError> {
    let patch = to_kube_patch(patch, what)?;
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let written = call(
        limit,
        what,
        "patch",
        api.patch(name, &params, &Patch::Json::<()>(patch)),
    )
    .await?;
    let version = written
        .metadata
        .resource_version
        .clone()
        .map(Version)
        .ok_or_else(|| RouterError::Unavailable {
            message: format!("{what} was patched but the reply has no resourceVersion"),
            source: None,
        })?;
    // The reply is only a cache entry: without it, the next read is a GET.
    let value = into_json(written).unwrap_or(Value::Null);
    Ok((value, version))
}

/// One routed object's reads and conditional writes: reads from the watch cache when
/// there is one (else a GET), and the write planned on the object last read, without
/// reading it again. A refused write makes the next read a GET.
pub(crate) struct RoutedObject {
    api: Api<DynamicObject>,
    resource: ApiResource,
    namespace: String,
    name: String,
    cache: Option<Arc<ObjectCache>>,
    /// The object last read or written, as text: what the next write is planned on.
    last: Mutex<Option<(JsonText, Version)>>,
    reread: AtomicBool,
}

impl RoutedObject {
    pub(crate) fn new(client: Client, resource: ApiResource, namespace: &str, name: &str) -> Self {
        RoutedObject {
            api: Api::namespaced_with(client, namespace, &resource),
            resource,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            cache: None,
            last: Mutex::new(None),
            reread: AtomicBool::new(false),
        }
    }

    pub(crate) fn with_cache(mut self, cache: Arc<ObjectCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    fn remember(&self, read: Option<(JsonText, Version)>) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = read;
    }

    /// The object and its resourceVersion.
    pub(crate) async fn read(
        &self,
        limit: Duration,
        what: &str,
    ) -> Result<(Value, Version), RouterError> {
        let fresh = self.reread.swap(false, Ordering::Relaxed);
        let cached = match &self.cache {
            Some(cache) if !fresh => cache.get(&self.resource, &self.namespace, &self.name),
            _ => None,
        };
        // The cache's text is our own serialization; were it not to parse, the API
        // server's copy is read instead.
        match cached.and_then(|(text, version)| Some((text.parse().ok()?, text, version))) {
            Some((value, text, version)) => {
                self.remember(Some((text, version.clone())));
                Ok((value, version))
            }
            None => self.read_from_server(limit, what).await,
        }
    }

    /// The object as the API server has it now (a GET), which the cache then holds
    /// until its watch shows that version: a cache that missed the object (after a
    /// refused write, or a lagging watch) is not asked again on every evaluation.
    pub(crate) async fn read_from_server(
        &self,
        limit: Duration,
        what: &str,
    ) -> Result<(Value, Version), RouterError> {
        let (value, version) = get_json(&self.api, &self.name, limit, what).await?;
        let text = JsonText::of(&value);
        if let Some(cache) = &self.cache {
            cache.fetched(
                &self.resource,
                &self.namespace,
                &self.name,
                text.clone(),
                version.clone(),
            );
        }
        self.remember(Some((text, version.clone())));
        Ok((value, version))
    }

    /// The object to plan a write on, at `expect`: the one last read when it is that
    /// version, else read again (a different version is a conflict).
    pub(crate) async fn read_for_write(
        &self,
        expect: &Version,
        limit: Duration,
        what: &str,
    ) -> Result<(Value, Version), RouterError> {
        let last = self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some((text, version)) = last.filter(|(_, version)| version == expect) {
            if let Ok(value) = text.parse() {
                return Ok((value, version));
            }
        }
        let (value, version) = get_json(&self.api, &self.name, limit, what).await?;
        if &version != expect {
            self.reread.store(true, Ordering::Relaxed);
            return Err(RouterError::Conflict {
                what: format!(
                    "{what} is at resourceVersion {}, the decision was made at {}",
                    version.0, expect.0
                ),
            });
        }
        Ok((value, version))
    }

    /// Sends the conditional patch; the written object is what is read next.
    pub(crate) async fn patch(
        &self,
        patch: &JsonPatch,
        limit: Duration,
        what: &str,
    ) -> Result<Version, RouterError> {
        match patch_json_object(&self.api, &self.name, patch, limit, what).await {
            Ok((value, version)) => {
                if value.is_object() {
                    // One copy, shared by the cache and the next write's plan.
                    let text = JsonText::of(&value);
                    if let Some(cache) = &self.cache {
                        cache.wrote(
                            &self.resource,
                            &self.namespace,
                            &self.name,
                            text.clone(),
                            version.clone(),
                        );
                    }
                    self.remember(Some((text, version.clone())));
                } else {
                    self.remember(None);
                }
                Ok(version)
            }
            Err(error) => {
                self.remember(None);
                if matches!(error, RouterError::Conflict { .. }) {
                    self.reread.store(true, Ordering::Relaxed);
                    if let Some(cache) = &self.cache {
                        cache.forget(&self.resource, &self.namespace, &self.name);
                    }
                }
                Err(error)
            }
        }
    }
}

/// Runs one API call under `limit`, mapping its failure to what the reconciler should do.
pub(crate) async fn call<T>(
    limit: Duration,
    what: &str,
    verb: &str,
    request: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, RouterError> {
    match tokio::time::timeout(limit, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(classify(error, what, verb)),
        Err(elapsed) => Err(RouterError::Unavailable {
            message: format!(
                "{verb} {what}: no answer within {limit:?}; nothing is assumed about the live \
                 weights, retrying"
            ),
            source: Some(Box::new(elapsed)),
        }),
    }
}

/// 404: the object (or its API) does not exist — a human must fix it. 409 and 422 (a
/// failed `test` op): someone wrote in between — re-read and decide again. 5xx, 429 and
/// transport errors: the API server is unavailable.
pub(crate) fn classify(error: kube::Error, what: &str, verb: &str) -> RouterError {
    let kube::Error::Api(status) = &error else {
        return RouterError::Unavailable {
            message: format!("{verb} {what}: the api server could not be reached; retrying"),
            source: Some(Box::new(error)),
        };
    };
    let code = status.code;
    let detail = status.message.clone();
    match code {
        404 => RouterError::Invalid(format!(
            "{what} not found ({detail}); create it, or fix the policy's router reference \
             (name, namespace, apiVersion)"
        )),
        409 | 422 => RouterError::Conflict {
            what: format!("{verb} {what} was refused with {code} ({detail})"),
        },
        401 | 403 => RouterError::Invalid(format!(
            "{verb} {what} is not allowed ({code}: {detail}); grant shiftgate's service account \
             the verbs in deploy/ (get, patch)"
        )),
        _ => RouterError::Unavailable {
            message: format!("{verb} {what} failed with {code} ({detail}); retrying"),
            source: Some(Box::new(error)),
        },
    }
}
