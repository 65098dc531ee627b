//! Receipts: what a node signs after a run, and how anyone checks one.
//!
//! A receipt is an in-toto Statement v1 ([`statement`]) whose predicate
//! (`https://canon.dev/receipt/v1`) names the job digest, the run, the node,
//! the engine and the outcome with every part digest, wrapped in a DSSE
//! envelope ([`dsse`]) signed with the node's ed25519 key. A node whose run
//! trapped still signs: a trap is an outcome like any other.
//!
//! ```
//! use canon::digest::{Digest, JobDigest};
//! use canon::node::NodeKey;
//! use canon::outcome::{Outcome, Termination};
//! use canon::receipt::{self, Engine, RunFacts, RunId, Statement, Timestamp};
//!
//! let key = NodeKey::from_seed(&[1; 32]);
//! let outcome = Outcome { termination: Termination::Exit(0), fuel_consumed: 7,
//!     stdout: b"hi\n".to_vec(), stderr: vec![], outputs: Default::default() };
//! let now = Timestamp::now();
//! let facts = RunFacts { job_digest: JobDigest::new(Digest::of(b"job")), run_id: RunId::new_v4(),
//!     engine: Engine::current("cranelift"), outcome: outcome.summary(), started: now, finished: now };
//! let envelope = Statement::new(key.node_id(), facts).sign(&key)?;
//! let verified = receipt::verify_envelope(&envelope.to_json())?;
//! assert_eq!(verified.node(), key.node_id());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What verification checks, in order
//!
//! 1. The envelope is JSON with `payload`, `payloadType`, `signatures`, and
//!    base64 where base64 belongs ([`ReceiptError::Envelope`]).
//! 2. `payloadType` is `application/vnd.in-toto+json` ([`ReceiptError::PayloadType`]).
//! 3. Exactly one signature ([`ReceiptError::SignatureCount`]): a receipt is
//!    one node's vote, so a second signature would make "who voted"
//!    ambiguous. Co-signing is done by sending more receipts.
//! 4. Its `keyid` is an ed25519 `did:key` ([`ReceiptError::KeyId`]) and its
//!    `sig` is 64 bytes ([`ReceiptError::SignatureEncoding`]).
//! 5. The signature verifies under `verify_strict` over the DSSE PAE
//!    ([`ReceiptError::BadSignature`]). A flipped bit, a different signer and
//!    a payload changed after signing are cryptographically the same event
//!    and get this one reason. Nothing in the payload is parsed before this.
//! 6. The payload is a Statement v1 ([`ReceiptError::Statement`],
//!    [`ReceiptError::StatementType`]) with canon's predicate type
//!    ([`ReceiptError::PredicateType`]), made by the node that signed it
//!    ([`ReceiptError::NodeMismatch`]).
//! 7. The manifest is sorted, without duplicates, paths absolute
//!    ([`ReceiptError::Manifest`]) and hashes to its digest
//!    ([`ReceiptError::ManifestDigest`]); the outcome digest is recomputed
//!    from its parts ([`ReceiptError::OutcomeDigest`]); the subjects are
//!    exactly stdout, stderr and the manifest's files
//!    ([`ReceiptError::Subjects`]).
//!
//! Then, when asked: the job digest equals an expected one
//! ([`VerifiedReceipt::check_job`]) and artifacts on disk hash to the
//! subjects ([`VerifiedReceipt::check_artifacts`]).
//!
//! [`verify_many`] does the same for many receipts at once, in parallel, and
//! gives each receipt the answer [`verify_envelope`] gives it.

pub mod dsse;
pub mod statement;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::Signature;
use rayon::prelude::*;
use serde::Serialize;

use crate::digest::{Digest, JobDigest, OutcomeDigest};
use crate::node::{NodeId, NodeKey, ParseNodeIdError};
use crate::tree::{Change, Manifest, Tree};

