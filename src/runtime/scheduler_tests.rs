use super::*;
use crate::runtime::scheduler_sim::{simulate, SimConfig, Start};
use chrono::TimeZone;

fn at(seconds: i64) -> Timestamp {
    chrono::Utc
        .timestamp_opt(seconds, 0)
        .single()
        .unwrap_or_default()
}

#[test]
fn requeue_is_clamped_between_the_minimum_and_the_resync() {
    let resync = Duration::from_secs(300);
    assert_eq!(
        requeue_after(at(100), Some(at(130)), resync),
        Duration::from_secs(30)
    );
    assert_eq!(requeue_after(at(100), Some(at(90)), resync), MIN_REQUEUE);
    assert_eq!(requeue_after(at(100), Some(at(10_000)), resync), resync);
    assert_eq!(requeue_after(at(100), None, resync), resync);
    assert_eq!(after_error(true, resync), TRANSIENT_RETRY);
    assert_eq!(after_error(false, resync), resync);
}

#[test]
fn the_earliest_due_runs_first_and_ties_in_scheduling_order() {
    let mut queue: DueQueue<&str, u64> = DueQueue::new(10);
    queue.schedule("late", 30);
    queue.schedule("b", 10);
    queue.schedule("a", 10);
    queue.schedule("first", 5);
    assert_eq!(queue.next_due(), Some(5));
    assert_eq!(queue.pop_due(4), None, "nothing is due before 5");
    let order: Vec<_> = std::iter::from_fn(|| queue.pop_due(20)).collect();
    assert_eq!(order, vec![("first", 5), ("b", 10), ("a", 10)]);
    assert_eq!(queue.pop_due(30), Some(("late", 30)));
}

#[test]
fn an_earlier_request_moves_a_key_forward_and_a_later_one_does_not() {
    let mut queue: DueQueue<&str, u64> = DueQueue::new(1);
    queue.schedule("x", 50);
    queue.schedule("x", 80);
    assert_eq!(queue.next_due(), Some(50));
    queue.schedule("x", 20);
    assert_eq!(queue.next_due(), Some(20));
    assert_eq!(queue.waiting(), 1);
}

#[test]
fn concurrency_is_bounded_and_a_running_key_is_not_started_twice() {
    let mut queue: DueQueue<&str, u64> = DueQueue::new(1);
    queue.schedule("a", 0);
    queue.schedule("b", 0);
    assert_eq!(queue.pop_due(0), Some(("a", 0)));
    assert_eq!(queue.pop_due(0), None, "the only slot is busy");
    assert_eq!(queue.next_due(), None);
    // A watch event for the running key: kept, merged with what its run asks.
    queue.schedule("a", 3);
    queue.finish(&"a", Some(100));
    assert_eq!(queue.running(), 0);
    assert_eq!(queue.pop_due(5), Some(("b", 0)));
    queue.finish(&"b", None);
    assert_eq!(queue.pop_due(5), Some(("a", 3)));
    queue.finish(&"a", None);
    assert_eq!(queue.waiting(), 0, "await_change: not scheduled again");
}

fn config(rollouts: usize, service_ms: u64, seed: u64) -> SimConfig {
    SimConfig {
        rollouts,
        interval_ms: 10_000,
        service_ms,
        jitter_ms: service_ms / 2,
        concurrency: 16,
        duration_ms: 120_000,
        start: Start::Together,
        seed,
    }
}

#[test]
fn with_capacity_to_spare_no_rollout_is_more_than_one_interval_late() {
    for seed in 0..8 {
        // 2,000 rollouts at 10 s, 16 slots of 40 ms: 1.0 capacity ratio at the start
        // burst, then the load spreads; the second config has 2x headroom.
        for service_ms in [40, 20] {
            let config = config(2_000, service_ms, seed);
            let report = simulate(&config);
            assert_eq!(report.never_evaluated(), 0, "seed {seed}");
            assert!(
                report.lateness_quantile_ms(1.0) <= config.interval_ms,
                "seed {seed}, service {service_ms} ms: max lateness {} ms",
                report.lateness_quantile_ms(1.0)
            );
            assert!(
                report.gap_quantile_ms(1.0) <= 2 * config.interval_ms,
                "seed {seed}: a rollout waited {} ms between evaluations",
                report.gap_quantile_ms(1.0)
            );
        }
    }
}

