//! Writing a run's results to a directory all at once: everything goes to a
//! temporary sibling first and is renamed into place at the end, so an error
//! never leaves half-written output behind.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A directory being filled; [`Staged::commit`] moves it into place.
pub struct Staged {
    tmp: tempfile::TempDir,
    dest: PathBuf,
}

impl Staged {
    /// Prepares to write `dest`, which must not exist or be an empty directory.
    pub fn new(dest: &Path) -> Result<Staged> {
        if dest.exists() {
            let empty = fs::read_dir(dest).with_context(|| format!("{}: cannot read output directory", dest.display()))?.next().is_none();
            if !empty {
                bail!("{}: output directory exists and is not empty; refusing to overwrite it", dest.display());
            }
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).with_context(|| format!("{}: cannot create directory", parent.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".canon-out-")
            .tempdir_in(&parent)
            .with_context(|| format!("{}: cannot create a temporary directory", parent.display()))?;
        Ok(Staged { tmp, dest: dest.to_path_buf() })
    }

    /// The temporary directory to write into.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Moves the finished directory into place.
    pub fn commit(self) -> Result<()> {
        if self.dest.exists() {
            fs::remove_dir(&self.dest).with_context(|| format!("{}: cannot replace empty directory", self.dest.display()))?;
        }
        let tmp = self.tmp.keep();
        fs::rename(&tmp, &self.dest).with_context(|| format!("{}: cannot move output into place", self.dest.display()))?;
        Ok(())
    }
}
