//! File trees: the job's inputs going in, the output tree coming out.
//!
//! A [`Tree`] is an in-memory directory: names map to files, directories and
//! symbolic links, always in sorted (byte) order, with no host metadata at all
//! (no times, owners, modes or inode numbers), so two hosts that load the same
//! files get equal trees. A tree's [`Manifest`] lists every entry below it
//! with its kind, size and SHA-256; the manifest's digest names the tree.
//!
//! # Manifest encoding, `canon/manifest/v1`
//!
//! The manifest digest is SHA-256 over (see [`crate::encoding`]):
//! tag `canon/manifest/v1`, entry count (`u64`), then for each entry in
//! ascending byte order of its path: path (string, `/`-separated, relative to
//! the tree's root, or prefixed as the caller asks), kind (`u8`: 0 directory,
//! 1 file, 2 symlink), size (`u64`: file length, symlink target length, 0 for
//! a directory) and SHA-256 (digest: of the file's bytes, of the symlink's
//! target, of the empty string for a directory).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::encoding::Encoder;

/// One entry of a tree.
#[derive(Clone, PartialEq, Eq)]
pub enum Node {
    /// A regular file and its bytes.
    File(Arc<Vec<u8>>),
    /// A directory.
    Dir(Tree),
    /// A symbolic link and its target, as written.
    Symlink(String),
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::File(b) => write!(f, "File({} bytes)", b.len()),
            Node::Dir(t) => f.debug_map().entries(t.entries.iter()).finish(),
            Node::Symlink(t) => write!(f, "Symlink({t:?})"),
        }
    }
}

/// A directory: names to nodes, in sorted order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    /// The entries, by name. A name is never empty, `.` or `..`, and has no `/`.
    pub entries: BTreeMap<String, Node>,
}

/// Why a host file or directory could not be loaded into a tree or written out.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A host I/O operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The host path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A host file name is not UTF-8; WASI paths are UTF-8 strings.
    #[error("{0}: file name is not valid UTF-8 (WASI paths are UTF-8)")]
    NonUtf8Name(PathBuf),
    /// The host path is neither a file, a directory nor a symbolic link.
    #[error("{0}: not a regular file, directory or symbolic link")]
    Unsupported(PathBuf),
    /// The tree is larger than the caller allowed.
    #[error("{path}: input is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The host path where the limit was crossed.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// A name that cannot be written as one entry of a host directory.
    #[error("{dir}: refusing to write an entry named {name:?}: {NAME_RULE}")]
    BadName {
        /// The host directory the entry would go in.
        dir: PathBuf,
        /// The name.
        name: String,
    },
    /// Two outputs would be written at the same host path: a writable mount
    /// nested in another (jobs refuse those; the writer checks again).
    #[error("{0}: two outputs would be written here (one writable mount inside another); refusing to merge them")]
    Overlap(PathBuf),
    /// Something already exists where an entry was to be created: the
    /// writer never replaces, and never follows, what it finds.
    #[error("{0}: already exists; refusing to replace it or write through it")]
    Exists(PathBuf),
}

/// What a tree entry's name must be, for messages.
pub const NAME_RULE: &str = "a name must be non-empty, not `.` or `..`, and contain no `/` or NUL byte";

/// Whether `name` can be one entry of a directory: not empty, `.` or `..`,
/// and without `/` or NUL. On any host, such a name joined onto a directory
/// names an entry of that directory and nothing else.
pub fn is_entry_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TreeError + '_ {
    move |source| TreeError::Io { path: path.to_path_buf(), source }
}

/// The kind of a manifest entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Dir => 0,
            Kind::File => 1,
            Kind::Symlink => 2,
        }
    }
}

/// One line of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// `/`-separated path.
    pub path: String,
    /// What the entry is.
    pub kind: Kind,
    /// File length, symlink target length, or 0 for a directory.
    pub size: u64,
    /// SHA-256 of the file's bytes, of the symlink target, or of "" for a directory.
    pub sha256: Digest,
}

