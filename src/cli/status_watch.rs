//! `shiftgate status POLICY --watch`: follows a rollout (local or in the cluster) until
//! it is promoted, rolled back, aborted, held or paused, or `--timeout` passes. On a
//! terminal the view is redrawn in place (weight bar, step, each metric against its
//! limit, time left, live colour); elsewhere (CI logs) one line per change. The exit
//! code is the CI's answer: 0 promoted, 1 rolled back or aborted, 4 held or paused,
//! 8 timed out, 3 the rollout could not be read, 130 interrupted.

use std::io::IsTerminal as _;

use crate::cli::exit;
use crate::cli::kube_target::{
    cluster_target, fetch_policy, grafana_of, spec_and_status, ClusterTarget,
};
use crate::cli::output::{out, say};
use crate::cli::status::StatusArgs;
use crate::cli::status_view::{
    change_line, encode, grafana_link, phase_exit_code, render, watch_ends, with_grafana_link,
    ReadOutput,
};
use crate::metrics::PolicyRef;
use crate::policy::{GrafanaSpec, RolloutSpec, RolloutStatus};
use crate::runtime::local::LocalTarget;
use crate::runtime::Clock as _;
use crate::store::StateStore as _;

/// Where the watched rollout is read from.
enum Source {
    Local {
        target: LocalTarget,
        /// From the policy file, when the argument is one.
        spec: Option<Box<RolloutSpec>>,
    },
    Cluster(ClusterTarget),
}

/// One reading: the policy, its spec (when known) and its status (`None`: not started).
struct Reading {
    policy: PolicyRef,
    spec: Option<RolloutSpec>,
    grafana: Option<GrafanaSpec>,
    /// The revision the policy names (`spec.revision`), when known.
    desired: Option<String>,
    status: Option<RolloutStatus>,
}

impl Source {
    async fn read(&self) -> anyhow::Result<Reading> {
        match self {
            Source::Local { target, spec } => {
                let status = target
                    .store()
                    .load(&target.policy)
                    .await?
                    .map(|(status, _)| status);
                Ok(Reading {
                    policy: target.policy.clone(),
                    spec: spec.as_deref().cloned(),
                    grafana: spec
                        .as_ref()
                        .and_then(|spec| spec.grafana.as_deref().cloned()),
                    desired: spec.as_ref().map(|spec| spec.revision.clone()),
                    status,
                })
            }
            Source::Cluster(target) => {
                let (namespace, object) = fetch_policy(target).await?;
                let object = object.ok_or_else(|| {
                    anyhow::anyhow!(
                        "rolloutpolicies.shiftgate.dev {namespace}/{} not found; check the name \
                         and -n NAMESPACE (kubectl get rolloutpolicies -A)",
                        target.name
                    )
                })?;
                let (spec, status) = spec_and_status(&object);
                Ok(Reading {
                    grafana: grafana_of(&object),
                    desired: object
                        .data
                        .pointer("/spec/revision")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_owned),
                    policy: PolicyRef {
                        namespace,
                        name: target.name.clone(),
                    },
                    spec,
                    status,
                })
            }
        }
    }
}

/// Whether the reading is the end of the watch: the rollout of the revision the spec
/// names (when known) is over or waits for an operator. A status of an older revision
/// is not the end: the new one has not started yet.
fn ended(reading: &Reading) -> Option<&RolloutStatus> {
    let status = reading.status.as_ref()?;
    let current = reading
        .desired
        .as_deref()
        .is_none_or(|desired| status.revision.as_deref() == Some(desired));
    (current && watch_ends(status)).then_some(status)
}

pub fn run(args: &StatusArgs) -> i32 {
    let source = match cluster_target(&args.target) {
        Some(cluster) => Source::Cluster(cluster),
        None => match args.target.target() {
            Ok(target) => {
                let spec =
                    crate::runtime::local::load_policy(std::path::Path::new(&args.target.policy))
                        .ok()
                        .map(|local| Box::new(local.spec));
                Source::Local { target, spec }
            }
            Err(code) => return code,
        },
    };
    let runtime = match crate::cli::current_thread_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        tokio::select! {
            code = watch(&source, args) => code,
            () = crate::cli::demo_app::shutdown_signal() => exit::INTERRUPTED,
        }
    })
}

async fn watch(source: &Source, args: &StatusArgs) -> i32 {
    let terminal = std::io::stderr().is_terminal();
    let colour = terminal && std::env::var_os("NO_COLOR").is_none();
    let deadline = args
        .timeout
        .map(|timeout| tokio::time::Instant::now() + timeout);
    let mut first = true;
    let mut drawn = 0usize;
    let mut last_line = String::new();
    let mut last_error = String::new();
    loop {
        match source.read().await {
            Ok(reading) => {
                last_error.clear();
                let label = format!("{}/{}", reading.policy.namespace, reading.policy.name);
                match &reading.status {
                    None => {
                        let line = format!("{label}: not started yet; waiting");
                        if line != last_line {
                            say!("{line}");
                            last_line = line;
                        }
                    }
                    Some(status) if terminal => {
                        let now = crate::runtime::SystemClock.now();
                        let lines = render(&label, reading.spec.as_ref(), status, now, colour);
                        // Back to the top of the last frame, and clear below it.
                        let mut frame = if drawn > 0 {
                            format!("\x1b[{drawn}A\x1b[J")
                        } else {
                            String::new()
                        };
                        frame.push_str(&lines.join("\n"));
                        say!("{frame}");
                        drawn = lines.len();
                    }
                    Some(status) => {
                        let line = change_line(&label, status);
                        if line != last_line {
                            say!("{line}");
                            last_line = line;
                        }
                    }
                }
                if let Some(status) = ended(&reading) {
                    return finish(&reading, status, args.output);
                }
            }
            Err(e) if first => {
                say!("error: {e:#}");
                return exit::COULD_NOT_RUN;
            }
            Err(e) => {
                // A blip while watching is said once; the watch goes on (--timeout bounds it).
                let text = format!("{e:#}");
                if text != last_error {
                    say!("warning: {text}; trying again");
                    last_error = text;
                }
                drawn = 0;
            }
        }
        first = false;
        let pause = tokio::time::sleep(args.interval);
        match deadline {
            Some(deadline) if tokio::time::Instant::now() + args.interval > deadline => {
                tokio::time::sleep_until(deadline).await;
                say!(
                    "shiftgate: gave up watching after {} (--timeout); the rollout goes on",
                    humantime::format_duration(args.timeout.unwrap_or_default())
                );
                return exit::TIMED_OUT;
            }
            _ => pause.await,
        }
    }
}

/// The end of the watch: the outcome, the Grafana link, the document for `-o`.
fn finish(reading: &Reading, status: &RolloutStatus, output: ReadOutput) -> i32 {
    let link = grafana_link(reading.grafana.as_ref(), &reading.policy, status);
    say!(
        "shiftgate: {}/{} is {} at canary {}%",
        reading.policy.namespace,
        reading.policy.name,
        status.phase,
        status.canary_weight
    );
    if let Some(link) = &link {
        say!("  grafana: {link}");
    }
    if output != ReadOutput::Text {
        let document = serde_json::to_value(status)
            .map_err(anyhow::Error::from)
            .and_then(|document| encode(&with_grafana_link(document, link.as_deref()), output));
        match document {
            Ok(text) => out!("{}", text.trim_end()),
            Err(e) => {
                say!("error: cannot encode the status: {e:#}");
                return exit::COULD_NOT_RUN;
            }
        }
    }
    phase_exit_code(status)
}
