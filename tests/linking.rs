//! Jobs whose imports are not all canon's WASI functions: imports nobody
//! provides (`unknown_imports = "trap"`), and jobs made of several modules
//! linked by name (`[[preload]]`, like `wasmtime run --preload`). The
//! modules are built here with wasm-encoder.

use std::fs;
use std::path::Path;
use std::process::Command;

use canon::job::{Job, JobError, ModuleError};
use canon::outcome::{Outcome, Termination, TrapKind};
use canon::sandbox::{Backend, Sandbox};
use wasm_encoder::{
    CodeSection, ConstExpr, DataSection, EntityType, ExportKind, ExportSection, Function, FunctionSection, ImportSection, InstructionSink, MemorySection,
    MemoryType, Module, TypeSection, ValType,
};

use crate::util::{canon_bin, scratch};

// ---------------------------------------------------------------- modules

const I32: ValType = ValType::I32;

/// A small module builder: imports come first in the function index space,
/// then the defined functions in the order added.
#[derive(Default)]
struct Wasm {
    types: Vec<(Vec<ValType>, Vec<ValType>)>,
    imports: Vec<(String, String, EntityType)>,
    funcs: Vec<(u32, Function)>,
    exports: Vec<(String, ExportKind, u32)>,
    memory: bool,
    data: Vec<(i32, Vec<u8>)>,
}

impl Wasm {
    fn ty(&mut self, params: &[ValType], results: &[ValType]) -> u32 {
        let t = (params.to_vec(), results.to_vec());
        match self.types.iter().position(|x| *x == t) {
            Some(i) => i as u32,
            None => {
                self.types.push(t);
                self.types.len() as u32 - 1
            }
        }
    }

    /// Imports a function; returns its function index.
    fn import(&mut self, module: &str, name: &str, params: &[ValType], results: &[ValType]) -> u32 {
        assert!(self.funcs.is_empty(), "imports first");
        let ty = self.ty(params, results);
        self.imports.push((module.into(), name.into(), EntityType::Function(ty)));
        self.imports.iter().filter(|i| matches!(i.2, EntityType::Function(_))).count() as u32 - 1
    }

    fn import_memory(&mut self, module: &str, name: &str) {
        let m = MemoryType { minimum: 1, maximum: None, memory64: false, shared: false, page_size_log2: None };
        self.imports.push((module.into(), name.into(), EntityType::Memory(m)));
    }

    /// Defines a function; returns its function index.
    fn func(&mut self, params: &[ValType], results: &[ValType], body: impl FnOnce(&mut InstructionSink<'_>)) -> u32 {
        let ty = self.ty(params, results);
        let mut f = Function::new(vec![]);
        body(&mut f.instructions());
        f.instructions().end();
        self.funcs.push((ty, f));
        self.imports.iter().filter(|i| matches!(i.2, EntityType::Function(_))).count() as u32 + self.funcs.len() as u32 - 1
    }

    fn export(&mut self, name: &str, index: u32) {
        self.exports.push((name.into(), ExportKind::Func, index));
    }

    /// A one-page memory exported as `memory`.
    fn memory(&mut self) {
        self.memory = true;
        self.exports.push(("memory".into(), ExportKind::Memory, 0));
    }

    fn finish(&self) -> Vec<u8> {
        let mut types = TypeSection::new();
        for (p, r) in &self.types {
            types.ty().function(p.iter().copied(), r.iter().copied());
        }
        let mut imports = ImportSection::new();
        for (m, n, t) in &self.imports {
            imports.import(m, n, *t);
        }
        let mut funcs = FunctionSection::new();
        let mut code = CodeSection::new();
        for (ty, f) in &self.funcs {
            funcs.function(*ty);
            code.function(f);
        }
        let mut mems = MemorySection::new();
        if self.memory {
            mems.memory(MemoryType { minimum: 1, maximum: None, memory64: false, shared: false, page_size_log2: None });
        }
        let mut exports = ExportSection::new();
        for (n, k, i) in &self.exports {
            exports.export(n, *k, *i);
        }
        let mut data = DataSection::new();
        for (offset, bytes) in &self.data {
            data.active(0, &ConstExpr::i32_const(*offset), bytes.iter().copied());
        }
        let mut m = Module::new();
        m.section(&types).section(&imports).section(&funcs).section(&mems).section(&exports).section(&code);
        if !self.data.is_empty() {
            m.section(&data);
        }
        m.finish()
    }
}

/// Emits `fd_write(1, iovec at 0 → text at 16)`, dropping the errno.
/// The memory holds the iovec `{16, len}` at 0 and the text at 16.
fn print(w: &mut Wasm, text: &[u8]) -> impl FnOnce(&mut InstructionSink<'_>) + use<> {
    let mut iov = 16u32.to_le_bytes().to_vec();
    iov.extend((text.len() as u32).to_le_bytes());
    w.data.push((0, iov));
    w.data.push((16, text.to_vec()));
    |s: &mut InstructionSink<'_>| {
        // fd_write is function 0 in every module below that prints.
        s.i32_const(1).i32_const(0).i32_const(1).i32_const(8).call(0).drop();
    }
}

