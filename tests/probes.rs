//! The probes' observations are sane, not just repeatable: time moves
//! forward, a sleep of d advances the clock by d, random bytes follow the
//! seed, listings are sorted, NaNs are canonical, and the guest sees only
//! what the job gives it.

use canon::job::Job;
use canon::outcome::{Outcome, Termination};
use canon::sandbox::Sandbox;

use crate::util::{fixture, scratch};

fn run(job: &Job) -> Outcome {
    let sandbox = Sandbox::builder().cache_dir(None).build().expect("sandbox");
    let o = sandbox.run(job).expect("run");
    assert_eq!(o.termination, Termination::Exit(0), "{}: stderr {}", job.name, String::from_utf8_lossy(&o.stderr));
    o
}

fn probe(name: &str) -> (Job, String) {
    let job = Job::load(&fixture(&format!("jobs/probe-{name}.toml"))).expect("probe job");
    let o = run(&job);
    (job, String::from_utf8(o.stdout).expect("utf-8 stdout"))
}

/// The numbers on lines starting with `key`.
fn values(stdout: &str, key: &str) -> Vec<u64> {
    stdout.lines().filter_map(|l| l.strip_prefix(key)).filter_map(|v| v.trim().parse().ok()).collect()
}

#[test]
fn wall_clock_starts_at_the_epoch_and_moves_forward() {
    let (job, out) = probe("time");
    let t = values(&out, "system_time_unix_ns ");
    assert_eq!(t.len(), 2, "{out}");
    assert!(t[0] >= job.epoch * 1_000_000_000 && t[0] < (job.epoch + 1) * 1_000_000_000, "{out}");
    assert!(t[1] > t[0], "time must move forward: {out}");
}

#[test]
fn a_sleep_advances_the_clock_by_its_duration_at_once() {
    let started = std::time::Instant::now();
    let (_, out) = probe("sleep");
    let d = values(&out, "monotonic_difference_ns ")[0];
    let asked = values(&out, "requested_ms ")[0] * 1_000_000;
    // The sleep itself plus the few instructions around it (1 ns of fuel each).
    assert!(d >= asked && d < asked + 100_000, "slept {d} ns for {asked} ns: {out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "a virtual sleep must not block");
}

#[test]
fn a_busy_wait_on_the_clock_terminates() {
    let (_, out) = probe("busywait");
    assert!(out.contains("reached_1ms true"), "{out}");
}

#[test]
fn random_bytes_follow_the_seed() {
    let base = Job::load(&fixture("jobs/probe-random.toml")).expect("job");
    let bytes = |seed: u64| {
        let job = Job { seed, ..base.clone() };
        let out = String::from_utf8(run(&job).stdout).expect("utf-8");
        out.lines().find_map(|l| l.strip_prefix("random_get ").map(str::to_string)).expect("random_get line")
    };
    assert_eq!(bytes(1), bytes(1), "one seed, one stream");
    assert_ne!(bytes(1), bytes(2), "different seeds, different streams");
}

#[test]
fn directory_listings_are_sorted() {
    let (_, out) = probe("readdir");
    let names: Vec<&str> = out.lines().filter_map(|l| l.split(' ').nth(1)).collect();
    assert_eq!(names, ["/data/hello.txt", "/data/sub", "/data/sub/a.txt", "/data/sub/b.txt"], "{out}");
}

#[test]
fn file_times_are_the_epoch_and_inodes_are_small_and_stable() {
    let (job, out) = probe("metadata");
    let epoch_ns = job.epoch * 1_000_000_000;
    assert!(out.contains(&format!("/data/hello.txt modified {epoch_ns}")), "{out}");
    // Inodes are numbered in mount order: /data's root is 1, hello.txt 2.
    assert!(out.contains("/data/hello.txt ino 2"), "{out}");
}

#[test]
fn nans_are_canonical_except_where_bits_are_moved_not_computed() {
    let (_, out) = probe("nan");
    for line in out.lines().filter(|l| l.contains("0/0") || l.contains("sqrt(-1)") || l.contains("inf-inf")) {
        assert!(line.ends_with("0x7ff8000000000000") || line.ends_with("0x7fc00000"), "not canonical: {line}");
    }
}

#[test]
fn the_guest_sees_only_the_jobs_environment() {
    let (_, out) = probe("env");
    let env: Vec<&str> = out.lines().filter(|l| l.starts_with("env ")).collect();
    assert_eq!(env, ["env LANG=C", "env TZ=UTC"], "{out}");
    assert!(out.contains("arg 0 probe-env"), "argv[0] is the job's: {out}");
}

#[test]
fn stdin_is_the_jobs_bytes() {
    let job = Job::load(&fixture("jobs/probe-stdin.toml")).expect("job");
    let o = run(&job);
    assert_eq!(o.stdout, job.stdin);
}

#[test]
fn a_missing_file_is_enoent() {
    let (_, out) = probe("missing");
    assert!(out.contains("raw_os_error 44"), "ENOENT is 44 in WASI: {out}");
}

#[test]
fn memory_growth_stops_at_the_jobs_limit() {
    let (job, out) = probe("memgrow");
    let pages = job.limits.memory_bytes / 65536;
    assert!(out.contains(&format!("final_pages {pages}")), "{out}");
}

#[test]
fn many_output_files_are_all_collected() {
    let job = Job::load(&fixture("jobs/probe-manyfiles.toml")).expect("job");
    let o = run(&job);
    let files = o.manifest().entries.iter().filter(|e| e.kind == canon::tree::Kind::File).count();
    assert!(files >= 100, "expected the probe's files in the manifest, got {files}");
    // And they land on disk through `canon run --out`.
    let dir = scratch();
    let out = dir.path().join("out");
    let status = std::process::Command::new(crate::util::canon_bin())
        .args(["run", "--out"])
        .arg(&out)
        .arg(fixture("jobs/probe-manyfiles.toml"))
        .output()
        .expect("spawn");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let on_disk = std::fs::read_dir(out.join("out/many")).expect("out/many").count();
    assert_eq!(on_disk, files);
}
