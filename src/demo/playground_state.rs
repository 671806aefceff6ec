//! The playground's state file: which `shiftgate local up` runs, its processes, ports
//! and dir, so that other processes (`local down`, `local fault`) find it, a second
//! `local up` is refused, and what a playground that died left behind is cleaned up.
//!
//! Process checks read Linux's `/proc`; signals go through the shell's `kill` builtin
//! (the crate forbids `unsafe`, so no direct `kill(2)`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The file, inside the playground dir, that says `local up` created that dir; only
/// such a dir is ever removed by a cleanup.
pub const DIR_MARKER: &str = ".shiftgate-playground";
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What `shiftgate local up` records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaygroundState {
    /// The `shiftgate local up` process.
    pub pid: u32,
    /// Its dir: logs, configs, the routes file, the written policy; removed at the end.
    pub dir: PathBuf,
    /// Every process it started (name, pid).
    #[serde(default)]
    pub processes: Vec<RecordedProcess>,
    /// Where everything answers; absent while the playground is starting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedProcess {
    pub name: String,
    pub pid: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// Where users' requests go (Envoy's listener).
    pub envoy_listener: SocketAddr,
    pub envoy_admin: SocketAddr,
    pub prometheus: SocketAddr,
    pub stable_app: SocketAddr,
    pub canary_app: SocketAddr,
    /// The policy written for this playground.
    pub policy: PathBuf,
    /// The RDS file Envoy watches (the policy's `routesFile`).
    pub routes_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum PlaygroundError {
    #[error("a playground is already running (pid {pid}, dir {dir}, state file {state_file}); stop it first with `shiftgate local down`")]
    AlreadyRunning {
        pid: u32,
        dir: String,
        state_file: String,
    },
    #[error("no playground is running (no state file {state_file}); start one with `shiftgate local up`")]
    NotRunning { state_file: String },
    #[error("the playground recorded in {state_file} (pid {pid}) is no longer running; `shiftgate local down` cleans up after it, then `shiftgate local up` starts a new one")]
    Gone { pid: u32, state_file: String },
    #[error("the playground (pid {pid}) is still starting; try again in a few seconds")]
    Starting { pid: u32 },
    #[error("the playground state file {path} is unreadable ({message}); if no `shiftgate local up` runs, remove it")]
    Corrupt { path: String, message: String },
    #[error("cannot {what}: {message}")]
    Step { what: String, message: String },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> PlaygroundError {
    let (what, path) = (what.to_owned(), path.display().to_string());
    move |source| PlaygroundError::Io { what, path, source }
}

/// Where the state file lives unless `--state-file`/`SHIFTGATE_LOCAL_STATE` says.
pub fn default_state_file() -> PathBuf {
    std::env::temp_dir().join("shiftgate-local.json")
}

/// The recorded state, or `None` when no state file exists.
pub fn read(path: &Path) -> Result<Option<PlaygroundState>, PlaygroundError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read the playground state file", path)(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| PlaygroundError::Corrupt {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}

fn write_temp(path: &Path, state: &PlaygroundState) -> Result<PathBuf, PlaygroundError> {
    let temp = path.with_extension(format!("tmp-{}", std::process::id()));
    let text = serde_json::to_vec_pretty(state).map_err(std::io::Error::other);
    text.and_then(|bytes| std::fs::write(&temp, bytes))
        .map_err(io("write the playground state file", &temp))?;
    Ok(temp)
}

/// Replaces the state file atomically (readers see the old or the new state).
pub fn save(path: &Path, state: &PlaygroundState) -> Result<(), PlaygroundError> {
    let temp = write_temp(path, state)?;
    std::fs::rename(&temp, path).map_err(io("replace the playground state file", path))
}

/// Creates the state file for `state`, complete or not at all; refuses when a live
/// playground holds it, and cleans up after one that died (returned for a notice).
pub fn claim(
    path: &Path,
    state: &PlaygroundState,
) -> Result<Option<PlaygroundState>, PlaygroundError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("create the dir of", path))?;
    }
    let mut cleaned = None;
    // Twice at most: once more after removing a stale state.
    for _ in 0..2 {
        let temp = write_temp(path, state)?;
        // A hard link fails when the file exists: two `local up` cannot both win.
        let linked = std::fs::hard_link(&temp, path);
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => return Ok(cleaned),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("create the playground state file", path)(e)),
        }
        let Some(existing) = read(path)? else {
            continue;
        };
        if is_playground(existing.pid) {
            return Err(PlaygroundError::AlreadyRunning {
                pid: existing.pid,
                dir: existing.dir.display().to_string(),
                state_file: path.display().to_string(),
            });
        }
        clean_up_after(&existing, Duration::from_secs(5))?;
        remove_if_owned(path, existing.pid)?;
        cleaned = Some(existing);
    }
    Err(PlaygroundError::Io {
        what: "claim the playground state file (another `local up` keeps creating it)".into(),
        path: path.display().to_string(),
        source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
    })
}

