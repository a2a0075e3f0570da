//! `eraser`: removes watermarks from big image collections through the MagicEraser API.
//!
//! The table of contents of a run:
//! 1. parse the command line (clap prints help, or a usage error and exits 2);
//! 2. install logging on stderr (`-v`, `-q`, `RUST_LOG`, `--color`);
//! 3. build the tokio multi-thread runtime;
//! 4. run the command (`commands::run`);
//! 5. turn the outcome into the exit code (`exit::finish`: prints `error: …` on failure;
//!    a closed stdout exits 0 quietly). No panics: every failure is an error value.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use eraser::{cli, commands, exit, logging};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.global.verbose, cli.global.quiet, cli.global.color);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| {
            let result = rt.block_on(commands::run(cli));
            // A blocking task still reading (stdin, a slow disk) must not hold the exit.
            rt.shutdown_timeout(Duration::from_secs(2));
            result
        });
    exit::finish(result)
}
