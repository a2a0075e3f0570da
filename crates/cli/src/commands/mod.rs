//! One module per subcommand; [`run()`] dispatches a parsed command line to it.
//!
//! Data goes to stdout (written with error propagation, so a closed pipe ends the command
//! quietly), talk goes to stderr.

mod completions;
mod config;
mod ledger;
mod run;

use std::io::{self, Write as _};

use crate::cli::{Cli, Command, GlobalArgs, SettingFlags};
use crate::config::{Config, Environment, Flags};
use crate::exit::Status;

/// Runs the command the user asked for.
pub async fn run(cli: Cli) -> anyhow::Result<Status> {
    let env = Environment::process();
    match cli.command {
        Command::Run(args) => run::run(&cli.global, *args, &env).await,
        Command::Ledger { cmd } => ledger::run(&cli.global, cmd, &env).await,
        Command::Config { cmd } => config::run(&cli.global, cmd, &env),
        Command::Completions { shell } => completions::run(shell),
    }
}

/// The flags every command takes: the global ones and, for `run` and `config show`, the
/// settings.
fn flags(global: &GlobalArgs, settings: Option<&SettingFlags>) -> Flags {
    Flags {
        config: global.config.clone(),
        ledger: global.ledger.clone(),
        settings: settings.cloned().unwrap_or_default(),
    }
}

/// Prints the configuration's warnings on stderr (unless `--quiet`).
fn print_warnings(cfg: &Config, quiet: bool) {
    if !quiet {
        for w in &cfg.warnings {
            say(&format!("warning: {w}"));
        }
    }
}

/// One line of talk on stderr. A closed stderr is ignored: there is nowhere left to report it.
fn say(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// Buffered stdout for data; callers flush and propagate every write error.
fn stdout() -> io::BufWriter<io::Stdout> {
    io::BufWriter::with_capacity(64 * 1024, io::stdout())
}
