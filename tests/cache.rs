//! The disk cache of compiled modules: a warm load maps the entry without
//! reading it, and a damaged entry (truncated, edited in place, replaced,
//! its sidecar lost or garbled) is never used as is: it is rebuilt, and the
//! outcome is the one a cold run gives.

use std::fs;
use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use canon::job::Job;
use canon::sandbox::{CacheHit, Sandbox};

use crate::util::{fixture, scratch};

fn sandbox(cache: &Path) -> Sandbox {
    Sandbox::builder().cache_dir(Some(cache.to_path_buf())).build().expect("sandbox")
}

/// The one `.cwasm` entry under `cache`, and its sidecar.
fn entry(cache: &Path) -> (PathBuf, PathBuf) {
    let mut found = Vec::new();
    for dir in fs::read_dir(cache).expect("cache dir") {
        for f in fs::read_dir(dir.expect("entry").path()).expect("fingerprint dir") {
            let p = f.expect("entry").path();
            if p.extension().is_some_and(|e| e == "cwasm") {
                found.push(p);
            }
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    let e = found.remove(0);
    let sidecar = PathBuf::from(format!("{}.stamp", e.display()));
    (e, sidecar)
}

fn hit_and_digest(cache: &Path, job: &Job) -> (CacheHit, String) {
    let sb = sandbox(cache);
    let (_, hit) = sb.prepare(&job.module, &job.module_sha256).expect("prepare");
    (hit, sb.run(job).expect("run").summary().outcome_digest.to_string())
}

#[test]
fn a_warm_entry_loads_from_disk_with_the_same_outcome() {
    let job = Job::load(&fixture("jobs/hello.toml")).expect("job");
    let cache = scratch();
    let (cold, want) = hit_and_digest(cache.path(), &job);
    assert_eq!(cold, CacheHit::Compiled);
    let (warm, got) = hit_and_digest(cache.path(), &job);
    assert_eq!((warm, got), (CacheHit::Disk, want));
    // The entries' directory is the node's own: nobody else may write there.
    #[cfg(unix)]
    for dir in fs::read_dir(cache.path()).expect("cache dir") {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = dir.expect("entry").path();
        assert_eq!(fs::metadata(&dir).expect("meta").permissions().mode() & 0o777, 0o700, "{}", dir.display());
    }
}

#[test]
fn damaged_entries_are_rebuilt_never_used() {
    let job = Job::load(&fixture("jobs/hello.toml")).expect("job");
    let reference = scratch();
    let (_, want) = hit_and_digest(reference.path(), &job);
    type Damage = fn(&Path, &Path);
    let damages: [(&str, Damage); 6] = [
        ("truncated", |e, _| {
            let len = fs::metadata(e).expect("meta").len();
            fs::OpenOptions::new().write(true).open(e).expect("open").set_len(len / 2).expect("truncate");
        }),
        ("one byte changed in place", |e, _| {
            let len = fs::metadata(e).expect("meta").len();
            let mut f = fs::OpenOptions::new().read(true).write(true).open(e).expect("open");
            f.seek(SeekFrom::Start(len / 2)).expect("seek");
            f.write_all(&[0xa5]).expect("write");
        }),
        ("replaced by other bytes", |e, _| {
            let tmp = e.with_extension("tmp");
            fs::write(&tmp, b"not a compiled module").expect("write");
            fs::rename(&tmp, e).expect("rename");
        }),
        ("emptied", |e, _| fs::write(e, b"").expect("write")),
        ("sidecar removed", |_, s| fs::remove_file(s).expect("rm")),
        ("sidecar garbled", |_, s| fs::write(s, b"canon-module-cache-v2\nzz\n1 2 3\n").expect("write")),
    ];
    for (what, damage) in damages {
        let cache = scratch();
        hit_and_digest(cache.path(), &job);
        let (e, s) = entry(cache.path());
        damage(&e, &s);
        let (hit, got) = hit_and_digest(cache.path(), &job);
        assert_eq!(hit, CacheHit::Compiled, "{what}: the damaged entry must not be loaded");
        assert_eq!(got, want, "{what}: outcome");
        // And it was rewritten: the next load is a clean disk hit.
        assert_eq!(hit_and_digest(cache.path(), &job), (CacheHit::Disk, want.clone()), "{what}: rewritten");
    }
}

/// An entry copied in place (same bytes, new inode and times, as after a
/// backup restore) is hashed once, found intact, used, and re-stamped.
#[test]
fn a_copied_intact_entry_is_verified_once_and_restamped() {
    let job = Job::load(&fixture("jobs/hello.toml")).expect("job");
    let cache = scratch();
    let (_, want) = hit_and_digest(cache.path(), &job);
    let (e, s) = entry(cache.path());
    let before = fs::read_to_string(&s).expect("sidecar");
    let copy = e.with_extension("copy");
    fs::copy(&e, &copy).expect("copy");
    fs::rename(&copy, &e).expect("rename");
    assert_eq!(hit_and_digest(cache.path(), &job), (CacheHit::Disk, want));
    let after = fs::read_to_string(&s).expect("sidecar");
    assert_ne!(before, after, "the stamp is renewed");
    assert_eq!(before.lines().nth(1), after.lines().nth(1), "the recorded SHA-256 is the same");
}

/// A module of about `mb` MB of straight-line stores in 1000 functions
/// (stores, so that the compiler cannot fold them away): something large to
/// compile when no real large module is at hand.
fn synthetic_module(mb: usize) -> Vec<u8> {
    use wasm_encoder::{CodeSection, ExportKind, ExportSection, Function, FunctionSection, MemorySection, MemoryType, Module, TypeSection, ValType};
    let funcs = 1000u32;
    let blocks = mb * 1_000_000 / 12 / funcs as usize;
    let mut types = TypeSection::new();
    types.ty().function([], []);
    types.ty().function([ValType::I32], [ValType::I32]);
    let mut fsec = FunctionSection::new();
    let mut code = CodeSection::new();
    fsec.function(0);
    let mut start = Function::new(vec![]);
    start.instructions().end();
    code.function(&start);
    for f in 0..funcs {
        fsec.function(1);
        let mut body = Function::new(vec![]);
        let mut s = body.instructions();
        for k in 0..blocks {
            let addr = ((k * 4) % 65_000) as i32;
            s.i32_const(addr).local_get(0).i32_const((k as i32).wrapping_mul(7919) ^ f as i32).i32_xor().i32_store(wasm_encoder::MemArg {
                offset: 0,
                align: 2,
                memory_index: 0,
            });
        }
        s.local_get(0).end();
        code.function(&body);
    }
    let mut mems = MemorySection::new();
    mems.memory(MemoryType { minimum: 1, maximum: None, memory64: false, shared: false, page_size_log2: None });
    let mut exports = ExportSection::new();
    exports.export("_start", ExportKind::Func, 0).export("memory", ExportKind::Memory, 0);
    let mut m = Module::new();
    m.section(&types).section(&fsec).section(&mems).section(&exports).section(&code);
    m.finish()
}

/// Load times of a large module, printed (run with `--ignored --nocapture`):
/// cold compile, canon's warm disk load, plain `Module::deserialize_file`
/// and `Module::deserialize` of the same bytes, and SHA-256 of them. Uses
/// `$CANON_YOSYS_WASM` if set, else a synthetic module of
/// `$CANON_SYNTH_MB` (default 8) MB.
#[test]
#[ignore = "slow: compiles a large module; prints timings"]
fn large_module_load_times() {
    use std::time::Instant;
    let bytes = match std::env::var_os("CANON_YOSYS_WASM") {
        Some(p) => fs::read(p).expect("read CANON_YOSYS_WASM"),
        None => synthetic_module(std::env::var("CANON_SYNTH_MB").ok().and_then(|s| s.parse().ok()).unwrap_or(8)),
    };
    let sha = canon::digest::Digest::of(&bytes);
    let cache = scratch();
    let t = Instant::now();
    let (module, hit) = sandbox(cache.path()).prepare(&bytes, &sha).expect("compile");
    assert_eq!(hit, CacheHit::Compiled);
    let cold = t.elapsed();
    let (e, _) = entry(cache.path());
    let cwasm_len = fs::metadata(&e).expect("meta").len();
    let best = |f: &dyn Fn()| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .min()
            .expect("runs")
    };
    let warm = best(&|| {
        let (_, hit) = sandbox(cache.path()).prepare(&bytes, &sha).expect("load");
        assert_eq!(hit, CacheHit::Disk);
    });
    let engine = sandbox(cache.path()).engine().clone();
    let serialized = module.serialize().expect("serialize");
    // SAFETY: `e` and `serialized` are `Module::serialize` output of an
    // engine with this configuration, unchanged since written.
    #[allow(unsafe_code)]
    let mapped = best(&|| drop(unsafe { wasmtime::Module::deserialize_file(&engine, &e) }.expect("deserialize_file")));
    #[allow(unsafe_code)]
    let read = best(&|| drop(unsafe { wasmtime::Module::deserialize(&engine, fs::read(&e).expect("read")) }.expect("deserialize")));
    let hash = best(&|| {
        std::hint::black_box(canon::digest::Digest::of(&serialized));
    });
    println!(
        "module {:.1} MB, compiled {:.1} MB: cold compile {:.2} s; canon warm disk load {:.1} ms; plain deserialize_file {:.1} ms; read + deserialize {:.1} ms; SHA-256 of the compiled bytes {:.1} ms",
        bytes.len() as f64 / 1e6,
        cwasm_len as f64 / 1e6,
        cold.as_secs_f64(),
        warm.as_secs_f64() * 1e3,
        mapped.as_secs_f64() * 1e3,
        read.as_secs_f64() * 1e3,
        hash.as_secs_f64() * 1e3
    );
}

/// `--progress` reports a cold compile on stderr only, never on stdout (so
/// `--json` stays parseable), and says nothing when the module is cached.
#[test]
fn progress_goes_to_stderr_only_and_only_when_compiling() {
    let cache = scratch();
    let run = || {
        std::process::Command::new(crate::util::canon_bin())
            .args(["run", "--json", "--progress"])
            .arg(fixture("jobs/hello.toml"))
            .env("CANON_CACHE_DIR", cache.path())
            .output()
            .expect("canon run")
    };
    let cold = run();
    assert!(cold.status.success(), "{}", String::from_utf8_lossy(&cold.stderr));
    let stderr = String::from_utf8_lossy(&cold.stderr);
    assert!(stderr.contains("compiling hello.wasm") && stderr.contains("with cranelift"), "{stderr}");
    let json = serde_json::from_slice::<serde_json::Value>(&cold.stdout).expect("stdout is JSON alone");
    assert!(json["outcome_digest"].is_string(), "{json}");
    let warm = run();
    assert!(!String::from_utf8_lossy(&warm.stderr).contains("compiling"), "nothing to report when cached");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&warm.stdout).expect("json")["outcome_digest"],
        serde_json::from_slice::<serde_json::Value>(&cold.stdout).expect("json")["outcome_digest"]
    );
}

