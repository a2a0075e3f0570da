//! Live counters shared by the pipeline's stages, and how they are shown: indicatif bars on a
//! terminal, a plain line every few seconds otherwise, nothing with `--quiet`.

use std::io::{IsTerminal, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Counters updated by every stage (relaxed atomics: they are for display and the summary).
#[derive(Debug, Default)]
pub struct Counters {
    pub found: AtomicU64,
    pub skipped: AtomicU64,
    pub input_errors: AtomicU64,
    pub hashed: AtomicU64,
    pub recorded: AtomicU64,
    pub uploads: AtomicU64,
    pub repeat_uploads: AtomicU64,
    pub resumed: AtomicU64,
    pub in_flight: AtomicU64,
    pub downloads: AtomicU64,
    pub copies: AtomicU64,
    pub placed: AtomicU64,
    pub already_done: AtomicU64,
    pub failed: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    pub bytes_downloaded: AtomicU64,
    pub get_jobs: AtomicU64,
    pub retries: AtomicU64,
    /// create-jobs the service refused with 429 (put back in the queue, sent again later).
    pub refused_uploads: AtomicU64,
    pub p_credits: AtomicI64,
    pub s_credits: AtomicI64,
    pub need_credits: AtomicI64,
    /// When the service stopped being reachable (ms since the Unix epoch); 0 while it is.
    unreachable_since_ms: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    /// One job fewer at the service.
    pub fn sub_in_flight(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
    /// The service cannot be reached (from now, unless it already could not).
    pub fn set_unreachable(&self) {
        let now = epoch_ms(SystemTime::now()).max(1);
        let _ = self.unreachable_since_ms.compare_exchange(
            0,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    /// The service answers again.
    pub fn set_reachable(&self) {
        self.unreachable_since_ms.store(0, Ordering::Relaxed);
    }
    /// Adds the credits a finished job reported.
    pub fn add_credits(&self, done: &eraser_api::JobDone) {
        self.p_credits
            .fetch_add(done.p_credits.unwrap_or(0), Ordering::Relaxed);
        self.s_credits
            .fetch_add(done.s_credits.unwrap_or(0), Ordering::Relaxed);
        self.need_credits
            .fetch_add(done.need_credits.unwrap_or(0), Ordering::Relaxed);
    }
}

/// The display; dropped (or `finish`ed) at the end of the run.
pub struct Progress {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts showing `counters` on stderr; `enabled = false` shows nothing.
    pub fn start(counters: Arc<Counters>, enabled: bool) -> Self {
        if !enabled {
            return Self {
                stop: None,
                task: None,
            };
        }
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let started = Instant::now();
        let task = if std::io::stderr().is_terminal() {
            let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
            crate::logging::set_progress_target(mp.clone());
            let style = ProgressStyle::with_template("{prefix:>10} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            let scan = mp.add(
                ProgressBar::new_spinner()
                    .with_style(style.clone())
                    .with_prefix("scan"),
            );
            let work = mp.add(
                ProgressBar::new_spinner()
                    .with_style(style)
                    .with_prefix("work"),
            );
            tokio::spawn(async move {
                loop {
                    scan.set_message(scan_line(&counters));
                    work.set_message(work_line(&counters, started.elapsed(), SystemTime::now()));
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                }
                scan.finish_and_clear();
                work.finish_and_clear();
                crate::logging::clear_progress_target();
                let _ = mp.clear();
            })
        } else {
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = tokio::time::sleep(Duration::from_secs(10)) => {
                            // Dropped when stderr is gone (a closed terminal, a closed pipe).
                            let _ = writeln!(
                                std::io::stderr(),
                                "eraser: {}; {}",
                                scan_line(&counters),
                                work_line(&counters, started.elapsed(), SystemTime::now())
                            );
                        }
                    }
                }
            })
        };
        Self {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the display and waits until it has cleared itself.
    pub async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

fn scan_line(c: &Counters) -> String {
    format!(
        "{} found, {} hashed, {} recorded, {} skipped, {} errors",
        Counters::get(&c.found),
        Counters::get(&c.hashed),
        Counters::get(&c.recorded),
        Counters::get(&c.skipped),
        Counters::get(&c.input_errors),
    )
}

fn work_line(c: &Counters, elapsed: Duration, now: SystemTime) -> String {
    let placed = Counters::get(&c.placed);
    let rate = placed as f64 / elapsed.as_secs_f64().max(0.001);
    let mut line = format!(
        "{} uploaded, {} processing, {} downloaded, {} outputs, {} failed, {:.1}/s",
        Counters::get(&c.uploads),
        Counters::get(&c.in_flight),
        Counters::get(&c.downloads),
        placed,
        Counters::get(&c.failed),
        rate,
    );
    let since = c.unreachable_since_ms.load(Ordering::Relaxed);
    if since > 0 {
        let secs = epoch_ms(now).saturating_sub(since) / 1000;
        line.push_str(&format!(", service unreachable for {secs}s"));
    }
    line
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_line_says_how_long_the_service_has_been_unreachable() {
        let c = Counters::default();
        c.set_unreachable();
        let later = SystemTime::now() + Duration::from_secs(37);

        let line = work_line(&c, Duration::from_secs(60), later);

        assert!(line.ends_with(", service unreachable for 37s"), "{line}");
    }

    #[test]
    fn the_work_line_says_nothing_of_the_service_once_it_answers_again() {
        let c = Counters::default();
        c.set_unreachable();
        c.set_reachable();

        let line = work_line(&c, Duration::from_secs(60), SystemTime::now());

        assert!(!line.contains("unreachable"), "{line}");
    }
}
