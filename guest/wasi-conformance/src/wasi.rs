//! WASI preview 1, called directly: the raw imports, the constants of the
//! witx (`typenames.witx`), and thin wrappers that turn pointers and errnos
//! into slices and `Result`s. No policy lives here; the checks are in main.
//!
//! The imports use core-wasm types only (`i32`, `i64` for 64-bit values),
//! exactly as std's own declarations of the same imports do, so that after
//! LTO every declaration of one import has one signature.

#![allow(dead_code)] // the full vocabulary of the ABI, not all of it used

use std::fmt;

/// A file descriptor.
pub type Fd = u32;

/// An `errno` value. `Result<_, Errno>` never holds `SUCCESS` in `Err`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub u16);

/// Names of the errno values, indexed by value (typenames.witx).
const ERRNO_NAMES: [&str; 77] = [
    "success",
    "2big",
    "acces",
    "addrinuse",
    "addrnotavail",
    "afnosupport",
    "again",
    "already",
    "badf",
    "badmsg",
    "busy",
    "canceled",
    "child",
    "connaborted",
    "connrefused",
    "connreset",
    "deadlk",
    "destaddrreq",
    "dom",
    "dquot",
    "exist",
    "fault",
    "fbig",
    "hostunreach",
    "idrm",
    "ilseq",
    "inprogress",
    "intr",
    "inval",
    "io",
    "isconn",
    "isdir",
    "loop",
    "mfile",
    "mlink",
    "msgsize",
    "multihop",
    "nametoolong",
    "netdown",
    "netreset",
    "netunreach",
    "nfile",
    "nobufs",
    "nodev",
    "noent",
    "noexec",
    "nolck",
    "nolink",
    "nomem",
    "nomsg",
    "noprotoopt",
    "nospc",
    "nosys",
    "notconn",
    "notdir",
    "notempty",
    "notrecoverable",
    "notsock",
    "notsup",
    "notty",
    "nxio",
    "overflow",
    "ownerdead",
    "perm",
    "pipe",
    "proto",
    "protonosupport",
    "prototype",
    "range",
    "rofs",
    "spipe",
    "srch",
    "stale",
    "timedout",
    "txtbsy",
    "xdev",
    "notcapable",
];

impl Errno {
    pub const SUCCESS: Errno = Errno(0);
    pub const ACCES: Errno = Errno(2);
    pub const BADF: Errno = Errno(8);
    pub const EXIST: Errno = Errno(20);
    pub const ILSEQ: Errno = Errno(25);
    pub const INVAL: Errno = Errno(28);
    pub const ISDIR: Errno = Errno(31);
    pub const LOOP: Errno = Errno(32);
    pub const NAMETOOLONG: Errno = Errno(37);
    pub const NOENT: Errno = Errno(44);
    pub const NOSYS: Errno = Errno(52);
    pub const NOTDIR: Errno = Errno(54);
    pub const NOTEMPTY: Errno = Errno(55);
    pub const NOTSOCK: Errno = Errno(57);
    pub const NOTSUP: Errno = Errno(58);
    pub const PERM: Errno = Errno(63);
    pub const ROFS: Errno = Errno(69);
    pub const SPIPE: Errno = Errno(70);
    pub const XDEV: Errno = Errno(75);
    pub const NOTCAPABLE: Errno = Errno(76);

