//! A conformance guest for a WASI preview 1 host: calls the raw functions of
//! `wasi_snapshot_preview1` (declared in `wasi.rs`, no `wasi` crate) and
//! prints one line per check:
//!
//! - `ok NAME`, or `ok NAME (host gave X)` where the spec or POSIX allows
//!   several answers and the host's choice is worth seeing;
//! - `FAIL NAME: expected X got Y`;
//! - `skip NAME: why` for what cannot be checked from inside (proc_raise).
//!
//! It ends with `N passed, M failed` and exits 1 if any check failed.
//!
//! The job (fixtures/jobs/wasi-conformance.toml) must give exactly the
//! arguments, environment and stdin below, a read-only preopen `/data` with
//! fixtures/inputs/data, and the default writable `/out` and `/tmp`, so that
//! the preopens are fds 3, 4, 5 in sorted guest-path order. The checks write
//! under `/out/work`, which must not exist beforehand.

use std::fmt::{Debug, Display};

mod wasi;
use wasi::*;

/// argv, argv[0] included (it defaults to the job name).
const ARGS: &[&str] = &[
    "wasi-conformance",
    "first",
    "second arg with spaces",
    "ünïcödé",
    "",
];
/// The environment, sorted.
const ENV: &[&str] = &["CANON_CONFORMANCE=1", "EMPTY=", "EQUALS=a=b", "LANG=C"];
const STDIN: &[u8] = b"conformance stdin\n";

const DATA: Fd = 3;
const OUT: Fd = 4;
const TMP: Fd = 5;
const PREOPENS: [(Fd, &str); 3] = [(DATA, "/data"), (OUT, "/out"), (TMP, "/tmp")];
/// An fd number that no check opens.
const UNOPENED: Fd = 99;

const MS: u64 = 1_000_000;
/// 2000-01-01T00:00:00Z in ns: the realtime clock must be past it.
const Y2K_NS: u64 = 946_684_800 * 1_000_000_000;

/// What a write into the read-only `/data` may give: a read-only file
/// system, no permission, or a missing capability (right).
const READ_ONLY: [Errno; 4] = [Errno::ROFS, Errno::PERM, Errno::NOTCAPABLE, Errno::ACCES];
/// What a path that leaves its preopen may give: `notcapable` by the spec,
/// `perm` in wasmtime's own tests.
const ESCAPE: [Errno; 2] = [Errno::NOTCAPABLE, Errno::PERM];

#[derive(Default)]
struct Report {
    passed: u32,
    failed: u32,
}

impl Report {
    fn pass(&mut self, name: &str) {
        self.passed += 1;
        println!("ok {name}");
    }

    fn pass_note(&mut self, name: &str, note: impl Display) {
        self.passed += 1;
        println!("ok {name} ({note})");
    }

    fn fail(&mut self, name: &str, expected: impl Display, got: impl Display) {
        self.failed += 1;
        println!("FAIL {name}: expected {expected} got {got}");
    }

    fn check(&mut self, name: &str, ok: bool, expected: impl Display, got: impl Display) {
        if ok {
            self.pass(name)
        } else {
            self.fail(name, expected, got)
        }
    }

    fn eq<T: PartialEq + Debug>(&mut self, name: &str, expected: T, got: T) {
        if expected == got {
            self.pass(name)
        } else {
            self.fail(name, format!("{expected:?}"), format!("{got:?}"))
        }
    }

    /// The call must end in `expected` (`SUCCESS` for `Ok`).
    fn errno<T>(&mut self, name: &str, expected: Errno, got: &Result<T, Errno>) -> bool {
        self.errno_any(name, &[expected], got)
    }

    /// The call must end in one of `accepted`; when there are several, the
    /// line says which one the host gave.
    fn errno_any<T>(&mut self, name: &str, accepted: &[Errno], got: &Result<T, Errno>) -> bool {
        let e = outcome(got);
        if !accepted.contains(&e) {
            let list: Vec<String> = accepted.iter().map(Errno::to_string).collect();
            self.fail(name, list.join(" or "), e);
            false
        } else if accepted.len() > 1 {
            self.pass_note(name, format_args!("host gave {}", e.name()));
            true
        } else {
            self.pass(name);
            true
        }
    }

    fn skip(&self, name: &str, why: &str) {
        println!("skip {name}: {why}");
    }
}

