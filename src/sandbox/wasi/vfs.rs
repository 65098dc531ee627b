//! The in-memory file system behind canon's WASI host.
//!
//! Inodes live in an arena and are numbered in creation order, starting at 1,
//! so inode numbers depend only on the job's inputs and the guest's own
//! actions. Directories keep their entries sorted by name. Times are logical:
//! inputs carry the job's epoch; a change stamps the guest's current logical
//! wall-clock time. There are no owners or permission bits; an inode belongs
//! to a mount, which is read-only or writable as a whole.
//!
//! Path resolution never leaves the directory it starts from: an absolute
//! path, a `..` above the starting directory, or a symbolic link that points
//! to an absolute path is refused with `ENOTCAPABLE`; more than
//! [`MAX_SYMLINK_HOPS`] links in one resolution give `ELOOP`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::errno::Errno;
use crate::tree::{Node, Tree};

/// An inode number (1-based index into the arena).
pub type Ino = u64;

/// Symbolic links followed in one path resolution before `ELOOP`; Linux's
/// `MAXSYMLINKS` is 40.
pub const MAX_SYMLINK_HOPS: u32 = 40;

/// Longest path the host will resolve, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;

/// Longest single name, in bytes (Linux's `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

/// What an inode holds.
#[derive(Clone, Debug)]
pub enum Content {
    /// A regular file. Input files share their bytes until written.
    File(Arc<Vec<u8>>),
    /// A directory: entries by name, and its parent (itself for a mount root).
    Dir {
        /// Entries, sorted by name.
        entries: BTreeMap<String, Ino>,
        /// The parent directory.
        parent: Ino,
    },
    /// A symbolic link's target, as written.
    Symlink(String),
}

/// One file, directory or link.
#[derive(Clone, Debug)]
pub struct Inode {
    /// What it holds.
    pub content: Content,
    /// Hard links to it (directory entries naming it).
    pub nlink: u64,
    /// Open descriptors referring to it.
    pub open: u64,
    /// Whether it belongs to a writable mount.
    pub writable: bool,
    /// Last access time (logical ns since the Unix epoch).
    pub atim: u64,
    /// Last modification time.
    pub mtim: u64,
    /// Last status change time.
    pub ctim: u64,
    /// A file whose bytes are still the job's input's: its first change
    /// copies them (and is charged for the copy). Set at mount, cleared by
    /// that change: a property of the job and of what the guest did, never
    /// of how many references to the bytes the host holds.
    pub from_input: bool,
}

impl Inode {
    /// The WASI filetype code: 3 directory, 4 regular file, 7 symlink.
    pub fn filetype(&self) -> u8 {
        match self.content {
            Content::Dir { .. } => 3,
            Content::File(_) => 4,
            Content::Symlink(_) => 7,
        }
    }

    /// File length, link target length, or 0 for a directory.
    pub fn size(&self) -> u64 {
        match &self.content {
            Content::File(b) => b.len() as u64,
            Content::Symlink(t) => t.len() as u64,
            Content::Dir { .. } => 0,
        }
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self.content, Content::Dir { .. })
    }
}

/// The result of resolving a path: the directory holding the last
/// component, its name, and the inode it names (if it exists).
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The directory that contains (or would contain) the entry.
    pub parent: Ino,
    /// The final component; `"."` when the path names the start directory.
    pub name: String,
    /// The inode the path names, if any.
    pub ino: Option<Ino>,
    /// The path ended in `/`, so it must name a directory.
    pub trailing_slash: bool,
}

/// Accounting against the job's output caps.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Bytes of files in writable mounts.
    pub bytes: u64,
    /// Inodes the guest created.
    pub created: u64,
}

/// Why a change was refused by the output caps (this becomes a trap, not an errno).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverLimit;

/// The file system: an arena of inodes.
#[derive(Debug)]
pub struct Vfs {
    inodes: Vec<Option<Inode>>,
    /// Current usage.
    pub usage: Usage,
    max_bytes: u64,
    max_created: u64,
    /// Steps of guest-sized walks since the host last charged for them.
    steps: std::cell::Cell<u64>,
}

