//! Deployment windows: when traffic may move. Pure: the time always comes in as an
//! argument.
//!
//! Schedules are standard 5-field cron (minute hour day-of-month month day-of-week,
//! day-of-week 0-7 with 0 and 7 = Sunday, or names `Mon-Fri`), read in an IANA time
//! zone. The `cron` crate wants a seconds field and numbers days 1-7 with 1 = Sunday, so
//! each schedule is translated. As in Vixie cron, when both day-of-month and
//! day-of-week are restricted a day matches if either matches (the crate would require
//! both), so such a schedule becomes two.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::TimeZone;
use chrono_tz::Tz;

use super::diagnostic::{index, Issue};
use super::duration::Duration;
use super::status::Timestamp;
use super::types::{WindowKind, WindowSpec};

/// Whether the cron crate can search from `now`: it panics on arithmetic past chrono's
/// last date, and no clock reads a year outside 1970..=9000. Outside it no window is
/// open (traffic waits) and none will change.
fn within_calendar(now: Timestamp) -> bool {
    use chrono::Datelike;
    (1970..=9000).contains(&now.year())
}

/// Compiled deployment windows.
#[derive(Clone, Debug, Default)]
pub struct Windows {
    allow: Vec<CompiledWindow>,
    deny: Vec<CompiledWindow>,
}

#[derive(Clone, Debug)]
struct CompiledWindow {
    schedules: Vec<cron::Schedule>,
    duration: chrono::Duration,
    time_zone: Tz,
}

impl CompiledWindow {
    /// The opening `t` with `t <= now < t + duration`, if the window is open at `now`.
    fn opening_covering(&self, now: Timestamp) -> Option<Timestamp> {
        if !within_calendar(now) {
            return None;
        }
        // Checked: no window opened before the start of time.
        let since = now
            .checked_sub_signed(self.duration)?
            .with_timezone(&self.time_zone);
        self.schedules
            .iter()
            .filter_map(|s| s.after(&since).next())
            .map(|t| t.with_timezone(&chrono::Utc))
            .filter(|t| *t <= now)
            .min()
    }

    /// Instants after `now` where this window opens or closes.
    fn next_edge(&self, now: Timestamp) -> Option<Timestamp> {
        if !within_calendar(now) {
            return None;
        }
        let local_now = now.with_timezone(&self.time_zone);
        let next_open = self
            .schedules
            .iter()
            .filter_map(|s| s.after(&local_now).next())
            .map(|t| t.with_timezone(&chrono::Utc))
            .min();
        // Every opening in (now - duration, now] closes after now; the earliest close is
        // the one of the earliest such opening.
        let next_close = self
            .opening_covering(now)
            .and_then(|t| t.checked_add_signed(self.duration));
        [next_open, next_close].into_iter().flatten().min()
    }
}

impl Windows {
    /// Compiles `spec.windows`; issues name `spec.windows[i].schedule`, `.timeZone`, `.duration`.
    pub fn compile(specs: &[WindowSpec]) -> Result<Windows, Vec<Issue>> {
        let mut windows = Windows::default();
        let mut issues = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let path = index("spec.windows", i);
            let schedules = compile_schedule(&path, &spec.schedule, &mut issues);
            let time_zone = compile_time_zone(&path, &spec.time_zone, &mut issues);
            let duration = compile_duration(&path, spec.duration, &mut issues);
            if let (Some(time_zone), Some(duration)) = (time_zone, duration) {
                let compiled = CompiledWindow {
                    schedules,
                    duration,
                    time_zone,
                };
                match spec.kind {
                    WindowKind::Allow => windows.allow.push(compiled),
                    WindowKind::Deny => windows.deny.push(compiled),
                }
            }
        }
        if issues.is_empty() {
            Ok(windows)
        } else {
            Err(issues)
        }
    }

    /// True when there are no windows, or when `now` is inside an allow window (if any
    /// allow window exists) and outside every deny window.
    pub fn is_open(&self, now: Timestamp) -> bool {
        let any = !(self.allow.is_empty() && self.deny.is_empty());
        if any && !within_calendar(now) {
            return false;
        }
        let allowed =
            self.allow.is_empty() || self.allow.iter().any(|w| w.opening_covering(now).is_some());
        let denied = self.deny.iter().any(|w| w.opening_covering(now).is_some());
        allowed && !denied
    }

    /// The next instant after `now` at which `is_open` flips, for scheduling a wake-up.
    /// None when there are no windows (always open). If overlapping windows keep the
    /// answer unchanged for a long stretch, the last edge examined is returned: waking up
    /// there and asking again is always correct.
    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        const MAX_EDGES: usize = 1000;
        let open_now = self.is_open(now);
        let mut cursor = now;
        let mut last = None;
        for _ in 0..MAX_EDGES {
            let edge = self
                .allow
                .iter()
                .chain(&self.deny)
                .filter_map(|w| w.next_edge(cursor))
                .min()?;
            if self.is_open(edge) != open_now {
                return Some(edge);
            }
            last = Some(edge);
            cursor = edge;
        }
        last
    }
}

