//! One review page as HTML: a header saying what is shown, the done images as cards of
//! thumbnails side by side, the failed and unfinished ones as lists, links between pages.
//! Every piece of text is HTML-escaped; every link comes percent-encoded from
//! [`links`](super::links). The style is inline, so the page needs nothing but its folder.

use std::fmt::{self, Display, Formatter};

use indicatif::HumanBytes;

use super::thumbs::Picture;
use super::{Entry, Status, THUMBS_DIR};

const STYLE: &str = include_str!("page.css");

/// `index.html` for the first page, `page-N.html` for the others.
pub(crate) fn file_name(number: usize) -> String {
    match number {
        1 => "index.html".into(),
        n => format!("page-{n}.html"),
    }
}

/// The N of a `page-N.html` name (N ≥ 2), for removing stale pages.
pub(crate) fn number_of(file_name: &str) -> Option<usize> {
    let digits = file_name.strip_prefix("page-")?.strip_suffix(".html")?;
    let n: usize = digits.parse().ok()?;
    (n >= 2 && file_name == self::file_name(n)).then_some(n)
}

/// Counts over all the entries of a review (every page says them).
pub(crate) struct Totals {
    pub total: usize,
    pub done: usize,
    pub failed: usize,
    pub other: usize,
}

impl Totals {
    pub(crate) fn of(entries: &[Entry]) -> Self {
        let count = |f: fn(&Status) -> bool| entries.iter().filter(|e| f(&e.status)).count();
        Self {
            total: entries.len(),
            done: count(|s| matches!(s, Status::Done)),
            failed: count(|s| matches!(s, Status::Failed { .. })),
            other: count(|s| matches!(s, Status::Other { .. })),
        }
    }
}

/// One page: its place among the pages and its entries. `Display` writes the HTML.
pub(crate) struct PageView<'a> {
    /// 1-based.
    pub number: usize,
    pub count: usize,
    /// Index of the page's first entry among all entries.
    pub first: usize,
    pub totals: &'a Totals,
    pub filters: &'a [String],
    pub items: Vec<Item<'a>>,
}

/// An entry with its links and pictures (pictures for done entries only).
pub(crate) struct Item<'a> {
    /// Index among all entries: the element id `entry-N`.
    pub index: usize,
    pub entry: &'a Entry,
    pub input_href: String,
    pub result_href: Option<String>,
    pub input_picture: Option<&'a Picture>,
    pub result_picture: Option<&'a Picture>,
}

/// HTML-escaped text (for element content and double-quoted attributes alike).
struct Esc<'a>(&'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// A path as text: its bytes read as UTF-8, any invalid byte shown as �.
fn shown_path(path: &std::path::Path) -> String {
    path.to_string_lossy().into_owned()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Display for PageView<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let title = match self.count {
            1 => "eraser review".to_string(),
            n => format!("eraser review, page {} of {n}", self.number),
        };
        writeln!(
            f,
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">"
        )?;
        writeln!(
            f,
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        )?;
        writeln!(f, "<meta name=\"color-scheme\" content=\"light dark\">")?;
        writeln!(
            f,
            "<title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>",
            Esc(&title)
        )?;
        self.header(f)?;
        self.nav(f)?;
        writeln!(f, "<main>")?;
        self.sections(f)?;
        writeln!(f, "</main>")?;
        self.nav(f)?;
        writeln!(f, "</body>\n</html>")
    }
}