impl Vfs {
    /// An empty file system with the given output caps.
    pub fn new(max_bytes: u64, max_created: u64) -> Vfs {
        Vfs { inodes: Vec::new(), usage: Usage::default(), max_bytes, max_created, steps: std::cell::Cell::new(0) }
    }

    /// The inode `ino`. Panics never: a stale number gives `EBADF`.
    pub fn get(&self, ino: Ino) -> Result<&Inode, Errno> {
        self.inodes.get((ino as usize).wrapping_sub(1)).and_then(|i| i.as_ref()).ok_or(Errno::Badf)
    }

    /// The inode `ino`, mutably.
    pub fn get_mut(&mut self, ino: Ino) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut((ino as usize).wrapping_sub(1)).and_then(|i| i.as_mut()).ok_or(Errno::Badf)
    }

    fn alloc(&mut self, inode: Inode) -> Ino {
        self.inodes.push(Some(inode));
        self.inodes.len() as Ino
    }

    /// Mounts `tree` as a new root directory; returns its inode. Every inode
    /// gets `time` (the job's epoch) as its three timestamps.
    pub fn mount(&mut self, tree: &Tree, writable: bool, time: u64) -> Ino {
        let root = self.alloc(Inode {
            content: Content::Dir { entries: BTreeMap::new(), parent: 0 },
            nlink: 1,
            open: 0,
            writable,
            atim: time,
            mtim: time,
            ctim: time,
            from_input: false,
        });
        if let Ok(Inode { content: Content::Dir { parent, .. }, .. }) = self.get_mut(root) {
            *parent = root;
        }
        self.fill(root, tree, writable, time);
        if writable {
            self.usage.bytes = self.usage.bytes.saturating_add(tree.file_bytes());
        }
        root
    }

    fn fill(&mut self, dir: Ino, tree: &Tree, writable: bool, time: u64) {
        for (name, node) in &tree.entries {
            let content = match node {
                Node::File(bytes) => Content::File(Arc::clone(bytes)),
                Node::Symlink(t) => Content::Symlink(t.clone()),
                Node::Dir(_) => Content::Dir { entries: BTreeMap::new(), parent: dir },
            };
            let from_input = matches!(content, Content::File(_));
            let ino = self.alloc(Inode { content, nlink: 1, open: 0, writable, atim: time, mtim: time, ctim: time, from_input });
            if let Ok(Inode { content: Content::Dir { entries, .. }, .. }) = self.get_mut(dir) {
                entries.insert(name.clone(), ino);
            }
            if let Node::Dir(sub) = node {
                self.fill(ino, sub, writable, time);
            }
        }
    }

    /// Reads the directory at `ino` back out as a tree.
    pub fn to_tree(&self, ino: Ino) -> Tree {
        let mut tree = Tree::new();
        if let Ok(Inode { content: Content::Dir { entries, .. }, .. }) = self.get(ino) {
            for (name, &child) in entries {
                let Ok(inode) = self.get(child) else { continue };
                let node = match &inode.content {
                    Content::File(b) => Node::File(Arc::clone(b)),
                    Content::Symlink(t) => Node::Symlink(t.clone()),
                    Content::Dir { .. } => Node::Dir(self.to_tree(child)),
                };
                tree.entries.insert(name.clone(), node);
            }
        }
        tree
    }

    /// The entries of directory `ino`.
    pub fn entries(&self, ino: Ino) -> Result<&BTreeMap<String, Ino>, Errno> {
        match &self.get(ino)?.content {
            Content::Dir { entries, .. } => Ok(entries),
            _ => Err(Errno::Notdir),
        }
    }

    /// The parent of directory `ino` (itself for a mount root).
    pub fn parent(&self, ino: Ino) -> Result<Ino, Errno> {
        match &self.get(ino)?.content {
            Content::Dir { parent, .. } => Ok(*parent),
            _ => Err(Errno::Notdir),
        }
    }

    fn lookup(&self, dir: Ino, name: &str) -> Result<Option<Ino>, Errno> {
        Ok(self.entries(dir)?.get(name).copied())
    }

    /// Resolves `path` relative to directory `start`. Symbolic links in
    /// intermediate components are always followed; the final component's
    /// link is followed only if `follow` is set (or the path ends in `/`).
    pub fn resolve<'a>(&'a self, start: Ino, path: &'a str, follow: bool) -> Result<Resolved, Errno> {
        if path.is_empty() {
            return Err(Errno::Noent);
        }
        if path.len() > MAX_PATH_LEN {
            return Err(Errno::Nametoolong);
        }
        // No host can hold a name with a NUL byte (POSIX paths end at one),
        // so the output tree could not be written out: refuse it as a POSIX
        // host's path conversion does.
        if path.contains('\0') {
            return Err(Errno::Inval);
        }
        if path.starts_with('/') {
            return Err(Errno::Notcapable);
        }
        if !self.get(start)?.is_dir() {
            return Err(Errno::Notdir);
        }
        let trailing_slash = path.ends_with('/');
        // `stack` is the chain of directories from `start` to the current one.
        let mut stack: Vec<Ino> = vec![start];
        // Components still to resolve, borrowed from `path` and from the
        // targets of the links followed (both outlive the walk).
        let mut queue: VecDeque<&'a str> = components(path).collect();
        let mut hops = 0u32;
        let mut last: Option<(Ino, &'a str, Option<Ino>)> = None;
        while let Some(comp) = queue.pop_front() {
            self.count_step();
            let cur = *stack.last().ok_or(Errno::Notcapable)?;
            let is_last = queue.is_empty();
            match comp {
                "." => {
                    if is_last {
                        last = Some((cur, ".", Some(cur)));
                    }
                    continue;
                }
                ".." => {
                    if stack.len() == 1 {
                        return Err(Errno::Notcapable);
                    }
                    stack.pop();
                    if is_last {
                        let now = *stack.last().ok_or(Errno::Notcapable)?;
                        last = Some((now, ".", Some(now)));
                    }
                    continue;
                }
                _ => {}
            }
            if comp.len() > MAX_NAME_LEN {
                return Err(Errno::Nametoolong);
            }
            let found = self.lookup(cur, comp)?;
            match found {
                None => {
                    if !is_last {
                        return Err(Errno::Noent);
                    }
                    last = Some((cur, comp, None));
                }
                Some(ino) => {
                    let inode = self.get(ino)?;
                    match &inode.content {
                        Content::Symlink(target) if !is_last || follow || trailing_slash => {
                            hops += 1;
                            if hops > MAX_SYMLINK_HOPS {
                                return Err(Errno::Loop);
                            }
                            if target.starts_with('/') {
                                return Err(Errno::Notcapable);
                            }
                            if target.is_empty() {
                                return Err(Errno::Noent);
                            }
                            let before = queue.len();
                            for c in components(target).rev() {
                                queue.push_front(c);
                            }
                            if is_last && queue.len() == before {
                                queue.push_front(".");
                            }
                        }
                        Content::Dir { .. } => {
                            if is_last {
                                last = Some((cur, comp, Some(ino)));
                            } else {
                                stack.push(ino);
                            }
                        }
                        _ => {
                            if !is_last {
                                return Err(Errno::Notdir);
                            }
                            last = Some((cur, comp, Some(ino)));
                        }
                    }
                }
            }
        }
        let (parent, name, ino) = match last {
            Some(l) => l,
            // Only "." / ".." components that ended on a directory.
            None => {
                let cur = *stack.last().ok_or(Errno::Notcapable)?;
                (cur, ".", Some(cur))
            }
        };
        let name = name.to_string();
        if trailing_slash
            && let Some(i) = ino
            && !self.get(i)?.is_dir()
        {
            return Err(Errno::Notdir);
        }
        Ok(Resolved { parent, name, ino, trailing_slash })
    }

    /// Checks the caps before a file held by writable mounts goes from
    /// `old_bytes` to `new_bytes`, or `extra_inodes` more inodes are made.
    /// Sizes are unsigned and the sums checked, so no size a guest can ask
    /// for wraps around a cap.
    pub fn reserve(&mut self, old_bytes: u64, new_bytes: u64, extra_inodes: u64) -> Result<(), OverLimit> {
        let bytes = self.usage.bytes.saturating_sub(old_bytes).checked_add(new_bytes).ok_or(OverLimit)?;
        let created = self.usage.created.checked_add(extra_inodes).ok_or(OverLimit)?;
        if bytes > self.max_bytes || created > self.max_created {
            return Err(OverLimit);
        }
        self.usage.bytes = bytes;
        self.usage.created = created;
        Ok(())
    }

    /// Creates a new inode named `name` in directory `parent`.
    pub fn create(&mut self, parent: Ino, name: &str, content: Content, time: u64) -> Result<Result<Ino, Errno>, OverLimit> {
        // An entry added to a directory is a step of work.
        self.count_step();
        let writable = match self.get(parent) {
            Ok(p) => p.writable,
            Err(e) => return Ok(Err(e)),
        };
        if !writable {
            return Ok(Err(Errno::Rofs));
        }
        let size = match &content {
            Content::File(b) => b.len() as u64,
            _ => 0,
        };
        self.reserve(0, size, 1)?;
        let ino = self.alloc(Inode { content, nlink: 1, open: 0, writable, atim: time, mtim: time, ctim: time, from_input: false });
        if let Ok(p) = self.get_mut(parent) {
            if let Content::Dir { entries, .. } = &mut p.content {
                entries.insert(name.to_string(), ino);
            }
            p.mtim = time;
            p.ctim = time;
        }
        Ok(Ok(ino))
    }

    /// Removes the entry `name` from `parent`, dropping the inode once no
    /// link or descriptor refers to it.
    pub fn unlink(&mut self, parent: Ino, name: &str, time: u64) -> Result<(), Errno> {
        // An entry removed from a directory is a step of work.
        self.count_step();
        let p = self.get_mut(parent)?;
        let Content::Dir { entries, .. } = &mut p.content else { return Err(Errno::Notdir) };
        let ino = entries.remove(name).ok_or(Errno::Noent)?;
        p.mtim = time;
        p.ctim = time;
        let node = self.get_mut(ino)?;
        node.nlink = node.nlink.saturating_sub(1);
        node.ctim = time;
        self.maybe_free(ino);
        Ok(())
    }

    /// Drops an inode that has no links and no open descriptors.
    pub fn maybe_free(&mut self, ino: Ino) {
        let Ok(node) = self.get(ino) else { return };
        if node.nlink > 0 || node.open > 0 {
            return;
        }
        let (writable, size) = (node.writable, node.size());
        if let Content::Dir { entries, .. } = &node.content {
            // Only empty directories are ever unlinked.
            debug_assert!(entries.is_empty());
        }
        if writable && matches!(node.content, Content::File(_)) {
            self.usage.bytes = self.usage.bytes.saturating_sub(size);
        }
        if let Some(slot) = self.inodes.get_mut((ino as usize).wrapping_sub(1)) {
            *slot = None;
        }
    }

    /// Counts one step of a walk whose length the guest controls (a path
    /// component, a symlink's expansion, a parent followed); the host
    /// charges fuel for them when the call ends ([`Vfs::take_steps`]).
    fn count_step(&self) {
        self.steps.set(self.steps.get().saturating_add(1));
    }

    /// The steps counted since the last call, and a fresh count.
    pub fn take_steps(&self) -> u64 {
        self.steps.replace(0)
    }

    /// Whether `ancestor` is `ino` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: Ino, mut ino: Ino) -> bool {
        loop {
            self.count_step();
            if ino == ancestor {
                return true;
            }
            match self.parent(ino) {
                Ok(p) if p != ino => ino = p,
                _ => return false,
            }
        }
    }
}

