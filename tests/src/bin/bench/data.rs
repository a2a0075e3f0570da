//! Generated bench data: trees of unique tiny JPEGs, large files for hashing, and ledgers of a
//! million rows written by the `sqlite3` CLI into a ledger eraser itself created.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use eraser_tests::emulator::sample_jpeg;

use crate::BenchResult;

/// Files per generated folder (a photo archive has folders, not one flat directory).
const PER_DIR: usize = 1000;

/// A folder of generated inputs.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The folder given to eraser.
    pub root: PathBuf,
    /// Files in it, all recognised as images.
    pub files: usize,
    /// Their total size.
    pub bytes: u64,
    /// Every file, in creation order.
    pub paths: Vec<PathBuf>,
}

/// Writes `n` distinct tiny JPEGs (one 16×16 picture, each with its own comment segment, so
/// every file has its own sha256) into `root/dNNNN/imgNNNNNNN.jpg`, 1000 per folder. `salt`
/// keeps trees of one bench run apart.
pub fn image_tree(root: &Path, n: usize, salt: u64) -> BenchResult<Tree> {
    let template = sample_jpeg(salt);
    let mut paths = Vec::with_capacity(n);
    let mut bytes = 0u64;
    for i in 0..n {
        let dir = root.join(format!("d{:04}", i / PER_DIR));
        if i.is_multiple_of(PER_DIR) {
            std::fs::create_dir_all(&dir)?;
        }
        let path = dir.join(format!("img{i:07}.jpg"));
        let data = tagged_jpeg(&template, &format!("bench {salt} {i}"));
        std::fs::write(&path, &data)?;
        bytes += data.len() as u64;
        paths.push(path);
    }
    Ok(Tree {
        root: root.to_path_buf(),
        files: n,
        bytes,
        paths,
    })
}

/// Writes `n` distinct photo-sized JPEGs of exactly `size` bytes each into `root/NNNN.jpg`:
/// see [`photo_jpeg`].
pub fn photo_tree(root: &Path, n: usize, size: usize, salt: u64) -> BenchResult<Tree> {
    std::fs::create_dir_all(root)?;
    let mut paths = Vec::with_capacity(n);
    for i in 0..n {
        let path = root.join(format!("photo{i:04}.jpg"));
        std::fs::write(
            &path,
            photo_jpeg(salt.wrapping_mul(1_000_003) ^ i as u64, size)?,
        )?;
        paths.push(path);
    }
    Ok(Tree {
        root: root.to_path_buf(),
        files: n,
        bytes: (n * size) as u64,
        paths,
    })
}

/// Side of a [`photo_jpeg`]'s picture, in pixels: its noise encodes to about 44 KB.
const PHOTO_SIDE: u32 = 176;

/// A decodable JPEG of exactly `size` bytes, distinct for every `seed`: a picture of seeded
/// noise over a gradient (so most bytes are entropy-coded image data, as in a photo), padded
/// with a comment segment to the size. An error when `size` cannot hold the picture.
pub fn photo_jpeg(seed: u64, size: usize) -> BenchResult<Vec<u8>> {
    use image::ImageEncoder as _;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut rgb = Vec::with_capacity((PHOTO_SIDE * PHOTO_SIDE * 3) as usize);
    for y in 0..PHOTO_SIDE {
        for x in 0..PHOTO_SIDE {
            let base = [
                x * 255 / PHOTO_SIDE,
                y * 255 / PHOTO_SIDE,
                (x + y) * 127 / PHOTO_SIDE,
            ];
            for b in base {
                let noise = rng.u8(..) / 2;
                rgb.push((b as u8 / 2).wrapping_add(noise));
            }
        }
    }
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90).write_image(
        &rgb,
        PHOTO_SIDE,
        PHOTO_SIDE,
        image::ExtendedColorType::Rgb8,
    )?;
    let tag = format!("bench photo {seed} ");
    // A COM segment adds 4 bytes of marker and length to its text.
    let room = size
        .checked_sub(jpeg.len() + 4)
        .filter(|room| *room >= tag.len() && *room <= usize::from(u16::MAX) - 2)
        .ok_or_else(|| {
            format!(
                "a {size}-byte JPEG cannot hold a picture of {} bytes and its tag",
                jpeg.len()
            )
        })?;
    let padded = format!("{tag}{}", "-".repeat(room - tag.len()));
    Ok(tagged_jpeg(&jpeg, &padded))
}

