//! The TOML job spec, and its resolution into a [`Job`].
//!
//! Like ripgrep's low/high args: this file parses what the spec says (its
//! syntax, its required fields, how sizes, digests and seeds are spelled)
//! and hands the pieces to a [`JobBuilder`], which checks everything else
//! as it does for every job, then loads the host side. The first failure
//! is returned as a [`JobError`] naming the spec file and the field.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::builder::{JobBuilder, Stdin, human};
use super::error::JobError;
use super::{DEFAULT_PCT_DEPTH, DEFAULT_TIMEOUT, Job, Limits, MAX_CAPTURE_BYTES, MAX_MEMORY_BYTES, MIN_MEMORY_BYTES, Policy, Threads};
use crate::digest::Digest;

/// The spec as written. Paths are relative to the spec file's directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    name: Option<String>,
    module: Option<PathBuf>,
    module_sha256: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    argv0: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    stdin: Option<String>,
    stdin_file: Option<PathBuf>,
    seed: Option<toml::Value>,
    epoch: Option<u64>,
    commit: Option<String>,
    unknown_imports: Option<String>,
    sandbox_dirs: Option<bool>,
    #[serde(default)]
    limits: LimitsSpec,
    #[serde(default)]
    input: Vec<InputSpec>,
    #[serde(default)]
    preload: Vec<PreloadSpec>,
    threads: Option<ThreadsSpec>,
}

/// `[threads]`: a threaded job's scheduler (docs/THREADS.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThreadsSpec {
    policy: Option<String>,
    seed: Option<toml::Value>,
    slice: Option<u64>,
    depth: Option<u32>,
}

/// One `[[preload]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreloadSpec {
    name: Option<String>,
    module: Option<PathBuf>,
    module_sha256: Option<String>,
}

/// `[limits]`. Sizes are kept as TOML values so that both `65536` and
/// `"64 KiB"` are accepted, and a bad size gets a message naming the limit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSpec {
    fuel: Option<u64>,
    memory: Option<toml::Value>,
    stdout: Option<toml::Value>,
    stderr: Option<toml::Value>,
    output_bytes: Option<toml::Value>,
    output_files: Option<u64>,
    call_depth: Option<u64>,
    timeout: Option<u64>,
    threads: Option<u64>,
}

/// One `[[input]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSpec {
    host: Option<PathBuf>,
    guest: Option<String>,
    #[serde(default)]
    writable: bool,
}

/// Parses a spec and builds its job. `base` is the directory paths are
/// relative to; `file` names the spec in errors.
pub(super) fn resolve(text: &str, base: &Path, file: &str) -> Result<Job, JobError> {
    let spec: Spec = toml::from_str(text).map_err(|e| toml_error(text, file, &e))?;
    let f = || file.to_string();

    let name = spec.name.ok_or_else(|| JobError::MissingField { file: f(), field: "name".into() })?;
    let module = spec.module.ok_or_else(|| JobError::MissingField { file: f(), field: "module".into() })?;
    let mut job = JobBuilder::new(file, name, base.join(module));
    if let Some(s) = &spec.module_sha256 {
        job = job.module_sha256(s.parse::<Digest>().map_err(|_| JobError::MalformedSha256 { file: f(), value: s.clone() })?);
    }
    if let Some(argv0) = spec.argv0 {
        job = job.argv0(argv0);
    }
    job = job.args(spec.args);
    for (name, value) in spec.env {
        job = job.env(name, value);
    }
    job = job.stdin(match (spec.stdin, spec.stdin_file) {
        (Some(_), Some(_)) => return Err(JobError::StdinConflict { file: f() }),
        (Some(text), None) => Stdin::Bytes(text.into_bytes()),
        (None, Some(rel)) => Stdin::File(base.join(rel)),
        (None, None) => Stdin::Empty,
    });
    if let Some(seed) = &spec.seed {
        job = job.seed(parse_seed(file, "seed", seed)?);
    }
    if spec.threads.is_some() || spec.limits.threads.is_some() {
        job = job.threads(parse_threads(file, spec.threads.as_ref(), spec.limits.threads)?);
    }
    if let Some(epoch) = spec.epoch {
        job = job.epoch(epoch);
    }
    if let Some(commit) = spec.commit {
        job = job.commit(commit);
    }
    if let Some(s) = spec.unknown_imports.as_deref() {
        job = job.unknown_imports(s.parse().map_err(|_| invalid(file, "unknown_imports", &format!("{s:?}"), "\"refuse\" (the default) or \"trap\""))?);
    }
    if let Some(sandbox_dirs) = spec.sandbox_dirs {
        job = job.sandbox_dirs(sandbox_dirs);
    }
    for (index, p) in spec.preload.into_iter().enumerate() {
        let field = |k: &str| format!("preload[{index}].{k}");
        let name = p.name.ok_or_else(|| JobError::MissingField { file: f(), field: field("name") })?;
        let module = p.module.ok_or_else(|| JobError::MissingField { file: f(), field: field("module") })?;
        let pinned = match &p.module_sha256 {
            None => None,
            Some(s) => Some(
                s.parse::<Digest>()
                    .map_err(|_| invalid(file, &field("module_sha256"), &format!("{s:?}"), "64 lowercase hex digits, optionally prefixed by \"sha256:\""))?,
            ),
        };
        job = job.preload(name, base.join(module), pinned);
    }
    let (limits, timeout) = parse_limits(file, &spec.limits)?;
    job = job.limits(limits).timeout(timeout);
    for (index, input) in spec.input.into_iter().enumerate() {
        let host = input.host.ok_or_else(|| JobError::MissingField { file: f(), field: format!("input[{index}].host") })?;
        let guest = input.guest.ok_or_else(|| JobError::MissingField { file: f(), field: format!("input[{index}].guest") })?;
        job = job.input(base.join(host), guest, input.writable);
    }
    job.build()
}

