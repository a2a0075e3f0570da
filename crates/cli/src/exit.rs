//! The only place exit codes are chosen.
//!
//! | code | meaning                                                                      |
//! |------|------------------------------------------------------------------------------|
//! | 0    | all done: every input has its output; a ledger command succeeded; stdout     |
//! |      | was closed by its reader (output piped into `head`)                          |
//! | 1    | finished with some inputs failed or results not written (OUT full: after     |
//! |      | three in a row submitting stops); `ledger verify` found problems; any other  |
//! |      | fatal error                                                                  |
//! | 2    | usage or configuration error (clap's own usage errors also exit 2); a ledger |
//! |      | that cannot be opened or used (missing, corrupt, newer, read-only, locked)   |
//! | 3    | stopped early: the service refuses work (credits, quota, serial, auth) or    |
//! |      | cannot be reached (uploads unanswered even after retries), or the ledger's   |
//! |      | database cannot be reached (for --outage-timeout mid-run, or at the start)   |
//! | 129  | stopped by SIGHUP (terminal closed), handled like Ctrl-C                     |
//! | 130  | interrupted by Ctrl-C (rerun the same command to resume)                     |
//! | 143  | stopped by SIGTERM, handled like Ctrl-C                                      |
//!
//! Decisions: a ledger failure is exit 2 because the user must act on the file or the flags
//! (`--ledger`), as with a bad config; it is recognised by [`LedgerUnavailable`] (any failure to
//! open it) or by [`eraser_store::ErrorKind::Stop`] / [`eraser_store::ErrorKind::Retry`] (busy
//! beyond the timeout) anywhere in the error chain, e.g. a ledger turning read-only mid-run.
//! Store errors of kind `Bug` and every other unexpected error are exit 1.

use std::io::Write as _;
use std::process::ExitCode;

use crate::config::ConfigError;
use crate::pipeline::StopSignal;

/// How a successful command ended (errors are `anyhow::Error`s instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything asked for is done.
    Done,
    /// The run finished with some inputs failed.
    SomeFailed,
    /// `ledger verify` found problems that remain.
    ProblemsFound,
    /// The service refused work, or gave no answer, repeatedly; submitting stopped.
    Refused,
    /// Ctrl-C, SIGTERM or SIGHUP.
    Interrupted(StopSignal),
}

/// A mistake in how eraser was invoked that clap cannot see (exit 2): say what to change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The ledger file cannot be opened (corrupt, newer schema, read-only, locked): exit 2.
/// Shows its cause's message only: the store's messages already name the file.
#[derive(Debug, thiserror::Error)]
#[error("{cause}")]
pub struct LedgerUnavailable {
    /// The ledger as shown to people (a password masked).
    pub ledger: String,
    pub cause: Box<dyn std::error::Error + Send + Sync>,
}

/// The exit code of a command's result.
pub fn code(result: &anyhow::Result<Status>) -> u8 {
    match result {
        Ok(Status::Done) => 0,
        Ok(Status::SomeFailed | Status::ProblemsFound) => 1,
        Ok(Status::Refused) => 3,
        Ok(Status::Interrupted(signal)) => signal.exit_code(),
        Err(e) if is_broken_pipe(e) => 0,
        Err(e) if is_unreachable_ledger(e) => 3,
        Err(e) if is_usage(e) => 2,
        Err(_) => 1,
    }
}

/// Prints a failed command's error (`error: <chain>`) unless stdout was merely closed
/// (`eraser ledger list | head`), and turns the result into the process exit code.
pub fn finish(result: anyhow::Result<Status>) -> ExitCode {
    if let Err(e) = &result
        && !is_broken_pipe(e)
    {
        // Nothing is left to tell if stderr itself is gone.
        let _ = writeln!(std::io::stderr(), "error: {}", one_line(e));
    }
    ExitCode::from(code(&result))
}

/// An error and its causes on one line, like `{:#}`, except that a cause already told in full
/// by the error above it (library errors that show their source in their own message, such as
/// "PATH: File too large") is not told twice.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut above = String::new();
    for cause in e.chain() {
        let message = cause.to_string();
        if above.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
        above = message;
    }
    text
}

/// True when the error is stdout (or another pipe) having been closed by the reader.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// True when the ledger's database could not be reached (a server down, the network cut):
/// nothing to fix, run again later.
fn is_unreachable_ledger(e: &anyhow::Error) -> bool {
    let unreachable = |s: &eraser_store::Error| s.kind() == eraser_store::ErrorKind::Unavailable;
    e.chain().any(|cause| {
        cause
            .downcast_ref::<eraser_store::Error>()
            .is_some_and(unreachable)
            || cause
                .downcast_ref::<LedgerUnavailable>()
                .and_then(|l| l.cause.downcast_ref::<eraser_store::Error>())
                .is_some_and(unreachable)
    })
}

