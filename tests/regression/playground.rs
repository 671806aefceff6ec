//! Regression tests of issue "first hour" §1–2: a local playground to run policies
//! against, and the install and build steps around it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::support::playground::{assert_nothing_left, shiftgate, spawn_up, text};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The README's `shiftgate run policies/envoy-local.yaml` had no stack to run against:
/// it exited 3 ("cannot reach envoy admin at 127.0.0.1:9901"). Now `local up` starts
/// one that policy names; the must-hold of the issue, end to end: a good release is
/// promoted, a faulty next one rolled back, and `local down` leaves nothing.
#[test]
fn run_envoy_local_policy_has_a_playground_to_run_against() {
    let temp = tempfile::tempdir().unwrap();
    let state_file = temp.path().join("local.json");
    let run_state = temp.path().join("run-state");
    let run_state = run_state.to_str().unwrap();
    let mut up = spawn_up(&state_file, temp.path(), &[]);
    let (recorded, endpoints) = up.wait_ready();
    assert_eq!(
        endpoints.envoy_admin.port(),
        9901,
        "Envoy admin could not get the port policies/envoy-local.yaml names (taken?):\n{}",
        up.log_text()
    );
    assert_eq!(endpoints.prometheus.port(), 9090, "{}", up.log_text());
    assert!(
        up.log_text()
            .contains("shiftgate run policies/envoy-local.yaml"),
        "{}",
        up.log_text()
    );

    let good = shiftgate(
        &state_file,
        &["run", "policies/envoy-local.yaml", "--state-dir", run_state],
    );
    assert_eq!(good.status.code(), Some(0), "{}", text(&good));
    assert!(text(&good).contains("Promoted"), "{}", text(&good));

    let release = shiftgate(&state_file, &["local", "release", "v3"]);
    assert_eq!(release.status.code(), Some(0), "{}", text(&release));
    let fault = shiftgate(
        &state_file,
        &["local", "fault", "canary", "--error-rate", "0.3"],
    );
    assert_eq!(fault.status.code(), Some(0), "{}", text(&fault));
    let policy = endpoints.policy.to_str().unwrap();
    let bad = shiftgate(&state_file, &["run", policy, "--state-dir", run_state]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("RolledBack"), "{}", text(&bad));

    let down = shiftgate(&state_file, &["local", "down"]);
    assert_eq!(down.status.code(), Some(0), "{}", text(&down));
    assert_eq!(up.wait_exit(Duration::from_secs(30)), Some(0));
    assert!(up.log_text().contains("stopped every process"));
    assert_nothing_left(&recorded, &state_file);
}

/// The cargo command lines of a script (continuation lines joined).
fn cargo_commands(script: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("scripts").join(script)).unwrap();
    text.replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("cargo ") || line.starts_with("exec cargo "))
        .map(str::to_owned)
        .collect()
}

/// `scripts/demo` built with `cargo run --quiet`: silence during a first build of up to
/// an hour, and dependencies resolved without the dev-dependencies' features, so that
/// `scripts/test` recompiled about 170 crates. It must show cargo's progress and build
/// with what `cargo test` builds: the dev profile and a test target.
#[test]
fn demo_script_shows_progress_and_shares_the_test_build() {
    let demo = cargo_commands("demo");
    let test = cargo_commands("test");
    assert!(!demo.is_empty() && !test.is_empty(), "{demo:?} {test:?}");
    for line in demo.iter().chain(&test) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for other_profile in ["--release", "--profile", "-r"] {
            assert!(!words.contains(&other_profile), "{line}");
        }
    }
    for line in &demo {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(
            !words.contains(&"--quiet") && !words.contains(&"-q"),
            "no progress: {line}"
        );
        assert!(
            !words.contains(&"run"),
            "`cargo run` resolves features without the dev-dependencies: {line}"
        );
        assert!(
            words
                .iter()
                .any(|w| ["--test", "--tests", "--all-targets"].contains(w)),
            "without a test target the features differ from scripts/test: {line}"
        );
    }
    let script = std::fs::read_to_string(repo().join("scripts/demo")).unwrap();
    assert!(script.contains("building shiftgate"), "{script}");
}

