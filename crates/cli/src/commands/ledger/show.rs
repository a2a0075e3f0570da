//! `eraser ledger show`: one image and its inputs, found by input path, sha256 or job id.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use eraser_store::{ImageRow, ImageStatus, InputRow, Ledger, RejectKind, RejectedRow};
use serde::Serialize;

use super::{ImageJson, InputJson, RejectedJson, STDOUT, parse_sha, printable};
use crate::exit::Status;

#[derive(Debug, Serialize)]
struct ShowJson<'a> {
    image: Option<ImageJson<'a>>,
    inputs: Vec<InputJson<'a>>,
}

/// Looks `key` up as an existing input path, else a sha256 (64 hex digits), else a job id.
pub(super) async fn show(
    ledger: &Ledger,
    key: &str,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<Status> {
    if let Some(rejected) = find_rejected(ledger, Path::new(key)).await? {
        let text = if json {
            let mut line = serde_json::to_string(&RejectedJson::from(&rejected))
                .context("encoding a rejected file")?;
            line.push('\n');
            line
        } else {
            render_rejected(&rejected)
        };
        out.write_all(text.as_bytes()).context(STDOUT)?;
        return Ok(Status::Done);
    }
    // A path is looked up even when the file is gone: the ledger still holds the input.
    let input = match parse_sha(key) {
        Some(_) => None,
        None => find_input(ledger, Path::new(key)).await?,
    };
    let image =
        if let Some(input) = input {
            Some(ledger.image(&input.sha256).await?.with_context(|| {
                format!("the ledger has no image {} for input {key}", input.sha256)
            })?)
        } else if Path::new(key).exists() {
            anyhow::bail!("{key} is not an input in the ledger")
        } else if let Some(sha) = parse_sha(key) {
            ledger.image(&sha).await?
        } else {
            ledger.image_by_job(key).await?
        }
        .with_context(|| format!("no input, image or job {key} in the ledger"))?;
    let inputs = ledger.inputs_of_image(&image.sha256).await?;

    let text = if json {
        let view = ShowJson {
            image: Some((&image).into()),
            inputs: inputs.iter().map(Into::into).collect(),
        };
        let mut line = serde_json::to_string(&view).context("encoding the image")?;
        line.push('\n');
        line
    } else {
        render_image(&image, &inputs)
    };
    out.write_all(text.as_bytes()).context(STDOUT)?;
    Ok(Status::Done)
}

/// The input row of a path as given: tried absolute, then with symlinks resolved.
async fn find_input(ledger: &Ledger, path: &Path) -> anyhow::Result<Option<InputRow>> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    if let Some(row) = ledger.input(&absolute).await? {
        return Ok(Some(row));
    }
    match std::fs::canonicalize(path) {
        Ok(real) if real != absolute => Ok(ledger.input(&real).await?),
        _ => Ok(None),
    }
}

/// The rejection of a path as given (absolute), unless the path is an input now.
async fn find_rejected(ledger: &Ledger, path: &Path) -> anyhow::Result<Option<RejectedRow>> {
    let Ok(absolute) = std::path::absolute(path) else {
        return Ok(None);
    };
    if ledger.input(&absolute).await?.is_some() {
        return Ok(None);
    }
    Ok(ledger.rejected(&absolute).await?)
}

/// The aligned human block of `ledger show` for a rejected file.
fn render_rejected(r: &RejectedRow) -> String {
    let mut s = String::new();
    let mut row = |label: &str, value: String| {
        let _ = writeln!(s, "{label:>10}  {value}");
    };
    row("path", printable(&r.path.to_string_lossy()).into_owned());
    let outcome = match r.kind {
        RejectKind::Skipped => "skipped (not an image)",
        RejectKind::Error => "error (not used)",
    };
    row("outcome", outcome.into());
    row("reason", r.reason.clone());
    row(
        "seen",
        format!(
            "by run {} at {}",
            r.run,
            r.seen_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    );
    s
}

/// The aligned human block of `ledger show`.
fn render_image(r: &ImageRow, inputs: &[InputRow]) -> String {
    let mut s = String::new();
    let mut row = |label: &str, value: String| {
        let _ = writeln!(s, "{label:>10}  {value}");
    };
    row("sha256", r.sha256.to_string());
    row("status", r.status.to_string());
    row("format", format!("{} ({} bytes)", r.format, r.size));
    row("job", r.job_id.clone().unwrap_or_else(|| "-".into()));
    if let Some(p) = &r.output_path {
        let sha = r
            .output_sha256
            .map_or_else(|| "sha256 unknown".into(), |s| format!("sha256 {s}"));
        let size = r
            .output_size
            .map_or_else(String::new, |n| format!(", {n} bytes"));
        row("result", format!("{} ({sha}{size})", p.display()));
    }
    if let Some(url) = &r.output_url {
        row("url", url.clone());
    }
    row(
        "attempts",
        format!("{} ({} repeat uploads)", r.attempts, r.repeat_uploads),
    );
    if r.error_code.is_some() || r.error_message.is_some() {
        let code = r
            .error_code
            .map_or_else(|| "no code".into(), |c| format!("code {c}"));
        let retry = match r.retryable {
            Some(true) => " (retryable)",
            Some(false) => " (not retryable)",
            None => "",
        };
        row(
            "error",
            format!(
                "{code}: {}{retry}",
                r.error_message.as_deref().unwrap_or("")
            ),
        );
    }
    if r.status == ImageStatus::Done {
        let c = |v: Option<i64>| v.map_or_else(|| "-".into(), |v| v.to_string());
        row(
            "credits",
            format!(
                "states {} need {} p {} s {}",
                c(r.credits_states),
                c(r.need_credits),
                c(r.p_credits),
                c(r.s_credits)
            ),
        );
    }
    row("created", r.created_at.to_rfc3339());
    row("updated", r.updated_at.to_rfc3339());
    row("inputs", inputs.len().to_string());
    for i in inputs {
        let out = match (&i.output_path, &i.planned_output) {
            (Some(o), _) => o.display().to_string(),
            (None, Some(p)) => format!("(not placed yet; planned {})", p.display()),
            (None, None) => "(not placed yet)".into(),
        };
        let gone = i
            .missing
            .map_or_else(String::new, |run| format!(" (not found by run {})", run.0));
        row("", format!("{} → {out}{gone}", i.path.display()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::ledger::fixture::Fixture;

    #[tokio::test]
    async fn show_finds_an_image_by_job_id() {
        let fx = Fixture::new().await;
        let sha = fx.record(&["a"], b"image a").await;
        fx.finish_all(&[(sha, &["a"])], b"result a").await;
        let mut out = Vec::new();
        show(&fx.ledger, "job-0", true, &mut out)
            .await
            .expect("show");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["image"]["sha256"], sha.to_string());
        assert_eq!(v["inputs"].as_array().map(Vec::len), Some(1));
    }
}
