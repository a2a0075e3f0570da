//! `demo`: eraser end to end on a laptop, no account and no network beyond 127.0.0.1.
//!
//! Starts the MagicEraser emulator (jobs take 500 ms), writes ~20 sample photos into
//! `./demo/photos` (JPEG, PNG and WEBP, a subfolder, a few duplicates, one text file), runs the
//! release `eraser` beside this executable with `--ledger ./demo/ledger.db run ./demo/photos -o
//! ./demo/clean`, then `ledger status`, saying what it does at each step. Rerun it to see the
//! ledger at work: nothing is uploaded twice. Delete `./demo` to start over.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use eraser_tests::emulator::{Emulator, Knobs, sample_jpeg, sample_png, sample_webp};

const DEMO: &str = "demo";

fn main() -> ExitCode {
    match demo() {
        Ok(code) => code,
        Err(why) => {
            eprintln!("demo: {why}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> Result<ExitCode, String> {
    let eraser = locate_eraser()?;
    let root = PathBuf::from(DEMO);
    let photos = root.join("photos");
    let clean = root.join("clean");
    let ledger = root.join("ledger.db");
    let rerun = ledger.exists();

    let emu = Emulator::spawn(Knobs {
        processing_time: Duration::from_millis(500),
        ..Knobs::default()
    })
    .map_err(|e| format!("cannot start the emulator on 127.0.0.1: {e}"))?;
    say(&format!(
        "1. Started the MagicEraser emulator: API {}, CDN {} (each job takes 500 ms).",
        emu.api_url(),
        emu.cdn_url()
    ));

    let written = write_photos(&photos).map_err(|e| format!("cannot write sample photos: {e}"))?;
    say(&format!(
        "2. Wrote {} files into {}: {} unique images (JPEG, PNG, WEBP), {} copies of them under \
         other names and in the subfolder trip/, and 1 text file eraser will skip.",
        written.files,
        photos.display(),
        written.unique,
        written.copies
    ));
    if rerun {
        say(&format!(
            "   {} already exists: it remembers these images, so this run uploads nothing and \
             only puts back missing outputs. Delete ./{DEMO} to start over.",
            ledger.display()
        ));
    }

    let api = emu.api_url();
    let mut run = eraser_command(&eraser, &root, &ledger);
    run.arg("run")
        .arg(&photos)
        .arg("-o")
        .arg(&clean)
        .args(["--api-base", &api]);
    say(&format!(
        "3. Running: eraser --ledger {} run {} -o {} --api-base {api}",
        ledger.display(),
        photos.display(),
        clean.display()
    ));
    let status = run
        .status()
        .map_err(|e| format!("cannot start {}: {e}", eraser.display()))?;
    let counters = emu.counters();
    say(&format!(
        "   The service saw {} create-job (one per unique image), {} get-job and {} downloads; \
         eraser exited with {}.",
        counters.create_jobs,
        counters.get_jobs,
        counters.downloads,
        status
            .code()
            .map_or_else(|| "a signal".into(), |c| c.to_string())
    ));

    let mut show = eraser_command(&eraser, &root, &ledger);
    show.args(["ledger", "status"]);
    say(&format!(
        "4. The ledger now: eraser --ledger {} ledger status",
        ledger.display()
    ));
    let shown = show
        .status()
        .map_err(|e| format!("cannot start {}: {e}", eraser.display()))?;
    say(&format!(
        "5. The results are in {} (same folders as the photos). Try `eraser --ledger {} ledger \
         list`, or run the demo again.",
        clean.display(),
        ledger.display()
    ));
    Ok(if status.success() && shown.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The release `eraser` next to this executable.
fn locate_eraser() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot locate myself: {e}"))?;
    let exe = me
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!("eraser{}", std::env::consts::EXE_SUFFIX));
    if exe.is_file() {
        Ok(exe)
    } else {
        Err(format!(
            "{} not found: build it first with `cargo build --release --workspace` \
             (`just demo` does)",
            exe.display()
        ))
    }
}

/// eraser with this demo's ledger, and no user configuration or `ERASER_*` variable in the way
/// (the config folder is `./demo/config`, which holds no file).
fn eraser_command(eraser: &Path, root: &Path, ledger: &Path) -> Command {
    let mut cmd = Command::new(eraser);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ERASER_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("XDG_CONFIG_HOME", root.join("config"))
        .env("NO_PROXY", "127.0.0.1,localhost")
        .arg("--ledger")
        .arg(ledger);
    cmd
}

/// What [`write_photos`] wrote.
struct Written {
    files: usize,
    unique: usize,
    copies: usize,
}

/// 15 unique images (JPEG, PNG and WEBP, some in `trip/`), 5 byte-identical copies under other
/// names and folders, and `notes.txt`. The bytes are the same on every run.
fn write_photos(photos: &Path) -> std::io::Result<Written> {
    let trip = photos.join("trip");
    std::fs::create_dir_all(&trip)?;
    let mut unique = Vec::new();
    for seed in 0..8u64 {
        unique.push((
            photos.join(format!("holiday-{seed:02}.jpg")),
            sample_jpeg(seed),
        ));
    }
    for seed in 8..11u64 {
        unique.push((photos.join(format!("scan-{seed:02}.png")), sample_png(seed)));
    }
    for seed in 11..15u64 {
        unique.push((
            trip.join(format!("beach-{seed:02}.webp")),
            sample_webp(seed),
        ));
    }
    let copies = [
        (photos.join("holiday-00 (copy).jpg"), sample_jpeg(0)),
        (trip.join("holiday-01.jpg"), sample_jpeg(1)),
        (trip.join("same-as-holiday-02.jpg"), sample_jpeg(2)),
        (photos.join("scan-08-again.png"), sample_png(8)),
        (photos.join("beach-11.webp"), sample_webp(11)),
    ];
    for (path, bytes) in unique.iter().chain(&copies) {
        write_if_different(path, bytes)?;
    }
    write_if_different(
        &photos.join("notes.txt"),
        b"Not an image: eraser skips it and counts it.\n",
    )?;
    Ok(Written {
        files: unique.len() + copies.len() + 1,
        unique: unique.len(),
        copies: copies.len(),
    })
}

/// Leaves a file that already holds `bytes` untouched (so its mtime stays and a rerun does not
/// even re-hash it).
fn write_if_different(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match std::fs::read(path) {
        Ok(existing) if existing == bytes => Ok(()),
        _ => std::fs::write(path, bytes),
    }
}

/// One step of the story on stdout; a closed stdout (`demo | head`) is not an error.
fn say(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\n{line}").and_then(|()| out.flush());
}
