//! The fuzz harness, on stable Rust: proptest strategies generate inputs for three
//! targets (`policy`: parse → validate → plan → engine → simulate; `prometheus`: the
//! query answer classifier and the judge; `locate`: the VirtualService locator and
//! planner), each run under `catch_unwind`.
//!
//! - `cargo test --test fuzz` runs a short, fixed-seed smoke of every target and replays
//!   every input saved under tests/fuzz-regressions/<target>/ (found crashes stay fixed).
//! - `scripts/fuzz [SECONDS]` runs the targets in turn for that long
//!   (`SHIFTGATE_FUZZ_SECONDS`), from `SHIFTGATE_FUZZ_SEED` or a fresh seed that it
//!   prints, and saves every crashing input under tests/fuzz-regressions/<target>/.
//!
//! Input `n` of a seed is always the same input, so a run is reproduced by its seed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[path = "fuzz/locate.rs"]
mod locate;
#[path = "fuzz/mutate.rs"]
mod mutate;
#[path = "fuzz/policy.rs"]
mod policy;
#[path = "fuzz/prometheus.rs"]
mod prometheus;

/// An input that takes more CPU time than this is a finding too (unbounded work on one
/// input). CPU time, not wall time: the fuzzer runs niced on a shared machine.
const SLOW: Duration = Duration::from_secs(10);
/// Inputs per target in the smoke run of `cargo test`.
const SMOKE_INPUTS: u64 = 40;
const SMOKE_SEED: u64 = 7;

/// One fuzz target: how to draw an input, how to run one (panics on a defect), both
/// through the input's JSON text so that saved inputs replay exactly.
struct Target {
    name: &'static str,
    draw: Box<dyn Fn(&mut TestRunner) -> String>,
    run: Box<dyn Fn(&str)>,
}

fn target<C, S>(name: &'static str, strategy: S, run: fn(&C)) -> Target
where
    C: Serialize + DeserializeOwned + std::fmt::Debug + 'static,
    S: Strategy<Value = C> + 'static,
{
    Target {
        name,
        draw: Box::new(move |runner: &mut TestRunner| {
            let case = strategy
                .new_tree(runner)
                .map(|tree| tree.current())
                .expect("the strategies never reject");
            serde_json::to_string_pretty(&case).expect("cases serialize")
        }),
        run: Box::new(move |text: &str| run_json(text, run)),
    }
}

fn run_json<C: DeserializeOwned>(text: &str, run: fn(&C)) {
    // A saved input that no longer parses (its format changed) is a stale file, not a
    // pass: the replay says so.
    let case: C = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("not an input of this target ({e}); delete or convert it"));
    run(&case);
}

fn targets() -> Vec<Target> {
    vec![
        target("policy", policy::case(), policy::run),
        target("prometheus", prometheus::case(), prometheus::run),
        target("locate", locate::case(), locate::run),
    ]
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics are caught and reported with the input; the default hook would print each.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        let at = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        LAST_PANIC.with(|last| *last.borrow_mut() = Some(format!("{message} at {at}")));
    }));
}

/// How one input ended, when it is a finding; and how long it took.
fn run_one(target: &Target, input: &str) -> (Option<String>, Duration) {
    let started = thread_cpu_time();
    let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    let took = thread_cpu_time().saturating_sub(started);
    let finding = match outcome {
        Err(_) => Some(
            LAST_PANIC
                .with(|last| last.borrow_mut().take())
                .unwrap_or_else(|| "panic".to_owned()),
        ),
        Ok(()) if took > SLOW => Some(format!("slow: {took:?} of CPU for one input")),
        Ok(()) => None,
    };
    (finding, took)
}

/// The fuzzer runs for a wall-clock budget: the one clock read of the harness.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

/// A new seed for each timed run (printed, so the run can be replayed).
#[allow(clippy::disallowed_methods)]
fn fresh_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// CPU time of the calling thread (user + system), from /proc/thread-self/stat, in
/// clock ticks of 10 ms.
fn thread_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after its `)` are plain.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the `)`.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions")
}

