//! A real Kubernetes API server for integration tests: kube-apiserver 1.20 (built from
//! Debian's source package by `scripts/kube-apiserver`, cached under
//! `target/kube-apiserver/`) with its own etcd (Debian's `etcd-server`), both on
//! 127.0.0.1 with free ports and a temporary directory.
//!
//! - TLS: a throw-away CA and a serving certificate for 127.0.0.1, made with `openssl`.
//! - Authentication: a static token file with one admin (`system:masters`), and
//!   ServiceAccount tokens from the TokenRequest API (signed with a throw-away key), so
//!   a client can act as a real ServiceAccount under RBAC.
//! - Authorization: `--authorization-mode=RBAC`, so a missing grant is a 403.
//!
//! Both processes run under a small bash supervisor that holds the other end of a pipe
//! from this process: when the server is dropped (also on panic), or when the test
//! process dies without dropping it (a static shared server), the pipe closes and the
//! supervisor kills kube-apiserver and etcd and removes the directory.
//!
//! A missing binary is a failure with the hint, never a skip: CI must run these tests.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::time::Instant;

use super::ports::free_port;

/// kube-apiserver needs etcd, bootstraps its RBAC roles and namespaces, then says ready;
/// on a loaded 2-core machine that can take a minute.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(200);
const ADMIN_TOKEN: &str = "shiftgate-test-admin-token";
const HINT: &str = "run `scripts/install-deps` (it calls `scripts/kube-apiserver`, which builds \
                    kube-apiserver 1.20 from Debian's source package into \
                    target/kube-apiserver/ and installs etcd; about 7 minutes the first time)";

/// Stops both processes, then removes the directory (see the module doc).
const SUPERVISOR: &str = r#"
set -u
dir="$1"; apiserver="$2"; shift 2
etcd_port="$1"; peer_port="$2"; shift 2
etcd --name shiftgate-test --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "shiftgate-test=http://127.0.0.1:$peer_port" \
  >"$dir/etcd.log" 2>&1 </dev/null &
etcd_pid=$!
"$apiserver" "$@" >"$dir/kube-apiserver.log" 2>&1 </dev/null &
api_pid=$!
# The test process holds the write end of stdin: EOF means stop.
while read -r _; do :; done
kill -9 "$api_pid" "$etcd_pid" 2>/dev/null
wait "$api_pid" "$etcd_pid" 2>/dev/null
rm -rf "$dir"
"#;

/// A running kube-apiserver + etcd. Dropping it stops both and removes its files.
pub struct KubeApiServer {
    dir: PathBuf,
    port: u16,
    supervisor: Option<Child>,
    stdin: Option<ChildStdin>,
    ca_pem: String,
    kubeconfig: PathBuf,
    /// Whether `install()` ran: tests sharing the server install once.
    installed: Mutex<bool>,
}

/// The binary built by `scripts/kube-apiserver`: `$SHIFTGATE_KUBE_APISERVER`, else
/// `$CARGO_TARGET_DIR/kube-apiserver/kube-apiserver`, else `target/kube-apiserver/…`.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SHIFTGATE_KUBE_APISERVER") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("kube-apiserver").join("kube-apiserver")
}

fn require_tools() -> PathBuf {
    let binary = binary();
    let in_ci = std::env::var_os("CI").is_some();
    assert!(
        binary.is_file(),
        "kube-apiserver not found at {}{}: {HINT}",
        binary.display(),
        if in_ci {
            " (CI must run the real-apiserver tests)"
        } else {
            ""
        }
    );
    for (tool, version) in [("etcd", "--version"), ("openssl", "version")] {
        let found = Command::new(tool)
            .arg(version)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "`{tool}` is not installed: {HINT}");
    }
    binary
}