/// A command that prints `before\n`, then calls `env::missing`, then
/// prints nothing more and exits 0.
fn calls_unknown() -> Vec<u8> {
    let mut w = Wasm::default();
    w.import("wasi_snapshot_preview1", "fd_write", &[I32; 4], &[I32]);
    let missing = w.import("env", "missing", &[I32], &[I32]);
    w.memory();
    let say = print(&mut w, b"before\n");
    let start = w.func(&[], &[], |s| {
        say(s);
        s.i32_const(7).call(missing).drop();
    });
    w.export("_start", start);
    w.finish()
}

/// A command that imports `env::missing` but never calls it; exits 0.
fn never_calls_unknown() -> Vec<u8> {
    let mut w = Wasm::default();
    w.import("env", "missing", &[I32], &[I32]);
    w.memory();
    let start = w.func(&[], &[], |_| {});
    w.export("_start", start);
    w.finish()
}

/// A library: `add(a, b) = a + b`, and `greet()`, which prints
/// `hello from lib\n` through WASI from its own memory.
fn library() -> Vec<u8> {
    let mut w = Wasm::default();
    w.import("wasi_snapshot_preview1", "fd_write", &[I32; 4], &[I32]);
    w.memory();
    let say = print(&mut w, b"hello from lib\n");
    let add = w.func(&[I32, I32], &[I32], |s| {
        s.local_get(0).local_get(1).i32_add();
    });
    let greet = w.func(&[], &[], say);
    w.export("add", add);
    w.export("greet", greet);
    w.finish()
}

/// A driver: calls `lib::greet`, then exits with `lib::add(2, 40)`.
fn driver(lib: &str, add: &str) -> Vec<u8> {
    let mut w = Wasm::default();
    let exit = w.import("wasi_snapshot_preview1", "proc_exit", &[I32], &[]);
    let greet = w.import(lib, "greet", &[], &[]);
    let add = w.import(lib, add, &[I32, I32], &[I32]);
    w.memory();
    let start = w.func(&[], &[], |s| {
        s.call(greet).i32_const(2).i32_const(40).call(add).call(exit);
    });
    w.export("_start", start);
    w.finish()
}

// ---------------------------------------------------------------- helpers

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(name), bytes).expect("write");
}

fn load(dir: &Path, spec: &str) -> Result<Job, JobError> {
    write(dir, "job.toml", spec.as_bytes());
    Job::load(&dir.join("job.toml"))
}

fn sandbox(backend: Backend, cache: &Path) -> Sandbox {
    Sandbox::builder().backend(backend).cache_dir(Some(cache.to_path_buf())).build().expect("sandbox")
}

