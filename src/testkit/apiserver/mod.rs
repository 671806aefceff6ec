//! An in-process Kubernetes API server for tests: the REST semantics shiftgate relies
//! on, faithful to the real server, with fault injection. The real `kube::Client`
//! talks to it over HTTP on `127.0.0.1`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use shiftgate::testkit::apiserver::{Fault, FaultKind, ResourceRef, TestApiServer};
//! let server = TestApiServer::start().await?;          // 127.0.0.1, a free port
//! let client = server.client()?;                       // kube::Client, namespace "default"
//! let vs = ResourceRef::new("networking.istio.io", "v1", "virtualservices");
//! server.put_object(&vs, serde_json::json!({
//!     "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
//!     "metadata": { "name": "checkout", "namespace": "shop" }, "spec": { "http": [] }
//! }))?;
//! server.inject(Fault::new("PATCH", "/virtualservices/checkout", FaultKind::Status(409), 1));
//! // … exercise the code under test with `client` …
//! let patches = server.requests_matching("PATCH", "/virtualservices/");
//! # let _ = (client, patches); Ok(()) }
//! ```
//!
//! Synchronous tests (e.g. ones that run the built binary) use
//! [`TestApiServer::start_background`], which serves from its own thread and runtime.
//! Dropping the server stops it. What it covers and what it does not is in
//! docs/kubernetes.md, `## Test API server`.

mod errors;
mod faults;
mod handlers;
mod meta;
mod patch;
mod path;
mod scale;
mod selector;
mod store;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use errors::ApiError;
pub use faults::{Fault, FaultKind};
pub use path::{GroupResource, ResourcePath};
use store::{ObjectKey, Store, Target};

/// Tunables of the test server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// How often a watch that asked for bookmarks gets one (the real server: about a
    /// minute; shorter here so tests see them).
    pub bookmark_interval: Duration,
    /// Events kept for watches to replay; older resourceVersions get 410 Expired.
    pub history_limit: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            bookmark_interval: Duration::from_secs(1),
            history_limit: 10_000,
        }
    }
}

/// One request as the server received it, for asserting bodies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, e.g. `/apis/shiftgate.dev/v1alpha1/namespaces/shop/rolloutpolicies/a/status?fieldManager=shiftgate`.
    pub path: String,
    pub content_type: Option<String>,
    pub body: String,
}

impl RecordedRequest {
    /// The body parsed as JSON (`None` when empty or not JSON).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// A resource type addressed by group, version and plural (`""` for the core group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRef {
    pub group: String,
    pub version: String,
    pub plural: String,
}

