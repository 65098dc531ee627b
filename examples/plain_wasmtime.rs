//! A minimal process-per-job runner on plain wasmtime + wasmtime-wasi (the
//! default configuration: no fuel, no epochs, no NaN canonicalisation): loads
//! a precompiled module and runs it, as the wasmtime CLI would. The
//! `per_job` benchmark spawns it as the baseline for canon's in-process path
//! (`docs/PERFORMANCE.md`).
//!
//! Run: `cargo run --release --example plain_wasmtime -- --precompile M.wasm M.cwasm`,
//! then `… -- M.cwasm [ARGS…]`.

use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;

fn main() -> wasmtime::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let engine = Engine::default();
    if args.first().map(String::as_str) == Some("--precompile") {
        let [_, input, output] = &args[..] else { wasmtime::bail!("usage: plain_wasmtime --precompile IN.wasm OUT.cwasm") };
        std::fs::write(output, engine.precompile_module(&std::fs::read(input)?)?)?;
        return Ok(());
    }
    let Some(path) = args.first() else { wasmtime::bail!("usage: plain_wasmtime MODULE.cwasm [ARGS…]") };
    // SAFETY: the caller passes a file written by `--precompile` (or by
    // `Engine::precompile_module`) under this same default configuration.
    #[allow(unsafe_code)]
    let module = unsafe { Module::deserialize_file(&engine, path)? };
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c| c)?;
    let mut store = Store::new(&engine, WasiCtxBuilder::new().inherit_stdio().args(&args).build_p1());
    let instance = linker.instantiate(&mut store, &module)?;
    instance.get_typed_func::<(), ()>(&mut store, "_start")?.call(&mut store, ())?;
    Ok(())
}
