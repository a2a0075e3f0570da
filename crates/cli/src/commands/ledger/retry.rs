//! `eraser ledger retry`: failed images back to `new` (timed-out jobs back to `processing`), or
//! with `--done` the named done images back to `new`.

use std::io::Write;

use anyhow::Context as _;
use eraser_store::{Ledger, Sha256};

use super::{STDOUT, parse_sha};
use crate::commands::say;
use crate::exit::{Status, UsageError};

pub(super) async fn retry(
    ledger: &Ledger,
    shas: &[String],
    quiet: bool,
    out: &mut impl Write,
) -> anyhow::Result<Status> {
    let parsed = parse_shas(shas)?;
    let retried = if parsed.is_empty() {
        ledger.retry_failed(None).await?
    } else {
        ledger.retry_failed(Some(&parsed)).await?
    };
    writeln!(
        out,
        "{} failed image(s) put back to new; the next `eraser run` tries them again",
        retried.to_upload
    )
    .context(STDOUT)?;
    if retried.to_poll > 0 {
        writeln!(
            out,
            "{} timed-out job(s) put back to processing; the next `eraser run` polls them \
             (no new upload unless the service says the job failed)",
            retried.to_poll
        )
        .context(STDOUT)?;
    }
    let moved = retried.to_upload + retried.to_poll;
    say_left_alone(parsed.len(), moved, "failed", quiet);
    Ok(Status::Done)
}

/// Sha256s given on the command line; the first that is not one is a usage error.
fn parse_shas(shas: &[String]) -> Result<Vec<Sha256>, UsageError> {
    shas.iter()
        .map(|s| {
            parse_sha(s).ok_or_else(|| UsageError(format!("{s:?} is not a sha256 (64 hex digits)")))
        })
        .collect()
}

/// Tells on stderr how many of the images named were left as they were.
fn say_left_alone(named: usize, moved: u64, what: &str, quiet: bool) {
    let skipped = (named as u64).saturating_sub(moved);
    if skipped > 0 && !quiet {
        say(&format!(
            "{skipped} of the images given were not {what} and were left as they are"
        ));
    }
}

/// `ledger retry --done SHA…`: done images whose result cannot be had any more go back to `new`
/// (the next run pays for them again, so only the images named are touched).
pub(super) async fn retry_done(
    ledger: &Ledger,
    shas: &[String],
    quiet: bool,
    out: &mut impl Write,
) -> anyhow::Result<Status> {
    let parsed = parse_shas(shas)?;
    let mut n = 0u64;
    for sha in &parsed {
        match ledger.reset_done(sha).await {
            Ok(()) => n += 1,
            Err(
                eraser_store::Error::IllegalTransition { .. }
                | eraser_store::Error::UnknownImage { .. },
            ) => {}
            Err(e) => return Err(anyhow::Error::new(e).context(format!("resetting {sha}"))),
        }
    }
    writeln!(
        out,
        "{n} done image(s) put back to new; the next `eraser run` uploads them again (each costs a credit)"
    )
    .context(STDOUT)?;
    say_left_alone(parsed.len(), n, "done (or not in the ledger)", quiet);
    Ok(Status::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::ledger::fixture::Fixture;

    #[tokio::test]
    async fn retry_done_puts_only_the_named_done_images_back_to_new() {
        let fx = Fixture::new().await;
        let done = fx.record(&["a"], b"image a").await;
        let other = fx.record(&["b"], b"image b").await;
        for claim in fx.ledger.claim_for_upload(fx.run, 2).await.expect("claim") {
            fx.ledger
                .mark_processing(fx.run, &claim.sha256, "job")
                .await
                .expect("processing");
        }
        let record = eraser_store::DoneRecord {
            output_url: "http://cdn/x.jpg".into(),
            output_path: "/out/a.jpg".into(),
            ..Default::default()
        };
        fx.ledger.mark_done(&done, &record).await.expect("done");
        let mut out = Vec::new();

        retry_done(
            &fx.ledger,
            &[done.to_string(), other.to_string()],
            true,
            &mut out,
        )
        .await
        .expect("retry --done");

        assert!(String::from_utf8_lossy(&out).starts_with("1 done image(s)"));
        let counts = fx.ledger.status_counts().await.expect("counts");
        assert_eq!((counts.new, counts.done, counts.processing), (1, 0, 1));
    }

    #[tokio::test]
    async fn retry_puts_failed_images_back_to_new() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a"], b"image a").await;
        fx.ledger.claim_for_upload(fx.run, 1).await.expect("claim");
        let failure = eraser_store::Failure {
            code: Some(300010),
            message: "no".into(),
            retryable: false,
        };
        fx.ledger
            .mark_failed(fx.run, &sha, &failure)
            .await
            .expect("fail");
        let mut out = Vec::new();
        retry(&fx.ledger, &[sha.to_string()], true, &mut out)
            .await
            .expect("retry");
        assert!(String::from_utf8_lossy(&out).starts_with("1 failed image(s)"));
        assert_eq!(fx.ledger.status_counts().await.expect("counts").new, 1);
    }
}
