//! The review page in a real browser: headless Chromium loads `index.html` from disk, with no
//! server, and reports what it loaded; the tests below read that report.
//!
//! Inputs and results are real PNG, JPEG and WebP files with odd names (spaces, unicode, `#`,
//! `%`, `?`, quotes, a non-UTF-8 byte) in folders with odd names, the page folder included. A
//! test-only script, added to a copy of `index.html` in the same folder (so every relative link
//! resolves as it does from the page), loads each file a link points to as an image and, after
//! the page's load event, writes into the DOM each thumbnail's decoded size, each link as the
//! browser resolved it with the size of the image found there, and the page links; Chromium's
//! `--dump-dom` hands that back. Every test file has its own width and height, so a size tells
//! which file the browser reached.
//!
//! Chromium is started once for all these tests. It must be Debian's `chromium` at
//! `/usr/bin/chromium`: when it is missing the tests fail if `ERASER_CI` is set (CI installs
//! it), and otherwise print why they could not run and pass.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::num::NonZeroUsize;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use eraser::review::{self, Entry, Options, ResultFile, Status};
use image::{ImageFormat, Rgb, RgbImage};
use url::Url;

const CHROMIUM: &str = "/usr/bin/chromium";
const BROWSER_TIME_LIMIT: Duration = Duration::from_secs(180);
const PAGE_SIZE: usize = 8;

/// An image of the test: its name (raw bytes), size and format.
struct Picture {
    name: &'static [u8],
    width: u32,
    height: u32,
    format: ImageFormat,
}

/// Inputs shown done, each with a result of the same name one pixel wider and taller.
const DONE: [Picture; 6] = [
    picture(b"plain.png", 600, 401, ImageFormat::Png),
    picture(b"with space.jpg", 300, 200, ImageFormat::Jpeg),
    picture("ünïcødé 猫.webp".as_bytes(), 210, 330, ImageFormat::WebP),
    picture(b"hash#1 %41 percent?.png", 120, 90, ImageFormat::Png),
    picture(b"quote\"'&<b>.jpg", 90, 120, ImageFormat::Jpeg),
    picture(b"non-utf8 \xff byte.png", 700, 300, ImageFormat::Png),
];

const fn picture(name: &'static [u8], width: u32, height: u32, format: ImageFormat) -> Picture {
    Picture {
        name,
        width,
        height,
        format,
    }
}

/// Width and height in pixels.
type Size = (u32, u32);

/// What the browser reported, and what each entry's files are.
struct Run {
    /// Report lines, split at tabs.
    report: Vec<Vec<String>>,
    /// Entry element id → (input, result) as the page should link them.
    files: BTreeMap<String, (PathBuf, Option<PathBuf>)>,
    /// Entry element id → the size of each of its files (input, result).
    sizes: BTreeMap<String, (Size, Size)>,
    /// Ids of the done entries with decodable files on the first page.
    decodable: Vec<String>,
    /// Id of the entry whose input is not an image.
    broken: String,
    /// Id of the failed entry.
    failed: String,
    /// The second page, where the page links should lead.
    second_page: PathBuf,
    second_page_exists: bool,
}

/// The one browser run, or `None` (after saying why) when Chromium is not there outside CI.
static RUN: LazyLock<Option<Run>> = LazyLock::new(|| {
    if !Path::new(CHROMIUM).exists() {
        let why = format!("{CHROMIUM} is missing (apt-get install chromium)");
        if std::env::var_os("ERASER_CI").is_some() {
            panic!("the review page's browser test cannot run under CI: {why}");
        }
        eprintln!("review page browser test not run: {why}");
        return None;
    }
    Some(run_browser())
});

