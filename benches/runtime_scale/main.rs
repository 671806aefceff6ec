//! The daemon at 1,000, 3,000 and 10,000 rollouts (issue "scale" §7): three processes,
//! so that only the daemon's own work is measured.
//!
//! - the test API server (`src/testkit/apiserver`), in a child process of this binary
//!   (`SHIFTGATE_BENCH_ROLE=apiserver`), holding N VirtualServices, N DestinationRules
//!   (the subsets, whose version labels the queries select) and N RolloutPolicies, and
//!   counting the requests it serves;
//! - `shiftgate daemon`, in another child process of this binary
//!   (`SHIFTGATE_BENCH_ROLE=daemon`, the same code and allocator as the `shiftgate`
//!   binary, behind a counting wrapper), one replica, `--concurrency 16`;
//! - a Prometheus stand-in on a thread of this process that answers every instant
//!   query with one healthy sample (a batched query, one per member) and notes which
//!   rollout asked when (`prometheus_stand_in.rs`).
//!
//! Every policy has 21 steps of 5 % (or, with `SHIFTGATE_BENCH_HOLD=1`, holds at 50 %
//! for an hour) and an analysis interval of 10 s. Once every policy has been reconciled
//! once, a wall window measures: daemon CPU (utime + stime from /proc), peak RSS
//! (VmHWM) and RSS at the window's end (VmRSS), evaluations (a rollout's queries less
//! than half an interval apart are one evaluation),
//! allocations and API requests per evaluation by verb and resource, Prometheus
//! queries per second, evaluation lateness (the gap between two evaluations of a
//! rollout, less the interval) p50/p99/max, the rollouts not evaluated at all in the
//! window (named), those never reconciled since the daemon started, and those paused at
//! the end (a false drift pauses one). (The window starts
//! once every policy was reconciled once, or after three intervals at the latest.)
//!
//! `cargo bench --bench runtime_scale` runs 1,000 then 3,000 rollouts over 60 s.
//! Knobs: SHIFTGATE_BENCH_SIZES (e.g. `10000`), SHIFTGATE_BENCH_SECONDS (60),
//! SHIFTGATE_BENCH_INTERVAL (10), SHIFTGATE_BENCH_HOLD, SHIFTGATE_BENCH_SPREAD (1: the
//! policies are created evenly over one interval, as rollouts start at any time; 0: all
//! at once, every rollout due in the same instant), SHIFTGATE_BENCH_CONCURRENCY (unset: the daemon's default),
//! SHIFTGATE_BENCH_REPLICAS (1; R > 1:
//! R daemons with `--shards R` share the rollouts, e.g. 3 with SIZES=30000). Without `--bench` (as
//! `cargo test --all-targets` runs it) one smoke run of 20 rollouts at a 1 s interval.
//! Linux only (reads /proc).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the report
#![allow(clippy::disallowed_methods)] // a benchmark measures wall time

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shiftgate::testkit::apiserver::{ResourceRef, ServerOptions, TestApiServer};

#[path = "../../tests/support/batch_answer.rs"]
mod batch_answer;
mod counting_allocator;

#[global_allocator]
static GLOBAL: counting_allocator::CountingAllocator = counting_allocator::CountingAllocator::new();

const NS: &str = "bench";
const ROLE: &str = "SHIFTGATE_BENCH_ROLE";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("apiserver") => return serve_api(),
        Ok("daemon") => return run_daemon(),
        _ => {}
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = match std::env::var("SHIFTGATE_BENCH_SIZES") {
        Ok(list) => list
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        Err(_) if full => vec![1000, 3000],
        Err(_) => vec![20],
    };
    let seconds = env_or("SHIFTGATE_BENCH_SECONDS", if full { 60 } else { 4 });
    let interval = env_or("SHIFTGATE_BENCH_INTERVAL", if full { 10 } else { 1 });
    let hold = std::env::var("SHIFTGATE_BENCH_HOLD").is_ok_and(|v| v == "1");
    let prometheus = PrometheusStandIn::start();
    for size in sizes {
        let report = run(
            size,
            Duration::from_secs(seconds),
            interval,
            hold,
            &prometheus,
        );
        println!("{report}");
    }
}

// ---- the API server child -------------------------------------------------------