/// A fake `apt-get` that fails like the real one (exit 100) while the lock is held.
const FAKE_APT: &str = r#"#!/usr/bin/env bash
exec 9>>"$SHIFTGATE_APT_LOCKS"
flock -n 9 || { echo "E: Could not get lock $SHIFTGATE_APT_LOCKS" >&2; exit 100; }
echo "$*" >> "$FAKE_APT_CALLS"
case " $* " in
  *" install "*)
    bin="$(dirname "$0")"
    printf '#!/usr/bin/env bash\necho "prometheus, version 2.42 (fake)"\n' > "$bin/prometheus"
    cp "$bin/prometheus" "$bin/promtool"
    chmod +x "$bin/prometheus" "$bin/promtool" ;;
esac
"#;

/// A PATH holding only fake apt, sudo, service and envoy, and the real tools the
/// script uses: it never reaches the real apt or the real dpkg lock.
fn fake_system(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let tools = [
        "bash", "env", "awk", "stat", "sleep", "id", "head", "grep", "cat", "dirname", "sort",
        "paste", "flock", "cp", "chmod",
    ];
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        let path = String::from_utf8(found.stdout).unwrap();
        assert!(found.status.success(), "`{tool}` is needed by this test");
        std::os::unix::fs::symlink(path.trim(), bin.join(tool)).unwrap();
    }
    let scripts = [
        ("apt-get", FAKE_APT),
        ("sudo", "#!/usr/bin/env bash\nexec \"$@\"\n"),
        ("service", "#!/usr/bin/env bash\nexit 0\n"),
        (
            "envoy",
            "#!/usr/bin/env bash\necho \"envoy  version: fake/1.40.0\"\n",
        ),
    ];
    for (name, body) in scripts {
        let path = bin.join(name);
        std::fs::write(&path, body).unwrap();
        let status = Command::new("chmod").arg("+x").arg(&path).status().unwrap();
        assert!(status.success());
    }
    bin
}

/// `scripts/install-deps` gave up at once (exit 100) when another apt process held the
/// dpkg lock. Now it waits for it, saying who holds it, and installs once it is free.
#[test]
#[allow(clippy::disallowed_methods)] // a test's timeout, not a decision's clock
fn install_deps_waits_for_a_held_dpkg_lock() {
    let temp = tempfile::tempdir().unwrap();
    let bin = fake_system(temp.path());
    let lock = temp.path().join("lock-frontend");
    std::fs::write(&lock, "").unwrap();
    let calls = temp.path().join("apt-calls");
    // `flock -o LOCK cat`: flock itself holds the lock until `cat` ends, which is when
    // its stdin closes; nothing outlives the test.
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The holder has the lock once a non-blocking attempt fails.
    let started = Instant::now();
    while Command::new("flock")
        .args(["-n"])
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap()
        .success()
    {
        assert!(started.elapsed() < Duration::from_secs(10), "no lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut install = Command::new(repo().join("scripts/install-deps"))
        .arg("--demo")
        .env_clear()
        .env("PATH", &bin)
        .env("SHIFTGATE_APT_LOCKS", &lock)
        .env("SHIFTGATE_APT_LOCK_TIMEOUT", "120")
        .env("FAKE_APT_CALLS", &calls)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(install.stderr.take().unwrap());
    let mut seen = String::new();
    let waiting = loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break false;
        }
        seen.push_str(&line);
        if line.contains("waiting for another apt/dpkg process") {
            break true;
        }
    };
    let holder_pid = holder.id().to_string();
    drop(holder.stdin.take());
    holder.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = install.wait().unwrap();
    seen.push_str(&rest);
    assert!(waiting, "install-deps did not wait for the lock:\n{seen}");
    assert!(
        seen.contains(&holder_pid) && seen.contains("(flock)"),
        "{seen}"
    );
    assert_eq!(status.code(), Some(0), "{seen}");
    let calls = std::fs::read_to_string(&calls).unwrap();
    assert!(
        calls.contains("update") && calls.contains("install"),
        "{calls}"
    );
}
