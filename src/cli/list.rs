//! `shiftgate list`: every rollout and where it stands, one row each (name, namespace,
//! phase, step, weight, last verdict, age), like `kubectl argo rollouts list
//! rollouts`. The local rollouts under --state-dir, or with `--cluster` (always in the
//! kubectl plugin) the RolloutPolicies of the namespace (`-A`: of every namespace).

use std::path::{Path, PathBuf};

use kube::api::DynamicObject;
use serde::Serialize;

use crate::cli::exit;
use crate::cli::globals::GlobalArgs;
use crate::cli::kube_target::{list_policies, spec_and_status, ClusterTarget, CLUSTER_ENV};
use crate::cli::output::{out, say};
use crate::cli::status_view::{encode, ReadOutput};
use crate::metrics::PolicyRef;
use crate::policy::{RolloutStatus, Timestamp};
use crate::runtime::Clock as _;
use crate::store::file::FileStore;
use crate::store::StateStore as _;

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Every namespace (default: `-n`, else the kubeconfig context's namespace; locally:
    /// every namespace unless `-n` names one).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// List the RolloutPolicies in the cluster (kubeconfig) instead of the local rollouts.
    #[arg(long)]
    pub cluster: bool,
    /// Where local rollout state lives.
    #[arg(long, env = "SHIFTGATE_STATE_DIR", default_value = crate::runtime::local::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// `text` (a table on stdout), or one `json` or `yaml` document on stdout.
    #[arg(short = 'o', long, value_enum, default_value_t = ReadOutput::Text)]
    pub output: ReadOutput,
}

/// One row of the list.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub name: String,
    pub namespace: String,
    pub revision: Option<String>,
    /// `None`: no status recorded yet.
    pub phase: Option<String>,
    /// `2/3` (1-based), when known.
    pub step: Option<String>,
    pub canary_weight: Option<u8>,
    pub last_verdict: Option<String>,
    /// Seconds since the rollout started (local) or the object was created (cluster).
    pub age_seconds: Option<i64>,
}

