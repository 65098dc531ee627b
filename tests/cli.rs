//! The command line's contract: version line, one clear error line with exit
//! status 125, and never any half-written output.

use std::process::Command;

use crate::util::{FOREVER, canon_bin, fixture, job_spec, scratch};

#[test]
fn version_prints_canon_and_the_crate_version() {
    let o = Command::new(canon_bin()).arg("--version").output().expect("spawn");
    let first = String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().to_string();
    assert_eq!(first, format!("canon {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_bad_job_is_one_line_naming_the_field_and_writes_nothing() {
    let dir = scratch();
    let spec = job_spec(dir.path(), "bad.toml", "hello.wasm", "[limits]\nfuel = 0");
    let out = dir.path().join("out");
    let o = Command::new(canon_bin()).arg("run").arg(&spec).arg("--out").arg(&out).output().expect("spawn");
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("limits.fuel") && err.contains("bad.toml"), "{err}");
    assert!(!out.exists(), "a failed run left {}", out.display());
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1, "stray temporary files left behind");
}

#[test]
fn a_non_empty_output_directory_is_refused_and_untouched() {
    let dir = scratch();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::write(out.join("precious.txt"), "keep me").expect("write");
    let o = Command::new(canon_bin()).arg("run").arg(fixture("jobs/hello.toml")).arg("--out").arg(&out).output().expect("spawn");
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not empty"));
    assert_eq!(std::fs::read_dir(&out).expect("ls").count(), 1);
    assert_eq!(std::fs::read_to_string(out.join("precious.txt")).expect("read"), "keep me");
}

#[test]
fn a_timed_out_run_writes_nothing() {
    let dir = scratch();
    let spec = job_spec(dir.path(), "forever.toml", "sha256chain.wasm", FOREVER);
    let out = dir.path().join("out");
    let o = Command::new(canon_bin()).arg("run").arg(&spec).arg("--out").arg(&out).output().expect("spawn");
    assert_eq!(o.status.code(), Some(125), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no result"));
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1, "stray temporary files left behind");
}

#[test]
fn a_closed_stdout_ends_canon_quietly() {
    // As in `canon run --json JOB | head -c 0`: the reader is gone before canon writes.
    let mut child = Command::new(canon_bin())
        .args(["run", "--json"])
        .arg(fixture("jobs/hello.toml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[test]
fn exec_argv0_defaults_to_the_module_path_and_can_be_set() {
    let dir = scratch();
    let module = dir.path().join("probe.wasm");
    std::fs::copy(fixture("probe.wasm"), &module).expect("copy");
    let exec = |extra: &[&str]| {
        let o = Command::new(canon_bin())
            .arg("exec")
            .args(extra)
            .arg(&module)
            .args(["--", "env"])
            .env("CANON_CACHE_DIR", dir.path().join("cache"))
            .output()
            .expect("spawn");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).lines().find(|l| l.starts_with("arg 0 ")).map(str::to_string).expect("arg 0 line")
    };
    assert_eq!(exec(&[]), format!("arg 0 {}", module.display()), "as wasmtime run: the path as given");
    assert_eq!(exec(&["--argv0", "probe"]), "arg 0 probe");
}

#[test]
fn a_run_output_directory_inside_an_input_is_refused_and_nothing_is_written() {
    let dir = scratch();
    std::fs::create_dir(dir.path().join("data")).expect("mkdir");
    std::fs::write(dir.path().join("data/f"), "f").expect("write");
    let spec = job_spec(dir.path(), "job.toml", "hello.wasm", "[[input]]\nhost = \"data\"\nguest = \"/data\"");
    for out in ["data/results", "data"] {
        let o = Command::new(canon_bin()).arg("run").arg(&spec).arg("--out").arg(dir.path().join(out)).output().expect("spawn");
        assert_eq!(o.status.code(), Some(125), "{out}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stderr).contains("never modified"), "{}", String::from_utf8_lossy(&o.stderr));
        let names: Vec<_> = std::fs::read_dir(dir.path().join("data")).expect("ls").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, ["f"], "the input directory was modified");
    }
}

#[test]
fn a_writable_root_mount_is_refused_with_out_before_running() {
    let dir = scratch();
    std::fs::create_dir(dir.path().join("seed")).expect("mkdir");
    let spec = job_spec(dir.path(), "job.toml", "hello.wasm", "[[input]]\nhost = \"seed\"\nguest = \"/\"\nwritable = true");
    let out = dir.path().join("out");
    let o = Command::new(canon_bin()).arg("run").arg(&spec).arg("--out").arg(&out).output().expect("spawn");
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("writable mount /") && err.contains("read-only"), "{err}");
    assert!(!out.exists());
    let read_only = job_spec(dir.path(), "ro.toml", "hello.wasm", "[[input]]\nhost = \"seed\"\nguest = \"/\"");
    let o = Command::new(canon_bin()).arg("run").arg(&read_only).arg("--out").arg(&out).output().expect("spawn");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names: Vec<_> = std::fs::read_dir(&out).expect("ls").map(|e| e.expect("entry").file_name().into_string().expect("utf-8")).collect();
    assert!(!names.iter().any(|n| n == "out" || n == "tmp"), "a root mount has no /out beside it: {names:?}");
}

#[test]
fn a_writable_mount_that_would_land_on_a_result_file_is_refused_before_running() {
    let dir = scratch();
    std::fs::create_dir(dir.path().join("seed")).expect("mkdir");
    for guest in ["/stdout", "/outcome.json/x"] {
        let spec = job_spec(dir.path(), "job.toml", "hello.wasm", &format!("[[input]]\nhost = \"seed\"\nguest = {guest:?}\nwritable = true"));
        let out = dir.path().join("out");
        let o = Command::new(canon_bin()).arg("run").arg(&spec).arg("--out").arg(&out).output().expect("spawn");
        assert_eq!(o.status.code(), Some(125), "{guest}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(guest) && err.contains("another guest path"), "{err}");
        assert!(!out.exists());
        // Without --out there is nothing to collide with.
        let o = Command::new(canon_bin()).arg("run").arg(&spec).output().expect("spawn");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}
