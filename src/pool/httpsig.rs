//! Signed pool requests: RFC 9421 HTTP Message Signatures with ed25519, over
//! an RFC 9530 `Content-Digest` of the body.
//!
//! Every request a worker sends to the coordinator is signed with its node
//! key ([`NodeKey`]), and the coordinator verifies it before acting on it. The
//! format is the IETF standard rather than something of canon's own, so that
//! other tools (proxies, audit scripts, implementations in other languages)
//! can check a request with an off-the-shelf RFC 9421 library: canon only
//! fixes a *profile* of it, as §1.4 of the RFC asks every application to do.
//!
//! # canon's profile (version 1, tag `canon-pool`)
//!
//! A signed request carries three header fields:
//!
//! ```text
//! Content-Digest: sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:
//! Signature-Input: sig1=("@method" "@authority" "@path" "@query" "content-digest");created=1700000000;nonce="…";keyid="did:key:z6Mk…";alg="ed25519";tag="canon-pool"
//! Signature: sig1=:<64 bytes of ed25519 signature, base64>:
//! ```
//!
//! - **Label** `sig1`. Other labels (a proxy's own signature, say) may be
//!   present and are ignored, but the whole field must still parse.
//! - **Covered components**, exactly these five, in this order when canon
//!   signs (a verifier accepts them in any order, since the order is part of
//!   what is signed):
//!   - `@method`: a signed `GET` must not become a `DELETE`.
//!   - `@authority`: binds the request to one coordinator, so a request
//!     captured on its way to a test coordinator is worthless against the
//!     production one.
//!   - `@path` and `@query`: which run, which blob, which lease. The URI is
//!     covered in these pieces, not as `@target-uri`, because a coordinator
//!     behind a TLS-terminating proxy sees `http` and cannot reconstruct the
//!     scheme the worker used, while `Host`, the path and the query pass
//!     through unchanged.
//!   - `content-digest`: binds the body (a receipt, an upload) through its
//!     SHA-256. It is **always** sent and always covered; a request without
//!     a body carries the digest of the empty body. So the coordinator never
//!     has to decide whether a request "has" a body, and a body can be
//!     neither stripped from a request nor added to one.
//! - **Parameters**, in this order when canon signs: `created` (Unix seconds),
//!   `nonce` (128 random bits, base64url without padding: [`new_nonce`]),
//!   `keyid` (the node's `did:key`, which *is* its public key, so the
//!   coordinator needs no key directory to check the signature; whether it
//!   trusts the node is a separate question), `alg="ed25519"` and
//!   `tag="canon-pool"` (RFC 9421's application tag: a signature made for
//!   this profile cannot be passed off as one for another profile using the
//!   same key, and a future incompatible profile takes a new tag).
//! - **Algorithm**: ed25519 (RFC 8032), checked with `verify_strict`, which
//!   refuses small-order keys and non-canonical signatures.
//!
//! # Replay protection
//!
//! A signature proves who sent a request, not that it is fresh. The
//! verifier therefore refuses a signature whose `created` is older than
//! [`VerifyPolicy::max_age_secs`] or further in the future than
//! [`VerifyPolicy::max_future_skew_secs`], and a [`ReplayGuard`] remembers
//! every `(node, nonce)` it accepted until that signature would have expired
//! anyway. Outside the window the age check refuses a replay; inside it the
//! nonce does. The guard's memory is bounded: entries older than the window
//! are dropped, and when it holds its maximum of live entries it refuses
//! new requests rather than forget a nonce that could still be replayed.
//!
//! The guard lives in memory, so a restarted verifier has forgotten every
//! nonce. [`ReplayGuard::not_before`] closes that gap without persisting
//! any: a guard made at start refuses every signature `created` before the
//! second after it started, which no request seen by the previous process
//! can carry (unless its signer's clock ran ahead, by at most
//! [`VerifyPolicy::max_future_skew_secs`]). Honest signers sign each
//! request afresh, so all they lose is a retry.
//!
//! # Verifying a request, in order
//!
//! 1. [`check_content_digest`] on the `Content-Digest` value and the body as
//!    received: the signature only covers the header's *value*.
//! 2. [`verify_request`] with the request's method, authority, path, query
//!    and that same `Content-Digest` value.
//! 3. [`ReplayGuard::check_and_record`] with what it returned.
//!
//! # The general layer
//!
//! Under the profile sits a small, general RFC 9421 implementation:
//! [`SignatureParams`] (the ordered covered components and parameters),
//! [`signature_base`] (§2.5) over a [`Request`], and the Signature-Input and
//! Signature fields ([`signature_input_header`], [`signature_header`],
//! [`parse_signature_input`], [`parse_signature`]) with a parser for the
//! subset of RFC 8941 structured fields they use: dictionaries, inner lists,
//! parameters, integers, strings, tokens, byte sequences and booleans
//! (decimals and component parameters such as `;sf` or `;key` are refused
//! with an error that says so). The parser never panics, bounds everything a
//! sender controls (see the `MAX_*` constants), and is stricter than RFC
//! 8941 in one way: a repeated dictionary key or parameter is an error, not
//! "the last one wins", since two readers of an ambiguous header could
//! disagree about which signature it carries.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::Signature;
use rand_core::{OsRng, RngCore};
use sha2::{Digest as _, Sha256, Sha512};

use crate::node::{NodeId, NodeKey};

/// The signature label canon signs under and verifies.
pub const LABEL: &str = "sig1";

/// The RFC 9421 `tag` parameter naming canon's pool profile (version 1).
pub const TAG: &str = "canon-pool";

/// The RFC 9421 `alg` value canon signs with.
pub const ALG: &str = "ed25519";

/// The components canon's profile covers, in the order canon signs them.
pub const COVERED_COMPONENTS: [&str; 5] = ["@method", "@authority", "@path", "@query", "content-digest"];

/// Name of the `Signature-Input` header field (lowercase, as HTTP/2 sends it).
pub const SIGNATURE_INPUT_HEADER: &str = "signature-input";

/// Name of the `Signature` header field.
pub const SIGNATURE_HEADER: &str = "signature";

/// Name of the `Content-Digest` header field.
pub const CONTENT_DIGEST_HEADER: &str = "content-digest";

/// Largest `Signature-Input`, `Signature` or `Content-Digest` value parsed,
/// in bytes. canon's own are under 400 bytes; 8 KiB is the per-field limit
/// of common HTTP servers and proxies, so nothing legitimate is larger.
pub const MAX_FIELD_BYTES: usize = 8 * 1024;

/// Most members (signature labels, digest algorithms) in one dictionary
/// field. A message rarely carries more than two signatures.
pub const MAX_DICTIONARY_MEMBERS: usize = 16;

/// Most covered components in one signature. canon covers five; the RFC's
/// largest example covers eleven.
pub const MAX_COMPONENTS: usize = 32;

/// Most parameters on one item or inner list. RFC 9421 defines six.
pub const MAX_PARAMETERS: usize = 16;

/// Shortest nonce accepted, in characters: 16 base64url characters carry 96
/// bits. canon's own carry 128 bits in 22.
pub const MIN_NONCE_CHARS: usize = 16;

/// Longest nonce accepted, in characters. The replay guard stores every
/// nonce for the whole window, so their size is bounded.
pub const MAX_NONCE_CHARS: usize = 64;

/// A default for [`ReplayGuard`]'s entry limit: at the default five-minute
/// window, 3 000 signed requests a second sustained (a pool of a few
/// hundred short jobs a second, each a dozen worker requests); about 80 MB
/// at most, at some 80 bytes a pair.
pub const DEFAULT_REPLAY_ENTRIES: usize = 1_000_000;

/// Display names of the fields this module parses, for error messages.
const SIGNATURE_INPUT: &str = "Signature-Input";
const SIGNATURE: &str = "Signature";
const CONTENT_DIGEST: &str = "Content-Digest";

/// The derived components (RFC 9421 §2.2) this module can resolve.
const DERIVED_COMPONENTS: [&str; 7] = ["@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path", "@query"];

/// Largest integer RFC 8941 allows (15 decimal digits).
const MAX_SF_INTEGER: i64 = 999_999_999_999_999;

/// How much of a sender-controlled value an error message quotes.
const QUOTE_CHARS: usize = 80;