fn outcome<T>(r: &Result<T, Errno>) -> Errno {
    match r {
        Ok(_) => Errno::SUCCESS,
        Err(e) => *e,
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Returns the value of a step the following checks need, or records it as
/// a failure and returns from the enclosing check function.
macro_rules! setup {
    ($t:expr, $name:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(errno) => {
                $t.fail($name, "success", errno);
                return;
            }
        }
    };
}

// Helpers that open the way wasi-libc's openat does: ask for every right
// except those that contradict the access mode, masked by the directory's
// inheriting rights, and follow symlinks. (Hosts such as wasmtime decide
// read versus write from the rights asked for.)

/// Rights that only a reader or only a writer asks for.
const READ_ONLY_RIGHTS: u64 = RIGHTS_FD_READ | RIGHTS_FD_READDIR;
const WRITE_ONLY_RIGHTS: u64 =
    RIGHTS_FD_DATASYNC | RIGHTS_FD_WRITE | RIGHTS_FD_ALLOCATE | RIGHTS_FD_FILESTAT_SET_SIZE;

fn open_with(
    dir: Fd,
    path: impl AsRef<[u8]>,
    oflags: u16,
    fdflags: u16,
    write: bool,
) -> Result<Fd, Errno> {
    let mode = if write {
        READ_ONLY_RIGHTS | WRITE_ONLY_RIGHTS
    } else {
        READ_ONLY_RIGHTS
    };
    let max = (RIGHTS_ALL & !(READ_ONLY_RIGHTS | WRITE_ONLY_RIGHTS)) | mode;
    let inheriting = fd_fdstat_get(dir).map_or(RIGHTS_ALL, |s| s.rights_inheriting);
    path_open(
        dir,
        LOOKUP_SYMLINK_FOLLOW,
        path,
        oflags,
        max & inheriting,
        inheriting,
        fdflags,
    )
}

/// Opens for reading.
fn open(dir: Fd, path: impl AsRef<[u8]>, oflags: u16, fdflags: u16) -> Result<Fd, Errno> {
    open_with(dir, path, oflags, fdflags, false)
}

/// Opens for reading and writing.
fn open_rw(dir: Fd, path: impl AsRef<[u8]>, oflags: u16, fdflags: u16) -> Result<Fd, Errno> {
    open_with(dir, path, oflags, fdflags, true)
}

fn create_file(dir: Fd, path: &str, contents: &[u8]) -> Result<(), Errno> {
    let fd = open_rw(dir, path, OFLAGS_CREAT | OFLAGS_TRUNC, 0)?;
    let mut rest = contents;
    while !rest.is_empty() {
        match fd_write(fd, rest) {
            Ok(0) => break,
            Ok(n) => rest = &rest[n..],
            Err(e) => {
                let _ = fd_close(fd);
                return Err(e);
            }
        }
    }
    fd_close(fd)
}

fn read_fd(fd: Fd) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match fd_read(fd, &mut buf)? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn read_file(dir: Fd, path: &str) -> Result<Vec<u8>, Errno> {
    let fd = open(dir, path, 0, 0)?;
    let r = read_fd(fd);
    let _ = fd_close(fd);
    r
}

fn main() {
    let mut t = Report::default();
    args(&mut t);
    environ(&mut t);
    clocks(&mut t);
    random(&mut t);
    prestats(&mut t);
    fdstats(&mut t);
    directory_rights(&mut t);
    stdio(&mut t);
    match work_dir(&mut t) {
        Some(w) => {
            open_errors(&mut t, w);
            file_io(&mut t);
            file_writes(&mut t, w);
            readdir(&mut t, w);
            path_stat(&mut t, w);
            directories(&mut t, w);
            renames(&mut t, w);
            symlinks(&mut t, w);
            hard_links(&mut t, w);
            renumber(&mut t, w);
        }
        None => t.skip("file system checks", "no work directory under /out"),
    }
    poll(&mut t);
    t.errno("sched_yield", Errno::SUCCESS, &sched_yield());
    sockets(&mut t);
    invalid_enums(&mut t);
    t.skip("proc_raise", "not called: it would end the program");
    println!("{} passed, {} failed", t.passed, t.failed);
    if t.failed > 0 {
        std::process::exit(1);
    }
}

fn args(t: &mut Report) {
    let (count, size) = setup!(t, "args_sizes_get", args_sizes_get());
    let expected_size: usize = ARGS.iter().map(|a| a.len() + 1).sum();
    t.eq("args_sizes_get_count", ARGS.len() as u32, count);
    t.eq("args_sizes_get_buf_size", expected_size as u32, size);
    let got = setup!(t, "args_get", args_get(count, size));
    let got: Vec<String> = got.iter().map(|a| lossy(a)).collect();
    t.eq(
        "args_get",
        ARGS.to_vec(),
        got.iter().map(String::as_str).collect(),
    );
}

fn environ(t: &mut Report) {
    let (count, size) = setup!(t, "environ_sizes_get", environ_sizes_get());
    t.eq("environ_sizes_get_count", ENV.len() as u32, count);
    let list = setup!(t, "environ_get", environ_get(count, size));
    let used: usize = list.iter().map(|e| e.len() + 1).sum();
    t.eq("environ_sizes_get_buf_size", used as u32, size);
    let mut got: Vec<String> = list.iter().map(|e| lossy(e)).collect();
    let given_sorted = got.is_sorted();
    got.sort();
    if got == ENV {
        t.pass_note(
            "environ_get",
            if given_sorted {
                "given sorted"
            } else {
                "given unsorted"
            },
        );
    } else {
        t.fail("environ_get", format!("{ENV:?}"), format!("{got:?}"));
    }
}

fn clocks(t: &mut Report) {
    for (name, id) in [("realtime", CLOCK_REALTIME), ("monotonic", CLOCK_MONOTONIC)] {
        let name = format!("clock_res_get_{name}");
        match clock_res_get(id) {
            Ok(res) => t.check(&name, res > 0, "a resolution > 0", res),
            Err(e) => t.fail(&name, "success", e),
        }
    }
    // The CPU-time clocks are optional in preview 1; wasmtime says badf.
    let optional = [
        Errno::SUCCESS,
        Errno::INVAL,
        Errno::NOTSUP,
        Errno::NOSYS,
        Errno::BADF,
    ];
    for (name, id) in [
        ("process_cputime", CLOCK_PROCESS_CPUTIME),
        ("thread_cputime", CLOCK_THREAD_CPUTIME),
    ] {
        t.errno_any(
            &format!("clock_res_get_{name}"),
            &optional,
            &clock_res_get(id),
        );
        t.errno_any(
            &format!("clock_time_get_{name}"),
            &optional,
            &clock_time_get(id, 1),
        );
    }
    match clock_time_get(CLOCK_REALTIME, 1) {
        Ok(ns) => t.check(
            "clock_time_get_realtime",
            ns >= Y2K_NS,
            "a time after 2000-01-01",
            ns,
        ),
        Err(e) => t.fail("clock_time_get_realtime", "success", e),
    }
    let reads: Result<Vec<u64>, Errno> =
        (0..3).map(|_| clock_time_get(CLOCK_MONOTONIC, 1)).collect();
    match reads {
        Ok(v) => t.check(
            "clock_time_get_monotonic_non_decreasing",
            v.is_sorted(),
            "non-decreasing reads",
            format!("{v:?}"),
        ),
        Err(e) => t.fail("clock_time_get_monotonic_non_decreasing", "success", e),
    }
    t.errno(
        "clock_time_get_max_precision",
        Errno::SUCCESS,
        &clock_time_get(CLOCK_MONOTONIC, u64::MAX),
    );
}

fn random(t: &mut Report) {
    let mut a = [0u8; 64];
    let mut b = [0u8; 64];
    setup!(t, "random_get", random_get(&mut a));
    t.pass("random_get");
    t.check(
        "random_get_fills",
        a != [0; 64],
        "not all zero",
        "64 zero bytes",
    );
    setup!(t, "random_get_again", random_get(&mut b));
    t.check(
        "random_get_differs",
        a != b,
        "a different second draw",
        "the same 64 bytes",
    );
    t.errno("random_get_empty", Errno::SUCCESS, &random_get(&mut []));
}

fn prestats(t: &mut Report) {
    for (fd, name) in PREOPENS {
        let label = format!("fd_prestat_get_{fd}");
        let st = match fd_prestat_get(fd) {
            Ok(st) => st,
            Err(e) => {
                t.fail(&label, format!("the preopen {name}"), e);
                continue;
            }
        };
        t.check(
            &label,
            st.tag == 0 && st.name_len as usize == name.len(),
            format_args!("dir, name length {}", name.len()),
            format_args!("tag {}, name length {}", st.tag, st.name_len),
        );
        let mut buf = vec![0u8; st.name_len as usize];
        match fd_prestat_dir_name(fd, &mut buf) {
            Ok(()) => t.eq(
                &format!("fd_prestat_dir_name_{fd}"),
                name.to_string(),
                lossy(&buf),
            ),
            Err(e) => t.fail(&format!("fd_prestat_dir_name_{fd}"), "success", e),
        }
    }
    t.errno("fd_prestat_get_6_badf", Errno::BADF, &fd_prestat_get(6));
    t.errno("fd_prestat_get_stdin_badf", Errno::BADF, &fd_prestat_get(0));
    let mut short = [0u8; 2];
    t.errno_any(
        "fd_prestat_dir_name_short_buffer",
        &[Errno::NAMETOOLONG, Errno::INVAL],
        &fd_prestat_dir_name(DATA, &mut short),
    );
}

fn fdstats(t: &mut Report) {
    match fd_fdstat_get(DATA) {
        Ok(st) => t.eq(
            "fd_fdstat_get_dir",
            filetype_name(FILETYPE_DIRECTORY),
            filetype_name(st.filetype),
        ),
        Err(e) => t.fail("fd_fdstat_get_dir", "success", e),
    }
    match fd_filestat_get(DATA) {
        Ok(st) => t.eq(
            "fd_filestat_get_dir",
            filetype_name(FILETYPE_DIRECTORY),
            filetype_name(st.filetype),
        ),
        Err(e) => t.fail("fd_filestat_get_dir", "success", e),
    }
    for fd in 0..3 {
        match fd_fdstat_get(fd) {
            Ok(st) => t.pass_note(
                &format!("fd_fdstat_get_{fd}"),
                format_args!("filetype {}", filetype_name(st.filetype)),
            ),
            Err(e) => t.fail(&format!("fd_fdstat_get_{fd}"), "success", e),
        }
    }
    t.errno(
        "fd_fdstat_get_unopened_badf",
        Errno::BADF,
        &fd_fdstat_get(UNOPENED),
    );
    t.errno(
        "fd_filestat_get_unopened_badf",
        Errno::BADF,
        &fd_filestat_get(UNOPENED),
    );
}

/// A directory's rights are a directory's: programs open one with the
/// rights its parent has, and must not be refused for asking to write.
fn directory_rights(t: &mut Report) {
    let st = setup!(t, "fd_fdstat_get /data", fd_fdstat_get(DATA));
    t.check(
        "fd_fdstat_get_dir_rights_cover_what_programs_expect",
        st.rights_base & RIGHTS_DIRECTORY_BASE == RIGHTS_DIRECTORY_BASE
            && st.rights_inheriting & RIGHTS_DIRECTORY_INHERITING == RIGHTS_DIRECTORY_INHERITING,
        format_args!(
            "base {RIGHTS_DIRECTORY_BASE:#x} and inheriting {RIGHTS_DIRECTORY_INHERITING:#x} at least"
        ),
        format_args!(
            "base {:#x} inheriting {:#x}",
            st.rights_base, st.rights_inheriting
        ),
    );
    let file_only = RIGHTS_FD_READ | RIGHTS_FD_WRITE | RIGHTS_FD_SEEK | RIGHTS_FD_FILESTAT_SET_SIZE;
    t.eq(
        "fd_fdstat_get_dir_has_no_file_rights",
        0,
        st.rights_base & file_only,
    );
    for (name, oflags) in [
        ("path_open_dir_with_its_own_rights", 0),
        ("path_open_directory_with_its_own_rights", OFLAGS_DIRECTORY),
    ] {
        match path_open(
            DATA,
            0,
            ".",
            oflags,
            st.rights_base,
            st.rights_inheriting,
            0,
        ) {
            Ok(fd) => {
                t.pass(name);
                let _ = fd_close(fd);
            }
            Err(e) => t.fail(name, "success", e),
        }
    }
    match path_open(DATA, 0, "sub", OFLAGS_DIRECTORY, RIGHTS_FD_SEEK, 0, 0) {
        Ok(fd) => {
            t.eq(
                "path_open_directory_gets_no_seek_right",
                Ok(0),
                fd_fdstat_get(fd).map(|s| s.rights_base & RIGHTS_FD_SEEK),
            );
            let _ = fd_close(fd);
        }
        Err(e) => t.fail("path_open_directory_gets_no_seek_right", "success", e),
    }
    // Dropping a right a directory passes on: recorded, and enforced on
    // what is opened through it (wasmtime drops no right: notsup).
    let sub = setup!(
        t,
        "open /data/sub",
        path_open(
            DATA,
            0,
            "sub",
            OFLAGS_DIRECTORY,
            st.rights_base,
            st.rights_inheriting,
            0
        )
    );
    let inheriting = st.rights_inheriting & !RIGHTS_FD_WRITE;
    match fd_fdstat_set_rights(sub, st.rights_base, inheriting) {
        Ok(()) => {
            t.pass("fd_fdstat_set_rights_dir_drops_inheriting");
            t.eq(
                "fd_fdstat_set_rights_dir_inheriting_recorded",
                Ok(inheriting),
                fd_fdstat_get(sub).map(|s| s.rights_inheriting),
            );
            t.errno(
                "path_open_right_not_passed_on_notcapable",
                Errno::NOTCAPABLE,
                &path_open(sub, 0, "a.txt", 0, RIGHTS_FD_READ | RIGHTS_FD_WRITE, 0, 0),
            );
            t.errno(
                "fd_fdstat_set_rights_dir_regrant_notcapable",
                Errno::NOTCAPABLE,
                &fd_fdstat_set_rights(sub, st.rights_base, st.rights_inheriting),
            );
        }
        Err(e) if e == Errno::NOTSUP => {
            t.pass_note("fd_fdstat_set_rights_dir_drops_inheriting", "notsup")
        }
        Err(e) => t.fail(
            "fd_fdstat_set_rights_dir_drops_inheriting",
            "success or notsup",
            e,
        ),
    }
    let _ = fd_close(sub);
    t.errno(
        "path_open_directory_read_write_isdir",
        Errno::ISDIR,
        &path_open(
            DATA,
            0,
            ".",
            OFLAGS_DIRECTORY,
            RIGHTS_FD_READ | RIGHTS_FD_WRITE,
            0,
            0,
        ),
    );
}

fn stdio(t: &mut Report) {
    // A small buffer, so that stdin takes several reads.
    let mut got = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        match fd_read(0, &mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => {
                t.fail("fd_read_stdin", "success", e);
                return;
            }
        }
        if got.len() > 1 << 16 {
            break;
        }
    }
    t.eq("fd_read_stdin", lossy(STDIN), lossy(&got));

    // These two lines are their own evidence: written with raw fd_write.
    let line = b"ok fd_write_stdout\n";
    match fd_write(1, line) {
        Ok(n) if n == line.len() => t.passed += 1,
        Ok(n) => t.fail("fd_write_stdout", line.len(), n),
        Err(e) => t.fail("fd_write_stdout", "success", e),
    }
    // A gather write may be short (wasmtime writes the first non-empty
    // buffer only), as writev may: finish the line with plain writes and
    // say how much the first call took.
    let parts: [&[u8]; 3] = [b"ok fd_write_", b"", b"stdout_vectored"];
    let total: usize = parts.iter().map(|p| p.len()).sum();
    match fd_write_vectored(1, &parts).and_then(|n| {
        let line = parts.concat();
        let mut done = n;
        while done < total {
            done += fd_write(1, &line[done..])?;
        }
        Ok(n)
    }) {
        Ok(n) if n == total => {
            println!();
            t.passed += 1;
        }
        Ok(n) => {
            println!(" (first call wrote {n} of {total} bytes)");
            t.passed += 1;
        }
        Err(e) => {
            println!();
            t.fail("fd_write_stdout_vectored", "success", e);
        }
    }
    t.errno("fd_write_stderr", Errno::SUCCESS, &fd_write(2, b""));
    t.errno_any(
        "fd_seek_stdout",
        &[Errno::SPIPE, Errno::SUCCESS],
        &fd_seek(1, 0, WHENCE_CUR),
    );
    t.errno_any(
        "fd_tell_stdout",
        &[Errno::SPIPE, Errno::SUCCESS],
        &fd_tell(1),
    );
}