/// Removes the state file if it still belongs to the playground `pid`.
pub fn remove_if_owned(path: &Path, pid: u32) -> Result<(), PlaygroundError> {
    match read(path) {
        Ok(Some(state)) if state.pid != pid => Ok(()),
        Ok(None) => Ok(()),
        _ => match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io("remove the playground state file", path)(e))
            }
            _ => Ok(()),
        },
    }
}

/// Whether `pid` runs (a zombie, dead but not yet reaped, does not).
pub fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S …`: the state follows the last ')' (comm may hold anything).
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|b| *b == 0)
                .filter(|arg| !arg.is_empty())
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `pid` is a live `shiftgate local up` (not another process that got its id).
pub fn is_playground(pid: u32) -> bool {
    is_alive(pid)
        && cmdline(pid)
            .windows(2)
            .any(|pair| pair[0] == "local" && pair[1] == "up")
}

/// Whether `pid` is one of the processes a playground in `dir` starts: Envoy,
/// Prometheus or a demo app, with `dir` in its arguments.
fn is_stack_process(pid: u32, dir: &Path) -> bool {
    let args = cmdline(pid);
    // A file inside the dir: `/tmp/shiftgate-local2/…` is not in `/tmp/shiftgate-local`.
    let inside = format!("{}/", dir.display());
    let program = args
        .first()
        .and_then(|p| Path::new(p).file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ours =
        program == "envoy" || program == "prometheus" || args.iter().any(|arg| arg == "demo-app");
    ours && args.iter().any(|arg| arg.contains(&inside))
}

/// The live processes of a playground in `dir`: the recorded ones, and any started
/// before the playground could record them.
fn stack_processes(state: &PlaygroundState) -> Vec<u32> {
    let me = std::process::id();
    let mut pids: Vec<u32> = state.processes.iter().map(|p| p.pid).collect();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        pids.extend(
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()),
        );
    }
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter()
        .filter(|pid| *pid != me && is_alive(*pid) && is_stack_process(*pid, &state.dir))
        .collect()
}

/// Sends `signal` (`TERM`, `KILL`) to `pid` through the shell's `kill` builtin.
pub fn signal(pid: u32, signal: &str) -> Result<(), PlaygroundError> {
    let status = std::process::Command::new("sh")
        .args([
            "-c",
            "kill -s \"$1\" \"$2\"",
            "sh",
            signal,
            &pid.to_string(),
        ])
        .stdin(std::process::Stdio::null())
        .status()
        .map_err(io("run `kill` for", Path::new(&format!("pid {pid}"))))?;
    // It fails when the process is gone already, which is what was wanted.
    if !status.success() && is_alive(pid) {
        return Err(PlaygroundError::Io {
            what: format!("send SIG{signal} to"),
            path: format!("pid {pid}"),
            source: std::io::Error::other(format!("kill exited with {status}")),
        });
    }
    Ok(())
}

/// Polls until none of `pids` is alive; whether that happened within about `timeout`
/// (counted in polls: only the runtime's clock reads the time).
fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let polls = timeout.as_millis() / POLL_INTERVAL.as_millis().max(1);
    for _ in 0..=polls {
        if pids.iter().all(|pid| !is_alive(*pid)) {
            return true;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    false
}

/// Stops a running playground: SIGTERM to `local up`, which stops its processes and
/// removes its dir and state file; whatever is left after `timeout` (or after a
/// playground that died) is killed and removed here. Returns what had to be forced.
pub fn stop(state_file: &Path, timeout: Duration) -> Result<Vec<String>, PlaygroundError> {
    let Some(state) = read(state_file)? else {
        return Err(PlaygroundError::NotRunning {
            state_file: state_file.display().to_string(),
        });
    };
    let mut forced = Vec::new();
    if is_playground(state.pid) {
        signal(state.pid, "TERM")?;
        if !wait_gone(&[state.pid], timeout) {
            forced.push(format!("`local up` (pid {}) ignored SIGTERM", state.pid));
            signal(state.pid, "KILL")?;
            wait_gone(&[state.pid], Duration::from_secs(5));
        }
    }
    forced.extend(clean_up_after(&state, Duration::from_secs(5))?);
    remove_if_owned(state_file, state.pid)?;
    Ok(forced)
}

/// Kills what a playground that is no longer running left behind and removes its dir
/// (only if it carries the playground's marker). Returns what it had to do.
fn clean_up_after(
    state: &PlaygroundState,
    timeout: Duration,
) -> Result<Vec<String>, PlaygroundError> {
    let mut done = Vec::new();
    let leftovers = stack_processes(state);
    for pid in &leftovers {
        signal(*pid, "KILL")?;
        done.push(format!("killed a leftover process (pid {pid})"));
    }
    if !wait_gone(&leftovers, timeout) {
        done.push(format!("processes {leftovers:?} did not exit"));
    }
    if state.dir.join(DIR_MARKER).is_file() {
        std::fs::remove_dir_all(&state.dir).map_err(io("remove the playground dir", &state.dir))?;
        done.push(format!("removed {}", state.dir.display()));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn state(pid: u32, dir: &Path) -> PlaygroundState {
        PlaygroundState {
            pid,
            dir: dir.to_owned(),
            processes: Vec::new(),
            endpoints: None,
        }
    }

    #[test]
    fn this_process_is_alive_and_not_a_playground() {
        assert!(is_alive(std::process::id()));
        assert!(!is_playground(std::process::id()));
        assert!(!is_alive(u32::MAX));
    }

    #[test]
    fn a_stale_state_is_cleaned_up_and_replaced() {
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("state.json");
        let stale_dir = temp.path().join("stale");
        std::fs::create_dir(&stale_dir).unwrap();
        std::fs::write(stale_dir.join(DIR_MARKER), "").unwrap();
        // No process has this id (above the kernel's pid_max).
        save(&file, &state(u32::MAX, &stale_dir)).unwrap();
        let mine = state(std::process::id(), &temp.path().join("new"));
        let cleaned = claim(&file, &mine).unwrap();
        assert_eq!(cleaned.map(|s| s.pid), Some(u32::MAX));
        assert!(!stale_dir.exists());
        assert_eq!(read(&file).unwrap(), Some(mine));
    }

    #[test]
    fn a_dir_without_the_marker_is_never_removed() {
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("state.json");
        let users_dir = temp.path().join("mine");
        std::fs::create_dir(&users_dir).unwrap();
        save(&file, &state(u32::MAX, &users_dir)).unwrap();
        stop(&file, Duration::from_secs(1)).unwrap();
        assert!(users_dir.exists());
        assert!(!file.exists());
    }

    #[test]
    fn only_stack_processes_inside_the_dir_are_the_playground_s() {
        let temp = tempfile::tempdir().unwrap();
        // A stand-in "envoy" whose arguments name a file in a sibling dir with a longer name.
        let envoy = temp.path().join("envoy");
        std::os::unix::fs::symlink("/bin/sh", &envoy).unwrap();
        let sibling = temp.path().join("playground2");
        let mut child = std::process::Command::new(&envoy)
            .args(["-c", "sleep 30; :"])
            .arg(sibling.join("envoy.json"))
            .spawn()
            .unwrap();
        let pid = child.id();
        let near_miss = state(u32::MAX, &temp.path().join("playground"));
        let owner = state(u32::MAX, &sibling);
        // Poll until the child has exec'ed (its cmdline is the stand-in's).
        for _ in 0..200 {
            if is_stack_process(pid, &sibling) {
                break;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        assert!(stack_processes(&owner).contains(&pid));
        assert!(!stack_processes(&near_miss).contains(&pid));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn stopping_without_a_state_file_says_nothing_runs() {
        let temp = tempfile::tempdir().unwrap();
        let err = stop(&temp.path().join("none.json"), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, PlaygroundError::NotRunning { .. }), "{err}");
        assert!(err.to_string().contains("shiftgate local up"), "{err}");
    }
}