/// Why a signature, a digest or a structured header was refused.
///
/// Every message names the header, parameter or component at fault and what
/// was expected; [`HttpSigError::code`] gives a short stable name for
/// metrics. A bad signature says only that it did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpSigError {
    /// A header value is longer than [`MAX_FIELD_BYTES`].
    #[error("{header}: {len} bytes, more than the {max} accepted")]
    FieldTooLarge {
        /// The header field.
        header: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A structured header does not parse (RFC 8941).
    #[error("{header}: malformed at byte {offset}: {reason}")]
    Malformed {
        /// The header field.
        header: &'static str,
        /// Byte offset in the value where parsing stopped.
        offset: usize,
        /// What was expected there.
        reason: String,
    },
    /// A structured header has more members, components or parameters than
    /// this module accepts.
    #[error("{header}: more than {max} {what}")]
    TooMany {
        /// The header field.
        header: &'static str,
        /// What there were too many of.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// A dictionary key appears twice.
    #[error("{header}: label {label:?} appears more than once")]
    DuplicateLabel {
        /// The header field.
        header: &'static str,
        /// The repeated key.
        label: String,
    },
    /// A parameter appears twice on one item.
    #[error("{header}: parameter {param:?} appears more than once")]
    DuplicateParameter {
        /// The header field.
        header: &'static str,
        /// The repeated parameter.
        param: String,
    },
    /// The expected signature label is not in the header.
    #[error("{header}: no signature labelled {label:?}")]
    MissingLabel {
        /// The header field.
        header: &'static str,
        /// The label looked for.
        label: String,
    },
    /// A member, item or parameter has the wrong structured type.
    #[error("{header}: {what} must be {expected}")]
    WrongType {
        /// The header field.
        header: &'static str,
        /// The member or parameter.
        what: String,
        /// The type expected.
        expected: &'static str,
    },
    /// A value cannot be written as a structured field (a string with a
    /// control character, an integer beyond 15 digits, an invalid key).
    #[error("{what} cannot be serialized: {reason}")]
    Unserializable {
        /// The value.
        what: String,
        /// Why not.
        reason: &'static str,
    },
    /// The signature does not cover a component canon's profile requires.
    #[error("Signature-Input: the signature does not cover {component:?}; canon's profile covers {COVERED_COMPONENTS:?}")]
    MissingComponent {
        /// The component not covered.
        component: &'static str,
    },
    /// The signature covers a component outside canon's profile.
    #[error("Signature-Input: the signature covers {component:?}, which canon's profile does not; it covers exactly {COVERED_COMPONENTS:?}")]
    UnexpectedComponent {
        /// The extra component.
        component: String,
    },
    /// A component identifier this module cannot resolve.
    #[error("component {component:?} is not supported: {reason}")]
    UnsupportedComponent {
        /// The component identifier.
        component: String,
        /// Why not.
        reason: &'static str,
    },
    /// A component is covered twice.
    #[error("component {component:?} is covered more than once")]
    DuplicateComponent {
        /// The component identifier.
        component: String,
    },
    /// A covered component has no value in the message.
    #[error("component {component:?} is covered but absent from the request")]
    ComponentAbsent {
        /// The component identifier.
        component: String,
    },
    /// A component's value cannot appear in a signature base.
    #[error("component {component:?}: {reason}")]
    BadComponentValue {
        /// The component identifier.
        component: String,
        /// What is wrong with its value.
        reason: &'static str,
    },
    /// A required signature parameter is missing.
    #[error("Signature-Input: parameter {param:?} is required")]
    MissingParameter {
        /// The parameter.
        param: &'static str,
    },
    /// The `tag` parameter is not the policy's.
    #[error("Signature-Input: tag is {found:?}, expected {expected:?}")]
    WrongTag {
        /// The tag found.
        found: String,
        /// The tag required.
        expected: String,
    },
    /// The `alg` parameter is not `ed25519`.
    #[error("Signature-Input: alg is {found:?}, but canon signs with \"ed25519\" only")]
    WrongAlgorithm {
        /// The algorithm found (quoted in part).
        found: String,
    },
    /// The `keyid` parameter is not a canon node id.
    #[error("Signature-Input: keyid is not a canon node id (did:key:z6Mk…): {reason}")]
    BadKeyId {
        /// Why the did:key was refused (quoting it in part).
        reason: String,
    },
    /// The `nonce` parameter is not acceptable.
    #[error("Signature-Input: nonce must be {MIN_NONCE_CHARS} to {MAX_NONCE_CHARS} base64url characters (A-Z a-z 0-9 - _): {reason}")]
    BadNonce {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `created` is older than the policy's maximum age.
    #[error("Signature-Input: created={created} is {age}s old at {now}, more than the {max_age_secs}s accepted")]
    Expired {
        /// The signature's creation time.
        created: i64,
        /// The verifier's clock.
        now: i64,
        /// `now - created`.
        age: i64,
        /// The policy's limit.
        max_age_secs: i64,
    },
    /// The signature's own `expires` has passed.
    #[error("Signature-Input: expires={expires} has passed (now {now})")]
    PastExpires {
        /// The signature's expiry time.
        expires: i64,
        /// The verifier's clock.
        now: i64,
    },
    /// `created` is further in the future than the policy's clock skew.
    #[error("Signature-Input: created={created} is {ahead}s ahead of {now}, more than the {max_skew_secs}s of clock skew accepted")]
    CreatedInFuture {
        /// The signature's creation time.
        created: i64,
        /// The verifier's clock.
        now: i64,
        /// `created - now`.
        ahead: i64,
        /// The policy's limit.
        max_skew_secs: i64,
    },
    /// The ed25519 signature does not verify.
    #[error("Signature: signature {label:?} does not verify")]
    BadSignature {
        /// The label of the signature.
        label: String,
    },
    /// `created` is before the guard's start ([`ReplayGuard::not_before`]):
    /// a request the verifier's previous process may have accepted.
    #[error("Signature-Input: created={created} is before {not_before}, when this verifier started; sign the request afresh")]
    BeforeStart {
        /// The signature's `created`.
        created: i64,
        /// The oldest `created` accepted.
        not_before: i64,
    },
    /// This node already used this nonce within the window.
    #[error("nonce {nonce:?} of {node} was already used within the replay window")]
    Replayed {
        /// The signing node.
        node: NodeId,
        /// The repeated nonce.
        nonce: String,
    },
    /// The replay guard is full of live nonces.
    #[error("the replay guard holds {max_entries} live nonces, its limit; refusing rather than forgetting one")]
    ReplayGuardFull {
        /// The guard's limit.
        max_entries: usize,
    },
    /// A `Content-Digest` value does not match the body.
    #[error("Content-Digest: the {algorithm} digest does not match the body")]
    DigestMismatch {
        /// The algorithm whose digest differs.
        algorithm: &'static str,
    },
    /// `Content-Digest` has no algorithm this module checks.
    #[error("Content-Digest: no sha-256 or sha-512 digest (found {found:?})")]
    NoSupportedDigest {
        /// The algorithms found.
        found: Vec<String>,
    },
}

impl HttpSigError {
    /// A short, stable snake_case name for the error, for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            HttpSigError::FieldTooLarge { .. } => "field_too_large",
            HttpSigError::Malformed { .. } => "malformed_header",
            HttpSigError::TooMany { .. } => "too_many_items",
            HttpSigError::DuplicateLabel { .. } => "duplicate_label",
            HttpSigError::DuplicateParameter { .. } => "duplicate_parameter",
            HttpSigError::MissingLabel { .. } => "missing_label",
            HttpSigError::WrongType { .. } => "wrong_type",
            HttpSigError::Unserializable { .. } => "unserializable",
            HttpSigError::MissingComponent { .. } => "missing_component",
            HttpSigError::UnexpectedComponent { .. } => "unexpected_component",
            HttpSigError::UnsupportedComponent { .. } => "unsupported_component",
            HttpSigError::DuplicateComponent { .. } => "duplicate_component",
            HttpSigError::ComponentAbsent { .. } => "component_absent",
            HttpSigError::BadComponentValue { .. } => "bad_component_value",
            HttpSigError::MissingParameter { .. } => "missing_parameter",
            HttpSigError::WrongTag { .. } => "wrong_tag",
            HttpSigError::WrongAlgorithm { .. } => "wrong_algorithm",
            HttpSigError::BadKeyId { .. } => "bad_keyid",
            HttpSigError::BadNonce { .. } => "bad_nonce",
            HttpSigError::Expired { .. } | HttpSigError::PastExpires { .. } => "expired",
            HttpSigError::CreatedInFuture { .. } => "created_in_future",
            HttpSigError::BadSignature { .. } => "bad_signature",
            HttpSigError::BeforeStart { .. } => "before_start",
            HttpSigError::Replayed { .. } => "replayed",
            HttpSigError::ReplayGuardFull { .. } => "replay_guard_full",
            HttpSigError::DigestMismatch { .. } => "digest_mismatch",
            HttpSigError::NoSupportedDigest { .. } => "unsupported_digest",
        }
    }
}

// ---------------------------------------------------------------------------
// Content-Digest (RFC 9530)
// ---------------------------------------------------------------------------

/// The RFC 9530 `Content-Digest` value of `body`: `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)))
}

/// Checks a `Content-Digest` value against the body received.
///
/// `sha-256` and `sha-512` are checked; every one of them present must
/// match. Other algorithms are ignored, but at least one of the two must be
/// there ([`HttpSigError::NoSupportedDigest`] otherwise).
pub fn check_content_digest(header: &str, body: &[u8]) -> Result<(), HttpSigError> {
    let members = parse_dictionary(header, CONTENT_DIGEST)?;
    let mut checked = false;
    for (algorithm, member) in &members {
        let (name, expected): (&'static str, Vec<u8>) = match algorithm.as_str() {
            "sha-256" => ("sha-256", Sha256::digest(body).to_vec()),
            "sha-512" => ("sha-512", Sha512::digest(body).to_vec()),
            _ => continue,
        };
        let Member::Item(BareItem::ByteSequence(found)) = member else {
            return Err(HttpSigError::WrongType { header: CONTENT_DIGEST, what: name.to_string(), expected: "a byte sequence (:base64:)" });
        };
        if *found != expected {
            return Err(HttpSigError::DigestMismatch { algorithm: name });
        }
        checked = true;
    }
    if checked { Ok(()) } else { Err(HttpSigError::NoSupportedDigest { found: members.into_iter().map(|(k, _)| k).collect() }) }
}

// ---------------------------------------------------------------------------
// Structured field values (RFC 8941), the subset RFC 9421 uses
// ---------------------------------------------------------------------------

/// A structured-field bare item (RFC 8941 §3.3), without decimals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BareItem {
    /// An integer of at most 15 decimal digits.
    Integer(i64),
    /// A string of printable ASCII, written `"…"`.
    String(String),
    /// A token, written bare: `ALPHA / "*"` then `tchar / ":" / "/"`.
    Token(String),
    /// Bytes, written `:base64:`.
    ByteSequence(Vec<u8>),
    /// A boolean, written `?1` / `?0` (a parameter that is `true` is written
    /// as its key alone).
    Boolean(bool),
}

/// Parameters of an item or inner list, in order.
type Params = Vec<(String, BareItem)>;

/// A dictionary member.
enum Member {
    /// An item; its parameters are parsed, then dropped (nothing here reads them).
    Item(BareItem),
    InnerList(Vec<(BareItem, Params)>, Params),
}

/// Parses a dictionary field (RFC 8941 §4.2.2), refusing repeated keys.
fn parse_dictionary(input: &str, header: &'static str) -> Result<Vec<(String, Member)>, HttpSigError> {
    if input.len() > MAX_FIELD_BYTES {
        return Err(HttpSigError::FieldTooLarge { header, len: input.len(), max: MAX_FIELD_BYTES });
    }
    if let Some(offset) = input.bytes().position(|b| !b.is_ascii() || (b.is_ascii_control() && b != b'\t')) {
        return Err(HttpSigError::Malformed { header, offset, reason: "non-ASCII or control character".into() });
    }
    let mut p = Parser { s: input.as_bytes(), pos: 0, header };
    p.skip_sp();
    let mut members: Vec<(String, Member)> = Vec::new();
    while !p.at_end() {
        let key = p.parse_key()?;
        let member = if p.eat(b'=') {
            if p.peek() == Some(b'(') {
                let (items, params) = p.parse_inner_list()?;
                Member::InnerList(items, params)
            } else {
                let (item, _params) = p.parse_item()?;
                Member::Item(item)
            }
        } else {
            p.parse_params()?;
            Member::Item(BareItem::Boolean(true))
        };
        if members.iter().any(|(k, _)| *k == key) {
            return Err(HttpSigError::DuplicateLabel { header, label: key });
        }
        if members.len() == MAX_DICTIONARY_MEMBERS {
            return Err(HttpSigError::TooMany { header, what: "dictionary members", max: MAX_DICTIONARY_MEMBERS });
        }
        members.push((key, member));
        p.skip_ows();
        if p.at_end() {
            break;
        }
        if !p.eat(b',') {
            return Err(p.err("expected \",\" between dictionary members"));
        }
        p.skip_ows();
        if p.at_end() {
            return Err(p.err("trailing \",\" after the last dictionary member"));
        }
    }
    Ok(members)
}

/// A cursor over an ASCII field value.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    header: &'static str,
}

