//! Regression tests: see tests/regression.rs. Issue "trust" §4: no panic on any input,
//! bounded resources, one duration grammar, and a broken Prometheus is "could not run".

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shiftgate::analysis::sample::{AnalysisInput, MetricObservation, Sample};
use shiftgate::analysis::{InconclusiveReason, Verdict};
use shiftgate::engine::types::{Action, Observation};
use shiftgate::engine::Plan;
use shiftgate::metrics::prometheus::interpret;
use shiftgate::policy::status::{Phase, RolloutStatus};
use shiftgate::policy::RolloutPolicy;
use shiftgate::router::ManagedRoute;

fn shiftgate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shiftgate"));
    command.stdin(Stdio::null());
    command
}

/// Runs the command; a run longer than `limit` is killed and fails the test (and the
/// time it took is what some tests assert, so the wall clock is read here).
#[allow(clippy::disallowed_methods)]
fn run_within(mut command: Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained by threads, so a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let output = Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    (output, took)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const POLICY_HEAD: &str = "apiVersion: shiftgate.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: checkout, namespace: shop }
spec:
  revision: \"2\"
  router:
    istio:
      virtualService: checkout
      stable: { host: checkout.prod.svc.cluster.local }
      canary: { host: checkout.stage.svc.cluster.local }
";

const ANALYSIS: &str = "  analysis:
    prometheus: { address: \"http://prometheus:9090\" }
    metrics:
      - { name: error-rate, template: istio-error-rate, max: 0.01 }
";

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// `shiftgate check FILE`: exit code and stderr+stdout.
fn check(path: &Path) -> (i32, String) {
    let mut command = shiftgate();
    command.arg("check").arg(path);
    let (output, _) = run_within(command, Duration::from_secs(60));
    (
        output.status.code().unwrap_or(-1),
        format!("{}{}", text(&output.stdout), text(&output.stderr)),
    )
}

#[test]
fn huge_step_hold_is_refused_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "hold.yaml",
        &format!("{POLICY_HEAD}  steps:\n    - 0\n    - {{ weight: 50, hold: 99999999999h }}\n    - 100\n{ANALYSIS}"),
    );
    let (code, out) = check(&policy);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("hold.yaml:13:"), "located at the hold: {out}");
    assert!(out.contains("spec.steps[1].hold"), "{out}");
    assert!(out.contains("maximum 30d"), "names the bound: {out}");
}

/// The crash loop itself: a spec that reached the engine with a huge hold (no check in
/// between) once traffic moved. The hold's end is past every date chrono can hold.
#[test]
fn huge_step_hold_does_not_panic_the_engine_after_traffic_moved() {
    let text = format!("{POLICY_HEAD}  steps:\n    - 0\n    - {{ weight: 50, hold: 99999999999h }}\n    - 100\n{ANALYSIS}");
    let policy: RolloutPolicy = serde_yaml_ng::from_str(&text).unwrap();
    let plan = Plan::new(&policy.spec).unwrap();
    let now = chrono::DateTime::from_timestamp(1_767_607_200, 0).unwrap();
    let state = RolloutStatus {
        revision: Some("2".to_owned()),
        phase: Phase::Progressing,
        step: 1,
        canary_weight: 50,
        started_at: Some(now),
        step_started_at: Some(now),
        last_evaluation_at: Some(now),
        checks_passed: true,
        ..RolloutStatus::default()
    };
    let later = now + chrono::Duration::seconds(31);
    let live = Ok(ManagedRoute {
        canary_weight: 50,
        test_route: false,
    });
    let mut observation = Observation::at(later, live);
    let first = shiftgate::engine::step(&plan, &state, &observation);
    assert!(first.actions.contains(&Action::QueryMetrics), "{first:?}");
    observation.analysis = Some(AnalysisInput {
        at: later,
        canary_requests: Sample::value(1000.0),
        metrics: vec![MetricObservation {
            name: "error-rate".to_owned(),
            canary: Sample::value(0.0),
            stable: None,
        }],
    });
    let decision = shiftgate::engine::step(&plan, &state, &observation);
    assert_eq!(
        decision.state.canary_weight, 50,
        "still holding: {decision:?}"
    );
    let wake = decision
        .wake_at
        .expect("a holding rollout asks to be woken");
    assert!(wake > later, "{wake}");
}

#[test]
fn huge_window_duration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "window.yaml",
        &format!("{POLICY_HEAD}  steps: [0, 100]\n{ANALYSIS}  windows:\n    - {{ kind: allow, schedule: \"0 9 * * 1-5\", duration: 99999999999h }}\n"),
    );
    let (code, out) = check(&policy);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("window.yaml:17:"), "{out}");
    assert!(out.contains("spec.windows[0].duration"), "{out}");
    assert!(out.contains("maximum 30d"), "{out}");
}

