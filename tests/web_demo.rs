//! `shiftgate demo` prints its status page URL first, and the page, watched in a real
//! headless Chromium for the whole demo, shows the weight move and the verdict turn
//! from Pass to Fail when the bad release is rolled back.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Wall-clock time only bounds the test's waits (timeouts) and dates a made-up status.
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::{Duration, Instant};

use support::chromium::{Browser, Seen, Watched};
use support::demo_process::{page_url, Demo};

/// The demo takes about 25 seconds.
const WATCH_LIMIT: Duration = Duration::from_secs(55);

#[test]
fn the_demo_page_shows_the_weight_move_and_the_bad_release_fail() {
    let mut demo = Demo::spawn();
    let first = demo.next_line(Duration::from_secs(20)).unwrap_or_default();
    let url = page_url(&first)
        .unwrap_or_else(|| panic!("the demo's first line is not its page URL: {first:?}"));
    let mut browser = Browser::launch();
    browser.open(&url);
    let mut watched = Watched::default();
    let started = Instant::now();
    // Until the bad release is rolled back; the page keeps the last state when the
    // demo has ended.
    while started.elapsed() < WATCH_LIMIT {
        demo.drain();
        let text = browser.text();
        let done = rolled_back_v3(&text);
        watched.note(text);
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let shot = browser.screenshot("demo-rolled-back.png");
    let code = demo.wait(Duration::from_secs(40));
    let text = &watched.last_text;
    let log = demo.log_text();
    assert_eq!(code, Some(0), "{log}");
    assert!(shot.is_file());
    assert!(
        rolled_back_v3(text),
        "the page never showed v3 rolled back:\n{text}\n{log}"
    );
    let weights = watched.weights();
    let distinct: std::collections::BTreeSet<u8> = weights.iter().copied().collect();
    assert!(
        distinct.len() >= 2,
        "the page showed one weight only: {weights:?}\n{:#?}",
        watched.seen
    );
    let verdicts = watched.verdicts();
    let pass = verdicts.iter().position(|v| v == "Pass");
    let fail = verdicts.iter().rposition(|v| v == "Fail");
    assert!(
        matches!((pass, fail), (Some(p), Some(f)) if p < f),
        "the page did not show the verdict turn from Pass to Fail: {verdicts:?}\n{text}"
    );
    for expected in [
        "error-rate: canary",
        "limit ≤ 0.05",
        "History",
        "RolledBack",
    ] {
        assert!(
            text.contains(expected),
            "`{expected}` is not on the page:\n{text}"
        );
    }
}

fn rolled_back_v3(text: &str) -> bool {
    text.contains("demo/checkout · revision v3")
        && Seen::of(text).phase.as_deref() == Some("RolledBack")
}