/// Creates `/out/work` and opens it: the file system checks work there.
fn work_dir(t: &mut Report) -> Option<Fd> {
    if let Err(e) = path_create_directory(OUT, "work") {
        t.fail("path_create_directory_work", "success", e);
        return None;
    }
    t.pass("path_create_directory_work");
    match open(OUT, "work", OFLAGS_DIRECTORY, 0) {
        Ok(fd) => {
            t.pass("path_open_directory");
            Some(fd)
        }
        Err(e) => {
            t.fail("path_open_directory", "success", e);
            None
        }
    }
}

fn open_errors(t: &mut Report, w: Fd) {
    match open(DATA, "hello.txt", 0, 0) {
        Ok(fd) => {
            t.pass("path_open_existing_file");
            let _ = fd_close(fd);
        }
        Err(e) => t.fail("path_open_existing_file", "success", e),
    }
    t.errno(
        "path_open_missing_noent",
        Errno::NOENT,
        &open(DATA, "does-not-exist", 0, 0),
    );
    t.errno(
        "path_open_missing_parent_noent",
        Errno::NOENT,
        &open(DATA, "nope/deeper.txt", 0, 0),
    );
    t.errno_any(
        "path_open_empty_path",
        &[Errno::NOENT, Errno::INVAL],
        &open(DATA, "", 0, 0),
    );
    setup!(t, "create exists.txt", create_file(w, "exists.txt", b"x"));
    t.errno(
        "path_open_creat_excl_existing_exist",
        Errno::EXIST,
        &open_rw(w, "exists.txt", OFLAGS_CREAT | OFLAGS_EXCL, 0),
    );
    t.errno(
        "path_open_directory_on_file_notdir",
        Errno::NOTDIR,
        &open(DATA, "hello.txt", OFLAGS_DIRECTORY, 0),
    );
    t.errno(
        "path_open_file_trailing_slash_notdir",
        Errno::NOTDIR,
        &open(DATA, "hello.txt/", 0, 0),
    );
    // Ask for write explicitly: wasi-libc would first drop rights the
    // directory does not pass on.
    let rw = RIGHTS_FD_READ | RIGHTS_FD_WRITE;
    t.errno_any(
        "path_open_write_in_readonly_preopen",
        &READ_ONLY,
        &path_open(DATA, LOOKUP_SYMLINK_FOLLOW, "hello.txt", 0, rw, 0, 0),
    );
    t.errno_any(
        "path_open_create_in_readonly_preopen",
        &READ_ONLY,
        &path_open(
            DATA,
            LOOKUP_SYMLINK_FOLLOW,
            "new.txt",
            OFLAGS_CREAT,
            rw,
            0,
            0,
        ),
    );
    t.errno_any(
        "path_open_dotdot_escape",
        &ESCAPE,
        &open(DATA, "..", OFLAGS_DIRECTORY, 0),
    );
    t.errno_any(
        "path_open_dotdot_reentering",
        &ESCAPE,
        &open(DATA, "sub/../../data/hello.txt", 0, 0),
    );
    t.errno_any(
        "path_open_dotdot_into_sibling_preopen",
        &ESCAPE,
        &open(DATA, "../out", OFLAGS_DIRECTORY, 0),
    );
    match open(DATA, "sub/../hello.txt", 0, 0) {
        Ok(fd) => {
            t.pass("path_open_dotdot_inside");
            let _ = fd_close(fd);
        }
        Err(e) => t.fail("path_open_dotdot_inside", "success", e),
    }
    t.errno_any(
        "path_open_absolute_path",
        &ESCAPE,
        &open(DATA, "/data/hello.txt", 0, 0),
    );
    t.errno_any(
        "path_open_invalid_utf8",
        &[Errno::ILSEQ, Errno::INVAL],
        &open(DATA, b"\xff.txt", 0, 0),
    );
    t.errno_any(
        "path_open_long_name",
        &[Errno::NAMETOOLONG, Errno::NOENT],
        &open(DATA, "n".repeat(1000), 0, 0),
    );
    t.errno(
        "path_open_unopened_dir_badf",
        Errno::BADF,
        &open(UNOPENED, "hello.txt", 0, 0),
    );
    let fd = setup!(t, "open hello.txt", open(DATA, "hello.txt", 0, 0));
    t.errno_any(
        "path_open_relative_to_file",
        &[Errno::NOTDIR, Errno::BADF, Errno::NOTCAPABLE],
        &open(fd, "x", 0, 0),
    );
    let _ = fd_close(fd);
}