fn simulate(dir: &Path, scenario: &str) -> (i32, String) {
    let policy = write(
        dir,
        "policy.yaml",
        &format!("{POLICY_HEAD}  steps: [0, 50, 100]\n{ANALYSIS}"),
    );
    let scenario = write(dir, "scenario.yaml", scenario);
    let mut command = shiftgate();
    command
        .arg("simulate")
        .arg(&policy)
        .arg("--scenario")
        .arg(&scenario);
    let (output, _) = run_within(command, Duration::from_secs(60));
    (
        output.status.code().unwrap_or(-1),
        format!("{}{}", text(&output.stdout), text(&output.stderr)),
    )
}

#[test]
fn huge_scenario_max_duration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = simulate(
        dir.path(),
        "kind: Scenario\nmaxDuration: 99999999999h\nmetrics:\n  error-rate: { canary: [{ value: 0.001 }] }\n",
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("maxDuration"), "{out}");
    assert!(out.contains("maximum 30d"), "{out}");
}

#[test]
fn huge_scenario_event_offset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = simulate(
        dir.path(),
        "kind: Scenario\nmetrics:\n  error-rate: { canary: [{ value: 0.001 }] }\ncommands:\n  - { at: 99999999999h, command: abort }\n",
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("commands[0].at"), "{out}");
    assert!(out.contains("maximum 30d"), "{out}");
}

#[test]
fn fifty_megabyte_steps_list_is_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steps.yaml");
    let mut file = std::fs::File::create(&path).unwrap();
    write!(file, "{POLICY_HEAD}{ANALYSIS}  steps: [").unwrap();
    let chunk = "0, ".repeat(1 << 16);
    while file.metadata().unwrap().len() < 50 << 20 {
        file.write_all(chunk.as_bytes()).unwrap();
    }
    file.write_all(b"100]\n").unwrap();
    drop(file);
    let mut command = shiftgate();
    command.arg("check").arg(&path);
    let (output, took) = run_within(command, Duration::from_secs(30));
    let out = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{out}");
    assert!(out.contains("1 MiB"), "says the bound: {out}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn long_time_zone_is_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let zone = "Europe/Berlin".repeat(300_000 / 13);
    let policy = write(
        dir.path(),
        "zone.yaml",
        &format!("{POLICY_HEAD}  steps: [0, 100]\n{ANALYSIS}  windows:\n    - {{ kind: allow, schedule: \"0 9 * * 1-5\", duration: 8h, timeZone: \"{zone}\" }}\n"),
    );
    let mut command = shiftgate();
    command.arg("check").arg(&policy);
    let (output, took) = run_within(command, Duration::from_secs(60));
    let out = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{out}");
    assert!(out.contains("spec.windows[0].timeZone"), "{out}");
    assert!(out.contains("64 characters"), "{out}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn duration_5min_is_refused_like_the_crd() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "minutes.yaml",
        &format!("{POLICY_HEAD}  steps: [0, 100]\n{ANALYSIS}    interval: 5min\n"),
    );
    let (code, out) = check(&policy);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("spec.analysis.interval"), "{out}");
    // The error names the units the CRD accepts, and no other.
    assert!(out.contains("ms, s, m, h or d"), "{out}");
    assert!(!out.contains("min,") && !out.contains("weeks"), "{out}");
    // …which are the CRD's: its pattern refuses `5min` too and accepts `5m`.
    let crd: serde_json::Value =
        serde_yaml_ng::from_str(&shiftgate::cli::crd::render().unwrap()).unwrap();
    let interval = crd
        .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/analysis/properties/interval")
        .unwrap();
    let pattern = regex::Regex::new(interval["pattern"].as_str().unwrap()).unwrap();
    assert!(!pattern.is_match("5min"));
    assert!(pattern.is_match("5m"));
}

