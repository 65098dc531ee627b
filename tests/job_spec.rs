//! Job specs: loading, every refusal, mount layout, and the job digest
//! (stability, sensitivity, and the `canon/job/v3` vectors).

use std::fs;
use std::path::Path;

use canon::job::{Job, JobError, ModuleError, validate_module};
use wasm_encoder::{
    CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection, ImportSection, MemorySection, MemoryType, Module, TypeSection, ValType,
};

use crate::util::{fixture, scratch};

// ---------------------------------------------------------------- helpers

const MINIMAL: &str = "name = \"t\"\nmodule = \"m.wasm\"\n";

/// A scratch dir holding `m.wasm` (the minimal module).
fn dir() -> tempfile::TempDir {
    let d = scratch();
    fs::copy(fixture("vectors/minimal.wasm"), d.path().join("m.wasm")).expect("copy module");
    d
}

fn write(dir: &Path, rel: &str, bytes: &[u8]) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, bytes).expect("write");
}

/// Writes `job.toml` into `dir` and loads it.
fn load(dir: &Path, spec: &str) -> Result<Job, JobError> {
    write(dir, "job.toml", spec.as_bytes());
    Job::load(&dir.join("job.toml"))
}

/// Loads a spec that must fail; returns the error and its message, and
/// checks that the message names the spec file.
fn refuse(dir: &Path, spec: &str) -> (JobError, String) {
    let err = load(dir, spec).expect_err("spec should be refused");
    let msg = err.to_string();
    assert!(msg.contains("job.toml"), "message does not name the spec: {msg}");
    (err, msg)
}

fn minimal_plus(extra: &str) -> String {
    format!("{MINIMAL}{extra}\n")
}

type Sig<'a> = (&'a [ValType], &'a [ValType]);

