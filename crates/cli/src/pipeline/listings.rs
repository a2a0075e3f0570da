//! Folder listings for the scan. The walk takes a folder whole when it lists it exactly as the
//! listing the ledger kept for this OUT (see `eraser_store::ScanSession::keep_listings`): its
//! files need no lookup, and are not even sent. At the end of a complete walk the listings of
//! the folders whose every file is in the ledger as listed are kept again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use eraser_store::Listing;

/// Most kept listings loaded, and most folders tallied, in one scan (memory stays flat: past
/// that, a tree's folders are looked up file by file).
pub const MOST_FOLDERS: usize = 50_000;

/// A folder being listed: its listing and how its files are doing.
struct Tally {
    listing: Listing,
    /// Files found in the ledger as listed, or recorded so by this scan.
    settled: u64,
    /// A file of it is not an input (not an image, unreadable, no output path), or the folder
    /// was listed twice.
    spoiled: bool,
}

/// What the scan knows of folder listings.
#[derive(Default)]
pub struct Listings {
    tallies: HashMap<PathBuf, Tally>,
    /// Folders taken whole.
    pub folders_whole: u64,
}

impl Listings {
    /// The walk listed `folder` so, and took it whole or not; returns how many of its files
    /// were found without a lookup.
    pub fn listed(&mut self, folder: PathBuf, listing: Listing, whole: bool) -> u64 {
        let settled = if whole { listing.files } else { 0 };
        if whole {
            self.folders_whole += 1;
        }
        if self.tallies.len() >= MOST_FOLDERS {
            return settled;
        }
        if let Some(t) = self.tallies.get_mut(&folder) {
            // Listed twice (under two nested INPUT folders): not kept.
            t.spoiled = true;
            return settled;
        }
        self.tallies.insert(
            folder,
            Tally {
                listing,
                settled,
                spoiled: false,
            },
        );
        settled
    }

    /// The file at `path` is in the ledger as listed (found so, or recorded so).
    pub fn settled(&mut self, path: &Path) {
        if let Some(t) = path.parent().and_then(|f| self.tallies.get_mut(f)) {
            t.settled += 1;
        }
    }

    /// The file at `path` is not an input: its folder's listing is not kept.
    pub fn spoiled(&mut self, path: &Path) {
        if let Some(t) = path.parent().and_then(|f| self.tallies.get_mut(f)) {
            t.spoiled = true;
        }
    }

    /// The listings to keep: folders whose every file is in the ledger as listed.
    pub fn into_kept(self) -> Vec<(PathBuf, Listing)> {
        self.tallies
            .into_iter()
            .filter(|(_, t)| !t.spoiled && t.settled == t.listing.files)
            .map(|(folder, t)| (folder, t.listing))
            .collect()
    }
}
