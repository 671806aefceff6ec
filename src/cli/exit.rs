//! Process exit codes, documented in docs/cli.md. CI pipelines branch on them.

/// Success: the policy is valid, or the rollout was promoted.
pub const OK: i32 = 0;
/// The rollout was rolled back (or aborted): the canary was judged bad.
pub const ROLLED_BACK: i32 = 1;
/// Invalid input: a policy, scenario or flag is wrong. Nothing was changed.
pub const INVALID_INPUT: i32 = 2;
/// shiftgate could not run: a router, Prometheus or the state store failed.
pub const COULD_NOT_RUN: i32 = 3;
/// The rollout is held after a failure, or paused, and needs an operator.
pub const HELD: i32 = 4;
/// `simulate`: the scenario's `expect` was not met.
pub const EXPECTATION_NOT_MET: i32 = 5;
/// Interrupted by Ctrl-C or SIGTERM; the state is consistent and a new run resumes.
pub const INTERRUPTED: i32 = 130;
/// `promote`/`pause`/`resume`/`abort`: no rollout of that policy (and revision) is in
/// progress, so there is nothing for the command to act on; nothing was sent.
pub const NOT_IN_PROGRESS: i32 = 6;
/// `undo`: nothing to undo (the revision is not Promoted, was undone already, the route
/// moved since, or the previous release is gone or could not be looked at); nothing was
/// written.
pub const NOTHING_TO_UNDO: i32 = 7;
/// `status --watch`: `--timeout` passed before the rollout ended; it goes on.
pub const TIMED_OUT: i32 = 8;

/// `run` against a cluster: a route Lease was lost while the rollout ran (the process
/// was paused or cut off, or another run took the route over); the run stopped and
/// wrote nothing after the loss.
pub const ROUTE_LEASE_LOST: i32 = 8;

/// The exit codes of one command, and what each means there.
pub type Codes = &'static [(i32, &'static str)];

const OPERATOR_COMMAND: Codes = &[
    (OK, "sent: the rollout's `shiftgate run` (or the daemon) applies it, or refuses it if another revision runs by then"),
    (INVALID_INPUT, "not sent: the policy file is invalid, or the revision is not clear (say it with --revision)"),
    (COULD_NOT_RUN, "not sent: the state, the command directory or the cluster could not be reached, or the RolloutPolicy does not exist"),
    (NOT_IN_PROGRESS, "not sent: no rollout of that policy and revision is in progress (never run, or already Promoted, RolledBack or Aborted)"),
];

