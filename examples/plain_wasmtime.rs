//! A minimal process-per-job runner on plain wasmtime + wasmtime-wasi: loads
//! a precompiled module (`.cwasm`, from `Engine::precompile_module` with the
//! default configuration) and runs it, as the wasmtime CLI would. The
//! `per_job` benchmark spawns it as the baseline for canon's in-process path.
//!
//! Run: `cargo run --release --example plain_wasmtime -- MODULE.cwasm`

use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;

fn main() -> wasmtime::Result<()> {
    let path = std::env::args().nth(1).ok_or_else(|| wasmtime::Error::msg("usage: plain_wasmtime MODULE.cwasm"))?;
    let engine = Engine::default();
    // SAFETY: the benchmark passes a file it just wrote with
    // `Engine::precompile_module` under the same default configuration.
    #[allow(unsafe_code)]
    let module = unsafe { Module::deserialize_file(&engine, &path)? };
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c| c)?;
    let mut store = Store::new(&engine, WasiCtxBuilder::new().inherit_stdio().args(&[&path]).build_p1());
    let instance = linker.instantiate(&mut store, &module)?;
    instance.get_typed_func::<(), ()>(&mut store, "_start")?.call(&mut store, ())?;
    Ok(())
}
