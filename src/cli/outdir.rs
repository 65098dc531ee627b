//! Writing a run's results to a directory all at once: everything goes to a
//! temporary sibling first and is renamed into place at the end, so an error
//! never leaves half-written output behind.
//!
//! The output directory is where canon writes and nowhere else: it must not
//! exist or be empty, must not be a symbolic link (canon would write where
//! the link points), and must not be at or inside a host directory the job
//! mounts, which is never modified.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A directory being filled; [`Staged::commit`] moves it into place.
pub struct Staged {
    tmp: tempfile::TempDir,
    dest: PathBuf,
}

impl Staged {
    /// Prepares to write `dest`, checking it first: it must not exist or be
    /// an empty directory, must not be a symbolic link, and must not be at or
    /// inside any of the host directories in `untouched` (the job's mounts).
    /// Nothing is created before every check has passed.
    pub fn new<'a>(dest: &Path, untouched: impl IntoIterator<Item = &'a Path>) -> Result<Staged> {
        let shown = dest.display();
        let meta = match fs::symlink_metadata(dest) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("{shown}: cannot read output directory")),
        };
        if meta.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
            bail!("{shown}: output directory is a symbolic link; canon writes only into a directory named directly: give the directory itself or a new path");
        }
        let resolved = resolve(dest).with_context(|| format!("{shown}: cannot resolve the output directory"))?;
        for host in untouched {
            let Ok(host_real) = fs::canonicalize(host) else { continue };
            if resolved.starts_with(&host_real) {
                let relation = if resolved == host_real { "is" } else { "is inside" };
                bail!(
                    "{shown}: the output directory {relation} the mounted host directory {}, which is never modified; choose an output directory outside it",
                    host.display()
                );
            }
        }
        if let Some(m) = meta {
            if !m.is_dir() {
                bail!("{shown}: output directory exists and is not a directory");
            }
            if fs::read_dir(dest).with_context(|| format!("{shown}: cannot read output directory"))?.next().is_some() {
                bail!("{shown}: output directory exists and is not empty; refusing to overwrite it");
            }
        }
        let Some(parent) = resolved.parent() else { bail!("{shown}: not a directory canon can replace; name a directory inside it") };
        fs::create_dir_all(parent).with_context(|| format!("{}: cannot create directory", parent.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".canon-out-")
            .tempdir_in(parent)
            .with_context(|| format!("{}: cannot create a temporary directory", parent.display()))?;
        Ok(Staged { tmp, dest: resolved })
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

/// `path` made absolute, with every symbolic link in the part that exists
/// resolved, and the part that does not yet exist appended as written: the
/// directory the OS will create there.
fn resolve(path: &Path) -> io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut existing = absolute.as_path();
    let mut missing = Vec::new();
    loop {
        match fs::canonicalize(existing) {
            Ok(mut real) => {
                real.extend(missing.iter().rev());
                return Ok(real);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A missing directory followed by `..` has no name to keep.
                let (Some(name), Some(parent)) = (existing.file_name(), existing.parent()) else {
                    return Err(io::Error::new(io::ErrorKind::NotFound, "a directory on the way does not exist"));
                };
                missing.push(name);
                existing = parent;
            }
            Err(e) => return Err(e),
        }
    }
}
