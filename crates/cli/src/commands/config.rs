//! `eraser config path|show`: where the configuration comes from.

use std::io::Write as _;

use anyhow::Context as _;

use super::{global_overrides, print_warnings, stdout};
use crate::cli::{ConfigCmd, GlobalArgs};
use crate::config::{Config, Environment, config_path};
use crate::exit::Status;

/// Prints the config file path, or the effective configuration as TOML.
pub fn run(global: &GlobalArgs, cmd: ConfigCmd, env: &Environment) -> anyhow::Result<Status> {
    let over = global_overrides(global);
    let mut out = stdout();
    match cmd {
        ConfigCmd::Path => {
            let (path, _) = config_path(&over, env)?;
            writeln!(out, "{}", path.display()).context("writing to stdout")?;
        }
        ConfigCmd::Show => {
            let cfg = Config::resolve(&over, env)?;
            print_warnings(&cfg, global.quiet);
            out.write_all(cfg.to_toml().as_bytes())
                .context("writing to stdout")?;
        }
    }
    out.flush().context("writing to stdout")?;
    Ok(Status::Done)
}