impl Parser<'_> {
    fn err(&self, reason: &str) -> HttpSigError {
        HttpSigError::Malformed { header: self.header, offset: self.pos, reason: reason.to_string() }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.eat(b' ') {}
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// `key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`
    fn parse_key(&mut self) -> Result<String, HttpSigError> {
        let start = self.pos;
        match self.peek() {
            Some(b'a'..=b'z' | b'*') => self.pos += 1,
            _ => return Err(self.err("expected a key (a lowercase letter or \"*\")")),
        }
        while matches!(self.peek(), Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')) {
            self.pos += 1;
        }
        Ok(ascii(&self.s[start..self.pos]))
    }

    fn parse_item(&mut self) -> Result<(BareItem, Params), HttpSigError> {
        let item = self.parse_bare_item()?;
        Ok((item, self.parse_params()?))
    }

    fn parse_inner_list(&mut self) -> Result<(Vec<(BareItem, Params)>, Params), HttpSigError> {
        if !self.eat(b'(') {
            return Err(self.err("expected \"(\" to open an inner list"));
        }
        let mut items = Vec::new();
        loop {
            self.skip_sp();
            if self.eat(b')') {
                return Ok((items, self.parse_params()?));
            }
            if self.at_end() {
                return Err(self.err("inner list not closed with \")\""));
            }
            if items.len() == MAX_COMPONENTS {
                return Err(HttpSigError::TooMany { header: self.header, what: "inner list items", max: MAX_COMPONENTS });
            }
            items.push(self.parse_item()?);
            if self.at_end() {
                return Err(self.err("inner list not closed with \")\""));
            }
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return Err(self.err("expected a space or \")\" after an inner list item"));
            }
        }
    }

    fn parse_params(&mut self) -> Result<Params, HttpSigError> {
        let mut params: Params = Vec::new();
        while self.eat(b';') {
            self.skip_sp();
            let key = self.parse_key()?;
            let value = if self.eat(b'=') { self.parse_bare_item()? } else { BareItem::Boolean(true) };
            if params.iter().any(|(k, _)| *k == key) {
                return Err(HttpSigError::DuplicateParameter { header: self.header, param: key });
            }
            if params.len() == MAX_PARAMETERS {
                return Err(HttpSigError::TooMany { header: self.header, what: "parameters", max: MAX_PARAMETERS });
            }
            params.push((key, value));
        }
        Ok(params)
    }

    fn parse_bare_item(&mut self) -> Result<BareItem, HttpSigError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.parse_integer(),
            Some(b'"') => self.parse_string(),
            Some(b':') => self.parse_byte_sequence(),
            Some(b'?') => self.parse_boolean(),
            Some(b'A'..=b'Z' | b'a'..=b'z' | b'*') => Ok(self.parse_token()),
            Some(_) => Err(self.err("expected an integer, a string, a token, a byte sequence or a boolean")),
            None => Err(self.err("value missing at end of field")),
        }
    }

    fn parse_integer(&mut self) -> Result<BareItem, HttpSigError> {
        let negative = self.eat(b'-');
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
            if self.pos - start > 15 {
                return Err(self.err("integer longer than 15 digits"));
            }
        }
        if self.pos == start {
            return Err(self.err("expected a digit"));
        }
        if self.peek() == Some(b'.') {
            return Err(self.err("decimal numbers are not supported here"));
        }
        let mut value: i64 = 0;
        for &d in &self.s[start..self.pos] {
            // At most 15 digits: cannot overflow.
            value = value * 10 + i64::from(d - b'0');
        }
        Ok(BareItem::Integer(if negative { -value } else { value }))
    }

    fn parse_string(&mut self) -> Result<BareItem, HttpSigError> {
        self.pos += 1; // the opening quote
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.err("string not closed with '\"'")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(BareItem::String(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(char::from(c));
                            self.pos += 1;
                        }
                        _ => return Err(self.err("a string may only escape '\"' and '\\'")),
                    }
                }
                Some(c @ 0x20..=0x7e) => {
                    out.push(char::from(c));
                    self.pos += 1;
                }
                Some(_) => return Err(self.err("strings hold printable ASCII only")),
            }
        }
    }

    fn parse_token(&mut self) -> BareItem {
        let start = self.pos;
        self.pos += 1;
        while self.peek().is_some_and(|c| is_tchar(c) || c == b':' || c == b'/') {
            self.pos += 1;
        }
        BareItem::Token(ascii(&self.s[start..self.pos]))
    }

    fn parse_byte_sequence(&mut self) -> Result<BareItem, HttpSigError> {
        self.pos += 1; // the opening colon
        let start = self.pos;
        while matches!(self.peek(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=')) {
            self.pos += 1;
        }
        let end = self.pos;
        if !self.eat(b':') {
            return Err(self.err("byte sequence not closed with \":\" (or a character outside base64)"));
        }
        STANDARD.decode(&self.s[start..end]).map(BareItem::ByteSequence).map_err(|_| HttpSigError::Malformed {
            header: self.header,
            offset: start,
            reason: "byte sequence is not valid padded base64".into(),
        })
    }

    fn parse_boolean(&mut self) -> Result<BareItem, HttpSigError> {
        self.pos += 1; // the question mark
        if self.eat(b'1') {
            Ok(BareItem::Boolean(true))
        } else if self.eat(b'0') {
            Ok(BareItem::Boolean(false))
        } else {
            Err(self.err("a boolean is ?0 or ?1"))
        }
    }
}

/// Text of bytes the parser already checked are ASCII.
fn ascii(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// RFC 9110 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_key(s: &str) -> bool {
    let b = s.as_bytes();
    matches!(b.first(), Some(b'a'..=b'z' | b'*')) && b.iter().all(|&c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*'))
}

/// The first [`QUOTE_CHARS`] characters of a sender-controlled value.
fn quote(s: &str) -> String {
    let mut q: String = s.chars().take(QUOTE_CHARS).collect();
    if q.len() < s.len() {
        q.push('…');
    }
    q
}

fn write_string(out: &mut String, s: &str) -> Result<(), HttpSigError> {
    if s.bytes().any(|c| !(0x20..=0x7e).contains(&c)) {
        return Err(HttpSigError::Unserializable { what: format!("string {:?}", quote(s)), reason: "strings hold printable ASCII only" });
    }
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(())
}

fn write_bare_item(out: &mut String, item: &BareItem) -> Result<(), HttpSigError> {
    match item {
        BareItem::Integer(i) => {
            if !(-MAX_SF_INTEGER..=MAX_SF_INTEGER).contains(i) {
                return Err(HttpSigError::Unserializable { what: format!("integer {i}"), reason: "integers have at most 15 digits" });
            }
            let _ = write!(out, "{i}");
        }
        BareItem::String(s) => write_string(out, s)?,
        BareItem::Token(t) => {
            let b = t.as_bytes();
            let valid = matches!(b.first(), Some(c) if c.is_ascii_alphabetic() || *c == b'*') && b.iter().all(|&c| is_tchar(c) || c == b':' || c == b'/');
            if !valid {
                return Err(HttpSigError::Unserializable { what: format!("token {:?}", quote(t)), reason: "not a valid token" });
            }
            out.push_str(t);
        }
        BareItem::ByteSequence(bytes) => {
            out.push(':');
            out.push_str(&STANDARD.encode(bytes));
            out.push(':');
        }
        BareItem::Boolean(b) => out.push_str(if *b { "?1" } else { "?0" }),
    }
    Ok(())
}

fn write_params(out: &mut String, params: &[(String, BareItem)]) -> Result<(), HttpSigError> {
    for (key, value) in params {
        if !is_key(key) {
            return Err(HttpSigError::Unserializable { what: format!("parameter name {:?}", quote(key)), reason: "not a valid key" });
        }
        out.push(';');
        out.push_str(key);
        if *value != BareItem::Boolean(true) {
            out.push('=');
            write_bare_item(out, value)?;
        }
    }
    Ok(())
}

fn check_label(label: &str) -> Result<(), HttpSigError> {
    if is_key(label) {
        Ok(())
    } else {
        Err(HttpSigError::Unserializable {
            what: format!("label {:?}", quote(label)),
            reason: "labels are keys: a lowercase letter or \"*\", then a-z 0-9 _ - . *",
        })
    }
}

// ---------------------------------------------------------------------------
// Signature parameters and the signature base (RFC 9421 §2.3, §2.5)
// ---------------------------------------------------------------------------

/// The covered components and parameters of one signature (RFC 9421 §2.3):
/// the value of the `@signature-params` line and of its `Signature-Input`
/// member. Both lists keep their order, which is part of what is signed.
///
/// Built with [`SignatureParams::new`] and the `with_*` methods (each
/// appends its parameter, or replaces it in place if already set), or read
/// from a header by [`parse_signature_input`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignatureParams {
    components: Vec<String>,
    params: Vec<(String, BareItem)>,
}

impl SignatureParams {
    /// Parameters covering `components` (component identifiers such as
    /// `"@method"` or `"content-type"`), with no parameters yet.
    pub fn new<I, S>(components: I) -> SignatureParams
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        SignatureParams { components: components.into_iter().map(Into::into).collect(), params: Vec::new() }
    }

    /// Sets `created` (Unix seconds).
    pub fn with_created(self, created: i64) -> SignatureParams {
        self.with_param("created", BareItem::Integer(created))
    }

    /// Sets `expires` (Unix seconds).
    pub fn with_expires(self, expires: i64) -> SignatureParams {
        self.with_param("expires", BareItem::Integer(expires))
    }

    /// Sets `nonce`.
    pub fn with_nonce(self, nonce: &str) -> SignatureParams {
        self.with_param("nonce", BareItem::String(nonce.to_string()))
    }

    /// Sets `alg`.
    pub fn with_alg(self, alg: &str) -> SignatureParams {
        self.with_param("alg", BareItem::String(alg.to_string()))
    }

    /// Sets `keyid`.
    pub fn with_keyid(self, keyid: &str) -> SignatureParams {
        self.with_param("keyid", BareItem::String(keyid.to_string()))
    }

    /// Sets `tag`.
    pub fn with_tag(self, tag: &str) -> SignatureParams {
        self.with_param("tag", BareItem::String(tag.to_string()))
    }

    /// Sets any parameter. Serializing fails if a parameter RFC 9421 defines
    /// has the wrong type (`created` and `expires` are integers; `nonce`,
    /// `alg`, `keyid` and `tag` are strings).
    pub fn with_param(mut self, name: &str, value: BareItem) -> SignatureParams {
        match self.params.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.params.push((name.to_string(), value)),
        }
        self
    }

    /// The covered component identifiers, in order.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// All parameters, in order.
    pub fn params(&self) -> &[(String, BareItem)] {
        &self.params
    }

    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&BareItem> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    fn int_param(&self, name: &str) -> Option<i64> {
        match self.param(name) {
            Some(BareItem::Integer(i)) => Some(*i),
            _ => None,
        }
    }

    fn str_param(&self, name: &str) -> Option<&str> {
        match self.param(name) {
            Some(BareItem::String(s)) => Some(s),
            _ => None,
        }
    }

    /// `created`, if present (and an integer).
    pub fn created(&self) -> Option<i64> {
        self.int_param("created")
    }

    /// `expires`, if present (and an integer).
    pub fn expires(&self) -> Option<i64> {
        self.int_param("expires")
    }

    /// `nonce`, if present (and a string).
    pub fn nonce(&self) -> Option<&str> {
        self.str_param("nonce")
    }

    /// `alg`, if present (and a string).
    pub fn alg(&self) -> Option<&str> {
        self.str_param("alg")
    }

    /// `keyid`, if present (and a string).
    pub fn keyid(&self) -> Option<&str> {
        self.str_param("keyid")
    }

    /// `tag`, if present (and a string).
    pub fn tag(&self) -> Option<&str> {
        self.str_param("tag")
    }

    /// The inner list as RFC 9421 §2.3 serializes it, e.g.
    /// `("@method" "@path");created=1618884473;keyid="k"`: the value of the
    /// `@signature-params` line and of the `Signature-Input` member.
    ///
    /// Fails for a component this module cannot resolve, a repeated
    /// component, or a parameter that cannot be serialized or has the wrong
    /// type.
    pub fn serialize(&self) -> Result<String, HttpSigError> {
        check_components(&self.components)?;
        for (name, value) in &self.params {
            if let Some(expected) = check_param_type(name, value) {
                return Err(HttpSigError::WrongType { header: SIGNATURE_INPUT, what: format!("parameter {name}"), expected });
            }
        }
        let mut out = String::from("(");
        for (i, component) in self.components.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            write_string(&mut out, component)?;
        }
        out.push(')');
        write_params(&mut out, &self.params)?;
        Ok(out)
    }
}

/// The type RFC 9421 §2.3 gives a parameter, if `value` does not have it.
fn check_param_type(name: &str, value: &BareItem) -> Option<&'static str> {
    match (name, value) {
        ("created" | "expires", BareItem::Integer(_)) => None,
        ("created" | "expires", _) => Some("an integer"),
        ("nonce" | "alg" | "keyid" | "tag", BareItem::String(_)) => None,
        ("nonce" | "alg" | "keyid" | "tag", _) => Some("a string"),
        _ => None,
    }
}

