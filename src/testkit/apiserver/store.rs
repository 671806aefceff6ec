//! The in-memory object store: one object per (group, resource, namespace, name), a
//! global monotonically increasing resourceVersion, metadata the server owns (uid,
//! creationTimestamp, generation, resourceVersion), the status subresource rule, and
//! a bounded event history that watches replay from.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::errors::ApiError;
use super::meta::{
    check_api_version, check_api_version_value, check_name, check_namespace, check_object,
    generated_suffix, in_scope, is_builtin_group, now_rfc3339, present, set_metadata,
    set_or_remove, take_metadata, uid, without_metadata,
};
use super::patch::{patched, Patched};
use super::path::{GroupResource, ResourcePath};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub group_resource: GroupResource,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it. `previous` lets a filtered watch turn a change that
/// moves an object into or out of its selector into ADDED or DELETED, like the real one.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub revision: u64,
    pub kind: EventKind,
    pub key: ObjectKey,
    pub object: Value,
    pub previous: Option<Value>,
}

/// A watch's beginning: events to send first, the live feed, the revision the
/// replay is consistent at.
pub type WatchStart = (
    Vec<Arc<StoredEvent>>,
    broadcast::Receiver<Arc<StoredEvent>>,
    u64,
);

/// One page of a list: at most `limit` objects after the `continue` token's key.
/// Unlike the real server, later pages see the current objects, not a snapshot; but
/// every page reports the first page's revision, as the real server's do, so a watch
/// started from the list replays whatever changed while it was paged (an object
/// created meanwhile before the token's key is in no page: the watch brings it).
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub limit: Option<usize>,
    /// (namespace, name) of the last object of the previous page.
    pub after: Option<(String, String)>,
    /// The revision of the list's first page (from the `continue` token).
    pub revision: Option<u64>,
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The main resource: with a status subresource declared, status is kept as stored.
    Main,
    /// `/status`: only status is taken from the request.
    Status,
}

/// The content types PATCH understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

pub struct Store {
    objects: BTreeMap<ObjectKey, Value>,
    revision: u64,
    history: VecDeque<Arc<StoredEvent>>,
    history_limit: usize,
    /// Watches from a revision below this cannot be served (410 Expired).
    compacted: u64,
    sender: broadcast::Sender<Arc<StoredEvent>>,
    kinds: HashMap<GroupResource, String>,
    status_subresources: HashSet<GroupResource>,
    next_uid: u64,
}

