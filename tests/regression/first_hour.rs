//! Regression tests of issue "first hour": the messages a newcomer meets in `check`,
//! and the command line's hygiene (pipes, `--help`, operator commands, progress).

use std::path::Path;
use std::process::{Command, Stdio};

use shiftgate::cli::exit;
use shiftgate::policy::{Phase, RolloutStatus};
use shiftgate::runtime::commands_file::FileCommands;
use shiftgate::store::file::FileStore;
use shiftgate::store::StateStore as _;

use super::support::command_world::{policy, spec, tick_until_weight, World};
use shiftgate::policy::diagnostic::{Diagnostic, Severity};
use shiftgate::policy::parse::check_str;

const POLICY: &str = include_str!("../../policies/envoy-local.yaml");

fn diagnostics(text: &str) -> Vec<Diagnostic> {
    check_str("policy.yaml", text).diagnostics
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line.contains(needle))
        .map(|index| index + 1)
        .expect("the needle is in the text")
}

#[test]
fn cron_hour_25_names_the_field_and_its_range() {
    let text = format!(
        "{POLICY}  windows:\n    - {{ kind: allow, schedule: \"0 25 * * Mon-Fri\", duration: 8h }}\n"
    );
    let found = diagnostics(&text);
    let schedule = found
        .iter()
        .find(|d| d.path == "spec.windows[0].schedule")
        .expect("the schedule is refused");
    assert!(
        schedule
            .message
            .contains("hour 25 is out of range (0 to 23)"),
        "{}",
        schedule.message
    );
    assert!(
        !schedule.message.contains("less than 23"),
        "{}",
        schedule.message
    );
}

#[test]
fn unclosed_bracket_is_reported_on_the_line_that_opens_it() {
    let text = POLICY.replace("steps: [0, 25, 50, 100]", "steps: [0, 25, 50, 100");
    let found = diagnostics(&text);
    let [error] = found.as_slice() else {
        panic!("one YAML error expected: {found:?}");
    };
    assert_eq!(error.line, line_of(&text, "steps: ["), "{error:?}");
    assert_eq!(error.column, "  steps: [".len(), "{error:?}");
    assert!(
        error.message.contains("`[` is never closed"),
        "{}",
        error.message
    );
}

#[test]
fn misspelt_min_requests_gives_no_spurious_zero_warning() {
    let text = POLICY.replace("minRequests: 20", "minRequest: 20");
    let found = diagnostics(&text);
    assert!(
        found
            .iter()
            .any(|d| d.path == "spec.analysis.minRequest" && d.severity == Severity::Error),
        "{found:?}"
    );
    let spurious: Vec<&Diagnostic> = found
        .iter()
        .filter(|d| d.severity == Severity::Warning && d.path == "spec.analysis.minRequests")
        .collect();
    assert!(spurious.is_empty(), "{spurious:?}");
}

const SHIFTGATE: &str = env!("CARGO_BIN_EXE_shiftgate");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// `shiftgate ARGS` with its stdout and stderr pipes closed by the reader before it
/// writes (`shiftgate … 2>&1 | head -c0`); returns the exit code and nothing else.
fn exit_code_with_closed_pipes(args: &[&str], current_dir: &Path) -> Option<i32> {
    let mut child = Command::new(SHIFTGATE)
        .args(args)
        .current_dir(current_dir)
        .env_remove("SHIFTGATE_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reading ends go away at once: every write the command makes meets EPIPE.
    drop(child.stdout.take());
    drop(child.stderr.take());
    child.wait().unwrap().code()
}

/// `shiftgate ARGS` with its output read to the end.
fn exit_code_when_read(args: &[&str], current_dir: &Path) -> Option<i32> {
    Command::new(SHIFTGATE)
        .args(args)
        .current_dir(current_dir)
        .env_remove("SHIFTGATE_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .status
        .code()
}

#[test]
fn closed_pipe_ends_a_command_with_its_own_code_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let unreachable = dir.path().join("unreachable.yaml");
    // Nothing listens on port 1: `run` fails its preflight and says so on stderr, after
    // a log line (the routes file's directory does not exist): both meet the closed pipe.
    std::fs::write(
        &unreachable,
        POLICY.replace("127.0.0.1:9901", "127.0.0.1:1"),
    )
    .unwrap();
    let unreachable = unreachable.to_str().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let cases: [&[&str]; 6] = [
        &["check", "policies/"],
        &["check", "policies/", "--output", "json"],
        &[
            "simulate",
            "policies/envoy-local.yaml",
            "--scenario",
            "scenarios/envoy-local-bad-release.yaml",
            "--output",
            "json",
        ],
        &[
            "simulate",
            "policies/envoy-local.yaml",
            "--scenario",
            "scenarios/envoy-local-good-release.yaml",
        ],
        &["run", unreachable, "--state-dir", state, "--output", "json"],
        &["pause", "--help"],
    ];
    for args in cases {
        let expected = exit_code_when_read(args, Path::new(REPO));
        assert_ne!(expected, Some(101), "{args:?} panics even when read");
        assert_eq!(
            exit_code_with_closed_pipes(args, Path::new(REPO)),
            expected,
            "`shiftgate {}` with its output closed",
            args.join(" ")
        );
    }
}

/// With only stdout closed (`shiftgate check policies/ | head -c0`), stderr read: the
/// command says nothing of a panic and ends with its own code.
#[test]
fn closed_stdout_alone_is_no_panic() {
    let mut child = Command::new(SHIFTGATE)
        .args(["check", "policies/", "--output", "json"])
        .current_dir(REPO)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(exit::OK), "{said}");
    assert!(!said.contains("panicked"), "{said}");
}

