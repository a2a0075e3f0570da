//! Stopping a run from outside: Ctrl-C (SIGINT), SIGTERM (`kill`, `timeout`, systemd, docker
//! stop) or SIGHUP (the terminal closed; left ignored when it was ignored at start, as under
//! `nohup`). The first stops gracefully: requests in flight finish and are recorded, so nothing
//! sent is paid for twice by the rerun. A second signal of any kind quits at once.

use std::io::Write as _;
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
    /// SIGHUP.
    Hangup,
}

impl StopSignal {
    /// The shell's code for a process ended by this signal (128 + its number).
    pub fn exit_code(self) -> u8 {
        match self {
            StopSignal::Hangup => 129,
            StopSignal::Interrupt => 130,
            StopSignal::Terminate => 143,
        }
    }

    /// How the user's terminal names it.
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "Ctrl-C",
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Hangup => "SIGHUP",
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
        let mut handlers = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(int), Ok(term)) => Handlers {
                int,
                term,
                hup: None,
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("cannot handle Ctrl-C and SIGTERM gracefully: {e}");
                return stop;
            }
        };
        if !hangup_ignored() {
            match signal(SignalKind::hangup()) {
                Ok(hup) => handlers.hup = Some(hup),
                Err(e) => tracing::warn!("cannot handle SIGHUP gracefully: {e}"),
            }
        }
        let watcher = stop.clone();
        tokio::spawn(async move {
            let Some(first) = handlers.next().await else {
                return;
            };
            let _ = watcher.received.set(first);
            watcher.notify.notify_waiters();
            watcher.notify.notify_one();
            if let Some(again) = handlers.next().await {
                // The terminal may be gone (SIGHUP): a message that cannot be written is dropped.
                let _ = writeln!(
                    std::io::stderr(),
                    "eraser: {} again, quitting now; the next run resumes",
                    again.name()
                );
                std::process::exit(i32::from(again.exit_code()));
            }
        });
        stop
    }
}

/// The installed signal streams.
struct Handlers {
    int: Signal,
    term: Signal,
    /// None when SIGHUP keeps the disposition it had at start.
    hup: Option<Signal>,
}

impl Handlers {
    /// The next stop signal; `None` once none can arrive any more.
    async fn next(&mut self) -> Option<StopSignal> {
        let hup = async {
            match self.hup.as_mut() {
                Some(hup) => hup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(()) = self.int.recv() => Some(StopSignal::Interrupt),
            Some(()) = self.term.recv() => Some(StopSignal::Terminate),
            Some(()) = hup => Some(StopSignal::Hangup),
            else => None,
        }
    }
}

/// Whether SIGHUP was ignored when eraser started (`nohup`, or a parent that asked for it):
/// then a closed terminal must not stop the run, and no handler is installed over it.
fn hangup_ignored() -> bool {
    let mut current = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current one into `current`, which is valid
    // for writes; nothing is changed.
    let read = unsafe { libc::sigaction(libc::SIGHUP, std::ptr::null(), current.as_mut_ptr()) };
    // SAFETY: sigaction filled `current` when it returned 0.
    read == 0 && unsafe { current.assume_init() }.sa_sigaction == libc::SIG_IGN
}