/// True when the user must fix the invocation, the configuration or the ledger file.
/// Looks at contexts (`downcast_ref`) and at every error in the source chain.
fn is_usage(e: &anyhow::Error) -> bool {
    e.downcast_ref::<UsageError>().is_some()
        || e.downcast_ref::<LedgerUnavailable>().is_some()
        || e.chain().any(|cause| {
            cause.is::<UsageError>()
                || cause.is::<ConfigError>()
                || cause.is::<crate::token_file::SaveTokenError>()
                || cause.is::<LedgerUnavailable>()
                || cause
                    .downcast_ref::<eraser_store::Error>()
                    .is_some_and(|s| {
                        matches!(
                            s.kind(),
                            eraser_store::ErrorKind::Stop | eraser_store::ErrorKind::Retry
                        )
                    })
        })
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn statuses_map_to_the_documented_codes() {
        assert_eq!(code(&Ok(Status::Done)), 0);
        assert_eq!(code(&Ok(Status::SomeFailed)), 1);
        assert_eq!(code(&Ok(Status::ProblemsFound)), 1);
        assert_eq!(code(&Ok(Status::Refused)), 3);
        assert_eq!(code(&Ok(Status::Interrupted(StopSignal::Interrupt))), 130);
        assert_eq!(code(&Ok(Status::Interrupted(StopSignal::Terminate))), 143);
        assert_eq!(code(&Ok(Status::Interrupted(StopSignal::Hangup))), 129);
    }

    #[test]
    fn usage_error_is_2_even_under_context() {
        let err = anyhow::Error::new(UsageError("-o is a file".into())).context("cannot start");
        assert_eq!(code(&Err(err)), 2);
    }

    #[test]
    fn usage_context_is_2() {
        let err =
            anyhow::anyhow!("bad header").context(UsageError("cannot build the client".into()));
        assert_eq!(code(&Err(err)), 2);
    }

    #[test]
    fn config_error_is_2() {
        let err = anyhow::Error::new(ConfigError::NoConfigDir);
        assert_eq!(code(&Err(err)), 2);
    }

    #[test]
    fn store_bug_is_1() {
        let err = anyhow::Error::new(eraser_store::Error::IllegalTransition {
            sha256: "00".into(),
            from: "new".into(),
            to: "done".into(),
        });
        assert_eq!(code(&Err(err)), 1);
    }

    #[test]
    fn unusable_ledger_mid_command_is_2() {
        let ledger = "/x/ledger.db".to_owned();
        let corrupt = eraser_store::Error::Corrupt {
            ledger: ledger.clone(),
            detail: "not a database".into(),
        };
        let busy = eraser_store::Error::Busy { ledger };
        assert_eq!(
            code(&Err(anyhow::Error::new(corrupt).context("listing images"))),
            2
        );
        assert_eq!(code(&Err(anyhow::Error::new(busy))), 2);
    }

    #[test]
    fn a_ledger_database_that_cannot_be_reached_is_3() {
        let unreachable = || eraser_store::Error::Unavailable {
            ledger: "postgres://h/db".into(),
            detail: "connection refused".into(),
        };
        let mid_run = anyhow::Error::new(unreachable()).context("recording job j-1");
        let at_open = anyhow::Error::new(LedgerUnavailable {
            ledger: "postgres://h/db".into(),
            cause: Box::new(unreachable()),
        });
        assert_eq!(code(&Err(mid_run)), 3);
        assert_eq!(code(&Err(at_open)), 3);
    }

    #[test]
    fn ledger_that_cannot_be_opened_is_2() {
        let err = anyhow::Error::new(LedgerUnavailable {
            ledger: "/x/ledger.db".into(),
            cause: Box::new(eraser_store::Error::UnknownRun { run: 1 }),
        });
        assert_eq!(format!("{err:#}"), "run 1 is not in the ledger");
        assert_eq!(code(&Err(err)), 2);
    }

    #[test]
    fn one_line_tells_a_cause_its_error_already_shows_only_once() {
        let io = std::io::Error::from_raw_os_error(libc::EFBIG);
        let shown = format!("/out/.a.jpg.part: {io}");
        #[derive(Debug, thiserror::Error)]
        #[error("{shown}")]
        struct ShowsSource {
            shown: String,
            source: std::io::Error,
        }
        let err = anyhow::Error::new(ShowsSource { shown, source: io })
            .context("downloading the result for /in/a.png");

        assert_eq!(
            one_line(&err),
            "downloading the result for /in/a.png: /out/.a.jpg.part: File too large (os error 27)"
        );
    }

    #[test]
    fn one_line_keeps_every_distinct_cause_in_order() {
        let err = anyhow::anyhow!("no space")
            .context("writing /out/a.jpg")
            .context("placing image 1");

        assert_eq!(
            one_line(&err),
            "placing image 1: writing /out/a.jpg: no space"
        );
    }

    #[test]
    fn other_errors_are_1() {
        assert_eq!(code(&Err(anyhow::anyhow!("the disk is on fire"))), 1);
    }

    #[test]
    fn broken_pipe_is_0_and_found_through_context() {
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let err = Err::<(), _>(io)
            .context("writing the list")
            .map(|()| Status::Done);
        assert_eq!(code(&err), 0);
        assert!(err.as_ref().is_err_and(is_broken_pipe));
    }
}
