//! Stopping a run from outside: Ctrl-C (SIGINT) or SIGTERM (`kill`, `timeout`, systemd, docker
//! stop). The first stops gracefully: requests in flight finish and are recorded, so nothing
//! sent is paid for twice by the rerun. A second signal of either kind quits at once.

use std::sync::{Arc, OnceLock};

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::Notify;

/// The signal that stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl StopSignal {
    /// The shell's code for a process ended by this signal (128 + its number).
    pub fn exit_code(self) -> u8 {
        match self {
            StopSignal::Interrupt => 130,
            StopSignal::Terminate => 143,
        }
    }

    /// How the user's terminal names it.
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "Ctrl-C",
            StopSignal::Terminate => "SIGTERM",
        }
    }
}

/// The first stop signal received, shared by the run's loop and the watcher.
#[derive(Clone, Default)]
pub struct Stop {
    /// Woken when the first signal arrives.
    pub notify: Arc<Notify>,
    received: Arc<OnceLock<StopSignal>>,
}

impl Stop {
    /// The signal that asked the run to stop, if one has.
    pub fn requested(&self) -> Option<StopSignal> {
        self.received.get().copied()
    }

    /// Installs the handlers now (a signal from here on no longer kills the process) and
    /// watches for signals on a task. Without handlers (an OS refusal, logged) the signals keep
    /// their default action: the process dies, and the next run resumes as after a kill.
    pub fn watch() -> Stop {
        let stop = Stop::default();
        let handlers = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(int), Ok(term)) => (int, term),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("cannot handle Ctrl-C and SIGTERM gracefully: {e}");
                return stop;
            }
        };
        let watcher = stop.clone();
        tokio::spawn(async move {
            let (mut int, mut term) = handlers;
            let Some(first) = next(&mut int, &mut term).await else {
                return;
            };
            let _ = watcher.received.set(first);
            watcher.notify.notify_waiters();
            watcher.notify.notify_one();
            if let Some(again) = next(&mut int, &mut term).await {
                eprintln!(
                    "eraser: {} again, quitting now; the next run resumes",
                    again.name()
                );
                std::process::exit(i32::from(again.exit_code()));
            }
        });
        stop
    }
}

/// The next stop signal; `None` once neither can arrive any more.
async fn next(int: &mut Signal, term: &mut Signal) -> Option<StopSignal> {
    tokio::select! {
        Some(()) = int.recv() => Some(StopSignal::Interrupt),
        Some(()) = term.recv() => Some(StopSignal::Terminate),
        else => None,
    }
}