fn module_error(e: JobError) -> ModuleError {
    match e {
        JobError::Module { source, .. } => *source,
        other => panic!("expected a module error, got {other}"),
    }
}

/// Runs `job` three times on each deterministic backend (cold and warm
/// cache) and returns the one outcome they all give.
fn run_everywhere(job: &Job) -> Outcome {
    let cache = scratch();
    let mut first: Option<(String, Outcome)> = None;
    for backend in [Backend::Cranelift, Backend::CraneliftBaseline, Backend::Pulley] {
        let sb = sandbox(backend, cache.path());
        for _ in 0..3 {
            let outcome = sb.run(job).expect("run");
            let digest = outcome.summary().outcome_digest.to_string();
            match &first {
                None => first = Some((digest, outcome)),
                Some((d, _)) => assert_eq!(d, &digest, "{backend}: outcome differs"),
            }
        }
    }
    first.expect("ran").1
}

// ---------------------------------------------------------- unknown imports

#[test]
fn unknown_imports_are_refused_by_default_naming_the_import() {
    let d = scratch();
    write(d.path(), "m.wasm", &calls_unknown());
    let err = load(d.path(), "name = \"u\"\nmodule = \"m.wasm\"\n").expect_err("refused");
    let msg = err.to_string();
    assert!(msg.contains("env::missing") && msg.contains("unknown_imports"), "{msg}");
    assert_eq!(module_error(err), ModuleError::UnknownImport { module: "env".into(), name: "missing".into() });
    let explicit = load(d.path(), "name = \"u\"\nmodule = \"m.wasm\"\nunknown_imports = \"refuse\"\n").expect_err("refused");
    assert!(matches!(module_error(explicit), ModuleError::UnknownImport { .. }));
}

#[test]
fn unknown_imports_value_must_be_refuse_or_trap() {
    let d = scratch();
    write(d.path(), "m.wasm", &never_calls_unknown());
    let msg = load(d.path(), "name = \"u\"\nmodule = \"m.wasm\"\nunknown_imports = \"stub\"\n").expect_err("refused").to_string();
    assert!(msg.contains("unknown_imports") && msg.contains("\"stub\"") && msg.contains("\"trap\""), "{msg}");
}

#[test]
fn a_called_unknown_import_traps_deterministically() {
    let d = scratch();
    write(d.path(), "m.wasm", &calls_unknown());
    let job = load(d.path(), "name = \"u\"\nmodule = \"m.wasm\"\nunknown_imports = \"trap\"\n").expect("trap mode accepts it");
    let outcome = run_everywhere(&job);
    assert_eq!(outcome.termination, Termination::Trap(TrapKind::UnknownImport));
    assert_eq!(outcome.stdout, b"before\n", "what ran before the call is kept");
    assert!(outcome.fuel_consumed > 0);
}

#[test]
fn an_unknown_import_never_called_costs_nothing() {
    let d = scratch();
    write(d.path(), "m.wasm", &never_calls_unknown());
    let job = load(d.path(), "name = \"u\"\nmodule = \"m.wasm\"\nunknown_imports = \"trap\"\n").expect("load");
    assert_eq!(run_everywhere(&job).termination, Termination::Exit(0));
}

#[test]
fn unknown_imports_mode_is_part_of_the_job_digest() {
    let d = scratch();
    write(d.path(), "m.wasm", &include_bytes!("../fixtures/vectors/minimal.wasm")[..]);
    let refuse = load(d.path(), "name = \"u\"\nmodule = \"m.wasm\"\nseed = 1\n").expect("load");
    let trap = load(d.path(), "name = \"u\"\nmodule = \"m.wasm\"\nseed = 1\nunknown_imports = \"trap\"\n").expect("load");
    assert_ne!(refuse.digest(), trap.digest());
}

