//! Reads of the objects policies route through (VirtualServices, Services,
//! DestinationRules) from a watch instead of a GET per evaluation.
//!
//! One watch per resource and namespace in use, started by the first read there:
//! policies name their objects by name, mostly in their own namespace, and a label- or
//! field-scoped watch per object would be one long-lived request per rollout (10,000
//! at 10,000 rollouts) where this is one per namespace. Until a namespace's watch has
//! listed everything (or when it cannot, e.g. without `list`/`watch` RBAC) reads fall
//! back to the API server, as before.
//!
//! The watch lags our own writes by milliseconds, so a write's answer is kept in place
//! of the watched copy until the watch shows that resourceVersion (at most
//! [`TRUST_OWN_WRITE_FOR`]). A read that is stale anyway is safe: every write tests the
//! resourceVersion it was planned on, and a refused write (409/422) makes the next
//! read of that object a GET.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::Value;
use tokio::time::Instant;

use crate::router::Version;

/// How long our own write stands in for a watch that has not shown it yet.
pub const TRUST_OWN_WRITE_FOR: Duration = Duration::from_secs(30);

/// An object kept as its JSON text and parsed when read. The daemon holds one routed
/// object per rollout, and a VirtualService as a `serde_json::Value` tree (a `BTreeMap`
/// node per JSON object) takes ~5 KiB where its text takes ~1 KiB; each evaluation parses
/// it once (46 µs for a 10-route VirtualService: docs/benchmarks.md, "Memory per rollout").
#[derive(Clone, Debug, PartialEq)]
pub struct JsonText(Arc<str>);

impl JsonText {
    pub fn of(value: &Value) -> Self {
        JsonText(Arc::from(value.to_string()))
    }