pub use dsse::{Envelope, EnvelopeSignature, IN_TOTO_PAYLOAD_TYPE, pae};
pub use statement::{
    DigestSet, Engine, JobRequestRef, PREDICATE_TYPE, Predicate, RunFacts, RunId, STATEMENT_TYPE, STDERR_SUBJECT, STDOUT_SUBJECT, Statement, Subject, Timestamp,
};

/// The determinism ABI version and wasmtime version receipts record; the
/// sandbox owns both.
pub use crate::abi::{DETERMINISM_ABI, WASMTIME_VERSION};

/// This crate's version, as written into receipts.
pub const CANON_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Largest envelope canon reads (bytes). A receipt with a manifest of tens of
/// thousands of files stays well below it; anything larger is refused before
/// parsing.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024 * 1024;

/// Why a statement could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The statement names another node than the signing key.
    #[error("statement names node {statement}, but the signing key is {key}")]
    NodeMismatch {
        /// The node in the statement.
        statement: NodeId,
        /// The key's node id.
        key: NodeId,
    },
    /// The statement could not be serialised.
    #[error("cannot serialise statement: {0}")]
    Json(String),
}

/// Why a receipt is not valid. Each variant is one distinct reason; its
/// [`code`](ReceiptError::code) is stable and used in JSON output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Larger than [`MAX_ENVELOPE_BYTES`].
    #[error("envelope is {0} bytes, more than the limit of {MAX_ENVELOPE_BYTES}")]
    TooLarge(usize),
    /// Not a well-formed DSSE envelope (bad JSON, missing field, bad base64).
    #[error("malformed DSSE envelope: {0}")]
    Envelope(String),
    /// `payloadType` is not the in-toto one.
    #[error("payloadType is {0:?}, expected \"application/vnd.in-toto+json\"")]
    PayloadType(String),
    /// Not exactly one signature.
    #[error("envelope has {0} signatures; a canon receipt has exactly one")]
    SignatureCount(usize),
    /// The keyid is not an ed25519 did:key.
    #[error("signature keyid: {0}")]
    KeyId(ParseNodeIdError),
    /// The signature is not 64 bytes.
    #[error("signature is {0} bytes, an ed25519 signature is 64")]
    SignatureEncoding(usize),
    /// The signature does not verify.
    #[error("signature does not verify for {0} (forged, made by another key, or the payload changed after signing)")]
    BadSignature(NodeId),
    /// The payload is not a JSON in-toto statement with a canon predicate.
    #[error("payload is not a valid canon receipt statement: {0}")]
    Statement(String),
    /// `_type` is not in-toto Statement v1.
    #[error("statement _type is {0:?}, expected \"https://in-toto.io/Statement/v1\"")]
    StatementType(String),
    /// `predicateType` is not canon's receipt.
    #[error("predicateType is {0:?}, expected \"https://canon.dev/receipt/v1\"")]
    PredicateType(String),
    /// The predicate's node is not the signer.
    #[error("statement claims node {claimed}, but was signed by {signer}")]
    NodeMismatch {
        /// The node named in the predicate.
        claimed: NodeId,
        /// The key that signed.
        signer: NodeId,
    },
    /// The manifest is not sorted, has duplicates or relative paths.
    #[error("manifest is malformed: {0}")]
    Manifest(String),
    /// The manifest does not hash to its claimed digest.
    #[error("manifest digest is {claimed}, but the manifest hashes to {computed}")]
    ManifestDigest {
        /// Digest in the receipt.
        claimed: Digest,
        /// Digest of the manifest in the receipt.
        computed: Digest,
    },
    /// The outcome digest does not follow from its parts.
    #[error("outcome digest is {claimed}, but its parts hash to {computed}")]
    OutcomeDigest {
        /// Digest in the receipt.
        claimed: OutcomeDigest,
        /// Digest recomputed from the parts.
        computed: OutcomeDigest,
    },
    /// Subjects are not exactly stdout, stderr and the manifest's files.
    #[error("subjects do not match the outcome: {0}")]
    Subjects(String),
    /// The receipt is for another job than expected.
    #[error("receipt is for job {found}, expected job {expected}")]
    JobMismatch {
        /// The job the caller expected.
        expected: JobDigest,
        /// The job in the receipt.
        found: JobDigest,
    },
    /// An artifact the receipt names is missing on disk.
    #[error("artifact {subject} is missing: {path} does not exist")]
    ArtifactMissing {
        /// The subject name.
        subject: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// An artifact on disk does not hash to its subject.
    #[error("artifact {subject} ({path}) has sha256 {found}, the receipt says {expected}")]
    ArtifactMismatch {
        /// The subject name.
        subject: String,
        /// The file.
        path: PathBuf,
        /// Digest in the receipt.
        expected: Digest,
        /// Digest of the file.
        found: Digest,
    },
    /// The output tree on disk differs from the manifest in other ways
    /// (an extra file, a directory or link that differs).
    #[error("output tree {path} differs from the receipt's manifest: {reason}")]
    ArtifactTree {
        /// The directory compared.
        path: PathBuf,
        /// The first difference.
        reason: String,
    },
    /// Reading an artifact failed.
    #[error("cannot read artifact {path}: {reason}")]
    ArtifactIo {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
}

impl ReceiptError {
    /// A stable short code for this reason, for JSON and scripts.
    pub fn code(&self) -> &'static str {
        match self {
            ReceiptError::TooLarge(_) => "too_large",
            ReceiptError::Envelope(_) => "malformed_envelope",
            ReceiptError::PayloadType(_) => "wrong_payload_type",
            ReceiptError::SignatureCount(_) => "signature_count",
            ReceiptError::KeyId(_) => "bad_keyid",
            ReceiptError::SignatureEncoding(_) => "bad_signature_encoding",
            ReceiptError::BadSignature(_) => "bad_signature",
            ReceiptError::Statement(_) => "malformed_statement",
            ReceiptError::StatementType(_) => "wrong_statement_type",
            ReceiptError::PredicateType(_) => "wrong_predicate_type",
            ReceiptError::NodeMismatch { .. } => "node_mismatch",
            ReceiptError::Manifest(_) => "malformed_manifest",
            ReceiptError::ManifestDigest { .. } => "manifest_digest_mismatch",
            ReceiptError::OutcomeDigest { .. } => "outcome_digest_mismatch",
            ReceiptError::Subjects(_) => "subject_mismatch",
            ReceiptError::JobMismatch { .. } => "job_mismatch",
            ReceiptError::ArtifactMissing { .. } => "artifact_missing",
            ReceiptError::ArtifactMismatch { .. } => "artifact_mismatch",
            ReceiptError::ArtifactTree { .. } => "artifact_tree_mismatch",
            ReceiptError::ArtifactIo { .. } => "artifact_unreadable",
        }
    }

    /// The signer, when the envelope got far enough to name a valid one.
    pub fn signer(&self) -> Option<NodeId> {
        match self {
            ReceiptError::BadSignature(n) => Some(*n),
            ReceiptError::NodeMismatch { signer, .. } => Some(*signer),
            _ => None,
        }
    }
}