/// `shiftgate run POLICY --output json | head -1` on the real local stack: the rollout
/// goes on to its end with nobody reading, and the exit code is the rollout's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_into_closed_pipes_still_promotes_and_exits_zero() {
    use super::support::rollout::{ChildGuard, PolicyOptions, Stack};

    let stack = Stack::start().await;
    let policy = stack.write_policy(&PolicyOptions::default());
    let mut command = stack.command(&["run", policy.to_str().unwrap(), "--output", "json"]);
    let mut child = command.spawn().unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let output = ChildGuard(Some(child)).finish().await;
    assert_eq!(output.status.code(), Some(exit::OK));
    assert_eq!(stack.state().unwrap()["status"]["phase"], "Promoted");
}

#[test]
fn help_of_every_command_lists_its_exit_codes() {
    let cli = shiftgate::cli::command();
    let commands: Vec<&str> = cli
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name())
        .collect();
    assert!(commands.len() >= 12, "{commands:?}");
    for name in commands {
        let codes = exit::codes_of(name)
            .unwrap_or_else(|| panic!("`{name}` has no row in exit::BY_COMMAND"));
        let help = Command::new(SHIFTGATE)
            .args([name, "--help"])
            .output()
            .unwrap();
        assert_eq!(help.status.code(), Some(0));
        let help = String::from_utf8_lossy(&help.stdout);
        let listed = help
            .split_once("Exit codes:")
            .unwrap_or_else(|| panic!("`shiftgate {name} --help` lists no exit codes:\n{help}"))
            .1;
        for (code, meaning) in codes {
            assert!(
                listed.contains(&format!("{code:<4} {meaning}")),
                "`shiftgate {name} --help` does not say what {code} means:\n{help}"
            );
        }
    }
}

#[test]
fn cli_doc_lists_every_exit_code_of_every_command() {
    let doc = std::fs::read_to_string(Path::new(REPO).join("docs/cli.md")).unwrap();
    let section = doc
        .split_once("<!-- exit-codes:begin -->\n")
        .and_then(|(_, rest)| rest.split_once("<!-- exit-codes:end -->"))
        .map(|(section, _)| section)
        .expect("docs/cli.md has the exit-codes markers");
    assert_eq!(
        section,
        exit::markdown(),
        "docs/cli.md's exit codes differ from exit::BY_COMMAND; put this between the markers:\n{}",
        exit::markdown()
    );
}

/// `shiftgate ARGS --state-dir DIR`, as an operator types it: (exit code, stdout, stderr).
fn operator(state_dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(SHIFTGATE)
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .env_remove("SHIFTGATE_LOG")
        .env_remove("SHIFTGATE_CLUSTER")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Command files waiting under the state dir for shop/checkout.
fn command_files(state_dir: &Path) -> usize {
    std::fs::read_dir(state_dir.join("shop/checkout.commands")).map_or(0, |entries| {
        entries
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".cmd"))
            })
            .count()
    })
}

/// The README's local policy as shop/checkout (revision v2), written into `dir`.
fn policy_file(dir: &Path) -> String {
    let file = dir.join("checkout.yaml");
    std::fs::write(
        &file,
        POLICY.replace("name: demo", "name: checkout\n  namespace: shop"),
    )
    .unwrap();
    file.to_str().unwrap().to_owned()
}

/// A local rollout of `spec("v1")` at 20%, with no `shiftgate run` driving it.
async fn rollout_at_20(state_dir: &Path) {
    let world = World::new();
    let store = std::sync::Arc::new(FileStore::new(state_dir));
    let commands = std::sync::Arc::new(FileCommands::new(state_dir));
    let reconciler = world.reconciler(store, commands);
    tick_until_weight(&world, &reconciler, &spec("v1"), 20).await;
}

