//! Which Prometheus a RolloutPolicy may make the daemon query, and with which
//! credentials. Pure: the operator's configuration and the policy's
//! `spec.analysis.prometheus` in, a decision out.
//!
//! A policy is written by a tenant; the daemon runs with the platform's identity. So in
//! the daemon a policy never names a file or an environment variable (they would be the
//! daemon's: its ServiceAccount token is a file), its credentials come only from Secrets
//! in its own namespace, and its queries go only to addresses the operator allows.
//! Operators name Prometheus *providers* (address, credentials from the daemon's own
//! files or environment, CA); a policy uses one by name and never sees its secrets.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::policy::{Duration, PrometheusAuth, PrometheusSpec};
use crate::redact;

/// The provider a policy without `spec.analysis.prometheus` uses: the daemon's
/// `--prometheus` flag.
pub const DEFAULT_PROVIDER: &str = "default";

/// Reason of the Accepted=False condition of a policy that names a credential source
/// the daemon refuses (a file, an environment variable, a Secret when they are off, a
/// password in the URL).
pub const CREDENTIALS_NOT_ALLOWED: &str = "CredentialsNotAllowed";
/// Reason of the Accepted=False condition of a policy whose Prometheus is not allowed
/// (an address outside the allow-list, an unknown provider, none at all).
pub const PROMETHEUS_NOT_ALLOWED: &str = "PrometheusNotAllowed";

/// What the operator configured on the daemon.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrometheusAccess {
    /// Provider name → its connection (address, the daemon's own credentials, CA).
    providers: BTreeMap<String, PrometheusSpec>,
    /// Addresses a policy's own `address` may use; `None`: the default rule (with any
    /// provider configured, only the providers' addresses; with none, any address).
    allowed: Option<Vec<AllowedAddress>>,
    /// Whether policies may name Secrets of their namespace (`…SecretRef`).
    policy_secrets: bool,
}

/// Where a policy's queries go, once admitted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target<'a> {
    /// An operator's provider: its address and its credentials (the daemon's own files
    /// and environment, which the operator chose). `timeout` is the policy's.
    Provider {
        name: &'a str,
        spec: &'a PrometheusSpec,
        timeout: Duration,
    },
    /// The policy's own address; credentials only from Secrets in its namespace.
    Policy {
        address: &'a str,
        spec: &'a PrometheusSpec,
    },
}

/// Why the daemon refuses a policy's Prometheus settings. Nothing was read or sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("{field} names {what}, which the daemon would read from its own filesystem or environment, never the policy's; in a cluster put the secret in a Secret of namespace `{namespace}` and write {instead}, or use a Prometheus provider the operator configured (spec.analysis.prometheus.provider). Files and environment variables work with `shiftgate run` only")]
    LocalCredentials {
        field: &'static str,
        what: &'static str,
        namespace: String,
        instead: &'static str,
    },
    #[error("{field}: Secrets named by policies are switched off on this daemon (--allow-policy-secrets=false); use a Prometheus provider the operator configured (spec.analysis.prometheus.provider{known})")]
    SecretsOff { field: &'static str, known: String },
    #[error("spec.analysis.prometheus.address `{address}` carries credentials in the URL; remove `user:password@` and use spec.analysis.prometheus.auth")]
    CredentialsInUrl { address: String },
    #[error("spec.analysis.prometheus.provider `{name}` is not configured on this daemon ({known}); fix the name, or ask the operator to add it to --prometheus-providers")]
    UnknownProvider { name: String, known: String },
    #[error("spec.analysis.prometheus.address `{address}` is not allowed on this daemon: {why}; use spec.analysis.prometheus.provider ({known}), or ask the operator to allow the address (--prometheus-allowed-addresses). Nothing was sent")]
    AddressNotAllowed {
        address: String,
        why: &'static str,
        known: String,
    },
    #[error("spec.analysis.prometheus: {0}")]
    Inconsistent(&'static str),
    #[error("no Prometheus to query: the policy has no spec.analysis.prometheus and the daemon has no default (--prometheus); set spec.analysis.prometheus.provider or address")]
    NoPrometheus,
}

impl AccessError {
    /// The Accepted=False reason.
    pub fn reason(&self) -> &'static str {
        match self {
            AccessError::LocalCredentials { .. }
            | AccessError::SecretsOff { .. }
            | AccessError::CredentialsInUrl { .. } => CREDENTIALS_NOT_ALLOWED,
            AccessError::UnknownProvider { .. }
            | AccessError::AddressNotAllowed { .. }
            | AccessError::Inconsistent(_)
            | AccessError::NoPrometheus => PROMETHEUS_NOT_ALLOWED,
        }
    }
}

