//! Node identities: an ed25519 key pair, named by its public key.
//!
//! A [`NodeId`] is an ed25519 public key written as a `did:key`:
//! `did:key:z` followed by base58btc of the multicodec prefix for an ed25519
//! public key (`0xed 0x01`, the unsigned varint of `0xed`) and the 32 key
//! bytes, so every id starts `did:key:z6Mk`. That is the one canonical
//! [`Display`](fmt::Display)/[`FromStr`] pair; parsing rejects other
//! multicodecs (secp256k1, x25519, ...), bad lengths, keys that are not a
//! curve point and small-order ("weak") keys, which `verify_strict` would
//! reject anyway.
//!
//! A [`NodeKey`] is the secret half. It is stored as an unencrypted OpenSSH
//! ed25519 private key, so a key made by `ssh-keygen -t ed25519 -N ''` works
//! unchanged. It has no `Display`, its `Debug` shows only the node id, and its
//! bytes are zeroed on drop (ed25519-dalek's `SigningKey` does that).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// The `did:key` method prefix, followed by a multibase string.
const DID_KEY_PREFIX: &str = "did:key:";

/// Multicodec code of an ed25519 public key (`ed25519-pub`).
const ED25519_PUB_CODEC: u64 = 0xed;

/// Its unsigned-varint encoding, the first two bytes of the decoded did:key.
const ED25519_PUB_PREFIX: [u8; 2] = [0xed, 0x01];

/// Largest key file canon reads; OpenSSH ed25519 keys are about 400 bytes.
/// Anything far bigger is not a key, and reading it whole would be wasteful.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// How many parsed ids each thread remembers (see [`NodeId::parse_with_key`]).
pub const PARSE_CACHE_ENTRIES: usize = 4096;

thread_local! {
    /// did:key text to its checked id and decompressed key; only successes.
    static PARSED: RefCell<HashMap<Box<str>, (NodeId, VerifyingKey)>> = RefCell::new(HashMap::new());
}

/// A node's identity: its ed25519 public key, shown as `did:key:z6Mk…`.
///
/// Invariant: the 32 bytes are a valid, not small-order, curve point; every
/// constructor checks it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId([u8; 32]);

/// Why a string is not a canon node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseNodeIdError {
    /// The string does not start with `did:key:`.
    #[error("{0:?} is not a did:key (expected \"did:key:z6Mk…\")")]
    NotDidKey(String),
    /// The multibase prefix is not `z` (base58btc).
    #[error("{0:?}: did:key must be base58btc, starting with \"z\"")]
    NotBase58btc(String),
    /// The base58btc text does not decode.
    #[error("{0:?}: invalid base58btc: {1}")]
    Base58(String, String),
    /// The multicodec is not ed25519-pub (0xed).
    #[error("{id:?}: key type is multicodec {codec}, but canon node ids are ed25519 keys (multicodec 0xed)")]
    NotEd25519 {
        /// The id as given.
        id: String,
        /// The multicodec found, in hex (`0xe7` is secp256k1), or "invalid".
        codec: String,
    },
    /// The key is not 32 bytes long.
    #[error("{id:?}: ed25519 public key must be 32 bytes, found {len}")]
    Length {
        /// The id as given.
        id: String,
        /// Bytes found after the multicodec prefix.
        len: usize,
    },
    /// The 32 bytes are not a valid curve point, or a small-order one.
    #[error("{0:?}: not a valid ed25519 public key (not a curve point, or a small-order point)")]
    InvalidKey(String),
}

impl NodeId {
    /// The id of an ed25519 public key. Fails for small-order (weak) keys,
    /// which no honest signer has.
    pub fn from_verifying_key(key: VerifyingKey) -> Result<NodeId, ParseNodeIdError> {
        if key.is_weak() {
            return Err(ParseNodeIdError::InvalidKey(hex::encode(key.as_bytes())));
        }
        Ok(NodeId(key.to_bytes()))
    }