fn virtual_service(i: usize) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": { "name": format!("app-{i}"), "namespace": NS },
        "spec": {
            "hosts": [format!("app-{i}.example.com")],
            "http": [{
                "name": "primary",
                "retries": { "attempts": 3 },
                "route": [
                    { "destination": { "host": format!("app-{i}"), "subset": "v1" }, "weight": 100 },
                    { "destination": { "host": format!("app-{i}"), "subset": "v2" }, "weight": 0 }
                ]
            }]
        }
    })
}

/// The subsets the VirtualService routes to, as Istio needs them: what the daemon reads
/// the canary's and stable's version labels from.
fn destination_rule(i: usize) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": { "name": format!("app-{i}"), "namespace": NS },
        "spec": {
            "host": format!("app-{i}"),
            "subsets": [
                { "name": "v1", "labels": { "version": "v1" } },
                { "name": "v2", "labels": { "version": "v2" } }
            ]
        }
    })
}

fn policy(i: usize, interval: u64, hold: bool) -> Value {
    let steps: Value = if hold {
        json!([0, { "weight": 50, "hold": "1h" }, 100])
    } else {
        json!((0..=20).map(|s| s * 5).collect::<Vec<u8>>())
    };
    json!({
        "apiVersion": "shiftgate.dev/v1alpha1",
        "kind": "RolloutPolicy",
        "metadata": { "name": format!("app-{i}"), "namespace": NS },
        "spec": {
            "revision": "v2",
            "router": { "istio": {
                "virtualService": format!("app-{i}"),
                "routes": ["primary"],
                "stable": { "host": format!("app-{i}"), "subset": "v1" },
                "canary": { "host": format!("app-{i}"), "subset": "v2" }
            }},
            "steps": steps,
            "analysis": {
                "interval": format!("{interval}s"),
                "metrics": [
                    { "name": "error-rate", "template": "istio-error-rate", "max": 0.01 },
                    { "name": "p99-latency", "template": "istio-latency-p99", "max": 500 }
                ]
            }
        }
    })
}

/// `VERB resource[/subresource]` of a request, watches as `WATCH resource`.
fn request_kind(method: &str, path: &str) -> String {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let parts: Vec<&str> = path.split('/').collect();
    let at = parts.iter().position(|p| *p == "namespaces");
    let resource = match at {
        Some(i) => {
            let rest = &parts[(i + 2).min(parts.len())..];
            match rest {
                [resource, _, sub, ..] => format!("{resource}/{sub}"),
                [resource, ..] => (*resource).to_owned(),
                [] => "namespaces".to_owned(),
            }
        }
        None => parts.last().copied().unwrap_or("").to_owned(),
    };
    let verb = if query.contains("watch=true") {
        "WATCH"
    } else {
        method
    };
    format!("{verb} {resource}")
}

