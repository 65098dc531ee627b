//! What a run produced, and the digest every honest node agrees on.
//!
//! An [`Outcome`] is the whole result of a job: how it ended (exit code or
//! trap kind), stdout, stderr, the output tree and the fuel consumed. Nothing
//! else — no wall time, host path, address or backtrace — is part of it.
//!
//! # Outcome encoding, `canon/outcome/v1`
//!
//! The outcome digest is SHA-256 over (see [`crate::encoding`]): tag
//! `canon/outcome/v1`; termination (`u8` 0 then the exit code as `u32`, or
//! `u8` 1 then the trap kind's name as a string); fuel consumed (`u64`);
//! SHA-256 of stdout (digest); SHA-256 of stderr (digest); the output
//! manifest's digest (digest, `canon/manifest/v1`, paths absolute in the
//! guest, e.g. `/out/a.txt`). Because it is built from the parts' digests, a
//! receipt that carries the parts lets anyone recompute the outcome digest.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, OutcomeDigest};
use crate::encoding::Encoder;
use crate::tree::{Manifest, Node, Tree, TreeError, is_entry_name};

/// Why a guest stopped without exiting. The names are part of the outcome
/// encoding: they never change meaning, and new kinds are only added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrapKind {
    /// `unreachable` executed (also how Rust's `panic=abort` and `abort()` end).
    Unreachable,
    /// A load or store outside linear memory.
    MemoryOutOfBounds,
    /// Integer division or remainder by zero.
    IntegerDivideByZero,
    /// Integer overflow (`i32.div_s` of MIN by -1, or a trapping truncation out of range).
    IntegerOverflow,
    /// Float-to-integer conversion of NaN.
    BadConversionToInteger,
    /// `call_indirect` whose function has the wrong type.
    IndirectCallTypeMismatch,
    /// `call_indirect` on a null table entry.
    IndirectCallToNull,
    /// A table access out of bounds.
    TableOutOfBounds,
    /// The native call stack overflowed. Since determinism ABI 2 this is
    /// never an outcome (where it fires depends on the machine: a run that
    /// hits it has no result); the name stays reserved.
    StackOverflow,
    /// The job's fuel budget ran out.
    OutOfFuel,
    /// The module's initial memory or tables exceed the job's limits.
    MemoryLimit,
    /// stdout exceeded its cap.
    StdoutLimit,
    /// stderr exceeded its cap.
    StderrLimit,
    /// The files written exceeded the output byte or file-count cap.
    OutputLimit,
    /// A misaligned atomic access.
    UnalignedAtomic,
    /// A null reference was dereferenced.
    NullReference,
    /// The module has no `_start` (or the job's entry point) to run.
    NoEntryPoint,
    /// The start function or an import-time initialisation failed in another way.
    Other,
    /// The guest called a function import that nobody provides, linked as a
    /// trapping stub because the job sets `unknown_imports = "trap"`. The
    /// import's name is not part of the outcome (the kind vocabulary is
    /// closed); it is a property of the module, which the job digest names.
    UnknownImport,
    /// A call would have exceeded the job's call-depth limit (`call_depth`).
    CallDepthExceeded,
    /// An exception thrown by the guest (exception-handling proposal) that
    /// no handler caught.
    UncaughtException,
    /// Every live thread of a threaded job waits (`memory.atomic.wait`)
    /// with no deadline: nothing could ever wake one (see docs/THREADS.md).
    Deadlock,
}

impl TrapKind {
    /// Every kind, in declaration order.
    pub const ALL: [TrapKind; 22] = [
        TrapKind::Unreachable,
        TrapKind::MemoryOutOfBounds,
        TrapKind::IntegerDivideByZero,
        TrapKind::IntegerOverflow,
        TrapKind::BadConversionToInteger,
        TrapKind::IndirectCallTypeMismatch,
        TrapKind::IndirectCallToNull,
        TrapKind::TableOutOfBounds,
        TrapKind::StackOverflow,
        TrapKind::OutOfFuel,
        TrapKind::MemoryLimit,
        TrapKind::StdoutLimit,
        TrapKind::StderrLimit,
        TrapKind::OutputLimit,
        TrapKind::UnalignedAtomic,
        TrapKind::NullReference,
        TrapKind::NoEntryPoint,
        TrapKind::Other,
        TrapKind::UnknownImport,
        TrapKind::CallDepthExceeded,
        TrapKind::UncaughtException,
        TrapKind::Deadlock,
    ];