    pub fn name(self) -> &'static str {
        ERRNO_NAMES
            .get(usize::from(self.0))
            .copied()
            .unwrap_or("unknown")
    }

    fn result(raw: i32) -> Result<(), Errno> {
        if raw == 0 {
            Ok(())
        } else {
            Err(Errno(raw as u16))
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

// clockid
pub const CLOCK_REALTIME: u32 = 0;
pub const CLOCK_MONOTONIC: u32 = 1;
pub const CLOCK_PROCESS_CPUTIME: u32 = 2;
pub const CLOCK_THREAD_CPUTIME: u32 = 3;

// filetype
pub const FILETYPE_UNKNOWN: u8 = 0;
pub const FILETYPE_BLOCK_DEVICE: u8 = 1;
pub const FILETYPE_CHARACTER_DEVICE: u8 = 2;
pub const FILETYPE_DIRECTORY: u8 = 3;
pub const FILETYPE_REGULAR_FILE: u8 = 4;
pub const FILETYPE_SOCKET_DGRAM: u8 = 5;
pub const FILETYPE_SOCKET_STREAM: u8 = 6;
pub const FILETYPE_SYMBOLIC_LINK: u8 = 7;

pub fn filetype_name(t: u8) -> &'static str {
    match t {
        FILETYPE_UNKNOWN => "unknown",
        FILETYPE_BLOCK_DEVICE => "block_device",
        FILETYPE_CHARACTER_DEVICE => "character_device",
        FILETYPE_DIRECTORY => "directory",
        FILETYPE_REGULAR_FILE => "regular_file",
        FILETYPE_SOCKET_DGRAM => "socket_dgram",
        FILETYPE_SOCKET_STREAM => "socket_stream",
        FILETYPE_SYMBOLIC_LINK => "symbolic_link",
        _ => "invalid",
    }
}

// whence
pub const WHENCE_SET: u8 = 0;
pub const WHENCE_CUR: u8 = 1;
pub const WHENCE_END: u8 = 2;

// advice
pub const ADVICE_NORMAL: u8 = 0;
pub const ADVICE_SEQUENTIAL: u8 = 1;

// fdflags
pub const FDFLAGS_APPEND: u16 = 1 << 0;
pub const FDFLAGS_DSYNC: u16 = 1 << 1;
pub const FDFLAGS_NONBLOCK: u16 = 1 << 2;
pub const FDFLAGS_RSYNC: u16 = 1 << 3;
pub const FDFLAGS_SYNC: u16 = 1 << 4;

// fstflags
pub const FSTFLAGS_ATIM: u16 = 1 << 0;
pub const FSTFLAGS_ATIM_NOW: u16 = 1 << 1;
pub const FSTFLAGS_MTIM: u16 = 1 << 2;
pub const FSTFLAGS_MTIM_NOW: u16 = 1 << 3;

// lookupflags
pub const LOOKUP_SYMLINK_FOLLOW: u32 = 1 << 0;

// oflags
pub const OFLAGS_CREAT: u16 = 1 << 0;
pub const OFLAGS_DIRECTORY: u16 = 1 << 1;
pub const OFLAGS_EXCL: u16 = 1 << 2;
pub const OFLAGS_TRUNC: u16 = 1 << 3;

// rights (only the ones the checks name; ALL is every defined bit)
pub const RIGHTS_FD_DATASYNC: u64 = 1 << 0;
pub const RIGHTS_FD_READ: u64 = 1 << 1;
pub const RIGHTS_FD_SEEK: u64 = 1 << 2;
pub const RIGHTS_FD_WRITE: u64 = 1 << 6;
pub const RIGHTS_FD_ALLOCATE: u64 = 1 << 8;
pub const RIGHTS_FD_READDIR: u64 = 1 << 14;
pub const RIGHTS_FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
pub const RIGHTS_ALL: u64 = (1 << 30) - 1;
/// What programs expect of every directory's base rights (the
/// wasi-testsuite's `path_open_preopen`): the `path_*` rights but
/// `path_filestat_set_size`, `fd_readdir`, `fd_filestat_get` and
/// `fd_filestat_set_times`.
pub const RIGHTS_DIRECTORY_BASE: u64 = 0x7b7_fe00;
/// What they expect a directory to pass on: the above and every right of a
/// file (datasync, read, seek, fdstat_set_flags, sync, tell, write, advise,
/// allocate, filestat_set_size, poll_fd_readwrite).
pub const RIGHTS_DIRECTORY_INHERITING: u64 = 0xff7_ffff;

// eventtype
pub const EVENTTYPE_CLOCK: u8 = 0;

// subclockflags
pub const SUBCLOCKFLAGS_ABSTIME: u16 = 1 << 0;

// sdflags
pub const SDFLAGS_RD: u8 = 1 << 0;
pub const SDFLAGS_WR: u8 = 1 << 1;

/// `prestat` (tag 0 = dir).
#[repr(C)]
#[derive(Default)]
pub struct Prestat {
    pub tag: u8,
    pub name_len: u32,
}

/// `fdstat`.
#[repr(C)]
#[derive(Default)]
pub struct Fdstat {
    pub filetype: u8,
    pub flags: u16,
    pub rights_base: u64,
    pub rights_inheriting: u64,
}

/// `filestat`.
#[repr(C)]
#[derive(Default, Debug)]
pub struct Filestat {
    pub dev: u64,
    pub ino: u64,
    pub filetype: u8,
    pub nlink: u64,
    pub size: u64,
    pub atim: u64,
    pub mtim: u64,
    pub ctim: u64,
}

/// A `subscription` whose union holds `subscription_clock` (tag 0).
#[repr(C)]
pub struct ClockSubscription {
    userdata: u64,
    tag: u8,
    _pad0: [u8; 7],
    id: u32,
    _pad1: u32,
    timeout: u64,
    precision: u64,
    flags: u16,
    _pad2: [u8; 6],
}

impl ClockSubscription {
    pub fn new(userdata: u64, id: u32, timeout: u64, precision: u64, flags: u16) -> Self {
        ClockSubscription {
            userdata,
            tag: EVENTTYPE_CLOCK,
            _pad0: [0; 7],
            id,
            _pad1: 0,
            timeout,
            precision,
            flags,
            _pad2: [0; 6],
        }
    }
}

/// An `event`.
#[repr(C)]
#[derive(Default)]
pub struct Event {
    pub userdata: u64,
    pub error: u16,
    pub kind: u8,
    pub nbytes: u64,
    pub flags: u16,
}

// The layouts above must be the witx ones.
const _: () = {
    assert!(size_of::<Prestat>() == 8);
    assert!(size_of::<Fdstat>() == 24);
    assert!(size_of::<Filestat>() == 64);
    assert!(std::mem::offset_of!(Filestat, nlink) == 24);
    assert!(size_of::<ClockSubscription>() == 48);
    assert!(std::mem::offset_of!(ClockSubscription, id) == 16);
    assert!(std::mem::offset_of!(ClockSubscription, timeout) == 24);
    assert!(std::mem::offset_of!(ClockSubscription, flags) == 40);
    assert!(size_of::<Event>() == 32);
    assert!(std::mem::offset_of!(Event, kind) == 10);
    assert!(std::mem::offset_of!(Event, nbytes) == 16);
};

/// `iovec` / `ciovec`.
#[repr(C)]
struct Iovec {
    buf: i32,
    len: i32,
}

/// Size of a `dirent` header; the name follows it.
pub const DIRENT_SIZE: usize = 24;

mod raw {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        pub fn args_get(argv: i32, argv_buf: i32) -> i32;
        pub fn args_sizes_get(argc: i32, argv_buf_size: i32) -> i32;
        pub fn environ_get(environ: i32, environ_buf: i32) -> i32;
        pub fn environ_sizes_get(count: i32, buf_size: i32) -> i32;
        pub fn clock_res_get(id: i32, resolution: i32) -> i32;
        pub fn clock_time_get(id: i32, precision: i64, time: i32) -> i32;
        pub fn fd_advise(fd: i32, offset: i64, len: i64, advice: i32) -> i32;
        pub fn fd_allocate(fd: i32, offset: i64, len: i64) -> i32;
        pub fn fd_close(fd: i32) -> i32;
        pub fn fd_datasync(fd: i32) -> i32;
        pub fn fd_fdstat_get(fd: i32, stat: i32) -> i32;
        pub fn fd_fdstat_set_flags(fd: i32, flags: i32) -> i32;
        pub fn fd_fdstat_set_rights(fd: i32, base: i64, inheriting: i64) -> i32;
        pub fn fd_filestat_get(fd: i32, stat: i32) -> i32;
        pub fn fd_filestat_set_size(fd: i32, size: i64) -> i32;
        pub fn fd_filestat_set_times(fd: i32, atim: i64, mtim: i64, fst_flags: i32) -> i32;
        pub fn fd_pread(fd: i32, iovs: i32, iovs_len: i32, offset: i64, nread: i32) -> i32;
        pub fn fd_prestat_get(fd: i32, prestat: i32) -> i32;
        pub fn fd_prestat_dir_name(fd: i32, path: i32, path_len: i32) -> i32;
        pub fn fd_pwrite(fd: i32, iovs: i32, iovs_len: i32, offset: i64, nwritten: i32) -> i32;
        pub fn fd_read(fd: i32, iovs: i32, iovs_len: i32, nread: i32) -> i32;
        pub fn fd_readdir(fd: i32, buf: i32, buf_len: i32, cookie: i64, bufused: i32) -> i32;
        pub fn fd_renumber(fd: i32, to: i32) -> i32;
        pub fn fd_seek(fd: i32, offset: i64, whence: i32, newoffset: i32) -> i32;
        pub fn fd_sync(fd: i32) -> i32;
        pub fn fd_tell(fd: i32, offset: i32) -> i32;
        pub fn fd_write(fd: i32, iovs: i32, iovs_len: i32, nwritten: i32) -> i32;
        pub fn path_create_directory(fd: i32, path: i32, path_len: i32) -> i32;
        pub fn path_filestat_get(fd: i32, flags: i32, path: i32, path_len: i32, stat: i32) -> i32;
        pub fn path_filestat_set_times(
            fd: i32,
            flags: i32,
            path: i32,
            path_len: i32,
            atim: i64,
            mtim: i64,
            fst_flags: i32,
        ) -> i32;
        pub fn path_link(
            old_fd: i32,
            old_flags: i32,
            old_path: i32,
            old_path_len: i32,
            new_fd: i32,
            new_path: i32,
            new_path_len: i32,
        ) -> i32;
        pub fn path_open(
            fd: i32,
            dirflags: i32,
            path: i32,
            path_len: i32,
            oflags: i32,
            rights_base: i64,
            rights_inheriting: i64,
            fdflags: i32,
            opened_fd: i32,
        ) -> i32;
        pub fn path_readlink(
            fd: i32,
            path: i32,
            path_len: i32,
            buf: i32,
            buf_len: i32,
            bufused: i32,
        ) -> i32;
        pub fn path_remove_directory(fd: i32, path: i32, path_len: i32) -> i32;
        pub fn path_rename(
            fd: i32,
            old_path: i32,
            old_path_len: i32,
            new_fd: i32,
            new_path: i32,
            new_path_len: i32,
        ) -> i32;
        pub fn path_symlink(
            old_path: i32,
            old_path_len: i32,
            fd: i32,
            new_path: i32,
            new_path_len: i32,
        ) -> i32;
        pub fn path_unlink_file(fd: i32, path: i32, path_len: i32) -> i32;
        pub fn poll_oneoff(
            subscriptions: i32,
            events: i32,
            nsubscriptions: i32,
            nevents: i32,
        ) -> i32;
        pub fn random_get(buf: i32, buf_len: i32) -> i32;
        pub fn sched_yield() -> i32;
        pub fn sock_accept(fd: i32, flags: i32, new_fd: i32) -> i32;
        pub fn sock_recv(
            fd: i32,
            ri_data: i32,
            ri_data_len: i32,
            ri_flags: i32,
            ro_datalen: i32,
            ro_flags: i32,
        ) -> i32;
        pub fn sock_send(
            fd: i32,
            si_data: i32,
            si_data_len: i32,
            si_flags: i32,
            so_datalen: i32,
        ) -> i32;
        pub fn sock_shutdown(fd: i32, how: i32) -> i32;
    }
}

