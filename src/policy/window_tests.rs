#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use super::*;
use crate::policy::Duration;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Timestamp {
    chrono::Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn window(kind: WindowKind, schedule: &str, duration: Duration, tz: &str) -> WindowSpec {
    WindowSpec {
        kind,
        schedule: schedule.to_owned(),
        duration,
        time_zone: tz.to_owned(),
    }
}

#[test]
fn no_windows_is_always_open() {
    let w = Windows::compile(&[]).unwrap();
    assert!(w.is_open(utc(2026, 1, 1, 3, 0)));
    assert_eq!(w.next_change(utc(2026, 1, 1, 3, 0)), None);
}

#[test]
fn standard_day_numbering_is_translated() {
    // 1-5 is Monday to Friday in standard cron; the crate alone would read Sunday-Thursday.
    let w = Windows::compile(&[window(
        WindowKind::Allow,
        "0 9 * * 1-5",
        Duration::from_secs(8 * 3600),
        "UTC",
    )])
    .unwrap();
    // 2026-11-20 is a Friday, 2026-11-22 a Sunday.
    assert!(w.is_open(utc(2026, 11, 20, 10, 0)));
    assert!(!w.is_open(utc(2026, 11, 22, 10, 0)));
    assert!(!w.is_open(utc(2026, 11, 20, 17, 0)), "closes after 8h");
    assert!(
        w.is_open(utc(2026, 11, 20, 9, 0)),
        "open at the opening instant"
    );
    // 0 and 7 are both Sunday; names work too.
    for sunday in ["0 9 * * 0", "0 9 * * 7", "0 9 * * Sun", "0 9 * * 6-7"] {
        let w = Windows::compile(&[window(
            WindowKind::Allow,
            sunday,
            Duration::from_secs(3600),
            "UTC",
        )])
        .unwrap();
        assert!(w.is_open(utc(2026, 11, 22, 9, 30)), "{sunday}");
    }
    assert_eq!(
        translate_schedule("0 9 * * 5-7").ok().unwrap(),
        vec!["0 0 9 * * 1,6,7"]
    );
    assert_eq!(
        translate_schedule("0 9 * * Mon-Fri").ok().unwrap(),
        vec!["0 0 9 * * 2,3,4,5,6"]
    );
}

#[test]
fn deny_beats_allow_and_next_change_finds_the_flip() {
    let w = Windows::compile(&[
        window(
            WindowKind::Allow,
            "0 9 * * Mon-Fri",
            Duration::from_secs(8 * 3600),
            "UTC",
        ),
        window(
            WindowKind::Deny,
            "0 12 * * *",
            Duration::from_secs(3600),
            "UTC",
        ),
    ])
    .unwrap();
    let friday_11 = utc(2026, 11, 20, 11, 0);
    assert!(w.is_open(friday_11));
    assert_eq!(w.next_change(friday_11), Some(utc(2026, 11, 20, 12, 0)));
    assert!(!w.is_open(utc(2026, 11, 20, 12, 30)));
    assert_eq!(
        w.next_change(utc(2026, 11, 20, 12, 30)),
        Some(utc(2026, 11, 20, 13, 0))
    );
    // Friday 17:00 closes; the next opening is Monday 09:00.
    assert_eq!(
        w.next_change(utc(2026, 11, 20, 16, 0)),
        Some(utc(2026, 11, 20, 17, 0))
    );
    assert_eq!(
        w.next_change(utc(2026, 11, 20, 18, 0)),
        Some(utc(2026, 11, 23, 9, 0))
    );
}

#[test]
fn time_zone_and_daylight_saving_are_respected() {
    let berlin = chrono_tz::Europe::Berlin;
    let w = Windows::compile(&[window(
        WindowKind::Allow,
        "0 9 * * *",
        Duration::from_secs(3600),
        "Europe/Berlin",
    )])
    .unwrap();
    // Winter: 09:00 Berlin is 08:00 UTC; summer: 07:00 UTC.
    assert!(w.is_open(utc(2026, 1, 15, 8, 30)));
    assert!(!w.is_open(utc(2026, 1, 15, 7, 30)));
    assert!(w.is_open(utc(2026, 7, 15, 7, 30)));
    assert!(!w.is_open(utc(2026, 7, 15, 8, 30)));
    // On the day clocks go forward (2026-03-29), 09:00 local is 07:00 UTC.
    assert_eq!(
        local_to_utc(berlin, 2026, 3, 29, 9, 0),
        Some(utc(2026, 3, 29, 7, 0))
    );
    assert_eq!(
        w.next_change(utc(2026, 3, 29, 1, 0)),
        Some(utc(2026, 3, 29, 7, 0))
    );
    // A window opening at 02:30, a time that does not exist that day, is skipped
    // that day rather than opening at a made-up instant.
    let gap = Windows::compile(&[window(
        WindowKind::Allow,
        "30 2 * * *",
        Duration::from_secs(1800),
        "Europe/Berlin",
    )])
    .unwrap();
    assert!(!gap.is_open(utc(2026, 3, 29, 0, 45)));
    assert!(!gap.is_open(utc(2026, 3, 29, 1, 45)));
    assert!(gap.is_open(utc(2026, 3, 30, 0, 45)));
}

#[test]
fn day_of_month_or_day_of_week_as_in_vixie_cron() {
    // The 1st of the month, or any Monday.
    let w = Windows::compile(&[window(
        WindowKind::Allow,
        "0 0 1 * Mon",
        Duration::from_secs(3600),
        "UTC",
    )])
    .unwrap();
    assert!(w.is_open(utc(2026, 12, 1, 0, 30)), "Tuesday the 1st");
    assert!(w.is_open(utc(2026, 11, 23, 0, 30)), "Monday the 23rd");
    assert!(!w.is_open(utc(2026, 11, 24, 0, 30)));
}

#[test]
fn reports_bad_schedules_zones_and_durations() {
    let issues = Windows::compile(&[
        window(
            WindowKind::Allow,
            "0 0 9 * * Mon-Fri",
            Duration::from_secs(60),
            "UTC",
        ),
        window(
            WindowKind::Deny,
            "0 25 * * *",
            Duration::from_secs(60),
            "Europe/Berln",
        ),
        window(WindowKind::Deny, "0 9 * * Mon", Duration::ZERO, "UTC"),
        window(
            WindowKind::Deny,
            "0 9 * * 8",
            Duration::from_secs(60),
            "UTC",
        ),
        window(
            WindowKind::Deny,
            "0 0 30 2 *",
            Duration::from_secs(60),
            "UTC",
        ),
    ])
    .unwrap_err();
    let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.windows[0].schedule",
            "spec.windows[1].schedule",
            "spec.windows[1].timeZone",
            "spec.windows[2].duration",
            "spec.windows[3].schedule",
            "spec.windows[4].schedule"
        ]
    );
    assert_eq!(
        issues[0].hint.as_deref(),
        Some("drop the leading seconds field: `0 9 * * Mon-Fri`")
    );
    assert_eq!(
        issues[2].hint.as_deref(),
        Some("did you mean `Europe/Berlin`?")
    );
    assert!(
        issues[4].message.contains("8 is outside 0..=7"),
        "{}",
        issues[4].message
    );
}
