//! Files written atomically: into a hidden temp file beside the destination, fsynced, renamed
//! onto it, the folder fsynced. Every file eraser writes goes through [`AtomicFile`] (results,
//! their copies, restored results, the config file): a crash or a kill at any moment leaves
//! either the old file or the new one, never a part of one. A temp file is removed when its
//! [`AtomicFile`] is dropped uncommitted; one a killed process left behind carries that
//! process's pid in its name ([`temp_file_pid`]) for a later run to sweep.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use tempfile::TempPath;

/// What temp file names hold after the destination's name.
const MARK: &str = ".eraser-tmp-";

/// A file being written beside its destination, moved onto it by [`AtomicFile::commit`].
#[derive(Debug)]
pub struct AtomicFile {
    temp: TempPath,
    /// The open temp file; `None` for a staged hard link.
    file: Option<File>,
    dest: PathBuf,
}

impl AtomicFile {
    /// A new, empty temp file beside `dest` (whose folder must exist).
    pub fn create(dest: &Path) -> io::Result<Self> {
        let (dir, prefix) = parts(dest)?;
        let named = tempfile::Builder::new().prefix(&prefix).tempfile_in(dir)?;
        let (file, temp) = named.into_parts();
        Ok(Self {
            temp,
            file: Some(file),
            dest: dest.to_path_buf(),
        })
    }

    /// A hard link to `source` staged beside `dest`, to be committed like a written file.
    pub fn link(source: &Path, dest: &Path) -> io::Result<Self> {
        let (dir, prefix) = parts(dest)?;
        let named = tempfile::Builder::new()
            .prefix(&prefix)
            .make_in(dir, |path| std::fs::hard_link(source, path))?;
        Ok(Self {
            temp: named.into_temp_path(),
            file: None,
            dest: dest.to_path_buf(),
        })
    }

    /// The open temp file to write into (`None` for a staged link).
    pub fn file(&mut self) -> Option<&mut File> {
        self.file.as_mut()
    }

    /// Where the file is staged.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Where it goes.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Takes the file to another destination in the same folder (a result's real extension).
    pub fn retarget(&mut self, dest: PathBuf) {
        self.dest = dest;
    }

    /// Flushes the content to disk; done before the file is recorded anywhere, so a record
    /// never names a file whose content a power cut could lose.
    pub fn sync(&mut self) -> io::Result<()> {
        match &self.file {
            Some(file) => file.sync_all(),
            None => Ok(()),
        }
    }

    /// Syncs the content, renames the temp file onto the destination (replacing a file there)
    /// and makes the rename durable. On failure the temp file is removed and the destination
    /// is as it was.
    pub fn commit(mut self) -> io::Result<()> {
        self.sync()?;
        drop(self.file.take());
        let dest = self.dest;
        self.temp.persist(&dest).map_err(|e| e.error)?;
        sync_folder(&dest)
    }
}

/// Writes `bytes` to `dest` atomically (an [`AtomicFile`] created, filled and committed).
pub fn write(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut file = AtomicFile::create(dest)?;
    if let Some(f) = file.file() {
        f.write_all(bytes)?;
    }
    file.commit()
}

/// The pid of the process that left a temp file of [`AtomicFile`] named `name`, if it is one.
pub fn temp_file_pid(name: &OsStr) -> Option<u32> {
    let name = name.to_str()?;
    if !name.starts_with('.') {
        return None;
    }
    let (_, rest) = name.rsplit_once(MARK)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

/// The destination's folder and the temp name's prefix, `.<name>.eraser-tmp-<pid>-`.
fn parts(dest: &Path) -> io::Result<(&Path, OsString)> {
    let name = dest.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", dest.display()),
        )
    })?;
    let dir = match dest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(format!("{MARK}{}-", std::process::id()));
    Ok((dir, prefix))
}

/// Makes a rename in `dest`'s folder durable. Folders cannot be opened for syncing on some
/// platforms; there the rename is as durable as the OS makes it.
fn sync_folder(dest: &Path) -> io::Result<()> {
    let dir = match dest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match File::open(dir) {
        Ok(d) => d.sync_all(),
        Err(_) if cfg!(not(unix)) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn a_committed_file_replaces_the_destination_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.jpg");
        std::fs::write(&dest, b"old").unwrap();
        let mut f = AtomicFile::create(&dest).unwrap();
        f.file().unwrap().write_all(b"new").unwrap();
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            b"old",
            "untouched until committed"
        );
        f.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_file_dropped_uncommitted_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.jpg");
        let mut f = AtomicFile::create(&dest).unwrap();
        f.file().unwrap().write_all(b"half").unwrap();
        drop(f);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_temp_file_is_hidden_beside_the_destination_and_names_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a b.jpg");
        let f = AtomicFile::create(&dest).unwrap();
        let temp = f.temp_path();
        assert_eq!(temp.parent(), Some(dir.path()));
        let name = temp.file_name().unwrap();
        assert!(name.to_string_lossy().starts_with(".a b.jpg.eraser-tmp-"));
        assert_eq!(temp_file_pid(name), Some(std::process::id()));
        assert_eq!(temp_file_pid(OsStr::new("a.jpg")), None);
        assert_eq!(temp_file_pid(OsStr::new(".a.jpg")), None);
    }

    #[test]
    fn a_staged_link_commits_onto_the_destination_sharing_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("first.jpg");
        std::fs::write(&source, b"result").unwrap();
        let dest = dir.path().join("copy.jpg");
        AtomicFile::link(&source, &dest).unwrap().commit().unwrap();
        use std::os::unix::fs::MetadataExt as _;
        let (a, b) = (
            std::fs::metadata(&source).unwrap(),
            std::fs::metadata(&dest).unwrap(),
        );
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
    }

    #[test]
    fn a_destination_without_a_file_name_is_refused() {
        assert!(AtomicFile::create(Path::new("/")).is_err());
    }
}