/// Builds a core module: the given function imports, then (optionally) a
/// `_start` function of the given type, and (optionally) a memory exported
/// as `memory`.
fn module(imports: &[(&str, &str, Sig<'_>)], start: Option<Sig<'_>>, memory: Option<MemoryType>) -> Vec<u8> {
    let mut types = TypeSection::new();
    let mut import_section = ImportSection::new();
    for (i, (m, n, (p, r))) in imports.iter().enumerate() {
        types.ty().function(p.iter().copied(), r.iter().copied());
        import_section.import(m, n, EntityType::Function(i as u32));
    }
    let mut funcs = FunctionSection::new();
    let mut code = CodeSection::new();
    let mut exports = ExportSection::new();
    if let Some((p, r)) = start {
        types.ty().function(p.iter().copied(), r.iter().copied());
        funcs.function(imports.len() as u32);
        let mut body = Function::new(vec![]);
        for t in r {
            match t {
                ValType::I32 => body.instructions().i32_const(0),
                _ => body.instructions().i64_const(0),
            };
        }
        body.instructions().end();
        code.function(&body);
        exports.export("_start", ExportKind::Func, imports.len() as u32);
    }
    let mut mems = MemorySection::new();
    if let Some(m) = memory {
        mems.memory(m);
        exports.export("memory", ExportKind::Memory, 0);
    }
    let mut module = Module::new();
    module.section(&types).section(&import_section).section(&funcs).section(&mems).section(&exports).section(&code);
    module.finish()
}

const PAGE: MemoryType = MemoryType { minimum: 1, maximum: None, memory64: false, shared: false, page_size_log2: None };
const START: Sig<'static> = (&[], &[]);

fn module_err(bytes: &[u8]) -> ModuleError {
    validate_module(bytes).expect_err("module should be refused")
}

/// Puts `bytes` as the job's module and returns the spec's error.
fn refuse_module(bytes: &[u8]) -> (ModuleError, String) {
    let d = dir();
    write(d.path(), "m.wasm", bytes);
    let (err, msg) = refuse(d.path(), MINIMAL);
    assert!(msg.contains("m.wasm"), "message does not name the module: {msg}");
    match err {
        JobError::Module { source, .. } => (*source, msg),
        other => panic!("expected JobError::Module, got {other:?}"),
    }
}

// ------------------------------------------------------------- good specs

#[test]
fn minimal_spec_gets_every_default() {
    let d = dir();
    let job = load(d.path(), MINIMAL).expect("load");
    assert_eq!(job.name, "t");
    assert_eq!(job.argv0, "t", "argv0 defaults to name");
    assert!(job.args.is_empty() && job.env.is_empty() && job.stdin.is_empty() && job.mounts.is_empty());
    assert_eq!(job.epoch, canon::job::DEFAULT_EPOCH);
    assert_eq!(job.limits, canon::job::Limits::JOB_DEFAULT);
    assert_eq!(job.timeout, canon::job::DEFAULT_TIMEOUT);
    assert_eq!(job.commit, None);
    assert!(job.sandbox_dirs, "the sandbox's /out and /tmp by default");
    assert_eq!(job.seed, job.derived_seed());
    assert_eq!(job.module_sha256, canon::digest::Digest::of(&fs::read(d.path().join("m.wasm")).expect("read")));
}

#[test]
fn full_spec_resolves_every_field() {
    let d = dir();
    write(d.path(), "in.txt", b"stdin bytes");
    let sha = canon::digest::Digest::of(&fs::read(d.path().join("m.wasm")).expect("read"));
    let spec = format!(
        r#"
name = "full"
module = "m.wasm"
module_sha256 = "sha256:{sha}"
args = ["x", "y"]
argv0 = "prog"
env = {{ Z = "1", A = "2" }}
stdin_file = "in.txt"
seed = "18446744073709551615"
epoch = 0
commit = "ABCDEF0123456789ABCDEF0123456789ABCDEF01"
[limits]
fuel = 5
memory = "64 KiB"
stdout = 0
stderr = "1 KiB"
output_bytes = 1048576
output_files = 0
timeout = 3
"#
    );
    let job = load(d.path(), &spec).expect("load");
    assert_eq!(job.argv0, "prog");
    assert_eq!(job.args, ["x", "y"]);
    assert_eq!(job.env, [("A".to_string(), "2".to_string()), ("Z".to_string(), "1".to_string())]);
    assert_eq!(job.stdin, b"stdin bytes");
    assert_eq!(job.seed, u64::MAX);
    assert_eq!(job.epoch, 0);
    assert_eq!(job.commit.as_deref(), Some("abcdef0123456789abcdef0123456789abcdef01"), "commit is stored lowercase");
    let l = job.limits;
    assert_eq!((l.fuel, l.memory_bytes, l.stdout_bytes, l.stderr_bytes, l.output_bytes, l.output_files), (5, 65536, 0, 1024, 1 << 20, 0));
    assert_eq!(job.timeout.as_secs(), 3);
}

#[test]
fn file_inputs_merge_into_their_parent_and_mounts_keep_the_order_of_their_first_input() {
    let d = dir();
    write(d.path(), "a.txt", b"a");
    write(d.path(), "b.txt", b"b");
    write(d.path(), "tree/sub/c.txt", b"c");
    let spec = minimal_plus(
        r#"
[[input]]
host = "tree"
guest = "/z"
[[input]]
host = "b.txt"
guest = "/etc/b.txt"
[[input]]
host = "a.txt"
guest = "/etc/a.txt"
[[input]]
host = "tree"
guest = "/out"
writable = true
"#,
    );
    let job = load(d.path(), &spec).expect("load");
    let guests: Vec<_> = job.mounts.iter().map(|m| m.guest.as_str()).collect();
    assert_eq!(guests, ["/z", "/etc", "/out"], "preopen order is input order, not sorted");
    let etc = &job.mounts[1];
    assert!(!etc.writable);
    assert_eq!(etc.source, None, "a merged preopen has no single host source");
    assert_eq!(etc.tree().entries.keys().collect::<Vec<_>>(), ["a.txt", "b.txt"]);
    assert!(job.mounts[2].writable);
    assert_eq!(job.mounts[0].source.as_deref(), Some(d.path().join("tree").as_path()));
    assert_eq!(job.mounts[0].tree().manifest().entries.len(), 2, "sub and sub/c.txt");
}

#[cfg(unix)]
#[test]
fn symlinks_inside_inputs_stay_links() {
    let d = dir();
    write(d.path(), "tree/f", b"f");
    std::os::unix::fs::symlink("f", d.path().join("tree/link")).expect("symlink");
    let job = load(d.path(), &minimal_plus("[[input]]\nhost = \"tree\"\nguest = \"/t\"")).expect("load");
    assert_eq!(job.mounts[0].tree().entries.get("link"), Some(&canon::tree::Node::Symlink("f".into())));
}

// ---------------------------------------------------------- spec refusals

#[test]
fn toml_syntax_error_gives_line_and_column() {
    let d = dir();
    let (err, msg) = refuse(d.path(), "name = \"t\"\nmodule = \n");
    assert!(matches!(err, JobError::Toml { line: 2, .. }), "{err:?}");
    assert!(msg.contains("job.toml:2:"), "{msg}");
}

#[test]
fn wrong_value_type_is_a_toml_error_naming_the_place() {
    let d = dir();
    let (err, _) = refuse(d.path(), &minimal_plus("[limits]\nfuel = \"lots\""));
    assert!(matches!(err, JobError::Toml { line: 4, .. }), "{err:?}");
    let (err, msg) = refuse(d.path(), &minimal_plus("sandbox_dirs = \"no\""));
    assert!(matches!(err, JobError::Toml { line: 3, .. }) && msg.contains("bool"), "{msg}");
}

#[test]
fn unknown_keys_are_named_wherever_they_are() {
    for (extra, key) in [
        ("nmae = \"x\"", "nmae"),
        ("sandbox_dir = false", "sandbox_dir"),
        ("[limits]\nmemroy = 1", "memroy"),
        ("[[input]]\nhost = \"m.wasm\"\nguest = \"/a/m\"\nwritible = true", "writible"),
    ] {
        let d = dir();
        let (err, msg) = refuse(d.path(), &minimal_plus(extra));
        assert!(matches!(&err, JobError::UnknownKey { key: k, .. } if k == key), "{err:?}");
        assert!(msg.contains(&format!("`{key}`")), "{msg}");
    }
}

#[test]
fn missing_required_fields_are_named() {
    for (spec, field) in [
        ("module = \"m.wasm\"", "name"),
        ("name = \"t\"", "module"),
        ("name = \"t\"\nmodule = \"m.wasm\"\n[[input]]\nhost = \"m.wasm\"", "input[0].guest"),
        ("name = \"t\"\nmodule = \"m.wasm\"\n[[input]]\nguest = \"/a\"", "input[0].host"),
    ] {
        let d = dir();
        let (err, msg) = refuse(d.path(), spec);
        assert!(matches!(&err, JobError::MissingField { field: f, .. } if f == field), "{err:?}");
        assert!(msg.contains(field), "{msg}");
    }
}

#[test]
fn empty_name_is_refused() {
    let d = dir();
    let (err, msg) = refuse(d.path(), "name = \"\"\nmodule = \"m.wasm\"");
    assert!(matches!(err, JobError::InvalidField { .. }), "{err:?}");
    assert!(msg.contains("`name`"), "{msg}");
}

#[test]
fn module_file_missing_is_named() {
    let d = dir();
    let (err, msg) = refuse(d.path(), "name = \"t\"\nmodule = \"nope.wasm\"");
    assert!(matches!(err, JobError::ModuleRead { .. }), "{err:?}");
    assert!(msg.contains("nope.wasm"), "{msg}");
}

#[test]
fn malformed_module_sha256_is_refused() {
    let d = dir();
    let (err, msg) = refuse(d.path(), &minimal_plus("module_sha256 = \"abc\""));
    assert!(matches!(err, JobError::MalformedSha256 { .. }), "{err:?}");
    assert!(msg.contains("module_sha256") && msg.contains("\"abc\""), "{msg}");
}

#[test]
fn module_sha256_mismatch_shows_both_digests() {
    let d = dir();
    let wrong = "0".repeat(64);
    let actual = canon::digest::Digest::of(&fs::read(d.path().join("m.wasm")).expect("read")).to_string();
    let (err, msg) = refuse(d.path(), &minimal_plus(&format!("module_sha256 = \"{wrong}\"")));
    assert!(matches!(err, JobError::Sha256Mismatch { .. }), "{err:?}");
    assert!(msg.contains(&wrong) && msg.contains(&actual), "{msg}");
}

#[test]
fn limits_out_of_bounds_are_refused_naming_the_limit() {
    for (extra, field) in [
        ("fuel = 0", "fuel"),
        ("memory = \"1 KiB\"", "memory"),
        ("memory = \"5 GiB\"", "memory"),
        ("memory = \"64 MB\"", "memory"),
        ("memory = -1", "memory"),
        ("stdout = \"5 GiB\"", "stdout"),
        ("stderr = true", "stderr"),
        ("output_bytes = \"lots\"", "output_bytes"),
        ("output_files = 1000000000", "output_files"),
        ("timeout = 0", "timeout"),
        ("timeout = 99999999", "timeout"),
    ] {
        let d = dir();
        let (err, msg) = refuse(d.path(), &minimal_plus(&format!("[limits]\n{extra}")));
        assert!(matches!(&err, JobError::Limit { field: f, .. } if *f == field), "{extra}: {err:?}");
        assert!(msg.contains(&format!("limits.{field}")), "{msg}");
    }
}

#[test]
fn stdin_and_stdin_file_together_are_refused() {
    let d = dir();
    write(d.path(), "in.txt", b"x");
    let (err, msg) = refuse(d.path(), &minimal_plus("stdin = \"a\"\nstdin_file = \"in.txt\""));
    assert!(matches!(err, JobError::StdinConflict { .. }), "{err:?}");
    assert!(msg.contains("stdin_file"), "{msg}");
}

#[test]
fn missing_stdin_file_is_named() {
    let d = dir();
    let (err, msg) = refuse(d.path(), &minimal_plus("stdin_file = \"gone.txt\""));
    assert!(matches!(err, JobError::StdinRead { .. }), "{err:?}");
    assert!(msg.contains("gone.txt"), "{msg}");
}

#[test]
fn bad_commit_ids_are_refused() {
    for bad in ["abc", "g123456789abcdef0123456789abcdef01234567", &"a".repeat(41), ""] {
        let d = dir();
        let (err, msg) = refuse(d.path(), &minimal_plus(&format!("commit = \"{bad}\"")));
        assert!(matches!(err, JobError::Commit { .. }), "{err:?}");
        assert!(msg.contains("commit"), "{msg}");
    }
    let d = dir();
    assert!(load(d.path(), &minimal_plus(&format!("commit = \"{}\"", "a".repeat(64)))).is_ok(), "SHA-256 commit ids are fine");
}

#[test]
fn bad_seeds_are_refused() {
    for bad in ["-1", "\"x\"", "1.5"] {
        let d = dir();
        let (err, msg) = refuse(d.path(), &minimal_plus(&format!("seed = {bad}")));
        assert!(matches!(err, JobError::InvalidField { .. }), "{bad}: {err:?}");
        assert!(msg.contains("`seed`"), "{msg}");
    }
}

#[test]
fn env_names_with_equals_nul_or_nothing_are_refused() {
    for env in [r#""A=B" = "1""#, r#""A\u0000" = "1""#, r#""" = "1""#] {
        let d = dir();
        let (err, msg) = refuse(d.path(), &minimal_plus(&format!("env = {{ {env} }}")));
        assert!(matches!(err, JobError::InvalidField { .. }), "{env}: {err:?}");
        assert!(msg.contains("env."), "{msg}");
    }
}

#[test]
fn nul_bytes_in_args_env_values_and_argv0_are_refused() {
    for (extra, field) in [(r#"args = ["ok", "a\u0000b"]"#, "args[1]"), (r#"env = { A = "a\u0000" }"#, "env.A"), (r#"argv0 = "p\u0000""#, "argv0")] {
        let d = dir();
        let (err, msg) = refuse(d.path(), &minimal_plus(extra));
        assert!(matches!(&err, JobError::InvalidField { field: f, .. } if f == field), "{err:?}");
        assert!(msg.contains("NUL"), "{msg}");
    }
}

// --------------------------------------------------------- input refusals

fn input(host: &str, guest: &str, writable: bool) -> String {
    format!("[[input]]\nhost = \"{host}\"\nguest = \"{guest}\"\nwritable = {writable}\n")
}

#[test]
fn missing_input_host_path_is_named() {
    let d = dir();
    let (err, msg) = refuse(d.path(), &minimal_plus(&input("nothing-here", "/data", false)));
    assert!(matches!(err, JobError::InputMissing { index: 0, .. }), "{err:?}");
    assert!(msg.contains("input[0].host") && msg.contains("nothing-here"), "{msg}");
}

#[test]
fn bad_guest_paths_are_refused() {
    for guest in ["", "./data", "../data", "data/", "/data/", "/a//b", "/a/./b", "a/./b", "/a/../b", "."] {
        let d = dir();
        write(d.path(), "data/f", b"f");
        let (err, msg) = refuse(d.path(), &minimal_plus(&input("data", guest, false)));
        assert!(matches!(err, JobError::GuestPath { index: 0, .. }), "{guest}: {err:?}");
        assert!(msg.contains("input[0].guest"), "{msg}");
    }
    // A file directly under `/` (or a relative name of one component)
    // would need `/` as its preopen.
    for guest in ["/m.wasm", "m.wasm", "/"] {
        let d = dir();
        let (err, _) = refuse(d.path(), &minimal_plus(&input("m.wasm", guest, false)));
        assert!(matches!(err, JobError::GuestPath { .. }), "{guest}: {err:?}");
    }
}

#[test]
fn a_relative_guest_path_is_its_preopen_name_and_its_own_job() {
    let d = dir();
    write(d.path(), "data/f", b"f");
    let relative = load(d.path(), &minimal_plus(&input("data", "data", false))).expect("relative");
    assert_eq!(relative.mounts[0].guest, "data", "the name the guest reads is the one given");
    let absolute = load(d.path(), &minimal_plus(&input("data", "/data", false))).expect("absolute");
    assert_ne!(relative.digest(), absolute.digest(), "the guest sees the difference, so the digest does");
    // Everything about places treats `data` as `/data`.
    for (inputs, want) in [
        (input("data", "data", false) + &input("data", "/data", false), "same place"),
        (input("data", "a", false) + &input("data", "/a/b", false), "nested"),
        (input("data", "tmp", true), "/tmp is reserved"),
        (input("data", "out/sub", true), "inside /out"),
    ] {
        let (_, msg) = refuse(d.path(), &minimal_plus(&inputs));
        assert!(msg.contains(want), "{inputs}: {msg}");
    }
    let (err, _) = refuse(d.path(), &minimal_plus(&input("data", "out", false)));
    assert!(matches!(err, JobError::OutReadOnly { .. }), "{err:?}");
}

#[test]
fn a_mount_at_the_root_must_be_the_only_input() {
    let d = dir();
    write(d.path(), "data/f", b"f");
    let job = load(d.path(), &minimal_plus(&input("data", "/", false))).expect("a lone root");
    assert_eq!(job.mounts[0].guest, "/");
    for inputs in [input("data", "/", true) + &input("data", "/x", false), input("data", "x", false) + &input("data", "/", true)] {
        let (err, msg) = refuse(d.path(), &minimal_plus(&inputs));
        assert!(matches!(err, JobError::Overlap { .. }), "{err:?}");
        assert!(msg.contains("only input"), "{msg}");
    }
}

#[test]
fn tmp_is_reserved() {
    for (host, guest) in [("data", "/tmp"), ("data", "/tmp/x"), ("m.wasm", "/tmp/m.wasm")] {
        let d = dir();
        write(d.path(), "data/f", b"f");
        let (err, msg) = refuse(d.path(), &minimal_plus(&input(host, guest, true)));
        assert!(matches!(err, JobError::Reserved { .. }), "{guest}: {err:?}");
        assert!(msg.contains("/tmp"), "{msg}");
    }
    let d = dir();
    write(d.path(), "data/f", b"f");
    assert!(load(d.path(), &minimal_plus(&input("data", "/tmpfiles", false))).is_ok(), "/tmpfiles is not /tmp");
}

#[test]
fn out_may_be_seeded_only_writable_and_only_at_out() {
    let d = dir();
    write(d.path(), "data/f", b"f");
    let (err, msg) = refuse(d.path(), &minimal_plus(&input("data", "/out", false)));
    assert!(matches!(err, JobError::OutReadOnly { .. }), "{err:?}");
    assert!(msg.contains("writable"), "{msg}");

    let (err, _) = refuse(d.path(), &minimal_plus(&input("data", "/out/sub", true)));
    assert!(matches!(err, JobError::Reserved { .. }), "{err:?}");

    assert!(load(d.path(), &minimal_plus(&input("data/f", "/out/f", true))).is_ok(), "files directly in /out are fine");
}

#[test]
fn without_sandbox_dirs_out_and_tmp_are_ordinary_inputs() {
    let d = dir();
    write(d.path(), "data/f", b"f");
    write(d.path(), "more/g", b"g");
    let spec = minimal_plus(&format!("sandbox_dirs = false\n{}{}", input("data", "/tmp", true), input("more", "/out", false)));
    let job = load(d.path(), &spec).expect("inputs at /tmp and a read-only /out");
    assert!(!job.sandbox_dirs);
    assert_eq!(job.mounts.iter().map(|m| (m.guest.as_str(), m.writable)).collect::<Vec<_>>(), [("/tmp", true), ("/out", false)]);
    let nested = minimal_plus(&format!("sandbox_dirs = false\n{}{}", input("data", "/out", true), input("more", "/out/sub", true)));
    let (err, msg) = refuse(d.path(), &nested);
    assert!(matches!(err, JobError::Overlap { .. }) && msg.contains("nested"), "{msg}");
}

#[test]
fn nested_or_equal_preopens_are_refused() {
    let d = dir();
    write(d.path(), "data/f", b"f");
    let cases = [
        (input("data", "/a", false) + &input("data", "/a/b", false), "nested"),
        (input("data", "/a/b", false) + &input("data", "/a", false), "nested"),
        (input("data", "/a", false) + &input("data/f", "/a/b/f", false), "nested"),
        (input("data", "/a", false) + &input("data", "/a", false), "same"),
        (input("data/f", "/a/f", false) + &input("data", "/a", false), "same"),
        (input("data/f", "/a/f", false) + &input("m.wasm", "/a/f", false), "same guest file"),
    ];
    for (inputs, relation) in cases {
        let (err, msg) = refuse(d.path(), &minimal_plus(&inputs));
        assert!(matches!(err, JobError::Overlap { first: 0, second: 1, .. }), "{inputs}: {err:?}");
        assert!(msg.contains(relation) && msg.contains("input[0]") && msg.contains("input[1]"), "{msg}");
    }
}

#[test]
fn merged_file_inputs_must_agree_on_writable() {
    let d = dir();
    write(d.path(), "a", b"a");
    write(d.path(), "b", b"b");
    let (err, msg) = refuse(d.path(), &minimal_plus(&(input("a", "/e/a", false) + &input("b", "/e/b", true))));
    assert!(matches!(err, JobError::WritableConflict { first: 0, second: 1, .. }), "{err:?}");
    assert!(msg.contains("writable") && msg.contains("/e"), "{msg}");
}

// -------------------------------------------------------- module refusals

#[test]
fn minimal_fixture_module_is_valid() {
    validate_module(&fs::read(fixture("vectors/minimal.wasm")).expect("read")).expect("valid");
    validate_module(&module(&[("wasi_snapshot_preview1", "fd_write", (&[ValType::I32; 4], &[ValType::I32]))], Some(START), Some(PAGE)))
        .expect("a provided import with its signature is fine");
}

#[test]
fn not_wasm_is_named_as_such() {
    let (err, msg) = refuse_module(b"#!/bin/sh\necho hi\n");
    assert_eq!(err, ModuleError::NotWasm);
    assert!(msg.contains("not a WebAssembly module"), "{msg}");
    assert_eq!(module_err(b""), ModuleError::NotWasm);
}

#[test]
fn component_is_refused() {
    // The preamble of a component: magic, version 0x0d, layer 1.
    let (err, msg) = refuse_module(b"\0asm\x0d\x00\x01\x00");
    assert_eq!(err, ModuleError::Component);
    assert!(msg.contains("component"), "{msg}");
}

#[test]
fn malformed_module_carries_wasmparsers_message() {
    let mut bytes = fs::read(fixture("vectors/minimal.wasm")).expect("read");
    bytes.truncate(bytes.len() - 3);
    let (err, msg) = refuse_module(&bytes);
    assert!(matches!(err, ModuleError::Invalid { .. }), "{err:?}");
    assert!(msg.contains("invalid WebAssembly module"), "{msg}");

    // Well-formed but invalid: a function body that leaves an i32 on a () -> () function.
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    let mut body = Function::new(vec![]);
    body.instructions().i32_const(1).end();
    let mut code = CodeSection::new();
    code.function(&body);
    let mut m = Module::new();
    m.section(&types).section(&funcs).section(&code);
    assert!(matches!(module_err(&m.finish()), ModuleError::Invalid { .. }));
}

#[test]
fn unknown_import_is_named_module_colon_colon_name() {
    let (err, msg) = refuse_module(&module(&[("env", "frob", (&[], &[]))], Some(START), Some(PAGE)));
    assert_eq!(err, ModuleError::UnknownImport { module: "env".into(), name: "frob".into() });
    assert!(msg.contains("`env::frob`"), "{msg}");
    let err = module_err(&module(&[("wasi_snapshot_preview1", "fd_frob", (&[], &[]))], Some(START), Some(PAGE)));
    assert!(matches!(err, ModuleError::UnknownImport { .. }), "{err:?}");
}

#[test]
fn provided_import_with_wrong_signature_is_refused() {
    let (err, msg) = refuse_module(&module(&[("wasi_snapshot_preview1", "fd_write", (&[ValType::I32; 3], &[ValType::I32]))], Some(START), Some(PAGE)));
    assert!(matches!(err, ModuleError::ImportSignature { .. }), "{err:?}");
    assert!(msg.contains("wasi_snapshot_preview1::fd_write") && msg.contains("(i32, i32, i32, i32) -> (i32)"), "{msg}");
}

#[test]
fn non_function_imports_are_refused() {
    let mut imports = ImportSection::new();
    imports.import("env", "memory", PAGE);
    let mut m = Module::new();
    m.section(&imports);
    let err = module_err(&m.finish());
    assert_eq!(err, ModuleError::NonFunctionImport { module: "env".into(), name: "memory".into(), kind: "memory" });
}

#[test]
fn missing_or_mistyped_start_is_refused() {
    let (err, msg) = refuse_module(&module(&[], None, Some(PAGE)));
    assert_eq!(err, ModuleError::MissingStart);
    assert!(msg.contains("_start"), "{msg}");
    let (err, msg) = refuse_module(&module(&[], Some((&[ValType::I32], &[])), Some(PAGE)));
    assert!(matches!(err, ModuleError::StartSignature { .. }), "{err:?}");
    assert!(msg.contains("(i32) -> ()"), "{msg}");
    let err = module_err(&module(&[], Some((&[], &[ValType::I32])), Some(PAGE)));
    assert!(matches!(err, ModuleError::StartSignature { .. }), "{err:?}");
}

#[test]
fn missing_or_unusable_memory_is_refused() {
    let (err, msg) = refuse_module(&module(&[], Some(START), None));
    assert_eq!(err, ModuleError::MissingMemory);
    assert!(msg.contains("memory"), "{msg}");
    let mem64 = MemoryType { memory64: true, ..PAGE };
    let err = module_err(&module(&[], Some(START), Some(mem64)));
    assert!(matches!(err, ModuleError::Invalid { .. } | ModuleError::MemoryKind { .. }), "{err:?}");
}

/// Found by differential fuzzing: validation allowed 64-bit memories, which
/// the engine refuses, so a second, unexported 64-bit memory passed
/// validation and then failed to compile. It is refused at validation now.
#[test]
fn an_unexported_64_bit_memory_is_refused_at_validation() {
    // Memory 0 exported and 32-bit; memory 1 64-bit and not exported.
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    m.section(&types);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    m.section(&funcs);
    let mut mems = MemorySection::new();
    mems.memory(PAGE).memory(MemoryType { memory64: true, ..PAGE });
    m.section(&mems);
    let mut exports = ExportSection::new();
    exports.export("_start", ExportKind::Func, 0).export("memory", ExportKind::Memory, 0);
    m.section(&exports);
    let mut code = CodeSection::new();
    let mut body = Function::new(vec![]);
    body.instructions().end();
    code.function(&body);
    m.section(&code);
    let err = module_err(&m.finish());
    assert!(matches!(err, ModuleError::Invalid { .. }), "{err:?}");
}

// ----------------------------------------------------------------- digest

/// A job touching every field, written into `dir`.
const RICH: &str = r#"
name = "rich"
module = "m.wasm"
argv0 = "prog"
args = ["a", "b"]
env = { B = "2", A = "1" }
stdin = "in"
seed = 7
epoch = 100
commit = "0123456789abcdef0123456789abcdef01234567"
[limits]
fuel = 1000
memory = "1 MiB"
stdout = 10
stderr = 11
output_bytes = 12
output_files = 13
timeout = 60
[[input]]
host = "data"
guest = "/data"
"#;

fn rich_dir() -> tempfile::TempDir {
    let d = dir();
    write(d.path(), "data/x", b"x");
    d
}

#[test]
fn digest_is_the_same_from_a_copy_in_another_directory() {
    let a = rich_dir();
    let b = rich_dir();
    let ja = load(a.path(), RICH).expect("a");
    let jb = load(b.path(), RICH).expect("b");
    assert_ne!(ja.module_path, jb.module_path);
    assert_eq!(ja.digest(), jb.digest());
    assert_eq!(ja.encode(), jb.encode());
}

#[test]
fn informational_fields_do_not_change_the_digest() {
    let d = rich_dir();
    let base = load(d.path(), RICH).expect("base").digest();
    write(d.path(), "elsewhere/x", b"x");
    for (from, to) in [
        ("name = \"rich\"", "name = \"renamed\""), // argv0 is explicit here
        ("timeout = 60", "timeout = 61"),
        ("epoch = 100", "epoch = 100\nsandbox_dirs = true"), // the default, written out
        ("host = \"data\"", "host = \"elsewhere\""),
        ("memory = \"1 MiB\"", "memory = 1048576"),
        ("env = { B = \"2\", A = \"1\" }", "env = { A = \"1\", B = \"2\" }"),
    ] {
        let spec = RICH.replace(from, to);
        assert_ne!(spec, RICH);
        assert_eq!(load(d.path(), &spec).expect(to).digest(), base, "{to} changed the digest");
    }
}

#[test]
fn every_field_that_matters_changes_the_digest() {
    let d = rich_dir();
    write(d.path(), "other.wasm", &module(&[], Some(START), Some(PAGE)));
    write(d.path(), "data2/x", b"y");
    let base = load(d.path(), RICH).expect("base").digest();
    for (from, to) in [
        ("module = \"m.wasm\"", "module = \"other.wasm\""),
        ("args = [\"a\", \"b\"]", "args = [\"a\", \"b\", \"\"]"),
        ("args = [\"a\", \"b\"]", "args = [\"ab\"]"),
        ("argv0 = \"prog\"", "argv0 = \"other\""),
        ("B = \"2\"", "B = \"3\""),
        ("B = \"2\"", "C = \"2\""),
        ("stdin = \"in\"", "stdin = \"in \""),
        ("seed = 7", "seed = 8"),
        ("epoch = 100", "epoch = 101"),
        ("commit = \"0123456789abcdef0123456789abcdef01234567\"", ""),
        ("fuel = 1000", "fuel = 1001"),
        ("memory = \"1 MiB\"", "memory = \"2 MiB\""),
        ("stdout = 10", "stdout = 9"),
        ("stderr = 11", "stderr = 9"),
        ("output_bytes = 12", "output_bytes = 9"),
        ("output_files = 13", "output_files = 9"),
        ("epoch = 100", "epoch = 100\nsandbox_dirs = false"),
        ("host = \"data\"", "host = \"data2\""),
        ("guest = \"/data\"", "guest = \"/data2\""),
        ("guest = \"/data\"", "guest = \"data\""),
        ("guest = \"/data\"", "guest = \"/data\"\nwritable = true"),
    ] {
        let spec = RICH.replacen(from, to, 1);
        assert_ne!(spec, RICH, "{from}");
        assert_ne!(load(d.path(), &spec).expect(to).digest(), base, "{from} -> {to} kept the digest");
    }
}

#[test]
fn without_argv0_the_name_is_argv0_and_so_changes_the_digest() {
    let d = dir();
    let a = load(d.path(), MINIMAL).expect("a");
    let b = load(d.path(), &MINIMAL.replace("\"t\"", "\"u\"")).expect("b");
    assert_eq!(b.argv0, "u");
    assert_ne!(a.digest(), b.digest());
}

#[test]
fn default_seed_is_derived_deterministically_from_the_content() {
    let spec = RICH.replace("seed = 7\n", "");
    let a = load(rich_dir().path(), &spec).expect("a");
    let b = load(rich_dir().path(), &spec).expect("b");
    assert_eq!(a.seed, b.seed);
    assert_eq!(a.seed, a.derived_seed());
    // Writing the derived seed explicitly names the same job.
    let explicit = RICH.replace("seed = 7", &format!("seed = \"{}\"", a.seed));
    assert_eq!(load(rich_dir().path(), &explicit).expect("explicit").digest(), a.digest());
    // Different content, different default seed.
    let c = load(rich_dir().path(), &spec.replace("epoch = 100", "epoch = 5")).expect("c");
    assert_ne!(c.seed, a.seed);
}

// ---------------------------------------------------------------- vectors

/// `fixtures/vectors/job-v3.json`: each case is a spec plus the files beside
/// it; its encoding, digest and seed are pinned. Set `CANON_BLESS=1` to
/// rewrite the expected values (and the `.bin` files) after a deliberate
/// change, which must come with a new version tag.
#[test]
fn job_v3_vectors() {
    let path = fixture("vectors/job-v3.json");
    let text = fs::read_to_string(&path).expect("read vectors");
    let mut doc: serde_json::Value = serde_json::from_str(&text).expect("parse vectors");
    let bless = std::env::var_os("CANON_BLESS").is_some();
    let cases = doc["cases"].as_array_mut().expect("cases");
    assert!(!cases.is_empty());
    for case in cases {
        let name = case["name"].as_str().expect("name").to_string();
        let d = dir();
        fs::copy(fixture("vectors/minimal.wasm"), d.path().join("minimal.wasm")).expect("copy");
        fs::copy(fixture("vectors/minimal-threads.wasm"), d.path().join("minimal-threads.wasm")).expect("copy");
        for (rel, content) in case["files"].as_object().expect("files") {
            write(d.path(), rel, content.as_str().expect("file content").as_bytes());
        }
        let job = load(d.path(), case["spec"].as_str().expect("spec")).expect(&name);
        let encoding = job.encode();
        let got = [("encoding_hex", hex::encode(&encoding)), ("digest", job.digest().to_string()), ("seed", job.seed.to_string())];
        let bin = fixture(&format!("vectors/job-v3-{name}.bin"));
        if bless {
            for (k, v) in got {
                case[k] = serde_json::Value::String(v);
            }
            fs::write(&bin, &encoding).expect("write bin");
        } else {
            for (k, v) in got {
                assert_eq!(case[k].as_str(), Some(v.as_str()), "vector {name}: {k}");
            }
            assert_eq!(fs::read(&bin).expect("read bin"), encoding, "vector {name}: {}", bin.display());
        }
    }
    if bless {
        fs::write(&path, serde_json::to_string_pretty(&doc).expect("json") + "\n").expect("write vectors");
    }
}

/// `fixtures/bad-jobs/*.toml`: specs that must be refused, each starting
/// with a `# expect: <text>` line that the error message must contain.
#[test]
fn bad_job_fixtures_are_refused_with_the_expected_message() {
    let mut seen = 0;
    for entry in fs::read_dir(fixture("bad-jobs")).expect("bad-jobs") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("read");
        let expect = text.lines().next().and_then(|l| l.strip_prefix("# expect: ")).expect("first line is `# expect: ...`");
        let msg = Job::load(&path).expect_err(&path.display().to_string()).to_string();
        assert!(msg.contains(expect), "{}: message {msg:?} lacks {expect:?}", path.display());
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} bad-job fixtures");
}

/// CORE_FEATURES is meant to be what wasmtime, as canon builds it, accepts:
/// spot-check that wasmtime and validate_module agree.
#[test]
fn module_features_agree_with_wasmtime() {
    let engine = wasmtime::Engine::default();
    let shared = MemoryType { shared: true, maximum: Some(1), ..PAGE };
    let mut two_memories = Module::new();
    {
        let mut types = TypeSection::new();
        types.ty().function([], []);
        let mut funcs = FunctionSection::new();
        funcs.function(0);
        let mut mems = MemorySection::new();
        mems.memory(PAGE).memory(PAGE);
        let mut exports = ExportSection::new();
        exports.export("_start", ExportKind::Func, 0).export("memory", ExportKind::Memory, 0);
        let mut body = Function::new(vec![]);
        body.instructions().end();
        let mut code = CodeSection::new();
        code.function(&body);
        two_memories.section(&types).section(&funcs).section(&mems).section(&exports).section(&code);
    }
    for (what, bytes) in [("minimal", fs::read(fixture("vectors/minimal.wasm")).expect("read")), ("multi-memory", two_memories.finish())] {
        let ours = validate_module(&bytes);
        let theirs = wasmtime::Module::validate(&engine, &bytes);
        assert_eq!(ours.is_ok(), theirs.is_ok(), "{what}: canon {ours:?}, wasmtime {theirs:?}");
    }
    // A shared memory the module defines itself: wasmtime (built with
    // threads) takes it; canon refuses it, naming why: a threaded module's
    // threads share one memory, which it must import as `env.memory`.
    let defined_shared = module(&[], Some(START), Some(shared));
    assert!(wasmtime::Module::validate(&engine, &defined_shared).is_ok());
    assert!(matches!(validate_module(&defined_shared), Err(canon::job::ModuleError::ThreadedMemory)), "{:?}", validate_module(&defined_shared));
}