/// Checks a covered-component list: identifiers this module can resolve,
/// none twice, `@signature-params` never.
fn check_components(components: &[String]) -> Result<(), HttpSigError> {
    if components.len() > MAX_COMPONENTS {
        return Err(HttpSigError::TooMany { header: SIGNATURE_INPUT, what: "covered components", max: MAX_COMPONENTS });
    }
    for (i, c) in components.iter().enumerate() {
        if components[..i].contains(c) {
            return Err(HttpSigError::DuplicateComponent { component: quote(c) });
        }
        let unsupported = |reason| Err(HttpSigError::UnsupportedComponent { component: quote(c), reason });
        if c == "@signature-params" {
            return unsupported("@signature-params is the last line of every signature base and cannot be covered");
        } else if c.starts_with('@') {
            if !DERIVED_COMPONENTS.contains(&c.as_str()) {
                return unsupported("derived components supported: @method @target-uri @authority @scheme @request-target @path @query");
            }
        } else if c.is_empty() || !c.bytes().all(is_tchar) {
            return unsupported("a header field name is a non-empty token");
        } else if c.bytes().any(|b| b.is_ascii_uppercase()) {
            return unsupported("header field names are covered in lowercase");
        }
    }
    Ok(())
}

/// An HTTP request as the signature base sees it: what the client
/// addressed and the header fields it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method, e.g. `POST` (case-sensitive, as sent).
    pub method: &'a str,
    /// The scheme, e.g. `https`; empty if unknown (then `@scheme` and
    /// `@target-uri` cannot be covered).
    pub scheme: &'a str,
    /// The authority (host, and port if not the default), e.g.
    /// `example.com`; `@authority` is its lowercase form.
    pub authority: &'a str,
    /// The absolute path, e.g. `/foo` (`/` if empty), not decoded.
    pub path: &'a str,
    /// The query without its leading `?`, not decoded; `None` if absent
    /// (`@query` is then `?`, as for an empty query).
    pub query: Option<&'a str>,
    /// Header fields, names in any case. Values of a name sent more than
    /// once are joined with `", "` in order, each trimmed of spaces and tabs.
    pub fields: &'a [(&'a str, &'a str)],
}

impl Request<'_> {
    /// The value a component identifier resolves to (RFC 9421 §2.1, §2.2).
    fn component_value(&self, component: &str) -> Result<String, HttpSigError> {
        let path = if self.path.is_empty() { "/" } else { self.path };
        let request_target = match self.query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        let need_scheme = || {
            if self.scheme.is_empty() { Err(HttpSigError::ComponentAbsent { component: component.to_string() }) } else { Ok(()) }
        };
        let value = match component {
            "@method" => self.method.to_string(),
            "@authority" => self.authority.to_ascii_lowercase(),
            "@scheme" => {
                need_scheme()?;
                self.scheme.to_ascii_lowercase()
            }
            "@target-uri" => {
                need_scheme()?;
                format!("{}://{}{}", self.scheme, self.authority, request_target)
            }
            "@request-target" => request_target,
            "@path" => path.to_string(),
            "@query" => format!("?{}", self.query.unwrap_or("")),
            field => {
                let values: Vec<&str> =
                    self.fields.iter().filter(|(name, _)| name.eq_ignore_ascii_case(field)).map(|(_, v)| v.trim_matches([' ', '\t'])).collect();
                if values.is_empty() {
                    return Err(HttpSigError::ComponentAbsent { component: field.to_string() });
                }
                values.join(", ")
            }
        };
        if value.bytes().any(|b| !(0x20..=0x7e).contains(&b) && b != b'\t') {
            return Err(HttpSigError::BadComponentValue {
                component: component.to_string(),
                reason: "value has a line break, another control character or non-ASCII bytes, which a signature base cannot hold",
            });
        }
        if component == "@method" && (value.is_empty() || !value.bytes().all(is_tchar)) {
            return Err(HttpSigError::BadComponentValue { component: component.to_string(), reason: "a method is a non-empty token" });
        }
        Ok(value)
    }
}

/// The signature base (RFC 9421 §2.5): one `"<component>": <value>` line per
/// covered component, in order, then `"@signature-params": <params>`, lines
/// separated by LF with none after the last. These are the bytes signed.
pub fn signature_base(request: &Request<'_>, params: &SignatureParams) -> Result<String, HttpSigError> {
    let params_line = params.serialize()?;
    let mut base = String::new();
    for component in &params.components {
        let value = request.component_value(component)?;
        write_string(&mut base, component)?;
        base.push_str(": ");
        base.push_str(&value);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(&params_line);
    Ok(base)
}

/// A `Signature-Input` value with one member: `<label>=<params>`.
pub fn signature_input_header(label: &str, params: &SignatureParams) -> Result<String, HttpSigError> {
    check_label(label)?;
    Ok(format!("{label}={}", params.serialize()?))
}

/// A `Signature` value with one member: `<label>=:<base64 signature>:`.
pub fn signature_header(label: &str, signature: &[u8]) -> Result<String, HttpSigError> {
    check_label(label)?;
    Ok(format!("{label}=:{}:", STANDARD.encode(signature)))
}

/// Reads the member `label` of a `Signature-Input` value.
///
/// The whole field must be a valid dictionary (other members are parsed,
/// then ignored); the member must be an inner list of strings without
/// component parameters, naming components this module can resolve, with
/// RFC 9421's parameters of the right types.
pub fn parse_signature_input(header: &str, label: &str) -> Result<SignatureParams, HttpSigError> {
    let members = parse_dictionary(header, SIGNATURE_INPUT)?;
    let Some((_, member)) = members.into_iter().find(|(k, _)| k == label) else {
        return Err(HttpSigError::MissingLabel { header: SIGNATURE_INPUT, label: label.to_string() });
    };
    let Member::InnerList(items, params) = member else {
        return Err(HttpSigError::WrongType {
            header: SIGNATURE_INPUT,
            what: format!("member {label:?}"),
            expected: "an inner list of covered components, like (\"@method\" \"@path\")",
        });
    };
    let mut components = Vec::with_capacity(items.len());
    for (item, item_params) in items {
        let BareItem::String(component) = item else {
            return Err(HttpSigError::WrongType {
                header: SIGNATURE_INPUT,
                what: format!("each covered component of {label:?}"),
                expected: "a string, like \"@method\"",
            });
        };
        if !item_params.is_empty() {
            return Err(HttpSigError::UnsupportedComponent {
                component: quote(&component),
                reason: "component parameters (;sf ;key ;bs ;req ;tr ;name) are not supported",
            });
        }
        components.push(component);
    }
    for (name, value) in &params {
        if let Some(expected) = check_param_type(name, value) {
            return Err(HttpSigError::WrongType { header: SIGNATURE_INPUT, what: format!("parameter {name} of {label:?}"), expected });
        }
    }
    check_components(&components)?;
    Ok(SignatureParams { components, params })
}

/// Reads the member `label` of a `Signature` value: the signature bytes.
pub fn parse_signature(header: &str, label: &str) -> Result<Vec<u8>, HttpSigError> {
    let members = parse_dictionary(header, SIGNATURE)?;
    match members.into_iter().find(|(k, _)| k == label) {
        Some((_, Member::Item(BareItem::ByteSequence(bytes)))) => Ok(bytes),
        Some(_) => Err(HttpSigError::WrongType { header: SIGNATURE, what: format!("member {label:?}"), expected: "a byte sequence (:base64:)" }),
        None => Err(HttpSigError::MissingLabel { header: SIGNATURE, label: label.to_string() }),
    }
}

// ---------------------------------------------------------------------------
// canon's profile
// ---------------------------------------------------------------------------

/// The parts of a pool request canon's profile signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestParts<'a> {
    /// The method, e.g. `POST`.
    pub method: &'a str,
    /// The authority the worker addressed (the `Host`), e.g.
    /// `coordinator.example:8443`; compared in lowercase.
    pub authority: &'a str,
    /// The path, not decoded, e.g. `/v1/runs/lease`.
    pub path: &'a str,
    /// The query without its leading `?`, not decoded; `None` if absent.
    pub query: Option<&'a str>,
    /// The `Content-Digest` value sent: [`content_digest`] of the body, or of
    /// the empty body when there is none. Empty if the request had no
    /// `Content-Digest` field, which is then refused
    /// ([`HttpSigError::ComponentAbsent`]).
    pub content_digest: &'a str,
}

impl RequestParts<'_> {
    /// The signature base of these parts. An empty `content_digest` counts
    /// as absent: the profile always covers one, so a request without it is
    /// neither signed nor accepted.
    fn signature_base(&self, params: &SignatureParams) -> Result<String, HttpSigError> {
        let digest = [(CONTENT_DIGEST_HEADER, self.content_digest)];
        let fields: &[(&str, &str)] = if self.content_digest.trim_matches([' ', '\t']).is_empty() { &[] } else { &digest };
        let request = Request { method: self.method, scheme: "", authority: self.authority, path: self.path, query: self.query, fields };
        signature_base(&request, params)
    }
}

/// The two header values that sign a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// The `Signature-Input` value.
    pub signature_input: String,
    /// The `Signature` value.
    pub signature: String,
}

/// What a verified request proves: who signed it, when, with which nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The node whose key signed the request.
    pub node: NodeId,
    /// The signature's `created` (Unix seconds).
    pub created: i64,
    /// The signature's nonce, for the [`ReplayGuard`].
    pub nonce: String,
}

/// What [`verify_request`] accepts beyond a valid signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Oldest `created` accepted, in seconds before now. The default value
    /// for this is 300.
    pub max_age_secs: i64,
    /// Furthest `created` accepted, in seconds after now: the clock skew
    /// tolerated between worker and coordinator. The default value for this
    /// is 30.
    pub max_future_skew_secs: i64,
    /// The `tag` parameter required. The default value for this is
    /// [`TAG`], `canon-pool`.
    pub tag: String,
}

impl Default for VerifyPolicy {
    fn default() -> VerifyPolicy {
        VerifyPolicy { max_age_secs: 300, max_future_skew_secs: 30, tag: TAG.to_string() }
    }
}

/// A fresh nonce: 128 bits from the operating system's generator, as 22
/// base64url characters without padding.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn check_nonce(nonce: &str) -> Result<(), HttpSigError> {
    if nonce.len() < MIN_NONCE_CHARS {
        return Err(HttpSigError::BadNonce { reason: "too short" });
    }
    if nonce.len() > MAX_NONCE_CHARS {
        return Err(HttpSigError::BadNonce { reason: "too long" });
    }
    if !nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(HttpSigError::BadNonce { reason: "a character outside base64url" });
    }
    Ok(())
}

/// canon's parameters, in the order canon signs them.
fn profile_params(node: &NodeId, created: i64, nonce: &str) -> SignatureParams {
    SignatureParams::new(COVERED_COMPONENTS).with_created(created).with_nonce(nonce).with_keyid(&node.to_string()).with_alg(ALG).with_tag(TAG)
}

/// Signs a pool request with canon's profile under label [`LABEL`].
///
/// `created` is the worker's clock in Unix seconds; `nonce` should be
/// [`new_nonce`] (anything of [`MIN_NONCE_CHARS`] to [`MAX_NONCE_CHARS`]
/// base64url characters is accepted). Deterministic: the same inputs give
/// the same headers. Fails for a bad nonce or a component value that cannot
/// be signed (a line break in the path, say).
pub fn sign_request(key: &NodeKey, request: &RequestParts<'_>, created: i64, nonce: &str) -> Result<SignatureHeaders, HttpSigError> {
    check_nonce(nonce)?;
    let params = profile_params(&key.node_id(), created, nonce);
    let base = request.signature_base(&params)?;
    let signature = key.sign(base.as_bytes());
    Ok(SignatureHeaders { signature_input: signature_input_header(LABEL, &params)?, signature: signature_header(LABEL, &signature.to_bytes())? })
}