/// Every command's exit codes. `--help` and docs/cli.md are both made from this table
/// (a test compares the doc with it), so they cannot drift apart.
pub const BY_COMMAND: &[(&str, Codes)] = &[
    ("check", &[
        (OK, "every file is valid"),
        (INVALID_INPUT, "a file has an error (with --deny-warnings: or a warning), or cannot be read"),
        (COULD_NOT_RUN, "the report could not be written (a closed pipe is not a failure)"),
    ]),
    ("schema", &[
        (OK, "the schema was printed"),
        (COULD_NOT_RUN, "it could not be written (a closed pipe is not a failure)"),
    ]),
    ("crd", &[
        (OK, "the CustomResourceDefinition was printed"),
        (COULD_NOT_RUN, "it could not be rendered or written (a closed pipe is not a failure)"),
    ]),
    ("simulate", &[
        (OK, "the simulated rollout was promoted"),
        (ROLLED_BACK, "it was rolled back or aborted"),
        (INVALID_INPUT, "the policy, scenario or a flag is invalid, or the rollout was refused (its canary is the live colour)"),
        (COULD_NOT_RUN, "the scenario ended before the rollout did, or the timeline could not be written"),
        (HELD, "it ended held or paused"),
        (EXPECTATION_NOT_MET, "the scenario's `expect` was not met"),
    ]),
    ("backtest", &[
        (OK, "the replayed rollout would have been promoted"),
        (ROLLED_BACK, "it would have been rolled back or aborted"),
        (INVALID_INPUT, "the policy or a flag is invalid (--prometheus not an http(s) URL or with credentials; --to not after --from, more than 30 days after it, or in the future)"),
        (COULD_NOT_RUN, "Prometheus is unreachable or rejects a query, held no data for any evaluation, no decision was made before --to, or the timeline could not be written"),
        (HELD, "it would have been held or paused"),
    ]),
    ("daemon", &[
        (OK, "stopped by SIGTERM or Ctrl-C after its writes finished"),
        (INVALID_INPUT, "a flag is invalid"),
        (COULD_NOT_RUN, "no Kubernetes client, the listen address is taken, or the controller failed"),
    ]),
    ("run", &[
        (OK, "the rollout was promoted"),
        (ROLLED_BACK, "it was rolled back or aborted"),
        (INVALID_INPUT, "the policy or a flag is invalid, a query is broken, or the canary is the live colour (CanaryIsLive); nothing was changed"),
        (COULD_NOT_RUN, "the router, Prometheus or the state store failed, the preflight refused the policy, or another `shiftgate run` drives the same route (the error names it: pid, host, start time)"),
        (HELD, "the rollout is held after a failure, or paused, and needs an operator"),
        (ROUTE_LEASE_LOST, "against a cluster: the run lost its route Lease while it ran (paused, cut off from the API server, or another run took the route over); it stopped and wrote nothing after the loss"),
        (INTERRUPTED, "interrupted by Ctrl-C or SIGTERM; the state is saved and running again resumes"),
    ]),
    ("status", &[
        (OK, "the rollout is promoted, or still in progress (with --watch: it was promoted)"),
        (ROLLED_BACK, "it was rolled back or aborted"),
        (INVALID_INPUT, "the policy file or name is invalid"),
        (COULD_NOT_RUN, "no rollout of that policy was found, or the state or the cluster could not be read"),
        (HELD, "it is held after a failure, or paused, and needs an operator"),
        (TIMED_OUT, "--watch: --timeout passed before the rollout ended (it goes on)"),
        (INTERRUPTED, "--watch: interrupted by Ctrl-C or SIGTERM (the rollout goes on)"),
    ]),
    ("list", &[
        (OK, "the list was shown (it may be empty)"),
        (COULD_NOT_RUN, "the state directory or the cluster could not be read"),
    ]),
    ("promote", OPERATOR_COMMAND),
    ("pause", OPERATOR_COMMAND),
    ("resume", OPERATOR_COMMAND),
    ("abort", OPERATOR_COMMAND),
    ("retry", &[
        (OK, "sent: the rollout's next `shiftgate run` (or the daemon) starts the revision again from step 1"),
        (INVALID_INPUT, "not sent: the policy file is invalid, or the revision is not clear (say it with --revision)"),
        (COULD_NOT_RUN, "not sent: the state, the command directory or the cluster could not be reached, or the RolloutPolicy does not exist"),
        (NOT_IN_PROGRESS, "not sent: nothing to retry (the revision never ran, is still in progress, Held, Promoted, or still going back to stable)"),
    ]),
    ("completion", &[
        (OK, "the completion script was printed"),
        (COULD_NOT_RUN, "it could not be written (a closed pipe is not a failure)"),
    ]),
    ("undo", &[
        (OK, "undone: every request is back on the previous stable (locally, written by this command when no `shiftgate run` drives the rollout), or sent: the daemon or the running `shiftgate run` applies it"),
        (INVALID_INPUT, "not sent: the policy file is invalid, or the revision is not clear (say it with --revision)"),
        (COULD_NOT_RUN, "the state, the command directory, the router or the cluster could not be reached, the RolloutPolicy does not exist, or another `shiftgate run` holds the route"),
        (NOTHING_TO_UNDO, "refused, nothing written: the revision is not Promoted, was undone already, the live route moved since the promotion, or the previous release is gone (from the route, deleted, or with nothing ready), or could not be looked at (docs/cli.md, `undo`)"),
    ]),
    ("demo", &[
        (OK, "v2 was promoted and v3 rolled back, as the demo expects"),
        (ROLLED_BACK, "the rollouts did not end as expected"),
        (COULD_NOT_RUN, "a process of the demo stack could not be started"),
        (INTERRUPTED, "interrupted by Ctrl-C or SIGTERM; every process was stopped"),
    ]),
    ("local", &[
        (OK, "`up`: stopped by `local down`, Ctrl-C or SIGTERM, every process stopped and its dir removed; `down`: stopped, or nothing was running; `status`, `fault`, `release`: done"),
        (INVALID_INPUT, "a flag or value is invalid (nothing to change, an error rate outside 0..1, a version that is not a label)"),
        (COULD_NOT_RUN, "`up`: a playground already runs, its dir exists, or the stack could not start or one of its processes exited; `down`: it could not be stopped; `status`, `fault`, `release`: no playground runs, it is still starting, or it refused"),
    ]),
];

/// Codes every command shares, whatever it does.
const COMMON: Codes = &[
    (OK, "`--help` and `--version`"),
    (
        INVALID_INPUT,
        "the command line cannot be parsed (an unknown flag, a missing argument)",
    ),
];

/// The exit codes of `command` (its name on the command line).
pub fn codes_of(command: &str) -> Option<Codes> {
    BY_COMMAND
        .iter()
        .find(|(name, _)| *name == command)
        .map(|(_, codes)| *codes)
}

/// The `Exit codes:` paragraph of a command's `--help`.
pub fn help(codes: Codes) -> String {
    let mut text = String::from("Exit codes:\n");
    for (code, meaning) in codes {
        text.push_str(&format!("  {code:<4} {meaning}\n"));
    }
    text.push_str(&format!(
        "  {INVALID_INPUT:<4} also when the command line cannot be parsed\n\
         Every command's codes: docs/cli.md, `## Exit codes by command`."
    ));
    text
}

/// The `## Exit codes by command` section of docs/cli.md, exactly.
pub fn markdown() -> String {
    let mut text = String::from("| command | code | meaning |\n|---|---|---|\n");
    for (name, codes) in BY_COMMAND
        .iter()
        .map(|(n, c)| (*n, *c))
        .chain([("every command", COMMON)])
    {
        for (code, meaning) in codes {
            let shown = if name == "every command" {
                name.to_owned()
            } else {
                format!("`{name}`")
            };
            text.push_str(&format!("| {shown} | {code} | {meaning} |\n"));
        }
    }
    text
}
