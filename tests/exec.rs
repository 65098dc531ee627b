//! `canon exec`'s contract with the host: a `--dir` is a copy (the host
//! directory is never modified), nothing is written outside `--out`, stdin
//! is only what `--stdin` names, and `--dir` preopens come first, in
//! command-line order (as a spec's inputs do, in their order).
//!
//! The guests are built here with wasm-encoder: `scribbler` writes into
//! every preopen it is given, `preopens` prints their names in fd order,
//! `fd3` asks what fd 3 is.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use canon::tree::{Node, Tree};
use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, DataSection, EntityType, ExportKind, ExportSection, Function, FunctionSection, ImportSection, MemArg, MemorySection,
    MemoryType, Module, TypeSection, ValType,
};

use crate::util::{canon_bin, fixture, host_perturbations, scratch};

// ---------------------------------------------------------------- guests

const I32: ValType = ValType::I32;
const I64: ValType = ValType::I64;
const WASI: &str = "wasi_snapshot_preview1";

/// A command whose `_start` is `body`, over one exported page of memory
/// holding `data`, importing the WASI functions `imports` (name, params,
/// results) as functions 0, 1, ... in that order.
fn command(imports: &[(&str, &[ValType], &[ValType])], data: &[(u32, &[u8])], locals: u32, body: impl FnOnce(&mut Function)) -> Vec<u8> {
    let mut types = TypeSection::new();
    let mut import_section = ImportSection::new();
    for (i, (name, params, results)) in imports.iter().enumerate() {
        types.ty().function(params.iter().copied(), results.iter().copied());
        import_section.import(WASI, name, EntityType::Function(i as u32));
    }
    types.ty().function([], []);
    let start_type = imports.len() as u32;
    let mut funcs = FunctionSection::new();
    funcs.function(start_type);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType { minimum: 1, maximum: None, memory64: false, shared: false, page_size_log2: None });
    let mut exports = ExportSection::new();
    exports.export("_start", ExportKind::Func, imports.len() as u32).export("memory", ExportKind::Memory, 0);
    let mut f = Function::new(if locals > 0 { vec![(locals, I32)] } else { vec![] });
    body(&mut f);
    f.instructions().end();
    let mut code = CodeSection::new();
    code.function(&f);
    let mut data_section = DataSection::new();
    for (offset, bytes) in data {
        data_section.active(0, &ConstExpr::i32_const(*offset as i32), bytes.iter().copied());
    }
    let mut m = Module::new();
    m.section(&types).section(&import_section).section(&funcs).section(&memories).section(&exports).section(&code).section(&data_section);
    m.finish()
}

fn mem(offset: u64) -> MemArg {
    MemArg { offset, align: 2, memory_index: 0 }
}

const PATH_OPEN: (&str, &[ValType], &[ValType]) = ("path_open", &[I32, I32, I32, I32, I32, I64, I64, I32, I32], &[I32]);
const FD_WRITE: (&str, &[ValType], &[ValType]) = ("fd_write", &[I32, I32, I32, I32], &[I32]);
const FD_CLOSE: (&str, &[ValType], &[ValType]) = ("fd_close", &[I32], &[I32]);
const MKDIR: (&str, &[ValType], &[ValType]) = ("path_create_directory", &[I32, I32, I32], &[I32]);
const PRESTAT_GET: (&str, &[ValType], &[ValType]) = ("fd_prestat_get", &[I32, I32], &[I32]);
const PRESTAT_NAME: (&str, &[ValType], &[ValType]) = ("fd_prestat_dir_name", &[I32, I32, I32], &[I32]);
const FDSTAT_GET: (&str, &[ValType], &[ValType]) = ("fd_fdstat_get", &[I32, I32], &[I32]);
const SOCK_SHUTDOWN: (&str, &[ValType], &[ValType]) = ("sock_shutdown", &[I32, I32], &[I32]);

/// WASI errno `badf`: the descriptor is not open.
const EBADF: u8 = 8;
/// WASI errno `notsock`: the descriptor is open but not a socket.
const ENOTSOCK: u8 = 57;

/// What `scribbler` writes into `keep.txt` and `new.txt`.
const SCRIBBLED: &[u8] = b"written by the guest\n";

