//! DSSE (Dead Simple Signing Envelope) v1: the envelope and its
//! pre-authentication encoding.
//!
//! ```json
//! {"payload": "<base64>", "payloadType": "application/vnd.in-toto+json",
//!  "signatures": [{"keyid": "did:key:z6Mk…", "sig": "<base64>"}]}
//! ```
//!
//! What is signed is never the JSON but `PAE(payloadType, payload)`:
//! `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths as ASCII
//! decimal byte counts, exactly as in the DSSE specification
//! (secure-systems-lab/dsse, `protocol.md`). canon writes standard base64
//! with padding; it reads standard or URL-safe base64, padded or not, as the
//! specification asks of verifiers.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::node::NodeKey;

/// The payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Decodes standard or URL-safe base64, with or without padding.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD_LENIENT.decode(text).or_else(|e| URL_SAFE_LENIENT.decode(text).map_err(|_| e))
}

/// The DSSE v1 pre-authentication encoding of `payload` of type `payload_type`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The payload bytes (base64 in JSON).
    #[serde(with = "b64")]
    pub payload: Vec<u8>,
    /// How to interpret the payload.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The signatures over `PAE(payloadType, payload)`.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Who signed: for canon, the node's `did:key`. DSSE allows it to be
    /// absent or empty; canon requires it.
    #[serde(default)]
    pub keyid: String,
    /// The signature bytes (base64 in JSON).
    #[serde(with = "b64")]
    pub sig: Vec<u8>,
}

impl Envelope {
    /// Signs `payload` with `key`: one signature, keyid the node's did:key.
    pub fn sign(payload_type: &str, payload: Vec<u8>, key: &NodeKey) -> Envelope {
        let sig = key.sign(&pae(payload_type, &payload));
        Envelope {
            payload,
            payload_type: payload_type.to_string(),
            signatures: vec![EnvelopeSignature { keyid: key.node_id().to_string(), sig: sig.to_bytes().to_vec() }],
        }
    }

    /// `PAE(payloadType, payload)`: the bytes the signatures cover.
    pub fn pae(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    /// Compact JSON, the bytes canon stores and sends.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising strings and byte vectors cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Indented JSON ending in a newline, for files people read.
    pub fn to_json_pretty(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

mod b64 {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        decode_base64(&text).map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        assert_eq!(pae("http://example.com/HelloWorld", b"hello world"), b"DSSEv1 29 http://example.com/HelloWorld 11 hello world");
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn base64_accepts_both_alphabets_and_missing_padding() {
        assert_eq!(decode_base64("+/8=").expect("std"), [0xfb, 0xff]);
        assert_eq!(decode_base64("-_8").expect("url"), [0xfb, 0xff]);
        assert!(decode_base64("!!").is_err());
    }
}
