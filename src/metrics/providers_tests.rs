use super::*;

fn spec(yaml: &str) -> PrometheusSpec {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

fn providers(list: &[(&str, &str)]) -> BTreeMap<String, PrometheusSpec> {
    list.iter()
        .map(|(name, address)| {
            let spec = provider_spec(name, (*address).to_owned(), "test");
            (name.to_string(), spec.unwrap_or_else(|e| panic!("{e}")))
        })
        .collect()
}

#[test]
fn files_and_environment_variables_are_refused_by_field() {
    let access = PrometheusAccess::open();
    for (yaml, field) in [
        ("{address: 'http://p:9090', auth: {bearerTokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}}", "auth.bearerTokenFile"),
        ("{address: 'http://p:9090', auth: {bearerTokenEnv: HOME}}", "auth.bearerTokenEnv"),
        ("{address: 'http://p:9090', auth: {basic: {username: u, passwordFile: /etc/shadow}}}", "auth.basic.passwordFile"),
        ("{address: 'http://p:9090', auth: {basic: {username: u, passwordEnv: X}}}", "auth.basic.passwordEnv"),
        ("{address: 'http://p:9090', caFile: /etc/ssl/key.pem}", "caFile"),
    ] {
        let spec = spec(yaml);
        let error = access.admit(Some(&spec), "team-a").err();
        let message = error.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(message.contains(field), "{message}");
        assert!(message.contains("SecretRef") && message.contains("team-a"), "{message}");
        assert_eq!(error.map(|e| e.reason()), Some(CREDENTIALS_NOT_ALLOWED));
    }
}

#[test]
fn with_providers_only_their_addresses_are_allowed_by_default() {
    let access = PrometheusAccess::new(
        providers(&[("main", "http://prometheus.monitoring:9090/prom")]),
        None,
        true,
    );
    for ok in [
        "http://prometheus.monitoring:9090/prom",
        "http://PROMETHEUS.monitoring:9090/prom/",
        "http://prometheus.monitoring:9090/prom/sub",
    ] {
        let spec = spec(&format!("{{address: '{ok}'}}"));
        assert!(access.admit(Some(&spec), "a").is_ok(), "{ok}");
    }
    for refused in [
        "http://attacker.example:9090/prom",
        "https://prometheus.monitoring:9090/prom",
        "http://prometheus.monitoring:9091/prom",
        "http://prometheus.monitoring:9090/promx",
        "http://prometheus.monitoring:9090/",
    ] {
        let spec = spec(&format!("{{address: '{refused}'}}"));
        let error = access.admit(Some(&spec), "a").err();
        assert!(
            matches!(error, Some(AccessError::AddressNotAllowed { .. })),
            "{refused}: {error:?}"
        );
    }
    let by_name = spec("{provider: main, timeout: 2s}");
    assert!(matches!(
        access.admit(Some(&by_name), "a"),
        Ok(Target::Provider { name: "main", timeout, .. }) if timeout == Duration::from_secs(2)
    ));
    let unknown = spec("{provider: other}");
    let message = access
        .admit(Some(&unknown), "a")
        .err()
        .map(|e| e.to_string());
    assert!(message.unwrap_or_default().contains("configured: main"));
}

#[test]
fn an_allow_list_replaces_the_default_rule() {
    let list = ["http://prom-a:9090", "https://prom-b"]
        .iter()
        .map(|a| AllowedAddress::parse(a))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_default();
    let access =
        PrometheusAccess::new(providers(&[("main", "http://main:9090")]), Some(list), true);
    assert!(access
        .admit(Some(&spec("{address: 'http://prom-a:9090'}")), "a")
        .is_ok());
    assert!(access
        .admit(Some(&spec("{address: 'https://prom-b:443/x'}")), "a")
        .is_ok());
    assert!(access
        .admit(Some(&spec("{address: 'http://main:9090'}")), "a")
        .is_err());
    let any = PrometheusAccess::new(
        providers(&[("main", "http://main:9090")]),
        Some(vec![AllowedAddress::Any]),
        true,
    );
    assert!(any
        .admit(Some(&spec("{address: 'http://anything:1'}")), "a")
        .is_ok());
}

#[test]
fn without_providers_any_address_without_local_credentials() {
    let access = PrometheusAccess::open();
    let with_secret =
        spec("{address: 'http://p', auth: {bearerTokenSecretRef: {name: t, key: token}}}");
    assert!(access.admit(Some(&with_secret), "a").is_ok());
    assert_eq!(
        access.admit(None, "a").err(),
        Some(AccessError::NoPrometheus)
    );
    let off = PrometheusAccess::new(BTreeMap::new(), None, false);
    let error = off.admit(Some(&with_secret), "a").err();
    assert_eq!(
        error.as_ref().map(AccessError::reason),
        Some(CREDENTIALS_NOT_ALLOWED)
    );
    assert!(error
        .map(|e| e.to_string())
        .unwrap_or_default()
        .contains("--allow-policy-secrets=false"));
    let in_url = spec("{address: 'http://u:hunter2@p'}");
    let message = access
        .admit(Some(&in_url), "a")
        .err()
        .map(|e| e.to_string());
    let message = message.unwrap_or_default();
    assert!(
        !message.contains("hunter2") && message.contains("http://***@p"),
        "{message}"
    );
}

#[test]
fn providers_file_parses_and_refuses_secret_refs() {
    let parsed = parse_providers(
        "providers:\n- name: main\n  address: http://prometheus:9090\n  timeout: 3s\n  auth: {bearerTokenFile: /var/run/prom/token}\n",
        "providers.yaml",
    );
    let parsed = parsed.unwrap_or_default();
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed["main"].timeout, Duration::from_secs(3));
    for bad in [
        "providers:\n- name: a\n  address: http://x\n  auth: {bearerTokenSecretRef: {name: s, key: k}}\n",
        "providers:\n- name: a\n  address: http://u:p@x\n",
        "providers:\n- name: A\n  address: http://x\n",
        "providers:\n- name: a\n  address: http://x\n- name: a\n  address: http://y\n",
        "providers:\n- name: a\n  address: http://x\n  password: oops\n",
    ] {
        let error = parse_providers(bad, "providers.yaml").err().unwrap_or_default();
        assert!(error.starts_with("providers.yaml"), "{bad}: {error}");
        assert!(!error.contains("u:p@"), "{error}");
    }
}
