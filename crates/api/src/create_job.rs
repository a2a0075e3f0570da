//! `POST {base}/api/magiceraser/v3/ai-image-watermark-remove-auto/create-job`: one multipart
//! part `original_image_file`, streamed from disk with its length known, optionally checked
//! against the caller's sha256 while it streams.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use reqwest::Url;
use reqwest::multipart::{Form, Part};
use sha2::{Digest, Sha256};
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, Take};
use tokio_util::io::ReaderStream;

use crate::model::CODE_SUCCESS;
use crate::response::{Answer, refusal};
use crate::{Client, CreateJob, Error, ImageFormat, JobId, Result};

const CREATE_JOB_PATH: [&str; 5] = [
    "api",
    "magiceraser",
    "v3",
    "ai-image-watermark-remove-auto",
    "create-job",
];
/// Multipart field the web app uses for the image.
pub(crate) const FILE_FIELD: &str = "original_image_file";
/// Bytes read per chunk of the upload.
const CHUNK: usize = 64 * 1024;
/// Bytes needed to recognise every supported format.
const HEAD: usize = 12;

/// One create-job call with its retries ([`Client::submit`]).
#[derive(Debug)]
pub struct Submitted {
    /// The job the service created, or why there is none.
    pub result: Result<JobId>,
    /// Attempts that went out whole and got no answer ([`Error::maybe_delivered`]): each may
    /// have created a job, and a charge, besides the one returned (the service offers no way
    /// to ask). Counted so the caller can say so; an attempt cut before its last byte, or that
    /// never connected, cannot have created anything and is not counted.
    pub lost_replies: u32,
}

impl Client {
    /// [`Client::submit`], for callers that need only the outcome.
    pub async fn create_job(&self, job: &CreateJob<'_>) -> Result<JobId> {
        self.submit(job).await.result
    }

    /// Uploads one image and returns the job the service created for it.
    ///
    /// The file is checked before anything is sent: a regular file, not empty, at most
    /// `max_upload_bytes`, starting with JPEG/PNG/WEBP magic bytes ([`Error::InvalidInput`]
    /// otherwise). The part's Content-Type comes from those bytes, never from the extension.
    /// With `expected_sha256`, a file whose bytes differ aborts the request before its last
    /// chunk ([`Error::InputChanged`]). Each retry reopens the file. With
    /// [`ClientBuilder::throttled_uploads_to_caller`](crate::ClientBuilder::throttled_uploads_to_caller),
    /// a 429 is returned at once (its `Retry-After` in [`Error::retry_after`]).
    ///
    /// A reply lost after the whole image had gone out is retried like any other unanswered
    /// request, and counted in [`Submitted::lost_replies`].
    pub async fn submit(&self, job: &CreateJob<'_>) -> Submitted {
        let url = self.endpoint(&CREATE_JOB_PATH);
        let lost = AtomicU32::new(0);
        let hand_back =
            |e: &Error| self.throttled_uploads_to_caller() && e.http_status() == Some(429);
        let result = self
            .with_retry_unless("create-job", hand_back, || async {
                let outcome = self.attempt_create_job(job, &url).await;
                if let Err(e) = &outcome
                    && e.maybe_delivered()
                {
                    lost.fetch_add(1, Ordering::Relaxed);
                }
                outcome
            })
            .await;
        Submitted {
            result,
            lost_replies: lost.into_inner(),
        }
    }