impl Statement {
    /// Serialises this statement and signs it with `key` in a DSSE envelope.
    /// Fails if the statement names another node than `key`.
    pub fn sign(&self, key: &NodeKey) -> Result<Envelope, SignError> {
        if self.predicate.node != key.node_id() {
            return Err(SignError::NodeMismatch { statement: self.predicate.node, key: key.node_id() });
        }
        let payload = serde_json::to_vec(self).map_err(|e| SignError::Json(e.to_string()))?;
        Ok(Envelope::sign(IN_TOTO_PAYLOAD_TYPE, payload, key))
    }
}

/// A receipt whose signature and internal consistency have been checked.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedReceipt {
    /// The signed statement.
    pub statement: Statement,
    /// SHA-256 of the payload (names this exact statement).
    pub payload_sha256: Digest,
}

impl VerifiedReceipt {
    /// The node that signed (and ran) it.
    pub fn node(&self) -> NodeId {
        self.statement.predicate.node
    }

    /// The job it is about.
    pub fn job(&self) -> JobDigest {
        self.statement.predicate.job_digest
    }

    /// The outcome digest it vouches for.
    pub fn outcome_digest(&self) -> OutcomeDigest {
        self.statement.predicate.outcome.outcome_digest
    }

    /// Fails with [`ReceiptError::JobMismatch`] unless the receipt is for `expected`.
    pub fn check_job(&self, expected: &JobDigest) -> Result<(), ReceiptError> {
        if self.job() != *expected {
            return Err(ReceiptError::JobMismatch { expected: *expected, found: self.job() });
        }
        Ok(())
    }