/// Reads, seeks and stats on the read-only /data/hello.txt (`hello\n`).
fn file_io(t: &mut Report) {
    let fd = setup!(t, "open hello.txt", open(DATA, "hello.txt", 0, 0));
    match fd_fdstat_get(fd) {
        Ok(st) => t.eq(
            "fd_fdstat_get_file",
            filetype_name(FILETYPE_REGULAR_FILE),
            filetype_name(st.filetype),
        ),
        Err(e) => t.fail("fd_fdstat_get_file", "success", e),
    }
    let mut buf = [0u8; 64];
    match fd_read(fd, &mut buf) {
        Ok(n) => t.eq("fd_read", "hello\n".to_string(), lossy(&buf[..n])),
        Err(e) => t.fail("fd_read", "success", e),
    }
    match fd_read(fd, &mut buf) {
        Ok(n) => t.eq("fd_read_eof", 0, n),
        Err(e) => t.fail("fd_read_eof", "success", e),
    }
    let mut three = [0u8; 3];
    match fd_pread(fd, &mut three, 1) {
        Ok(n) => t.eq("fd_pread", "ell".to_string(), lossy(&three[..n])),
        Err(e) => t.fail("fd_pread", "success", e),
    }
    t.eq("fd_pread_keeps_offset", Ok(6), fd_tell(fd));
    t.eq("fd_pread_past_end", Ok(0), fd_pread(fd, &mut buf, 100));
    t.eq("fd_seek_set", Ok(2), fd_seek(fd, 2, WHENCE_SET));
    t.eq("fd_seek_cur", Ok(3), fd_seek(fd, 1, WHENCE_CUR));
    let mut two = [0u8; 2];
    match fd_read(fd, &mut two) {
        Ok(n) => t.eq("fd_read_after_seek", "lo".to_string(), lossy(&two[..n])),
        Err(e) => t.fail("fd_read_after_seek", "success", e),
    }
    t.eq("fd_seek_end", Ok(5), fd_seek(fd, -1, WHENCE_END));
    t.eq("fd_tell", Ok(5), fd_tell(fd));
    t.errno(
        "fd_seek_negative_inval",
        Errno::INVAL,
        &fd_seek(fd, -1, WHENCE_SET),
    );
    t.eq("fd_seek_failed_keeps_offset", Ok(5), fd_tell(fd));
    t.eq("fd_seek_past_end", Ok(100), fd_seek(fd, 100, WHENCE_SET));
    t.eq("fd_read_past_end", Ok(0), fd_read(fd, &mut buf));
    let _ = fd_seek(fd, 0, WHENCE_SET);
    let (mut a, mut b) = ([0u8; 2], [0u8; 10]);
    // A scatter read may be short (wasmtime fills the first buffer only).
    match fd_read_vectored(fd, &mut [&mut a, &mut b]) {
        Ok(n) => {
            let got = [&a[..], &b[..]].concat();
            let ok = (1..=6).contains(&n) && got[..n] == b"hello\n"[..n];
            if !ok {
                t.fail(
                    "fd_read_vectored",
                    "a prefix of \"hello\\n\" in order",
                    format_args!("{:?}", lossy(&got[..n.min(12)])),
                );
            } else if n == 6 {
                t.pass("fd_read_vectored");
            } else {
                t.pass_note(
                    "fd_read_vectored",
                    format_args!("short read: {n} of 6 bytes"),
                );
            }
        }
        Err(e) => t.fail("fd_read_vectored", "success", e),
    }
    t.errno_any(
        "fd_write_readonly_fd",
        &[Errno::BADF, Errno::NOTCAPABLE, Errno::PERM],
        &fd_write(fd, b"x"),
    );
    match fd_filestat_get(fd) {
        Ok(st) => t.check(
            "fd_filestat_get_file",
            st.size == 6 && st.filetype == FILETYPE_REGULAR_FILE && st.nlink >= 1,
            "size 6, regular_file, nlink >= 1",
            format_args!(
                "size {}, {}, nlink {}",
                st.size,
                filetype_name(st.filetype),
                st.nlink
            ),
        ),
        Err(e) => t.fail("fd_filestat_get_file", "success", e),
    }
    t.errno("fd_close", Errno::SUCCESS, &fd_close(fd));
    t.errno("fd_close_closed_badf", Errno::BADF, &fd_close(fd));
    t.errno("fd_read_closed_badf", Errno::BADF, &fd_read(fd, &mut buf));
    t.errno(
        "fd_write_unopened_badf",
        Errno::BADF,
        &fd_write(UNOPENED, b"x"),
    );
}

