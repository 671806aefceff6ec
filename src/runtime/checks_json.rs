//! JSONPath expectations on a response body (`expectJson`), with the jsonpath-rust crate
//! (RFC 9535). Pure: the caller fetched the body. Messages say which path, what it
//! selected and what was expected.

use jsonpath_rust::JsonPath;
use serde_json::Value;

use crate::policy::JsonExpectation;

/// At most this much of a selected value is quoted in a message.
const VALUE_EXCERPT_CHARS: usize = 80;

/// `Ok` when every expectation holds on `body`, else what the first broken one saw.
pub fn check_json(body: &str, expectations: &[JsonExpectation]) -> Result<(), String> {
    if expectations.is_empty() {
        return Ok(());
    }
    let document: Value = serde_json::from_str(body)
        .map_err(|e| format!("the body is not JSON ({e}), but `expectJson` needs JSON"))?;
    for (index, expectation) in expectations.iter().enumerate() {
        let path = &expectation.path;
        let selected = document
            .query(path)
            .map_err(|e| format!("expectJson[{index}]: `{path}` is not a JSONPath: {e}"))?;
        let Some(first) = selected.first() else {
            return Err(format!(
                "expectJson[{index}]: `{path}` selected nothing in the body"
            ));
        };
        if let Some(expected) = &expectation.equals {
            if !matches_text(first, expected) {
                return Err(format!(
                    "expectJson[{index}]: `{path}` is {}, expected {expected:?}",
                    excerpt(first)
                ));
            }
        }
    }
    Ok(())
}

/// A string compares as text; any other value by its JSON text.
fn matches_text(value: &Value, expected: &str) -> bool {
    match value {
        Value::String(text) => text == expected,
        other => serde_json::to_string(other).is_ok_and(|text| text == expected),
    }
}

fn excerpt(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(VALUE_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn expect(path: &str, equals: Option<&str>) -> JsonExpectation {
        JsonExpectation {
            path: path.to_owned(),
            equals: equals.map(str::to_owned),
        }
    }

    const BODY: &str =
        r#"{"status":"ok","code":200,"ready":true,"checks":[{"name":"db","ok":false}]}"#;

    #[test]
    fn strings_numbers_and_booleans_compare_by_their_text() {
        let all = [
            expect("$.status", Some("ok")),
            expect("$.code", Some("200")),
            expect("$.ready", Some("true")),
            expect("$.checks[0].name", None),
            // The filter form docs/policy.md shows.
            expect("$.checks[?@.name == 'db'].ok", Some("false")),
        ];
        assert_eq!(check_json(BODY, &all), Ok(()));
    }

    #[test]
    fn a_broken_expectation_names_its_path_what_it_saw_and_what_was_expected() {
        let message = check_json(BODY, &[expect("$.checks[0].ok", Some("true"))]).unwrap_err();
        assert_eq!(
            message,
            "expectJson[0]: `$.checks[0].ok` is false, expected \"true\""
        );
        let message = check_json(
            BODY,
            &[expect("$.status", Some("ok")), expect("$.version", None)],
        )
        .unwrap_err();
        assert_eq!(
            message,
            "expectJson[1]: `$.version` selected nothing in the body"
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_a_failure_not_a_pass() {
        let message = check_json("ok", &[expect("$.status", Some("ok"))]).unwrap_err();
        assert!(message.starts_with("the body is not JSON"), "{message}");
        assert_eq!(check_json("not json", &[]), Ok(()));
    }
}