/// The issues of one window's fields, each checked on its own; `None` is a field that is
/// not written or could not be read, and is not checked. For documents whose other parts
/// have errors, where a whole `WindowSpec` may not be readable.
pub(super) fn window_field_issues(
    path: &str,
    schedule: Option<&str>,
    time_zone: Option<&str>,
    duration: Option<Duration>,
) -> Vec<Issue> {
    let mut issues = Vec::new();
    if let Some(schedule) = schedule {
        compile_schedule(path, schedule, &mut issues);
    }
    if let Some(time_zone) = time_zone {
        compile_time_zone(path, time_zone, &mut issues);
    }
    if let Some(duration) = duration {
        compile_duration(path, duration, &mut issues);
    }
    issues
}

/// `schedule` of the window at `path`, as the crate's schedules (empty when invalid).
fn compile_schedule(path: &str, schedule: &str, issues: &mut Vec<Issue>) -> Vec<cron::Schedule> {
    if schedule.len() > super::limits::MAX_SCHEDULE_CHARS {
        issues.push(
            Issue::error(
                format!("{path}.schedule"),
                format!(
                    "the schedule is longer than {} characters",
                    super::limits::MAX_SCHEDULE_CHARS
                ),
            )
            .with_hint(CRON_HINT),
        );
        return Vec::new();
    }
    match translate_schedule(schedule) {
        Ok(exprs) => {
            let mut parsed = Vec::new();
            for expr in exprs {
                match cron::Schedule::from_str(&expr) {
                    Ok(s) => parsed.push(s),
                    Err(e) => issues.push(
                        Issue::error(
                            format!("{path}.schedule"),
                            format!(
                                "`{schedule}` is not a valid cron schedule: {}",
                                super::cron_message::explain(last_line(&e.to_string()))
                            ),
                        )
                        .with_hint(CRON_HINT),
                    ),
                }
            }
            // A schedule such as `0 0 30 2 *` (February 30th) never fires.
            if !parsed.is_empty() && parsed.iter().all(never_fires) {
                issues.push(
                    Issue::error(
                        format!("{path}.schedule"),
                        format!("`{schedule}` never opens: no date matches it"),
                    )
                    .with_hint("check the day-of-month and month fields"),
                );
            }
            parsed
        }
        Err(problem) => {
            issues.push(problem.at(&format!("{path}.schedule")));
            Vec::new()
        }
    }
}

fn compile_time_zone(path: &str, name: &str, issues: &mut Vec<Issue>) -> Option<Tz> {
    if name.len() > super::limits::MAX_TIME_ZONE_CHARS {
        // Also keeps the did-you-mean search (quadratic in the length) cheap.
        issues.push(
            Issue::error(
                format!("{path}.timeZone"),
                format!(
                    "the time zone is longer than {} characters, so it is not an IANA name",
                    super::limits::MAX_TIME_ZONE_CHARS
                ),
            )
            .with_hint("write a name such as `UTC`, `Europe/Berlin`, `America/New_York`"),
        );
        return None;
    }
    match Tz::from_str(name) {
        Ok(tz) => Some(tz),
        Err(_) => {
            issues.push(unknown_time_zone(&format!("{path}.timeZone"), name));
            None
        }
    }
}

fn compile_duration(
    path: &str,
    duration: Duration,
    issues: &mut Vec<Issue>,
) -> Option<chrono::Duration> {
    let compiled = chrono::Duration::from_std(duration.std()).ok();
    if duration.std().is_zero() || compiled.is_none() {
        issues.push(
            Issue::error(
                format!("{path}.duration"),
                format!("window duration `{duration}` must be longer than 0s and finite"),
            )
            .with_hint("write how long the window stays open, e.g. `8h`"),
        );
        return None;
    }
    compiled
}

const CRON_HINT: &str =
    "write 5 fields: minute hour day-of-month month day-of-week, e.g. `0 9 * * Mon-Fri`";

/// A problem with a schedule, before it knows its field path.
struct ScheduleProblem {
    message: String,
    hint: String,
}

impl ScheduleProblem {
    fn at(self, path: &str) -> Issue {
        Issue::error(path, self.message).with_hint(self.hint)
    }
}

