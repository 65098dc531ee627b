//! The few WASI preview 1 calls that std does not expose, imported directly.
//!
//! The declarations use the same core-wasm types as std's own imports of
//! these names (all `i32`, `i64` for 64-bit values), so that after LTO the
//! two declarations of one import agree.

use std::os::fd::AsRawFd;

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    #[link_name = "random_get"]
    fn wasi_random_get(buf: i32, len: i32) -> i32;
    #[link_name = "clock_time_get"]
    fn wasi_clock_time_get(id: i32, precision: i64, time: i32) -> i32;
    #[link_name = "fd_filestat_get"]
    fn wasi_fd_filestat_get(fd: i32, buf: i32) -> i32;
}

/// `clockid::monotonic` in the witx.
const CLOCK_MONOTONIC: i32 = 1;

/// Fills `buf` from the runtime's `random_get`, or returns its errno.
pub fn random_get(buf: &mut [u8]) -> Result<(), u16> {
    // SAFETY: the runtime writes exactly `buf.len()` bytes at `buf`, which
    // is a live, exclusive borrow of that many bytes.
    let errno = unsafe { wasi_random_get(buf.as_mut_ptr() as i32, buf.len() as i32) };
    if errno == 0 {
        Ok(())
    } else {
        Err(errno as u16)
    }
}

/// The monotonic clock in nanoseconds, or the errno.
pub fn monotonic_now() -> Result<u64, u16> {
    let mut t = 0u64;
    // SAFETY: the runtime writes one u64 at `&mut t`, a live, aligned u64.
    let errno = unsafe { wasi_clock_time_get(CLOCK_MONOTONIC, 1, &mut t as *mut u64 as i32) };
    if errno == 0 { Ok(t) } else { Err(errno as u16) }
}

/// The `filestat` fields that std's stable API does not show.
pub struct Filestat {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
}

/// `fd_filestat_get` on `path`, opened read-only (this follows symlinks, as
/// `fs::metadata` does).
pub fn filestat_of(path: &str) -> Result<Filestat, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("open {:?}", e.kind()))?;
    // filestat: dev u64, ino u64, filetype u8 (+7), nlink u64, size u64,
    // atim u64, mtim u64, ctim u64: 64 bytes, 8-aligned.
    let mut buf = [0u64; 8];
    // SAFETY: the runtime writes a 64-byte filestat at `buf`, which is 64
    // live, 8-aligned bytes; the descriptor stays open while `file` lives.
    let errno = unsafe { wasi_fd_filestat_get(file.as_raw_fd(), buf.as_mut_ptr() as i32) };
    if errno != 0 {
        return Err(format!("errno {errno}"));
    }
    Ok(Filestat {
        dev: buf[0],
        ino: buf[1],
        nlink: buf[3],
    })
}
