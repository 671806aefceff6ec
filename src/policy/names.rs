//! Well-formedness of the names and addresses a policy holds: Kubernetes object names
//! and labels, HTTP tokens, URLs, `host:port`. Used by `policy::validate`; pure.

use super::diagnostic::Issue;

/// An `http://` or `https://` URL with a host.
pub(super) fn http_url(text: &str, path: &str, issues: &mut Vec<Issue>) {
    let problem = match url::Url::parse(text) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            Some(format!("scheme `{}` is not http or https", u.scheme()))
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => Some("it has no host".to_owned()),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    };
    if let Some(why) = problem {
        issues.push(
            Issue::error(
                path,
                format!("`{}` is not a URL: {why}", crate::redact::urls(text)),
            )
            .with_hint("write a full URL, e.g. `http://prometheus.monitoring:9090`"),
        );
    }
}

/// `host:port` (the form Envoy's admin address takes), or an http URL.
pub(super) fn host_port(text: &str) -> Result<(), String> {
    if text.starts_with("http://") || text.starts_with("https://") {
        return url::Url::parse(text).map(|_| ()).map_err(|e| e.to_string());
    }
    let (host, port) = text.rsplit_once(':').ok_or("it has no `:port`")?;
    if host.is_empty() {
        return Err("the host is empty".to_owned());
    }
    port.parse::<u16>()
        .map(|_| ())
        .map_err(|_| format!("`{port}` is not a port"))
}

/// `[namespace/]name` of a Kubernetes object.
pub(super) fn object_ref(text: &str, path: &str, kind: &str, issues: &mut Vec<Issue>) {
    let (namespace, name) = match text.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, text),
    };
    let problem = namespace
        .map(|ns| dns_label(ns).map_err(|why| format!("namespace `{ns}`: {why}")))
        .transpose()
        .and_then(|_| dns_subdomain(name).map_err(|why| format!("name `{name}`: {why}")));
    if let Err(why) = problem {
        issues.push(
            Issue::error(path, format!("`{text}` is not a {kind} reference: {why}"))
                .with_hint(format!("write `name` or `namespace/name` of the {kind}")),
        );
    }
}

/// RFC 1123 subdomain (Kubernetes object names).
pub(super) fn dns_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".to_owned());
    }
    if name.len() > 253 {
        return Err("it is longer than 253 characters".to_owned());
    }
    name.split('.').try_for_each(dns_label)
}

/// RFC 1123 label (namespaces).
pub(super) fn dns_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("it has an empty part".to_owned());
    }
    if label.len() > 63 {
        return Err("a part is longer than 63 characters".to_owned());
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("only lowercase letters, digits and `-` are allowed".to_owned());
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("it must start and end with a letter or digit".to_owned());
    }
    Ok(())
}

pub(super) fn label_key(key: &str) -> Result<(), String> {
    let name = key.rsplit_once('/').map_or(key, |(_, n)| n);
    label_value(name).and_then(|_| {
        if name.is_empty() {
            Err("it is empty".to_owned())
        } else {
            Ok(())
        }
    })
}

pub(super) fn label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err("it is longer than 63 characters".to_owned());
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("only letters, digits, `-`, `_` and `.` are allowed".to_owned());
    }
    if value.starts_with(['-', '_', '.']) || value.ends_with(['-', '_', '.']) {
        return Err("it must start and end with a letter or digit".to_owned());
    }
    Ok(())
}

/// An HTTP token (header and cookie names).
pub(super) fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(super) fn is_identifier(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