fn run_browser() -> Run {
    let scratch = tempfile::tempdir().expect("tempdir");
    let root = fs::canonicalize(scratch.path()).expect("canonical tempdir");
    let inputs = root.join("in put ü #1");
    let results = root.join("out%20 ?");
    let out = root.join("review #out ä");
    fs::create_dir_all(&inputs).expect("mkdir");
    fs::create_dir_all(&results).expect("mkdir");

    let mut entries = Vec::new();
    let mut files = BTreeMap::new();
    let mut sizes = BTreeMap::new();
    let mut decodable = Vec::new();
    for (i, p) in DONE.iter().enumerate() {
        let input = inputs.join(OsStr::from_bytes(p.name));
        let result = results.join(OsStr::from_bytes(p.name));
        save(&input, p.width, p.height, p.format, i as u8);
        save(&result, p.width + 1, p.height + 1, p.format, 100 + i as u8);
        let id = format!("entry-{}", entries.len());
        files.insert(id.clone(), (input.clone(), Some(result.clone())));
        sizes.insert(
            id.clone(),
            ((p.width, p.height), (p.width + 1, p.height + 1)),
        );
        decodable.push(id);
        entries.push(done(&input, &result));
    }

    let broken_input = inputs.join("broken #.jpg");
    fs::write(&broken_input, b"\xff\xd8\xff\xe0 not a JPEG after all").expect("write");
    let broken_result = results.join("broken #.jpg");
    save(&broken_result, 33, 44, ImageFormat::Jpeg, 7);
    let broken = format!("entry-{}", entries.len());
    files.insert(
        broken.clone(),
        (broken_input.clone(), Some(broken_result.clone())),
    );
    entries.push(done(&broken_input, &broken_result));

    let failed_input = inputs.join("failed ¿ \u{7f}.png");
    save(&failed_input, 55, 66, ImageFormat::Png, 8);
    let failed = format!("entry-{}", entries.len());
    files.insert(failed.clone(), (failed_input.clone(), None));
    entries.push(Entry {
        status: Status::Failed {
            reason: "the service refused it: <bad> & \"worse\"".into(),
        },
        result: None,
        job_id: None,
        ..done(&failed_input, &failed_input)
    });
    assert_eq!(entries.len(), PAGE_SIZE, "the first page is full");

    let next_page_input = inputs.join("next page.png");
    save(&next_page_input, 77, 88, ImageFormat::Png, 9);
    entries.push(done(&next_page_input, &next_page_input));

    let options = Options {
        page_size: NonZeroUsize::new(PAGE_SIZE).expect("non-zero"),
        threads: NonZeroUsize::new(2).expect("non-zero"),
        ..Options::new(&out)
    };
    let written = review::write(&entries, &options, &|_, _| {}).expect("the review is written");
    assert_eq!(written.pages.len(), 2);

    let probe_page = out.join("probe.html");
    let page = fs::read_to_string(out.join("index.html")).expect("read index.html");
    let probed = page.replacen("</body>", &format!("<script>{PROBE}</script>\n</body>"), 1);
    assert_ne!(probed, page, "the probe script is in");
    fs::write(&probe_page, probed).expect("write the probe page");

    let dom = dump_dom(&probe_page, &root.join("chromium"));
    let second_page = out.join("page-2.html");
    Run {
        report: report_of(&dom),
        files,
        sizes,
        decodable,
        broken,
        failed,
        second_page_exists: second_page.is_file(),
        second_page,
    }
}

