//! `eraser ledger status`: images by status, inputs, jobs in flight, credits, failures by code.

use std::fmt::Write as _;
use std::io::Write;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use eraser_store::{CreditsUsed, FailureGroup, HostActivity, InputCounts, Ledger, StatusCounts};
use serde::Serialize;

use super::{STDOUT, counts_line};
use crate::exit::Status;

/// `ledger status --json`.
#[derive(Debug, Serialize)]
struct StatusReport {
    ledger: String,
    images: StatusCounts,
    inputs: InputCounts,
    /// Jobs the service holds (status `processing`).
    in_flight: u64,
    oldest_in_flight: Option<OldestJob>,
    credits: CreditsUsed,
    failures: Vec<FailureGroup>,
    /// The service's processing time per image learned by the last run, in seconds.
    processing_seconds: Option<f64>,
    /// Each host with a run alive, a job in flight or an image done today (local time).
    hosts: Vec<HostActivity>,
}

#[derive(Debug, Serialize)]
struct OldestJob {
    job_id: String,
    sha256: String,
    since: DateTime<Utc>,
    age_seconds: i64,
}

pub(super) async fn status(
    ledger: &Ledger,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<Status> {
    let images = ledger.status_counts().await?;
    let oldest = ledger
        .in_flight(1)
        .await?
        .into_iter()
        .next()
        .map(|job| OldestJob {
            age_seconds: (Utc::now() - job.updated_at).num_seconds().max(0),
            job_id: job.job_id,
            sha256: job.sha256.to_string(),
            since: job.updated_at,
        });
    let report = StatusReport {
        ledger: ledger.location().to_string(),
        images,
        inputs: ledger.input_counts().await?,
        in_flight: images.processing,
        oldest_in_flight: oldest,
        credits: ledger.credits_used().await?,
        failures: ledger.failure_groups().await?,
        processing_seconds: ledger.processing_estimate().await?,
        hosts: ledger.hosts(start_of_today()).await?,
    };
    let text = if json {
        let mut line = serde_json::to_string(&report).context("encoding the status")?;
        line.push('\n');
        line
    } else {
        render_status(&report)
    };
    out.write_all(text.as_bytes()).context(STDOUT)?;
    Ok(Status::Done)
}

/// The aligned human block of `ledger status`.
fn render_status(r: &StatusReport) -> String {
    let mut s = String::new();
    let i = &r.images;
    let mut row = |label: &str, value: String| {
        let _ = writeln!(s, "{label:>10}  {value}");
    };
    row("ledger", r.ledger.clone());
    row("images", counts_line(i));
    row(
        "inputs",
        format!(
            "{} total: {} done, {} failed",
            r.inputs.total, r.inputs.done, r.inputs.failed
        ),
    );
    if r.inputs.skipped + r.inputs.rejected > 0 {
        row(
            "not used",
            format!(
                "{} errors, {} not images (eraser ledger list --rejected)",
                r.inputs.rejected, r.inputs.skipped
            ),
        );
    }
    row(
        "in flight",
        match &r.oldest_in_flight {
            Some(o) => format!(
                "{} jobs; oldest {} for {}",
                r.in_flight,
                o.job_id,
                format_age(o.age_seconds)
            ),
            None => format!("{} jobs", r.in_flight),
        },
    );
    if let Some(seconds) = r.processing_seconds {
        row(
            "service",
            format!("about {seconds:.1} s per image (learned by the last run)"),
        );
    }
    for (n, h) in r.hosts.iter().enumerate() {
        row(
            if n == 0 { "hosts" } else { "" },
            format!(
                "{}: {} run{} alive, {} in flight, {} done today",
                h.host,
                h.runs_alive,
                if h.runs_alive == 1 { "" } else { "s" },
                h.in_flight,
                h.done_since
            ),
        );
    }
    row(
        "credits",
        format!(
            "p {} s {} need {}",
            r.credits.p_credits, r.credits.s_credits, r.credits.need_credits
        ),
    );
    for f in &r.failures {
        let code = f
            .code
            .map_or_else(|| "no code".to_string(), |c| format!("code {c}"));
        row("failed", format!("{} × {code}: {}", f.count, f.message));
    }
    if !r.failures.is_empty() {
        row("see", "eraser ledger list --status failed".into());
    }
    s
}

/// Midnight of this machine's day, as a moment.
fn start_of_today() -> DateTime<Utc> {
    let today = chrono::Local::now().date_naive();
    today
        .and_time(chrono::NaiveTime::MIN)
        .and_local_timezone(chrono::Local)
        .earliest()
        .map_or_else(
            || today.and_time(chrono::NaiveTime::MIN).and_utc(),
            |t| t.to_utc(),
        )
}

/// `75` → `1m15s`; `7300` → `2h01m`.
fn format_age(secs: i64) -> String {
    match secs {
        ..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::ledger::fixture::Fixture;

    #[test]
    fn ages_are_short_and_readable() {
        assert_eq!(format_age(5), "5s");
        assert_eq!(format_age(75), "1m15s");
        assert_eq!(format_age(7300), "2h01m");
        assert_eq!(format_age(90_000), "1d01h");
    }

    #[test]
    fn status_json_has_the_documented_shape() {
        let report = StatusReport {
            ledger: "/l.db".into(),
            images: StatusCounts {
                total: 3,
                new: 1,
                uploading: 0,
                processing: 1,
                done: 1,
                failed: 0,
            },
            inputs: InputCounts {
                total: 4,
                done: 2,
                failed: 0,
                skipped: 1,
                rejected: 1,
            },
            in_flight: 1,
            oldest_in_flight: None,
            credits: CreditsUsed::default(),
            failures: vec![],
            processing_seconds: Some(1.5),
            hosts: vec![HostActivity {
                host: "nas".into(),
                runs_alive: 1,
                in_flight: 4,
                done_since: 12,
            }],
        };
        let v: serde_json::Value = serde_json::to_value(&report).expect("json");
        assert_eq!(v["processing_seconds"], 1.5);
        assert!(render_status(&report).contains("about 1.5 s per image"));
        assert!(
            render_status(&report).contains("hosts  nas: 1 run alive, 4 in flight, 12 done today")
        );
        assert_eq!(v["hosts"][0]["host"], "nas");
        assert_eq!(v["hosts"][0]["done_since"], 12);
        for key in ["total", "new", "uploading", "processing", "done", "failed"] {
            assert!(v["images"][key].is_u64(), "images.{key}");
        }
        for key in ["total", "done", "failed", "skipped", "rejected"] {
            assert!(v["inputs"][key].is_u64(), "inputs.{key}");
        }
        for key in [
            "in_flight",
            "oldest_in_flight",
            "credits",
            "failures",
            "ledger",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
    }

    #[tokio::test]
    async fn status_json_counts_a_real_ledger() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a", "b"], b"image a").await;
        fx.finish_all(&[(sha, &["a", "b"])], b"result a").await;
        fx.record(&["c"], b"image c").await;
        let mut out = Vec::new();
        status(&fx.ledger, true, &mut out).await.expect("status");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("one json object");
        assert_eq!(v["images"]["total"], 2);
        assert_eq!(v["images"]["done"], 1);
        assert_eq!(v["images"]["new"], 1);
        assert_eq!(v["inputs"]["total"], 3);
        assert_eq!(v["ledger"], fx.path("ledger.db").display().to_string());
        // The fixture's run is this process, alive; its job was done today.
        assert_eq!(v["hosts"].as_array().map(Vec::len), Some(1));
        assert!(
            v["hosts"][0]["host"]
                .as_str()
                .is_some_and(|h| !h.is_empty())
        );
        assert_eq!(v["hosts"][0]["runs_alive"], 1);
        assert_eq!(v["hosts"][0]["done_since"], 1);
    }
}
