//! Paths: every `path_*` call, resolved inside the preopens of the
//! in-memory file system.

use super::*;

impl WasiHost {
    // ---- paths --------------------------------------------------------------

    /// `path_open`
    #[allow(clippy::too_many_arguments)]
    pub fn path_open(
        &mut self,
        mem: &mut Mem,
        dirfd: u32,
        dirflags: u32,
        path: u32,
        path_len: u32,
        oflags: u16,
        base: u64,
        _inheriting: u64,
        fdflags: u16,
        out: u32,
    ) -> R {
        let (dir, passed_on) = match self.fd(dirfd)? {
            Fd::Dir { ino, inheriting, .. } => (*ino, *inheriting),
            _ => return Err(Errno::Notdir.into()),
        };
        let path = self.path_arg(mem, path, path_len)?;
        if fdflags & !FDFLAGS_ALL != 0 || oflags & !0xf != 0 {
            return Err(Errno::Inval.into());
        }
        // A descriptor never gets a right its directory does not pass on.
        if base & (RIGHT_FD_READ | RIGHT_FD_WRITE) & !passed_on != 0 {
            return Err(Errno::Notcapable.into());
        }
        let follow = dirflags & LOOKUP_SYMLINK_FOLLOW != 0;
        let r = self.vfs.resolve(dir, &path, follow)?;
        let wants_write = base & RIGHT_FD_WRITE != 0 || oflags & O_TRUNC != 0 || fdflags & FDFLAG_APPEND != 0;
        let now = self.wall();
        let ino = match r.ino {
            Some(ino) => {
                if oflags & O_CREAT != 0 && oflags & O_EXCL != 0 {
                    return Err(Errno::Exist.into());
                }
                let node = self.vfs.get(ino)?;
                match &node.content {
                    Content::Symlink(_) => return Err(Errno::Loop.into()),
                    Content::Dir { .. } => {
                        if wants_write {
                            return Err(Errno::Isdir.into());
                        }
                        self.vfs.get_mut(ino)?.open += 1;
                        let (rights, inheriting) = (DIR_RIGHTS & passed_on, DIR_INHERITING & passed_on);
                        let fd = self.insert_fd(Fd::Dir { ino, preopen: None, rights, inheriting });
                        return self.finish_open(mem, ino, fd, out);
                    }
                    Content::File(_) => {
                        if oflags & O_DIRECTORY != 0 {
                            return Err(Errno::Notdir.into());
                        }
                        if wants_write && !node.writable {
                            return Err(Errno::Rofs.into());
                        }
                    }
                }
                if oflags & O_TRUNC != 0 {
                    self.resize(ino, 0)?;
                }
                ino
            }
            None => {
                if oflags & O_CREAT == 0 {
                    return Err(Errno::Noent.into());
                }
                if oflags & O_DIRECTORY != 0 {
                    return Err(Errno::Inval.into());
                }
                if r.trailing_slash {
                    return Err(Errno::Isdir.into());
                }
                self.vfs.create(r.parent, &r.name, Content::File(Arc::new(Vec::new())), now)??
            }
        };
        // Rights: read and write as asked; everything else its directory
        // passes on.
        let rights = ((ALL_RIGHTS & !(RIGHT_FD_READ | RIGHT_FD_WRITE)) | (base & (RIGHT_FD_READ | RIGHT_FD_WRITE))) & passed_on;
        self.vfs.get_mut(ino)?.open += 1;
        let fd = self.insert_fd(Fd::File { ino, offset: 0, flags: fdflags, rights });
        self.finish_open(mem, ino, fd, out)
    }

    pub(super) fn finish_open(&mut self, mem: &mut Mem, ino: Ino, fd: Result<u32, Fault>, out: u32) -> R {
        match fd {
            Ok(fd) => {
                if let Err(e) = mem.put_u32(out, fd) {
                    self.fd_close(fd)?;
                    return Err(e.into());
                }
                Ok(())
            }
            Err(e) => {
                if let Ok(node) = self.vfs.get_mut(ino) {
                    node.open = node.open.saturating_sub(1);
                }
                Err(e)
            }
        }
    }

    /// Resolves the guest path at `path`/`len` relative to directory `fd`.
    pub(super) fn resolve_at(&mut self, mem: &Mem, fd: u32, path: u32, len: u32, follow: bool) -> R<Resolved> {
        let dir = self.dir_fd(fd)?;
        let path = self.path_arg(mem, path, len)?;
        Ok(self.vfs.resolve(dir, &path, follow)?)
    }

    /// A path argument: refused past [`MAX_PATH_LEN`] before a byte is
    /// copied (as Linux does past `PATH_MAX`), then charged per byte.
    pub(super) fn path_arg(&mut self, mem: &Mem, ptr: u32, len: u32) -> R<String> {
        mem.slice(ptr, len)?;
        if len as usize > MAX_PATH_LEN {
            return Err(Errno::Nametoolong.into());
        }
        self.charge(cost::path(u64::from(len)))?;
        Ok(mem.str(ptr, len)?)
    }

