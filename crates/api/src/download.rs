//! CDN downloads: http(s) only, size-bounded, checked to be an image, written to a temp file
//! beside the destination, fsynced and renamed into place. A failed download leaves nothing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use reqwest::header::{LOCATION, RETRY_AFTER};

use sha2::{Digest, Sha256};
use tokio::fs::File;
use tokio::io::{AsyncWriteExt, BufWriter};
use url::Url;

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
    /// fetched); no API header is sent. The body goes to `.<dest-name>.eraser-tmp-<pid>-<rand>` in
    /// `dest`'s folder, bounded by `max_download_bytes` ([`Error::TooLarge`]), must start like a
    /// JPEG/PNG/WEBP ([`Error::NotAnImage`]) and match its `Content-Length`
    /// ([`Error::Truncated`], retryable); it is then fsynced and renamed onto `dest` (replacing
    /// any file there), and the folder fsynced. On any failure the temp file is removed and
    /// `dest` is untouched.
    pub async fn download(&self, url: &str, dest: &Path) -> Result<Downloaded> {
        let url = download_url(url)?;
        let target = Target::new(dest, true)?;
        self.with_retry("download", || self.download_once(&url, &target))
            .await
    }

    /// [`Client::download`] into a staging file that the caller renames again: the file is
    /// fsynced, but not its folder (the caller's own rename and folder fsync make both
    /// durable; a staging file lost in a crash was never recorded anywhere).
    pub async fn download_staged(&self, url: &str, staging: &Path) -> Result<Downloaded> {
        let url = download_url(url)?;
        let target = Target::new(staging, false)?;
        self.with_retry("download", || self.download_once(&url, &target))
            .await
    }

    async fn download_once(&self, url: &Url, target: &Target) -> Result<Downloaded> {
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

        let io_err = |source| Error::Io {
            path: target.dest.clone(),
            source,
        };
        let mut hasher = Sha256::new();
        let mut head: Vec<u8> = Vec::with_capacity(HEAD);
        let mut format = None;
        let mut received: u64 = 0;
        // A body that fits the write buffer (the usual result) is written by one blocking task:
        // create, write, fsync and rename, instead of a thread-pool hop for each.
        let mut small: Vec<u8> = Vec::new();
        let mut streaming: Option<(TempFile, BufWriter<File>)> = None;
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
            if streaming.is_none() && small.len() + chunk.len() > WRITE_BUFFER {
                let mut temp = TempFile::create(target).await?;
                let mut writer = BufWriter::with_capacity(WRITE_BUFFER, temp.file()?);
                writer.write_all(&small).await.map_err(io_err)?;
                small = Vec::new();
                streaming = Some((temp, writer));
            }
            match streaming.as_mut() {
                Some((_, writer)) => writer.write_all(&chunk).await.map_err(io_err)?,
                None => small.extend_from_slice(&chunk),
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
        match streaming {
            Some((mut temp, mut writer)) => {
                writer.flush().await.map_err(io_err)?;
                let file = writer.into_inner();
                file.sync_all().await.map_err(io_err)?;
                drop(file);
                temp.persist(&target.dest).await?;
                if target.sync_dir {
                    let owned = target.clone();
                    tokio::task::spawn_blocking(move || sync_renamed(&owned))
                        .await
                        .map_err(|e| Error::Io {
                            path: target.dir.clone(),
                            source: std::io::Error::other(e),
                        })??;
                }
            }
            None => {
                let owned = target.clone();
                tokio::task::spawn_blocking(move || write_whole(&owned, &small))
                    .await
                    .map_err(|e| Error::Io {
                        path: target.dest.clone(),
                        source: std::io::Error::other(e),
                    })??;
            }
        }
        Ok(Downloaded {
            sha256: hasher.finalize().into(),
            bytes: received,
            format,
        })
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

/// Where a download lands: the destination, its folder and its file name.
#[derive(Clone)]
struct Target {
    dest: PathBuf,
    dir: PathBuf,
    name: OsString,
    /// Whether the rename onto `dest` is made durable here.
    sync_dir: bool,
}

impl Target {
    fn new(dest: &Path, sync_dir: bool) -> Result<Self> {
        let name = dest.file_name().ok_or_else(|| Error::InvalidInput {
            path: dest.to_owned(),
            reason: "the download destination has no file name".into(),
        })?;
        let dir = match dest.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        Ok(Self {
            dest: dest.to_owned(),
            dir,
            name: name.to_owned(),
            sync_dir,
        })
    }

    /// `.<dest-name>.eraser-tmp-<pid>-<rand>` in the destination's folder.
    fn temp_path(&self) -> PathBuf {
        let mut name = OsString::from(".");
        name.push(&self.name);
        // The pid lets a later run tell a dead process's leftover from a live one's download.
        name.push(format!(
            ".eraser-tmp-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        self.dir.join(name)
    }
}

/// A temp file removed on drop (failure, cancellation) unless it was persisted.
struct TempFile {
    path: PathBuf,
    file: Option<File>,
    persisted: bool,
}

impl TempFile {
    async fn create(target: &Target) -> Result<Self> {
        let owned = target.clone();
        let (path, file) = tokio::task::spawn_blocking(move || open_temp(&owned))
            .await
            .map_err(|e| Error::Io {
                path: target.dest.clone(),
                source: std::io::Error::other(e),
            })??;
        Ok(Self {
            path,
            file: Some(File::from_std(file)),
            persisted: false,
        })
    }

    /// The open file, handed out once.
    fn file(&mut self) -> Result<File> {
        self.file.take().ok_or_else(|| Error::Io {
            path: self.path.clone(),
            source: std::io::Error::other("temp file already handed out"),
        })
    }

    async fn persist(&mut self, dest: &Path) -> Result<()> {
        tokio::fs::rename(&self.path, dest)
            .await
            .map_err(|source| Error::Io {
                path: dest.to_owned(),
                source,
            })?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Creates a new temp file beside `target.dest` (a fresh random name when one is taken).
fn open_temp(target: &Target) -> Result<(PathBuf, std::fs::File)> {
    let mut attempts = 0;
    loop {
        let path = target.temp_path();
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 8 => {
                attempts += 1
            }
            Err(source) => {
                return Err(Error::Io {
                    path: target.dest.clone(),
                    source,
                });
            }
        }
    }
}

/// Writes `bytes` to a temp file beside `target.dest`, fsyncs it and renames it onto the
/// destination (folder fsynced when the target asks), all on the calling (blocking) thread.
/// On failure nothing is left behind and the destination is untouched.
fn write_whole(target: &Target, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let (temp, mut file) = open_temp(target)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            std::fs::rename(&temp, &target.dest)
        });
    if let Err(source) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(Error::Io {
            path: target.dest.clone(),
            source,
        });
    }
    if target.sync_dir {
        sync_renamed(target)?;
    }
    Ok(())
}

/// Makes the rename onto `target.dest` durable; when that fails the file is taken back rather
/// than success claimed (the rename may not survive a crash).
fn sync_renamed(target: &Target) -> Result<()> {
    sync_dir(&target.dir).map_err(|source| {
        let _ = std::fs::remove_file(&target.dest);
        Error::Io {
            path: target.dir.clone(),
            source,
        }
    })
}

/// Makes a rename in `dir` durable. Folders cannot be opened for syncing on some platforms;
/// there the rename is as durable as the OS makes it.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    if cfg!(unix) {
        std::fs::File::open(dir)?.sync_all()
    } else {
        Ok(())
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

    #[test]
    fn temp_files_are_hidden_beside_the_destination() {
        let target = Target::new(Path::new("/out/dir/photo.jpg"), true).unwrap();
        let temp = target.temp_path();
        assert_eq!(temp.parent(), Some(Path::new("/out/dir")));
        let name = temp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".photo.jpg.eraser-tmp-"), "{name}");
    }

    #[test]
    fn a_bare_file_name_lands_in_the_current_folder() {
        assert_eq!(
            Target::new(Path::new("x.png"), true).unwrap().dir,
            PathBuf::from(".")
        );
        assert!(Target::new(Path::new("/"), true).is_err());
    }
}
