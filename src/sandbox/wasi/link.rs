//! Binds every `wasi_snapshot_preview1` function to its method on
//! [`WasiHost`], with the signature listed in [`crate::abi`].

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use wasmtime::{Caller, Global, Linker, Memory, SharedMemory};

use super::host::{Fault, WasiHost};
use super::mem::Mem;
use crate::abi::WASI_MODULE;
use crate::sandbox::limiter::Limiter;

/// The WASI world of one run, shared by the stores of all its threads (a
/// threaded job has one store per guest thread, and one WASI world).
pub type SharedHost = Arc<Mutex<WasiHost>>;

/// Locks the WASI world. Nothing panics while holding it halfway through
/// an update that matters to the outcome: a panic ends the run with no
/// result anyway.
pub fn lock_host(host: &SharedHost) -> MutexGuard<'_, WasiHost> {
    host.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a store holds for one run (for a threaded job: for one thread).
pub struct StoreData {
    /// The WASI world.
    pub wasi: SharedHost,
    /// Memory and table limits.
    pub limits: Limiter,
    /// The guest's exported `memory`, found after instantiation. Only
    /// remembered when the store holds one instance: with preloaded modules,
    /// each WASI call uses the memory of the instance that made it.
    pub memory: Option<Memory>,
    /// The store holds several instances (a job with preloads).
    pub linked: bool,
    /// `canon.fuel`, the instrumentation's fuel counter (see
    /// [`crate::instrument`]), once the store has it.
    pub fuel: Option<Global>,
    /// A threaded job's scheduler (`None` for other jobs): it holds the
    /// fuel not handed to the running thread, which host calls count.
    pub sched: Option<Arc<Mutex<crate::sandbox::threads::Sched>>>,
    /// A threaded job's shared memory, which WASI calls read and write.
    pub shared_memory: Option<SharedMemory>,
}

impl StoreData {
    /// The fuel held by the scheduler rather than by this store's
    /// `canon.fuel` (0 for an unthreaded job).
    fn banked(&self) -> u64 {
        self.sched.as_ref().map_or(0, |s| crate::sandbox::threads::lock(s).bank)
    }

    /// After a host call left `left` units for the whole job: the
    /// scheduler keeps what it held, up to `left`, and the store the rest.
    /// Returns what the store's `canon.fuel` gets.
    fn settle(&self, left: u64) -> u64 {
        match &self.sched {
            None => left,
            Some(s) => {
                let mut s = crate::sandbox::threads::lock(s);
                if left >= s.bank {
                    left - s.bank
                } else {
                    s.bank = left;
                    0
                }
            }
        }
    }
}

/// The job's fuel left: what `canon.fuel` holds. The guest stores it there
/// before every call, so at a host call it is exact; it is negative only
/// after a failed fuel check, when none is left.
pub fn fuel_left(store: impl wasmtime::AsContextMut<Data = StoreData>) -> u64 {
    let mut store = store;
    match store.as_context().data().fuel {
        Some(g) => g.get(&mut store).i64().map_or(0, |v| u64::try_from(v).unwrap_or(0)),
        // Not created yet: no guest code has run.
        None => 0,
    }
}

/// Runs one host call: hands the host the fuel left (the logical clock reads
/// it, and the host charges its work against it: see [`super::cost`]),
/// lends the guest's memory, stores back what fuel is left, and maps the
/// result to an errno or a trap. The guest reloads its fuel from the
/// global after every call, so the host's charge is the guest's.
fn call(caller: &mut Caller<'_, StoreData>, f: impl FnOnce(&mut Mem, &mut WasiHost) -> Result<(), Fault>) -> wasmtime::Result<i32> {
    // The job's fuel left: this store's, and (threaded) the scheduler's.
    let fuel = fuel_left(&mut *caller).saturating_add(caller.data().banked());
    let shared = caller.data().shared_memory.clone();
    let memory = match caller.data().memory {
        _ if shared.is_some() => None,
        Some(m) if !caller.data().linked => Some(m),
        _ => {
            let m = caller.get_export("memory").and_then(|e| e.into_memory());
            if !caller.data().linked {
                caller.data_mut().memory = m;
            }
            m
        }
    };
    let mut empty: [u8; 0] = [];
    let (bytes, data): (&mut [u8], &mut StoreData) = match (&shared, memory) {
        (Some(shared), _) => (crate::sandbox::threads::shared_bytes(shared), caller.data_mut()),
        (None, Some(m)) => m.data_and_store_mut(&mut *caller),
        (None, None) => (&mut empty[..], caller.data_mut()),
    };
    let (result, left) = {
        let mut wasi = lock_host(&data.wasi);
        wasi.fuel_remaining = fuel;
        let result = match wasi.begin_call() {
            Ok(()) => f(&mut Mem(bytes), &mut wasi),
            Err(stop) => Err(stop),
        };
        let result = wasi.end_call(result);
        (result, wasi.fuel_remaining)
    };
    let left = data.settle(left);
    if let Some(global) = caller.data().fuel {
        // At most the budget, which is below 2^62: it fits an i64.
        global.set(&mut *caller, wasmtime::Val::I64(left as i64))?;
    }
    match result {
        Ok(()) => Ok(0),
        Err(Fault::Errno(e)) => Ok(e.code()),
        Err(Fault::Stop(stop)) => Err(wasmtime::Error::new(stop)),
    }
}