// Pointers and lengths cross the ABI as i32: wasm32 addresses fit.
fn p<T: ?Sized>(ptr: *const T) -> i32 {
    ptr as *const u8 as usize as i32
}

/// An output parameter: the runtime writes one `T` there.
fn out<T>(r: &mut T) -> i32 {
    r as *mut T as usize as i32
}

fn len(n: usize) -> i32 {
    n as i32
}

// SAFETY (for every wrapper below): each pointer handed to the runtime
// points to live memory of the size the ABI says it writes or reads there
// (the slice's length, or one value of the named witx type, whose layout the
// const assertions above pin), exclusively borrowed when written, for the
// duration of the call only; the runtime keeps no pointer after returning.

/// `(argc, argv_buf_size)`.
pub fn args_sizes_get() -> Result<(u32, u32), Errno> {
    let (mut count, mut size) = (0u32, 0u32);
    // SAFETY: see above; two u32 outputs.
    Errno::result(unsafe { raw::args_sizes_get(out(&mut count), out(&mut size)) })?;
    Ok((count, size))
}

/// The arguments as raw bytes, given their count and buffer size.
pub fn args_get(count: u32, size: u32) -> Result<Vec<Vec<u8>>, Errno> {
    let mut ptrs = vec![0u32; count as usize];
    let mut buf = vec![0u8; size as usize];
    // SAFETY: see above; `count` pointers and `size` bytes, as the runtime
    // told us in args_sizes_get.
    Errno::result(unsafe { raw::args_get(p(ptrs.as_mut_ptr()), p(buf.as_mut_ptr())) })?;
    Ok(split_strings(&ptrs, &buf))
}