/// Writes, sizes, times, flags on files under /out/work.
fn file_writes(t: &mut Report, w: Fd) {
    let fd = setup!(
        t,
        "path_open_creat",
        open_rw(w, "rw.txt", OFLAGS_CREAT | OFLAGS_TRUNC, 0)
    );
    t.pass("path_open_creat");
    let contents = |fd: Fd| -> Result<Vec<u8>, Errno> {
        let mut buf = [0u8; 64];
        let n = fd_pread(fd, &mut buf, 0)?;
        Ok(buf[..n].to_vec())
    };
    t.eq("fd_write", Ok(6), fd_write(fd, b"abcdef"));
    t.eq("fd_pwrite", Ok(2), fd_pwrite(fd, b"XY", 1));
    t.eq("fd_pwrite_keeps_offset", Ok(6), fd_tell(fd));
    t.eq(
        "fd_pread_after_pwrite",
        Ok(b"aXYdef".to_vec()),
        contents(fd),
    );
    // A gather write may be short too: check what it took, write the rest.
    let parts: [&[u8]; 3] = [b"12", b"", b"34"];
    match fd_write_vectored(fd, &parts) {
        Ok(n) if (1..=4).contains(&n) => {
            if n == 4 {
                t.pass("fd_write_vectored");
            } else {
                t.pass_note(
                    "fd_write_vectored",
                    format_args!("short write: {n} of 4 bytes"),
                );
                let _ = fd_write(fd, &b"1234"[n..]);
            }
        }
        Ok(n) => t.fail("fd_write_vectored", "1 to 4 bytes", n),
        Err(e) => t.fail("fd_write_vectored", "success", e),
    }
    t.eq("fd_pwrite_past_end", Ok(1), fd_pwrite(fd, b"Z", 12));
    t.eq(
        "fd_pwrite_past_end_zero_fills",
        Ok(b"aXYdef1234\0\0Z".to_vec()),
        contents(fd),
    );

    t.errno(
        "fd_filestat_set_size_shrink",
        Errno::SUCCESS,
        &fd_filestat_set_size(fd, 3),
    );
    t.eq(
        "fd_filestat_set_size_shrunk",
        Ok(b"aXY".to_vec()),
        contents(fd),
    );
    t.errno(
        "fd_filestat_set_size_grow",
        Errno::SUCCESS,
        &fd_filestat_set_size(fd, 8),
    );
    t.eq(
        "fd_filestat_set_size_grow_zero_fills",
        Ok(b"aXY\0\0\0\0\0".to_vec()),
        contents(fd),
    );
    t.eq(
        "fd_filestat_get_size",
        Ok(8),
        fd_filestat_get(fd).map(|s| s.size),
    );

    let times = |st: Filestat| (st.atim, st.mtim);
    let (atim, mtim) = (1_000_000_123, 2_000_000_456);
    t.errno(
        "fd_filestat_set_times",
        Errno::SUCCESS,
        &fd_filestat_set_times(fd, atim, mtim, FSTFLAGS_ATIM | FSTFLAGS_MTIM),
    );
    t.eq(
        "fd_filestat_set_times_stored",
        Ok((atim, mtim)),
        fd_filestat_get(fd).map(times),
    );
    t.errno(
        "fd_filestat_set_times_atim_and_now_inval",
        Errno::INVAL,
        &fd_filestat_set_times(fd, 1, 0, FSTFLAGS_ATIM | FSTFLAGS_ATIM_NOW),
    );
    t.errno(
        "fd_filestat_set_times_mtim_only",
        Errno::SUCCESS,
        &fd_filestat_set_times(fd, 0, 5_000_000_000, FSTFLAGS_MTIM),
    );
    t.eq(
        "fd_filestat_set_times_mtim_only_keeps_atim",
        Ok((atim, 5_000_000_000)),
        fd_filestat_get(fd).map(times),
    );
    t.errno(
        "path_filestat_set_times",
        Errno::SUCCESS,
        &path_filestat_set_times(
            w,
            0,
            "rw.txt",
            3_000_000_000,
            4_000_000_000,
            FSTFLAGS_ATIM | FSTFLAGS_MTIM,
        ),
    );
    t.eq(
        "path_filestat_set_times_stored",
        Ok((3_000_000_000, 4_000_000_000)),
        path_filestat_get(w, 0, "rw.txt").map(times),
    );

    t.errno(
        "fd_advise",
        Errno::SUCCESS,
        &fd_advise(fd, 0, 8, ADVICE_SEQUENTIAL),
    );
    let allocated = fd_allocate(fd, 0, 32);
    if t.errno_any("fd_allocate", &[Errno::SUCCESS, Errno::NOTSUP], &allocated) {
        let expected = if allocated.is_ok() { 32 } else { 8 };
        t.eq(
            "fd_allocate_size",
            Ok(expected),
            fd_filestat_get(fd).map(|s| s.size),
        );
    }
    // Rights may only shrink; asking for the same ones is a no-op. Hosts that
    // have dropped rights (wasmtime) say notsup.
    if let Ok(st) = fd_fdstat_get(fd) {
        t.errno_any(
            "fd_fdstat_set_rights_unchanged",
            &[Errno::SUCCESS, Errno::NOTSUP],
            &fd_fdstat_set_rights(fd, st.rights_base, st.rights_inheriting),
        );
    }
    t.errno("fd_datasync", Errno::SUCCESS, &fd_datasync(fd));
    t.errno("fd_sync", Errno::SUCCESS, &fd_sync(fd));
    let _ = fd_close(fd);

    match open_rw(w, "rw.txt", OFLAGS_TRUNC, 0) {
        Ok(fd) => {
            t.eq(
                "path_open_trunc",
                Ok(0),
                fd_filestat_get(fd).map(|s| s.size),
            );
            let _ = fd_close(fd);
        }
        Err(e) => t.fail("path_open_trunc", "success", e),
    }

    let fd = setup!(
        t,
        "path_open_append",
        open_rw(w, "append.txt", OFLAGS_CREAT, FDFLAGS_APPEND)
    );
    t.eq(
        "fd_fdstat_get_append_flag",
        Ok(FDFLAGS_APPEND),
        fd_fdstat_get(fd).map(|s| s.flags & FDFLAGS_APPEND),
    );
    let _ = fd_write(fd, b"a");
    let _ = fd_seek(fd, 0, WHENCE_SET);
    let _ = fd_write(fd, b"b");
    t.eq(
        "fd_write_append_ignores_offset",
        Ok(b"ab".to_vec()),
        contents(fd),
    );
    let _ = fd_close(fd);

    let fd = setup!(
        t,
        "open flags.txt",
        open_rw(w, "flags.txt", OFLAGS_CREAT, 0)
    );
    let _ = fd_write(fd, b"1");
    if t.errno_any(
        "fd_fdstat_set_flags_append",
        &[Errno::SUCCESS, Errno::NOTSUP],
        &fd_fdstat_set_flags(fd, FDFLAGS_APPEND),
    ) && fd_fdstat_set_flags(fd, FDFLAGS_APPEND).is_ok()
    {
        let _ = fd_seek(fd, 0, WHENCE_SET);
        let _ = fd_write(fd, b"2");
        t.eq(
            "fd_fdstat_set_flags_append_takes_effect",
            Ok(b"12".to_vec()),
            contents(fd),
        );
        t.errno(
            "fd_fdstat_set_flags_clear",
            Errno::SUCCESS,
            &fd_fdstat_set_flags(fd, 0),
        );
    }
    let _ = fd_close(fd);
}

/// Every entry of an open directory, by one fd_readdir into `size` bytes;
/// `None` if the listing did not fit.
fn read_dir_once(fd: Fd, size: usize) -> Result<Option<Vec<Dirent>>, Errno> {
    let mut buf = vec![0u8; size];
    let used = fd_readdir(fd, &mut buf, 0)?;
    Ok((used < size).then(|| parse_dirents(&buf[..used])))
}

/// Every entry of an open directory, read through a small buffer, resuming
/// at the cookie of the last whole entry (and growing the buffer when not
/// even one entry fits), the way wasi-libc's readdir does.
fn read_dir_paged(fd: Fd, mut size: usize) -> Result<Vec<Dirent>, Errno> {
    let mut out = Vec::new();
    let mut cookie = 0;
    for _ in 0..1000 {
        let mut buf = vec![0u8; size];
        let used = fd_readdir(fd, &mut buf, cookie)?;
        let entries = parse_dirents(&buf[..used]);
        if used < size {
            out.extend(entries);
            return Ok(out);
        }
        match entries.last() {
            None => size *= 2,
            Some(last) => {
                cookie = last.next;
                out.extend(entries);
            }
        }
    }
    Ok(out)
}