/// Serves the test API server until stdin closes. Lines in: `clear`, `counts`, `paused`,
/// `reconciled`; one JSON line out per line in.
fn serve_api() {
    let size = env_or("SHIFTGATE_BENCH_POLICIES", 20) as usize;
    let interval = env_or("SHIFTGATE_BENCH_INTERVAL", 10);
    let hold = std::env::var("SHIFTGATE_BENCH_HOLD").is_ok_and(|v| v == "1");
    let dir = PathBuf::from(std::env::var("SHIFTGATE_BENCH_DIR").unwrap());
    // The real server's watch cache keeps about 75 s of events (up to 102,400): a
    // watch closed for lagging resumes from history instead of re-listing.
    let server = TestApiServer::start_background_with(ServerOptions {
        history_limit: 100_000,
        ..ServerOptions::default()
    })
    .unwrap();
    let vs = ResourceRef::new("networking.istio.io", "v1", "virtualservices");
    let rp = ResourceRef::new("shiftgate.dev", "v1alpha1", "rolloutpolicies");
    let server = std::sync::Arc::new(server);
    let dr = ResourceRef::new("networking.istio.io", "v1", "destinationrules");
    for i in 0..size {
        server.put_object(&vs, virtual_service(i)).unwrap();
        server.put_object(&dr, destination_rule(i)).unwrap();
    }
    // Rollouts start at any time in production, not all in the same instant: the
    // policies are created evenly over one interval (SHIFTGATE_BENCH_SPREAD=0: all at
    // once, so that every rollout is due in the same instant of each interval).
    let spread = std::env::var("SHIFTGATE_BENCH_SPREAD").map_or(true, |v| v != "0");
    {
        let server = server.clone();
        let rp = rp.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            for i in 0..size {
                if spread {
                    let due = Duration::from_secs(interval).mul_f64(i as f64 / size as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                server.put_object(&rp, policy(i, interval, hold)).unwrap();
            }
        });
    }
    let kubeconfig = server.write_kubeconfig(&dir, NS).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", json!({ "kubeconfig": kubeconfig })).unwrap();
    out.flush().unwrap();
    // Every policy whose status was ever written, across `clear`s.
    let mut ever: HashSet<String> = HashSet::new();
    let note_reconciled = |ever: &mut HashSet<String>| {
        ever.extend(
            server
                .requests_matching("PATCH", "/rolloutpolicies/")
                .into_iter()
                .map(|r| r.path.split('?').next().unwrap_or("").to_owned()),
        );
    };
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let answer = match line.trim() {
            "clear" => {
                note_reconciled(&mut ever);
                server.clear_requests();
                json!("ok")
            }
            "counts" => {
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                for r in server.requests() {
                    *counts.entry(request_kind(&r.method, &r.path)).or_default() += 1;
                }
                json!(counts)
            }
            "paused" => {
                let paused = (0..size)
                    .filter(|i| {
                        server
                            .get_object(&rp, Some(NS), &format!("app-{i}"))
                            .is_some_and(|o| o["status"]["phase"] == "Paused")
                    })
                    .count();
                json!(paused)
            }
            "reconciled" => {
                note_reconciled(&mut ever);
                json!(ever.len())
            }
            _ => json!(null),
        };
        writeln!(out, "{answer}").unwrap();
        out.flush().unwrap();
    }
}

struct ApiServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl ApiServer {
    fn start(size: usize, interval: u64, hold: bool, dir: &Path) -> (ApiServer, String) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(ROLE, "apiserver")
            .env("SHIFTGATE_BENCH_POLICIES", size.to_string())
            .env("SHIFTGATE_BENCH_INTERVAL", interval.to_string())
            .env("SHIFTGATE_BENCH_HOLD", if hold { "1" } else { "0" })
            .env("SHIFTGATE_BENCH_DIR", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut server = ApiServer {
            child,
            stdin,
            stdout,
        };
        let ready = server.read_line();
        let kubeconfig = ready["kubeconfig"].as_str().unwrap().to_owned();
        (server, kubeconfig)
    }