/// `(count, buf_size)` of the environment.
pub fn environ_sizes_get() -> Result<(u32, u32), Errno> {
    let (mut count, mut size) = (0u32, 0u32);
    // SAFETY: see above; two u32 outputs.
    Errno::result(unsafe { raw::environ_sizes_get(out(&mut count), out(&mut size)) })?;
    Ok((count, size))
}

/// The environment as raw `KEY=VALUE` bytes.
pub fn environ_get(count: u32, size: u32) -> Result<Vec<Vec<u8>>, Errno> {
    let mut ptrs = vec![0u32; count as usize];
    let mut buf = vec![0u8; size as usize];
    // SAFETY: see above; sizes from environ_sizes_get.
    Errno::result(unsafe { raw::environ_get(p(ptrs.as_mut_ptr()), p(buf.as_mut_ptr())) })?;
    Ok(split_strings(&ptrs, &buf))
}

/// Reads the NUL-terminated strings that `ptrs` point to inside `buf`.
/// A pointer outside `buf` or a missing NUL yields a marker string, so a bad
/// runtime shows up as a failed check rather than a crash.
fn split_strings(ptrs: &[u32], buf: &[u8]) -> Vec<Vec<u8>> {
    let base = buf.as_ptr() as usize;
    ptrs.iter()
        .map(|&ptr| {
            let start = (ptr as usize).wrapping_sub(base);
            match buf
                .get(start..)
                .and_then(|rest| rest.iter().position(|&b| b == 0).map(|end| &rest[..end]))
            {
                Some(s) => s.to_vec(),
                None => b"<pointer outside buffer or no NUL>".to_vec(),
            }
        })
        .collect()
}

