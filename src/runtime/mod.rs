//! The imperative shell: drives policies through the engine. Only this module calls the
//! I/O seams (router, metrics, store, checks, commands, clock).

pub mod checks;
pub mod checks_http;
pub mod checks_json;
pub mod clock;
pub mod cluster_run;
pub mod colours;
pub mod commands;
pub mod commands_file;
pub mod commands_kube;
pub mod daemon;
pub mod faults;
pub mod fresh_data;
pub mod hooks;
pub mod leader;
pub mod local;
pub mod notify;
pub mod notify_daemon;
pub mod notify_payload;
pub mod notify_queue;
pub mod preflight;
pub mod reconcile;
pub mod release_presence;
pub mod release_presence_envoy;
pub mod route_index;
pub mod route_lease;
pub mod scheduler;
pub mod scheduler_sim;
pub mod shards;
pub mod webhook;
pub mod workloads;

pub use checks::CheckRunner;
pub use clock::{Clock, SystemClock, VirtualClock};
pub use commands::{CommandSource, CommandSourceError, NoCommands, QueuedCommands};
pub use faults::{CrashAt, CrashPoint, FaultHook};
pub use reconcile::{Problem, ReconcileError, Reconciler, Seams, TickOutcome};
