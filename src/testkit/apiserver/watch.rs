//! `?watch=true`: a chunked stream of JSON lines (`{"type":"ADDED","object":{…}}`),
//! replaying history from `resourceVersion`, then live changes; BOOKMARKs when asked;
//! an ERROR event with a 410 `Status` when the version is too old (as the real
//! server's watch cache does); selectors applied, with objects moving into or out of
//! the selection seen as ADDED or DELETED.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Response, StatusCode};
use futures::stream;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::errors::ApiError;
use super::handlers::json_response;
use super::meta::{in_scope, present};
use super::path::ResourcePath;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{EventKind, StoredEvent};
use super::Shared;

pub struct WatchParams {
    resource_version: Option<u64>,
    bookmarks: bool,
    send_initial_events: bool,
    timeout: Option<Duration>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl WatchParams {
    pub fn from_query(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let resource_version = match query.get("resourceVersion").map(String::as_str) {
            None | Some("") => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("resourceVersion: Invalid value: {v:?}"))
            })?),
        };
        let timeout = match query.get("timeoutSeconds") {
            None => None,
            Some(s) => Some(Duration::from_secs(s.parse().map_err(|_| {
                ApiError::bad_request(format!("timeoutSeconds: Invalid value: {s:?}"))
            })?)),
        };
        Ok(Self {
            resource_version,
            bookmarks: query
                .get("allowWatchBookmarks")
                .is_some_and(|v| v == "true"),
            send_initial_events: query.get("sendInitialEvents").is_some_and(|v| v == "true"),
            timeout,
            labels: LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?,
            fields: FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))?,
        })
    }
}

struct WatchState {
    path: ResourcePath,
    params: WatchParams,
    replay: VecDeque<Arc<StoredEvent>>,
    initial_events_end: bool,
    receiver: broadcast::Receiver<Arc<StoredEvent>>,
    /// Every event up to here has been seen (sent or filtered out): a bookmark's version.
    progress: u64,
    bookmark_every: Duration,
    /// The resource's kind, for bookmarks (kube's client reads `kind` from them).
    kind: String,
    deadline: Option<tokio::time::Instant>,
    /// Changes when the server ends every watch.
    ended: tokio::sync::watch::Receiver<u64>,
    done: bool,
}

pub fn watch_response(
    shared: Arc<Shared>,
    path: ResourcePath,
    params: WatchParams,
) -> Response<Body> {
    let from = if params.send_initial_events {
        None
    } else {
        params.resource_version
    };
    let (started, kind) = {
        let store = shared.store();
        let kind = store.kind_of(&path.group_resource).unwrap_or_default();
        (store.watch_from(&path, from), kind)
    };
    let (replay, receiver, progress) = match started {
        Ok(started) => started,
        Err(expired) => {
            let line = event_line("ERROR", &expired.to_status());
            let mut response = Response::new(Body::from(line));
            response.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            );
            return response;
        }
    };
    let deadline = params.timeout.map(|t| tokio::time::Instant::now() + t);
    let state = WatchState {
        initial_events_end: params.send_initial_events,
        path,
        params,
        replay: replay.into(),
        receiver,
        progress,
        bookmark_every: shared.options.bookmark_interval,
        kind,
        deadline,
        ended: shared.watches_ended.subscribe(),
        done: false,
    };
    let lines = stream::unfold(state, |mut state| async move {
        let line = state.next_line().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(line), state))
    });
    let mut response = json_response(StatusCode::OK, &Value::Null);
    *response.body_mut() = Body::from_stream(lines);
    response
}

impl WatchState {
    async fn next_line(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        while let Some(event) = self.replay.pop_front() {
            if let Some(line) = self.render(&event) {
                return Some(line);
            }
        }
        if self.initial_events_end {
            self.initial_events_end = false;
            return Some(self.bookmark(true));
        }
        let bookmark_every = self.bookmark_every;
        let bookmarks = self.params.bookmarks;
        loop {
            let deadline = self.deadline;
            tokio::select! {
                received = self.receiver.recv() => match received {
                    Ok(event) => {
                        self.progress = self.progress.max(event.revision);
                        if in_scope(&event.key, &self.path) {
                            if let Some(line) = self.render(&event) {
                                return Some(line);
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Too slow a reader: the real server's watch cache closes an
                        // unresponsive watcher without an error; the client watches
                        // again from the last version it saw, replayed from history
                        // (or gets 410 there if that is too old).
                        return None;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep(bookmark_every), if bookmarks => {
                    return Some(self.bookmark(false));
                }
                _ = sleep_until_deadline(deadline) => return None,
                _ = self.ended.changed() => return None,
            }
        }
    }

    /// What a watcher with these selectors sees of one change, if anything.
    fn render(&self, event: &StoredEvent) -> Option<Bytes> {
        let selected = |o: &Value| self.params.labels.matches(o) && self.params.fields.matches(o);
        let now = selected(&event.object);
        let before = event.previous.as_ref().is_some_and(selected);
        let kind = match (event.kind, before, now) {
            (EventKind::Added, _, true) => "ADDED",
            (EventKind::Modified, true, true) => "MODIFIED",
            (EventKind::Modified, false, true) => "ADDED",
            (EventKind::Modified, true, false) => "DELETED",
            (EventKind::Deleted, _, true) => event.kind.as_str(),
            _ => return None,
        };
        Some(event_line(kind, &present(&event.object, &self.path)))
    }

    fn bookmark(&self, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({ "resourceVersion": self.progress.to_string() });
        if initial_events_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let object = json!({
            "apiVersion": self.path.api_version(),
            "kind": self.kind,
            "metadata": metadata,
        });
        event_line("BOOKMARK", &object)
    }
}

async fn sleep_until_deadline(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({ "type": kind, "object": object }).to_string();
    line.push('\n');
    Bytes::from(line)
}