    /// One create-job request; a connection failure or timeout once the last byte of the image
    /// had gone out is [`Error::maybe_delivered`].
    async fn attempt_create_job(&self, job: &CreateJob<'_>, url: &Url) -> Result<JobId> {
        let upload = Upload::open(job, self.inner.settings.max_upload_bytes).await?;
        let failure = Arc::clone(&upload.failure);
        let delivered = Arc::clone(&upload.delivered);
        let part = Part::stream_with_length(reqwest::Body::wrap_stream(upload.stream), upload.size)
            .file_name(upload.file_name)
            .mime_str(upload.format.mime())
            .map_err(|e| Error::Config {
                reason: format!("bad part content type: {e}"),
            })?;
        let form = Form::new().part(FILE_FIELD, part);
        let sent = self
            .inner
            .api
            .post(url.clone())
            .multipart(form)
            .send()
            .await;
        // The stream's own verdict wins: a changed file is never reported as a network error.
        if let Some(err) = take_failure(&failure, job.path) {
            return Err(err);
        }
        let answer = match sent {
            Ok(response) => self.read_answer(response).await,
            Err(e) => Err(self.transport_error(&e, url)),
        };
        let answer = answer.map_err(|e| {
            if delivered.load(Ordering::Acquire) {
                e.after_delivery()
            } else {
                e
            }
        })?;
        job_id_of(answer, self.secret())
    }
}

/// The job a create-job answer announces: a failure code is an [`Error::Api`] (its message
/// cleaned of control characters and of `secret`), a success without a usable `job_id` is an
/// [`Error::Protocol`].
pub(crate) fn job_id_of(answer: Answer, secret: Option<&str>) -> Result<JobId> {
    if answer.envelope.code != CODE_SUCCESS {
        return Err(refusal(answer.envelope, secret));
    }
    answer
        .envelope
        .job_id()
        .map_err(|reason| Error::Protocol { reason })
}

/// What went wrong inside the body stream, kept for the caller of `send`.
#[derive(Debug)]
enum StreamFailure {
    /// Bytes or length differ from what the caller hashed.
    Changed,
    /// Reading the file failed.
    Read(io::Error),
}

type FailureSlot = Arc<Mutex<Option<StreamFailure>>>;

fn take_failure(slot: &FailureSlot, path: &Path) -> Option<Error> {
    let failure = match slot.lock() {
        Ok(mut guard) => guard.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    }?;
    Some(match failure {
        StreamFailure::Changed => Error::InputChanged {
            path: path.to_owned(),
        },
        StreamFailure::Read(source) => Error::Io {
            path: path.to_owned(),
            source,
        },
    })
}

/// One attempt's upload: the opened, checked file and its part metadata.
struct Upload {
    stream: CheckedFileStream,
    size: u64,
    file_name: String,
    format: ImageFormat,
    failure: FailureSlot,
    /// Set once the stream has handed over its last byte.
    delivered: Arc<AtomicBool>,
}

impl Upload {
    async fn open(job: &CreateJob<'_>, max_bytes: u64) -> Result<Self> {
        let path = job.path;
        let io_err = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let invalid = |reason: String| Error::InvalidInput {
            path: path.to_owned(),
            reason,
        };

        let mut file = File::open(path).await.map_err(io_err)?;
        let meta = file.metadata().await.map_err(io_err)?;
        if !meta.is_file() {
            return Err(invalid("not a regular file".into()));
        }
        let size = meta.len();
        if size == 0 {
            return Err(invalid("empty file, not an image".into()));
        }
        if size > max_bytes {
            return Err(invalid(format!(
                "{size} bytes, over the limit of {max_bytes}"
            )));
        }
        let mut head = Vec::with_capacity(HEAD);
        (&mut file)
            .take(HEAD as u64)
            .read_to_end(&mut head)
            .await
            .map_err(io_err)?;
        let format = ImageFormat::detect(&head)
            .ok_or_else(|| invalid("not a JPEG, PNG or WEBP image".into()))?;
        file.seek(io::SeekFrom::Start(0)).await.map_err(io_err)?;

        let failure = FailureSlot::default();
        let delivered = Arc::new(AtomicBool::new(false));
        let stream = CheckedFileStream::new(
            file,
            size,
            job.expected_sha256,
            Arc::clone(&failure),
            Arc::clone(&delivered),
        );
        let file_name = match job.file_name {
            Some(name) => part_file_name(name),
            None => default_file_name(path, format),
        };
        Ok(Self {
            stream,
            size,
            file_name,
            format,
            failure,
            delivered,
        })
    }
}

