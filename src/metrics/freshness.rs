//! When new data arrives: the scrape phase of the series behind a policy's canary
//! requests, learned from the timestamps Prometheus stores with their samples. An
//! evaluation just after a scrape sees the newest data; one just before it judges on
//! data almost a scrape interval old. Pure: the timestamps come in.

use chrono::TimeZone;

#[path = "freshness_batch.rs"]
mod batch;
#[path = "freshness_group.rs"]
mod group;
pub use batch::{timestamp_batches, TimestampBatch, DURATION_TAG, MEMBER_LABEL};
pub use group::{Ask, PhaseGroup, JOIN_WAIT, RELEARN};

use crate::policy::Timestamp;

/// The shortest and longest scrape intervals believed: anything else is a gap or
/// jitter, not a scrape interval.
const MIN_PERIOD_MS: i64 = 50;
const MAX_PERIOD_MS: i64 = 10 * 60 * 1000;

/// The range of raw samples read to learn the phase: several scrapes at the intervals
/// where timing matters (seconds).
pub const LEARN_RANGE: &str = "30s";

/// How long after a scrape starts (the timestamp Prometheus gives its samples) they are
/// taken to be queryable when the scrape's duration is not known.
pub const DEFAULT_INGEST: std::time::Duration = std::time::Duration::from_millis(100);

/// The shortest ingest margin: the samples are appended after the scrape's body is read.
const MIN_INGEST_MS: i64 = 20;

/// The newest sample and the interval between samples: new data lands at
/// `latest + k × period` and is queryable `ingest` later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScrapePhase {
    pub latest: Timestamp,
    pub period: chrono::Duration,
    /// How long after a scrape starts its samples are queryable: learned from the
    /// target's `scrape_duration_seconds` ([`ingest_margin`]), else [`DEFAULT_INGEST`].
    pub ingest: chrono::Duration,
}

/// How long after a scrape's start its samples are taken to be queryable, from the
/// longest `scrape_duration_seconds` of the target lately (`None`: not known). A
/// scrape's samples are stored once its body is read, so the margin is that duration
/// with half again for the slowest scrapes to come and [`MIN_INGEST_MS`] for the
/// append; never more than half a period (a margin that long would judge data aging
/// towards the next scrape), never less than [`MIN_INGEST_MS`]. An evaluation that
/// comes too early sees the previous scrape: one period late, the case before scrape
/// alignment. A fixed 100 ms was too long for a fast local target (~5 ms scrapes: the
/// 80 ms extra were a tenth of the time to rollback) and too short for a slow one.
pub fn ingest_margin(
    longest_scrape_seconds: Option<f64>,
    period: chrono::Duration,
) -> chrono::Duration {
    let default = chrono::Duration::from_std(DEFAULT_INGEST).unwrap_or_default();
    let half_period = period.num_milliseconds() / 2;
    let margin_ms = match longest_scrape_seconds {
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            let ms = (seconds * 1500.0).round().min(i64::MAX as f64 / 2.0) as i64;
            ms.saturating_add(MIN_INGEST_MS)
        }
        _ => default.num_milliseconds(),
    };
    chrono::Duration::milliseconds(margin_ms.min(half_period).max(MIN_INGEST_MS))
}

/// Learns the phase from the sample timestamps (milliseconds) of one or more series.
/// The period is first the median gap between consecutive samples of a series, then
/// refined over the longest series' whole span (its span over the number of such gaps
/// in it): scrape timestamps jitter by several ms on a busy machine, so the median gap
/// of a 1 s scrape could be 1,002 ms, which drifts 0.6 s over the 5 min a phase is
/// used and made the scrape look slower than a 1 s interval (no alignment at all).
/// `None` when no series has two samples or the gaps are not a believable scrape
/// interval.
pub fn learn(series: &[Vec<i64>]) -> Option<ScrapePhase> {
    let mut gaps: Vec<i64> = Vec::new();
    let mut latest: Option<i64> = None;
    let mut longest: Option<(i64, i64)> = None;
    for times in series {
        let mut sorted = times.clone();
        sorted.sort_unstable();
        sorted.dedup();
        gaps.extend(sorted.windows(2).map(|w| w[1] - w[0]));
        if let (Some(&first), Some(&last)) = (sorted.first(), sorted.last()) {
            latest = Some(latest.map_or(last, |l| l.max(last)));
            let span = last - first;
            if longest.is_none_or(|(s, _)| span > s) {
                longest = Some((span, first));
            }
        }
    }
    gaps.sort_unstable();
    let median = *gaps.get(gaps.len() / 2)?;
    if !(MIN_PERIOD_MS..=MAX_PERIOD_MS).contains(&median) {
        return None;
    }
    let period = match longest {
        Some((span, _)) if span > 0 => {
            let periods = ((span as f64) / (median as f64)).round().max(1.0);
            ((span as f64) / periods).round() as i64
        }
        _ => median,
    };
    if !(MIN_PERIOD_MS..=MAX_PERIOD_MS).contains(&period) {
        return None;
    }
    let period = chrono::Duration::milliseconds(period);
    Some(ScrapePhase {
        latest: chrono::Utc.timestamp_millis_opt(latest?).single()?,
        period,
        ingest: ingest_margin(None, period),
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
    fn jittered_scrapes_teach_their_true_period() {
        // A 1 s scrape whose timestamps jitter: most gaps are over 1,000 ms, a few make
        // up for them.
        let times: Vec<i64> = (0..30)
            .map(|k| 1_000_300 + k * 1000 + if k % 3 == 1 { 6 } else { 0 })
            .collect();
        let phase = learn(&[times]).unwrap_or_else(|| panic!("learned"));
        assert_eq!(phase.period, chrono::Duration::milliseconds(1_000));
        // A missed scrape (a 2 s gap) does not count as one period.
        let missed: Vec<i64> = (0..30).filter(|k| *k != 10).map(|k| k * 15_000).collect();
        let phase = learn(&[missed]).unwrap_or_else(|| panic!("learned"));
        assert_eq!(phase.period, chrono::Duration::seconds(15));
    }

    #[test]
    fn the_ingest_margin_follows_the_scrape_duration_within_bounds() {
        let second = chrono::Duration::seconds(1);
        let ms = chrono::Duration::milliseconds;
        assert_eq!(ingest_margin(None, second), ms(100));
        assert_eq!(
            ingest_margin(Some(0.004), second),
            ms(26),
            "a fast local target"
        );
        assert_eq!(ingest_margin(Some(0.0), second), ms(20));
        assert_eq!(
            ingest_margin(Some(2.0), second),
            ms(500),
            "half a period at most"
        );
        assert_eq!(
            ingest_margin(Some(0.3), chrono::Duration::seconds(15)),
            ms(470)
        );
        assert_eq!(ingest_margin(Some(f64::NAN), second), ms(100));
        assert_eq!(ingest_margin(None, ms(100)), ms(50));
    }

    #[test]
    fn one_sample_or_an_unbelievable_gap_teaches_nothing() {
        assert_eq!(learn(&[vec![5_000]]), None);
        assert_eq!(learn(&[]), None);
        assert_eq!(learn(&[vec![5_000, 5_010, 5_020]]), None, "10 ms is jitter");
    }
}
