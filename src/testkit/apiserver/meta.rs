//! Object metadata the server owns or checks: names, namespaces, apiVersion, uids,
//! timestamps, and the small JSON edits the store makes to metadata.

use serde_json::{json, Map, Value};

use super::errors::ApiError;
use super::path::{GroupResource, ResourcePath};

pub fn take_metadata(object: &mut Map<String, Value>) -> Map<String, Value> {
    match object.remove("metadata") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

pub fn set_metadata(object: &mut Value, field: &str, value: Value) {
    if let Some(map) = object.as_object_mut() {
        let metadata = map
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(m) = metadata.as_object_mut() {
            m.insert(field.to_owned(), value);
        }
    }
}

pub fn set_or_remove(object: &mut Value, field: &str, value: Option<Value>) {
    if let Some(map) = object.as_object_mut() {
        match value {
            Some(v) => map.insert(field.to_owned(), v),
            None => map.remove(field),
        };
    }
}

/// What generation tracks: everything but metadata (and status, when status is a
/// subresource).
pub fn without_metadata(object: &Value, keep_status: bool) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("metadata");
        if !keep_status {
            map.remove("status");
        }
    }
    object
}

pub fn check_api_version(object: &Map<String, Value>, path: &ResourcePath) -> Result<(), ApiError> {
    match object.get("apiVersion").and_then(Value::as_str) {
        Some(v) if !v.is_empty() && v != path.api_version() => Err(ApiError::bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version ({})",
            path.api_version()
        ))),
        _ => Ok(()),
    }
}

pub fn check_api_version_value(object: &Value, path: &ResourcePath) -> Result<(), ApiError> {
    match object.as_object() {
        Some(map) => check_api_version(map, path),
        None => Err(ApiError::bad_request(
            "the request body is not a JSON object".into(),
        )),
    }
}

pub fn check_namespace(metadata: &Map<String, Value>, path: &ResourcePath) -> Result<(), ApiError> {
    let body_ns = metadata
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty());
    match (body_ns, &path.namespace) {
        (Some(b), Some(p)) if b != p => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// The longest `note` an `events.k8s.io` Event may have.
const EVENT_NOTE_LIMIT: usize = 1024;

/// Per-kind validation the real server does and shiftgate depends on: an
/// `events.k8s.io` Event's `note` is at most 1 KiB (a longer one is refused, 422).
pub fn check_object(
    gr: &GroupResource,
    name: &str,
    object: &Map<String, Value>,
) -> Result<(), ApiError> {
    if gr.group == "events.k8s.io" && gr.resource == "events" {
        let note_len = object
            .get("note")
            .and_then(Value::as_str)
            .map_or(0, str::len);
        if note_len > EVENT_NOTE_LIMIT {
            return Err(ApiError::invalid(
                gr,
                name,
                // Worded as 1.20 words it (the note is validated as the core Event's
                // `message`).
                format!(
                    "message: Invalid value: \"\": can have at most {EVENT_NOTE_LIMIT} characters"
                ),
            ));
        }
    }
    Ok(())
}

/// RFC 1123 subdomain, as the real server requires of most names.
pub fn check_name(gr: &GroupResource, name: &str) -> Result<(), ApiError> {
    let valid = name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            gr,
            name,
            format!(
                "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must \
                 consist of lower case alphanumeric characters, '-' or '.', and must start and \
                 end with an alphanumeric character"
            ),
        ))
    }
}

pub fn uid(counter: u64) -> String {
    format!("00000000-0000-4000-8000-{counter:012x}")
}

/// Deterministic stand-in for the real server's random 5-character suffix.
pub fn generated_suffix(counter: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = counter;
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// The server stamps creation and deletion times from its own clock, like the real one;
/// the test server is shell code, not part of the pure core.
#[allow(clippy::disallowed_methods)]
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn in_scope(key: &super::store::ObjectKey, path: &ResourcePath) -> bool {
    key.group_resource == path.group_resource
        && path
            .namespace
            .as_ref()
            .is_none_or(|ns| *ns == key.namespace)
}

/// The object as served through `path`'s version (one storage, any served version).
pub fn present(object: &Value, path: &ResourcePath) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), json!(path.api_version()));
    }
    object
}

/// Built-in API groups (core, `apps`, `*.k8s.io`) behave differently from custom
/// resources in a few places (strategic merge, unconditional updates).
pub fn is_builtin_group(group: &str) -> bool {
    group.is_empty() || !group.contains('.') || group.ends_with(".k8s.io")
}