// ------------------------------------ who may write the cache (StrictModes)

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The path `Sandbox::prepare` names and the problem it gives, if it
/// refuses the cache at `cache`.
#[cfg(unix)]
fn refusal(cache: &Path) -> Option<(PathBuf, String)> {
    use canon::sandbox::{CacheError, RunError};
    let job = Job::load(&fixture("jobs/hello.toml")).expect("job");
    match sandbox(cache).prepare(&job.module, &job.module_sha256) {
        Ok(_) => None,
        Err(RunError::Cache(CacheError::Unsafe { path, problem })) => Some((path, problem)),
        Err(e) => panic!("{}: not the cache refusal: {e}", cache.display()),
    }
}

#[cfg(unix)]
#[test]
fn a_cache_directory_others_can_write_is_refused_before_anything_is_mapped() {
    let base = scratch();
    // The cache directory itself, group- or world-writable, sticky or not.
    for mode in [0o770, 0o707, 0o777, 0o1777] {
        let cache = base.path().join(format!("cache-{mode:o}"));
        fs::create_dir(&cache).expect("mkdir");
        chmod(&cache, mode);
        let (path, msg) = refusal(&cache).unwrap_or_else(|| panic!("mode {mode:o} accepted"));
        assert_eq!(path, fs::canonicalize(&cache).expect("real"), "{msg}");
        assert!(msg.contains("writable by") && msg.contains(&format!("{mode:04o}")), "{msg}");
        assert_eq!(fs::read_dir(&cache).expect("ls").count(), 0, "mode {mode:o}: written to before refusing");
    }
    // A fingerprint directory or an entry made writable after the fact.
    let cache = base.path().join("cache");
    assert_eq!(refusal(&cache), None, "a fresh cache is created private");
    let (e, _) = entry(&cache);
    chmod(&e, 0o662);
    let (path, msg) = refusal(&cache).expect("a group-writable entry");
    assert_eq!(path.file_name(), e.file_name(), "{msg}");
    chmod(&e, 0o600);
    let fingerprint = e.parent().expect("fingerprint dir").to_path_buf();
    chmod(&fingerprint, 0o770);
    let (path, msg) = refusal(&cache).expect("a group-writable fingerprint directory");
    assert_eq!(path, fs::canonicalize(&fingerprint).expect("real"), "{msg}");
    chmod(&fingerprint, 0o700);
    assert_eq!(refusal(&cache), None);
}