/// A guest that, in every preopen from fd 3 to fd 31, truncates and
/// rewrites `keep.txt`, creates `new.txt` with [`SCRIBBLED`] and makes a
/// directory `guest-dir`: everything a guest may do to its copy of a host
/// directory. Errors (no such fd) are ignored.
fn scribbler() -> Vec<u8> {
    // Memory: iovec {64, len} at 0, opened fd at 16, nwritten at 24,
    // the text at 64, "keep.txt" at 128, "new.txt" at 160, "guest-dir" at 192.
    let mut iov = 64u32.to_le_bytes().to_vec();
    iov.extend((SCRIBBLED.len() as u32).to_le_bytes());
    let data: [(u32, &[u8]); 5] = [(0, &iov), (64, SCRIBBLED), (128, b"keep.txt"), (160, b"new.txt"), (192, b"guest-dir")];
    command(&[PATH_OPEN, FD_WRITE, FD_CLOSE, MKDIR], &data, 1, |f| {
        let fd = 0; // local 0: the preopen being scribbled on
        let s = &mut f.instructions();
        s.i32_const(3).local_set(fd);
        s.loop_(BlockType::Empty);
        for (name, len) in [(128, 8), (160, 7)] {
            // path_open(fd, 0, name, len, O_CREAT | O_TRUNC, all rights, all rights, 0, &16)
            s.local_get(fd).i32_const(0).i32_const(name).i32_const(len).i32_const(1 | 8).i64_const(-1).i64_const(-1).i32_const(0).i32_const(16).call(0);
            s.i32_eqz().if_(BlockType::Empty);
            s.i32_const(16).i32_load(mem(0)).i32_const(0).i32_const(1).i32_const(24).call(1).drop();
            s.i32_const(16).i32_load(mem(0)).call(2).drop();
            s.end();
        }
        s.local_get(fd).i32_const(192).i32_const(9).call(3).drop();
        s.local_get(fd).i32_const(1).i32_add().local_tee(fd).i32_const(32).i32_lt_u().br_if(0);
        s.end();
    })
}

/// A guest that prints the name of each preopen, one a line, in fd order
/// from fd 3 until the first fd that is not a preopen.
fn preopens() -> Vec<u8> {
    // Memory: prestat at 0, iovecs at 16 ({256, len}, {8, 1}), "\n" at 8,
    // nwritten at 32, the name at 256.
    let data: [(u32, &[u8]); 2] = [(8, b"\n"), (24, &[8, 0, 0, 0, 1, 0, 0, 0])];
    command(&[PRESTAT_GET, PRESTAT_NAME, FD_WRITE], &data, 1, |f| {
        let fd = 0;
        let s = &mut f.instructions();
        s.i32_const(3).local_set(fd);
        s.block(BlockType::Empty).loop_(BlockType::Empty);
        s.local_get(fd).i32_const(0).call(0).br_if(1);
        s.local_get(fd).i32_const(256).i32_const(0).i32_load(mem(4)).call(1).br_if(1);
        s.i32_const(16).i32_const(256).i32_store(mem(0));
        s.i32_const(16).i32_const(0).i32_load(mem(4)).i32_store(mem(4));
        s.i32_const(1).i32_const(16).i32_const(2).i32_const(32).call(2).drop();
        s.local_get(fd).i32_const(1).i32_add().local_set(fd).br(0);
        s.end().end();
    })
}

/// A guest that asks what fd 3 is, as the wasi-testsuite's
/// `sock_shutdown-invalid_fd` does, and writes the three errnos to stdout
/// as three bytes: `sock_shutdown(3, RD|WR)`, `fd_fdstat_get(3)`,
/// `fd_prestat_get(3)`.
fn fd3() -> Vec<u8> {
    // Memory: the errnos at 0, 1, 2; the iovec {0, 3} at 16; nwritten at
    // 32; fdstat and prestat results at 64.
    let data: [(u32, &[u8]); 1] = [(16, &[0, 0, 0, 0, 3, 0, 0, 0])];
    let byte = MemArg { offset: 0, align: 0, memory_index: 0 };
    command(&[SOCK_SHUTDOWN, FDSTAT_GET, PRESTAT_GET, FD_WRITE], &data, 0, |f| {
        let s = &mut f.instructions();
        s.i32_const(0).i32_const(3).i32_const(3).call(0).i32_store8(byte);
        s.i32_const(1).i32_const(3).i32_const(64).call(1).i32_store8(byte);
        s.i32_const(2).i32_const(3).i32_const(64).call(2).i32_store8(byte);
        s.i32_const(1).i32_const(16).i32_const(1).i32_const(32).call(3).drop();
    })
}

// ---------------------------------------------------------------- harness