/// Runs on the page copy: loads each linked file as an image, and after the load event (which
/// waits for all those images) writes the report as tab-separated lines in `#probe-report`.
const PROBE: &str = r#"
(() => {
  const box = document.createElement('div');
  box.hidden = true;
  document.body.appendChild(box);
  const probes = [];
  for (const a of document.querySelectorAll('main a.full')) {
    const img = new Image();
    img.src = a.href;
    box.appendChild(img);
    probes.push([a, img]);
  }
  const side = (a) => (a && a.classList.contains('result')) ? 'result' : 'input';
  const entry = (el) => el.closest('[id^="entry-"]').id;
  addEventListener('load', () => {
    const lines = [];
    for (const img of document.querySelectorAll('main img')) {
      lines.push(['thumb', entry(img), side(img.closest('a')), img.complete,
                  img.naturalWidth, img.naturalHeight].join('\t'));
    }
    for (const [a, img] of probes) {
      lines.push(['link', entry(a), side(a), img.naturalWidth, img.naturalHeight, a.href].join('\t'));
    }
    for (const a of document.querySelectorAll('nav a')) lines.push(['nav', a.rel, a.href].join('\t'));
    for (const p of document.querySelectorAll('main .placeholder')) {
      lines.push(['placeholder', entry(p)].join('\t'));
    }
    const pre = document.createElement('pre');
    pre.id = 'probe-report';
    pre.textContent = '\n' + lines.join('\n') + '\n';
    document.body.appendChild(pre);
  });
})();
"#;

/// Loads `page` in headless Chromium with a fresh profile and returns the DOM after load.
fn dump_dom(page: &Path, scratch: &Path) -> String {
    fs::create_dir_all(scratch).expect("mkdir");
    let dom_path = scratch.join("dom.html");
    let log_path = scratch.join("chromium.log");
    let url = Url::from_file_path(page).expect("an absolute page path");
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
        ])
        .arg(format!(
            "--user-data-dir={}",
            scratch.join("profile").display()
        ))
        .arg("--dump-dom")
        .arg(url.as_str())
        .stdin(Stdio::null())
        .stdout(File::create(&dom_path).expect("create dom.html"))
        .stderr(File::create(&log_path).expect("create chromium.log"))
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if started.elapsed() > BROWSER_TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {BROWSER_TIME_LIMIT:?}; its log:\n{}",
                fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success(),
        "chromium failed ({status}); its log:\n{log}"
    );
    fs::read_to_string(&dom_path).expect("read the dumped DOM")
}

/// The report's lines out of the dumped DOM, split at tabs.
fn report_of(dom: &str) -> Vec<Vec<String>> {
    let start = dom
        .find("<pre id=\"probe-report\">")
        .unwrap_or_else(|| panic!("no report in the DOM; the probe did not run:\n{dom}"));
    let body = &dom[start..];
    let body = &body[body.find('>').expect("tag end") + 1..body.find("</pre>").expect("pre end")];
    let text = body
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

fn save(path: &Path, width: u32, height: u32, format: ImageFormat, seed: u8) {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x % 251) as u8, (y % 241) as u8, seed])
    })
    .save_with_format(path, format)
    .expect("save a test image");
}

fn done(input: &Path, result: &Path) -> Entry {
    Entry {
        input: input.to_path_buf(),
        sha256: sha256_hex(input),
        input_size: fs::metadata(input).expect("stat").len(),
        status: Status::Done,
        result: Some(ResultFile {
            path: result.to_path_buf(),
            size: fs::metadata(result).expect("stat").len(),
            sha256: Some(sha256_hex(result)),
        }),
        job_id: Some("job-7".into()),
        time: Utc
            .with_ymd_and_hms(2025, 1, 2, 3, 4, 5)
            .single()
            .expect("a time"),
        run: Some(3),
    }
}

fn sha256_hex(path: &Path) -> String {
    use sha2::Digest as _;
    eraser_store::Sha256(sha2::Sha256::digest(fs::read(path).expect("read")).into()).to_string()
}

/// The report lines of one kind.
fn lines<'a>(run: &'a Run, kind: &str) -> Vec<&'a [String]> {
    run.report
        .iter()
        .filter(|l| l[0] == kind)
        .map(|l| &l[1..])
        .collect()
}

fn file_of(href: &str) -> PathBuf {
    Url::parse(href)
        .unwrap_or_else(|e| panic!("{href} is not a URL: {e}"))
        .to_file_path()
        .unwrap_or_else(|()| panic!("{href} is not a file URL"))
}

fn size(width: &str, height: &str) -> Size {
    (
        width.parse().expect("a width"),
        height.parse().expect("a height"),
    )
}

