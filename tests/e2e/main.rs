//! End-to-end tests: the real `eraser` binary against the emulator on 127.0.0.1.
//!
//! Each test owns its emulator, its temp tree (inputs, OUT, ledger) and its sealed environment,
//! so tests run in parallel. The binary is the one next to this test executable, built first
//! when it is missing or older than its sources (see `util::eraser_bin`).

/// Shared fixtures: temp tree, the `eraser` command, images, output checks, `wait_for`.
mod util;

/// Bad input: non-images, cut JPEGs, size limit, link loops, odd names, files moving mid-run.
mod bad_input;
/// Concurrent runs on one ledger: each image uploaded once, both OUTs complete.
mod concurrent;
/// Dedupe: identical bytes are uploaded once, within a batch and across batches.
mod dedupe;
/// `--dry-run`: counts what would be uploaded, uploads and writes nothing.
mod dry_run;
/// A broken environment: OUT unwritable or full, a read-only, corrupt or locked ledger.
mod environment;
/// Job failures: exit 1, outputs only for the good, failed left alone unless `--retry-failed`.
mod failures;
/// Transport and service faults (500, 429, drops, garbage, CDN errors, truncation) are absorbed.
mod faults;
/// A hostile service: bad URLs, endless or slow bodies, non-image results; nothing escapes OUT.
mod hostile;
/// SIGINT / SIGTERM / SIGHUP: exit 130 / 143 / 129, and the rerun uploads nothing twice.
mod interrupt;
/// SIGKILL at random moments, then a rerun: valid outputs, no leftovers, bounded extra uploads.
mod kill;
/// `eraser ledger status|list|show|retry|verify|export`.
mod ledger_cmd;
/// The service unreachable mid-run: exit 3, nothing failed for the outage, the rerun completes.
mod outage;
/// Systemic refusal: exit 3 naming the cause, few requests, untried images stay `new`.
mod refusal;
/// Rescans: unchanged files cost no ledger write; deleted, spoiled and returning files are seen.
mod rescan;
/// Reruns: nothing uploaded or downloaded again; deleted outputs come back without uploads.
mod resume;
/// Output layout: mirrored paths, shared stems, file inputs.
mod run;
/// Secrets: the token reaches the service only, at any verbosity; open token files warn.
mod secrets;
/// Settings: flag > env > file > default for each; `config show` sources; ranges, exit 2.
mod settings;
/// Soak (ignored; `just soak`): 10,000 images, every fault, 5 SIGKILLs; outputs valid, RSS flat.
mod soak;
