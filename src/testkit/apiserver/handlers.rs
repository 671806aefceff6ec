//! Request dispatch: verb × path shape → store operation → JSON or `Status` response.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, Method, Response, StatusCode};
use serde_json::Value;

use super::errors::ApiError;
use super::path::ResourcePath;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Page, PatchKind, Target};
use super::watch::{watch_response, WatchParams};
use super::Shared;

pub fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

pub fn error_response(error: &ApiError) -> Response<Body> {
    json_response(error.status_code(), &error.to_status())
}

/// Answers one request that passed fault injection.
pub fn handle(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    content_type: Option<&str>,
    body: &Bytes,
) -> Response<Body> {
    match dispatch(shared, method, path, query, content_type, body) {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

fn dispatch(
    shared: &Arc<Shared>,
    method: &Method,
    raw_path: &str,
    query: &HashMap<String, String>,
    content_type: Option<&str>,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let path = ResourcePath::parse(raw_path)?;
    let dry_run = query.get("dryRun").is_some_and(|v| v == "All");
    if super::scale::is_scale(&path) {
        let media = content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        let field_manager = query.get("fieldManager").map(String::as_str);
        return super::scale::handle(shared, method, &path, media, field_manager, dry_run, body);
    }
    let watch = query.get("watch").is_some_and(|v| v == "true" || v == "1");
    let target = target(shared, &path, raw_path)?;
    let name = path.name.clone();
    match (method.as_str(), name) {
        ("GET", None) if watch => {
            let params = WatchParams::from_query(query)?;
            Ok(watch_response(shared.clone(), path, params))
        }
        ("GET", None) => {
            let labels =
                LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?;
            let fields =
                FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))?;
            let page = page(query)?;
            let list =
                shared
                    .store()
                    .list(&path, |o| labels.matches(o) && fields.matches(o), &page);
            Ok(json_response(StatusCode::OK, &list))
        }
        ("GET", Some(name)) => {
            let object = shared.store().get(&path, &name)?;
            Ok(json_response(StatusCode::OK, &object))
        }
        ("POST", None) => {
            let object = shared.store().create(&path, parse_json(body)?, dry_run)?;
            Ok(json_response(StatusCode::CREATED, &object))
        }
        ("PUT", Some(name)) => {
            let object =
                shared
                    .store()
                    .replace(&path, &name, parse_json(body)?, target, dry_run)?;
            Ok(json_response(StatusCode::OK, &object))
        }
        ("PATCH", Some(name)) => {
            let kind = patch_kind(content_type)?;
            let patch = match kind {
                PatchKind::Apply => parse_json_or_yaml(body)?,
                _ => parse_json(body)?,
            };
            let field_manager = query.get("fieldManager").map(String::as_str);
            let object =
                shared
                    .store()
                    .patch(&path, &name, kind, patch, field_manager, target, dry_run)?;
            Ok(json_response(StatusCode::OK, &object))
        }
        ("DELETE", Some(name)) => {
            let options = if body.is_empty() {
                Value::Null
            } else {
                parse_json(body)?
            };
            let object = shared.store().delete(&path, &name, &options, dry_run)?;
            Ok(json_response(StatusCode::OK, &object))
        }
        (method, _) => Err(ApiError::method_not_allowed(method, raw_path)),
    }
}

/// The main resource, or `/status` where the resource declares it; other
/// subresources are not served.
fn target(shared: &Shared, path: &ResourcePath, raw_path: &str) -> Result<Target, ApiError> {
    match path.subresource.as_deref() {
        None => Ok(Target::Main),
        Some("status") if shared.store().has_status_subresource(&path.group_resource) => {
            Ok(Target::Status)
        }
        Some(_) => Err(ApiError::not_found_path(raw_path)),
    }
}

fn patch_kind(content_type: Option<&str>) -> Result<PatchKind, ApiError> {
    let media = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    match media {
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        "application/apply-patch+yaml" => Ok(PatchKind::Apply),
        other => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format ({other:?}) - accepted media \
             types include: application/json-patch+json, application/merge-patch+json, \
             application/apply-patch+yaml, application/strategic-merge-patch+json"
        ))),
    }
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn parse_json_or_yaml(body: &Bytes) -> Result<Value, ApiError> {
    parse_json(body).or_else(|_| {
        serde_yaml_ng::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))
    })
}

/// `limit` (0 or absent: everything) and `continue` (an earlier page's token).
fn page(query: &HashMap<String, String>) -> Result<Page, ApiError> {
    let limit = match query.get("limit").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("limit: Invalid value: {n:?}")))?,
        ),
    };
    // `<revision of the first page>/<namespace>/<name of the last object>`.
    let (revision, after) = match query.get("continue").map(String::as_str) {
        None | Some("") => (None, None),
        Some(token) => {
            let invalid = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
            let (revision, key) = token.split_once('/').ok_or_else(invalid)?;
            let revision = revision.parse::<u64>().map_err(|_| invalid())?;
            let (ns, name) = key.split_once('/').ok_or_else(invalid)?;
            (Some(revision), Some((ns.to_owned(), name.to_owned())))
        }
    };
    Ok(Page {
        limit,
        after,
        revision,
    })
}
