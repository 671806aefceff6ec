//! When new data arrives: the scrape phase of the series behind a policy's canary
//! requests, learned from the timestamps Prometheus stores with their samples. An
//! evaluation just after a scrape sees the newest data; one just before it judges on
//! data almost a scrape interval old. Pure: the timestamps come in.

use chrono::TimeZone;

use crate::policy::Timestamp;

/// The shortest and longest scrape intervals believed: anything else is a gap or
/// jitter, not a scrape interval.
const MIN_PERIOD_MS: i64 = 50;
const MAX_PERIOD_MS: i64 = 10 * 60 * 1000;

/// The range of raw samples read to learn the phase: several scrapes at the intervals
/// where timing matters (seconds).
pub const LEARN_RANGE: &str = "30s";

/// The newest sample and the interval between samples: new data lands at
/// `latest + k × period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScrapePhase {
    pub latest: Timestamp,
    pub period: chrono::Duration,
}

/// Learns the phase from the sample timestamps (milliseconds) of one or more series.
/// The period is the median gap between consecutive samples of a series; `None` when
/// no series has two samples or the gaps are not a believable scrape interval.
pub fn learn(series: &[Vec<i64>]) -> Option<ScrapePhase> {
    let mut gaps: Vec<i64> = Vec::new();
    let mut latest: Option<i64> = None;
    for times in series {
        let mut sorted = times.clone();
        sorted.sort_unstable();
        sorted.dedup();
        gaps.extend(sorted.windows(2).map(|w| w[1] - w[0]));
        if let Some(&last) = sorted.last() {
            latest = Some(latest.map_or(last, |l| l.max(last)));
        }
    }
    gaps.sort_unstable();
    let period = *gaps.get(gaps.len() / 2)?;
    if !(MIN_PERIOD_MS..=MAX_PERIOD_MS).contains(&period) {
        return None;
    }
    Some(ScrapePhase {
        latest: chrono::Utc.timestamp_millis_opt(latest?).single()?,
        period: chrono::Duration::milliseconds(period),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_is_the_median_gap_and_the_latest_sample_wins() {
        let phase = learn(&[
            vec![1_000_120, 1_001_120, 1_002_120, 1_004_120],
            vec![1_000_500, 1_001_500],
        ])
        .unwrap_or_else(|| panic!("learned"));
        assert_eq!(phase.period, chrono::Duration::milliseconds(1_000));
        assert_eq!(phase.latest.timestamp_millis(), 1_004_120);
    }

    #[test]
    fn one_sample_or_an_unbelievable_gap_teaches_nothing() {
        assert_eq!(learn(&[vec![5_000]]), None);
        assert_eq!(learn(&[]), None);
        assert_eq!(learn(&[vec![5_000, 5_010, 5_020]]), None, "10 ms is jitter");
    }
}