/// Maps a toml/serde error to [`JobError`], with line and column.
fn toml_error(text: &str, file: &str, e: &toml::de::Error) -> JobError {
    let (line, col) = line_col(text, e.span());
    let message = e.message().trim_end().to_string();
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((key, expected)) = rest.split_once('`')
    {
        let expected = expected.trim_start_matches(',').trim().trim_start_matches("expected").trim();
        return JobError::UnknownKey { file: file.into(), line, col, key: key.into(), expected: expected.into() };
    }
    JobError::Toml { file: file.into(), line, col, message }
}

/// 1-based line and column (in characters) of the start of `span`.
fn line_col(text: &str, span: Option<Range<usize>>) -> (usize, usize) {
    let start = span.map_or(0, |s| s.start).min(text.len());
    let before = text.get(..start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn invalid(file: &str, field: &str, found: &str, expected: &str) -> JobError {
    JobError::InvalidField { file: file.into(), field: field.into(), found: found.into(), expected: expected.into() }
}

/// A seed is a TOML integer (0 ..= 2^63-1, TOML's range) or a decimal
/// string for the full `u64` range.
fn parse_seed(file: &str, field: &str, value: &toml::Value) -> Result<u64, JobError> {
    let expected = "an unsigned 64-bit integer (as a TOML integer, or a decimal string above 2^63-1)";
    match value {
        toml::Value::Integer(i) => u64::try_from(*i).map_err(|_| invalid(file, field, &i.to_string(), expected)),
        toml::Value::String(s) => s.parse::<u64>().map_err(|_| invalid(file, field, &format!("{s:?}"), expected)),
        other => Err(invalid(file, field, &format!("a {}", other.type_str()), expected)),
    }
}

/// `[threads]` and `limits.threads` as written, each defaulting as
/// [`Threads::default`]; the builder checks their bounds.
fn parse_threads(file: &str, spec: Option<&ThreadsSpec>, limit: Option<u64>) -> Result<Threads, JobError> {
    let mut t = Threads::default();
    if let Some(n) = limit {
        t.max_threads = n;
    }
    let Some(spec) = spec else { return Ok(t) };
    let depth = spec.depth;
    t.policy = match spec.policy.as_deref() {
        None | Some("random") => Policy::Random,
        Some("round-robin") => Policy::RoundRobin,
        Some("pct") => Policy::Pct { depth: depth.unwrap_or(DEFAULT_PCT_DEPTH) },
        Some(other) => return Err(invalid(file, "threads.policy", &format!("{other:?}"), "\"random\" (the default), \"round-robin\" or \"pct\"")),
    };
    if depth.is_some() && !matches!(t.policy, Policy::Pct { .. }) {
        return Err(invalid(file, "threads.depth", "a depth for a policy other than pct", "no depth, or policy = \"pct\""));
    }
    if let Some(seed) = &spec.seed {
        t.seed = Some(parse_seed(file, "threads.seed", seed)?);
    }
    if let Some(slice) = spec.slice {
        t.slice = slice;
    }
    Ok(t)
}

/// The limits as written, each defaulting to [`Limits::JOB_DEFAULT`]; the
/// builder checks their bounds.
fn parse_limits(file: &str, spec: &LimitsSpec) -> Result<(Limits, Duration), JobError> {
    let d = Limits::JOB_DEFAULT;
    let size = |field: &'static str, value: &Option<toml::Value>, default: u64, min: u64, max: u64| -> Result<u64, JobError> {
        let Some(value) = value else { return Ok(default) };
        parse_size(value).map_err(|found| JobError::Limit {
            file: file.into(),
            field,
            found,
            expected: format!("{SIZE_FORMS} between {} and {}", human(min), human(max)),
        })
    };
    let limits = Limits {
        fuel: spec.fuel.unwrap_or(d.fuel),
        memory_bytes: size("memory", &spec.memory, d.memory_bytes, MIN_MEMORY_BYTES, MAX_MEMORY_BYTES)?,
        stdout_bytes: size("stdout", &spec.stdout, d.stdout_bytes, 0, MAX_CAPTURE_BYTES)?,
        stderr_bytes: size("stderr", &spec.stderr, d.stderr_bytes, 0, MAX_CAPTURE_BYTES)?,
        output_bytes: size("output_bytes", &spec.output_bytes, d.output_bytes, 0, MAX_CAPTURE_BYTES)?,
        output_files: spec.output_files.unwrap_or(d.output_files),
        call_depth: spec.call_depth.unwrap_or(d.call_depth),
    };
    Ok((limits, spec.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs)))
}

