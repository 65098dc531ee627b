//! Descriptors: every `fd_*` call, over the in-memory file system and
//! the job's stdio, and the `sock_*` calls (no descriptor is a socket).

use super::*;

impl WasiHost {
    // ---- sockets: none ----------------------------------------------------

    /// `sock_*`: no descriptor is a socket.
    pub fn sock_any(&mut self, fd: u32) -> R {
        self.fd(fd)?;
        Err(Errno::Notsock.into())
    }

    // ---- descriptors -------------------------------------------------------

    pub(super) fn fd(&self, fd: u32) -> Result<&Fd, Errno> {
        self.fds.get(&fd).ok_or(Errno::Badf)
    }

    pub(super) fn fd_mut(&mut self, fd: u32) -> Result<&mut Fd, Errno> {
        self.fds.get_mut(&fd).ok_or(Errno::Badf)
    }

    pub(super) fn dir_fd(&self, fd: u32) -> Result<Ino, Errno> {
        match self.fd(fd)? {
            Fd::Dir { ino, .. } => Ok(*ino),
            _ => Err(Errno::Notdir),
        }
    }

    /// Gives `entry` the lowest free descriptor number, as POSIX does;
    /// finding it scans the open ones, a step each.
    pub(super) fn insert_fd(&mut self, entry: Fd) -> Result<u32, Fault> {
        if self.fds.len() >= MAX_OPEN_FDS {
            return Err(Errno::Mfile.into());
        }
        let n = self.fds.keys().zip(0u32..).find(|(k, i)| **k != *i).map_or(self.fds.len() as u32, |(_, i)| i);
        self.charge(cost::steps(u64::from(n)))?;
        self.fds.insert(n, entry);
        Ok(n)
    }

    pub(super) fn release(&mut self, entry: Fd) {
        if let Fd::File { ino, .. } | Fd::Dir { ino, .. } = entry {
            if let Ok(node) = self.vfs.get_mut(ino) {
                node.open = node.open.saturating_sub(1);
            }
            self.vfs.maybe_free(ino);
        }
    }

    /// `fd_close`
    pub fn fd_close(&mut self, fd: u32) -> R {
        let entry = self.fds.remove(&fd).ok_or(Errno::Badf)?;
        self.release(entry);
        Ok(())
    }

    /// `fd_renumber`: moves `from` onto `to`, closing what `to` was.
    pub fn fd_renumber(&mut self, from: u32, to: u32) -> R {
        self.fd(from)?;
        self.fd(to)?;
        if from == to {
            return Ok(());
        }
        let entry = self.fds.remove(&from).ok_or(Errno::Badf)?;
        if let Some(old) = self.fds.insert(to, entry) {
            self.release(old);
        }
        Ok(())
    }

    /// `fd_fdstat_get`
    pub fn fd_fdstat_get(&mut self, mem: &mut Mem, fd: u32, out: u32) -> R {
        let entry = self.fd(fd)?;
        let (filetype, flags) = match entry {
            Fd::Stdin | Fd::Stdout | Fd::Stderr => (FILETYPE_CHARACTER_DEVICE, 0),
            Fd::File { ino, flags, .. } => (self.vfs.get(*ino)?.filetype(), *flags),
            Fd::Dir { .. } => (FILETYPE_DIRECTORY, 0),
        };
        let (base, inheriting) = entry.rights();
        let mut rec = mem.record_mut(out, 24)?;
        rec.u8(0, filetype);
        rec.u8(1, 0);
        rec.u16(2, flags);
        rec.u32(4, 0);
        rec.u64(8, base);
        rec.u64(16, inheriting);
        Ok(())
    }

    /// `fd_fdstat_set_flags`: only `APPEND` changes anything; the others are
    /// meaningless in memory and accepted.
    pub fn fd_fdstat_set_flags(&mut self, fd: u32, new: u16) -> R {
        if new & !FDFLAGS_ALL != 0 {
            return Err(Errno::Inval.into());
        }
        if let Fd::File { flags, .. } = self.fd_mut(fd)? {
            *flags = new;
        }
        Ok(())
    }