fn run(what: &str, command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A throw-away CA, a serving certificate for 127.0.0.1 signed by it, and the
/// ServiceAccount signing key; P-256 keys, which are quick to make.
fn make_certificates(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    run(
        "openssl (CA)",
        Command::new("openssl")
            .current_dir(dir)
            .args(["req", "-x509", "-nodes", "-days", "2"])
            .args(ec)
            .args(["-keyout", "ca.key", "-out", "ca.crt"])
            .args(["-subj", "/CN=shiftgate-test-ca"]),
    );
    run(
        "openssl (serving key)",
        Command::new("openssl")
            .current_dir(dir)
            .args(["req", "-nodes"])
            .args(ec)
            .args(["-keyout", "server.key", "-out", "server.csr"])
            .args(["-subj", "/CN=kube-apiserver"]),
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap_or_else(|e| panic!("cannot write server.ext: {e}"));
    run(
        "openssl (serving certificate)",
        Command::new("openssl")
            .current_dir(dir)
            .args(["x509", "-req", "-in", "server.csr", "-days", "2"])
            .args(["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"])
            .args(["-extfile", "server.ext", "-out", "server.crt"]),
    );
    run(
        "openssl (service account key)",
        Command::new("openssl")
            .current_dir(dir)
            .args(["ecparam", "-name", "prime256v1", "-genkey", "-noout"])
            .args(["-out", "sa.key"]),
    );
}

fn apiserver_args(dir: &Path, port: u16, etcd_port: u16) -> Vec<String> {
    let d = |file: &str| dir.join(file).display().to_string();
    vec![
        format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        // 1.20 still serves an unauthenticated port on localhost:8080 unless told not to.
        "--insecure-port=0".into(),
        format!("--cert-dir={}", d("certs")),
        format!("--tls-cert-file={}", d("server.crt")),
        format!("--tls-private-key-file={}", d("server.key")),
        format!("--token-auth-file={}", d("tokens.csv")),
        "--authorization-mode=RBAC".into(),
        format!("--service-account-key-file={}", d("sa.key")),
        format!("--service-account-signing-key-file={}", d("sa.key")),
        "--service-account-issuer=https://kubernetes.default.svc".into(),
        "--service-cluster-ip-range=10.96.0.0/24".into(),
        // No kubernetes Service endpoints: 127.0.0.1 is not a valid endpoint address.
        "--endpoint-reconciler-type=none".into(),
        "--profiling=false".into(),
        "--logtostderr=true".into(),
        "--v=0".into(),
    ]
}

impl KubeApiServer {
    /// Starts etcd and kube-apiserver and waits until `/readyz` answers ok. Panics with
    /// the install hint when a binary is missing, with both logs when it does not start.
    pub fn start() -> KubeApiServer {
        let binary = require_tools();
        let mut last_log = String::new();
        for _ in 0..3 {
            match Self::try_start(&binary) {
                Ok(server) => return server,
                // A port picked as free was taken since: start again on new ports.
                Err(log) if log.contains("address already in use") => last_log = log,
                Err(log) => panic!("kube-apiserver did not become ready:\n{log}"),
            }
        }
        panic!("kube-apiserver could not bind free ports three times:\n{last_log}")
    }

    /// One server for the whole test binary (tests use their own namespaces). It is
    /// never dropped; its supervisor stops it when the test process ends.
    pub fn shared() -> &'static KubeApiServer {
        static SHARED: OnceLock<KubeApiServer> = OnceLock::new();
        SHARED.get_or_init(KubeApiServer::start)
    }

    fn try_start(binary: &Path) -> Result<KubeApiServer, String> {
        // etcd fsyncs every write: a tmpfs keeps that cheap.
        let base = Path::new("/dev/shm");
        let mut builder = tempfile::Builder::new();
        builder.prefix("shiftgate-kube-apiserver-");
        let dir = if base.is_dir() {
            builder.tempdir_in(base)
        } else {
            builder.tempdir()
        }
        .unwrap_or_else(|e| panic!("cannot create a temp dir for kube-apiserver: {e}"))
        // The supervisor removes it (also when this process dies); Drop does too.
        .keep();
        make_certificates(&dir);
        std::fs::write(
            dir.join("tokens.csv"),
            format!("{ADMIN_TOKEN},shiftgate-test-admin,shiftgate-test-admin,\"system:masters\"\n"),
        )
        .unwrap_or_else(|e| panic!("cannot write tokens.csv: {e}"));
        let ca_pem = std::fs::read_to_string(dir.join("ca.crt"))
            .unwrap_or_else(|e| panic!("cannot read the test CA: {e}"));
        let (port, etcd_port, peer_port) = (free_port(), free_port(), free_port());
        let mut supervisor = Command::new("bash")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("kube-apiserver-supervisor")
            .arg(&dir)
            .arg(binary)
            .arg(etcd_port.to_string())
            .arg(peer_port.to_string())
            .args(apiserver_args(&dir, port, etcd_port))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start bash to supervise kube-apiserver: {e}"));
        let stdin = supervisor.stdin.take();
        let mut server = KubeApiServer {
            kubeconfig: dir.join("kubeconfig"),
            dir,
            port,
            supervisor: Some(supervisor),
            stdin,
            ca_pem,
            installed: Mutex::new(false),
        };
        std::fs::write(
            &server.kubeconfig,
            server.kubeconfig_yaml(ADMIN_TOKEN, "default"),
        )
        .unwrap_or_else(|e| panic!("cannot write the kubeconfig: {e}"));
        match server.wait_ready() {
            Ok(()) => Ok(server),
            Err(why) => Err(format!("{why}\n{}", server.logs())),
        }
    }

    /// Polls `/readyz` (from a thread with its own runtime, so that it works from sync
    /// and async tests alike) until it answers `ok`.
    fn wait_ready(&mut self) -> Result<(), String> {
        let config = self.kubeconfig_yaml(ADMIN_TOKEN, "default");
        let poller = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot build a runtime: {e}"))?;
            runtime.block_on(async move {
                let client = client_from_yaml(&config).await;
                let started = Instant::now();
                let mut last = String::new();
                while started.elapsed() < READY_TIMEOUT {
                    let request = axum::http::Request::get("/readyz").body(Vec::new());
                    match request {
                        Ok(request) => match client.request_text(request).await {
                            Ok(body) if body.trim() == "ok" => return Ok(()),
                            Ok(body) => last = body,
                            Err(e) => last = e.to_string(),
                        },
                        Err(e) => return Err(format!("cannot build the /readyz request: {e}")),
                    }
                    tokio::time::sleep(POLL).await;
                }
                Err(format!("/readyz not ok after {READY_TIMEOUT:?}: {last}"))
            })
        });
        let started = Instant::now();
        while !poller.is_finished() {
            // A supervisor that is gone means nothing will ever answer.
            if let Some(child) = self.supervisor.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("the supervisor exited early: {status}"));
                }
            }
            if started.elapsed() > READY_TIMEOUT + Duration::from_secs(30) {
                return Err("the /readyz poller hangs".to_owned());
            }
            std::thread::sleep(POLL);
        }
        poller
            .join()
            .unwrap_or_else(|_| Err("the /readyz poller panicked".to_owned()))
    }

    /// The tails of both logs, for failure messages.
    pub fn logs(&self) -> String {
        let tail = |file: &str| {
            let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "--- kube-apiserver.log (tail) ---\n{}\n--- etcd.log (tail) ---\n{}",
            tail("kube-apiserver.log"),
            tail("etcd.log")
        )
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// A kubeconfig for `token`, trusting the test CA, with `namespace` as the context's.
    pub fn kubeconfig_yaml(&self, token: &str, namespace: &str) -> String {
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: real\n  cluster:\n    server: {url}\n    \
             certificate-authority-data: {ca}\nusers:\n- name: user\n  user:\n    token: {token}\n\
             contexts:\n- name: real\n  context:\n    cluster: real\n    user: user\n    \
             namespace: {namespace}\ncurrent-context: real\n",
            url = self.url()
        )
    }

    /// The admin kubeconfig's path (for `kubectl` and binaries: `KUBECONFIG=…`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Writes a kubeconfig for `token` into `dir` and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path, token: &str, namespace: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, self.kubeconfig_yaml(token, namespace))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// A client with every permission (group `system:masters`), namespace `default`.
    pub async fn admin_client(&self) -> kube::Client {
        client_from_yaml(&self.kubeconfig_yaml(ADMIN_TOKEN, "default")).await
    }

    /// A client authenticated as the ServiceAccount `namespace/name` (which must exist),
    /// with a token from the TokenRequest API: exactly what the ServiceAccount's RBAC
    /// grants, nothing more.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> kube::Client {
        let token = self.service_account_token(namespace, name).await;
        client_from_yaml(&self.kubeconfig_yaml(&token, namespace)).await
    }

    pub async fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.admin_client().await, namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec!["https://kubernetes.default.svc".to_owned()]),
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name} failed: {e}"))
            .status
            .and_then(|status| status.token)
            .unwrap_or_else(|| panic!("TokenRequest for {namespace}/{name} returned no token"))
    }

    /// Creates namespace `name` (as admin) and returns it. Tests sharing a server each
    /// use their own.
    pub async fn create_namespace(&self, name: &str) -> String {
        let namespaces: Api<Namespace> = Api::all(self.admin_client().await);
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name }
        }))
        .unwrap_or_else(|e| panic!("namespace object: {e}"));
        match namespaces.create(&PostParams::default(), &namespace).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => panic!("cannot create namespace {name}: {e}"),
        }
        name.to_owned()
    }

    /// Installs what the tests run against, once per server: the Istio CRDs of
    /// `tests/fixtures/kubernetes/istio-crds.yaml`, then shiftgate as shipped
    /// (`kubectl apply -k deploy/`: CRD, namespace, ServiceAccount, RBAC, Deployment, PDB —
    /// no pod runs, there is no controller manager), and waits until the CRDs are
    /// established.
    pub fn install(&self) {
        let mut installed = self
            .installed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *installed {
            return;
        }
        self.kubectl_ok(&["apply", "-f", "tests/fixtures/kubernetes/istio-crds.yaml"]);
        self.apply_deploy();
        self.kubectl_ok(&[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd/virtualservices.networking.istio.io",
            "crd/destinationrules.networking.istio.io",
            "crd/rolloutpolicies.shiftgate.dev",
        ]);
        *installed = true;
    }

    /// `kubectl apply -k deploy/`, returning kubectl's report. kube-apiserver 1.20 serves
    /// PodDisruptionBudgets only as `policy/v1beta1` (`policy/v1` came in 1.21; clusters
    /// from 1.25 serve only v1, which deploy/ ships): on such a server the rendered
    /// install is applied with the PDB's apiVersion moved back (same fields).
    pub fn apply_deploy(&self) -> String {
        let versions = self.kubectl_ok(&["api-versions"]);
        if versions.lines().any(|v| v == "policy/v1") {
            return self.kubectl_ok(&["apply", "--server-side=false", "-k", "deploy/"]);
        }
        let rendered = self.kubectl_ok(&["kustomize", "deploy/"]);
        let from = "apiVersion: policy/v1\nkind: PodDisruptionBudget\n";
        assert!(
            rendered.contains(from),
            "deploy/ renders no policy/v1 PodDisruptionBudget"
        );
        let rendered = rendered.replace(
            from,
            "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\n",
        );
        let output = self.kubectl_with_input(
            &["apply", "--server-side=false", "-f", "-"],
            Some(&rendered),
        );
        assert!(
            output.status.success(),
            "kubectl apply (deploy/) failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `kubectl ARGS` as admin against this server.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with_input(args, None)
    }

    /// Runs `kubectl ARGS` as admin with `input` on stdin.
    pub fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Output {
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run kubectl ({e}): {HINT}"));
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin
                .write_all(text.as_bytes())
                .unwrap_or_else(|e| panic!("cannot write kubectl's stdin: {e}"));
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("kubectl did not finish: {e}"))
    }

    /// `kubectl ARGS`, which must succeed; returns its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(
            output.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

async fn client_from_yaml(yaml: &str) -> kube::Client {
    let kubeconfig = Kubeconfig::from_yaml(yaml)
        .unwrap_or_else(|e| panic!("test kubeconfig does not parse: {e}"));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("test kubeconfig is not usable: {e}"));
    kube::Client::try_from(config).unwrap_or_else(|e| panic!("cannot build a kube client: {e}"))
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        // EOF on the supervisor's stdin: it kills both processes and removes the dir.
        self.stdin.take();
        if let Some(mut child) = self.supervisor.take() {
            let started = Instant::now();
            while !matches!(child.try_wait(), Ok(Some(_))) {
                if started.elapsed() > Duration::from_secs(20) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
