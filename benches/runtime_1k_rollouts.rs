//! One `shiftgate daemon` process driving 1,000 concurrent rollouts against the in-repo
//! test API server and a Prometheus stand-in, at a 10 s analysis interval, for a fixed
//! wall window. Reports the daemon process's CPU (user+sys seconds per wall second),
//! peak RSS, and the API requests per second it makes. Several runs; medians.
//!
//! `cargo bench --bench runtime_1k_rollouts`
//! Knobs: SHIFTGATE_BENCH_POLICIES (1000), SHIFTGATE_BENCH_SECONDS (60),
//! SHIFTGATE_BENCH_RUNS (3). Linux only (reads /proc).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the report
#![allow(clippy::disallowed_methods)] // a benchmark measures wall time

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::routing::any;
use serde_json::{json, Value};
use shiftgate::testkit::apiserver::{ResourceRef, TestApiServer};

const NS: &str = "bench";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Answers every instant query with one healthy sample, like a Prometheus whose canary
/// is fine. Runs on its own thread and runtime.
fn prometheus_stand_in() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/api/v1/query",
                any(|| async {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    axum::Json(json!({
                        "status": "success",
                        "data": { "resultType": "vector",
                                  "result": [ { "metric": {}, "value": [now, "0.001"] } ] }
                    }))
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    address
}

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

fn policy(i: usize) -> Value {
    // 21 steps of 5%: at one evaluation per 10 s no rollout finishes within the window,
    // so every one of them is progressing the whole time.
    let steps: Vec<u8> = (0..=20).map(|s| s * 5).collect();
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
                "interval": "10s",
                "metrics": [
                    { "name": "error-rate", "template": "istio-error-rate", "max": 0.01 },
                    { "name": "p99-latency", "template": "istio-latency-p99", "max": 500 }
                ]
            }
        }
    })
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14, 15.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields[11].parse().unwrap();
    let stime: f64 = fields[12].parse().unwrap();
    (utime + stime) / ticks
}

/// Peak resident set (VmHWM) in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over plain HTTP/1.0 with std only (no TLS stack needed for a probe).
fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
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

struct RunResult {
    cores: f64,
    peak_rss_mib: f64,
    requests_per_second: f64,
    writes_per_second: f64,
    first_pass_seconds: f64,
}

fn run_once(policies: usize, window: Duration, prometheus: &str, ticks: f64) -> RunResult {
    let server = TestApiServer::start_background().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = server.write_kubeconfig(dir.path(), NS).unwrap();
    let vs = ResourceRef::new("networking.istio.io", "v1", "virtualservices");
    let rp = ResourceRef::new("shiftgate.dev", "v1alpha1", "rolloutpolicies");
    for i in 0..policies {
        server.put_object(&vs, virtual_service(i)).unwrap();
        server.put_object(&rp, policy(i)).unwrap();
    }
    let port = free_port();
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_shiftgate"))
        .args([
            "daemon",
            "--namespace",
            NS,
            "--lease-name",
            "",
            "--concurrency",
            "16",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--prometheus", prometheus])
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAME", "bench")
        .env(
            "SHIFTGATE_LOG",
            std::env::var("SHIFTGATE_LOG").unwrap_or_else(|_| "error".to_owned()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    let pid = daemon.0.id();
    while !http_ok(port, "/readyz") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "daemon never ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every policy reconciled once (its status written).
    loop {
        let written: std::collections::HashSet<String> = server
            .requests_matching("PATCH", "/rolloutpolicies/")
            .into_iter()
            .map(|r| r.path.split('?').next().unwrap_or("").to_owned())
            .collect();
        if written.len() >= policies {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "only {} policies reconciled",
            written.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let first_pass_seconds = started.elapsed().as_secs_f64();
    server.clear_requests();
    let cpu_before = cpu_seconds(pid, ticks);
    let window_start = Instant::now();
    std::thread::sleep(window);
    let wall = window_start.elapsed().as_secs_f64();
    let cpu_after = cpu_seconds(pid, ticks);
    let requests = server.requests();
    let writes = requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/virtualservices/"))
        .count();
    let result = RunResult {
        cores: (cpu_after - cpu_before) / wall,
        peak_rss_mib: peak_rss_mib(pid),
        requests_per_second: requests.len() as f64 / wall,
        writes_per_second: writes as f64 / wall,
        first_pass_seconds,
    };
    drop(daemon);
    result
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo bench` passes `--bench`. `cargo test --all-targets` runs this binary without
    // it: then a small smoke run proves the harness still works, in seconds not minutes.
    let full = std::env::args().any(|a| a == "--bench");
    let (default_policies, default_seconds, default_runs) =
        if full { (1000, 60, 3) } else { (20, 3, 1) };
    let policies = env_or("SHIFTGATE_BENCH_POLICIES", default_policies) as usize;
    let seconds = env_or("SHIFTGATE_BENCH_SECONDS", default_seconds);
    let runs = env_or("SHIFTGATE_BENCH_RUNS", default_runs) as usize;
    let prometheus = prometheus_stand_in();
    let ticks = clock_ticks_per_second();
    let mut results = Vec::new();
    for run in 1..=runs {
        let r = run_once(policies, Duration::from_secs(seconds), &prometheus, ticks);
        println!(
            "run {run}: {policies} rollouts, {seconds} s window: {:.3} cores, peak RSS {:.1} MiB, \
             {:.1} API requests/s, {:.1} route writes/s, all reconciled once after {:.1} s",
            r.cores,
            r.peak_rss_mib,
            r.requests_per_second,
            r.writes_per_second,
            r.first_pass_seconds
        );
        results.push(r);
    }
    println!(
        "median of {runs}: {:.3} cores, peak RSS {:.1} MiB, {:.1} API requests/s, {:.1} route writes/s, first pass {:.1} s",
        median(results.iter().map(|r| r.cores).collect()),
        median(results.iter().map(|r| r.peak_rss_mib).collect()),
        median(results.iter().map(|r| r.requests_per_second).collect()),
        median(results.iter().map(|r| r.writes_per_second).collect()),
        median(results.iter().map(|r| r.first_pass_seconds).collect()),
    );
}
