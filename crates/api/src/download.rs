//! CDN downloads: http(s) only, size-bounded, checked to be an image, written through an
//! [`AtomicFile`] beside the destination. A failed download leaves nothing.

use std::io::Write as _;
use std::path::Path;
use std::time::SystemTime;

use reqwest::header::{LOCATION, RETRY_AFTER};

use sha2::{Digest, Sha256};
use url::Url;

use crate::atomic::AtomicFile;
use crate::error::{display_url, display_url_text};
use crate::retry::parse_retry_after;
use crate::{Client, Downloaded, Error, ImageFormat, Result};

/// Bytes needed to recognise every supported format.
const HEAD: usize = 12;
/// Write buffer for the temp file.
const WRITE_BUFFER: usize = 256 * 1024;

impl Client {
    /// Fetches a result into `dest`, atomically, and returns its sha256, size and format.
    ///
    /// Only `http`/`https` URLs (and redirects) are followed ([`Error::UnsupportedUrl`], nothing
    /// fetched); no API header is sent. The body is bounded by `max_download_bytes`
    /// ([`Error::TooLarge`]), must start like a JPEG/PNG/WEBP ([`Error::NotAnImage`]) and match
    /// its `Content-Length` ([`Error::Truncated`], retryable); it replaces any file at `dest`
    /// only once complete. On any failure `dest` is untouched and nothing is left behind.
    pub async fn download(&self, url: &str, dest: &Path) -> Result<Downloaded> {
        let (file, got) = self.download_staged(url, dest).await?;
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || file.commit())
            .await
            .map_err(|e| io_error(&dest, std::io::Error::other(e)))?
            .map_err(|e| io_error(&dest, e))?;
        Ok(got)
    }

    /// [`Client::download`] left staged: the body is complete and synced to disk in an
    /// [`AtomicFile`] beside `dest` that the caller commits (after recording it, say).
    pub async fn download_staged(
        &self,
        url: &str,
        dest: &Path,
    ) -> Result<(AtomicFile, Downloaded)> {
        let url = download_url(url)?;
        if dest.file_name().is_none() {
            return Err(Error::InvalidInput {
                path: dest.to_owned(),
                reason: "the download destination has no file name".into(),
            });
        }
        self.with_retry("download", || self.download_once(&url, dest))
            .await
    }

    async fn download_once(&self, url: &Url, dest: &Path) -> Result<(AtomicFile, Downloaded)> {
        let shown = || display_url(url);
        let limit = self.inner.settings.max_download_bytes;
        let mut response = self
            .inner
            .cdn
            .get(url.clone())
            .send()
            .await
            .map_err(|e| self.transport_error(&e, url))?;
        let status = response.status();
        if !status.is_success() {
            // A redirect the HTTP stack would not even consider (e.g. to `file:`) comes back
            // as is: name it for what it is.
            if let Some(location) = redirect_target(&response)
                && !matches!(location.scheme(), "http" | "https")
            {
                return Err(Error::UnsupportedUrl {
                    url: display_url(&location),
                });
            }
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            return Err(Error::Http {
                status: status.as_u16(),
                retry_after,
            });
        }
        let expected = response.content_length();
        if expected.is_some_and(|n| n > limit) {
            return Err(Error::TooLarge {
                url: shown(),
                limit,
            });
        }

        let mut hasher = Sha256::new();
        let mut head: Vec<u8> = Vec::with_capacity(HEAD);
        let mut format = None;
        let mut received: u64 = 0;
        // Chunks are gathered and written by one blocking task per `WRITE_BUFFER` (the usual
        // result is one: create, write and fsync in one thread-pool hop).
        let mut pending: Vec<u8> = Vec::new();
        let mut staged: Option<AtomicFile> = None;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    return Err(match self.transport_error(&e, url) {
                        timeout @ Error::Timeout { .. } => timeout,
                        _ => Error::Truncated {
                            url: shown(),
                            received,
                            expected,
                        },
                    });
                }
            };
            received = received.saturating_add(chunk.len() as u64);
            if received > limit {
                return Err(Error::TooLarge {
                    url: shown(),
                    limit,
                });
            }
            if format.is_none() {
                let wanted = HEAD.saturating_sub(head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..wanted]);
                if head.len() >= HEAD {
                    format = Some(
                        ImageFormat::detect(&head)
                            .ok_or_else(|| Error::NotAnImage { url: shown() })?,
                    );
                }
            }
            hasher.update(&chunk);
            pending.extend_from_slice(&chunk);
            if pending.len() >= WRITE_BUFFER {
                staged = Some(write_part(staged, dest, std::mem::take(&mut pending), false).await?);
            }
        }
        if expected.is_some_and(|n| n != received) {
            return Err(Error::Truncated {
                url: shown(),
                received,
                expected,
            });
        }
        let format = match format {
            Some(format) => format,
            None => ImageFormat::detect(&head).ok_or_else(|| Error::NotAnImage { url: shown() })?,
        };
        let staged = write_part(staged, dest, pending, true).await?;
        Ok((
            staged,
            Downloaded {
                sha256: hasher.finalize().into(),
                bytes: received,
                format,
            },
        ))
    }
}

/// Where a 3xx answer points, resolved against the URL that answered.
fn redirect_target(response: &reqwest::Response) -> Option<Url> {
    if !response.status().is_redirection() {
        return None;
    }
    let location = response.headers().get(LOCATION)?.to_str().ok()?;
    response.url().join(location).ok()
}

/// Parses a result URL, refusing anything but http/https with a host.
fn download_url(text: &str) -> Result<Url> {
    let refused = || Error::UnsupportedUrl {
        url: display_url_text(text),
    };
    let url = Url::parse(text.trim()).map_err(|_| refused())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(refused());
    }
    Ok(url)
}

/// Writes `bytes` at the end of the staged file (created beside `dest` on the first part),
/// on a blocking thread; the last part also syncs it to disk.
async fn write_part(
    staged: Option<AtomicFile>,
    dest: &Path,
    bytes: Vec<u8>,
    last: bool,
) -> Result<AtomicFile> {
    let owned = dest.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<AtomicFile> {
        let mut file = match staged {
            Some(file) => file,
            None => AtomicFile::create(&owned)?,
        };
        if let Some(f) = file.file() {
            f.write_all(&bytes)?;
        }
        if last {
            file.sync()?;
        }
        Ok(file)
    })
    .await
    .map_err(|e| io_error(dest, std::io::Error::other(e)))?
    .map_err(|e| io_error(dest, e))
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_urls_are_fetched() {
        assert!(download_url("https://cdn.example/out.jpg").is_ok());
        assert!(download_url("http://127.0.0.1:8/out.jpg").is_ok());
        for url in [
            "file:///etc/passwd",
            "ftp://cdn/x.jpg",
            "data:image/jpeg;base64,AAAA",
            "../x.jpg",
            "",
        ] {
            assert!(
                matches!(download_url(url), Err(Error::UnsupportedUrl { .. })),
                "{url}"
            );
        }
    }
}
