//! Shared test harness: paths to fixtures and the real binary, scratch dirs.

#![allow(dead_code)]

use std::path::PathBuf;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path under fixtures/.
pub fn fixture(rel: &str) -> PathBuf {
    root().join("fixtures").join(rel)
}

/// The `canon` binary built for this test run.
pub fn canon_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_canon"))
}

/// A fresh scratch directory, removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("create scratch dir")
}

/// Writes a job spec `dir/file` that runs fixture module `module` (a file
/// under fixtures/), with more TOML in `body`; returns its path.
pub fn job_spec(dir: &std::path::Path, file: &str, module: &str, body: &str) -> PathBuf {
    let path = dir.join(file);
    let name = file.trim_end_matches(".toml");
    let text = format!("name = {name:?}\nmodule = {:?}\n{body}\n", fixture(module).display().to_string());
    std::fs::write(&path, text).expect("write job spec");
    path
}

/// `job_spec` body for `sha256chain.wasm` that would run for days: only the
/// one-second wall-clock safety net stops it.
pub const FOREVER: &str = "args = [\"1000000000000\"]\n[limits]\nfuel = 1000000000000000\ntimeout = 1";

/// One way of perturbing the host of a `canon` process: what must never
/// change an outcome.
pub struct Perturbation {
    /// Named in failure messages.
    pub name: &'static str,
    /// Extra environment for the process.
    pub env: Vec<(&'static str, String)>,
    /// Working directory, if not the test's.
    pub cwd: Option<PathBuf>,
    /// Keep another core busy while the process runs.
    pub busy_core: bool,
}

impl Perturbation {
    /// No perturbation at all.
    pub fn none(name: &'static str) -> Perturbation {
        Perturbation { name, env: vec![], cwd: None, busy_core: false }
    }

    /// Runs `cmd` under this perturbation and returns its output.
    pub fn output(&self, cmd: &mut std::process::Command) -> std::process::Output {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let spinner = self.busy_core.then(|| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        });
        let out = cmd.output().expect("spawn canon");
        stop.store(true, Ordering::Relaxed);
        if let Some(t) = spinner {
            t.join().expect("spinner");
        }
        out
    }
}

/// The host perturbations every determinism check runs under: time zone and
/// locale; HOME, working directory (`cwd`) and environment; thread-pool
/// sizes; a busy second core. `home` and `cwd` are scratch directories.
pub fn host_perturbations(home: &std::path::Path, cwd: &std::path::Path) -> Vec<Perturbation> {
    vec![
        Perturbation {
            name: "time zone and locale",
            env: vec![("TZ", "Pacific/Chatham".into()), ("LANG", "tr_TR.UTF-8".into()), ("LC_ALL", "tr_TR.UTF-8".into())],
            cwd: None,
            busy_core: false,
        },
        Perturbation {
            name: "home, cwd and extra environment",
            env: vec![("HOME", home.display().to_string()), ("CANON_PERTURBATION_NOISE", "x".repeat(1000)), ("PATH", "/nonexistent".into())],
            cwd: Some(cwd.to_path_buf()),
            busy_core: false,
        },
        Perturbation { name: "one compile thread", env: vec![("RAYON_NUM_THREADS", "1".into())], cwd: None, busy_core: false },
        Perturbation { name: "busy second core", env: vec![("RAYON_NUM_THREADS", "7".into())], cwd: None, busy_core: true },
    ]
}