#[tokio::test]
async fn pause_with_no_rollout_in_progress_exits_non_zero_without_a_false_promise() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = policy_file(dir.path());
    let file = file.as_str();
    // Never run: nothing to pause, resume, promote or abort.
    for word in ["pause", "resume", "promote", "abort"] {
        let (code, _, said) = operator(&state, &[word, file]);
        assert_eq!(code, Some(exit::NOT_IN_PROGRESS), "`{word}`: {said}");
        assert!(said.contains("no rollout of it is in progress"), "{said}");
        assert!(!said.contains("applies it"), "a false promise: {said}");
    }
    assert_eq!(command_files(&state), 0, "nothing was queued");

    // Over: promoted.
    let promoted = RolloutStatus {
        revision: Some("v2".to_owned()),
        phase: Phase::Promoted,
        canary_weight: 100,
        ..RolloutStatus::default()
    };
    let store = FileStore::new(&state);
    store.save(&policy(), &promoted, None).await.unwrap();
    let (code, _, said) = operator(&state, &["resume", file]);
    assert_eq!(code, Some(exit::NOT_IN_PROGRESS), "{said}");
    assert!(said.contains("is over: Promoted at canary 100%"), "{said}");
    assert_eq!(command_files(&state), 0);

    // In progress, but no `run` drives it: queued, and said so.
    let driven = tempfile::tempdir().unwrap();
    rollout_at_20(driven.path()).await;
    let (code, _, said) = operator(driven.path(), &["pause", "shop/checkout"]);
    assert_eq!(code, Some(exit::OK), "{said}");
    assert!(
        said.contains("no `shiftgate run` drives this rollout now"),
        "{said}"
    );
    assert!(!said.contains("the running `shiftgate run`"), "{said}");
}

#[tokio::test]
async fn status_shows_a_command_written_but_not_handled_yet() {
    // A `pause` an older shiftgate queued for a policy never run: `status` found no
    // state and said nothing of it.
    let never_run = tempfile::tempdir().unwrap();
    let queue = never_run.path().join("shop/checkout.commands");
    std::fs::create_dir_all(&queue).unwrap();
    std::fs::write(
        queue.join("000000000001.cmd"),
        r#"{"command":"pause","revision":"v2"}"#,
    )
    .unwrap();
    let file = policy_file(never_run.path());
    let (code, _, shown) = operator(never_run.path(), &["status", &file]);
    assert_eq!(code, Some(exit::COULD_NOT_RUN), "{shown}");
    assert!(
        shown.contains("no local rollout of shop/checkout"),
        "{shown}"
    );
    assert!(
        shown.contains("pending: command `pause` for v2 (id 1), not handled yet"),
        "{shown}"
    );

    let dir = tempfile::tempdir().unwrap();
    rollout_at_20(dir.path()).await;
    let (code, _, said) = operator(dir.path(), &["pause", "shop/checkout"]);
    assert_eq!(code, Some(exit::OK), "{said}");

    let (code, _, shown) = operator(dir.path(), &["status", "shop/checkout"]);
    assert_eq!(code, Some(exit::OK), "{shown}");
    assert!(
        shown.contains("pending: command `pause` for v1 (id 1), not handled yet"),
        "{shown}"
    );
    assert!(
        shown.contains("no `shiftgate run` drives this rollout now"),
        "{shown}"
    );

    let (code, json, said) = operator(dir.path(), &["status", "shop/checkout", "--output", "json"]);
    assert_eq!(code, Some(exit::OK), "{said}");
    let document: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        document["pendingCommands"],
        serde_json::json!([{ "id": "1", "command": "pause", "revision": "v1" }]),
        "{json}"
    );
    assert_eq!(
        document["canaryWeight"], 20,
        "still the stored status: {json}"
    );
}

/// `run`'s progress lines.
#[path = "first_hour_progress.rs"]
mod progress;

/// The kubectl plugin reads "in progress" from the RolloutPolicy's status.
#[test]
fn kubectl_plugin_refuses_commands_for_a_finished_rollout() {
    use shiftgate::policy::RolloutPolicy;
    use shiftgate::testkit::apiserver::{ResourceRef, TestApiServer};

    let server = TestApiServer::start_background().unwrap();
    let policy = |phase: &str| {
        serde_json::json!({
            "apiVersion": "shiftgate.dev/v1alpha1", "kind": "RolloutPolicy",
            "metadata": { "name": "checkout", "namespace": "shop" },
            "spec": { "revision": "v2", "steps": [0, 30, 100] },
            "status": { "revision": "v2", "phase": phase, "step": 2, "canaryWeight": 100 },
        })
    };
    let resource = ResourceRef::of::<RolloutPolicy>();
    server.put_object(&resource, policy("Promoted")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    server.write_kubeconfig(dir.path(), "shop").unwrap();
    let plugin = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kubectl-shiftgate"))
            .args(args)
            .env("KUBECONFIG", dir.path().join("kubeconfig"))
            .env("HOME", dir.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap()
    };
    let refused = plugin(&["abort", "checkout"]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(exit::NOT_IN_PROGRESS), "{said}");
    assert!(said.contains("is over: Promoted at canary 100%"), "{said}");
    let annotations = &server
        .get_object(&resource, Some("shop"), "checkout")
        .unwrap()["metadata"]["annotations"];
    assert!(
        annotations["shiftgate.dev/command"].is_null(),
        "{annotations}"
    );

    server.put_object(&resource, policy("Held")).unwrap();
    let sent = plugin(&["abort", "checkout"]);
    assert_eq!(
        sent.status.code(),
        Some(exit::OK),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
}
