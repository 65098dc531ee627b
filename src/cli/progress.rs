//! Progress on stderr while a large module compiles: a spinner with the
//! elapsed time, then one line saying how long it took. Shown only when
//! stderr is a terminal or `--progress` is given, never on stdout (so
//! `--json` output is untouched), and only for modules that are not
//! already compiled in the cache.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use canon::job::Job;
use canon::sandbox::Sandbox;

/// Whether to show progress: `--progress`, or stderr is a terminal.
pub fn wanted(flag: bool) -> bool {
    flag || std::io::stderr().is_terminal()
}

/// Compiles every module of `job` that the cache does not hold yet (with a
/// spinner on stderr when `show`), so that the run, or the nodes, that
/// follow find them compiled.
pub fn precompile(sandbox: &Sandbox, job: &Job, show: bool) -> Result<()> {
    let modules = job.preloads.iter().map(|p| (&p.module_path, &p.module, &p.module_sha256)).chain([(&job.module_path, &job.module, &job.module_sha256)]);
    for (path, bytes, sha) in modules {
        if !show || sandbox.is_compiled(sha) {
            sandbox.prepare(bytes, sha).with_context(|| format!("{}: cannot compile", path.display()))?;
            continue;
        }
        let name = path.file_name().map_or_else(|| sha.to_string(), |n| n.to_string_lossy().into_owned());
        let what = format!("compiling {name} ({:.1} MB) with {}", bytes.len() as f64 / 1e6, sandbox.backend());
        let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg}… {elapsed}").unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()));
        bar.set_message(what.clone());
        bar.enable_steady_tick(Duration::from_millis(120));
        let start = Instant::now();
        let result = sandbox.prepare(bytes, sha);
        bar.finish_and_clear();
        result.with_context(|| format!("{}: cannot compile", path.display()))?;
        eprintln!("canon: {what}: {:.1} s", start.elapsed().as_secs_f64());
    }
    Ok(())
}
