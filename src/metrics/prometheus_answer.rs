//! What one answer of the Prometheus HTTP API means: exactly one number is a value;
//! no data, NaN, several series, a query error, a server-side failure and a body that
//! is not an API answer each keep their own kind, with a message that names the query
//! and what to check.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::escape;
use crate::analysis::sample::Sample;

/// How many label sets an error message lists before saying "and N more".
const LISTED_SERIES: usize = 5;

/// The JSON envelope of every Prometheus API answer.
#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

/// Classifies one HTTP answer of `/api/v1/query`. Pure, so every shape is unit-tested.
pub fn interpret(status: u16, body: &[u8], query: &str, address: &str) -> Sample {
    use prometheus_http_query::response::Data;
    match result_data(status, body, query, address) {
        Err(sample) => sample,
        Ok(Data::Scalar(sample)) => number(sample.value()),
        Ok(Data::Vector(series)) => match series.as_slice() {
            [] => Sample::NoData,
            [one] => number(one.sample().value()),
            several => Sample::Invalid {
                message: format!(
                    "query `{query}` returned {} series ({}); aggregate them, e.g. with sum()",
                    several.len(),
                    list_series(several.iter().map(|s| s.metric()))
                ),
            },
        },
        Ok(Data::Matrix(_)) => Sample::Invalid {
            message: format!(
                "query `{query}` returned a range vector; apply a function such as rate() or avg_over_time() to get one number"
            ),
        },
    }
}

/// The result of one answer, or the sample that says why there is none.
pub(crate) fn result_data(
    status: u16,
    body: &[u8],
    query: &str,
    address: &str,
) -> Result<prometheus_http_query::response::Data, Sample> {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
        return Err(not_an_api_answer(status, body, query, address));
    };
    if envelope.status != "success" && envelope.status != "error" {
        return Err(malformed(status, "an unknown `status`", query, address));
    }
    if envelope.status != "success" {
        let error_type = envelope.error_type.unwrap_or_else(|| "unknown".to_owned());
        let error = envelope.error.unwrap_or_default();
        return Err(match error_type.as_str() {
            "timeout" => Sample::TimedOut,
            "unavailable" | "internal" | "canceled" => Sample::Unreachable {
                message: format!("prometheus at {address} failed query `{query}` (HTTP {status}, {error_type}): {error}"),
            },
            _ if status >= 500 => Sample::Unreachable {
                message: format!("prometheus at {address} failed query `{query}` (HTTP {status}, {error_type}): {error}"),
            },
            _ => Sample::Invalid {
                message: format!("prometheus rejected query `{query}` ({error_type}): {error}; fix the query"),
            },
        });
    }
    if !envelope.warnings.is_empty() {
        return Err(Sample::Invalid {
            message: format!(
                "query `{query}` returned warnings: {}; fix the query so it runs without warnings",
                envelope.warnings.join("; ")
            ),
        });
    }
    let Some(data) = envelope.data else {
        return Err(Sample::Invalid {
            message: format!("prometheus at {address} answered query `{query}` without data"),
        });
    };
    let result_type = data
        .get("resultType")
        .and_then(|t| t.as_str())
        .unwrap_or("unknown")
        .to_owned();
    let Ok(result) = serde_json::from_value::<prometheus_http_query::response::PromqlResult>(data)
    else {
        // A string is a real (wrong) query result; anything else that does not parse is
        // a broken answer (a value that is not a number, a missing field): Prometheus,
        // or whatever answers at its address, is at fault, not the query.
        return Err(if result_type == "string" {
            Sample::Invalid {
                message: format!(
                    "query `{query}` returned a {result_type}, not a number; make it return one series"
                ),
            }
        } else {
            malformed(
                status,
                &format!("a malformed `{result_type}` result"),
                query,
                address,
            )
        });
    };
    Ok(result.into_inner().0)
}

/// NaN and ±Inf are not measurements: NaN is 0/0 (no requests), and ±Inf is a division
/// by zero between counters scraped at different times or a quantile beyond the largest
/// histogram bucket. Both are reported as `NotANumber`, i.e. Inconclusive.
fn number(value: f64) -> Sample {
    if value.is_finite() {
        Sample::value(value)
    } else {
        Sample::NotANumber
    }
}

/// `{pod="a"}, {pod="b"}` (sorted labels, values escaped as PromQL writes them).
pub(crate) fn list_series<'a>(
    series: impl ExactSizeIterator<Item = &'a HashMap<String, String>>,
) -> String {
    let total = series.len();
    let mut listed: Vec<String> = series
        .take(LISTED_SERIES)
        .map(|labels| {
            let sorted: BTreeMap<_, _> = labels.iter().collect();
            let name = labels.get("__name__").map_or("", String::as_str);
            let pairs: Vec<String> = sorted
                .iter()
                .filter(|(k, _)| k.as_str() != "__name__")
                .map(|(k, v)| {
                    let v = escape::string_content(v, '"').unwrap_or_else(|_| (*v).clone());
                    format!("{k}=\"{v}\"")
                })
                .collect();
            format!("{name}{{{}}}", pairs.join(", "))
        })
        .collect();
    if total > LISTED_SERIES {
        listed.push(format!("and {} more", total - LISTED_SERIES));
    }
    listed.join(", ")
}

/// A JSON answer that is not what the Prometheus API answers: the source is broken (or
/// is not Prometheus), so the run cannot go on, and the query is not blamed.
fn malformed(status: u16, what: &str, query: &str, address: &str) -> Sample {
    Sample::Unreachable {
        message: format!(
            "prometheus at {address} answered HTTP {status} for query `{query}` with {what}, not a Prometheus API response; check that the address points at a working Prometheus"
        ),
    }
}

