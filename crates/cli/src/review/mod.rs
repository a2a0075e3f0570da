//! The before/after review page: a static HTML page (more pages past `page_size` entries) showing
//! each done image's input and result side by side as thumbnails, and the failed ones with their
//! reason. It works from `file://` with no server and no network.
//!
//! The caller picks the entries (from the ledger, filtered as the user asked) and describes the
//! filter; [`write`] makes the thumbnails and the pages; [`open`] shows the first page.
//!
//! ```no_run
//! # fn demo(entries: Vec<eraser::review::Entry>) -> Result<(), eraser::review::Error> {
//! use eraser::review::{Options, write, open};
//! let mut options = Options::new("review");
//! options.filters = vec!["status failed".into()];
//! let written = write(&entries, &options, &|done, total| eprintln!("{done}/{total}"))?;
//! open(&written.pages[0])?;
//! # Ok(()) }
//! ```

mod links;
mod opener;
mod page;
mod thumbs;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

pub use opener::open;

use eraser_api::atomic::write as write_atomically;
use page::{Item, PageView, Totals};
use thumbs::{Picture, Source};

/// Entries on one page unless the caller says otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The folder inside the output folder that holds the thumbnails.
pub const THUMBS_DIR: &str = "thumbs";

/// One image as the page shows it. It holds no credential: nothing secret can reach the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The input file, as the OS names it (any bytes).
    pub input: PathBuf,
    /// sha256 of the input's content, 64 hex digits; names its thumbnail.
    pub sha256: String,
    pub input_size: u64,
    pub status: Status,
    /// The stored result, when there is one.
    pub result: Option<ResultFile>,
    /// The service's job id, once the image was accepted.
    pub job_id: Option<String>,
    /// When the image reached its status.
    pub time: DateTime<Utc>,
    /// The run that produced this state.
    pub run: Option<i64>,
}

/// The result file of a done image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultFile {
    pub path: PathBuf,
    pub size: u64,
    /// sha256 of the result's content when known; without it the file is hashed to name its
    /// thumbnail.
    pub sha256: Option<String>,
}

/// Where an image stands, as far as the page is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Processed: input and result are shown side by side.
    Done,
    /// Given up on, for `reason`.
    Failed { reason: String },
    /// Anything else (new, uploading, processing): listed with its status word.
    Other { status: String },
}

/// What to write and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The folder for `index.html`, `page-N.html` and `thumbs/`; created when missing.
    pub out_dir: PathBuf,
    pub page_size: NonZeroUsize,
    /// Threads making thumbnails at once.
    pub threads: NonZeroUsize,
    /// What the entries were chosen by, one phrase each ("status failed", "run 12"), for the
    /// header; empty for everything.
    pub filters: Vec<String>,
}

impl Options {
    /// [`DEFAULT_PAGE_SIZE`] entries a page, a thread per core, no filter.
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        Self {
            out_dir: out_dir.into(),
            page_size: NonZeroUsize::new(DEFAULT_PAGE_SIZE).unwrap_or(NonZeroUsize::MIN),
            threads: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            filters: Vec::new(),
        }
    }
}

/// What [`write`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The pages, first (`index.html`) first.
    pub pages: Vec<PathBuf>,
    /// Thumbnails made by this review.
    pub thumbnails_made: usize,
    /// Thumbnails already in `thumbs/` from an earlier review.
    pub thumbnails_cached: usize,
    /// Files shown with a placeholder, and why.
    pub notes: Vec<Note>,
}

/// A file the page shows without a thumbnail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub path: PathBuf,
    pub reason: String,
}

/// Why a review page could not be written or opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the review folder {}: {error}", path.display())]
    CreateFolder { path: PathBuf, error: io::Error },
    #[error("cannot write {}: {error}", path.display())]
    Write { path: PathBuf, error: io::Error },
    #[error(
        "cannot open the page: this system has no desktop opener eraser knows (xdg-open on Linux, open on macOS)"
    )]
    NoKnownOpener,
    #[error("cannot open the page: `{opener}` is not on PATH")]
    OpenerMissing { opener: &'static str },
    #[error("cannot open the page: cannot run `{opener}`: {error}")]
    OpenerUnusable {
        opener: &'static str,
        error: io::Error,
    },
    #[error("cannot open the page: `{opener}` failed ({status})")]
    OpenerFailed {
        opener: &'static str,
        status: std::process::ExitStatus,
    },
}

