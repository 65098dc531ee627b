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
