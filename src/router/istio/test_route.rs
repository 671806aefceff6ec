//! shiftgate's own test route: requests carrying the policy's cookie or header reach the
//! canary while every other request follows the weights.
//!
//! The route is minimal — `name`, `match`, `route` to the canary with weight 100 — with
//! two additions that keep a test request equivalent to a user request:
//! - its match blocks are the managed routes' match blocks, each ANDed with the cookie or
//!   header condition, so it only catches requests the managed routes would have caught
//!   (a managed route without `match` makes it match on the condition alone);
//! - it copies the managed routes' `rewrite` when they all have the same one, so the canary
//!   sees the same path as stable does.

use serde_json::{json, Map, Value};

use super::{IstioError, IstioTarget, Location};

/// The cookie regex Istio users write by hand (`^(.*?;)?(test=true)(;.*)?$`), with `name=value`
/// escaped and an optional space after `;`, because browsers separate cookies with "; ".
pub fn cookie_regex(cookie: &str) -> String {
    format!("^(.*?; ?)?({})(;.*)?$", regex::escape(cookie))
}

/// The header condition (`headers: {name: {exact|regex: ...}}`) the policy's test route
/// matches on; cookie and header both given means both must match.
fn conditions(target: &IstioTarget) -> Result<Vec<(String, Value)>, IstioError> {
    let no_spec = || IstioError::NoTestRouteSpec {
        policy: format!("{}/{}", target.policy_namespace, target.policy_name),
    };
    let spec = target.test_route.as_ref().ok_or_else(no_spec)?;
    let mut conditions = Vec::new();
    if let Some(cookie) = &spec.cookie {
        match cookie.split_once('=') {
            Some((name, _)) if !name.trim().is_empty() => {}
            _ => {
                return Err(IstioError::BadCookie {
                    policy: format!("{}/{}", target.policy_namespace, target.policy_name),
                    cookie: cookie.clone(),
                })
            }
        }
        conditions.push((
            "cookie".to_owned(),
            json!({ "regex": cookie_regex(cookie) }),
        ));
    }
    if let Some(header) = &spec.header {
        // Istio requires lowercase header names in matches.
        let name = header.name.to_ascii_lowercase();
        let condition = match (&header.exact, &header.regex) {
            (Some(exact), _) => json!({ "exact": exact }),
            (None, Some(regex)) => json!({ "regex": regex }),
            // A header that is present at all.
            (None, None) => json!({ "regex": ".*" }),
        };
        conditions.push((name, condition));
    }
    if conditions.is_empty() {
        return Err(no_spec());
    }
    Ok(conditions)
}

/// Builds the test route for the located managed routes of `vs`.
pub fn build(vs: &Value, location: &Location, target: &IstioTarget) -> Result<Value, IstioError> {
    let conditions = conditions(target)?;
    let http = vs
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let managed: Vec<&Value> = location
        .routes
        .iter()
        .filter_map(|route| http.get(route.index))
        .collect();

    // Union of the managed routes' match blocks; one catch-all route makes it a catch-all.
    let mut blocks: Vec<(String, Map<String, Value>)> = Vec::new();
    let mut catch_all = false;
    for (route, located) in managed.iter().zip(&location.routes) {
        match route.get("match").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => {
                for (position, block) in list.iter().enumerate() {
                    let path = format!("spec.http[{}].match[{position}]", located.index);
                    blocks.push((path, block.as_object().cloned().unwrap_or_default()));
                }
            }
            _ => catch_all = true,
        }
    }
    if catch_all {
        blocks = vec![("(test route)".to_owned(), Map::new())];
    }
    let mut matches = Vec::with_capacity(blocks.len());
    for (path, mut block) in blocks {
        // A block-level `name` would be copied under the user's name; drop it.
        block.remove("name");
        let headers = block
            .entry("headers")
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(headers) = headers.as_object_mut() else {
            return Err(IstioError::Malformed {
                vs: target.object_ref(),
                path: format!("{path}.headers"),
                problem: "is not a map".to_owned(),
            });
        };
        for (name, condition) in &conditions {
            if headers.contains_key(name) {
                return Err(IstioError::TestRouteHeaderTaken {
                    vs: target.object_ref(),
                    path,
                    header: name.clone(),
                });
            }
            headers.insert(name.clone(), condition.clone());
        }
        matches.push(Value::Object(block));
    }

    let first = location.routes.first();
    let canary_destination = first
        .and_then(|route| {
            http.get(route.index)?
                .get("route")?
                .get(route.canary.index)?
                .get("destination")
                .cloned()
        })
        .unwrap_or(Value::Null);

    let mut test_route = Map::new();
    test_route.insert("name".to_owned(), Value::String(target.test_route_name()));
    test_route.insert("match".to_owned(), Value::Array(matches));
    let rewrites: Vec<Option<&Value>> = managed.iter().map(|r| r.get("rewrite")).collect();
    if let Some(Some(rewrite)) = rewrites.first() {
        if rewrites.iter().all(|other| *other == Some(*rewrite)) {
            test_route.insert("rewrite".to_owned(), (*rewrite).clone());
        }
    }
    test_route.insert(
        "route".to_owned(),
        json!([{ "destination": canary_destination, "weight": 100 }]),
    );
    Ok(Value::Object(test_route))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn cookie_regex_matches_first_middle_and_last_cookie_only() {
        let re = regex::Regex::new(&cookie_regex("test=true")).unwrap();
        assert!(re.is_match("test=true"));
        assert!(re.is_match("a=1; test=true"));
        assert!(re.is_match("a=1;test=true; b=2"));
        assert!(!re.is_match("test=truex"));
        assert!(!re.is_match("xtest=true"));
        assert!(!re.is_match("a=1; test=false"));
    }

    #[test]
    fn cookie_value_metacharacters_are_escaped() {
        let re = regex::Regex::new(&cookie_regex("v=1.2")).unwrap();
        assert!(re.is_match("v=1.2"));
        assert!(!re.is_match("v=1x2"));
    }
}