    pub(super) fn writable_dir(&self, ino: Ino) -> Result<(), Errno> {
        if self.vfs.get(ino)?.writable { Ok(()) } else { Err(Errno::Rofs) }
    }

    /// `path_create_directory`
    pub fn path_create_directory(&mut self, mem: &mut Mem, fd: u32, path: u32, len: u32) -> R {
        let r = self.resolve_at(mem, fd, path, len, false)?;
        if r.ino.is_some() {
            return Err(Errno::Exist.into());
        }
        self.writable_dir(r.parent)?;
        let now = self.wall();
        let content = Content::Dir { entries: BTreeMap::new(), parent: r.parent };
        self.vfs.create(r.parent, &r.name, content, now)??;
        Ok(())
    }

    /// `path_filestat_get`
    pub fn path_filestat_get(&mut self, mem: &mut Mem, fd: u32, flags: u32, path: u32, len: u32, out: u32) -> R {
        let r = self.resolve_at(mem, fd, path, len, flags & LOOKUP_SYMLINK_FOLLOW != 0)?;
        let ino = r.ino.ok_or(Errno::Noent)?;
        self.write_filestat(mem, ino, out)
    }

    /// `path_filestat_set_times`
    #[allow(clippy::too_many_arguments)]
    pub fn path_filestat_set_times(&mut self, mem: &mut Mem, fd: u32, flags: u32, path: u32, len: u32, atim: u64, mtim: u64, fst: u16) -> R {
        let r = self.resolve_at(mem, fd, path, len, flags & LOOKUP_SYMLINK_FOLLOW != 0)?;
        let ino = r.ino.ok_or(Errno::Noent)?;
        self.set_times(ino, atim, mtim, fst)
    }

    /// `path_link`: a hard link, within writable mounts only. The new path
    /// names a file, so a trailing `/` on it gives `ENOENT`, as on Linux.
    #[allow(clippy::too_many_arguments)]
    pub fn path_link(&mut self, mem: &mut Mem, old_fd: u32, old_flags: u32, old_path: u32, old_len: u32, new_fd: u32, new_path: u32, new_len: u32) -> R {
        let old_dir = self.dir_fd(old_fd)?;
        let new_dir = self.dir_fd(new_fd)?;
        let old_path = self.path_arg(mem, old_path, old_len)?;
        let new_path = self.path_arg(mem, new_path, new_len)?;
        let src = self.vfs.resolve(old_dir, &old_path, old_flags & LOOKUP_SYMLINK_FOLLOW != 0)?;
        let src_ino = src.ino.ok_or(Errno::Noent)?;
        if self.vfs.get(src_ino)?.is_dir() {
            return Err(Errno::Perm.into());
        }
        let dst = self.vfs.resolve(new_dir, &new_path, false)?;
        if dst.ino.is_some() {
            return Err(Errno::Exist.into());
        }
        if dst.trailing_slash {
            return Err(Errno::Noent.into());
        }
        self.writable_dir(dst.parent)?;
        if !self.vfs.get(src_ino)?.writable {
            return Err(Errno::Xdev.into());
        }
        self.vfs.reserve(0, 0, 1)?;
        // The entry added: a step, as for every directory edit.
        self.charge(cost::STEP)?;
        let now = self.wall();
        if let Content::Dir { entries, .. } = &mut self.vfs.get_mut(dst.parent)?.content {
            entries.insert(dst.name, src_ino);
        }
        let node = self.vfs.get_mut(src_ino)?;
        node.nlink += 1;
        node.ctim = now;
        Ok(())
    }

    /// `path_readlink`: the target, truncated to the buffer as on Linux.
    #[allow(clippy::too_many_arguments)]
    pub fn path_readlink(&mut self, mem: &mut Mem, fd: u32, path: u32, len: u32, buf: u32, buf_len: u32, bufused: u32) -> R {
        let r = self.resolve_at(mem, fd, path, len, false)?;
        let ino = r.ino.ok_or(Errno::Noent)?;
        let Content::Symlink(target) = &self.vfs.get(ino)?.content else {
            return Err(Errno::Inval.into());
        };
        let n = target.len().min(buf_len as usize);
        let bytes = target.as_bytes()[..n].to_vec();
        self.charge(cost::bytes(n as u64))?;
        mem.write(buf, &bytes)?;
        mem.put_u32(bufused, n as u32)?;
        Ok(())
    }

    /// `path_remove_directory`
    pub fn path_remove_directory(&mut self, mem: &mut Mem, fd: u32, path: u32, len: u32) -> R {
        let r = self.resolve_at(mem, fd, path, len, false)?;
        let ino = r.ino.ok_or(Errno::Noent)?;
        if r.name == "." {
            return Err(Errno::Inval.into());
        }
        let node = self.vfs.get(ino)?;
        let Content::Dir { entries, .. } = &node.content else {
            return Err(Errno::Notdir.into());
        };
        if !entries.is_empty() {
            return Err(Errno::Notempty.into());
        }
        self.writable_dir(r.parent)?;
        let now = self.wall();
        self.vfs.unlink(r.parent, &r.name, now)?;
        Ok(())
    }