pub fn clock_res_get(id: u32) -> Result<u64, Errno> {
    let mut res = 0u64;
    // SAFETY: see above; one u64 output.
    Errno::result(unsafe { raw::clock_res_get(id as i32, out(&mut res)) })?;
    Ok(res)
}

pub fn clock_time_get(id: u32, precision: u64) -> Result<u64, Errno> {
    let mut t = 0u64;
    // SAFETY: see above; one u64 output.
    Errno::result(unsafe { raw::clock_time_get(id as i32, precision as i64, out(&mut t)) })?;
    Ok(t)
}

pub fn random_get(buf: &mut [u8]) -> Result<(), Errno> {
    // SAFETY: see above; the runtime fills buf.len() bytes.
    Errno::result(unsafe { raw::random_get(p(buf.as_mut_ptr()), len(buf.len())) })
}

pub fn fd_prestat_get(fd: Fd) -> Result<Prestat, Errno> {
    let mut st = Prestat::default();
    // SAFETY: see above; one prestat output.
    Errno::result(unsafe { raw::fd_prestat_get(fd as i32, out(&mut st)) })?;
    Ok(st)
}

pub fn fd_prestat_dir_name(fd: Fd, buf: &mut [u8]) -> Result<(), Errno> {
    // SAFETY: see above; at most buf.len() bytes written.
    Errno::result(unsafe {
        raw::fd_prestat_dir_name(fd as i32, p(buf.as_mut_ptr()), len(buf.len()))
    })
}

pub fn fd_fdstat_get(fd: Fd) -> Result<Fdstat, Errno> {
    let mut st = Fdstat::default();
    // SAFETY: see above; one fdstat output.
    Errno::result(unsafe { raw::fd_fdstat_get(fd as i32, out(&mut st)) })?;
    Ok(st)
}

pub fn fd_fdstat_set_flags(fd: Fd, flags: u16) -> Result<(), Errno> {
    // SAFETY: no pointers.
    Errno::result(unsafe { raw::fd_fdstat_set_flags(fd as i32, i32::from(flags)) })
}

pub fn fd_fdstat_set_rights(fd: Fd, base: u64, inheriting: u64) -> Result<(), Errno> {
    // SAFETY: no pointers.
    Errno::result(unsafe { raw::fd_fdstat_set_rights(fd as i32, base as i64, inheriting as i64) })
}

pub fn fd_filestat_get(fd: Fd) -> Result<Filestat, Errno> {
    let mut st = Filestat::default();
    // SAFETY: see above; one filestat output.
    Errno::result(unsafe { raw::fd_filestat_get(fd as i32, out(&mut st)) })?;
    Ok(st)
}

pub fn fd_filestat_set_size(fd: Fd, size: u64) -> Result<(), Errno> {
    // SAFETY: no pointers.
    Errno::result(unsafe { raw::fd_filestat_set_size(fd as i32, size as i64) })
}

pub fn fd_filestat_set_times(fd: Fd, atim: u64, mtim: u64, flags: u16) -> Result<(), Errno> {
    // SAFETY: no pointers.
    Errno::result(unsafe {
        raw::fd_filestat_set_times(fd as i32, atim as i64, mtim as i64, i32::from(flags))
    })
}