/// `jpeg` with a COM segment holding `tag` right after its SOI marker: still a valid JPEG.
pub fn tagged_jpeg(jpeg: &[u8], tag: &str) -> Vec<u8> {
    let payload = tag.as_bytes();
    let len = u16::try_from(payload.len() + 2).unwrap_or(u16::MAX);
    let payload = &payload[..usize::from(len) - 2];
    let mut out = Vec::with_capacity(jpeg.len() + payload.len() + 4);
    out.extend_from_slice(&jpeg[..2.min(jpeg.len())]);
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&jpeg[2.min(jpeg.len())..]);
    out
}

/// Writes `count` files of `size` pseudo-random bytes that start with the JPEG magic bytes
/// (eraser sniffs the first bytes only), each different.
pub fn big_files(root: &Path, count: usize, size: usize) -> BenchResult<Tree> {
    std::fs::create_dir_all(root)?;
    let mut rng = fastrand::Rng::with_seed(0x6861_7368);
    let mut buf = vec![0u8; size];
    let mut paths = Vec::with_capacity(count);
    for i in 0..count {
        rng.fill(&mut buf);
        buf[..4.min(size)].copy_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0][..4.min(size)]);
        let path = root.join(format!("big{i:04}.jpg"));
        std::fs::write(&path, &buf)?;
        paths.push(path);
    }
    Ok(Tree {
        root: root.to_path_buf(),
        files: count,
        bytes: (count * size) as u64,
        paths,
    })
}

/// Flushes written files to disk, so later timings do not pay for writeback (they stay in the
/// page cache).
pub fn sync() {
    let _ = Command::new("sync").status();
}