#[test]
fn unknown_non_function_imports_are_refused_even_in_trap_mode() {
    let mut w = Wasm::default();
    w.import_memory("env", "mem");
    let start = w.func(&[], &[], |_| {});
    w.export("_start", start);
    let d = scratch();
    write(d.path(), "m.wasm", &w.finish());
    let err = load(d.path(), "name = \"u\"\nmodule = \"m.wasm\"\nunknown_imports = \"trap\"\n").expect_err("refused");
    assert_eq!(module_error(err), ModuleError::NonFunctionImport { module: "env".into(), name: "mem".into(), kind: "memory" });
}

#[test]
fn exec_links_unknown_imports_as_traps_on_request() {
    let d = scratch();
    write(d.path(), "m.wasm", &calls_unknown());
    let refused = Command::new(canon_bin()).arg("exec").arg(d.path().join("m.wasm")).env("CANON_CACHE_DIR", d.path().join("cache")).output().expect("exec");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("env::missing"), "{}", String::from_utf8_lossy(&refused.stderr));
    let trapped = Command::new(canon_bin())
        .args(["exec", "--unknown-imports", "trap"])
        .arg(d.path().join("m.wasm"))
        .env("CANON_CACHE_DIR", d.path().join("cache"))
        .output()
        .expect("exec");
    assert_eq!(trapped.status.code(), Some(134));
    assert_eq!(trapped.stdout, b"before\n");
    assert!(String::from_utf8_lossy(&trapped.stderr).contains("unknown_import"), "{}", String::from_utf8_lossy(&trapped.stderr));
}

// ---------------------------------------------------------------- preloads

const LINKED: &str = "name = \"d\"\nmodule = \"driver.wasm\"\n[[preload]]\nname = \"lib\"\nmodule = \"lib.wasm\"\n";

fn linked_dir(driver_bytes: &[u8]) -> tempfile::TempDir {
    let d = scratch();
    write(d.path(), "lib.wasm", &library());
    write(d.path(), "driver.wasm", driver_bytes);
    d
}

#[test]
fn a_driver_calls_a_preloaded_library_deterministically() {
    let d = linked_dir(&driver("lib", "add"));
    let job = load(d.path(), LINKED).expect("load");
    assert_eq!(job.preloads.len(), 1);
    let outcome = run_everywhere(&job);
    assert_eq!(outcome.termination, Termination::Exit(42), "exit code computed by the library");
    assert_eq!(outcome.stdout, b"hello from lib\n", "the library's WASI call used its own memory");
}

#[test]
fn a_missing_export_is_refused_naming_module_and_field() {
    let d = linked_dir(&driver("lib", "sub"));
    let err = load(d.path(), LINKED).expect_err("refused");
    let msg = err.to_string();
    assert!(msg.contains("lib::sub") && msg.contains("exports no `sub`"), "{msg}");
    assert_eq!(module_error(err), ModuleError::MissingExport { module: "lib".into(), name: "sub".into() });
}

#[test]
fn without_the_preload_the_driver_import_is_unknown() {
    let d = linked_dir(&driver("lib", "add"));
    let err = load(d.path(), "name = \"d\"\nmodule = \"driver.wasm\"\n").expect_err("refused");
    assert!(matches!(module_error(err), ModuleError::UnknownImport { .. }));
}

#[test]
fn an_import_of_the_wrong_type_from_a_preload_is_refused() {
    let mut w = Wasm::default();
    let add = w.import("lib", "add", &[I32], &[I32]);
    w.memory();
    let start = w.func(&[], &[], |s| {
        s.i32_const(1).call(add).drop();
    });
    w.export("_start", start);
    let d = linked_dir(&w.finish());
    let err = load(d.path(), LINKED).expect_err("refused");
    assert!(matches!(module_error(err), ModuleError::ImportSignature { .. }), "wrong signature");
}