pub fn fd_read(fd: Fd, buf: &mut [u8]) -> Result<usize, Errno> {
    fd_read_vectored(fd, &mut [buf])
}

pub fn fd_read_vectored(fd: Fd, bufs: &mut [&mut [u8]]) -> Result<usize, Errno> {
    let iovs: Vec<Iovec> = bufs
        .iter_mut()
        .map(|b| Iovec {
            buf: p(b.as_mut_ptr()),
            len: len(b.len()),
        })
        .collect();
    let mut n = 0u32;
    // SAFETY: see above; each iovec names a live, exclusive buffer.
    Errno::result(unsafe {
        raw::fd_read(fd as i32, p(iovs.as_ptr()), len(iovs.len()), out(&mut n))
    })?;
    Ok(n as usize)
}

pub fn fd_pread(fd: Fd, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    let iov = Iovec {
        buf: p(buf.as_mut_ptr()),
        len: len(buf.len()),
    };
    let mut n = 0u32;
    // SAFETY: see above; one iovec over `buf`.
    Errno::result(unsafe { raw::fd_pread(fd as i32, p(&iov), 1, offset as i64, out(&mut n)) })?;
    Ok(n as usize)
}

pub fn fd_write(fd: Fd, data: &[u8]) -> Result<usize, Errno> {
    fd_write_vectored(fd, &[data])
}

pub fn fd_write_vectored(fd: Fd, bufs: &[&[u8]]) -> Result<usize, Errno> {
    let iovs: Vec<Iovec> = bufs
        .iter()
        .map(|b| Iovec {
            buf: p(b.as_ptr()),
            len: len(b.len()),
        })
        .collect();
    let mut n = 0u32;
    // SAFETY: see above; each ciovec names a live buffer the runtime reads.
    Errno::result(unsafe {
        raw::fd_write(fd as i32, p(iovs.as_ptr()), len(iovs.len()), out(&mut n))
    })?;
    Ok(n as usize)
}

pub fn fd_pwrite(fd: Fd, data: &[u8], offset: u64) -> Result<usize, Errno> {
    let iov = Iovec {
        buf: p(data.as_ptr()),
        len: len(data.len()),
    };
    let mut n = 0u32;
    // SAFETY: see above; one ciovec over `data`.
    Errno::result(unsafe { raw::fd_pwrite(fd as i32, p(&iov), 1, offset as i64, out(&mut n)) })?;
    Ok(n as usize)
}

pub fn fd_seek(fd: Fd, offset: i64, whence: u8) -> Result<u64, Errno> {
    let mut pos = 0u64;
    // SAFETY: see above; one u64 output.
    Errno::result(unsafe { raw::fd_seek(fd as i32, offset, i32::from(whence), out(&mut pos)) })?;
    Ok(pos)
}

pub fn fd_tell(fd: Fd) -> Result<u64, Errno> {
    let mut pos = 0u64;
    // SAFETY: see above; one u64 output.
    Errno::result(unsafe { raw::fd_tell(fd as i32, out(&mut pos)) })?;
    Ok(pos)
}

/// Fills `buf` with dirents from `cookie` on; returns bytes used.
pub fn fd_readdir(fd: Fd, buf: &mut [u8], cookie: u64) -> Result<usize, Errno> {
    let mut used = 0u32;
    // SAFETY: see above; at most buf.len() bytes written.
    Errno::result(unsafe {
        raw::fd_readdir(
            fd as i32,
            p(buf.as_mut_ptr()),
            len(buf.len()),
            cookie as i64,
            out(&mut used),
        )
    })?;
    Ok(used as usize)
}

pub fn fd_close(fd: Fd) -> Result<(), Errno> {
    // SAFETY: no pointers.
    Errno::result(unsafe { raw::fd_close(fd as i32) })
}

pub fn fd_renumber(fd: Fd, to: Fd) -> Result<(), Errno> {
    // SAFETY: no pointers.
    Errno::result(unsafe { raw::fd_renumber(fd as i32, to as i32) })
}

pub fn fd_advise(fd: Fd, offset: u64, length: u64, advice: u8) -> Result<(), Errno> {
    // SAFETY: no pointers.
    Errno::result(unsafe {
        raw::fd_advise(fd as i32, offset as i64, length as i64, i32::from(advice))
    })
}

pub fn fd_allocate(fd: Fd, offset: u64, length: u64) -> Result<(), Errno> {
    // SAFETY: no pointers.
    Errno::result(unsafe { raw::fd_allocate(fd as i32, offset as i64, length as i64) })
}