    /// The id of 32 raw public key bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<NodeId, ParseNodeIdError> {
        NodeId::key_from_bytes(bytes).map(|(id, _)| id)
    }

    /// Checks the bytes and returns the id with its decompressed key, so that
    /// a verifier decompresses the point only once.
    fn key_from_bytes(bytes: &[u8; 32]) -> Result<(NodeId, VerifyingKey), ParseNodeIdError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| ParseNodeIdError::InvalidKey(hex::encode(bytes)))?;
        Ok((NodeId::from_verifying_key(key)?, key))
    }

    /// Parses a did:key into the id and its decompressed public key.
    ///
    /// Each thread remembers the last [`PARSE_CACHE_ENTRIES`] ids it parsed:
    /// a verifier meets every id twice per receipt (the signature's `keyid`
    /// and the statement's `node`) and often across receipts, and
    /// decompressing the point is most of the cost.
    pub fn parse_with_key(s: &str) -> Result<(NodeId, VerifyingKey), ParseNodeIdError> {
        if let Some(hit) = PARSED.with(|c| c.borrow().get(s).copied()) {
            return Ok(hit);
        }
        let parsed = NodeId::parse_uncached(s)?;
        PARSED.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= PARSE_CACHE_ENTRIES {
                c.clear();
            }
            c.insert(s.into(), parsed);
        });
        Ok(parsed)
    }

    fn parse_uncached(s: &str) -> Result<(NodeId, VerifyingKey), ParseNodeIdError> {
        let multibase = s.strip_prefix(DID_KEY_PREFIX).ok_or_else(|| ParseNodeIdError::NotDidKey(s.to_string()))?;
        let b58 = multibase.strip_prefix('z').ok_or_else(|| ParseNodeIdError::NotBase58btc(s.to_string()))?;
        // 34 bytes encode to at most 47 characters; refuse long input before decoding it.
        if b58.len() > 64 {
            return Err(ParseNodeIdError::Length { id: s.to_string(), len: b58.len() });
        }
        let bytes = bs58::decode(b58).into_vec().map_err(|e| ParseNodeIdError::Base58(s.to_string(), e.to_string()))?;
        match read_varint(&bytes) {
            Some((ED25519_PUB_CODEC, 2)) => {}
            Some((codec, _)) => return Err(ParseNodeIdError::NotEd25519 { id: s.to_string(), codec: format!("{codec:#x}") }),
            None => return Err(ParseNodeIdError::NotEd25519 { id: s.to_string(), codec: "invalid".into() }),
        }
        let key: &[u8; 32] = bytes[2..].try_into().map_err(|_| ParseNodeIdError::Length { id: s.to_string(), len: bytes.len() - 2 })?;
        NodeId::key_from_bytes(key).map_err(|_| ParseNodeIdError::InvalidKey(s.to_string()))
    }

    /// The public key (decompressed anew on each call).
    pub fn verifying_key(&self) -> VerifyingKey {
        match VerifyingKey::from_bytes(&self.0) {
            Ok(k) => k,
            // Every constructor checked that the bytes decompress.
            Err(_) => unreachable!("NodeId holds a checked ed25519 point"),
        }
    }

    /// The 32 raw public key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The public key as 64 lowercase hex digits (how securesystemslib and
    /// TUF write ed25519 keys).
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }

    /// A short form for tables meant for people: `z6Mk` and the next eight
    /// characters, e.g. `z6MkhaXgBZDv`. Not unique; never parse it.
    pub fn short(&self) -> String {
        let full = self.to_string();
        full[DID_KEY_PREFIX.len()..].chars().take(12).collect()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = Vec::with_capacity(34);
        bytes.extend_from_slice(&ED25519_PUB_PREFIX);
        bytes.extend_from_slice(self.as_bytes());
        write!(f, "{DID_KEY_PREFIX}z{}", bs58::encode(bytes).into_string())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// Reads an unsigned varint (multiformats), returning the value and its length.
fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(9) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    fn from_str(s: &str) -> Result<NodeId, ParseNodeIdError> {
        NodeId::parse_with_key(s).map(|(id, _)| id)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A node's secret key. No `Display`; `Debug` shows only the node id; the
/// bytes are zeroed when dropped.
#[derive(Clone)]
pub struct NodeKey {
    signing: SigningKey,
    id: NodeId,
}

/// Why a node key could not be loaded, generated or saved. Every variant
/// names the file; none carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not an OpenSSH private key at all.
    #[error("{path}: not an OpenSSH private key ({reason}); canon needs an ed25519 key as written by `canon keygen` or `ssh-keygen -t ed25519 -N ''`")]
    NotOpenSsh {
        /// The key file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The key is an OpenSSH key of another type (rsa, ecdsa, ...).
    #[error("{path}: is an {algorithm} key, but canon node keys are ed25519 (make one with `canon keygen` or `ssh-keygen -t ed25519 -N ''`)")]
    NotEd25519 {
        /// The key file.
        path: PathBuf,
        /// The key's algorithm, as OpenSSH names it.
        algorithm: String,
    },
    /// The key is protected by a passphrase.
    #[error("{path}: the key is encrypted with a passphrase; canon has no way to ask for one and needs an unencrypted key (remove it with `ssh-keygen -p -N '' -f {}`)", path.display())]
    Encrypted {
        /// The key file.
        path: PathBuf,
    },
    /// The file's ed25519 private and public halves do not match.
    #[error("{path}: the ed25519 private key does not match its public key")]
    Mismatch {
        /// The key file.
        path: PathBuf,
    },
    /// `save_new` refuses to replace an existing file.
    #[error("{path}: already exists; canon never overwrites a key (choose another path or remove it first)")]
    Exists {
        /// The path that exists.
        path: PathBuf,
    },
    /// Encoding the key as OpenSSH failed.
    #[error("{path}: cannot encode the key as OpenSSH: {reason}")]
    Encode {
        /// The key file.
        path: PathBuf,
        /// The encoder's message.
        reason: String,
    },
}

impl NodeKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> NodeKey {
        NodeKey::from_signing_key(SigningKey::generate(&mut rand_core::OsRng))
    }

    /// The key whose 32-byte ed25519 seed (RFC 8032 secret key) is `seed`.
    /// For test vectors and tests; real keys come from [`NodeKey::generate`].
    pub fn from_seed(seed: &[u8; 32]) -> NodeKey {
        NodeKey::from_signing_key(SigningKey::from_bytes(seed))
    }

    fn from_signing_key(signing: SigningKey) -> NodeKey {
        // A key derived from a seed is never small-order: its scalar is clamped.
        let id = NodeId(signing.verifying_key().to_bytes());
        NodeKey { signing, id }
    }

    /// This key's public identity.
    pub fn node_id(&self) -> NodeId {
        self.id
    }

    /// Signs `message` (ed25519, RFC 8032; deterministic).
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }

    /// Loads an unencrypted OpenSSH ed25519 private key.
    pub fn load(path: &Path) -> Result<NodeKey, KeyError> {
        let io_err = |source| KeyError::Io { path: path.to_path_buf(), source };
        let file = fs::File::open(path).map_err(io_err)?;
        let mut text = Zeroizing::new(Vec::new());
        file.take(MAX_KEY_FILE_BYTES + 1).read_to_end(&mut text).map_err(io_err)?;
        if text.len() as u64 > MAX_KEY_FILE_BYTES {
            return Err(KeyError::NotOpenSsh { path: path.to_path_buf(), reason: format!("file is larger than {MAX_KEY_FILE_BYTES} bytes") });
        }
        NodeKey::from_openssh(&text, path)
    }

    /// Parses the text of an OpenSSH private key; `path` is only for messages.
    pub fn from_openssh(text: &[u8], path: &Path) -> Result<NodeKey, KeyError> {
        let not_openssh = |reason: &str| KeyError::NotOpenSsh { path: path.to_path_buf(), reason: reason.to_string() };
        let trimmed = String::from_utf8_lossy(text);
        let trimmed = trimmed.trim_start();
        if !trimmed.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
            let found = if trimmed.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
                "a PEM RSA private key"
            } else if trimmed.starts_with("-----BEGIN EC PRIVATE KEY-----") {
                "a PEM EC private key"
            } else if trimmed.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
                "an encrypted PKCS#8 private key"
            } else if trimmed.starts_with("-----BEGIN PRIVATE KEY-----") {
                "a PKCS#8 private key"
            } else if trimmed.starts_with("ssh-") || trimmed.starts_with("ecdsa-") {
                "a public key, not a private key"
            } else {
                "no \"-----BEGIN OPENSSH PRIVATE KEY-----\" header"
            };
            return Err(not_openssh(found));
        }
        let key = ssh_key::PrivateKey::from_openssh(text).map_err(|e| not_openssh(&e.to_string()))?;
        if key.is_encrypted() {
            return Err(KeyError::Encrypted { path: path.to_path_buf() });
        }
        let Some(pair) = key.key_data().ed25519() else {
            return Err(KeyError::NotEd25519 { path: path.to_path_buf(), algorithm: key.algorithm().as_str().to_string() });
        };
        let seed = Zeroizing::new(pair.private.to_bytes());
        let node_key = NodeKey::from_seed(&seed);
        if node_key.id.as_bytes() != &pair.public.0 {
            return Err(KeyError::Mismatch { path: path.to_path_buf() });
        }
        Ok(node_key)
    }

    /// The key as OpenSSH private key text (unencrypted, LF line endings),
    /// with `comment`. The text is zeroed when dropped.
    pub fn to_openssh(&self, comment: &str) -> Result<Zeroizing<String>, ssh_key::Error> {
        let seed = Zeroizing::new(self.signing.to_bytes());
        let pair = ssh_key::private::Ed25519Keypair::from_seed(&seed);
        let key = ssh_key::PrivateKey::new(ssh_key::private::KeypairData::Ed25519(pair), comment)?;
        key.to_openssh(ssh_key::LineEnding::LF)
    }

    /// Writes this key to a new file at `path` as an OpenSSH private key,
    /// mode 0600. Never overwrites: fails with [`KeyError::Exists`] if `path`
    /// exists. Atomic: the key is written to a temporary file in the same
    /// directory, flushed to disk, then linked into place, so `path` either
    /// does not exist or holds the whole key.
    pub fn save_new(&self, path: &Path) -> Result<(), KeyError> {
        let io_err = |source| KeyError::Io { path: path.to_path_buf(), source };
        if fs::symlink_metadata(path).is_ok() {
            return Err(KeyError::Exists { path: path.to_path_buf() });
        }
        let comment = format!("canon node {}", self.id);
        let text = self.to_openssh(&comment).map_err(|e| KeyError::Encode { path: path.to_path_buf(), reason: e.to_string() })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // tempfile creates the file with mode 0600 on Unix, before any byte is written.
        let mut tmp = tempfile::Builder::new().prefix(".canon-key-").tempfile_in(dir).map_err(io_err)?;
        set_owner_only(tmp.as_file()).map_err(io_err)?;
        tmp.write_all(text.as_bytes()).map_err(io_err)?;
        tmp.as_file().sync_all().map_err(io_err)?;
        // persist_noclobber links the file into place and fails if `path` appeared meanwhile.
        tmp.persist_noclobber(path)
            .map_err(|e| if e.error.kind() == io::ErrorKind::AlreadyExists { KeyError::Exists { path: path.to_path_buf() } } else { io_err(e.error) })?;
        if let Ok(d) = fs::File::open(dir) {
            // Make the new directory entry durable; failure here loses nothing already written.
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(unix)]
fn set_owner_only(file: &fs::File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_owner_only(_file: &fs::File) -> io::Result<()> {
    Ok(())
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey").field("id", &self.id).field("secret", &"<redacted>").finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_key_round_trips_and_starts_z6mk() {
        let key = NodeKey::from_seed(&[7; 32]);
        let id = key.node_id();
        let s = id.to_string();
        assert!(s.starts_with("did:key:z6Mk"), "{s}");
        assert_eq!(s.parse::<NodeId>(), Ok(id));
        assert_eq!(id.short().len(), 12);
    }

    #[test]
    fn did_key_spec_example_parses() {
        // From the did:key method spec (w3c-ccg/did-method-key), an ed25519 key.
        let s = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
        let id: NodeId = s.parse().expect("spec example");
        assert_eq!(id.to_string(), s);
    }

    #[test]
    fn did_key_rejects_other_codecs_and_garbage() {
        // secp256k1 example from the did:key spec.
        let secp = "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme";
        assert!(matches!(secp.parse::<NodeId>(), Err(ParseNodeIdError::NotEd25519 { .. })));
        assert!(matches!("did:web:example.com".parse::<NodeId>(), Err(ParseNodeIdError::NotDidKey(_))));
        assert!(matches!("did:key:m6Mk".parse::<NodeId>(), Err(ParseNodeIdError::NotBase58btc(_))));
        assert!(matches!("did:key:z0OIl".parse::<NodeId>(), Err(ParseNodeIdError::Base58(..))));
        let mut short = vec![0xed, 0x01];
        short.extend_from_slice(&[1; 31]);
        let short = format!("did:key:z{}", bs58::encode(short).into_string());
        assert!(matches!(short.parse::<NodeId>(), Err(ParseNodeIdError::Length { len: 31, .. })));
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point (0, 1) is small-order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(NodeId::from_bytes(&identity).is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let seed = [0x42u8; 32];
        let key = NodeKey::from_seed(&seed);
        let dbg = format!("{key:?}");
        assert!(dbg.contains("redacted"));
        assert!(!dbg.contains(&hex::encode(seed)));
        assert!(!dbg.contains("66, 66"));
    }

    #[test]
    fn save_load_round_trip_refuses_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        let key = NodeKey::generate();
        key.save_new(&path).expect("save");
        assert_eq!(NodeKey::load(&path).expect("load").node_id(), key.node_id());
        assert!(matches!(NodeKey::generate().save_new(&path), Err(KeyError::Exists { .. })));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn garbage_is_a_clear_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("junk.key");
        fs::write(&path, b"hello").expect("write");
        let err = NodeKey::load(&path).expect_err("garbage loads");
        assert!(matches!(err, KeyError::NotOpenSsh { .. }));
        assert!(err.to_string().contains("junk.key"), "{err}");
        let missing = NodeKey::load(&dir.path().join("nope")).expect_err("missing loads");
        assert!(matches!(missing, KeyError::Io { .. }));
    }
}
