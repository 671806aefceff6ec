//! Links to the Grafana dashboard of a rollout (`spec.grafana`), carried in the status
//! and in Event notes so on-call lands on the right page with the right variables.

use reqwest::Url;

use crate::metrics::PolicyRef;
use crate::policy::{GrafanaSpec, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum GrafanaError {
    #[error("spec.grafana.url {url:?} is not a valid URL: {source}; write it as https://grafana.example")]
    InvalidUrl {
        url: String,
        #[source]
        source: url_error::ParseError,
    },
}

/// `url::ParseError` under a stable path (reqwest re-exports `Url` but not its error).
mod url_error {
    pub type ParseError = <reqwest::Url as std::str::FromStr>::Err;
}

/// The dashboard URL for one policy: `{url}/d/{uid}?var-namespace=…&var-name=…`, and
/// when `since` is given, a time range starting a minute before it and following now.
pub fn dashboard_link(
    grafana: &GrafanaSpec,
    policy: &PolicyRef,
    since: Option<Timestamp>,
) -> Result<String, GrafanaError> {
    let base = grafana.url.trim_end_matches('/');
    let mut url = Url::parse(&format!("{base}/d/{}", grafana.dashboard)).map_err(|source| {
        GrafanaError::InvalidUrl {
            url: crate::redact::urls(&grafana.url).into_owned(),
            source,
        }
    })?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("var-namespace", &policy.namespace);
        query.append_pair("var-name", &policy.name);
        if let Some(since) = since {
            let from = since.timestamp_millis().saturating_sub(60_000);
            query.append_pair("from", &from.to_string());
            query.append_pair("to", "now");
        }
    }
    // The link is shown in status and Events: never with credentials in it.
    Ok(crate::redact::urls(url.as_str()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_carries_the_variables_escaped() {
        let grafana = GrafanaSpec {
            url: "https://grafana.example/".to_owned(),
            dashboard: "shiftgate-rollout".to_owned(),
            annotations: None,
        };
        let policy = PolicyRef {
            namespace: "shop".to_owned(),
            name: "check out&x".to_owned(),
        };
        let link = dashboard_link(&grafana, &policy, None).unwrap_or_default();
        assert_eq!(
            link,
            "https://grafana.example/d/shiftgate-rollout?var-namespace=shop&var-name=check+out%26x"
        );
    }

    #[test]
    fn bad_url_is_an_error_naming_it() {
        let grafana = GrafanaSpec {
            url: "not a url".to_owned(),
            dashboard: "x".to_owned(),
            annotations: None,
        };
        let policy = PolicyRef {
            namespace: "a".to_owned(),
            name: "b".to_owned(),
        };
        let err = dashboard_link(&grafana, &policy, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("\"not a url\""), "{err}");
    }
}