pub fn fd_datasync(fd: Fd) -> Result<(), Errno> {
    // SAFETY: no pointers.
    Errno::result(unsafe { raw::fd_datasync(fd as i32) })
}

pub fn fd_sync(fd: Fd) -> Result<(), Errno> {
    // SAFETY: no pointers.
    Errno::result(unsafe { raw::fd_sync(fd as i32) })
}

#[allow(clippy::too_many_arguments)]
pub fn path_open(
    dir: Fd,
    dirflags: u32,
    path: impl AsRef<[u8]>,
    oflags: u16,
    base: u64,
    inheriting: u64,
    fdflags: u16,
) -> Result<Fd, Errno> {
    let path = path.as_ref();
    let mut fd: Fd = u32::MAX;
    // SAFETY: see above; the path is read, one fd written.
    Errno::result(unsafe {
        raw::path_open(
            dir as i32,
            dirflags as i32,
            p(path.as_ptr()),
            len(path.len()),
            i32::from(oflags),
            base as i64,
            inheriting as i64,
            i32::from(fdflags),
            out(&mut fd),
        )
    })?;
    Ok(fd)
}

pub fn path_filestat_get(dir: Fd, flags: u32, path: impl AsRef<[u8]>) -> Result<Filestat, Errno> {
    let path = path.as_ref();
    let mut st = Filestat::default();
    // SAFETY: see above; the path is read, one filestat written.
    Errno::result(unsafe {
        raw::path_filestat_get(
            dir as i32,
            flags as i32,
            p(path.as_ptr()),
            len(path.len()),
            out(&mut st),
        )
    })?;
    Ok(st)
}

pub fn path_filestat_set_times(
    dir: Fd,
    flags: u32,
    path: impl AsRef<[u8]>,
    atim: u64,
    mtim: u64,
    fst_flags: u16,
) -> Result<(), Errno> {
    let path = path.as_ref();
    // SAFETY: see above; the path is read.
    Errno::result(unsafe {
        raw::path_filestat_set_times(
            dir as i32,
            flags as i32,
            p(path.as_ptr()),
            len(path.len()),
            atim as i64,
            mtim as i64,
            i32::from(fst_flags),
        )
    })
}

pub fn path_create_directory(dir: Fd, path: impl AsRef<[u8]>) -> Result<(), Errno> {
    let path = path.as_ref();
    // SAFETY: see above; the path is read.
    Errno::result(unsafe {
        raw::path_create_directory(dir as i32, p(path.as_ptr()), len(path.len()))
    })
}

pub fn path_remove_directory(dir: Fd, path: impl AsRef<[u8]>) -> Result<(), Errno> {
    let path = path.as_ref();
    // SAFETY: see above; the path is read.
    Errno::result(unsafe {
        raw::path_remove_directory(dir as i32, p(path.as_ptr()), len(path.len()))
    })
}

pub fn path_unlink_file(dir: Fd, path: impl AsRef<[u8]>) -> Result<(), Errno> {
    let path = path.as_ref();
    // SAFETY: see above; the path is read.
    Errno::result(unsafe { raw::path_unlink_file(dir as i32, p(path.as_ptr()), len(path.len())) })
}

pub fn path_rename(
    dir: Fd,
    old: impl AsRef<[u8]>,
    new_dir: Fd,
    new: impl AsRef<[u8]>,
) -> Result<(), Errno> {
    let (old, new) = (old.as_ref(), new.as_ref());
    // SAFETY: see above; both paths are read.
    Errno::result(unsafe {
        raw::path_rename(
            dir as i32,
            p(old.as_ptr()),
            len(old.len()),
            new_dir as i32,
            p(new.as_ptr()),
            len(new.len()),
        )
    })
}

pub fn path_symlink(
    target: impl AsRef<[u8]>,
    dir: Fd,
    link: impl AsRef<[u8]>,
) -> Result<(), Errno> {
    let (target, link) = (target.as_ref(), link.as_ref());
    // SAFETY: see above; both paths are read.
    Errno::result(unsafe {
        raw::path_symlink(
            p(target.as_ptr()),
            len(target.len()),
            dir as i32,
            p(link.as_ptr()),
            len(link.len()),
        )
    })
}