/// Splits a path into its components, dropping empty ones (`a//b`) but
/// keeping `.` and `..`.
/// The components of `path`, borrowed from it: resolution copies nothing
/// but the final name.
fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs_with(paths: &[(&str, Node)]) -> (Vfs, Ino) {
        let mut tree = Tree::new();
        for (p, n) in paths {
            let mut cur = &mut tree;
            let parts: Vec<&str> = p.split('/').collect();
            for part in &parts[..parts.len() - 1] {
                let entry = cur.entries.entry(part.to_string()).or_insert_with(|| Node::Dir(Tree::new()));
                let Node::Dir(t) = entry else { panic!("not a dir") };
                cur = t;
            }
            cur.entries.insert(parts[parts.len() - 1].to_string(), n.clone());
        }
        let mut vfs = Vfs::new(1 << 20, 100);
        let root = vfs.mount(&tree, true, 0);
        (vfs, root)
    }

    fn file(s: &str) -> Node {
        Node::File(Arc::new(s.as_bytes().to_vec()))
    }

    #[test]
    fn resolution_stays_inside_the_start_directory() {
        let (vfs, root) = fs_with(&[
            ("a/b.txt", file("b")),
            ("up", Node::Symlink("..".into())),
            ("abs", Node::Symlink("/etc/passwd".into())),
            ("loop", Node::Symlink("loop".into())),
            ("a/rel", Node::Symlink("../a/b.txt".into())),
        ]);
        assert_eq!(vfs.resolve(root, "/etc", true).unwrap_err(), Errno::Notcapable);
        assert_eq!(vfs.resolve(root, "..", true).unwrap_err(), Errno::Notcapable);
        assert_eq!(vfs.resolve(root, "a/../../x", true).unwrap_err(), Errno::Notcapable);
        assert_eq!(vfs.resolve(root, "up/x", true).unwrap_err(), Errno::Notcapable);
        assert_eq!(vfs.resolve(root, "abs", true).unwrap_err(), Errno::Notcapable);
        assert!(vfs.resolve(root, "abs", false).expect("nofollow").ino.is_some());
        assert_eq!(vfs.resolve(root, "loop", true).unwrap_err(), Errno::Loop);
        assert_eq!(vfs.resolve(root, "a/b.txt/x", true).unwrap_err(), Errno::Notdir);
        assert_eq!(vfs.resolve(root, "a/b.txt/", true).unwrap_err(), Errno::Notdir);
        assert_eq!(vfs.resolve(root, "nope/x", true).unwrap_err(), Errno::Noent);
        let b = vfs.resolve(root, "a/b.txt", true).expect("b").ino;
        assert_eq!(vfs.resolve(root, "a/rel", true).expect("rel").ino, b);
        assert_eq!(vfs.resolve(root, "./a/./b.txt", true).expect("dots").ino, b);
        let missing = vfs.resolve(root, "a/new", true).expect("missing last component");
        assert_eq!((missing.ino, missing.name.as_str()), (None, "new"));
        assert_eq!(vfs.resolve(root, ".", true).expect("dot").ino, Some(root));
    }

    #[test]
    fn inode_numbers_follow_creation_order() {
        let (vfs, root) = fs_with(&[("b", file("")), ("a", file(""))]);
        assert_eq!(root, 1);
        // Sorted order: "a" before "b".
        assert_eq!(vfs.resolve(root, "a", true).expect("a").ino, Some(2));
        assert_eq!(vfs.resolve(root, "b", true).expect("b").ino, Some(3));
    }

    #[test]
    fn caps_refuse_growth() {
        let (mut vfs, root) = fs_with(&[]);
        for i in 0..100 {
            vfs.create(root, &format!("f{i}"), Content::File(Arc::new(vec![])), 0).expect("under cap").expect("created");
        }
        assert_eq!(vfs.create(root, "one-too-many", Content::File(Arc::new(vec![])), 0).unwrap_err(), OverLimit);
    }
}
