//! The container image: `scripts/image` builds an OCI image layout from the test build's
//! binary (the release build is for users; the CI reuses the debug one to stay fast),
//! and this checks it as a registry and a runtime would: every blob matches its digest
//! and size, the config runs the daemon as a non-root user with the version and commit
//! as labels, and the binary inside runs `--version` in a real container (umoci unpacks
//! the layout into a bundle, runc runs it; both Debian packages, installed by
//! scripts/install-deps). A missing tool is a failure with the hint, never a skip.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use shiftgate::build_info::{COMMIT, VERSION, VERSION_WITH_COMMIT};

const HINT: &str = "run scripts/install-deps (it installs the Debian packages umoci and runc)";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(command: &mut Command) -> Output {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown} ({e}): {HINT}"));
    assert!(
        output.status.success(),
        "{shown} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn sha256_of_file(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn json_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The blob a descriptor names, after checking its digest and size.
fn checked_blob(layout: &Path, descriptor: &Value) -> PathBuf {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let path = layout.join("blobs/sha256").join(hex);
    assert_eq!(sha256_of_file(&path), hex, "blob {digest}: digest");
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(
        descriptor["size"].as_u64(),
        Some(size),
        "blob {digest}: size"
    );
    path
}

fn build_image(output: &Path) {
    run(Command::new(repo().join("scripts/image"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_shiftgate"))
        .arg("--output")
        .arg(output)
        .current_dir(repo()));
}

#[test]
fn scripts_image_builds_a_valid_non_root_image_whose_binary_runs() {
    let dir = tempfile::tempdir().unwrap();
    build_image(dir.path());
    let layout = dir.path().join("oci");

    // The layout: index -> manifest -> config + one layer, every digest and size right.
    assert_eq!(
        json_file(&layout.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let index = json_file(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"], VERSION,
        "the tag is the version"
    );
    let manifest = json_file(&checked_blob(&layout, &manifests[0]));
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let config = json_file(&checked_blob(&layout, &manifest["config"]));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer = checked_blob(&layout, &layers[0]);
    let uncompressed = dir.path().join("layer.tar");
    let tar = run(Command::new("gzip").arg("-dc").arg(&layer)).stdout;
    std::fs::write(&uncompressed, tar).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0].as_str().unwrap(),
        format!("sha256:{}", sha256_of_file(&uncompressed)),
        "diff_id is the uncompressed layer's digest"
    );

    // The config: non-root, the daemon by default, version and commit as labels.
    let c = &config["config"];
    let user = c["User"].as_str().unwrap();
    let uid: u32 = user.split(':').next().unwrap().parse().unwrap();
    assert_ne!(uid, 0, "the image runs as root: {user}");
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/usr/local/bin/shiftgate"])
    );
    assert_eq!(c["Cmd"], serde_json::json!(["daemon"]));
    assert_eq!(c["Labels"]["org.opencontainers.image.version"], VERSION);
    assert_eq!(c["Labels"]["org.opencontainers.image.revision"], COMMIT);
    assert_eq!(config["os"], "linux");

    // The layer: the binary, a passwd entry for the uid, CA certificates, no shell.
    let listing =
        String::from_utf8(run(Command::new("tar").arg("-tvf").arg(&uncompressed)).stdout).unwrap();
    for path in [
        "usr/local/bin/shiftgate",
        "etc/passwd",
        "etc/ssl/certs/ca-certificates.crt",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} missing from the layer:\n{listing}"
        );
    }
    assert!(
        !listing.lines().any(|l| l.ends_with("bin/sh")),
        "a shell in the image"
    );
    let passwd = String::from_utf8(
        run(Command::new("tar")
            .arg("-xOf")
            .arg(&uncompressed)
            .arg("etc/passwd"))
        .stdout,
    )
    .unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.split(':').nth(2) == Some(&uid.to_string())),
        "no passwd entry for uid {uid}: {passwd}"
    );

    // The binary runs in a real container: umoci unpacks the image (checking it again),
    // runc runs it as the image's user with only the layer's files (and deletes the
    // container when it exits).
    let bundle = dir.path().join("bundle");
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{VERSION}", layout.display()))
        .arg(&bundle));
    let spec_path = bundle.join("config.json");
    let mut spec = json_file(&spec_path);
    assert_eq!(spec["process"]["user"]["uid"], uid);
    spec["process"]["args"] = serde_json::json!(["/usr/local/bin/shiftgate", "--version"]);
    spec["process"]["terminal"] = Value::Bool(false);
    std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let id = format!("shiftgate-image-test-{}", std::process::id());
    let out = run(Command::new("runc")
        .args(["run", &id])
        .current_dir(&bundle)
        .stdin(std::process::Stdio::null()));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("shiftgate {VERSION_WITH_COMMIT}")
    );
}

/// The Dockerfile makes the same image: multi-stage, distroless runtime, same user,
/// entrypoint and labels, the commit passed in (there is no .git in its context).
#[test]
fn dockerfile_builds_the_same_non_root_distroless_image() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(froms[1].contains("distroless"), "{froms:?}");
    for line in [
        "USER 65532:65532",
        "ENTRYPOINT [\"/usr/local/bin/shiftgate\"]",
        "CMD [\"daemon\"]",
        "ARG SHIFTGATE_GIT_COMMIT",
        "cargo build --release --locked --bin shiftgate",
    ] {
        assert!(dockerfile.contains(line), "Dockerfile lacks {line}");
    }
    assert!(
        dockerfile.contains(&format!("org.opencontainers.image.version=\"{VERSION}\"")),
        "the Dockerfile's version label is not {VERSION} (Cargo.toml)"
    );
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target/"));
}