#[test]
fn every_thumbnail_on_the_first_page_loads_and_decodes() {
    let Some(run) = RUN.as_ref() else { return };
    let thumbs = lines(run, "thumb");
    let mut expected: Vec<(String, String)> = run
        .decodable
        .iter()
        .flat_map(|id| [(id.clone(), "input".into()), (id.clone(), "result".into())])
        .collect();
    expected.push((run.broken.clone(), "result".into()));
    let mut seen: Vec<(String, String)> = thumbs
        .iter()
        .map(|t| (t[0].clone(), t[1].clone()))
        .collect();
    expected.sort();
    seen.sort();
    assert_eq!(
        seen, expected,
        "one thumbnail per decodable file on the page"
    );
    for t in thumbs {
        let (id, side, complete) = (&t[0], &t[1], &t[2]);
        let (width, height) = size(&t[3], &t[4]);
        assert!(
            complete == "true" && width > 0 && height > 0,
            "{id} {side}: not loaded"
        );
        let Some(&(input, result)) = run.sizes.get(id) else {
            continue;
        };
        let (full_w, full_h) = if side == "input" { input } else { result };
        let longest = full_w.max(full_h).min(480);
        assert_eq!(width.max(height), longest, "{id} {side}: {width}×{height}");
        let expected_w = f64::from(full_w) * f64::from(longest) / f64::from(full_w.max(full_h));
        assert!(
            (f64::from(width) - expected_w).abs() <= 1.0,
            "{id} {side}: {width}×{height} for {full_w}×{full_h}"
        );
    }
}

#[test]
fn each_link_on_the_first_page_leads_the_browser_to_its_file() {
    let Some(run) = RUN.as_ref() else { return };
    let links = lines(run, "link");
    let mut linked = Vec::new();
    for l in &links {
        let (id, side, href) = (&l[0], &l[1], &l[4]);
        let (input, result) = run.files.get(id).expect("a known entry");
        let want = if side == "input" {
            input.clone()
        } else {
            result.clone().expect("a result")
        };
        assert_eq!(file_of(href), want, "{id} {side}: {href}");
        if let Some(&(input_size, result_size)) = run.sizes.get(id) {
            let want_size = if side == "input" {
                input_size
            } else {
                result_size
            };
            assert_eq!(
                size(&l[2], &l[3]),
                want_size,
                "{id} {side}: the browser found another file at {href}"
            );
        }
        linked.push((id.clone(), side.clone()));
    }
    for (id, (_, result)) in &run.files {
        assert!(
            linked.contains(&(id.clone(), "input".into())),
            "{id} has no input link"
        );
        if result.is_some() {
            assert!(
                linked.contains(&(id.clone(), "result".into())),
                "{id} has no result link"
            );
        }
    }
}

#[test]
fn a_file_that_is_not_an_image_shows_a_placeholder() {
    let Some(run) = RUN.as_ref() else { return };
    let placeholders: Vec<&String> = lines(run, "placeholder").iter().map(|p| &p[0]).collect();
    assert_eq!(placeholders, [&run.broken]);
}

#[test]
fn the_failed_image_is_listed_with_a_link_to_its_input() {
    let Some(run) = RUN.as_ref() else { return };
    let failed_links: Vec<_> = lines(run, "link")
        .into_iter()
        .filter(|l| l[0] == run.failed)
        .collect();
    assert_eq!(failed_links.len(), 1);
    assert_eq!(file_of(&failed_links[0][4]), run.files[&run.failed].0);
}

#[test]
fn the_page_links_lead_to_the_second_page() {
    let Some(run) = RUN.as_ref() else { return };
    let next: Vec<_> = lines(run, "nav")
        .into_iter()
        .filter(|l| l[0] == "next")
        .collect();
    assert!(!next.is_empty(), "no link to the next page");
    for l in next {
        assert_eq!(file_of(&l[1]), run.second_page);
    }
    assert!(run.second_page_exists);
}