#[test]
fn schema_has_no_nonstandard_formats() {
    let (output, _) = run_within(
        {
            let mut command = shiftgate();
            command.arg("schema");
            command
        },
        Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // The formats JSON Schema defines (draft 2020-12 §7.3); ajv in strict mode refuses
    // any other.
    let standard = [
        "date-time",
        "date",
        "time",
        "duration",
        "email",
        "idn-email",
        "hostname",
        "idn-hostname",
        "ipv4",
        "ipv6",
        "uri",
        "uri-reference",
        "iri",
        "iri-reference",
        "uuid",
        "uri-template",
        "json-pointer",
        "relative-json-pointer",
        "regex",
    ];
    let mut found = Vec::new();
    collect_formats(&schema, "", &mut found);
    let odd: Vec<&String> = found
        .iter()
        .filter(|(_, f)| !standard.contains(&f.as_str()))
        .map(|(at, _)| at)
        .collect();
    assert!(odd.is_empty(), "non-standard formats at {odd:?}");
    // The bounds the formats carried are kept as minimum/maximum.
    let port = schema
        .pointer("/definitions/Destination/properties/port")
        .unwrap();
    assert_eq!(port["maximum"], 65535, "{port}");
}

fn collect_formats(node: &serde_json::Value, at: &str, found: &mut Vec<(String, String)>) {
    match node {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(format)) = map.get("format") {
                found.push((format!("{at} ({format})"), format.clone()));
            }
            for (key, value) in map {
                collect_formats(value, &format!("{at}/{key}"), found);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_formats(item, &format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

/// Answers every HTTP request with 200 and an HTML page, on 127.0.0.1.
struct HtmlServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HtmlServer {
    fn start() -> HtmlServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // The headers, then as much body as Content-Length says.
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
                    if let Some(end) = head.find("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let body = "<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>";
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        HtmlServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HtmlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[tokio::test]
async fn prometheus_html_answer_is_could_not_run() {
    let server = HtmlServer::start();
    let local = super::support::envoy::start().await;
    let router = &local.envoy.router;
    let routes_before = std::fs::read_to_string(&router.routes_file).ok();
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.yaml",
        &format!(
            "apiVersion: shiftgate.dev/v1alpha1\nkind: RolloutPolicy\nmetadata: {{ name: x }}\nspec:\n  revision: v2\n  router:\n    envoy: {{ routesFile: \"{}\", adminAddress: \"{}\", stableCluster: {}, canaryCluster: {} }}\n  steps: [0, 100]\n  analysis:\n    prometheus: {{ address: \"http://127.0.0.1:{}\" }}\n    metrics: [{{ name: e, template: envoy-error-rate, max: 0.1 }}]\n",
            router.routes_file,
            router.admin_address,
            router.stable_cluster,
            router.canary_cluster,
            server.port
        ),
    );
    let mut command = shiftgate();
    command
        .arg("run")
        .arg(&policy)
        .arg("--state-dir")
        .arg(dir.path());
    let (output, _) =
        tokio::task::spawn_blocking(move || run_within(command, Duration::from_secs(60)))
            .await
            .unwrap();
    let log = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(3),
        "could not run, not invalid input: {log}"
    );
    assert!(log.contains("without an API response"), "{log}");
    assert_eq!(
        std::fs::read_to_string(&router.routes_file).ok(),
        routes_before,
        "nothing was written"
    );
}

#[test]
fn unparseable_request_count_is_inconclusive() {
    let policy: RolloutPolicy = serde_yaml_ng::from_str(&format!(
        "{POLICY_HEAD}  steps: [0, 100]\n  analysis:\n    minRequests: 100\n    metrics:\n      - {{ name: error-rate, template: istio-error-rate, max: 0.01 }}\n"
    ))
    .unwrap();
    let count =
        |body: &str| interpret(200, body.as_bytes(), "sum(increase(x[30s]))", "http://prom");
    let vector = |value: &str| {
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1767607200,"{value}"]}}]}}}}"#
        )
    };
    for (body, expected) in [
        (vector("NaN"), "NotANumber"),
        (vector("+Inf"), "NotANumber"),
        (vector("twelve"), "SourceUnreachable"),
        ("<html>login</html>".to_owned(), "SourceUnreachable"),
    ] {
        let input = AnalysisInput {
            at: chrono::DateTime::from_timestamp(1_767_607_200, 0).unwrap(),
            canary_requests: count(&body),
            metrics: vec![MetricObservation {
                name: "error-rate".to_owned(),
                canary: Sample::value(0.0),
                stable: None,
            }],
        };
        let evaluation = shiftgate::analysis::judge(&policy.spec.analysis, &input, 50);
        let Verdict::Inconclusive(reason) = &evaluation.verdict else {
            panic!("{body}: {:?}", evaluation.verdict);
        };
        assert!(
            !matches!(reason, InconclusiveReason::TooFewRequests { .. }),
            "{body} is not 0 requests: {}",
            evaluation.message
        );
        assert_eq!(reason.reason(), expected, "{body}: {}", evaluation.message);
        assert!(
            !evaluation.message.contains(" 0 < "),
            "{}",
            evaluation.message
        );
    }
}