impl PageView<'_> {
    fn header(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let t = self.totals;
        writeln!(f, "<header>\n<h1>eraser review</h1>")?;
        write!(
            f,
            "<p class=\"summary\">{}",
            plural(t.total, "image", "images")
        )?;
        if t.total > 0 {
            let mut parts = vec![format!("{} done", t.done), format!("{} failed", t.failed)];
            if t.other > 0 {
                parts.push(format!("{} not finished", t.other));
            }
            write!(f, ": {}", parts.join(", "))?;
        }
        writeln!(f, ".</p>")?;
        if !self.filters.is_empty() {
            writeln!(
                f,
                "<p class=\"filter\">Filter: {}.</p>",
                Esc(&self.filters.join(", "))
            )?;
        }
        if self.count > 1 {
            let last = self.first + self.items.len();
            writeln!(
                f,
                "<p class=\"range\">Page {} of {}: images {}–{last}.</p>",
                self.number,
                self.count,
                self.first + 1
            )?;
        }
        writeln!(f, "</header>")
    }

    fn nav(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.count < 2 {
            return Ok(());
        }
        let (n, count) = (self.number, self.count);
        let link = |f: &mut Formatter<'_>, to: usize, rel: &str, text: &str| {
            if to == n || to == 0 || to > count {
                write!(f, "<span class=\"off\">{text}</span>")
            } else {
                write!(f, "<a href=\"{}\" rel=\"{rel}\">{text}</a>", file_name(to))
            }
        };
        writeln!(f, "<nav class=\"pages\" aria-label=\"Pages\">")?;
        link(f, 1, "first", "« First")?;
        link(f, n - 1, "prev", "‹ Previous")?;
        write!(f, "<span>Page {n} of {count}</span>")?;
        link(f, n + 1, "next", "Next ›")?;
        link(f, count, "last", "Last »")?;
        writeln!(f, "\n</nav>")
    }

    fn sections(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.items.is_empty() {
            return writeln!(f, "<p class=\"empty\">No images to show.</p>");
        }
        let with = |want: fn(&Status) -> bool| -> Vec<&Item<'_>> {
            self.items
                .iter()
                .filter(|i| want(&i.entry.status))
                .collect()
        };
        let done = with(|s| matches!(s, Status::Done));
        if !done.is_empty() {
            writeln!(
                f,
                "<section class=\"done\">\n<h2>Done</h2>\n<div class=\"cards\">"
            )?;
            for item in done {
                card(f, item)?;
            }
            writeln!(f, "</div>\n</section>")?;
        }
        let failed = with(|s| matches!(s, Status::Failed { .. }));
        problems(f, "failed", "Failed", &failed)?;
        let unfinished = with(|s| matches!(s, Status::Other { .. }));
        problems(f, "unfinished", "Not finished", &unfinished)
    }
}

/// A section listing failed or unfinished images, when there are any.
fn problems(f: &mut Formatter<'_>, class: &str, heading: &str, items: &[&Item<'_>]) -> fmt::Result {
    if items.is_empty() {
        return Ok(());
    }
    writeln!(
        f,
        "<section class=\"{class}\">\n<h2>{heading}</h2>\n<ul class=\"problems\">"
    )?;
    for item in items {
        problem(f, item)?;
    }
    writeln!(f, "</ul>\n</section>")
}

/// A done image: input and result side by side.
fn card(f: &mut Formatter<'_>, item: &Item<'_>) -> fmt::Result {
    let entry = item.entry;
    writeln!(f, "<article class=\"card\" id=\"entry-{}\">", item.index)?;
    writeln!(
        f,
        "<h3>{}</h3>\n<div class=\"pair\">",
        Esc(&shown_path(&entry.input))
    )?;
    figure(
        f,
        "Original",
        "input",
        Some(&item.input_href),
        item.input_picture,
        Some(entry.input_size),
    )?;
    match &entry.result {
        Some(result) => figure(
            f,
            "Result",
            "result",
            item.result_href.as_deref(),
            item.result_picture,
            Some(result.size),
        )?,
        None => writeln!(
            f,
            "<figure><div class=\"placeholder\">No result file recorded</div>\
             <figcaption>Result</figcaption></figure>"
        )?,
    }
    writeln!(f, "</div>")?;
    write!(f, "<p class=\"meta\">")?;
    meta(f, entry)?;
    if let Some(result) = &entry.result {
        write!(f, "<br>Saved as {}", Esc(&shown_path(&result.path)))?;
    }
    writeln!(f, "</p>\n</article>")
}

