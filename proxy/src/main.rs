//! The `cutover` binary: parses the command line and runs the proxy.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use cutover::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Verify(args) = cli.command {
        return verify(args);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The cause chain on one line; no backtrace for configuration mistakes.
            eprintln!("cutover: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cutover verify`: 0 equal, 1 different, 2 could not run.
fn verify(args: cutover::verify::VerifyArgs) -> ExitCode {
    cutover::logging::init(&args.log_level);
    let r = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|rt| rt.block_on(cutover::verify::run_cli(args)));
    match r {
        Ok(report) if report.differences.is_empty() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("cutover verify: could not run: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => {
            let mut settings = args.settings()?;
            cutover::logging::init(&settings.log_level);
            let (threads, session_workers) = cutover::server::worker_threads(&settings);
            settings.session_workers = session_workers;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .thread_name("cutover")
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(cutover::server::run(settings))
        }
        Command::Ctl(args) => cutover::ctl::run(&args),
        Command::Verify(args) => {
            // (Handled before: its exit status says equal, different, or could not run.)
            let _ = verify(args);
            Ok(())
        }
        Command::Dump(args) => {
            cutover::logging::init(&args.log_level);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            for d in runtime.block_on(cutover::dump::run(args))? {
                match d.keys {
                    Some(keys) => println!(
                        "dumped {}: {} bytes, {keys} keys (by SCAN + DUMP: no replication position, so it restores but can't seed)",
                        d.path.display(),
                        d.bytes,
                    ),
                    None => println!(
                        "dumped {}: {} bytes, replication id {} offset {}",
                        d.path.display(),
                        d.bytes,
                        d.replid,
                        d.offset
                    ),
                }
            }
            Ok(())
        }
        Command::Restore(args) => {
            cutover::logging::init(&args.log_level);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let input = args.input.display().to_string();
            let r = runtime.block_on(cutover::restore::run(args))?;
            println!(
                "restored {input}: {} keys loaded{}, {} commands applied, {:.2} s{}",
                r.keys,
                if r.expired > 0 {
                    format!(" ({} of them expired, skipped by the target)", r.expired)
                } else {
                    String::new()
                },
                r.commands,
                r.secs,
                if r.resumed {
                    " (continued from the target's checkpoint)"
                } else {
                    ""
                }
            );
            Ok(())
        }
    }
}