    /// Checks artifacts on disk against the receipt. `dir` is laid out as
    /// `canon run --out DIR` writes it: `DIR/stdout`, `DIR/stderr`, and each
    /// guest path with its leading `/` removed (`/out/a.txt` is
    /// `DIR/out/a.txt`). Every subject must exist and hash to its digest, and
    /// nothing else may be there: each top-level output directory the
    /// manifest names must hold exactly the manifest's entries (no extra
    /// files, same links and directories), any other directory must be empty
    /// (a writable mount the run left empty, which a manifest cannot name),
    /// and the only other files allowed are the records `canon run` writes
    /// beside the artifacts ([`RUN_RECORDS`], `receipt-N.json`).
    pub fn check_artifacts(&self, dir: &Path) -> Result<(), ReceiptError> {
        for subject in &self.statement.subject {
            let rel = match subject.name.as_str() {
                STDOUT_SUBJECT => "stdout",
                STDERR_SUBJECT => "stderr",
                name => name.trim_start_matches('/'),
            };
            let path = dir.join(rel);
            let bytes = fs::read(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ReceiptError::ArtifactMissing { subject: subject.name.clone(), path: path.clone() },
                _ => ReceiptError::ArtifactIo { path: path.clone(), reason: e.to_string() },
            })?;
            let found = Digest::of(&bytes);
            if found != subject.digest.sha256 {
                return Err(ReceiptError::ArtifactMismatch { subject: subject.name.clone(), path, expected: subject.digest.sha256, found });
            }
        }
        let manifest = &self.statement.predicate.outcome.manifest;
        let mounts: std::collections::BTreeSet<&str> = manifest.entries.iter().filter_map(|e| e.path.trim_start_matches('/').split('/').next()).collect();
        let mut on_disk = Manifest::default();
        for mount in &mounts {
            let path = dir.join(mount);
            let tree = Tree::load_dir(&path, u64::MAX).map_err(|e| ReceiptError::ArtifactIo { path: path.clone(), reason: e.to_string() })?;
            on_disk.extend_from_tree(&format!("/{mount}"), &tree);
        }
        if let Some(reason) = first_manifest_difference(manifest, &on_disk) {
            return Err(ReceiptError::ArtifactTree { path: dir.to_path_buf(), reason });
        }
        let io_err = |path: &Path, e: std::io::Error| ReceiptError::ArtifactIo { path: path.to_path_buf(), reason: e.to_string() };
        let unnamed = |reason: String| Err(ReceiptError::ArtifactTree { path: dir.to_path_buf(), reason });
        let mut entries: Vec<_> = fs::read_dir(dir).and_then(|d| d.collect::<Result<Vec<_>, _>>()).map_err(|e| io_err(dir, e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "stdout" || name == "stderr" || mounts.contains(name.as_str()) {
                continue;
            }
            let kind = entry.file_type().map_err(|e| io_err(&entry.path(), e))?;
            if kind.is_file() && is_run_record(&name) {
                continue;
            }
            if kind.is_dir() {
                let mut inside: Vec<_> = fs::read_dir(entry.path()).and_then(|d| d.collect::<Result<Vec<_>, _>>()).map_err(|e| io_err(&entry.path(), e))?;
                inside.sort_by_key(|e| e.file_name());
                match inside.first() {
                    None => continue,
                    Some(e) => return unnamed(format!("/{name}/{} is not in the receipt's manifest", e.file_name().to_string_lossy())),
                }
            }
            return unnamed(format!("{name} is named by no subject"));
        }
        Ok(())
    }
}

