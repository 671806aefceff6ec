//! PATCH bodies applied to the stored object: RFC 6902 JSON Patch, RFC 7386 merge
//! patch, strategic merge (built-in groups only, as a merge), apply (create or merge).

use serde_json::{json, Value};

use super::errors::ApiError;
use super::meta::is_builtin_group;
use super::path::GroupResource;
use super::store::PatchKind;

/// What a patch asks the store to do.
pub enum Patched {
    /// Write this object through the normal update path.
    Update(Value),
    /// An apply patch of a missing object: create it from this body.
    Create(Value),
}

pub fn patched(
    gr: &GroupResource,
    name: &str,
    old: Option<&Value>,
    kind: PatchKind,
    patch: Value,
    field_manager: Option<&str>,
) -> Result<Patched, ApiError> {
    let candidate = match kind {
        PatchKind::Json => {
            let old = old.ok_or_else(|| ApiError::not_found(gr, name))?;
            let ops: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| ApiError::bad_request(format!("invalid json patch: {e}")))?;
            let mut doc = old.clone();
            json_patch::patch(&mut doc, &ops).map_err(|e| ApiError::patch_failed(e.to_string()))?;
            doc
        }
        PatchKind::Strategic if !is_builtin_group(&gr.group) => {
            return Err(ApiError::unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types \
                 include: application/json-patch+json, application/merge-patch+json, \
                 application/apply-patch+yaml"
                    .into(),
            ))
        }
        PatchKind::Merge | PatchKind::Strategic => {
            let old = old.ok_or_else(|| ApiError::not_found(gr, name))?;
            let mut doc = old.clone();
            json_patch::merge(&mut doc, &patch);
            doc
        }
        PatchKind::Apply => {
            if field_manager.is_none_or(str::is_empty) {
                return Err(ApiError::invalid(
                    gr,
                    name,
                    "fieldManager: Required value: is required for apply patch".into(),
                ));
            }
            match old {
                None => {
                    let mut body = patch;
                    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.insert("name".into(), json!(name));
                    }
                    return Ok(Patched::Create(body));
                }
                Some(old) => {
                    let mut doc = old.clone();
                    json_patch::merge(&mut doc, &patch);
                    doc
                }
            }
        }
    };
    Ok(Patched::Update(candidate))
}