impl ResourceRef {
    pub fn new(group: &str, version: &str, plural: &str) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            plural: plural.to_owned(),
        }
    }

    /// The resource of a static kube type, e.g. `ResourceRef::of::<RolloutPolicy>()`.
    pub fn of<K: kube::Resource<DynamicType = ()>>() -> Self {
        Self::new(&K::group(&()), &K::version(&()), &K::plural(&()))
    }

    pub fn from_api_resource(resource: &kube::core::ApiResource) -> Self {
        Self::new(&resource.group, &resource.version, &resource.plural)
    }

    fn path(&self, namespace: Option<&str>, name: Option<&str>) -> ResourcePath {
        ResourcePath {
            group_resource: GroupResource::new(&self.group, &self.plural),
            version: self.version.clone(),
            namespace: namespace.filter(|ns| !ns.is_empty()).map(str::to_owned),
            name: name.map(str::to_owned),
            subresource: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TestServerError {
    #[error("cannot start the test api server on 127.0.0.1: {0}")]
    Start(#[source] std::io::Error),
    #[error("the test api server thread stopped before it was serving")]
    ThreadGone,
}

/// State shared by the handle and the connection tasks. Locks are never held across
/// an await.
pub(crate) struct Shared {
    store: Mutex<Store>,
    faults: Mutex<faults::FaultList>,
    requests: Mutex<Vec<RecordedRequest>>,
    options: ServerOptions,
    /// Bumped to end every open watch ([`TestApiServer::end_watches`]).
    watches_ended: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn faults(&self) -> MutexGuard<'_, faults::FaultList> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn requests(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

enum Runner {
    Task(tokio::task::JoinHandle<()>),
    Thread {
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

/// A running test API server. Dropping it stops serving and ends open watches.
pub struct TestApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runner: Runner,
}

impl TestApiServer {
    /// Serves on the current tokio runtime.
    pub async fn start() -> Result<Self, TestServerError> {
        Self::start_with(ServerOptions::default()).await
    }

    pub async fn start_with(options: ServerOptions) -> Result<Self, TestServerError> {
        let shared = Arc::new(new_shared(options));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(TestServerError::Start)?;
        let addr = listener.local_addr().map_err(TestServerError::Start)?;
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self {
            addr,
            shared,
            runner: Runner::Task(task),
        })
    }

    /// Serves from a thread with its own runtime: for synchronous tests, and for tests
    /// whose own runtime blocks (e.g. waiting on a child process).
    pub fn start_background() -> Result<Self, TestServerError> {
        Self::start_background_with(ServerOptions::default())
    }

    pub fn start_background_with(options: ServerOptions) -> Result<Self, TestServerError> {
        let shared = Arc::new(new_shared(options));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread_shared = shared.clone();
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match TcpListener::bind("127.0.0.1:0").await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(listener.local_addr());
                let task = tokio::spawn(accept_loop(listener, thread_shared));
                let _ = stop_rx.await;
                task.abort();
            });
        });
        let addr = ready_rx
            .recv()
            .map_err(|_| TestServerError::ThreadGone)?
            .map_err(TestServerError::Start)?;
        Ok(Self {
            addr,
            shared,
            runner: Runner::Thread {
                stop: Some(stop_tx),
                thread: Some(thread),
            },
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client configuration for this server, default namespace `default`.
    pub fn config(&self) -> kube::Config {
        let mut config = kube::Config::new(
            self.url()
                .parse()
                .unwrap_or_else(|_| axum::http::Uri::from_static("http://127.0.0.1")),
        );
        config.default_namespace = "default".to_owned();
        config
    }

    /// A real `kube::Client` talking to this server. Call it inside a tokio runtime.
    pub fn client(&self) -> Result<kube::Client, kube::Error> {
        kube::Client::try_from(self.config())
    }

    /// A kubeconfig (YAML) pointing at this server, with `namespace` as the context's.
    pub fn kubeconfig_yaml(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: shiftgate-test\n  cluster:\n    \
             server: {url}\nusers:\n- name: shiftgate-test\n  user: {{}}\ncontexts:\n- name: \
             shiftgate-test\n  context:\n    cluster: shiftgate-test\n    user: shiftgate-test\n    \
             namespace: {namespace}\ncurrent-context: shiftgate-test\n",
            url = self.url()
        )
    }

    /// Writes [`Self::kubeconfig_yaml`] to `dir/kubeconfig` and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path, namespace: &str) -> std::io::Result<PathBuf> {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, self.kubeconfig_yaml(namespace))?;
        Ok(path)
    }

    /// Makes matching requests misbehave (see [`Fault`]).
    pub fn inject(&self, fault: Fault) {
        self.shared.faults().push(fault);
    }

    pub fn clear_faults(&self) {
        self.shared.faults().clear();
    }

    /// Uses left over all injected faults (0: every fault fired as often as asked).
    pub fn faults_remaining(&self) -> u32 {
        self.shared.faults().remaining()
    }

    /// Every request received so far, in order (faulted ones included).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests().clone()
    }

    /// Requests with this method (`"*"`: any) whose path-and-query contains `path_contains`.
    pub fn requests_matching(&self, method: &str, path_contains: &str) -> Vec<RecordedRequest> {
        self.shared
            .requests()
            .iter()
            .filter(|r| (method == "*" || r.method == method) && r.path.contains(path_contains))
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        self.shared.requests().clear();
    }

    /// The latest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().revision()
    }

    /// Every committed version of one object still in the watch history, oldest first.
    /// Unlike a client-side log, it includes a write whose writer died before the reply.
    pub fn versions_of(
        &self,
        resource: &ResourceRef,
        namespace: Option<&str>,
        name: &str,
    ) -> Vec<Value> {
        let path = resource.path(namespace, Some(name));
        self.shared.store().versions_of(&path, name)
    }

    /// Ends every open watch stream cleanly, as an API server restart does; the clients
    /// watch again (from their last resourceVersion).
    pub fn end_watches(&self) {
        self.shared
            .watches_ended
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Forgets the watch history: a watch from any earlier resourceVersion gets 410.
    pub fn compact_history(&self) {
        self.shared.store().compact();
    }

    /// Declares (or removes) a `/status` subresource for a resource type. Built-ins
    /// with one, RolloutPolicies and Istio's CRDs have it by default.
    pub fn set_status_subresource(&self, group: &str, plural: &str, enabled: bool) {
        self.shared
            .store()
            .declare_status_subresource(GroupResource::new(group, plural), enabled);
    }

    /// Test setup: creates the object, or replaces it unconditionally, status included,
    /// and returns it as stored. `metadata.namespace` selects the namespace (none:
    /// cluster-scoped). Watches see the change like any other.
    pub fn put_object(&self, resource: &ResourceRef, object: Value) -> Result<Value, ApiError> {
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::bad_request("put_object needs metadata.name".into()))?;
        let path = resource.path(namespace.as_deref(), Some(&name));
        let mut store = self.shared.store();
        let key = ObjectKey {
            group_resource: path.group_resource.clone(),
            namespace: namespace.clone().unwrap_or_default(),
            name: name.clone(),
        };
        let mut body = object.clone();
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        let stored = match store.raw(&key) {
            None => store.create(&path, body, false)?,
            Some(_) => store.write(&path, &name, body, Target::Main)?,
        };
        match object.get("status") {
            Some(status) if store.has_status_subresource(&path.group_resource) => {
                let mut with_status = stored;
                with_status["status"] = status.clone();
                if let Some(meta) = with_status
                    .get_mut("metadata")
                    .and_then(Value::as_object_mut)
                {
                    meta.remove("resourceVersion");
                }
                store.write(&path, &name, with_status, Target::Status)
            }
            _ => Ok(stored),
        }
    }

    /// The stored object, as served through `resource`'s version.
    pub fn get_object(
        &self,
        resource: &ResourceRef,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let path = resource.path(namespace, Some(name));
        self.shared.store().get(&path, name).ok()
    }

    /// Test setup: deletes the object (finalizers are honoured, like a real DELETE).
    pub fn delete_object(
        &self,
        resource: &ResourceRef,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let path = resource.path(namespace, Some(name));
        self.shared.store().delete(&path, name, &Value::Null, false)
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        match &mut self.runner {
            Runner::Task(task) => task.abort(),
            Runner::Thread { stop, thread } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
        }
    }
}

