//! Credentials and TLS for reaching Prometheus.
//!
//! Secrets are never written in the policy itself. Where they come from depends on who
//! runs the policy: `shiftgate run` (the user's own process) reads the files and
//! environment variables the policy names ([`resolve`]); the daemon reads only Secrets
//! in the policy's own namespace ([`resolve_from_secrets`]) or uses an operator's
//! provider (see `metrics::providers`). They are read when a connection is built and
//! kept in a [`Secret`] whose `Debug` prints `***`, so they cannot leak into logs or
//! status.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use reqwest::header::{HeaderValue, AUTHORIZATION};

use super::secrets::{read_text, SecretError, SecretReader};
use crate::policy::{PrometheusAuth, SecretKeyRef};

/// A secret value. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself; only for building a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How shiftgate authenticates to Prometheus.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Credentials {
    #[default]
    None,
    Bearer(Secret),
    Basic {
        username: String,
        password: Secret,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {field} `{}`: {source}; check that the file exists and is readable", path.display())]
    ReadFile {
        field: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{field}: environment variable `{var}` is not set (or not UTF-8); set it or use the file form instead")]
    MissingEnv { field: &'static str, var: String },
    #[error("{field}: the secret read from {from} is empty")]
    Empty { field: &'static str, from: String },
    #[error("spec.analysis.prometheus.auth: {0}")]
    Conflict(&'static str),
    #[error("{from}: {problem}; give a PEM bundle with the CA certificate(s)")]
    BadCa { from: String, problem: String },
    #[error("{field} is read by the daemon from a Secret in the policy's namespace; `shiftgate run` reads credentials from your files or environment: use {instead}")]
    SecretRefOutsideDaemon {
        field: &'static str,
        instead: &'static str,
    },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("the credentials cannot be sent as an HTTP header (they contain control characters)")]
    BadHeader,
    #[error("cannot build the HTTP client for prometheus: {0}")]
    Client(#[source] reqwest::Error),
}

impl AuthError {
    /// A CamelCase reason for conditions and events.
    pub fn reason(&self) -> &'static str {
        "PrometheusAuthInvalid"
    }

    /// A missing file or variable may appear (a Secret being mounted); the rest will not
    /// fix itself.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AuthError::ReadFile { .. }
                | AuthError::MissingEnv { .. }
                | AuthError::Secret(SecretError::NotFound { .. } | SecretError::Api { .. })
        )
    }
}

/// Reads the credentials named by `auth`. `env` looks up environment variables (passed in
/// so tests do not touch the process environment).
pub fn resolve(
    auth: Option<&PrometheusAuth>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Credentials, AuthError> {
    let Some(auth) = auth else {
        return Ok(Credentials::None);
    };
    if auth.bearer_token_secret_ref.is_some() {
        return Err(AuthError::SecretRefOutsideDaemon {
            field: "spec.analysis.prometheus.auth.bearerTokenSecretRef",
            instead: "`bearerTokenFile` or `bearerTokenEnv`",
        });
    }
    if auth
        .basic
        .as_ref()
        .is_some_and(|b| b.password_secret_ref.is_some())
    {
        return Err(AuthError::SecretRefOutsideDaemon {
            field: "spec.analysis.prometheus.auth.basic.passwordSecretRef",
            instead: "`passwordFile` or `passwordEnv`",
        });
    }
    let bearer = secret(
        "spec.analysis.prometheus.auth.bearerTokenFile",
        auth.bearer_token_file.as_deref(),
        "spec.analysis.prometheus.auth.bearerTokenEnv",
        auth.bearer_token_env.as_deref(),
        env,
    )?;
    match (bearer, &auth.basic) {
        (Some(_), Some(_)) => Err(AuthError::Conflict(
            "set either a bearer token or basic auth, not both",
        )),
        (Some(token), None) => Ok(Credentials::Bearer(token)),
        (None, Some(basic)) => {
            let password = secret(
                "spec.analysis.prometheus.auth.basic.passwordFile",
                basic.password_file.as_deref(),
                "spec.analysis.prometheus.auth.basic.passwordEnv",
                basic.password_env.as_deref(),
                env,
            )?
            .ok_or(AuthError::Conflict(
                "basic auth needs passwordFile or passwordEnv",
            ))?;
            Ok(Credentials::Basic {
                username: basic.username.clone(),
                password,
            })
        }
        (None, None) => Ok(Credentials::None),
    }
}

fn secret(
    file_field: &'static str,
    file: Option<&str>,
    env_field: &'static str,
    var: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, AuthError> {
    let (field, from, raw) = match (file, var) {
        (Some(_), Some(_)) => {
            return Err(AuthError::Conflict(
                "a secret comes from a file or an environment variable, not both",
            ))
        }
        (None, None) => return Ok(None),
        (Some(path), None) => {
            let raw = std::fs::read_to_string(path).map_err(|source| AuthError::ReadFile {
                field: file_field,
                path: PathBuf::from(path),
                source,
            })?;
            (file_field, format!("file `{path}`"), raw)
        }
        (None, Some(var)) => {
            let raw = env(var).ok_or_else(|| AuthError::MissingEnv {
                field: env_field,
                var: var.to_owned(),
            })?;
            (env_field, format!("environment variable `{var}`"), raw)
        }
    };
    // Files written by editors and `kubectl create secret` often end with a newline.
    let value = raw.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(AuthError::Empty { field, from });
    }
    Ok(Some(Secret::new(value)))
}

/// The daemon's way: the credentials named by `auth`, read only from Secrets in
/// `namespace` (the policy's own). File and environment fields are never read here;
/// the daemon refuses such policies before it gets this far, and they are an error
/// here too.
pub async fn resolve_from_secrets(
    auth: Option<&PrometheusAuth>,
    namespace: &str,
    secrets: &dyn SecretReader,
) -> Result<Credentials, AuthError> {
    let Some(auth) = auth else {
        return Ok(Credentials::None);
    };
    let local = auth.bearer_token_file.is_some()
        || auth.bearer_token_env.is_some()
        || auth
            .basic
            .as_ref()
            .is_some_and(|b| b.password_file.is_some() || b.password_env.is_some());
    if local {
        return Err(AuthError::Conflict(
            "the daemon never reads files or environment variables named by a policy; use …SecretRef",
        ));
    }
    match (&auth.bearer_token_secret_ref, &auth.basic) {
        (Some(_), Some(_)) => Err(AuthError::Conflict(
            "set either a bearer token or basic auth, not both",
        )),
        (Some(reference), None) => {
            let field = "spec.analysis.prometheus.auth.bearerTokenSecretRef";
            Ok(Credentials::Bearer(
                read_text(secrets, namespace, reference, field).await?,
            ))
        }
        (None, Some(basic)) => {
            let reference = basic
                .password_secret_ref
                .as_ref()
                .ok_or(AuthError::Conflict(
                    "basic auth in the daemon needs passwordSecretRef",
                ))?;
            let field = "spec.analysis.prometheus.auth.basic.passwordSecretRef";
            Ok(Credentials::Basic {
                username: basic.username.clone(),
                password: read_text(secrets, namespace, reference, field).await?,
            })
        }
        (None, None) => Ok(Credentials::None),
    }
}

/// A PEM bundle of CA certificates, and where it came from (for errors).
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle {
    pub pem: Vec<u8>,
    pub from: String,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl CaBundle {
    /// The user's or the operator's own file (`shiftgate run`, a provider).
    pub fn from_file(path: &Path) -> Result<CaBundle, AuthError> {
        let pem = std::fs::read(path).map_err(|source| AuthError::ReadFile {
            field: "spec.analysis.prometheus.caFile",
            path: path.to_owned(),
            source,
        })?;
        Ok(CaBundle {
            pem,
            from: format!("spec.analysis.prometheus.caFile `{}`", path.display()),
        })
    }

    /// A key of a Secret in the policy's namespace (the daemon).
    pub async fn from_secret(
        secrets: &dyn SecretReader,
        namespace: &str,
        reference: &SecretKeyRef,
    ) -> Result<CaBundle, AuthError> {
        let field = "spec.analysis.prometheus.caSecretRef";
        let pem = secrets.read(namespace, reference, field).await?;
        Ok(CaBundle {
            pem,
            from: format!(
                "{field} (Secret {namespace}/{}, key `{}`)",
                reference.name, reference.key
            ),
        })
    }
}

impl Credentials {
    /// The `Authorization` header to send, marked sensitive so HTTP logging hides it.
    pub fn header(&self) -> Result<Option<HeaderValue>, AuthError> {
        let value = match self {
            Credentials::None => return Ok(None),
            Credentials::Bearer(token) => format!("Bearer {}", token.expose()),
            Credentials::Basic { username, password } => {
                let pair = format!("{username}:{}", password.expose());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
        };
        let mut header = HeaderValue::from_str(&value).map_err(|_| AuthError::BadHeader)?;
        header.set_sensitive(true);
        Ok(Some(header))
    }
}

/// An HTTP client for Prometheus: the credentials as a default header, the CA bundle
/// trusted beside the system roots, and a connect timeout. Redirects are not followed:
/// the credentials go to the address that was allowed, and nowhere else.
pub fn http_client(
    credentials: &Credentials,
    ca: Option<&CaBundle>,
    connect_timeout: std::time::Duration,
) -> Result<reqwest::Client, AuthError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(header) = credentials.header()? {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(AUTHORIZATION, header);
        builder = builder.default_headers(headers);
    }
    if let Some(ca) = ca {
        let bad_ca = |problem: String| AuthError::BadCa {
            from: ca.from.clone(),
            problem,
        };
        let certificates =
            reqwest::Certificate::from_pem_bundle(&ca.pem).map_err(|e| bad_ca(e.to_string()))?;
        if certificates.is_empty() {
            return Err(bad_ca("it contains no PEM certificate".to_owned()));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
        // With rustls the certificates are only parsed here.
        return builder.build().map_err(|e| bad_ca(e.to_string()));
    }
    builder.build().map_err(AuthError::Client)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::policy::BasicAuth;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn auth() -> PrometheusAuth {
        PrometheusAuth {
            bearer_token_file: None,
            bearer_token_env: None,
            bearer_token_secret_ref: None,
            basic: None,
        }
    }

    #[test]
    fn secrets_never_print() {
        let creds = Credentials::Basic {
            username: "u".to_owned(),
            password: Secret::new("hunter2"),
        };
        let printed = format!("{creds:?} {}", Secret::new("hunter2"));
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("***"));
    }

    #[test]
    fn bearer_token_from_file_is_trimmed() -> Result<(), Box<dyn std::error::Error>> {
        let mut file = tempfile::NamedTempFile::new()?;
        writeln!(file, "tok3n")?;
        let spec = PrometheusAuth {
            bearer_token_file: Some(file.path().display().to_string()),
            ..auth()
        };
        let creds = resolve(Some(&spec), &no_env)?;
        assert_eq!(creds, Credentials::Bearer(Secret::new("tok3n")));
        let header = creds.header()?.map(|h| h.to_str().map(str::to_owned));
        assert_eq!(header.transpose()?.as_deref(), Some("Bearer tok3n"));
        Ok(())
    }

    #[test]
    fn basic_auth_password_from_env() -> Result<(), Box<dyn std::error::Error>> {
        let spec = PrometheusAuth {
            basic: Some(BasicAuth {
                username: "shiftgate".to_owned(),
                password_file: None,
                password_env: Some("PROM_PASSWORD".to_owned()),
                password_secret_ref: None,
            }),
            ..auth()
        };
        let env = |var: &str| (var == "PROM_PASSWORD").then(|| "s3cret".to_owned());
        let creds = resolve(Some(&spec), &env)?;
        let header = creds.header()?.map(|h| h.to_str().map(str::to_owned));
        // base64("shiftgate:s3cret")
        assert_eq!(
            header.transpose()?.as_deref(),
            Some("Basic c2hpZnRnYXRlOnMzY3JldA==")
        );
        assert!(creds.header()?.is_some_and(|h| h.is_sensitive()));
        Ok(())
    }

    #[test]
    fn errors_name_the_file_or_variable() {
        let spec = PrometheusAuth {
            bearer_token_file: Some("/nonexistent/shiftgate-token".to_owned()),
            ..auth()
        };
        let err = resolve(Some(&spec), &no_env).err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("/nonexistent/shiftgate-token"), "{err}");
        assert!(err.contains("bearerTokenFile"), "{err}");

        let spec = PrometheusAuth {
            bearer_token_env: Some("NO_SUCH_VAR".to_owned()),
            ..auth()
        };
        let err = resolve(Some(&spec), &no_env).err().map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("`NO_SUCH_VAR`"));

        let spec = PrometheusAuth {
            bearer_token_env: Some("T".to_owned()),
            basic: Some(BasicAuth {
                username: "u".to_owned(),
                password_file: None,
                password_env: Some("T".to_owned()),
                password_secret_ref: None,
            }),
            ..auth()
        };
        let env = |_: &str| Some("x".to_owned());
        assert!(matches!(
            resolve(Some(&spec), &env),
            Err(AuthError::Conflict(_))
        ));
    }

    #[test]
    fn a_bad_ca_file_is_named() -> Result<(), Box<dyn std::error::Error>> {
        let mut file = tempfile::NamedTempFile::new()?;
        writeln!(file, "not a certificate")?;
        let ca = CaBundle::from_file(file.path())?;
        let result = http_client(
            &Credentials::None,
            Some(&ca),
            std::time::Duration::from_secs(1),
        );
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("caFile"), "{message}");
        Ok(())
    }
}