/// Reads the link into `buf`; returns bytes used.
pub fn path_readlink(dir: Fd, path: impl AsRef<[u8]>, buf: &mut [u8]) -> Result<usize, Errno> {
    let path = path.as_ref();
    let mut used = 0u32;
    // SAFETY: see above; the path is read, at most buf.len() bytes written.
    Errno::result(unsafe {
        raw::path_readlink(
            dir as i32,
            p(path.as_ptr()),
            len(path.len()),
            p(buf.as_mut_ptr()),
            len(buf.len()),
            out(&mut used),
        )
    })?;
    Ok(used as usize)
}

pub fn path_link(
    dir: Fd,
    flags: u32,
    old: impl AsRef<[u8]>,
    new_dir: Fd,
    new: impl AsRef<[u8]>,
) -> Result<(), Errno> {
    let (old, new) = (old.as_ref(), new.as_ref());
    // SAFETY: see above; both paths are read.
    Errno::result(unsafe {
        raw::path_link(
            dir as i32,
            flags as i32,
            p(old.as_ptr()),
            len(old.len()),
            new_dir as i32,
            p(new.as_ptr()),
            len(new.len()),
        )
    })
}

/// Polls clock subscriptions; returns the number of events written.
pub fn poll_oneoff(subs: &[ClockSubscription], events: &mut [Event]) -> Result<usize, Errno> {
    let mut n = 0u32;
    // SAFETY: see above; `subs.len()` subscriptions read and at most that
    // many events written, so `events` must be at least as long.
    assert!(events.len() >= subs.len());
    Errno::result(unsafe {
        raw::poll_oneoff(
            p(subs.as_ptr()),
            p(events.as_mut_ptr()),
            len(subs.len()),
            out(&mut n),
        )
    })?;
    Ok(n as usize)
}

pub fn sched_yield() -> Result<(), Errno> {
    // SAFETY: no pointers.
    Errno::result(unsafe { raw::sched_yield() })
}

pub fn sock_accept(fd: Fd, flags: u16) -> Result<Fd, Errno> {
    let mut new_fd: Fd = u32::MAX;
    // SAFETY: see above; one fd written.
    Errno::result(unsafe { raw::sock_accept(fd as i32, i32::from(flags), out(&mut new_fd)) })?;
    Ok(new_fd)
}

pub fn sock_recv(fd: Fd, buf: &mut [u8], flags: u16) -> Result<(usize, u16), Errno> {
    let iov = Iovec {
        buf: p(buf.as_mut_ptr()),
        len: len(buf.len()),
    };
    let (mut n, mut oflags) = (0u32, 0u16);
    // SAFETY: see above; one iovec, a u32 and a u16 written.
    Errno::result(unsafe {
        raw::sock_recv(
            fd as i32,
            p(&iov),
            1,
            i32::from(flags),
            out(&mut n),
            out(&mut oflags),
        )
    })?;
    Ok((n as usize, oflags))
}

pub fn sock_send(fd: Fd, data: &[u8], flags: u16) -> Result<usize, Errno> {
    let iov = Iovec {
        buf: p(data.as_ptr()),
        len: len(data.len()),
    };
    let mut n = 0u32;
    // SAFETY: see above; one ciovec read, a u32 written.
    Errno::result(unsafe { raw::sock_send(fd as i32, p(&iov), 1, i32::from(flags), out(&mut n)) })?;
    Ok(n as usize)
}

pub fn sock_shutdown(fd: Fd, how: u8) -> Result<(), Errno> {
    // SAFETY: no pointers.
    Errno::result(unsafe { raw::sock_shutdown(fd as i32, i32::from(how)) })
}

/// One parsed `dirent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirent {
    pub next: u64,
    pub ino: u64,
    pub kind: u8,
    pub name: Vec<u8>,
}

/// Parses the complete dirents at the start of `buf` (bytes used by
/// fd_readdir); a trailing, truncated entry is left out.
pub fn parse_dirents(buf: &[u8]) -> Vec<Dirent> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + DIRENT_SIZE <= buf.len() {
        let h = &buf[at..at + DIRENT_SIZE];
        let next = u64::from_le_bytes(h[0..8].try_into().expect("8 bytes"));
        let ino = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        let namlen = u32::from_le_bytes(h[16..20].try_into().expect("4 bytes")) as usize;
        let kind = h[20];
        let Some(name) = buf.get(at + DIRENT_SIZE..at + DIRENT_SIZE + namlen) else {
            break;
        };
        out.push(Dirent {
            next,
            ino,
            kind,
            name: name.to_vec(),
        });
        at += DIRENT_SIZE + namlen;
    }
    out
}