fn new_shared(options: ServerOptions) -> Shared {
    Shared {
        store: Mutex::new(Store::new(options.history_limit)),
        faults: Mutex::new(faults::FaultList::default()),
        requests: Mutex::new(Vec::new()),
        options,
        watches_ended: tokio::sync::watch::Sender::new(0),
    }
}

/// Accepts connections until aborted; aborting drops the JoinSet, which aborts every
/// connection (and so every open watch).
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::task::yield_now().await;
            continue;
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| serve(shared.clone(), request));
            // A dropped or reset connection is the client's business.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

/// Returned by the service to make hyper close the connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault")]
struct DroppedConnection;

async fn serve(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, DroppedConnection> {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(Body::new(body), usize::MAX).await {
        Ok(bytes) => bytes,
        Err(_) => return Err(DroppedConnection),
    };
    let method = parts.method.clone();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    shared.requests().push(RecordedRequest {
        method: method.to_string(),
        path: path_and_query.clone(),
        content_type: content_type.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let fault = shared.faults().take(method.as_str(), &path_and_query);
    match fault {
        Some(FaultKind::Status(code)) => {
            return Ok(handlers::error_response(&ApiError::injected(code)))
        }
        Some(FaultKind::DropConnection) => return Err(DroppedConnection),
        Some(FaultKind::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    let query: HashMap<String, String> =
        axum::extract::Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default();
    Ok(handlers::handle(
        &shared,
        &method,
        parts.uri.path(),
        &query,
        content_type.as_deref(),
        &body,
    ))
}