/// A scratch world for one test: `root/data` is a host directory with a
/// file, a subdirectory and a symlink; `root/cwd` is canon's working
/// directory; the module and the cache live in a separate scratch
/// directory, so that `root` holds nothing canon may write to except `--out`.
struct World {
    root: tempfile::TempDir,
    tools: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let w = World { root: scratch(), tools: scratch() };
        let data = w.path("data");
        std::fs::create_dir_all(data.join("sub")).expect("mkdir data/sub");
        std::fs::write(data.join("keep.txt"), "original\n").expect("write keep.txt");
        std::fs::write(data.join("sub/inner.txt"), "inner\n").expect("write inner.txt");
        #[cfg(unix)]
        std::os::unix::fs::symlink("keep.txt", data.join("link")).expect("symlink");
        std::fs::create_dir(w.path("cwd")).expect("mkdir cwd");
        std::fs::write(w.tools.path().join("scribbler.wasm"), scribbler()).expect("write scribbler");
        std::fs::write(w.tools.path().join("preopens.wasm"), preopens()).expect("write preopens");
        std::fs::write(w.tools.path().join("fd3.wasm"), fd3()).expect("write fd3");
        w
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn module(&self, name: &str) -> PathBuf {
        self.tools.path().join(format!("{name}.wasm"))
    }

    /// Everything under `root` except `except` (the output directory), as
    /// a tree: file bytes, directories and symlink targets.
    fn snapshot(&self, except: &Path) -> Tree {
        let mut t = Tree::load_dir(self.root.path(), u64::MAX).expect("snapshot");
        if let Ok(rel) = except.strip_prefix(self.root.path()) {
            remove(&mut t, rel);
        }
        t
    }

    /// `canon exec ARGS` from `root/cwd`.
    fn exec(&self, args: &[&str]) -> Output {
        Command::new(canon_bin())
            .arg("exec")
            .args(args)
            .current_dir(self.path("cwd"))
            .env("CANON_CACHE_DIR", self.tools.path().join("cache"))
            .output()
            .expect("spawn canon")
    }
}