/// Verifies a pool request signed with canon's profile, at time `now`
/// (Unix seconds).
///
/// Checks, in order: both headers parse and carry label [`LABEL`]; the
/// signature covers exactly [`COVERED_COMPONENTS`] (in any order); `tag` is
/// the policy's; `alg`, if present, is `ed25519`; `keyid` is a canon node id
/// (a did:key of a valid, not small-order, ed25519 key); `created` and a
/// well-formed `nonce` are present; `created` is within the policy's window
/// and `expires`, if present, has not passed; and the ed25519 signature over
/// the signature base verifies strictly under the keyid's key.
///
/// This does not check the body: call [`check_content_digest`] first, and
/// [`ReplayGuard::check_and_record`] after.
pub fn verify_request(request: &RequestParts<'_>, signature_input: &str, signature: &str, now: i64, policy: &VerifyPolicy) -> Result<Verified, HttpSigError> {
    let params = parse_signature_input(signature_input, LABEL)?;
    let signature = parse_signature(signature, LABEL)?;

    for required in COVERED_COMPONENTS {
        if !params.components.iter().any(|c| c == required) {
            return Err(HttpSigError::MissingComponent { component: required });
        }
    }
    if let Some(extra) = params.components.iter().find(|c| !COVERED_COMPONENTS.contains(&c.as_str())) {
        return Err(HttpSigError::UnexpectedComponent { component: quote(extra) });
    }

    match params.tag() {
        None => return Err(HttpSigError::MissingParameter { param: "tag" }),
        Some(tag) if tag != policy.tag => return Err(HttpSigError::WrongTag { found: quote(tag), expected: policy.tag.clone() }),
        Some(_) => {}
    }
    if let Some(alg) = params.alg()
        && alg != ALG
    {
        return Err(HttpSigError::WrongAlgorithm { found: quote(alg) });
    }
    let keyid = params.keyid().ok_or(HttpSigError::MissingParameter { param: "keyid" })?;
    let (node, key) = NodeId::parse_with_key(keyid).map_err(|e| HttpSigError::BadKeyId { reason: quote(&e.to_string()) })?;
    let created = params.created().ok_or(HttpSigError::MissingParameter { param: "created" })?;
    let nonce = params.nonce().ok_or(HttpSigError::MissingParameter { param: "nonce" })?;
    check_nonce(nonce)?;

    let age = now.saturating_sub(created);
    if age > policy.max_age_secs {
        return Err(HttpSigError::Expired { created, now, age, max_age_secs: policy.max_age_secs });
    }
    let ahead = created.saturating_sub(now);
    if ahead > policy.max_future_skew_secs {
        return Err(HttpSigError::CreatedInFuture { created, now, ahead, max_skew_secs: policy.max_future_skew_secs });
    }
    if let Some(expires) = params.expires()
        && now > expires
    {
        return Err(HttpSigError::PastExpires { expires, now });
    }

    let signature: [u8; 64] = signature.as_slice().try_into().map_err(|_| HttpSigError::WrongType {
        header: SIGNATURE,
        what: format!("member {LABEL:?}"),
        expected: "a 64-byte ed25519 signature",
    })?;
    let base = request.signature_base(&params)?;
    key.verify_strict(base.as_bytes(), &Signature::from_bytes(&signature)).map_err(|_| HttpSigError::BadSignature { label: LABEL.to_string() })?;
    Ok(Verified { node, created, nonce: nonce.to_string() })
}

// ---------------------------------------------------------------------------
// Replay protection
// ---------------------------------------------------------------------------

/// Remembers the `(node, nonce)` pairs of accepted requests for as long as
/// their signatures could still be accepted, and refuses a pair seen again.
///
/// A pair is forgotten once `now` is past its `created` plus the policy's
/// maximum age, when [`verify_request`] would refuse the signature anyway.
/// At most `max_entries` pairs ([`ReplayGuard::new`]) are held; when that many
/// are live, new requests are refused ([`HttpSigError::ReplayGuardFull`])
/// rather than a live nonce forgotten. The limit is global: limiting how
/// fast one node may send belongs in the server, in front of this.
///
/// Its memory does not outlive the process: a server makes it with
/// [`ReplayGuard::not_before`] its start, so that a restart does not reopen
/// the window for requests the previous process accepted.
///
/// A pair is held as the first 128 bits of SHA-256 over the node id and the
/// nonce, so each costs the same small amount whatever the nonce's length.
/// Two pairs with one key would need a SHA-256 collision on 128 bits; and
/// a collision could only refuse a request, never let a replay through.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    max_age_secs: i64,
    max_entries: usize,
    not_before: i64,
    seen: HashSet<u128>,
    /// `(forget_after, pair key)`, ordered by the first.
    by_expiry: BTreeSet<(i64, u128)>,
}

/// The key a `(node, nonce)` pair is held under.
fn pair_key(node: &NodeId, nonce: &str) -> u128 {
    let mut h = Sha256::new();
    h.update(b"canon/replay-guard\n");
    h.update(node.as_bytes());
    h.update(nonce.as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&d[..16]);
    u128::from_le_bytes(first)
}

impl ReplayGuard {
    /// An empty guard holding at most `max_entries` pairs, each until
    /// `max_age_secs` after its `created`. `max_age_secs` must be the
    /// [`VerifyPolicy::max_age_secs`] requests are verified with (a shorter
    /// one would forget nonces that can still be replayed); for
    /// `max_entries`, [`DEFAULT_REPLAY_ENTRIES`] is a reasonable start.
    pub fn new(max_age_secs: i64, max_entries: usize) -> ReplayGuard {
        ReplayGuard { max_age_secs, max_entries, not_before: i64::MIN, seen: HashSet::new(), by_expiry: BTreeSet::new() }
    }

    /// Refuses every signature `created` before `not_before` (Unix seconds;
    /// [`HttpSigError::BeforeStart`]). A verifier that starts at time `t`
    /// sets `floor(t) + 1`: a request its previous process accepted was
    /// signed at or before that process's end, so it is refused, whatever
    /// nonce it carries. The default value for this is no limit.
    pub fn not_before(self, not_before: i64) -> ReplayGuard {
        ReplayGuard { not_before, ..self }
    }

    /// An empty guard for requests verified under `policy`, holding at most
    /// [`DEFAULT_REPLAY_ENTRIES`] pairs.
    pub fn for_policy(policy: &VerifyPolicy) -> ReplayGuard {
        ReplayGuard::new(policy.max_age_secs, DEFAULT_REPLAY_ENTRIES)
    }

    /// How many pairs are held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no pair is held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Forgets the pairs whose signatures have expired at `now`.
    pub fn evict(&mut self, now: i64) {
        while let Some(first) = self.by_expiry.first() {
            if first.0 >= now {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                self.seen.remove(&key);
            }
        }
    }

    /// Refuses `verified` if it was created before the guard's
    /// [`ReplayGuard::not_before`], if its node already used its nonce
    /// within the window, or if the guard is full; otherwise remembers it.
    pub fn check_and_record(&mut self, verified: &Verified, now: i64) -> Result<(), HttpSigError> {
        if verified.created < self.not_before {
            return Err(HttpSigError::BeforeStart { created: verified.created, not_before: self.not_before });
        }
        self.evict(now);
        let pair = pair_key(&verified.node, &verified.nonce);
        if self.seen.contains(&pair) {
            return Err(HttpSigError::Replayed { node: verified.node, nonce: verified.nonce.clone() });
        }
        if self.seen.len() >= self.max_entries {
            return Err(HttpSigError::ReplayGuardFull { max_entries: self.max_entries });
        }
        self.by_expiry.insert((verified.created.saturating_add(self.max_age_secs), pair));
        self.seen.insert(pair);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use ed25519_dalek::VerifyingKey;
    use serde_json::Value;

    const RFC9421_B26: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/httpsig/rfc9421-b26.json");
    const CANON_PROFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/httpsig/canon-profile.json");

    fn fixture(path: &str) -> Value {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn s<'v>(v: &'v Value, key: &str) -> &'v str {
        v[key].as_str().unwrap_or_else(|| panic!("fixture field {key} is not a string"))
    }

    fn seed(v: &Value, key: &str) -> [u8; 32] {
        hex::decode(s(v, key)).expect("hex").try_into().expect("32 bytes")
    }

    // -- RFC 9421 Appendix B.2.6 --------------------------------------------

    fn b26_params(v: &Value) -> SignatureParams {
        let components: Vec<String> = v["covered_components"].as_array().expect("array").iter().map(|c| c.as_str().expect("str").to_string()).collect();
        SignatureParams::new(components).with_created(v["created"].as_i64().expect("created")).with_keyid(s(v, "keyid"))
    }

    fn b26_fields(v: &Value) -> Vec<(String, String)> {
        v["request"]["fields"].as_array().expect("fields").iter().map(|f| (s(f, "name").to_string(), s(f, "value").to_string())).collect()
    }

    #[test]
    fn rfc9421_b26_signature_base_and_signature_are_reproduced_exactly() {
        let v = fixture(RFC9421_B26);
        let key = NodeKey::from_seed(&seed(&v, "private_key_seed_hex"));
        assert_eq!(hex::encode(key.node_id().as_bytes()), s(&v, "public_key_hex"));
        let owned = b26_fields(&v);
        let fields: Vec<(&str, &str)> = owned.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let r = &v["request"];
        let request = Request {
            method: s(r, "method"),
            scheme: s(r, "scheme"),
            authority: s(r, "authority"),
            path: s(r, "path"),
            query: r["query"].as_str(),
            fields: &fields,
        };
        let params = b26_params(&v);
        let base = signature_base(&request, &params).expect("base");
        assert_eq!(base, s(&v, "signature_base"));
        let signature = key.sign(base.as_bytes());
        assert_eq!(STANDARD.encode(signature.to_bytes()), s(&v, "signature_base64"));
        let label = s(&v, "label");
        assert_eq!(signature_input_header(label, &params).expect("input"), s(&v, "signature_input"));
        assert_eq!(signature_header(label, &signature.to_bytes()).expect("sig"), s(&v, "signature"));
        // The body's digests, as in the RFC's test request.
        check_content_digest(s(r, "content_digest"), s(r, "body").as_bytes()).expect("sha-512 content digest of the test request");
    }

    #[test]
    fn rfc9421_b26_headers_parse_and_verify_strictly() {
        let v = fixture(RFC9421_B26);
        let label = s(&v, "label");
        let params = parse_signature_input(s(&v, "signature_input"), label).expect("parse input");
        assert_eq!(params, b26_params(&v));
        assert_eq!(signature_input_header(label, &params).expect("reserialize"), s(&v, "signature_input"));
        let sig = parse_signature(s(&v, "signature"), label).expect("parse signature");
        let public: [u8; 32] = hex::decode(s(&v, "public_key_hex")).expect("hex").try_into().expect("32");
        let key = VerifyingKey::from_bytes(&public).expect("key");
        let sig = Signature::from_slice(&sig).expect("64 bytes");
        key.verify_strict(s(&v, "signature_base").as_bytes(), &sig).expect("RFC signature verifies");
        let mut tampered = s(&v, "signature_base").to_string();
        tampered = tampered.replace("POST", "PUT");
        assert!(key.verify_strict(tampered.as_bytes(), &sig).is_err());
    }

