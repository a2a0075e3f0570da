//! `eraser config path|show|set-token`: where the configuration comes from, and saving the
//! token into it.

use std::io::{IsTerminal as _, Read as _, Write as _};

use anyhow::Context as _;

use super::{flags, print_warnings, say, stdout};
use crate::cli::{ConfigCmd, GlobalArgs};
use crate::config::{Config, Environment, config_path};
use crate::exit::Status;
use crate::token_file::{clean_token, save_token};

/// Prints the config file path, or the effective configuration as TOML.
pub fn run(global: &GlobalArgs, cmd: ConfigCmd, env: &Environment) -> anyhow::Result<Status> {
    let mut out = stdout();
    match cmd {
        ConfigCmd::Path => {
            let (path, _) = config_path(&flags(global, None), env)?;
            writeln!(out, "{}", path.display()).context("writing to stdout")?;
        }
        ConfigCmd::Show { settings } => {
            let cfg = Config::resolve(&flags(global, Some(&settings)), env)?;
            print_warnings(&cfg, global.quiet);
            out.write_all(cfg.to_toml().as_bytes())
                .context("writing to stdout")?;
        }
        ConfigCmd::SetToken => {
            let (path, _) = config_path(&flags(global, None), env)?;
            let raw = read_token()?;
            save_token(&path, clean_token(&raw)?)?;
            if !global.quiet {
                say(&format!(
                    "token saved in {} (readable by you only)",
                    path.display()
                ));
            }
        }
    }
    out.flush().context("writing to stdout")?;
    Ok(Status::Done)
}

/// The token from a hidden prompt on a terminal, else all of stdin.
fn read_token() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password("API token (input hidden): ")
            .context("reading the token from the terminal");
    }
    let mut raw = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut raw)
        .context("reading the token from stdin")?;
    Ok(raw)
}
