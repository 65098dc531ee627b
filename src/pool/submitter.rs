//! Submitter signatures: a job signed by whoever asked for it, as Horus
//! jobs carry ed25519 signatures, so that workers can refuse jobs nobody
//! they trust asked for, even from a compromised coordinator.
//!
//! # The format, `canon/job-request/v1`
//!
//! A DSSE envelope (the same envelope and key format as receipts) whose
//! `payloadType` is [`JOB_REQUEST_PAYLOAD_TYPE`] and whose payload is the
//! JSON object `{"_type":"canon/job-request/v1","jobDigest":"<64 hex>"}`,
//! exactly those two fields. What is signed is the job digest: the bundle a
//! worker gets must rebuild to that job, so the signature covers everything
//! the job digest covers. `fixtures/pool/job-request-v1.json` pins a vector.

use serde::{Deserialize, Serialize};

use crate::digest::JobDigest;
use crate::node::{NodeId, NodeKey};
use crate::receipt::Envelope;

/// The DSSE payload type of a signed job request.
pub const JOB_REQUEST_PAYLOAD_TYPE: &str = "application/vnd.canon.job-request+json";

/// The `_type` of the payload.
pub const JOB_REQUEST_TYPE: &str = "canon/job-request/v1";

/// Most bytes of a signed job request.
pub const MAX_JOB_REQUEST_BYTES: usize = 64 << 10;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Payload {
    #[serde(rename = "_type")]
    type_: String,
    job_digest: JobDigest,
}

/// Why a job's signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitterError {
    /// Not a DSSE envelope of a job request.
    #[error("job signature: {0}")]
    Malformed(String),
    /// The signature does not verify.
    #[error("job signature: does not verify for {0}")]
    BadSignature(NodeId),
    /// It signs another job.
    #[error("job signature: signs job {signed}, not this job {job}")]
    OtherJob {
        /// The job signed.
        signed: JobDigest,
        /// The job submitted.
        job: JobDigest,
    },
}

/// Signs `job` as `key`: the envelope's JSON.
pub fn sign(key: &NodeKey, job: &JobDigest) -> Vec<u8> {
    let payload = serde_json::to_vec(&Payload { type_: JOB_REQUEST_TYPE.into(), job_digest: *job }).unwrap_or_default();
    Envelope::sign(JOB_REQUEST_PAYLOAD_TYPE, payload, key).to_json()
}

/// Verifies that `envelope` is a signature of `job`, and returns its signer.
pub fn verify(envelope: &[u8], job: &JobDigest) -> Result<NodeId, SubmitterError> {
    let bad = |m: String| SubmitterError::Malformed(m);
    if envelope.len() > MAX_JOB_REQUEST_BYTES {
        return Err(bad(format!("{} bytes, more than the limit of {MAX_JOB_REQUEST_BYTES}", envelope.len())));
    }
    let env: Envelope = serde_json::from_slice(envelope).map_err(|e| bad(format!("not a DSSE envelope: {e}")))?;
    if env.payload_type != JOB_REQUEST_PAYLOAD_TYPE {
        return Err(bad(format!("payloadType is {:?}, expected {JOB_REQUEST_PAYLOAD_TYPE:?}", env.payload_type)));
    }
    let [sig] = env.signatures.as_slice() else {
        return Err(bad(format!("{} signatures; a job request has exactly one", env.signatures.len())));
    };
    let (node, key) = NodeId::parse_with_key(&sig.keyid).map_err(|e| bad(format!("keyid: {e}")))?;
    let bytes: [u8; 64] = sig.sig.as_slice().try_into().map_err(|_| bad(format!("signature is {} bytes, an ed25519 signature is 64", sig.sig.len())))?;
    key.verify_strict(&env.pae(), &ed25519_dalek::Signature::from_bytes(&bytes)).map_err(|_| SubmitterError::BadSignature(node))?;
    let p: Payload = serde_json::from_slice(&env.payload).map_err(|e| bad(format!("payload: {e}")))?;
    if p.type_ != JOB_REQUEST_TYPE {
        return Err(bad(format!("payload _type is {:?}, expected {JOB_REQUEST_TYPE:?}", p.type_)));
    }
    if p.job_digest != *job {
        return Err(SubmitterError::OtherJob { signed: p.job_digest, job: *job });
    }
    Ok(node)
}
