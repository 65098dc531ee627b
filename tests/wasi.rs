//! WASI conformance: the conformance guest checks every function family of
//! `wasi_snapshot_preview1`, error paths included, and a real
//! file-system-heavy program works end to end.

use std::process::Command;

use canon::job::Job;
use canon::outcome::Termination;
use canon::sandbox::Sandbox;
use canon::tree::{Node, Tree};

use crate::util::{canon_bin, fixture, scratch};

#[test]
fn conformance_guest_passes_every_check() {
    let job = Job::load(&fixture("jobs/wasi-conformance.toml")).expect("job");
    let o = Sandbox::builder().cache_dir(None).build().expect("sandbox").run(&job).expect("run");
    let out = String::from_utf8_lossy(&o.stdout);
    let failures: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failures.is_empty(), "conformance failures:\n{}", failures.join("\n"));
    let summary = out.lines().last().unwrap_or_default();
    let passed: u32 = summary.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(summary.ends_with(" 0 failed") && passed >= 200, "summary: {summary:?}");
    assert_eq!(o.termination, Termination::Exit(0));
}

#[test]
fn fswalk_copies_and_indexes_a_tree() {
    let job = Job::load(&fixture("jobs/fswalk.toml")).expect("job");
    let o = Sandbox::builder().cache_dir(None).build().expect("sandbox").run(&job).expect("run");
    assert_eq!(o.termination, Termination::Exit(0), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("files 9") && stdout.contains("dirs 6"), "{stdout}");
    // Every input file appears reversed under /out/copy.
    let input = Tree::load_dir(&fixture("inputs/tree"), u64::MAX).expect("inputs");
    let Some(Node::Dir(out)) = o.outputs.entries.get("out") else { panic!("no /out in outputs") };
    let Some(Node::Dir(copy)) = out.entries.get("copy") else { panic!("no /out/copy") };
    let mut checked = 0;
    input.walk("", &mut |path, node| {
        if let Node::File(bytes) = node {
            let mut cur = copy;
            let parts: Vec<&str> = path.split('/').collect();
            for p in &parts[..parts.len() - 1] {
                let Some(Node::Dir(t)) = cur.entries.get(*p) else { panic!("missing dir for {path}") };
                cur = t;
            }
            let Some(Node::File(got)) = cur.entries.get(parts[parts.len() - 1]) else { panic!("missing copy of {path}") };
            let mut want = bytes.to_vec();
            want.reverse();
            assert_eq!(**got, want, "{path}");
            checked += 1;
        }
    });
    assert!(checked >= 5);
}

#[test]
fn a_writable_mount_never_changes_the_host_directory() {
    let dir = scratch();
    let host = dir.path().join("host");
    std::fs::create_dir(&host).expect("mkdir");
    std::fs::write(host.join("keep.txt"), "original").expect("write");
    let before = Tree::load_dir(&host, u64::MAX).expect("load");
    let out = dir.path().join("result");
    let status = Command::new(canon_bin())
        .arg("exec")
        .arg("--dir")
        .arg(format!("{}::/out", host.display()))
        .arg("--out")
        .arg(&out)
        .arg(fixture("probe.wasm"))
        .args(["--", "writeout"])
        .output()
        .expect("spawn");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert_eq!(Tree::load_dir(&host, u64::MAX).expect("reload"), before, "host directory was modified");
    // The guest's writes are in the --out copy, beside the original file.
    let result = Tree::load_dir(&out.join("out"), u64::MAX).expect("result");
    assert!(result.entries.contains_key("keep.txt"));
    assert!(result.entries.len() > 1, "the guest's files are missing: {result:?}");
}

#[test]
fn exec_passes_exit_codes_through_and_reports_traps() {
    let exit = Command::new(canon_bin()).arg("exec").arg(fixture("probe.wasm")).args(["--", "exit", "42"]).output().expect("spawn");
    assert_eq!(exit.status.code(), Some(42));
    let trap = Command::new(canon_bin()).arg("exec").arg(fixture("probe.wasm")).args(["--", "trap"]).output().expect("spawn");
    assert_eq!(trap.status.code(), Some(134));
    assert_eq!(String::from_utf8_lossy(&trap.stderr).trim(), "canon: guest trapped: unreachable");
    let hello = Command::new(canon_bin()).arg("exec").arg(fixture("hello.wasm")).args(["--", "a b"]).output().expect("spawn");
    assert_eq!(String::from_utf8_lossy(&hello.stdout), "hello from canon\na b\n");
}