fn not_an_api_answer(status: u16, body: &[u8], query: &str, address: &str) -> Sample {
    let text = String::from_utf8_lossy(body);
    // One short line: the body may be a whole HTML page with control characters.
    let excerpt: String = text
        .trim()
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let what = format!("prometheus at {address} answered HTTP {status} for query `{query}` without an API response ({excerpt})");
    match status {
        // A success that is not the API (a login page, a proxy's banner, another
        // service): the world is at fault, as with a 5xx; the run cannot go on.
        200..=299 => Sample::Unreachable {
            message: format!("{what}; check that the address points at a working Prometheus"),
        },
        429 | 500..=599 => Sample::Unreachable { message: what },
        401 | 403 => Sample::Invalid {
            message: format!("{what}; check spec.analysis.prometheus.auth"),
        },
        404 => Sample::Invalid {
            message: format!("{what}; check spec.analysis.prometheus.address (shiftgate calls <address>/api/v1/query)"),
        },
        _ => Sample::Invalid {
            message: format!("{what}; check that the address points at a Prometheus API"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "sum(rate(x[30s]))";
    const ADDR: &str = "http://prom:9090";

    fn vector(series: &str) -> String {
        format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{series}]}}}}"#)
    }

    fn run(status: u16, body: &str) -> Sample {
        interpret(status, body.as_bytes(), Q, ADDR)
    }

    fn message(sample: Sample) -> String {
        match sample {
            Sample::Invalid { message } | Sample::Unreachable { message } => message,
            other => panic!("no message in {other:?}"),
        }
    }

    #[test]
    fn one_series_or_a_scalar_is_a_value() {
        let one = vector(r#"{"metric":{},"value":[1700000000.5,"0.25"]}"#);
        assert_eq!(run(200, &one), Sample::value(0.25));
        let scalar =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"3"]}}"#;
        assert_eq!(run(200, scalar), Sample::value(3.0));
    }

    #[test]
    fn empty_nan_and_infinity_are_not_numbers() {
        assert_eq!(run(200, &vector("")), Sample::NoData);
        for text in ["NaN", "+Inf", "-Inf"] {
            let body = vector(&format!(r#"{{"metric":{{}},"value":[1,"{text}"]}}"#));
            assert_eq!(run(200, &body), Sample::NotANumber, "{text}");
        }
    }

    #[test]
    fn several_series_are_invalid_and_named() {
        let body = vector(
            r#"{"metric":{"pod":"b","__name__":"up"},"value":[1,"1"]},{"metric":{"pod":"a"},"value":[1,"2"]}"#,
        );
        let text = message(run(200, &body));
        assert!(text.contains(r#"up{pod="b"}, {pod="a"}"#), "{text}");
        assert!(text.contains("sum()") && text.contains(Q), "{text}");
    }

    #[test]
    fn many_series_are_listed_up_to_a_limit() {
        let series: Vec<String> = (0..8)
            .map(|i| format!(r#"{{"metric":{{"pod":"p{i}"}},"value":[1,"1"]}}"#))
            .collect();
        let text = message(run(200, &vector(&series.join(","))));
        assert!(
            text.contains("8 series") && text.contains("and 3 more"),
            "{text}"
        );
    }

    #[test]
    fn query_errors_are_invalid_and_name_the_query() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"1:18: parse error: unclosed left parenthesis"}"#;
        let sample = run(400, body);
        assert!(matches!(sample, Sample::Invalid { .. }), "{sample:?}");
        let text = message(sample);
        assert!(text.contains(Q) && text.contains("unclosed"), "{text}");
        let exec = r#"{"status":"error","errorType":"execution","error":"many-to-many matching not allowed"}"#;
        assert!(matches!(run(422, exec), Sample::Invalid { .. }));
    }

    #[test]
    fn server_side_failures_are_unreachable_or_timed_out() {
        let timeout = r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#;
        assert_eq!(run(503, timeout), Sample::TimedOut);
        let unavailable =
            r#"{"status":"error","errorType":"unavailable","error":"tsdb not ready"}"#;
        let text = message(run(503, unavailable));
        assert!(text.contains(ADDR) && text.contains(Q), "{text}");
        let proxy = run(502, "<html>Bad Gateway</html>");
        assert!(matches!(proxy, Sample::Unreachable { .. }), "{proxy:?}");
    }

    #[test]
    fn non_api_answers_say_what_to_check() {
        let denied = run(401, "Unauthorized");
        assert!(matches!(&denied, Sample::Invalid { .. }));
        assert!(message(denied).contains("auth"));
        assert!(message(run(404, "404 page not found")).contains("/api/v1/query"));
        let html = run(200, "<html>grafana</html>");
        assert!(matches!(html, Sample::Unreachable { .. }), "{html:?}");
        assert!(message(html).contains("working Prometheus"));
    }

    #[test]
    fn warnings_make_the_result_invalid() {
        let body = r#"{"status":"success","warnings":["PromQL warning: encountered a mix of histograms and floats"],"data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}"#;
        let text = message(run(200, body));
        assert!(
            text.contains("warnings") && text.contains("mix of histograms"),
            "{text}"
        );
    }

    #[test]
    fn range_vectors_and_strings_are_invalid() {
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}"#;
        assert!(message(run(200, matrix)).contains("range vector"));
        let string = r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#;
        assert!(message(run(200, string)).contains("string"));
    }

    #[test]
    fn malformed_successes_are_the_source_not_the_query() {
        for body in [
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"scalar","result":"x"}}"#,
            r#"{"status":"success","data":{"result":[]}}"#,
            r#"{"status":"maybe"}"#,
            "garbage",
            "",
        ] {
            let sample = run(200, body);
            assert!(
                matches!(sample, Sample::Unreachable { .. }),
                "{body}: {sample:?}"
            );
        }
    }
}