/// Whether a program answers `--version` (is installed).
pub fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Fills a ledger that eraser already created (schema and migrations are eraser's own) with
/// `n` images and `n` inputs in one transaction through the `sqlite3` CLI: one image in a
/// thousand failed, one processing, one new, the rest done with their outputs recorded.
pub fn fill_ledger(ledger: &Path, n: u64) -> BenchResult<()> {
    sqlite_script(ledger, &fill_script(n))
        .map_err(|e| format!("sqlite3 could not fill the ledger: {e}").into())
}

/// Runs `script` through `sqlite3 LEDGER` on its stdin; any message on stderr is an error.
fn sqlite_script(ledger: &Path, script: &str) -> BenchResult<()> {
    let mut child = Command::new("sqlite3")
        .arg(ledger)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start sqlite3: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // Waits for a lock another process (or a just-closed connection) still holds.
        stdin.write_all(b".timeout 5000\n")?;
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let errors = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !errors.trim().is_empty() {
        return Err(errors.trim().to_owned().into());
    }
    Ok(())
}

/// Time `sqlite3` alone takes to insert what a first scan records for `n` new files into a
/// ledger eraser created (run 1 must exist): the run's root, `n` images with random sha256
/// values, their inputs and plans (the migrations' triggers keeping the counters as eraser's
/// own writes do), with eraser's writer settings, in one transaction or in commits of
/// `per_commit` rows (as eraser commits a scan). The floor of the schema, for comparison with
/// eraser's ledger writes.
pub fn ledger_insert_floor(
    ledger: &Path,
    n: u64,
    per_commit: Option<u64>,
) -> BenchResult<Duration> {
    let per_commit = per_commit.unwrap_or(n).max(1);
    let mut script = format!(
        "pragma synchronous = normal;
pragma cache_size = -16384;
pragma wal_autocheckpoint = 16384;
create temp table seq as
  with recursive c(i) as (select 0 union all select i + 1 from c where i < {n} - 1)
  select i, randomblob(32) as sha,  -- rowid i + 1
         cast(printf('/floor/photos/d%04d/img%07d.jpg', i / 1000, i) as blob) as path,
         cast(printf('/floor/clean/d%04d/img%07d.jpg', i / 1000, i) as blob) as output
  from c;
.timer on
"
    );
    for lo in (0..n).step_by(usize::try_from(per_commit).unwrap_or(usize::MAX)) {
        let hi = lo + per_commit;
        if lo == 0 {
            script.push_str(
                "begin;
insert into run_roots (run, lo, hi, folder, began_at)
values (1, cast('/floor/photos/' as blob), cast('/floor/photos0' as blob), 1,
        '2026-01-01T00:00:00.000000Z')
on conflict do nothing;
",
            );
        } else {
            script.push_str("begin;\n");
        }
        script.push_str(&format!(
            "insert into images (sha256, size, format, status, created_at, updated_at)
select sha, 100, 'jpeg', 'new', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z'
from seq where rowid > {lo} and rowid <= {hi};
insert into inputs (path, size, mtime_ns, image_id, last_run, last_seen)
select s.path, 100, 1700000000000000000 + s.i, i.id, 1, '2026-01-01T00:00:00.000000Z'
from seq as s join images as i on i.sha256 = s.sha
where s.rowid > {lo} and s.rowid <= {hi};
insert into placements (path, out_root, planned, written, updated_at)
select path, cast('/floor/clean' as blob), output, null, '2026-01-01T00:00:00.000000Z'
from seq where rowid > {lo} and rowid <= {hi};
commit;
"
        ));
    }
    sqlite_timed(ledger, &script).map_err(|e| format!("sqlite3 insert floor: {e}").into())
}

/// Time `sqlite3` alone takes for the ledger work of a rescan of every input of a ledger
/// filled by [`ledger_insert_floor`] (all unchanged), for a new run (id 2) into the same OUT,
/// whose first scan walked the folder completely and kept its folders' listings: the version
/// of the inputs read, the listings kept at it loaded (every folder is then taken whole, no
/// lookup per file), the root registered, the complete walk (the two counts of the present
/// inputs under the root, the root stamped as walked, the first walk dropped, files not used
/// that were not seen again forgotten), and the listings kept again. The first scan's walk
/// and listings are recorded first, untimed.
pub fn ledger_rescan_floor(ledger: &Path) -> BenchResult<Duration> {
    let script = "pragma synchronous = normal;
pragma cache_size = -16384;
insert into runs (id, host, pid, command, started_at, heartbeat_at, out_root)
values (2, 'floor', 0, 'floor', '2026-01-02T00:00:00.000000Z', '2026-01-02T00:00:00.000000Z',
        cast('/floor/clean' as blob));
insert into run_roots (run, lo, hi, folder, began_at, walked_at)
values (1, cast('/floor/photos/' as blob), cast('/floor/photos0' as blob), 1,
        '2026-01-01T00:00:00.000000Z', '2026-01-01T12:00:00.000000Z')
on conflict (run, lo) do update set walked_at = excluded.walked_at;
update runs set finished_at = '2026-01-01T12:00:00.000000Z' where id = 1 and finished_at is null;
create temp table folders as
  select distinct substr(path, 1, length(path) - 15) as folder from inputs
  where path > cast('/floor/photos/' as blob) and path < cast('/floor/photos0' as blob);
insert into listings (out_root, folder, digest, files, inputs_version)
select cast('/floor/clean' as blob), folder, randomblob(32), 1000,
       (select n from counters where name = 'inputs_version')
from temp.folders where true
on conflict (out_root, folder) do update
set digest = excluded.digest, files = excluded.files, inputs_version = excluded.inputs_version;
.timer on
select n from counters where name = 'inputs_version';
select count(*), sum(l.files) from listings as l
where l.out_root = (select r.out_root from runs as r where r.id = 2)
  and l.inputs_version = (select n from counters where name = 'inputs_version');
begin immediate;
select n from counters where name = 'inputs_version';
delete from run_roots
where run = 2 and lo > cast('/floor/photos/' as blob) and lo < cast('/floor/photos0' as blob);
insert into run_roots (run, lo, hi, folder, began_at)
select 2, cast('/floor/photos/' as blob), cast('/floor/photos0' as blob), 1,
       '2026-01-02T00:00:01.000000Z'
where coalesce((select w.hi from run_roots as w
                where w.run = 2 and w.lo <= cast('/floor/photos/' as blob)
                order by w.lo desc limit 1) < cast('/floor/photos0' as blob), true)
on conflict do nothing;
select n from counters where name = 'inputs_version';
commit;
begin immediate;
select n from counters where name = 'inputs_version';
select lo, hi, began_at from run_roots where run = 2 order by lo;
select (select count(*) from inputs
        where path >= cast('/floor/photos/' as blob) and path < cast('/floor/photos0' as blob))
     - (select count(*) from inputs
        where path >= cast('/floor/photos/' as blob) and path < cast('/floor/photos0' as blob)
          and missing is not null);
update run_roots set walked_at = '2026-01-02T00:10:00.000000Z' where run = 2;
delete from run_roots
where run <> 2
  and lo in (select w.lo from run_roots as w where w.run = 2)
  and run in (select r.id from runs as r
              where r.finished_at is not null or r.heartbeat_at <= '2026-01-02T00:09:00.000000Z');
delete from rejected_inputs
where run <> 2
  and exists (select 1 from run_roots as w
              where w.run = 2 and w.lo <= rejected_inputs.path and rejected_inputs.path < w.hi);
select n from counters where name = 'inputs_version';
commit;
begin immediate;
select n from counters where name = 'inputs_version';
insert into listings (out_root, folder, digest, files, inputs_version)
select (select r.out_root from runs as r where r.id = 2), folder, randomblob(32), 1000,
       (select n from counters where name = 'inputs_version')
from temp.folders where true
on conflict (out_root, folder) do update
set digest = excluded.digest, files = excluded.files, inputs_version = excluded.inputs_version;
commit;
";
    sqlite_timed(ledger, script).map_err(|e| format!("sqlite3 rescan floor: {e}").into())
}

/// Runs `script` through `sqlite3 LEDGER` and sums the `.timer on` times it prints.
fn sqlite_timed(ledger: &Path, script: &str) -> Result<Duration, String> {
    let out = Command::new("sqlite3")
        .arg(ledger)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(script.as_bytes())?;
            }
            child.wait_with_output()
        })
        .map_err(|e| format!("cannot run sqlite3: {e}"))?;
    let errors = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !errors.trim().is_empty() {
        return Err(errors.trim().to_owned());
    }
    // `.timer on` prints `Run Time: real 0.123 user … sys …` after each statement.
    let secs: f64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("Run Time: real "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .sum();
    Duration::try_from_secs_f64(secs).map_err(|e| format!("sqlite3 printed a bad time: {e}"))
}