    /// `fd_fdstat_set_rights`: rights, base and inheriting, can only be
    /// dropped (a file has no inheriting rights).
    pub fn fd_fdstat_set_rights(&mut self, fd: u32, base: u64, inheriting: u64) -> R {
        match self.fd_mut(fd)? {
            Fd::File { rights, .. } => {
                if base & !*rights != 0 || inheriting != 0 {
                    return Err(Errno::Notcapable.into());
                }
                *rights = base;
                Ok(())
            }
            Fd::Dir { rights, inheriting: passed_on, .. } => {
                if base & !*rights != 0 || inheriting & !*passed_on != 0 {
                    return Err(Errno::Notcapable.into());
                }
                *rights = base;
                *passed_on = inheriting;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `fd_prestat_get`
    pub fn fd_prestat_get(&mut self, mem: &mut Mem, fd: u32, out: u32) -> R {
        match self.fd(fd)? {
            Fd::Dir { preopen: Some(name), .. } => {
                let len = u32::try_from(name.len()).map_err(|_| Errno::Overflow)?;
                let mut rec = mem.record_mut(out, 8)?;
                rec.u32(0, 0);
                rec.u32(4, len);
                Ok(())
            }
            _ => Err(Errno::Badf.into()),
        }
    }

    /// `fd_prestat_dir_name`
    pub fn fd_prestat_dir_name(&mut self, mem: &mut Mem, fd: u32, path: u32, len: u32) -> R {
        match self.fd(fd)? {
            Fd::Dir { preopen: Some(name), .. } => {
                if (len as usize) < name.len() {
                    return Err(Errno::Nametoolong.into());
                }
                let name = name.clone();
                self.charge(cost::bytes(name.len() as u64))?;
                mem.write(path, name.as_bytes())?;
                Ok(())
            }
            _ => Err(Errno::Badf.into()),
        }
    }

    pub(super) fn write_filestat(&self, mem: &mut Mem, ino: Ino, out: u32) -> R {
        let node = self.vfs.get(ino)?;
        let mut rec = mem.record_mut(out, 64)?;
        rec.u64(0, DEV);
        rec.u64(8, ino);
        rec.u64(16, u64::from(node.filetype()));
        rec.u64(24, node.nlink.max(1));
        rec.u64(32, node.size());
        rec.u64(40, node.atim);
        rec.u64(48, node.mtim);
        rec.u64(56, node.ctim);
        Ok(())
    }

    /// `fd_filestat_get`
    pub fn fd_filestat_get(&mut self, mem: &mut Mem, fd: u32, out: u32) -> R {
        match self.fd(fd)? {
            Fd::Stdin | Fd::Stdout | Fd::Stderr => {
                let mut rec = mem.record_mut(out, 64)?;
                for at in (0..64).step_by(8) {
                    rec.u64(at, 0);
                }
                rec.u8(16, FILETYPE_CHARACTER_DEVICE);
                rec.u64(24, 1);
                Ok(())
            }
            Fd::File { ino, .. } | Fd::Dir { ino, .. } => {
                let ino = *ino;
                self.write_filestat(mem, ino, out)
            }
        }
    }

    pub(super) fn set_times(&mut self, ino: Ino, atim: u64, mtim: u64, fst: u16) -> R {
        if fst & !(FST_ATIM | FST_ATIM_NOW | FST_MTIM | FST_MTIM_NOW) != 0
            || (fst & FST_ATIM != 0 && fst & FST_ATIM_NOW != 0)
            || (fst & FST_MTIM != 0 && fst & FST_MTIM_NOW != 0)
        {
            return Err(Errno::Inval.into());
        }
        let now = self.wall();
        let node = self.vfs.get_mut(ino)?;
        if !node.writable {
            return Err(Errno::Rofs.into());
        }
        if fst & FST_ATIM != 0 {
            node.atim = atim;
        } else if fst & FST_ATIM_NOW != 0 {
            node.atim = now;
        }
        if fst & FST_MTIM != 0 {
            node.mtim = mtim;
        } else if fst & FST_MTIM_NOW != 0 {
            node.mtim = now;
        }
        node.ctim = now;
        Ok(())
    }

    /// `fd_filestat_set_times`
    pub fn fd_filestat_set_times(&mut self, fd: u32, atim: u64, mtim: u64, fst: u16) -> R {
        match self.fd(fd)? {
            Fd::File { ino, .. } | Fd::Dir { ino, .. } => {
                let ino = *ino;
                self.set_times(ino, atim, mtim, fst)
            }
            _ => Err(Errno::Badf.into()),
        }
    }

    pub(super) fn file_fd(&self, fd: u32) -> Result<(Ino, u64, u16, u64), Errno> {
        match self.fd(fd)? {
            Fd::File { ino, offset, flags, rights } => Ok((*ino, *offset, *flags, *rights)),
            Fd::Dir { .. } => Err(Errno::Isdir),
            _ => Err(Errno::Spipe),
        }
    }

    /// Resizes file `ino` to `len`, charging the output cap first.
    pub(super) fn resize(&mut self, ino: Ino, len: u64) -> R {
        if len > MAX_FILE_SIZE {
            return Err(Errno::Fbig.into());
        }
        let now = self.wall();
        let old = self.vfs.get(ino)?.size();
        // Checked against the cap before any memory is touched: a size the
        // cap allows is one this host holds (the cap is part of the job).
        self.vfs.reserve(old, len, 0)?;
        let len_usize = usize::try_from(len).map_err(|_| Errno::Fbig)?;
        // The zeros a growth fills in are work; a shrink is not.
        self.charge(cost::bytes(len.saturating_sub(old)))?;
        let bytes = self.file_bytes_mut(ino, len.min(old))?;
        bytes.resize(len_usize, 0);
        let node = self.vfs.get_mut(ino)?;
        node.mtim = now;
        node.ctim = now;
        Ok(())
    }

    /// File `ino`'s bytes, to change. A file whose bytes are still the
    /// input's ([`Inode::from_input`](super::super::vfs::Inode::from_input))
    /// is copied first, its first `keep` bytes (all that the change keeps),
    /// and the copy is charged like any other. Whether to charge follows
    /// that flag, not the bytes' reference count, which depends on what
    /// else the host holds (other runs of the job, a blob cache).
    pub(super) fn file_bytes_mut(&mut self, ino: Ino, keep: u64) -> R<&mut Vec<u8>> {
        let from_input = self.vfs.get(ino)?.from_input;
        if from_input {
            self.charge(cost::bytes(keep))?;
        }
        let node = self.vfs.get_mut(ino)?;
        node.from_input = false;
        match &mut node.content {
            Content::File(bytes) => {
                if from_input {
                    let keep = usize::try_from(keep).unwrap_or(usize::MAX).min(bytes.len());
                    *bytes = Arc::new(bytes[..keep].to_vec());
                }
                Ok(Arc::make_mut(bytes))
            }
            _ => Err(Errno::Inval.into()),
        }
    }

    /// Writes the guest bytes `iovs` name into file `ino` at `offset`,
    /// growing the file (and charging the output caps) first, and copying
    /// straight from guest memory. The iovecs may overlap, so their total can
    /// exceed the guest's memory; nothing is held beyond the file itself.
    /// Returns the bytes written.
    pub(super) fn write_iovecs(&mut self, ino: Ino, offset: u64, mem: &Mem, iovs: &[IoVec]) -> R<u64> {
        let total = IoVec::total(iovs);
        let end = offset.checked_add(total).filter(|&e| e <= MAX_FILE_SIZE).ok_or(Errno::Fbig)?;
        if end > self.vfs.get(ino)?.size() {
            self.resize(ino, end)?;
        }
        self.charge(cost::bytes(total))?;
        let now = self.wall();
        let size = self.vfs.get(ino)?.size();
        let bytes = self.file_bytes_mut(ino, size)?;
        let mut at = usize::try_from(offset).map_err(|_| Errno::Fbig)?;
        for v in iovs {
            let src = mem.slice(v.ptr, v.len)?;
            bytes[at..at + src.len()].copy_from_slice(src);
            at += src.len();
        }
        let node = self.vfs.get_mut(ino)?;
        node.mtim = now;
        node.ctim = now;
        Ok(total)
    }

    /// Reads up to `want` bytes of file `ino` at `offset` into `iovs`,
    /// charging the bytes before they are copied; returns how many.
    pub(super) fn read_file(&mut self, mem: &mut Mem, iovs: &[IoVec], ino: Ino, offset: u64, want: usize) -> R<usize> {
        let data = match &self.vfs.get(ino)?.content {
            Content::File(bytes) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
                let end = start.saturating_add(want).min(bytes.len());
                &bytes[start..end]
            }
            Content::Dir { .. } => return Err(Errno::Isdir.into()),
            Content::Symlink(_) => return Err(Errno::Inval.into()),
        };
        // The fuel is a field apart from the file system the bytes borrow.
        pay(&mut self.fuel_remaining, cost::bytes(data.len() as u64))?;
        Ok(mem.scatter(iovs, data)?)
    }

    /// `fd_filestat_set_size`
    pub fn fd_filestat_set_size(&mut self, fd: u32, size: u64) -> R {
        let (ino, _, _, rights) = self.file_fd(fd).map_err(|e| if e == Errno::Spipe { Errno::Inval } else { e })?;
        if rights & RIGHT_FD_WRITE == 0 {
            return Err(Errno::Badf.into());
        }
        if size > MAX_FILE_SIZE {
            return Err(Errno::Inval.into());
        }
        self.resize(ino, size)
    }

    /// `fd_advise`: accepted and ignored after checking its arguments.
    pub fn fd_advise(&mut self, fd: u32, _offset: u64, _len: u64, advice: u8) -> R {
        self.file_fd(fd)?;
        if advice > 5 {
            return Err(Errno::Inval.into());
        }
        Ok(())
    }

    /// `fd_allocate`: makes the file at least `offset + len` long.
    pub fn fd_allocate(&mut self, fd: u32, offset: u64, len: u64) -> R {
        let (ino, _, _, rights) = self.file_fd(fd)?;
        if rights & RIGHT_FD_WRITE == 0 {
            return Err(Errno::Badf.into());
        }
        // As posix_fallocate: a negative offset or a length that is not
        // positive is EINVAL, an end past the largest file EFBIG.
        if offset > MAX_FILE_SIZE || len == 0 || len > MAX_FILE_SIZE {
            return Err(Errno::Inval.into());
        }
        let end = offset.checked_add(len).filter(|&e| e <= MAX_FILE_SIZE).ok_or(Errno::Fbig)?;
        if end > self.vfs.get(ino)?.size() {
            self.resize(ino, end)?;
        }
        Ok(())
    }

    /// `fd_sync` and `fd_datasync`: memory is always in sync.
    pub fn fd_sync(&mut self, fd: u32) -> R {
        self.fd(fd)?;
        Ok(())
    }

    /// `fd_seek`
    pub fn fd_seek(&mut self, mem: &mut Mem, fd: u32, delta: i64, whence: u8, out: u32) -> R {
        let (ino, offset, _, _) = self.file_fd(fd).map_err(|e| if e == Errno::Isdir { Errno::Badf } else { e })?;
        let base = match whence {
            0 => 0i128,
            1 => offset as i128,
            2 => self.vfs.get(ino)?.size() as i128,
            _ => return Err(Errno::Inval.into()),
        };
        let new = base + delta as i128;
        if new < 0 || new > i64::MAX as i128 {
            return Err(Errno::Inval.into());
        }
        let new = new as u64;
        mem.put_u64(out, new)?;
        if let Fd::File { offset, .. } = self.fd_mut(fd)? {
            *offset = new;
        }
        Ok(())
    }

    /// `fd_tell`
    pub fn fd_tell(&mut self, mem: &mut Mem, fd: u32, out: u32) -> R {
        let (_, offset, _, _) = self.file_fd(fd).map_err(|e| if e == Errno::Isdir { Errno::Badf } else { e })?;
        mem.put_u64(out, offset)?;
        Ok(())
    }

    /// The iovec array of a read or write, charged for its bytes, and cut
    /// to [`MAX_IO_BYTES`].
    pub(super) fn iovecs(&mut self, mem: &Mem, ptr: u32, count: u32) -> R<Vec<IoVec>> {
        if count > MAX_IOVS {
            return Err(Errno::Inval.into());
        }
        self.charge(cost::bytes(8 * u64::from(count)))?;
        Ok(IoVec::clamp(mem.iovecs(ptr, count)?, MAX_IO_BYTES))
    }

    /// `fd_read`
    pub fn fd_read(&mut self, mem: &mut Mem, fd: u32, iovs: u32, iovs_len: u32, nread: u32) -> R {
        let iovs = self.iovecs(mem, iovs, iovs_len)?;
        let want: usize = iovs.iter().map(|v| v.len as usize).sum();
        let n = match self.fd(fd)?.clone() {
            Fd::Stdin => {
                let start = self.stdin_pos.min(self.stdin.len());
                let n = want.min(self.stdin.len() - start);
                self.charge(cost::bytes(n as u64))?;
                let n = mem.scatter(&iovs, &self.stdin[start..start + n])?;
                self.stdin_pos += n;
                n
            }
            Fd::Stdout | Fd::Stderr => return Err(Errno::Badf.into()),
            Fd::Dir { .. } => return Err(Errno::Isdir.into()),
            Fd::File { ino, offset, rights, .. } => {
                if rights & RIGHT_FD_READ == 0 {
                    return Err(Errno::Badf.into());
                }
                let n = self.read_file(mem, &iovs, ino, offset, want)?;
                if let Fd::File { offset, .. } = self.fd_mut(fd)? {
                    *offset += n as u64;
                }
                n
            }
        };
        mem.put_u32(nread, n as u32)?;
        Ok(())
    }

    /// `fd_pread`
    pub fn fd_pread(&mut self, mem: &mut Mem, fd: u32, iovs: u32, iovs_len: u32, offset: u64, nread: u32) -> R {
        let iovs = self.iovecs(mem, iovs, iovs_len)?;
        let want: usize = iovs.iter().map(|v| v.len as usize).sum();
        let (ino, _, _, rights) = self.file_fd(fd)?;
        if rights & RIGHT_FD_READ == 0 {
            return Err(Errno::Badf.into());
        }
        if offset > MAX_FILE_SIZE {
            return Err(Errno::Inval.into());
        }
        let n = self.read_file(mem, &iovs, ino, offset, want)?;
        mem.put_u32(nread, n as u32)?;
        Ok(())
    }

    /// Appends the guest bytes `iovs` name to stdout (1) or stderr (2),
    /// trapping first if that would pass the stream's cap; copies straight
    /// from guest memory. Returns the bytes written.
    pub(super) fn emit(&mut self, stream: u32, mem: &Mem, iovs: &[IoVec]) -> R<u64> {
        let total = IoVec::total(iovs);
        let (buf, cap, kind) =
            if stream == 1 { (&mut self.stdout, self.stdout_cap, TrapKind::StdoutLimit) } else { (&mut self.stderr, self.stderr_cap, TrapKind::StderrLimit) };
        if (buf.len() as u64).saturating_add(total) > cap {
            return Err(Fault::Stop(Stop::Trap(kind)));
        }
        self.charge(cost::bytes(total))?;
        let buf = if stream == 1 { &mut self.stdout } else { &mut self.stderr };
        let start = buf.len();
        for v in iovs {
            buf.extend_from_slice(mem.slice(v.ptr, v.len)?);
        }
        if self.stream_stdio {
            // Best effort: the captured bytes are the outcome; a closed host
            // pipe must not change it.
            let written = &buf[start..];
            let _ = if stream == 1 { std::io::stdout().write_all(written) } else { std::io::stderr().write_all(written) };
        }
        if let Some(tap) = &self.tap {
            (tap.0)(stream, &buf[start..]);
        }
        Ok(total)
    }

    /// `fd_write`. The iovecs may overlap, so their total can be far larger
    /// than the guest's memory: each destination checks its cap against that
    /// total before copying anything.
    pub fn fd_write(&mut self, mem: &mut Mem, fd: u32, iovs: u32, iovs_len: u32, nwritten: u32) -> R {
        let iovs = self.iovecs(mem, iovs, iovs_len)?;
        let written = match self.fd(fd)?.clone() {
            Fd::Stdout => self.emit(1, mem, &iovs)?,
            Fd::Stderr => self.emit(2, mem, &iovs)?,
            Fd::Stdin => return Err(Errno::Badf.into()),
            Fd::Dir { .. } => return Err(Errno::Isdir.into()),
            Fd::File { ino, offset, flags, rights } => {
                if rights & RIGHT_FD_WRITE == 0 {
                    return Err(Errno::Badf.into());
                }
                let at = if flags & FDFLAG_APPEND != 0 { self.vfs.get(ino)?.size() } else { offset };
                let written = self.write_iovecs(ino, at, mem, &iovs)?;
                if let Fd::File { offset, .. } = self.fd_mut(fd)? {
                    *offset = at + written;
                }
                written
            }
        };
        mem.put_u32(nwritten, u32::try_from(written).map_err(|_| Errno::Overflow)?)?;
        Ok(())
    }

    /// `fd_pwrite`
    pub fn fd_pwrite(&mut self, mem: &mut Mem, fd: u32, iovs: u32, iovs_len: u32, offset: u64, nwritten: u32) -> R {
        let iovs = self.iovecs(mem, iovs, iovs_len)?;
        let (ino, _, flags, rights) = self.file_fd(fd)?;
        if rights & RIGHT_FD_WRITE == 0 {
            return Err(Errno::Badf.into());
        }
        if offset > MAX_FILE_SIZE {
            return Err(Errno::Inval.into());
        }
        // As on Linux, pwrite on an append-mode file appends.
        let at = if flags & FDFLAG_APPEND != 0 { self.vfs.get(ino)?.size() } else { offset };
        let written = self.write_iovecs(ino, at, mem, &iovs)?;
        mem.put_u32(nwritten, u32::try_from(written).map_err(|_| Errno::Overflow)?)?;
        Ok(())
    }

    /// `fd_readdir`: `.`, `..`, then entries in sorted order; the cookie is
    /// the index of the next entry.
    pub fn fd_readdir(&mut self, mem: &mut Mem, fd: u32, buf: u32, buf_len: u32, cookie: u64, bufused: u32) -> R {
        let ino = match self.fd(fd)? {
            Fd::Dir { ino, .. } => *ino,
            _ => return Err(Errno::Notdir.into()),
        };
        mem.slice(buf, buf_len)?;
        let parent = self.vfs.parent(ino)?;
        // Skipping to the cookie is a step per entry skipped, paid first;
        // each entry listed is a step and its bytes, paid as it is listed.
        let count = self.vfs.entries(ino)?.len() as u64 + 2;
        self.charge(cost::steps(cookie.min(count)))?;
        let start = usize::try_from(cookie).unwrap_or(usize::MAX);
        let dots = [(".", ino), ("..", parent)];
        let list = dots.into_iter().chain(self.vfs.entries(ino)?.iter().map(|(n, &i)| (n.as_str(), i)));
        let mut out: Vec<u8> = Vec::new();
        for (index, (name, child)) in list.enumerate().skip(start) {
            if out.len() >= buf_len as usize {
                break;
            }
            pay(&mut self.fuel_remaining, cost::STEP + cost::bytes(24 + name.len() as u64))?;
            let filetype = self.vfs.get(child).map(|n| n.filetype()).unwrap_or(0);
            out.extend_from_slice(&(index as u64 + 1).to_le_bytes());
            out.extend_from_slice(&child.to_le_bytes());
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(&[filetype, 0, 0, 0]);
            out.extend_from_slice(name.as_bytes());
        }
        out.truncate(buf_len as usize);
        mem.write(buf, &out)?;
        mem.put_u32(bufused, out.len() as u32)?;
        Ok(())
    }
}