#[cfg(unix)]
#[test]
fn a_parent_others_can_write_is_refused_unless_it_is_sticky() {
    let base = scratch();
    let parent = base.path().join("shared");
    fs::create_dir(&parent).expect("mkdir");
    let cache = parent.join("cache");
    for (mode, accepted) in [(0o777, false), (0o775, false), (0o1777, true), (0o755, true)] {
        chmod(&parent, mode);
        let got = refusal(&cache);
        assert_eq!(got.is_none(), accepted, "parent mode {mode:o}: {got:?}");
        if let Some((path, msg)) = got {
            assert_eq!(path, fs::canonicalize(&parent).expect("real"), "{msg}");
        }
    }
    // Through a symlink, the real directories are what count.
    let link = base.path().join("link");
    std::os::unix::fs::symlink(&parent, &link).expect("symlink");
    chmod(&parent, 0o777);
    let (path, msg) = refusal(&link.join("cache")).expect("refused through a link");
    assert_eq!(path, fs::canonicalize(&parent).expect("real"), "{msg}");
    chmod(&parent, 0o755);
}

#[cfg(unix)]
#[test]
fn a_cache_owned_by_another_user_is_refused() {
    use std::os::unix::fs::MetadataExt as _;
    let base = scratch();
    if fs::metadata(base.path()).expect("meta").uid() != 0 {
        eprintln!("skipped: only root can give a directory to another user");
        return;
    }
    let nobody = 65534;
    let cache = base.path().join("cache");
    assert_eq!(refusal(&cache), None);
    let (e, _) = entry(&cache);
    std::os::unix::fs::chown(&e, Some(nobody), Some(nobody)).expect("chown entry");
    let (path, msg) = refusal(&cache).expect("an entry owned by nobody");
    assert_eq!(path.file_name(), e.file_name(), "{msg}");
    assert!(msg.contains("owned by uid 65534"), "{msg}");
    std::os::unix::fs::chown(&cache, Some(nobody), Some(nobody)).expect("chown cache dir");
    let (path, msg) = refusal(&cache).expect("a cache directory owned by nobody");
    assert_eq!(path, fs::canonicalize(&cache).expect("real"), "{msg}");
}

