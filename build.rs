//! Bakes the git commit into the binary (`shiftgate --version`, `shiftgate::build_info`).
//!
//! Order: `SHIFTGATE_GIT_COMMIT` from the environment (a container build without `.git`
//! passes it as a build argument), else `git rev-parse HEAD` in the source tree, else
//! `unknown` (a source tarball, no git installed): the build never fails over it.

use std::path::{Path, PathBuf};
use std::process::Command;

const ENV_OVERRIDE: &str = "SHIFTGATE_GIT_COMMIT";
/// As many hex digits as `git log --oneline` shows on a large repository.
const SHORT: usize = 12;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={ENV_OVERRIDE}");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = match std::env::var(ENV_OVERRIDE) {
        Ok(given) if is_commit(given.trim()) => given.trim().to_owned(),
        Ok(given) => {
            println!(
                "cargo:warning={ENV_OVERRIDE}={given:?} is not a hex commit id; using `unknown`"
            );
            "unknown".to_owned()
        }
        Err(_) => match git(&manifest_dir, &["rev-parse", "HEAD"]) {
            Some(head) if is_commit(&head) => {
                watch_git_files(&manifest_dir);
                head
            }
            _ => "unknown".to_owned(),
        },
    };
    let short: String = commit.chars().take(SHORT).collect();
    println!("cargo:rustc-env=SHIFTGATE_GIT_COMMIT={short}");
}

fn is_commit(text: &str) -> bool {
    (7..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `git ARGS` in `dir`, its trimmed stdout when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Rebuilds when HEAD moves: HEAD itself, the branch it names, and packed-refs (a worktree
/// keeps HEAD in its own git dir and the branches in the common one). Only existing files
/// are named: cargo reruns on every build for a path that does not exist.
fn watch_git_files(dir: &Path) {
    let mut paths = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        paths.push(branch);
    }
    for name in paths {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}