/// The daemon's rule whatever its configuration: a policy names no file and no
/// environment variable. `namespace` is the policy's (for the message).
pub fn refuse_local_credentials(
    spec: Option<&PrometheusSpec>,
    namespace: &str,
) -> Result<(), AccessError> {
    let Some(spec) = spec else {
        return Ok(());
    };
    let refused = |field, what, instead| {
        Err(AccessError::LocalCredentials {
            field,
            what,
            namespace: namespace.to_owned(),
            instead,
        })
    };
    const TOKEN: &str = "`auth.bearerTokenSecretRef: {name, key}`";
    const PASSWORD: &str = "`auth.basic.passwordSecretRef: {name, key}`";
    const CA: &str = "`caSecretRef: {name, key}`";
    if let Some(auth) = &spec.auth {
        if auth.bearer_token_file.is_some() {
            return refused(
                "spec.analysis.prometheus.auth.bearerTokenFile",
                "a file",
                TOKEN,
            );
        }
        if auth.bearer_token_env.is_some() {
            return refused(
                "spec.analysis.prometheus.auth.bearerTokenEnv",
                "an environment variable",
                TOKEN,
            );
        }
        if let Some(basic) = &auth.basic {
            if basic.password_file.is_some() {
                return refused(
                    "spec.analysis.prometheus.auth.basic.passwordFile",
                    "a file",
                    PASSWORD,
                );
            }
            if basic.password_env.is_some() {
                return refused(
                    "spec.analysis.prometheus.auth.basic.passwordEnv",
                    "an environment variable",
                    PASSWORD,
                );
            }
        }
    }
    if spec.ca_file.is_some() {
        return refused("spec.analysis.prometheus.caFile", "a file", CA);
    }
    Ok(())
}

/// The `…SecretRef` fields a policy's Prometheus settings name, by field path.
pub fn secret_fields(spec: &PrometheusSpec) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if let Some(auth) = &spec.auth {
        if auth.bearer_token_secret_ref.is_some() {
            fields.push("spec.analysis.prometheus.auth.bearerTokenSecretRef");
        }
        if auth
            .basic
            .as_ref()
            .is_some_and(|b| b.password_secret_ref.is_some())
        {
            fields.push("spec.analysis.prometheus.auth.basic.passwordSecretRef");
        }
    }
    if spec.ca_secret_ref.is_some() {
        fields.push("spec.analysis.prometheus.caSecretRef");
    }
    fields
}

impl PrometheusAccess {
    /// `providers` by name (the `--prometheus` default is [`DEFAULT_PROVIDER`]);
    /// `allowed`: the operator's allow-list (`None`: the default rule).
    pub fn new(
        providers: BTreeMap<String, PrometheusSpec>,
        allowed: Option<Vec<AllowedAddress>>,
        policy_secrets: bool,
    ) -> Self {
        PrometheusAccess {
            providers,
            allowed,
            policy_secrets,
        }
    }

    /// No provider, any address, Secrets allowed: today's daemon without a default.
    pub fn open() -> Self {
        PrometheusAccess::new(BTreeMap::new(), None, true)
    }