pub fn run(args: ListArgs, globals: &GlobalArgs) -> i32 {
    let runtime = match crate::cli::current_thread_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let now = crate::runtime::SystemClock.now();
    let plugin = std::env::var_os(CLUSTER_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    let rows = if args.cluster || plugin {
        let target = ClusterTarget {
            name: String::new(),
            namespace: globals.namespace.clone(),
            context: globals.context.clone(),
        };
        match runtime.block_on(list_policies(&target, args.all_namespaces)) {
            Ok(objects) => objects.iter().map(|o| cluster_row(o, now)).collect(),
            Err(e) => {
                say!("error: {e:#}");
                return exit::COULD_NOT_RUN;
            }
        }
    } else {
        let namespace = (!args.all_namespaces)
            .then_some(globals.namespace.as_deref())
            .flatten();
        match runtime.block_on(local_rows(&args.state_dir, namespace, now)) {
            Ok(rows) => rows,
            Err(e) => {
                say!(
                    "error: cannot read the state directory {}: {e}; pass the --state-dir your \
                     runs used",
                    args.state_dir.display()
                );
                return exit::COULD_NOT_RUN;
            }
        }
    };
    print(&rows, args.output)
}

fn print(rows: &[Row], output: ReadOutput) -> i32 {
    if output != ReadOutput::Text {
        let document = serde_json::json!({ "items": rows });
        return match encode(&document, output) {
            Ok(text) => {
                out!("{}", text.trim_end());
                exit::OK
            }
            Err(e) => {
                say!("error: cannot encode the list: {e:#}");
                exit::COULD_NOT_RUN
            }
        };
    }
    if rows.is_empty() {
        say!("no rollouts found");
        return exit::OK;
    }
    for line in table(rows) {
        out!("{line}");
    }
    exit::OK
}

/// The rows as aligned columns, a header first.
pub fn table(rows: &[Row]) -> Vec<String> {
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let cells: Vec<[String; 7]> = std::iter::once(
        [
            "NAME",
            "NAMESPACE",
            "PHASE",
            "STEP",
            "WEIGHT",
            "VERDICT",
            "AGE",
        ]
        .map(str::to_owned),
    )
    .chain(rows.iter().map(|row| {
        [
            row.name.clone(),
            row.namespace.clone(),
            dash(row.phase.clone()),
            dash(row.step.clone()),
            dash(row.canary_weight.map(|w| format!("{w}%"))),
            dash(row.last_verdict.clone()),
            dash(row.age_seconds.map(age)),
        ]
    }))
    .collect();
    let widths: Vec<usize> = (0..7)
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    cells
        .iter()
        .map(|c| {
            c.iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect()
}

/// `45s`, `12m`, `3h`, `5d`, as kubectl shows an age.
pub fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn row(
    policy: &PolicyRef,
    status: Option<&RolloutStatus>,
    since: Option<Timestamp>,
    now: Timestamp,
) -> Row {
    Row {
        name: policy.name.clone(),
        namespace: policy.namespace.clone(),
        revision: status.and_then(|s| s.revision.clone()),
        phase: status.map(|s| s.phase.as_str().to_owned()),
        step: status.map(|s| {
            s.current_step
                .clone()
                .unwrap_or_else(|| s.step.saturating_add(1).to_string())
        }),
        canary_weight: status.map(|s| s.canary_weight),
        last_verdict: status
            .and_then(|s| s.last_analysis.as_ref())
            .map(|a| a.verdict.as_str().to_owned()),
        age_seconds: since.map(|since| (now - since).num_seconds()),
    }
}

fn cluster_row(object: &DynamicObject, now: Timestamp) -> Row {
    let policy = PolicyRef {
        namespace: object.metadata.namespace.clone().unwrap_or_default(),
        name: object.metadata.name.clone().unwrap_or_default(),
    };
    let (_, status) = spec_and_status(object);
    let created = object
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp_millis(t.0.as_millisecond()));
    row(&policy, status.as_ref(), created, now)
}

/// The local rollouts: `<state dir>/<namespace>/<name>.json`, sorted.
async fn local_rows(
    state_dir: &Path,
    namespace: Option<&str>,
    now: Timestamp,
) -> std::io::Result<Vec<Row>> {
    let store = FileStore::new(state_dir);
    let mut policies = Vec::new();
    let namespaces = match std::fs::read_dir(state_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in namespaces.filter_map(Result::ok) {
        let Some(ns) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !entry.path().is_dir() || namespace.is_some_and(|wanted| wanted != ns) {
            continue;
        }
        for file in std::fs::read_dir(entry.path())?.filter_map(Result::ok) {
            let file_name = file.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            policies.push(PolicyRef {
                namespace: ns.clone(),
                name: name.to_owned(),
            });
        }
    }
    policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut rows = Vec::new();
    for policy in policies {
        match store.load(&policy).await {
            Ok(Some((status, _))) => rows.push(row(&policy, Some(&status), status.started_at, now)),
            Ok(None) => {}
            // Not a rollout's state (or damaged): said, and the others are listed.
            Err(e) => say!("warning: {}/{} skipped: {e}", policy.namespace, policy.name),
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(45), "45s");
        assert_eq!(age(720), "12m");
        assert_eq!(age(3 * 3600), "3h");
        assert_eq!(age(5 * 86_400), "5d");
    }

    #[test]
    fn the_table_is_aligned_with_dashes_for_the_unknown() {
        let rows = [Row {
            name: "checkout".into(),
            namespace: "shop".into(),
            revision: None,
            phase: None,
            step: None,
            canary_weight: None,
            last_verdict: None,
            age_seconds: None,
        }];
        let lines = table(&rows);
        assert_eq!(
            lines[0],
            "NAME      NAMESPACE  PHASE  STEP  WEIGHT  VERDICT  AGE"
        );
        assert_eq!(
            lines[1],
            "checkout  shop       -      -     -       -        -"
        );
    }
}