#[test]
fn under_overload_lateness_is_spread_evenly() {
    for seed in 0..8 {
        // Half the capacity the rollouts ask for: each waits about two intervals.
        let config = config(2_000, 160, seed);
        assert!(config.capacity_ratio() < 0.6);
        let report = simulate(&config);
        assert_eq!(report.never_evaluated(), 0, "seed {seed}");
        let min = report.evaluations.iter().min().copied().unwrap_or(0);
        let max = report.evaluations.iter().max().copied().unwrap_or(0);
        assert!(
            max - min <= 1,
            "seed {seed}: evaluations per rollout {min}..{max}"
        );
        let (median, longest) = (report.gap_quantile_ms(0.5), report.gap_quantile_ms(1.0));
        assert!(
            longest * 10 <= median * 12,
            "seed {seed}: longest gap {longest} ms vs median {median} ms"
        );
    }
}

#[test]
fn one_seed_gives_one_result() {
    let config = config(500, 30, 7);
    let (a, b) = (simulate(&config), simulate(&config));
    assert_eq!(a.lateness_ms, b.lateness_ms);
    assert_eq!(a.evaluations, b.evaluations);
}

fn ms(millis: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

#[test]
fn evaluations_wake_just_after_the_scrape_that_lands_around_their_due_time() {
    let second = chrono::Duration::seconds(1);
    let phase = ScrapePhase {
        latest: ms(10_300),
        period: second,
        ingest: chrono::Duration::milliseconds(100),
    };
    // Scrapes at …300 ms: queryable from …400 ms.
    assert_eq!(
        after_fresh_data(ms(20_000), Some(&phase), second),
        ms(20_400)
    );
    assert_eq!(
        after_fresh_data(ms(20_450), Some(&phase), second),
        ms(20_400),
        "a scrape up to the engine's slack before the due time is taken"
    );
    assert_eq!(
        after_fresh_data(ms(20_520), Some(&phase), second),
        ms(21_400)
    );
    assert_eq!(
        after_fresh_data(ms(5_000), Some(&phase), second),
        ms(5_400),
        "a due time before the newest sample"
    );
    assert_eq!(after_fresh_data(ms(20_000), None, second), ms(20_000));
    let slow = ScrapePhase {
        latest: ms(10_300),
        period: chrono::Duration::seconds(15),
        ingest: chrono::Duration::milliseconds(100),
    };
    assert_eq!(
        after_fresh_data(ms(20_000), Some(&slow), chrono::Duration::seconds(10)),
        ms(20_000),
        "an interval shorter than the scrape period is kept"
    );
    let jittered = ScrapePhase {
        period: chrono::Duration::milliseconds(1_004),
        ..phase
    };
    assert_ne!(
        after_fresh_data(ms(20_000), Some(&jittered), second),
        ms(20_000),
        "a scrape learned a few ms longer than the interval is still aligned to"
    );
}

#[test]
fn a_failing_rollout_wakes_at_the_next_scrape_and_only_with_a_known_phase() {
    let second = chrono::Duration::seconds(1);
    let minute = chrono::Duration::minutes(1);
    let phase = ScrapePhase {
        latest: ms(10_300),
        period: chrono::Duration::seconds(15),
        ingest: chrono::Duration::milliseconds(30),
    };
    // Evaluated at 25.330 (just after the scrape at 25.300), failing: the engine asks
    // again one second later; the next data is queryable at 40.330.
    let last = ms(25_330);
    let due = last + second;
    assert_eq!(
        wake_for_evaluation(due, Some(&phase), minute, Some(last)),
        ms(40_330)
    );
    assert_eq!(
        wake_for_evaluation(due, Some(&phase), chrono::Duration::seconds(10), Some(last)),
        ms(40_330),
        "a scrape period longer than the interval: still the next scrape"
    );
    assert_eq!(
        wake_for_evaluation(due, None, minute, Some(last)),
        last + minute,
        "no phase: not sooner than the interval"
    );
    // Healthy: the interval's due time, just after its scrape.
    assert_eq!(
        wake_for_evaluation(last + minute, Some(&phase), minute, None),
        ms(85_330)
    );
}
