//! The TOML job spec, and its resolution into a [`Job`].
//!
//! Resolution runs in two steps, like ripgrep's low/high args: first every
//! check that needs no I/O (names, args, env, limits, guest path syntax,
//! digests and commit ids), then the host side (read and validate the
//! module, stat and load inputs, lay out the preopens). The first failure is
//! returned as a [`JobError`] naming the spec file and the field.

use std::collections::BTreeMap;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::error::JobError;
use super::validate::{LinkedModule, Linking, Role, validate_module_cached_for};
use super::{
    DEFAULT_EPOCH, DEFAULT_TIMEOUT, Job, Limits, MAX_ARGS_ENV_BYTES, MAX_CALL_DEPTH, MAX_CAPTURE_BYTES, MAX_INPUT_BYTES, MAX_MEMORY_BYTES, MAX_OUTPUT_FILES,
    MAX_TIMEOUT, MIN_CALL_DEPTH, MIN_FUEL, MIN_MEMORY_BYTES, Mount, Preload, UnknownImports, args_env_overflow,
};
use crate::digest::Digest;
use crate::tree::{Node, Tree, TreeError};

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
    #[serde(default)]
    limits: LimitsSpec,
    #[serde(default)]
    input: Vec<InputSpec>,
    #[serde(default)]
    preload: Vec<PreloadSpec>,
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