/// The SQL of [`fill_ledger`], matching `migrations/sqlite` (0001 images and inputs, 0003
/// placements, 0009 sha256 as 32 bytes; the counters of 0012 kept by its triggers as the rows
/// go in, as they are for eraser's own writes). Each input is placed in one OUT,
/// `/archive/clean`, written when its image is done.
fn fill_script(n: u64) -> String {
    const TS: &str = "'2025-11-03T10:00:00.000000Z'";
    format!(
        "pragma synchronous = off;
begin;
create temp table seq as
  with recursive c(i) as (select 0 union all select i + 1 from c where i < {n} - 1)
  select i,
         case i % 1000 when 0 then 'failed' when 1 then 'processing' when 2 then 'new'
                       else 'done' end as st,
         cast(printf('/archive/photos/d%04d/img%07d.jpg', i / 1000, i) as blob) as path,
         cast(printf('/archive/clean/d%04d/img%07d.jpg', i / 1000, i) as blob) as output
  from c;
insert into images (id, sha256, size, format, status, job_id, output_url, output_path,
                    output_sha256, output_size, attempts, error_code, error_message, retryable,
                    credits_states, need_credits, p_credits, s_credits, raw_response,
                    created_at, updated_at)
select i + 1, randomblob(32), 20000 + i % 100000, 'jpeg', st,
       case when st <> 'new' then printf('%08x-0000-4000-8000-%012x', i, i) end,
       case when st = 'done' then printf('https://cdn.example/output/%08x.jpg', i) end,
       case when st = 'done' then output end,
       case when st = 'done' then printf('%064x', i + 4000000000) end,
       case when st = 'done' then 30000 + i % 1000 end,
       case when st = 'new' then 0 else 1 end,
       case when st = 'failed' then 300010 end,
       case when st = 'failed' then 'Image generation failed.' end,
       case when st = 'failed' then 0 end,
       case when st = 'done' then 2 end,
       case when st = 'done' then 0 end,
       case when st = 'done' then i % 2 end,
       case when st = 'done' then 0 end,
       case when st = 'done' then '{{\"code\":100000}}' end,
       {TS}, {TS}
from seq;
insert into inputs (path, size, mtime_ns, image_id, last_run, last_seen)
select path, 20000 + i % 100000, 1700000000000000000 + i, i + 1, null, {TS}
from seq;
insert into placements (path, out_root, planned, written, updated_at)
select path, cast('/archive/clean' as blob), output,
       case when st = 'done' then output end, {TS}
from seq;
commit;
pragma wal_checkpoint(truncate);
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tagged_jpeg_still_decodes_and_each_tag_gives_other_bytes() {
        let template = sample_jpeg(9);
        let a = tagged_jpeg(&template, "bench 1 0");
        let b = tagged_jpeg(&template, "bench 1 1");
        assert_ne!(a, b);
        let decoded = image::load_from_memory(&a).expect("decodes");
        assert_eq!(decoded.width(), 16);
    }

    #[test]
    fn an_image_tree_holds_n_distinct_files_in_folders_of_a_thousand() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tree = image_tree(dir.path(), 1001, 3).expect("written");
        assert_eq!(tree.paths.len(), 1001);
        assert!(dir.path().join("d0001/img0001000.jpg").is_file());
        let first = std::fs::read(&tree.paths[0]).expect("read");
        let last = std::fs::read(&tree.paths[1000]).expect("read");
        assert_ne!(first, last);
    }

    #[test]
    fn a_photo_jpeg_has_the_size_asked_for_decodes_and_differs_by_seed() {
        let a = photo_jpeg(1, 50_000).expect("encoded");
        let b = photo_jpeg(2, 50_000).expect("encoded");
        assert_eq!((a.len(), b.len()), (50_000, 50_000));
        assert_ne!(a, b);
        let decoded = image::load_from_memory(&a).expect("decodes");
        assert_eq!(decoded.width(), PHOTO_SIDE);
        // Most of the bytes are the picture: the comment segment right after SOI is the rest.
        let comment = usize::from(u16::from_be_bytes([a[4], a[5]])) + 2;
        assert!(comment < a.len() / 4, "comment segment of {comment} bytes");
    }

    #[test]
    fn a_photo_jpeg_too_small_for_its_picture_is_an_error() {
        let error = photo_jpeg(1, 2_000).expect_err("too small");
        assert!(error.to_string().contains("2000-byte JPEG"), "{error}");
    }

    #[test]
    fn the_fill_script_matches_the_migrations_and_keeps_the_counts_exact() {
        if !have("sqlite3") {
            eprintln!("sqlite3 not installed: the fill script is not checked");
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = dir.path().join("ledger.db");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let location = eraser_store::Location::file(&ledger);
        runtime.block_on(async {
            let opened = eraser_store::Ledger::open(&location).await.expect("ledger");
            opened.close().await;
        });

        fill_ledger(&ledger, 3000).expect("filled");

        runtime.block_on(async {
            let filled = eraser_store::Ledger::open_existing(&location)
                .await
                .expect("ledger");
            let counts = filled.status_counts().await.expect("counts");
            assert_eq!((counts.total, counts.done, counts.failed), (3000, 2991, 3));
            let inputs = filled.input_counts().await.expect("counters");
            assert_eq!((inputs.total, inputs.done, inputs.failed), (3000, 2991, 3));
            let credits = filled.credits_used().await.expect("credits");
            assert_eq!(
                credits.p_credits, 1497,
                "a credit for every other done image"
            );
            let report = filled.check_consistency().await.expect("checked");
            assert!(report.is_ok(), "{report:?}");
            filled.close().await;
        });
    }

    #[test]
    fn the_floor_scripts_do_a_scan_and_a_rescan_of_the_migrations_schema() {
        if !have("sqlite3") {
            eprintln!("sqlite3 not installed: the floor scripts are not checked");
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = dir.path().join("ledger.db");
        let location = eraser_store::Location::file(&ledger);
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let opened = eraser_store::Ledger::open(&location).await.expect("ledger");
            let first = opened
                .begin_run("floor", Path::new("/floor/out"))
                .await
                .expect("run 1");
            opened
                .finish_run(first, "complete", "{}")
                .await
                .expect("ended");
            opened.close().await;
        });

        ledger_insert_floor(&ledger, 2500, Some(1000)).expect("insert floor");
        ledger_rescan_floor(&ledger).expect("rescan floor");

        runtime.block_on(async {
            let floored = eraser_store::Ledger::open_existing(&location)
                .await
                .expect("ledger");
            let rescan = eraser_store::RunId(2);
            let progress = floored.run_progress(rescan).await.expect("progress");
            assert_eq!((progress.inputs, progress.images.new), (2500, 2500));
            let scan = floored.begin_scan(rescan).await.expect("scan");
            let kept = scan.kept_listings(100).await.expect("listings");
            assert_eq!(kept.len(), 3, "the rescan's listings stand");
            let report = floored.check_consistency().await.expect("checked");
            assert!(report.is_ok(), "{report:?}");
            floored.close().await;
        });
    }
}
