//! The versions and names every layer shares, and the import surface canon
//! offers a guest: every function of WASI preview 1
//! (`wasi_snapshot_preview1`) with its core-wasm signature.
//!
//! This is the bottom of the crate: it depends on nothing, so the verifying
//! side (receipts name the ABI and runtime versions) and the running side
//! (the sandbox implements these functions) can share it without either
//! depending on the other. Job validation checks a module's imports against
//! the table before anything runs, so an unknown import is a clear error
//! naming it rather than a link failure; a test checks that the host
//! defines exactly these.

/// Version of canon's determinism ABI: the rules of this file, of the WASI
/// host and of the load-time instrumentation (`instrument::VERSION`).
/// Any change that can alter an outcome bumps it; it is recorded in receipts.
///
/// - 1: wasmtime's fuel and global NaN canonicalisation.
/// - 2: canon's own fuel metering and the job's call-depth limit; NaNs
///   canonicalised only where their bits escape (a NaN made by
///   `neg`/`abs`/`copysign` and then stored reads back as the positive
///   canonical NaN; see `docs/FLOATS.md`).
/// - 3: WASI calls charge fuel for the work they do (`sandbox::wasi::cost`,
///   docs/FUEL.md); guest sizes, offsets and counts checked the same way on
///   every build (`EINVAL`/`EFBIG` past 2^63 - 1, at most 1024 iovecs and
///   2^31 - 4096 bytes per read or write, as on Linux).
/// - 4: threaded jobs (`wasm32-wasip1-threads`) run under canon's
///   deterministic scheduler, version [`SCHEDULER_VERSION`]
///   (docs/THREADS.md); unthreaded jobs run as under 3.
pub const DETERMINISM_ABI: u32 = 4;

/// Version of the deterministic thread scheduler: its switch points, its
/// policies and their streams, what waits, notifies and spawns cost and
/// return (docs/THREADS.md). Part of [`DETERMINISM_ABI`].
pub const SCHEDULER_VERSION: u32 = 1;

/// The import module of wasi-threads' one function.
pub const WASI_THREADS_MODULE: &str = "wasi";

/// `wasi::thread-spawn: (start_arg: i32) -> i32`, wasi-threads' one
/// function: a new thread's id (1 ..= [`MAX_THREAD_ID`]), or a negative
/// errno.
pub const THREAD_SPAWN: &str = "thread-spawn";

/// The largest thread id wasi-threads allows (ids are 29 bits; wasi-libc
/// keeps flags in the top bits of a lock word beside the id).
pub const MAX_THREAD_ID: u32 = 0x1FFF_FFFF;

/// The signature of `wasi::thread-spawn`.
pub const THREAD_SPAWN_SIGNATURE: Signature = (THREAD_SPAWN, &[I32], &[I32]);

/// The wasmtime version canon is built against.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// The module name of canon's own imports (the instrumentation's fuel and
/// depth counters and the watchdog's page): reserved, so a guest may not
/// import from it nor a preload be registered under it.
pub const CANON_MODULE: &str = "canon";

/// The WASI preview 1 import module name.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// A core-wasm value type in a host function signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValType {
    /// `i32`
    I32,
    /// `i64`
    I64,
}

use ValType::{I32, I64};

/// One provided function: name, parameter types, result types.
pub type Signature = (&'static str, &'static [ValType], &'static [ValType]);

/// Every function of `wasi_snapshot_preview1`, sorted by name.
pub const WASI_FUNCTIONS: &[Signature] = &[
    ("args_get", &[I32, I32], &[I32]),
    ("args_sizes_get", &[I32, I32], &[I32]),
    ("clock_res_get", &[I32, I32], &[I32]),
    ("clock_time_get", &[I32, I64, I32], &[I32]),
    ("environ_get", &[I32, I32], &[I32]),
    ("environ_sizes_get", &[I32, I32], &[I32]),
    ("fd_advise", &[I32, I64, I64, I32], &[I32]),
    ("fd_allocate", &[I32, I64, I64], &[I32]),
    ("fd_close", &[I32], &[I32]),
    ("fd_datasync", &[I32], &[I32]),
    ("fd_fdstat_get", &[I32, I32], &[I32]),
    ("fd_fdstat_set_flags", &[I32, I32], &[I32]),
    ("fd_fdstat_set_rights", &[I32, I64, I64], &[I32]),
    ("fd_filestat_get", &[I32, I32], &[I32]),
    ("fd_filestat_set_size", &[I32, I64], &[I32]),
    ("fd_filestat_set_times", &[I32, I64, I64, I32], &[I32]),
    ("fd_pread", &[I32, I32, I32, I64, I32], &[I32]),
    ("fd_prestat_dir_name", &[I32, I32, I32], &[I32]),
    ("fd_prestat_get", &[I32, I32], &[I32]),
    ("fd_pwrite", &[I32, I32, I32, I64, I32], &[I32]),
    ("fd_read", &[I32, I32, I32, I32], &[I32]),
    ("fd_readdir", &[I32, I32, I32, I64, I32], &[I32]),
    ("fd_renumber", &[I32, I32], &[I32]),
    ("fd_seek", &[I32, I64, I32, I32], &[I32]),
    ("fd_sync", &[I32], &[I32]),
    ("fd_tell", &[I32, I32], &[I32]),
    ("fd_write", &[I32, I32, I32, I32], &[I32]),
    ("path_create_directory", &[I32, I32, I32], &[I32]),
    ("path_filestat_get", &[I32, I32, I32, I32, I32], &[I32]),
    ("path_filestat_set_times", &[I32, I32, I32, I32, I64, I64, I32], &[I32]),
    ("path_link", &[I32, I32, I32, I32, I32, I32, I32], &[I32]),
    ("path_open", &[I32, I32, I32, I32, I32, I64, I64, I32, I32], &[I32]),
    ("path_readlink", &[I32, I32, I32, I32, I32, I32], &[I32]),
    ("path_remove_directory", &[I32, I32, I32], &[I32]),
    ("path_rename", &[I32, I32, I32, I32, I32, I32], &[I32]),
    ("path_symlink", &[I32, I32, I32, I32, I32], &[I32]),
    ("path_unlink_file", &[I32, I32, I32], &[I32]),
    ("poll_oneoff", &[I32, I32, I32, I32], &[I32]),
    ("proc_exit", &[I32], &[]),
    ("proc_raise", &[I32], &[I32]),
    ("random_get", &[I32, I32], &[I32]),
    ("sched_yield", &[], &[I32]),
    ("sock_accept", &[I32, I32, I32], &[I32]),
    ("sock_recv", &[I32, I32, I32, I32, I32, I32], &[I32]),
    ("sock_send", &[I32, I32, I32, I32, I32], &[I32]),
    ("sock_shutdown", &[I32, I32], &[I32]),
];

/// The signature of a provided import, if canon provides it.
pub fn lookup(module: &str, name: &str) -> Option<&'static Signature> {
    if module == WASI_THREADS_MODULE && name == THREAD_SPAWN {
        return Some(&THREAD_SPAWN_SIGNATURE);
    }
    if module != WASI_MODULE {
        return None;
    }
    WASI_FUNCTIONS.binary_search_by(|(n, _, _)| n.cmp(&name)).ok().map(|i| &WASI_FUNCTIONS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_complete() {
        assert!(WASI_FUNCTIONS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(WASI_FUNCTIONS.len(), 46);
        assert!(lookup(WASI_MODULE, "fd_write").is_some());
        assert!(lookup("env", "fd_write").is_none());
        assert!(lookup(WASI_MODULE, "fd_frobnicate").is_none());
    }
}
