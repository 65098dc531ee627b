//! Binds every `wasi_snapshot_preview1` function to its method on
//! [`WasiHost`], with the signature listed in [`crate::sandbox::abi`].

use wasmtime::{Caller, Global, Linker, Memory};

use super::host::{Fault, WasiHost};
use super::mem::Mem;
use crate::sandbox::abi::WASI_MODULE;
use crate::sandbox::limiter::Limiter;

/// What a store holds for one run.
pub struct StoreData {
    /// The WASI world.
    pub wasi: WasiHost,
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
    let fuel = fuel_left(&mut *caller);
    let memory = match caller.data().memory {
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
    let (bytes, data): (&mut [u8], &mut StoreData) = match memory {
        Some(m) => m.data_and_store_mut(&mut *caller),
        None => (&mut empty[..], caller.data_mut()),
    };
    data.wasi.fuel_remaining = fuel;
    let result = match data.wasi.begin_call() {
        Ok(()) => f(&mut Mem(bytes), &mut data.wasi),
        Err(stop) => Err(stop),
    };
    let result = data.wasi.end_call(result);
    let left = data.wasi.fuel_remaining;
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
    wasi!(linker, "fd_advise", |h, m, fd: i32, off: i64, len: i64, adv: i32| h.fd_advise(fd as u32, off as u64, len as u64, adv as u8));
    wasi!(linker, "fd_allocate", |h, m, fd: i32, off: i64, len: i64| h.fd_allocate(fd as u32, off as u64, len as u64));
    wasi!(linker, "fd_close", |h, m, fd: i32| h.fd_close(fd as u32));
    wasi!(linker, "fd_datasync", |h, m, fd: i32| h.fd_sync(fd as u32));
    wasi!(linker, "fd_fdstat_get", |h, m, fd: i32, out: i32| h.fd_fdstat_get(m, fd as u32, out as u32));
    wasi!(linker, "fd_fdstat_set_flags", |h, m, fd: i32, fl: i32| h.fd_fdstat_set_flags(fd as u32, fl as u16));
    wasi!(linker, "fd_fdstat_set_rights", |h, m, fd: i32, b: i64, i: i64| h.fd_fdstat_set_rights(fd as u32, b as u64, i as u64));
    wasi!(linker, "fd_filestat_get", |h, m, fd: i32, out: i32| h.fd_filestat_get(m, fd as u32, out as u32));
    wasi!(linker, "fd_filestat_set_size", |h, m, fd: i32, size: i64| h.fd_filestat_set_size(fd as u32, size as u64));
    wasi!(linker, "fd_filestat_set_times", |h, m, fd: i32, a: i64, mt: i64, fl: i32| h.fd_filestat_set_times(fd as u32, a as u64, mt as u64, fl as u16));
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
    wasi!(linker, "fd_seek", |h, m, fd: i32, d: i64, wh: i32, out: i32| h.fd_seek(m, fd as u32, d, wh as u8, out as u32));
    wasi!(linker, "fd_sync", |h, m, fd: i32| h.fd_sync(fd as u32));
    wasi!(linker, "fd_tell", |h, m, fd: i32, out: i32| h.fd_tell(m, fd as u32, out as u32));
    wasi!(linker, "fd_write", |h, m, fd: i32, iov: i32, n: i32, out: i32| h.fd_write(m, fd as u32, iov as u32, n as u32, out as u32));
    wasi!(linker, "path_create_directory", |h, m, fd: i32, p: i32, l: i32| h.path_create_directory(m, fd as u32, p as u32, l as u32));
    wasi!(linker, "path_filestat_get", |h, m, fd: i32, fl: i32, p: i32, l: i32, out: i32| h
        .path_filestat_get(m, fd as u32, fl as u32, p as u32, l as u32, out as u32));
    wasi!(linker, "path_filestat_set_times", |h, m, fd: i32, fl: i32, p: i32, l: i32, a: i64, mt: i64, fst: i32| h
        .path_filestat_set_times(m, fd as u32, fl as u32, p as u32, l as u32, a as u64, mt as u64, fst as u16));
    wasi!(linker, "path_link", |h, m, ofd: i32, ofl: i32, op: i32, ol: i32, nfd: i32, np: i32, nl: i32| h
        .path_link(m, ofd as u32, ofl as u32, op as u32, ol as u32, nfd as u32, np as u32, nl as u32));
    wasi!(linker, "path_open", |h, m, fd: i32, dfl: i32, p: i32, l: i32, of: i32, rb: i64, ri: i64, ff: i32, out: i32| h
        .path_open(m, fd as u32, dfl as u32, p as u32, l as u32, of as u16, rb as u64, ri as u64, ff as u16, out as u32));
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