fn remove(t: &mut Tree, rel: &Path) {
    let mut parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let Some(last) = parts.pop() else { return };
    let mut at = t;
    for p in parts {
        match at.entries.get_mut(&p) {
            Some(Node::Dir(sub)) => at = sub,
            _ => return,
        }
    }
    at.entries.remove(&last);
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `canon exec ARGS` (from `root/cwd`) and checks the host side: the
/// host directory `data` is byte-for-byte what it was, and nothing changed
/// under `root` outside `out`. Returns the output.
fn exec_leaves_the_host_alone(w: &World, args: &[&str], out: &Path) -> Output {
    let before = w.snapshot(out);
    let data = Tree::load_dir(&w.path("data"), u64::MAX).expect("data");
    let o = w.exec(args);
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert_eq!(Tree::load_dir(&w.path("data"), u64::MAX).expect("data"), data, "{args:?} modified the host directory: {}", stderr(&o));
    assert_eq!(w.snapshot(out), before, "{args:?} wrote outside --out: {}", stderr(&o));
    o
}

/// The output tree at `out/rel`.
fn output(out: &Path, rel: &str) -> Tree {
    Tree::load_dir(&out.join(rel), u64::MAX).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn file(t: &Tree, name: &str) -> Vec<u8> {
    match t.entries.get(name) {
        Some(Node::File(b)) => b.to_vec(),
        other => panic!("{name}: {other:?} in {t:?}"),
    }
}

// ------------------------------------------------- §2: the host is untouched

#[test]
fn a_relative_dir_without_a_guest_path_is_refused_and_nothing_is_written() {
    let w = World::new();
    let out = w.path("results");
    let scribbler = w.module("scribbler");
    let o = exec_leaves_the_host_alone(&w, &["--dir", "../data", "--out", "../results", scribbler.to_str().expect("utf-8")], &out);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("--dir ../data") && err.contains("../data::/data"), "the message names the flag and the fix: {err}");
    assert!(!out.exists(), "a refused run wrote {}", out.display());
}

#[test]
fn a_relative_dir_with_a_guest_path_writes_its_copy_under_out() {
    let w = World::new();
    let out = w.path("results");
    let scribbler = w.module("scribbler");
    let o = exec_leaves_the_host_alone(&w, &["--dir", "../data::/data", "--out", "../results", scribbler.to_str().expect("utf-8")], &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let copy = output(&out, "data");
    assert_eq!(file(&copy, "keep.txt"), SCRIBBLED);
    assert_eq!(file(&copy, "new.txt"), SCRIBBLED);
    assert!(matches!(copy.entries.get("guest-dir"), Some(Node::Dir(_))));
    assert_eq!(file(&output(&out, "data/sub"), "inner.txt"), b"inner\n");
    assert_eq!(file(&output(&out, "out"), "new.txt"), SCRIBBLED, "the default /out is written too");
    let top: Vec<String> = output(&out, "").entries.into_keys().collect();
    assert_eq!(top, ["data", "out"], "nothing but the writable mounts");
}

#[test]
fn dot_dot_and_dot_are_refused_as_default_guest_paths() {
    for dir in ["..", ".", "../data/", "./../data"] {
        let w = World::new();
        let out = w.tools.path().join("results");
        let scribbler = w.module("scribbler");
        let o = exec_leaves_the_host_alone(&w, &["--dir", dir, "--out", out.to_str().expect("utf-8"), scribbler.to_str().expect("utf-8")], &out);
        assert_eq!(o.status.code(), Some(125), "--dir {dir}: {}", stderr(&o));
        assert!(stderr(&o).contains(&format!("--dir {dir}")), "{}", stderr(&o));
        assert!(!out.exists());
    }
}

#[test]
fn an_absolute_host_dir_is_its_own_guest_path_and_lands_under_out() {
    // Outside /tmp, which is the sandbox's own (see the next test): the
    // target directory, unless the checkout itself is under /tmp (as CI's
    // clone may be), then /var/tmp.
    let target_tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let base = if target_tmp.starts_with("/tmp") { std::path::Path::new("/var/tmp") } else { target_tmp };
    let host = tempfile::tempdir_in(base).expect("tempdir");
    let data = host.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(data.join("keep.txt"), "original\n").expect("write");
    let w = World::new();
    let out = w.path("results");
    let scribbler = w.module("scribbler");
    let o = exec_leaves_the_host_alone(&w, &["--dir", data.to_str().expect("utf-8"), "--out", "../results", scribbler.to_str().expect("utf-8")], &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(data.join("keep.txt")).expect("read"), "original\n", "the host directory was modified");
    assert_eq!(std::fs::read_dir(&data).expect("ls").count(), 1);
    let rel = data.strip_prefix("/").expect("absolute");
    assert_eq!(file(&output(&out, rel.to_str().expect("utf-8")), "new.txt"), SCRIBBLED);
}

#[test]
fn an_absolute_host_dir_under_tmp_needs_a_guest_path() {
    let w = World::new();
    let data = w.path("data");
    let scribbler = w.module("scribbler");
    let o = exec_leaves_the_host_alone(&w, &["--dir", data.to_str().expect("utf-8"), scribbler.to_str().expect("utf-8")], &w.path("none"));
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("/tmp is reserved") && err.contains(&format!("--dir {}::/data", data.display())), "{err}");
}

#[test]
fn guest_paths_that_climb_out_are_refused() {
    for guest in ["/..", "/a/../../escape", "/../escape", "../escape", "escape/..", "./escape", "/a/./b", "//a", "/a/", "a/"] {
        let w = World::new();
        let out = w.path("results");
        let scribbler = w.module("scribbler");
        let dir = format!("../data::{guest}");
        let o = exec_leaves_the_host_alone(&w, &["--dir", &dir, "--out", "../results", scribbler.to_str().expect("utf-8")], &out);
        assert_eq!(o.status.code(), Some(125), "{dir}: {}", stderr(&o));
        assert!(stderr(&o).contains(&format!("--dir {dir}")), "{}", stderr(&o));
        assert!(!out.exists(), "{dir}");
    }
}

#[cfg(unix)]
#[test]
fn a_symlinked_output_directory_is_refused() {
    let w = World::new();
    std::fs::create_dir(w.path("elsewhere")).expect("mkdir");
    for target in ["data", "elsewhere", "nowhere"] {
        let link = w.path(&format!("link-to-{target}"));
        std::os::unix::fs::symlink(w.path(target), &link).expect("symlink");
        let scribbler = w.module("scribbler");
        let out = format!("../link-to-{target}");
        let o = exec_leaves_the_host_alone(&w, &["--dir", "../data::/data", "--out", &out, scribbler.to_str().expect("utf-8")], &w.path("none"));
        assert_eq!(o.status.code(), Some(125), "{out}: {}", stderr(&o));
        assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
        assert_eq!(std::fs::read_link(&link).expect("still a link"), w.path(target));
    }
    assert_eq!(std::fs::read_dir(w.path("elsewhere")).expect("ls").count(), 0);
}

#[test]
fn an_output_directory_at_or_inside_a_mounted_host_dir_is_refused() {
    let w = World::new();
    std::fs::create_dir(w.path("empty")).expect("mkdir");
    let scribbler = w.module("scribbler");
    for (dir, out) in
        [("../data::/data", "../data/results"), ("../data::/data", "../data/sub"), ("../empty::/e", "../empty"), ("../data::/data", "../cwd/../data/new")]
    {
        let o = exec_leaves_the_host_alone(&w, &["--dir", dir, "--out", out, scribbler.to_str().expect("utf-8")], &w.path("none"));
        assert_eq!(o.status.code(), Some(125), "--dir {dir} --out {out}: {}", stderr(&o));
        assert!(stderr(&o).contains("never modified"), "{}", stderr(&o));
    }
    assert_eq!(std::fs::read_dir(w.path("empty")).expect("ls").count(), 0);
}

#[cfg(unix)]
#[test]
fn nested_mounts_are_refused_so_no_copy_is_written_through_another() {
    let w = World::new();
    // /a's copy holds a link `b` to a directory outside; a mount at /a/b
    // would be written through it.
    std::fs::create_dir(w.path("victim")).expect("mkdir");
    std::os::unix::fs::symlink(w.path("victim"), w.path("data/b")).expect("symlink");
    std::fs::create_dir(w.path("other")).expect("mkdir");
    std::fs::write(w.path("other/planted.txt"), "planted\n").expect("write");
    let scribbler = w.module("scribbler");
    for (first, second) in [("../data::/a", "../other::/a/b"), ("../other::/a/b", "../data::/a"), ("../data::/a", "../other::/a")] {
        let out = w.path("results");
        let o = exec_leaves_the_host_alone(&w, &["--dir", first, "--dir", second, "--out", "../results", scribbler.to_str().expect("utf-8")], &out);
        assert_eq!(o.status.code(), Some(125), "{first} {second}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(first) && err.contains(second), "{err}");
        assert!(!out.exists());
    }
    assert_eq!(std::fs::read_dir(w.path("victim")).expect("ls").count(), 0);
}

// ------------------------------------------- preopen names: relative and `/`

/// The preopen names `preopens` prints for `args`, one a line.
fn preopen_names(w: &World, args: &[&str]) -> String {
    let module = w.module("preopens");
    let mut all = args.to_vec();
    all.push(module.to_str().expect("utf-8"));
    let o = w.exec(&all);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    String::from_utf8(o.stdout).expect("utf-8")
}

#[test]
fn a_relative_guest_name_is_the_preopen_name_and_lands_under_out_at_its_place() {
    let w = World::new();
    // As `wasmtime run --dir fs-tests.dir` names its preopen `fs-tests.dir`.
    std::fs::create_dir(w.path("cwd/fs-tests.dir")).expect("mkdir");
    assert_eq!(preopen_names(&w, &["--dir", "fs-tests.dir"]), "fs-tests.dir\n/out\n/tmp\n");
    assert_eq!(preopen_names(&w, &["--dir", "../data::data/copy"]), "data/copy\n/out\n/tmp\n");
    let out = w.path("results");
    let scribbler = w.module("scribbler");
    let o = exec_leaves_the_host_alone(&w, &["--dir", "../data::data/copy", "--out", "../results", scribbler.to_str().expect("utf-8")], &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(file(&output(&out, "data/copy"), "new.txt"), SCRIBBLED);
    // `data` and `/data` are one place: both at once are refused.
    let o = w.exec(&["--dir", "../data::data", "--dir", "../data::/data", scribbler.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("same place"), "{}", stderr(&o));
}

#[test]
fn a_mount_at_the_root_is_the_guest_s_whole_file_system() {
    let w = World::new();
    // As the wasi-testsuite's wasmtime adapter mounts a test's directory.
    assert_eq!(preopen_names(&w, &["--dir", "../data::/"]), "/\n", "no /out or /tmp beside a root mount");
    let out = w.path("results");
    let scribbler = w.module("scribbler");
    let o = exec_leaves_the_host_alone(&w, &["--dir", "../data::/", "--out", "../results", scribbler.to_str().expect("utf-8")], &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let top = output(&out, "");
    assert_eq!(file(&top, "keep.txt"), SCRIBBLED);
    assert_eq!(file(&top, "new.txt"), SCRIBBLED);
    assert_eq!(file(&output(&out, "sub"), "inner.txt"), b"inner\n");
    let names: Vec<String> = top.entries.into_keys().collect();
    assert_eq!(names, ["guest-dir", "keep.txt", "link", "new.txt", "sub"], "the root's content and nothing else");
    for second in ["../data::/x", "../data::x"] {
        let o = w.exec(&["--dir", "../data::/", "--dir", second, scribbler.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(125), "{second}");
        assert!(stderr(&o).contains("only input"), "{}", stderr(&o));
    }
}

#[test]
fn the_exec_job_gets_the_checks_a_spec_gets() {
    let w = World::new();
    let scribbler = w.module("scribbler");
    let scribbler = scribbler.to_str().expect("utf-8");
    let wasi_preload = format!("wasi_snapshot_preview1={scribbler}");
    for (args, want) in [
        (vec!["--dir", "../data::/tmp", scribbler], "/tmp is reserved"),
        (vec!["--dir", "../data::/out/sub", scribbler], "inside /out"),
        (vec!["--dir", "../data::/d", "--dir", "../data::/d", scribbler], "same preopened directory"),
        (vec!["--fuel", "0", scribbler], "--fuel"),
        (vec!["--timeout", "0", scribbler], "--timeout"),
        (vec!["--env", "=x", scribbler], "--env"),
        (vec!["--preload", &wasi_preload, scribbler], "--preload wasi_snapshot_preview1="),
        (vec!["--dir", "../data/keep.txt::/k", scribbler], "not a directory"),
        (vec!["--dir", "../missing::/m", scribbler], "--dir ../missing::/m"),
    ] {
        let out = w.path("results");
        let o = exec_leaves_the_host_alone(&w, &args, &out);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(want), "{:?}: {err}", &args[..args.len().min(4)]);
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

// --------------------------------------------------------- §5: stdin

/// Waits up to `limit` for `child`; kills it and fails if it is still running.
fn wait_or_kill(mut child: std::process::Child, limit: Duration) -> Output {
    let started = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > limit {
            child.kill().expect("kill");
            let _ = child.wait();
            panic!("canon exec still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// `canon exec ARGS…` with its stdin, stdout and stderr piped, its module
/// cache in `d`.
fn spawn_exec(d: &tempfile::TempDir, args: &[&std::ffi::OsStr]) -> std::process::Child {
    Command::new(canon_bin())
        .arg("exec")
        .args(args)
        .env("CANON_CACHE_DIR", d.path().join("cache"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

#[test]
fn exec_finishes_while_its_stdin_pipe_stays_open() {
    // The wasi-testsuite runner keeps the runtime's stdin open for the whole test.
    let d = scratch();
    let hello = fixture("hello.wasm");
    let mut child = spawn_exec(&d, &[hello.as_os_str()]);
    let open_stdin = child.stdin.take();
    let o = wait_or_kill(child, Duration::from_secs(120));
    drop(open_stdin);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello from canon\n");
}

#[test]
fn without_stdin_the_guest_reads_nothing_even_from_a_pipe() {
    let d = scratch();
    let probe = fixture("probe.wasm");
    let mut child = spawn_exec(&d, &[probe.as_os_str(), "--".as_ref(), "stdin".as_ref()]);
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"not for the guest\n").expect("write");
    let o = wait_or_kill(child, Duration::from_secs(120));
    drop(stdin);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, b"", "the guest read bytes no flag named");
}

#[test]
fn stdin_dash_reads_the_host_stdin_to_its_end_before_the_guest_starts() {
    let d = scratch();
    let probe = fixture("probe.wasm");
    let mut child = spawn_exec(&d, &["--stdin".as_ref(), "-".as_ref(), probe.as_os_str(), "--".as_ref(), "stdin".as_ref()]);
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"line one\nline two\n").expect("write");
    drop(stdin);
    let o = wait_or_kill(child, Duration::from_secs(120));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, b"line one\nline two\n");
}

#[test]
fn stdin_file_gives_the_same_bytes_under_every_host_perturbation() {
    let d = scratch();
    let input = d.path().join("input.bin");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    std::fs::write(&input, &bytes).expect("write input");
    let (home, cwd) = (scratch(), scratch());
    let mut seen = Vec::new();
    for p in host_perturbations(home.path(), cwd.path()) {
        let mut cmd = Command::new(canon_bin());
        cmd.args(["exec", "--stdin"]).arg(&input).arg(fixture("probe.wasm")).args(["--argv0", "probe", "--", "stdin"]);
        cmd.env("CANON_CACHE_DIR", d.path().join("cache")).stdin(Stdio::piped());
        let o = p.output(&mut cmd);
        assert!(o.status.success(), "{}: {}", p.name, stderr(&o));
        assert_eq!(o.stdout, bytes, "{}", p.name);
        seen.push((o.stdout, o.stderr));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "stdout or stderr differ between perturbations");
    let o = Command::new(canon_bin()).args(["exec", "--stdin"]).arg(d.path().join("gone")).arg(fixture("probe.wasm")).output().expect("spawn");
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("--stdin") && stderr(&o).contains("gone"), "{}", stderr(&o));
}

// ------------------------------------------------- §5: preopen order

fn lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()
}

#[test]
fn dir_preopens_come_first_in_command_line_order_then_out_and_tmp() {
    let w = World::new();
    std::fs::create_dir(w.path("empty")).expect("mkdir");
    let preopens = w.module("preopens");
    let preopens = preopens.to_str().expect("utf-8");
    let o = w.exec(&["--dir", "../data::/zz", "--dir", "../empty::/aa", preopens]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lines(&o), ["/zz", "/aa", "/out", "/tmp"], "fd 3, 4, ... as under `wasmtime run --dir`");
    let o = w.exec(&["--dir", "../empty::/aa", "--dir", "../data::/out", "--dir", "../data::/zz", preopens]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lines(&o), ["/aa", "/out", "/zz", "/tmp"], "a --dir at /out takes its place");
}

#[test]
fn preopen_order_is_the_same_under_every_host_perturbation() {
    let w = World::new();
    let (home, cwd) = (scratch(), scratch());
    let mut seen = Vec::new();
    for p in host_perturbations(home.path(), cwd.path()) {
        let mut cmd = Command::new(canon_bin());
        cmd.arg("exec").arg("--dir").arg(format!("{}::/m", w.path("data").display())).arg("--dir").arg(format!("{}::/b", w.path("data/sub").display()));
        cmd.arg(w.module("preopens")).args(["--argv0", "preopens"]).env("CANON_CACHE_DIR", w.tools.path().join("cache"));
        let o = p.output(&mut cmd);
        assert!(o.status.success(), "{}: {}", p.name, stderr(&o));
        seen.push(lines(&o));
    }
    assert!(seen.iter().all(|l| l == &["/m", "/b", "/out", "/tmp"]), "{seen:?}");
}

/// `canon run --json` of a spec running `preopens` with these inputs (host,
/// guest), in this order, under `p`: (job digest, outcome digest).
fn run_preopens(w: &World, inputs: &[(&str, &str)], p: &crate::util::Perturbation) -> (String, String) {
    run_preopens_with(w, "", inputs, p)
}

/// [`run_preopens`] with `top` (top-level keys) in the spec.
fn run_preopens_with(w: &World, top: &str, inputs: &[(&str, &str)], p: &crate::util::Perturbation) -> (String, String) {
    let mut spec = format!("name = \"preopens\"\nmodule = {:?}\n{top}", w.module("preopens").display().to_string());
    for (host, guest) in inputs {
        spec += &format!("[[input]]\nhost = {host:?}\nguest = {guest:?}\n");
    }
    let path = w.path("preopens.toml");
    std::fs::write(&path, spec).expect("write spec");
    let mut cmd = Command::new(canon_bin());
    cmd.args(["run", "--json"]).arg(&path).env("CANON_CACHE_DIR", w.tools.path().join("cache"));
    let o = p.output(&mut cmd);
    assert!(o.status.success(), "{}: {}", p.name, stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    (v["job_digest"].as_str().expect("job digest").into(), v["outcome_digest"].as_str().expect("outcome digest").into())
}

#[test]
fn a_specs_inputs_are_preopened_in_their_order_which_the_digest_covers() {
    let w = World::new();
    let forward = [("data", "/zz"), ("data/sub", "/aa")];
    let (home, cwd) = (scratch(), scratch());
    let mut seen: Vec<(String, String)> = host_perturbations(home.path(), cwd.path()).iter().map(|p| run_preopens(&w, &forward, p)).collect();
    seen.dedup();
    assert_eq!(seen.len(), 1, "one job and one outcome under every perturbation: {seen:?}");
    let backward = run_preopens(&w, &[("data/sub", "/aa"), ("data", "/zz")], &crate::util::Perturbation::none("none"));
    assert_ne!(backward.0, seen[0].0, "input order is preopen order: it must change the job digest");
    assert_ne!(backward.1, seen[0].1, "and the guest sees it");
    // What the guest saw, in order.
    let out = w.path("results");
    let o = Command::new(canon_bin())
        .arg("run")
        .arg(w.path("preopens.toml"))
        .arg("--out")
        .arg(&out)
        .env("CANON_CACHE_DIR", w.tools.path().join("cache"))
        .output()
        .expect("spawn");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(out.join("stdout")).expect("stdout"), "/aa\n/zz\n/out\n/tmp\n");
}

// ------------------------------------------------ jobs without /out and /tmp

/// The three errnos `fd3` writes, under `canon exec ARGS fd3.wasm`.
fn fd3_errnos(w: &World, args: &[&str]) -> Vec<u8> {
    let module = w.module("fd3");
    let mut all = args.to_vec();
    all.push(module.to_str().expect("utf-8"));
    let o = w.exec(&all);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    o.stdout
}

#[test]
fn without_sandbox_dirs_nothing_is_open_past_stderr() {
    let w = World::new();
    // The wasi-testsuite's `sock_shutdown-invalid_fd`, as its adapter runs it.
    assert_eq!(fd3_errnos(&w, &["--no-sandbox-dirs"]), [EBADF, EBADF, EBADF], "fd 3 is not open: sock_shutdown, fd_fdstat_get, fd_prestat_get");
    assert_eq!(preopen_names(&w, &["--no-sandbox-dirs"]), "");
    // With the sandbox dirs fd 3 is /out, a directory: not a socket.
    assert_eq!(fd3_errnos(&w, &[]), [ENOTSOCK, 0, 0]);
    // A --dir is still fd 3, and /out and /tmp are guest paths like any other.
    assert_eq!(fd3_errnos(&w, &["--no-sandbox-dirs", "--dir", "../data::/data"]), [ENOTSOCK, 0, 0]);
    assert_eq!(preopen_names(&w, &["--no-sandbox-dirs", "--dir", "../data::/tmp", "--dir", "../data/sub::/out/sub"]), "/tmp\n/out/sub\n");
}

#[test]
fn no_sandbox_dirs_with_out_is_refused_before_anything_runs() {
    let w = World::new();
    let out = w.path("results");
    let scribbler = w.module("scribbler");
    let o = exec_leaves_the_host_alone(&w, &["--no-sandbox-dirs", "--dir", "../data::/data", "--out", "../results", scribbler.to_str().expect("utf-8")], &out);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("--no-sandbox-dirs") && err.contains("--out"), "the message names both flags: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!out.exists(), "a refused run wrote {}", out.display());
}

#[test]
fn a_job_without_sandbox_dirs_is_one_job_and_one_outcome_under_every_host_perturbation() {
    let w = World::new();
    let inputs = [("data", "/zz"), ("data/sub", "/tmp")];
    let off = "sandbox_dirs = false\n";
    let (home, cwd) = (scratch(), scratch());
    let mut runs = vec![crate::util::Perturbation::none("first"), crate::util::Perturbation::none("second")];
    runs.extend(host_perturbations(home.path(), cwd.path()));
    let mut seen: Vec<(String, String)> = runs.iter().map(|p| run_preopens_with(&w, off, &inputs, p)).collect();
    seen.dedup();
    assert_eq!(seen.len(), 1, "one job and one outcome under every perturbation: {seen:?}");
    // The same inputs with the sandbox dirs are another job (and /tmp is reserved then).
    let with = run_preopens(&w, &[("data", "/zz")], &crate::util::Perturbation::none("with"));
    let without = run_preopens_with(&w, off, &[("data", "/zz")], &crate::util::Perturbation::none("without"));
    assert_ne!(with.0, without.0, "the guest sees whether /out and /tmp exist: the job digest must say");
    assert_ne!(with.1, without.1);
    // What the guest saw: its inputs and nothing else.
    run_preopens_with(&w, off, &inputs, &crate::util::Perturbation::none("again"));
    let out = w.path("results");
    let o = Command::new(canon_bin())
        .arg("run")
        .arg(w.path("preopens.toml"))
        .arg("--out")
        .arg(&out)
        .env("CANON_CACHE_DIR", w.tools.path().join("cache"))
        .output()
        .expect("spawn");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(out.join("stdout")).expect("stdout"), "/zz\n/tmp\n");
}
