//! Millpond's binary crate as a library, so the GUI and CLI can be driven from tests.
//!
//! - [`cli`]: the command-line subcommands (`drop`, `toolpath`).
//! - [`pool`]: `millpond serve` and joining the pool from the CLI.
//! - [`run_job`]: a job (a `.millpond` file) turned into its G-code program, for the CLI and
//!   the window alike.
//! - [`detached`]: a job as it is sent to a member to run detached, and how `serve` runs it.
//! - [`gui`]: the eframe desktop app (what `millpond` with no arguments opens).

pub mod cli;
pub mod common;
pub mod detached;
pub mod gui;
pub mod pool;
pub mod run_job;