/// The path's file name (lossy for non-UTF-8 names), or `image.<ext>` when there is none.
fn default_file_name(path: &Path, format: ImageFormat) -> String {
    match path.file_name() {
        Some(name) if !name.is_empty() => part_file_name(&name.to_string_lossy()),
        _ => format!("image.{}", format.extension()),
    }
}

/// Escapes a filename for the part header the way browsers do (`"`, CR, LF and other
/// control characters percent-encoded), so no name can break out of the header.
fn part_file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for ch in name.chars() {
        if ch == '"' || ch.is_ascii_control() {
            out.push_str(&format!("%{:02X}", u32::from(ch)));
        } else {
            out.push(ch);
        }
    }
    out
}

/// Streams exactly `size` bytes of a file, hashing them when an expected digest is given.
///
/// The final chunk is held back until the digest is known: on a mismatch (or a file that
/// shrank) the stream yields an error instead, so the request body never completes and the
/// server never sees a whole upload.
struct CheckedFileStream {
    inner: ReaderStream<Take<File>>,
    size: u64,
    sent: u64,
    check: Option<(Sha256, [u8; 32])>,
    failure: FailureSlot,
    finished: bool,
    /// Raised when the last chunk is handed over.
    done: Arc<AtomicBool>,
}

impl CheckedFileStream {
    /// `done` is raised when the last chunk goes out (never when it is withheld).
    fn new(
        file: File,
        size: u64,
        expected: Option<[u8; 32]>,
        failure: FailureSlot,
        done: Arc<AtomicBool>,
    ) -> Self {
        Self {
            inner: ReaderStream::with_capacity(file.take(size), CHUNK),
            size,
            sent: 0,
            check: expected.map(|digest| (Sha256::new(), digest)),
            failure,
            finished: false,
            done,
        }
    }

    fn fail(&mut self, failure: StreamFailure, message: &'static str) -> io::Error {
        self.finished = true;
        let kind = match &failure {
            StreamFailure::Read(e) => e.kind(),
            StreamFailure::Changed => io::ErrorKind::InvalidData,
        };
        match self.failure.lock() {
            Ok(mut slot) => *slot = Some(failure),
            Err(poisoned) => *poisoned.into_inner() = Some(failure),
        }
        io::Error::new(kind, message)
    }
}

