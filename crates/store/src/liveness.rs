//! Whether a run is alive: its heartbeat, and on this host its process. Both backends judge
//! liveness here; the heartbeat's clock is the backend's (the database's own on PostgreSQL).

/// This machine's name, as recorded on runs.
pub(crate) fn this_host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// What the registry knows of a run, to judge whether it is alive (the SQLite backend's
/// judgement; the PostgreSQL one judges the heartbeat in SQL, in the database's clock).
#[cfg(feature = "sqlite")]
#[derive(Debug)]
pub(crate) struct RunLiveness {
    pub host: String,
    pub pid: i64,
    pub heartbeat_at: chrono::DateTime<chrono::Utc>,
    pub finished: bool,
}

#[cfg(feature = "sqlite")]
impl RunLiveness {
    /// Dead when finished, when its heartbeat is older than `stale_after` (this also covers a
    /// reused pid and runs on other hosts), or when it ran on this host and its process is gone.
    pub fn is_dead(
        &self,
        host: &str,
        now: chrono::DateTime<chrono::Utc>,
        stale_after: std::time::Duration,
    ) -> bool {
        if self.finished {
            return true;
        }
        let stale = now
            .signed_duration_since(self.heartbeat_at)
            .to_std()
            .is_ok_and(|age| age > stale_after);
        stale || (self.host == host && !process_exists(self.pid))
    }
}

/// Whether a process with this pid exists on this host (a zombie counts as gone).
pub(crate) fn process_exists(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        // 0 and negative pids name process groups, never a run.
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission checks; nothing is sent.
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
    alive && !is_zombie(pid)
}

/// A killed process not yet reaped by its parent still answers `kill(pid, 0)`.
fn is_zombie(pid: libc::pid_t) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself hold ") ".
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .is_some_and(|state| state == "Z")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{DateTime, Utc};

    use super::*;

    fn run(host: &str, pid: i64, age: Duration, finished: bool) -> (RunLiveness, DateTime<Utc>) {
        let now = Utc::now();
        let heartbeat_at = now - chrono::Duration::from_std(age).unwrap();
        (
            RunLiveness {
                host: host.into(),
                pid,
                heartbeat_at,
                finished,
            },
            now,
        )
    }

    const STALE: Duration = Duration::from_secs(60);

    #[test]
    fn this_process_with_a_fresh_heartbeat_is_alive() {
        let (r, now) = run(
            &this_host(),
            i64::from(std::process::id()),
            Duration::ZERO,
            false,
        );
        assert!(!r.is_dead(&this_host(), now, STALE));
    }

    #[test]
    fn a_finished_run_is_dead() {
        let (r, now) = run(
            &this_host(),
            i64::from(std::process::id()),
            Duration::ZERO,
            true,
        );
        assert!(r.is_dead(&this_host(), now, STALE));
    }

    #[test]
    fn a_stale_heartbeat_is_dead_even_when_the_pid_exists() {
        let (r, now) = run(
            &this_host(),
            i64::from(std::process::id()),
            STALE * 2,
            false,
        );
        assert!(r.is_dead(&this_host(), now, STALE));
    }

    #[test]
    fn a_reaped_process_on_this_host_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i64::from(child.id());
        child.wait().unwrap();
        let (r, now) = run(&this_host(), pid, Duration::ZERO, false);
        assert!(r.is_dead(&this_host(), now, STALE));
    }

    #[test]
    fn an_unreaped_killed_child_counts_as_dead() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = i64::from(child.id());
        child.kill().unwrap();
        // Wait until the kernel turned it into a zombie (no reaping).
        let pid_t = libc::pid_t::try_from(pid).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !is_zombie(pid_t) {
            assert!(
                std::time::Instant::now() < deadline,
                "child never became a zombie"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let (r, now) = run(&this_host(), pid, Duration::ZERO, false);
        assert!(r.is_dead(&this_host(), now, STALE));
        child.wait().unwrap();
    }

    #[test]
    fn another_hosts_run_is_alive_until_its_heartbeat_goes_stale() {
        let (fresh, now) = run("elsewhere.invalid", 1, Duration::ZERO, false);
        assert!(!fresh.is_dead(&this_host(), now, STALE));
        let (stale, now) = run("elsewhere.invalid", 1, STALE * 2, false);
        assert!(stale.is_dead(&this_host(), now, STALE));
    }

    #[test]
    fn pid_zero_and_negative_pids_are_never_alive() {
        assert!(!process_exists(0));
        assert!(!process_exists(-1));
    }
}