    pub fn provider(&self, name: &str) -> Option<&PrometheusSpec> {
        self.providers.get(name)
    }

    /// Decides where a policy's queries may go, before anything is read or sent.
    pub fn admit<'a>(
        &'a self,
        spec: Option<&'a PrometheusSpec>,
        namespace: &str,
    ) -> Result<Target<'a>, AccessError> {
        let Some(spec) = spec else {
            return match self.providers.get_key_value(DEFAULT_PROVIDER) {
                Some((name, provider)) => Ok(Target::Provider {
                    name,
                    spec: provider,
                    timeout: provider.timeout,
                }),
                None => Err(AccessError::NoPrometheus),
            };
        };
        refuse_local_credentials(Some(spec), namespace)?;
        match (&spec.provider, &spec.address) {
            (Some(name), None) => {
                if spec.auth.is_some() || spec.ca_secret_ref.is_some() {
                    return Err(AccessError::Inconsistent(
                        "`provider` brings its own credentials and CA: remove `auth` and `caSecretRef`",
                    ));
                }
                let (name, provider) =
                    self.providers.get_key_value(name.as_str()).ok_or_else(|| {
                        AccessError::UnknownProvider {
                            name: name.clone(),
                            known: self.known_providers(),
                        }
                    })?;
                Ok(Target::Provider {
                    name,
                    spec: provider,
                    timeout: spec.timeout,
                })
            }
            (None, Some(address)) => {
                if redact::has_userinfo(address) {
                    return Err(AccessError::CredentialsInUrl {
                        address: redact::urls(address).into_owned(),
                    });
                }
                if !self.policy_secrets {
                    if let Some(field) = secret_fields(spec).first().copied() {
                        return Err(AccessError::SecretsOff {
                            field,
                            known: self.known_suffix(),
                        });
                    }
                }
                self.address_allowed(address)?;
                Ok(Target::Policy { address, spec })
            }
            (Some(_), Some(_)) => Err(AccessError::Inconsistent(
                "both `address` and `provider` are set; keep one",
            )),
            (None, None) => Err(AccessError::Inconsistent(
                "neither `address` nor `provider` is set",
            )),
        }
    }

    fn address_allowed(&self, address: &str) -> Result<(), AccessError> {
        let not_allowed = |why| AccessError::AddressNotAllowed {
            address: redact::urls(address).into_owned(),
            why,
            known: self.known_providers(),
        };
        let Ok(url) = url::Url::parse(address) else {
            return Err(not_allowed("it is not a URL"));
        };
        match &self.allowed {
            Some(list) if list.iter().any(|a| a.matches(&url)) => Ok(()),
            Some(_) => Err(not_allowed(
                "it matches no entry of the operator's allow-list",
            )),
            None if self.providers.is_empty() => Ok(()),
            None => {
                let provider_address = self
                    .providers
                    .values()
                    .filter_map(|p| p.address.as_deref())
                    .filter_map(|a| AllowedAddress::parse(a).ok())
                    .any(|a| a.matches(&url));
                if provider_address {
                    Ok(())
                } else {
                    Err(not_allowed(
                        "with providers configured, policies may only query the providers' Prometheus",
                    ))
                }
            }
        }
    }

    fn known_providers(&self) -> String {
        if self.providers.is_empty() {
            "no provider is configured".to_owned()
        } else {
            let names: Vec<&str> = self.providers.keys().map(String::as_str).collect();
            format!("configured: {}", names.join(", "))
        }
    }

    fn known_suffix(&self) -> String {
        if self.providers.is_empty() {
            String::new()
        } else {
            format!("; {}", self.known_providers())
        }
    }
}

/// One entry of the operator's allow-list: a URL prefix (scheme, host and port equal,
/// the path below the entry's), or `*` for any address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedAddress {
    Any,
    Prefix {
        scheme: String,
        host: String,
        port: Option<u16>,
        path: String,
    },
}

