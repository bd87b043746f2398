//! `orchestrator`: `serve` runs the control plane; every other command is a client of its API.

mod access_log;
mod cli;
mod client;
mod compose;
mod config;
mod event_follow;
mod fd_limit;
mod http;
mod logging;
mod logs_cli;
mod malloc;
mod registry_cli;
mod registry_key;
mod rollout_cli;
mod serve;
mod stack_cli;
mod tokens;
mod workload_args;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    malloc::tune();
    fd_limit::raise();
    let cli = cli::Cli::parse_from(cli::with_label_removals_as_suffix(std::env::args()));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, the whole chain of causes.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