/// Parses, resolves and validates a spec. `base` is the directory paths are
/// relative to; `file` names the spec in errors.
pub(super) fn resolve(text: &str, base: &Path, file: &str) -> Result<Job, JobError> {
    let spec: Spec = toml::from_str(text).map_err(|e| toml_error(text, file, &e))?;
    let f = || file.to_string();

    // Step 1: everything that needs no I/O.
    let name = spec.name.ok_or_else(|| JobError::MissingField { file: f(), field: "name".into() })?;
    if name.is_empty() {
        return Err(invalid(file, "name", "empty", "a non-empty string"));
    }
    let module_rel = spec.module.ok_or_else(|| JobError::MissingField { file: f(), field: "module".into() })?;
    let pinned_sha256 = match &spec.module_sha256 {
        None => None,
        Some(s) => Some(s.parse::<Digest>().map_err(|_| JobError::MalformedSha256 { file: f(), value: s.clone() })?),
    };
    let argv0 = spec.argv0.unwrap_or_else(|| name.clone());
    no_nul(file, "argv0", &argv0)?;
    for (i, arg) in spec.args.iter().enumerate() {
        no_nul(file, &format!("args[{i}]"), arg)?;
    }
    for (key, value) in &spec.env {
        check_env_name(file, key)?;
        no_nul(file, &format!("env.{key}"), value)?;
    }
    check_args_env_size(file, &argv0, &spec.args, &spec.env)?;
    if spec.stdin.is_some() && spec.stdin_file.is_some() {
        return Err(JobError::StdinConflict { file: f() });
    }
    let seed = spec.seed.as_ref().map(|v| parse_seed(file, v)).transpose()?;
    let commit = spec.commit.as_deref().map(|c| parse_commit(file, c)).transpose()?;
    let unknown_imports = match spec.unknown_imports.as_deref() {
        None => UnknownImports::default(),
        Some(s) => s.parse().map_err(|_| invalid(file, "unknown_imports", &format!("{s:?}"), "\"refuse\" (the default) or \"trap\""))?,
    };
    let mut preload_specs = Vec::with_capacity(spec.preload.len());
    for (index, p) in spec.preload.iter().enumerate() {
        let field = |k: &str| format!("preload[{index}].{k}");
        let name = p.name.clone().ok_or_else(|| JobError::MissingField { file: f(), field: field("name") })?;
        if !super::is_preload_name(&name) {
            return Err(invalid(file, &field("name"), &format!("{name:?}"), super::PRELOAD_NAME_RULE));
        }
        if preload_specs.iter().any(|(n, _, _): &(String, PathBuf, Option<Digest>)| *n == name) {
            return Err(invalid(file, &field("name"), &format!("{name:?}, the name of an earlier preload"), "a name no other preload has"));
        }
        let module = p.module.clone().ok_or_else(|| JobError::MissingField { file: f(), field: field("module") })?;
        let pinned = match &p.module_sha256 {
            None => None,
            Some(s) => Some(
                s.parse::<Digest>()
                    .map_err(|_| invalid(file, &field("module_sha256"), &format!("{s:?}"), "64 lowercase hex digits, optionally prefixed by \"sha256:\""))?,
            ),
        };
        preload_specs.push((name, base.join(module), pinned));
    }
    let (limits, timeout) = resolve_limits(file, &spec.limits)?;
    let mut inputs = Vec::with_capacity(spec.input.len());
    for (index, input) in spec.input.iter().enumerate() {
        let host = input.host.clone().ok_or_else(|| JobError::MissingField { file: f(), field: format!("input[{index}].host") })?;
        let guest = input.guest.clone().ok_or_else(|| JobError::MissingField { file: f(), field: format!("input[{index}].guest") })?;
        check_guest_path(&guest).map_err(|reason| JobError::GuestPath { file: f(), index, guest: guest.clone(), reason: reason.into() })?;
        inputs.push((index, base.join(host), guest, input.writable));
    }

    // Step 2: the host side.
    let mut preloads: Vec<Preload> = Vec::with_capacity(preload_specs.len());
    let mut linked: Vec<LinkedModule> = Vec::with_capacity(preload_specs.len());
    for (index, (name, path, pinned)) in preload_specs.into_iter().enumerate() {
        let err = |message: String| JobError::Preload { file: f(), index, path: path.clone(), message };
        let bytes = fs::read(&path).map_err(|e| err(format!("cannot read: {e}")))?;
        let sha = Digest::of(&bytes);
        if let Some(expected) = pinned
            && expected != sha
        {
            return Err(err(format!("`preload[{index}].module_sha256` is {expected} but the module has SHA-256 {sha}")));
        }
        let exports =
            validate_module_cached_for(&bytes, &sha, Role::Library, &Linking { unknown_imports, preloads: &linked }).map_err(|e| err(e.to_string()))?;
        linked.push(LinkedModule { name: name.clone(), sha256: sha, exports });
        preloads.push(Preload { name, module: Arc::new(bytes), module_sha256: sha, module_path: path.clone() });
    }
    let linking = Linking { unknown_imports, preloads: &linked };
    let module_path = base.join(&module_rel);
    let module = fs::read(&module_path).map_err(|source| JobError::ModuleRead { file: f(), path: module_path.clone(), source })?;
    let module_sha256 = Digest::of(&module);
    if let Some(expected) = pinned_sha256
        && expected != module_sha256
    {
        return Err(JobError::Sha256Mismatch { file: f(), path: module_path, expected, actual: module_sha256 });
    }
    validate_module_cached_for(&module, &module_sha256, Role::Command, &linking).map_err(|source| JobError::Module {
        file: f(),
        path: module_path.clone(),
        source: Box::new(source),
    })?;

    let mut budget = MAX_INPUT_BYTES;
    let stdin = match (spec.stdin, spec.stdin_file) {
        (Some(text), _) => text.into_bytes(),
        (None, Some(rel)) => {
            let path = base.join(rel);
            let read_err = |source| JobError::StdinRead { file: f(), path: path.clone(), source };
            let len = fs::metadata(&path).map_err(read_err)?.len();
            if len > budget {
                return Err(JobError::InputsTooLarge { file: f(), field: "stdin_file".into(), limit: MAX_INPUT_BYTES });
            }
            fs::read(&path).map_err(read_err)?
        }
        (None, None) => Vec::new(),
    };
    budget = budget.saturating_sub(stdin.len() as u64);

    let mounts = load_inputs(file, inputs, &mut budget)?;

    let mut job = Job {
        name,
        module: Arc::new(module),
        module_sha256,
        module_path,
        argv0,
        args: spec.args,
        env: spec.env.into_iter().collect(),
        stdin,
        mounts,
        seed: 0,
        epoch: spec.epoch.unwrap_or(DEFAULT_EPOCH),
        limits,
        timeout,
        commit,
        unknown_imports,
        preloads,
    };
    job.seed = match seed {
        Some(seed) => seed,
        None => job.derived_seed(),
    };
    Ok(job)
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

fn no_nul(file: &str, field: &str, value: &str) -> Result<(), JobError> {
    if value.contains('\0') {
        return Err(invalid(file, field, "a string with a NUL byte", "a string without NUL bytes (WASI passes C strings)"));
    }
    Ok(())
}

/// Refuses argv and environment past [`MAX_ARGS_ENV_BYTES`], naming the
/// field where the running total crosses it.
fn check_args_env_size(file: &str, argv0: &str, args: &[String], env: &BTreeMap<String, String>) -> Result<(), JobError> {
    match args_env_overflow(argv0, args, env.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        None => Ok(()),
        Some(field) => Err(JobError::ArgsTooLarge { file: file.into(), field: field.to_string(), limit: MAX_ARGS_ENV_BYTES }),
    }
}

fn check_env_name(file: &str, key: &str) -> Result<(), JobError> {
    let field = format!("env.{key:?}");
    let expected = "a non-empty variable name without `=` or NUL bytes";
    if key.is_empty() {
        return Err(invalid(file, &field, "an empty name", expected));
    }
    if key.contains('=') {
        return Err(invalid(file, &field, "a name containing `=`", expected));
    }
    if key.contains('\0') {
        return Err(invalid(file, &field, "a name containing a NUL byte", expected));
    }
    Ok(())
}

/// A seed is a TOML integer (0 ..= 2^63-1, TOML's range) or a decimal
/// string for the full `u64` range.
fn parse_seed(file: &str, value: &toml::Value) -> Result<u64, JobError> {
    let expected = "an unsigned 64-bit integer (as a TOML integer, or a decimal string above 2^63-1)";
    match value {
        toml::Value::Integer(i) => u64::try_from(*i).map_err(|_| invalid(file, "seed", &i.to_string(), expected)),
        toml::Value::String(s) => s.parse::<u64>().map_err(|_| invalid(file, "seed", &format!("{s:?}"), expected)),
        other => Err(invalid(file, "seed", &format!("a {}", other.type_str()), expected)),
    }
}

/// A git commit id: 40 (SHA-1) or 64 (SHA-256) hex digits, stored lowercase.
fn parse_commit(file: &str, value: &str) -> Result<String, JobError> {
    let ok = matches!(value.len(), 40 | 64) && value.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(JobError::Commit { file: file.into(), value: value.into() });
    }
    Ok(value.to_ascii_lowercase())
}

