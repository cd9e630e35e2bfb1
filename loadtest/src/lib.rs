//! `herald-loadtest`: load and failure scenarios for Herald with live progress, a human
//! and a JSON report, and pass/fail targets.
//!
//! # Layout
//! - [`cli`]: the command line (clap); [`scenario_file`]: TOML files of flags.
//! - [`scenario`]: what each scenario does, and the orchestration they share.
//! - [`shard`], [`client`]: the simulated clients; [`worker`]: running shards in
//!   worker processes above the per-process file limit.
//! - [`ws`]: a minimal, allocation-light WebSocket client; [`protocol`]: the client
//!   side of the Centrifugo v2 JSON protocol; [`pusher`]: the Pusher protocol and HTTP
//!   API, to drive Pusher-compatible servers (Sockudo) for comparisons.
//! - [`api`], [`publisher`]: publishing through the server API at a paced rate.
//! - [`local`]: a local cluster (nats-server, nodes, router) and `/proc` sampling.
//! - [`stats`]: counters, HDR histograms, gap and duplicate accounting.
//! - [`report`], [`expect`]: the report and the `--expect` targets.

// The binary's allocator (main.rs), a dependency of the package and so of this target.
use tikv_jemallocator as _;

pub mod api;
pub mod cli;
pub mod client;
pub mod expect;
pub mod local;
pub mod protocol;
pub mod publisher;
pub mod pusher;
pub mod report;
pub mod scenario;
pub mod scenario_file;
pub mod shard;
pub mod stats;
pub mod worker;
pub mod ws;

use clap::{CommandFactory, FromArgMatches};
use std::process::ExitCode;
use std::time::Duration;

/// Exit status when a target was missed.
pub const EXIT_MISSED: u8 = 1;
/// Exit status when the run could not be carried out (bad arguments, no server...).
pub const EXIT_ERROR: u8 = 2;

/// Parses `args` (program name first), runs the scenario and returns the exit status:
/// 0 when every target passed, 1 when one was missed, 2 on errors.
pub fn main_with_args(args: Vec<String>) -> ExitCode {
    let args = match scenario_file::expand(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("herald-loadtest: {e:#}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    // Every scenario's help ends with the metric names `--expect` accepts.
    let metrics = format!("Metrics for --expect: {}.", report::METRICS.join(", "));
    let command = cli::Cli::command().mut_subcommands(|s| s.after_help(metrics.clone()));
    let cli = match command
        .try_get_matches_from(args)
        .and_then(|m| cli::Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("herald-loadtest: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let code = match &cli.scenario {
        cli::Scenario::Worker(w) => match runtime.block_on(worker::serve(&w.spec)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("herald-loadtest worker: {e:#}");
                ExitCode::from(EXIT_ERROR)
            }
        },
        other => {
            let (common, plan) =
                scenario::plan(other).expect("every scenario but the worker has a plan");
            match runtime.block_on(scenario::run::run(common, plan)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(EXIT_MISSED),
                Err(e) => {
                    eprintln!("herald-loadtest: {e:#}");
                    ExitCode::from(EXIT_ERROR)
                }
            }
        }
    };
    // Blocking stdin reads (workers) would otherwise hold the runtime open.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}
