//! `eraser completions <shell>`: a completion script on stdout.

use std::io::Write as _;

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::exit::Status;

/// Prints the completion script for `shell`.
pub fn run(shell: Shell) -> anyhow::Result<Status> {
    // clap_complete panics when its writer fails, so render into memory and write here.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "eraser", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("writing to stdout")?;
    Ok(Status::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_eraser() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::PowerShell,
            Shell::Elvish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "eraser", &mut script);
            let text = String::from_utf8_lossy(&script);
            assert!(
                text.contains("eraser") && text.contains("ledger"),
                "{shell:?}"
            );
        }
    }
}