fn resolve_limits(file: &str, spec: &LimitsSpec) -> Result<(Limits, Duration), JobError> {
    let d = Limits::JOB_DEFAULT;
    let limit_err = |field: &'static str, found: String, expected: String| JobError::Limit { file: file.into(), field, found, expected };

    let fuel = spec.fuel.unwrap_or(d.fuel);
    if fuel < MIN_FUEL {
        return Err(limit_err("fuel", fuel.to_string(), format!("at least {MIN_FUEL} (a job with no fuel cannot run)")));
    }
    let size = |field: &'static str, value: &Option<toml::Value>, default: u64, min: u64, max: u64| -> Result<u64, JobError> {
        let Some(value) = value else { return Ok(default) };
        let n = parse_size(value).map_err(|found| limit_err(field, found, format!("{SIZE_FORMS} between {} and {}", human(min), human(max))))?;
        if n < min || n > max {
            return Err(limit_err(field, format!("{value} ({n} bytes)"), format!("a size between {} and {}", human(min), human(max))));
        }
        Ok(n)
    };
    let memory_bytes = size("memory", &spec.memory, d.memory_bytes, MIN_MEMORY_BYTES, MAX_MEMORY_BYTES)?;
    let stdout_bytes = size("stdout", &spec.stdout, d.stdout_bytes, 0, MAX_CAPTURE_BYTES)?;
    let stderr_bytes = size("stderr", &spec.stderr, d.stderr_bytes, 0, MAX_CAPTURE_BYTES)?;
    let output_bytes = size("output_bytes", &spec.output_bytes, d.output_bytes, 0, MAX_CAPTURE_BYTES)?;
    let output_files = spec.output_files.unwrap_or(d.output_files);
    if output_files > MAX_OUTPUT_FILES {
        return Err(limit_err("output_files", output_files.to_string(), format!("at most {MAX_OUTPUT_FILES}")));
    }
    let call_depth = spec.call_depth.unwrap_or(d.call_depth);
    if !(MIN_CALL_DEPTH..=MAX_CALL_DEPTH).contains(&call_depth) {
        return Err(limit_err("call_depth", call_depth.to_string(), format!("between {MIN_CALL_DEPTH} and {MAX_CALL_DEPTH}")));
    }
    let timeout = spec.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(limit_err("timeout", timeout.as_secs().to_string(), format!("between 1 and {} seconds", MAX_TIMEOUT.as_secs())));
    }
    Ok((Limits { fuel, memory_bytes, stdout_bytes, stderr_bytes, output_bytes, output_files, call_depth }, timeout))
}