fn names(entries: &[Dirent]) -> Vec<String> {
    entries.iter().map(|e| lossy(&e.name)).collect()
}

fn readdir(t: &mut Report, w: Fd) {
    let one_shot = match read_dir_once(DATA, 4096) {
        Ok(Some(entries)) => entries,
        Ok(None) => return t.fail("fd_readdir", "a listing under 4096 bytes", "a full buffer"),
        Err(e) => return t.fail("fd_readdir", "success", e),
    };
    t.pass("fd_readdir");
    let listed = names(&one_shot);
    let mut sorted = listed.clone();
    sorted.sort();
    t.eq(
        "fd_readdir_entries",
        vec![".", "..", "hello.txt", "sub"],
        sorted.iter().map(String::as_str).collect(),
    );
    t.check(
        "fd_readdir_sorted_by_name",
        listed.is_sorted(),
        "names in byte order",
        listed.join(","),
    );
    let kind_of = |name: &str| {
        one_shot
            .iter()
            .find(|e| e.name == name.as_bytes())
            .map(|e| filetype_name(e.kind))
    };
    t.eq(
        "fd_readdir_d_type",
        vec![
            Some("directory"),
            Some("directory"),
            Some("regular_file"),
            Some("directory"),
        ],
        [".", "..", "hello.txt", "sub"].map(kind_of).to_vec(),
    );
    let ino = one_shot
        .iter()
        .find(|e| e.name == b"hello.txt")
        .map(|e| e.ino);
    t.eq(
        "fd_readdir_d_ino_matches_filestat",
        path_filestat_get(DATA, 0, "hello.txt").ok().map(|s| s.ino),
        ino,
    );

    match read_dir_paged(DATA, 32) {
        Ok(paged) => t.eq("fd_readdir_cookies_resume", listed.clone(), names(&paged)),
        Err(e) => t.fail("fd_readdir_cookies_resume", "success", e),
    }
    if let Some(last) = one_shot.last() {
        let mut buf = [0u8; 256];
        t.eq(
            "fd_readdir_end_cookie",
            Ok(0),
            fd_readdir(DATA, &mut buf, last.next),
        );
    }

    let sub = setup!(t, "open sub", open(DATA, "sub", OFLAGS_DIRECTORY, 0));
    match read_dir_once(sub, 4096) {
        Ok(Some(entries)) => t.eq(
            "fd_readdir_subdir",
            vec![".", "..", "a.txt", "b.txt"],
            {
                let mut n = names(&entries);
                n.sort();
                n
            }
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ),
        Ok(None) => t.fail(
            "fd_readdir_subdir",
            "a listing under 4096 bytes",
            "a full buffer",
        ),
        Err(e) => t.fail("fd_readdir_subdir", "success", e),
    }
    let _ = fd_close(sub);

    setup!(
        t,
        "path_create_directory empty",
        path_create_directory(w, "empty")
    );
    let empty = setup!(t, "open empty", open(w, "empty", OFLAGS_DIRECTORY, 0));
    match read_dir_once(empty, 4096) {
        Ok(Some(entries)) => t.eq(
            "fd_readdir_empty_dir",
            vec![".".to_string(), "..".to_string()],
            names(&entries),
        ),
        Ok(None) => t.fail(
            "fd_readdir_empty_dir",
            "a listing under 4096 bytes",
            "a full buffer",
        ),
        Err(e) => t.fail("fd_readdir_empty_dir", "success", e),
    }
    let _ = fd_close(empty);

    let file = setup!(t, "open hello.txt", open(DATA, "hello.txt", 0, 0));
    let mut buf = [0u8; 256];
    t.errno_any(
        "fd_readdir_on_file",
        &[Errno::NOTDIR, Errno::BADF],
        &fd_readdir(file, &mut buf, 0),
    );
    let _ = fd_close(file);
}

fn path_stat(t: &mut Report, w: Fd) {
    match path_filestat_get(DATA, LOOKUP_SYMLINK_FOLLOW, "hello.txt") {
        Ok(st) => t.eq(
            "path_filestat_get_file",
            (6, "regular_file"),
            (st.size, filetype_name(st.filetype)),
        ),
        Err(e) => t.fail("path_filestat_get_file", "success", e),
    }
    t.eq(
        "path_filestat_get_dir",
        Ok("directory"),
        path_filestat_get(DATA, 0, "sub").map(|s| filetype_name(s.filetype)),
    );
    t.errno(
        "path_filestat_get_missing_noent",
        Errno::NOENT,
        &path_filestat_get(DATA, 0, "missing"),
    );

    setup!(
        t,
        "create target.txt",
        create_file(w, "target.txt", b"target\n")
    );
    t.errno(
        "path_symlink",
        Errno::SUCCESS,
        &path_symlink("target.txt", w, "link"),
    );
    let kind = |r: Result<Filestat, Errno>| r.map(|s| (filetype_name(s.filetype), s.size));
    match path_filestat_get(w, 0, "link") {
        Ok(st) => t.eq(
            "path_filestat_get_nofollow_symlink",
            "symbolic_link",
            filetype_name(st.filetype),
        ),
        Err(e) => t.fail("path_filestat_get_nofollow_symlink", "success", e),
    }
    t.eq(
        "path_filestat_get_follow_symlink",
        Ok(("regular_file", 7)),
        kind(path_filestat_get(w, LOOKUP_SYMLINK_FOLLOW, "link")),
    );
    t.errno(
        "path_symlink_dangling",
        Errno::SUCCESS,
        &path_symlink("nowhere", w, "dangling"),
    );
    t.eq(
        "path_filestat_get_dangling_nofollow",
        Ok("symbolic_link"),
        path_filestat_get(w, 0, "dangling").map(|s| filetype_name(s.filetype)),
    );
    t.errno(
        "path_filestat_get_dangling_follow_noent",
        Errno::NOENT,
        &path_filestat_get(w, LOOKUP_SYMLINK_FOLLOW, "dangling"),
    );
}

fn directories(t: &mut Report, w: Fd) {
    t.errno(
        "path_create_directory",
        Errno::SUCCESS,
        &path_create_directory(w, "d"),
    );
    t.errno(
        "path_create_directory_existing_exist",
        Errno::EXIST,
        &path_create_directory(w, "d"),
    );
    setup!(t, "create d-file.txt", create_file(w, "d-file.txt", b"f"));
    t.errno(
        "path_create_directory_over_file_exist",
        Errno::EXIST,
        &path_create_directory(w, "d-file.txt"),
    );
    t.errno(
        "path_create_directory_missing_parent_noent",
        Errno::NOENT,
        &path_create_directory(w, "nope/d"),
    );
    t.errno_any(
        "path_create_directory_readonly_preopen",
        &READ_ONLY,
        &path_create_directory(DATA, "newdir"),
    );
    setup!(t, "create d/child.txt", create_file(w, "d/child.txt", b"c"));
    // POSIX rmdir allows EEXIST as well as ENOTEMPTY.
    t.errno_any(
        "path_remove_directory_nonempty",
        &[Errno::NOTEMPTY, Errno::EXIST],
        &path_remove_directory(w, "d"),
    );
    t.errno(
        "path_remove_directory_on_file_notdir",
        Errno::NOTDIR,
        &path_remove_directory(w, "d/child.txt"),
    );
    t.errno(
        "path_remove_directory_missing_noent",
        Errno::NOENT,
        &path_remove_directory(w, "nope"),
    );
    // Linux says EISDIR, POSIX EPERM.
    t.errno_any(
        "path_unlink_file_on_dir",
        &[Errno::ISDIR, Errno::PERM],
        &path_unlink_file(w, "d"),
    );
    t.errno(
        "path_unlink_file_missing_noent",
        Errno::NOENT,
        &path_unlink_file(w, "d/nope"),
    );
    t.errno_any(
        "path_unlink_file_readonly_preopen",
        &READ_ONLY,
        &path_unlink_file(DATA, "hello.txt"),
    );
    t.errno(
        "path_unlink_file",
        Errno::SUCCESS,
        &path_unlink_file(w, "d/child.txt"),
    );
    t.errno(
        "path_unlink_file_gone_noent",
        Errno::NOENT,
        &path_filestat_get(w, 0, "d/child.txt"),
    );
    t.errno(
        "path_remove_directory",
        Errno::SUCCESS,
        &path_remove_directory(w, "d"),
    );
    t.errno(
        "path_remove_directory_gone_noent",
        Errno::NOENT,
        &path_filestat_get(w, 0, "d"),
    );
}