/// Translates a standard cron schedule into one or two expressions of the `cron` crate.
fn translate_schedule(schedule: &str) -> Result<Vec<String>, ScheduleProblem> {
    let expanded = match schedule.trim() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other => other,
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    match fields.len() {
        5 => {}
        6 | 7 => {
            return Err(ScheduleProblem {
                message: format!(
                "`{schedule}` has {} fields, but windows use standard 5-field cron without seconds",
                fields.len()
            ),
                hint: format!(
                    "drop the leading seconds field{}: `{}`",
                    if fields.len() == 7 {
                        " and the trailing year"
                    } else {
                        ""
                    },
                    fields[1..6].join(" ")
                ),
            })
        }
        n => {
            return Err(ScheduleProblem {
                message: format!("`{schedule}` has {n} fields, expected 5"),
                hint: CRON_HINT.to_owned(),
            })
        }
    }
    let (minute, hour, day_of_month, month, day_of_week) =
        (fields[0], fields[1], fields[2], fields[3], fields[4]);
    let days = parse_day_of_week(day_of_week).map_err(|message| ScheduleProblem {
        message: format!("day-of-week `{day_of_week}` in `{schedule}`: {message}"),
        hint: "write 0-7 (0 and 7 are Sunday) or names, e.g. `Mon-Fri`, `1,3,5`, `Sat,Sun`"
            .to_owned(),
    })?;
    let crate_days = crate_day_of_week(&days);
    let restricted = |field: &str| !field.starts_with('*');
    if restricted(day_of_month) && restricted(day_of_week) {
        Ok(vec![
            format!("0 {minute} {hour} {day_of_month} {month} *"),
            format!("0 {minute} {hour} * {month} {crate_days}"),
        ])
    } else {
        Ok(vec![format!(
            "0 {minute} {hour} {day_of_month} {month} {crate_days}"
        )])
    }
}

/// Days as the standard numbering (0 = Sunday .. 6 = Saturday).
fn parse_day_of_week(field: &str) -> Result<BTreeSet<u32>, String> {
    let mut days = BTreeSet::new();
    for element in field.split(',') {
        let (range, step) = match element.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("step `{s}` is not a positive number"))?;
                (r, step)
            }
            None => (element, 1),
        };
        let (start, end) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            (day_number(a)?, day_number(b)?)
        } else {
            let d = day_number(range)?;
            // `5/2` means from Friday on, every second day, as in Vixie cron.
            (d, if element.contains('/') { 6 } else { d })
        };
        if start > end {
            return Err(format!("range `{range}` runs backwards"));
        }
        for d in (start..=end).step_by(step as usize) {
            days.insert(d % 7);
        }
    }
    Ok(days)
}

/// One day: 0-7 (0 and 7 are Sunday) or a three-letter English name.
fn day_number(text: &str) -> Result<u32, String> {
    const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    if let Ok(n) = text.parse::<u32>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(format!("{n} is outside 0..=7"))
        };
    }
    let lower = text.to_ascii_lowercase();
    NAMES
        .iter()
        .position(|name| *name == lower)
        .map(|p| p as u32)
        .ok_or_else(|| format!("`{text}` is not a day"))
}

/// The crate numbers days 1-7 with 1 = Sunday.
fn crate_day_of_week(days: &BTreeSet<u32>) -> String {
    if days.len() == 7 {
        return "*".to_owned();
    }
    days.iter()
        .map(|d| (d + 1).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn unknown_time_zone(path: &str, name: &str) -> Issue {
    let nearest = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| tz.name())
        .min_by_key(|candidate| {
            strsim::levenshtein(&name.to_ascii_lowercase(), &candidate.to_ascii_lowercase())
        });
    let issue = Issue::error(path, format!("`{name}` is not an IANA time zone"));
    match nearest {
        Some(n)
            if strsim::levenshtein(&name.to_ascii_lowercase(), &n.to_ascii_lowercase()) <= 4 =>
        {
            issue.with_hint(format!("did you mean `{n}`?"))
        }
        _ => issue.with_hint("write a name such as `UTC`, `Europe/Berlin`, `America/New_York`"),
    }
}

/// Whether a schedule has no opening at all from 2000 on (the crate searches to 2100).
fn never_fires(schedule: &cron::Schedule) -> bool {
    let start = chrono::Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
    start.is_none_or(|start| schedule.after(&start).next().is_none())
}

/// The cron crate's errors repeat the expression with a caret; the reason is the last line.
fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
}

/// Is the time zone name known? (Used by validation before compiling.)
pub fn is_time_zone(name: &str) -> bool {
    Tz::from_str(name).is_ok()
}

/// A UTC instant from a local wall-clock time, for tests and docs.
pub fn local_to_utc(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Option<Timestamp> {
    tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .earliest()
        .map(|t| t.with_timezone(&chrono::Utc))
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