    /// The stable name used in encodings, JSON and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            TrapKind::Unreachable => "unreachable",
            TrapKind::MemoryOutOfBounds => "memory_out_of_bounds",
            TrapKind::IntegerDivideByZero => "integer_divide_by_zero",
            TrapKind::IntegerOverflow => "integer_overflow",
            TrapKind::BadConversionToInteger => "bad_conversion_to_integer",
            TrapKind::IndirectCallTypeMismatch => "indirect_call_type_mismatch",
            TrapKind::IndirectCallToNull => "indirect_call_to_null",
            TrapKind::TableOutOfBounds => "table_out_of_bounds",
            TrapKind::StackOverflow => "stack_overflow",
            TrapKind::OutOfFuel => "out_of_fuel",
            TrapKind::MemoryLimit => "memory_limit",
            TrapKind::StdoutLimit => "stdout_limit",
            TrapKind::StderrLimit => "stderr_limit",
            TrapKind::OutputLimit => "output_limit",
            TrapKind::UnalignedAtomic => "unaligned_atomic",
            TrapKind::NullReference => "null_reference",
            TrapKind::NoEntryPoint => "no_entry_point",
            TrapKind::Other => "other",
            TrapKind::UnknownImport => "unknown_import",
            TrapKind::CallDepthExceeded => "call_depth_exceeded",
            TrapKind::UncaughtException => "uncaught_exception",
            TrapKind::Deadlock => "deadlock",
        }
    }
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A trap kind name that canon does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trap kind {0:?}")]
pub struct UnknownTrapKind(pub String);

impl FromStr for TrapKind {
    type Err = UnknownTrapKind;
    fn from_str(s: &str) -> Result<TrapKind, UnknownTrapKind> {
        TrapKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownTrapKind(s.to_string()))
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Termination {
    /// The guest called `proc_exit` (or returned from `_start`: code 0).
    Exit(u32),
    /// The guest trapped or hit a limit.
    Trap(TrapKind),
}

impl Termination {
    /// The exit code, if the guest exited.
    pub fn exit_code(&self) -> Option<u32> {
        match self {
            Termination::Exit(c) => Some(*c),
            Termination::Trap(_) => None,
        }
    }

    /// The trap kind, if the guest trapped.
    pub fn trap(&self) -> Option<TrapKind> {
        match self {
            Termination::Exit(_) => None,
            Termination::Trap(t) => Some(*t),
        }
    }
}

impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Termination::Exit(c) => write!(f, "exit {c}"),
            Termination::Trap(t) => write!(f, "trap {t}"),
        }
    }
}

/// Everything a run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// How the run ended.
    pub termination: Termination,
    /// Fuel consumed (instructions metered by the engine).
    pub fuel_consumed: u64,
    /// Bytes the guest wrote to stdout.
    pub stdout: Vec<u8>,
    /// Bytes the guest wrote to stderr.
    pub stderr: Vec<u8>,
    /// The final content of every writable mount, as one tree whose top-level
    /// names are the mounts' places without the leading `/` (so a top-level
    /// name holds `/` for a mount at `/data/sub`, is `data` for a relative
    /// `data`, and is empty for a mount at `/`: write it out with
    /// [`Outcome::write_outputs`], not [`Tree::write_to`]).
    pub outputs: Tree,
}

/// The digests of an outcome's parts, and the outcome digest built from them.
/// This is what receipts carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeSummary {
    /// How the run ended.
    pub termination: Termination,
    /// Fuel consumed.
    pub fuel_consumed: u64,
    /// SHA-256 of stdout.
    pub stdout_sha256: Digest,
    /// SHA-256 of stderr.
    pub stderr_sha256: Digest,
    /// The output manifest (paths absolute in the guest).
    pub manifest: Manifest,
    /// Digest of the manifest (`canon/manifest/v1`).
    pub manifest_digest: Digest,
    /// The outcome digest (`canon/outcome/v1`).
    pub outcome_digest: OutcomeDigest,
}

impl Outcome {
    /// The output manifest, paths absolute in the guest (`/out/a.txt`).
    pub fn manifest(&self) -> Manifest {
        let mut m = Manifest::default();
        for (name, node) in &self.outputs.entries {
            match node {
                // A mount at `/`: its own entries are the top-level paths.
                Node::Dir(t) if name.is_empty() => {
                    m.entries.extend(t.manifest().entries.into_iter().map(|mut e| {
                        e.path.insert(0, '/');
                        e
                    }));
                    m.entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
                }
                Node::Dir(t) => m.extend_from_tree(&format!("/{name}"), t),
                _ => {}
            }
        }
        m
    }