    pub fn parse(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

/// One watched object: its JSON and resourceVersion; `written_at` while it is our own
/// write that the watch has not shown yet.
#[derive(Clone)]
struct Entry {
    text: JsonText,
    version: Version,
    written_at: Option<Instant>,
}

/// The watched objects grouped by a key (e.g. DestinationRules by host), as their
/// text: a reader parses the few of its key. A parsed tree per object took ~4.6 KiB per
/// DestinationRule, the largest consumer of a sharded replica's heap
/// (docs/benchmarks.md, "DestinationRules indexed as text").
pub type Index = HashMap<String, Vec<JsonText>>;

impl Entry {
    /// What we wrote or read ourselves, which the watch has not shown yet.
    fn ours(text: JsonText, version: Version) -> Self {
        Entry {
            text,
            version,
            written_at: Some(Instant::now()),
        }
    }
}

struct Watched {
    ready: bool,
    /// The watch failed before it could list (e.g. no `list`/`watch` RBAC): readers do
    /// not wait for it.
    failed: bool,
    /// `true` once the watch has listed the namespace or failed to.
    settled: tokio::sync::watch::Sender<bool>,
    objects: HashMap<String, Entry>,
    /// Built on first use after a change, so that a reader looks its key up instead of
    /// scanning every object of the namespace on every evaluation.
    index: Option<Arc<Index>>,
}

impl Default for Watched {
    fn default() -> Self {
        Watched {
            ready: false,
            failed: false,
            settled: tokio::sync::watch::Sender::new(false),
            objects: HashMap::new(),
            index: None,
        }
    }
}

impl Watched {
    fn objects_mut(&mut self) -> &mut HashMap<String, Entry> {
        self.index = None;
        &mut self.objects
    }
}

/// `(group, version, plural, namespace)`.
type WatchKey = (String, String, String, String);

/// What of a watched object a cache keeps.
pub type Projection = fn(Value) -> Value;

/// The watched objects of every namespace in use, per resource.
pub struct ObjectCache {
    client: Client,
    keep: Option<Projection>,
    watches: Mutex<HashMap<WatchKey, Arc<RwLock<Watched>>>>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl ObjectCache {
    pub fn new(client: Client) -> Self {
        ObjectCache {
            client,
            keep: None,
            watches: Mutex::default(),
            tasks: Mutex::default(),
        }
    }

    /// Keeps only `keep(object)` of each watched object: for readers that need a few
    /// fields of objects they never write (one DestinationRule per service, thousands
    /// in a large namespace, each often carrying a long `trafficPolicy`).
    pub fn keeping(mut self, keep: Projection) -> Self {
        self.keep = Some(keep);
        self
    }

    /// The namespace's watch, started on first use (needs a tokio runtime).
    fn watched(&self, resource: &ApiResource, namespace: &str) -> Arc<RwLock<Watched>> {
        let key = (
            resource.group.clone(),
            resource.version.clone(),
            resource.plural.clone(),
            namespace.to_owned(),
        );
        let mut watches = lock(&self.watches);
        if let Some(watched) = watches.get(&key) {
            return watched.clone();
        }
        let watched = Arc::new(RwLock::new(Watched::default()));
        watches.insert(key, watched.clone());
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, resource);
        let task = tokio::spawn(follow(
            api,
            watched.clone(),
            resource.plural.clone(),
            self.keep,
        ));
        lock(&self.tasks).push(task.abort_handle());
        watched
    }

    /// The object as the watch shows it; `None`: ask the API server (the watch has not
    /// listed the namespace yet, or has no such object).
    pub fn get(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> Option<(JsonText, Version)> {
        let watched = self.watched(resource, namespace);
        let watched = read(&watched);
        if !watched.ready {
            return None;
        }
        watched
            .objects
            .get(name)
            .map(|e| (e.text.clone(), e.version.clone()))
    }

    /// Waits (at most `within`) for the namespace's watch to have listed it; `false`
    /// when it has not by then or cannot. For readers whose fallback is a LIST of the
    /// whole namespace: thousands of evaluations listing while the watch lists the same
    /// objects would keep the API server from ever answering the watch.
    pub async fn wait_listed(
        &self,
        resource: &ApiResource,
        namespace: &str,
        within: Duration,
    ) -> bool {
        let watched = self.watched(resource, namespace);
        let mut settled = {
            let watched = read(&watched);
            if watched.ready || watched.failed {
                return watched.ready;
            }
            watched.settled.subscribe()
        };
        let _ = tokio::time::timeout(within, settled.wait_for(|settled| *settled)).await;
        let ready = read(&watched).ready;
        ready
    }

    /// Every object of the namespace grouped by `key` (objects without one left out),
    /// built again only after the namespace's objects changed; `None`: the watch has
    /// not listed it yet. Every caller of one resource must use the same `key`.
    pub fn indexed(
        &self,
        resource: &ApiResource,
        namespace: &str,
        key: fn(&Value) -> Option<String>,
    ) -> Option<Arc<Index>> {
        let watched = self.watched(resource, namespace);
        {
            let watched = read(&watched);
            if !watched.ready {
                return None;
            }
            if let Some(index) = &watched.index {
                return Some(index.clone());
            }
        }
        let index = index_of(&mut write(&watched), key);
        Some(index)
    }

    /// We wrote `value` at `version`: read it until the watch shows it.
    pub fn wrote(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        text: JsonText,
        version: Version,
    ) {
        let watched = self.watched(resource, namespace);
        write(&watched)
            .objects_mut()
            .insert(name.to_owned(), Entry::ours(text, version));
    }

    /// We read the object from the API server (the cache missed it, or a decision
    /// wanted the live object): hold that until the watch shows it, as our own write,
    /// so the next evaluation does not send a GET again. Before the watch has listed
    /// the namespace there is nothing to hold it in: its list will have it.
    pub fn fetched(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        text: JsonText,
        version: Version,
    ) {
        let watched = self.watched(resource, namespace);
        let mut watched = write(&watched);
        if !watched.ready
            || watched
                .objects
                .get(name)
                .is_some_and(|e| e.version == version)
        {
            return;
        }
        watched
            .objects_mut()
            .insert(name.to_owned(), Entry::ours(text, version));
    }

    /// What we have of the object is stale (a write was refused): forget it, so reads
    /// go to the API server until the watch shows the object again.
    pub fn forget(&self, resource: &ApiResource, namespace: &str, name: &str) {
        let watched = self.watched(resource, namespace);
        write(&watched).objects_mut().remove(name);
    }
}

impl Drop for ObjectCache {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

/// Keeps `watched` up to date from the namespace's watch, for as long as the cache lives.
async fn follow(
    api: Api<DynamicObject>,
    watched: Arc<RwLock<Watched>>,
    plural: String,
    keep: Option<Projection>,
) {
    let mut relist: Option<HashMap<String, Entry>> = None;
    let events = watcher(api, watcher::Config::default().any_semantic()).default_backoff();
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                let mut watched = write(&watched);
                if !watched.ready {
                    watched.failed = true;
                    watched.settled.send_replace(true);
                }
                drop(watched);
                // Reads fall back to the API server until the watch works.
                tracing::debug!(resource = %plural, error = %error, "watch of routed objects failed; retrying");
                continue;
            }
        };
        match event {
            watcher::Event::Init => relist = Some(HashMap::new()),
            watcher::Event::InitApply(object) => {
                if let (Some(relist), Some((name, entry))) =
                    (relist.as_mut(), entry_of(object, keep))
                {
                    relist.insert(name, entry);
                }
            }
            watcher::Event::InitDone => {
                let mut watched = write(&watched);
                let listed = relist.take().unwrap_or_default();
                let held = std::mem::take(watched.objects_mut());
                *watched.objects_mut() = relisted(held, listed, Instant::now());
                watched.ready = true;
                watched.failed = false;
                watched.settled.send_replace(true);
            }
            watcher::Event::Apply(object) => {
                let Some((name, entry)) = entry_of(object, keep) else {
                    continue;
                };
                let mut watched = write(&watched);
                let older = watched
                    .objects
                    .get(&name)
                    .is_some_and(|own| shadows(own, &entry.version, Instant::now()));
                if !older {
                    watched.objects_mut().insert(name, entry);
                }
            }
            watcher::Event::Delete(object) => {
                if let Some(name) = object.metadata.name.as_deref() {
                    write(&watched).objects_mut().remove(name);
                }
            }
        }
    }
}

/// The objects grouped by `key`, kept until they change.
fn index_of(watched: &mut Watched, key: fn(&Value) -> Option<String>) -> Arc<Index> {
    if let Some(index) = &watched.index {
        return index.clone();
    }
    let mut index = Index::new();
    for entry in watched.objects.values() {
        // Our own text: it parses. Were it not to, the object is left out as one
        // without a key is, and a reader finds no rule rather than a wrong one.
        let Ok(value) = entry.text.parse() else {
            continue;
        };
        if let Some(k) = key(&value) {
            index.entry(k).or_default().push(entry.text.clone());
        }
    }
    let index = Arc::new(index);
    watched.index = Some(index.clone());
    index
}

/// Whether `own`, our write (or read) the watch has not shown yet, stands in for a
/// watched copy at `seen`. Events come in order, and a list is older than a write made
/// while it was being read: while our version is not shown, another one is older.
fn shadows(own: &Entry, seen: &Version, now: Instant) -> bool {
    own.written_at
        .is_some_and(|at| now.saturating_duration_since(at) < TRUST_OWN_WRITE_FOR)
        && &own.version != seen
}

/// The objects after a re-list: what it listed, except where we hold a write it does
/// not show yet. A re-list is read page by page while we keep writing; taking it
/// whole would hand the next evaluation the route from before its own write.
fn relisted(
    mut held: HashMap<String, Entry>,
    listed: HashMap<String, Entry>,
    now: Instant,
) -> HashMap<String, Entry> {
    listed
        .into_iter()
        .map(|(name, entry)| match held.remove(&name) {
            Some(own) if shadows(&own, &entry.version, now) => (name, own),
            _ => (name, entry),
        })
        .collect()
}

fn entry_of(object: DynamicObject, keep: Option<Projection>) -> Option<(String, Entry)> {
    let name = object.metadata.name.clone()?;
    let version = Version(object.metadata.resource_version.clone()?);
    let value = into_json(object).ok()?;
    let value = match keep {
        Some(keep) => keep(value),
        None => value,
    };
    Some((
        name,
        Entry {
            text: JsonText::of(&value),
            version,
            written_at: None,
        },
    ))
}

/// The object as the JSON the API server sent, as `serde_json::to_value` would make it,
/// but moving its body instead of serializing it again (only the metadata is).
pub fn into_json(object: DynamicObject) -> Result<Value, serde_json::Error> {
    let DynamicObject {
        types,
        metadata,
        data,
    } = object;
    let mut json = match data {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    if let Some(types) = types {
        json.insert("apiVersion".to_owned(), Value::String(types.api_version));
        json.insert("kind".to_owned(), Value::String(types.kind));
    }
    json.insert(
        "metadata".to_owned(),
        serde_json::to_value(without_bookkeeping(metadata))?,
    );
    Ok(Value::Object(json))
}

/// The annotation `kubectl apply` keeps a whole copy of the object in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Metadata without what the API server and kubectl keep for themselves
/// (`managedFields`, kubectl's last-applied copy): often larger than the rest of the
/// object, never read by shiftgate, and held once per cached object.
pub fn without_bookkeeping(
    mut metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    metadata.managed_fields = None;
    if let Some(annotations) = metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
    metadata
}

// Plain maps stay usable after a panic elsewhere.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[path = "watch_cache_tests.rs"]
mod tests;
