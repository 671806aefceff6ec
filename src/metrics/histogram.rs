//! Histogram answers: a `sum by (le) (increase(…_bucket[…]))` query answers one series
//! per bucket edge, which the sequential latency judge reads as cumulative counts.

use crate::analysis::sample::{Bucket, Measured, Sample};

/// Classifies one answer of a histogram query (one series per `le`, as `sum by (le)
/// (increase(…_bucket[…]))` gives): the `+Inf` count is `requests`, the finite edges
/// are `buckets`, in order. Pure.
pub fn interpret_histogram(status: u16, body: &[u8], query: &str, address: &str) -> Sample {
    use prometheus_http_query::response::Data;
    let series = match super::prometheus::result_data(status, body, query, address) {
        Err(sample) => return sample,
        Ok(Data::Vector(series)) => series,
        Ok(_) => {
            return Sample::Invalid {
                message: format!(
                    "query `{query}` did not return one series per `le`; write e.g. `sum by (le) (increase(…_bucket[{{{{ interval }}}}]))`"
                ),
            }
        }
    };
    if series.is_empty() {
        return Sample::NoData;
    }
    let mut total = None;
    let mut buckets = Vec::with_capacity(series.len());
    for one in &series {
        let count = one.sample().value();
        let le = one.metric().get("le").map(|le| le.parse::<f64>());
        match le {
            Some(Ok(le)) if le == f64::INFINITY => total = Some(count),
            Some(Ok(le)) if le.is_finite() => buckets.push(Bucket { le, count }),
            _ => {
                return Sample::Invalid {
                    message: format!(
                        "query `{query}` returned a series without a numeric `le` label ({}); aggregate with `sum by (le)`",
                        super::prometheus::list_series(std::iter::once(one.metric()))
                    ),
                }
            }
        }
    }
    let Some(total) = total else {
        return Sample::Invalid {
            message: format!(
                "query `{query}` returned no `le=\"+Inf\"` bucket; keep every bucket in the query"
            ),
        };
    };
    if !total.is_finite() || buckets.iter().any(|b| !b.count.is_finite()) {
        return Sample::NotANumber;
    }
    buckets.sort_by(|a, b| a.le.total_cmp(&b.le));
    Sample::Value(Measured {
        value: total,
        requests: Some(total),
        buckets,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(series: &str) -> Sample {
        let body = format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{series}]}}}}"#
        );
        interpret_histogram(200, body.as_bytes(), "q", "http://p")
    }

    fn bucket(le: &str, count: f64) -> String {
        format!(r#"{{"metric":{{"le":"{le}"}},"value":[1,"{count}"]}}"#)
    }

    #[test]
    fn buckets_in_order_with_inf_as_requests() {
        let got = answer(
            &[
                bucket("+Inf", 100.0),
                bucket("100", 90.0),
                bucket("50", 60.0),
            ]
            .join(","),
        );
        let Sample::Value(m) = got else {
            panic!("{got:?}");
        };
        assert_eq!(m.requests, Some(100.0));
        let edges: Vec<(f64, f64)> = m.buckets.iter().map(|b| (b.le, b.count)).collect();
        assert_eq!(edges, vec![(50.0, 60.0), (100.0, 90.0)]);
    }

    #[test]
    fn broken_histograms_say_why() {
        assert_eq!(answer(""), Sample::NoData);
        assert!(
            matches!(answer(&bucket("50", 1.0)), Sample::Invalid { message } if message.contains("+Inf"))
        );
        let no_le = r#"{"metric":{"pod":"a"},"value":[1,"3"]}"#;
        assert!(matches!(answer(no_le), Sample::Invalid { message } if message.contains("`le`")));
        assert_eq!(
            answer(&[bucket("+Inf", f64::NAN), bucket("50", 1.0)].join(",")),
            Sample::NotANumber
        );
    }
}