    // -- RFC 9530 ------------------------------------------------------------

    #[test]
    fn rfc9530_content_digest_examples() {
        let body = br#"{"hello": "world"}"#;
        assert_eq!(content_digest(body), "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:");
        check_content_digest("sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:", body).expect("sha-256");
        let sha512 = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";
        check_content_digest(sha512, body).expect("sha-512");
        check_content_digest(&format!("{sha512}, sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"), body).expect("both");
        assert_eq!(content_digest(b""), "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:");
    }

    #[test]
    fn content_digest_refuses_mismatch_missing_algorithm_and_wrong_type() {
        let body = br#"{"hello": "world"}"#;
        let e = check_content_digest(&content_digest(b"other"), body).expect_err("mismatch");
        assert_eq!(e, HttpSigError::DigestMismatch { algorithm: "sha-256" });
        // One good, one bad: every supported digest present must match.
        let e = check_content_digest(&format!("{}, sha-512=:{}:", content_digest(body), STANDARD.encode([0u8; 64])), body).expect_err("bad sha-512");
        assert_eq!(e.code(), "digest_mismatch");
        let e = check_content_digest("md5=:AAAA:, unixsum=:AAAA:", body).expect_err("unsupported");
        assert_eq!(e, HttpSigError::NoSupportedDigest { found: vec!["md5".into(), "unixsum".into()] });
        assert_eq!(check_content_digest("", body).expect_err("empty").code(), "unsupported_digest");
        assert_eq!(check_content_digest("sha-256=\"abc\"", body).expect_err("string").code(), "wrong_type");
        assert_eq!(check_content_digest("sha-256=:not base64:", body).expect_err("junk").code(), "malformed_header");
    }

    // -- canon's profile -----------------------------------------------------

    const NOW: i64 = 1_700_000_000;
    const NONCE: &str = "AAECAwQFBgcICQoLDA0ODw";

    fn worker() -> NodeKey {
        NodeKey::from_seed(&[0x42; 32])
    }

    fn body_digest() -> String {
        content_digest(br#"{"run":"r-1","outcome":"ok"}"#)
    }

    fn parts(digest: &str) -> RequestParts<'_> {
        RequestParts { method: "POST", authority: "coordinator.example:8443", path: "/v1/runs/r-1/receipt", query: Some("attempt=2"), content_digest: digest }
    }

    fn signed(digest: &str) -> SignatureHeaders {
        sign_request(&worker(), &parts(digest), NOW, NONCE).expect("sign")
    }

    fn verify(req: &RequestParts<'_>, h: &SignatureHeaders) -> Result<Verified, HttpSigError> {
        verify_request(req, &h.signature_input, &h.signature, NOW + 5, &VerifyPolicy::default())
    }

    /// Signs custom parameters with the worker's key over `parts`, as a
    /// worker that does not follow the profile would.
    fn signed_with(params: &SignatureParams, digest: &str) -> SignatureHeaders {
        let base = parts(digest).signature_base(params).expect("base");
        let sig = worker().sign(base.as_bytes());
        SignatureHeaders {
            signature_input: signature_input_header(LABEL, params).expect("input"),
            signature: signature_header(LABEL, &sig.to_bytes()).expect("sig"),
        }
    }

    fn profile() -> SignatureParams {
        profile_params(&worker().node_id(), NOW, NONCE)
    }

    #[test]
    fn canon_profile_round_trip() {
        let digest = body_digest();
        let h = signed(&digest);
        let v = verify(&parts(&digest), &h).expect("verifies");
        assert_eq!(v, Verified { node: worker().node_id(), created: NOW, nonce: NONCE.to_string() });
        // Case of the authority does not matter; the signature covers its lowercase form.
        let upper = RequestParts { authority: "COORDINATOR.example:8443", ..parts(&digest) };
        verify(&upper, &h).expect("authority compared in lowercase");
        // A fresh random nonce, no query, empty body.
        let empty = content_digest(b"");
        let get = RequestParts { method: "GET", path: "/v1/runs/lease", query: None, ..parts(&empty) };
        let nonce = new_nonce();
        assert_eq!(nonce.len(), 22);
        let h = sign_request(&worker(), &get, NOW, &nonce).expect("sign");
        assert_eq!(verify(&get, &h).expect("verifies").nonce, nonce);
    }

    #[test]
    fn canon_profile_pinned_vectors() {
        let v = fixture(CANON_PROFILE);
        assert_eq!(v["profile_version"], 1);
        assert_eq!(s(&v, "tag"), TAG);
        let cases = v["cases"].as_array().expect("cases");
        assert!(!cases.is_empty());
        for case in cases {
            let name = s(case, "name");
            let key = NodeKey::from_seed(&seed(case, "seed_hex"));
            assert_eq!(key.node_id().to_string(), s(case, "node_id"), "{name}");
            let digest = content_digest(s(case, "body").as_bytes());
            assert_eq!(digest, s(case, "content_digest"), "{name}");
            let req = RequestParts {
                method: s(case, "method"),
                authority: s(case, "authority"),
                path: s(case, "path"),
                query: case["query"].as_str(),
                content_digest: &digest,
            };
            let created = case["created"].as_i64().expect("created");
            let nonce = s(case, "nonce");
            let base = req.signature_base(&profile_params(&key.node_id(), created, nonce)).expect("base");
            assert_eq!(base, s(case, "signature_base"), "{name}");
            let h = sign_request(&key, &req, created, nonce).expect("sign");
            assert_eq!(h.signature_input, s(case, "signature_input"), "{name}");
            assert_eq!(h.signature, s(case, "signature"), "{name}");
            let ok = verify_request(&req, &h.signature_input, &h.signature, created, &VerifyPolicy::default()).expect("verifies");
            assert_eq!(ok.node, key.node_id());
        }
    }

    #[test]
    fn tampered_method_is_refused() {
        let digest = body_digest();
        let h = signed(&digest);
        let e = verify(&RequestParts { method: "PUT", ..parts(&digest) }, &h).expect_err("tampered");
        assert_eq!(e, HttpSigError::BadSignature { label: LABEL.into() });
        assert_eq!(e.code(), "bad_signature");
    }

    #[test]
    fn tampered_authority_is_refused() {
        let digest = body_digest();
        let h = signed(&digest);
        assert_eq!(verify(&RequestParts { authority: "other.example:8443", ..parts(&digest) }, &h).expect_err("tampered").code(), "bad_signature");
    }

    #[test]
    fn tampered_path_is_refused() {
        let digest = body_digest();
        let h = signed(&digest);
        assert_eq!(verify(&RequestParts { path: "/v1/runs/r-2/receipt", ..parts(&digest) }, &h).expect_err("tampered").code(), "bad_signature");
    }

    #[test]
    fn tampered_query_is_refused() {
        let digest = body_digest();
        let h = signed(&digest);
        assert_eq!(verify(&RequestParts { query: Some("attempt=3"), ..parts(&digest) }, &h).expect_err("tampered").code(), "bad_signature");
        assert_eq!(verify(&RequestParts { query: None, ..parts(&digest) }, &h).expect_err("dropped").code(), "bad_signature");
    }

