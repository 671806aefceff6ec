//! The rules of `spec.analysis.prometheus`: where the queries go (an `address` or a
//! daemon `provider`, exactly one), no credentials inside the URL, and one source per
//! secret (a file, an environment variable or a Secret key). Whether the daemon then
//! accepts the policy's address and credential sources is decided by
//! `metrics::providers`, with the operator's configuration. Part of
//! `policy::validate`; pure.

use super::diagnostic::Issue;
use super::names::{dns_subdomain, http_url};
use super::types::{PrometheusSpec, SecretKeyRef};

pub(super) fn connection(prometheus: &PrometheusSpec, ppath: &str, issues: &mut Vec<Issue>) {
    match (&prometheus.address, &prometheus.provider) {
        (Some(address), None) => address_rules(address, &format!("{ppath}.address"), issues),
        (None, Some(provider)) => {
            if let Err(why) = dns_subdomain(provider) {
                issues.push(
                    Issue::error(
                        format!("{ppath}.provider"),
                        format!("`{provider}` is not a provider name: {why}"),
                    )
                    .with_hint("write the name the daemon's operator gave the provider, e.g. `main`"),
                );
            }
            let own = [
                (prometheus.auth.is_some(), "auth"),
                (prometheus.ca_file.is_some(), "caFile"),
                (prometheus.ca_secret_ref.is_some(), "caSecretRef"),
            ];
            for (_, field) in own.iter().filter(|(set, _)| *set) {
                issues.push(
                    Issue::error(
                        format!("{ppath}.{field}"),
                        format!("`{field}` is set next to `provider`: the provider brings its own address, credentials and CA"),
                    )
                    .with_hint(format!("remove `{field}`, or replace `provider` by `address`")),
                );
            }
        }
        (Some(_), Some(_)) => issues.push(
            Issue::error(ppath, "both `address` and `provider` are set")
                .with_hint("keep `provider` to use a Prometheus the daemon's operator configured, or `address`"),
        ),
        (None, None) => issues.push(
            Issue::error(ppath, "neither `address` nor `provider` is set")
                .with_hint("write `address: http://prometheus.monitoring:9090` or `provider: NAME`; leave `prometheus` out to use the daemon's default"),
        ),
    }
    if prometheus.ca_file.is_some() && prometheus.ca_secret_ref.is_some() {
        issues.push(
            Issue::error(ppath, "both `caFile` and `caSecretRef` are set")
                .with_hint("keep one: `caSecretRef` in the daemon, `caFile` with `shiftgate run`"),
        );
    }
    if let Some(reference) = &prometheus.ca_secret_ref {
        secret_ref(reference, &format!("{ppath}.caSecretRef"), issues);
    }
    let Some(auth) = &prometheus.auth else {
        return;
    };
    let apath = format!("{ppath}.auth");
    let kinds = [
        auth.bearer_token_file.is_some(),
        auth.bearer_token_env.is_some(),
        auth.bearer_token_secret_ref.is_some(),
        auth.basic.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        issues.push(
            Issue::error(
                &apath,
                "set exactly one of `bearerTokenSecretRef`, `bearerTokenFile`, `bearerTokenEnv`, `basic`",
            )
            .with_hint("keep one way to authenticate"),
        );
    }
    if let Some(reference) = &auth.bearer_token_secret_ref {
        secret_ref(reference, &format!("{apath}.bearerTokenSecretRef"), issues);
    }
    if let Some(basic) = &auth.basic {
        let sources = [
            basic.password_file.is_some(),
            basic.password_env.is_some(),
            basic.password_secret_ref.is_some(),
        ];
        if sources.iter().filter(|k| **k).count() != 1 {
            issues.push(
                Issue::error(
                    format!("{apath}.basic"),
                    "set exactly one of `passwordSecretRef`, `passwordFile` and `passwordEnv`",
                )
                .with_hint("read the password from a Secret (daemon), a file or an environment variable (`shiftgate run`)"),
            );
        }
        if let Some(reference) = &basic.password_secret_ref {
            secret_ref(
                reference,
                &format!("{apath}.basic.passwordSecretRef"),
                issues,
            );
        }
    }
}

/// An http(s) URL without userinfo: a password written into the URL would be stored in
/// the policy, shown by `kubectl get -o yaml` and sent to whoever reads the address.
fn address_rules(address: &str, path: &str, issues: &mut Vec<Issue>) {
    let before = issues.len();
    http_url(address, path, issues);
    if issues.len() == before && crate::redact::has_userinfo(address) {
        issues.push(
            Issue::error(
                path,
                format!(
                    "`{}` carries credentials in the URL; they would be stored in the policy and shown wherever the address is",
                    crate::redact::urls(address)
                ),
            )
            .with_hint("remove `user:password@` from the address and use `auth` (`bearerTokenSecretRef`, or `basic` with `passwordSecretRef`)"),
        );
    }
}

fn secret_ref(reference: &SecretKeyRef, path: &str, issues: &mut Vec<Issue>) {
    if let Err(why) = dns_subdomain(&reference.name) {
        issues.push(
            Issue::error(
                format!("{path}.name"),
                format!("`{}` is not a Secret name: {why}", reference.name),
            )
            .with_hint("write the name of a Secret in the policy's namespace"),
        );
    }
    let key_ok = !reference.key.is_empty()
        && reference.key.len() <= 253
        && reference
            .key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !key_ok {
        issues.push(
            Issue::error(
                format!("{path}.key"),
                format!("`{}` is not a Secret key", reference.key),
            )
            .with_hint("a key is letters, digits, `-`, `_` and `.`, e.g. `token`"),
        );
    }
}