/// Writes the review of `entries`, in their order, into `options.out_dir`: thumbnails first
/// (reporting (files done, total) to `progress`), then `index.html` and `page-2.html`, … Pages
/// left from an earlier, longer review are removed. A file that cannot be read or decoded is
/// shown with a placeholder and listed in [`Written::notes`]; only an unwritable folder is an
/// error.
pub fn write(
    entries: &[Entry],
    options: &Options,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Written, Error> {
    let thumbs_dir = options.out_dir.join(THUMBS_DIR);
    fs::create_dir_all(&thumbs_dir).map_err(|error| Error::CreateFolder {
        path: thumbs_dir.clone(),
        error,
    })?;
    let out_dir = links::locate(&options.out_dir);

    let located: Vec<Located> = entries.iter().map(Located::new).collect();
    let (sources, wanted) = thumbnail_sources(entries, &located);
    let pictures = thumbs::show_all(&sources, &thumbs_dir, options.threads, progress)?;

    let totals = Totals::of(entries);
    let chunks: Vec<&[Entry]> = entries.chunks(options.page_size.get()).collect();
    let count = chunks.len().max(1);
    let mut pages = Vec::with_capacity(count);
    for number in 1..=count {
        let first = (number - 1) * options.page_size.get();
        let chunk = chunks.get(number - 1).copied().unwrap_or_default();
        let items = chunk
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let index = first + i;
                let picture = |slot: Option<usize>| slot.map(|s| &pictures[s]);
                Item {
                    index,
                    entry,
                    input_href: links::link(&out_dir, &located[index].input),
                    result_href: located[index]
                        .result
                        .as_deref()
                        .map(|path| links::link(&out_dir, path)),
                    input_picture: picture(wanted[index].input),
                    result_picture: picture(wanted[index].result),
                }
            })
            .collect();
        let view = PageView {
            number,
            count,
            first,
            totals: &totals,
            filters: &options.filters,
            items,
        };
        let path = options.out_dir.join(page::file_name(number));
        write_atomically(&path, view.to_string().as_bytes()).map_err(|error| Error::Write {
            path: path.clone(),
            error,
        })?;
        pages.push(path);
    }
    remove_stale_pages(&options.out_dir, count);

    Ok(summarise(pages, &sources, &pictures))
}

/// An entry's files as links name them (absolute, symlinks resolved).
struct Located {
    input: PathBuf,
    result: Option<PathBuf>,
}

impl Located {
    fn new(entry: &Entry) -> Self {
        Self {
            input: links::locate(&entry.input),
            result: entry.result.as_ref().map(|r| links::locate(&r.path)),
        }
    }
}

/// Where an entry's pictures are among the thumbnail sources (done entries only).
struct Slots {
    input: Option<usize>,
    result: Option<usize>,
}

/// The files to make thumbnails of (done entries' inputs and results, each content once), and
/// for each entry the index of its input's and its result's among them.
fn thumbnail_sources(entries: &[Entry], located: &[Located]) -> (Vec<Source>, Vec<Slots>) {
    #[derive(PartialEq, Eq, Hash)]
    enum Key {
        Content(String),
        File(PathBuf),
    }
    let mut sources = Vec::new();
    let mut seen: HashMap<Key, usize> = HashMap::new();
    let mut slot = |path: &Path, sha256: Option<&str>| {
        // Same content, same thumbnail; a file of unknown content is its own.
        let key = match sha256.filter(|h| thumbs::is_sha256(h)) {
            Some(hash) => Key::Content(hash.to_ascii_lowercase()),
            None => Key::File(path.to_path_buf()),
        };
        *seen.entry(key).or_insert_with(|| {
            sources.push(Source {
                path: path.to_path_buf(),
                sha256: sha256.map(str::to_owned),
            });
            sources.len() - 1
        })
    };
    let wanted = entries
        .iter()
        .zip(located)
        .map(|(entry, at)| match entry.status {
            Status::Done => {
                let input = slot(&at.input, Some(&entry.sha256));
                let result = entry
                    .result
                    .as_ref()
                    .zip(at.result.as_deref())
                    .map(|(r, path)| slot(path, r.sha256.as_deref()));
                Slots {
                    input: Some(input),
                    result,
                }
            }
            Status::Failed { .. } | Status::Other { .. } => Slots {
                input: None,
                result: None,
            },
        })
        .collect();
    (sources, wanted)
}

/// Deletes `page-N.html` for every N past `count` (left by an earlier review of more entries).
fn remove_stale_pages(out_dir: &Path, count: usize) {
    let Ok(listing) = fs::read_dir(out_dir) else {
        return;
    };
    for entry in listing.flatten() {
        let name = entry.file_name();
        let stale = name
            .to_str()
            .and_then(page::number_of)
            .is_some_and(|n| n > count);
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn summarise(pages: Vec<PathBuf>, sources: &[Source], pictures: &[Picture]) -> Written {
    let mut written = Written {
        pages,
        thumbnails_made: 0,
        thumbnails_cached: 0,
        notes: Vec::new(),
    };
    for (source, picture) in sources.iter().zip(pictures) {
        match picture {
            Picture::Thumbnail(t) if t.made => written.thumbnails_made += 1,
            Picture::Thumbnail(_) => written.thumbnails_cached += 1,
            Picture::Placeholder { note, .. } => written.notes.push(Note {
                path: source.path.clone(),
                reason: note.clone(),
            }),
        }
    }
    written
}