fn renames(t: &mut Report, w: Fd) {
    setup!(t, "create r-a.txt", create_file(w, "r-a.txt", b"A"));
    setup!(t, "create r-b.txt", create_file(w, "r-b.txt", b"B"));
    t.errno(
        "path_rename_file_over_file",
        Errno::SUCCESS,
        &path_rename(w, "r-a.txt", w, "r-b.txt"),
    );
    t.eq(
        "path_rename_replaces_contents",
        Ok(b"A".to_vec()),
        read_file(w, "r-b.txt"),
    );
    t.errno(
        "path_rename_source_gone_noent",
        Errno::NOENT,
        &path_filestat_get(w, 0, "r-a.txt"),
    );
    setup!(t, "mkdir r-d1", path_create_directory(w, "r-d1"));
    setup!(t, "mkdir r-d2", path_create_directory(w, "r-d2"));
    setup!(t, "mkdir r-d3", path_create_directory(w, "r-d3"));
    setup!(t, "create r-d2/f", create_file(w, "r-d2/f", b"f"));
    // POSIX rename allows EEXIST as well as ENOTEMPTY.
    t.errno_any(
        "path_rename_dir_over_nonempty_dir",
        &[Errno::NOTEMPTY, Errno::EXIST],
        &path_rename(w, "r-d1", w, "r-d2"),
    );
    t.errno(
        "path_rename_dir_over_empty_dir",
        Errno::SUCCESS,
        &path_rename(w, "r-d1", w, "r-d3"),
    );
    t.errno(
        "path_rename_file_over_dir_isdir",
        Errno::ISDIR,
        &path_rename(w, "r-b.txt", w, "r-d3"),
    );
    t.errno(
        "path_rename_dir_over_file_notdir",
        Errno::NOTDIR,
        &path_rename(w, "r-d3", w, "r-b.txt"),
    );
    t.errno(
        "path_rename_missing_noent",
        Errno::NOENT,
        &path_rename(w, "r-missing", w, "r-x"),
    );
    t.errno(
        "path_rename_dir_into_itself_inval",
        Errno::INVAL,
        &path_rename(w, "r-d3", w, "r-d3/inner"),
    );
    t.errno_any(
        "path_rename_into_readonly_preopen",
        &[
            Errno::XDEV,
            Errno::ROFS,
            Errno::PERM,
            Errno::NOTCAPABLE,
            Errno::ACCES,
        ],
        &path_rename(w, "r-b.txt", DATA, "r-b.txt"),
    );
    if t.errno_any(
        "path_rename_across_preopens",
        &[Errno::SUCCESS, Errno::XDEV],
        &path_rename(w, "r-b.txt", TMP, "moved.txt"),
    ) && path_filestat_get(TMP, 0, "moved.txt").is_ok()
    {
        t.eq(
            "path_rename_across_preopens_contents",
            Ok(b"A".to_vec()),
            read_file(TMP, "moved.txt"),
        );
    }
}

fn symlinks(t: &mut Report, w: Fd) {
    setup!(
        t,
        "create s-target.txt",
        create_file(w, "s-target.txt", b"target\n")
    );
    t.errno(
        "path_symlink_relative",
        Errno::SUCCESS,
        &path_symlink("s-target.txt", w, "s-link"),
    );
    let mut buf = [0u8; 64];
    match path_readlink(w, "s-link", &mut buf) {
        Ok(n) => t.eq(
            "path_readlink",
            "s-target.txt".to_string(),
            lossy(&buf[..n]),
        ),
        Err(e) => t.fail("path_readlink", "success", e),
    }
    t.errno(
        "path_symlink_existing_exist",
        Errno::EXIST,
        &path_symlink("x", w, "s-link"),
    );
    t.errno(
        "path_readlink_on_file_inval",
        Errno::INVAL,
        &path_readlink(w, "s-target.txt", &mut buf),
    );
    t.errno(
        "path_readlink_missing_noent",
        Errno::NOENT,
        &path_readlink(w, "s-missing", &mut buf),
    );
    t.eq(
        "path_open_follows_symlink",
        Ok(b"target\n".to_vec()),
        read_file(w, "s-link"),
    );

    setup!(t, "mkdir s-real", path_create_directory(w, "s-real"));
    setup!(
        t,
        "create s-real/x.txt",
        create_file(w, "s-real/x.txt", b"X")
    );
    t.errno(
        "path_symlink_to_dir",
        Errno::SUCCESS,
        &path_symlink("s-real", w, "s-dir"),
    );
    t.eq(
        "path_filestat_get_through_dir_symlink",
        Ok("regular_file"),
        path_filestat_get(w, 0, "s-dir/x.txt").map(|s| filetype_name(s.filetype)),
    );

    // An absolute target can only name something outside the preopen:
    // creating it is refused (as wasmtime does, and the wasi-testsuite's
    // symlink_create expects).
    for (name, target) in [
        ("path_symlink_absolute_refused", "/etc/passwd"),
        ("path_symlink_to_root_refused", "/"),
    ] {
        t.errno_any(name, &ESCAPE, &path_symlink(target, w, "s-absolute"));
    }
    // A relative one that climbs out: creating it may be refused; if not,
    // following it must be.
    for (name, target) in [("s-escape", "../../../etc/passwd")] {
        match path_symlink(target, w, name) {
            Ok(()) => {
                t.pass_note(&format!("path_symlink_{name}"), "created");
                t.errno_any(
                    &format!("path_open_through_{name}"),
                    &ESCAPE,
                    &open(w, name, 0, 0),
                );
                t.errno_any(
                    &format!("path_filestat_get_through_{name}"),
                    &ESCAPE,
                    &path_filestat_get(w, LOOKUP_SYMLINK_FOLLOW, name),
                );
            }
            Err(e) if ESCAPE.contains(&e) => t.pass_note(
                &format!("path_symlink_{name}"),
                format_args!("refused: {}", e.name()),
            ),
            Err(e) => t.fail(
                &format!("path_symlink_{name}"),
                "success, notcapable or perm",
                e,
            ),
        }
    }

    setup!(t, "symlink s-loop1", path_symlink("s-loop2", w, "s-loop1"));
    setup!(t, "symlink s-loop2", path_symlink("s-loop1", w, "s-loop2"));
    setup!(t, "symlink s-self", path_symlink("s-self", w, "s-self"));
    t.errno(
        "path_open_symlink_loop_loop",
        Errno::LOOP,
        &open(w, "s-loop1", 0, 0),
    );
    t.errno(
        "path_open_symlink_self_loop_loop",
        Errno::LOOP,
        &open(w, "s-self", 0, 0),
    );
    t.errno(
        "path_filestat_get_symlink_loop_loop",
        Errno::LOOP,
        &path_filestat_get(w, LOOKUP_SYMLINK_FOLLOW, "s-loop1"),
    );

    t.errno(
        "path_unlink_file_symlink",
        Errno::SUCCESS,
        &path_unlink_file(w, "s-link"),
    );
    t.eq(
        "path_unlink_file_symlink_keeps_target",
        Ok(b"target\n".to_vec()),
        read_file(w, "s-target.txt"),
    );
}