    fn read_line(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    fn ask(&mut self, what: &str) -> Value {
        writeln!(self.stdin, "{what}").unwrap();
        self.stdin.flush().unwrap();
        self.read_line()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- the daemon child -----------------------------------------------------------

/// `shiftgate daemon` with the arguments given, and the allocator's count written to
/// `SHIFTGATE_BENCH_ALLOCS` every 100 ms.
fn run_daemon() {
    let file = PathBuf::from(std::env::var("SHIFTGATE_BENCH_ALLOCS").unwrap());
    std::thread::spawn(move || loop {
        let (allocations, bytes) = GLOBAL.totals();
        let _ = std::fs::write(&file, format!("{allocations} {bytes}"));
        std::thread::sleep(Duration::from_millis(100));
    });
    let cli = shiftgate::cli::parse_args(shiftgate::cli::command());
    shiftgate::cli::logging::init_tracing(cli.log_format);
    std::process::exit(shiftgate::cli::dispatch(cli));
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn allocations(file: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut parts = text.split_whitespace().map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

mod prometheus_stand_in;
use prometheus_stand_in::PrometheusStandIn;

// ---- one run --------------------------------------------------------------------

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields[11].parse().unwrap();
    let stime: f64 = fields[12].parse().unwrap();
    (utime + stime) / ticks
}

/// Peak RSS (`VmHWM:`) or RSS now (`VmRSS:`) of process `pid`, in MiB.
fn rss_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_ok(port: u16, path: &str) -> bool {
    use std::io::Read;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// `shiftgate daemon` in a child process of this binary, on `port`: replica `replica`
/// of `replicas` (more than one: `--shards <replicas>` with Leases).
fn spawn_daemon(
    prometheus: &str,
    kubeconfig: &str,
    allocs_file: &Path,
    port: u16,
    (replica, replicas): (u64, u64),
) -> Daemon {
    let sharding = match replicas {
        1 => vec!["--lease-name".to_owned(), String::new()],
        n => vec![
            "--shards".to_owned(),
            n.to_string(),
            "--lease-namespace".to_owned(),
            NS.to_owned(),
        ],
    };
    Daemon(
        Command::new(std::env::current_exe().unwrap())
            .env(ROLE, "daemon")
            .env("SHIFTGATE_BENCH_ALLOCS", allocs_file)
            .args(["daemon", "--namespace", NS])
            .args(&sharding)
            .args(
                std::env::var("SHIFTGATE_BENCH_CONCURRENCY")
                    .map(|n| vec!["--concurrency".to_owned(), n])
                    .unwrap_or_default(),
            )
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--prometheus", prometheus])
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", format!("bench-{replica}"))
            .env(
                "SHIFTGATE_LOG",
                std::env::var("SHIFTGATE_LOG").unwrap_or_else(|_| "error".to_owned()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

fn run(
    size: usize,
    window: Duration,
    interval: u64,
    hold: bool,
    prometheus: &PrometheusStandIn,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (mut api, kubeconfig) = ApiServer::start(size, interval, hold, dir.path());
    // SHIFTGATE_BENCH_REPLICAS=R (R > 1): R daemons with `--shards R` share the
    // rollouts (issue 12 §5); their CPU and allocations are summed, RSS is per replica.
    let replicas = env_or("SHIFTGATE_BENCH_REPLICAS", 1).max(1);
    let started = Instant::now();
    let daemons: Vec<(Daemon, PathBuf, u16)> = (0..replicas)
        .map(|replica| {
            let allocs_file = dir.path().join(format!("allocs-{replica}"));
            let port = free_port();
            let daemon = spawn_daemon(
                &prometheus.address,
                &kubeconfig,
                &allocs_file,
                port,
                (replica, replicas),
            );
            (daemon, allocs_file, port)
        })
        .collect();
    for (_, _, port) in &daemons {
        while !http_ok(*port, "/readyz") {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "daemon never ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let cpu_all = |ticks: f64| -> f64 {
        daemons
            .iter()
            .map(|(d, _, _)| cpu_seconds(d.0.id(), ticks))
            .sum()
    };
    let allocations_all = || {
        daemons.iter().fold((0, 0), |(n, b), (_, file, _)| {
            let (dn, db) = allocations(file);
            (n + dn, b + db)
        })
    };
    // Every policy reconciled once, or as many as a few intervals allow (a daemon
    // that cannot keep up starves some: that is a figure, not a failure).
    let first_pass_limit = Duration::from_secs((interval * 3).max(60));
    let ready_at = Instant::now();
    while (api.ask("reconciled").as_u64().unwrap_or(0) as usize) < size
        && ready_at.elapsed() < first_pass_limit
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    let first_pass = started.elapsed().as_secs_f64();
    let ticks = clock_ticks_per_second();
    api.ask("clear");
    prometheus.take();
    let prometheus_queries_before = prometheus.queries_sent();
    let phase_queries_before = prometheus.phase_queries_sent();
    let cpu_before = cpu_all(ticks);
    let allocs_before = allocations_all();
    let window_start = Instant::now();
    std::thread::sleep(window);
    let wall = window_start.elapsed().as_secs_f64();
    let cpu = cpu_all(ticks) - cpu_before;
    let allocs_after = allocations_all();
    let rss_each: Vec<f64> = daemons
        .iter()
        .map(|(d, _, _)| rss_mib(d.0.id(), "VmHWM:"))
        .collect();
    let rss_now: Vec<String> = daemons
        .iter()
        .map(|(d, _, _)| format!("{:.1}", rss_mib(d.0.id(), "VmRSS:")))
        .collect();
    let rss_now = rss_now.join(", ");
    let rss = rss_each.iter().copied().fold(0.0, f64::max);
    let per_replica = if rss_each.len() > 1 {
        let each: Vec<String> = rss_each.iter().map(|r| format!("{r:.1}")).collect();
        format!(
            " (the largest of {} replicas: {} MiB; CPU and allocations summed)",
            rss_each.len(),
            each.join(", ")
        )
    } else {
        String::new()
    };
    let counts = api.ask("counts");
    let paused = api.ask("paused").as_u64().unwrap_or(0);
    let never_reconciled =
        size.saturating_sub(api.ask("reconciled").as_u64().unwrap_or(0) as usize);
    let queries = prometheus.take();
    let prometheus_queries = prometheus.queries_sent() - prometheus_queries_before;
    let phase_queries = prometheus.phase_queries_sent() - phase_queries_before;
    drop(daemons);
    drop(api);

    // A rollout's queries less than half an interval apart are one evaluation.
    let same_evaluation = Duration::from_millis(interval * 500);
    let mut by_app: HashMap<u32, Vec<Instant>> = HashMap::new();
    for (at, app) in &queries {
        by_app.entry(*app).or_default().push(*at);
    }
    let mut evaluations = 0usize;
    let mut lateness = Vec::new();
    for times in by_app.values_mut() {
        times.sort();
        let mut starts: Vec<Instant> = Vec::new();
        for t in times.iter() {
            if starts
                .last()
                .is_none_or(|s| t.duration_since(*s) > same_evaluation)
            {
                starts.push(*t);
            }
        }
        evaluations += starts.len();
        for pair in starts.windows(2) {
            let gap = pair[1].duration_since(pair[0]).as_secs_f64();
            lateness.push((gap - interval as f64).max(0.0));
        }
    }
    lateness.sort_by(f64::total_cmp);
    let never = size.saturating_sub(by_app.len());
    let never_named: Vec<String> = (0..size as u32)
        .filter(|i| !by_app.contains_key(i))
        .take(5)
        .map(|i| format!("app-{i}"))
        .collect();
    let never_named = if never_named.is_empty() {
        String::new()
    } else {
        format!(" (e.g. {})", never_named.join(", "))
    };
    let per_eval = |n: f64| {
        if evaluations == 0 {
            0.0
        } else {
            n / evaluations as f64
        }
    };
    let mut by_kind = String::new();
    if let Some(counts) = counts.as_object() {
        for (kind, n) in counts {
            let n = n.as_f64().unwrap_or(0.0);
            if !kind.starts_with("WATCH") {
                by_kind.push_str(&format!("\n    {kind}: {:.2}", per_eval(n)));
            }
        }
    }
    let requests: f64 = counts
        .as_object()
        .map(|c| {
            c.iter()
                .filter(|(k, _)| !k.starts_with("WATCH"))
                .filter_map(|(_, v)| v.as_f64())
                .sum()
        })
        .unwrap_or(0.0);
    format!(
        "{size} rollouts ({}), interval {interval} s, {:.0} s window, first pass {first_pass:.1} s:\n  \
         daemon CPU {:.3} cores, {:.3} ms per evaluation; peak RSS {rss:.1} MiB{per_replica}, at the window's end {rss_now} MiB\n  \
         evaluations {evaluations} ({:.1}/s); allocations per evaluation {:.0} ({:.0} bytes)\n  \
         API requests per evaluation {:.2}, by kind:{by_kind}\n  \
         Prometheus queries {:.1}/s ({:.1} of them scrape-phase queries; {:.1} rollout queries/s in them)\n  \
         lateness p50 {:.2} s, p99 {:.2} s, max {:.2} s; rollouts not evaluated in the window: {never}{never_named}, \
         never reconciled: {never_reconciled}, paused: {paused}",
        if hold { "holding" } else { "moving a weight each evaluation" },
        wall,
        cpu / wall,
        per_eval(cpu * 1000.0),
        evaluations as f64 / wall,
        per_eval(allocs_after.0.saturating_sub(allocs_before.0) as f64),
        per_eval(allocs_after.1.saturating_sub(allocs_before.1) as f64),
        per_eval(requests),
        prometheus_queries as f64 / wall,
        phase_queries as f64 / wall,
        queries.len() as f64 / wall,
        percentile(&lateness, 0.5),
        percentile(&lateness, 0.99),
        lateness.last().copied().unwrap_or(0.0),
    )
}
