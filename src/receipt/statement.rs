//! The in-toto Statement (v1) a node signs after a run.
//!
//! ```json
//! {
//!   "_type": "https://in-toto.io/Statement/v1",
//!   "subject": [
//!     {"name": "canon:stdout", "digest": {"sha256": "…"}},
//!     {"name": "canon:stderr", "digest": {"sha256": "…"}},
//!     {"name": "/out/a.txt",   "digest": {"sha256": "…"}}
//!   ],
//!   "predicateType": "https://canon.dev/receipt/v1",
//!   "predicate": {
//!     "jobDigest": "…", "runId": "…uuid…", "node": "did:key:z6Mk…",
//!     "engine": {"canon": "0.1.0", "wasmtime": "48.0.8", "backend": "cranelift", "determinismAbi": 1},
//!     "outcome": {
//!       "exitCode": 0,                 // or "trap": "out_of_fuel" — exactly one of the two
//!       "fuelConsumed": 1234,
//!       "stdout": {"sha256": "…"}, "stderr": {"sha256": "…"},
//!       "manifest": [{"path": "/out/a.txt", "kind": "file", "size": 3, "sha256": "…"}],
//!       "manifestDigest": "…", "digest": "…"
//!     },
//!     "started": "2026-01-02T03:04:05Z", "finished": "2026-01-02T03:04:06Z"
//!   }
//! }
//! ```
//!
//! Subjects are stdout and stderr under the reserved names [`STDOUT_SUBJECT`]
//! and [`STDERR_SUBJECT`] (guest paths always start with `/`, so they cannot
//! clash), then every regular file of the output manifest under its guest
//! path. Directories and symbolic links are in the manifest, not subjects.
//! `started`/`finished` are informational wall-clock times and are not part
//! of the outcome digest. The full format is in `docs/ENCODINGS.md`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::digest::{Digest, JobDigest, OutcomeDigest};
use crate::node::NodeId;
use crate::outcome::{OutcomeSummary, Termination, TrapKind};
use crate::tree::{Kind, Manifest, ManifestEntry};

/// `_type` of every in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";

/// `predicateType` of a canon receipt, version 1.
pub const PREDICATE_TYPE: &str = "https://canon.dev/receipt/v1";

/// Subject name of the guest's stdout.
pub const STDOUT_SUBJECT: &str = "canon:stdout";

/// Subject name of the guest's stderr.
pub const STDERR_SUBJECT: &str = "canon:stderr";

/// An in-toto Statement v1 carrying a canon receipt predicate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// Always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// What the run produced: stdout, stderr and every output file.
    pub subject: Vec<Subject>,
    /// Always [`PREDICATE_TYPE`] for canon receipts.
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The receipt proper.
    pub predicate: Predicate,
}

/// One in-toto subject: a name and its digests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Guest path (`/out/a.txt`) or a reserved `canon:` name.
    pub name: String,
    /// Its digests; canon writes and requires `sha256`.
    pub digest: DigestSet,
}

/// An in-toto digest set. Other algorithms may be present and are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestSet {
    /// SHA-256, hex.
    pub sha256: Digest,
}

/// A run's id: a random (v4) UUID chosen by the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(uuid::Uuid);

impl RunId {
    /// A fresh random run id.
    pub fn new_v4() -> RunId {
        RunId(uuid::Uuid::new_v4())
    }

    /// Wraps a UUID (for tests and vectors).
    pub const fn from_uuid(id: uuid::Uuid) -> RunId {
        RunId(id)
    }

    /// The UUID.
    pub fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// What ran the job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Engine {
    /// canon's version.
    pub canon: String,
    /// wasmtime's version.
    pub wasmtime: String,
    /// wasmtime's code generator, e.g. `cranelift` or `winch`.
    pub backend: String,
    /// The determinism ABI version the outcome is a function of.
    pub determinism_abi: u32,
}

impl Engine {
    /// This build of canon, with the given backend.
    pub fn current(backend: &str) -> Engine {
        Engine {
            canon: super::CANON_VERSION.to_string(),
            wasmtime: super::WASMTIME_VERSION.to_string(),
            backend: backend.to_string(),
            determinism_abi: super::DETERMINISM_ABI,
        }
    }
}

