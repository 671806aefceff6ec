//! The `scale` subresource of Deployments, ReplicaSets and StatefulSets (apps/v1), as
//! the real API server serves it: an `autoscaling/v1` `Scale` whose `spec.replicas` is
//! the workload's. GET reads it; PATCH (merge or strategic merge) of `spec.replicas`
//! writes the workload's `spec.replicas` (its generation and resourceVersion move as for
//! any spec change). Other fields of a Scale cannot be changed and are refused.

use axum::body::{Body, Bytes};
use axum::http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::errors::ApiError;
use super::handlers::json_response;
use super::path::ResourcePath;
use super::store::{PatchKind, Target};
use super::Shared;

const SCALABLE: [&str; 3] = ["deployments", "replicasets", "statefulsets"];

/// Whether `path` addresses a workload's `scale` subresource.
pub fn is_scale(path: &ResourcePath) -> bool {
    path.subresource.as_deref() == Some("scale")
        && path.group_resource.group == "apps"
        && SCALABLE.contains(&path.group_resource.resource.as_str())
}

pub fn handle(
    shared: &Shared,
    method: &Method,
    path: &ResourcePath,
    content_type: &str,
    field_manager: Option<&str>,
    dry_run: bool,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let name = path
        .name
        .clone()
        .ok_or_else(|| ApiError::method_not_allowed(method.as_str(), "scale"))?;
    let main = ResourcePath {
        subresource: None,
        ..path.clone()
    };
    let object = match method.as_str() {
        "GET" => shared.store().get(&main, &name)?,
        "PATCH" => {
            let kind = match content_type {
                "application/merge-patch+json" => PatchKind::Merge,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                other => {
                    return Err(ApiError::unsupported_media_type(format!(
                    "the scale subresource of this test server takes merge patches, not {other:?}"
                )))
                }
            };
            let patch: Value = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
            })?;
            let replicas = patch
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .filter(|r| *r >= 0)
                .ok_or_else(|| {
                    ApiError::invalid(
                        &path.group_resource,
                        &name,
                        "spec.replicas: Invalid value: must be a non-negative integer".to_owned(),
                    )
                })?;
            shared.store().patch(
                &main,
                &name,
                kind,
                json!({ "spec": { "replicas": replicas } }),
                field_manager,
                Target::Main,
                dry_run,
            )?
        }
        other => return Err(ApiError::method_not_allowed(other, "scale")),
    };
    Ok(json_response(StatusCode::OK, &to_scale(&object)))
}

fn to_scale(object: &Value) -> Value {
    let meta = &object["metadata"];
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"]
        },
        "spec": { "replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(1)) },
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0))
        }
    })
}