#[cfg(unix)]
#[test]
fn canon_names_the_unsafe_cache_directory_and_runs_nothing() {
    let base = scratch();
    let cache = base.path().join("cache");
    fs::create_dir(&cache).expect("mkdir");
    chmod(&cache, 0o777);
    let o = std::process::Command::new(crate::util::canon_bin()).arg("exec").arg(fixture("hello.wasm")).env("CANON_CACHE_DIR", &cache).output().expect("spawn");
    assert_eq!(o.status.code(), Some(125));
    assert!(o.stdout.is_empty(), "the guest ran");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&fs::canonicalize(&cache).expect("real").display().to_string()) && err.contains("writable by"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// A module whose one function body does not validate (`i32.add` on an
/// empty stack), though its imports and exports are those of a command.
fn invalid_body_module() -> Vec<u8> {
    use wasm_encoder::{CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction, MemorySection, MemoryType, Module, TypeSection};
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType { minimum: 1, maximum: None, memory64: false, shared: false, page_size_log2: None });
    let mut exports = ExportSection::new();
    exports.export("_start", ExportKind::Func, 0).export("memory", ExportKind::Memory, 0);
    let mut f = Function::new([]);
    f.instruction(&Instruction::I32Add).instruction(&Instruction::Drop).instruction(&Instruction::End);
    let mut code = CodeSection::new();
    code.function(&f);
    let mut m = Module::new();
    m.section(&types).section(&funcs).section(&memories).section(&exports).section(&code);
    m.finish()
}