/// Every entry of a tree, sorted by path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Manifest {
    /// The entries in ascending byte order of path.
    pub entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// The canonical encoding, `canon/manifest/v1`.
    pub fn encode(&self) -> Vec<u8> {
        self.encoder().into_bytes()
    }

    /// SHA-256 of the canonical encoding.
    pub fn digest(&self) -> Digest {
        self.encoder().digest_of()
    }

    fn encoder(&self) -> Encoder {
        let mut e = Encoder::new("canon/manifest/v1");
        e.count(self.entries.len());
        for entry in &self.entries {
            e.str(&entry.path).u8(entry.kind.code()).u64(entry.size).digest(&entry.sha256);
        }
        e
    }

    /// Adds the entries of `tree`, their paths prefixed by `prefix` (`""` for
    /// none, else e.g. `"/out"`), and re-sorts.
    pub fn extend_from_tree(&mut self, prefix: &str, tree: &Tree) {
        tree.walk(prefix, &mut |path, node| {
            let (kind, size, sha256) = match node {
                Node::File(bytes) => (Kind::File, bytes.len() as u64, Digest::of(bytes)),
                Node::Dir(_) => (Kind::Dir, 0, Digest::of(b"")),
                Node::Symlink(t) => (Kind::Symlink, t.len() as u64, Digest::of(t.as_bytes())),
            };
            self.entries.push(ManifestEntry { path, kind, size, sha256 });
        });
        self.entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    }
}

