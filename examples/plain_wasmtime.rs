//! A minimal process-per-job runner on plain wasmtime + wasmtime-wasi (the
//! default configuration: no fuel, no epochs, no NaN canonicalisation): loads
//! a precompiled module and runs it, as the wasmtime CLI would. The
//! `per_job` benchmark spawns it as the baseline for canon's in-process path
//! (`docs/PERFORMANCE.md`).
//!
//! Run: `cargo run --release --example plain_wasmtime -- --precompile M.wasm M.cwasm`,
//! then `… -- [--dir HOST::GUEST]… [--argv0 NAME] M.cwasm [ARGS…]` (`--dir`
//! preopens a host directory read-write at a guest path, as `wasmtime run
//! --dir` does; scripts/bench-process.sh times it against canon).

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
    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdio();
    let mut rest = &args[..];
    let mut argv0 = None;
    loop {
        match rest {
            [flag, dir, more @ ..] if flag == "--dir" => {
                let (host, guest) = dir.split_once("::").unwrap_or((dir, dir));
                wasi.preopened_dir(host, guest, wasmtime_wasi::FsPerms::ReadWrite)?;
                rest = more;
            }
            [flag, name, more @ ..] if flag == "--argv0" => {
                argv0 = Some(name.clone());
                rest = more;
            }
            _ => break,
        }
    }
    let Some(path) = rest.first() else { wasmtime::bail!("usage: plain_wasmtime [--dir HOST::GUEST]… [--argv0 NAME] MODULE.cwasm [ARGS…]") };
    let mut argv: Vec<String> = rest.to_vec();
    if let Some(name) = argv0 {
        argv[0] = name;
    }
    wasi.args(&argv);
    // SAFETY: the caller passes a file written by `--precompile` (or by
    // `Engine::precompile_module`) under this same default configuration.
    #[allow(unsafe_code)]
    let module = unsafe { Module::deserialize_file(&engine, path)? };
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c| c)?;
    let mut store = Store::new(&engine, wasi.build_p1());
    let instance = linker.instantiate(&mut store, &module)?;
    instance.get_typed_func::<(), ()>(&mut store, "_start")?.call(&mut store, ())?;
    Ok(())
}