/// Files `canon run --out DIR` writes beside the artifacts, which
/// [`VerifiedReceipt::check_artifacts`] allows at the top of DIR (with
/// `receipt-N.json`, a node's further receipts).
pub const RUN_RECORDS: [&str; 2] = ["outcome.json", "receipt.json"];

fn is_run_record(name: &str) -> bool {
    RUN_RECORDS.contains(&name)
        || name.strip_prefix("receipt-").and_then(|n| n.strip_suffix(".json")).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The first difference between a receipt's manifest and one read from disk.
fn first_manifest_difference(claimed: &Manifest, found: &Manifest) -> Option<String> {
    claimed.changes(found).first().map(|change| match change {
        Change::Removed(c) => format!("{} is missing", c.path),
        Change::Added(f) => format!("{} is not in the receipt's manifest", f.path),
        Change::Changed(c, f) => format!(
            "{} is a {:?} of {} bytes with sha256 {}, the receipt says a {:?} of {} bytes with sha256 {}",
            c.path, f.kind, f.size, f.sha256, c.kind, c.size, c.sha256
        ),
    })
}

/// An envelope that parsed, with a well-formed signer and signature, whose
/// signature is not yet checked.
struct Parsed {
    signer: NodeId,
    key: ed25519_dalek::VerifyingKey,
    signature: Signature,
    pae: Vec<u8>,
    payload: Vec<u8>,
}

fn parse_envelope(bytes: &[u8]) -> Result<Parsed, ReceiptError> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(ReceiptError::TooLarge(bytes.len()));
    }
    let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| ReceiptError::Envelope(e.to_string()))?;
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(ReceiptError::PayloadType(envelope.payload_type));
    }
    let [sig] = envelope.signatures.as_slice() else {
        return Err(ReceiptError::SignatureCount(envelope.signatures.len()));
    };
    let (signer, key) = NodeId::parse_with_key(&sig.keyid).map_err(ReceiptError::KeyId)?;
    let sig_bytes: &[u8; 64] = sig.sig.as_slice().try_into().map_err(|_| ReceiptError::SignatureEncoding(sig.sig.len()))?;
    let signature = Signature::from_bytes(sig_bytes);
    let pae = envelope.pae();
    Ok(Parsed { signer, key, signature, pae, payload: envelope.payload })
}

/// Only `_type` and `predicateType`, to explain why a payload is not a receipt.
#[derive(serde::Deserialize)]
struct StatementHeader {
    #[serde(rename = "_type")]
    statement_type: Option<String>,
    #[serde(rename = "predicateType")]
    predicate_type: Option<String>,
}

