//! The read-only status page (docs/web.md): every rollout with its phase, weight and
//! last verdict, and one rollout's timeline (weight and each metric against its limit,
//! drawn as SVG charts) with its history of transitions. Served by the daemon
//! (`--web-listen`), by `run --web` and by the demo; plain HTML and vanilla JS built
//! into the binary, polling a JSON read model fed from tick outcomes.

pub mod board;
pub mod page;

pub use board::Board;