/// How a size may be written, for messages.
pub const SIZE_FORMS: &str = "an integer number of bytes or a string \"N B\", \"N KiB\", \"N MiB\" or \"N GiB\"";

/// Parses a size: a non-negative integer (bytes) or `"<N> <unit>"` with unit
/// `B`, `KiB`, `MiB` or `GiB` (the space is optional). On failure, returns
/// how the value was written.
pub fn parse_size(value: &toml::Value) -> Result<u64, String> {
    match value {
        toml::Value::Integer(i) => u64::try_from(*i).map_err(|_| i.to_string()),
        toml::Value::String(s) => {
            let bad = || format!("{s:?}");
            let t = s.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (digits, unit) = t.split_at(split);
            let n: u64 = digits.parse().map_err(|_| bad())?;
            let shift = match unit.trim_start() {
                "B" => 0,
                "KiB" => 10,
                "MiB" => 20,
                "GiB" => 30,
                _ => return Err(bad()),
            };
            n.checked_mul(1 << shift).ok_or_else(bad)
        }
        other => Err(format!("a {}", other.type_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_integers_and_binary_units() {
        let s = |v: &str| parse_size(&toml::Value::String(v.into()));
        assert_eq!(parse_size(&toml::Value::Integer(65536)), Ok(65536));
        assert_eq!(s("64 KiB"), Ok(64 << 10));
        assert_eq!(s("64MiB"), Ok(64 << 20));
        assert_eq!(s("4 GiB"), Ok(4 << 30));
        assert_eq!(s("7 B"), Ok(7));
        for bad in ["", "MiB", "64", "64 MB", "64 kib", "-1 KiB", "1.5 MiB", "99999999999999999999 GiB", "17179869184 GiB"] {
            assert!(s(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_size(&toml::Value::Integer(-1)).is_err());
        assert!(parse_size(&toml::Value::Boolean(true)).is_err());
    }

    #[test]
    fn line_and_column_are_one_based() {
        let text = "a = 1\nbé = x\n";
        assert_eq!(line_col(text, Some(0..1)), (1, 1));
        assert_eq!(line_col(text, Some(6..7)), (2, 1));
        // Column counts characters, not bytes: `x` is the 6th character.
        assert_eq!(line_col(text, Some(12..13)), (2, 6));
        assert_eq!(line_col(text, None), (1, 1));
    }
}