    /// Writes the output tree below the host directory `dir`, which must
    /// exist and be new: each writable mount at its guest path without the
    /// leading `/`, so guest `/out/a.txt` becomes `dir/out/a.txt`, a mount
    /// at `/data/sub` becomes `dir/data/sub`, a relative `data` becomes
    /// `dir/data` and a mount at `/` fills `dir` itself.
    ///
    /// A guest path is data, never host path syntax: it is split at `/` and
    /// each part must be a plain entry name ([`crate::tree::is_entry_name`]),
    /// so no output lands outside `dir`; two outputs at the same place (one
    /// mount inside another) are refused; and everything is written by
    /// [`Tree::write_to`], which creates every entry new and never follows a
    /// symbolic link.
    pub fn write_outputs(&self, dir: &Path) -> Result<(), TreeError> {
        let mut root = Tree::new();
        // Directories made here only to hold a mount at a deeper guest path;
        // no output may land on anything else that is already placed.
        let mut made: BTreeSet<String> = BTreeSet::new();
        for (guest, node) in &self.outputs.entries {
            if guest.is_empty() {
                // A mount at `/`: its entries go at the top.
                let Node::Dir(t) = node else { return Err(TreeError::BadName { dir: dir.to_path_buf(), name: String::new() }) };
                for (name, child) in &t.entries {
                    if root.entries.contains_key(name) {
                        return Err(TreeError::Overlap(dir.join(name)));
                    }
                    root.entries.insert(name.clone(), child.clone());
                }
                continue;
            }
            let parts: Vec<&str> = guest.split('/').collect();
            if let Some(bad) = parts.iter().find(|p| !is_entry_name(p)) {
                return Err(TreeError::BadName { dir: dir.to_path_buf(), name: (*bad).to_string() });
            }
            let Some((last, parents)) = parts.split_last() else { continue };
            let mut at = &mut root;
            let mut so_far = String::new();
            for part in parents {
                if !so_far.is_empty() {
                    so_far.push('/');
                }
                so_far.push_str(part);
                if !at.entries.contains_key(*part) {
                    made.insert(so_far.clone());
                    at.entries.insert(part.to_string(), Node::Dir(Tree::new()));
                }
                match at.entries.get_mut(*part) {
                    Some(Node::Dir(sub)) if made.contains(&so_far) => at = sub,
                    _ => return Err(TreeError::Overlap(dir.join(&so_far))),
                }
            }
            if at.entries.contains_key(*last) {
                return Err(TreeError::Overlap(dir.join(guest)));
            }
            at.entries.insert(last.to_string(), node.clone());
        }
        root.write_to(dir)
    }

    /// Computes the digests of every part and the outcome digest.
    pub fn summary(&self) -> OutcomeSummary {
        let manifest = self.manifest();
        let manifest_digest = manifest.digest();
        let stdout_sha256 = Digest::of(&self.stdout);
        let stderr_sha256 = Digest::of(&self.stderr);
        let outcome_digest = outcome_digest(&self.termination, self.fuel_consumed, &stdout_sha256, &stderr_sha256, &manifest_digest);
        OutcomeSummary {
            termination: self.termination,
            fuel_consumed: self.fuel_consumed,
            stdout_sha256,
            stderr_sha256,
            manifest,
            manifest_digest,
            outcome_digest,
        }
    }
}

/// The canonical encoding `canon/outcome/v1` of an outcome's parts.
pub fn encode_outcome(termination: &Termination, fuel_consumed: u64, stdout_sha256: &Digest, stderr_sha256: &Digest, manifest_digest: &Digest) -> Vec<u8> {
    let mut e = Encoder::new("canon/outcome/v1");
    match termination {
        Termination::Exit(code) => e.u8(0).u32(*code),
        Termination::Trap(kind) => e.u8(1).str(kind.as_str()),
    };
    e.u64(fuel_consumed).digest(stdout_sha256).digest(stderr_sha256).digest(manifest_digest);
    e.into_bytes()
}

/// The outcome digest: SHA-256 of [`encode_outcome`].
pub fn outcome_digest(
    termination: &Termination,
    fuel_consumed: u64,
    stdout_sha256: &Digest,
    stderr_sha256: &Digest,
    manifest_digest: &Digest,
) -> OutcomeDigest {
    OutcomeDigest::new(Digest::of(&encode_outcome(termination, fuel_consumed, stdout_sha256, stderr_sha256, manifest_digest)))
}