/// Saves a finding as tests/fuzz-regressions/<target>/<kind>-<hash>.json.
fn save(target: &str, input: &str) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    input.hash(&mut hasher);
    let dir = regressions_dir().join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("crash-{:016x}.json", hasher.finish()));
    std::fs::write(&path, input).unwrap();
    path
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn runner(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

/// Runs every target in turn: for `seconds` when set (scripts/fuzz), else
/// `SMOKE_INPUTS` each from a fixed seed.
#[test]
fn fuzz_every_target() {
    quiet_panics();
    let seconds = env_u64("SHIFTGATE_FUZZ_SECONDS");
    let save_findings = std::env::var_os("SHIFTGATE_FUZZ_SAVE").is_some();
    // The input being run, so that an abort (which no unwind catches) leaves it behind
    // for scripts/fuzz to save.
    let current = std::env::var_os("SHIFTGATE_FUZZ_CURRENT").map(PathBuf::from);
    let seed = env_u64("SHIFTGATE_FUZZ_SEED").unwrap_or_else(|| match seconds {
        Some(_) => fresh_seed(),
        None => SMOKE_SEED,
    });
    println!("fuzz: seed {seed} (reproduce with SHIFTGATE_FUZZ_SEED={seed})");
    let targets = targets();
    let mut runner = runner(seed);
    let started = now();
    let deadline = seconds.map(|s| started + Duration::from_secs(s));
    let mut executed = vec![0u64; targets.len()];
    let mut busy = vec![Duration::ZERO; targets.len()];
    let mut findings: Vec<String> = Vec::new();
    let mut next_report = started + Duration::from_secs(60);
    'outer: loop {
        for (i, target) in targets.iter().enumerate() {
            let done = match deadline {
                Some(deadline) => now() >= deadline,
                None => executed[i] >= SMOKE_INPUTS,
            };
            if done {
                break 'outer;
            }
            let input = (target.draw)(&mut runner);
            if let Some(path) = &current {
                std::fs::write(path, format!("{}\n{input}", target.name)).unwrap();
            }
            executed[i] += 1;
            let (finding, took) = run_one(target, &input);
            busy[i] += took;
            if took > Duration::from_secs(2) {
                println!(
                    "fuzz: {} input #{} took {took:?} of CPU",
                    target.name, executed[i]
                );
            }
            if let Some(finding) = finding {
                let saved = if save_findings {
                    format!(", saved as {}", save(target.name, &input).display())
                } else {
                    String::new()
                };
                println!(
                    "fuzz: {} input #{}: {finding}{saved}",
                    target.name, executed[i]
                );
                findings.push(format!("{}: {finding}{saved}", target.name));
            }
            if now() >= next_report {
                next_report += Duration::from_secs(60);
                println!(
                    "fuzz: {:.0} s, {} inputs, {} findings",
                    started.elapsed().as_secs_f64(),
                    executed.iter().sum::<u64>(),
                    findings.len()
                );
            }
        }
    }
    if let Some(path) = &current {
        let _ = std::fs::remove_file(path);
    }
    let per_target: Vec<String> = targets
        .iter()
        .zip(executed.iter().zip(&busy))
        .map(|(t, (n, busy))| format!("{} {n} in {:.0} s", t.name, busy.as_secs_f64()))
        .collect();
    println!(
        "fuzz: seed {seed} · {:.0} s · {} inputs ({}) · {} crashes",
        started.elapsed().as_secs_f64(),
        executed.iter().sum::<u64>(),
        per_target.join(", "),
        findings.len()
    );
    assert!(
        findings.is_empty(),
        "fuzz findings:\n{}",
        findings.join("\n")
    );
}

/// Every input ever saved by the fuzzer still runs without a finding.
#[test]
fn fuzz_regressions_replay() {
    quiet_panics();
    let mut failures = Vec::new();
    let mut replayed = 0;
    for target in targets() {
        let dir = regressions_dir().join(target.name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
        {
            let input = std::fs::read_to_string(path).unwrap();
            replayed += 1;
            if let (Some(finding), _) = run_one(&target, &input) {
                failures.push(format!("{}: {finding}", path.display()));
            }
        }
    }
    println!("fuzz: replayed {replayed} saved inputs");
    assert!(
        failures.is_empty(),
        "saved fuzz inputs fail again:\n{}",
        failures.join("\n")
    );
}
