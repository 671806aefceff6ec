//! Parses Kubernetes REST paths (`/api/v1/...`, `/apis/{group}/{version}/...`) into the
//! resource they address, for any group, version and resource.

use super::errors::ApiError;

/// A resource type as the API server stores it: objects are kept per group and plural,
/// whatever version they are read or written through (like the real server's storage).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupResource {
    /// Empty for the core group (`/api/v1`).
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_owned(),
            resource: resource.to_owned(),
        }
    }

    /// `rolloutpolicies.shiftgate.dev`, or `services` for the core group, as the real
    /// server writes it in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// What a request path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    pub group_resource: GroupResource,
    pub version: String,
    /// `None`: cluster-wide (a list across namespaces, or a cluster-scoped object).
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// `status`, `scale`, …
    pub subresource: Option<String>,
}

impl ResourcePath {
    /// `v1` or `shiftgate.dev/v1alpha1`.
    pub fn api_version(&self) -> String {
        if self.group_resource.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group_resource.group, self.version)
        }
    }

    pub fn parse(path: &str) -> Result<Self, ApiError> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return Err(ApiError::not_found_path(path)),
        };
        let (namespace, rest): (Option<&str>, &[&str]) = match rest {
            // `namespaces/{ns}/status` is the Namespace object's own subresource.
            ["namespaces", ns, resource, tail @ ..]
                if !(group.is_empty() && tail.is_empty() && is_namespace_subresource(resource)) =>
            {
                let mut rest = vec![*resource];
                rest.extend_from_slice(tail);
                return Self::build(group, version, Some(ns), &rest, path);
            }
            other => (None, other),
        };
        Self::build(group, version, namespace, rest, path)
    }

    fn build(
        group: &str,
        version: &str,
        namespace: Option<&str>,
        rest: &[&str],
        path: &str,
    ) -> Result<Self, ApiError> {
        let (resource, name, subresource) = match rest {
            [resource] => (*resource, None, None),
            [resource, name] => (*resource, Some(*name), None),
            [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
            _ => return Err(ApiError::not_found_path(path)),
        };
        if resource.is_empty() || version.is_empty() || name.is_some_and(str::is_empty) {
            return Err(ApiError::not_found_path(path));
        }
        Ok(Self {
            group_resource: GroupResource::new(group, resource),
            version: version.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
            subresource: subresource.map(str::to_owned),
        })
    }
}

fn is_namespace_subresource(segment: &str) -> bool {
    matches!(segment, "status" | "finalize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unwrap_used)] // test input is a literal
    fn parse(path: &str) -> ResourcePath {
        ResourcePath::parse(path).unwrap()
    }

    #[test]
    fn parses_namespaced_custom_resource_with_subresource() {
        let p =
            parse("/apis/shiftgate.dev/v1alpha1/namespaces/shop/rolloutpolicies/checkout/status");
        assert_eq!(
            p.group_resource,
            GroupResource::new("shiftgate.dev", "rolloutpolicies")
        );
        assert_eq!(p.version, "v1alpha1");
        assert_eq!(p.namespace.as_deref(), Some("shop"));
        assert_eq!(p.name.as_deref(), Some("checkout"));
        assert_eq!(p.subresource.as_deref(), Some("status"));
        assert_eq!(p.api_version(), "shiftgate.dev/v1alpha1");
    }

    #[test]
    fn parses_core_lists_and_cluster_scoped_objects() {
        let p = parse("/api/v1/services");
        assert_eq!(p.group_resource.qualified(), "services");
        assert_eq!((p.namespace, p.name), (None, None));
        let p = parse("/api/v1/namespaces/shop");
        assert_eq!(p.group_resource.resource, "namespaces");
        assert_eq!(p.name.as_deref(), Some("shop"));
        let p = parse("/api/v1/namespaces/shop/status");
        assert_eq!(p.name.as_deref(), Some("shop"));
        assert_eq!(p.subresource.as_deref(), Some("status"));
        let p = parse("/api/v1/namespaces/shop/services");
        assert_eq!(p.namespace.as_deref(), Some("shop"));
        assert_eq!(p.name, None);
    }

    #[test]
    fn rejects_paths_outside_the_resource_api() {
        assert!(ResourcePath::parse("/version").is_err());
        assert!(ResourcePath::parse("/apis/g/v1/a/b/c/d").is_err());
    }
}
