//! One test per defect an issue names, named after the defect (ripgrep's
//! `tests/regression.rs`). Each must fail on the code before its fix. The tests are
//! grouped by the area of the issue that named them; each group is its own file under
//! `tests/regression/` so that the groups can be worked on independently.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

/// Issue "trust" §1: a policy never borrows the daemon's identity.
#[path = "regression/tenancy.rs"]
mod tenancy;

/// Issue "trust" §2: no traffic moves without a judgement.
#[path = "regression/judgement.rs"]
mod judgement;

/// Issue "trust" §3 and commands that belong to a revision.
#[path = "regression/commands.rs"]
mod commands;

/// Issue "trust" §4: no panic on any input; bounded resources.
#[path = "regression/limits.rs"]
mod limits;

/// Issue "trust" §5: the Kubernetes path.
#[path = "regression/kubernetes.rs"]
mod kubernetes;

/// Issue "first hour": the messages a newcomer meets.
#[path = "regression/first_hour.rs"]
mod first_hour;

/// Issue "first hour" §1–2: a local playground, install and build.
#[path = "regression/playground.rs"]
mod playground;

/// Issue "judges": canary against stable from counts, with a known false-rollback rate.
#[path = "regression/judges.rs"]
mod judges;

/// Issues "judges" §4 and "first hour" §4: scenario files.
#[path = "regression/scenarios.rs"]
mod scenarios;

/// Issue "judges" §2 and §5: the statistics of the judges, on the benchmark's traffic.
#[path = "regression/judge_statistics.rs"]
mod judge_statistics;

/// Issue "lifecycle" §3: the stable and canary Deployments (`spec.workloads`).
#[path = "regression/lifecycle_workloads.rs"]
mod lifecycle_workloads;

/// Issue "operate" §1 and §2: the image and the install.
#[path = "regression/install.rs"]
mod install;

/// Issue "lifecycle" §1, §2, §8: colours, undo, one run per route.
#[path = "regression/lifecycle_colours.rs"]
mod lifecycle_colours;

/// Issue "lifecycle" §1, §3, §8: `revisionFrom` with colours, a cluster run's fenced writes.
#[path = "regression/lifecycle_fence.rs"]
mod lifecycle_fence;

/// Issue "lifecycle" §2, §6: `undo` onto a release that is gone; refused gates.
#[path = "regression/lifecycle_undo.rs"]
mod lifecycle_undo;

/// Issue "lifecycle" §4, §5, §7: metric labels, analysis without a mesh, A/B at 0 %.
#[path = "regression/metric_labels.rs"]
mod metric_labels;

/// Issue "lifecycle" §6: hooks, and HTTP checks with a body and JSON expectations.
#[path = "regression/hooks.rs"]
mod hooks;

/// Issue "operate" §5–6: metrics, alerts and logs.
#[path = "regression/observe.rs"]
mod observe;

/// Issue "operate" §8: a web status page.
#[path = "regression/web_page.rs"]
mod web_page;

/// Issue "scale" §1–2: the API requests one evaluation costs.
#[path = "regression/scale.rs"]
mod scale;

/// Issue "scale": API requests and CPU per evaluation.
#[path = "regression/perf.rs"]
mod perf;

/// Issue "scale" §3: batched Prometheus queries.
#[path = "regression/batch.rs"]
mod batch;

/// Issue "scale" §4 and §6: fair, on-time scheduling, and evaluations timed to the data.
#[path = "regression/scheduling.rs"]
mod scheduling;

/// Issue "scale" §6: time to rollback (evaluations on new data while failing, phases per group).
#[path = "regression/rollback.rs"]
mod rollback;

/// Issue "operate" §3: notifications.
#[path = "regression/notify.rs"]
mod notify;

/// Issue "operate" §7: CLI parity with the Argo Rollouts plugin (and §4's Grafana link).
#[path = "regression/cli_parity.rs"]
mod cli_parity;

/// Issue 12 §5: shards across replicas.
#[path = "regression/shards.rs"]
mod shards;

/// Issue 12 "Must hold": Prometheus queries per second that do not grow with rollouts.
#[path = "regression/promload.rs"]
mod promload;

/// Issue "scale" (its benchmark): drift is never called on a route read from a lagging watch.
#[path = "regression/drift.rs"]
mod drift;
