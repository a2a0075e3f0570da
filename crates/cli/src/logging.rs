//! Tracing to stderr: level from `-v`/`-q` (or `RUST_LOG`, which overrides entirely), colours per
//! `--color`, and lines routed around the progress bars so the two never garble each other.

use std::io::{self, IsTerminal as _, Write};
use std::sync::{Mutex, PoisonError};

use indicatif::MultiProgress;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::cli::ColorChoice;

/// The crates whose level `-v` raises (everything else stays at `warn`).
const OWN_CRATES: [&str; 3] = ["eraser", "eraser_api", "eraser_store"];

/// The progress bars currently drawn, if any; log lines are printed while they are suspended.
static PROGRESS: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Routes log lines through `mp` (bars are hidden, the line printed, the bars redrawn) until
/// [`clear_progress_target`] is called. Called by the progress display when it starts.
pub fn set_progress_target(mp: MultiProgress) {
    *PROGRESS.lock().unwrap_or_else(PoisonError::into_inner) = Some(mp);
}

/// Log lines go straight to stderr again. Called when the progress display ends.
pub fn clear_progress_target() {
    *PROGRESS.lock().unwrap_or_else(PoisonError::into_inner) = None;
}

/// Installs the global subscriber. A second call (or a subscriber set elsewhere) is ignored.
pub fn init(verbose: u8, quiet: bool, color: ColorChoice) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::builder().parse_lossy(spec),
        _ => EnvFilter::new(directives(verbose, quiet)),
    };
    let ansi = match color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(StderrAroundProgress)
        .with_ansi(ansi)
        .with_target(verbose >= 2);
    // Timestamps only help when following a run in detail.
    let _ = if verbose >= 1 {
        builder.try_init()
    } else {
        builder.without_time().try_init()
    };
}

/// The filter for a `-v` count: 0 warn, 1 info, 2 debug, 3+ trace for eraser's crates;
/// `-q` shows errors only.
pub fn directives(verbose: u8, quiet: bool) -> String {
    if quiet {
        return "error".into();
    }
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let own: Vec<String> = OWN_CRATES.iter().map(|c| format!("{c}={level}")).collect();
    format!("warn,{}", own.join(","))
}

/// A [`MakeWriter`] for stderr that, while progress bars are shown, prints each event with the
/// bars suspended.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrAroundProgress;

impl<'a> MakeWriter<'a> for StderrAroundProgress {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            buf: Vec::with_capacity(256),
        }
    }
}

/// Collects one event's text and writes it in one piece when dropped.
#[derive(Debug)]
pub struct EventWriter {
    buf: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let progress = PROGRESS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // A log line that cannot be written (stderr closed) is dropped: nowhere left to report it.
        let write = || {
            let _ = io::stderr().lock().write_all(&self.buf);
        };
        match progress {
            Some(mp) => mp.suspend(write),
            None => write(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flag_shows_warnings() {
        assert_eq!(
            directives(0, false),
            "warn,eraser=warn,eraser_api=warn,eraser_store=warn"
        );
    }

    #[test]
    fn each_v_raises_the_level_of_eraser_crates_only() {
        assert!(directives(1, false).starts_with("warn,eraser=info,"));
        assert!(directives(2, false).contains("eraser_api=debug"));
        assert!(directives(3, false).contains("eraser_store=trace"));
        assert_eq!(directives(9, false), directives(3, false));
    }

    #[test]
    fn quiet_shows_errors_only_whatever_the_v_count() {
        assert_eq!(directives(3, true), "error");
    }

    #[test]
    fn every_directive_set_parses() {
        for v in 0..4 {
            for q in [false, true] {
                assert!(EnvFilter::try_new(directives(v, q)).is_ok());
            }
        }
    }
}