impl AllowedAddress {
    pub fn parse(text: &str) -> Result<AllowedAddress, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(AllowedAddress::Any);
        }
        let url = url::Url::parse(text).map_err(|e| {
            format!(
                "`{}` is not a URL ({e}); write e.g. http://prometheus.monitoring:9090",
                redact::urls(text)
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "`{}`: the scheme must be http or https",
                redact::urls(text)
            ));
        }
        if redact::has_userinfo(text) {
            return Err(format!(
                "`{}`: no credentials in an allowed address",
                redact::urls(text)
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("`{text}` has no host"))?;
        Ok(AllowedAddress::Prefix {
            scheme: url.scheme().to_owned(),
            host: host.to_owned(),
            port: url.port_or_known_default(),
            path: url.path().trim_end_matches('/').to_owned(),
        })
    }

    fn matches(&self, url: &url::Url) -> bool {
        match self {
            AllowedAddress::Any => true,
            AllowedAddress::Prefix {
                scheme,
                host,
                port,
                path,
            } => {
                let candidate = url.path().trim_end_matches('/');
                url.scheme() == scheme
                    && url.host_str() == Some(host.as_str())
                    && url.port_or_known_default() == *port
                    && url.username().is_empty()
                    && url.password().is_none()
                    && (candidate == path
                        || candidate
                            .strip_prefix(path.as_str())
                            .is_some_and(|rest| rest.starts_with('/')))
            }
        }
    }
}

/// The operator's providers file (`--prometheus-providers`, e.g. a mounted ConfigMap).
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProvidersFile {
    providers: Vec<ProviderEntry>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProviderEntry {
    name: String,
    address: String,
    #[serde(default = "default_timeout")]
    timeout: Duration,
    #[serde(default)]
    auth: Option<PrometheusAuth>,
    #[serde(default)]
    ca_file: Option<String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Parses a providers file. `origin` names it in errors.
pub fn parse_providers(
    text: &str,
    origin: &str,
) -> Result<BTreeMap<String, PrometheusSpec>, String> {
    let file: ProvidersFile = serde_yaml_ng::from_str(text).map_err(|e| {
        format!(
            "{origin}: {}; expected `providers: [{{name, address, timeout, auth, caFile}}]`",
            redact::urls(&e.to_string())
        )
    })?;
    let mut providers = BTreeMap::new();
    for (i, entry) in file.providers.into_iter().enumerate() {
        let at = format!("{origin}: providers[{i}]");
        let spec = provider_spec(&entry.name, entry.address, &at)?;
        if entry.auth.as_ref().is_some_and(|a| {
            a.bearer_token_secret_ref.is_some()
                || a.basic
                    .as_ref()
                    .is_some_and(|b| b.password_secret_ref.is_some())
        }) {
            return Err(format!(
                "{at}: a provider reads its credentials from the daemon's own files or environment (…File, …Env); Secret references are for policies"
            ));
        }
        let spec = PrometheusSpec {
            timeout: entry.timeout,
            auth: entry.auth,
            ca_file: entry.ca_file,
            ..spec
        };
        if providers.insert(entry.name.clone(), spec).is_some() {
            return Err(format!("{at}: provider `{}` is named twice", entry.name));
        }
    }
    Ok(providers)
}

/// A provider's connection with no credentials yet; the address checked.
pub fn provider_spec(name: &str, address: String, at: &str) -> Result<PrometheusSpec, String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
    {
        return Err(format!(
            "{at}: provider name `{name}` must be lowercase letters, digits, `-` and `.`"
        ));
    }
    AllowedAddress::parse(&address).map_err(|why| format!("{at}: address {why}"))?;
    Ok(PrometheusSpec {
        address: Some(address),
        provider: None,
        timeout: default_timeout(),
        auth: None,
        ca_file: None,
        ca_secret_ref: None,
    })
}

#[cfg(test)]
#[path = "providers_tests.rs"]
mod tests;