fn hard_links(t: &mut Report, w: Fd) {
    setup!(
        t,
        "create l-src.txt",
        create_file(w, "l-src.txt", b"link\n")
    );
    match path_link(w, 0, "l-src.txt", w, "l-dst.txt") {
        Ok(()) => t.pass("path_link"),
        Err(e) if [Errno::NOTSUP, Errno::NOSYS, Errno::PERM].contains(&e) => {
            return t.pass_note(
                "path_link",
                format_args!("hard links not supported: host gave {}", e.name()),
            );
        }
        Err(e) => return t.fail("path_link", "success, or notsup/nosys/perm", e),
    }
    let stat = |p: &str| path_filestat_get(w, 0, p).map(|s| (s.ino, s.nlink));
    let (src, dst) = (stat("l-src.txt"), stat("l-dst.txt"));
    t.check(
        "path_link_same_inode",
        matches!((src, dst), (Ok((a, 2)), Ok((b, 2))) if a == b),
        "one inode with nlink 2",
        format_args!("{src:?} and {dst:?}"),
    );
    t.errno(
        "path_link_existing_exist",
        Errno::EXIST,
        &path_link(w, 0, "l-src.txt", w, "l-dst.txt"),
    );
    t.errno(
        "path_link_missing_noent",
        Errno::NOENT,
        &path_link(w, 0, "l-missing", w, "l-x"),
    );
    t.errno(
        "path_link_new_path_trailing_slash_noent",
        Errno::NOENT,
        &path_link(w, 0, "l-src.txt", w, "l-slash/"),
    );
    t.errno(
        "path_link_new_path_trailing_slash_created_nothing",
        Errno::NOENT,
        &path_filestat_get(w, 0, "l-slash"),
    );
    t.errno(
        "path_unlink_file_link_source",
        Errno::SUCCESS,
        &path_unlink_file(w, "l-src.txt"),
    );
    t.eq(
        "path_link_survives_unlink",
        Ok(b"link\n".to_vec()),
        read_file(w, "l-dst.txt"),
    );
    t.eq(
        "path_link_nlink_after_unlink",
        Ok(1),
        path_filestat_get(w, 0, "l-dst.txt").map(|s| s.nlink),
    );
}

fn renumber(t: &mut Report, w: Fd) {
    setup!(t, "create fm-a.txt", create_file(w, "fm-a.txt", b"A"));
    setup!(t, "create fm-b.txt", create_file(w, "fm-b.txt", b"B"));
    let a = setup!(t, "open fm-a.txt", open(w, "fm-a.txt", 0, 0));
    let b = setup!(t, "open fm-b.txt", open(w, "fm-b.txt", 0, 0));
    t.errno("fd_renumber", Errno::SUCCESS, &fd_renumber(a, b));
    t.eq(
        "fd_renumber_target_is_source",
        Ok(b"A".to_vec()),
        read_fd(b),
    );
    t.errno("fd_renumber_closes_source_badf", Errno::BADF, &fd_close(a));
    t.errno(
        "fd_renumber_unopened_source_badf",
        Errno::BADF,
        &fd_renumber(UNOPENED, b),
    );
    // POSIX dup2 may target any number; the preview 1 hosts say badf.
    let r = fd_renumber(b, UNOPENED);
    t.errno_any(
        "fd_renumber_to_unopened",
        &[Errno::BADF, Errno::SUCCESS],
        &r,
    );
    let _ = fd_close(if r.is_ok() { UNOPENED } else { b });
    t.errno("fd_close_unopened_badf", Errno::BADF, &fd_close(UNOPENED));
}

fn poll(t: &mut Report) {
    let now = || clock_time_get(CLOCK_MONOTONIC, 1);
    let clock = |userdata, timeout, flags| {
        ClockSubscription::new(userdata, CLOCK_MONOTONIC, timeout, 0, flags)
    };
    let before = setup!(t, "clock_time_get_monotonic", now());
    let mut events = [Event::default()];
    match poll_oneoff(&[clock(0x1234_5678, 10 * MS, 0)], &mut events) {
        Ok(n) => {
            let e = &events[0];
            t.check(
                "poll_oneoff_relative_clock",
                n == 1 && e.userdata == 0x1234_5678 && e.error == 0 && e.kind == EVENTTYPE_CLOCK,
                "1 clock event, userdata 0x12345678, no error",
                format_args!(
                    "{n} events, userdata {:#x}, error {}, type {}",
                    e.userdata,
                    Errno(e.error),
                    e.kind
                ),
            );
        }
        Err(e) => t.fail("poll_oneoff_relative_clock", "success", e),
    }
    let after = setup!(t, "clock_time_get_monotonic", now());
    t.check(
        "poll_oneoff_relative_clock_advances_monotonic",
        after.saturating_sub(before) >= 10 * MS,
        "at least 10000000 ns",
        after.saturating_sub(before),
    );
    let deadline = after + 5 * MS;
    match poll_oneoff(&[clock(7, deadline, SUBCLOCKFLAGS_ABSTIME)], &mut events) {
        Ok(n) => t.eq(
            "poll_oneoff_absolute_clock",
            (1, 7, 0),
            (n, events[0].userdata, events[0].error),
        ),
        Err(e) => t.fail("poll_oneoff_absolute_clock", "success", e),
    }
    let end = setup!(t, "clock_time_get_monotonic", now());
    t.check(
        "poll_oneoff_absolute_clock_reaches_deadline",
        end >= deadline,
        format_args!(">= {deadline}"),
        end,
    );
    t.errno_any(
        "poll_oneoff_no_subscriptions",
        &[Errno::INVAL, Errno::SUCCESS],
        &poll_oneoff(&[], &mut []),
    );
}

fn sockets(t: &mut Report) {
    let fd = setup!(t, "open hello.txt", open(DATA, "hello.txt", 0, 0));
    let not_socket = [Errno::NOTSOCK, Errno::BADF];
    let mut buf = [0u8; 8];
    t.errno_any(
        "sock_recv_on_file",
        &not_socket,
        &sock_recv(fd, &mut buf, 0),
    );
    t.errno_any("sock_send_on_file", &not_socket, &sock_send(fd, b"x", 0));
    t.errno_any(
        "sock_shutdown_on_file",
        &not_socket,
        &sock_shutdown(fd, SDFLAGS_RD | SDFLAGS_WR),
    );
    t.errno_any("sock_accept_on_file", &not_socket, &sock_accept(fd, 0));
    let _ = fd_close(fd);
    t.errno(
        "sock_shutdown_unopened_badf",
        Errno::BADF,
        &sock_shutdown(UNOPENED, SDFLAGS_RD),
    );
}

/// Values outside an enum of the witx must give `inval`. They come last:
/// wasmtime traps on them instead (its bindings reject the value before the
/// call), which ends the run without the summary line.
fn invalid_enums(t: &mut Report) {
    t.errno(
        "clock_res_get_invalid_id_inval",
        Errno::INVAL,
        &clock_res_get(99),
    );
    t.errno(
        "clock_time_get_invalid_id_inval",
        Errno::INVAL,
        &clock_time_get(99, 1),
    );
    let fd = setup!(t, "open hello.txt", open(DATA, "hello.txt", 0, 0));
    t.errno(
        "fd_seek_invalid_whence_inval",
        Errno::INVAL,
        &fd_seek(fd, 0, 3),
    );
    t.errno(
        "fd_advise_invalid_advice_inval",
        Errno::INVAL,
        &fd_advise(fd, 0, 8, 99),
    );
    let _ = fd_close(fd);
}