/// One side of a card: the thumbnail (or a placeholder) linking to the full file, and a caption.
fn figure(
    f: &mut Formatter<'_>,
    label: &str,
    class: &str,
    href: Option<&str>,
    picture: Option<&Picture>,
    size: Option<u64>,
) -> fmt::Result {
    write!(f, "<figure>")?;
    if let Some(href) = href {
        write!(f, "<a class=\"full {class}\" href=\"{}\">", Esc(href))?;
    }
    let mut dims = None;
    match picture {
        Some(Picture::Thumbnail(t)) => {
            dims = Some(t.image);
            write!(
                f,
                "<img src=\"{THUMBS_DIR}/{}\" width=\"{}\" height=\"{}\" alt=\"{label}\">",
                Esc(&t.file_name),
                t.size.width,
                t.size.height
            )?;
        }
        Some(Picture::Placeholder { dims: d, note }) => {
            dims = *d;
            write!(
                f,
                "<span class=\"placeholder\">No thumbnail: {}</span>",
                Esc(note)
            )?;
        }
        None => write!(f, "<span class=\"placeholder\">No thumbnail</span>")?,
    }
    if href.is_some() {
        write!(f, "</a>")?;
    }
    write!(f, "<figcaption>{label}")?;
    if let Some(size) = size {
        write!(f, " · {}", HumanBytes(size))?;
    }
    if let Some(dims) = dims {
        write!(f, " · {dims}")?;
    }
    writeln!(f, "</figcaption></figure>")
}

/// A failed or unfinished image: its path linking to the file, the reason, the details.
fn problem(f: &mut Formatter<'_>, item: &Item<'_>) -> fmt::Result {
    let entry = item.entry;
    let reason = match &entry.status {
        Status::Failed { reason } => reason.as_str(),
        Status::Other { status } => status.as_str(),
        Status::Done => "done",
    };
    writeln!(
        f,
        "<li id=\"entry-{}\"><a class=\"full input\" href=\"{}\">{}</a>\
         <span class=\"reason\">{}</span><span class=\"meta\">{} · ",
        item.index,
        Esc(&item.input_href),
        Esc(&shown_path(&entry.input)),
        Esc(reason),
        HumanBytes(entry.input_size)
    )?;
    meta(f, entry)?;
    writeln!(f, "</span></li>")
}

/// Job id, time and run of an entry, as far as they are known.
fn meta(f: &mut Formatter<'_>, entry: &Entry) -> fmt::Result {
    match &entry.job_id {
        Some(job) => write!(f, "job <code>{}</code> · ", Esc(job))?,
        None => write!(f, "no job · ")?,
    }
    write!(
        f,
        "<time datetime=\"{}\">{}</time>",
        entry
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        entry.time.format("%Y-%m-%d %H:%M:%S UTC")
    )?;
    if let Some(run) = entry.run {
        write!(f, " · run {run}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_in_text_are_escaped() {
        assert_eq!(
            Esc("<a href=\"x\">Tom & Jerry's</a>").to_string(),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;"
        );
    }

    #[test]
    fn text_without_markup_characters_is_unchanged() {
        assert_eq!(Esc("plain ünïcødé 猫").to_string(), "plain ünïcødé 猫");
    }

    #[test]
    fn the_first_page_is_index_html_and_the_others_are_numbered() {
        assert_eq!(file_name(1), "index.html");
        assert_eq!(file_name(2), "page-2.html");
        assert_eq!(number_of("page-12.html"), Some(12));
        assert_eq!(number_of("index.html"), None);
        assert_eq!(number_of("page-1.html"), None);
        assert_eq!(number_of("page-02.html"), None);
        assert_eq!(number_of("page-x.html"), None);
    }
}
