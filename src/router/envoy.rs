//! The local Envoy router: moves real traffic through a real Envoy with no cluster.
//!
//! Envoy reads its routes by path-based xDS (an RDS `path_config_source` with a
//! `watched_directory`). shiftgate renders the new `RouteConfiguration`, writes it to a
//! temp file beside the watched one, fsyncs it and renames it over the watched file, so
//! Envoy never sees a half-written file. It then polls Envoy's admin
//! `/config_dump?resource=dynamic_route_configs` until Envoy serves the new generation
//! with the new weights. The truth is what Envoy serves: `read()` never looks at the file.
//!
//! A process killed between writing the temp file and renaming it leaves
//! `.shiftgate-routes-*.tmp` in Envoy's watched directory; the router's first `read()`
//! (the start of a run) removes such leftovers under the routes file's lock.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::Mutex;

use super::envoy_config::{parse_config_dump, render_routes_file, ServedRoute};
use super::{LiveRoute, ManagedRoute, RouterError, TrafficRouter, Version};
use crate::policy::{EnvoyRouter as EnvoyRouterSpec, TestRoute};

/// How long `apply` waits for Envoy to serve a new route before giving up.
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one admin request may take.
const ADMIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How often `apply` polls the admin config dump while waiting for confirmation.
const CONFIRM_POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Drives `spec.router.envoy`: one route configuration in one RDS file.
pub struct EnvoyRouter {
    spec: EnvoyRouterSpec,
    test_route: Option<TestRoute>,
    admin_url: String,
    /// `admin_url` as messages show it (userinfo hidden).
    admin_shown: String,
    routes_file: PathBuf,
    http: reqwest::Client,
    confirm_timeout: Duration,
    /// Serialises writes from this process; a lock file serialises processes.
    write_lock: Mutex<()>,
    /// Set once Envoy was seen to know both clusters (checked before the first write).
    clusters_known: AtomicBool,
    /// Set once leftover temp files of killed writes were looked for.
    leftovers_checked: AtomicBool,
}

impl EnvoyRouter {
    /// A router for `spec`; `test_route` is the policy's `spec.testRoute`.
    pub fn new(
        spec: &EnvoyRouterSpec,
        test_route: Option<&TestRoute>,
    ) -> Result<Self, RouterError> {
        let http = reqwest::Client::builder()
            .timeout(ADMIN_REQUEST_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| RouterError::Unavailable {
                message: format!("cannot build an HTTP client for envoy admin: {e}"),
                source: Some(Box::new(e)),
            })?;
        let admin = spec.admin_address.trim_end_matches('/');
        let admin_url = if admin.starts_with("http://") || admin.starts_with("https://") {
            admin.to_owned()
        } else {
            format!("http://{admin}")
        };
        Ok(EnvoyRouter {
            spec: spec.clone(),
            test_route: test_route.cloned(),
            admin_shown: crate::redact::urls(&admin_url).into_owned(),
            admin_url,
            routes_file: PathBuf::from(&spec.routes_file),
            http,
            confirm_timeout: DEFAULT_CONFIRM_TIMEOUT,
            write_lock: Mutex::new(()),
            clusters_known: AtomicBool::new(false),
            leftovers_checked: AtomicBool::new(false),
        })
    }