/// A size for messages: `64 KiB` when exact, else bytes.
fn human(n: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n != 0 && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}

const SIZE_FORMS: &str = "an integer number of bytes or a string \"N B\", \"N KiB\", \"N MiB\" or \"N GiB\"";

/// Parses a size: a non-negative integer (bytes) or `"<N> <unit>"` with unit
/// `B`, `KiB`, `MiB` or `GiB` (the space is optional). On failure, returns
/// how the value was written.
pub(super) fn parse_size(value: &toml::Value) -> Result<u64, String> {
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

/// Checks a guest path's syntax: absolute, normalised, not `/`. Returns
/// what is wrong.
pub(super) fn check_guest_path(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("a guest path must be absolute (start with `/`)");
    }
    if p == "/" {
        return Err("`/` itself cannot be mounted; mount inputs below it, e.g. `/data`");
    }
    if p.ends_with('/') {
        return Err("a guest path must not end with `/`");
    }
    if p.contains('\0') {
        return Err("a guest path must not contain NUL bytes");
    }
    for component in p[1..].split('/') {
        match component {
            "" => return Err("a guest path must not contain empty components (`//`)"),
            "." | ".." => return Err("a guest path must be normalised (no `.` or `..` components)"),
            _ => {}
        }
    }
    Ok(())
}

/// `a` and `b` are equal, or one is inside the other.
fn nested(a: &str, b: &str) -> bool {
    let inside = |inner: &str, outer: &str| inner.strip_prefix(outer).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    inside(a, b) || inside(b, a)
}

/// A preopen being assembled from one directory input or several file inputs.
struct Preopen {
    /// The first input contributing to it.
    index: usize,
    writable: bool,
    /// Some(host) for a directory input; None for files merged into a
    /// synthetic directory.
    source: Option<PathBuf>,
    tree: Tree,
    /// For merged files: which input put each file there.
    file_inputs: BTreeMap<String, usize>,
}

