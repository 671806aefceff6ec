//! A latency judge's view of one interval's histograms: each side's cumulative buckets
//! and total, the counts slower than an edge, and the requests per bucket.

use crate::analysis::sample::Measured;
use crate::analysis::sequential::evidence::IntervalCounts;
use crate::analysis::sequential::{count, short};
use crate::analysis::verdict::InconclusiveReason;

/// One side's histogram: cumulative finite buckets and the total.
#[derive(Clone, Copy)]
pub(crate) struct Histogram<'a> {
    pub(crate) buckets: &'a [crate::analysis::sample::Bucket],
    pub(crate) total: f64,
}

pub(crate) fn histogram(m: &Measured) -> Result<Histogram<'_>, InconclusiveReason> {
    if m.buckets.is_empty() {
        return Err(InconclusiveReason::NoData);
    }
    Ok(Histogram {
        buckets: &m.buckets,
        total: count(m.requests)?,
    })
}

pub(crate) fn slow_counts(
    le: f64,
    canary: Histogram<'_>,
    stable: Histogram<'_>,
) -> Result<IntervalCounts, InconclusiveReason> {
    let above = |h: Histogram<'_>| {
        let bucket = h.buckets.iter().find(|b| b.le == le).ok_or_else(|| {
            InconclusiveReason::InvalidQuery(format!("no bucket with le=\"{}\"", short(le)))
        })?;
        let at_or_below = count(Some(bucket.count))?;
        // `increase()` of two series is not exactly monotone: never a negative count.
        Ok::<f64, InconclusiveReason>((h.total - at_or_below).max(0.0))
    };
    Ok(IntervalCounts {
        canary_trials: canary.total,
        canary_events: above(canary)?,
        stable_trials: stable.total,
        stable_events: above(stable)?,
    })
}

/// Each side's requests per bucket (the finite buckets, then the one above the highest
/// edge), for the rank test. Both sides must have the same edges.
pub(crate) fn per_bucket(
    canary: Histogram<'_>,
    stable: Histogram<'_>,
) -> Result<(Vec<f64>, Vec<f64>), InconclusiveReason> {
    let same_edges = canary.buckets.len() == stable.buckets.len()
        && canary
            .buckets
            .iter()
            .zip(stable.buckets)
            .all(|(c, s)| c.le == s.le);
    if !same_edges {
        return Err(InconclusiveReason::InvalidQuery(
            "canary and stable histograms have different bucket edges".to_owned(),
        ));
    }
    let split = |h: Histogram<'_>| {
        let mut below = 0.0;
        let mut out = Vec::with_capacity(h.buckets.len() + 1);
        for b in h.buckets {
            let cumulative = count(Some(b.count))?;
            // `increase()` of two series is not exactly monotone: never a negative count.
            out.push((cumulative - below).max(0.0));
            below = below.max(cumulative);
        }
        out.push((h.total - below).max(0.0));
        Ok::<Vec<f64>, InconclusiveReason>(out)
    };
    Ok((split(canary)?, split(stable)?))
}