#[test]
fn preload_names_must_be_unique_and_not_canons_own() {
    let d = linked_dir(&driver("lib", "add"));
    let twice = format!("{LINKED}[[preload]]\nname = \"lib\"\nmodule = \"lib.wasm\"\n");
    let msg = load(d.path(), &twice).expect_err("refused").to_string();
    assert!(msg.contains("preload[1].name"), "{msg}");
    let wasi = LINKED.replace("name = \"lib\"", "name = \"wasi_snapshot_preview1\"");
    let msg = load(d.path(), &wasi).expect_err("refused").to_string();
    assert!(msg.contains("preload[0].name"), "{msg}");
    // `canon` is the instrumentation's import module.
    let canon = LINKED.replace("name = \"lib\"", "name = \"canon\"");
    let msg = load(d.path(), &canon).expect_err("refused").to_string();
    assert!(msg.contains("preload[0].name") && msg.contains("\"canon\""), "{msg}");
    let missing = LINKED.replace("lib.wasm", "nope.wasm");
    let msg = load(d.path(), &missing).expect_err("refused").to_string();
    assert!(msg.contains("preload[0].module") && msg.contains("nope.wasm"), "{msg}");
}

/// A module can only import from modules before it: a library that imports
/// from the driver's name (or from a later preload) is refused.
#[test]
fn a_preload_cannot_import_from_a_later_module() {
    let mut w = Wasm::default();
    w.import("late", "f", &[], &[]);
    let d = linked_dir(&driver("lib", "add"));
    write(d.path(), "early.wasm", &w.finish());
    let spec = LINKED.replace(
        "[[preload]]\nname = \"lib\"",
        "[[preload]]\nname = \"early\"\nmodule = \"early.wasm\"\n[[preload]]\nname = \"late\"\nmodule = \"lib.wasm\"\n[[preload]]\nname = \"lib\"",
    );
    let msg = load(d.path(), &spec).expect_err("refused").to_string();
    assert!(msg.contains("preload[0].module") && msg.contains("late::f"), "{msg}");
}

#[test]
fn preloads_are_part_of_the_job_digest_in_order() {
    let d = linked_dir(&driver("lib", "add"));
    write(d.path(), "other.wasm", &never_calls_unknown());
    let one = load(d.path(), LINKED).expect("load");
    let two = load(d.path(), &format!("{LINKED}[[preload]]\nname = \"x\"\nmodule = \"lib.wasm\"\n")).expect("load");
    let swapped = load(d.path(), &LINKED.replace("[[preload]]", "[[preload]]\nname = \"x\"\nmodule = \"lib.wasm\"\n[[preload]]")).expect("load");
    assert_ne!(one.digest(), two.digest());
    assert_ne!(two.digest(), swapped.digest(), "order matters");
}

#[test]
fn the_memory_limit_covers_all_modules_together() {
    // Each module has a one-page memory: two pages in all, over a one-page limit.
    let d = linked_dir(&driver("lib", "add"));
    let job = load(d.path(), &format!("{LINKED}[limits]\nmemory = \"64 KiB\"\n")).expect("load");
    let cache = scratch();
    let outcome = sandbox(Backend::Cranelift, cache.path()).run(&job).expect("run");
    assert_eq!(outcome.termination, Termination::Trap(TrapKind::MemoryLimit));
    let job = load(d.path(), &format!("{LINKED}[limits]\nmemory = \"128 KiB\"\n")).expect("load");
    assert_eq!(sandbox(Backend::Cranelift, cache.path()).run(&job).expect("run").termination, Termination::Exit(42));
}

#[test]
fn exec_preloads_a_library_by_name() {
    let d = linked_dir(&driver("lib", "add"));
    let out = Command::new(canon_bin())
        .arg("exec")
        .arg("--preload")
        .arg(format!("lib={}", d.path().join("lib.wasm").display()))
        .arg(d.path().join("driver.wasm"))
        .env("CANON_CACHE_DIR", d.path().join("cache"))
        .output()
        .expect("exec");
    assert_eq!(out.status.code(), Some(42), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"hello from lib\n");
}

// ------------------------------------------------------ committed fixtures