    #[test]
    fn tampered_body_digest_is_refused() {
        let digest = body_digest();
        let h = signed(&digest);
        let other = content_digest(br#"{"run":"r-1","outcome":"bad"}"#);
        assert_eq!(verify(&parts(&other), &h).expect_err("tampered").code(), "bad_signature");
        // And a body that does not match the signed digest is caught by the digest check.
        assert_eq!(check_content_digest(&digest, br#"{"run":"r-1","outcome":"bad"}"#).expect_err("body").code(), "digest_mismatch");
    }

    #[test]
    fn keyid_of_another_node_is_refused() {
        let digest = body_digest();
        let h = signed(&digest);
        let other = NodeKey::from_seed(&[0x43; 32]).node_id().to_string();
        let forged = h.signature_input.replace(&worker().node_id().to_string(), &other);
        assert_ne!(forged, h.signature_input);
        let e = verify_request(&parts(&digest), &forged, &h.signature, NOW, &VerifyPolicy::default()).expect_err("wrong key");
        assert_eq!(e.code(), "bad_signature");
        // Signed by another key, claiming the worker's keyid.
        let mut params = profile();
        params = params.with_keyid(&worker().node_id().to_string());
        let base = parts(&digest).signature_base(&params).expect("base");
        let sig = NodeKey::from_seed(&[0x43; 32]).sign(base.as_bytes());
        let e = verify_request(&parts(&digest), &h.signature_input, &signature_header(LABEL, &sig.to_bytes()).expect("sig"), NOW, &VerifyPolicy::default());
        assert_eq!(e.expect_err("impostor").code(), "bad_signature");
    }

    #[test]
    fn missing_component_is_refused_with_its_name() {
        let digest = body_digest();
        let params = SignatureParams { components: ["@method", "@authority", "@path", "@query"].map(String::from).to_vec(), params: profile().params };
        let h = signed_with(&params, &digest);
        let e = verify(&parts(&digest), &h).expect_err("fewer components");
        assert_eq!(e, HttpSigError::MissingComponent { component: "content-digest" });
        assert!(e.to_string().contains("\"content-digest\""), "{e}");
        let params = SignatureParams { components: vec!["@method".into()], params: profile().params };
        assert_eq!(verify(&parts(&digest), &signed_with(&params, &digest)).expect_err("one"), HttpSigError::MissingComponent { component: "@authority" });
    }

    #[test]
    fn extra_component_is_refused() {
        let digest = body_digest();
        let mut components: Vec<String> = COVERED_COMPONENTS.map(String::from).to_vec();
        components.push("@request-target".into());
        let params = SignatureParams { components, params: profile().params };
        let e = verify(&parts(&digest), &signed_with(&params, &digest)).expect_err("extra");
        assert_eq!(e, HttpSigError::UnexpectedComponent { component: "@request-target".into() });
    }

    #[test]
    fn components_in_another_order_still_verify() {
        let digest = body_digest();
        let mut components: Vec<String> = COVERED_COMPONENTS.map(String::from).to_vec();
        components.reverse();
        let params = SignatureParams { components, params: profile().params };
        verify(&parts(&digest), &signed_with(&params, &digest)).expect("order is signed, any order is fine");
    }

    #[test]
    fn only_an_unknown_label_is_refused() {
        let digest = body_digest();
        let h = signed(&digest);
        let input = h.signature_input.replacen("sig1=", "proxy=", 1);
        let sig = h.signature.replacen("sig1=", "proxy=", 1);
        let e = verify_request(&parts(&digest), &input, &sig, NOW, &VerifyPolicy::default()).expect_err("no sig1");
        assert_eq!(e, HttpSigError::MissingLabel { header: "Signature-Input", label: "sig1".into() });
        let e = verify_request(&parts(&digest), &h.signature_input, &sig, NOW, &VerifyPolicy::default()).expect_err("no sig1");
        assert_eq!(e, HttpSigError::MissingLabel { header: "Signature", label: "sig1".into() });
        // Another label next to sig1 is ignored.
        let both_input = format!("proxy=(\"@method\");created=1, {}", h.signature_input);
        let both_sig = format!("proxy=:{}:, {}", STANDARD.encode([7u8; 64]), h.signature);
        verify_request(&parts(&digest), &both_input, &both_sig, NOW, &VerifyPolicy::default()).expect("extra label ignored");
    }

    #[test]
    fn expired_created_is_refused() {
        let digest = body_digest();
        let h = signed(&digest);
        let policy = VerifyPolicy::default();
        verify_request(&parts(&digest), &h.signature_input, &h.signature, NOW + 300, &policy).expect("exactly max age is accepted");
        let e = verify_request(&parts(&digest), &h.signature_input, &h.signature, NOW + 301, &policy).expect_err("expired");
        assert_eq!(e, HttpSigError::Expired { created: NOW, now: NOW + 301, age: 301, max_age_secs: 300 });
        assert_eq!(e.code(), "expired");
        // The signature's own expires is honoured too.
        let params = profile().with_expires(NOW + 10);
        let h = signed_with(&params, &digest);
        verify_request(&parts(&digest), &h.signature_input, &h.signature, NOW + 10, &policy).expect("until expires");
        let e = verify_request(&parts(&digest), &h.signature_input, &h.signature, NOW + 11, &policy).expect_err("past expires");
        assert_eq!(e, HttpSigError::PastExpires { expires: NOW + 10, now: NOW + 11 });
    }

    #[test]
    fn created_in_the_future_is_refused() {
        let digest = body_digest();
        let h = signed(&digest);
        let policy = VerifyPolicy::default();
        verify_request(&parts(&digest), &h.signature_input, &h.signature, NOW - 30, &policy).expect("30s of skew is accepted");
        let e = verify_request(&parts(&digest), &h.signature_input, &h.signature, NOW - 31, &policy).expect_err("future");
        assert_eq!(e, HttpSigError::CreatedInFuture { created: NOW, now: NOW - 31, ahead: 31, max_skew_secs: 30 });
        assert_eq!(e.code(), "created_in_future");
        // Extreme values neither overflow nor pass.
        let params = profile().with_created(-MAX_SF_INTEGER);
        let h = signed_with(&params, &digest);
        assert_eq!(verify_request(&parts(&digest), &h.signature_input, &h.signature, i64::MAX, &policy).expect_err("old").code(), "expired");
        let params = profile().with_created(MAX_SF_INTEGER);
        let h = signed_with(&params, &digest);
        assert_eq!(verify_request(&parts(&digest), &h.signature_input, &h.signature, i64::MIN, &policy).expect_err("new").code(), "created_in_future");
    }

    #[test]
    fn replayed_nonce_is_refused() {
        let digest = body_digest();
        let h = signed(&digest);
        let policy = VerifyPolicy::default();
        let mut guard = ReplayGuard::for_policy(&policy);
        let v = verify(&parts(&digest), &h).expect("verifies");
        guard.check_and_record(&v, NOW + 5).expect("first time");
        let e = guard.check_and_record(&v, NOW + 6).expect_err("replay");
        assert_eq!(e, HttpSigError::Replayed { node: worker().node_id(), nonce: NONCE.into() });
        assert_eq!(e.code(), "replayed");
        // Another node may use the same nonce.
        let other = Verified { node: NodeKey::from_seed(&[0x43; 32]).node_id(), ..v.clone() };
        guard.check_and_record(&other, NOW + 6).expect("other node");
        // Still refused at the last second the signature is valid...
        assert_eq!(guard.check_and_record(&v, NOW + 300).expect_err("replay").code(), "replayed");
        // ...and forgotten once verify_request would refuse it as expired.
        assert!(verify_request(&parts(&digest), &h.signature_input, &h.signature, NOW + 301, &policy).is_err());
        guard.check_and_record(&Verified { nonce: new_nonce(), ..v.clone() }, NOW + 301).expect("fresh nonce");
        assert_eq!(guard.len(), 1, "the two expired pairs were evicted");
    }

    #[test]
    fn a_guard_made_at_start_refuses_what_its_predecessor_may_have_seen() {
        let digest = body_digest();
        let h = signed(&digest);
        let v = verify(&parts(&digest), &h).expect("verifies");
        let policy = VerifyPolicy::default();
        // The previous process accepted it at NOW and died; the new one
        // starts within the same second and knows none of its nonces.
        let mut restarted = ReplayGuard::for_policy(&policy).not_before(NOW + 1);
        let e = restarted.check_and_record(&v, NOW + 2).expect_err("replay across a restart");
        assert_eq!(e, HttpSigError::BeforeStart { created: NOW, not_before: NOW + 1 });
        assert_eq!(e.code(), "before_start");
        assert!(restarted.is_empty());
        // The signer signs afresh and is accepted.
        restarted.check_and_record(&Verified { created: NOW + 1, nonce: new_nonce(), ..v }, NOW + 2).expect("fresh");
    }

    #[test]
    fn replay_guard_full_refuses_instead_of_forgetting() {
        let policy = VerifyPolicy::default();
        let mut guard = ReplayGuard::new(policy.max_age_secs, 3);
        let node = worker().node_id();
        let at = |created: i64, i: u8| Verified { node, created, nonce: format!("nonce-{i:016}") };
        for i in 0..3 {
            guard.check_and_record(&at(NOW, i), NOW).expect("room");
        }
        let e = guard.check_and_record(&at(NOW, 3), NOW + 1).expect_err("full");
        assert_eq!(e, HttpSigError::ReplayGuardFull { max_entries: 3 });
        // A replay of a live nonce is still reported as a replay.
        assert_eq!(guard.check_and_record(&at(NOW, 0), NOW + 1).expect_err("replay").code(), "replayed");
        // Once the window has passed there is room again.
        guard.check_and_record(&at(NOW + 301, 3), NOW + 301).expect("evicted");
        assert_eq!(guard.len(), 1);
        assert!(!guard.is_empty());
    }

    #[test]
    fn alg_other_than_ed25519_is_refused() {
        let digest = body_digest();
        for alg in ["rsa-pss-sha512", "hmac-sha256", "ED25519", ""] {
            let h = signed_with(&profile().with_alg(alg), &digest);
            let e = verify(&parts(&digest), &h).expect_err("alg");
            assert_eq!(e, HttpSigError::WrongAlgorithm { found: alg.into() });
            assert_eq!(e.code(), "wrong_algorithm");
        }
        // alg is optional; its absence is fine, the key type decides.
        let params = SignatureParams { params: profile().params.into_iter().filter(|(k, _)| k != "alg").collect(), ..profile() };
        verify(&parts(&digest), &signed_with(&params, &digest)).expect("no alg");
        // A token instead of a string is a type error.
        let h = signed_with(&profile(), &digest);
        let input = h.signature_input.replace("alg=\"ed25519\"", "alg=ed25519");
        assert_eq!(verify_request(&parts(&digest), &input, &h.signature, NOW, &VerifyPolicy::default()).expect_err("token").code(), "wrong_type");
    }

    fn did_key_of(bytes: [u8; 32]) -> String {
        let mut b = vec![0xed, 0x01];
        b.extend_from_slice(&bytes);
        format!("did:key:z{}", bs58::encode(b).into_string())
    }

    #[test]
    fn small_order_and_invalid_keyids_are_refused() {
        let digest = body_digest();
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let not_a_point = {
            // y = 2 is not on the curve: (y^2 - 1) / (d y^2 + 1) has no square root.
            let mut b = [0u8; 32];
            b[0] = 2;
            b
        };
        assert!(VerifyingKey::from_bytes(&not_a_point).is_err(), "y = 2 decompresses");
        for keyid in [
            did_key_of(identity),
            did_key_of([0u8; 32]),
            did_key_of(not_a_point),
            "test-key-ed25519".to_string(),
            "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme".to_string(),
            "did:key:z6Mk".to_string(),
            "did:key:z".to_string() + &"1".repeat(500),
        ] {
            let h = signed_with(&profile().with_keyid(&keyid), &digest);
            let e = verify(&parts(&digest), &h).expect_err("bad keyid");
            assert_eq!(e.code(), "bad_keyid", "{keyid}: {e}");
            assert!(e.to_string().len() < 300, "the message quotes a bounded part: {e}");
        }
        let params = SignatureParams { params: profile().params.into_iter().filter(|(k, _)| k != "keyid").collect(), ..profile() };
        assert_eq!(verify(&parts(&digest), &signed_with(&params, &digest)).expect_err("no keyid"), HttpSigError::MissingParameter { param: "keyid" });
    }

    #[test]
    fn tag_is_required_and_checked() {
        let digest = body_digest();
        let h = signed_with(&profile().with_tag("other-app"), &digest);
        let e = verify(&parts(&digest), &h).expect_err("tag");
        assert_eq!(e, HttpSigError::WrongTag { found: "other-app".into(), expected: TAG.into() });
        let params = SignatureParams { params: profile().params.into_iter().filter(|(k, _)| k != "tag").collect(), ..profile() };
        assert_eq!(verify(&parts(&digest), &signed_with(&params, &digest)).expect_err("no tag"), HttpSigError::MissingParameter { param: "tag" });
    }

    #[test]
    fn created_and_nonce_are_required_and_nonces_are_checked() {
        let digest = body_digest();
        for missing in ["created", "nonce"] {
            let params = SignatureParams { params: profile().params.into_iter().filter(|(k, _)| k != missing).collect(), ..profile() };
            assert_eq!(verify(&parts(&digest), &signed_with(&params, &digest)).expect_err("missing").code(), "missing_parameter", "{missing}");
        }
        for nonce in ["short", &"a".repeat(65), "has space in it, 123", "a+b/c=d-xxxxxxxxxxxxxx"] {
            assert_eq!(verify(&parts(&digest), &signed_with(&profile().with_nonce(nonce), &digest)).expect_err("nonce").code(), "bad_nonce", "{nonce}");
            assert_eq!(sign_request(&worker(), &parts(&digest), NOW, nonce).expect_err("sign").code(), "bad_nonce");
        }
        let hex_nonce = "00112233445566778899aabbccddeeff";
        let h = sign_request(&worker(), &parts(&digest), NOW, hex_nonce).expect("hex nonce");
        assert_eq!(verify(&parts(&digest), &h).expect("verifies").nonce, hex_nonce);
    }

    #[test]
    fn malformed_truncated_headers_are_refused_without_panicking() {
        let digest = body_digest();
        let h = signed(&digest);
        for end in 0..h.signature_input.len() {
            let cut = &h.signature_input[..end];
            let e = verify_request(&parts(&digest), cut, &h.signature, NOW, &VerifyPolicy::default()).expect_err("truncated input");
            assert!(!e.to_string().is_empty());
        }
        for end in 0..h.signature.len() {
            let cut = &h.signature[..end];
            assert!(verify_request(&parts(&digest), &h.signature_input, cut, NOW, &VerifyPolicy::default()).is_err(), "{cut}");
        }
        let e = parse_signature_input("sig1=(\"@method\" \"@path\"", LABEL).expect_err("open list");
        assert_eq!(e.code(), "malformed_header");
        assert!(e.to_string().contains("Signature-Input") && e.to_string().contains("not closed"), "{e}");
        let e = parse_signature("sig1=:AAAA", LABEL).expect_err("open bytes");
        assert!(e.to_string().starts_with("Signature: malformed"), "{e}");
    }

    #[test]
    fn huge_headers_are_refused() {
        let huge = format!("sig1=(\"@method\");nonce=\"{}\"", "a".repeat(MAX_FIELD_BYTES));
        let e = parse_signature_input(&huge, LABEL).expect_err("huge");
        assert_eq!(e, HttpSigError::FieldTooLarge { header: "Signature-Input", len: huge.len(), max: MAX_FIELD_BYTES });
        assert_eq!(e.code(), "field_too_large");
        let many: Vec<String> = (0..=MAX_DICTIONARY_MEMBERS).map(|i| format!("s{i}=:AAAA:")).collect();
        assert_eq!(parse_signature(&many.join(", "), LABEL).expect_err("members").code(), "too_many_items");
        let comps: Vec<String> = (0..=MAX_COMPONENTS).map(|i| format!("\"h{i}\"")).collect();
        assert_eq!(parse_signature_input(&format!("sig1=({})", comps.join(" ")), LABEL).expect_err("components").code(), "too_many_items");
        let params: String = (0..=MAX_PARAMETERS).map(|i| format!(";p{i}=1")).collect();
        assert_eq!(parse_signature_input(&format!("sig1=(){params}"), LABEL).expect_err("params").code(), "too_many_items");
        assert_eq!(parse_signature_input("sig1=();created=1234567890123456", LABEL).expect_err("16 digits").code(), "malformed_header");
        check_content_digest(&format!("sha-256=:{}:", "A".repeat(MAX_FIELD_BYTES)), b"").expect_err("huge digest");
    }

    #[test]
    fn non_ascii_headers_are_refused() {
        for input in ["sig1=(\"@méthod\")", "sig1=(\"@method\");nonce=\"caf\u{e9}\"", "sig1=(\"@method\")\n;created=1", "sig1=(\"a\u{0}\")"] {
            let e = parse_signature_input(input, LABEL).expect_err("non-ascii");
            assert_eq!(e.code(), "malformed_header", "{input:?}");
        }
        assert_eq!(parse_signature("sig1=:ÄÄÄÄ:", LABEL).expect_err("bytes").code(), "malformed_header");
    }

    #[test]
    fn duplicate_labels_and_parameters_are_refused() {
        let digest = body_digest();
        let h = signed(&digest);
        let twice = format!("{}, {}", h.signature_input, h.signature_input);
        let e = verify_request(&parts(&digest), &twice, &h.signature, NOW, &VerifyPolicy::default()).expect_err("dup");
        assert_eq!(e, HttpSigError::DuplicateLabel { header: "Signature-Input", label: "sig1".into() });
        let twice = format!("{}, sig1=:{}:", h.signature, STANDARD.encode([0u8; 64]));
        let e = verify_request(&parts(&digest), &h.signature_input, &twice, NOW, &VerifyPolicy::default()).expect_err("dup");
        assert_eq!(e, HttpSigError::DuplicateLabel { header: "Signature", label: "sig1".into() });
        let dup_param = h.signature_input.replace(";alg=", ";created=1;alg=");
        let e = verify_request(&parts(&digest), &dup_param, &h.signature, NOW, &VerifyPolicy::default()).expect_err("dup param");
        assert_eq!(e, HttpSigError::DuplicateParameter { header: "Signature-Input", param: "created".into() });
        let e = parse_signature_input("sig1=(\"@method\" \"@method\")", LABEL).expect_err("dup component");
        assert_eq!(e, HttpSigError::DuplicateComponent { component: "@method".into() });
    }

    #[test]
    fn other_malformed_headers_name_what_was_wrong() {
        let cases: &[(&str, &str)] = &[
            ("sig1=(\"@method\"),", "malformed_header"),
            ("sig1=(\"@method\") sig2=()", "malformed_header"),
            ("Sig1=(\"@method\")", "malformed_header"),
            ("sig1=(@method)", "malformed_header"),
            ("sig1=(method)", "wrong_type"),
            ("sig1=:AAAA:", "wrong_type"),
            ("sig1", "wrong_type"),
            ("sig1=(\"@method\");created=\"1\"", "wrong_type"),
            ("sig1=(\"@method\");keyid=1", "wrong_type"),
            ("sig1=(\"@method\");created=1.5", "malformed_header"),
            ("sig1=(\"@method\";req)", "unsupported_component"),
            ("sig1=(\"content-digest\";sf)", "unsupported_component"),
            ("sig1=(\"@status\")", "unsupported_component"),
            ("sig1=(\"@signature-params\")", "unsupported_component"),
            ("sig1=(\"Content-Digest\")", "unsupported_component"),
            ("sig1=(\"\")", "unsupported_component"),
            ("sig1=(\"a\\b\")", "malformed_header"),
            ("sig1=(\"@method\");nonce=?2", "malformed_header"),
            ("sig1=(\"@method\")\t;x", "malformed_header"),
        ];
        for (input, code) in cases {
            let e = parse_signature_input(input, LABEL).expect_err(input);
            assert_eq!(e.code(), *code, "{input:?}: {e}");
        }
        assert_eq!(parse_signature("sig1=:AAA:", LABEL).expect_err("unpadded").code(), "malformed_header");
        let digest = body_digest();
        let h = signed(&digest);
        let short = format!("sig1=:{}:", STANDARD.encode([0u8; 63]));
        let e = verify_request(&parts(&digest), &h.signature_input, &short, NOW, &VerifyPolicy::default()).expect_err("63 bytes");
        assert_eq!(e.code(), "wrong_type");
        assert!(e.to_string().contains("64-byte"), "{e}");
    }

    #[test]
    fn mutated_headers_never_panic() {
        // A small deterministic fuzz: random byte edits of valid headers.
        let digest = body_digest();
        let h = signed(&digest);
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b" \t\"'(),;:=?*-_./\\0123456789aAzZ@\x7f";
        for round in 0..4000 {
            let mut input = if round % 2 == 0 { h.signature_input.clone().into_bytes() } else { h.signature.clone().into_bytes() };
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % (input.len() + 1);
                let c = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 if at < input.len() => input[at] = c,
                    1 if at < input.len() => {
                        input.remove(at);
                    }
                    _ => input.insert(at, c),
                }
            }
            let text = String::from_utf8_lossy(&input);
            let (si, sg) = if round % 2 == 0 { (text.as_ref(), h.signature.as_str()) } else { (h.signature_input.as_str(), text.as_ref()) };
            match verify_request(&parts(&digest), si, sg, NOW, &VerifyPolicy::default()) {
                Ok(v) => assert_eq!(v.node, worker().node_id(), "an edit that still verifies must be a no-op edit"),
                Err(e) => assert!(!e.code().is_empty()),
            }
        }
    }

    #[test]
    fn signature_base_refuses_values_that_could_forge_lines() {
        let digest = format!("{}\n\"@method\": GET", body_digest());
        let e = sign_request(&worker(), &parts(&digest), NOW, NONCE).expect_err("newline");
        assert_eq!(e.code(), "bad_component_value");
        let e = sign_request(&worker(), &RequestParts { path: "/a\r\nb", ..parts(&body_digest()) }, NOW, NONCE).expect_err("crlf");
        assert_eq!(e.code(), "bad_component_value");
        let e = sign_request(&worker(), &RequestParts { method: "GET /x", ..parts(&body_digest()) }, NOW, NONCE).expect_err("method");
        assert_eq!(e.code(), "bad_component_value");
        let r = Request { method: "GET", scheme: "", authority: "a", path: "/", query: None, fields: &[] };
        let e = signature_base(&r, &SignatureParams::new(["@target-uri"])).expect_err("no scheme");
        assert_eq!(e, HttpSigError::ComponentAbsent { component: "@target-uri".into() });
        let e = signature_base(&r, &SignatureParams::new(["date"])).expect_err("no field");
        assert_eq!(e, HttpSigError::ComponentAbsent { component: "date".into() });
    }

    #[test]
    fn a_request_without_content_digest_is_neither_signed_nor_accepted() {
        let e = sign_request(&worker(), &parts(""), NOW, NONCE).expect_err("no digest");
        assert_eq!(e, HttpSigError::ComponentAbsent { component: "content-digest".into() });
        let digest = body_digest();
        let h = signed(&digest);
        assert_eq!(verify(&parts(" "), &h).expect_err("header dropped").code(), "component_absent");
    }

    #[test]
    fn derived_components_and_field_combination() {
        let fields = [("X-Multi", " a "), ("Date", "d"), ("x-multi", "b\t")];
        let r = Request { method: "GET", scheme: "HTTPS", authority: "Example.COM", path: "", query: Some("a=1&b"), fields: &fields };
        let params = SignatureParams::new(["@method", "@scheme", "@authority", "@target-uri", "@request-target", "@path", "@query", "x-multi"]);
        let base = signature_base(&r, &params).expect("base");
        let expected = "\"@method\": GET\n\"@scheme\": https\n\"@authority\": example.com\n\"@target-uri\": HTTPS://Example.COM/?a=1&b\n\
                        \"@request-target\": /?a=1&b\n\"@path\": /\n\"@query\": ?a=1&b\n\"x-multi\": a, b\n\
                        \"@signature-params\": (\"@method\" \"@scheme\" \"@authority\" \"@target-uri\" \"@request-target\" \"@path\" \"@query\" \"x-multi\")";
        assert_eq!(base, expected);
        let r = Request { query: None, ..r };
        assert!(signature_base(&r, &SignatureParams::new(["@query"])).expect("base").starts_with("\"@query\": ?\n"));
    }

    #[test]
    fn structured_fields_serialize_canonically_and_round_trip() {
        let params = SignatureParams::new(["@method"])
            .with_created(-5)
            .with_param("x", BareItem::Token("a:b/c*".into()))
            .with_param("b", BareItem::ByteSequence(vec![1, 2, 3]))
            .with_param("t", BareItem::Boolean(true))
            .with_param("f", BareItem::Boolean(false))
            .with_nonce("q\"uo\\te");
        let input = signature_input_header("sig1", &params).expect("serialize");
        assert_eq!(input, r#"sig1=("@method");created=-5;x=a:b/c*;b=:AQID:;t;f=?0;nonce="q\"uo\\te""#);
        assert_eq!(parse_signature_input(&input, "sig1").expect("parse"), params);
        // Setting a parameter again replaces it in place.
        assert_eq!(params.clone().with_created(7).params()[0], ("created".to_string(), BareItem::Integer(7)));
        assert_eq!(params.created(), Some(-5));
        assert_eq!(params.param("t"), Some(&BareItem::Boolean(true)));
        // Unrepresentable values are refused, not written.
        for bad in [
            SignatureParams::new(["@method"]).with_nonce("line\nbreak"),
            SignatureParams::new(["@method"]).with_created(MAX_SF_INTEGER + 1),
            SignatureParams::new(["@method"]).with_param("Upper", BareItem::Integer(1)),
            SignatureParams::new(["@method"]).with_param("x", BareItem::Token("1abc".into())),
        ] {
            assert_eq!(bad.serialize().expect_err("bad").code(), "unserializable", "{bad:?}");
        }
        assert_eq!(SignatureParams::new(["@method"]).with_param("created", BareItem::String("1".into())).serialize().expect_err("type").code(), "wrong_type");
        assert_eq!(signature_input_header("Sig", &params).expect_err("label").code(), "unserializable");
        assert_eq!(signature_header("sig 1", &[0; 64]).expect_err("label").code(), "unserializable");
        // Whitespace around members is tolerated, as RFC 8941 requires.
        let spaced = "  other=:AAAA: ,\t sig1=:AQID:  ";
        assert_eq!(parse_signature(spaced, "sig1").expect("spaced"), vec![1, 2, 3]);
    }

    #[test]
    fn error_codes_are_stable_snake_case() {
        let node = worker().node_id();
        let errors = [
            HttpSigError::MissingComponent { component: "@method" },
            HttpSigError::Expired { created: 0, now: 1, age: 1, max_age_secs: 0 },
            HttpSigError::Replayed { node, nonce: NONCE.into() },
            HttpSigError::BadSignature { label: LABEL.into() },
            HttpSigError::BadKeyId { reason: String::new() },
        ];
        let codes: Vec<&str> = errors.iter().map(HttpSigError::code).collect();
        assert_eq!(codes, ["missing_component", "expired", "replayed", "bad_signature", "bad_keyid"]);
        for code in codes {
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{code}");
        }
    }
}