    /// `path_unlink_file`
    pub fn path_unlink_file(&mut self, mem: &mut Mem, fd: u32, path: u32, len: u32) -> R {
        let r = self.resolve_at(mem, fd, path, len, false)?;
        let ino = r.ino.ok_or(Errno::Noent)?;
        if self.vfs.get(ino)?.is_dir() {
            return Err(Errno::Isdir.into());
        }
        if r.trailing_slash {
            return Err(Errno::Notdir.into());
        }
        self.writable_dir(r.parent)?;
        let now = self.wall();
        self.vfs.unlink(r.parent, &r.name, now)?;
        Ok(())
    }

    /// `path_symlink`: a relative target may be anything (following one
    /// that leaves the preopen is refused at resolution time); an absolute
    /// one could only ever name something outside it, and is refused with
    /// `ENOTCAPABLE` here, as wasmtime refuses it.
    pub fn path_symlink(&mut self, mem: &mut Mem, target: u32, target_len: u32, fd: u32, path: u32, len: u32) -> R {
        // A target is held by the host and written to disk with the output:
        // bound it as Linux does (ENAMETOOLONG past PATH_MAX), and refuse
        // what no host path can hold. Checked before the bytes are copied.
        if target_len as usize > MAX_PATH_LEN {
            return Err(Errno::Nametoolong.into());
        }
        self.charge(cost::path(u64::from(target_len)))?;
        let target = mem.str(target, target_len)?;
        if target.contains('\0') {
            return Err(Errno::Inval.into());
        }
        if target.starts_with('/') {
            return Err(Errno::Notcapable.into());
        }
        let r = self.resolve_at(mem, fd, path, len, false)?;
        if r.ino.is_some() {
            return Err(Errno::Exist.into());
        }
        if r.trailing_slash {
            return Err(Errno::Noent.into());
        }
        self.writable_dir(r.parent)?;
        let now = self.wall();
        self.vfs.create(r.parent, &r.name, Content::Symlink(target), now)??;
        Ok(())
    }

    /// `path_rename`, with POSIX `rename` semantics.
    #[allow(clippy::too_many_arguments)]
    pub fn path_rename(&mut self, mem: &mut Mem, old_fd: u32, old_path: u32, old_len: u32, new_fd: u32, new_path: u32, new_len: u32) -> R {
        let old_dir = self.dir_fd(old_fd)?;
        let new_dir = self.dir_fd(new_fd)?;
        let old_path = self.path_arg(mem, old_path, old_len)?;
        let new_path = self.path_arg(mem, new_path, new_len)?;
        let src = self.vfs.resolve(old_dir, &old_path, false)?;
        let src_ino = src.ino.ok_or(Errno::Noent)?;
        let dst = self.vfs.resolve(new_dir, &new_path, false)?;
        if src.name == "." || dst.name == "." {
            return Err(Errno::Inval.into());
        }
        self.writable_dir(src.parent)?;
        self.writable_dir(dst.parent)?;
        if self.vfs.get(src.parent)?.writable != self.vfs.get(dst.parent)?.writable {
            return Err(Errno::Xdev.into());
        }
        let src_is_dir = self.vfs.get(src_ino)?.is_dir();
        if !src_is_dir && (dst.trailing_slash || src.trailing_slash) {
            return Err(Errno::Notdir.into());
        }
        if let Some(dst_ino) = dst.ino {
            if dst_ino == src_ino {
                return Ok(());
            }
            let dst_node = self.vfs.get(dst_ino)?;
            match (&dst_node.content, src_is_dir) {
                (Content::Dir { entries, .. }, true) => {
                    if !entries.is_empty() {
                        return Err(Errno::Notempty.into());
                    }
                }
                (Content::Dir { .. }, false) => return Err(Errno::Isdir.into()),
                (_, true) => return Err(Errno::Notdir.into()),
                (_, false) => {}
            }
        }
        if src_is_dir && self.vfs.is_ancestor(src_ino, dst.parent) {
            return Err(Errno::Inval.into());
        }
        // The entry moved: removed from one directory, added to another.
        self.charge(cost::steps(2))?;
        let now = self.wall();
        if dst.ino.is_some() {
            self.vfs.unlink(dst.parent, &dst.name, now)?;
        }
        if let Content::Dir { entries, .. } = &mut self.vfs.get_mut(src.parent)?.content {
            entries.remove(&src.name);
        }
        let p = self.vfs.get_mut(src.parent)?;
        p.mtim = now;
        p.ctim = now;
        let p = self.vfs.get_mut(dst.parent)?;
        if let Content::Dir { entries, .. } = &mut p.content {
            entries.insert(dst.name, src_ino);
        }
        p.mtim = now;
        p.ctim = now;
        let node = self.vfs.get_mut(src_ino)?;
        node.ctim = now;
        if let Content::Dir { parent, .. } = &mut node.content {
            *parent = dst.parent;
        }
        Ok(())
    }
}