    /// Changes how long `apply` waits for Envoy to serve a write.
    pub fn with_confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout;
        self
    }

    /// Removes the temp files that writes killed half-way left beside the routes file;
    /// returns how many. Holds the routes file's lock, so another process's write in
    /// flight keeps its temp file.
    pub async fn remove_leftover_temp_files(&self) -> Result<usize, RouterError> {
        let _across_processes = lock_routes_file(&self.routes_file).await?;
        let dir = parent_dir(&self.routes_file).to_owned();
        let shown = dir.display().to_string();
        let removed = tokio::task::spawn_blocking(move || remove_leftovers(&dir))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        removed.map_err(|e| RouterError::Unavailable {
            message: format!(
                "cannot remove leftover temp files in {shown}: {e}; make the directory writable"
            ),
            source: Some(Box::new(e)),
        })
    }

    /// On the first call (the start of a run): removes leftover temp files. Never while
    /// this process holds the routes file's lock (the lock is not reentrant).
    async fn remove_leftovers_once(&self) {
        if self.leftovers_checked.swap(true, Ordering::Relaxed) {
            return;
        }
        match self.remove_leftover_temp_files().await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(
                removed,
                dir = %parent_dir(&self.routes_file).display(),
                "removed temp files left by a killed route write"
            ),
            Err(e) => tracing::warn!(error = %e, "leftover temp files stay"),
        }
    }

    async fn read_served(&self) -> Result<LiveRoute, RouterError> {
        let served = self.served().await?.ok_or_else(|| self.not_served())?;
        Ok(LiveRoute {
            route: served.route,
            version: Version(served.version_info),
        })
    }

    /// What Envoy serves right now, or `None` when it serves no configuration of this name.
    async fn served(&self) -> Result<Option<ServedRoute>, RouterError> {
        let url = format!(
            "{}/config_dump?resource=dynamic_route_configs",
            self.admin_url
        );
        let dump: Value = self
            .admin_get(&url)
            .await?
            .json()
            .await
            .map_err(|e| self.unavailable(format!("cannot decode {url}: {e}"), e))?;
        parse_config_dump(&self.spec, &dump).map_err(|message| {
            RouterError::Invalid(format!(
                "envoy at {} serves a route configuration shiftgate cannot manage: {message}",
                self.admin_shown
            ))
        })
    }

    /// How many route updates Envoy rejected for this configuration (from its stats).
    async fn rejected_updates(&self) -> Result<u64, RouterError> {
        let filter = format!(r"\.rds\.{}\.update_rejected$", self.spec.route_config_name);
        let url = format!("{}/stats", self.admin_url);
        let request = self.http.get(&url).query(&[("filter", filter.as_str())]);
        let response = request
            .send()
            .await
            .map_err(|e| self.unavailable(format!("cannot reach envoy admin at {url}: {e}"), e))?;
        let text = response
            .text()
            .await
            .map_err(|e| self.unavailable(format!("cannot read {url}: {e}"), e))?;
        Ok(text
            .lines()
            .filter_map(|line| line.rsplit_once(": "))
            .filter_map(|(_, value)| value.trim().parse::<u64>().ok())
            .sum())
    }

    /// Refuses to route to a cluster Envoy does not have: Envoy would accept the route
    /// and answer every such request with 503.
    async fn check_clusters(&self) -> Result<(), RouterError> {
        if self.clusters_known.load(Ordering::Relaxed) {
            return Ok(());
        }
        let url = format!("{}/clusters?format=json", self.admin_url);
        let clusters: Value = self
            .admin_get(&url)
            .await?
            .json()
            .await
            .map_err(|e| self.unavailable(format!("cannot decode {url}: {e}"), e))?;
        let known: Vec<&str> = clusters
            .get("cluster_statuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .collect();
        for (field, cluster) in [
            ("stableCluster", &self.spec.stable_cluster),
            ("canaryCluster", &self.spec.canary_cluster),
        ] {
            if !known.contains(&cluster.as_str()) {
                return Err(RouterError::Invalid(format!(
                    "spec.router.envoy.{field} {cluster:?} is not a cluster of envoy at {} \
                     (it has: {}); fix the policy or envoy's bootstrap",
                    self.admin_shown,
                    known.join(", ")
                )));
            }
        }
        self.clusters_known.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn admin_get(&self, url: &str) -> Result<reqwest::Response, RouterError> {
        let response = self.http.get(url).send().await.map_err(|e| {
            self.unavailable(
                format!(
                    "cannot reach envoy admin at {url}: {e}; is envoy running with admin on {}?",
                    self.spec.admin_address
                ),
                e,
            )
        })?;
        if !response.status().is_success() {
            return Err(RouterError::Unavailable {
                message: format!(
                    "envoy admin {} answered {}",
                    crate::redact::urls(url),
                    response.status()
                ),
                source: None,
            });
        }
        Ok(response)
    }

    fn unavailable(&self, message: String, source: reqwest::Error) -> RouterError {
        RouterError::Unavailable {
            message: crate::redact::urls(&message).into_owned(),
            source: Some(Box::new(source)),
        }
    }

    fn not_served(&self) -> RouterError {
        RouterError::Invalid(format!(
            "envoy at {} serves no route configuration named {:?}: its bootstrap must use \
             rds.route_config_name {:?} with a path_config_source on {}",
            self.admin_shown,
            self.spec.route_config_name,
            self.spec.route_config_name,
            self.routes_file.display()
        ))
    }

    /// Polls Envoy until it serves `generation` with `desired`, or it rejects the file,
    /// or the confirm timeout passes.
    async fn confirm(
        &self,
        generation: u64,
        desired: ManagedRoute,
        rejected_before: u64,
    ) -> Result<(), RouterError> {
        let wanted = generation.to_string();
        let poll = async {
            loop {
                if let Some(served) = self.served().await? {
                    if served.version_info == wanted && served.route == desired {
                        return Ok(());
                    }
                }
                if self.rejected_updates().await? > rejected_before {
                    return Err(RouterError::Invalid(format!(
                        "envoy at {} rejected route generation {generation} written to {}; its \
                         log says why; the route served before is still in place",
                        self.admin_shown,
                        self.routes_file.display(),
                    )));
                }
                tokio::time::sleep(CONFIRM_POLL_INTERVAL).await;
            }
        };
        match tokio::time::timeout(self.confirm_timeout, poll).await {
            Ok(result) => result,
            Err(_) => Err(RouterError::Unavailable {
                message: format!(
                    "envoy at {} did not serve route generation {generation} (canary weight {}) \
                     within {:?} of writing {}; the live weights are unknown until the next read",
                    self.admin_shown,
                    desired.canary_weight,
                    self.confirm_timeout,
                    self.routes_file.display()
                ),
                source: None,
            }),
        }
    }
}

#[async_trait]
impl TrafficRouter for EnvoyRouter {
    async fn read(&self) -> Result<LiveRoute, RouterError> {
        self.remove_leftovers_once().await;
        self.read_served().await
    }

    async fn apply(&self, expect: &Version, desired: ManagedRoute) -> Result<Version, RouterError> {
        self.remove_leftovers_once().await;
        let _in_process = self.write_lock.lock().await;
        let _across_processes = lock_routes_file(&self.routes_file).await?;
        let live = self.read_served().await?;
        if &live.version != expect {
            return Err(RouterError::Conflict {
                what: format!(
                    "envoy at {} serves generation {:?}, expected {:?}",
                    self.admin_shown, live.version.0, expect.0
                ),
            });
        }
        if live.route == desired {
            return Ok(live.version);
        }
        self.check_clusters().await?;
        let generation = next_generation(&live.version, &self.routes_file).await;
        let content = render_routes_file(&self.spec, self.test_route.as_ref(), desired, generation)
            .map_err(RouterError::Invalid)?;
        let rejected_before = self.rejected_updates().await?;
        write_routes_file(&self.routes_file, &content)
            .await
            .map_err(|e| RouterError::Unavailable {
                message: format!(
                    "cannot write the envoy routes file {}: {e}; make its directory writable",
                    self.routes_file.display()
                ),
                source: Some(Box::new(e)),
            })?;
        self.confirm(generation, desired, rejected_before).await?;
        tracing::info!(
            generation,
            weight = desired.canary_weight,
            test_route = desired.test_route,
            "envoy route applied"
        );
        Ok(Version(generation.to_string()))
    }
}

/// The routes file content Envoy should start from: every request on stable, no test
/// route, generation 1. Written by whoever starts Envoy, before it starts.
pub async fn write_initial_routes_file(spec: &EnvoyRouterSpec) -> std::io::Result<()> {
    let initial = ManagedRoute {
        canary_weight: 0,
        test_route: false,
    };
    let content = render_routes_file(spec, None, initial, 1).map_err(std::io::Error::other)?;
    write_routes_file(Path::new(&spec.routes_file), &content).await
}

/// The generation after both the served one and the one in the file (which may be
/// ahead when Envoy rejected it), so `version_info` only ever grows.
async fn next_generation(live: &Version, routes_file: &Path) -> u64 {
    let served = live.0.parse::<u64>().unwrap_or(0);
    let in_file = tokio::fs::read(routes_file)
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|v| {
            v.get("version_info")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    served.max(in_file) + 1
}

/// Writes `content` beside `path`, fsyncs it, renames it over `path` and fsyncs the
/// directory: Envoy (watching the directory) sees either the old or the new file.
pub async fn write_routes_file(path: &Path, content: &Value) -> std::io::Result<()> {
    let path = path.to_owned();
    let bytes = serde_json::to_vec_pretty(content).map_err(std::io::Error::other)?;
    tokio::task::spawn_blocking(move || atomic_replace(&path, &bytes))
        .await
        .map_err(std::io::Error::other)?
}

const TEMP_PREFIX: &str = ".shiftgate-routes-";
const TEMP_SUFFIX: &str = ".tmp";

fn atomic_replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent_dir(path);
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Removes `.shiftgate-routes-*.tmp` in `dir`; the caller holds the routes file's lock.
fn remove_leftovers(dir: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let leftover = name
            .to_str()
            .is_some_and(|n| n.starts_with(TEMP_PREFIX) && n.ends_with(TEMP_SUFFIX));
        if !leftover {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Takes an exclusive lock on `<routes file>.lock`, released when the file is dropped,
/// so two shiftgate processes never interleave read-check-write on one routes file.
async fn lock_routes_file(routes_file: &Path) -> Result<std::fs::File, RouterError> {
    let mut lock_path = routes_file.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let shown = lock_path.display().to_string();
    let locked = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    locked.map_err(|e| RouterError::Unavailable {
        message: format!("cannot lock {shown}: {e}; make the routes file's directory writable"),
        source: Some(Box::new(e)),
    })
}
