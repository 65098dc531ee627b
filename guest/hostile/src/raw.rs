//! Raw WASI preview 1 path calls on a preopen's descriptor: std's `fs` goes
//! through wasi-libc, which refuses absolute and `..` paths itself before
//! the runtime sees them, and the point here is to ask the runtime.
//!
//! The declarations use the same core-wasm types as std's own imports of
//! these names (`i32`, `i64` for 64-bit values), so that after LTO the two
//! declarations of one import agree.

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    fn fd_prestat_get(fd: i32, out: i32) -> i32;
    fn fd_prestat_dir_name(fd: i32, path: i32, len: i32) -> i32;
    fn fd_close(fd: i32) -> i32;
    #[allow(clippy::too_many_arguments)]
    fn path_open(fd: i32, dirflags: i32, path: i32, len: i32, oflags: i32, base: i64, inheriting: i64, fdflags: i32, out: i32) -> i32;
    fn path_create_directory(fd: i32, path: i32, len: i32) -> i32;
    fn path_symlink(target: i32, target_len: i32, fd: i32, path: i32, len: i32) -> i32;
    fn path_rename(fd: i32, old: i32, old_len: i32, new_fd: i32, new: i32, new_len: i32) -> i32;
    fn path_link(fd: i32, flags: i32, old: i32, old_len: i32, new_fd: i32, new: i32, new_len: i32) -> i32;
    fn path_unlink_file(fd: i32, path: i32, len: i32) -> i32;
}

const LOOKUP_SYMLINK_FOLLOW: i32 = 1;
const OFLAGS_CREAT: i32 = 1;
const RIGHTS_ALL: i64 = (1 << 29) - 1;

/// The descriptor of the preopen named `name`.
pub fn preopen(name: &str) -> i32 {
    for fd in 3..64 {
        let mut stat = [0u32; 2];
        // SAFETY: the runtime writes an 8-byte prestat into `stat`.
        if unsafe { fd_prestat_get(fd, stat.as_mut_ptr() as i32) } != 0 {
            continue;
        }
        let mut buf = vec![0u8; stat[1] as usize];
        // SAFETY: the runtime writes at most `buf.len()` bytes into `buf`.
        if unsafe { fd_prestat_dir_name(fd, buf.as_mut_ptr() as i32, buf.len() as i32) } == 0 && buf == name.as_bytes() {
            return fd;
        }
    }
    panic!("no preopen {name}");
}

fn open(fd: i32, path: &str, oflags: i32) -> u16 {
    let mut opened = -1i32;
    // SAFETY: `path` is live for the call; the runtime writes one i32 at `opened`.
    let e = unsafe { path_open(fd, LOOKUP_SYMLINK_FOLLOW, path.as_ptr() as i32, path.len() as i32, oflags, RIGHTS_ALL, RIGHTS_ALL, 0, &mut opened as *mut i32 as i32) };
    if e == 0 {
        // SAFETY: `opened` is a descriptor the runtime just gave us.
        unsafe { fd_close(opened) };
    }
    e as u16
}

/// Opens `path` under `fd` for reading, following symlinks; the errno.
pub fn open_read(fd: i32, path: &str) -> u16 {
    open(fd, path, 0)
}

/// Opens `path` under `fd`, creating it; the errno.
pub fn create(fd: i32, path: &str) -> u16 {
    open(fd, path, OFLAGS_CREAT)
}

/// `path_create_directory`; the errno.
pub fn mkdir(fd: i32, path: &str) -> u16 {
    // SAFETY: `path` is live for the call.
    (unsafe { path_create_directory(fd, path.as_ptr() as i32, path.len() as i32) }) as u16
}

/// `path_symlink`: a link at `path` under `fd` pointing to `target`; the errno.
pub fn symlink(target: &str, fd: i32, path: &str) -> u16 {
    // SAFETY: both strings are live for the call.
    (unsafe { path_symlink(target.as_ptr() as i32, target.len() as i32, fd, path.as_ptr() as i32, path.len() as i32) }) as u16
}

/// `path_rename`; the errno.
pub fn rename(fd: i32, old: &str, new_fd: i32, new: &str) -> u16 {
    // SAFETY: both strings are live for the call.
    (unsafe { path_rename(fd, old.as_ptr() as i32, old.len() as i32, new_fd, new.as_ptr() as i32, new.len() as i32) }) as u16
}

/// `path_link` (not following symlinks); the errno.
pub fn link(fd: i32, old: &str, new_fd: i32, new: &str) -> u16 {
    // SAFETY: both strings are live for the call.
    (unsafe { path_link(fd, 0, old.as_ptr() as i32, old.len() as i32, new_fd, new.as_ptr() as i32, new.len() as i32) }) as u16
}

/// `path_unlink_file`; the errno.
pub fn unlink(fd: i32, path: &str) -> u16 {
    // SAFETY: `path` is live for the call.
    (unsafe { path_unlink_file(fd, path.as_ptr() as i32, path.len() as i32) }) as u16
}

/// The WASI name of an errno.
pub fn errno_name(e: u16) -> &'static str {
    match e {
        2 => "EACCES",
        8 => "EBADF",
        20 => "EEXIST",
        25 => "EILSEQ",
        28 => "EINVAL",
        31 => "EISDIR",
        32 => "ELOOP",
        37 => "ENAMETOOLONG",
        44 => "ENOENT",
        54 => "ENOTDIR",
        63 => "EPERM",
        69 => "EROFS",
        75 => "EXDEV",
        76 => "ENOTCAPABLE",
        _ => "other",
    }
}
