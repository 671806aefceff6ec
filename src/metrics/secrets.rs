//! Secrets a RolloutPolicy names for its Prometheus credentials (`…SecretRef`), read by
//! the daemon with its own RBAC (`get` on `secrets`), always in the policy's own
//! namespace: the reference has no namespace field, and the namespace passed here is the
//! policy's, never one written in the policy.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::{Api, Client};

use super::auth::Secret;
use crate::policy::SecretKeyRef;

/// How long one Secret read may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{field}: Secret {namespace}/{name} does not exist; create it in the policy's namespace (`kubectl -n {namespace} create secret generic {name} --from-file={key}=…`)")]
    NotFound {
        field: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    #[error("{field}: Secret {namespace}/{name} has no key `{key}` (it has: {present}); fix `key` or the Secret")]
    MissingKey {
        field: &'static str,
        namespace: String,
        name: String,
        key: String,
        present: String,
    },
    #[error("{field}: key `{key}` of Secret {namespace}/{name} is empty")]
    Empty {
        field: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    #[error("{field}: key `{key}` of Secret {namespace}/{name} is not UTF-8 text")]
    NotText {
        field: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    #[error("{field}: cannot read Secret {namespace}/{name}: {message}; the daemon needs `get` on secrets (deploy/clusterrole.yaml), or the operator switched policy Secrets off")]
    Api {
        field: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
}

/// Reads one key of a Secret.
#[async_trait]
pub trait SecretReader: Send + Sync {
    /// The bytes of `reference.key` in Secret `reference.name` of `namespace`. `field`
    /// names the policy field, for errors.
    async fn read(
        &self,
        namespace: &str,
        reference: &SecretKeyRef,
        field: &'static str,
    ) -> Result<Vec<u8>, SecretError>;
}

/// Reads Secrets through the API server.
pub struct KubeSecrets {
    client: Client,
}

impl KubeSecrets {
    pub fn new(client: Client) -> Self {
        KubeSecrets { client }
    }
}

#[async_trait]
impl SecretReader for KubeSecrets {
    async fn read(
        &self,
        namespace: &str,
        reference: &SecretKeyRef,
        field: &'static str,
    ) -> Result<Vec<u8>, SecretError> {
        let api: Api<KubeSecret> = Api::namespaced(self.client.clone(), namespace);
        let api_error = |message: String| SecretError::Api {
            field,
            namespace: namespace.to_owned(),
            name: reference.name.clone(),
            message,
        };
        let secret = match tokio::time::timeout(READ_TIMEOUT, api.get_opt(&reference.name)).await {
            Err(_) => return Err(api_error(format!("no answer within {READ_TIMEOUT:?}"))),
            Ok(Err(error)) => return Err(api_error(error.to_string())),
            Ok(Ok(None)) => {
                return Err(SecretError::NotFound {
                    field,
                    namespace: namespace.to_owned(),
                    name: reference.name.clone(),
                    key: reference.key.clone(),
                })
            }
            Ok(Ok(Some(secret))) => secret,
        };
        let data = secret.data.unwrap_or_default();
        match data.get(&reference.key) {
            Some(bytes) => Ok(bytes.0.clone()),
            None => {
                let keys: Vec<&str> = data.keys().map(String::as_str).collect();
                Err(SecretError::MissingKey {
                    field,
                    namespace: namespace.to_owned(),
                    name: reference.name.clone(),
                    key: reference.key.clone(),
                    present: if keys.is_empty() {
                        "no keys".to_owned()
                    } else {
                        keys.join(", ")
                    },
                })
            }
        }
    }
}

/// A text secret (token, password) from a Secret key; a trailing newline (as
/// `kubectl create secret --from-file` keeps it) is dropped.
pub async fn read_text(
    reader: &dyn SecretReader,
    namespace: &str,
    reference: &SecretKeyRef,
    field: &'static str,
) -> Result<Secret, SecretError> {
    let bytes = reader.read(namespace, reference, field).await?;
    let text = String::from_utf8(bytes).map_err(|_| SecretError::NotText {
        field,
        namespace: namespace.to_owned(),
        name: reference.name.clone(),
        key: reference.key.clone(),
    })?;
    let value = text.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(SecretError::Empty {
            field,
            namespace: namespace.to_owned(),
            name: reference.name.clone(),
            key: reference.key.clone(),
        });
    }
    Ok(Secret::new(value))
}