/// An RFC 3339 UTC instant, whole seconds (`2026-01-02T03:04:05Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Now, truncated to the second.
    pub fn now() -> Timestamp {
        Timestamp::from_datetime(OffsetDateTime::now_utc())
    }

    /// The instant, converted to UTC and truncated to the second.
    pub fn from_datetime(t: OffsetDateTime) -> Timestamp {
        let t = t.to_offset(time::UtcOffset::UTC);
        Timestamp(t.replace_nanosecond(0).unwrap_or(t))
    }

    /// Seconds since the Unix epoch, UTC (for tests and vectors).
    pub fn from_unix(seconds: i64) -> Option<Timestamp> {
        OffsetDateTime::from_unix_timestamp(seconds).ok().map(Timestamp)
    }

    /// The instant.
    pub fn datetime(&self) -> OffsetDateTime {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.format(&Rfc3339) {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.0.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        let t = OffsetDateTime::parse(&s, &Rfc3339).map_err(|e| serde::de::Error::custom(format!("{s:?} is not an RFC 3339 time: {e}")))?;
        // `to_offset` panics when the instant in UTC is past the years the
        // time crate holds (9999-12-31T23:30:00-01:00 is in year 10000):
        // a signed receipt must not be able to crash a verifier.
        let utc = t.checked_to_offset(time::UtcOffset::UTC).ok_or_else(|| serde::de::Error::custom(format!("{s:?} is outside the years 0 to 9999 in UTC")))?;
        Ok(Timestamp(utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_past_the_last_year_in_utc_is_an_error_not_a_panic() {
        let r: Result<Timestamp, _> = serde_json::from_str("\"9999-12-31T23:30:00-01:00\"");
        assert!(r.expect_err("year 10000").to_string().contains("outside the years"));
        let t: Timestamp = serde_json::from_str("\"0000-01-01T00:30:00+01:00\"").expect("year -1 is held");
        assert_eq!(t.datetime().year(), -1);
    }
}

/// The receipt predicate: who ran which job, on what, and what came out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Predicate {
    /// The job's digest (`canon/job/v3`).
    pub job_digest: JobDigest,
    /// This run's id.
    pub run_id: RunId,
    /// The node that ran the job; must be the envelope's signer.
    pub node: NodeId,
    /// What ran it.
    pub engine: Engine,
    /// What came out, with every digest needed to recompute the outcome digest.
    #[serde(with = "outcome_wire")]
    pub outcome: OutcomeSummary,
    /// The signed job request (a submitter's signature) the run answered,
    /// if the job was signed; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_request: Option<JobRequestRef>,
    /// When the run started (informational, wall clock).
    pub started: Timestamp,
    /// When the run finished (informational, wall clock).
    pub finished: Timestamp,
}

/// The signed job request a receipt answers: who signed it, and the SHA-256
/// of its DSSE envelope's JSON as the worker received it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequestRef {
    /// The submitter's node id.
    pub submitter: NodeId,
    /// SHA-256 of the envelope.
    pub sha256: Digest,
}

/// Everything a node states about one run; [`Statement::new`] builds the
/// in-toto statement (subjects included) from it.
#[derive(Clone, Debug)]
pub struct RunFacts {
    /// The job's digest.
    pub job_digest: JobDigest,
    /// The run's id.
    pub run_id: RunId,
    /// What ran it.
    pub engine: Engine,
    /// The outcome's summary (`Outcome::summary()`).
    pub outcome: OutcomeSummary,
    /// Wall-clock start.
    pub started: Timestamp,
    /// Wall-clock end.
    pub finished: Timestamp,
}

impl Statement {
    /// The statement `node` makes about a run.
    pub fn new(node: NodeId, facts: RunFacts) -> Statement {
        Statement {
            statement_type: STATEMENT_TYPE.to_string(),
            subject: subjects_of(&facts.outcome),
            predicate_type: PREDICATE_TYPE.to_string(),
            predicate: Predicate {
                job_digest: facts.job_digest,
                run_id: facts.run_id,
                node,
                engine: facts.engine,
                outcome: facts.outcome,
                job_request: None,
                started: facts.started,
                finished: facts.finished,
            },
        }
    }

    /// The statement, naming the signed job request the run answered.
    pub fn answering(mut self, request: JobRequestRef) -> Statement {
        self.predicate.job_request = Some(request);
        self
    }

    /// The subjects as a map from name to SHA-256; `None` if a name repeats.
    pub fn subject_map(&self) -> Option<BTreeMap<&str, Digest>> {
        let mut map = BTreeMap::new();
        for s in &self.subject {
            if map.insert(s.name.as_str(), s.digest.sha256).is_some() {
                return None;
            }
        }
        Some(map)
    }
}

/// The subjects an outcome implies: stdout, stderr, then every regular file
/// of the manifest in manifest order.
pub fn subjects_of(outcome: &OutcomeSummary) -> Vec<Subject> {
    let mut subjects = vec![
        Subject { name: STDOUT_SUBJECT.to_string(), digest: DigestSet { sha256: outcome.stdout_sha256 } },
        Subject { name: STDERR_SUBJECT.to_string(), digest: DigestSet { sha256: outcome.stderr_sha256 } },
    ];
    subjects.extend(
        outcome.manifest.entries.iter().filter(|e| e.kind == Kind::File).map(|e| Subject { name: e.path.clone(), digest: DigestSet { sha256: e.sha256 } }),
    );
    subjects
}

/// The JSON form of an [`OutcomeSummary`] inside the predicate.
mod outcome_wire {
    use super::*;

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Wire {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trap: Option<TrapKind>,
        fuel_consumed: u64,
        stdout: DigestSet,
        stderr: DigestSet,
        manifest: Vec<ManifestEntry>,
        manifest_digest: Digest,
        digest: OutcomeDigest,
    }

    pub fn serialize<S: Serializer>(o: &OutcomeSummary, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            exit_code: o.termination.exit_code(),
            trap: o.termination.trap(),
            fuel_consumed: o.fuel_consumed,
            stdout: DigestSet { sha256: o.stdout_sha256 },
            stderr: DigestSet { sha256: o.stderr_sha256 },
            manifest: o.manifest.entries.clone(),
            manifest_digest: o.manifest_digest,
            digest: o.outcome_digest,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OutcomeSummary, D::Error> {
        let w = Wire::deserialize(d)?;
        let termination = match (w.exit_code, w.trap) {
            (Some(code), None) => Termination::Exit(code),
            (None, Some(kind)) => Termination::Trap(kind),
            (Some(_), Some(_)) => return Err(serde::de::Error::custom("outcome has both \"exitCode\" and \"trap\"; exactly one is allowed")),
            (None, None) => return Err(serde::de::Error::custom("outcome has neither \"exitCode\" nor \"trap\"")),
        };
        Ok(OutcomeSummary {
            termination,
            fuel_consumed: w.fuel_consumed,
            stdout_sha256: w.stdout.sha256,
            stderr_sha256: w.stderr.sha256,
            manifest: Manifest { entries: w.manifest },
            manifest_digest: w.manifest_digest,
            outcome_digest: w.digest,
        })
    }
}