/// A guest's `i32` argument for a parameter the ABI declares narrower
/// (flags `u16`, `whence` and `advice` `u8`): a value that does not fit is
/// `EINVAL`, as an out-of-range flag or enum is, never silently truncated.
fn narrow<T: TryFrom<i32>>(v: i32) -> Result<T, Fault> {
    T::try_from(v).map_err(|_| Fault::Errno(super::errno::Errno::Inval))
}

macro_rules! wasi {
    ($linker:ident, $name:literal, |$h:ident, $m:ident $(, $arg:ident : $ty:ty)*| $body:expr) => {
        $linker.func_wrap(WASI_MODULE, $name, |mut caller: Caller<'_, StoreData>, $($arg: $ty),*| -> wasmtime::Result<i32> {
            call(&mut caller, |$m, $h| { let _ = &$m; $body })
        })?;
    };
}

/// Defines every WASI preview 1 function in `linker`.
pub fn add_to_linker(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    wasi!(linker, "args_get", |h, m, a: i32, b: i32| h.args_get(m, a as u32, b as u32));
    wasi!(linker, "args_sizes_get", |h, m, a: i32, b: i32| h.args_sizes_get(m, a as u32, b as u32));
    wasi!(linker, "environ_get", |h, m, a: i32, b: i32| h.environ_get(m, a as u32, b as u32));
    wasi!(linker, "environ_sizes_get", |h, m, a: i32, b: i32| h.environ_sizes_get(m, a as u32, b as u32));
    wasi!(linker, "clock_res_get", |h, m, id: i32, out: i32| h.clock_res_get(m, id as u32, out as u32));
    wasi!(linker, "clock_time_get", |h, m, id: i32, p: i64, out: i32| h.clock_time_get(m, id as u32, p as u64, out as u32));
    wasi!(linker, "fd_advise", |h, m, fd: i32, off: i64, len: i64, adv: i32| h.fd_advise(fd as u32, off as u64, len as u64, narrow(adv)?));
    wasi!(linker, "fd_allocate", |h, m, fd: i32, off: i64, len: i64| h.fd_allocate(fd as u32, off as u64, len as u64));
    wasi!(linker, "fd_close", |h, m, fd: i32| h.fd_close(fd as u32));
    wasi!(linker, "fd_datasync", |h, m, fd: i32| h.fd_sync(fd as u32));
    wasi!(linker, "fd_fdstat_get", |h, m, fd: i32, out: i32| h.fd_fdstat_get(m, fd as u32, out as u32));
    wasi!(linker, "fd_fdstat_set_flags", |h, m, fd: i32, fl: i32| h.fd_fdstat_set_flags(fd as u32, narrow(fl)?));
    wasi!(linker, "fd_fdstat_set_rights", |h, m, fd: i32, b: i64, i: i64| h.fd_fdstat_set_rights(fd as u32, b as u64, i as u64));
    wasi!(linker, "fd_filestat_get", |h, m, fd: i32, out: i32| h.fd_filestat_get(m, fd as u32, out as u32));
    wasi!(linker, "fd_filestat_set_size", |h, m, fd: i32, size: i64| h.fd_filestat_set_size(fd as u32, size as u64));
    wasi!(linker, "fd_filestat_set_times", |h, m, fd: i32, a: i64, mt: i64, fl: i32| h.fd_filestat_set_times(fd as u32, a as u64, mt as u64, narrow(fl)?));
    wasi!(linker, "fd_pread", |h, m, fd: i32, iov: i32, n: i32, off: i64, out: i32| h.fd_pread(m, fd as u32, iov as u32, n as u32, off as u64, out as u32));
    wasi!(linker, "fd_prestat_get", |h, m, fd: i32, out: i32| h.fd_prestat_get(m, fd as u32, out as u32));
    wasi!(linker, "fd_prestat_dir_name", |h, m, fd: i32, p: i32, l: i32| h.fd_prestat_dir_name(m, fd as u32, p as u32, l as u32));
    wasi!(linker, "fd_pwrite", |h, m, fd: i32, iov: i32, n: i32, off: i64, out: i32| h.fd_pwrite(m, fd as u32, iov as u32, n as u32, off as u64, out as u32));
    wasi!(linker, "fd_read", |h, m, fd: i32, iov: i32, n: i32, out: i32| h.fd_read(m, fd as u32, iov as u32, n as u32, out as u32));
    wasi!(linker, "fd_readdir", |h, m, fd: i32, buf: i32, len: i32, cookie: i64, out: i32| h.fd_readdir(
        m,
        fd as u32,
        buf as u32,
        len as u32,
        cookie as u64,
        out as u32
    ));
    wasi!(linker, "fd_renumber", |h, m, from: i32, to: i32| h.fd_renumber(from as u32, to as u32));
    wasi!(linker, "fd_seek", |h, m, fd: i32, d: i64, wh: i32, out: i32| h.fd_seek(m, fd as u32, d, narrow(wh)?, out as u32));
    wasi!(linker, "fd_sync", |h, m, fd: i32| h.fd_sync(fd as u32));
    wasi!(linker, "fd_tell", |h, m, fd: i32, out: i32| h.fd_tell(m, fd as u32, out as u32));
    wasi!(linker, "fd_write", |h, m, fd: i32, iov: i32, n: i32, out: i32| h.fd_write(m, fd as u32, iov as u32, n as u32, out as u32));
    wasi!(linker, "path_create_directory", |h, m, fd: i32, p: i32, l: i32| h.path_create_directory(m, fd as u32, p as u32, l as u32));
    wasi!(linker, "path_filestat_get", |h, m, fd: i32, fl: i32, p: i32, l: i32, out: i32| h
        .path_filestat_get(m, fd as u32, fl as u32, p as u32, l as u32, out as u32));
    wasi!(linker, "path_filestat_set_times", |h, m, fd: i32, fl: i32, p: i32, l: i32, a: i64, mt: i64, fst: i32| h.path_filestat_set_times(
        m,
        fd as u32,
        fl as u32,
        p as u32,
        l as u32,
        a as u64,
        mt as u64,
        narrow(fst)?
    ));
    wasi!(linker, "path_link", |h, m, ofd: i32, ofl: i32, op: i32, ol: i32, nfd: i32, np: i32, nl: i32| h
        .path_link(m, ofd as u32, ofl as u32, op as u32, ol as u32, nfd as u32, np as u32, nl as u32));
    wasi!(linker, "path_open", |h, m, fd: i32, dfl: i32, p: i32, l: i32, of: i32, rb: i64, ri: i64, ff: i32, out: i32| h.path_open(
        m,
        fd as u32,
        dfl as u32,
        p as u32,
        l as u32,
        narrow(of)?,
        rb as u64,
        ri as u64,
        narrow(ff)?,
        out as u32
    ));
    wasi!(linker, "path_readlink", |h, m, fd: i32, p: i32, l: i32, buf: i32, bl: i32, out: i32| h
        .path_readlink(m, fd as u32, p as u32, l as u32, buf as u32, bl as u32, out as u32));
    wasi!(linker, "path_remove_directory", |h, m, fd: i32, p: i32, l: i32| h.path_remove_directory(m, fd as u32, p as u32, l as u32));
    wasi!(linker, "path_rename", |h, m, ofd: i32, op: i32, ol: i32, nfd: i32, np: i32, nl: i32| h
        .path_rename(m, ofd as u32, op as u32, ol as u32, nfd as u32, np as u32, nl as u32));
    wasi!(linker, "path_symlink", |h, m, op: i32, ol: i32, fd: i32, np: i32, nl: i32| h.path_symlink(m, op as u32, ol as u32, fd as u32, np as u32, nl as u32));
    wasi!(linker, "path_unlink_file", |h, m, fd: i32, p: i32, l: i32| h.path_unlink_file(m, fd as u32, p as u32, l as u32));
    wasi!(linker, "poll_oneoff", |h, m, i: i32, o: i32, n: i32, out: i32| h.poll_oneoff(m, i as u32, o as u32, n as u32, out as u32));
    wasi!(linker, "proc_raise", |h, m, sig: i32| h.proc_raise(sig as u32));
    wasi!(linker, "random_get", |h, m, buf: i32, len: i32| h.random_get(m, buf as u32, len as u32));
    wasi!(linker, "sched_yield", |h, m| h.sched_yield());
    wasi!(linker, "sock_accept", |h, m, fd: i32, _fl: i32, _out: i32| h.sock_any(fd as u32));
    wasi!(linker, "sock_recv", |h, m, fd: i32, _a: i32, _b: i32, _c: i32, _d: i32, _e: i32| h.sock_any(fd as u32));
    wasi!(linker, "sock_send", |h, m, fd: i32, _a: i32, _b: i32, _c: i32, _d: i32| h.sock_any(fd as u32));
    wasi!(linker, "sock_shutdown", |h, m, fd: i32, _how: i32| h.sock_any(fd as u32));
    // proc_exit returns nothing.
    linker.func_wrap(WASI_MODULE, "proc_exit", |mut caller: Caller<'_, StoreData>, code: i32| -> wasmtime::Result<()> {
        call(&mut caller, |_, h| h.proc_exit(code as u32)).map(drop)
    })?;
    Ok(())
}
