//! `millpond`: the desktop app and its command-line subcommands.

use clap::Parser;
use millpond::{cli, gui, pool};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Before anything starts a thread: the pool secret leaves the environment, so no child
    // process inherits it (it is kept for `Secret::from_env`).
    if let Err(e) = millpond_net::secret::take_env_secret() {
        eprintln!("millpond: warning: {e}");
    }
    let cli = cli::Cli::parse();
    let result = match &cli.command {
        None => gui::run(cli.model.as_deref()),
        Some(cli::Command::Drop(args)) => cli::drop_command(args),
        Some(cli::Command::Toolpath(args)) => cli::toolpath_command(args),
        Some(cli::Command::Waterline(args)) => cli::waterline_command(args),
        Some(cli::Command::Serve(args)) => pool::serve_command(args),
        Some(cli::Command::Submit(args)) => cli::submit_command(args),
        Some(cli::Command::Jobs(args)) => cli::jobs_command(args),
        Some(cli::Command::Fetch(args)) => cli::fetch_command(args),
        Some(cli::Command::Cancel(args)) => cli::cancel_command(args),
        Some(cli::Command::Tools(args)) => cli::tools::tools_command(args),
        Some(cli::Command::Simulate(args)) => cli::simulate_command(args),
        Some(cli::Command::Posts) => cli::posts_command(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("millpond: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