/// Checks everything after the signature: steps 6 and 7 of the module doc.
fn check_statement(signer: NodeId, payload: &[u8]) -> Result<VerifiedReceipt, ReceiptError> {
    let statement: Statement = match serde_json::from_slice(payload) {
        Ok(s) => s,
        Err(e) => {
            // Say the more useful thing when the payload is some other statement.
            if let Ok(h) = serde_json::from_slice::<StatementHeader>(payload) {
                if let Some(t) = h.statement_type.filter(|t| t != STATEMENT_TYPE) {
                    return Err(ReceiptError::StatementType(t));
                }
                if let Some(t) = h.predicate_type.filter(|t| t != PREDICATE_TYPE) {
                    return Err(ReceiptError::PredicateType(t));
                }
            }
            return Err(ReceiptError::Statement(e.to_string()));
        }
    };
    if statement.statement_type != STATEMENT_TYPE {
        return Err(ReceiptError::StatementType(statement.statement_type));
    }
    if statement.predicate_type != PREDICATE_TYPE {
        return Err(ReceiptError::PredicateType(statement.predicate_type));
    }
    let predicate = &statement.predicate;
    if predicate.node != signer {
        return Err(ReceiptError::NodeMismatch { claimed: predicate.node, signer });
    }
    let outcome = &predicate.outcome;
    for pair in outcome.manifest.entries.windows(2) {
        if pair[0].path.as_bytes() >= pair[1].path.as_bytes() {
            return Err(ReceiptError::Manifest(format!("{:?} is not before {:?} (entries must be sorted and unique)", pair[0].path, pair[1].path)));
        }
    }
    if let Some(e) =
        outcome.manifest.entries.iter().find(|e| !e.path.starts_with('/') || e.path.split('/').skip(1).any(|c| c.is_empty() || c == "." || c == ".."))
    {
        return Err(ReceiptError::Manifest(format!("{:?} is not a normalised absolute guest path", e.path)));
    }
    let manifest_digest = outcome.manifest.digest();
    if manifest_digest != outcome.manifest_digest {
        return Err(ReceiptError::ManifestDigest { claimed: outcome.manifest_digest, computed: manifest_digest });
    }
    let computed = outcome.recompute_digest();
    if computed != outcome.outcome_digest {
        return Err(ReceiptError::OutcomeDigest { claimed: outcome.outcome_digest, computed });
    }
    let claimed = statement.subject_map().ok_or_else(|| ReceiptError::Subjects("a subject name appears twice".into()))?;
    let expected = statement::subjects_of(outcome);
    let expected: BTreeMap<&str, Digest> = expected.iter().map(|s| (s.name.as_str(), s.digest.sha256)).collect();
    if claimed != expected {
        let reason = expected
            .iter()
            .find_map(|(name, d)| match claimed.get(name) {
                None => Some(format!("no subject {name:?}")),
                Some(c) if c != d => Some(format!("subject {name:?} has sha256 {c}, the outcome says {d}")),
                Some(_) => None,
            })
            .or_else(|| claimed.keys().find(|n| !expected.contains_key(*n)).map(|n| format!("subject {n:?} is not in the outcome")))
            .unwrap_or_default();
        return Err(ReceiptError::Subjects(reason));
    }
    Ok(VerifiedReceipt { payload_sha256: Digest::of(payload), statement })
}

/// Verifies one envelope (JSON bytes): every check of the module doc, the
/// signature with `verify_strict`.
pub fn verify_envelope(bytes: &[u8]) -> Result<VerifiedReceipt, ReceiptError> {
    let p = parse_envelope(bytes)?;
    p.key.verify_strict(&p.pae, &p.signature).map_err(|_| ReceiptError::BadSignature(p.signer))?;
    check_statement(p.signer, &p.payload)
}

/// Reads an envelope that was verified before (by this process, or by the
/// store it came back from, which verified it on arrival): every check of
/// [`verify_envelope`] but the signature, which is most of its cost.
/// Never use it on bytes from outside.
pub fn reread_verified(bytes: &[u8]) -> Result<VerifiedReceipt, ReceiptError> {
    let p = parse_envelope(bytes)?;
    check_statement(p.signer, &p.payload)
}

/// Verifies many envelopes in parallel; result `i` is for `envelopes[i]` and
/// is exactly [`verify_envelope`]`(envelopes[i])`.
///
/// Each signature is checked on its own with `verify_strict`, so whether a
/// receipt is valid never depends on which other receipts are verified with
/// it. ed25519 batch verification is not used: its equation weighs each
/// signature by a coefficient drawn from the whole batch, and a signature
/// with a small-order component (in `R` or in the key) that `verify_strict`
/// rejects passes it for some coefficients. Re-checking only the batches that
/// failed made the same receipt count in one set of receipts and not in
/// another, and `canon quorum` disagree with `canon verify`.
pub fn verify_many<B: AsRef<[u8]> + Sync>(envelopes: &[B]) -> Vec<Result<VerifiedReceipt, ReceiptError>> {
    envelopes.par_iter().map(|b| verify_envelope(b.as_ref())).collect()
}

/// A verification result for JSON output: the reason's code and message.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorReport {
    /// [`ReceiptError::code`].
    pub code: &'static str,
    /// The full message.
    pub message: String,
}

impl From<&ReceiptError> for ErrorReport {
    fn from(e: &ReceiptError) -> ErrorReport {
        ErrorReport { code: e.code(), message: e.to_string() }
    }
}