/// How one path differs between two manifests (see [`Manifest::changes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change<'a> {
    /// Only in the first manifest.
    Removed(&'a ManifestEntry),
    /// Only in the second.
    Added(&'a ManifestEntry),
    /// In both, with different kind, size or digest: (first, second).
    Changed(&'a ManifestEntry, &'a ManifestEntry),
}

impl Manifest {
    /// Every path whose entry differs from `self` to `other`, in ascending
    /// byte order of path.
    pub fn changes<'a>(&'a self, other: &'a Manifest) -> Vec<Change<'a>> {
        let mine: BTreeMap<&str, &ManifestEntry> = self.entries.iter().map(|e| (e.path.as_str(), e)).collect();
        let theirs: BTreeMap<&str, &ManifestEntry> = other.entries.iter().map(|e| (e.path.as_str(), e)).collect();
        let mut paths: Vec<&str> = mine.keys().chain(theirs.keys()).copied().collect();
        paths.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        paths.dedup();
        paths
            .into_iter()
            .filter_map(|p| match (mine.get(p), theirs.get(p)) {
                (Some(a), None) => Some(Change::Removed(a)),
                (None, Some(b)) => Some(Change::Added(b)),
                (Some(a), Some(b)) if a != b => Some(Change::Changed(a, b)),
                _ => None,
            })
            .collect()
    }
}

impl Tree {
    /// An empty directory.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Loads a host directory, recursively. Symbolic links are kept as links
    /// (never followed); their targets are recorded as written. Loading stops
    /// with [`TreeError::TooLarge`] once file bytes exceed `limit`.
    pub fn load_dir(path: &Path, limit: u64) -> Result<Tree, TreeError> {
        let mut total = 0u64;
        Tree::load_dir_inner(path, limit, &mut total)
    }

    fn load_dir_inner(path: &Path, limit: u64, total: &mut u64) -> Result<Tree, TreeError> {
        let mut tree = Tree::new();
        for entry in fs::read_dir(path).map_err(io_err(path))? {
            let entry = entry.map_err(io_err(path))?;
            let child = entry.path();
            let name = entry.file_name().into_string().map_err(|_| TreeError::NonUtf8Name(child.clone()))?;
            let node = Node::load_inner(&child, limit, total)?;
            tree.entries.insert(name, node);
        }
        Ok(tree)
    }

    /// Visits every node below this tree in sorted order, depth first, with
    /// its path (`prefix/name/...`).
    pub fn walk(&self, prefix: &str, f: &mut dyn FnMut(String, &Node)) {
        for (name, node) in &self.entries {
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            f(path.clone(), node);
            if let Node::Dir(sub) = node {
                sub.walk(&path, f);
            }
        }
    }

    /// The manifest of this tree, paths relative to its root.
    pub fn manifest(&self) -> Manifest {
        let mut m = Manifest::default();
        m.extend_from_tree("", self);
        m
    }

    /// Total bytes of all files below this tree.
    pub fn file_bytes(&self) -> u64 {
        let mut total = 0;
        self.walk("", &mut |_, n| {
            if let Node::File(b) = n {
                total += b.len() as u64;
            }
        });
        total
    }

    /// Writes this tree into the host directory `dir`, which must exist and
    /// should be new (a fresh staging directory): every entry is created,
    /// never replaced, so nothing is written outside `dir`.
    ///
    /// - Each name is checked first ([`is_entry_name`]): a name that is
    ///   empty, `.`, `..`, or holds `/` or NUL is refused
    ///   ([`TreeError::BadName`]), so no name climbs out or reaches below
    ///   another entry.
    /// - Files are created with `O_CREAT | O_EXCL`, directories with
    ///   `mkdir`, symbolic links with `symlink`; each fails if anything,
    ///   a symbolic link included, is already at its path
    ///   ([`TreeError::Exists`]), and none follows a link there.
    /// - The writer descends only into directories it has just created, so
    ///   it never traverses a symbolic link, the tree's own included: a link
    ///   is written with its target as given and never resolved.
    pub fn write_to(&self, dir: &Path) -> Result<(), TreeError> {
        for (name, node) in &self.entries {
            if !is_entry_name(name) {
                return Err(TreeError::BadName { dir: dir.to_path_buf(), name: name.clone() });
            }
            let path = dir.join(name);
            let exists = |e: io::Error| if e.kind() == io::ErrorKind::AlreadyExists { TreeError::Exists(path.clone()) } else { io_err(&path)(e) };
            match node {
                Node::File(bytes) => {
                    use io::Write as _;
                    let mut f = fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(exists)?;
                    f.write_all(bytes).map_err(io_err(&path))?;
                }
                Node::Dir(sub) => {
                    fs::create_dir(&path).map_err(exists)?;
                    sub.write_to(&path)?;
                }
                Node::Symlink(target) => write_symlink(target, &path).map_err(exists)?,
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
fn write_symlink(target: &str, path: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, path)
}

#[cfg(not(unix))]
fn write_symlink(target: &str, path: &Path) -> io::Result<()> {
    // Without symlinks on the host, keep the link's target as a text file.
    use io::Write as _;
    fs::OpenOptions::new().write(true).create_new(true).open(path)?.write_all(target.as_bytes())
}

impl Node {
    /// Loads a host file, directory or symbolic link (not followed).
    pub fn load(path: &Path, limit: u64) -> Result<Node, TreeError> {
        let mut total = 0u64;
        Node::load_inner(path, limit, &mut total)
    }

    fn load_inner(path: &Path, limit: u64, total: &mut u64) -> Result<Node, TreeError> {
        let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(path).map_err(io_err(path))?;
            let target = target.into_os_string().into_string().map_err(|_| TreeError::NonUtf8Name(path.to_path_buf()))?;
            Ok(Node::Symlink(target))
        } else if ft.is_dir() {
            Ok(Node::Dir(Tree::load_dir_inner(path, limit, total)?))
        } else if ft.is_file() {
            *total = total.saturating_add(meta.len());
            if *total > limit {
                return Err(TreeError::TooLarge { path: path.to_path_buf(), limit });
            }
            let bytes = fs::read(path).map_err(io_err(path))?;
            *total = total.saturating_sub(meta.len()).saturating_add(bytes.len() as u64);
            Ok(Node::File(Arc::new(bytes)))
        } else {
            Err(TreeError::Unsupported(path.to_path_buf()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(s: &str) -> Node {
        Node::File(Arc::new(s.as_bytes().to_vec()))
    }

    #[test]
    fn manifest_is_sorted_by_path_bytes() {
        let mut sub = Tree::new();
        sub.entries.insert("z".into(), file("z"));
        let mut t = Tree::new();
        t.entries.insert("b".into(), file("bb"));
        t.entries.insert("a".into(), Node::Dir(sub));
        t.entries.insert("a.txt".into(), Node::Symlink("b".into()));
        let m = t.manifest();
        let paths: Vec<_> = m.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "a.txt", "a/z", "b"]);
        assert_eq!(m.entries[3].size, 2);
        assert_eq!(m.entries[1].kind, Kind::Symlink);
    }

    #[test]
    fn changes_are_listed_in_path_order() {
        let mut a = Tree::new();
        a.entries.insert("same".into(), file("x"));
        a.entries.insert("gone".into(), file("x"));
        a.entries.insert("edit".into(), file("x"));
        let mut b = Tree::new();
        b.entries.insert("same".into(), file("x"));
        b.entries.insert("edit".into(), file("y"));
        b.entries.insert("added".into(), file("x"));
        let (ma, mb) = (a.manifest(), b.manifest());
        let changes = ma.changes(&mb);
        let kinds: Vec<(&str, &str)> = changes
            .iter()
            .map(|c| match c {
                Change::Removed(e) => ("removed", e.path.as_str()),
                Change::Added(e) => ("added", e.path.as_str()),
                Change::Changed(e, _) => ("changed", e.path.as_str()),
            })
            .collect();
        assert_eq!(kinds, [("added", "added"), ("changed", "edit"), ("removed", "gone")]);
        assert!(ma.changes(&ma).is_empty());
    }

    #[test]
    fn load_and_write_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("d")).expect("mkdir");
        fs::write(dir.path().join("d/f"), b"hi").expect("write");
        let t = Tree::load_dir(dir.path(), u64::MAX).expect("load");
        let out = tempfile::tempdir().expect("tempdir");
        t.write_to(out.path()).expect("write_to");
        assert_eq!(Tree::load_dir(out.path(), u64::MAX).expect("reload"), t);
        assert!(matches!(Tree::load_dir(dir.path(), 1), Err(TreeError::TooLarge { .. })));
    }

    #[test]
    fn entry_names_are_plain_names() {
        for good in ["a", "a.txt", "..a", "...", "a b", "é", "a\\b"] {
            assert!(is_entry_name(good), "{good:?}");
        }
        for bad in ["", ".", "..", "a/b", "/", "/etc", "a\0b"] {
            assert!(!is_entry_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_writer_refuses_names_that_leave_the_directory() {
        for bad in ["..", ".", "", "../escape", "/etc/passwd-canon-test", "a/b", "nul\0name"] {
            let root = tempfile::tempdir().expect("tempdir");
            let out = root.path().join("out");
            fs::create_dir(&out).expect("mkdir");
            let mut t = Tree::new();
            t.entries.insert(bad.into(), file("x"));
            assert!(matches!(t.write_to(&out), Err(TreeError::BadName { .. })), "{bad:?} accepted");
            // Deeper down too.
            let mut outer = Tree::new();
            outer.entries.insert("d".into(), Node::Dir(t));
            assert!(matches!(outer.write_to(&out), Err(TreeError::BadName { .. })), "{bad:?} accepted below a directory");
            assert_eq!(fs::read_dir(root.path()).expect("ls").count(), 1, "{bad:?}: something was written beside out");
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_writer_never_replaces_or_follows_what_is_there() {
        let root = tempfile::tempdir().expect("tempdir");
        let victim = root.path().join("victim");
        fs::create_dir(&victim).expect("mkdir");
        fs::write(victim.join("f"), b"victim").expect("write");
        let out = root.path().join("out");
        fs::create_dir(&out).expect("mkdir");
        std::os::unix::fs::symlink(&victim, out.join("d")).expect("symlink");
        std::os::unix::fs::symlink(victim.join("f"), out.join("f")).expect("symlink");
        for (name, node) in [("d", Node::Dir(Tree::new())), ("f", file("overwritten")), ("d", Node::Symlink("x".into()))] {
            let mut t = Tree::new();
            t.entries.insert(name.into(), node);
            assert!(matches!(t.write_to(&out), Err(TreeError::Exists(_))), "{name}");
        }
        let mut sub = Tree::new();
        sub.entries.insert("f".into(), file("planted"));
        let mut t = Tree::new();
        t.entries.insert("d".into(), Node::Dir(sub));
        assert!(t.write_to(&out).is_err());
        assert_eq!(fs::read_dir(&victim).expect("ls").count(), 1);
        assert_eq!(fs::read(victim.join("f")).expect("read"), b"victim");
    }

    #[cfg(unix)]
    #[test]
    fn guest_symlinks_are_written_as_links_and_never_traversed() {
        // A tree whose link `up` points out, and a directory beside it: the
        // writer makes the link as given and writes nothing through it.
        let root = tempfile::tempdir().expect("tempdir");
        let out = root.path().join("out");
        fs::create_dir(&out).expect("mkdir");
        let mut inner = Tree::new();
        inner.entries.insert("f".into(), file("inside"));
        let mut t = Tree::new();
        t.entries.insert("up".into(), Node::Symlink("..".into()));
        t.entries.insert("abs".into(), Node::Symlink(root.path().display().to_string()));
        t.entries.insert("v".into(), Node::Dir(inner));
        t.write_to(&out).expect("write");
        assert_eq!(fs::read_link(out.join("up")).expect("link"), Path::new(".."));
        assert_eq!(fs::read_to_string(out.join("v/f")).expect("read"), "inside");
        assert_eq!(fs::read_dir(root.path()).expect("ls").count(), 1, "nothing beside out");
    }
}