fn load_inputs(file: &str, inputs: Vec<(usize, PathBuf, String, bool)>, budget: &mut u64) -> Result<Vec<Mount>, JobError> {
    let f = || file.to_string();
    let too_large = |index: usize| JobError::InputsTooLarge { file: f(), field: format!("input[{index}]"), limit: MAX_INPUT_BYTES };
    let mut preopens: BTreeMap<String, Preopen> = BTreeMap::new();

    for (index, host, guest, writable) in inputs {
        // The input's own host path is followed if it is a symlink; links
        // inside an input directory are kept as links.
        let meta = fs::metadata(&host).map_err(|source| JobError::InputMissing { file: f(), index, path: host.clone(), source })?;
        let (dir, node_name) = if meta.is_dir() {
            (guest.clone(), None)
        } else if meta.is_file() {
            let (parent, leaf) = guest.rsplit_once('/').unwrap_or(("", &guest));
            if parent.is_empty() {
                let reason = "a file input must be inside a directory (e.g. `/in/file.txt`), since `/` cannot be preopened".into();
                return Err(JobError::GuestPath { file: f(), index, guest, reason });
            }
            (parent.to_string(), Some(leaf.to_string()))
        } else {
            return Err(JobError::InputLoad { file: f(), index, source: TreeError::Unsupported(host) });
        };

        check_reserved(file, index, &guest, &dir, writable)?;

        let load_err = |source: TreeError| match source {
            TreeError::TooLarge { .. } => too_large(index),
            source => JobError::InputLoad { file: f(), index, source },
        };
        match node_name {
            None => {
                if let Some(other) = preopens.get(&dir) {
                    return Err(same_dir(file, other.index, index, &dir));
                }
                let tree = Tree::load_dir(&host, *budget).map_err(load_err)?;
                *budget = budget.saturating_sub(tree.file_bytes());
                preopens.insert(dir, Preopen { index, writable, source: Some(host), tree, file_inputs: BTreeMap::new() });
            }
            Some(leaf) => {
                if meta.len() > *budget {
                    return Err(too_large(index));
                }
                let bytes = fs::read(&host).map_err(|source| JobError::InputMissing { file: f(), index, path: host.clone(), source })?;
                *budget = budget.saturating_sub(bytes.len() as u64);
                let entry =
                    preopens.entry(dir.clone()).or_insert_with(|| Preopen { index, writable, source: None, tree: Tree::new(), file_inputs: BTreeMap::new() });
                if entry.source.is_some() {
                    return Err(same_dir(file, entry.index, index, &dir));
                }
                if entry.writable != writable {
                    return Err(JobError::WritableConflict { file: f(), first: entry.index, second: index, dir });
                }
                if let Some(&first) = entry.file_inputs.get(&leaf) {
                    return Err(JobError::Overlap {
                        file: f(),
                        first,
                        first_dir: guest.clone(),
                        second: index,
                        second_dir: guest,
                        relation: "name the same guest file",
                    });
                }
                entry.file_inputs.insert(leaf.clone(), index);
                entry.tree.entries.insert(leaf, Node::File(Arc::new(bytes)));
            }
        }
    }

    let dirs: Vec<(&String, &Preopen)> = preopens.iter().collect();
    for (i, (a, pa)) in dirs.iter().enumerate() {
        for (b, pb) in &dirs[i + 1..] {
            if nested(a, b) {
                let ((first, first_dir), (second, second_dir)) =
                    if pa.index < pb.index { ((pa.index, a), (pb.index, b)) } else { ((pb.index, b), (pa.index, a)) };
                return Err(JobError::Overlap {
                    file: f(),
                    first,
                    first_dir: first_dir.to_string(),
                    second,
                    second_dir: second_dir.to_string(),
                    relation: "are nested; preopened directories must be disjoint",
                });
            }
        }
    }

    // BTreeMap order is byte order of the guest path: the canonical order.
    Ok(preopens.into_iter().map(|(guest, p)| Mount::new(guest, p.writable, p.tree, p.source)).collect())
}

fn same_dir(file: &str, first: usize, second: usize, dir: &str) -> JobError {
    JobError::Overlap {
        file: file.into(),
        first,
        first_dir: dir.into(),
        second,
        second_dir: dir.into(),
        relation: "are the same preopened directory; a directory input cannot share its guest path with another input",
    }
}

/// `/tmp` belongs to the sandbox; `/out` may be replaced by a writable input
/// but nothing may be mounted inside it.
fn check_reserved(file: &str, index: usize, guest: &str, dir: &str, writable: bool) -> Result<(), JobError> {
    let reserved = |reason| JobError::Reserved { file: file.into(), index, guest: guest.into(), reason };
    if nested(dir, "/tmp") {
        return Err(reserved("/tmp is reserved: the sandbox provides it for the guest's scratch files, so no input may be at or inside it"));
    }
    if dir == "/out" {
        if !writable {
            return Err(JobError::OutReadOnly { file: file.into(), index, guest: guest.into() });
        }
    } else if nested(dir, "/out") {
        return Err(reserved(
            "no preopen may be inside /out, which the sandbox provides; to seed /out, mount a writable directory at /out or put files directly in it",
        ));
    }
    Ok(())
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
    fn guest_paths_must_be_absolute_and_normalised() {
        for good in ["/data", "/a/b", "/a.b/c-d", "/é"] {
            assert_eq!(check_guest_path(good), Ok(()), "{good}");
        }
        for bad in ["", "data", "./data", "/", "/data/", "/a//b", "/a/./b", "/a/../b", "/..", "/a\0"] {
            assert!(check_guest_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn nesting_respects_component_boundaries() {
        assert!(nested("/a", "/a"));
        assert!(nested("/a", "/a/b"));
        assert!(nested("/a/b/c", "/a"));
        assert!(!nested("/a", "/ab"));
        assert!(!nested("/a-b", "/a"));
        assert!(!nested("/out", "/outside"));
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
