//! `eraser ledger export`: every input with its image's state, streamed as CSV or JSON lines.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use eraser_store::{ImageStatus, InputState, Ledger};
use futures_util::StreamExt as _;
use serde::Serialize;

use super::{InputJson, STDOUT};
use crate::cli::ExportFormat;
use crate::exit::Status;

/// An input with its image's state as one JSON line (paths lossily UTF-8).
#[derive(Debug, Serialize)]
struct InputStateJson<'a> {
    #[serde(flatten)]
    input: InputJson<'a>,
    status: ImageStatus,
    stored_output: Option<Cow<'a, str>>,
    stored_output_sha256: Option<String>,
    output_url: Option<&'a str>,
    error_code: Option<i64>,
    error_message: Option<&'a str>,
}

impl<'a> From<&'a InputState> for InputStateJson<'a> {
    fn from(s: &'a InputState) -> Self {
        Self {
            input: (&s.input).into(),
            status: s.status,
            stored_output: s.image_output_path.as_deref().map(Path::to_string_lossy),
            stored_output_sha256: s.image_output_sha256.map(|h| h.to_string()),
            output_url: s.output_url.as_deref(),
            error_code: s.error_code,
            error_message: s.error_message.as_deref(),
        }
    }
}

/// The CSV columns of `ledger export --format csv`.
const CSV_HEADER: [&str; 13] = [
    "path",
    "size",
    "mtime_ns",
    "sha256",
    "status",
    "planned_output",
    "output_path",
    "stored_output",
    "stored_output_sha256",
    "output_url",
    "error_code",
    "error_message",
    "last_seen",
];

pub(super) async fn export(
    ledger: &Ledger,
    format: ExportFormat,
    out: &mut impl Write,
) -> anyhow::Result<Status> {
    let mut rows = ledger.export_inputs();
    match format {
        ExportFormat::Jsonl => {
            while let Some(state) = rows.next().await {
                let state = state?;
                let line = serde_json::to_string(&InputStateJson::from(&state))
                    .context("encoding an input")?;
                writeln!(out, "{line}").context(STDOUT)?;
            }
        }
        ExportFormat::Csv => {
            let mut csv = csv::Writer::from_writer(&mut *out);
            csv.write_record(CSV_HEADER).map_err(csv_error)?;
            while let Some(state) = rows.next().await {
                csv.write_record(csv_record(&state?)).map_err(csv_error)?;
            }
            csv.flush().context(STDOUT)?;
        }
    }
    Ok(Status::Done)
}

/// One CSV record, in [`CSV_HEADER`] order; paths as raw bytes.
fn csv_record(s: &InputState) -> [Vec<u8>; 13] {
    let opt_path = |p: &Option<PathBuf>| p.as_deref().map_or_else(Vec::new, path_bytes);
    let opt = |v: Option<String>| v.unwrap_or_default().into_bytes();
    let i = &s.input;
    [
        path_bytes(&i.path),
        i.size.to_string().into_bytes(),
        i.mtime_ns.to_string().into_bytes(),
        i.sha256.to_string().into_bytes(),
        s.status.as_str().as_bytes().to_vec(),
        opt_path(&i.planned_output),
        opt_path(&i.output_path),
        opt_path(&s.image_output_path),
        opt(s.image_output_sha256.map(|h| h.to_string())),
        opt(s.output_url.clone()),
        opt(s.error_code.map(|c| c.to_string())),
        opt(s.error_message.clone()),
        i.last_seen.to_rfc3339().into_bytes(),
    ]
}

/// A path's bytes: raw on unix (non-UTF-8 names survive), lossy UTF-8 elsewhere.
fn path_bytes(p: &Path) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        p.as_os_str().as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        p.to_string_lossy().into_owned().into_bytes()
    }
}

/// csv's error hides its io::Error from the source chain; unwrap it so a closed stdout is seen.
fn csv_error(e: csv::Error) -> anyhow::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => anyhow::Error::new(io).context(STDOUT),
        other => anyhow::anyhow!("cannot write CSV: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use eraser_store::InputRow;

    use super::*;
    use crate::commands::ledger::fixture::{Fixture, sha_of};

    fn sample_state(path: PathBuf) -> InputState {
        let now = Utc::now() - Duration::from_secs(1);
        InputState {
            input: InputRow {
                path,
                size: 10,
                mtime_ns: 7,
                sha256: sha_of(b"in"),
                planned_output: Some("/out/a, b.jpg".into()),
                output_path: None,
                last_run: None,
                last_seen: now,
                missing: None,
            },
            status: ImageStatus::Failed,
            image_output_path: None,
            image_output_sha256: None,
            image_output_size: None,
            output_url: None,
            error_code: Some(300010),
            error_message: Some("no \"credits\"\nleft".into()),
        }
    }

    #[test]
    fn csv_rows_round_trip_through_a_csv_reader() {
        let mut wtr = csv::Writer::from_writer(Vec::new());
        wtr.write_record(CSV_HEADER).expect("header");
        wtr.write_record(csv_record(&sample_state("/in/a.png".into())))
            .expect("row");
        let bytes = wtr.into_inner().expect("flush");
        let mut rdr = csv::Reader::from_reader(bytes.as_slice());
        let headers = rdr.headers().expect("headers").clone();
        assert_eq!(headers.iter().collect::<Vec<_>>(), CSV_HEADER);
        let rows: Vec<csv::StringRecord> = rdr.records().collect::<Result<_, _>>().expect("rows");
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][0], "/in/a.png");
        assert_eq!(&rows[0][4], "failed");
        assert_eq!(&rows[0][5], "/out/a, b.jpg");
        assert_eq!(&rows[0][11], "no \"credits\"\nleft");
    }

    #[cfg(unix)]
    #[test]
    fn csv_keeps_non_utf8_path_bytes() {
        use std::os::unix::ffi::OsStrExt as _;
        let raw = std::ffi::OsStr::from_bytes(b"/in/\xff.png");
        assert_eq!(csv_record(&sample_state(raw.into()))[0], b"/in/\xff.png");
    }

    #[cfg(unix)]
    #[test]
    fn jsonl_shows_non_utf8_paths_lossily_instead_of_failing() {
        use std::os::unix::ffi::OsStrExt as _;
        let state = sample_state(std::ffi::OsStr::from_bytes(b"/in/\xff.png").into());
        let line = serde_json::to_string(&InputStateJson::from(&state)).expect("encodes");
        assert!(line.contains("/in/\u{fffd}.png"), "{line}");
        assert!(line.contains("\"status\":\"failed\""), "{line}");
    }

    #[tokio::test]
    async fn export_csv_has_a_header_and_one_row_per_input() {
        let fx = Fixture::new().await;
        fx.record(&["a", "b"], b"image a").await;
        let mut out = Vec::new();
        export(&fx.ledger, ExportFormat::Csv, &mut out)
            .await
            .expect("export");
        let mut rdr = csv::Reader::from_reader(out.as_slice());
        assert_eq!(
            rdr.headers().expect("headers").iter().collect::<Vec<_>>(),
            CSV_HEADER
        );
        assert_eq!(rdr.records().count(), 2);
    }
}