impl OutcomeSummary {
    /// The SHA-256 of every byte string the outcome names: stdout, stderr,
    /// and each output file and symbolic-link target (what a copy of the
    /// outcome must carry besides the summary).
    pub fn blob_digests(&self) -> impl Iterator<Item = Digest> + '_ {
        [self.stdout_sha256, self.stderr_sha256].into_iter().chain(self.manifest.entries.iter().filter(|e| e.kind != crate::tree::Kind::Dir).map(|e| e.sha256))
    }

    /// Recomputes the outcome digest from the parts; a receipt whose claimed
    /// digest differs from this is inconsistent.
    pub fn recompute_digest(&self) -> OutcomeDigest {
        outcome_digest(&self.termination, self.fuel_consumed, &self.stdout_sha256, &self.stderr_sha256, &self.manifest_digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trap_names_round_trip() {
        for k in TrapKind::ALL {
            assert_eq!(k.as_str().parse::<TrapKind>(), Ok(k));
        }
    }

    fn outputs(mounts: &[(&str, Node)]) -> Outcome {
        let mut outputs = Tree::new();
        for (guest, node) in mounts {
            outputs.entries.insert(guest.to_string(), node.clone());
        }
        Outcome { termination: Termination::Exit(0), fuel_consumed: 0, stdout: vec![], stderr: vec![], outputs }
    }

    fn dir_with(name: &str) -> Node {
        let mut t = Tree::new();
        t.entries.insert(name.into(), Node::File(std::sync::Arc::new(b"x".to_vec())));
        Node::Dir(t)
    }

    #[test]
    fn outputs_are_laid_out_at_their_guest_paths() {
        let root = tempfile::tempdir().expect("tempdir");
        let o = outputs(&[("out", dir_with("a")), ("data/sub", dir_with("b")), ("data/other", dir_with("c"))]);
        o.write_outputs(root.path()).expect("write");
        for f in ["out/a", "data/sub/b", "data/other/c"] {
            assert!(root.path().join(f).is_file(), "{f}");
        }
    }

    #[test]
    fn a_root_mount_fills_the_directory_and_its_paths_start_at_the_root() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut tree = Tree::new();
        tree.entries.insert("a".into(), dir_with("b"));
        tree.entries.insert("c".into(), Node::File(std::sync::Arc::new(b"y".to_vec())));
        let o = outputs(&[("", Node::Dir(tree))]);
        o.write_outputs(root.path()).expect("write");
        assert!(root.path().join("a/b").is_file() && root.path().join("c").is_file());
        let paths: Vec<String> = o.manifest().entries.into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["/a", "/a/b", "/c"]);
        assert_eq!(outputs(&[("data", dir_with("b"))]).manifest().entries[0].path, "/data/b");
    }

    #[test]
    fn outputs_that_would_leave_the_directory_or_overlap_are_refused() {
        for (mounts, overlap) in [
            (vec![("..", dir_with("a"))], false),
            (vec![("a/../../b", dir_with("a"))], false),
            (vec![("", Node::File(std::sync::Arc::new(vec![])))], false),
            (vec![("", dir_with("a")), ("a", dir_with("b"))], true),
            (vec![("./a", dir_with("a"))], false),
            (vec![("a//b", dir_with("a"))], false),
            (vec![("a", dir_with("b")), ("a/b", dir_with("c"))], true),
            (vec![("a", dir_with("x")), ("a/b", dir_with("c"))], true),
        ] {
            let root = tempfile::tempdir().expect("tempdir");
            let out = root.path().join("out");
            std::fs::create_dir(&out).expect("mkdir");
            let err = outputs(&mounts).write_outputs(&out).expect_err("refused");
            assert_eq!(matches!(err, TreeError::Overlap(_)), overlap, "{mounts:?}: {err}");
            assert_eq!(std::fs::read_dir(&out).expect("ls").count(), 0, "{mounts:?}: written before refusing");
            assert_eq!(std::fs::read_dir(root.path()).expect("ls").count(), 1, "{mounts:?}");
        }
    }

    #[test]
    fn summary_is_self_consistent() {
        let o = Outcome { termination: Termination::Exit(3), fuel_consumed: 10, stdout: b"x".to_vec(), stderr: vec![], outputs: Default::default() };
        let s = o.summary();
        assert_eq!(s.recompute_digest(), s.outcome_digest);
        let o2 = Outcome { fuel_consumed: 11, ..o };
        assert_ne!(o2.summary().outcome_digest, s.outcome_digest);
    }
}