/// `canon exec MODULE` with its cache at `cache`: (success, stderr).
fn exec_with_cache(cache: &Path, module: &Path) -> (bool, String) {
    let o = std::process::Command::new(crate::util::canon_bin())
        .env("CANON_CACHE_DIR", cache)
        .arg("exec")
        .arg(module)
        .arg("--argv0")
        .arg("m")
        .output()
        .expect("canon exec");
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A command validated by one process is not validated by the next: the
/// record beside the compiled code is what the next one goes by, so the
/// outcome is the same, a damaged record or one in a directory others can
/// write is ignored, and a failure is never recorded.
#[cfg(unix)]
#[test]
fn a_validated_command_is_validated_once_per_machine() {
    use canon::digest::Digest;
    use canon::job::{Linking, stored_key};
    let base = scratch();
    let cache = base.path().join("cache");
    let run = |job: &Path| {
        let o =
            std::process::Command::new(crate::util::canon_bin()).env("CANON_CACHE_DIR", &cache).arg("run").arg(job).arg("--json").output().expect("canon run");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        v["outcome_digest"].as_str().expect("outcome digest").to_string()
    };
    let hello = fixture("hello.wasm");
    let key = stored_key(&Digest::of(&fs::read(&hello).expect("read")), &Linking::default());
    let record = cache.join("validated").join(key.to_string());
    let cold = run(&fixture("jobs/hello.toml"));
    assert_eq!(fs::read_to_string(&record).expect("the record"), format!("canon-validated-v1 {key}\n"));
    let warm = run(&fixture("jobs/hello.toml"));
    assert_eq!(cold, warm, "validated or remembered, one outcome");

    // A module canon's validator refuses leaves no record.
    let bad = base.path().join("bad.wasm");
    fs::write(&bad, invalid_body_module()).expect("write");
    let bad_key = stored_key(&Digest::of(&invalid_body_module()), &Linking::default());
    let bad_record = cache.join("validated").join(bad_key.to_string());
    let (ok, err) = exec_with_cache(&cache, &bad);
    assert!(!ok && err.contains("not a module canon can run"), "{err}");
    assert!(!bad_record.exists(), "a failure is not recorded");
    // A damaged record is no record.
    fs::write(&bad_record, format!("canon-validated-v1 {key}\n")).expect("forge");
    let (ok, err) = exec_with_cache(&cache, &bad);
    assert!(!ok && err.contains("not a module canon can run"), "a record naming another key is ignored: {err}");
    // A well-formed record is believed, as the compiled code beside it is:
    // then wasmtime's own validation refuses the module when it compiles.
    fs::write(&bad_record, format!("canon-validated-v1 {bad_key}\n")).expect("forge");
    let (ok, err) = exec_with_cache(&cache, &bad);
    assert!(!ok && !err.contains("not a module canon can run") && !err.contains("panicked"), "the record skipped canon's validator: {err}");
    // ... unless others can write where it lies.
    chmod(&cache.join("validated"), 0o777);
    let (ok, err) = exec_with_cache(&cache, &bad);
    assert!(!ok && err.contains("not a module canon can run"), "a record in a directory others can write is ignored: {err}");
    chmod(&cache.join("validated"), 0o700);
}