/// The modules of `fixtures/jobs/linked-*.toml`, which the determinism and
/// backend suites run like every fixture job (perturbed hosts, every
/// backend, cold and warm cache).
fn fixture_modules() -> Vec<(&'static str, Vec<u8>)> {
    vec![("lib.wasm", library()), ("driver.wasm", driver("lib", "add")), ("calls-unknown.wasm", calls_unknown())]
}

#[test]
fn linking_fixture_modules_are_committed_as_generated() {
    let dir = crate::util::fixture("linking");
    let bless = std::env::var_os("CANON_BLESS").is_some();
    for (name, bytes) in fixture_modules() {
        let path = dir.join(name);
        if bless {
            fs::write(&path, &bytes).expect("write module");
        }
        let committed = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (CANON_BLESS=1 writes it)", path.display()));
        assert!(committed == bytes, "{} differs from what fixture_modules() makes (CANON_BLESS=1 rewrites it)", path.display());
    }
}

/// In trap mode, a preload's import from the name of a *later* preload is
/// unknown when it is linked (as validation decided), so it is stubbed and
/// traps when called, rather than failing to link.
#[test]
fn in_trap_mode_an_import_from_a_later_preload_is_a_stub() {
    let mut w = Wasm::default();
    let f = w.import("late", "f", &[], &[]);
    let call = w.func(&[], &[], |s| {
        s.call(f);
    });
    w.export("call_late", call);
    let mut d = Wasm::default();
    let call_late = d.import("early", "call_late", &[], &[]);
    d.memory();
    let start = d.func(&[], &[], |s| {
        s.call(call_late);
    });
    d.export("_start", start);
    let dir = scratch();
    write(dir.path(), "early.wasm", &w.finish());
    write(dir.path(), "late.wasm", &library());
    write(dir.path(), "driver.wasm", &d.finish());
    let spec = "name = \"d\"\nmodule = \"driver.wasm\"\nunknown_imports = \"trap\"\n[[preload]]\nname = \"early\"\nmodule = \"early.wasm\"\n[[preload]]\nname = \"late\"\nmodule = \"late.wasm\"\n";
    let job = load(dir.path(), spec).expect("load");
    assert_eq!(run_everywhere(&job).termination, Termination::Trap(TrapKind::UnknownImport));
}

/// Two modules of one job that import the same unknown function each get
/// their own stub; and a name an earlier module stubbed (`late::add`) can
/// still be registered by the later preload that exports it.
#[test]
fn in_trap_mode_stubs_belong_to_the_module_that_needs_them() {
    let mut early = Wasm::default();
    let missing = early.import("env", "missing", &[], &[]);
    let add = early.import("late", "add", &[I32, I32], &[I32]);
    let call = early.func(&[], &[], |s| {
        s.i32_const(1).i32_const(2).call(add).drop().call(missing);
    });
    early.export("call", call);
    let mut d = Wasm::default();
    let missing = d.import("env", "missing", &[], &[]);
    let call = d.import("early", "call", &[], &[]);
    let add = d.import("late", "add", &[I32, I32], &[I32]);
    d.memory();
    let start = d.func(&[], &[], |s| {
        // The driver's late::add is the library's; the trap comes from a stub.
        s.i32_const(2).i32_const(40).call(add).drop().call(call).call(missing);
    });
    d.export("_start", start);
    let dir = scratch();
    write(dir.path(), "early.wasm", &early.finish());
    write(dir.path(), "late.wasm", &library());
    write(dir.path(), "driver.wasm", &d.finish());
    let spec = "name = \"d\"\nmodule = \"driver.wasm\"\nunknown_imports = \"trap\"\n[[preload]]\nname = \"early\"\nmodule = \"early.wasm\"\n[[preload]]\nname = \"late\"\nmodule = \"late.wasm\"\n";
    let job = load(dir.path(), spec).expect("load");
    assert_eq!(run_everywhere(&job).termination, Termination::Trap(TrapKind::UnknownImport));
}