impl Stream for CheckedFileStream {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(
                this.fail(StreamFailure::Read(e), "reading the input failed")
            ))),
            Poll::Ready(Some(Ok(chunk))) => {
                this.sent = this.sent.saturating_add(chunk.len() as u64);
                if let Some((hasher, _)) = this.check.as_mut() {
                    hasher.update(&chunk);
                }
                // The last chunk: it goes out only if the whole file hashed as expected.
                if this.sent >= this.size
                    && let Some((hasher, expected)) = this.check.take()
                    && <[u8; 32]>::from(hasher.finalize()) != expected
                {
                    let err = this.fail(
                        StreamFailure::Changed,
                        "the input changed since it was hashed",
                    );
                    return Poll::Ready(Some(Err(err)));
                }
                if this.sent >= this.size {
                    this.done.store(true, Ordering::Release);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                if this.sent < this.size {
                    let err = this.fail(StreamFailure::Changed, "the input shrank while uploading");
                    return Poll::Ready(Some(Err(err)));
                }
                this.finished = true;
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use futures_util::StreamExt;

    use super::*;

    fn sha256(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    async fn stream_for(
        bytes: &[u8],
        expected: Option<[u8; 32]>,
    ) -> (CheckedFileStream, FailureSlot, tempfile::NamedTempFile) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(bytes).unwrap();
        let file = File::open(tmp.path()).await.unwrap();
        let slot = FailureSlot::default();
        let stream = CheckedFileStream::new(
            file,
            bytes.len() as u64,
            expected,
            Arc::clone(&slot),
            Arc::default(),
        );
        (stream, slot, tmp)
    }

    /// Collects the bytes a stream yields before its first error (and whether it erred).
    async fn drain(mut stream: CheckedFileStream) -> (Vec<u8>, bool) {
        let mut yielded = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => yielded.extend_from_slice(&chunk),
                Err(_) => return (yielded, true),
            }
        }
        (yielded, false)
    }

    #[tokio::test]
    async fn matching_bytes_stream_through_whole() {
        let bytes: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let (stream, slot, _tmp) = stream_for(&bytes, Some(sha256(&bytes))).await;
        let (yielded, erred) = drain(stream).await;
        assert!(!erred);
        assert_eq!(yielded, bytes);
        assert!(slot.lock().unwrap().is_none());
    }

    #[tokio::test]
    async fn a_digest_mismatch_withholds_the_last_chunk() {
        let bytes: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let (stream, slot, _tmp) = stream_for(&bytes, Some(sha256(b"something else"))).await;
        let (yielded, erred) = drain(stream).await;
        assert!(erred);
        assert!(yielded.len() < bytes.len(), "the whole file went out");
        assert!(matches!(
            *slot.lock().unwrap(),
            Some(StreamFailure::Changed)
        ));
    }

    #[tokio::test]
    async fn the_last_chunk_going_out_raises_the_done_flag_and_a_withheld_one_does_not() {
        let bytes: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let (whole, _slot, _tmp) = stream_for(&bytes, Some(sha256(&bytes))).await;
        let done = Arc::clone(&whole.done);
        drain(whole).await;
        assert!(done.load(Ordering::Acquire));

        let (changed, _slot, _tmp) = stream_for(&bytes, Some(sha256(b"something else"))).await;
        let withheld = Arc::clone(&changed.done);
        drain(changed).await;
        assert!(!withheld.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn a_single_chunk_file_that_changed_yields_nothing() {
        let (stream, _slot, _tmp) = stream_for(b"\xFF\xD8\xFFsmall", Some(sha256(b"other"))).await;
        let (yielded, erred) = drain(stream).await;
        assert!(erred);
        assert!(yielded.is_empty());
    }

    #[tokio::test]
    async fn a_file_that_shrank_is_an_error_not_a_short_upload() {
        let bytes = vec![7u8; 1000];
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(&bytes[..600]).unwrap();
        let file = File::open(tmp.path()).await.unwrap();
        let slot = FailureSlot::default();
        let stream = CheckedFileStream::new(file, 1000, None, Arc::clone(&slot), Arc::default());
        let (yielded, erred) = drain(stream).await;
        assert!(erred);
        assert_eq!(yielded.len(), 600);
        assert!(matches!(
            *slot.lock().unwrap(),
            Some(StreamFailure::Changed)
        ));
    }

    #[tokio::test]
    async fn bytes_appended_after_opening_are_not_sent() {
        let bytes = vec![1u8; 100];
        let (stream, _slot, mut tmp) = stream_for(&bytes, Some(sha256(&bytes))).await;
        tmp.write_all(b"appended").unwrap();
        let (yielded, erred) = drain(stream).await;
        assert!(!erred);
        assert_eq!(yielded, bytes);
    }

    #[test]
    fn part_file_names_cannot_break_the_header() {
        assert_eq!(part_file_name("a\"b\r\nc.jpg"), "a%22b%0D%0Ac.jpg");
        assert_eq!(
            part_file_name("Horizon Towers ü.jpg"),
            "Horizon Towers ü.jpg"
        );
    }

    #[test]
    fn a_path_without_file_name_gets_a_generic_one() {
        assert_eq!(
            default_file_name(Path::new("/"), ImageFormat::Png),
            "image.png"
        );
        assert_eq!(
            default_file_name(Path::new("/x/photo.JPG"), ImageFormat::Jpeg),
            "photo.JPG"
        );
    }
}