/// Resources whose status is a subresource on a real cluster (built-ins whose main
/// endpoint ignores status, and the CRDs shiftgate touches).
const DEFAULT_STATUS_SUBRESOURCES: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "services"),
    ("", "namespaces"),
    ("", "nodes"),
    ("", "persistentvolumeclaims"),
    ("", "replicationcontrollers"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("shiftgate.dev", "rolloutpolicies"),
    ("networking.istio.io", "virtualservices"),
    ("networking.istio.io", "destinationrules"),
    ("networking.istio.io", "gateways"),
];

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (sender, _) = broadcast::channel(4096);
        Self {
            objects: BTreeMap::new(),
            revision: 1,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted: 1,
            sender,
            kinds: HashMap::new(),
            status_subresources: DEFAULT_STATUS_SUBRESOURCES
                .iter()
                .map(|(g, r)| GroupResource::new(g, r))
                .collect(),
            next_uid: 1,
        }
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn declare_status_subresource(&mut self, gr: GroupResource, enabled: bool) {
        if enabled {
            self.status_subresources.insert(gr);
        } else {
            self.status_subresources.remove(&gr);
        }
    }

    /// Every version of one object still in the event history, oldest first (deletions
    /// excluded): what was committed, whether or not the writer saw the response.
    pub fn versions_of(&self, path: &ResourcePath, name: &str) -> Vec<Value> {
        let key = Self::key(path, name);
        self.history
            .iter()
            .filter(|e| e.key == key && e.kind != EventKind::Deleted)
            .map(|e| e.object.clone())
            .collect()
    }

    /// Forgets the event history: watches from any earlier revision get 410 Expired.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.revision;
    }

    fn key(path: &ResourcePath, name: &str) -> ObjectKey {
        ObjectKey {
            group_resource: path.group_resource.clone(),
            namespace: path.namespace.clone().unwrap_or_default(),
            name: name.to_owned(),
        }
    }

    pub fn kind_of(&self, gr: &GroupResource) -> Option<String> {
        self.kinds.get(gr).cloned()
    }

    pub fn has_status_subresource(&self, gr: &GroupResource) -> bool {
        self.status_subresources.contains(gr)
    }

    pub fn get(&self, path: &ResourcePath, name: &str) -> Result<Value, ApiError> {
        let key = Self::key(path, name);
        self.objects
            .get(&key)
            .map(|o| present(o, path))
            .ok_or_else(|| ApiError::not_found(&path.group_resource, name))
    }

    /// Objects of `path`'s resource (in its namespace, or everywhere), sorted by
    /// namespace and name, and the revision the list is consistent at.
    pub fn list(&self, path: &ResourcePath, keep: impl Fn(&Value) -> bool, page: &Page) -> Value {
        let mut selected = self
            .objects
            .iter()
            .filter(|(k, _)| in_scope(k, path))
            .filter(|(k, _)| {
                page.after
                    .as_ref()
                    .is_none_or(|(ns, name)| (&k.namespace, &k.name) > (ns, name))
            })
            .filter(|(_, o)| keep(o));
        let mut items = Vec::new();
        let mut last = None;
        while page.limit.is_none_or(|limit| items.len() < limit) {
            let Some((key, object)) = selected.next() else {
                break;
            };
            items.push(present(object, path));
            last = Some(key);
        }
        let more = selected.next().is_some();
        let kind = self
            .kinds
            .get(&path.group_resource)
            .map(|k| format!("{k}List"))
            .unwrap_or_else(|| "List".to_owned());
        let revision = page.revision.unwrap_or(self.revision);
        let mut metadata = json!({ "resourceVersion": revision.to_string() });
        if let (true, Some(last)) = (more, last) {
            metadata["continue"] = json!(format!("{revision}/{}/{}", last.namespace, last.name));
        }
        json!({
            "kind": kind,
            "apiVersion": path.api_version(),
            "metadata": metadata,
            "items": items,
        })
    }

    pub fn create(
        &mut self,
        path: &ResourcePath,
        body: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let gr = &path.group_resource;
        let Value::Object(mut object) = body else {
            return Err(ApiError::bad_request(
                "the request body is not a JSON object".into(),
            ));
        };
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| ApiError::bad_request("Object 'Kind' is missing in the body".into()))?;
        check_api_version(&object, path)?;
        let mut metadata = take_metadata(&mut object);
        let name = match metadata.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_owned(),
            _ => match metadata.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    format!("{prefix}{}", generated_suffix(self.next_uid))
                }
                _ => {
                    return Err(ApiError::invalid(
                        gr,
                        "",
                        "metadata.name: Required value: name or generateName is required".into(),
                    ))
                }
            },
        };
        check_name(gr, &name)?;
        check_namespace(&metadata, path)?;
        check_object(gr, &name, &object)?;
        let key = Self::key(path, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(gr, &name));
        }
        let revision = self.revision + 1;
        metadata.insert("name".into(), json!(name));
        if let Some(ns) = &path.namespace {
            metadata.insert("namespace".into(), json!(ns));
        }
        metadata.insert("uid".into(), json!(uid(self.next_uid)));
        metadata.insert("creationTimestamp".into(), json!(now_rfc3339()));
        metadata.insert("generation".into(), json!(1));
        metadata.insert("resourceVersion".into(), json!(revision.to_string()));
        metadata.remove("deletionTimestamp");
        object.insert("apiVersion".into(), json!(path.api_version()));
        object.insert("metadata".into(), Value::Object(metadata));
        if self.has_status_subresource(gr) {
            object.remove("status");
        }
        let object = Value::Object(object);
        if dry_run {
            return Ok(present(&object, path));
        }
        self.next_uid += 1;
        self.kinds.insert(gr.clone(), kind);
        self.commit(EventKind::Added, key, object.clone(), None);
        Ok(present(&object, path))
    }

    pub fn replace(
        &mut self,
        path: &ResourcePath,
        name: &str,
        body: Value,
        target: Target,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let key = Self::key(path, name);
        let old = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&path.group_resource, name))?;
        if body.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                body.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            )));
        }
        check_api_version_value(&body, path)?;
        // Custom resources refuse unconditional updates; built-ins allow them.
        let require_version = !is_builtin_group(&path.group_resource.group);
        self.update(path, key, &old, body, target, require_version, dry_run)
    }

    /// Test setup: an unconditional write of `body` to the main resource or status.
    pub fn write(
        &mut self,
        path: &ResourcePath,
        name: &str,
        body: Value,
        target: Target,
    ) -> Result<Value, ApiError> {
        let key = Self::key(path, name);
        let old = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&path.group_resource, name))?;
        self.update(path, key, &old, body, target, false, false)
    }

    #[allow(clippy::too_many_arguments)] // one request's parameters, passed through
    pub fn patch(
        &mut self,
        path: &ResourcePath,
        name: &str,
        kind: PatchKind,
        patch: Value,
        field_manager: Option<&str>,
        target: Target,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let gr = &path.group_resource;
        let key = Self::key(path, name);
        let old = self.objects.get(&key).cloned();
        let candidate = match patched(gr, name, old.as_ref(), kind, patch, field_manager)? {
            Patched::Update(candidate) => candidate,
            Patched::Create(body) => return self.create(path, body, dry_run),
        };
        let old = old.ok_or_else(|| ApiError::not_found(gr, name))?;
        self.update(path, key, &old, candidate, target, false, dry_run)
    }

    /// The one update path of PUT and PATCH: preconditions, server-owned metadata,
    /// the status rule, generation, no-op detection, finalizers.
    #[allow(clippy::too_many_arguments)] // one request's parameters, passed through
    fn update(
        &mut self,
        path: &ResourcePath,
        key: ObjectKey,
        old: &Value,
        candidate: Value,
        target: Target,
        require_version: bool,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let gr = &path.group_resource;
        let name = key.name.clone();
        let Value::Object(mut candidate) = candidate else {
            return Err(ApiError::bad_request(
                "the request body is not a JSON object".into(),
            ));
        };
        let old_version = old
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        match candidate
            .get("metadata")
            .and_then(|m| m.get("resourceVersion"))
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        {
            None if require_version => {
                return Err(ApiError::invalid(
                    gr,
                    &name,
                    "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
                        .into(),
                ))
            }
            Some(v) if Some(v) != old_version => return Err(ApiError::conflict(gr, &name)),
            _ => {}
        }
        if candidate
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .is_some_and(|n| n != name)
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object does not match the name on the URL ({name})"
            )));
        }
        let mut new = match target {
            Target::Status => {
                let mut new = old.clone();
                set_or_remove(&mut new, "status", candidate.remove("status"));
                new
            }
            Target::Main => {
                let mut metadata = take_metadata(&mut candidate);
                check_namespace(&metadata, path)?;
                check_object(gr, &name, &candidate)?;
                for owned in [
                    "name",
                    "namespace",
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "generation",
                    "resourceVersion",
                ] {
                    match old.pointer(&format!("/metadata/{owned}")) {
                        Some(v) => metadata.insert(owned.into(), v.clone()),
                        None => metadata.remove(owned),
                    };
                }
                for inherited in ["apiVersion", "kind"] {
                    if let Some(v) = old.get(inherited) {
                        candidate.insert(inherited.into(), v.clone());
                    }
                }
                candidate.insert("metadata".into(), Value::Object(metadata));
                let mut new = Value::Object(candidate);
                if self.has_status_subresource(gr) {
                    set_or_remove(&mut new, "status", old.get("status").cloned());
                }
                new
            }
        };
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let with_status = !self.has_status_subresource(gr);
        if without_metadata(&new, with_status) != without_metadata(old, with_status) {
            set_metadata(&mut new, "generation", json!(generation + 1));
        }
        if new == *old {
            return Ok(present(old, path));
        }
        let finalizers_done = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if dry_run {
            return Ok(present(&new, path));
        }
        if new.pointer("/metadata/deletionTimestamp").is_some() && finalizers_done {
            self.objects.remove(&key);
            set_metadata(
                &mut new,
                "resourceVersion",
                json!((self.revision + 1).to_string()),
            );
            self.commit(EventKind::Deleted, key, new.clone(), Some(old.clone()));
            return Ok(present(&new, path));
        }
        set_metadata(
            &mut new,
            "resourceVersion",
            json!((self.revision + 1).to_string()),
        );
        self.commit(EventKind::Modified, key, new.clone(), Some(old.clone()));
        Ok(present(&new, path))
    }

    /// DELETE: preconditions from the DeleteOptions body, then either marks the object
    /// for deletion (finalizers remain) or removes it.
    pub fn delete(
        &mut self,
        path: &ResourcePath,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let gr = &path.group_resource;
        let key = Self::key(path, name);
        let old = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(gr, name))?;
        for field in ["uid", "resourceVersion"] {
            let expected = options
                .pointer(&format!("/preconditions/{field}"))
                .and_then(Value::as_str);
            let actual = old
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_str);
            if let Some(expected) = expected {
                if Some(expected) != actual {
                    return Err(ApiError::precondition_failed(
                        gr,
                        name,
                        format!(
                            "Precondition failed: {field} in precondition: {expected}, {field} in object meta: {}",
                            actual.unwrap_or("")
                        ),
                    ));
                }
            }
        }
        let has_finalizers = old
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        let mut new = old.clone();
        if dry_run {
            return Ok(present(&new, path));
        }
        set_metadata(
            &mut new,
            "resourceVersion",
            json!((self.revision + 1).to_string()),
        );
        if has_finalizers {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(present(&old, path));
            }
            set_metadata(&mut new, "deletionTimestamp", json!(now_rfc3339()));
            self.commit(EventKind::Modified, key, new.clone(), Some(old));
        } else {
            self.objects.remove(&key);
            self.commit(EventKind::Deleted, key, new.clone(), Some(old));
        }
        Ok(present(&new, path))
    }

    fn commit(&mut self, kind: EventKind, key: ObjectKey, object: Value, previous: Option<Value>) {
        self.revision += 1;
        if key.group_resource
            == GroupResource::new("apiextensions.k8s.io", "customresourcedefinitions")
            && kind != EventKind::Deleted
        {
            self.learn_crd(&object);
        }
        if kind != EventKind::Deleted {
            self.objects.insert(key.clone(), object.clone());
        }
        let event = Arc::new(StoredEvent {
            revision: self.revision,
            kind,
            key,
            object,
            previous,
        });
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.revision;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.sender.send(event);
    }

    /// Starts a watch: the events to send first (replayed history, or synthetic ADDED
    /// for the current objects), a receiver for what follows, and the revision the
    /// replay is consistent at. Both are taken under the store lock, so nothing is lost.
    pub fn watch_from(
        &self,
        path: &ResourcePath,
        from: Option<u64>,
    ) -> Result<WatchStart, ApiError> {
        let receiver = self.sender.subscribe();
        let replay = match from {
            None | Some(0) => self
                .objects
                .iter()
                .filter(|(k, _)| in_scope(k, path))
                .map(|(k, o)| {
                    Arc::new(StoredEvent {
                        revision: self.revision,
                        kind: EventKind::Added,
                        key: k.clone(),
                        object: o.clone(),
                        previous: None,
                    })
                })
                .collect(),
            Some(from) if from < self.compacted => {
                return Err(ApiError::expired(from, self.compacted + 1))
            }
            Some(from) => self
                .history
                .iter()
                .filter(|e| e.revision > from && in_scope(&e.key, path))
                .cloned()
                .collect(),
        };
        Ok((replay, receiver, self.revision))
    }

    /// A stored CustomResourceDefinition declares its resource's kind and whether it
    /// has a `/status` subresource (its schema is not enforced).
    fn learn_crd(&mut self, crd: &Value) {
        let text = |p: &str| crd.pointer(p).and_then(Value::as_str).map(str::to_owned);
        let (Some(group), Some(plural)) = (text("/spec/group"), text("/spec/names/plural")) else {
            return;
        };
        let gr = GroupResource::new(&group, &plural);
        if let Some(kind) = text("/spec/names/kind") {
            self.kinds.insert(gr.clone(), kind);
        }
        let status = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .is_some_and(|vs| {
                vs.iter()
                    .any(|v| v.pointer("/subresources/status").is_some())
            });
        self.declare_status_subresource(gr, status);
    }

    /// Test setup: the stored object as is, without a version rewrite.
    pub fn raw(&self, key: &ObjectKey) -> Option<Value> {
        self.objects.get(key).cloned()
    }
}
